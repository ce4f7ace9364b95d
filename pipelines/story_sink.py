"""stories.jsonl: one line per story, rewritten as stories grow.

Each line: `story_id`, `first_seen` and `last_seen` (publication times, ISO 8601 UTC), `title` (the first item's),
`sources` (feed, URL and publication time of every item and copy), `topics` and `actors` (of its items), `items`
(unique items in it) and `merged_story_ids` (stories found later to be this one). The state store holds the
stories; the file is rewritten from it whole (to a temporary file, then renamed, so a reader never sees half of
it) at most once a second while they change, and when the sink shuts down.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from pipelines.records import Annotated, iso_utc
from pipelines.sinks import FileSinkFn
from pipelines.stories import SourceUpdate

STORIES_FILE = "stories.jsonl"
REWRITE_S = 1.0


def write_stories(path: Path, records: list[dict]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    os.replace(tmp, path)


def source_records(sources, seen: str) -> list[dict]:
    return [{"feed": source.feed, "url": source.url, "published": seen} for source in sources]


class WriteStoriesFn(FileSinkFn):
    """Annotated (a story's unique item) | SourceUpdate (a copy) -> the story grows in the store. StoryMerged is
    applied by the alerts sink (`pipelines.alerts.AddSourcesFn`), which owns merges."""

    def setup(self):
        super().setup()
        self._path = Path(self._out_dir) / STORIES_FILE
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._changed = False
        self._written_at = 0.0

    def process(self, element):
        if isinstance(element, Annotated):
            item = element.item
            seen = iso_utc(item.published)
            self._store.story_grew(
                item.story_id,
                seen,
                source_records(item.sources or [item], seen),
                title=item.title,
                topics=element.topics,
                actors=element.actors,
                items=1,
            )
        elif isinstance(element, SourceUpdate) and element.published is not None:
            seen = iso_utc(element.published)
            self._store.story_grew(element.story_id, seen, source_records(element.sources, seen))
        else:
            return
        self._changed = True
        if time.monotonic() - self._written_at >= REWRITE_S:
            self._rewrite()

    def finish_bundle(self):
        if self._changed:
            self._rewrite()

    def teardown(self):
        self._rewrite()
        super().teardown()

    def _rewrite(self):
        write_stories(self._path, self._store.story_records())
        self._changed = False
        self._written_at = time.monotonic()
