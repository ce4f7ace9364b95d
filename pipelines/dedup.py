"""Deduplicate: one unique item per story, every copy counted and its source kept.

Two exact steps, each keeping the first copy it sees of a key, then a near-duplicate one:
1. `SameItem`, keyed by the item's identity (canonical URL, else feed + GUID, else content):
   the same entry polled again, or carried by two feeds under one link; a re-publication
   under the same URL or GUID with a new headline or an edited sentence is this same item;
2. `SameStory`, keyed by the content fingerprint: the same text under another URL or
   headline, as when an outlet republishes a wire story with its own page furniture;
3. `NearStory` (`pipelines.stories`): a copy trimmed, retitled, lightly edited or wrapped
   in unknown furniture joins the story of the item it is a near-duplicate of.
The first copy becomes the story's unique item (story id from its fingerprint); the
others are duplicates whose sources are added to the story.

The exact steps differ between batch and stream only in how "first" is found: a bounded
input is grouped by key, so the unique item lists every exact copy's source at once; an
unbounded one goes through a stateful DoFn that emits the first copy at once (alerts must
not wait) and each later copy as a `SourceUpdate`, and forgets a key `horizon_days` after
its latest copy. The near-duplicate step is the same in both. With a state store, keys that
an earlier run wrote count as seen.
"""

from __future__ import annotations

from dataclasses import replace

import apache_beam as beam

from pipelines.buckets import entries_in, expiry_at, register, shard_of, story_id, story_int, with_entries
from pipelines.records import Item
from pipelines.stories import (
    ExpiringStateFn,
    NearStory,
    SourceUpdate,
    StoryMerged,
    StorySettings,
    copy_of,
    sources_of,
    with_own_timer,
)

DUPLICATES = "duplicates"


def story_id_of(item: Item) -> str:
    """A story's id is its first item's: the fingerprint's first 16 hex digits (64 bits)."""
    return "s-" + item.fingerprint[:16]


def first_copy_order(item: Item) -> tuple:
    """Earliest publication first; ties broken by feed and URL so every run agrees."""
    return (item.published, item.fetched_at, item.feed, item.url, item.title)


def merge_copies(copies: list[Item]) -> tuple[Item, list[Item]]:
    """The first copy, carrying every copy's sources, and the others."""
    ordered = sorted(copies, key=first_copy_order)
    first, others = ordered[0], ordered[1:]
    sources = tuple(dict.fromkeys(source for copy in ordered for source in sources_of(copy)))
    return replace(first, sources=sources), others


class _StoreFn(ExpiringStateFn):
    def __init__(self, kind: str, settings: StorySettings, state_dir: str | None):
        super().__init__(settings, state_dir)
        self._kind = kind

    def earlier_story(self, key: str) -> str | None:
        return self._store.story_of(self._kind, key) if self._lookups else None

    def unique(self, item: Item) -> Item:
        return replace(item, story_id=item.story_id or story_id_of(item), sources=sources_of(item))


class _MergeGroupFn(_StoreFn):
    """(key, all copies) -> the unique item, or nothing when an earlier run saw the key."""

    def process(self, element):
        key, copies = element
        yield from (copy for copy in copies if not isinstance(copy, Item))
        items = [copy for copy in copies if isinstance(copy, Item)]
        if not items:
            return
        first, others = merge_copies(items)
        earlier = self.earlier_story(key)
        if earlier:
            for copy in [first, *others]:
                yield copy_of(earlier, copy)
            return
        first = self.unique(first)
        yield first
        for copy in others:
            yield copy_of(first.story_id, copy)


class _FirstSightFn(_StoreFn):
    """(shard, (key, copy)) -> the copy if it is the first of its key within the horizon; otherwise a SourceUpdate."""

    def step(self, element, ts, state, expiry):
        _, (key, copy) = element
        if isinstance(copy, SourceUpdate):  # decided by the step before: pass it on
            yield copy
            return
        self.saw(copy)
        shard = state.read()
        known = entries_in(shard, key, copy.published)
        first_id = story_id(known[0][0]) if known else self.earlier_story(key)
        if first_id:
            yield copy_of(first_id, copy)
        else:
            first = self.unique(copy)
            first_id = first.story_id
            yield first
        until = expiry_at(copy.published, self._settings.horizon_s)  # each copy keeps the key alive
        self.keep(with_entries(shard, key, register(known, story_int(first_id), until)[0]), state, expiry, ts)


def _key(element, kind: str) -> tuple[str, object]:
    if isinstance(element, SourceUpdate):
        return element.story_id, element
    return (element.identity_key if kind == "identity" else element.fingerprint), element


class _KeepFirst(beam.PTransform):
    """Item or SourceUpdate -> the first Item of each key, and SourceUpdates for the other copies."""

    def __init__(self, kind: str, streaming: bool, settings: StorySettings, state_dir: str | None):
        super().__init__()
        self._kind, self._streaming, self._settings, self._state_dir = kind, streaming, settings, state_dir

    def expand(self, items):
        keyed = items | "Key" >> beam.Map(_key, self._kind).with_output_types(tuple[str, object])
        if self._streaming:
            first_sight = with_own_timer(_FirstSightFn, f"expiry_{self._kind}")(self._kind, self._settings, self._state_dir)
            return (
                keyed
                | "Shard" >> beam.Map(lambda pair: (shard_of(pair[0]), pair)).with_output_types(tuple[int, object])
                | "Decide" >> beam.ParDo(first_sight)
            )
        decide = _MergeGroupFn(self._kind, self._settings, self._state_dir)
        return keyed | "Group" >> beam.GroupByKey() | "Decide" >> beam.ParDo(decide)


def _split(element):
    if isinstance(element, (SourceUpdate, StoryMerged)):
        yield beam.pvalue.TaggedOutput(DUPLICATES, element)
    else:
        yield element


class Deduplicate(beam.PTransform):
    """Item -> unique Item with `story_id` and `sources` (main), SourceUpdate (`duplicates`).

    The copies that the first step drops travel through the second step beside its items
    rather than being flattened in afterwards: on the FnApiRunner, everything downstream of
    a Flatten waits until a stream run ends.
    """

    def __init__(self, streaming: bool, state_dir: str | None = None, settings: StorySettings = StorySettings()):
        super().__init__()
        self._streaming = streaming
        self._state_dir = state_dir
        self._settings = settings

    def expand(self, items):
        return (
            items
            | "SameItem" >> _KeepFirst("identity", self._streaming, self._settings, self._state_dir)
            | "SameStory" >> _KeepFirst("fingerprint", self._streaming, self._settings, self._state_dir)
            | "NearStory" >> NearStory(self._settings, self._state_dir)
            | "Split" >> beam.ParDo(_split).with_outputs(DUPLICATES, main="unique")
        )
