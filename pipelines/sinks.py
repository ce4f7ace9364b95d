"""The edges where the pipeline writes: JSON-lines files and the summary.

Each line is written whole and flushed at once, so a reader sees it within a second and
never a half-written line (a reader that finds a torn last line after a crash skips it).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from pipelines import telemetry
from pipelines.records import Annotated, DeadLetter, FeedStatus, iso_utc
from pipelines.store import StateStore

ITEMS_FILE = "items.jsonl"
ALERTS_FILE = "alerts.jsonl"
ALERT_UPDATES_FILE = "alert_updates.jsonl"
DEAD_LETTER_FILE = "dead_letter.jsonl"
SUMMARY_FILE = "summary.json"
SUMMARY_REFRESH_S = 1.0


class JsonLines:
    """An append-only JSON-lines file: one whole line per record, flushed as written."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def read_json_lines(path: Path) -> list[dict]:
    """Every whole record of a JSON-lines file; a torn last line (a crash mid-write) is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def write_json_atomic(path: Path, record: dict) -> None:
    """Write to a temporary file beside the target, fsync, rename: readers see old or new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(record, handle, ensure_ascii=False, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class FileSinkFn(beam.DoFn):
    """Opens its JSON-lines file (and the state store, where it needs one) in setup."""

    FILE = ""
    USES_STORE = False

    def __init__(self, out_dir: str, state_dir: str | None = None):
        self._out_dir = out_dir
        self._state_dir = state_dir

    def setup(self):
        self._out = JsonLines(Path(self._out_dir) / self.FILE)
        self._store = StateStore(self._state_dir) if self.USES_STORE and self._state_dir else None

    def teardown(self):
        self._out.close()
        if self._store:
            self._store.close()


class WriteItemsFn(FileSinkFn):
    FILE = ITEMS_FILE
    USES_STORE = True

    def process(self, annotated: Annotated):
        item = annotated.item
        self._out.write(annotated.to_json())
        if self._store:
            self._store.remember(item.story_id, {"identity": item.identity_key, "fingerprint": item.fingerprint})
        yield annotated


class WriteDeadLettersFn(FileSinkFn):
    FILE = DEAD_LETTER_FILE

    def process(self, dead: DeadLetter):
        self._out.write(dead.to_json())
        yield dead


# --- summary ---------------------------------------------------------------------------

def empty_summary() -> dict:
    return {"fetched": 0, "unique": 0, "duplicates": 0, "dead_letter_items": 0, "alerts": 0, "feeds": {}}


def apply_event(summary: dict, kind: str, value) -> dict:
    """Fold one event into the running counts. `feed` events carry a FeedStatus."""
    if kind == "feed":
        status: FeedStatus = value
        health = summary["feeds"].setdefault(status.feed, {"last_success": None, "last_error": None, "consecutive_failures": 0})
        if status.ok:
            summary["fetched"] += status.entries
            health.update(last_success=iso_utc(status.at), consecutive_failures=0)
        else:
            health.update(last_error=f"{iso_utc(status.at)} {status.error}", consecutive_failures=health["consecutive_failures"] + 1)
    else:
        summary[kind] += value
    return summary


def rendered(summary: dict) -> dict:
    feeds = summary["feeds"]
    failed = sum(1 for health in feeds.values() if health["consecutive_failures"])
    return {**summary, "feeds_ok": len(feeds) - failed, "feeds_failed": failed, "updated_at": iso_utc(time.time())}


class SummaryFn(beam.DoFn):
    """All events under one key; summary.json rewritten at most once a second and after every bundle."""

    COUNTS = ReadModifyWriteStateSpec("counts", PickleCoder())

    def __init__(self, out_dir: str):
        self._path = Path(out_dir) / SUMMARY_FILE

    def setup(self):
        self._latest = None
        self._written_at = 0.0

    def process(self, element, counts=beam.DoFn.StateParam(COUNTS)):
        _, (kind, value) = element
        self._latest = apply_event(counts.read() or empty_summary(), kind, value)
        counts.write(self._latest)
        if time.monotonic() - self._written_at >= SUMMARY_REFRESH_S:
            self._write()

    def finish_bundle(self):
        if self._latest is not None:
            self._write()

    def _write(self):
        write_json_atomic(self._path, rendered(self._latest))
        self._written_at = time.monotonic()


def feed_status_of(dead: DeadLetter) -> FeedStatus:
    return FeedStatus(dead.feed, False, 0, dead.reason, dead.at)


class WriteSummary(beam.PTransform):
    """{statuses, unique, duplicates, dead_letters, alerts} -> summary.json in the output dir."""

    def __init__(self, out_dir: str):
        super().__init__()
        self._out_dir = out_dir

    def expand(self, streams: dict):
        events = (
            streams["statuses"] | "FeedEvents" >> beam.Map(lambda s: ("feed", s)),
            streams["feed_failures"] | "FailureEvents" >> beam.Map(lambda d: ("feed", feed_status_of(d))),
            streams["unique"] | "UniqueEvents" >> beam.Map(lambda _: ("unique", 1)),
            streams["duplicates"] | "DuplicateEvents" >> beam.Map(lambda _: ("duplicates", 1)),
            streams["dead_items"] | "DeadItemEvents" >> beam.Map(lambda _: ("dead_letter_items", 1)),
            streams["alerts"] | "AlertEvents" >> beam.Map(lambda _: ("alerts", 1)),
        ) | "AllEvents" >> beam.Flatten()
        return (
            events
            | "OneKey" >> beam.Map(lambda event: ("summary", event))
            | "Count" >> beam.ParDo(SummaryFn(self._out_dir))
        )


def source_dicts(sources) -> list[dict]:
    return [asdict(source) for source in sources]
