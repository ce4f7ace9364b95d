"""FetchFeeds: its pure scheduling, politeness and limits, then the composite on a TestPipeline."""

from __future__ import annotations

import gzip
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import apache_beam as beam
import pytest
import requests
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from requests.structures import CaseInsensitiveDict

from pipelines.config import Feed
from pipelines.fetch import FetchFeeds, HostLane, HostState, host_key, run_lanes, shard_of
from pipelines.poll import (
    MAX_SERVER_INTERVAL_S,
    FetchError,
    FetchSettings,
    PollResult,
    PollState,
    after_failure,
    after_success,
    backoff_s,
    cache_interval_s,
    fetch_http,
    host_hold_s,
    poll_feed,
    read_limited,
    request_headers,
    retry_after_s,
)
from tests.feedserver import rss
from tests.stories import CEASEFIRE_TALKS, entry

NOW = 1_800_000_000.0  # Fri, 15 Jan 2027 08:00:00 GMT
NOW_HTTP = "Fri, 15 Jan 2027 08:00:00 GMT"


def test_conditional_headers_from_the_second_poll():
    assert "If-None-Match" not in request_headers(PollState())
    state = after_success(PollState(), now=100.0, interval_s=60, etag='"v1"', modified="Wed, 25 Nov 2026 09:00:00 GMT")
    headers = request_headers(state)
    assert headers["If-None-Match"] == '"v1"' and headers["If-Modified-Since"] == "Wed, 25 Nov 2026 09:00:00 GMT"
    assert headers["User-Agent"].startswith("newswatch/")
    assert state.next_due == 160.0 and state.failures == 0
    # A 304 carries no new validators: the old ones stay.
    assert after_success(state, 200.0, 60).etag == '"v1"'


def test_failures_back_off_exponentially_up_to_the_cap_and_never_stop():
    state = PollState()
    delays = []
    for _ in range(8):
        state = after_failure(state, now=0.0, interval_s=60, max_backoff_s=600)
        delays.append(state.next_due)
    assert delays == [60, 120, 240, 480, 600, 600, 600, 600]
    assert after_success(state, 1000.0, 60).failures == 0
    # Months of failures do not overflow: the delay stays at the cap.
    assert backoff_s(60, 100_000, 600) == 600


def test_the_server_and_the_feed_can_only_slow_polling_down():
    assert after_success(PollState(), 0.0, 60, server_interval_s=10).next_due == 60  # never faster than configured
    assert after_success(PollState(), 0.0, 60, server_interval_s=300).next_due == 300  # Cache-Control / Expires
    ttl = after_success(PollState(), 0.0, 60, feed_interval_s=900)  # <ttl>15</ttl>
    assert ttl.next_due == 900
    assert after_success(ttl, 1000.0, 60).next_due == 1900  # a 304 has no body: the ttl is remembered
    assert after_success(PollState(), 0.0, 60, server_interval_s=10**9).next_due == MAX_SERVER_INTERVAL_S
    # Retry-After beats a shorter backoff.
    assert after_failure(PollState(), 0.0, 60, 3600, retry_after_s=500).next_due == 500


@pytest.mark.parametrize("spread", [0.0, 0.05, 0.0999])
def test_jitter_only_ever_delays(spread):
    ok = after_success(PollState(), 0.0, 100, spread=spread).next_due
    failed = after_failure(PollState(), 0.0, 100, 3600, spread=spread).next_due
    assert 100 <= ok < 110 and 100 <= failed < 110


