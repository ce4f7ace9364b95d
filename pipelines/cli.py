"""The `newswatch` command: `run` the pipeline, `deliver` what sinks are owed, or `annotate` JSON lines from stdin.

Exit codes: 0 done (also when some feeds failed: they are dead letters, and when alerts are
still owed to a sink: the next run or `newswatch deliver` sends them), 2 bad configuration
or model (one line on stderr naming the file and the fix).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from classifiers.topic_model import DEFAULT_MODEL_PATH, ModelLoadError, load_model
from pipelines import __version__, telemetry
from pipelines.actors import Matcher, mentions_in
from pipelines.config import DEFAULT_WATCHLIST, ConfigError, load_feeds, load_watchlist
from pipelines.delivery import Deliveries, adopt_legacy_outbox, counted, delivery_sinks, owed_line
from pipelines.furniture import strip_furniture
from pipelines.options import NewswatchOptions
from pipelines.pipeline import build
from pipelines.sinks import ALERTS_FILE, ITEMS_FILE, SUMMARY_FILE, adopt_written_items, read_json_lines, write_summary
from pipelines.store import StateError, StateStore

USAGE_ERROR = 2
# The FnApiRunner runs our pipeline in stream mode correctly (no windows; timers only free memory)
# and starts at once; the DirectRunner would first try to download Prism. See docs/scale.md.
DEFAULT_LOCAL_RUNNER = "FnApiRunner"
STOP_BUDGET_S = 4.5  # from SIGTERM or Ctrl-C to the exit, at most
REPORT_S = 1.0  # of that budget, kept for the summary and the report after delivery stops


def _without_beam_resource_warning(record: logging.LogRecord) -> bool:
    """Beam 2.77's RunInference loses the `resource` module when its optional model manager (which needs torch)
    fails to import, then warns on every run that memory usage cannot be fetched: noise, about Beam, not the run."""
    return not record.getMessage().startswith("Resource module is not available")


def _fail(message: str) -> int:
    print(f"newswatch: {message}", file=sys.stderr)
    return USAGE_ERROR


def _stop_on_signals(finish, stop_requested: threading.Event, on_stop) -> None:
    """SIGTERM and Ctrl-C stop a run: the main thread gets KeyboardInterrupt (which Beam may wrap in a
    RuntimeError when it lands inside a DoFn) and finishes up. Beam's worker threads may be inside the endless
    PeriodicImpulse and would keep the process alive, so the process then ends with os._exit; should the
    interrupt be swallowed somewhere, a watchdog calls `finish` and exits within STOP_BUDGET_S. Every output
    line is whole and flushed as written, so nothing is lost either way; a second signal changes nothing."""

    def handler(signum, frame):
        if stop_requested.is_set():
            return
        stop_requested.set()
        on_stop()
        watchdog = threading.Timer(STOP_BUDGET_S, lambda: (finish(), os._exit(0)))
        watchdog.daemon = True
        watchdog.start()
        # Beam logs an exception that crosses a DoFn, with its traceback, before passing it on: this one is ours.
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL + 1)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def print_report(out: Path, alerts_before: int) -> None:
    summary = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8")) if (out / SUMMARY_FILE).exists() else {}
    new_alerts = read_json_lines(out / ALERTS_FILE)[alerts_before:]
    print(
        f"feeds read: {summary.get('feeds_ok', 0)} ok, {summary.get('feeds_failed', 0)} failed; "
        f"items: {summary.get('fetched', 0)} fetched, {summary.get('unique', 0)} unique, "
        f"{summary.get('duplicates', 0)} duplicates, {summary.get('dead_letter_items', 0)} dead letters"
    )
    print(
        f"alerts: {len(new_alerts)} new"
        + (f" ({alerts_before} from earlier runs in {out / ALERTS_FILE})" if alerts_before else "")
    )
    for alert in new_alerts:
        print(
            f"  - {alert['title']}\n    topics: {', '.join(alert['topics'])}; actors: {', '.join(alert['actors'])}; "
            f"sources: {len(alert['sources'])}"
        )
    print(f"outputs in {out.resolve()}/ (alerts.jsonl, items.jsonl, dead_letter.jsonl, summary.json)")


def print_run_help(beam_options: bool) -> None:
    """`newswatch run --help`: newswatch's own options, one line each; with --help-beam, Beam's too."""
    parser = argparse.ArgumentParser(
        prog="newswatch run",
        description="Poll feeds, find tracked actors in news about the watched topics, write alerts.",
        epilog=None if beam_options else "Beam's own options (--runner, --flink_master, ...): newswatch run --help-beam",
    )
    NewswatchOptions._add_argparse_args(parser.add_argument_group("newswatch"))
    if beam_options:
        beam_group = parser.add_argument_group("Beam (passed to the runner)")
        for options_class in _beam_option_classes():
            try:
                options_class._add_argparse_args(beam_group)
            except (argparse.ArgumentError, AttributeError):
                continue  # an option another class already added, or one only Beam's own parser can take
    parser.print_help()


def _beam_option_classes() -> list[type]:
    """Beam's PipelineOptions subclasses (StandardOptions, FlinkRunnerOptions, ...), without ours."""
    found, pending = [], list(PipelineOptions.__subclasses__())
    while pending:
        options_class = pending.pop(0)
        pending.extend(options_class.__subclasses__())
        if options_class is not NewswatchOptions and options_class.__module__.startswith("apache_beam"):
            found.append(options_class)
    return found


