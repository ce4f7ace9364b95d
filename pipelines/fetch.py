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
- A poll is a conditional GET (ETag, Last-Modified); the body is streamed under a size limit
  (checked after decompression, so a gzip bomb is cut off early) and a deadline, then parsed
  (`parse.parse_feed`, so a body that is not a feed is this poll's failure). Every outcome is
  counted (`telemetry.feed_fetched`), every failure is one dead letter. The next poll is the
  feed's interval, never sooner than the server (Cache-Control max-age, Expires, Retry-After)
  or the feed (<ttl>, sy:updatePeriod) asks, plus jitter; after a failure, exponential
  backoff with a cap. A feed is never disabled.

Outcomes (the `outcome` label of newswatch_feed_fetches_total): ok, not_modified, http_error,
timeout, too_large, parse_error, redirect_loop, tls_error, connection_error, io_error (a
local file), held (batch mode only: not polled because its host asked for a pause), and
unexpected_error (an exception we did not foresee: logged with its traceback).
"""

from __future__ import annotations

import http.client
import logging
import math
import random
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC
from email.utils import parsedate_to_datetime
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import apache_beam as beam
import requests
import urllib3
from apache_beam.coders import PickleCoder
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from pipelines import __version__, telemetry
from pipelines.config import Feed
from pipelines.parse import ParseError, parse_feed
from pipelines.records import DeadLetter, FeedResponse, iso_utc

USER_AGENT = f"newswatch/{__version__} (feed monitor)"
ACCEPT = "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.5"
DEAD_LETTER = "dead_letter"
# A server or feed asking for more than a day between polls is read as a day: a typo in a
# <ttl> or a far-future Expires must not silence a feed for months.
MAX_SERVER_INTERVAL_S = 86400.0
LOCAL_FILES = ""  # the host key of feeds read from files: no spacing, no holds
CHUNK_BYTES = 65536
_DEFAULT_PORTS = {"http": 80, "https": 443}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchSettings:
    """Every fetch and politeness setting. The field names are the option names of `newswatch run`;
    the defaults are the documented ones (README, "Politeness")."""

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0  # the longest silence while waiting for headers or body bytes
    response_deadline_s: float = 30.0  # the longest a body may take in all, however it trickles
    max_response_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5
    max_backoff_s: float = 3600.0
    host_spacing_s: float = 1.0
    host_concurrency: int = 1
    fetch_concurrency: int = 8
    fetch_shards: int = 1
    jitter: float = 0.1  # each next poll comes up to this fraction of its delay later, never sooner
    max_entries: int = 500


@dataclass(frozen=True)
class PollState:
    """One feed's schedule and validators, kept in Beam state between polls."""

    next_due: float = 0.0
    etag: str | None = None
    modified: str | None = None
    failures: int = 0
    feed_interval_s: float = 0.0  # what the feed's own <ttl> asks; remembered because a 304 has no body


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


class FetchError(Exception):
    """A poll that failed; `outcome` is the metrics label, the message is for people.
    `status` and `retry_after_s` come from an HTTP error answer, `stage` is where it failed."""

    def __init__(
        self, outcome: str, message: str, status: int | None = None, retry_after_s: float | None = None, stage: str = "fetch"
    ):
        super().__init__(message)
        self.outcome = outcome
        self.status = status
        self.retry_after_s = retry_after_s
        self.stage = stage


@dataclass(frozen=True)
class Fetched:
    """A response that worked: its body (None for 304 Not Modified), validators and freshness."""

    body: bytes | None
    content_type: str = ""
    etag: str | None = None
    modified: str | None = None
    server_interval_s: float = 0.0  # Cache-Control max-age or Expires


@dataclass(frozen=True)
class PollResult:
    """One poll's outcome: the feed's new schedule, and its response or its dead letter."""

    feed: Feed
    outcome: str
    state: PollState
    response: FeedResponse | None = None
    dead_letter: DeadLetter | None = None
    hold_until: float = 0.0  # > 0: no request to this feed's host before then


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


# --- what the server says about the schedule --------------------------------------------


def http_date(value: str | None) -> float | None:
    """An HTTP date as epoch seconds, or None if it is not one."""
    try:
        moment = parsedate_to_datetime(value or "")
    except (TypeError, ValueError, IndexError):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def retry_after_s(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from `now` (delta-seconds or an HTTP date); None if absent or unreadable."""
    value = (value or "").strip()
    if value.isdigit():
        return float(value)
    at = http_date(value)
    return None if at is None else max(0.0, at - now)


def cache_interval_s(headers: Mapping[str, str], now: float) -> float:
    """How long the response stays fresh: Cache-Control max-age, else Expires counted from the server's
    own Date (so a skewed clock does not count); 0 when the server says neither."""
    for directive in headers.get("Cache-Control", "").split(","):
        name, _, value = directive.strip().partition("=")
        if name.lower() == "max-age":
            value = value.strip().strip('"')
            return float(value) if value.isdigit() else 0.0
    expires = http_date(headers.get("Expires"))
    if expires is None:
        return 0.0
    return max(0.0, expires - (http_date(headers.get("Date")) or now))


# --- schedule --------------------------------------------------------------------------


def request_headers(state: PollState) -> dict[str, str]:
    """Our identity, what we accept, and the validators of the last answer (a conditional GET)."""
    headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.modified:
        headers["If-Modified-Since"] = state.modified
    return headers


def after_success(
    state: PollState,
    now: float,
    interval_s: float,
    etag: str | None = None,
    modified: str | None = None,
    server_interval_s: float = 0.0,
    feed_interval_s: float | None = None,
    spread: float = 0.0,
) -> PollState:
    """The schedule after a poll that worked: the feed's interval, never sooner than the server or the
    feed itself asks (capped at a day), `spread` (a fraction, the jitter) later; validators kept."""
    feed_interval_s = state.feed_interval_s if feed_interval_s is None else feed_interval_s
    asked_s = min(max(server_interval_s, feed_interval_s), MAX_SERVER_INTERVAL_S)
    return PollState(
        next_due=now + max(interval_s, asked_s) * (1 + spread),
        etag=etag or state.etag,
        modified=modified or state.modified,
        failures=0,
        feed_interval_s=feed_interval_s,
    )


def backoff_s(interval_s: float, failures: int, max_backoff_s: float) -> float:
    """The wait after the `failures`-th failure in a row: the interval, doubled each time, up to the cap."""
    return min(interval_s * 2 ** min(max(failures - 1, 0), 40), max(max_backoff_s, interval_s))


def after_failure(
    state: PollState, now: float, interval_s: float, max_backoff_s: float, retry_after_s: float | None = None, spread: float = 0.0
) -> PollState:
    """Exponential backoff with a cap, never sooner than a Retry-After: a failing feed is retried for ever."""
    failures = state.failures + 1
    delay_s = max(backoff_s(interval_s, failures, max_backoff_s), min(retry_after_s or 0.0, MAX_SERVER_INTERVAL_S))
    return replace(state, next_due=now + delay_s * (1 + spread), failures=failures)


def host_hold_s(status: int | None, retry_after: float | None, backoff: float) -> float:
    """How long a failure holds the feed's whole host: a 429 or 503 until its Retry-After, a 429 without
    one for the feed's backoff; anything else not at all."""
    if status in (429, 503) and retry_after is not None:
        return min(retry_after, MAX_SERVER_INTERVAL_S)
    return backoff if status == 429 else 0.0


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


# --- one poll --------------------------------------------------------------------------


def read_limited(
    chunks: Iterable[bytes], max_bytes: int, deadline_s: float | None = None, clock: Callable[[], float] = time.monotonic
) -> bytes:
    """Join chunks (already decompressed), stopping as soon as the body passes `max_bytes` or takes
    longer than `deadline_s` in all."""
    body = bytearray()
    started = clock()
    for chunk in chunks:
        body.extend(chunk)
        if len(body) > max_bytes:
            raise FetchError("too_large", f"response larger than the limit of {max_bytes} bytes")
        if deadline_s is not None and clock() - started > deadline_s:
            raise FetchError("timeout", f"the body took longer than the deadline of {deadline_s:g} s")
    return bytes(body)


def fetch_file(feed: Feed, settings: FetchSettings) -> Fetched:
    path = Path(feed.url)
    try:
        with path.open("rb") as handle:
            return Fetched(read_limited(iter(lambda: handle.read(CHUNK_BYTES), b""), settings.max_response_bytes))
    except OSError as err:
        raise FetchError("io_error", f"cannot read file {path}: {err.strerror}") from err


def _read_body(response: requests.Response, settings: FetchSettings) -> bytes:
    """The decompressed body; `read1` returns after each arrival, so the deadline is checked while it trickles."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > settings.max_response_bytes:
        raise FetchError("too_large", f"response declares {declared} bytes, over the limit of {settings.max_response_bytes}")
    chunks = iter(lambda: response.raw.read1(CHUNK_BYTES, decode_content=True) or b"", b"")
    return read_limited(chunks, settings.max_response_bytes, settings.response_deadline_s)


def _read_response(response: requests.Response, settings: FetchSettings) -> Fetched:
    headers, status = response.headers, response.status_code
    if status >= 400:
        wait = retry_after_s(headers.get("Retry-After"), time.time())
        told = f" (Retry-After: {wait:g} s)" if wait is not None and status in (429, 503) else ""
        raise FetchError("http_error", f"HTTP {status} {response.reason or ''}".strip() + told, status, wait)
    if 300 <= status < 400 and status != 304:
        raise FetchError("http_error", f"HTTP {status} {response.reason or ''}: a redirect without a usable Location".strip())
    fresh_s = cache_interval_s(headers, time.time())
    body = None if status == 304 else _read_body(response, settings)
    return Fetched(body, headers.get("Content-Type", ""), headers.get("ETag"), headers.get("Last-Modified"), fresh_s)


def fetch_http(session: requests.Session, feed: Feed, state: PollState, settings: FetchSettings) -> Fetched:
    """One conditional GET, redirects followed up to the session's limit; FetchError on any failure.
    Errors come from requests (before the body) and from urllib3 (while the body streams)."""
    try:
        with session.get(
            feed.url, headers=request_headers(state), stream=True, timeout=(settings.connect_timeout_s, settings.read_timeout_s)
        ) as response:
            return _read_response(response, settings)
    except requests.exceptions.TooManyRedirects as err:
        raise FetchError("redirect_loop", f"more than {settings.max_redirects} redirects") from err
    except (requests.exceptions.SSLError, urllib3.exceptions.SSLError) as err:
        raise FetchError("tls_error", f"TLS error: {err}") from err
    except (requests.exceptions.Timeout, urllib3.exceptions.ReadTimeoutError) as err:
        raise FetchError("timeout", f"no answer within the timeout ({err.__class__.__name__})") from err
    except (requests.exceptions.ContentDecodingError, urllib3.exceptions.DecodeError) as err:
        raise FetchError("connection_error", f"the body could not be decompressed: {err}") from err
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as err:
        raise FetchError("connection_error", f"{err.__class__.__name__}: {err}") from err


def poll_feed(session: requests.Session, feed: Feed, state: PollState, settings: FetchSettings, spread: float) -> PollResult:
    """Fetch and parse one feed; the result carries its new schedule and its response or dead letter."""
    started = time.time()  # the request's own time: what fetch-time timestamps count from
    try:
        fetched = fetch_file(feed, settings) if feed.is_local_file else fetch_http(session, feed, state, settings)
        parsed = None if fetched.body is None else parse_feed(fetched.body, fetched.content_type, settings.max_entries, feed.url)
    except ParseError as err:
        return failed_poll(feed, state, FetchError("parse_error", str(err), stage="parse"), started, settings, spread)
    except FetchError as err:
        return failed_poll(feed, state, err, started, settings, spread)
    except Exception as err:  # a server found a path we did not foresee: still one dead letter, never a lost feed
        log.exception("feed %s: unexpected error while polling", feed.name)
        return failed_poll(
            feed, state, FetchError("unexpected_error", f"{err.__class__.__name__}: {err}"), started, settings, spread
        )
    finished = time.time()  # schedules count from the end of the request: slow hosts get more room
    # A feed's <ttl> asks its readers to spare the publisher's server; a local file has none to spare.
    feed_interval_s = None if parsed is None else 0.0 if feed.is_local_file else parsed.min_interval_s
    new_state = after_success(
        state, finished, feed.interval_s, fetched.etag, fetched.modified, fetched.server_interval_s, feed_interval_s, spread
    )
    if parsed is None:
        return PollResult(feed, "not_modified", new_state, FeedResponse(feed.name, feed.url, started, None))
    return PollResult(feed, "ok", new_state, FeedResponse(feed.name, feed.url, started, tuple(parsed.entries), parsed.cut))


def failed_poll(
    feed: Feed, state: PollState, err: FetchError, started: float, settings: FetchSettings, spread: float
) -> PollResult:
    finished = time.time()
    new_state = after_failure(state, finished, feed.interval_s, settings.max_backoff_s, err.retry_after_s, spread)
    hold_s = host_hold_s(err.status, err.retry_after_s, backoff_s(feed.interval_s, new_state.failures, settings.max_backoff_s))
    dead = DeadLetter(feed.name, feed.url, err.stage, str(err), started)
    return PollResult(feed, err.outcome, new_state, dead_letter=dead, hold_until=finished + hold_s if hold_s else 0.0)


# --- the transform ---------------------------------------------------------------------


class PollFeedsFn(beam.DoFn):
    """(shard, tick) -> a FeedResponse per due feed of the shard that answered (main), a DeadLetter per failed poll.

    In stream mode a call starts what is due now and waits at most one tick: requests still running
    then are carried to the shard's next call (in this DoFn instance; a new instance polls those feeds
    again, as they are still due in state), and the last tick before `stop_at` waits for every one."""

    STATE = ReadModifyWriteStateSpec("poll", PickleCoder())

    def __init__(self, feeds: tuple[Feed, ...], settings: FetchSettings, once: bool, tick_s: float, stop_at: float | None = None):
        self._settings = settings
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

    def teardown(self):
        self._pool.shutdown(wait=True, cancel_futures=True)
        for session in self._sessions:
            session.close()

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
        book = shard_state.read() or ShardState()
        now = time.time()  # wall-clock: due times are wall-clock, whatever the tick's timestamp
        running = self._running.setdefault(shard, {})
        lanes = self._lanes(shard, book, now, running)
        if not lanes:
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
    ):
        super().__init__()
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
        poll = PollFeedsFn(self._feeds, self._settings, once=not self._streaming, tick_s=self._tick_s, stop_at=stop_at)
        return (
            ticks
            | "PerShard"
            >> beam.FlatMap(lambda tick, shards=shards: [(shard, float(tick)) for shard in shards]).with_output_types(
                tuple[int, float]
            )  # an int key: a deterministic coder, as state keys need
            | "Poll" >> beam.ParDo(poll).with_outputs(DEAD_LETTER, main="responses")
        )
