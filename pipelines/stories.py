"""NearStory: unique items that are near-duplicates of an earlier item join its story.

An outlet that republishes a wire story retitles it, wraps it in page furniture, trims it
to its first paragraphs or edits a sentence; the exact steps in `pipelines.dedup` miss all
of that. This stage compares the normalised text (titles excluded: outlets retitle) through
two MinHash signatures over word shingles, cut into LSH bands of `ROWS` values each:
- the whole text (`TEXT_BANDS` bands): catches furniture, edits and light rewording;
- the lead, the first `LEAD_WORDS` words from the first line long enough to be prose
  (`LEAD_BANDS` bands): catches copies trimmed to their first paragraphs, whose whole-text
  similarity is only their share of the original. An update that reports a new development
  has a new lead, so it stays a story of its own.
A copy joins a story when at least `m` of the text bands, or of the lead bands, equal the
story's: `m = ceil(bands * threshold ** ROWS)`, so items whose Jaccard similarity is about
`threshold` match half of the time, and higher ones almost always.

The Beam shape scales out and is the same in batch and stream:
1. `Band0` ... `Band6`: one stateful step per band, keyed by a shard of the band's value
   (`SHARDS` keys per step), so state spreads over workers and there is no global key.
   Each step reads its bucket
   (the stories seen with that band value), counts a hit for each, and registers the item
   in the bucket in the same step, so two copies in one bundle or batch still find each
   other. An item registers under the story it already clearly belongs to, else under its
   own provisional id (its fingerprint).
2. `Decide`: the story with enough hits, or none: the item starts a story.
3. `Resolve`, keyed by a shard of the story id, keeps each id's root: a provisional id that turned out to be
   a copy points to the story it joined, so a later copy that matched the copy lands on the
   root. A copy whose story's root has not arrived yet waits in state for it.
Buckets and roots expire `horizon_days` after the latest copy that refreshed them (item
publication times are the clock, so batch and stream agree); Beam timers free the state. The
FnApiRunner fires event-time timers right after each bundle, so a timer only drops entries
that the data has passed (the newest publication time this worker saw), and it re-arms only
for a later time, which keeps it from firing in a loop there.

With a state store, each band step also asks it for stories that an earlier run wrote with
the same band value (the items sink remembers `near_keys` for each written item).
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
import zlib
from dataclasses import dataclass, field, replace
from functools import lru_cache

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp
from datasketch import MinHash

from pipelines import telemetry
from pipelines.records import Item, Source
from pipelines.store import StateStore

TEXT_BANDS = 4
LEAD_BANDS = 3
BANDS = TEXT_BANDS + LEAD_BANDS
ROWS = 3  # MinHash values per band: three keep one band selective enough to decide for the lead
SHINGLE_WORDS = 3
LEAD_WORDS = 25  # about a wire story's first paragraph, so a copy cut to that paragraph has the whole lead
PROSE_LINE_WORDS = 12  # shorter lines at the top (bylines, datelines, "Updated ...") are not the lead
MIN_WORDS = 12  # shorter texts (headlines, one-liners) are left to the exact steps
# Changing the seed or the shingle hash (crc32: fast, and it only has to tell distinct shingles apart) changes
# every band value, so the near keys stored by earlier versions stop matching.
MINHASH_SEED = 20261125
DEFAULT_THRESHOLD = 0.7
DEFAULT_HORIZON_DAYS = 7.0
STORE_KIND = "near"  # store keys: near0 ... near6, one per band
# State keys per step. Each key holds a shard of the step's entries, so the state spreads over up
# to this many workers, and a bundle touches at most this many keys: the FnApiRunner spends about a
# millisecond on each state key a bundle writes (it sizes cached state by walking every loaded module).
SHARDS = 64

_WORD = re.compile(r"\w+", re.UNICODE)
_ENTRY = struct.Struct(">QI")  # story id, expiry (epoch seconds): 12 bytes per bucket entry
_MAX_EXPIRY = 2**32 - 1
_MAX_TIMER = GlobalWindow().max_timestamp()
_UNRESOLVED = beam.metrics.Metrics.counter("newswatch", "near_duplicates_without_root")


@dataclass(frozen=True)
class SourceUpdate:
    """A copy that was dropped as a duplicate: its source belongs to story `story_id`."""

    story_id: str
    sources: tuple[Source, ...]


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
    """Matching bands that make a copy: the expected number at `threshold` similarity, rounded up."""
    return max(1, math.ceil(bands * threshold**ROWS - 1e-9))


# --- signatures: plain functions --------------------------------------------------------


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def lead_of(text: str) -> list[str]:
    """The first LEAD_WORDS words, from the first line of prose (bylines and datelines skipped)."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if len(_WORD.findall(line)) >= PROSE_LINE_WORDS), 0)
    return words_of("\n".join(lines[start:]))[:LEAD_WORDS]


def shingles(words: list[str]) -> list[bytes]:
    count = max(1, len(words) - SHINGLE_WORDS + 1)
    return [" ".join(words[i : i + SHINGLE_WORDS]).encode("utf-8") for i in range(count)]


