"""One poll of one feed: a conditional GET (or a local file), read under limits and parsed, and the
feed's next schedule from what the server and the feed ask. Plain functions; `pipelines.fetch`
decides which feeds are due and runs these on its thread pool.

- A poll is a conditional GET (ETag, Last-Modified); the body is streamed under a size limit
  (checked after decompression, so a gzip bomb is cut off early) and a deadline, then parsed
  (`parse.parse_feed`, so a body that is not a feed is this poll's failure). Every failure is
  a `FetchError` with an outcome label and becomes one dead letter.
- The next poll is the feed's interval, never sooner than the server (Cache-Control max-age,
  Expires, Retry-After) or the feed (<ttl>, sy:updatePeriod) asks, plus jitter; after a
  failure, exponential backoff with a cap. A feed is never disabled.
"""

from __future__ import annotations

import http.client
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path

import requests
import urllib3

from pipelines import __version__
from pipelines.config import Feed
from pipelines.parse import ParseError, parse_feed
from pipelines.records import DeadLetter, FeedResponse

USER_AGENT = f"newswatch/{__version__} (feed monitor)"
ACCEPT = "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.5"
# A server or feed asking for more than a day between polls is read as a day: a typo in a
# <ttl> or a far-future Expires must not silence a feed for months.
MAX_SERVER_INTERVAL_S = 86400.0
CHUNK_BYTES = 65536
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchSettings:
    """Every fetch and politeness setting. The field names are the option names of `newswatch run`;
    the defaults are the documented ones (docs/polling.md)."""

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
