"""Fetching end to end: the real `newswatch run` against real loopback servers that misbehave.

Each server records every request's path, headers and arrival time, so the tests check what
a publisher would see: conditional requests, spacing, holds after a 429, backoff.
"""

from __future__ import annotations

import calendar
import gzip
import json
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import read_lines, run_newswatch, start_stream, wait_for, write_yaml
from tests.feedserver import Entry, FeedServer, Route, rss
from tests.stories import AID_CONVOY, CEASEFIRE_TALKS, DOMESTIC_DECREE, entry

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RUSSIAN_TITLE = "Лавров прибыл в Эр-Рияд на переговоры о прекращении огня"
SECRET = "SECRET-TOKEN-93b1d7"


@pytest.fixture
def second_server():
    """Another host (another port is another politeness unit)."""
    with FeedServer() as server:
        yield server


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def feeds_file(tmp_path: Path, urls: dict[str, str], interval: float = 60) -> Path:
    return write_yaml(tmp_path / "feeds.yaml", {"feeds": [{"name": n, "url": u, "interval": interval} for n, u in urls.items()]})


def run(tmp_path: Path, urls: dict[str, str], *extra: str, interval: float = 60, timeout: float = 120):
    out = tmp_path / "out"
    result = run_newswatch(
        "run", "--feeds", str(feeds_file(tmp_path, urls, interval)), "--out", str(out), *extra, timeout=timeout
    )
    assert result.returncode == 0, result.stderr
    return result, out


def start_stream_of(tmp_path: Path, urls: dict[str, str], *extra: str, interval: float = 1) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / "out"
    return start_stream(feeds_file(tmp_path, urls, interval), out, *extra), out


def finish(process: subprocess.Popen, timeout: float = 60) -> str:
    try:
        _, stderr = process.communicate(timeout=timeout)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    return stderr


