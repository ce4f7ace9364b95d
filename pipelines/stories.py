"""NearStory: unique items that are copies of an earlier item join its story; an item that is a copy
of two stories joins them into one.

An outlet that republishes a wire story retitles it, wraps it in page furniture, trims it to its
first paragraphs or edits a sentence; the exact steps in `pipelines.dedup` miss all of that.
`pipelines.signatures` gives each item LSH band values (candidates) and a small sketch (the copy
test): a candidate found through a text band is a copy when its whole text is similar enough, one
found through a lead band when the shorter text is nearly contained in the longer (the lead and
the windows of words after it equal). A shared lead alone is never enough.

The Beam shape scales out and is the same in batch and stream:
1. `Band0` ... `Band6`: one stateful step per band, keyed by a shard of the band's value (`SHARDS`
   keys per step). Each step reads its bucket (the stories seen with that value, each with the
   sketch of the item that put it there), tests the item against each, and registers the item in
   the bucket in the same step, so two copies in one bundle or batch still find each other. An
   item registers under the story it has been found a copy of, else under its own provisional id
   (its fingerprint), so the second of two copies finds the first in whichever band it reaches
   first and follows it in the others, whatever the read order. A bucket holds at most
   `BUCKET_CAP` stories; a band value many items share costs no more than that.
2. `Decide`: the item joins the smallest story id it is a copy of (an earlier run's story first);
   the other stories it is a copy of are merged into that one (late bridging: a `StoryMerged`).
3. `Resolve`, keyed by a shard of the story id, keeps each id's root: a provisional id that turned
   out to be a copy, or a story merged into another, points to the story it joined. A copy whose
   story's root has not arrived yet waits in state for it.
Buckets and roots expire `horizon_days` after the latest copy that refreshed them (item
publication times are the clock, so batch and stream agree); Beam timers free the state. The
FnApiRunner fires event-time timers right after each bundle, so a timer only drops entries that the
data has passed (the newest publication time this worker saw), and it re-arms only for a later time.

With a state store, each band step also asks it for stories that an earlier run wrote with the same
band value (the items sink remembers `near_keys` for each written item); with no sketch stored for
them, they need as many equal bands as before the copy test existed (`bands_needed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp

from pipelines import telemetry
from pipelines.buckets import (
    BUCKET_CAP,
    SHARDS,
    Shard,
    after_timer,
    entries_in,
    expiry_at,
    register,
    shard_of,
    story_id,
    story_int,
    with_entries,
)
from pipelines.records import Item, Source
from pipelines.signatures import (
    BANDS,
    LEAD_BANDS,
    ROWS,
    TEXT_BANDS,
    Sketch,
    is_copy,
    near_keys,
    part_width,
    signature,
    signature_and_sketch,
    sketch_part,
)
from pipelines.store import StateStore

__all__ = ["SHARDS", "near_keys", "shard_of", "signature", "story_id", "story_int"]  # re-exported for dedup and sinks

DEFAULT_THRESHOLD = 0.7
DEFAULT_HORIZON_DAYS = 7.0
STORE_KIND = "near"  # store keys: near0 ... near6, one per band
_MAX_TIMER = GlobalWindow().max_timestamp()
_UNRESOLVED = beam.metrics.Metrics.counter("newswatch", "near_duplicates_without_root")
_CAPPED = beam.metrics.Metrics.counter("newswatch", "story_bucket_entries_dropped")
_MERGED = beam.metrics.Metrics.counter("newswatch", "stories_merged")


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
    the stories that a state store returned (written by an earlier run: roots, no sketch).
    """

    item: Item
    own: int
    sketch: Sketch | None = None
    hits: dict[int, tuple[int, int]] = field(default_factory=dict)
    stored: frozenset[int] = frozenset()

    @property
    def bands(self) -> tuple[int, ...]:
        return self.item.near_bands

    def found(self, band: int, stories: set[int], stored: set[int]) -> Pending:
        hits = dict(self.hits)
        for story in stories | stored:
            text, lead = hits.get(story, (0, 0))
            hits[story] = (text + 1, lead) if band < TEXT_BANDS else (text, lead + 1)
        return replace(self, hits=hits, stored=self.stored | stored)


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
    return min(found & pending.stored or found)


