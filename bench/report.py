"""`make bench`'s verdicts and its Markdown: each issue target against what bench.run measured."""

from __future__ import annotations

LARGE = 100_000  # sizes from here on run `--large-runs` times
# The issues' targets, on 2 cores.
MAX_RATIO = 1.0  # batch wall time / bare fetch+parse reference, at 20,000 items
LATENCY_SLACK_S = 2.0  # stream p95 <= poll interval + this
MAX_STATE_BYTES = 200  # dedup state per remembered item
# Issue 16's story targets.
MIN_COPY_RECALL = 0.99  # in every read order
MAX_FALSE_MERGES = 0.001  # of distinct items, at the largest story size
MAX_STORY_STATE_BYTES = 300
MAX_RSS_MIB = 2048  # peak memory at 100,000 items


def targets(results: dict) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each of the issue's targets; met is None where it was not measured."""
    by_size = {row["items"]: row for row in results["batch"]}
    stream = results["stream"]
    limit = stream["poll_interval_s"] + LATENCY_SLACK_S
    checks = [
        (
            f"batch ratio <= {MAX_RATIO} at 20,000 items",
            by_size.get(20_000, {}).get("ratio_pipeline_to_reference"),
            "",
            MAX_RATIO,
        ),
        (f"stream alert p95 <= {limit:g} s", stream["alert_p95_s"], " s", limit),
        (
            f"stream alert p95 with a dead webhook sink <= {limit:g} s",
            results.get("stream_dead_sink", {}).get("alert_p95_s"),
            " s",
            limit,
        ),
        (
            f"dedup state <= {MAX_STATE_BYTES} bytes/item",
            results["dedup_state"]["all_dedup_state_bytes_per_item_in_stream"],
            " bytes",
            MAX_STATE_BYTES,
        ),
        (f"peak memory <= {MAX_RSS_MIB} MiB at {LARGE:,} items", by_size.get(LARGE, {}).get("peak_rss_mib"), " MiB", MAX_RSS_MIB),
        *story_checks(results.get("stories")),
    ]
    return [
        (target, "not measured", None) if value is None else (target, f"{abs(value)}{unit}", value <= bound)
        for target, value, unit, bound in checks
    ]


def story_checks(story: dict | None) -> list[tuple[str, float | None, str, float]]:
    """(target, value, unit, bound) rows for issue 16; a value of None is not measured. Larger is worse for all but
    recall, whose value is given negated."""
    rows = (story or {}).get("this", [])
    largest = rows[-1] if rows else {}
    recall = min((o["copy_recall"] for row in rows for o in row["orders"].values()), default=None)
    replay = next((row["replay"]["lost_items"] for row in rows if "replay" in row), None)
    return [
        (
            f"story copy recall >= {MIN_COPY_RECALL} in every read order",
            None if recall is None else -recall,
            "",
            -MIN_COPY_RECALL,
        ),
        (
            f"story false merges <= {MAX_FALSE_MERGES:.1%} of distinct items at {largest.get('items', 0):,} items",
            max((o["false_merge_rate"] for o in largest.get("orders", {}).values()), default=None),
            "",
            MAX_FALSE_MERGES,
        ),
        ("no distinct item lost in the sentence-sharing replay", replay, " lost", 0),
        (
            f"story stage state <= {MAX_STORY_STATE_BYTES} bytes/item",
            (largest.get("state") or {}).get("near_duplicate_stage_bytes_per_item"),
            " bytes",
            MAX_STORY_STATE_BYTES,
        ),
    ]


def story_lines(story: dict | None) -> list[str]:
    lines = []
    for label, rows in (story or {}).items():
        for row in rows:
            orders = "; ".join(
                f"{name}: copy recall {o['copy_recall']}, {o['false_merged_items']} of {o['distinct_items']} distinct items "
                f"merged ({o['false_merge_rate']:.2%}), {o['split_stories']} stories split"
                for name, o in row["orders"].items()
            )
            extra = f"; replay of {row['replay']['items']} items: {row['replay']['lost_items']} lost" if "replay" in row else ""
            lines.append(
                f"Stories ({label}) at {row['items']} items: {orders}; story stage {row['story_stage_items_per_s']} items/s, "
                f"Deduplicate {row['deduplicate_items_per_s']} items/s{extra}."
            )
    return lines


def markdown(results: dict) -> str:
    lines = [
        f"Measured {results['date']} on {results['cores']} cores; timings are medians of the runs shown.",
        "",
        "| items | feeds | runs | newswatch s | reference s | ratio | newswatch items/s | reference items/s | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["batch"]:
        lines.append(
            f"| {row['items']} | {row['feeds']} | {row['runs']} | {row['pipeline_s']} | {row['reference_s']} "
            f"| {row['ratio_pipeline_to_reference']} | {row['pipeline_items_per_s']} | {row['reference_items_per_s']} "
            f"| {row['peak_rss_mib']} |"
        )
    a, s, d = results["annotation"], results["stream"], results["dedup_state"]
    lines += [
        "",
        f"Annotation alone: classifier {a['classifier_items_per_s']} items/s, actor matcher {a['matcher_items_per_s']} items/s.",
        f"Stream latency (poll interval {s['poll_interval_s']} s, {s['items']} items): item line p50 {s['item_p50_s']} s, "
        f"p95 {s['item_p95_s']} s; alert line p50 {s['alert_p50_s']} s, p95 {s['alert_p95_s']} s ({s['alerts_seen']} alerts).",
        *(
            [
                f"With a dead webhook sink (closed port, max_attempts 60): alert line p50 {ds['alert_p50_s']} s, "
                f"p95 {ds['alert_p95_s']} s ({ds['alerts_seen']} alerts)."
            ]
            if (ds := results.get("stream_dead_sink"))
            else []
        ),
        f"Dedup state ({d['items']} items): {d['near_duplicate_stage_bytes_per_item']} bytes/item in the near-duplicate "
        f"steps, {d['all_dedup_state_bytes_per_item_in_stream']} bytes/item for all of Deduplicate in stream mode.",
    ]
    lines += [f"Fetching {row['feeds']} feeds, {row['scenario']}: {row['feeds_per_s']} feeds/s." for row in results["fetching"]]
    lines += [
        f"Stories at {row['items']} items (first run): {st['copies_merged']} of {st['copies']} republished copies joined their "
        f"original's story; {st['distinct_merged']} of {st['distinct']} distinct items ({st['distinct_merged'] / st['distinct']:.1%}) "
        "were merged into another story (they share paragraphs, none is a copy)."
        for row in results["batch"]
        for st in [row["stories_first_run"]]
    ]
    lines += story_lines(results.get("stories"))
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [
        f"| {target} | {measured} | {'n/a' if met is None else 'yes' if met else 'no'} |"
        for target, measured, met in targets(results)
    ]
    return "\n".join(lines) + "\n"
