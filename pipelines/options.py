"""NewswatchOptions: every setting of a run, as Beam pipeline options.

`newswatch run` parses its whole command line here, so newswatch's flags and Beam's
(`--runner`, `--flink_master`, ...) travel together to whichever runner executes the job.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from classifiers.topic_model import DEFAULT_MODEL_PATH
from pipelines.config import DEFAULT_FEEDS, DEFAULT_WATCHLIST


class NewswatchOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--feeds", default=str(DEFAULT_FEEDS), help="feeds YAML file (default: the bundled feeds)")
        parser.add_argument("--watchlist", default=str(DEFAULT_WATCHLIST), help="watchlist YAML file (default: the bundled one)")
        parser.add_argument("--out", default="out", help="output directory for alerts.jsonl, items.jsonl, dead_letter.jsonl, summary.json")
        parser.add_argument("--mode", choices=("batch", "stream"), default="batch", help="batch: every feed once; stream: poll until stopped")
        parser.add_argument("--duration", dest="duration_s", type=float, default=None, help="stream mode: stop after this many seconds")
        parser.add_argument("--metrics-port", dest="metrics_port", type=int, default=None, help="serve Prometheus /metrics on this port")
        parser.add_argument("--metrics-address", dest="metrics_address", default="127.0.0.1", help="address /metrics binds to")
        parser.add_argument("--state-dir", dest="state_dir", default=None, help="keep dedup and alert state here across runs")
        parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH), help="topic model (joblib) built by `make train`")
        parser.add_argument("--tick", dest="tick_s", type=float, default=1.0, help="stream mode: how often feeds are checked for being due, seconds")
        parser.add_argument("--max-entries", dest="max_entries", type=int, default=500, help="entries read from one feed per poll at most")
        parser.add_argument("--run-id", dest="run_id", default=None, help="names this run's accounting in the state store (default: new)")
        parser.add_argument("--alerts-to-stdout", dest="alerts_to_stdout", action="store_true", help="also print each alert as a line on stdout")
