"""The edges where the pipeline writes: JSON-lines files and the summary.

Each line is written whole and flushed at once, so a reader sees it within a second and
never a half-written line (a reader that finds a torn last line after a crash skips it).
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import apache_beam as beam

from pipelines import telemetry
from pipelines.records import Annotated, DeadLetter, FeedStatus, iso_utc
from pipelines.signatures import near_keys, signature
from pipelines.store import StateStore

ITEMS_FILE = "items.jsonl"
ALERTS_FILE = "alerts.jsonl"
ALERT_UPDATES_FILE = "alert_updates.jsonl"
DEAD_LETTER_FILE = "dead_letter.jsonl"
SUMMARY_FILE = "summary.json"
SUMMARY_REFRESH_S = 1.0


class JsonLines:
    """An append-only JSON-lines file: one whole line per record, flushed as written.

    A line torn by a crash is ended with a newline on open, so it stays one unreadable line
    (which readers skip) instead of swallowing the next record.
    """

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle = open(path, "a+b")  # noqa: SIM115 - held open for the sink's lifetime, closed in teardown
        if self._handle.tell() > 0:
            self._handle.seek(-1, os.SEEK_END)
            if self._handle.read(1) != b"\n":
                self._handle.write(b"\n")
                self._handle.flush()

    def write(self, record: dict) -> int:
        """Append one record; returns the file offset just after it."""
        self._handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        self._handle.flush()
        return self._handle.tell()

    def close(self) -> None:
        self._handle.close()


def read_json_lines(path: Path, start: int = 0) -> list[dict]:
    """Every whole record of a JSON-lines file from byte `start`; a line torn by a crash is skipped."""
    if not path.exists():
        return []
    with open(path, "rb") as handle:
        handle.seek(start)
        return json_records(handle.read())


def json_records(data: bytes) -> list[dict]:
    """The records of JSON lines in `data`; a line that is not JSON (torn by a crash) is skipped."""
    records = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside the target, fsync, rename: readers see old or new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, record: dict) -> None:
    write_atomic(path, json.dumps(record, ensure_ascii=False, indent=2, sort_keys=True))


def write_summary(out_dir: Path, store: StateStore, run_id: str) -> None:
    """summary.json from the run's accounting in the store; a lock keeps concurrent writers in order."""
    with open(out_dir / (SUMMARY_FILE + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_json_atomic(out_dir / SUMMARY_FILE, {**store.summary(run_id), "updated_at": iso_utc(time.time())})


class FileSinkFn(beam.DoFn):
    """A sink: opens its JSON-lines file and the state store in setup, counts what it writes
    in the run's accounting, and refreshes summary.json at most once a second and after each bundle."""

    FILE = ""

    def __init__(self, out_dir: str, state_dir: str, run_id: str):
        self._out_dir = out_dir
        self._state_dir = state_dir
        self._run_id = run_id

    def setup(self):
        self._out = JsonLines(Path(self._out_dir) / self.FILE) if self.FILE else None
        self._store = StateStore(self._state_dir)
        self._summary_at = 0.0
        self._counted_since_summary = False

    def teardown(self):
        if self._out:
            self._out.close()
        self._store.close()

    def counted(self) -> None:
        self._counted_since_summary = True
        if time.monotonic() - self._summary_at >= SUMMARY_REFRESH_S:
            self._refresh_summary()

    def finish_bundle(self):
        if self._counted_since_summary:
            self._refresh_summary()

    def _refresh_summary(self):
        self.refresh()
        self._summary_at = time.monotonic()
        self._counted_since_summary = False

    def refresh(self) -> None:
        """What the sink rewrites at most once a second and after each bundle: summary.json."""
        write_summary(Path(self._out_dir), self._store, self._run_id)


def written_keys(record: dict, near_bands: tuple[int, ...] | None = None) -> tuple[str, dict[str, str]]:
    """What an items.jsonl record tells the store: its story and the keys Deduplicate looks up
    (the band values are computed from the text where the caller does not have them)."""
    bands = signature(record["text"]) if near_bands is None else near_bands
    return record["story_id"], {"identity": record["item_id"], "fingerprint": record["fingerprint"], **near_keys(bands)}


def adopt_written_items(path: Path, store: StateStore) -> int:
    """Mark the items.jsonl lines past the store's committed offset as written; returns the file's size."""
    tail = read_json_lines(path, store.committed_offset(str(path)))
    size = path.stat().st_size if path.exists() else 0
    store.remember([written_keys(record) for record in tail if "item_id" in record], str(path), size)
    return size


class WriteItemsFn(FileSinkFn):
    """Writes each unique item at once, and marks the keys of what it wrote in the store after
    each bundle (and at least once a second).

    The file is the log and the store its checkpoint: a kill before a commit leaves lines past
    the store's committed offset, which the next start takes over (so a restarted run neither
    loses nor rewrites them). Within a run, Deduplicate's own state already knows these keys.
    """

    FILE = ITEMS_FILE

    def setup(self):
        super().setup()
        self._offset = adopt_written_items(self._out.path, self._store)
        self._pending: list[tuple[str, dict[str, str]]] = []

    def process(self, annotated: Annotated):
        record = annotated.to_json()
        self._offset = self._out.write(record)
        self._pending.append(written_keys(record, annotated.item.near_bands))
        if time.monotonic() - self._summary_at >= SUMMARY_REFRESH_S:
            self._commit()
            self.counted()

    def finish_bundle(self):
        self._commit()
        super().finish_bundle()

    def _commit(self):
        if self._pending:
            self._store.remember(self._pending, str(self._out.path), self._offset)
            self._store.count(self._run_id, "unique", len(self._pending))
            self._pending = []
            self._counted_since_summary = True


class WriteDeadLettersFn(FileSinkFn):
    """Every dead letter is a line; a failed feed poll also marks the feed's health."""

    FILE = DEAD_LETTER_FILE

    def process(self, dead: DeadLetter):
        self._out.write(dead.to_json())
        telemetry.dead_letter(dead.stage)
        if dead.is_item:
            self._store.count(self._run_id, "dead_letter_items")
        else:
            self._store.feed_polled(self._run_id, dead.feed, False, 0, dead.reason, iso_utc(dead.at))
        self.counted()


class RecordFeedStatusFn(FileSinkFn):
    def process(self, status: FeedStatus):
        self._store.feed_polled(self._run_id, status.feed, status.ok, status.entries, status.error, iso_utc(status.at))
        if status.cut:
            self._store.count(self._run_id, "entries_cut", status.cut)
        self.counted()


def source_dicts(sources) -> list[dict]:
    return [asdict(source) for source in sources]