def arrivals(server: FeedServer, path: str | None = None) -> list[float]:
    return [at for p, _, at in list(server.requests) if path is None or p == path]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def every_output(out: Path, *streams: str) -> str:
    return "".join(path.read_text(encoding="utf-8") for path in out.iterdir() if path.is_file()) + "".join(streams)


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """The metrics a Prometheus server would scrape, as {(sample name, sorted labels): value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# --- batch: a mix of good and broken feeds --------------------------------------------------


def serve_mix(server: FeedServer, other: FeedServer) -> dict[str, str]:
    """Three good feeds (one gzip-encoded, one in a wrongly declared charset), two hostile but
    readable ones, and a broken feed of every kind; returns {feed name: url}."""
    server.serve(
        "/wire.xml",
        gzip.compress(rss("Wire", [entry(CEASEFIRE_TALKS, "https://wire.example.org/lavrov-riyadh")])),
        **{"Content-Encoding": "gzip"},
    )
    server.serve("/outlet.xml", rss("Outlet", [entry(AID_CONVOY, "https://outlet.example.com/darfur-convoy")]))
    server.serve(
        "/vestnik.xml", (FIXTURES / "wrong-charset.xml").read_bytes(), **{"Content-Type": "application/rss+xml; charset=utf-8"}
    )
    server.serve("/bomb-xml.xml", (FIXTURES / "entity-bomb.xml").read_bytes())
    server.serve("/gone.xml", b"not here", status=404)
    server.serve("/broken.xml", b"oops", status=500)
    server.routes["/hang.xml"] = Route(body=rss("Slow", []), delay_s=30)
    server.routes["/loop-a.xml"] = Route(status=302, headers={"Location": "/loop-b.xml"})
    server.routes["/loop-b.xml"] = Route(status=302, headers={"Location": "/loop-a.xml"})
    server.serve("/huge.xml", b"<rss>" + b"x" * 2_000_000 + b"</rss>")
    server.serve("/gzip-bomb.xml", gzip.compress(b"<rss>" + b" " * 50_000_000), **{"Content-Encoding": "gzip"})
    server.serve("/page.xml", b"<html><body><h1>Welcome to our homepage</h1></body></html>", **{"Content-Type": "text/html"})
    other.serve("/limited.xml", b"slow down", status=429, **{"Retry-After": "120"})
    other.serve("/sibling.xml", rss("Sibling", [entry(DOMESTIC_DECREE, "https://other.example.org/decree")]))
    urls = {
        name: server.url(f"/{name}.xml")
        for name in ("wire", "outlet", "vestnik", "bomb-xml", "gone", "broken", "hang", "huge", "gzip-bomb", "page")
    }
    return {
        **urls,
        "loop": server.url("/loop-a.xml"),
        "tls": server.url("/wire.xml").replace("http://", "https://"),
        "refused": f"http://127.0.0.1:{closed_port()}/feed.xml",
        "limited": other.url("/limited.xml"),
        "sibling": other.url("/sibling.xml"),
    }


BROKEN = {  # feed: (stage, words its one dead letter gives as the reason)
    "gone": ("fetch", "HTTP 404"),
    "broken": ("fetch", "HTTP 500"),
    "hang": ("fetch", "timeout"),
    "loop": ("fetch", "more than 3 redirects"),
    "huge": ("fetch", "over the limit of 1000000"),
    "gzip-bomb": ("fetch", "larger than the limit of 1000000 bytes"),
    "page": ("parse", "not a"),
    "tls": ("fetch", "TLS error"),
    "refused": ("fetch", "ConnectionError"),
    "limited": ("fetch", "HTTP 429 Too Many Requests (Retry-After: 120 s)"),
    "sibling": ("fetch", "asked for a pause"),
}


def test_batch_over_good_and_broken_feeds_finishes_within_its_timeouts_with_alerts_intact(tmp_path, feed_server, second_server):
    urls = serve_mix(feed_server, second_server)
    started = time.monotonic()
    result, out = run(
        tmp_path,
        urls,
        "--connect-timeout",
        "1",
        "--read-timeout",
        "1",
        "--response-deadline",
        "3",
        "--max-response-bytes",
        "1000000",
        "--max-redirects",
        "3",
        "--host-spacing",
        "0.05",
    )
    # One hang (1 s read timeout), the rest fail fast: far below the hang's 30 s.
    assert time.monotonic() - started < 25

    alerts = read_lines(out / "alerts.jsonl")
    assert {a["title"] for a in alerts} == {CEASEFIRE_TALKS[0], AID_CONVOY[0], RUSSIAN_TITLE}
    assert next(a for a in alerts if a["title"] == RUSSIAN_TITLE)["actors"] == ["Sergei Lavrov"]  # the charset was repaired

    dead = read_lines(out / "dead_letter.jsonl")
    assert Counter(d["feed"] for d in dead) == Counter(BROKEN.keys())  # exactly one each, none for a good feed
    for record in dead:
        stage, words = BROKEN[record["feed"]]
        assert record["stage"] == stage and words in record["reason"], record

    # The 429 held its host: the sibling feed there was not requested at all.
    assert [path for path, _, _ in second_server.requests] == ["/limited.xml"]
    # Hostile bodies are read without expanding anything.
    assert "lollol" not in every_output(out, result.stdout, result.stderr)

    health = summary(out)
    assert (health["feeds_ok"], health["feeds_failed"]) == (4, len(BROKEN))
    assert health["feeds"]["gone"]["consecutive_failures"] == 1 and "HTTP 404" in health["feeds"]["gone"]["last_error"]
    assert health["feeds"]["wire"]["last_success"] and health["feeds"]["wire"]["consecutive_failures"] == 0


def test_external_entities_never_reach_any_output(tmp_path, feed_server):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET, encoding="utf-8")
    body = (FIXTURES / "external-entity.xml").read_text(encoding="utf-8").replace("@SECRET_PATH@", str(secret))
    feed_server.serve("/courier.xml", body.encode())
    result, out = run(tmp_path, {"courier": feed_server.url("/courier.xml")})
    items = read_lines(out / "items.jsonl")
    assert [item["title"].split(" &")[0] for item in items] == ["Council approves new bus route to the hospital"]
    assert SECRET not in every_output(out, result.stdout, result.stderr)


def test_entries_without_link_guid_or_date_get_a_stable_identity_and_the_cap_counts_the_rest(tmp_path, feed_server):
    feed_server.serve("/sparse.xml", (FIXTURES / "missing-fields.xml").read_bytes())
    busy = [
        Entry(
            f"Harbour notice {n}",
            f"<p>Notice number {n} about berth {n * 7} and its tides.</p>",
            f"https://harbour.example.org/notice/{n}",
        )
        for n in range(30)
    ]
    feed_server.serve("/busy.xml", rss("Busy", busy))
    urls = {"sparse": feed_server.url("/sparse.xml"), "busy": feed_server.url("/busy.xml")}
    args = ("--state-dir", str(tmp_path / "state"), "--max-entries", "10", "--host-spacing", "0")
    before = time.time()
    result, out = run(tmp_path, urls, *args)
    after = time.time()

    items = [item for item in read_lines(out / "items.jsonl") if item["feed"] == "sparse"]
    assert len(items) == 3 and all(item["url"] == "" and item["published_estimated"] for item in items)
    fetched = [calendar.timegm(time.strptime(item["published"], "%Y-%m-%dT%H:%M:%SZ")) for item in items]
    assert all(before - 1 <= at <= after + 1 for at in fetched)  # no date, a date in 2099, "the day after the market fair"
    first = summary(out)
    assert first["unique"] == 13 and first["entries_cut"] == 20
    assert "busy: 20 entries beyond the per-poll cap" in result.stderr

    result, out = run(tmp_path, urls, *args)
    again = summary(out)
    assert (again["unique"], again["duplicates"], again["entries_cut"]) == (0, 13, 20)  # the same identities


@pytest.mark.parametrize("spacing, delay", [(0.5, 0.0), (0.1, 0.4)])
def test_batch_spaces_requests_to_a_host_one_at_a_time_and_polls_hosts_side_by_side(
    tmp_path, feed_server, second_server, spacing, delay
):
    urls = {}
    for host, server in (("a", feed_server), ("b", second_server)):
        for n in range(3):
            server.routes[f"/{n}.xml"] = Route(
                body=rss(host, [entry(AID_CONVOY, f"https://{host}.example.org/{n}")]),
                delay_s=delay,
                headers={"Content-Type": "application/rss+xml"},
            )
            urls[f"{host}{n}"] = server.url(f"/{n}.xml")
    run(tmp_path, urls, "--host-spacing", str(spacing))
    least = max(spacing, delay)  # spacing apart; and the next request only after the last answer
    for server in (feed_server, second_server):
        times = arrivals(server)
        assert len(times) == 3 and min(gaps(times)) >= least - 0.02, gaps(times)
    a, b = arrivals(feed_server), arrivals(second_server)
    assert a[0] < b[-1] and b[0] < a[-1]  # the two hosts were polled at the same time, not one after the other


# --- stream ------------------------------------------------------------------------------------


def test_stream_sends_conditional_requests_from_the_second_poll_and_does_not_parse_a_304(tmp_path, feed_server):
    modified = "Tue, 24 Nov 2026 08:00:00 GMT"
    feed_server.serve(
        "/wire.xml",
        rss("Wire", [entry(CEASEFIRE_TALKS, "https://wire.example.org/a"), entry(AID_CONVOY, "https://wire.example.org/b")]),
        ETag='"v1"',
        **{"Last-Modified": modified},
    )
    result = run_newswatch(
        "run",
        "--feeds",
        str(feeds_file(tmp_path, {"wire": feed_server.url("/wire.xml")}, 1)),
        "--out",
        str(tmp_path / "out"),
        "--mode",
        "stream",
        "--duration",
        "6",
        "--tick",
        "0.25",
        "--host-spacing",
        "0",
    )
    assert result.returncode == 0, result.stderr
    headers = [h for _, h, _ in feed_server.requests_for("/wire.xml")]
    assert len(headers) >= 3
    assert "If-None-Match" not in headers[0] and "If-Modified-Since" not in headers[0]
    assert all(h["If-None-Match"] == '"v1"' and h["If-Modified-Since"] == modified for h in headers[1:])
    out = tmp_path / "out"
    assert len(read_lines(out / "items.jsonl")) == 2 and read_lines(out / "dead_letter.jsonl") == []
    health = summary(out)
    assert (health["fetched"], health["duplicates"]) == (2, 0)  # every later poll was a 304: nothing read again


def test_a_restarted_run_polls_conditionally_and_only_what_is_due(tmp_path, feed_server):
    """Each feed's validators and next due time are kept in the state dir: a restart is not a burst of full GETs."""
    modified = "Tue, 24 Nov 2026 08:00:00 GMT"
    for name, story in (("wire", CEASEFIRE_TALKS), ("weekly", AID_CONVOY)):
        feed_server.serve(f"/{name}.xml", rss(name, [entry(story, f"https://{name}.example.org/a")]), ETag=f'"{name}-1"')
    feed_server.routes["/wire.xml"].headers["Last-Modified"] = modified
    feeds = write_yaml(
        tmp_path / "feeds.yaml",
        {
            "feeds": [
                {"name": "wire", "url": feed_server.url("/wire.xml"), "interval": 1},
                {"name": "weekly", "url": feed_server.url("/weekly.xml"), "interval": 3600},
            ]
        },
    )
    out, state = tmp_path / "out", tmp_path / "state"
    args = ("run", "--feeds", str(feeds), "--out", str(out), "--state-dir", str(state), "--mode", "stream", "--tick", "0.25")
    for duration in ("3", "4"):  # a run, then a restart with the same state dir
        result = run_newswatch(*args, "--duration", duration, "--host-spacing", "0")
        assert result.returncode == 0, result.stderr
        if duration == "3":
            first = len(feed_server.requests)
    restarted = feed_server.requests[first:]
    assert restarted and {path for path, _, _ in restarted} == {"/wire.xml"}, "weekly was not due yet"
    assert all(h.get("If-None-Match") == '"wire-1"' and h.get("If-Modified-Since") == modified for _, h, _ in restarted)
    assert summary(out)["fetched"] == 0  # every poll of the restarted run was a 304
    assert len(read_lines(out / "items.jsonl")) == 2


