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
from pathlib import Path

DB_NAME = "newswatch.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (kind TEXT NOT NULL, key TEXT NOT NULL, story_id TEXT NOT NULL, PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS alerts (alert_id TEXT PRIMARY KEY, story_id TEXT NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_by_story ON alerts (story_id);
"""


class StateError(RuntimeError):
    """The state dir cannot be used; the message names the file and the way out."""


class StateStore:
    def __init__(self, state_dir: Path | str):
        self.path = Path(state_dir) / DB_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute("SELECT count(*) FROM seen").fetchone()
        except (sqlite3.DatabaseError, OSError) as err:
            raise StateError(
                f"{self.path}: cannot use the state database ({err}); move it aside to start with empty state "
                "(every item will then count as new), or point --state-dir elsewhere"
            ) from err

    def close(self) -> None:
        self._db.close()

    def story_of(self, kind: str, key: str) -> str | None:
        row = self._db.execute("SELECT story_id FROM seen WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        return row[0] if row else None

    def remember(self, story_id: str, keys: dict[str, str]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO seen (kind, key, story_id) VALUES (?, ?, ?)",
                [(kind, key, story_id) for kind, key in keys.items()],
            )

    def has_alert(self, alert_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone() is not None

    def remember_alert(self, alert: dict) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO alerts (alert_id, story_id, record) VALUES (?, ?, ?)",
                (alert["alert_id"], alert["story_id"], json.dumps(alert, ensure_ascii=False)),
            )

    def add_sources(self, story_id: str, sources: list[dict]) -> list[dict]:
        """Append sources to the stored alerts of a story; returns the updated alert records."""
        updated = []
        with self._db:
            for alert_id, record in self._db.execute("SELECT alert_id, record FROM alerts WHERE story_id = ?", (story_id,)).fetchall():
                alert = json.loads(record)
                known = {(s["feed"], s["url"]) for s in alert["sources"]}
                new = [s for s in sources if (s["feed"], s["url"]) not in known]
                if new:
                    alert["sources"] += new
                    self._db.execute("UPDATE alerts SET record = ? WHERE alert_id = ?", (json.dumps(alert, ensure_ascii=False), alert_id))
                    updated.append(alert)
        return updated
