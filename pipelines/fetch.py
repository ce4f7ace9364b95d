"""FetchFeeds: poll every feed at its own interval, politely, and never lose a failure.

- Ticks: batch mode has one (`beam.Create`), stream mode a `PeriodicImpulse` every `tick_s`.
- Each tick fans out to the fetch shards. Hosts are spread over shards by a stable hash (one
  shard by default); PollFeedsFn is a stateful DoFn keyed by shard, whose state holds every
  feed's schedule and validators and every host's spacing and hold. Beam never runs one key
  on two workers at once, so these decisions are consistent on every runner.
- In one call the due feeds are grouped by host into lanes, and `run_lanes` starts their
  requests on a pool of `fetch_concurrency` threads: a host's requests start at least
  `host_spacing_s` apart, at most `host_concurrency` at once, and stop while the host is held
  (a 429 or 503 with Retry-After). So different hosts are polled at the same time, each one
  politely. In stream mode a call starts only what is due now and waits at most a tick for
  answers; later slots and slower answers are taken up by the next ticks, so neither spacing
  nor a hanging host stalls the pipeline.
- One poll (`pipelines.poll`) is a conditional GET read under limits and parsed, and gives the
  feed's next schedule. Every outcome is counted (`telemetry.feed_fetched`), every failure is
  one dead letter. A feed is never disabled.

Outcomes (the `outcome` label of newswatch_feed_fetches_total): ok, not_modified, http_error,
timeout, too_large, parse_error, redirect_loop, tls_error, connection_error, io_error (a
local file), held (batch mode only: not polled because its host asked for a pause), and
unexpected_error (an exception we did not foresee: logged with its traceback).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from urllib.parse import urlsplit

import apache_beam as beam
import requests
from apache_beam.coders import PickleCoder
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from pipelines import telemetry
from pipelines.config import Feed
from pipelines.poll import FetchSettings, PollResult, PollState, poll_feed
from pipelines.records import DeadLetter, iso_utc
from pipelines.store import StateStore

DEAD_LETTER = "dead_letter"
LOCAL_FILES = ""  # the host key of feeds read from files: no spacing, no holds
_DEFAULT_PORTS = {"http": 80, "https": 443}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostState:
    """One host's politeness: no request starts before `next_start` (spacing) nor `hold_until` (Retry-After)."""

    next_start: float = 0.0
    hold_until: float = 0.0


@dataclass
class ShardState:
    """Everything one PollFeedsFn key keeps: its feeds' schedules and its hosts' politeness."""

    feeds: dict[str, PollState] = field(default_factory=dict)
    hosts: dict[str, HostState] = field(default_factory=dict)


# --- hosts -----------------------------------------------------------------------------


