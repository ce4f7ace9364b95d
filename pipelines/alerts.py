"""EmitAlerts: annotated items -> alerts, written once each.

An alert is raised when a unique item mentions at least one watchlist actor and carries at
least one of the watchlist's alert topics (with at least `min_score`, where set). Its id
is a hash of the story, the actor set and the topic set, so the same story gives the same
alert in every run and on every runner; the sink writes an id only once, and a copy of
the story that arrives later adds its source to the stored alert (alert_updates.jsonl).
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import apache_beam as beam

from pipelines import telemetry
from pipelines.config import AlertRules
from pipelines.dedup import SourceUpdate
from pipelines.records import Annotated, iso_utc
from pipelines.sinks import ALERT_UPDATES_FILE, ALERTS_FILE, FileSinkFn, read_json_lines, source_dicts


def alert_id_of(story_id: str, actors: list[str], topics: list[str]) -> str:
    key = "|".join([story_id, ",".join(sorted(actors)), ",".join(sorted(topics))])
    return "a-" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def alert_topics(annotated: Annotated, rules: AlertRules) -> list[str]:
    return [
        topic for topic in annotated.topics
        if topic in rules.topics and (rules.min_score is None or annotated.scores[topic] >= rules.min_score)
    ]


def build_alert(annotated: Annotated, rules: AlertRules) -> dict | None:
    """The alert for an annotated item, or None when it mentions no actor or no alert topic."""
    topics = alert_topics(annotated, rules)
    actors = annotated.actors
    if not topics or not actors:
        return None
    record = annotated.to_json()
    del record["text"], record["published_estimated"]
    record["topics"] = topics
    record["evidence"]["topics"] = {topic: record["evidence"]["topics"][topic] for topic in topics}
    return {"alert_id": alert_id_of(annotated.item.story_id, actors, topics), **record}


class WriteAlertsFn(FileSinkFn):
    """Writes each alert id once (across runs, through the state store) to alerts.jsonl, and stdout if asked."""

    FILE = ALERTS_FILE

    def __init__(self, out_dir: str, state_dir: str, run_id: str, to_stdout: bool):
        super().__init__(out_dir, state_dir, run_id)
        self._to_stdout = to_stdout

    def setup(self):
        super().setup()
        self._store.adopt_alerts(read_json_lines(Path(self._out_dir) / ALERTS_FILE))

    def process(self, element):
        alert, published, fetched_at = element
        alert = self._store.raise_alert({**alert, "raised_at": iso_utc(time.time())}, self._out.write)
        if alert is None:  # raised before, by this run or an earlier one
            return
        telemetry.alert_delivered("file", "ok")
        if self._to_stdout:
            print(f"ALERT {alert['alert_id']} [{', '.join(alert['topics'])}] {', '.join(alert['actors'])}: {alert['title']}",
                  file=sys.stdout, flush=True)
            telemetry.alert_delivered("stdout", "ok")
        telemetry.alert_raised(alert["actors"], alert["topics"], published, fetched_at)
        self._store.count(self._run_id, "alerts")
        self.counted()


class AddSourcesFn(FileSinkFn):
    """A later copy of an alerted story: its source is appended to the stored alerts of that story."""

    FILE = ALERT_UPDATES_FILE

    def process(self, update: SourceUpdate):
        for alert in self._store.add_sources(update.story_id, source_dicts(update.sources)):
            self._out.write({"alert_id": alert["alert_id"], "story_id": update.story_id,
                             "sources": alert["sources"], "updated_at": iso_utc(time.time())})
        self._store.count(self._run_id, "duplicates")  # each update is one copy dropped as a duplicate
        self.counted()


class EmitAlerts(beam.PTransform):
    """(Annotated, SourceUpdate) -> alerts written once each to alerts.jsonl (and stdout if asked)."""

    def __init__(self, rules: AlertRules, out_dir: str, state_dir: str, run_id: str, to_stdout: bool = False):
        super().__init__()
        self._rules, self._sink_args, self._to_stdout = rules, (out_dir, state_dir, run_id), to_stdout

    def expand(self, inputs):
        annotated, updates = inputs
        updates | "AddSources" >> beam.ParDo(AddSourcesFn(*self._sink_args))
        return (
            annotated
            | "Decide" >> beam.FlatMap(
                lambda a, rules=self._rules: [(alert, a.item.published, a.item.fetched_at)]
                if (alert := build_alert(a, rules)) else [])
            | "Write" >> beam.ParDo(WriteAlertsFn(*self._sink_args, self._to_stdout))
        )
