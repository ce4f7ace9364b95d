"""Stories that do not depend on read order, never join different articles, and stay cheap (issue 16).

Property tests drive the band steps' own functions through `pipelines.story_replay` (every band step may see
the items in a different order, as a runner may); the Deduplicate composite then checks the same on the
FnApiRunner with the items and feeds permuted, late bridging, and the sentence-sharing replay."""

from __future__ import annotations

import itertools
import json
import random
import tempfile
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench import story_corpus
from pipelines.buckets import BUCKET_CAP, decode_entries
from pipelines.dedup import Deduplicate, story_id_of
from pipelines.signatures import BANDS, part_width
from pipelines.stories import StoryMerged
from pipelines.story_replay import replay
from tests.story_fixtures import STORIES, copies
from tests.test_dedup import stream_options
from tests.test_stories import normalised, plain_item, resolved, similar, sources_and_merges

# Three fixture stories with all their copies, and three same-day stories without copies: 24 items.
LABELLED = [(c.story, normalised(c, hours=n % 7)) for n, c in enumerate(c for story in STORIES[:3] for c in copies(story))]
LABELLED += [(story.key, normalised(copies(story)[0])) for story in STORIES[3:6]]
ITEMS = [item for _, item in LABELLED]
TRUTH = frozenset(frozenset(i for i, (key, _) in enumerate(LABELLED) if key == story.key) for story in STORIES[:6])
SENTENCES = story_corpus.sentence_specs(600)


def band_orders(n: int):
    return st.lists(st.permutations(range(n)), min_size=BANDS, max_size=BANDS)


def test_the_fixture_truth_covers_every_item():
    assert sum(len(group) for group in TRUTH) == len(ITEMS) and len(TRUTH) == 6


# Found by hypothesis: the trimmed copy read after the edited one, whose edit falls in the trimmed part.
TRIMMED_AFTER_EDITED = [0, 1, 12, 3, 4, 5, 6, 7, 8, 10, 11, 2, 13, 9, *range(14, 24)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(band_orders(len(ITEMS)))
@example([TRIMMED_AFTER_EDITED] * BANDS)
def test_any_read_order_gives_the_same_partition_the_true_one(orders):
    assert replay(ITEMS, orders=orders).partition() == TRUTH


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.permutations(range(len(ITEMS))), st.integers(0, len(ITEMS)))
def test_reading_items_again_changes_no_story(order, repeat):
    """Merging is idempotent: items read twice (a second poll) join the stories they already made."""
    once = replay(ITEMS, orders=[order] * BANDS)
    again = replay(ITEMS + ITEMS[:repeat], orders=[[*order, *range(len(ITEMS), len(ITEMS) + repeat)]] * BANDS)
    assert {frozenset(i % len(ITEMS) for i in group) for group in again.partition()} == once.partition()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_a_story_holds_only_items_linked_by_a_chain_of_copies(rng):
    """Two items of one story that fail the copy test are linked through copies that pass it."""
    items = [story_corpus.items(story_corpus.specs(120, seed=rng.randrange(1000)))][0]
    items = list(items)
    run = replay(items)
    for group in run.partition():
        if len(group) < 2:
            continue
        members = sorted(group)
        linked = {members[0]}
        for _ in members:
            linked |= {b for a, b in itertools.permutations(members, 2) if a in linked and similar(items[a], items[b])}
        assert linked == set(members)


def test_items_sharing_only_sentences_are_never_joined():
    # The sentence-sharing replay: six sentences each from one pool; many share their first sentence.
    items = list(story_corpus.items(SENTENCES))
    firsts = [item.text.split(".")[0] for item in items]
    assert len(firsts) - len(set(firsts)) >= 5  # the case the issue measured: a shared lead
    assert len(replay(items).partition()) == len(items)


def test_a_band_value_many_items_share_is_capped_not_scanned():
    boilerplate = " ".join(["Subscribe to our newsletter for the latest regional headlines every morning."] * 3)
    pool = story_corpus.sentences()
    rng = random.Random(4)
    items = [plain_item(boilerplate + "\n" + " ".join(rng.choice(pool) for _ in range(5)), number) for number in range(1000)]
    run = replay(items)
    biggest = max(
        len(decode_entries(blob, part_width(band)))
        for band, by in run.shards.items()
        for s in by.values()
        for blob in s.entries.values()
    )
    assert biggest <= BUCKET_CAP and run.dropped > 0
    assert len(run.partition()) == len(items)  # and the items, which differ after the boilerplate, stay apart


