"""`make eval`: the topic model and the keyword baseline, side by side, on the held-out test split.

    python -m classifiers.evaluate --model classifiers/model/topic_model.joblib [--out evaluation.json]

The test split (see corpus.split) is never used for training or for choosing thresholds.
Prints per-topic precision, recall and F1, macro-F1, micro precision, per-language and
per-form F1, the worst confusions with their texts, and the model's throughput; writes the
same as JSON (by default `evaluation.json` beside the model).
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
from classifiers.corpus import CORPUS_DIR, Example, corpus_hash, label_matrix, load_corpus, split
from classifiers.keyword_baseline import KeywordBaseline
from classifiers.topic_model import DEFAULT_MODEL_PATH, ModelLoadError, TopicModel, load_model

# The bar: macro-F1 over the three topics, and the share of asserted topics that are right.
TARGET_MACRO_F1 = 0.90
TARGET_MICRO_PRECISION = 0.95
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


def bootstrap_intervals(truth: np.ndarray, predicted: np.ndarray, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> dict:
    """95% intervals for macro-F1 and micro precision, from resampling the items with replacement.

    With a test split of a couple of hundred items a figure moves by a few points when a
    handful of items change: the interval says how far to trust the third decimal.
    """
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {"macro_f1": [], "micro_precision": []}
    for _ in range(rounds):
        rows = rng.integers(0, len(truth), len(truth))
        metrics = topic_metrics(truth[rows], predicted[rows])
        for key, values in samples.items():
            if metrics[key] is not None:
                values.append(metrics[key])
    return {key: [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] for key, values in samples.items()}


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
            "f1": {label: m["f1"] for label, m in metrics["topics"].items()},
        }
    return result


def worst_confusions(
    examples: list[Example], truth: np.ndarray, scores: np.ndarray, thresholds: dict[str, float], per_kind: int
) -> dict[str, dict[str, list[dict]]]:
    """Per topic, the false positives with the highest scores and the false negatives with the lowest.

    `scores` holds the model's probability per item and topic; an item is asserted where its
    score reaches the topic's threshold, as in TopicModel.predict.
    """
    result = {}
    for k, label in enumerate(TOPICS):
        asserted = scores[:, k] >= thresholds[label]
        false_positives = [i for i in np.argsort(-scores[:, k], kind="stable") if asserted[i] and not truth[i, k]]
        false_negatives = [i for i in np.argsort(scores[:, k], kind="stable") if truth[i, k] and not asserted[i]]
        result[label] = {
            "threshold": thresholds[label],
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


def evaluate(model: TopicModel, examples: list[Example], throughput_texts: list[tuple[str, str]] | None = None) -> dict:
    """The model and the keyword baseline on `examples` (the test split) -> the report as a dict.

    Throughput is measured on `throughput_texts` where given, and left out otherwise.
    """
    texts = [example.content for example in examples]
    truth = label_matrix(examples)
    predictions = model.predict([example.parts for example in examples])
    scores = np.array([[p.scores[label] for label in TOPICS] for p in predictions]).reshape(-1, len(TOPICS))
    predicted = topic_matrix([p.topics for p in predictions])
    baseline = topic_matrix(KeywordBaseline().predict(texts))
    model_metrics = topic_metrics(truth, predicted)
    baseline_metrics = topic_metrics(truth, baseline)
    languages = [example.lang for example in examples]
    forms = [example.form for example in examples]
    report = {
        "model": {
            "version": model.version,
            "thresholds": model.thresholds,
            "fitted_on": model.metadata.get("fitted_on"),
            "split_sizes": model.metadata.get("examples"),
        },
        "test_items": len(examples),
        "targets": {
            "macro_f1": TARGET_MACRO_F1,
            "micro_precision": TARGET_MICRO_PRECISION,
            "met": meets_targets(model_metrics),
        },
        "metrics": model_metrics,
        "metrics_95_interval": bootstrap_intervals(truth, predicted),
        "baseline_metrics": baseline_metrics,
        "margin_over_baseline": {
            key: model_metrics[key] - baseline_metrics[key] for key in ("macro_f1", "micro_precision", "micro_f1")
        },
        "per_language": group_metrics(languages, truth, predicted),
        "baseline_per_language": group_metrics(languages, truth, baseline),
        "per_form": group_metrics(forms, truth, predicted),
        "baseline_per_form": group_metrics(forms, truth, baseline),
        "confusions": worst_confusions(examples, truth, scores, model.thresholds, CONFUSIONS_PER_KIND),
    }
    if throughput_texts:
        report["throughput"] = measure_throughput(model, throughput_texts)
    return report


def topic_matrix(topic_sets: list[tuple[str, ...]]) -> np.ndarray:
    """Asserted topics per item -> 0/1 matrix (items x TOPICS), like corpus.label_matrix."""
    return np.array([[label in topics for label in TOPICS] for topics in topic_sets], dtype=int).reshape(-1, len(TOPICS))


def meets_targets(metrics: dict) -> bool:
    return (metrics["macro_f1"] or 0) >= TARGET_MACRO_F1 and (metrics["micro_precision"] or 0) >= TARGET_MICRO_PRECISION


def fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


def format_report(report: dict) -> str:
    """The report as the table `make eval` prints."""
    model, base = report["metrics"], report["baseline_metrics"]
    lines = [
        f"Held-out test split: {report['test_items']} items, never used for training or thresholds",
        f"model {report['model']['version']}, fitted on {' + '.join(report['model']['fitted_on'] or [])}, "
        f"split sizes {report['model']['split_sizes']}",
        "thresholds " + ", ".join(f"{label} {value:.3f}" for label, value in report["model"]["thresholds"].items()),
        "",
        f"{'topic':<18} {'support':>7} | {'model P':>7} {'R':>6} {'F1':>6} | {'keywords P':>10} {'R':>6} {'F1':>6}",
    ]
    for label in TOPICS:
        m, b = model["topics"][label], base["topics"][label]
        lines.append(
            f"{label:<18} {m['support']:>7} | {fmt(m['precision']):>7} {fmt(m['recall']):>6} {fmt(m['f1']):>6} | "
            f"{fmt(b['precision']):>10} {fmt(b['recall']):>6} {fmt(b['f1']):>6}"
        )
    for key, name in (
        ("macro_f1", "macro-F1"),
        ("micro_precision", "micro precision"),
        ("micro_recall", "micro recall"),
        ("micro_f1", "micro-F1"),
    ):
        lines.append(f"{name:<18} {'':>7} | {fmt(model[key]):>21} | {fmt(base[key]):>24}")
    for title, ours, theirs in (("language", "per_language", "baseline_per_language"), ("form", "per_form", "baseline_per_form")):
        lines += [
            "",
            f"{'per ' + title:<18} {'items':>7} | {'model macro-F1':>14} {'micro-F1':>8} | {'keywords macro-F1':>17} {'micro-F1':>8}",
        ]
        for group, m in report[ours].items():
            b = report[theirs][group]
            lines.append(
                f"{group:<18} {m['items']:>7} | {fmt(m['macro_f1']):>14} {fmt(m['micro_f1']):>8} | "
                f"{fmt(b['macro_f1']):>17} {fmt(b['micro_f1']):>8}"
            )
    margin = report["margin_over_baseline"]
    targets = report["targets"]
    interval = report["metrics_95_interval"]
    lines += [
        "",
        "95% bootstrap intervals: macro-F1 {:.3f}-{:.3f}, micro precision {:.3f}-{:.3f}".format(
            *interval["macro_f1"], *interval["micro_precision"]
        ),
        f"targets: macro-F1 >= {targets['macro_f1']:.2f} and micro precision >= {targets['micro_precision']:.2f}: "
        + ("met" if targets["met"] else "NOT MET"),
        f"margin over keywords: macro-F1 {margin['macro_f1']:+.3f}, micro precision {margin['micro_precision']:+.3f}, "
        f"micro-F1 {margin['micro_f1']:+.3f}",
    ]
    if "throughput" in report:
        t = report["throughput"]
        lines.append(
            f"throughput: {t['items_per_s']:.0f} items/s (model.predict alone, batches of {t['batch_size']}, "
            f"median of {len(t['runs_items_per_s'])} passes over {t['items_per_run']} items, {t['cpu_count']} cores)"
        )
    lines += ["", "worst confusions (score vs threshold)"]
    for label, found in report["confusions"].items():
        lines.append(
            f"{label} (threshold {found['threshold']:.3f}): {found['false_positive_count']} false positives, "
            f"{found['false_negative_count']} false negatives"
        )
        for kind, sign in (("false_positives", "FP"), ("false_negatives", "FN")):
            for record in found[kind]:
                text = " ".join(record["text"].split())[:120]
                lines.append(
                    f"  {sign} {record['score']:.3f} {record['id']} [{record['form']}] labels={record['labels'] or '[]'}: "
                    f"{record['title']}" + (f" | {text}" if text else "")
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--corpus", type=Path, default=CORPUS_DIR)
    parser.add_argument("--out", type=Path, help="where to write the JSON report (default: evaluation.json beside the model)")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model)
    except ModelLoadError as err:
        print(f"evaluate: {err}", file=sys.stderr)
        return 2
    examples = load_corpus(args.corpus)
    if model.metadata.get("training_data_hash") != corpus_hash(examples):
        print(f"evaluate: {args.model} was trained on another version of the corpus; run `make train` first", file=sys.stderr)
        return 2
    report = evaluate(model, split(examples)["test"], throughput_texts=[example.parts for example in examples])
    out = args.out or args.model.parent / "evaluation.json"
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(format_report(report))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
