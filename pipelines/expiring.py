"""Stateful steps whose state expires with the data: a `Shard` per state key, freed by event-time timers.

The FnApiRunner fires event-time timers right after each bundle, whatever their time, and keeps set timers by
name only; `ExpiringStateFn` and `with_own_timer` keep results independent of both (see docs/stories.md, "How it scales").
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp

from pipelines.buckets import Shard, after_timer
from pipelines.records import Item
from pipelines.store import StateStore
from pipelines.story_rules import StorySettings

_MAX_TIMER = GlobalWindow().max_timestamp()


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