@pytest.mark.parametrize(
    "value, expected",
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        (NOW_HTTP, 0.0),
        ("Fri, 15 Jan 2027 08:02:00 GMT", 120.0),
        ("Thu, 14 Jan 2027 08:00:00 GMT", 0.0),
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_as_seconds_or_date(value, expected):
    assert retry_after_s(value, NOW) == expected


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"Cache-Control": "public, max-age=600"}, 600.0),
        ({"Cache-Control": 'max-age="90"', "Expires": "Fri, 15 Jan 2027 09:00:00 GMT"}, 90.0),  # max-age wins
        ({"Cache-Control": "no-cache"}, 0.0),
        ({"Expires": "Fri, 15 Jan 2027 08:10:00 GMT"}, 600.0),
        # Expires is read against the server's Date, so a server clock an hour ahead changes nothing.
        ({"Expires": "Fri, 15 Jan 2027 09:10:00 GMT", "Date": "Fri, 15 Jan 2027 09:00:00 GMT"}, 600.0),
        ({"Expires": "0"}, 0.0),
        ({"Expires": "Thu, 14 Jan 2027 08:00:00 GMT"}, 0.0),
        ({}, 0.0),
    ],
)
def test_freshness_from_cache_control_or_expires(headers, expected):
    assert cache_interval_s(CaseInsensitiveDict(headers), NOW) == expected


def test_a_429_or_503_with_retry_after_holds_the_whole_host():
    assert host_hold_s(429, 120.0, backoff=60) == 120
    assert host_hold_s(503, 30.0, backoff=60) == 30
    assert host_hold_s(429, None, backoff=60) == 60  # too many requests, no hint: hold for the backoff
    assert host_hold_s(503, None, backoff=60) == 0  # an outage of one feed's backend, not a rate limit
    assert host_hold_s(500, 120.0, backoff=60) == 0
    assert host_hold_s(None, None, backoff=60) == 0


@pytest.mark.parametrize(
    "url, key",
    [
        ("https://News.Example.org/rss", "news.example.org"),
        ("https://news.example.org:443/rss", "news.example.org"),
        ("http://news.example.org:8080/rss", "news.example.org:8080"),
        ("http://127.0.0.1:5000/a.xml", "127.0.0.1:5000"),
        ("/srv/feeds/local.xml", ""),
    ],
)
def test_host_key_is_the_politeness_unit(url, key):
    assert host_key(Feed("f", url, 60)) == key


def test_shards_are_stable_and_in_range():
    assert shard_of("news.example.org", 1) == 0
    assert {shard_of(f"host{i}.example.org", 4) for i in range(50)} == {0, 1, 2, 3}
    assert shard_of("news.example.org", 4) == shard_of("news.example.org", 4)


class FakeClock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def host_feeds(host: str, n: int) -> list[Feed]:
    return [Feed(f"{host}{i}", f"http://{host}/{i}", 60) for i in range(n)]


def answered(feed: Feed, hold_until: float = 0.0) -> Future:
    future = Future()
    future.set_result(PollResult(feed, "ok", PollState(), hold_until=hold_until))
    return future


def run_fake(lanes: dict[str, HostLane], clock: FakeClock, holds: dict[str, float] | None = None, **options):
    """run_lanes with instant answers; returns [(feed name, start time)] and the results."""
    started = []

    def submit(feed: Feed) -> Future:
        started.append((feed.name, clock.now))
        return answered(feed, (holds or {}).get(feed.name, 0.0))

    results = list(run_lanes(lanes, submit, 8, {}, clock=clock, sleep=clock.sleep, **options))
    return started, results


def lane(feeds: list[Feed], spacing_s: float = 0.0, concurrency: int = 1, host: HostState = HostState()) -> HostLane:
    return HostLane(host, feeds, spacing_s, concurrency)


def test_requests_to_one_host_are_spaced():
    clock = FakeClock()
    only = lane(host_feeds("h", 4), spacing_s=2.0)
    started, results = run_fake({"h": only}, clock)
    assert started == [("h0", 0.0), ("h1", 2.0), ("h2", 4.0), ("h3", 6.0)] and len(results) == 4
    assert only.host.next_start == 8.0 and only.left() == []


def test_hosts_do_not_wait_for_each_other():
    clock = FakeClock()
    started, _ = run_fake({h: lane(host_feeds(h, 2), spacing_s=2.0) for h in "ab"}, clock)
    assert sorted(started, key=lambda s: (s[1], s[0])) == [("a0", 0.0), ("b0", 0.0), ("a1", 2.0), ("b1", 2.0)]


def test_spacing_left_by_an_earlier_call_is_kept():
    clock = FakeClock(10.0)
    assert run_fake({"h": lane(host_feeds("h", 1), 2.0, host=HostState(next_start=11.5))}, clock)[0] == [("h0", 11.5)]


