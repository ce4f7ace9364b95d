"""The one adapter between the pipeline's counts and the outside world.

Transforms call the functions here; each one counts in Beam's metrics (readable from the
pipeline result and on Flink and Dataflow) and in prometheus-client's registry, which
`serve_metrics` exposes live on /metrics. Label sets are bounded: feed names, topics,
actors, sinks and outcomes from the config and the code, never an item id or a URL.
"""

from __future__ import annotations

import threading
import time

from apache_beam.metrics import Metrics
from prometheus_client import Counter, Gauge, Histogram, Info, start_http_server

NAMESPACE = "newswatch"

FEED_FETCHES = Counter("newswatch_feed_fetches", "Feed polls by outcome.", ["feed", "outcome"])
FEED_LAST_SUCCESS = Gauge("newswatch_feed_last_success_timestamp_seconds", "Time of the feed's last successful poll.", ["feed"])
FEED_FAILURES = Gauge("newswatch_feed_consecutive_failures", "Failed polls of the feed since its last success.", ["feed"])
ITEMS_FETCHED = Counter("newswatch_items_fetched", "Entries read from feeds.", ["feed"])
ITEMS_DUPLICATE = Counter("newswatch_items_duplicate", "Entries dropped as copies of an item already seen.")
ITEMS_DEAD_LETTER = Counter("newswatch_items_dead_letter", "Records written to the dead letters, by stage.", ["stage"])
ITEMS_CLASSIFIED = Counter("newswatch_items_classified", "Unique items by asserted topic ('none' for no topic).", ["topic"])
ACTOR_MENTIONS = Counter("newswatch_actor_mentions", "Items mentioning a tracked actor, by topic.", ["actor", "topic"])
ALERTS = Counter("newswatch_alerts", "Alerts raised, by actor and topic.", ["actor", "topic"])
ALERT_DELIVERIES = Counter("newswatch_alert_deliveries", "Alert deliveries by sink and outcome.", ["sink", "outcome"])
ITEM_LATENCY = Histogram(
    "newswatch_item_latency_seconds",
    "Seconds from publication (since=published) or from fetch (since=fetched) to the alert.",
    ["since"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600),
)
BUILD_INFO = Info("newswatch_build", "Version of newswatch and of its topic model.")

_server_lock = threading.Lock()
_server_port: int | None = None


def _beam_count(name: str, n: int = 1, **labels: str) -> None:
    suffix = "".join(f"|{key}={value}" for key, value in sorted(labels.items()))
    Metrics.counter(NAMESPACE, name + suffix).inc(n)


def serve_metrics(port: int, address: str = "127.0.0.1") -> None:
    """Start the /metrics endpoint once per process, however many DoFns ask for it."""
    global _server_port
    with _server_lock:
        if _server_port is None:
            start_http_server(port, addr=address)
            _server_port = port


def build_info(version: str, model_version: str) -> None:
    BUILD_INFO.info({"version": version, "model_version": model_version})


def feed_fetched(feed: str, outcome: str, consecutive_failures: int | None = None) -> None:
    _beam_count("feed_fetches", feed=feed, outcome=outcome)
    FEED_FETCHES.labels(feed, outcome).inc()
    if outcome in ("ok", "not_modified"):
        FEED_LAST_SUCCESS.labels(feed).set(time.time())
        consecutive_failures = 0
    if consecutive_failures is not None:
        FEED_FAILURES.labels(feed).set(consecutive_failures)


def items_fetched(feed: str, n: int) -> None:
    _beam_count("items_fetched", n, feed=feed)
    ITEMS_FETCHED.labels(feed).inc(n)


def item_duplicate() -> None:
    _beam_count("items_duplicate")
    ITEMS_DUPLICATE.inc()


def dead_letter(stage: str) -> None:
    _beam_count("items_dead_letter", stage=stage)
    ITEMS_DEAD_LETTER.labels(stage).inc()


def item_classified(topics: tuple[str, ...]) -> None:
    for topic in topics or ("none",):
        _beam_count("items_classified", topic=topic)
        ITEMS_CLASSIFIED.labels(topic).inc()


def actors_mentioned(actors: list[str], topics: tuple[str, ...]) -> None:
    for actor in actors:
        for topic in topics or ("none",):
            _beam_count("actor_mentions", actor=actor, topic=topic)
            ACTOR_MENTIONS.labels(actor, topic).inc()


def alert_raised(actors: list[str], topics: list[str], published: float, fetched_at: float) -> None:
    for actor in actors:
        for topic in topics:
            _beam_count("alerts", actor=actor, topic=topic)
            ALERTS.labels(actor, topic).inc()
    now = time.time()
    ITEM_LATENCY.labels("published").observe(max(0.0, now - published))
    ITEM_LATENCY.labels("fetched").observe(max(0.0, now - fetched_at))


def alert_delivered(sink: str, outcome: str) -> None:
    _beam_count("alert_deliveries", sink=sink, outcome=outcome)
    ALERT_DELIVERIES.labels(sink, outcome).inc()