def test_stream_retry_after_holds_every_feed_of_that_host(tmp_path, feed_server):
    feed_server.serve("/limited.xml", b"slow down", status=429, **{"Retry-After": "3"})
    feed_server.serve("/sibling.xml", rss("Sibling", [entry(DOMESTIC_DECREE, "https://sibling.example.org/decree")]))
    process, out = start_stream_of(
        tmp_path,
        {"limited": feed_server.url("/limited.xml"), "sibling": feed_server.url("/sibling.xml")},
        "--duration",
        "9",
        "--host-spacing",
        "0",
    )
    finish(process)
    limited = arrivals(feed_server, "/limited.xml")
    assert len(limited) >= 2 and min(gaps(limited)) >= 3 - 0.05
    for answered in limited:  # after each 429, nothing at all reaches the host for 3 s
        assert not [at for at in arrivals(feed_server) if answered < at < answered + 3 - 0.05]
    assert any(at > limited[0] for at in arrivals(feed_server, "/sibling.xml"))  # held, not stopped
    dead = read_lines(out / "dead_letter.jsonl")
    assert [d["feed"] for d in dead] == ["limited"] * len(limited)  # one dead letter per 429 answered


def test_stream_failing_feed_backs_off_is_never_disabled_and_recovers(tmp_path, feed_server):
    feed_server.serve("/flaky.xml", b"down for maintenance", status=500)
    port = closed_port()
    process, out = start_stream_of(
        tmp_path, {"flaky": feed_server.url("/flaky.xml")}, "--duration", "22", "--max-backoff", "4", "--metrics-port", str(port)
    )
    try:
        assert wait_for(lambda: len(arrivals(feed_server)) >= 4, 18), "the failing feed stopped being polled"
        failures = len(arrivals(feed_server))
        feed_server.serve("/flaky.xml", rss("Flaky", [entry(AID_CONVOY, "https://flaky.example.org/convoy")]))
        assert wait_for(lambda: read_lines(out / "items.jsonl"), 10), "the feed did not recover"
        metrics = scrape(port)
    finally:
        stderr = finish(process)
    times = arrivals(feed_server)
    # Interval 1 s, doubled after each failure (the cap is 4 s); jitter adds up to 10 %, ticks and load a little more.
    for gap, least in zip(gaps(times)[:failures], (1, 2, 4, 4, 4), strict=False):
        assert least - 0.05 <= gap <= least * 1.1 + 1.5, (gaps(times), stderr[-2000:])
    assert metrics[("newswatch_feed_fetches_total", (("feed", "flaky"), ("outcome", "http_error")))] == failures
    assert metrics[("newswatch_feed_fetches_total", (("feed", "flaky"), ("outcome", "ok")))] >= 1
    assert metrics[("newswatch_feed_consecutive_failures", (("feed", "flaky"),))] == 0
    dead = read_lines(out / "dead_letter.jsonl")
    assert len(dead) == failures and all("HTTP 500" in d["reason"] for d in dead)
    health = summary(out)["feeds"]["flaky"]
    assert health["consecutive_failures"] == 0 and health["last_success"] and "HTTP 500" in health["last_error"]


def test_stream_a_hanging_host_does_not_hold_up_the_other_hosts(tmp_path, feed_server, second_server):
    feed_server.serve("/wire.xml", rss("Wire", [entry(AID_CONVOY, "https://wire.example.org/convoy")]))
    second_server.routes["/hang.xml"] = Route(body=rss("Slow", []), delay_s=30)
    process, out = start_stream_of(
        tmp_path,
        {"wire": feed_server.url("/wire.xml"), "hang": second_server.url("/hang.xml")},
        "--duration",
        "10",
        "--read-timeout",
        "6",
        "--host-spacing",
        "0",
    )
    finish(process)
    # The hanging request takes 6 s to time out; meanwhile the other host is polled every second or so.
    wire = arrivals(feed_server, "/wire.xml")
    assert len(wire) >= 5 and max(gaps(wire)) < 3.5, gaps(wire)
    dead = read_lines(out / "dead_letter.jsonl")
    assert [d["feed"] for d in dead] == ["hang"] * len(arrivals(second_server)) and "timeout" in dead[0]["reason"]
