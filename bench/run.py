"""`make bench`: newswatch measured against a bare reference, in the same run, on this machine.

1. Batch replay: `newswatch run --mode batch` over N items served as feeds from 127.0.0.1,
   against the bare reference (fetch + feedparser.parse of the same feeds in a plain loop).
2. Scaling: the same at several sizes (start-up cost vs per-item cost).
3. Annotation: items/s of the topic model and of the actor matcher alone.
4. Stream latency: items added to a live feed (poll interval 2 s) until their item and alert lines are flushed;
   again with a dead webhook sink (a closed port, retried 60 times), which must not slow the alert lines.
5. Memory: peak resident memory of each batch run, and bytes of dedup state per remembered item
   (bench.stories replays the steps' state functions and encodes the state as the steps do).
7. Stories (bench.stories): copy recall in three read orders, false merges, splits, lost items in the
   sentence-sharing replay, items/s of the story stage and its state, on our own generated corpus.
6. Fetching: feeds polled per second over 20 loopback hosts, without and with the default per-host spacing
   (bench.fetch_throughput has more scenarios).
Timings are medians of several runs (the largest size runs once: see `--large-runs`), each checked
against the issue's targets. Results: bench/results.json and bench/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import requests

from bench import fetch_throughput, stories
from bench.corpus import feeds_of, generate, is_copy
from bench.report import LARGE, markdown
from classifiers.corpus import load_corpus, model_input
from classifiers.topic_model import DEFAULT_MODEL_PATH, load_model
from pipelines.actors import Matcher
from pipelines.config import DEFAULT_WATCHLIST, load_watchlist
from pipelines.sinks import ITEMS_FILE, read_json_lines
from tests.feedserver import Entry, FeedServer, rss

ROOT = Path(__file__).resolve().parent.parent
PER_FEED = 500
STATE_ITEMS = 10_000  # defaults of --state-items and --fetch-feeds
SETTLE_S = 8.0  # a stream item not written this long after its poll is not coming
FETCH_FEEDS = 200


def newswatch_run(config: Path, out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "run", "--feeds", str(config), "--out", str(out), *args]


def run_command(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak resident KiB of one child process."""
    started = time.perf_counter()
    child = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {status}")
    return time.perf_counter() - started, usage.ru_maxrss


def reference_seconds(urls: list[str]) -> float:
    """The bare reference: fetch and parse every feed in one plain Python loop."""
    started = time.perf_counter()
    with requests.Session() as session:
        for url in urls:
            feedparser.parse(session.get(url, timeout=30).content)
    return time.perf_counter() - started


def story_accuracy(entries: list, out: Path) -> dict:
    """How the story stage did on the bench corpus: republished copies should all join their original's
    story; distinct items (each shares some paragraphs with others, none is a copy) should all stay apart."""
    written = {record["url"] for record in read_json_lines(out / ITEMS_FILE)}
    copies = sum(1 for entry in entries if is_copy(entry.link))
    copies_written = sum(1 for url in written if is_copy(url))
    return {
        "copies": copies,
        "copies_merged": copies - copies_written,
        "distinct": len(entries) - copies,
        "distinct_merged": len(entries) - copies - (len(written) - copies_written),
    }