def test_a_hold_stops_the_host_and_keeps_the_rest():
    clock = FakeClock()
    lanes = {"h": lane(host_feeds("h", 4)), "o": lane(host_feeds("o", 2))}
    started, _ = run_fake(lanes, clock, holds={"h0": 30.0})  # h0 answered 429, Retry-After: 30
    assert [name for name, _ in started if name.startswith("h")] == ["h0"]
    assert lanes["h"].left() == host_feeds("h", 4)[1:] and lanes["h"].host.hold_until == 30.0
    assert [name for name, _ in started if name.startswith("o")] == ["o0", "o1"]  # another host is not held


def test_stream_mode_starts_only_what_is_due_now_and_never_sleeps():
    clock = FakeClock()
    spaced = lane(host_feeds("h", 3), spacing_s=1.0)
    started, _ = run_fake({"h": spaced, "z": lane(host_feeds("z", 2))}, clock, wait_until=0.25, wait_for_slots=False)
    assert sorted(started) == [("h0", 0.0), ("z0", 0.0), ("z1", 0.0)] and clock.now == 0.0
    assert spaced.left() == host_feeds("h", 3)[1:] and spaced.host.next_start == 1.0  # for the tick at or after 1 s


def test_a_slow_request_is_carried_to_the_next_call_and_counts_against_its_host():
    slow, fast = host_feeds("slow", 2), host_feeds("fast", 1)
    pending = Future()  # slow0 hangs
    submitted = []

    def submit(feed: Feed) -> Future:
        submitted.append(feed.name)
        return pending if feed.name == "slow0" else answered(feed)

    running: dict[Future, Feed] = {}
    lanes = {"slow": lane(slow), "fast": lane(fast)}
    tick_end = time.time() + 0.2
    first = list(run_lanes(lanes, submit, 8, running, wait_until=tick_end, wait_for_slots=False))
    assert time.time() >= tick_end  # it waited out the tick for slow0, no longer
    assert [r.feed.name for r in first] == ["fast0"] and list(running.values()) == [slow[0]]
    assert lanes["slow"].left() == [slow[1]]  # one request at a time to the slow host, even across calls

    pending.set_result(PollResult(slow[0], "timeout", PollState(failures=1)))  # it ends before the next call
    lanes = {"slow": HostLane(HostState(), [slow[1]], 0.0, 1, in_flight=1)}
    second = list(run_lanes(lanes, submit, 8, running))
    assert [r.feed.name for r in second] == ["slow0", "slow1"] and running == {}
    assert submitted == ["slow0", "fast0", "slow1"]


def test_requests_in_flight_are_bounded_per_host_and_in_all():
    gate = threading.Event()
    in_flight, most = {"a": 0, "b": 0, "all": 0}, {"a": 0, "b": 0, "all": 0}
    lock = threading.Lock()

    def poll(feed: Feed) -> PollResult:
        host = feed.name[0]
        with lock:
            for key in (host, "all"):
                in_flight[key] += 1
                most[key] = max(most[key], in_flight[key])
        gate.wait(0.05)
        with lock:
            in_flight[host] -= 1
            in_flight["all"] -= 1
        return PollResult(feed, "ok", PollState())

    lanes = {h: lane(host_feeds(h, 6), concurrency=2) for h in "ab"}
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(run_lanes(lanes, lambda feed: pool.submit(poll, feed), 3, {}))
    assert len(results) == 12 and most["a"] <= 2 and most["b"] <= 2 and most["all"] == 3


def test_body_over_the_limit_is_cut_off_early():
    chunks = iter([b"x" * 400, b"x" * 400, b"x" * 400, pytest.fail])  # the 4th chunk must never be read
    with pytest.raises(FetchError, match="larger than the limit of 1000 bytes") as err:
        read_limited(chunks, 1000)
    assert err.value.outcome == "too_large"


