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

from dataclasses import replace

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, TimerSpec, on_timer

from pipelines import telemetry
from pipelines.buckets import SHARDS, entries_in, expiry_at, shard_of, story_id, story_int, with_entries
from pipelines.expiring import ExpiringStateFn, timer_at, with_own_timer
from pipelines.signatures import BANDS, near_keys, part_width, signature
from pipelines.story_rules import (
    STORE_KIND,
    Alias,
    Decided,
    Pending,
    SourceUpdate,
    StoryMerged,
    StorySettings,
    band_step,
    bands_needed,
    copy_of,
    decide,
    sign,
    sources_of,
)

# Re-exported: dedup, the sinks and the tests use these names from here.
__all__ = [
    "SHARDS", "ExpiringStateFn", "NearStory", "SourceUpdate", "StoryMerged", "StorySettings", "bands_needed",
    "copy_of", "near_keys", "shard_of", "signature", "sources_of", "story_id", "story_int", "with_own_timer",
]  # fmt: skip

_UNRESOLVED = beam.metrics.Metrics.counter("newswatch", "near_duplicates_without_root")


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
            telemetry.story_bucket_dropped(dropped)
        self.keep(shard, state, expiry, ts)
        yield pending


def band_fn(band: int, settings: StorySettings, state_dir: str | None) -> beam.DoFn:
    return with_own_timer(_BandFn, f"expiry_band{band}")(band, settings, state_dir)


def band_key(element, band: int) -> tuple[int, object]:
    """Key for band step `band`: the shard of the item's band value; anything passing by keeps a spread-out key."""
    if isinstance(element, Pending):
        return shard_of(element.bands[band] if element.bands else element.own), element
    return shard_of(story_int(element.story_id)), element  # a SourceUpdate from the exact steps


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
                telemetry.stories_merged()
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