def band_step(
    shard: Shard | None, pending: Pending, band: int, stored: set[int], settings: StorySettings
) -> tuple[Shard, Pending, int]:
    """One band's shard and the item -> the shard with the item registered in its bucket, the item with its
    hits, and how many bucket entries a full bucket dropped."""
    now, value, width = pending.item.published, pending.bands[band], part_width(band)
    entries = entries_in(shard, value, now, width)
    found = {
        story for story, _, kept in entries if story != pending.own and is_copy(band, pending.sketch, kept, settings.threshold)
    }
    pending = pending.found(band, found, stored)
    guess = joined_story(pending, settings) or pending.own
    until = expiry_at(now, settings.horizon_s)
    entries, dropped = register(entries, guess, until, sketch_part(band, pending.sketch), BUCKET_CAP)
    return with_entries(shard, value, entries), pending, dropped


# --- the Beam steps ----------------------------------------------------------------------


def timer_at(expiry_s: int, element_ts) -> Timestamp:
    """An expiry time as an event-time timer: never before the element being processed, never past the window."""
    return min(max(Timestamp.of(expiry_s), element_ts), _MAX_TIMER)


class ExpiringStateFn(beam.DoFn):
    """A stateful step whose state (a `Shard` per key) expires: opens the optional state store, and
    keeps the newest publication time this worker has seen, which is how far the data has certainly
    gone (the FnApiRunner fires timers early, so a timer's own time says nothing)."""

    SHARD = ReadModifyWriteStateSpec("shard", PickleCoder())
    WIDTH = 0  # sketch bytes per entry

    def __init__(self, settings: StorySettings, state_dir: str | None):
        self._settings = settings
        self._state_dir = state_dir

    def setup(self):
        self._store = StateStore(self._state_dir) if self._state_dir else None
        self._clock = float("-inf")
        self._lookups = False

    def start_bundle(self):
        # A store with nothing written has nothing to add, so the bundle skips a query per item and step.
        self._lookups = self._store is not None and self._store.holds_written_items()

    def teardown(self):
        if self._store:
            self._store.close()

    def saw(self, item: Item) -> None:
        self._clock = max(self._clock, item.published)

    def keep(self, shard: Shard, state, timer, ts) -> None:
        """Write the shard back, with its timer set for its earliest entry."""
        state.write(shard)
        timer.set(timer_at(shard.earliest, ts))

    def expire_state(self, fired: Timestamp, state, timer) -> None:
        held = state.read()
        shard, next_due = after_timer(held, self._clock, float(fired), self.WIDTH)
        if shard is None:
            state.clear()
            return
        if shard != held:  # an early firing changes nothing: writing would only cost (see SHARDS)
            state.write(shard)
        if next_due is not None:
            timer.set(timer_at(next_due, fired))


def with_own_timer(base: type[ExpiringStateFn], name: str) -> type[ExpiringStateFn]:
    """`base` as a DoFn: `process` runs `base.step(element, ts, shard_state, timer)`, and an
    expiry timer called `name` frees what the data has passed.

    Every step needs a timer name of its own: the FnApiRunner keeps set timers by name only, so
    two steps with one name get each other's timers (and fail when their keys differ in type).
    """
    timer = TimerSpec(name, TimeDomain.WATERMARK)

    class Step(base):
        def process(
            self, element, ts=beam.DoFn.TimestampParam, state=beam.DoFn.StateParam(base.SHARD), expiry=beam.DoFn.TimerParam(timer)
        ):
            return self.step(element, ts, state, expiry)

        @on_timer(timer)
        def expire(
            self, fired=beam.DoFn.TimestampParam, state=beam.DoFn.StateParam(base.SHARD), expiry=beam.DoFn.TimerParam(timer)
        ):
            self.expire_state(fired, state, expiry)

    Step.__name__ = Step.__qualname__ = f"{base.__name__}_{name}"
    return Step


