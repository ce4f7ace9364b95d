"""The topic model: TF-IDF features, one logistic regression per topic, tuned thresholds.

A saved model is a joblib file holding the fitted scikit-learn pipeline with its per-topic
thresholds and metadata (label names, scikit-learn version, training-data hash, metrics).
It only loads under the scikit-learn version that trained it and with the topics this code
knows: anything else is refused with a message that says to run `make train`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from pathlib import Path

import joblib
import numpy as np
import sklearn
from scipy.sparse import csr_array, csr_matrix
from scipy.special import expit
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.utils._sparse import _align_api_if_sparse  # what the stock _count_vocab returns through

from classifiers import TOPICS
from classifiers.passages import passage_spans

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

    `topics` are the asserted topics in TOPICS order, `scores` every topic's probability (the highest
    over the item's scored units, see `TopicModel.predict`), `terms` for each asserted topic the words
    that raised its score most, and `passages` for each asserted topic the (start, end) span of the
    item's text that carries it: the passage that scored highest, or the whole text for an item of
    one passage ((0, 0) for a headline without text).
    """

    topics: tuple[str, ...]
    scores: dict[str, float]
    terms: dict[str, list[str]] = field(default_factory=dict)
    passages: dict[str, tuple[int, int]] = field(default_factory=dict)
    shape: str = "short"  # which thresholds applied: "short" (scored as one unit) or "long" (several passages)


class WordCachedVectorizer(TfidfVectorizer):
    """A `char_wb` or single-word TfidfVectorizer that transforms to the same values, faster.

    Neither `char_wb` n-grams nor word tokens cross white space, so a batch's counts are the product of
    two sparse matrices: documents x words (how often each white-space-separated word occurs) and
    words x features (each word's own n-grams or tokens). A word is cut up and looked up in the
    vocabulary once, then remembered. The stock transform does that for every occurrence of every
    feature in pure Python, which made it a third of the pipeline's time on long news texts.
    """

    def _count_vocab(self, raw_documents, fixed_vocab):
        if not fixed_vocab or not self._cacheable():
            return super()._count_vocab(raw_documents, fixed_vocab)
        docs_by_words, words_by_features = self._word_matrices(raw_documents)
        counts = (docs_by_words @ words_by_features).astype(self.dtype)
        counts.sort_indices()  # as the stock transform leaves them
        return self.vocabulary_, _align_api_if_sparse(counts)

    def unit_counts(self, units: csr_array, segments: list[str]) -> csr_matrix:
        """The feature counts of units that are sums of segments (rows of `units` over `segments`): the same
        as counting each unit's text, with no per-segment matrix in between (units x words first, which is small)."""
        docs_by_words, words_by_features = self._word_matrices(segments)
        return csr_matrix(((units @ docs_by_words) @ words_by_features).astype(self.dtype))

    def _word_matrices(self, raw_documents) -> tuple[csr_array, csr_array]:
        """documents x distinct words (occurrence counts) and distinct words x vocabulary (each word's features)."""
        preprocess = self.build_preprocessor()
        docs = [self._white_spaces.sub(" ", preprocess(self.decode(doc))).split() for doc in raw_documents]
        words = {word: n for n, word in enumerate(dict.fromkeys(chain.from_iterable(docs)))}  # the batch's distinct words
        occurrences = np.fromiter(map(words.__getitem__, chain.from_iterable(docs)), np.int32)
        features = [self._ngram_columns(word) for word in words]
        docs_by_words = _count_matrix(occurrences, [len(doc) for doc in docs], len(words))
        words_by_features = _count_matrix(
            np.concatenate([np.zeros(0, np.int32), *features]), list(map(len, features)), len(self.vocabulary_)
        )
        return docs_by_words, words_by_features

    def _cacheable(self) -> bool:
        """Whether this vectorizer's features stay within white-space-separated words (see the class docstring)."""
        return self.analyzer == "char_wb" or (self.analyzer == "word" and self.ngram_range == (1, 1) and self.stop_words is None)

    def _ngram_columns(self, word: str) -> np.ndarray:
        """The vocabulary columns of `word`'s features (one per occurrence), from the cache if it was seen before."""
        cache = self.__dict__.setdefault("_word_features", {})
        columns = cache.get(word)
        if columns is None:
            if len(cache) >= WORD_CACHE_SIZE:
                cache.clear()
            if "_cut" not in self.__dict__:
                self._cut = self._char_wb_ngrams if self.analyzer == "char_wb" else self.build_tokenizer()
            vocabulary = self.vocabulary_
            columns = cache[word] = np.array([vocabulary[g] for g in self._cut(word) if g in vocabulary], np.int32)
        return columns

    def __getstate__(self):
        state = super().__getstate__()
        for cache in ("_word_features", "_cut"):  # caches, not part of the model
            state.pop(cache, None)
        return state


