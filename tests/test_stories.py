"""Near-duplicate stories: signatures and decisions as plain functions, and the whole
Deduplicate composite on generated copies of our fixture stories (pairwise precision and
recall are printed: run with -s to see them), in batch and in stream with expiry."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from classifiers.corpus import load_corpus
from pipelines.buckets import (
    SHARDS,
    Shard,
    after_timer,
    decode_entries,
    encode_entries,
    entries_in,
    live,
    register,
    shard_of,
    story_id,
    story_int,
    with_entries,
)
from pipelines.dedup import Deduplicate, SourceUpdate, story_id_of
from pipelines.furniture import strip_furniture
from pipelines.normalise import normalise_entry
from pipelines.records import Item, Source
from pipelines.signatures import LEAD_BANDS, LEAD_WORDS, TEXT_BANDS, lead_of, near_keys, signature
from pipelines.stories import StoryMerged, StorySettings, bands_needed
from pipelines.story_replay import UnionFind, replay
from tests.conftest import read_lines, run_newswatch, write_yaml
from tests.feedserver import rss
from tests.stories import CEASEFIRE_TALKS, entry
from tests.story_fixtures import SAME_DAY, STORIES, UPDATES, VARIANTS, by_key, copies
from tests.test_dedup import stream_options

PUBLISHED = 1_795_597_200.0  # 2026-11-25 09:00 UTC
DAY_S = 86400.0


def normalised(copy, hours: float = 0.0) -> Item:
    return normalise_entry(
        {
            "feed": copy.link.split("/")[2],
            "title": copy.title,
            "body_html": copy.body_html,
            "link": copy.link,
            "guid": "",
            "published": None,
            "fetched_at": PUBLISHED + hours * 3600,
        }
    )


def fixture_items() -> list[tuple[str, Item]]:
    """(story key, item) for every copy of every fixture story, an hour apart in publication order."""
    items = []
    for number, copy in enumerate(copy for story in STORIES for copy in copies(story)):
        items.append((copy.story, normalised(copy, hours=number % len(VARIANTS))))
    return items


def similar(a: Item, b: Item, settings: StorySettings = StorySettings()) -> bool:
    """Would a and b be one story if they were the only two items seen? (the band steps' own functions)"""
    return len(replay([a, b], settings).partition()) == 1


def plain_item(text: str, number: int, published: float = PUBLISHED) -> Item:
    """An item with `text` and an id of its own (number), as the exact steps pass it on."""
    return Item(
        feed="f",
        url=f"https://example.org/{number}",
        guid="",
        title=f"t{number}",
        text=text,
        published=published,
        published_estimated=False,
        fetched_at=published,
        identity_key=f"i{number}",
        fingerprint=f"{number + 1:016x}",
    )


def pairwise(truth: dict[str, str], predicted: dict[str, str]) -> tuple[float, float]:
    """Pairwise precision and recall of a clustering (id -> predicted story) against the truth (id -> story)."""
    tp = fp = fn = 0
    for a, b in itertools.combinations(sorted(truth), 2):
        same, said_same = truth[a] == truth[b], predicted[a] == predicted[b]
        tp += same and said_same
        fp += said_same and not same
        fn += same and not said_same
    return tp / ((tp + fp) or 1), tp / ((tp + fn) or 1)


# --- plain functions -----------------------------------------------------------------


def test_lead_skips_bylines_and_datelines():
    text = "By our desk staff\nUpdated 25 November, 10:42\n" + " ".join(f"w{i}" for i in range(60))
    assert lead_of(text) == [f"w{i}" for i in range(LEAD_WORDS)]


def test_short_texts_have_no_signature_and_long_ones_a_stable_one():
    assert signature("Truce agreed") == ()
    story = by_key("truce-east")
    text = normalised(copies(story)[0]).text
    assert signature(text) == signature(text) and len(signature(text)) == TEXT_BANDS + LEAD_BANDS
    assert list(near_keys(signature(text))) == [f"near{i}" for i in range(TEXT_BANDS + LEAD_BANDS)]


def test_bands_needed_follows_the_threshold():
    # ceil(bands * threshold ** ROWS): about half the copies at exactly the threshold match, higher ones nearly all.
    assert [bands_needed(4, t) for t in (0.5, 0.7, 0.85, 1.0)] == [1, 2, 3, 4]
    assert bands_needed(2, 0.3) == 1 and bands_needed(TEXT_BANDS, 1.0) == TEXT_BANDS
    with pytest.raises(ValueError, match="threshold"):
        StorySettings(threshold=1.5)
    with pytest.raises(ValueError, match="horizon"):
        StorySettings(horizon_days=0)


def test_bucket_entries_register_once_per_story_and_expire():
    entries, _ = register(register([], 7, 100, b"ab")[0], 7, 150, b"ab")
    assert entries == [(7, 150, b"ab")]  # the same item again: its entry lives longer
    entries, _ = register(entries, 7, 160, b"cd")  # another item of the story: its sketch too
    assert entries == [(7, 160, b"ab"), (7, 160, b"cd")]
    for sketch in (b"ef", b"gh", b"ij"):
        entries, _ = register(entries, 7, 170, sketch)
    assert [kept for _, _, kept in entries] == [b"ab", b"cd", b"ef"]  # at most SKETCHES_PER_STORY
    entries, _ = register(entries, 9, 120, b"kl")
    assert decode_entries(encode_entries(entries), width=2) == entries and len(encode_entries(entries)) == 4 * 14
    assert live(entries, 130) == entries[:3] and live(entries, 170) == []


def test_a_full_bucket_keeps_the_stories_that_expire_last():
    entries: list = []
    dropped = 0
    for story in range(40):
        entries, more = register(entries, story, 1000 + story, cap=16)
        dropped += more
    assert len(entries) == 16 and dropped == 24 and {story for story, _, _ in entries} == set(range(24, 40))


@pytest.mark.parametrize("variant", VARIANTS[1:])
@pytest.mark.parametrize("story", STORIES, ids=lambda s: s.key)
def test_every_republished_copy_is_similar_to_the_original(story, variant):
    original, *others = copies(story)
    copy = next(c for c in others if c.variant == variant)
    assert similar(normalised(original), normalised(copy))


@pytest.mark.parametrize("pair", SAME_DAY + UPDATES, ids="-vs-".join)
def test_other_stories_on_the_same_day_and_updates_are_not_similar(pair):
    first, second = (by_key(key) for key in pair)
    for a, b in itertools.product(copies(first), copies(second)):
        assert not similar(normalised(a), normalised(b)), (a.variant, b.variant)


# --- the Deduplicate composite -------------------------------------------------------


def sources_and_merges(element) -> list[tuple[str, str]]:
    """A Deduplicate output -> (url, story id) for each of its sources, or ("=merged", "story id = story id")."""
    if isinstance(element, StoryMerged):
        return [("=merged", f"{element.story_id}={element.merged}")]
    return [(source.url, element.story_id) for source in element.sources]


def resolved(pairs) -> list[tuple[str, str]]:
    """(url, story id) pairs with every merge applied: each url's story is its merged story's smallest id."""
    stories = UnionFind()
    for url, story in pairs:
        if url == "=merged":
            first, second = story.split("=")
            stories.union(story_int(first), story_int(second))
    return [(url, story_id(stories.find(story_int(story)))) for url, story in pairs if url != "=merged"]


def stories_of(items: list[Item]):
    """Deduplicate -> PCollection of (url, story id) for every copy, unique or duplicate (and merges, see
    `sources_and_merges`), and the unique items."""
    p = TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    unique, duplicates = p | beam.Create(items) | Deduplicate(streaming=False)
    pairs = (
        unique | "UniqueSources" >> beam.FlatMap(sources_and_merges),
        duplicates | "CopySources" >> beam.FlatMap(sources_and_merges),
    ) | beam.Flatten()
    return p, pairs, unique


def precision_recall_at_least(truth: dict[str, str], minimum: float):
    def check(pairs):
        pairs = resolved(pairs)
        found = dict(pairs)
        # In batch a unique item also lists its exact copies, which are duplicates too: one story per URL all the same.
        assert set(found) == set(truth) and len(found) == len(set(pairs)), "each copy belongs to one story"
        precision, recall = pairwise(truth, found)
        print(
            f"\nnear-duplicate stories on {len(truth)} copies of {len(set(truth.values()))} stories: "
            f"pairwise precision {precision:.3f}, recall {recall:.3f}"
        )
        assert precision >= minimum and recall >= minimum, (precision, recall)

    return check


def test_batch_precision_and_recall_on_generated_copies():
    labelled = fixture_items()
    p, pairs, _ = stories_of([item for _, item in labelled])
    assert_that(pairs, precision_recall_at_least({item.url: story for story, item in labelled}, 0.95))
    p.run().wait_until_finish()


def test_copies_in_one_batch_form_one_story_with_one_unique_item():
    story = by_key("aid-convoy")
    items = [normalised(c, hours=n) for n, c in enumerate(copies(story)[:3])]
    p, pairs, unique = stories_of(items)
    assert_that(unique | beam.Map(lambda i: 1) | beam.combiners.Count.Globally(), equal_to([1]), label="one unique")

    def one_story_of_these(story_ids):
        assert len(story_ids) == 1 and story_ids[0] in {story_id_of(i) for i in items}, story_ids

    assert_that(
        pairs | beam.combiners.ToList() | beam.FlatMap(lambda all_pairs: sorted({story for _, story in resolved(all_pairs)})),
        one_story_of_these,
        label="one story",
    )
    p.run().wait_until_finish()


def test_a_timer_keeps_what_the_data_has_not_passed_and_never_rearms_for_the_same_time():
    shard = with_entries(with_entries(None, "a", [(7, 100, b"")]), "b", [(9, 200, b"")])
    assert shard.earliest == 100
    # Fired early (the FnApiRunner fires right after each bundle): the data is at 50, nothing is dropped.
    assert after_timer(shard, clock_s=50, fired_s=100) == (shard, None)
    # Due: the data has passed 100; key b stays and the timer is set for it.
    assert after_timer(shard, clock_s=150, fired_s=100) == (Shard({"b": shard.entries["b"]}, 200), 200)
    assert after_timer(shard, clock_s=250, fired_s=200) == (None, None)


def test_shards_spread_keys_and_hold_live_entries_per_key():
    assert {shard_of(value) for value in range(10_000)} == set(range(SHARDS))
    assert 0 <= shard_of("3f2a9c") < SHARDS
    shard = with_entries(with_entries(None, 5, [(7, 100, b"")]), 6, [(8, 300, b"")])
    assert entries_in(shard, 5, now_s=50) == [(7, 100, b"")] and entries_in(shard, 5, now_s=100) == []
    assert entries_in(shard, 6, now_s=100) == [(8, 300, b"")] and entries_in(shard, 4, now_s=0) == []


def test_stream_a_copy_within_the_horizon_joins_the_story_and_after_it_starts_a_new_one():
    story = by_key("truce-south")
    original, boilerplate, trimmed, *_ = copies(story)
    first = normalised(original)
    within = normalised(trimmed, hours=24 * 1.5)  # 1.5 days later: joins, and keeps the story alive
    late = normalised(boilerplate, hours=24 * 4)  # 2.5 days after the last copy: the story has expired
    # The trimmed text again, now joining the new story: the exact step has forgotten it too.
    alive = normalised(replace(trimmed, link="https://evening.example.net/world/truce"), hours=24 * 4.5)
    events = TestStream()
    for item in (first, within, late, alive):
        events = events.advance_watermark_to(item.published).add_elements([TimestampedValue(item, item.published)])
    events = events.advance_watermark_to_infinity()
    with TestPipeline(options=stream_options()) as p:
        unique, duplicates = p | events | Deduplicate(streaming=True, settings=StorySettings(horizon_days=2))
        assert_that(
            unique | beam.Map(lambda i: (i.url, i.story_id)),
            equal_to([(first.url, story_id_of(first)), (late.url, story_id_of(late))]),
            label="unique",
        )
        assert_that(
            duplicates,
            equal_to(
                [
                    SourceUpdate(story_id_of(first), (Source(within.feed, within.url),)),
                    SourceUpdate(story_id_of(late), (Source(alive.feed, alive.url),)),
                ]
            ),
            label="copies",
        )


def test_no_two_items_of_the_labelled_corpus_are_taken_for_copies():
    # 1,620 distinct items written on the same three topics: the hardest negatives we have.
    texts = [strip_furniture(record.title, record.text) for record in load_corpus()]
    items = [plain_item(text, number) for number, text in enumerate(texts) if signature(text)]
    run = replay(items)
    assert len(items) > 500 and len(run.partition()) == len(items)


# --- the real command ----------------------------------------------------------------


def serve_talks_twice(server) -> dict:
    """A wire story, and an outlet carrying its first paragraph under its own headline: one story, two sources."""
    headline, body = CEASEFIRE_TALKS
    first_paragraph = body[: body.index("</p>") + len("</p>")]
    server.serve("/wire.xml", rss("Wire", [entry(CEASEFIRE_TALKS, "https://wire.example.org/lavrov-riyadh")]))
    server.serve(
        "/outlet.xml",
        rss(
            "Outlet",
            [
                entry(
                    (headline, first_paragraph),
                    "https://outlet.example.com/riyadh?utm_source=rss",
                    hours_ago=1,
                    title="Top Russian diplomat in Saudi capital",
                )
            ],
        ),
    )
    return {"feeds": [{"name": name, "url": server.url(f"/{name}.xml"), "interval": 1} for name in ("wire", "outlet")]}


def test_batch_run_raises_one_alert_for_a_story_and_its_trimmed_retitled_copy(tmp_path, feed_server):
    feeds = write_yaml(tmp_path / "feeds.yaml", serve_talks_twice(feed_server))
    result = run_newswatch("run", "--feeds", str(feeds), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    alerts = read_lines(tmp_path / "out" / "alerts.jsonl") + read_lines(tmp_path / "out" / "alert_updates.jsonl")
    assert len({alert["alert_id"] for alert in alerts}) == 1
    assert {(s["feed"], s["url"]) for s in alerts[-1]["sources"]} == {
        ("wire", "https://wire.example.org/lavrov-riyadh"),
        ("outlet", "https://outlet.example.com/riyadh"),
    }
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["unique"], summary["duplicates"], summary["alerts"]) == (1, 1, 1)
    (story,) = read_lines(tmp_path / "out" / "stories.jsonl")  # one line per story, with its span and its sources
    assert story["story_id"] == alerts[0]["story_id"] and story["title"] == CEASEFIRE_TALKS[0]
    assert {s["feed"] for s in story["sources"]} == {"wire", "outlet"} and story["first_seen"] < story["last_seen"]
    assert "ceasefire" in story["topics"] and story["actors"] == ["Sergei Lavrov"]
    assert alerts[0]["story_span"]["first_seen"] == story["first_seen"]


def test_stream_run_adds_the_trimmed_copy_to_the_story_alert(tmp_path, feed_server):
    feeds = write_yaml(tmp_path / "feeds.yaml", serve_talks_twice(feed_server))
    result = run_newswatch(
        "run", "--feeds", str(feeds), "--out", str(tmp_path / "out"), "--mode", "stream", "--duration", "5", "--tick", "0.25"
    )
    assert result.returncode == 0, result.stderr
    alerts = read_lines(tmp_path / "out" / "alerts.jsonl")
    updates = read_lines(tmp_path / "out" / "alert_updates.jsonl")
    assert len(alerts) == 1
    assert max(len(record["sources"]) for record in alerts + updates) == 2
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["unique"] == 1 and summary["alerts"] == 1
