"""FetchFeeds: poll every feed at its own interval, politely, and never lose a failure.

In batch mode each feed is polled once. In stream mode a PeriodicImpulse ticks every
`tick_s` seconds and a stateful DoFn keyed by feed decides, from its own schedule, which
feeds are due; the same DoFn keeps each feed's validators (ETag, Last-Modified) and its
failure count, so conditional requests and backoff work the same on every runner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import apache_beam as beam
import requests
from apache_beam.coders import PickleCoder
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from pipelines import __version__, telemetry
from pipelines.config import Feed
from pipelines.records import DeadLetter, FeedResponse

USER_AGENT = f"newswatch/{__version__} (feed monitor)"
DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    max_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5
    max_backoff_s: float = 3600.0


@dataclass(frozen=True)
class PollState:
    next_due: float = 0.0
    etag: str | None = None
    modified: str | None = None
    failures: int = 0


class FetchError(Exception):
    """A poll that failed; `outcome` is the metrics label, the message is for people."""

    def __init__(self, outcome: str, message: str):
        super().__init__(message)
        self.outcome = outcome


def conditional_headers(state: PollState) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.modified:
        headers["If-Modified-Since"] = state.modified
    return headers


def after_success(state: PollState, now: float, interval_s: float, etag: str | None, modified: str | None) -> PollState:
    return PollState(next_due=now + interval_s, etag=etag or state.etag, modified=modified or state.modified, failures=0)


def after_failure(state: PollState, now: float, interval_s: float, max_backoff_s: float) -> PollState:
    """Exponential backoff with a cap: a failing feed is retried for ever, never disabled."""
    failures = state.failures + 1
    delay = min(interval_s * 2 ** (failures - 1), max(max_backoff_s, interval_s))
    return replace(state, next_due=now + delay, failures=failures)


def read_limited(chunks, max_bytes: int) -> bytes:
    """Join chunks, stopping as soon as the (decompressed) body passes the limit."""
    body = bytearray()
    for chunk in chunks:
        body.extend(chunk)
        if len(body) > max_bytes:
            raise FetchError("too_large", f"response larger than the limit of {max_bytes} bytes")
    return bytes(body)


def fetch_file(feed: Feed, limits: FetchLimits, now: float) -> FeedResponse:
    path = Path(feed.url)
    try:
        with path.open("rb") as handle:
            body = read_limited(iter(lambda: handle.read(65536), b""), limits.max_bytes)
    except OSError as err:
        raise FetchError("io_error", f"cannot read file {path}: {err.strerror}") from err
    return FeedResponse(feed=feed.name, url=feed.url, fetched_at=now, body=body)


def fetch_http(session: requests.Session, feed: Feed, state: PollState, limits: FetchLimits, now: float):
    """One conditional GET; returns (response, etag, last_modified) or raises FetchError."""
    try:
        with session.get(
            feed.url,
            headers=conditional_headers(state),
            timeout=(limits.connect_timeout_s, limits.read_timeout_s),
            stream=True,
        ) as response:
            if response.status_code == 304:
                body = None
            elif response.status_code >= 400:
                raise FetchError("http_error", f"HTTP {response.status_code} {response.reason or ''}".strip())
            else:
                body = read_limited(response.iter_content(65536), limits.max_bytes)
            etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
            content_type = response.headers.get("Content-Type", "")
    except requests.exceptions.TooManyRedirects as err:
        raise FetchError("redirect_loop", f"more than {limits.max_redirects} redirects") from err
    except requests.exceptions.Timeout as err:
        raise FetchError("timeout", f"no answer within the timeout ({err.__class__.__name__})") from err
    except requests.exceptions.SSLError as err:
        raise FetchError("tls_error", f"TLS error: {err}") from err
    except requests.exceptions.RequestException as err:
        raise FetchError("connection_error", f"{err.__class__.__name__}: {err}") from err
    return FeedResponse(feed.name, feed.url, now, body, content_type), etag, modified


class PollFeedFn(beam.DoFn):
    """(feed name, tick time) -> FeedResponse when the feed is due and answers; else a dead letter."""

    POLL_STATE = ReadModifyWriteStateSpec("poll", PickleCoder())

    def __init__(self, feeds: tuple[Feed, ...], limits: FetchLimits):
        self._feeds = {feed.name: feed for feed in feeds}
        self._limits = limits

    def setup(self):
        self._session = requests.Session()
        self._session.max_redirects = self._limits.max_redirects

    def teardown(self):
        self._session.close()

    def process(self, element, poll_state=beam.DoFn.StateParam(POLL_STATE)):
        name, tick = element
        feed = self._feeds[name]
        state = poll_state.read() or PollState()
        if tick < state.next_due:
            return
        now = time.time()  # the request's own time: what fetch-time timestamps and backoff count from
        try:
            if feed.is_local_file:
                response, etag, modified = fetch_file(feed, self._limits, now), None, None
            else:
                response, etag, modified = fetch_http(self._session, feed, state, self._limits, now)
        except FetchError as err:
            failed = after_failure(state, now, feed.interval_s, self._limits.max_backoff_s)
            poll_state.write(failed)
            telemetry.feed_fetched(feed.name, err.outcome, failed.failures)
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(feed.name, feed.url, "fetch", str(err), now))
            return
        poll_state.write(after_success(state, now, feed.interval_s, etag, modified))
        yield response  # ParseEntries counts the outcome: only it knows whether the body was a feed


class FetchFeeds(beam.PTransform):
    """PBegin -> FeedResponse (main output) and DeadLetter (tag `dead_letter`).

    Batch: every feed once. Stream: ticks until `duration_s` has passed, or for ever.
    """

    def __init__(self, feeds: tuple[Feed, ...], streaming: bool, duration_s: float | None = None,
                 tick_s: float = 1.0, limits: FetchLimits = FetchLimits()):
        super().__init__()
        self._feeds = feeds
        self._streaming = streaming
        self._duration_s = duration_s
        self._tick_s = tick_s
        self._limits = limits

    def expand(self, pbegin):
        start = time.time()
        if self._streaming:
            stop = Timestamp.of(start + self._duration_s) if self._duration_s else MAX_TIMESTAMP
            ticks = pbegin | "Tick" >> PeriodicImpulse(
                start_timestamp=Timestamp.of(start), stop_timestamp=stop, fire_interval=self._tick_s)
        else:
            ticks = pbegin | "Once" >> beam.Create([start])
        names = [feed.name for feed in self._feeds]
        return (
            ticks
            | "PerFeed" >> beam.FlatMap(lambda tick, names=names: [(name, float(tick)) for name in names])
            | "Poll" >> beam.ParDo(PollFeedFn(self._feeds, self._limits)).with_outputs(DEAD_LETTER, main="responses")
        )
