"""EmitAlerts: annotated items -> alerts, written once each.

An alert is raised when a unique item mentions at least one watchlist actor and carries at
least one of the watchlist's alert topics (with at least `min_score`, where set). Its id
is a hash of the story, the actor set and the topic set (the alert key), so the same story
gives the same alert in every run and on every runner; the sink writes a key only once per
window, and a copy of the story that arrives later adds its source to the stored alert
(alert_updates.jsonl).

The window (`alerts: window_hours`, default 24) is measured in publication time, not wall
time: the same key raises again, as `<key>-2`, `<key>-3`, ..., only for a copy published at
least window_hours after the copy that raised the last one. So replaying old feeds never
re-alerts, the result does not depend on when the pipeline runs, and every alert id is
unique (it is also the webhooks' Idempotency-Key).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import apache_beam as beam

from pipelines import telemetry
from pipelines.config import AlertRules
from pipelines.dedup import SourceUpdate
from pipelines.records import Annotated, iso_utc
from pipelines.sinks import ALERT_UPDATES_FILE, ALERTS_FILE, FileSinkFn, read_json_lines, source_dicts
from pipelines.stories import StoryMerged


def alert_id_of(story_id: str, actors: list[str], topics: list[str]) -> str:
    key = "|".join([story_id, ",".join(sorted(actors)), ",".join(sorted(topics))])
    return "a-" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def alert_topics(annotated: Annotated, rules: AlertRules) -> list[str]:
    return [
        topic
        for topic in annotated.topics
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
    for part in ("topics", "passages"):
        record["evidence"][part] = {topic: found for topic, found in record["evidence"][part].items() if topic in topics}
    span = {"first_seen": record["published"], "last_seen": record["published"]}  # the story so far: this item
    return {"alert_id": alert_id_of(annotated.item.story_id, actors, topics), **record, "story_span": span}


class WriteAlertsFn(FileSinkFn):
    """(alert, published, fetched_at) -> the alert, if raised now: written to alerts.jsonl (the outbox that
    pipelines.delivery sends from) in one store transaction; an alert key raised for a copy published within
    the window is not."""

    FILE = ALERTS_FILE

    def __init__(self, out_dir: str, state_dir: str, run_id: str, window_hours: float):
        super().__init__(out_dir, state_dir, run_id)
        self._window_s = window_hours * 3600

    def setup(self):
        super().setup()
        self._store.adopt_alerts(read_json_lines(Path(self._out_dir) / ALERTS_FILE))

    def process(self, element):
        alert, published, fetched_at = element
        alert = self._store.raise_alert({**alert, "raised_at": iso_utc(time.time())}, self._out.write, published, self._window_s)
        if alert is None:  # raised before, by this run or an earlier one, within the window
            return
        telemetry.alert_delivered("file", "ok")
        telemetry.alert_raised(alert["actors"], alert["topics"], published, fetched_at)
        self._store.count(self._run_id, "alerts")
        self.counted()
        yield alert


class AddSourcesFn(FileSinkFn):
    """A later copy of an alerted story: its source is appended to the stored alerts of that story. Two stories found
    to be one: one `story_merged` record listing their alerts, which all carry the union of their sources."""

    FILE = ALERT_UPDATES_FILE

    def process(self, update: SourceUpdate | StoryMerged):
        if isinstance(update, StoryMerged):
            self._merge(update)
            return
        seen = iso_utc(update.published) if update.published is not None else None
        for alert in self._store.add_sources(update.story_id, source_dicts(update.sources), seen):
            self._out.write(
                {
                    "alert_id": alert["alert_id"],
                    "story_id": update.story_id,
                    "sources": alert["sources"],
                    "story_span": alert.get("story_span"),
                    "updated_at": iso_utc(time.time()),
                }
            )
        self._store.count(self._run_id, "duplicates")  # each update is one copy dropped as a duplicate
        self.counted()

    def _merge(self, merged: StoryMerged):
        result = self._store.merge_stories(merged.story_id, merged.merged)
        if result is None or not result[1]:  # one story already, or no alert to tell about
            return
        root, alerts = result
        self._out.write(
            {
                "event": "story_merged",
                "story_id": root,
                "merged_story_ids": sorted({merged.story_id, merged.merged} - {root}),
                "alert_ids": [alert["alert_id"] for alert in alerts],
                "sources": alerts[0]["sources"],
                "updated_at": iso_utc(time.time()),
            }
        )


class EmitAlerts(beam.PTransform):
    """(Annotated, SourceUpdate) -> the alerts raised, each written once to alerts.jsonl. Delivery to the
    watchlist's sinks is not a step of the pipeline: pipelines.delivery sends from alerts.jsonl beside it."""

    def __init__(self, rules: AlertRules, out_dir: str, state_dir: str, run_id: str):
        super().__init__()
        self._rules, self._sink_args = rules, (out_dir, state_dir, run_id)

    def expand(self, inputs):
        annotated, updates = inputs
        updates | "AddSources" >> beam.ParDo(AddSourcesFn(*self._sink_args))
        return (
            annotated
            | "Decide"
            >> beam.FlatMap(
                lambda a, rules=self._rules: (
                    [(alert, a.item.published, a.item.fetched_at)] if (alert := build_alert(a, rules)) else []
                )
            )
            | "Write" >> beam.ParDo(WriteAlertsFn(*self._sink_args, self._rules.window_hours))
        )