class _BandFn(ExpiringStateFn):
    """(shard, Pending) -> Pending with this band's hits; the item is registered in its bucket."""

    def __init__(self, band: int, settings: StorySettings, state_dir: str | None):
        super().__init__(settings, state_dir)
        self._band = band
        self.WIDTH = part_width(band)

    def stored(self, value: int) -> set[int]:
        known = self._store.story_of(f"{STORE_KIND}{self._band}", f"{value:08x}") if self._lookups else None
        return {story_int(known)} if known else set()

    def step(self, element, ts, state, expiry):
        _, pending = element
        if not isinstance(pending, Pending) or not pending.bands:
            yield pending
            return
        self.saw(pending.item)
        stored = self.stored(pending.bands[self._band])
        shard, pending, dropped = band_step(state.read(), pending, self._band, stored, self._settings)
        if dropped:
            _CAPPED.inc(dropped)
        self.keep(shard, state, expiry, ts)
        yield pending


def band_fn(band: int, settings: StorySettings, state_dir: str | None) -> beam.DoFn:
    return with_own_timer(_BandFn, f"expiry_band{band}")(band, settings, state_dir)


def band_key(element, band: int) -> tuple[int, object]:
    """Key for band step `band`: the shard of the item's band value; anything passing by keeps a spread-out key."""
    if isinstance(element, Pending):
        return shard_of(element.bands[band] if element.bands else element.own), element
    return shard_of(story_int(element.story_id)), element  # a SourceUpdate from the exact steps


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
    for other in sorted(copies_of(element, settings) - {story}):
        yield shard_of(other), Alias(other, story, until, merge=True)


