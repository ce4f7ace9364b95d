"""`make train`: fit the topic model on the train split, tune thresholds on validation, save it.

Deterministic: the split is fixed by example ids and the estimator is seeded, so the same
corpus gives the same model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import sklearn
from sklearn.metrics import precision_recall_curve

from classifiers import TOPICS
from classifiers.corpus import CORPUS_DIR, Example, corpus_hash, load_corpus, split
from classifiers.topic_model import DEFAULT_MODEL_PATH, TopicModel, build_estimator

SEED = 20261127
TARGET_PRECISION = 0.95
FALLBACK_THRESHOLD = 0.5


def label_matrix(examples: list[Example]) -> np.ndarray:
    return np.array([[label in example.labels for label in TOPICS] for example in examples], dtype=int)


def choose_threshold(truth: np.ndarray, scores: np.ndarray, target_precision: float = TARGET_PRECISION) -> float:
    """The lowest threshold whose precision reaches the target; where none does, the best-F1 one."""
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


def train(corpus_dir: Path = CORPUS_DIR, seed: int = SEED) -> TopicModel:
    examples = load_corpus(corpus_dir)
    parts = split(examples)
    estimator = build_estimator(seed)
    estimator.fit([e.content for e in parts["train"]], label_matrix(parts["train"]))
    validation_scores = estimator.predict_proba([e.content for e in parts["validation"]])
    validation_truth = label_matrix(parts["validation"])
    thresholds = {
        label: round(choose_threshold(validation_truth[:, k], validation_scores[:, k]), 4)
        for k, label in enumerate(TOPICS)
    }
    data_hash = corpus_hash(examples)
    metadata = {
        "version": f"topics-{data_hash[:8]}",
        "sklearn_version": sklearn.__version__,
        "training_data_hash": data_hash,
        "seed": seed,
        "examples": {name: len(part) for name, part in parts.items()},
        "labels": list(TOPICS),
    }
    return TopicModel(estimator, thresholds, metadata)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=CORPUS_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    args = parser.parse_args(argv)
    model = train(args.corpus)
    model.save(args.out)
    print(f"saved {args.out} ({model.version}); examples {model.metadata['examples']}")
    print(f"thresholds {json.dumps(model.thresholds)}")


if __name__ == "__main__":
    main()
