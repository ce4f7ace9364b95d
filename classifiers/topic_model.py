"""The topic model: TF-IDF features, one logistic regression per topic, tuned thresholds.

A saved model is a joblib file holding the fitted scikit-learn pipeline with its per-topic
thresholds and metadata (label names, scikit-learn version, training-data hash, metrics).
It only loads under the scikit-learn version that trained it and with the topics this code
knows: anything else is refused with a message that says to run `make train`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from pathlib import Path

import joblib
import numpy as np
import sklearn
from scipy.sparse import csr_array, csr_matrix
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.utils._sparse import _align_api_if_sparse  # what the stock _count_vocab returns through

from classifiers import TOPICS

DEFAULT_MODEL_PATH = Path(__file__).parent / "model" / "topic_model.joblib"
EVIDENCE_TERMS = 3
# Words this short are mostly articles and prepositions (de, la, el, на, và): the model does lean
# on them inside fixed phrases ("alto el fuego"), but as evidence they tell an analyst nothing.
EVIDENCE_MIN_CHARS = 3
# Inverse regularisation strength: the corpus is small and clean, so a weak penalty fits best
# under cross-validation (C from 5 to 100 moved average precision by less than 0.005).
REGULARISATION_C = 20.0


# Distinct words whose n-gram features a vectorizer remembers; a news stream's vocabulary is
# Zipf-distributed, so this holds nearly every word seen again, in well under 100 MB.
WORD_CACHE_SIZE = 200_000


class ModelLoadError(RuntimeError):
    """The model file is missing, unreadable, or does not fit this code and scikit-learn."""


@dataclass(frozen=True)
class TopicPrediction:
    """One item's annotation.

    `topics` are the asserted topics in TOPICS order, `scores` every topic's probability,
    `terms` for each asserted topic the words of the item that raised its score most.
    """

    topics: tuple[str, ...]
    scores: dict[str, float]
    terms: dict[str, list[str]] = field(default_factory=dict)


class WordCachedCharVectorizer(TfidfVectorizer):
    """A `char_wb` TfidfVectorizer that transforms to the same values, faster.

    `char_wb` n-grams never cross a word boundary, so a batch's n-gram counts are the product of
    two sparse matrices: documents x words (how often each word occurs) and words x n-grams (each
    word's own n-gram counts). A word is cut into n-grams and looked up in the vocabulary once, then
    remembered. The stock transform does that for every occurrence of every n-gram in pure Python,
    which made it a third of the pipeline's time on long news texts.
    """

    def _count_vocab(self, raw_documents, fixed_vocab):
        if not fixed_vocab or self.analyzer != "char_wb":
            return super()._count_vocab(raw_documents, fixed_vocab)
        preprocess = self.build_preprocessor()
        docs = [self._white_spaces.sub(" ", preprocess(self.decode(doc))).split() for doc in raw_documents]
        words = {word: n for n, word in enumerate(dict.fromkeys(chain.from_iterable(docs)))}  # the batch's distinct words
        occurrences = np.fromiter(map(words.__getitem__, chain.from_iterable(docs)), np.int32)
        ngrams = [self._ngram_columns(word) for word in words]
        docs_by_words = _count_matrix(occurrences, [len(doc) for doc in docs], len(words))
        words_by_ngrams = _count_matrix(
            np.concatenate([np.zeros(0, np.int32), *ngrams]), list(map(len, ngrams)), len(self.vocabulary_)
        )
        counts = (docs_by_words @ words_by_ngrams).astype(self.dtype)
        counts.sort_indices()  # as the stock transform leaves them
        return self.vocabulary_, _align_api_if_sparse(counts)

    def _ngram_columns(self, word: str) -> np.ndarray:
        """The vocabulary columns of `word`'s n-grams (one per occurrence), from the cache if it was seen before."""
        cache = self.__dict__.setdefault("_word_features", {})
        columns = cache.get(word)
        if columns is None:
            if len(cache) >= WORD_CACHE_SIZE:
                cache.clear()
            vocabulary = self.vocabulary_
            columns = cache[word] = np.array([vocabulary[g] for g in self._char_wb_ngrams(word) if g in vocabulary], np.int32)
        return columns

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_word_features", None)  # a cache, not part of the model
        return state


def _count_matrix(columns: np.ndarray, row_lengths: list[int], width: int) -> csr_array:
    """Rows of `width` counts: row k counts the next `row_lengths[k]` entries of `columns` (repeats add up)."""
    indptr = np.cumsum([0, *row_lengths], dtype=np.int32)
    return csr_array((np.ones(len(columns)), columns, indptr), shape=(len(row_lengths), width))


def build_estimator(seed: int) -> Pipeline:
    """An unfitted pipeline: list of texts -> one probability per topic.

    Words carry meaning; character n-grams within word boundaries carry it across languages,
    inflections and spelling variants, which matters with ~120 training items per language.
    """
    features = FeatureUnion(
        [
            ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 1), sublinear_tf=True)),
            (
                "char",
                WordCachedCharVectorizer(
                    analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, max_features=300_000
                ),
            ),
        ]
    )
    classifier = OneVsRestClassifier(
        LogisticRegression(C=REGULARISATION_C, class_weight="balanced", max_iter=5000, random_state=seed)
    )
    return Pipeline([("features", features), ("classifier", classifier)])