@lru_cache(maxsize=4)
def _permutations(num_perm: int):
    return MinHash(num_perm=num_perm, seed=MINHASH_SEED).permutations


def band_values(words: list[str], bands: int) -> tuple[int, ...]:
    """`bands` 32-bit band values of the MinHash of `words`' shingles (ROWS values per band)."""
    minhash = MinHash(num_perm=bands * ROWS, hashfunc=zlib.crc32, permutations=_permutations(bands * ROWS), scheme="affine32")
    minhash.update_batch(shingles(words))
    values = minhash.hashvalues
    return tuple(
        int.from_bytes(hashlib.blake2b(values[i * ROWS : (i + 1) * ROWS].tobytes(), digest_size=4).digest(), "big")
        for i in range(bands)
    )


def signature(text: str) -> tuple[int, ...]:
    """TEXT_BANDS whole-text band values then LEAD_BANDS lead band values; () for a text too short to compare."""
    words = words_of(text)
    if len(words) < MIN_WORDS:
        return ()
    return band_values(words, TEXT_BANDS) + band_values(lead_of(text), LEAD_BANDS)


def near_keys(bands: tuple[int, ...]) -> dict[str, str]:
    """The state-store keys of a written item's band values: {"near0": "9f3a01c2", ...}."""
    return {f"{STORE_KIND}{i}": f"{value:08x}" for i, value in enumerate(bands)}


def provisional_id(item: Item) -> int:
    """The item's own 64-bit id: the story id it gets if it starts a story (`s-` + 16 hex digits)."""
    return int(item.fingerprint[:16], 16)


def story_id(story: int) -> str:
    return f"s-{story:016x}"


def story_int(story_id_text: str) -> int:
    return int(story_id_text[2:], 16)


def shard_of(key: int | str) -> int:
    """The state key (0 to SHARDS - 1) whose shard holds `key`: a band value, story id or exact-dedup key."""
    if isinstance(key, str):
        key = zlib.crc32(key.encode("utf-8"))
    return key % SHARDS


# --- buckets and the decision: plain functions ------------------------------------------

Entry = tuple[int, int]  # (story, expiry in epoch seconds)


def decode_entries(blob: bytes | None) -> list[Entry]:
    return list(_ENTRY.iter_unpack(blob)) if blob else []


def encode_entries(entries: list[Entry]) -> bytes:
    return b"".join(_ENTRY.pack(story, expiry) for story, expiry in entries)


def expiry_at(published_s: float, horizon_s: float) -> int:
    return int(min(max(published_s + horizon_s, 0), _MAX_EXPIRY))


def live(entries: list[Entry], now_s: float) -> list[Entry]:
    return [entry for entry in entries if entry[1] > now_s]


@dataclass(frozen=True)
class Shard:
    """What one state key of a step holds: packed entries per key (band value, story id or dedup
    key), and a time no later than the earliest expiry among them, when the key's timer is due."""

    entries: dict
    earliest: int


def entries_in(shard: Shard | None, key, now_s: float) -> list[Entry]:
    """The live entries of `key` in `shard`."""
    return live(decode_entries(shard.entries.get(key)), now_s) if shard else []


def with_entries(shard: Shard | None, key, entries: list[Entry]) -> Shard:
    """`shard` with `key`'s entries replaced (a copy: state values are not changed in place)."""
    earliest = min(until for _, until in entries)
    if shard is None:
        return Shard({key: encode_entries(entries)}, earliest)
    return Shard({**shard.entries, key: encode_entries(entries)}, min(shard.earliest, earliest))


def after_timer(shard: Shard | None, clock_s: float, fired_s: float) -> tuple[Shard | None, int | None]:
    """A timer fired at `fired_s` on `shard`; the data has reached `clock_s`.

    -> the entries still live (None: clear the state) and when to fire next (None: not again).
    Entries the data has not passed stay, however early the timer fired; the timer is only
    re-armed for a later time, since the FnApiRunner fires again at once whatever the time.
    """
    kept = {key: live(decode_entries(blob), clock_s) for key, blob in (shard.entries if shard else {}).items()}
    kept = {key: entries for key, entries in kept.items() if entries}
    if not kept:
        return None, None
    next_due = min(until for entries in kept.values() for _, until in entries)
    return Shard({key: encode_entries(entries) for key, entries in kept.items()}, next_due), (
        next_due if next_due > fired_s else None
    )


def register(entries: list[Entry], story: int, expiry: int) -> list[Entry]:
    """The bucket with `story` in it until at least `expiry`."""
    if any(known == story for known, _ in entries):
        return [(known, max(until, expiry) if known == story else until) for known, until in entries]
    return [*entries, (story, expiry)]


def story_of_hits(hits: dict[int, tuple[int, int]], settings: StorySettings) -> int | None:
    """The story with enough matching text or lead bands (most bands first, then the smaller id), or None."""
    qualified = [
        (text + lead, -story, story)
        for story, (text, lead) in hits.items()
        if text >= settings.text_hits_needed or lead >= settings.lead_hits_needed
    ]
    return max(qualified)[2] if qualified else None


