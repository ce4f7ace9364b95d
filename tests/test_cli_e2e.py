"""The real `newswatch` command end to end, against feeds served from 127.0.0.1."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import read_lines, run_newswatch, start_stream, wait_for, write_yaml
from tests.feedserver import rss
from tests.stories import AID_CONVOY, CEASEFIRE_TALKS, DOMESTIC_DECREE, NEW_TRUCE, RAIL_TENDER, entry

ALERT_FIELDS = {"alert_id", "story_id", "title", "url", "feed", "published", "topics", "scores", "actors", "sources", "evidence"}
ITEM_FIELDS = {"story_id", "title", "url", "feed", "published", "topics", "scores", "actors", "sources", "evidence"}


def serve_world(server) -> None:
    """A wire feed, an outlet that republishes one wire story under its own headline, and two broken feeds."""
    server.serve(
        "/wire.xml",
        rss(
            "Wire",
            [
                entry(CEASEFIRE_TALKS, "https://wire.example.org/lavrov-riyadh"),
                entry(DOMESTIC_DECREE, "https://wire.example.org/putin-decree"),
            ],
        ),
    )
    server.serve(
        "/outlet.xml",
        rss(
            "Outlet",
            [
                entry(
                    CEASEFIRE_TALKS,
                    "https://outlet.example.com/world/riyadh-talks?utm_source=rss&utm_medium=feed",
                    hours_ago=1,
                    title="Russia's top diplomat in Saudi capital as truce plan is discussed",
                    wrap=True,
                ),
                entry(AID_CONVOY, "https://outlet.example.com/world/darfur-convoy"),
                entry(RAIL_TENDER, "https://outlet.example.com/business/rail"),
            ],
        ),
    )
    server.serve("/gone.xml", b"not here", status=404)
    server.serve("/page.xml", b"<html><body><h1>Welcome to our homepage</h1></body></html>", **{"Content-Type": "text/html"})


def feeds_config(tmp_path: Path, server, interval: float = 60, names=("wire", "outlet", "gone", "page")) -> Path:
    return write_yaml(
        tmp_path / "feeds.yaml",
        {"feeds": [{"name": name, "url": server.url(f"/{name}.xml"), "interval": interval} for name in names]},
    )


def check_invariant(summary: dict) -> None:
    assert summary["fetched"] == summary["unique"] + summary["duplicates"] + summary["dead_letter_items"]


def test_batch_run_alerts_once_per_story_with_every_source(tmp_path, feed_server):
    serve_world(feed_server)
    out = tmp_path / "out"
    result = run_newswatch("run", "--feeds", str(feeds_config(tmp_path, feed_server)), "--out", str(out), "--mode", "batch")
    assert result.returncode == 0, result.stderr

    alerts = read_lines(out / "alerts.jsonl")
    by_title = {alert["title"]: alert for alert in alerts}
    assert set(by_title) == {CEASEFIRE_TALKS[0], AID_CONVOY[0]}
    talks = by_title[CEASEFIRE_TALKS[0]]
    assert ALERT_FIELDS <= set(talks)
    assert talks["actors"] == ["Sergei Lavrov"]
    assert "ceasefire" in talks["topics"]
    assert {(s["feed"], s["url"]) for s in talks["sources"]} == {
        ("wire", "https://wire.example.org/lavrov-riyadh"),
        ("outlet", "https://outlet.example.com/world/riyadh-talks"),  # tracking parameters removed
    }
    assert talks["published"].endswith("Z")
    assert any(m["span"] == "Sergei Lavrov" for m in talks["evidence"]["actors"])
    assert all(talks["evidence"]["topics"][topic] for topic in talks["topics"])
    assert by_title[AID_CONVOY[0]]["actors"] == ["Antonio Guterres"]
    assert "humanitarian_aid" in by_title[AID_CONVOY[0]]["topics"]

    items = read_lines(out / "items.jsonl")
    assert len(items) == 4 and all(ITEM_FIELDS <= set(item) for item in items)
    assert all("<" not in item["text"] and "Read the original article" not in item["text"] for item in items)

    dead = read_lines(out / "dead_letter.jsonl")
    assert sorted(d["feed"] for d in dead) == ["gone", "page"]
    assert all({"feed", "url", "stage", "reason", "time"} <= set(d) for d in dead)
    assert "404" in next(d["reason"] for d in dead if d["feed"] == "gone")

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["fetched"], summary["unique"], summary["duplicates"], summary["alerts"]) == (5, 4, 1, 2)
    assert (summary["feeds_ok"], summary["feeds_failed"]) == (2, 2)
    check_invariant(summary)
    assert "alerts: 2" in result.stdout


def test_batch_rerun_with_state_dir_raises_nothing_twice(tmp_path, feed_server):
    serve_world(feed_server)
    feeds, out, state = feeds_config(tmp_path, feed_server), tmp_path / "out", tmp_path / "state"
    args = ("run", "--feeds", str(feeds), "--out", str(out), "--state-dir", str(state))
    assert run_newswatch(*args).returncode == 0
    first_alerts, first_items = read_lines(out / "alerts.jsonl"), read_lines(out / "items.jsonl")
    assert len(first_alerts) == 2

    result = run_newswatch(*args)
    assert result.returncode == 0, result.stderr
    assert read_lines(out / "alerts.jsonl") == first_alerts
    assert read_lines(out / "items.jsonl") == first_items
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["unique"], summary["duplicates"], summary["alerts"]) == (0, 5, 0)
    check_invariant(summary)


def test_stream_alerts_on_a_new_item_within_the_poll_interval(tmp_path, feed_server):
    interval = 2.0
    feed_server.serve("/wire.xml", rss("Wire", [entry(DOMESTIC_DECREE, "https://wire.example.org/putin-decree")]))
    feeds = feeds_config(tmp_path, feed_server, interval=interval, names=("wire",))
    out = tmp_path / "out"
    process = start_stream(feeds, out, "--duration", "25")
    try:
        # The pipeline is up once it has written the first item.
        assert wait_for(lambda: read_lines(out / "items.jsonl"), 20), "stream run wrote no item"
        assert read_lines(out / "alerts.jsonl") == []
        feed_server.serve(
            "/wire.xml",
            rss(
                "Wire",
                [
                    entry(NEW_TRUCE, "https://wire.example.org/easter-truce", hours_ago=0),
                    entry(DOMESTIC_DECREE, "https://wire.example.org/putin-decree"),
                ],
            ),
        )
        changed_at = time.time()
        alerts = wait_for(lambda: read_lines(out / "alerts.jsonl"), interval + 2)
        latency = time.time() - changed_at
        assert alerts, f"no alert within {interval + 2} s of the feed changing"
        assert alerts[0]["title"] == NEW_TRUCE[0] and latency <= interval + 2
        stdout, stderr = process.communicate(timeout=40)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["alerts"] == 1 and summary["unique"] == 2
    assert summary["duplicates"] >= 1  # the decree, seen again on every poll that was not a 304
    check_invariant(summary)


def test_stream_restart_with_state_dir_and_sigterm(tmp_path, feed_server):
    serve_world(feed_server)
    feeds = feeds_config(tmp_path, feed_server, interval=1, names=("wire", "outlet"))
    out, state = tmp_path / "out", tmp_path / "state"
    process = start_stream(feeds, out, "--state-dir", str(state))
    try:
        assert wait_for(lambda: len(read_lines(out / "alerts.jsonl")) == 2, 25), "first run raised no alerts"
        time.sleep(1.5)  # a few more polls, all duplicates
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    alerts = read_lines(out / "alerts.jsonl")  # every line whole JSON after the stop
    assert len({a["alert_id"] for a in alerts}) == 2
    # The republished copy arrived after the first copy's alert, so it was added to the stored alert.
    updates = read_lines(out / "alert_updates.jsonl")
    assert any(len(u["sources"]) == 2 for u in updates) or any(len(a["sources"]) == 2 for a in alerts), (
        updates,
        alerts,
        stderr[-3000:],
    )

    result = run_newswatch(
        "run",
        "--feeds",
        str(feeds),
        "--out",
        str(out),
        "--state-dir",
        str(state),
        "--mode",
        "stream",
        "--duration",
        "4",
        "--tick",
        "0.25",
    )
    assert result.returncode == 0, result.stderr
    assert read_lines(out / "alerts.jsonl") == alerts
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unique"] == 0 and summary["alerts"] == 0 and summary["duplicates"] >= 4
    check_invariant(summary)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"feeds": [{"name": "a", "url": "http://127.0.0.1/a", "intervl": 5}]}, "unknown key(s) ['intervl']"),
        ({"feeds": [{"name": "a", "url": "http://127.0.0.1/a"}, {"name": "a", "url": "http://127.0.0.1/b"}]}, "duplicate name"),
        ({"feeds": [{"name": "a", "url": "ftp://example.org/a"}]}, "scheme 'ftp' is not allowed"),
        ({"feeds": [{"name": "a", "url": "http://127.0.0.1/a", "interval": "often"}]}, "`interval` must be a number"),
    ],
)
def test_bad_feeds_config_is_one_line_naming_file_and_fix(tmp_path, content, message):
    feeds = write_yaml(tmp_path / "feeds.yaml", content)
    result = run_newswatch("run", "--feeds", str(feeds), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert message in result.stderr and f"{feeds}:" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_busy_metrics_port_is_a_one_line_error(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_newswatch("run", "--out", str(tmp_path / "out"), "--metrics-port", str(port))
    assert result.returncode == 2
    assert f"--metrics-port {port}: cannot listen" in result.stderr and "Traceback" not in result.stderr


def test_run_help_lists_our_options_and_beams_behind_help_beam():
    ours = run_newswatch("run", "--help")
    assert ours.returncode == 0 and "--feeds" in ours.stdout and "--watchlist" in ours.stdout and "--help-beam" in ours.stdout
    assert "--flink_job_server_jar" not in ours.stdout
    both = run_newswatch("run", "--help-beam")
    assert (
        both.returncode == 0
        and "--feeds" in both.stdout
        and "--runner" in both.stdout
        and "--flink_job_server_jar" in both.stdout
    )


def test_a_run_on_the_bundled_feeds_prints_no_warning(tmp_path):
    result = run_newswatch("run", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
