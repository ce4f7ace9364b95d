"""The one adapter between the pipeline's counts and the outside world.

Transforms call the functions here. Each counter counts both in Beam's metrics (readable
from the pipeline result, and reported by the runner on Flink and Dataflow) and in
prometheus-client's registry, which `serve_metrics` exposes live on /metrics. Gauges (feed
health, build info) and the latency histogram describe this process's live view and exist
in prometheus-client only.

Names follow Prometheus conventions: `newswatch_` prefix, `_total` on counters, seconds
and Unix timestamps in seconds. Label sets are bounded: feed names, actors and topics from
the config and the model, stages, sinks and outcomes from the code; never an item id, a
URL or free text. docs/operations.md lists every metric; deploy/prometheus holds the rules that
use them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from apache_beam.metrics import Metrics
from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics, start_http_server

NAMESPACE = "newswatch"
# A poll that ended in either is a success: the feed answered, with or without news.
SUCCESS_OUTCOMES = ("ok", "not_modified")
NO_TOPIC = "none"

# Prometheus stores each `_created` sample as a series of its own; counters' resets are enough.
disable_created_metrics()

BUILD_INFO = Gauge(
    "newswatch_build_info", "Always 1; the labels name the running newswatch and topic model.", ["version", "model_version"]
)
FEED_FETCHES = Counter(
    "newswatch_feed_fetches_total",
    "Feed polls by outcome: ok, not_modified, or why the poll failed (http_error, timeout, too_large, "
    "parse_error, connection_error, ...; see pipelines/fetch.py).",
    ["feed", "outcome"],
)
FEED_LAST_SUCCESS = Gauge(
    "newswatch_feed_last_success_timestamp_seconds",
    "Unix time of the feed's last successful poll (ok or not_modified).",
    ["feed"],
)
FEED_FAILURES = Gauge("newswatch_feed_consecutive_failures", "Failed polls of the feed since its last successful one.", ["feed"])
ITEMS_FETCHED = Counter("newswatch_items_fetched_total", "Entries read from the feed, before deduplication.", ["feed"])
ITEMS_DUPLICATE = Counter("newswatch_items_duplicate_total", "Entries dropped as copies of an item or story already seen.")
STORY_BUCKET_DROPPED = Counter(
    "newswatch_story_bucket_entries_dropped_total",
    "Story bucket entries dropped because a band value many items share filled its bucket (capped, never scanned in full).",
)
STORIES_MERGED = Counter("newswatch_stories_merged_total", "Stories found to be one by a later item that is a copy of both.")
ITEMS_DEAD_LETTER = Counter(
    "newswatch_items_dead_letter_total", "Records written to the dead letters, by the stage that rejected them.", ["stage"]
)
ITEMS_CLASSIFIED = Counter(
    "newswatch_items_classified_total",
    'Unique items by asserted topic; an item with several topics counts once in each, one with none as topic="none".',
    ["topic"],
)
ACTOR_MENTIONS = Counter(
    "newswatch_actor_mentions_total",
    "Unique items mentioning a tracked actor, by actor and by each of the item's topics.",
    ["actor", "topic"],
)
ALERTS = Counter(
    "newswatch_alerts_total", "Alerts raised; an alert counts once for each of its actors and topics.", ["actor", "topic"]
)
ALERT_DELIVERIES = Counter(
    "newswatch_alert_deliveries_total",
    "Alert deliveries by sink and outcome: ok, or why the alert could not be delivered.",
    ["sink", "outcome"],
)
ITEM_LATENCY = Histogram(
    "newswatch_item_latency_seconds",
    'Seconds from the item\'s publication (since="published") or from its fetch (since="fetched") to its alert.',
    ["since"],
    # Fetch to alert takes milliseconds to seconds; publication to alert minutes to a day.
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600),
)

_server_lock = threading.Lock()
_server_port: int | None = None


def _beam_count(name: str, n: int = 1, **labels: str) -> None:
    # Beam metrics have no labels: they travel in the name, `feed_fetches|feed=wire|outcome=ok`.
    suffix = "".join(f"|{key}={value}" for key, value in sorted(labels.items()))
    Metrics.counter(NAMESPACE, name + suffix).inc(n)


def serve_metrics(port: int, address: str = "127.0.0.1") -> None:
    """Start the /metrics endpoint once per process, however many callers ask for it."""
    global _server_port
    with _server_lock:
        if _server_port is None:
            start_http_server(port, addr=address)
            _server_port = port


def build_info(version: str, model_version: str) -> None:
    BUILD_INFO.clear()  # one series per process, even if the model is swapped
    BUILD_INFO.labels(version, model_version).set(1)


def feeds_watched(feeds: Iterable[str]) -> None:
    """Create each configured feed's series at zero, so that a feed that never answers is
    visible from the first scrape and rate() and increase() see the first poll."""
    for feed in feeds:
        FEED_FAILURES.labels(feed)
        ITEMS_FETCHED.labels(feed)
        FEED_FETCHES.labels(feed, "ok")


def feed_fetched(feed: str, outcome: str, consecutive_failures: int | None = None) -> None:
    """One poll of `feed` ended with `outcome`. `consecutive_failures` is FetchFeeds' own count
    after the poll (the one its backoff uses); None for a feed that was not polled (`held`),
    which leaves the count as it was."""
    _beam_count("feed_fetches", feed=feed, outcome=outcome)
    FEED_FETCHES.labels(feed, outcome).inc()
    if outcome in SUCCESS_OUTCOMES:
        FEED_LAST_SUCCESS.labels(feed).set_to_current_time()
        FEED_FAILURES.labels(feed).set(0)
    elif consecutive_failures is not None:
        FEED_FAILURES.labels(feed).set(consecutive_failures)


def items_fetched(feed: str, n: int) -> None:
    _beam_count("items_fetched", n, feed=feed)
    ITEMS_FETCHED.labels(feed).inc(n)


def item_duplicate() -> None:
    _beam_count("items_duplicate")
    ITEMS_DUPLICATE.inc()


def story_bucket_dropped(n: int) -> None:
    _beam_count("story_bucket_entries_dropped", n)
    STORY_BUCKET_DROPPED.inc(n)


def stories_merged() -> None:
    _beam_count("stories_merged")
    STORIES_MERGED.inc()


def dead_letter(stage: str) -> None:
    _beam_count("items_dead_letter", stage=stage)
    ITEMS_DEAD_LETTER.labels(stage).inc()


def item_classified(topics: tuple[str, ...]) -> None:
    for topic in topics or (NO_TOPIC,):
        _beam_count("items_classified", topic=topic)
        ITEMS_CLASSIFIED.labels(topic).inc()


def actors_mentioned(actors: list[str], topics: tuple[str, ...]) -> None:
    for actor in actors:
        for topic in topics or (NO_TOPIC,):
            _beam_count("actor_mentions", actor=actor, topic=topic)
            ACTOR_MENTIONS.labels(actor, topic).inc()


def alert_raised(actors: list[str], topics: list[str], published: float, fetched_at: float) -> None:
    for actor in actors:
        for topic in topics:
            _beam_count("alerts", actor=actor, topic=topic)
            ALERTS.labels(actor, topic).inc()
    now = time.time()
    # A publication time in the future (a publisher's clock, a time zone error) counts as no delay.
    ITEM_LATENCY.labels("published").observe(max(0.0, now - published))
    ITEM_LATENCY.labels("fetched").observe(max(0.0, now - fetched_at))


def alert_delivered(sink: str, outcome: str) -> None:
    """One alert handed to `sink`: outcome `ok`, or a word for why it was not delivered
    (a retry that ends in a delivery is one `ok`). The alert rules page on anything but `ok`."""
    _beam_count("alert_deliveries", sink=sink, outcome=outcome)
    ALERT_DELIVERIES.labels(sink, outcome).inc()