class TopicModel:
    """A fitted estimator with its per-topic thresholds and metadata."""

    def __init__(self, estimator: Pipeline, thresholds: dict[str, float], metadata: dict):
        self.estimator = estimator
        self.labels = tuple(TOPICS)
        self.thresholds = thresholds
        self.metadata = metadata
        names = estimator.named_steps["features"].get_feature_names_out()
        self._terms = np.array([name.split("__", 1)[1].strip() for name in names], dtype=object)
        self._readable_word = np.array(
            [name.startswith("word__") and len(term) >= EVIDENCE_MIN_CHARS for name, term in zip(names, self._terms, strict=True)]
        )

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "unknown"))

    def predict(self, texts: list[str]) -> list[TopicPrediction]:
        """Texts (see corpus.model_input) -> one TopicPrediction each, in order."""
        if not texts:
            return []
        features = self.estimator.named_steps["features"].transform(texts)
        classifier = self.estimator.named_steps["classifier"]
        probabilities = classifier.predict_proba(features)
        predictions = []
        for row in range(len(texts)):
            scores = {label: round(float(probabilities[row, k]), 4) for k, label in enumerate(self.labels)}
            topics = tuple(label for label in self.labels if scores[label] >= self.thresholds[label])
            terms = {
                label: self._top_terms(features[row], classifier.estimators_[self.labels.index(label)].coef_[0])
                for label in topics
            }
            predictions.append(TopicPrediction(topics=topics, scores=scores, terms=terms))
        return predictions

    def _top_terms(self, row: csr_matrix, weights: np.ndarray) -> list[str]:
        """The features of one text whose weight times value raised the score most.

        Words are shown where any readable word pushed the score up; a text whose evidence lies
        only in character n-grams (an inflection the training data never had as a word) shows those.
        """
        indices = row.indices
        contributions = row.data * weights[indices]
        positive = contributions > 0
        chosen = positive & self._readable_word[indices]
        if not chosen.any():
            chosen = positive
        order = np.argsort(-contributions[chosen], kind="stable")[:EVIDENCE_TERMS]
        return [str(term) for term in self._terms[indices[chosen][order]]]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({"estimator": self.estimator, "thresholds": self.thresholds, "metadata": self.metadata}, path)


def load_model(path: Path | str = DEFAULT_MODEL_PATH) -> TopicModel:
    """The saved model at `path`; ModelLoadError, saying to run `make train`, where it cannot serve.

    A file loaded before and unchanged since is not read again: the command line checks the model
    before a local run and the runner's worker loads it in the same process (about 0.8 s each)."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no topic model here; run `make train` to build it")
    stat = path.stat()
    return _load_file(path.resolve(), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _load_file(path: Path, mtime_ns: int, size: int) -> TopicModel:
    try:
        saved = joblib.load(path)
        metadata = saved["metadata"]
    except Exception as err:  # joblib and pickle raise many kinds on a corrupt or foreign file
        raise ModelLoadError(f"{path}: cannot read the topic model ({err}); run `make train` to rebuild it") from err
    trained_with = metadata.get("sklearn_version")
    if trained_with != sklearn.__version__:
        raise ModelLoadError(
            f"{path}: trained with scikit-learn {trained_with}, this is {sklearn.__version__}; "
            "run `make train` to retrain it with the installed version"
        )
    if tuple(metadata.get("labels", ())) != tuple(TOPICS):
        raise ModelLoadError(
            f"{path}: trained for topics {metadata.get('labels')}, this code uses {list(TOPICS)}; run `make train` to retrain it"
        )
    return TopicModel(saved["estimator"], saved["thresholds"], metadata)
