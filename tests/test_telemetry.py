"""pipelines.telemetry: the names, labels and values newswatch puts on /metrics, and the Beam side.

The metrics live in prometheus-client's process-wide registry, which other tests in this
process also count into, so every test uses label values of its own and compares values
before and after.
"""

from __future__ import annotations

import subprocess
import time

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipelines import telemetry
from tests.test_deploy_config import require_binary

# The metrics of issue 7, as series names on /metrics with their label names.
EXPECTED_SERIES = {
    "newswatch_build_info": {"version", "model_version"},
    "newswatch_feed_fetches_total": {"feed", "outcome"},
    "newswatch_feed_last_success_timestamp_seconds": {"feed"},
    "newswatch_feed_consecutive_failures": {"feed"},
    "newswatch_items_fetched_total": {"feed"},
    "newswatch_items_duplicate_total": set(),
    "newswatch_story_bucket_entries_dropped_total": set(),  # issue 16
    "newswatch_stories_merged_total": set(),
    "newswatch_items_dead_letter_total": {"stage"},
    "newswatch_items_classified_total": {"topic"},
    "newswatch_actor_mentions_total": {"actor", "topic"},
    "newswatch_alerts_total": {"actor", "topic"},
    "newswatch_alert_deliveries_total": {"sink", "outcome"},
    "newswatch_item_latency_seconds_bucket": {"since", "le"},
    "newswatch_item_latency_seconds_sum": {"since"},
    "newswatch_item_latency_seconds_count": {"since"},
}


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def count_everything_once() -> None:
    telemetry.build_info("0.0.test", "topics-test")
    telemetry.feed_fetched("t-all", "ok")
    telemetry.items_fetched("t-all", 3)
    telemetry.item_duplicate()
    telemetry.story_bucket_dropped(2)
    telemetry.stories_merged()
    telemetry.dead_letter("normalise")
    telemetry.item_classified(("ceasefire",))
    telemetry.actors_mentioned(["T All"], ("ceasefire",))
    telemetry.alert_raised(["T All"], ["ceasefire"], published=time.time() - 60, fetched_at=time.time())
    telemetry.alert_delivered("file", "ok")


def test_metrics_have_the_names_and_labels_of_the_issue_and_nothing_else():
    count_everything_once()
    exposition = generate_latest().decode()
    series = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name.startswith("newswatch_"):
                series.setdefault(sample.name, set()).update(sample.labels)
    assert series == EXPECTED_SERIES
    assert 'newswatch_build_info{model_version="topics-test",version="0.0.test"} 1.0' in exposition