def host_key(feed: Feed) -> str:
    """The unit of politeness: the URL's host, with its port when that is not the scheme's default."""
    if feed.is_local_file:
        return LOCAL_FILES
    parts = urlsplit(feed.url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = (parts.hostname or "").rstrip(".")
    return host if port in (None, _DEFAULT_PORTS.get(parts.scheme.lower())) else f"{host}:{port}"


def shard_of(host: str, shards: int) -> int:
    """A stable shard for a host (the same in every process and run, unlike `hash`)."""
    return zlib.crc32(host.encode("utf-8")) % max(1, shards)


class HostLane:
    """One host's due feeds in one call: its requests start at least `spacing_s` apart, at most
    `concurrency` at once (counting `in_flight`, those an earlier call started), none while the host
    is held. Only `run_lanes` touches a lane, from one thread."""

    def __init__(self, host: HostState, feeds: list[Feed], spacing_s: float, concurrency: int, in_flight: int = 0):
        self.host = host
        self._queue = deque(feeds)
        self._spacing_s = spacing_s
        self._concurrency = concurrency
        self.in_flight = in_flight

    def next_start(self, now: float) -> float | None:
        """When the next request may start (inf: once one in flight has finished); None: nothing more to start."""
        if not self._queue or self.host.hold_until > now:
            return None
        return max(now, self.host.next_start) if self.in_flight < self._concurrency else math.inf

    def start(self, now: float) -> Feed:
        self.in_flight += 1
        self.host = replace(self.host, next_start=now + self._spacing_s)
        return self._queue.popleft()

    def finish(self, hold_until: float) -> None:
        self.in_flight -= 1
        self.host = replace(self.host, hold_until=max(self.host.hold_until, hold_until))

    def left(self) -> list[Feed]:
        return list(self._queue)


def run_lanes(
    lanes: Mapping[str, HostLane],
    submit: Callable[[Feed], Future],
    max_in_flight: int,
    running: dict[Future, Feed],
    wait_until: float | None = None,
    wait_for_slots: bool = True,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[PollResult]:
    """Start the lanes' requests as their slots come, at most `max_in_flight` at once in all, and yield
    each PollResult as it finishes.

    `running` holds the requests in flight, also those an earlier call started (each of their hosts
    has a lane). Batch mode waits for every slot and every request. Stream mode starts only what is
    due now (`wait_for_slots=False`: later slots are for later ticks, so the DoFn never sleeps) and
    waits for requests until `wait_until`, leaving the rest in `running` for the next call: a slow
    host does not hold up the others. One thread schedules and waits; no worker sleeps holding a slot."""
    while True:
        now = clock()
        starts = [(start, lane) for lane in lanes.values() if (start := lane.next_start(now)) is not None]
        due = [lane for start, lane in starts if start <= now]
        if due and len(running) < max_in_flight:
            lane = min(due, key=lambda lane: lane.host.next_start)  # the host that has waited longest
            feed = lane.start(now)
            running[submit(feed)] = feed
            continue
        later = [start for start, _ in starts if now < start < math.inf] if wait_for_slots else []
        if (not running and not later) or (running and wait_until is not None and now >= wait_until):
            return
        timeout = min([*later, *([wait_until] if wait_until is not None else [])], default=None)
        timeout = None if timeout is None else max(0.0, timeout - now)
        if not running:
            sleep(timeout)  # the next slot; with nothing running, no lane waits on a finish
            continue
        done, _ = wait(list(running), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            feed = running.pop(future)
            result = future.result()
            lanes[host_key(feed)].finish(result.hold_until)
            yield result


# --- the transform ---------------------------------------------------------------------


class PollFeedsFn(beam.DoFn):
    """(shard, tick) -> a FeedResponse per due feed of the shard that answered (main), a DeadLetter per failed poll.

    In stream mode a call starts what is due now and waits at most one tick: requests still running
    then are carried to the shard's next call (in this DoFn instance; a new instance polls those feeds
    again, as they are still due in state), and the last tick before `stop_at` waits for every one."""

    STATE = ReadModifyWriteStateSpec("poll", PickleCoder())

    def __init__(
        self,
        feeds: tuple[Feed, ...],
        settings: FetchSettings,
        once: bool,
        tick_s: float,
        stop_at: float | None = None,
        state_dir: str | None = None,
    ):
        self._settings = settings
        self._state_dir = state_dir
        self._once = once  # batch: this is the only call, nothing may be left for later
        self._tick_s = tick_s
        self._stop_at = stop_at
        self._hosts: dict[int, dict[str, list[Feed]]] = {}
        for feed in feeds:
            host = host_key(feed)
            self._hosts.setdefault(shard_of(host, settings.fetch_shards), {}).setdefault(host, []).append(feed)

    def setup(self):
        self._pool = ThreadPoolExecutor(max_workers=self._settings.fetch_concurrency, thread_name_prefix="newswatch-fetch")
        self._running: dict[int, dict[Future, Feed]] = {}  # per shard: requests carried to its next call
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._store = StateStore(self._state_dir) if self._state_dir else None
        self._unsaved: dict[str, tuple[str, PollState]] = {}  # polled in the last call: kept at the next

    def teardown(self):
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._store:
            self._save()  # the run ended: every poll's items have gone through the pipeline
            self._store.close()
        for session in self._sessions:
            session.close()

    def _restored(self, shard: int) -> ShardState:
        """A shard's state as the last run with this state dir left it: each feed's validators, failures and (in
        stream mode) next due time, so a restart polls conditionally and when due, not every feed at once."""
        book = ShardState()
        if not self._store:
            return book
        saved = self._store.saved_polls()
        for feeds in self._hosts.get(shard, {}).values():
            for feed in feeds:
                url, state = saved.get(feed.name, ("", {}))
                if url == feed.url:  # a feed whose URL changed starts again as new
                    book.feeds[feed.name] = replace(PollState(**state), next_due=0.0) if self._once else PollState(**state)
        return book

    def _save(self) -> None:
        """Keep the polls of the last call in the state dir. One call late on purpose: a poll's validators are
        kept only once its items have gone through the pipeline, so a run killed in between polls that feed
        again in full rather than getting a 304 for items it never wrote."""
        if self._store and self._unsaved:
            self._store.save_polls([(feed, url, asdict(state)) for feed, (url, state) in self._unsaved.items()])
            self._unsaved = {}

    def _session(self) -> requests.Session:
        """This thread's HTTP session (a Session is not safe to share between threads; each keeps its connections)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.max_redirects = self._settings.max_redirects
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _lanes(self, shard: int, book: ShardState, now: float, running: dict[Future, Feed]) -> dict[str, HostLane]:
        """A lane for each host of the shard with due feeds (most overdue first; none while the host is
        held) or with requests still in flight from an earlier call."""
        busy = Counter(host_key(feed) for feed in running.values())
        flying = {feed.name for feed in running.values()}
        lanes = {}
        for host, feeds in self._hosts.get(shard, {}).items():
            state = book.hosts.get(host, HostState())
            due = sorted(
                (f for f in feeds if f.name not in flying and book.feeds.get(f.name, PollState()).next_due <= now),
                key=lambda f: book.feeds.get(f.name, PollState()).next_due,
            )
            if state.hold_until > now:
                due = []
            if due or busy[host]:
                spacing_s = 0.0 if host == LOCAL_FILES else self._settings.host_spacing_s
                lanes[host] = HostLane(state, due, spacing_s, self._settings.host_concurrency, busy[host])
        return lanes

    def _submit(self, feed: Feed, book: ShardState) -> Future:
        """Poll `feed` on a pool thread, with its own draw of jitter."""
        state, spread = book.feeds.get(feed.name, PollState()), random.random() * self._settings.jitter
        return self._pool.submit(lambda: poll_feed(self._session(), feed, state, self._settings, spread))

    def process(self, element, shard_state=beam.DoFn.StateParam(STATE)):
        shard, tick = element
        stored = shard_state.read()
        book = stored or self._restored(shard)
        self._save()  # the polls of the shard's last call: their items went through the pipeline since
        now = time.time()  # wall-clock: due times are wall-clock, whatever the tick's timestamp
        running = self._running.setdefault(shard, {})
        lanes = self._lanes(shard, book, now, running)
        if not lanes:
            if stored is None:
                shard_state.write(book)  # restored once, not at every tick until a feed is due
            return
        last = self._once or (self._stop_at is not None and tick + 1.5 * self._tick_s >= self._stop_at)
        results = run_lanes(
            lanes,
            partial(self._submit, book=book),
            self._settings.fetch_concurrency,
            running,
            wait_until=None if last else now + self._tick_s,
            wait_for_slots=self._once,
        )
        for result in results:
            book.feeds[result.feed.name] = result.state
            self._unsaved[result.feed.name] = (result.feed.url, result.state)
            telemetry.feed_fetched(result.feed.name, result.outcome, result.state.failures)
            if result.dead_letter:
                log.info(
                    "feed %s: %s (%s); next try at %s",
                    result.feed.name,
                    result.outcome,
                    result.dead_letter.reason,
                    iso_utc(result.state.next_due),
                )
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, result.dead_letter)
            else:
                yield result.response  # ParseEntries turns it into entries and a FeedStatus
        for host, lane in lanes.items():
            book.hosts[host] = lane.host
            if self._once:
                yield from self._not_polled(host, lane, now)
        shard_state.write(book)

    def _not_polled(self, host: str, lane: HostLane, now: float):
        """Batch mode: a dead letter for each feed left unpolled because its host asked for a pause."""
        for feed in lane.left():
            telemetry.feed_fetched(feed.name, "held")
            reason = f"not polled: host {host} asked for a pause (HTTP 429/503) until {iso_utc(lane.host.hold_until)}"
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(feed.name, feed.url, "fetch", reason, now))


class FetchFeeds(beam.PTransform):
    """PBegin -> FeedResponse (main output `responses`) and DeadLetter (tag `dead_letter`).

    Batch: every feed once. Stream: ticks until `duration_s` has passed, or for ever.
    """

    def __init__(
        self,
        feeds: tuple[Feed, ...],
        streaming: bool,
        duration_s: float | None = None,
        tick_s: float = 1.0,
        settings: FetchSettings = FetchSettings(),
        state_dir: str | None = None,
    ):
        super().__init__()
        self._state_dir = state_dir
        self._feeds = feeds
        self._streaming = streaming
        self._duration_s = duration_s
        self._tick_s = tick_s
        self._settings = settings

    def expand(self, pbegin):
        start = time.time()
        if self._streaming:
            stop = Timestamp.of(start + self._duration_s) if self._duration_s else MAX_TIMESTAMP
            ticks = pbegin | "Tick" >> PeriodicImpulse(
                start_timestamp=Timestamp.of(start), stop_timestamp=stop, fire_interval=self._tick_s
            )
        else:
            ticks = pbegin | "Once" >> beam.Create([start])
        shards = sorted({shard_of(host_key(feed), self._settings.fetch_shards) for feed in self._feeds})
        stop_at = start + self._duration_s if self._streaming and self._duration_s else None
        poll = PollFeedsFn(
            self._feeds, self._settings, once=not self._streaming, tick_s=self._tick_s, stop_at=stop_at, state_dir=self._state_dir
        )
        return (
            ticks
            | "PerShard"
            >> beam.FlatMap(lambda tick, shards=shards: [(shard, float(tick)) for shard in shards]).with_output_types(
                tuple[int, float]
            )  # an int key: a deterministic coder, as state keys need
            | "Poll" >> beam.ParDo(poll).with_outputs(DEAD_LETTER, main="responses")
        )
