"""The tables `make eval` prints, from the report `classifiers.evaluate.evaluate` returns."""

from __future__ import annotations

from classifiers import TOPICS


def fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


def fmt_interval(interval: list[float] | None) -> str:
    return "" if interval is None else f"{interval[0]:.2f}-{interval[1]:.2f}"


def format_report(report: dict, title: str) -> str:
    """The report as the tables `make eval` prints."""
    model, base = report["metrics"], report["baseline_metrics"]
    lines = [
        f"{title}: {report['test_items']} items, never used for training or thresholds",
        f"model {report['model']['version']}, fitted on the corpus's {' + '.join(report['model']['fitted_on'] or [])} "
        f"{report['model']['split_sizes']}, thresholds chosen on the {report['model']['thresholds_chosen_on']}",
        "thresholds "
        + "; ".join(
            f"{shape} items: " + ", ".join(f"{label} {value:.3f}" for label, value in by_topic.items())
            for shape, by_topic in report["model"]["thresholds"].items()
        ),
        "",
        f"{'topic':<18} {'support':>7} | {'model P':>7} {'(95%)':>9} {'R':>6} {'(95%)':>9} {'F1':>6} | "
        f"{'keywords P':>10} {'R':>6} {'F1':>6}",
    ]
    for label in TOPICS:
        m, b, cell = model["topics"][label], base["topics"][label], report["topic_intervals"][label]
        lines.append(
            f"{label:<18} {m['support']:>7} | {fmt(m['precision']):>7} {fmt_interval(cell['precision_95']):>9} "
            f"{fmt(m['recall']):>6} {fmt_interval(cell['recall_95']):>9} {fmt(m['f1']):>6} | "
            f"{fmt(b['precision']):>10} {fmt(b['recall']):>6} {fmt(b['f1']):>6}"
        )
    interval = report["metrics_95_interval"]
    for key, name in (
        ("macro_f1", "macro-F1"),
        ("micro_precision", "micro precision"),
        ("micro_recall", "micro recall"),
        ("micro_f1", "micro-F1"),
    ):
        lines.append(
            f"{name:<18} {'':>7} | {fmt(model[key]):>7} {fmt_interval(interval.get(key)):>9} {'':>33} | {fmt(base[key]):>24}"
        )
    for group, ours, theirs in (("language", "per_language", "baseline_per_language"), ("form", "per_form", "baseline_per_form")):
        lines += [
            "",
            f"{'per ' + group:<18} {'items':>7} | {'macro-F1':>8} {'micro P':>7} {'R':>6} {'F1':>6} {'(95%)':>9} | "
            f"{'keywords micro-F1':>17}",
        ]
        for name, m in report[ours].items():
            lines.append(
                f"{name:<18} {m['items']:>7} | {fmt(m['macro_f1']):>8} {fmt(m['micro_precision']):>7} {fmt(m['micro_recall']):>6} "
                f"{fmt(m['micro_f1']):>6} {fmt_interval(m['micro_f1_95']):>9} | {fmt(report[theirs][name]['micro_f1']):>17}"
            )
    lines += ["", "topic x language x form: F1 (positives, precision, recall, 95% intervals of P and R)"]
    lines.append(f"{'lang':<5} {'form':<11} {'items':>5} | " + " | ".join(f"{label:^38}" for label in TOPICS))
    cube = report["per_topic_language_form"]
    for at in range(0, len(cube), len(TOPICS)):
        cells = cube[at : at + len(TOPICS)]
        lines.append(
            f"{cells[0]['lang']:<5} {cells[0]['form']:<11} {cells[0]['items']:>5} | "
            + " | ".join(
                f"{fmt(c['f1']):>5} ({c['support']:>2}, P {fmt(c['precision'])} {fmt_interval(c['precision_95']):>9}, "
                f"R {fmt(c['recall'])})"
                for c in cells
            )
        )
    lines += ["", "targets:"]
    for name, check in report["targets"]["checks"].items():
        lines.append(f"  {name:<28} >= {check['target']:.2f}: {fmt(check['measured'])} {'met' if check['met'] else 'NOT MET'}")
    margin = report["margin_over_baseline"]
    lines.append(
        f"margin over keywords: macro-F1 {margin['macro_f1']:+.3f}, micro precision {margin['micro_precision']:+.3f}, "
        f"micro-F1 {margin['micro_f1']:+.3f}"
    )
    if "throughput" in report:
        t = report["throughput"]
        lines.append(
            f"throughput: {t['items_per_s']:.0f} items/s (model.predict alone, batches of {t['batch_size']}, "
            f"median of {len(t['runs_items_per_s'])} passes over {t['items_per_run']} items, {t['cpu_count']} cores)"
        )
    lines += ["", "worst confusions (score vs threshold)"]
    for label, found in report["confusions"].items():
        lines.append(
            f"{label} (thresholds {', '.join(f'{shape} {value:.3f}' for shape, value in found['threshold'].items())}): "
            f"{found['false_positive_count']} false positives, "
            f"{found['false_negative_count']} false negatives"
        )
        for kind, sign in (("false_positives", "FP"), ("false_negatives", "FN")):
            for record in found[kind]:
                text = " ".join(record["text"].split())[:120]
                lines.append(
                    f"  {sign} {record['score']:.3f} {record['id']} [{record['lang']} {record['form']}] "
                    f"labels={record['labels'] or '[]'}: {record['title']}" + (f" | {text}" if text else "")
                )
    return "\n".join(lines)
