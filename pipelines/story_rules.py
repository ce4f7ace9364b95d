"""The story decision as plain functions and the element shapes of the story stage; no Beam state.

`sign` gives an item its band values and sketch (`pipelines.signatures`); `band_step` runs one band's bucket
(`pipelines.buckets`) for one item; `decide` turns the hits into the story joined and the ids merged into it.
`pipelines.stories` wraps them in Beam steps; `pipelines.story_replay` runs them in one process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from pipelines import telemetry
from pipelines.buckets import (
    BUCKET_CAP,
    Shard,
    entries_in,
    expiry_at,
    register,
    shard_of,
    story_int,
    with_entries,
)
from pipelines.records import Item, Source
from pipelines.signatures import (
    LEAD_BANDS,
    ROWS,
    TEXT_BANDS,
    Sketch,
    is_copy,
    part_width,
    signature_and_sketch,
    sketch_part,
    words_in,
)

DEFAULT_THRESHOLD = 0.7
DEFAULT_HORIZON_DAYS = 7.0
STORE_KIND = "near"  # store keys: near0 ... near6, one per band


@dataclass(frozen=True)
class SourceUpdate:
    """A copy that was dropped as a duplicate: its source belongs to story `story_id`. `published` (the copy's
    publication time, for the story's time span) is not part of its identity."""

    story_id: str
    sources: tuple[Source, ...]
    published: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class StoryMerged:
    """Story `merged` turned out to be story `story_id` (a later item is a copy of both): one story from now on."""

    story_id: str
    merged: str


def sources_of(item: Item) -> tuple[Source, ...]:
    return item.sources or (Source(item.feed, item.url),)


@dataclass(frozen=True)
class StorySettings:
    """How similar a copy must be (`threshold`, Jaccard-like, 0-1) and how long a story is remembered."""

    threshold: float = DEFAULT_THRESHOLD
    horizon_days: float = DEFAULT_HORIZON_DAYS

    def __post_init__(self):
        if not 0 < self.threshold <= 1:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {self.threshold}")
        if not self.horizon_days > 0:
            raise ValueError(f"dedup horizon must be more than 0 days, got {self.horizon_days}")

    @property
    def horizon_s(self) -> float:
        return self.horizon_days * 86400.0

    @property
    def text_hits_needed(self) -> int:
        return bands_needed(TEXT_BANDS, self.threshold)

    @property
    def lead_hits_needed(self) -> int:
        return bands_needed(LEAD_BANDS, self.threshold)


def bands_needed(bands: int, threshold: float) -> int:
    """Equal bands that make a copy of a story known only by its band values (an earlier run's)."""
    return max(1, math.ceil(bands * threshold**ROWS - 1e-9))


def provisional_id(item: Item) -> int:
    """The item's own 64-bit id: the story id it gets if it starts a story (`s-` + 16 hex digits)."""
    return int(item.fingerprint[:16], 16)


# --- the decision: plain functions -------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """A unique item on its way through the band steps.

    `hits` counts, per story, the text and lead bands in which it was found a copy; `stored` holds
    the stories that a state store returned (written by an earlier run: roots, no sketch); `strong` those
    it is a copy of not merely by being contained in them (a similar whole text, or it contains them).
    """

    item: Item
    own: int
    sketch: Sketch | None = None
    hits: dict[int, tuple[int, int]] = field(default_factory=dict)
    stored: frozenset[int] = frozenset()
    strong: frozenset[int] = frozenset()

    @property
    def bands(self) -> tuple[int, ...]:
        return self.item.near_bands

    def found(self, band: int, stories: set[int], stored: set[int], strong: set[int] = frozenset()) -> Pending:
        hits = dict(self.hits)
        for story in stories | stored:
            text, lead = hits.get(story, (0, 0))
            hits[story] = (text + 1, lead) if band < TEXT_BANDS else (text, lead + 1)
        return replace(self, hits=hits, stored=self.stored | stored, strong=self.strong | strong | stored)


def copies_of(pending: Pending, settings: StorySettings) -> set[int]:
    """The stories the item is a copy of: found in a band by the copy test, or (an earlier run's, known only by band
    values) in enough bands."""
    return {
        story
        for story, (text, lead) in pending.hits.items()
        if story not in pending.stored or text >= settings.text_hits_needed or lead >= settings.lead_hits_needed
    }


def joined_story(pending: Pending, settings: StorySettings) -> int | None:
    """The story the item joins: an earlier run's first (their ids are out already), then the smallest id, so that
    merges always point one way; None when it is a copy of none."""
    found = copies_of(pending, settings)
    if not found:
        return None
    return min(found & pending.stored or found & pending.strong or found)


def merged_stories(pending: Pending, settings: StorySettings) -> set[int]:
    """The stories besides the one joined that become one with it. A short item merely contained in two stories (one
    sentence that two articles open with) joins one and merges none: late bridging needs a strong copy."""
    return (copies_of(pending, settings) & pending.strong) - {joined_story(pending, settings)}


def copies_in_bucket(pending: Pending, entries: list, band: int, threshold: float) -> tuple[set[int], set[int]]:
    """The stories of a bucket the item is a copy of, and those of them it is a strong copy of (not merely contained).

    Through a text band, any of a story's sketches may show it. Through a lead band, a story is shown by a sketch of
    one of its items that contains the item (a trimmed copy), or by its longest item's: a short item (one sentence
    that many articles open with) is contained in each of them, so a story it started is joined only by a copy of the
    story's longest item, never by every article it is part of."""
    mine = words_in(pending.sketch.shape)
    longest: dict[int, int] = {}
    for story, _, kept in entries:
        longest[story] = max(longest.get(story, 0), 0 if band < TEXT_BANDS else words_in(kept))
    found: set[int] = set()
    strong: set[int] = set()
    for story, _, kept in entries:
        if story == pending.own or story in strong or not is_copy(band, pending.sketch, kept, threshold):
            continue
        if band < TEXT_BANDS:
            found.add(story)
            strong.add(story)
        elif words_in(kept) >= mine:
            found.add(story)  # the item is contained in this one of the story's items
        elif words_in(kept) == longest[story]:
            found.add(story)
            strong.add(story)  # the item contains the story's longest item
    return found, strong


