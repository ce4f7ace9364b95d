"""The topic classifier: corpus checks, training, thresholds, metrics, explanations, held-out quality.

The quality tests use the model `make test` builds (classifiers/model/topic_model.joblib) and
train one here only when that file is missing or was trained on another corpus. Training
behaviour is tested on a small slice of the corpus, which takes a couple of seconds.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer

from classifiers import TOPICS
from classifiers.corpus import (
    DEV_FORMS,
    DEV_SPLIT_BOUNDS,
    CorpusError,
    Example,
    corpus_hash,
    load_corpus,
    load_dev,
    model_input,
    split,
)
from classifiers.evaluate import evaluate, topic_metrics
from classifiers.keyword_baseline import KeywordBaseline
from classifiers.report import format_report
from classifiers.topic_model import DEFAULT_MODEL_PATH, ModelLoadError, TopicModel, WordCachedVectorizer, load_model
from classifiers.train import choose_threshold, choose_thresholds, train

# The model must stay ahead of the keyword baseline by at least this much macro-F1.
MIN_MARGIN_OVER_KEYWORDS = 0.05
# Held-out floors on the development set's test half, a little under what the model measured (MODEL_CARD.md).
FLOOR_MACRO_F1 = 0.84
FLOOR_MICRO_PRECISION = 0.93


def write_corpus(folder, examples: list[Example], name: str = "part.jsonl"):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({**asdict(e), "labels": list(e.labels)}, ensure_ascii=False) for e in examples]
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def corpus() -> list[Example]:
    return load_corpus()


@pytest.fixture(scope="module")
def dev() -> list[Example]:
    return load_dev()


@pytest.fixture(scope="module")
def model(corpus, dev) -> TopicModel:
    """The built model when it matches the labeled data, else one trained here (once per session)."""
    try:
        built = load_model(DEFAULT_MODEL_PATH)
    except ModelLoadError:
        return train()
    return built if built.metadata["training_data_hash"] == corpus_hash(corpus + dev) else train()


@pytest.fixture(scope="module")
def held_out(model, dev) -> dict:
    return evaluate(model, split(dev, DEV_SPLIT_BOUNDS)["test"])


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory, corpus):
    """Every fifth example of the real corpus: all topics and languages, quick to train on."""
    return write_corpus(tmp_path_factory.mktemp("small") / "corpus", corpus[::5])


@pytest.fixture(scope="module")
def small_dev(tmp_path_factory, dev):
    """Every second item of the development set."""
    return write_corpus(tmp_path_factory.mktemp("small") / "dev", dev[::2])


@pytest.fixture(scope="module")
def small_model(small_corpus, small_dev) -> TopicModel:
    return train(small_corpus, small_dev, seed=7)


# Corpus


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"id": "x-2", "lang": "en", "title": "Truce holds", "text": "", "labels": [}', "not valid JSON"),
        ('{"id": "x-2", "lang": "en", "title": "Truce holds", "text": "", "labels": ["truce"]}', "unknown label(s) ['truce']"),
        ('{"id": "x-1", "lang": "en", "title": "Truce holds", "text": "", "labels": []}', "'x-1' already used at"),
        ('{"id": "x-2", "lang": "en", "title": "Truce holds", "text": "", "labels": "ceasefire"}', "labels must be a list"),
        ('{"id": "x-2", "lang": "en", "title": "Truce", "text": "", "labels": [], "form": "tweet"}', "unknown form 'tweet'"),
        ('{"id": "x-2", "lang": "en", "title": "Truce holds", "labels": []}', "missing field(s) text"),
    ],
)
def test_corpus_errors_name_the_file_and_line(tmp_path, line, expected):
    good = '{"id": "x-1", "lang": "en", "title": "Envoy arrives in Doha", "text": "", "labels": ["diplomatic_visit"]}'
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as caught:
        load_corpus(tmp_path)
    assert f"{path}:2:" in str(caught.value)
    assert expected in str(caught.value)


def test_duplicate_id_error_names_both_places(tmp_path):
    line = '{"id": "x-1", "lang": "en", "title": "Envoy arrives in Doha", "text": "", "labels": []}'
    (tmp_path / "a.jsonl").write_text(line + "\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text("\n" + line + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"b\.jsonl:2: id 'x-1' already used at .*a\.jsonl:1"):
        load_corpus(tmp_path)


def test_split_is_fixed_by_id_and_keeps_the_test_split_apart(corpus):
    parts = split(corpus)
    assert sum(len(part) for part in parts.values()) == len(corpus)
    assert split(list(reversed(corpus)))["test"] == list(reversed(parts["test"]))
    test_ids = {e.id for e in parts["test"]}
    assert test_ids.isdisjoint(e.id for e in parts["train"] + parts["validation"])


# Training


def test_training_is_deterministic(small_corpus, small_dev, small_model, corpus):
    again = train(small_corpus, small_dev, seed=7)
    texts = [e.content for e in corpus[1::40]]
    items = [e.parts for e in corpus[1::40]]
    assert again.thresholds == small_model.thresholds
    assert again.metadata == small_model.metadata
    np.testing.assert_array_equal(again.estimator.predict_proba(texts), small_model.estimator.predict_proba(texts))
    assert [p.scores for p in again.predict(items)] == [p.scores for p in small_model.predict(items)]


def test_training_never_reads_a_test_split(small_corpus, small_dev, monkeypatch):
    """Fitted on the corpus's train + validation parts only; thresholds from the development set's validation half."""
    fitted: set[str] = set()
    scored: set[tuple[str, str]] = set()

    class Recording:
        """An estimator that remembers every text it is fitted on."""

        def __init__(self, estimator):
            self.estimator = estimator
            self.named_steps = estimator.named_steps

        def fit(self, texts, truth):
            fitted.update(texts)
            self.estimator.fit(texts, truth)
            return self

    import classifiers.train as training

    real_build, real_scores = training.build_estimator, TopicModel.scored
    monkeypatch.setattr(training, "build_estimator", lambda seed: Recording(real_build(seed)))

    def recording_scores(self, items):
        scored.update(items)
        return real_scores(self, items)

    monkeypatch.setattr(TopicModel, "scored", recording_scores)
    training.train(small_corpus, small_dev, seed=7)
    parts, dev_parts = split(load_corpus(small_corpus)), split(load_dev(small_dev), DEV_SPLIT_BOUNDS)
    assert {e.content for e in parts["train"] + parts["validation"]} <= fitted  # and passages of those with no topic
    assert scored == {e.parts for e in dev_parts["validation"]}
    assert scored.isdisjoint(e.parts for e in dev_parts["test"]) and fitted.isdisjoint(e.content for e in parts["test"])


def test_saved_model_records_what_serving_and_audits_need(small_model, small_corpus, small_dev):
    metadata = small_model.metadata
    assert metadata["labels"] == list(TOPICS)
    assert metadata["training_data_hash"] == corpus_hash(load_corpus(small_corpus) + load_dev(small_dev))
    assert metadata["version"] == f"topics-{metadata['training_data_hash'][:8]}"
    assert metadata["fitted_on"] == ["train", "validation"]
    assert set(metadata["validation_metrics"]["topics"]) == set(TOPICS)
    assert metadata["thresholds_chosen_on"].startswith("development set validation half")
    assert set(small_model.thresholds) == {"short", "long"}
    assert all(set(by_topic) == set(TOPICS) for by_topic in small_model.thresholds.values())


def test_choose_threshold_reaches_the_precision_target():
    rng = np.random.default_rng(3)
    truth = np.r_[np.ones(300, dtype=int), np.zeros(700, dtype=int)]
    scores = np.r_[rng.normal(0.7, 0.15, 300), rng.normal(0.35, 0.15, 700)]
    threshold = choose_threshold(truth, scores, target_precision=0.95)
    asserted = scores >= threshold
    assert truth[asserted].mean() >= 0.95
    # The lowest such threshold: one step lower, precision falls below the target.
    next_lower = scores[scores < threshold].max()
    assert truth[scores >= next_lower].mean() < 0.95
    assert 0.2 < truth[asserted].sum() / truth.sum() < 1.0


def test_choose_threshold_falls_back_to_best_f1_when_the_target_is_out_of_reach():
    truth = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    # Precision never reaches 0.95 (the top item is a negative); F1 is best at 0.5 (3 of 5 right, all found).
    assert choose_threshold(truth, scores, target_precision=0.95) == 0.5


# Loading


def test_load_model_refuses_another_scikit_learn_version(tmp_path, small_model):
    path = tmp_path / "old.joblib"
    joblib.dump(
        {
            "estimator": small_model.estimator,
            "thresholds": small_model.thresholds,
            "metadata": {**small_model.metadata, "sklearn_version": "0.24.2"},
        },
        path,
    )
    with pytest.raises(ModelLoadError, match=r"trained with scikit-learn 0\.24\.2.*run `make train`"):
        load_model(path)


def test_load_model_refuses_a_model_for_other_topics(tmp_path, small_model):
    path = tmp_path / "other.joblib"
    metadata = {**small_model.metadata, "labels": ["ceasefire", "sanctions"]}
    joblib.dump({"estimator": small_model.estimator, "thresholds": small_model.thresholds, "metadata": metadata}, path)
    with pytest.raises(ModelLoadError, match=r"sanctions.*run `make train`"):
        load_model(path)


def test_load_model_refuses_a_model_with_one_threshold_per_topic(tmp_path, small_model):
    path = tmp_path / "flat.joblib"
    flat = small_model.thresholds["short"]
    joblib.dump({"estimator": small_model.estimator, "thresholds": flat, "metadata": small_model.metadata}, path)
    with pytest.raises(ModelLoadError, match=r"older newswatch.*run `make train`"):
        load_model(path)


def test_each_item_shape_gets_its_own_threshold_unless_it_has_too_few_positives():
    rng = np.random.default_rng(5)
    shapes = ["short"] * 200 + ["long"] * 200
    truth = np.zeros((400, 3), dtype=int)
    truth[::2] = 1
    truth[200:210, 2], truth[210:, 2] = 1, 0  # the long items have only 10 positives of the last topic ...
    truth[200:209, 2] = 1
    truth[209, 2] = 0  # ... 9, too few for a threshold of its own
    scores = np.where(truth == 1, 0.5, 0.2) + rng.normal(0, 0.02, truth.shape)
    scores[200:] += 0.3  # long items score higher across the board
    thresholds = choose_thresholds(truth, scores, shapes)
    assert thresholds["long"]["ceasefire"] > thresholds["short"]["ceasefire"] + 0.2
    assert thresholds["long"]["diplomatic_visit"] == round(choose_threshold(truth[:, 2], scores[:, 2]), 4)


def test_missing_or_unreadable_model_file_says_to_run_make_train(tmp_path):
    missing = tmp_path / "nowhere.joblib"
    with pytest.raises(ModelLoadError, match=r"nowhere\.joblib: no topic model here; run `make train`"):
        load_model(missing)
    garbage = tmp_path / "garbage.joblib"
    garbage.write_bytes(b"not a joblib file")
    with pytest.raises(ModelLoadError, match=r"garbage\.joblib: cannot read the topic model .*run `make train`"):
        load_model(garbage)


def test_an_unchanged_model_file_is_read_once_and_a_rewritten_one_again(tmp_path, small_model):
    path = tmp_path / "model.joblib"
    small_model.save(path)
    first = load_model(path)
    assert load_model(path) is first
    small_model.metadata["note"] = "retrained"
    try:
        small_model.save(path)
    finally:
        del small_model.metadata["note"]
    assert load_model(path) is not first and load_model(path).metadata["note"] == "retrained"


def test_saved_model_round_trips(tmp_path, small_model, corpus):
    path = tmp_path / "model.joblib"
    small_model.save(path)
    loaded = load_model(path)
    items = [e.parts for e in corpus[::97]]
    assert loaded.predict(items) == small_model.predict(items)
    assert loaded.version == small_model.version


@pytest.mark.parametrize(
    "params", [{"analyzer": "char_wb", "ngram_range": (2, 5), "min_df": 2}, {"analyzer": "word", "ngram_range": (1, 1)}]
)
def test_word_cached_features_equal_the_stock_vectorizer(corpus, params):
    """The fast transform gives the stock TfidfVectorizer's values for the same fitted state, also on
    texts it has cached words of, with odd whitespace, case, accents and words the vocabulary lacks."""
    cached = WordCachedVectorizer(sublinear_tf=True, **params)
    cached.fit([e.content for e in corpus[::3]])
    stock = TfidfVectorizer(**clone(cached).get_params())
    stock.vocabulary_, stock.idf_, stock.fixed_vocabulary_ = cached.vocabulary_, cached.idf_, False
    texts = [e.content for e in corpus[1::7]] + [
        "Перемирие\tв\u00a0Газе  PRODLOUŽENO\n\nna dva dny",
        "ceasefire ceasefire CEASEFIRE, cease-fire! (truce)—talks…«перемирие»",
        "qzxv wkkj",
        "",
    ]
    for _ in range(2):  # the second pass is served from the word cache
        fast, slow = cached.transform(texts), stock.transform(texts)
        assert fast.shape == slow.shape and fast.nnz == slow.nnz > 0
        assert np.array_equal(fast.indices, slow.indices) and np.array_equal(fast.indptr, slow.indptr)
        assert np.allclose(fast.data, slow.data, rtol=0, atol=1e-12)
    assert not {"_word_features", "_cut"} & set(cached.__getstate__())


# Predictions and explanations


def test_explanations_are_words_of_the_item_for_every_asserted_topic(model, corpus):
    examples = split(corpus)["test"]
    predictions = model.predict([e.parts for e in examples])
    asserted = 0
    for example, prediction in zip(examples, predictions, strict=True):
        assert set(prediction.terms) == set(prediction.topics)
        for topic in prediction.topics:
            asserted += 1
            assert 1 <= len(prediction.terms[topic]) <= 3, (example.id, topic)
            for term in prediction.terms[topic]:
                assert term and term in example.content.lower(), (example.id, topic, term)
    assert asserted > 100


def test_a_topic_in_one_paragraph_of_a_long_page_is_found_and_its_passage_named(model, corpus):
    """A long page about other things with one paragraph that reports a ceasefire: the page as a whole is diluted,
    the passage is not, and the evidence points at that paragraph."""
    fillers = [e.text for e in corpus if not e.labels and e.form in ("lead", "summary") and len(e.text.split()) > 30][:8]
    truce = next(e.text for e in split(corpus)["train"] if e.labels == ("ceasefire",) and e.lang == "en" and e.form == "lead")
    text = "\n".join(fillers[:4] + [truce] + fillers[4:])
    [prediction] = model.predict([("Regional roundup", text)])
    assert "ceasefire" in prediction.topics
    start, end = prediction.passages["ceasefire"]
    at = text.index(truce)
    assert start <= at < end and end - start < len(text) / 2  # the passage holds the paragraph, not the page
    assert model.estimator.predict_proba([model_input("Regional roundup", text)])[0][0] < prediction.scores["ceasefire"]


def test_prediction_shape(model):
    assert model.predict([]) == []
    [headline, unrelated] = model.predict(
        [("Israel and Hamas agree to extend Gaza truce by two days", ""), ("Bakery wins bread award", "")]
    )
    assert headline.topics == ("ceasefire",)
    assert "truce" in headline.terms["ceasefire"]
    assert unrelated.topics == () and unrelated.terms == {}
    assert set(headline.scores) == set(TOPICS) and all(0.0 <= s <= 1.0 for s in headline.scores.values())


def test_keyword_baseline_rules():
    baseline = KeywordBaseline()
    assert baseline.topics("Israel and Hamas agree to extend Gaza truce") == ("ceasefire",)
    assert baseline.topics("Football fans call a truce before the derby") == ()
    assert baseline.topics("Перемир'я на Чорному морі порушено") == ("ceasefire",)
    assert baseline.topics("Prime minister arrives in Kyiv for talks") == ("diplomatic_visit",)
    assert baseline.topics("Minister opens a new museum wing for tourists") == ()
    assert baseline.topics("UN convoys bring food to displaced families") == ("humanitarian_aid",)
    assert baseline.topics("New hearing aid helps displaced workers") == ()


# Evaluation


def test_topic_metrics_on_a_hand_made_case():
    truth = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]])
    predicted = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]])
    metrics = topic_metrics(truth, predicted)
    ceasefire, aid, visit = (metrics["topics"][t] for t in TOPICS)
    assert (ceasefire["precision"], ceasefire["recall"], ceasefire["f1"]) == (0.5, 0.5, 0.5)
    assert (aid["precision"], aid["recall"], aid["f1"], aid["support"]) == (1.0, 1.0, 1.0, 1)
    assert (visit["precision"], visit["recall"]) == (0.5, 1.0)
    assert visit["f1"] == pytest.approx(2 / 3)
    assert metrics["macro_f1"] == pytest.approx((0.5 + 1.0 + 2 / 3) / 3)
    assert metrics["micro_precision"] == pytest.approx(3 / 5)
    assert metrics["micro_recall"] == pytest.approx(3 / 4)
    assert metrics["micro_f1"] == pytest.approx(6 / 9)


def test_topic_metrics_leave_undefined_figures_out_of_the_average():
    truth = np.array([[1, 0, 0], [0, 0, 0]])
    predicted = np.array([[1, 0, 0], [0, 0, 1]])
    metrics = topic_metrics(truth, predicted)
    assert metrics["topics"]["humanitarian_aid"] == {"precision": None, "recall": None, "f1": None, "support": 0, "predicted": 0}
    assert metrics["topics"]["diplomatic_visit"]["f1"] == 0.0
    assert metrics["macro_f1"] == 0.5


def test_evaluation_report_covers_every_language_and_form(held_out, dev):
    test_split = split(dev, DEV_SPLIT_BOUNDS)["test"]
    assert held_out["test_items"] == len(test_split)
    assert set(held_out["per_language"]) == {e.lang for e in dev} == {"en", "fr", "es", "ru", "uk", "vi", "pl"}
    assert set(held_out["per_form"]) == set(DEV_FORMS)
    cells = {(row["topic"], row["lang"], row["form"]) for row in held_out["per_topic_language_form"]}
    assert {(t, e.lang, e.form) for e in test_split for t in TOPICS} == cells
    for topic in TOPICS:
        confusions = held_out["confusions"][topic]
        assert all(record["title"] for record in confusions["false_positives"] + confusions["false_negatives"])
    table = format_report(held_out, "held out")
    assert "macro-F1" in table and "micro precision" in table and "worst confusions" in table
    json.dumps(held_out)  # the report is written as JSON as it is


def test_held_out_quality_holds_its_measured_floor_and_beats_keywords(held_out):
    """The development set's test half, scored as the pipeline scores items. The issue's targets (macro-F1
    TARGET_MACRO_F1, precision TARGET_MICRO_PRECISION) are not all met yet: `make eval` prints which; this test
    keeps the model from falling below what it measured when it was last trained (MODEL_CARD.md)."""
    assert held_out["metrics"]["macro_f1"] >= FLOOR_MACRO_F1
    assert held_out["metrics"]["micro_precision"] >= FLOOR_MICRO_PRECISION
    assert held_out["margin_over_baseline"]["macro_f1"] >= MIN_MARGIN_OVER_KEYWORDS
    assert set(held_out["targets"]["checks"]) >= {"macro_f1", "micro_precision", "form headline micro-F1", "form page micro-F1"}
