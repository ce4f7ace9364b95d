"""NewswatchOptions: every setting of a run, as Beam pipeline options.

`newswatch run` parses its whole command line here, so newswatch's flags and Beam's
(`--runner`, `--flink_master`, ...) travel together to whichever runner executes the job.
"""

from __future__ import annotations

import argparse

from apache_beam.options.pipeline_options import PipelineOptions

from classifiers.topic_model import DEFAULT_MODEL_PATH
from pipelines.config import DEFAULT_FEEDS, DEFAULT_WATCHLIST
from pipelines.poll import FetchSettings
from pipelines.stories import StorySettings

FETCH = FetchSettings()  # the documented defaults
STORIES = StorySettings()


def _at_least(minimum: float, kind: type = float):
    """An argparse type: a number of `kind` no smaller than `minimum`, else a usage error naming the rule."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, not {text}")
        return value

    return parse


def _add_fetch_args(parser) -> None:
    """Fetching and politeness (see docs/polling.md); each dest is a FetchSettings field."""
    seconds, count = _at_least(0.001), _at_least(1, int)
    for flag, dest, kind, help_text in (
        ("--connect-timeout", "connect_timeout_s", seconds, "seconds to wait for a connection"),
        ("--read-timeout", "read_timeout_s", seconds, "seconds of silence tolerated while waiting for headers or body bytes"),
        ("--response-deadline", "response_deadline_s", seconds, "seconds a response body may take in all"),
        ("--max-response-bytes", "max_response_bytes", count, "largest response body read, after decompression"),
        ("--max-redirects", "max_redirects", _at_least(0, int), "redirects followed before a poll fails as a redirect loop"),
        ("--max-backoff", "max_backoff_s", seconds, "longest wait between polls of a failing feed, seconds"),
        ("--host-spacing", "host_spacing_s", _at_least(0.0), "least seconds between the starts of two requests to one host"),
        ("--host-concurrency", "host_concurrency", count, "most requests in flight to one host"),
        ("--fetch-concurrency", "fetch_concurrency", count, "most requests in flight in all (per fetch shard)"),
        (
            "--fetch-shards",
            "fetch_shards",
            count,
            "keys the polling state is split over (raise on Flink to spread hosts over workers)",
        ),
        (
            "--jitter",
            "jitter",
            _at_least(0.0),
            "each next poll comes up to this fraction of its delay later, so feeds do not fire in step",
        ),
        ("--max-entries", "max_entries", count, "entries read from one feed per poll at most; the rest are counted"),
    ):
        default = getattr(FETCH, dest)
        parser.add_argument(flag, dest=dest, type=kind, default=default, help=f"{help_text} (default {default:g})")


def _similarity(text: str) -> float:
    """An argparse type: a similarity above 0 and at most 1."""
    value = _at_least(0.0)(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, not {text}")
    return value


def _add_dedup_args(parser) -> None:
    """Stories and deduplication (see docs/stories.md); dests map to StorySettings."""
    parser.add_argument(
        "--near-dup-threshold",
        dest="near_dup_threshold",
        type=_similarity,
        default=STORIES.threshold,
        help=f"Jaccard-like similarity of text or lead at which a copy joins a story, 0-1 (default {STORIES.threshold:g})",
    )
    parser.add_argument(
        "--dedup-horizon-days",
        dest="dedup_horizon_days",
        type=_at_least(0.001),
        default=STORIES.horizon_days,
        help=f"days a story is remembered after its latest copy (default {STORIES.horizon_days:g})",
    )


class NewswatchOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--feeds", default=str(DEFAULT_FEEDS), help="feeds YAML file (default: the bundled feeds)")
        parser.add_argument("--watchlist", default=str(DEFAULT_WATCHLIST), help="watchlist YAML file (default: the bundled one)")
        parser.add_argument(
            "--out", default="out", help="output directory for alerts.jsonl, items.jsonl, dead_letter.jsonl, summary.json"
        )
        parser.add_argument(
            "--mode", choices=("batch", "stream"), default="batch", help="batch: every feed once; stream: poll until stopped"
        )
        parser.add_argument(
            "--duration", dest="duration_s", type=float, default=None, help="stream mode: stop after this many seconds"
        )
        parser.add_argument(
            "--metrics-port", dest="metrics_port", type=int, default=None, help="serve Prometheus /metrics on this port"
        )
        parser.add_argument("--metrics-address", dest="metrics_address", default="127.0.0.1", help="address /metrics binds to")
        parser.add_argument("--state-dir", dest="state_dir", default=None, help="keep dedup and alert state here across runs")
        parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH), help="topic model (joblib) built by `make train`")
        parser.add_argument(
            "--tick",
            dest="tick_s",
            type=float,
            default=1.0,
            help="stream mode: how often feeds are checked for being due, seconds",
        )
        parser.add_argument(
            "--run-id", dest="run_id", default=None, help="names this run's accounting in the state store (default: new)"
        )
        parser.add_argument(
            "--alerts-to-stdout", dest="alerts_to_stdout", action="store_true", help="also print each alert as a line on stdout"
        )
        parser.add_argument(
            "--deliver-grace",
            dest="deliver_grace_s",
            type=_at_least(0.0),
            default=2.0,
            help="seconds a stopping run keeps delivering what sinks are still owed (the rest stays owed; default 2)",
        )
        parser.add_argument(
            "--no-deliver",
            dest="no_deliver",
            action="store_true",
            help="write alerts only; a separate `newswatch deliver --follow` sends them (the default on Dataflow)",
        )
        _add_fetch_args(parser)
        _add_dedup_args(parser)