def band_step(
    shard: Shard | None, pending: Pending, band: int, stored: set[int], settings: StorySettings
) -> tuple[Shard, Pending, int]:
    """One band's shard and the item -> the shard with the item registered in its bucket, the item with its
    hits, and how many bucket entries a full bucket dropped."""
    now, value, width = pending.item.published, pending.bands[band], part_width(band)
    entries = entries_in(shard, value, now, width)
    found, strong = copies_in_bucket(pending, entries, band, settings.threshold)
    pending = pending.found(band, found, stored, strong)
    guess = joined_story(pending, settings) or pending.own
    until = expiry_at(now, settings.horizon_s)
    entries, dropped = register(entries, guess, until, sketch_part(band, pending.sketch), BUCKET_CAP)
    return with_entries(shard, value, entries), pending, dropped


@dataclass(frozen=True)
class Decided:
    """An item after the band steps: `story` is the story it joins, or None when it starts one."""

    pending: Pending
    story: int | None


@dataclass(frozen=True)
class Alias:
    """Id `own` (an item's provisional id, or a story merged into another when `merge`) is now story `story`."""

    own: int
    story: int
    expiry: int
    merge: bool = False


def decide(element, settings: StorySettings):
    """Pending -> (shard, Decided) for the Resolve step, plus (shard, Alias) for each id that now points to the story
    joined; others pass by."""
    if not isinstance(element, Pending):
        yield shard_of(story_int(element.story_id)), element
        return
    story = joined_story(element, settings)
    if story is None:
        yield shard_of(element.own), Decided(element, None)
        return
    until = expiry_at(element.item.published, settings.horizon_s)
    yield shard_of(story), Decided(element, story)
    yield shard_of(element.own), Alias(element.own, story, until)
    for other in sorted(merged_stories(element, settings)):
        yield shard_of(other), Alias(other, story, until, merge=True)


def copy_of(story: str, item: Item) -> SourceUpdate:
    """`item` is a copy of `story`: its sources go to the story."""
    telemetry.item_duplicate()
    return SourceUpdate(story, sources_of(item), item.published)


def sign(element):
    """Unique Item -> Pending with its band values and sketch; anything else passes by."""
    if not isinstance(element, Item):
        return element
    bands, sketch = signature_and_sketch(element.text)
    return Pending(replace(element, near_bands=bands), provisional_id(element), sketch)
