"""The newswatch pipeline: FetchFeeds -> ParseEntries -> Normalise -> Deduplicate ->
ClassifyTopics -> MatchActors -> EmitAlerts, with items, dead letters and the summary
written beside the alerts. The same transforms run in batch and in stream mode.

Locally (the default runner is Beam's FnApiRunner, see docs/scale.md):
    newswatch run --feeds feeds.yaml --watchlist watchlist.yaml --out out/ --mode stream
On Flink:
    newswatch run ... --runner FlinkRunner --flink_master [local] --flink_job_server_jar JAR
"""

from __future__ import annotations

from dataclasses import fields

import apache_beam as beam

from pipelines.actors import MatchActors
from pipelines.alerts import EmitAlerts
from pipelines.classify import ClassifyTopics
from pipelines.config import Feed, Watchlist
from pipelines.dedup import Deduplicate
from pipelines.fetch import FetchFeeds
from pipelines.normalise import Normalise
from pipelines.options import NewswatchOptions
from pipelines.parse import ParseEntries
from pipelines.poll import FetchSettings
from pipelines.sinks import RecordFeedStatusFn, WriteDeadLettersFn, WriteItemsFn
from pipelines.stories import StorySettings
from pipelines.story_sink import WriteStoriesFn


def build(p: beam.Pipeline, options: NewswatchOptions, feeds: tuple[Feed, ...], watchlist: Watchlist, state_dir: str) -> None:
    """Wire the stages. No Flatten: on the FnApiRunner everything downstream of one waits
    until a stream run ends, so each dead-letter output gets its own sink instead."""
    streaming = options.mode == "stream"
    sink_args = (options.out, state_dir, options.run_id)
    fetch_settings = FetchSettings(**{f.name: getattr(options, f.name) for f in fields(FetchSettings)})
    fetched = p | "FetchFeeds" >> FetchFeeds(feeds, streaming, options.duration_s, options.tick_s, fetch_settings, state_dir)
    parsed = fetched.responses | "ParseEntries" >> ParseEntries()
    normalised = parsed.entries | "Normalise" >> Normalise()
    stories = StorySettings(options.near_dup_threshold, options.dedup_horizon_days)
    unique, duplicates = normalised.items | "Deduplicate" >> Deduplicate(streaming, state_dir, stories)
    annotated = unique | "ClassifyTopics" >> ClassifyTopics(options.model) | "MatchActors" >> MatchActors(watchlist)
    (annotated, duplicates) | "EmitAlerts" >> EmitAlerts(watchlist.alerts, *sink_args)
    annotated | "WriteItems" >> beam.ParDo(WriteItemsFn(*sink_args))
    annotated | "WriteStories" >> beam.ParDo(WriteStoriesFn(*sink_args))
    duplicates | "WriteStoryCopies" >> beam.ParDo(WriteStoriesFn(*sink_args))
    parsed.status | "RecordFeedStatus" >> beam.ParDo(RecordFeedStatusFn(*sink_args))
    for stage, dead in (("Fetch", fetched.dead_letter), ("Normalise", normalised.dead_letter)):  # Fetch includes parse failures
        dead | f"WriteDeadLetters{stage}" >> beam.ParDo(WriteDeadLettersFn(*sink_args))
