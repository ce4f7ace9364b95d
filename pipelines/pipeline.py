"""The newswatch pipeline: FetchFeeds -> ParseEntries -> Normalise -> Deduplicate ->
ClassifyTopics -> MatchActors -> EmitAlerts, with items, dead letters and the summary
written beside the alerts. The same transforms run in batch and in stream mode.

Locally (the default runner is Beam's FnApiRunner, see the README):
    newswatch run --feeds feeds.yaml --watchlist watchlist.yaml --out out/ --mode stream
On Flink:
    newswatch run ... --runner FlinkRunner --flink_master [local] --flink_job_server_jar JAR
"""

from __future__ import annotations

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
from pipelines.sinks import WriteDeadLettersFn, WriteItemsFn, WriteSummary


def build(p: beam.Pipeline, options: NewswatchOptions, feeds: tuple[Feed, ...], watchlist: Watchlist,
          state_dir: str | None) -> None:
    streaming = options.mode == "stream"
    out = options.out
    fetched = p | "FetchFeeds" >> FetchFeeds(feeds, streaming, options.duration_s, options.tick_s)
    parsed = fetched.responses | "ParseEntries" >> ParseEntries(options.max_entries)
    normalised = parsed.entries | "Normalise" >> Normalise()
    unique, duplicates = normalised.items | "Deduplicate" >> Deduplicate(streaming, state_dir)
    annotated = (
        unique
        | "ClassifyTopics" >> ClassifyTopics(options.model)
        | "MatchActors" >> MatchActors(watchlist)
    )
    alerts = (annotated, duplicates) | "EmitAlerts" >> EmitAlerts(watchlist.alerts, out, state_dir, options.alerts_to_stdout)
    written = annotated | "WriteItems" >> beam.ParDo(WriteItemsFn(out, state_dir))
    feed_failures = (fetched.dead_letter, parsed.dead_letter) | "FeedFailures" >> beam.Flatten()
    dead_letters = (feed_failures, normalised.dead_letter) | "AllDeadLetters" >> beam.Flatten()
    dead_letters | "WriteDeadLetters" >> beam.ParDo(WriteDeadLettersFn(out))
    {
        "statuses": parsed.status,
        "feed_failures": feed_failures,
        "unique": written,
        "duplicates": duplicates,
        "dead_items": normalised.dead_letter,
        "alerts": alerts,
    } | "WriteSummary" >> WriteSummary(out)
