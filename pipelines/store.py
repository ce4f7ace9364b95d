"""The state kept in `--state-dir` across runs: what the outputs already hold.

An SQLite database in WAL mode: each decision is committed as one transaction, so a kill
at any point leaves either the old or the new state, never half of one. The sinks write
here only after their output line is flushed; Deduplicate reads here on first sight of a
key, so a restarted run treats what an earlier run wrote as already seen. On Flink and
Dataflow the same decisions live in Beam state, and no state dir is used.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pipelines.story_store import STORY_SCHEMA, StoryTables, merged_sources

DB_NAME = "newswatch.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (kind TEXT NOT NULL, key TEXT NOT NULL, story_id TEXT NOT NULL, PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS alerts (alert_id TEXT PRIMARY KEY, story_id TEXT NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_by_story ON alerts (story_id);
CREATE TABLE IF NOT EXISTS sink_offsets (path TEXT PRIMARY KEY, offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS run_counts (run_id TEXT NOT NULL, kind TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (run_id, kind));
CREATE TABLE IF NOT EXISTS feed_health (feed TEXT PRIMARY KEY, run_id TEXT NOT NULL, last_success REAL, last_error TEXT,
                                        consecutive_failures INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS story_sources (story_id TEXT NOT NULL, feed TEXT NOT NULL, url TEXT NOT NULL,
                                          PRIMARY KEY (story_id, feed, url));
-- Each feed's poll schedule and HTTP validators (a PollState as JSON), so a restart polls conditionally and on time.
CREATE TABLE IF NOT EXISTS feed_polls (feed TEXT PRIMARY KEY, url TEXT NOT NULL, state TEXT NOT NULL);
-- The latest alert raised for each alert key (story + actor set + topic set), for the alert window.
CREATE TABLE IF NOT EXISTS alert_keys (key TEXT PRIMARY KEY, alert_id TEXT NOT NULL, occurrence INTEGER NOT NULL,
                                       published REAL NOT NULL);
"""


class StateError(RuntimeError):
    """The state dir cannot be used; the message names the file and the way out."""