def batch_replay(n_items: int, runs: int, tmp: Path) -> dict:
    entries = generate(n_items)
    feeds = feeds_of(entries, PER_FEED)
    with FeedServer() as server:
        for path, body in feeds.items():
            server.serve(path, body)
        config = tmp / f"feeds-{n_items}.yaml"
        config.write_text(
            json.dumps({"feeds": [{"name": p.strip("/").removesuffix(".xml"), "url": server.url(p)} for p in feeds]})
        )
        reference = [reference_seconds([server.url(p) for p in feeds]) for _ in range(runs)]
        pipeline = [
            run_command(
                # One loopback host: the reference loop waits for nobody, so neither does newswatch here.
                newswatch_run(config, tmp / f"out-{n_items}-{k}", "--max-entries", str(PER_FEED), "--host-spacing", "0")
            )
            for k in range(runs)
        ]
    wall = statistics.median(seconds for seconds, _ in pipeline)
    ref = statistics.median(reference)
    return {
        "items": n_items,
        "feeds": len(feeds),
        "runs": runs,
        "pipeline_s": round(wall, 2),
        "reference_s": round(ref, 2),
        "pipeline_items_per_s": round(n_items / wall),
        "reference_items_per_s": round(n_items / ref),
        "ratio_pipeline_to_reference": round(wall / ref, 2),
        "peak_rss_mib": round(max(kib for _, kib in pipeline) / 1024),
        "stories_first_run": story_accuracy(entries, tmp / f"out-{n_items}-0"),
    }


def annotation_throughput(runs: int) -> dict:
    examples = load_corpus()
    items = [e.parts for e in examples] * 4
    texts = [model_input(*item) for item in items]
    model, matcher = load_model(DEFAULT_MODEL_PATH), Matcher(load_watchlist(DEFAULT_WATCHLIST))

    def rate(work) -> float:
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            work()
            timings.append(time.perf_counter() - started)
        return round(len(texts) / statistics.median(timings))

    return {
        "texts": len(texts),
        "classifier_items_per_s": rate(lambda: [model.predict(items[i : i + 500]) for i in range(0, len(items), 500)]),
        "matcher_items_per_s": rate(lambda: [matcher.find(text) for text in texts]),
    }


