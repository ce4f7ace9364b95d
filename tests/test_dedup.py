"""Deduplicate on TestPipeline: batch (grouped) and stream (stateful, TestStream) give the same stories."""

from __future__ import annotations

from dataclasses import replace

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to

from pipelines.dedup import Deduplicate, SourceUpdate, merge_copies
from pipelines.normalise import normalise_entry
from pipelines.records import Source

BODY = "<p>Negotiators agreed a three-day truce around the port so that relief ships can dock, officials said on Monday.</p>"


def item(feed, link, title="Truce agreed around the port", body=BODY, hours=0.0):
    return normalise_entry({"feed": feed, "title": title, "body_html": body, "link": link, "guid": "",
                            "published": (2026, 11, 20, 8 + int(hours), 0, 0), "fetched_at": 1_800_000_000.0})


WIRE = item("wire", "https://wire.example.org/truce")
OUTLET = item("outlet", "https://outlet.example.com/truce?utm_source=rss", title="Port truce lets ships dock", hours=2)
REPOLL = item("wire", "https://wire.example.org/truce")
OTHER = item("wire", "https://wire.example.org/other", title="Truce collapses in the north",
             body="<p>Fighting resumed in the north on Tuesday after a truce agreed last week broke down, residents said.</p>")


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
        assert_that(stories(unique), equal_to([
            (story, "wire", sorted([("outlet", OUTLET.url), ("wire", WIRE.url)])),
            ("s-" + OTHER.fingerprint[:16], "wire", [("wire", OTHER.url)]),
        ]), label="unique")
        assert_that(duplicates | beam.Map(lambda u: u.story_id), equal_to([story, story]), label="dups")


def test_stream_emits_the_first_copy_at_once_and_later_copies_as_source_updates():
    # TestStream needs a runner that implements it: the FnApiRunner does not, the bundle-based one does.
    options = PipelineOptions(["--runner=BundleBasedDirectRunner"])
    options.view_as(StandardOptions).streaming = True
    events = (TestStream()
              .add_elements([WIRE])
              .advance_processing_time(5)
              .add_elements([OUTLET, REPOLL])
              .add_elements([OTHER])
              .advance_watermark_to_infinity())
    with TestPipeline(options=options) as p:
        unique, duplicates = p | events | Deduplicate(streaming=True)
        story = "s-" + WIRE.fingerprint[:16]
        assert_that(stories(unique), equal_to([
            (story, "wire", [("wire", WIRE.url)]),
            ("s-" + OTHER.fingerprint[:16], "wire", [("wire", OTHER.url)]),
        ]), label="unique")
        assert_that(duplicates, equal_to([
            SourceUpdate(story, (Source("outlet", OUTLET.url),)),
            SourceUpdate(story, (Source("wire", WIRE.url),)),
        ]), label="dups")


def test_an_edited_copy_under_the_same_url_is_the_same_item():
    edited = replace(item("wire", "https://wire.example.org/truce", body=BODY.replace("three-day", "four-day")))
    with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        unique, _ = p | beam.Create([WIRE, edited]) | Deduplicate(streaming=False)
        assert_that(unique | beam.Map(lambda i: i.text), equal_to([WIRE.text]))