# --- the composite on the FnApiRunner ----------------------------------------------------


def deduplicated(items) -> list[tuple[str, str]]:
    """Deduplicate in batch over `items`, in that order -> (url, story id) and merge rows (`sources_and_merges`)."""
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "rows.json"
        p = TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
        unique, duplicates = p | beam.Create(items) | Deduplicate(streaming=False)
        rows = (unique | "U" >> beam.FlatMap(sources_and_merges), duplicates | "D" >> beam.FlatMap(sources_and_merges))
        _ = rows | beam.Flatten() | beam.combiners.ToList() | beam.Map(lambda found: dump.write_text(json.dumps(found)))
        p.run().wait_until_finish()
        return [tuple(row) for row in json.loads(dump.read_text())]


def partition_of(items, order: list[int]) -> frozenset:
    """The stories of `items` read in `order`, as sets of URLs (merges applied)."""
    groups: dict[str, set[str]] = {}
    for url, story in resolved(deduplicated([items[i] for i in order])):
        groups.setdefault(story, set()).add(url)
    return frozenset(frozenset(urls) for urls in groups.values())


def test_batch_stories_are_the_same_whatever_the_order_of_feeds_and_items():
    specs = story_corpus.specs(240)
    by_feed = sorted(range(len(specs)), key=lambda i: specs[i].feed)
    orders = [list(range(len(specs))), by_feed[::-1], random.Random(5).sample(range(len(specs)), len(specs))]
    items = list(story_corpus.items(specs))
    partitions = {partition_of(items, order) for order in orders}
    assert len(partitions) == 1
    truth: dict[str, set[str]] = {}
    for spec, item in zip(specs, items, strict=True):
        truth.setdefault(spec.truth, set()).add(item.url)
    assert partitions.pop() == frozenset(frozenset(urls) for urls in truth.values())


def test_an_item_that_is_a_copy_of_two_stories_joins_them_with_one_merge():
    """A trimmed copy and a copy missing its first paragraph are two stories until the original links them."""
    story = STORIES[0]
    original = normalised(copies(story)[0])
    first = plain_item(original.text.split("\n")[0], 1)
    rest = plain_item("\n".join(original.text.split("\n")[1:]), 2)
    full = plain_item(original.text, 3)
    assert not similar(first, rest) and similar(first, full) and similar(rest, full)
    for order in ([first, rest, full], [full, rest, first]):
        found = deduplicated(order)
        assert len({story for _, story in resolved(found)}) == 1
        assert sum(url == "=merged" for url, _ in found) == (1 if order[0] is first else 0)


def test_stream_bridges_two_stories_when_the_item_linking_them_arrives():
    """In stream the first two copies raise two stories at once; the original, read last, makes them one."""
    original = normalised(copies(STORIES[0])[0])
    first = plain_item(original.text.split("\n")[0], 1, published=original.published)
    rest = plain_item("\n".join(original.text.split("\n")[1:]), 2, published=original.published + 60)
    full = plain_item(original.text, 3, published=original.published + 120)
    events = TestStream()
    for item in (first, rest, full):
        events = events.advance_watermark_to(item.published).add_elements([TimestampedValue(item, item.published)])
    with TestPipeline(options=stream_options()) as p:
        unique, duplicates = p | events.advance_watermark_to_infinity() | Deduplicate(streaming=True)
        assert_that(unique | beam.Map(lambda i: i.url), equal_to([first.url, rest.url]), label="two stories at first")
        one = sorted((story_id_of(first), story_id_of(rest)))
        assert_that(
            duplicates | beam.Map(lambda e: type(e).__name__),
            equal_to(["SourceUpdate", "StoryMerged"]),
            label="then a copy and one merge",
        )
        assert_that(
            duplicates | beam.Filter(lambda e: isinstance(e, StoryMerged)) | beam.Map(lambda e: sorted((e.story_id, e.merged))),
            equal_to([one]),
            label="of those two",
        )
