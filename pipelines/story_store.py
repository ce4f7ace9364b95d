"""Stories in the state store: which story ids were merged into which, and each story as stories.jsonl shows it.

A mixin of `pipelines.store.StateStore` (it uses the store's connection and transactions). Merged stories form
sets whose root is the smallest id; every member points to its root directly, so finding a story's root is one
lookup. The alerts of every member of a set share the set's sources; an alert keeps its own id and story id.
"""

from __future__ import annotations

import json

STORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS story_roots (story_id TEXT PRIMARY KEY, root TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS story_roots_by_root ON story_roots (root);
CREATE TABLE IF NOT EXISTS stories (story_id TEXT PRIMARY KEY, record TEXT NOT NULL);
"""


def merged_sources(sources: list[dict], more: list[dict]) -> list[dict]:
    """`sources` and those of `more` not in it yet (by feed and URL), in order."""
    known = {(s["feed"], s["url"]) for s in sources}
    return sources + [s for s in more if (s["feed"], s["url"]) not in known and not known.add((s["feed"], s["url"]))]


def new_story(story_id: str) -> dict:
    return {"story_id": story_id, "first_seen": None, "last_seen": None, "title": "", "sources": [], "topics": [],
            "actors": [], "items": 0, "merged_story_ids": []}  # fmt: skip


def grown(record: dict, seen: str, sources: list[dict], title: str = "", topics=(), actors=(), items: int = 0) -> dict:
    """`record` with what one more item (or copy) of the story brings; `seen` is its publication time (ISO 8601 UTC)."""
    first = record["first_seen"] is None or seen < record["first_seen"]
    return {
        **record,
        "first_seen": seen if first else record["first_seen"],
        "last_seen": seen if record["last_seen"] is None or seen > record["last_seen"] else record["last_seen"],
        "title": title if title and (first or not record["title"]) else record["title"],
        "sources": merged_sources(record["sources"], sources),
        "topics": sorted({*record["topics"], *topics}),
        "actors": sorted({*record["actors"], *actors}),
        "items": record["items"] + items,
    }


def joined(root: dict, other: dict) -> dict:
    """Two story records as one, under `root`'s id."""
    out = grown(root, other["first_seen"], other["sources"], other["title"], other["topics"], other["actors"], other["items"])
    out = grown(out, other["last_seen"], [])
    merged = {*root["merged_story_ids"], *other["merged_story_ids"], other["story_id"]}
    return {**out, "merged_story_ids": sorted(merged)}


class StoryTables:
    """Story roots, merges and records; `self._db` and `self._transaction` come from StateStore."""

    def story_root(self, story_id: str) -> str:
        row = self._db.execute("SELECT root FROM story_roots WHERE story_id = ?", (story_id,)).fetchone()
        return row[0] if row else story_id

    def story_members(self, root: str) -> list[str]:
        rows = self._db.execute("SELECT story_id FROM story_roots WHERE root = ?", (root,)).fetchall()
        return [root, *(row[0] for row in rows if row[0] != root)]

    def _record(self, story_id: str) -> dict | None:
        row = self._db.execute("SELECT record FROM stories WHERE story_id = ?", (story_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def _save(self, record: dict) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO stories (story_id, record) VALUES (?, ?)",
            (record["story_id"], json.dumps(record, ensure_ascii=False)),
        )

    def merge_stories(self, into: str, merged: str) -> tuple[str, list[dict]] | None:
        """Make the stories of `into` and `merged` one. -> (the root, the set's alerts, each now carrying the union of
        their sources), or None when they were one already (a merge is idempotent)."""
        with self._transaction():
            first, second = self.story_root(into), self.story_root(merged)
            if first == second:
                return None
            root, other = min(first, second), max(first, second)
            moved = self.story_members(other)
            self._db.execute("UPDATE story_roots SET root = ? WHERE root = ?", (root, other))
            self._db.execute("INSERT OR REPLACE INTO story_roots (story_id, root) VALUES (?, ?)", (other, root))
            self._db.execute("INSERT OR IGNORE INTO story_roots (story_id, root) VALUES (?, ?)", (root, root))
            kept, gone = self._record(root), self._record(other)
            if gone:
                self._save(joined(kept or new_story(root), gone))
                self._db.execute("DELETE FROM stories WHERE story_id = ?", (other,))
            rows = self._db.execute(
                f"SELECT feed, url FROM story_sources WHERE story_id IN ({','.join('?' * len(moved))})", moved
            ).fetchall()
            self._db.executemany(
                "INSERT OR IGNORE INTO story_sources (story_id, feed, url) VALUES (?, ?, ?)", [(root, f, u) for f, u in rows]
            )
            return root, self.share_sources(root)

    def share_sources(self, root: str) -> list[dict]:
        """Give every alert of the story set under `root` the union of their sources; -> those alerts."""
        members = self.story_members(root)
        rows = self._db.execute(
            f"SELECT alert_id, record FROM alerts WHERE story_id IN ({','.join('?' * len(members))}) ORDER BY alert_id",
            members,
        ).fetchall()
        alerts = [json.loads(record) for _, record in rows]
        union: list[dict] = []
        for alert in alerts:
            union = merged_sources(union, alert["sources"])
        for alert in alerts:
            if alert["sources"] != union:
                alert["sources"] = union
                self._db.execute(
                    "UPDATE alerts SET record = ? WHERE alert_id = ?", (json.dumps(alert, ensure_ascii=False), alert["alert_id"])
                )
        return alerts

    def story_grew(self, story_id: str, seen: str, sources: list[dict], **item) -> None:
        """One more item (`title`, `topics`, `actors`, `items=1`) or copy (sources alone) of a story."""
        with self._transaction():
            root = self.story_root(story_id)
            self._save(grown(self._record(root) or new_story(root), seen, sources, **item))

    def story_records(self) -> list[dict]:
        """Every story, first seen first."""
        records = [json.loads(row[0]) for row in self._db.execute("SELECT record FROM stories").fetchall()]
        return sorted(records, key=lambda record: (record["first_seen"] or "", record["story_id"]))
