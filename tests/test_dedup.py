"""Deduplicate on TestPipeline: batch (grouped) and stream (stateful, TestStream) give the same stories."""

from __future__ import annotations

from dataclasses import replace

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from pipelines.dedup import Deduplicate, SourceUpdate, merge_copies
from pipelines.normalise import canonical_url, normalise_entry
from pipelines.records import Source
from pipelines.sinks import written_keys
from pipelines.store import StateStore
from pipelines.stories import StorySettings
from tests.story_fixtures import by_key

BODY = "<p>Negotiators agreed a three-day truce around the port so that relief ships can dock, officials said on Monday.</p>"


def item(feed, link, title="Truce agreed around the port", body=BODY, hours=0.0):
    return normalise_entry(
        {
            "feed": feed,
            "title": title,
            "body_html": body,
            "link": link,
            "guid": "",
            "published": (2026, 11, 20, 8 + int(hours), 0, 0),
            "fetched_at": 1_800_000_000.0,
        }
    )


WIRE = item("wire", "https://wire.example.org/truce")
OUTLET = item("outlet", "https://outlet.example.com/truce?utm_source=rss", title="Port truce lets ships dock", hours=2)
REPOLL = item("wire", "https://wire.example.org/truce")
OTHER = item(
    "wire",
    "https://wire.example.org/other",
    title="Truce collapses in the north",
    body="<p>Fighting resumed in the north on Tuesday after a truce agreed last week broke down, residents said.</p>",
)


LONG_PARAGRAPHS = by_key("aid-convoy").paragraphs
LONG = item("wire", "https://wire.example.org/convoy", body="".join(f"<p>{p}</p>" for p in LONG_PARAGRAPHS))


def stream_options() -> PipelineOptions:
    # TestStream needs a runner that implements it: the FnApiRunner does not, the bundle-based one does.
    options = PipelineOptions(["--runner=BundleBasedDirectRunner"])
    options.view_as(StandardOptions).streaming = True
    return options


def stories(unique):
    return unique | beam.Map(lambda i: (i.story_id, i.feed, sorted((s.feed, s.url) for s in i.sources)))


def test_merge_copies_keeps_the_earliest_and_every_source():
    first, others = merge_copies([OUTLET, WIRE])
    assert first.feed == "wire" and others == [OUTLET]
    assert first.sources == (Source("wire", WIRE.url), Source("outlet", OUTLET.url))


def test_batch_gives_one_story_per_content_with_all_sources():
    with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        unique, duplicates = p | beam.Create([WIRE, OUTLET, REPOLL, OTHER]) | Deduplicate(streaming=False)
        story = "s-" + WIRE.fingerprint[:16]
        assert_that(
            stories(unique),
            equal_to(
                [
                    (story, "wire", sorted([("outlet", OUTLET.url), ("wire", WIRE.url)])),
                    ("s-" + OTHER.fingerprint[:16], "wire", [("wire", OTHER.url)]),
                ]
            ),
            label="unique",
        )
        assert_that(duplicates | beam.Map(lambda u: u.story_id), equal_to([story, story]), label="dups")


def test_stream_emits_the_first_copy_at_once_and_later_copies_as_source_updates():
    options = stream_options()
    events = (
        TestStream()
        .add_elements([WIRE])
        .advance_processing_time(5)
        .add_elements([OUTLET, REPOLL])
        .add_elements([OTHER])
        .advance_watermark_to_infinity()
    )
    with TestPipeline(options=options) as p:
        unique, duplicates = p | events | Deduplicate(streaming=True)
        story = "s-" + WIRE.fingerprint[:16]
        assert_that(
            stories(unique),
            equal_to(
                [
                    (story, "wire", [("wire", WIRE.url)]),
                    ("s-" + OTHER.fingerprint[:16], "wire", [("wire", OTHER.url)]),
                ]
            ),
            label="unique",
        )
        assert_that(
            duplicates,
            equal_to(
                [
                    SourceUpdate(story, (Source("outlet", OUTLET.url),)),
                    SourceUpdate(story, (Source("wire", WIRE.url),)),
                ]
            ),
            label="dups",
        )


def test_an_edited_copy_under_the_same_url_is_the_same_item():
    edited = replace(item("wire", "https://wire.example.org/truce", body=BODY.replace("three-day", "four-day")))
    with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        unique, _ = p | beam.Create([WIRE, edited]) | Deduplicate(streaming=False)
        assert_that(unique | beam.Map(lambda i: i.text), equal_to([WIRE.text]))


@pytest.mark.parametrize(
    "variant",
    [
        "https://wire.example.org/truce?utm_source=rss&utm_medium=feed",
        "https://WWW.wire.example.org:443/truce/#comments",
        "https://amp.wire.example.org/amp/truce?fbclid=x1&gclid=y2",
        "https://m.wire.example.org/truce.amp?mkt_tok=abc&smid=tw-share",
    ],
)
def test_tracking_parameters_and_page_variants_give_the_same_item(variant):
    assert item("outlet", variant).identity_key == WIRE.identity_key


def test_a_url_without_a_host_has_no_canonical_form():
    assert canonical_url("HTTP://.") == "" and canonical_url("http://example.org./a/") == "http://example.org/a"


def test_a_copy_of_a_story_an_earlier_run_wrote_joins_that_story(tmp_path):
    # The items sink remembers the keys of each item it writes, near-duplicate bands included.
    record = {
        "story_id": "s-00000000000000aa",
        "item_id": "id-from-an-earlier-run",
        "fingerprint": "fp-from-an-earlier-run",
        "text": LONG.text,
    }
    store = StateStore(tmp_path)
    assert not store.holds_written_items()  # Deduplicate's steps skip their lookups in a store like this
    store.remember([written_keys(record)], "items.jsonl", 0)
    assert store.holds_written_items()
    store.close()
    trimmed = item(
        "outlet",
        "https://outlet.example.com/convoy",
        title="Convoy gets through",
        body="".join(f"<p>{p}</p>" for p in LONG_PARAGRAPHS[:2]),
    )
    with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        unique, duplicates = p | beam.Create([trimmed]) | Deduplicate(streaming=False, state_dir=str(tmp_path))
        assert_that(unique, equal_to([]), label="unique")
        assert_that(duplicates, equal_to([SourceUpdate("s-00000000000000aa", (Source("outlet", trimmed.url),))]), label="dups")


def test_stream_an_item_polled_again_within_the_horizon_is_the_same_item():
    later = replace(REPOLL, published=WIRE.published + 3600 * 20, fetched_at=WIRE.fetched_at + 3600 * 20)
    events = (
        TestStream()
        .add_elements([TimestampedValue(WIRE, WIRE.published)])
        .advance_watermark_to(later.published)
        .add_elements([TimestampedValue(later, later.published)])
        .advance_watermark_to_infinity()
    )
    with TestPipeline(options=stream_options()) as p:
        unique, duplicates = p | events | Deduplicate(streaming=True, settings=StorySettings(horizon_days=1))
        assert_that(unique | beam.Map(lambda i: i.url), equal_to([WIRE.url]), label="unique")
        assert_that(duplicates, equal_to([SourceUpdate("s-" + WIRE.fingerprint[:16], (Source("wire", WIRE.url),))]), label="dups")
