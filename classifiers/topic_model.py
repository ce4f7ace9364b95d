"""The topic model: TF-IDF features, one linear classifier per topic, tuned thresholds.

A saved model is a joblib file holding the fitted scikit-learn pipeline with its label
names, per-topic thresholds and metadata (scikit-learn version, training-data hash,
metrics). It only loads under the scikit-learn version that trained it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion, Pipeline

from classifiers import TOPICS

DEFAULT_MODEL_PATH = Path(__file__).parent / "model" / "topic_model.joblib"
EVIDENCE_TERMS = 3


class ModelLoadError(RuntimeError):
    """The model file is missing, unreadable, or from another scikit-learn version."""


@dataclass(frozen=True)
class TopicPrediction:
    topics: tuple[str, ...]
    scores: dict[str, float]
    # For each asserted topic, the words that raised its score most.
    terms: dict[str, list[str]] = field(default_factory=dict)


def build_estimator(seed: int) -> Pipeline:
    """Word n-grams carry meaning; character n-grams carry it across languages and case endings."""
    features = FeatureUnion(
        [
            ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
            (
                "char",
                TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, max_features=300_000),
            ),
        ]
    )
    classifier = OneVsRestClassifier(
        LogisticRegression(C=20.0, class_weight="balanced", max_iter=5000, random_state=seed)
    )
    return Pipeline([("features", features), ("classifier", classifier)])


class TopicModel:
    def __init__(self, estimator: Pipeline, thresholds: dict[str, float], metadata: dict):
        self.estimator = estimator
        self.labels = tuple(TOPICS)
        self.thresholds = thresholds
        self.metadata = metadata
        features: FeatureUnion = estimator.named_steps["features"]
        names = features.get_feature_names_out()
        self._word_feature = np.array([name.startswith("word__") for name in names])
        self._feature_terms = np.array([name.split("__", 1)[1] for name in names], dtype=object)

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "unknown"))

    def scores(self, texts: list[str]) -> np.ndarray:
        return self.estimator.predict_proba(texts)

    def predict(self, texts: list[str]) -> list[TopicPrediction]:
        if not texts:
            return []
        features = self.estimator.named_steps["features"].transform(texts)
        probabilities = self.estimator.named_steps["classifier"].predict_proba(features)
        estimators = self.estimator.named_steps["classifier"].estimators_
        predictions = []
        for row in range(len(texts)):
            scores = {label: round(float(probabilities[row, k]), 4) for k, label in enumerate(self.labels)}
            topics = tuple(label for label in self.labels if scores[label] >= self.thresholds[label])
            terms = {label: self._top_terms(features[row], estimators[self.labels.index(label)]) for label in topics}
            predictions.append(TopicPrediction(topics=topics, scores=scores, terms=terms))
        return predictions

    def _top_terms(self, row, estimator) -> list[str]:
        """The word features whose weight times their value in this text pushed the score up most."""
        indices = row.indices
        contributions = row.data * estimator.coef_[0][indices]
        keep = self._word_feature[indices] & (contributions > 0)
        order = np.argsort(-contributions[keep])[:EVIDENCE_TERMS]
        return [str(term) for term in self._feature_terms[indices[keep][order]]]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({"estimator": self.estimator, "thresholds": self.thresholds, "metadata": self.metadata}, path)


def load_model(path: Path | str = DEFAULT_MODEL_PATH) -> TopicModel:
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no topic model here; run `make train` to build it")
    try:
        saved = joblib.load(path)
    except Exception as err:  # joblib raises many kinds on a corrupt or foreign file
        raise ModelLoadError(f"{path}: cannot read the topic model ({err}); run `make train` to rebuild it") from err
    trained_with = saved.get("metadata", {}).get("sklearn_version")
    if trained_with != sklearn.__version__:
        raise ModelLoadError(
            f"{path}: trained with scikit-learn {trained_with}, this is {sklearn.__version__}; "
            "run `make train` to retrain it with the installed version"
        )
    return TopicModel(saved["estimator"], saved["thresholds"], saved["metadata"])
