"""`make train`: fit the topic model on the training corpus, choose thresholds on the development set's
validation half, save it.

    python -m classifiers.train --out classifiers/model/topic_model.joblib

The estimator is fitted on the corpus's train + validation parts. Each topic's threshold is then chosen
on the validation half of the development set (classifiers/data/dev/: items in the forms real feeds
deliver), scored exactly as the pipeline scores an item (furniture removed, passage-aware). Neither the
corpus's test part nor the development set's test half is read here: they are `make eval`'s.

Deterministic: the splits are fixed by example ids and the estimator is seeded, so the same data and
seed give the same model and the same scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import sklearn
from sklearn.metrics import precision_recall_curve
from threadpoolctl import threadpool_limits

from classifiers import TOPICS
from classifiers.corpus import (
    CORPUS_DIR,
    DEV_DIR,
    DEV_SPLIT_BOUNDS,
    Example,
    corpus_hash,
    label_matrix,
    load_corpus,
    load_dev,
    model_input,
    split,
)
from classifiers.evaluate import topic_metrics
from classifiers.passages import passage_spans
from classifiers.topic_model import DEFAULT_MODEL_PATH, SHAPES, TopicModel, build_estimator

SEED = 20261127
TARGET_PRECISION = 0.95
# Only used where a topic has no positive example to tune on (a tiny or broken corpus).
FALLBACK_THRESHOLD = 0.5
# Fewer positives than this in one shape's validation items is too few to set that shape's own threshold.
MIN_SHAPE_POSITIVES = 10


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


def rounded(metrics: dict) -> dict:
    """Metric dicts with floats cut to 4 decimals, for the model's metadata."""
    if isinstance(metrics, dict):
        return {key: rounded(value) for key, value in metrics.items()}
    return round(metrics, 4) if isinstance(metrics, float) else metrics


def choose_thresholds(truth: np.ndarray, scores: np.ndarray, shapes: list[str]) -> dict[str, dict[str, float]]:
    """Each shape's threshold per topic (see topic_model.SHAPES), chosen on that shape's items; a shape with fewer
    than MIN_SHAPE_POSITIVES positives of a topic takes the threshold chosen over all items instead."""
    pooled = [choose_threshold(truth[:, k], scores[:, k]) for k in range(len(TOPICS))]
    thresholds = {}
    for shape in SHAPES:
        rows = np.array([item_shape == shape for item_shape in shapes], dtype=bool)
        thresholds[shape] = {
            label: round(
                choose_threshold(truth[rows, k], scores[rows, k]) if truth[rows, k].sum() >= MIN_SHAPE_POSITIVES else pooled[k], 4
            )
            for k, label in enumerate(TOPICS)
        }
    return thresholds


def fitting_set(examples: list[Example]) -> tuple[list[str], np.ndarray]:
    """The texts and 0/1 labels the estimator is fitted on: every example, and each passage (with its headline) of
    an example that carries no topic. Passage-aware scoring asks the model about single paragraphs; a long page
    with no topic teaches it that none of its paragraphs carries one either. (A page with a topic says nothing
    about which of its paragraphs carries it, so its passages are not added.)"""
    texts = [example.content for example in examples]
    truth = label_matrix(examples)
    extra = []
    for example in examples:
        title, text = example.parts
        spans = passage_spans(text)
        if not example.labels and len(spans) > 1:
            extra += [model_input(title, text[start:end]) for start, end in spans]
    return texts + extra, np.vstack([truth, np.zeros((len(extra), len(TOPICS)), dtype=int)])


def train(corpus_dir: Path = CORPUS_DIR, dev_dir: Path = DEV_DIR, seed: int = SEED) -> TopicModel:
    """The corpus under `corpus_dir` and the development set under `dev_dir` -> a fitted TopicModel."""
    # The solver's dense steps are tiny; BLAS worker threads only fight over the cores
    # (3.5 s instead of 0.1 s per fit on a busy 2-core machine).
    with threadpool_limits(limits=1):
        return _train(corpus_dir, dev_dir, seed)


def _train(corpus_dir: Path, dev_dir: Path, seed: int) -> TopicModel:
    examples = load_corpus(corpus_dir)
    parts = split(examples)
    fitted_on = parts["train"] + parts["validation"]
    estimator = build_estimator(seed)
    estimator.fit(*fitting_set(fitted_on))
    dev = load_dev(dev_dir)
    validation = split(dev, DEV_SPLIT_BOUNDS)["validation"]
    unthresholded = TopicModel(estimator, {shape: dict.fromkeys(TOPICS, 1.0) for shape in SHAPES}, {})
    scores, shapes = unthresholded.scored([example.parts for example in validation])
    truth = label_matrix(validation)
    thresholds = choose_thresholds(truth, scores, shapes)
    data_hash = corpus_hash(examples + dev)
    metadata = {
        "version": f"topics-{data_hash[:8]}",
        "sklearn_version": sklearn.__version__,
        "training_data_hash": data_hash,
        "seed": seed,
        "examples": {name: len(part) for name, part in parts.items()},
        "fitted_on": ["train", "validation"],
        "thresholds_chosen_on": f"development set validation half ({len(validation)} items)",
        "labels": list(TOPICS),
        "target_precision": TARGET_PRECISION,
        # What the chosen thresholds gave where they were chosen; the held-out figures are `make eval`'s.
    }
    model = TopicModel(estimator, thresholds, metadata)
    metadata["validation_metrics"] = rounded(topic_metrics(truth, model.asserted(scores, shapes)))
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=CORPUS_DIR)
    parser.add_argument("--dev", type=Path, default=DEV_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    args = parser.parse_args(argv)
    model = train(args.corpus, args.dev)
    model.save(args.out)
    tuned = model.metadata["validation_metrics"]
    print(f"saved {args.out} ({model.version}); corpus {model.metadata['examples']}, fitted on train + validation")
    print(f"thresholds (per item shape) {json.dumps(model.thresholds)}, chosen on the {model.metadata['thresholds_chosen_on']}")
    print(f"there: macro-F1 {tuned['macro_f1']:.3f}, micro precision {tuned['micro_precision']:.3f}")


if __name__ == "__main__":
    main()
