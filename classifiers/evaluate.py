"""`make eval`: the topic model and the keyword baseline on held-out data, side by side.

    python -m classifiers.evaluate --model classifiers/model/topic_model.joblib [--out evaluation.json]

The figures that count are on the test half of the development set (classifiers/data/dev/: items in
the forms real feeds deliver), which is never fitted on and never used to choose thresholds. Printed:
per-topic precision, recall and F1 with 95% intervals, macro-F1, micro precision, every language and
every form, the full topic x language x form table (with the interval its sample size allows), the
issue's targets, the worst confusions with their texts, and the model's throughput. The corpus's own
test part is reported after it. Everything is written as JSON (by default `evaluation.json` beside
the model).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

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
    split,
)
from classifiers.keyword_baseline import KeywordBaseline
from classifiers.report import format_report
from classifiers.topic_model import DEFAULT_MODEL_PATH, ModelLoadError, TopicModel, load_model

# The bar, on the development set's test half: macro-F1 over the three topics, the share of
# asserted topics that are right, and micro-F1 in every language, on bare headlines and on long pages.
TARGET_MACRO_F1 = 0.93
TARGET_MICRO_PRECISION = 0.96
TARGET_LANGUAGE_F1 = 0.88
TARGET_FORM_F1 = {"headline": 0.85, "page": 0.92}
Z_95 = 1.96
THROUGHPUT_BATCH = 500
THROUGHPUT_ITEMS = 2000
THROUGHPUT_REPEATS = 5
CONFUSIONS_PER_KIND = 3
SNIPPET_CHARS = 240
BOOTSTRAP_ROUNDS = 1000


def ratio(numerator: int, denominator: int) -> float | None:
    """numerator / denominator, or None where the denominator is 0 (the figure is undefined)."""
    return numerator / denominator if denominator else None


def topic_metrics(truth: np.ndarray, predicted: np.ndarray, labels: tuple[str, ...] = TOPICS) -> dict:
    """0/1 matrices (items x topics) -> per-topic and overall precision, recall and F1.

    Returns {"topics": {label: {precision, recall, f1, support, predicted}}, "macro_f1",
    "micro_precision", "micro_recall", "micro_f1"}. A figure with nothing to count (no
    assertion for precision; nothing to find and nothing asserted for F1) is None, and
    macro-F1 averages the topics whose F1 is defined.
    """
    truth, predicted = truth.astype(bool), predicted.astype(bool)
    tp = [int(n) for n in (truth & predicted).sum(axis=0)]
    fp = [int(n) for n in (~truth & predicted).sum(axis=0)]
    fn = [int(n) for n in (truth & ~predicted).sum(axis=0)]
    per_topic = {
        label: {
            "precision": ratio(tp[k], tp[k] + fp[k]),
            "recall": ratio(tp[k], tp[k] + fn[k]),
            "f1": ratio(2 * tp[k], 2 * tp[k] + fp[k] + fn[k]),
            "support": tp[k] + fn[k],
            "predicted": tp[k] + fp[k],
        }
        for k, label in enumerate(labels)
    }
    defined_f1 = [m["f1"] for m in per_topic.values() if m["f1"] is not None]
    all_tp, all_fp, all_fn = sum(tp), sum(fp), sum(fn)
    return {
        "topics": per_topic,
        "macro_f1": sum(defined_f1) / len(defined_f1) if defined_f1 else None,
        "micro_precision": ratio(all_tp, all_tp + all_fp),
        "micro_recall": ratio(all_tp, all_tp + all_fn),
        "micro_f1": ratio(2 * all_tp, 2 * all_tp + all_fp + all_fn),
    }


def wilson(successes: int, trials: int) -> list[float] | None:
    """The 95% Wilson score interval of a proportion: honest for the small counts of one table cell."""
    if not trials:
        return None
    p, z2 = successes / trials, Z_95**2
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = Z_95 * np.sqrt(p * (1 - p) / trials + z2 / (4 * trials**2)) / (1 + z2 / trials)
    return [round(float(centre - half), 4), round(float(centre + half), 4)]


def cell_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """One topic's 0/1 truth and predictions -> counts, precision, recall, F1 and Wilson intervals."""
    truth, predicted = truth.astype(bool), predicted.astype(bool)
    tp, fp, fn = int((truth & predicted).sum()), int((~truth & predicted).sum()), int((truth & ~predicted).sum())
    return {
        "items": len(truth),
        "support": tp + fn,
        "predicted": tp + fp,
        "precision": ratio(tp, tp + fp),
        "precision_95": wilson(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "recall_95": wilson(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
    }


def topic_cube(examples: list[Example], truth: np.ndarray, predicted: np.ndarray) -> list[dict]:
    """One row per topic x language x form that has items: the cell's figures with their intervals."""
    rows = []
    for lang in sorted({e.lang for e in examples}):
        for form in sorted({e.form for e in examples}):
            picked = [i for i, e in enumerate(examples) if e.lang == lang and e.form == form]
            if picked:
                for k, label in enumerate(TOPICS):
                    rows.append(
                        {"topic": label, "lang": lang, "form": form, **cell_metrics(truth[picked, k], predicted[picked, k])}
                    )
    return rows


def bootstrap_intervals(
    truth: np.ndarray,
    predicted: np.ndarray,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
    keys: tuple[str, ...] = ("macro_f1", "micro_precision", "micro_f1"),
) -> dict:
    """95% intervals for overall figures (macro-F1, micro precision, micro-F1), from resampling the items.

    With a test split of a couple of hundred items a figure moves by a few points when a
    handful of items change: the interval says how far to trust the third decimal.
    """
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {key: [] for key in keys}
    for _ in range(rounds):
        rows = rng.integers(0, len(truth), len(truth))
        metrics = topic_metrics(truth[rows], predicted[rows])
        for key, values in samples.items():
            if metrics[key] is not None:
                values.append(metrics[key])
    return {
        key: [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)] if values else None
        for key, values in samples.items()
    }


def group_metrics(groups: list[str], truth: np.ndarray, predicted: np.ndarray) -> dict[str, dict]:
    """A group name per item (its language, its form) -> {group: {items, macro_f1, micro_f1, f1 per topic}}."""
    result = {}
    for group in sorted(set(groups)):
        rows = [i for i, name in enumerate(groups) if name == group]
        metrics = topic_metrics(truth[rows], predicted[rows])
        result[group] = {
            "items": len(rows),
            "macro_f1": metrics["macro_f1"],
            "micro_f1": metrics["micro_f1"],
            "micro_precision": metrics["micro_precision"],
            "micro_recall": metrics["micro_recall"],
            "micro_f1_95": bootstrap_intervals(truth[rows], predicted[rows], keys=("micro_f1",), rounds=300)["micro_f1"],
            "f1": {label: m["f1"] for label, m in metrics["topics"].items()},
        }
    return result


def worst_confusions(
    examples: list[Example], truth: np.ndarray, scores: np.ndarray, predicted: np.ndarray, thresholds: dict, per_kind: int
) -> dict[str, dict[str, list[dict]]]:
    """Per topic, the false positives with the highest scores and the false negatives with the lowest.

    `scores` holds the model's probability per item and topic, `predicted` what it asserted (each item
    against its shape's threshold, as in TopicModel.predict).
    """
    result = {}
    for k, label in enumerate(TOPICS):
        asserted = predicted[:, k].astype(bool)
        false_positives = [i for i in np.argsort(-scores[:, k], kind="stable") if asserted[i] and not truth[i, k]]
        false_negatives = [i for i in np.argsort(scores[:, k], kind="stable") if truth[i, k] and not asserted[i]]
        result[label] = {
            "threshold": {shape: by_topic[label] for shape, by_topic in thresholds.items()},
            "false_positives": [confusion_record(examples[i], scores[i, k]) for i in false_positives[:per_kind]],
            "false_negatives": [confusion_record(examples[i], scores[i, k]) for i in false_negatives[:per_kind]],
            "false_positive_count": len(false_positives),
            "false_negative_count": len(false_negatives),
        }
    return result


def confusion_record(example: Example, score: float) -> dict:
    return {
        "id": example.id,
        "lang": example.lang,
        "form": example.form,
        "labels": list(example.labels),
        "score": round(float(score), 4),
        "title": example.title,
        "text": example.text[:SNIPPET_CHARS],
    }


def measure_throughput(
    model: TopicModel,
    texts: list[tuple[str, str]],
    batch_size: int = THROUGHPUT_BATCH,
    items: int = THROUGHPUT_ITEMS,
    repeats: int = THROUGHPUT_REPEATS,
) -> dict:
    """Items per second of model.predict alone, on `items` (title, text) pairs (cycled) in batches of `batch_size`.

    One untimed warm-up batch first; the figure is the median over `repeats` timed passes, so a
    neighbour briefly busy on a shared machine moves it less than a mean would.
    """
    sample = [texts[i % len(texts)] for i in range(items)]
    batches = [sample[start : start + batch_size] for start in range(0, items, batch_size)]
    model.predict(batches[0])
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for batch in batches:
            model.predict(batch)
        rates.append(items / (time.perf_counter() - started))
    return {
        "items_per_s": round(statistics.median(rates), 1),
        "runs_items_per_s": [round(rate, 1) for rate in rates],
        "batch_size": batch_size,
        "items_per_run": items,
        "cpu_count": os.cpu_count(),
    }


def evaluate(model: TopicModel, examples: list[Example], throughput_items: list[tuple[str, str]] | None = None) -> dict:
    """The model and the keyword baseline on held-out `examples` -> the report as a dict.

    Items are scored as the pipeline scores them (furniture removed, passage-aware). Throughput is
    measured on `throughput_items` where given, and left out otherwise.
    """
    truth = label_matrix(examples)
    predictions = model.predict([example.parts for example in examples])
    scores = np.array([[p.scores[label] for label in TOPICS] for p in predictions]).reshape(-1, len(TOPICS))
    predicted = topic_matrix([p.topics for p in predictions])
    baseline = topic_matrix(KeywordBaseline().predict([example.content for example in examples]))
    model_metrics = topic_metrics(truth, predicted)
    baseline_metrics = topic_metrics(truth, baseline)
    languages = [example.lang for example in examples]
    forms = [example.form for example in examples]
    per_language = group_metrics(languages, truth, predicted)
    per_form = group_metrics(forms, truth, predicted)
    report = {
        "model": {
            "version": model.version,
            "thresholds": model.thresholds,
            "thresholds_chosen_on": model.metadata.get("thresholds_chosen_on"),
            "fitted_on": model.metadata.get("fitted_on"),
            "split_sizes": model.metadata.get("examples"),
        },
        "test_items": len(examples),
        "targets": targets(model_metrics, per_language, per_form),
        "metrics": model_metrics,
        "metrics_95_interval": bootstrap_intervals(truth, predicted),
        "topic_intervals": {label: cell_metrics(truth[:, k], predicted[:, k]) for k, label in enumerate(TOPICS)},
        "baseline_metrics": baseline_metrics,
        "margin_over_baseline": {
            key: model_metrics[key] - baseline_metrics[key] for key in ("macro_f1", "micro_precision", "micro_f1")
        },
        "per_language": per_language,
        "baseline_per_language": group_metrics(languages, truth, baseline),
        "per_form": per_form,
        "baseline_per_form": group_metrics(forms, truth, baseline),
        "per_topic_language_form": topic_cube(examples, truth, predicted),
        "confusions": worst_confusions(examples, truth, scores, predicted, model.thresholds, CONFUSIONS_PER_KIND),
    }
    if throughput_items:
        report["throughput"] = measure_throughput(model, throughput_items)
    return report


def topic_matrix(topic_sets: list[tuple[str, ...]]) -> np.ndarray:
    """Asserted topics per item -> 0/1 matrix (items x TOPICS), like corpus.label_matrix."""
    return np.array([[label in topics for label in TOPICS] for topics in topic_sets], dtype=int).reshape(-1, len(TOPICS))


def targets(metrics: dict, per_language: dict, per_form: dict) -> dict:
    """Each of the issue's targets: the bar, the figure measured, and whether it is met (slices by micro-F1)."""
    checks = {
        "macro_f1": (TARGET_MACRO_F1, metrics["macro_f1"]),
        "micro_precision": (TARGET_MICRO_PRECISION, metrics["micro_precision"]),
        **{f"language {lang} micro-F1": (TARGET_LANGUAGE_F1, m["micro_f1"]) for lang, m in per_language.items()},
        **{f"form {form} micro-F1": (bar, per_form.get(form, {}).get("micro_f1")) for form, bar in TARGET_FORM_F1.items()},
    }
    found = {
        name: {"target": bar, "measured": value, "met": value is not None and value >= bar}
        for name, (bar, value) in checks.items()
    }
    return {"checks": found, "met": all(check["met"] for check in found.values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--corpus", type=Path, default=CORPUS_DIR)
    parser.add_argument("--dev", type=Path, default=DEV_DIR)
    parser.add_argument("--out", type=Path, help="where to write the JSON report (default: evaluation.json beside the model)")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model)
    except ModelLoadError as err:
        print(f"evaluate: {err}", file=sys.stderr)
        return 2
    examples, dev = load_corpus(args.corpus), load_dev(args.dev)
    if model.metadata.get("training_data_hash") != corpus_hash(examples + dev):
        print(f"evaluate: {args.model} was trained on other labeled data; run `make train` first", file=sys.stderr)
        return 2
    reports = {
        "development_test": evaluate(model, split(dev, DEV_SPLIT_BOUNDS)["test"], throughput_items=[e.parts for e in examples]),
        "corpus_test": evaluate(model, split(examples)["test"]),
    }
    out = args.out or args.model.parent / "evaluation.json"
    out.write_text(json.dumps(reports, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(format_report(reports["development_test"], "Development set, held-out test half"))
    print("\n" + "=" * 100 + "\n")
    print(format_report(reports["corpus_test"], "Training corpus, held-out test part"))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