def _count_matrix(columns: np.ndarray, row_lengths: list[int], width: int) -> csr_array:
    """Rows of `width` counts: row k counts the next `row_lengths[k]` entries of `columns` (repeats add up)."""
    indptr = np.cumsum([0, *row_lengths], dtype=np.int32)
    return csr_array((np.ones(len(columns)), columns, indptr), shape=(len(row_lengths), width))


def _units(items: Sequence[tuple[str, str]]) -> tuple[list[str], csr_array, list[tuple[int, int]], list[int]]:
    """Items -> their segments (title, then each passage), the units to score as rows over those segments,
    each unit's span in its item's text, and how many units each item has (its rows follow each other)."""
    segments: list[str] = []
    rows: list[list[int]] = []
    spans: list[tuple[int, int]] = []
    owners: list[int] = []
    for title, text in items:
        passages = passage_spans(text)
        head = len(segments)
        segments.append(title.strip())
        segments.extend(text[start:end] for start, end in passages)
        body = list(range(head + 1, head + 1 + len(passages)))
        rows.append([head, *body])
        spans.append((0, len(text.rstrip())) if passages else (0, 0))
        if len(passages) > 1:
            for i, span in enumerate(passages):
                rows.append([head, body[i]])
                spans.append(span)
        owners.append(len(rows) - sum(owners))
    indptr = np.cumsum([0, *map(len, rows)])
    columns = np.fromiter(chain.from_iterable(rows), np.int64)
    units = csr_array((np.ones(len(columns)), columns, indptr), shape=(len(rows), len(segments)))
    return segments, units, spans, owners


def build_estimator(seed: int) -> Pipeline:
    """An unfitted pipeline: list of texts -> one probability per topic.

    Words carry meaning; character n-grams within word boundaries carry it across languages,
    inflections and spelling variants, which matters with ~120 training items per language.
    """
    features = FeatureUnion(
        [
            ("word", WordCachedVectorizer(analyzer="word", ngram_range=(1, 1), sublinear_tf=True)),
            (
                "char",
                WordCachedVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, max_features=300_000),
            ),
        ]
    )
    classifier = OneVsRestClassifier(
        LogisticRegression(C=REGULARISATION_C, class_weight="balanced", max_iter=5000, random_state=seed)
    )
    return Pipeline([("features", features), ("classifier", classifier)])


# An item scored as one unit (a headline, a one-paragraph summary) and one scored as the best of several
# passages have differently spread scores (a maximum over many units runs higher), so each shape has its own
# threshold per topic: on the development set's validation half that beat one shared threshold in both
# precision and recall.
SHAPES = ("short", "long")


def shape_of(passages: int) -> str:
    return "long" if passages > 1 else "short"


