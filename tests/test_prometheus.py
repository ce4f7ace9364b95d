"""A real Prometheus scraping a real `newswatch run --mode stream` over loopback feeds.

Prometheus runs with deploy/prometheus/prometheus.yml as shipped except for what a test
must change (scrape and evaluation every second, the target's port, no Alertmanager) and
with the shipped rules unmodified: NewswatchFeedFailing counts failed polls, not minutes,
so with feeds polled every second it fires within seconds, as it would within 3 intervals
of any feed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.parse
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import yaml

from pipelines import __version__
from tests.conftest import NEWSWATCH, ROOT, read_lines, wait_for, write_yaml
from tests.feedserver import rss
from tests.stories import AID_CONVOY, CEASEFIRE_TALKS, DOMESTIC_DECREE, RAIL_TENDER, entry
from tests.test_deploy_config import PROMETHEUS_CONFIG, require_binary

RULES = PROMETHEUS_CONFIG.parent / "rules"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_in(stack: ExitStack, command: list[str], log: Path, **kwargs) -> None:
    """Start a process that the stack stops (SIGTERM, then SIGKILL) however the test ends."""
    out = stack.enter_context(open(log, "w"))
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **kwargs)

    def stop():
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    stack.callback(stop)


class PrometheusAPI:
    def __init__(self, base: str):
        self.base = base

    def _get(self, path: str, **params: str) -> dict:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> dict[tuple, float]:
        """Instant query: {sorted label items (without __name__): value}."""
        return {
            tuple(sorted((k, v) for k, v in result["metric"].items() if k != "__name__")): float(result["value"][1])
            for result in self._get("/api/v1/query", query=expr)["result"]
        }

    def scalar(self, expr: str) -> float | None:
        values = list(self.query(expr).values())
        assert len(values) <= 1, (expr, values)
        return values[0] if values else None

    def settles(self, expr: str, check, timeout_s: float = 5) -> bool:
        """Whether the value of `expr` passes `check` within the timeout: a value newswatch has
        just counted reaches Prometheus with the next scrape, a second later."""
        return bool(wait_for(lambda: (value := self.scalar(expr)) is not None and check(value), timeout_s))

    def firing(self) -> list[dict]:
        return [alert for alert in self._get("/api/v1/alerts")["alerts"] if alert["state"] == "firing"]


def prometheus_config(tmp_path: Path, target_port: int) -> Path:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES / "*.yml")]  # the shipped rules, unmodified
    del config["alerting"]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "newswatch"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{target_port}"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def expected_alert_counts(alerts: list[dict], instance: str) -> dict[tuple, float]:
    """newswatch_alerts_total as PrometheusAPI.query gives it, from the lines of alerts.jsonl."""
    counts: dict[tuple, float] = {}
    for alert in alerts:
        for actor in alert["actors"]:
            for topic in alert["topics"]:
                key = (("actor", actor), ("instance", instance), ("job", "newswatch"), ("topic", topic))
                counts[key] = counts.get(key, 0) + 1
    return counts


def test_prometheus_scrapes_a_stream_run_and_fires_when_a_feed_fails(tmp_path, feed_server):
    prometheus_binary = require_binary("prometheus")
    # The wire answers 304 once it has been read (ETag); the outlet sends its whole feed on every poll.
    feed_server.serve(
        "/wire.xml",
        rss(
            "Wire",
            [
                entry(CEASEFIRE_TALKS, "https://wire.example.org/lavrov-riyadh"),
                entry(DOMESTIC_DECREE, "https://wire.example.org/putin-decree"),
            ],
        ),
        ETag='"wire-1"',
    )
    feed_server.serve(
        "/outlet.xml",
        rss(
            "Outlet",
            [
                entry(AID_CONVOY, "https://outlet.example.com/world/darfur-convoy"),
                entry(RAIL_TENDER, "https://outlet.example.com/business/rail"),
            ],
        ),
    )
    feeds = write_yaml(
        tmp_path / "feeds.yaml",
        {"feeds": [{"name": name, "url": feed_server.url(f"/{name}.xml"), "interval": 1} for name in ("wire", "outlet")]},
    )
    out = tmp_path / "out"
    metrics_port, prometheus_port = free_port(), free_port()
    instance = f"127.0.0.1:{metrics_port}"

    with ExitStack() as stack:
        # --duration is a backstop: the stack stops the run as soon as the test is done.
        start_in(
            stack,
            [
                *NEWSWATCH,
                "run",
                "--feeds",
                str(feeds),
                "--out",
                str(out),
                "--mode",
                "stream",
                "--duration",
                "60",
                "--tick",
                "0.5",
                "--metrics-port",
                str(metrics_port),
            ],
            tmp_path / "newswatch.log",
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        start_in(
            stack,
            [
                prometheus_binary,
                f"--config.file={prometheus_config(tmp_path, metrics_port)}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
                "--log.level=warn",
            ],
            tmp_path / "prometheus.log",
        )
        api = PrometheusAPI(f"http://127.0.0.1:{prometheus_port}")
        assert wait_for(lambda: http_ok(f"{api.base}/-/ready"), 20), (tmp_path / "prometheus.log").read_text()

        # Items and alerts: what Prometheus scraped agrees with what newswatch wrote.
        alerts = wait_for(lambda: len(read_lines(out / "alerts.jsonl")) == 2 and read_lines(out / "alerts.jsonl"), 40)
        assert alerts, (tmp_path / "newswatch.log").read_text()[-3000:]
        expected = expected_alert_counts(alerts, instance)
        assert wait_for(lambda: api.query("newswatch_alerts_total") == expected, 10), api.query("newswatch_alerts_total")
        ((build_labels, build_value),) = api.query("newswatch_build_info").items()
        assert dict(build_labels)["version"] == __version__ and dict(build_labels)["model_version"] and build_value == 1
        assert api.scalar('newswatch_items_fetched_total{feed="wire"}') == 2  # read once, then 304
        assert api.scalar('newswatch_feed_fetches_total{feed="wire", outcome="ok"}') == 1
        assert api.settles('newswatch_feed_fetches_total{feed="wire", outcome="not_modified"}', lambda n: n >= 1)
        # Every poll of the outlet reads its 2 entries; from the second poll on they are duplicates.
        assert api.settles('newswatch_feed_fetches_total{feed="outlet", outcome="ok"}', lambda n: n >= 2)
        assert api.settles(
            'newswatch_items_fetched_total{feed="outlet"} '
            '- ignoring(outcome) 2 * newswatch_feed_fetches_total{feed="outlet", outcome="ok"}',
            lambda n: n == 0,
        )
        assert api.settles("newswatch_items_duplicate_total", lambda n: n >= 2)
        # One latency observation per alert, each from fetch to alert within 30 s.
        assert api.settles('newswatch_item_latency_seconds_count{since="fetched"}', lambda n: n == 2)
        assert api.scalar('newswatch_item_latency_seconds_bucket{since="fetched", le="30.0"}') == 2

        # Feed health: both feeds answered within the last few seconds, none failing, no alert.
        assert api.query("newswatch_feed_consecutive_failures") == {
            (("feed", feed), ("instance", instance), ("job", "newswatch")): 0 for feed in ("wire", "outlet")
        }
        assert set(api.query("time() - newswatch_feed_last_success_timestamp_seconds < 10")) == {
            (("feed", feed), ("instance", instance), ("job", "newswatch")) for feed in ("wire", "outlet")
        }
        assert api.firing() == []

        # The wire starts failing: after 3 failed polls (1 s, then 2 s apart) the shipped rule fires.
        feed_server.serve("/wire.xml", b"internal error", status=500)
        firing = wait_for(api.firing, 20)
        assert firing, api.query("newswatch_feed_consecutive_failures")
        assert [(alert["labels"]["alertname"], alert["labels"]["feed"], alert["labels"]["severity"]) for alert in firing] == [
            ("NewswatchFeedFailing", "wire", "ticket")
        ]
        assert firing[0]["annotations"]["summary"].startswith("Feed wire has failed its last ")
        assert api.scalar('newswatch_feed_fetches_total{feed="wire", outcome="http_error"}') >= 3
        assert api.scalar('newswatch_feed_consecutive_failures{feed="outlet"}') == 0