def test_exposition_passes_promtool_lint():
    count_everything_once()
    result = subprocess.run(
        [require_binary("promtool"), "check", "metrics"], input=generate_latest(), capture_output=True, timeout=30
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_feed_health_follows_each_poll():
    before = time.time()
    telemetry.feed_fetched("t-health", "ok")
    assert value("newswatch_feed_last_success_timestamp_seconds", feed="t-health") >= before
    assert value("newswatch_feed_consecutive_failures", feed="t-health") == 0

    telemetry.feed_fetched("t-health", "http_error", consecutive_failures=1)
    telemetry.feed_fetched("t-health", "timeout", consecutive_failures=2)
    assert value("newswatch_feed_consecutive_failures", feed="t-health") == 2
    telemetry.feed_fetched("t-health", "parse_error", consecutive_failures=3)
    # Not polled (its host asked for a pause): neither a success nor a failure.
    telemetry.feed_fetched("t-health", "held")
    assert value("newswatch_feed_consecutive_failures", feed="t-health") == 3

    success_before = value("newswatch_feed_last_success_timestamp_seconds", feed="t-health")
    telemetry.feed_fetched("t-health", "not_modified")
    assert value("newswatch_feed_consecutive_failures", feed="t-health") == 0
    assert value("newswatch_feed_last_success_timestamp_seconds", feed="t-health") >= success_before
    assert [
        value("newswatch_feed_fetches_total", feed="t-health", outcome=outcome)
        for outcome in ("ok", "http_error", "timeout", "parse_error", "held", "not_modified")
    ] == [1] * 6


def test_watched_feeds_exist_at_zero_from_the_start_and_a_second_call_resets_nothing():
    telemetry.feeds_watched(["t-watched"])
    assert REGISTRY.get_sample_value("newswatch_items_fetched_total", {"feed": "t-watched"}) == 0
    assert REGISTRY.get_sample_value("newswatch_feed_fetches_total", {"feed": "t-watched", "outcome": "ok"}) == 0
    assert REGISTRY.get_sample_value("newswatch_feed_consecutive_failures", {"feed": "t-watched"}) == 0
    # No success yet: no last-success time rather than a made-up one.
    assert REGISTRY.get_sample_value("newswatch_feed_last_success_timestamp_seconds", {"feed": "t-watched"}) is None

    telemetry.feed_fetched("t-watched", "connection_error", consecutive_failures=4)
    telemetry.feeds_watched(["t-watched"])
    assert value("newswatch_feed_consecutive_failures", feed="t-watched") == 4


def test_an_alert_counts_once_per_actor_and_topic_and_records_both_latencies():
    actors, topics = ["T Alpha", "T Beta"], ["ceasefire", "diplomatic_visit"]
    latency = {
        since: (
            value("newswatch_item_latency_seconds_count", since=since),
            value("newswatch_item_latency_seconds_bucket", since=since, le="0.5"),
            value("newswatch_item_latency_seconds_bucket", since=since, le="900.0"),
        )
        for since in ("published", "fetched")
    }
    now = time.time()
    telemetry.alert_raised(actors, topics, published=now - 600, fetched_at=now - 0.2)
    assert [value("newswatch_alerts_total", actor=a, topic=t) for a in actors for t in topics] == [1, 1, 1, 1]
    # Published 10 minutes ago: in the 900 s bucket, not the 0.5 s one; fetched 0.2 s ago: in both.
    assert value("newswatch_item_latency_seconds_count", since="published") == latency["published"][0] + 1
    assert value("newswatch_item_latency_seconds_bucket", since="published", le="0.5") == latency["published"][1]
    assert value("newswatch_item_latency_seconds_bucket", since="published", le="900.0") == latency["published"][2] + 1
    assert value("newswatch_item_latency_seconds_bucket", since="fetched", le="0.5") == latency["fetched"][1] + 1


def test_an_item_without_topics_counts_as_topic_none():
    before = (
        value("newswatch_items_classified_total", topic="none"),
        value("newswatch_actor_mentions_total", actor="T Gamma", topic="none"),
    )
    telemetry.item_classified(())
    telemetry.actors_mentioned(["T Gamma"], ())
    assert (
        value("newswatch_items_classified_total", topic="none"),
        value("newswatch_actor_mentions_total", actor="T Gamma", topic="none"),
    ) == (before[0] + 1, before[1] + 1)


def test_counters_also_count_in_beam_metrics():
    def count(feed):
        telemetry.items_fetched(feed, 2)
        telemetry.item_duplicate()
        return feed

    pipeline = TestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"]))
    _ = pipeline | beam.Create(["t-beam-a", "t-beam-a", "t-beam-b"]) | beam.Map(count)
    result = pipeline.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed for c in result.metrics().query(MetricsFilter().with_namespace("newswatch"))["counters"]
    }
    assert counters == {"items_fetched|feed=t-beam-a": 4, "items_fetched|feed=t-beam-b": 2, "items_duplicate": 3}


def test_metrics_server_starts_once_per_process(monkeypatch):
    started = []
    monkeypatch.setattr(telemetry, "start_http_server", lambda port, addr: started.append((port, addr)))
    monkeypatch.setattr(telemetry, "_server_port", None)
    telemetry.serve_metrics(9464, "127.0.0.1")
    telemetry.serve_metrics(9464, "127.0.0.1")  # a second DoFn.setup() in the same process
    assert started == [(9464, "127.0.0.1")]