def stream_latency(n_items: int, interval_s: float, tmp: Path, *extra: str, label: str = "stream") -> dict:
    """Seconds from an item appearing in a live feed to its item line (and alert line) being flushed."""
    out = tmp / f"{label}-out"
    entries: list[Entry] = []
    appeared: dict[str, float] = {}
    seen_item: dict[str, float] = {}
    seen_alert: dict[str, float] = {}
    # Items that mention an actor, and no republished copies: each should give an item line.
    candidates = [
        e for e in generate(n_items * 10 + 50, seed=11) if "commented on the events" in e.text and "utm_source" not in e.link
    ]
    candidates = candidates[:n_items]
    with FeedServer() as server:
        server.serve("/live.xml", rss("Live", []), ETag='"0"')
        config = tmp / "live.yaml"
        config.write_text(json.dumps({"feeds": [{"name": "live", "url": server.url("/live.xml"), "interval": interval_s}]}))
        child = subprocess.Popen(
            newswatch_run(config, out, "--mode", "stream", "--tick", "0.25", *extra),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for(lambda: (out / "summary.json").exists(), 60)
            next_add = time.time()
            while len(seen_item) < len(candidates):
                now = time.time()
                if len(entries) < len(candidates) and now >= next_add:
                    entry = candidates[len(entries)]
                    entries.insert(0, entry)
                    server.serve("/live.xml", rss("Live", entries), ETag=f'"{len(entries)}"')
                    appeared[entry.link] = time.time()
                    next_add = now + 0.7
                _note_new_lines(out / "items.jsonl", seen_item)
                _note_new_lines(out / "alerts.jsonl", seen_alert)
                if len(entries) == len(candidates) and now - max(appeared.values()) > interval_s + SETTLE_S:
                    break  # whatever has not been written by now joined an earlier story
                time.sleep(0.02)
        finally:
            child.terminate()
            child.wait(30)
    item_latency = sorted(seen_item[url] - appeared[url] for url in seen_item if url in appeared)
    alert_latency = sorted(seen_alert[url] - appeared[url] for url in seen_alert if url in appeared)
    return {
        "items": len(appeared),
        "poll_interval_s": interval_s,
        "items_seen": len(item_latency),
        "alerts_seen": len(alert_latency),
        **_quantiles("item", item_latency),
        **_quantiles("alert", alert_latency),
    }


def stream_latency_dead_sink(n_items: int, interval_s: float, tmp: Path) -> dict:
    """The same, with the bundled watchlist and one webhook sink whose port is closed: delivery must not hold up
    the pipeline (the alerts stay owed; `newswatch deliver` would send them later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    watchlist = load_watchlist(DEFAULT_WATCHLIST, environ={})
    config = {
        "actors": [{"name": a.name, "aliases": list(a.aliases)} for a in watchlist.actors],
        "alerts": {"sinks": [{"type": "webhook", "name": "dead", "url_env": "NEWSWATCH_BENCH_DEAD_SINK", "max_attempts": 60}]},
    }
    (tmp / "dead-sink.yaml").write_text(json.dumps(config))
    os.environ["NEWSWATCH_BENCH_DEAD_SINK"] = f"http://127.0.0.1:{port}/hook"
    return stream_latency(n_items, interval_s, tmp, "--watchlist", str(tmp / "dead-sink.yaml"), label="dead-sink")


def _quantiles(name: str, values: list[float]) -> dict:
    if not values:
        return {f"{name}_p50_s": None, f"{name}_p95_s": None}
    return {
        f"{name}_p50_s": round(statistics.median(values), 2),
        f"{name}_p95_s": round(values[min(len(values) - 1, int(0.95 * len(values)))], 2),
    }


def _note_new_lines(path: Path, seen: dict[str, float]) -> None:
    if not path.exists():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            url = json.loads(line)["url"]
        except (json.JSONDecodeError, KeyError):
            continue
        seen.setdefault(url, time.time())


def _wait_for(predicate, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError("the stream run did not start")
        time.sleep(0.05)


def dedup_state(n_items: int) -> dict:
    return stories.dedup_state(n_items)


def fetching(feeds: int) -> list[dict]:
    hosts = max(1, feeds // fetch_throughput.FEEDS_PER_HOST)
    return [
        fetch_throughput.measure(f"{hosts} hosts, no spacing", feeds, hosts, 0.0, "--host-spacing", "0"),
        fetch_throughput.measure(f"{hosts} hosts, default 1 s spacing", feeds, hosts, 0.0),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 20_000, 100_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--large-runs", type=int, default=1, help=f"runs at {LARGE:,} items and more")
    parser.add_argument("--stream-items", type=int, default=50)
    parser.add_argument("--state-items", type=int, default=STATE_ITEMS)
    parser.add_argument("--fetch-feeds", type=int, default=FETCH_FEEDS)
    parser.add_argument("--story-sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--story-replay", type=int, default=20_000, help="items in the sentence-sharing replay")
    parser.add_argument("--story-baseline", help="a directory with another version's pipelines/, measured beside")
    parser.add_argument("--out", type=Path, default=ROOT / "bench", help="where results.json and results.md go")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="newswatch-bench-") as tmp:
        batch = []
        for n in args.sizes:
            batch.append(batch_replay(n, args.runs if n < LARGE else args.large_runs, Path(tmp)))
            print(json.dumps(batch[-1]), flush=True)
        annotation = annotation_throughput(args.runs)
        print(json.dumps(annotation), flush=True)
        stream = stream_latency(args.stream_items, 2.0, Path(tmp))
        print(json.dumps(stream), flush=True)
        dead_sink = stream_latency_dead_sink(args.stream_items, 2.0, Path(tmp))
        print(json.dumps(dead_sink), flush=True)
    state = dedup_state(args.state_items)
    print(json.dumps(state), flush=True)
    fetch = fetching(args.fetch_feeds)
    print(json.dumps(fetch), flush=True)
    story = stories.benchmark(args.story_sizes, args.story_replay, list(stories.corpus.ORDERS), args.story_baseline)
    print(json.dumps(story), flush=True)
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "runs": args.runs,
        "batch": batch,
        "annotation": annotation,
        "stream": stream,
        "stream_dead_sink": dead_sink,
        "dedup_state": state,
        "fetching": fetch,
        "stories": story,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
