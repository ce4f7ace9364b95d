"""`make train`: fit the topic model on train + validation, choose thresholds by cross-validation, save it.

    python -m classifiers.train --out classifiers/model/topic_model.joblib

The test split is never read here. Thresholds come from out-of-fold scores over the whole
train + validation set (5 folds): about 1,400 scored items instead of the 250 of the
validation split alone, so a threshold does not hinge on two or three examples. The model
that is saved is then fitted on all of train + validation.

Deterministic: the split is fixed by example ids, the folds and the estimator are seeded,
so the same corpus and seed give the same model and the same scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import sklearn
from sklearn.metrics import precision_recall_curve
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from classifiers import TOPICS
from classifiers.corpus import CORPUS_DIR, corpus_hash, label_matrix, load_corpus, split
from classifiers.evaluate import topic_metrics
from classifiers.topic_model import DEFAULT_MODEL_PATH, TopicModel, build_estimator

SEED = 20261127
TARGET_PRECISION = 0.95
CV_FOLDS = 5
# Only used where a topic has no positive example to tune on (a tiny or broken corpus).
FALLBACK_THRESHOLD = 0.5


def choose_threshold(truth: np.ndarray, scores: np.ndarray, target_precision: float = TARGET_PRECISION) -> float:
    """0/1 truth and scores for one topic -> the decision threshold (assert where score >= it).

    The lowest threshold whose precision reaches the target, so recall is as high as the
    target allows; where no threshold reaches it, the threshold with the best F1.
    """
    if truth.sum() == 0:
        return FALLBACK_THRESHOLD
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    # precision[i] and recall[i] belong to thresholds[i]; the last point has no threshold.
    precision, recall = precision[:-1], recall[:-1]
    reaching = np.flatnonzero(precision >= target_precision)
    if reaching.size:
        return float(thresholds[reaching[0]])
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def out_of_fold_scores(texts: list[str], truth: np.ndarray, seed: int, folds: int = CV_FOLDS) -> np.ndarray:
    """Texts and their 0/1 label matrix -> each text's scores from a model that did not see it."""
    scores = np.zeros(truth.shape, dtype=float)
    for fit_rows, score_rows in KFold(folds, shuffle=True, random_state=seed).split(texts):
        estimator = build_estimator(seed)
        estimator.fit([texts[i] for i in fit_rows], truth[fit_rows])
        scores[score_rows] = estimator.predict_proba([texts[i] for i in score_rows])
    return scores


def rounded(metrics: dict) -> dict:
    """Metric dicts with floats cut to 4 decimals, for the model's metadata."""
    if isinstance(metrics, dict):
        return {key: rounded(value) for key, value in metrics.items()}
    return round(metrics, 4) if isinstance(metrics, float) else metrics


def train(corpus_dir: Path = CORPUS_DIR, seed: int = SEED) -> TopicModel:
    """The corpus under `corpus_dir` -> a fitted TopicModel with thresholds and metadata."""
    # The solver's dense steps are tiny; BLAS worker threads only fight over the cores
    # (3.5 s instead of 0.1 s per fit on a busy 2-core machine).
    with threadpool_limits(limits=1):
        return _train(corpus_dir, seed)


def _train(corpus_dir: Path, seed: int) -> TopicModel:
    examples = load_corpus(corpus_dir)
    parts = split(examples)
    development = parts["train"] + parts["validation"]
    texts = [example.content for example in development]
    truth = label_matrix(development)
    scores = out_of_fold_scores(texts, truth, seed)
    thresholds = {label: round(choose_threshold(truth[:, k], scores[:, k]), 4) for k, label in enumerate(TOPICS)}
    estimator = build_estimator(seed)
    estimator.fit(texts, truth)
    data_hash = corpus_hash(examples)
    metadata = {
        "version": f"topics-{data_hash[:8]}",
        "sklearn_version": sklearn.__version__,
        "training_data_hash": data_hash,
        "seed": seed,
        "examples": {name: len(part) for name, part in parts.items()},
        "fitted_on": ["train", "validation"],
        "labels": list(TOPICS),
        "target_precision": TARGET_PRECISION,
        # What the chosen thresholds gave on out-of-fold scores; the held-out figures are `make eval`'s.
        "cross_validated_metrics": rounded(topic_metrics(truth, scores >= np.array([thresholds[t] for t in TOPICS]))),
    }
    return TopicModel(estimator, thresholds, metadata)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=CORPUS_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    args = parser.parse_args(argv)
    model = train(args.corpus)
    model.save(args.out)
    cv = model.metadata["cross_validated_metrics"]
    print(f"saved {args.out} ({model.version}); examples {model.metadata['examples']}, fitted on train + validation")
    print(f"thresholds {json.dumps(model.thresholds)}")
    print(f"cross-validated on train + validation: macro-F1 {cv['macro_f1']:.3f}, micro precision {cv['micro_precision']:.3f}")


if __name__ == "__main__":
    main()
