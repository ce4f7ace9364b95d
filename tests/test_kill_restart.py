"""SIGKILL a stream run at random points while its feed keeps changing, restart it with the same
state dir, and check that every published item was processed once and no alert was raised twice."""

from __future__ import annotations

import random
import signal
import subprocess
import time

from classifiers.corpus import load_corpus
from tests.conftest import NEWSWATCH, ROOT, read_lines, write_yaml
from tests.feedserver import rss
from tests.stories import entry

KILLS = 4
# Distinct stories: labeled corpus examples with a lead paragraph or more (no two of them are
# near-duplicates), every other one said by a tracked actor so that some raise alerts.
EXAMPLES = [e for e in load_corpus() if e.labels and e.form in ("lead", "page") and e.lang == "en"]


def published_entry(n: int):
    example = EXAMPLES[n]
    speaker = "Antonio Guterres said: " if n % 2 == 0 else ""
    return entry((example.title, f"<p>{speaker}{example.text}</p>"), f"https://wire.example.org/dispatch/{n}", hours_ago=1)


def test_kill_and_restart_loses_nothing_and_doubles_nothing(tmp_path, feed_server):
    rng = random.Random(20261127)
    published: list = []

    def publish(count: int) -> None:
        for _ in range(count):
            published.insert(0, published_entry(len(published)))
        feed_server.serve("/wire.xml", rss("Wire", published), ETag=f'"{len(published)}"')

    publish(3)
    feeds = write_yaml(tmp_path / "feeds.yaml", {"feeds": [{"name": "wire", "url": feed_server.url("/wire.xml"), "interval": 1}]})
    out, state = tmp_path / "out", tmp_path / "state"
    command = [
        *NEWSWATCH,
        "run",
        "--feeds",
        str(feeds),
        "--out",
        str(out),
        "--state-dir",
        str(state),
        "--mode",
        "stream",
        "--tick",
        "0.25",
    ]
    for _ in range(KILLS):
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + rng.uniform(3.0, 7.0)
            while time.time() < deadline:
                time.sleep(0.5)
                publish(1)
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait(10)
    # A last run, long enough to read what the killed runs missed.
    final = subprocess.run([*command, "--duration", "8"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr

    items = read_lines(out / "items.jsonl")
    item_urls = [item["url"] for item in items]
    assert sorted(item_urls) == sorted(e.link for e in published), "an item was lost or written twice"
    assert len({item["item_id"] for item in items}) == len(items)
    alerts = read_lines(out / "alerts.jsonl")
    assert alerts, "the stories with tracked actors raised no alert"
    assert len({alert["alert_id"] for alert in alerts}) == len(alerts), "an alert was raised twice"
    print(f"\nkill/restart: {KILLS} kills, {len(published)} items published, {len(items)} written, {len(alerts)} alerts")
