"""The story benchmark: copy recall, false merges, splits, lost items, items/s and state size of Deduplicate.

    .venv/bin/python -m bench.stories [--items 20000 100000] [--replay 20000] [--orders wire-first wire-last shuffled]
                                     [--baseline DIR] [--out bench/stories.json]

Items come from `bench.story_corpus` (wire stories and their copies, distinct articles sharing background
paragraphs and lead sentences, boilerplate feeds; and the sentence-sharing replay), are generated in a DoFn
(beam.Create over many items is slow), normalised, and run through the whole Deduplicate composite on the
FnApiRunner in batch mode, once per read order. From its outputs (unique items, copies, merges):
- copy recall: copies whose story is their original's; splits: true stories spread over two or more;
- false merges: items put in a story with an item of another true story, per distinct (non-copy) item;
- lost: distinct items of the replay that came out as copies (fetched - unique);
- items/s of the story stage: n / (whole composite - exact steps alone), both timed in the first order;
- state: the items replayed through the band steps' own functions (`pipelines.story_replay`), every shard
  encoded with the coders the steps use, divided by the items (timers not counted; Resolve's 12-byte entries
  estimated from the stories it would hold).
`--baseline DIR` runs the same measurements in a subprocess whose `pipelines` package is DIR's (for example an
export of main), for a before/after comparison on one machine in one run. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from bench import story_corpus as corpus
from pipelines.dedup import Deduplicate, _KeepFirst  # the exact steps alone, for the comparison
from pipelines.stories import StorySettings

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = StorySettings()


class GenerateItems(beam.DoFn):
    def __init__(self, specs: list):
        self._specs = specs

    def process(self, _):
        yield from corpus.items(self._specs)


def outputs_of(element) -> list[list]:
    """A Deduplicate output -> ["of", url, story] per source, or ["merged", story, story]."""
    if hasattr(element, "merged"):
        return [["merged", element.story_id, element.merged]]
    return [["of", source.url, element.story_id] for source in element.sources]


def run_pipeline(specs: list, part: str, dump: Path | None = None) -> float:
    """Seconds to generate the items and run `part` (generate, exact, all) over them."""
    started = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        items = p | beam.Create([0]) | beam.ParDo(GenerateItems(specs))
        if part == "exact":
            items = (
                items | _KeepFirst("identity", False, SETTINGS, None) | "Same" >> _KeepFirst("fingerprint", False, SETTINGS, None)
            )
        if part == "all":
            unique, duplicates = items | Deduplicate(streaming=False)
            rows = (unique | "U" >> beam.FlatMap(outputs_of), duplicates | "D" >> beam.FlatMap(outputs_of)) | beam.Flatten()
            _ = rows | beam.combiners.ToList() | beam.Map(lambda rows: dump.write_text(json.dumps(rows)))
        else:
            _ = items | beam.combiners.Count.Globally()
    return time.perf_counter() - started


def score(specs: list, rows: list) -> dict:
    """Copy recall, false merges, splits and lost items of one run's outputs against the specs' truth."""
    parent: dict[str, str] = {}

    def find(story: str) -> str:
        while parent.get(story, story) != story:
            story = parent[story]
        return story

    def union(first: str, second: str) -> None:
        a, b = find(first), find(second)
        if a != b:
            parent[max(a, b)] = min(a, b)

    first_story: dict[str, str] = {}
    for kind, first, second in rows:
        if kind == "merged":
            union(first, second)
        else:  # one source in two stories (an exact copy's own id and its story's) makes them one
            union(first_story.setdefault(first, second), second)
    story_of = {url: find(story) for kind, url, story in rows if kind == "of"}
    urls = [corpus.url_of(spec, index) for index, spec in enumerate(specs)]
    original = {spec.truth: story_of.get(url) for spec, url in zip(specs, urls, strict=True) if not spec.copy}
    copies = [(spec, story_of.get(url)) for spec, url in zip(specs, urls, strict=True) if spec.copy]
    truths_in: dict[str, set[str]] = {}
    for spec, url in zip(specs, urls, strict=True):
        truths_in.setdefault(story_of.get(url, url), set()).add(spec.truth)
    stories_of_truth: dict[str, set[str]] = {}
    for spec, url in zip(specs, urls, strict=True):
        stories_of_truth.setdefault(spec.truth, set()).add(story_of.get(url, url))
    merged_items = sum(
        1 for spec, url in zip(specs, urls, strict=True) if not spec.copy and len(truths_in[story_of.get(url, url)]) > 1
    )
    distinct = len(original)
    return {
        "items": len(specs),
        "copies": len(copies),
        "copy_recall": round(sum(story == original[spec.truth] for spec, story in copies) / (len(copies) or 1), 4),
        "distinct_items": distinct,
        "false_merged_items": merged_items,
        "false_merge_rate": round(merged_items / (distinct or 1), 5),
        "split_stories": sum(len(found) > 1 for found in stories_of_truth.values()),
        "missing_items": len(urls) - len(story_of),
    }


def lost_items(specs: list, rows: list) -> int:
    """Distinct items (no copies among the specs) that came out as copies of another story."""
    stories = [story for kind, _, story in rows if kind == "of"]
    return len(specs) - len(set(stories))


def state_bytes(specs: list) -> dict | None:
    """Encoded state per item, from the steps' own functions: the story stage (band steps and Resolve) and all of
    Deduplicate in stream mode (the exact steps' shards too). None for a baseline without `story_replay`."""
    try:
        from apache_beam.coders import PickleCoder, VarIntCoder

        from pipelines.buckets import register, shard_of, with_entries
        from pipelines.story_replay import replay
    except ImportError:
        return None
    items = list(corpus.items(specs))
    run = replay(items)
    keys, values = VarIntCoder(), PickleCoder()

    def encoded(by_shard: dict) -> int:
        return sum(len(keys.encode(k)) + len(values.encode(v)) for k, v in by_shard.items())

    exact: dict[str, dict] = {"identity": {}, "fingerprint": {}}
    resolve: dict = {}
    for item, pending in zip(items, run.pendings, strict=True):
        for kind, key in (("identity", item.identity_key), ("fingerprint", item.fingerprint)):
            shard = shard_of(key)
            exact[kind][shard] = with_entries(exact[kind].get(shard), key, register([], pending.own, 0)[0])
        if pending.bands:  # one root entry per item id in Resolve
            shard = shard_of(pending.own)
            resolve[shard] = with_entries(resolve.get(shard), pending.own, [(pending.own, 0, b"")])
    near = (sum(encoded(by) for by in run.shards.values()) + encoded(resolve)) / len(items)
    everything = near + sum(encoded(by) for by in exact.values()) / len(items)
    return {
        "items": len(items),
        "near_duplicate_stage_bytes_per_item": round(near, 1),
        "all_dedup_state_bytes_per_item_in_stream": round(everything, 1),
        "bucket_entries_dropped": run.dropped,
    }


def dedup_state(n: int) -> dict:
    """State per item for `make bench` (the story corpus at n items)."""
    return state_bytes(corpus.specs(n))


def measure(n: int, replay_n: int, orders: list[str], with_state: bool) -> dict:
    specs = corpus.specs(n)
    result: dict = {"items": len(specs), "orders": {}}
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "rows.json"
        for number, order in enumerate(orders):
            ordered = corpus.ordered(specs, order)
            whole = run_pipeline(ordered, "all", dump)
            result["orders"][order] = score(ordered, json.loads(dump.read_text()))
            if number == 0:
                exact = run_pipeline(ordered, "exact")
                generate = run_pipeline(ordered, "generate")
                result["deduplicate_items_per_s"] = round(len(specs) / max(whole - generate, 1e-9))
                result["story_stage_items_per_s"] = round(len(specs) / max(whole - exact, 1e-9))
        if replay_n:
            replay_specs = corpus.sentence_specs(replay_n)
            run_pipeline(replay_specs, "all", dump)
            result["replay"] = {"items": replay_n, "lost_items": lost_items(replay_specs, json.loads(dump.read_text()))}
    if with_state:
        result["state"] = state_bytes(specs)
    return result


def baseline(sizes: list[int], replay_n: int, orders: list[str], directory: str) -> dict:
    """The same measurements with DIR's `pipelines` package (its own state layout is not measured)."""
    command = [sys.executable, "-m", "bench.stories", "--items", *map(str, sizes), "--replay", str(replay_n)]
    command += ["--orders", *orders, "--no-state"]
    env = {**os.environ, "PYTHONPATH": f"{directory}{os.pathsep}{ROOT}"}
    done = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def benchmark(sizes: list[int], replay_n: int, orders: list[str], baseline_dir: str | None = None) -> dict:
    """`measure` at each size (the replay with the first), and the same with a baseline's pipelines where given."""
    results = {"this": [measure(n, replay_n if i == 0 else 0, orders, True) for i, n in enumerate(sizes)]}
    if baseline_dir:
        results["baseline"] = baseline(sizes, replay_n, orders, baseline_dir)["this"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--replay", type=int, default=20_000)
    parser.add_argument("--orders", nargs="+", default=list(corpus.ORDERS), choices=corpus.ORDERS)
    parser.add_argument("--baseline", help="a directory holding another version's pipelines/ package")
    parser.add_argument("--no-state", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.no_state:  # a baseline run: no state replay, nothing else printed
        print(
            json.dumps({"this": [measure(n, args.replay if i == 0 else 0, args.orders, False) for i, n in enumerate(args.items)]})
        )
        return
    results = benchmark(args.items, args.replay, args.orders, args.baseline)
    text = json.dumps(results, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