class _ResolveFn(ExpiringStateFn):
    """(shard, Decided | Alias | SourceUpdate) -> unique Item, SourceUpdate for a copy, or StoryMerged.

    The shard maps each id to its root: itself for a story's first item, the story joined for a
    provisional id that was a copy or a story merged into another. Copies whose root has not arrived
    yet wait in WAITING.
    """

    WAITING = BagStateSpec("waiting", PickleCoder())  # (story, Decided)
    EXPIRY = TimerSpec("expiry_resolve", TimeDomain.WATERMARK)  # a name no other step uses: see with_own_timer

    def process(
        self,
        element,
        ts=beam.DoFn.TimestampParam,
        state=beam.DoFn.StateParam(ExpiringStateFn.SHARD),
        waiting=beam.DoFn.StateParam(WAITING),
        expiry=beam.DoFn.TimerParam(EXPIRY),
    ):
        _, value = element
        if isinstance(value, Alias):
            yield from self._alias(value, ts, state, waiting, expiry)
        elif not isinstance(value, Decided):
            yield self._to_root(value, state)  # a SourceUpdate from the exact steps
        elif value.story is None:
            yield from self._start(value.pending, ts, state, waiting, expiry)
        else:
            yield from self._join(value, ts, state, waiting, expiry)

    def _to_root(self, update: SourceUpdate, state) -> SourceUpdate:
        """An exact copy of an item that has since joined (or been merged into) another story goes to that story."""
        known = entries_in(state.read(), story_int(update.story_id), float("-inf"))
        return replace(update, story_id=story_id(known[0][0])) if known else update

    def _start(self, pending: Pending, ts, state, waiting, expiry):
        """An item that is a copy of no story seen so far starts one, unless a later item already merged its id into
        another story (then it is a copy of that one)."""
        known = entries_in(state.read(), pending.own, pending.item.published)
        if known and known[0][0] != pending.own:
            yield copy_of(story_id(known[0][0]), pending.item)
            return
        yield pending.item
        if pending.bands:
            own, until = pending.own, expiry_at(pending.item.published, self._settings.horizon_s)
            yield from self._settle(own, own, until, ts, state, waiting, expiry)

    def _alias(self, alias: Alias, ts, state, waiting, expiry):
        if alias.merge:
            known = entries_in(state.read(), alias.own, float("-inf"))
            root = known[0][0] if known else alias.own
            if root != alias.story:
                _MERGED.inc()
                yield StoryMerged(story_id(alias.story), story_id(root))
        yield from self._settle(alias.own, alias.story, alias.expiry, ts, state, waiting, expiry)

    def _join(self, decided: Decided, ts, state, waiting, expiry):
        item, story = decided.pending.item, decided.story
        self.saw(item)
        if story in decided.pending.stored:  # an earlier run wrote this story: it is a root
            yield copy_of(story_id(story), item)
            return
        shard = state.read()
        known = entries_in(shard, story, item.published)
        if not known:  # the root has not arrived yet (or has expired): wait for it
            waiting.add((story, decided))
            expiry.set(timer_at(expiry_at(item.published, self._settings.horizon_s), ts))
            return
        root, until, _ = known[0]
        until = max(until, expiry_at(item.published, self._settings.horizon_s))  # a copy keeps the story alive
        self.keep(with_entries(shard, story, [(root, until, b"")]), state, expiry, ts)
        yield copy_of(story_id(root), item)

    def _settle(self, own: int, root: int, until: int, ts, state, waiting, expiry):
        """`own`'s root is `root`: remember it and release the copies that waited for it."""
        shard = state.read()
        known = entries_in(shard, own, float("-inf"))
        until = max(until, known[0][1]) if known else until
        self.keep(with_entries(shard, own, [(root, until, b"")]), state, expiry, ts)
        held = list(waiting.read())
        if not any(story == own for story, _ in held):
            return
        waiting.clear()
        for story, decided in held:
            if story == own:
                yield copy_of(story_id(root), decided.pending.item)
            else:
                waiting.add((story, decided))

    @on_timer(EXPIRY)
    def expire(
        self,
        fired=beam.DoFn.TimestampParam,
        state=beam.DoFn.StateParam(ExpiringStateFn.SHARD),
        waiting=beam.DoFn.StateParam(WAITING),
        expiry=beam.DoFn.TimerParam(EXPIRY),
    ):
        # A copy still waiting once the data has passed its expiry has no root in this run: it starts a story of its
        # own. One the data has not passed keeps waiting (the FnApiRunner fires timers after every bundle, before the
        # root may have come: releasing it then would split its story, depending on the read order).
        held = list(waiting.read())
        due = [entry for entry in held if self._waited_out(entry[1])]
        if due:
            waiting.clear()
            for story, decided in held:
                if self._waited_out(decided):
                    _UNRESOLVED.inc()
                    yield decided.pending.item
                else:
                    waiting.add((story, decided))
        self.expire_state(fired, state, expiry)
        later = [self._expiry_of(decided) for _, decided in held if not self._waited_out(decided)]
        if later and min(later) > float(fired):
            expiry.set(timer_at(min(later), fired))

    def _expiry_of(self, decided: Decided) -> int:
        return expiry_at(decided.pending.item.published, self._settings.horizon_s)

    def _waited_out(self, decided: Decided) -> bool:
        return self._expiry_of(decided) <= self._clock


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


class NearStory(beam.PTransform):
    """Unique Item | SourceUpdate -> unique Item (starts a story) | SourceUpdate (a copy of a story, or passing by)
    | StoryMerged (two stories found to be one)."""

    def __init__(self, settings: StorySettings = StorySettings(), state_dir: str | None = None):
        super().__init__()
        self._settings = settings
        self._state_dir = state_dir

    def expand(self, elements):
        pending = elements | "Sign" >> beam.Map(sign)
        for band in range(BANDS):
            pending = (
                pending
                | f"KeyBand{band}" >> beam.Map(band_key, band).with_output_types(tuple[int, object])
                | f"Band{band}" >> beam.ParDo(band_fn(band, self._settings, self._state_dir))
            )
        return (
            pending
            | "Decide" >> beam.FlatMap(decide, self._settings).with_output_types(tuple[int, object])
            | "Resolve" >> beam.ParDo(_ResolveFn(self._settings, self._state_dir))
        )