class StateStore(StoryTables):
    def __init__(self, state_dir: Path | str):
        self.path = Path(state_dir) / DB_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A DoFn may be torn down on another thread than the one that set it up (Prism, portable runners);
            # one DoFn instance never uses its store from two threads at once.
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA + STORY_SCHEMA)
            self._db.execute("SELECT count(*) FROM seen").fetchone()
        except (sqlite3.DatabaseError, OSError) as err:
            raise StateError(
                f"{self.path}: cannot use the state database ({err}); move it aside to start with empty state "
                "(every item will then count as new), or point --state-dir elsewhere"
            ) from err

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self):
        """One write transaction; SQLite runs them one at a time, whichever DoFn asks."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def story_of(self, kind: str, key: str) -> str | None:
        row = self._db.execute("SELECT story_id FROM seen WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        return row[0] if row else None

    def holds_written_items(self) -> bool:
        return self._db.execute("SELECT 1 FROM seen LIMIT 1").fetchone() is not None

    def remember(self, written: list[tuple[str, dict[str, str]]], sink_path: str, offset: int) -> None:
        """Mark (story_id, {kind: key}) pairs as written, and the sink file as committed up to `offset`, at once."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO seen (kind, key, story_id) VALUES (?, ?, ?)",
                [(kind, key, story_id) for story_id, keys in written for kind, key in keys.items()],
            )
            self._db.execute(
                "INSERT INTO sink_offsets (path, offset) VALUES (?, ?) ON CONFLICT (path) DO UPDATE SET offset = excluded.offset",
                (sink_path, offset),
            )

    def committed_offset(self, sink_path: str) -> int:
        row = self._db.execute("SELECT offset FROM sink_offsets WHERE path = ?", (sink_path,)).fetchone()
        return row[0] if row else 0

    def raise_alert(self, alert: dict, write, published: float, window_s: float) -> dict | None:
        """Store a new alert with every source its story has had so far, calling `write(alert)` before the
        commit; None if its key (its `alert_id`) was raised for a copy published less than `window_s` earlier.
        A later occurrence of the key gets the id `<key>-<n>`. A crash after `write` leaves the alert in the
        output file (the outbox that pipelines.delivery sends from) but not here:
        `adopt_alerts` at the next start takes it over from the file."""
        key = alert["alert_id"]
        with self._transaction():
            row = self._db.execute("SELECT occurrence, published FROM alert_keys WHERE key = ?", (key,)).fetchone()
            if row and published < row[1] + window_s:
                return None
            occurrence = row[0] + 1 if row else 1
            story = self.story_root(alert["story_id"])
            known = self._db.execute("SELECT feed, url FROM story_sources WHERE story_id = ?", (story,)).fetchall()
            alert = {
                **alert,
                "alert_id": key if occurrence == 1 else f"{key}-{occurrence}",
                "sources": _merged(alert["sources"], [{"feed": f, "url": u} for f, u in known]),
            }
            self._db.execute(
                "INSERT INTO alerts (alert_id, story_id, record) VALUES (?, ?, ?)",
                (alert["alert_id"], alert["story_id"], json.dumps(alert, ensure_ascii=False)),
            )
            self._db.execute(
                "INSERT OR REPLACE INTO alert_keys (key, alert_id, occurrence, published) VALUES (?, ?, ?, ?)",
                (key, alert["alert_id"], occurrence, published),
            )
            write(alert)
            return alert

    def adopt_alerts(self, alerts: list[dict]) -> None:
        """Take over alerts found in alerts.jsonl but not here (each with its key, occurrence and publication time)."""
        with self._transaction():
            for alert in alerts:
                if self._db.execute(
                    "INSERT OR IGNORE INTO alerts (alert_id, story_id, record) VALUES (?, ?, ?)",
                    (alert["alert_id"], alert["story_id"], json.dumps(alert, ensure_ascii=False)),
                ).rowcount:
                    key, occurrence = alert_key_of(alert["alert_id"])
                    published = datetime.strptime(alert["published"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
                    self._db.execute(
                        "INSERT INTO alert_keys (key, alert_id, occurrence, published) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET alert_id = excluded.alert_id, occurrence = excluded.occurrence, "
                        "published = excluded.published WHERE excluded.occurrence > occurrence",
                        (key, alert["alert_id"], occurrence, published),
                    )

    def add_sources(self, story_id: str, sources: list[dict], seen: str | None = None) -> list[dict]:
        """Record a story's later sources (seen at `seen`, ISO 8601 UTC) and give them to the alerts of its story (and of
        every story merged with it); returns the alerts that changed."""
        with self._transaction():
            story = self.story_root(story_id)
            self._db.executemany(
                "INSERT OR IGNORE INTO story_sources (story_id, feed, url) VALUES (?, ?, ?)",
                [(story, s["feed"], s["url"]) for s in sources],
            )
            changed = []
            for alert in self.share_sources(story):
                record = _with_sources(alert, sources, seen)
                if record != alert:
                    self._db.execute(
                        "UPDATE alerts SET record = ? WHERE alert_id = ?",
                        (json.dumps(record, ensure_ascii=False), alert["alert_id"]),
                    )
                    changed.append(record)
        return changed

    def legacy_deliveries(self) -> dict[str, set[str]] | None:
        """{sink: alert ids still pending} from the per-sink outbox table that versions before the delivery
        ledger kept here; None where this database never had one."""
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'").fetchone():
            return None
        pending: dict[str, set[str]] = {}
        for sink, alert_id, status in self._db.execute("SELECT sink, alert_id, status FROM deliveries"):
            pending.setdefault(sink, set()).update([alert_id] if status == "pending" else [])
        return pending

    # --- polling: each feed's schedule and validators -------------------------------

    def save_polls(self, polls: list[tuple[str, str, dict]]) -> None:
        """Keep (feed, url, poll state) for the next run, in one transaction."""
        with self._transaction():
            self._db.executemany(
                "INSERT INTO feed_polls (feed, url, state) VALUES (?, ?, ?) "
                "ON CONFLICT (feed) DO UPDATE SET url = excluded.url, state = excluded.state",
                [(feed, url, json.dumps(state)) for feed, url, state in polls],
            )

    def saved_polls(self) -> dict[str, tuple[str, dict]]:
        """{feed: (url, poll state)} as the last run left them."""
        rows = self._db.execute("SELECT feed, url, state FROM feed_polls").fetchall()
        return {feed: (url, json.loads(state)) for feed, url, state in rows}

    # --- the run's accounting, which summary.json shows -------------------------------

    def count(self, run_id: str, kind: str, n: int = 1) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT INTO run_counts (run_id, kind, n) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, kind) DO UPDATE SET n = n + excluded.n",
                (run_id, kind, n),
            )

    def feed_polled(self, run_id: str, feed: str, ok: bool, entries: int, error: str, at_iso: str) -> None:
        """One poll's outcome: its entries count as fetched, and the feed's health follows it."""
        with self._transaction():
            self._db.execute("INSERT OR IGNORE INTO feed_health (feed, run_id) VALUES (?, ?)", (feed, run_id))
            if ok:
                self._db.execute(
                    "UPDATE feed_health SET run_id = ?, last_success = ?, consecutive_failures = 0 WHERE feed = ?",
                    (run_id, at_iso, feed),
                )
                self._db.execute(
                    "INSERT INTO run_counts (run_id, kind, n) VALUES (?, 'fetched', ?) "
                    "ON CONFLICT (run_id, kind) DO UPDATE SET n = n + excluded.n",
                    (run_id, entries),
                )
            else:
                self._db.execute(
                    "UPDATE feed_health SET run_id = ?, last_error = ?, consecutive_failures = consecutive_failures + 1 "
                    "WHERE feed = ?",
                    (run_id, f"{at_iso} {error}", feed),
                )

    def summary(self, run_id: str) -> dict:
        counts = dict(self._db.execute("SELECT kind, n FROM run_counts WHERE run_id = ?", (run_id,)).fetchall())
        feeds = {
            feed: {"last_success": success, "last_error": error, "consecutive_failures": failures}
            for feed, success, error, failures in self._db.execute(
                "SELECT feed, last_success, last_error, consecutive_failures FROM feed_health WHERE run_id = ? ORDER BY feed",
                (run_id,),
            )
        }
        failed = sum(1 for health in feeds.values() if health["consecutive_failures"])
        return {
            **{
                kind: counts.get(kind, 0)
                for kind in ("fetched", "unique", "duplicates", "dead_letter_items", "alerts", "entries_cut")
            },
            "feeds_ok": len(feeds) - failed,
            "feeds_failed": failed,
            "feeds": feeds,
        }


def alert_key_of(alert_id: str) -> tuple[str, int]:
    """`a-<hash>` -> (a-<hash>, 1); `a-<hash>-<n>` (a later occurrence, past the window) -> (a-<hash>, n)."""
    parts = alert_id.split("-")
    return "-".join(parts[:2]), int(parts[2]) if len(parts) > 2 else 1


def _merged(sources: list[dict], more: list[dict]) -> list[dict]:
    return merged_sources(sources, more)


def _with_sources(alert: dict, sources: list[dict], seen: str | None) -> dict:
    """The alert with more sources, and its story's time span stretched to `seen`."""
    span = dict(alert.get("story_span") or {"first_seen": alert["published"], "last_seen": alert["published"]})
    if seen:
        span = {"first_seen": min(span["first_seen"], seen), "last_seen": max(span["last_seen"], seen)}
    return {**alert, "sources": _merged(alert["sources"], sources), "story_span": span}