class TopicModel:
    """A fitted estimator with its thresholds (per item shape and topic) and metadata."""

    def __init__(self, estimator: Pipeline, thresholds: dict[str, dict[str, float]], metadata: dict):
        self.estimator = estimator
        self.labels = tuple(TOPICS)
        self.thresholds = thresholds
        self.metadata = metadata
        names = estimator.named_steps["features"].get_feature_names_out()
        self._terms = np.array([name.split("__", 1)[1].strip() for name in names], dtype=object)
        self._readable_word = np.array(
            [name.startswith("word__") and len(term) >= EVIDENCE_MIN_CHARS for name, term in zip(names, self._terms, strict=True)]
        )
        # The fitted logistic regressions as one (features x topics) weight matrix, cut along the feature blocks:
        # predict scores each vectorizer's block against its own rows, with no stacked feature matrix.
        estimators = estimator.named_steps["classifier"].estimators_
        self._vectorizers = [vectorizer for _, vectorizer in estimator.named_steps["features"].transformer_list]
        self._offsets = np.cumsum([0, *(len(v.vocabulary_) for v in self._vectorizers)])
        self._weights = np.column_stack([e.coef_[0] for e in estimators])
        self._intercepts = np.array([e.intercept_[0] for e in estimators])

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "unknown"))

    def predict(self, items: Sequence[tuple[str, str]]) -> list[TopicPrediction]:
        """(title, text) pairs -> one TopicPrediction each, in order.

        Each item is scored as a whole (title then text, as the model was trained) and, where its text has
        several passages (classifiers.passages), as its title with each passage; a topic's score is the
        highest of these. (Pairs of neighbouring passages were tried as units too: no better on the
        development set's validation half, and slower.) The text is counted once: a unit's
        counts are sums of its segments' counts (n-grams never cross a word, so they add up), and only the
        TF-IDF weighting and the classifier run per unit.
        """
        if not items:
            return []
        segments, units, unit_spans, owners = _units(items)
        blocks = [
            vectorizer._tfidf.transform(vectorizer.unit_counts(units, segments), copy=False) for vectorizer in self._vectorizers
        ]
        decision = self._intercepts + sum(
            block @ self._weights[start:end] for block, start, end in zip(blocks, self._offsets, self._offsets[1:], strict=False)
        )
        probabilities = expit(decision)  # what each topic's LogisticRegression.predict_proba gives
        predictions = []
        first = 0
        for count in owners:
            shape = shape_of(count - 1)  # an item of several passages has one unit for each, plus the whole
            unit_scores = probabilities[first : first + count]
            # The evidence is the passage-level unit that scores highest (the whole item where it is one passage).
            evidence_rows = first + (unit_scores[1:].argmax(axis=0) + 1 if count > 1 else np.zeros(len(self.labels), int))
            scores = {label: round(float(top), 4) for label, top in zip(self.labels, unit_scores.max(axis=0), strict=True)}
            topics = tuple(label for label in self.labels if scores[label] >= self.thresholds[shape][label])
            first += count
            evidence = {label: int(evidence_rows[self.labels.index(label)]) for label in topics}
            terms = {label: self._top_terms(blocks, row, self.labels.index(label)) for label, row in evidence.items()}
            passages = {label: unit_spans[row] for label, row in evidence.items()}
            predictions.append(TopicPrediction(topics=topics, scores=scores, terms=terms, passages=passages, shape=shape))
        return predictions

    def scored(self, items: Sequence[tuple[str, str]]) -> tuple[np.ndarray, list[str]]:
        """(title, text) pairs -> their scores as a matrix (items x TOPICS), as `predict` scores them, and their shapes."""
        predictions = self.predict(items)
        scores = [[prediction.scores[label] for label in self.labels] for prediction in predictions]
        return np.array(scores, dtype=float).reshape(-1, len(self.labels)), [prediction.shape for prediction in predictions]

    def asserted(self, scores: np.ndarray, shapes: list[str]) -> np.ndarray:
        """0/1 (items x TOPICS): where each item's score reaches its shape's threshold, as `predict` asserts."""
        bars = np.array([[self.thresholds[shape][label] for label in self.labels] for shape in shapes]).reshape(scores.shape)
        return (scores >= bars).astype(int)

    def _top_terms(self, blocks: list[csr_matrix], row: int, topic: int) -> list[str]:
        """The features of one unit whose weight times value raised the topic's score most.

        Words are shown where any readable word pushed the score up; a text whose evidence lies
        only in character n-grams (an inflection the training data never had as a word) shows those.
        """
        # The row's cells in each block, as columns of the whole feature space.
        indices = np.concatenate(
            [
                block.indices[block.indptr[row] : block.indptr[row + 1]] + offset
                for block, offset in zip(blocks, self._offsets, strict=False)
            ]
        )
        values = np.concatenate([block.data[block.indptr[row] : block.indptr[row + 1]] for block in blocks])
        contributions = values * self._weights[indices, topic]
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
    if not isinstance(saved["thresholds"], dict) or set(saved["thresholds"]) != set(SHAPES):
        raise ModelLoadError(f"{path}: saved by an older newswatch (one threshold per topic); run `make train` to retrain it")
    if tuple(metadata.get("labels", ())) != tuple(TOPICS):
        raise ModelLoadError(
            f"{path}: trained for topics {metadata.get('labels')}, this code uses {list(TOPICS)}; run `make train` to retrain it"
        )
    return TopicModel(saved["estimator"], saved["thresholds"], metadata)
