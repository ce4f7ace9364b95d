"""Deduplicate on the FnApiRunner: items/s, seconds per near-duplicate step, and bytes of state per item.

    .venv/bin/python -m bench.stories [--items 20000] [--mode batch|stream]

Items are generated in a DoFn (beam.Create over many items is slow): items/4 stories, each as an
original, a copy with page furniture, a copy trimmed to its first two paragraphs and a copy with a
sentence added; each story is four paragraphs of words drawn from the labelled corpus's vocabulary.
Three pipelines run on the same items: generation alone, generation and the exact steps, and
generation and the whole Deduplicate composite; their differences give the cost of each part.
State: the same items replayed through the steps' own state functions, each shard encoded with
the coders the steps use (key: VarIntCoder, shard: PickleCoder), summed and divided by the items.
Timers are not counted (one per state key: at most SHARDS per step). Not a test: timings depend
on the machine.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines import stories
from pipelines.dedup import Deduplicate, _KeepFirst  # the exact steps alone, for the comparison
from pipelines.normalise import normalise_entry
from pipelines.records import Item

CORPUS = Path(__file__).resolve().parent.parent / "classifiers" / "data" / "corpus"
PUBLISHED = 1_795_597_200.0  # 2026-11-25 09:00 UTC; items follow one second apart
COPIES = 4


def corpus_words() -> list[str]:
    records = [
        json.loads(line) for path in sorted(CORPUS.glob("*.jsonl")) for line in path.read_text(encoding="utf-8").splitlines()
    ]
    return [word for record in records for word in f"{record['title']} {record['text']}".split()]


WORDS = corpus_words()


def paragraphs_of(story: int) -> list[str]:
    """Four paragraphs of 30 to 45 corpus words: distinct stories with a news vocabulary."""
    rng = random.Random(story)
    return [" ".join(rng.choices(WORDS, k=rng.randint(30, 45))) + "." for _ in range(4)]


def make_item(i: int) -> Item:
    story, variant = divmod(i, COPIES)
    paragraphs = paragraphs_of(story)
    if variant == 1:
        paragraphs = ["By our staff", *paragraphs, "Share this article"]
    elif variant == 2:
        paragraphs = paragraphs[:2]
    elif variant == 3:
        paragraphs[2] += " Officials confirmed the figures later."
    return normalise_entry(
        {
            "feed": f"outlet{variant}",
            "title": f"story {story}",
            "link": f"https://outlet{variant}.example.org/{story}",
            "body_html": "".join(f"<p>{p}</p>" for p in paragraphs),
            "guid": "",
            "published": None,
            "fetched_at": PUBLISHED + i,
        }
    )


class GenerateItems(beam.DoFn):
    def process(self, n: int):
        for i in range(n):
            yield make_item(i)


def seconds(n: int, streaming: bool, part: str) -> float:
    options = PipelineOptions(["--runner=FnApiRunner"])
    options.view_as(StandardOptions).streaming = streaming
    started = time.perf_counter()
    with beam.Pipeline(options=options) as p:
        items = p | beam.Create([n]) | beam.ParDo(GenerateItems())
        if part == "exact":
            settings = stories.StorySettings()
            items = (
                items
                | "SameItem" >> _KeepFirst("identity", streaming, settings, None)
                | "SameStory" >> _KeepFirst("fingerprint", streaming, settings, None)
            )
        elif part == "all":
            items = (items | Deduplicate(streaming)).unique
        _ = items | beam.combiners.Count.Globally()
    return time.perf_counter() - started


def state_bytes(n: int) -> dict:
    """Replay each step's state with the pipeline's own functions and encode it as the steps do."""
    settings = stories.StorySettings()
    shards: dict[str, dict[int, dict]] = {}

    def put(step: str, key, entries: list) -> None:
        by_shard = shards.setdefault(step, {})
        by_shard[stories.shard_of(key)] = stories.with_entries(by_shard.get(stories.shard_of(key)), key, entries)

    for i in range(n):
        item = make_item(i)
        pending = stories.sign(item)
        put("SameItem (stream)", item.identity_key, [(pending.own, 0)])
        put("SameStory (stream)", item.fingerprint, [(pending.own, 0)])
        if not pending.bands:
            continue
        for band in range(stories.BANDS):
            by_shard, shard = shards.setdefault(f"Band{band}", {}), stories.shard_of(pending.bands[band])
            by_shard[shard], pending = stories.band_step(by_shard.get(shard), pending, band, set(), settings)
        put("Resolve", pending.own, [(stories.story_of_hits(pending.hits, settings) or pending.own, 0)])
    keys, values = VarIntCoder(), PickleCoder()
    per_step = {
        step: sum(len(keys.encode(k)) + len(values.encode(v)) for k, v in by_shard.items()) / n
        for step, by_shard in shards.items()
    }
    near = sum(size for step, size in per_step.items() if "stream" not in step)
    return {
        "bytes_per_item": {step: round(size, 1) for step, size in per_step.items()},
        "near_duplicate_stage_bytes_per_item": round(near, 1),
        "all_dedup_state_bytes_per_item_in_stream": round(sum(per_step.values()), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--mode", choices=("batch", "stream"), default="batch")
    args = parser.parse_args()
    n, streaming = args.items, args.mode == "stream"
    generate, exact, whole = (seconds(n, streaming, part) for part in ("generate", "exact", "all"))
    near_steps = stories.BANDS + 1  # the band steps and Resolve; Sign and Decide are plain maps
    print(
        json.dumps(
            {
                "mode": args.mode,
                "items": n,
                "generate_s": round(generate, 2),
                "exact_steps_s": round(exact - generate, 2),
                "deduplicate_s": round(whole - generate, 2),
                "deduplicate_items_per_s": round(n / (whole - generate)),
                "stateful_near_steps": near_steps,
                "s_per_near_step": round((whole - exact) / near_steps, 2),
                **state_bytes(n),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