def run(argv: list[str]) -> int:
    if {"-h", "--help", "--help-beam"} & set(argv):
        print_run_help("--help-beam" in argv)
        return 0
    if not any(arg == "--runner" or arg.startswith("--runner=") for arg in argv):
        argv = [*argv, f"--runner={DEFAULT_LOCAL_RUNNER}"]
    options = PipelineOptions(argv)
    nw = options.view_as(NewswatchOptions)
    try:
        feeds = load_feeds(nw.feeds)
        watchlist = load_watchlist(nw.watchlist)
        model = load_model(nw.model)
        if nw.state_dir:
            StateStore(nw.state_dir).close()
    except (ConfigError, ModelLoadError, StateError) as err:
        return _fail(str(err))
    if nw.metrics_port is not None:
        try:
            telemetry.serve_metrics(nw.metrics_port, nw.metrics_address)
        except OSError as err:
            return _fail(
                f"--metrics-port {nw.metrics_port}: cannot listen on {nw.metrics_address} ({err.strerror}); choose a free port"
            )
    options.view_as(StandardOptions).streaming = nw.mode == "stream"
    out = Path(nw.out)
    out.mkdir(parents=True, exist_ok=True)
    alerts_before = len(read_json_lines(out / ALERTS_FILE))
    # Without --state-dir the run still needs a store for its own alerts; it lives as long as the run.
    state_dir = nw.state_dir or tempfile.mkdtemp(prefix="newswatch-state-")
    nw.run_id = nw.run_id or uuid.uuid4().hex
    # What the output folder already holds counts as written before the first decision is made: a run into
    # the same --out adds only what is new (the sinks' own setup does the same after a crash on a worker).
    sinks = delivery_sinks(watchlist.alerts, nw.alerts_to_stdout)
    with closing(StateStore(state_dir)) as store:
        adopt_written_items(out / ITEMS_FILE, store)
        store.adopt_alerts(read_json_lines(out / ALERTS_FILE))
        if (pending := store.legacy_deliveries()) is not None:  # a state dir from before the delivery ledger
            adopt_legacy_outbox(out, sinks, pending)
    telemetry.build_info(__version__, model.version)
    telemetry.feeds_watched(feed.name for feed in feeds)
    runner = str(options.view_as(StandardOptions).runner or "")
    # Delivery runs beside the pipeline, on threads of this process (see pipelines.delivery); on Dataflow the
    # outputs are not on this machine, so `newswatch deliver --follow` runs where they are.
    deliveries = Deliveries(() if nw.no_deliver or "Dataflow" in runner else sinks, out).start()
    stop_requested = threading.Event()
    stop_at: list[float] = []  # when a signal asked to stop
    finishing = threading.Lock()
    finished = threading.Event()

    def finish() -> None:
        if not finishing.acquire(blocking=False):  # the watchdog and the main thread may both get here
            finished.wait(REPORT_S)
            return
        grace_s = nw.deliver_grace_s
        if stop_at:
            grace_s = min(grace_s, max(0.0, stop_at[0] + STOP_BUDGET_S - REPORT_S - time.monotonic()))
        still_owed = deliveries.finish(grace_s)
        with closing(StateStore(state_dir)) as store:
            write_summary(out, store, nw.run_id)
        if not nw.state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
        print_report(out, alerts_before)
        sys.stdout.flush()
        if stop_requested.is_set() or deliveries.workers:
            print(stop_line(out, alerts_before, stop_requested.is_set(), still_owed), file=sys.stderr, flush=True)
        finished.set()

    def on_stop() -> None:
        stop_at.append(time.monotonic())

    _stop_on_signals(finish, stop_requested, on_stop)
    try:
        with beam.Pipeline(options=options) as p:
            build(p, nw, feeds, watchlist, state_dir)
    except BaseException:
        if not stop_requested.is_set():
            raise
    finally:
        finish()
    if stop_requested.is_set() or not deliveries.stopped():
        os._exit(0)  # Beam's threads (after a signal) or a delivery abandoned inside a request must not hold the exit
    return 0


