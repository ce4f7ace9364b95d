"""Deduplicate: one unique item per story, every copy counted and its source kept.

Two exact steps, each keeping the first copy it sees of a key:
1. `SameItem`, keyed by the item's identity (canonical URL, else feed + GUID, else content):
   the same entry polled again, or carried by two feeds under one link;
2. `SameStory`, keyed by the content fingerprint: the same text under another URL or
   headline, as when an outlet republishes a wire story with its own page furniture.
The first copy becomes the story's unique item (story id from its fingerprint); the
others are duplicates whose sources are added to the story.

Batch and stream differ only in how "first" is found: a bounded input is grouped by key,
so the unique item lists every source at once; an unbounded one goes through a stateful
DoFn that emits the first copy at once (alerts must not wait) and each later copy as a
`SourceUpdate`. With a state store, keys that an earlier run wrote count as seen.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import apache_beam as beam
from apache_beam.coders import StrUtf8Coder
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from pipelines import telemetry
from pipelines.records import Item, Source
from pipelines.store import StateStore

DUPLICATES = "duplicates"


@dataclass(frozen=True)
class SourceUpdate:
    """A copy that was dropped as a duplicate: its source belongs to story `story_id`."""

    story_id: str
    sources: tuple[Source, ...]


def story_id_of(item: Item) -> str:
    return "s-" + item.fingerprint[:16]


def sources_of(item: Item) -> tuple[Source, ...]:
    return item.sources or (Source(item.feed, item.url),)


def first_copy_order(item: Item) -> tuple:
    """Earliest publication first; ties broken by feed and URL so every run agrees."""
    return (item.published, item.fetched_at, item.feed, item.url, item.title)


def merge_copies(copies: list[Item]) -> tuple[Item, list[Item]]:
    """The first copy, carrying every copy's sources, and the others."""
    ordered = sorted(copies, key=first_copy_order)
    first, others = ordered[0], ordered[1:]
    sources = tuple(dict.fromkeys(source for copy in ordered for source in sources_of(copy)))
    return replace(first, sources=sources), others


class _StoreFn(beam.DoFn):
    def __init__(self, kind: str, state_dir: str | None):
        self._kind = kind
        self._state_dir = state_dir
        self._store: StateStore | None = None

    def setup(self):
        if self._state_dir:
            self._store = StateStore(self._state_dir)

    def teardown(self):
        if self._store:
            self._store.close()

    def earlier_story(self, key: str) -> str | None:
        return self._store.story_of(self._kind, key) if self._store else None

    def unique(self, item: Item) -> Item:
        return replace(item, story_id=item.story_id or story_id_of(item), sources=sources_of(item))

    def duplicate(self, story_id: str, copy: Item) -> SourceUpdate:
        telemetry.item_duplicate()
        return SourceUpdate(story_id, sources_of(copy))


class _MergeGroupFn(_StoreFn):
    """(key, all copies) -> the unique item, or nothing when an earlier run saw the key."""

    def process(self, element):
        key, copies = element
        yield from (copy for copy in copies if isinstance(copy, SourceUpdate))
        items = [copy for copy in copies if isinstance(copy, Item)]
        if not items:
            return
        first, others = merge_copies(items)
        earlier = self.earlier_story(key)
        if earlier:
            for copy in [first, *others]:
                yield self.duplicate(earlier, copy)
            return
        first = self.unique(first)
        yield first
        for copy in others:
            yield self.duplicate(first.story_id, copy)


class _FirstSightFn(_StoreFn):
    """(key, copy) -> the copy if it is the first of its key; otherwise a SourceUpdate."""

    STORY = ReadModifyWriteStateSpec("story", StrUtf8Coder())

    def process(self, element, story=beam.DoFn.StateParam(STORY)):
        key, copy = element
        if isinstance(copy, SourceUpdate):  # decided by the step before: pass it on
            yield copy
            return
        known = story.read() or self.earlier_story(key)
        if known:
            story.write(known)
            yield self.duplicate(known, copy)
            return
        first = self.unique(copy)
        story.write(first.story_id)
        yield first


def _key(element, kind: str) -> tuple[str, object]:
    if isinstance(element, SourceUpdate):
        return element.story_id, element
    return (element.identity_key if kind == "identity" else element.fingerprint), element


class _KeepFirst(beam.PTransform):
    """Item or SourceUpdate -> the first Item of each key, and SourceUpdates for the other copies."""

    def __init__(self, kind: str, streaming: bool, state_dir: str | None):
        super().__init__()
        self._kind, self._streaming, self._state_dir = kind, streaming, state_dir

    def expand(self, items):
        keyed = items | "Key" >> beam.Map(_key, self._kind).with_output_types(tuple[str, object])
        if self._streaming:
            return keyed | "Decide" >> beam.ParDo(_FirstSightFn(self._kind, self._state_dir))
        return keyed | "Group" >> beam.GroupByKey() | "Decide" >> beam.ParDo(_MergeGroupFn(self._kind, self._state_dir))


def _split(element):
    if isinstance(element, SourceUpdate):
        yield beam.pvalue.TaggedOutput(DUPLICATES, element)
    else:
        yield element


class Deduplicate(beam.PTransform):
    """Item -> unique Item with `story_id` and `sources` (main), SourceUpdate (`duplicates`).

    The copies that the first step drops travel through the second step beside its items
    rather than being flattened in afterwards: on the FnApiRunner, everything downstream of
    a Flatten waits until a stream run ends.
    """

    def __init__(self, streaming: bool, state_dir: str | None = None):
        super().__init__()
        self._streaming = streaming
        self._state_dir = state_dir

    def expand(self, items):
        return (
            items
            | "SameItem" >> _KeepFirst("identity", self._streaming, self._state_dir)
            | "SameStory" >> _KeepFirst("fingerprint", self._streaming, self._state_dir)
            | "Split" >> beam.ParDo(_split).with_outputs(DUPLICATES, main="unique")
        )
