"""One batch run over hostile feeds, with good feeds among them: the good feeds' alerts come
through, every failure is one dead letter with a reason, nothing leaks, nothing crashes."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime

from tests.conftest import NEWSWATCH, ROOT, read_lines, write_yaml
from tests.feedserver import Entry, Route, rss
from tests.stories import AID_CONVOY, CEASEFIRE_TALKS, entry

MEMORY_BOUND_KIB = 1024 * 1024  # 1 GiB for the whole run
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
FAILING = {  # feed: (stage, words of its one dead letter's reason)
    "empty": ("parse", "empty"),
    "noise": ("parse", "not a"),
    "page": ("parse", "not a"),
    "server-error": ("fetch", "HTTP 500"),
    "hang": ("fetch", "timeout"),
    "loop": ("fetch", "redirects"),
    "reset": ("fetch", ""),
    "gzip-bomb": ("fetch", "limit"),
}


def reset_mid_body_server() -> tuple[socket.socket, int]:
    """Answers every request with a promise of 100 kB, sends a little, then resets the connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: 100000\r\n\r\n<rss><channel><item><title>Cut"
            )
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


def hostile_routes(server, secret_path) -> None:
    good_wire = rss("Wire", [entry(CEASEFIRE_TALKS, "https://wire.example.org/lavrov-riyadh")])
    server.serve("/wire.xml", good_wire)
    server.serve("/outlet.xml", rss("Outlet", [entry(AID_CONVOY, "https://outlet.example.com/darfur-convoy")]))
    server.serve("/truncated.xml", good_wire[: len(good_wire) * 2 // 3])
    server.serve(
        "/malformed.xml",
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>M</title>'
        b"<item><title>Unclosed <b>tag</title><description>Text & more</item></channel>",
    )
    server.serve("/empty.xml", b"")
    server.serve("/noise.xml", bytes(range(256)) * 64)
    server.serve("/page.xml", b"<!doctype html><html><body><p>Home</p></body></html>", **{"Content-Type": "text/html"})
    server.serve("/server-error.xml", b"down", status=500)
    server.routes["/hang.xml"] = Route(body=good_wire, delay_s=30)
    server.routes["/loop-a.xml"] = Route(status=302, headers={"Location": "/loop-b.xml"})
    server.routes["/loop-b.xml"] = Route(status=302, headers={"Location": "/loop-a.xml"})
    server.serve("/gzip-bomb.xml", gzip.compress(b"<rss>" + b" " * 60_000_000), **{"Content-Encoding": "gzip"})
    server.serve(
        "/xxe.xml",
        (
            f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY secret SYSTEM "file://{secret_path}">]>'
            '<rss version="2.0"><channel><title>X</title><item><title>Report &secret;</title>'
            "<description>&secret;</description><link>https://x.example.org/1</link></item></channel></rss>"
        ).encode(),
    )
    script_title = "<script>alert('x')</script>Lavrov lands in Cairo for ceasefire talks<img src=x onerror=alert(1)>"
    script_body = (
        '<p onclick="steal()">Russian Foreign Minister Sergei Lavrov arrived in Cairo for talks on a ceasefire in Gaza '
        "and an exchange of prisoners.</p><script>document.location='https://evil.example'</script>"
        '<a href="javascript:alert(1)">more</a>'
    )
    server.serve("/scripts.xml", rss("Scripts", [Entry(script_title, script_body, "javascript:alert(document.cookie)", NOW)]))
    server.serve(
        "/sparse.xml",
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>S</title>'
        b"<item><description>Only a body, no title, link, GUID or date: the ferry sailed.</description></item>"
        b"<item><pubDate>not a date</pubDate></item>"  # nothing to read: one rejected entry
        b"<item><title>From the far future</title><pubDate>Fri, 01 Jan 2100 00:00:00 GMT</pubDate></item>"
        b"</channel></rss>",
    )
    server.serve(
        "/thousands.xml",
        rss(
            "Many",
            [
                Entry(
                    f"Market note {n}",
                    f"<p>Prices moved {n} points on a quiet day {n}.</p>",
                    f"https://many.example.org/{n}",
                    NOW,
                )
                for n in range(3000)
            ],
        ),
    )
    long_body = "<p>" + " ".join(f"word{n % 997}" for n in range(150_000)) + "</p>"
    server.serve("/long.xml", rss("Long", [Entry("A very long dispatch", long_body, "https://long.example.org/1", NOW)]))
    nested = "<div>" * 5000 + "Deeply nested text" + "</div>" * 5000
    server.serve("/nested.xml", rss("Nested", [Entry("Nested markup", nested, "https://nested.example.org/1", NOW)]))
    server.serve(
        "/nested-xml.xml",
        (
            b'<?xml version="1.0"?><rss version="2.0"><channel><title>N</title><item><title>Deep</title>'
            + b"<x>" * 3000
            + b"text"
            + b"</x>" * 3000
            + b"</item></channel></rss>"
        ),
    )


def test_hostile_feeds_batch_run(tmp_path, feed_server):
    secret = tmp_path / "secret.txt"
    secret.write_text("LOCAL-SECRET-5f2a9c must never leave this file")
    hostile_routes(feed_server, secret)
    listener, reset_port = reset_mid_body_server()
    names = [
        "wire",
        "outlet",
        "truncated",
        "malformed",
        "empty",
        "noise",
        "page",
        "server-error",
        "hang",
        "gzip-bomb",
        "xxe",
        "scripts",
        "sparse",
        "thousands",
        "long",
        "nested",
        "nested-xml",
    ]
    urls = {name: feed_server.url(f"/{name}.xml") for name in names}
    urls |= {"loop": feed_server.url("/loop-a.xml"), "reset": f"http://127.0.0.1:{reset_port}/feed.xml"}
    feeds = write_yaml(tmp_path / "feeds.yaml", {"feeds": [{"name": n, "url": u} for n, u in urls.items()]})
    out = tmp_path / "out"
    started = time.monotonic()
    child = subprocess.Popen(
        [
            *NEWSWATCH,
            "run",
            "--feeds",
            str(feeds),
            "--out",
            str(out),
            "--read-timeout",
            "2",
            "--response-deadline",
            "5",
            "--host-spacing",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(child.pid, 0)
    stdout, stderr = child.stdout.read().decode(), child.stderr.read().decode()
    listener.close()
    elapsed = time.monotonic() - started
    assert os.waitstatus_to_exitcode(status) == 0, stderr[-3000:]
    assert elapsed < 90
    assert usage.ru_maxrss < MEMORY_BOUND_KIB, f"peak RSS {usage.ru_maxrss} KiB"

    alerts = read_lines(out / "alerts.jsonl")
    titles = {a["title"] for a in alerts}
    assert {CEASEFIRE_TALKS[0], AID_CONVOY[0]} <= titles
    for alert in alerts:  # plain text and http(s) links only
        assert "<" not in alert["title"] and "script" not in alert["title"].lower()
        for url in [alert["url"], *(s["url"] for s in alert["sources"])]:
            assert url == "" or url.startswith(("http://", "https://"))
    cairo = [a for a in alerts if "Cairo" in a["title"]]
    assert cairo and cairo[0]["url"] == "" and cairo[0]["actors"] == ["Sergei Lavrov"]

    dead = read_lines(out / "dead_letter.jsonl")
    feed_failures = Counter(d["feed"] for d in dead if d["stage"] in ("fetch", "parse"))
    assert set(feed_failures) == set(FAILING) and set(feed_failures.values()) == {1}, feed_failures
    for record in dead:
        assert record["reason"].strip(), record
        if record["feed"] in FAILING:
            stage, words = FAILING[record["feed"]]
            assert record["stage"] == stage and words in record["reason"], record
    rejected = [d for d in dead if d["stage"] == "normalise"]
    assert [d["feed"] for d in rejected] == ["sparse"]

    everything = "".join(p.read_text(encoding="utf-8", errors="replace") for p in out.iterdir() if p.is_file()) + stdout + stderr
    assert "LOCAL-SECRET-5f2a9c" not in everything

    summary = json.loads((out / "summary.json").read_text())
    assert summary["fetched"] == summary["unique"] + summary["duplicates"] + summary["dead_letter_items"]
    assert summary["dead_letter_items"] == 1 and summary["entries_cut"] == 2500
    assert summary["feeds_failed"] == len(FAILING)
    items = {i["title"]: i for i in read_lines(out / "items.jsonl")}
    assert items["From the far future"]["published_estimated"] is True
    print(
        f"\nhostile suite: {len(urls)} feeds, {len(FAILING)} failed, {summary['fetched']} entries read, "
        f"{len(alerts)} alerts, {elapsed:.1f} s, peak RSS {usage.ru_maxrss // 1024} MiB"
    )