def test_a_body_that_trickles_past_the_deadline_is_cut_off():
    clock = FakeClock()

    def trickle():
        while True:
            clock.sleep(4.0)  # a byte every 4 s: each read is within the read timeout
            yield b"<"

    with pytest.raises(FetchError, match="deadline of 10 s") as err:
        read_limited(trickle(), 1000, deadline_s=10, clock=clock)
    assert err.value.outcome == "timeout"


# --- the composite, on a TestPipeline against a real loopback server ---------------------------


def test_fetch_feeds_batch_emits_parsed_responses_and_one_dead_letter_per_failure(feed_server):
    feed_server.serve(
        "/wire.xml",
        gzip.compress(rss("Wire", [entry(CEASEFIRE_TALKS, "https://wire.example.org/a")])),
        **{"Content-Encoding": "gzip"},
    )
    feed_server.serve("/gone.xml", b"gone", status=404)
    feed_server.serve("/page.xml", b"<html><body>Welcome</body></html>", **{"Content-Type": "text/html"})
    feeds = tuple(Feed(name, feed_server.url(f"/{name}.xml"), 60) for name in ("wire", "gone", "page"))
    settings = FetchSettings(host_spacing_s=0.0)
    with TestPipeline(runner="FnApiRunner") as p:
        fetched = p | FetchFeeds(feeds, streaming=False, settings=settings)
        titles = fetched.responses | beam.FlatMap(lambda r: [(r.feed, e["title"]) for e in r.entries])
        dead = fetched.dead_letter | beam.Map(lambda d: (d.feed, d.stage, d.reason.split(":")[0]))
        assert_that(titles, equal_to([("wire", CEASEFIRE_TALKS[0])]), label="entries")
        assert_that(
            dead,
            equal_to([("gone", "fetch", "HTTP 404 Not Found"), ("page", "parse", "not a readable feed")]),
            label="dead letters",
        )
    assert "gzip" in feed_server.requests_for("/wire.xml")[0][1]["Accept-Encoding"]


# --- bodies that go wrong halfway, from a real socket --------------------------------------


class MidBodyHandler(BaseHTTPRequestHandler):
    """Answers 200 with headers, then misbehaves in the body as the path says."""

    def do_GET(self):
        self.send_response(200)
        gzipped = self.path == "/bad-gzip"
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", "100000")
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        if gzipped:
            self.wfile.write(b"\x1f\x8b\x08\x00 this is not deflate data at all")
        elif self.path == "/stall":
            self.wfile.write(b"<rss><channel>")
            self.wfile.flush()
            time.sleep(3)
        elif self.path == "/trickle":
            for _ in range(30):  # a byte every 0.25 s: never silent for a read timeout, endless in all
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.25)
        else:  # /short: the connection closes long before Content-Length
            self.wfile.write(b"<rss>")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def mid_body_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), MidBodyHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "path, outcome, words",
    [
        ("/stall", "timeout", "ReadTimeoutError"),
        ("/trickle", "timeout", "deadline of 2 s"),
        ("/short", "connection_error", "ProtocolError"),
        ("/bad-gzip", "connection_error", "could not be decompressed"),
    ],
)
def test_a_body_that_goes_wrong_halfway_is_one_clear_failure(mid_body_server, path, outcome, words):
    settings = FetchSettings(read_timeout_s=1.0, response_deadline_s=2.0)
    started = time.monotonic()
    with requests.Session() as session, pytest.raises(FetchError) as err:
        fetch_http(session, Feed("f", mid_body_server + path, 60), PollState(), settings)
    assert (err.value.outcome, words in str(err.value)) == (outcome, True), str(err.value)
    assert time.monotonic() - started < 5  # bounded by the read timeout and the deadline, not by the server


def test_an_unforeseen_exception_is_still_one_dead_letter_and_the_feed_backs_off():
    class Exploding:
        def get(self, *args, **kwargs):
            raise RuntimeError("a path nobody foresaw")

    result = poll_feed(Exploding(), Feed("odd", "http://odd.example/feed", 60), PollState(), FetchSettings(), spread=0.0)
    assert (result.outcome, result.state.failures, result.response) == ("unexpected_error", 1, None)
    assert result.dead_letter.reason == "RuntimeError: a path nobody foresaw" and result.dead_letter.stage == "fetch"
