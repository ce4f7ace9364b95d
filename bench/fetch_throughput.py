"""How many feeds a batch run polls per second, against loopback servers.

    .venv/bin/python -m bench.fetch_throughput [--feeds 200]

Runs the real `newswatch run --mode batch` over small feeds (3 entries each) served from
127.0.0.1 and reports, per scenario, the polling span (first to last request the servers
saw), feeds polled per second over that span, and the whole run's wall time (which adds
Beam's start-up and the rest of the pipeline). Scenarios:
- one host, spacing 0: one request at a time (the default per-host concurrency), politeness off;
- hosts of 10 feeds, spacing 0: the fetch stage's own ceiling on this machine;
- hosts of 10 feeds, 50 ms answers, spacing 0: hosts polled side by side (one shard, a
  pool of 8) against one key per host (`--fetch-shards` >> hosts), which the local runner
  runs one key after another;
- hosts of 10 feeds with the default spacing of 1 s: what politeness costs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from tests.feedserver import Entry, FeedServer, Route, rss

ROOT = Path(__file__).resolve().parent.parent
FEEDS_PER_HOST = 10


def serve(servers: list[FeedServer], feeds: int, latency_s: float) -> dict[str, str]:
    """`feeds` small feeds spread evenly over `servers`; returns {feed name: url}."""
    urls = {}
    for n in range(feeds):
        server = servers[n % len(servers)]
        entries = [
            Entry(
                f"Notice {n}-{k} from the harbour office",
                f"<p>Berth {k} of pier {n} reopens after dredging.</p>",
                f"https://feed{n}.example.org/notice/{k}",
            )
            for k in range(3)
        ]
        server.routes[f"/{n}.xml"] = Route(
            body=rss(f"Feed {n}", entries), delay_s=latency_s, headers={"Content-Type": "application/rss+xml"}
        )
        urls[f"feed{n}"] = server.url(f"/{n}.xml")
    return urls


def measure(name: str, feeds: int, hosts: int, latency_s: float, *args: str) -> dict:
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        servers = [stack.enter_context(FeedServer()) for _ in range(hosts)]
        urls = serve(servers, feeds, latency_s)
        config = Path(tmp) / "feeds.yaml"
        config.write_text(json.dumps({"feeds": [{"name": n, "url": u} for n, u in urls.items()]}), encoding="utf-8")
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "run", "--feeds", str(config), "--out", f"{tmp}/out", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        wall_s = time.monotonic() - started
        if result.returncode != 0:
            raise SystemExit(f"{name}: newswatch failed:\n{result.stderr[-3000:]}")
        times = sorted(at for server in servers for _, _, at in server.requests)
    span_s = times[-1] - times[0]
    return {
        "scenario": name,
        "feeds": feeds,
        "hosts": hosts,
        "latency_ms": round(latency_s * 1000),
        "requests": len(times),
        "polling_span_s": round(span_s, 2),
        "feeds_per_s": round(len(times) / span_s, 1) if span_s else None,
        "run_wall_s": round(wall_s, 2),
        "args": " ".join(args),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=200)
    feeds = parser.parse_args(argv).feeds
    hosts = max(1, feeds // FEEDS_PER_HOST)
    scenarios = [
        ("one host, no spacing", feeds, 1, 0.0, "--host-spacing", "0"),
        ("10 feeds/host, no spacing", feeds, hosts, 0.0, "--host-spacing", "0"),
        ("10 feeds/host, 50 ms, hosts side by side", feeds, hosts, 0.05, "--host-spacing", "0"),
        ("10 feeds/host, 50 ms, one key per host", feeds, hosts, 0.05, "--host-spacing", "0", "--fetch-shards", "100000"),
        ("10 feeds/host, default spacing 1 s", feeds, hosts, 0.0),
    ]
    for scenario in scenarios:
        print(json.dumps(measure(*scenario)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