def stop_line(out: Path, alerts_before: int, signalled: bool, still_owed: dict[str, int]) -> str:
    """One line: what this run wrote, and what its sinks are still owed."""
    summary = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8")) if (out / SUMMARY_FILE).exists() else {}
    alerts = len(read_json_lines(out / ALERTS_FILE)) - alerts_before
    return (
        f"newswatch: {'stopped' if signalled else 'done'}; written: {counted(summary.get('unique', 0), 'item')}, "
        f"{counted(alerts, 'alert')} "
        f"(every line complete); still owed: {owed_line(still_owed)}"
    )


def deliver(argv: list[str]) -> int:
    """`newswatch deliver`: send what the watchlist's sinks are owed from an output folder, with the same rules
    as a run; with --follow keep sending new alerts until SIGTERM or Ctrl-C (beside a job on a cluster)."""
    parser = argparse.ArgumentParser(prog="newswatch deliver", description=deliver.__doc__)
    parser.add_argument("--out", default="out", help="the output folder of the runs (alerts.jsonl, deliveries.jsonl)")
    parser.add_argument("--watchlist", default=str(DEFAULT_WATCHLIST), help="the watchlist whose `alerts: sinks:` to send to")
    parser.add_argument("--follow", action="store_true", help="keep delivering new alerts until stopped")
    parser.add_argument("--alerts-to-stdout", dest="alerts_to_stdout", action="store_true", help="also print each alert")
    parser.add_argument(
        "--grace", dest="grace_s", type=float, default=2.0, help="seconds to finish sending after SIGTERM (default 2)"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        watchlist = load_watchlist(args.watchlist)
    except ConfigError as err:
        return _fail(str(err))
    if not (out / ALERTS_FILE).exists():
        return _fail(f"--out {out}: no {ALERTS_FILE} there; give the --out folder of a newswatch run")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: stop.set())
    deliveries = Deliveries(delivery_sinks(watchlist.alerts, args.alerts_to_stdout), out).start()
    if not args.follow:
        for worker in deliveries.workers:
            worker.drain()  # each ends once nothing is owed
    while not stop.is_set() and not deliveries.stopped():
        stop.wait(0.2)
    still_owed = deliveries.finish(args.grace_s)
    delivered, dead = deliveries.totals()
    print(f"newswatch deliver: {delivered} delivered, {dead} dead-lettered; still owed: {owed_line(still_owed)}", file=sys.stderr)
    sys.stdout.flush()
    if not deliveries.stopped():
        os._exit(0)  # a delivery abandoned inside a request must not hold the exit
    return 0


def annotate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="newswatch annotate", description="Annotate JSON lines (id, title, text) from stdin.")
    parser.add_argument("--watchlist", default=str(DEFAULT_WATCHLIST))
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH))
    args = parser.parse_args(argv)
    try:
        watchlist = load_watchlist(args.watchlist, check_secrets=False)
        model = load_model(args.model)
    except (ConfigError, ModelLoadError) as err:
        return _fail(str(err))
    matcher = Matcher(watchlist)
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            title, text = str(record.get("title", "")), str(record.get("text", ""))
        except (json.JSONDecodeError, AttributeError) as err:
            print(f"newswatch annotate: stdin line {number} is not a JSON object ({err}); skipped", file=sys.stderr)
            continue
        text = strip_furniture(title, text)
        prediction = model.predict([(title, text)])[0]
        actors = sorted({m.actor for m in mentions_in(matcher, title, text)})
        print(
            json.dumps(
                {"id": record.get("id"), "topics": list(prediction.topics), "scores": prediction.scores, "actors": actors},
                ensure_ascii=False,
            ),
            flush=True,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_without_beam_resource_warning)
    commands = {"run": run, "deliver": deliver, "annotate": annotate}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(
            "usage: newswatch run [--feeds F] [--watchlist W] [--out DIR] [--mode batch|stream] [--duration S]\n"
            "                     [--metrics-port P] [--state-dir DIR] [Beam options such as --runner]\n"
            "       newswatch deliver [--out DIR] [--watchlist W] [--follow]\n"
            "       newswatch annotate [--watchlist W] [--model PATH] < items.jsonl",
            file=sys.stderr,
        )
        return 0 if argv and argv[0] in ("-h", "--help") else USAGE_ERROR
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