@dataclass(frozen=True)
class Pending:
    """A unique item on its way through the band steps.

    `hits` counts, per story, the text and lead bands in which it was found; `stored` holds the
    stories that a state store returned (written by an earlier run: roots, nothing to resolve).
    """

    item: Item
    own: int
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


def band_step(
    shard: Shard | None, pending: Pending, band: int, stored: set[int], settings: StorySettings
) -> tuple[Shard, Pending]:
    """One band's shard and the item -> the shard with the item registered in its bucket, and the item with its hits."""
    now, value = pending.item.published, pending.bands[band]
    entries = entries_in(shard, value, now)
    pending = pending.found(band, {story for story, _ in entries}, stored)
    guess = story_of_hits(pending.hits, settings) or pending.own
    return with_entries(shard, value, register(entries, guess, expiry_at(now, settings.horizon_s))), pending


# --- the Beam steps ----------------------------------------------------------------------


def timer_at(expiry_s: int, element_ts) -> Timestamp:
    """An expiry time as an event-time timer: never before the element being processed, never past the window."""
    return min(max(Timestamp.of(expiry_s), element_ts), _MAX_TIMER)


class ExpiringStateFn(beam.DoFn):
    """A stateful step whose state (a `Shard` per key) expires: opens the optional state store, and
    keeps the newest publication time this worker has seen, which is how far the data has certainly
    gone (the FnApiRunner fires timers early, so a timer's own time says nothing)."""

    SHARD = ReadModifyWriteStateSpec("shard", PickleCoder())

    def __init__(self, settings: StorySettings, state_dir: str | None):
        self._settings = settings
        self._state_dir = state_dir

    def setup(self):
        self._store = StateStore(self._state_dir) if self._state_dir else None
        self._clock = float("-inf")
        self._lookups = False

    def start_bundle(self):
        # The store knows what was written, by earlier runs and by this one; this step's state already knows
        # what this run wrote lately. A store with nothing written has nothing to add, so the bundle skips a
        # query per item and step (6% of a fresh 20,000-item batch run).
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
        shard, next_due = after_timer(held, self._clock, float(fired))
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
        shard, pending = band_step(state.read(), pending, self._band, stored, self._settings)
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
    """Provisional id `own` turned out to be a copy of `story`, until `expiry`."""

    own: int
    story: int
    expiry: int


def decide(element, settings: StorySettings):
    """Pending -> (shard, Decided) for the Resolve step, plus (shard, Alias) for a copy; others pass by."""
    if not isinstance(element, Pending):
        yield shard_of(story_int(element.story_id)), element
        return
    story = story_of_hits(element.hits, settings)
    if story is None or story == element.own:
        yield shard_of(element.own), Decided(element, None)
        return
    yield shard_of(story), Decided(element, story)
    yield shard_of(element.own), Alias(element.own, story, expiry_at(element.item.published, settings.horizon_s))


class _ResolveFn(ExpiringStateFn):
    """(shard, Decided | Alias | SourceUpdate) -> unique Item, or SourceUpdate for a copy.

    The shard maps each id to its root: itself for a story's first item, the story joined for a
    provisional id that was a copy. Copies whose root has not arrived yet wait in WAITING.
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
            yield from self._settle(value.own, value.story, value.expiry, ts, state, waiting, expiry)
        elif not isinstance(value, Decided):
            yield value  # a SourceUpdate from the exact steps
        elif value.story is None:
            yield value.pending.item
            if value.pending.bands:
                own, until = value.pending.own, expiry_at(value.pending.item.published, self._settings.horizon_s)
                yield from self._settle(own, own, until, ts, state, waiting, expiry)
        else:
            yield from self._join(value, ts, state, waiting, expiry)

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
        root, until = known[0]
        until = max(until, expiry_at(item.published, self._settings.horizon_s))  # a copy keeps the story alive
        self.keep(with_entries(shard, story, [(root, until)]), state, expiry, ts)
        yield copy_of(story_id(root), item)

    def _settle(self, own: int, root: int, until: int, ts, state, waiting, expiry):
        """`own`'s root is `root`: remember it and release the copies that waited for it."""
        self.keep(with_entries(state.read(), own, [(root, until)]), state, expiry, ts)
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
        # Copies still waiting have no root in this run (it expired): each starts a story of its own.
        for _, decided in waiting.read():
            _UNRESOLVED.inc()
            yield decided.pending.item
        waiting.clear()
        self.expire_state(fired, state, expiry)


def copy_of(story: str, item: Item) -> SourceUpdate:
    """`item` is a copy of `story`: its sources go to the story."""
    telemetry.item_duplicate()
    return SourceUpdate(story, sources_of(item))


def sign(element):
    """Unique Item -> Pending with its band values; a SourceUpdate passes by."""
    if not isinstance(element, Item):
        return element
    return Pending(replace(element, near_bands=signature(element.text)), provisional_id(element))


class NearStory(beam.PTransform):
    """Unique Item | SourceUpdate -> unique Item (starts a story) | SourceUpdate (a copy of a story, or passing by)."""

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
