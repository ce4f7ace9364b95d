"""stories.jsonl: one line per story, rewritten as stories grow.

Each line: `story_id`, `first_seen` and `last_seen` (publication times, ISO 8601 UTC), `title` (the first item's),
`sources` (feed, URL and publication time of every item and copy), `topics` and `actors` (of its items), `items`
(unique items in it) and `merged_story_ids` (stories found later to be this one). The state store holds the
stories; the file is rewritten from it whole (a temporary file renamed, so a reader never sees half of it) where
other sinks refresh summary.json: at most once a second while stories change, after each bundle, and at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.records import Annotated, iso_utc
from pipelines.sinks import FileSinkFn, write_atomic
from pipelines.stories import SourceUpdate

STORIES_FILE = "stories.jsonl"


def write_stories(path: Path, records: list[dict]) -> None:
    write_atomic(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))


def source_records(sources, seen: str) -> list[dict]:
    return [{"feed": source.feed, "url": source.url, "published": seen} for source in sources]


class WriteStoriesFn(FileSinkFn):
    """Annotated (a story's unique item) | SourceUpdate (a copy) -> the story grows in the store. StoryMerged is
    applied by the alerts sink (`pipelines.alerts.AddSourcesFn`), which owns merges."""

    def process(self, element):
        if isinstance(element, Annotated):
            item = element.item
            seen = iso_utc(item.published)
            sources = source_records(item.sources or [item], seen)
            self._store.story_grew(
                item.story_id, seen, sources, title=item.title, topics=element.topics, actors=element.actors, items=1
            )
        elif isinstance(element, SourceUpdate) and element.published is not None:
            seen = iso_utc(element.published)
            self._store.story_grew(element.story_id, seen, source_records(element.sources, seen))
        else:
            return
        self.counted()

    def teardown(self):
        self.refresh()
        super().teardown()

    def refresh(self) -> None:
        path = Path(self._out_dir) / STORIES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        write_stories(path, self._store.story_records())
