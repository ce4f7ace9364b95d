"""Delivery: alerts from the outbox to the watchlist's sinks (stdout, webhooks), beside the pipeline.

The pipeline's job ends at a durable record of each alert: its line in `alerts.jsonl`, written and
flushed in the store transaction that raises it. That file is the outbox. Delivery runs beside the
pipeline, never on its thread (the local runner runs every step on one thread, so a webhook that
retries inside a DoFn would stop polling, classification and the alerts file):

- one `SinkWorker` thread per sink, started by `newswatch run` (`Deliveries`), or by
  `newswatch deliver --out DIR` alone (on Flink or Dataflow: a process of its own beside the job);
- each worker tails `alerts.jsonl` and sends what the sink is owed with the rules of
  `pipelines.webhooks` (retries, backoff, Retry-After, rate limit and digests, dead letters);
- `deliveries.jsonl` in the same folder is the ledger: a `subscribed` line says from which byte of
  `alerts.jsonl` on a sink is owed alerts (the file's size when the sink first ran), and one line per
  alert settles it, `delivered` (alone or in a digest) or `dead` (also a dead letter, `stage: deliver`).

An alert is **owed** to a sink when it is in `alerts.jsonl` past the sink's subscription and the ledger
has no line settling it. A stop leaves owed alerts owed; the next run or `newswatch deliver` sends them.
One worker per sink and folder at a time (a lock file, `.deliver-<sink>.lock`), and a line is settled
only after the receiver's answer, so each alert is sent once; only a process that dies between a
receiver's 2xx and the ledger line resends it, with the same Idempotency-Key.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

from pipelines import telemetry
from pipelines.config import AlertRules, SinkConfig
from pipelines.records import DeadLetter, iso_utc
from pipelines.sinks import ALERTS_FILE, DEAD_LETTER_FILE, JsonLines, json_records, read_json_lines
from pipelines.webhooks import (
    RATE_WINDOW_S,
    Delivery,
    RateLimit,
    alert_message,
    digest_id_of,
    digest_message,
    post_with_retries,
    safe_link,
    stdout_line,
)

LEDGER_FILE = "deliveries.jsonl"
POLL_S = 0.2  # how often a worker looks for new lines in alerts.jsonl
DELIVERED, DEAD, SUBSCRIBED, SKIPPED = "delivered", "dead", "subscribed", "skipped"
log = logging.getLogger(__name__)


def delivery_sinks(rules: AlertRules, to_stdout: bool) -> tuple[SinkConfig, ...]:
    """The watchlist's sinks, plus stdout when `--alerts-to-stdout` asks for it and the watchlist has none."""
    has_stdout = any(sink.kind == "stdout" for sink in rules.sinks)
    return rules.sinks + ((SinkConfig(name="stdout", kind="stdout"),) if to_stdout and not has_stdout else ())


# --- the outbox and the ledger ----------------------------------------------------------


class AlertsTail:
    """alerts.jsonl from a byte offset on, whole lines only: a line still being written waits for the next read."""

    def __init__(self, path: Path, offset: int):
        self.path = path
        self.offset = offset

    def read(self) -> list[dict]:
        size = self.path.stat().st_size if self.path.exists() else 0
        if size <= self.offset:
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read(size - self.offset)
        whole = data[: data.rfind(b"\n") + 1]
        self.offset += len(whole)
        return [r for r in json_records(whole) if isinstance(r, dict) and "alert_id" in r]


@dataclass
class SinkLedger:
    """What the ledger says about one sink: where its alerts start, and which are settled."""

    since: int | None = None
    settled: set[str] = field(default_factory=set)


def read_ledger(out: Path) -> dict[str, SinkLedger]:
    ledgers: dict[str, SinkLedger] = {}
    for record in read_json_lines(out / LEDGER_FILE):
        ledger = ledgers.setdefault(record.get("sink", ""), SinkLedger())
        if record.get("status") == SUBSCRIBED:
            ledger.since = record["alerts_offset"] if ledger.since is None else ledger.since
        elif "alert_id" in record:
            ledger.settled.add(record["alert_id"])
    return ledgers


def subscribe(out: Path, sinks: tuple[SinkConfig, ...]) -> None:
    """Give each sink new to this folder a subscription at the current end of alerts.jsonl: a sink is owed
    the alerts raised from its first run on, not the folder's history. `newswatch run` calls this before
    its pipeline starts, so no alert of the run is raised before its sinks subscribe."""
    ledgers = read_ledger(out)
    new = [sink for sink in sinks if ledgers.get(sink.name, SinkLedger()).since is None]
    if not new:
        return
    alerts = out / ALERTS_FILE
    size = alerts.stat().st_size if alerts.exists() else 0
    ledger = JsonLines(out / LEDGER_FILE)
    try:
        for sink in new:
            ledger.write({"sink": sink.name, "status": SUBSCRIBED, "alerts_offset": size, "at": iso_utc(time.time())})
    finally:
        ledger.close()


def adopt_legacy_outbox(out: Path, sinks: tuple[SinkConfig, ...], pending: Mapping[str, set[str]]) -> None:
    """Carry over what an older version's state store still owed (`pending`: {sink: alert ids}) for the sinks
    that have no ledger yet: each is subscribed from the start of alerts.jsonl, with every alert it was not
    owed settled as `skipped`, so exactly the pending ones stay owed."""
    ledgers = read_ledger(out)
    new = [sink for sink in sinks if sink.name in pending and ledgers.get(sink.name, SinkLedger()).since is None]
    if not new:
        return
    alerts = AlertsTail(out / ALERTS_FILE, 0).read()
    ledger = JsonLines(out / LEDGER_FILE)
    try:
        for sink in new:
            at = iso_utc(time.time())
            ledger.write({"sink": sink.name, "status": SUBSCRIBED, "alerts_offset": 0, "at": at})
            for alert in alerts:
                if alert["alert_id"] not in pending[sink.name]:
                    reason = "settled before newswatch kept a delivery ledger"
                    ledger.write(
                        {"sink": sink.name, "alert_id": alert["alert_id"], "status": SKIPPED, "reason": reason, "at": at}
                    )
    finally:
        ledger.close()


def owed(out: Path, sink: str) -> list[dict]:
    """The alerts still owed to `sink`, oldest first."""
    ledger = read_ledger(out).get(sink, SinkLedger())
    if ledger.since is None:
        return []
    return [a for a in AlertsTail(out / ALERTS_FILE, ledger.since).read() if a["alert_id"] not in ledger.settled]


# --- one sink's worker ------------------------------------------------------------------


class SinkWorker:
    """A thread that delivers what one sink is owed, as alerts.jsonl grows, until told to stop.

    `drain()` asks it to send what is owed now (held alerts as a digest at once) and then end; `stop()`
    ends it at the next moment it is not inside an HTTP request: between attempts, a retry's wait ends
    at once. A request in flight when the process exits is abandoned unrecorded: still owed."""

    def __init__(self, sink: SinkConfig, out: Path, environ: Mapping[str, str] | None = None, poll_s: float = POLL_S):
        self.sink = sink
        self._out = out
        # Read here, in the delivering process, so the URL never travels in the pipeline's graph.
        self._url = (os.environ if environ is None else environ).get(sink.url_env, "") if sink.kind == "webhook" else ""
        self._poll_s = poll_s
        self._draining = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"newswatch-deliver-{sink.name}", daemon=True)
        self.delivered = 0
        self.dead = 0

    def start(self) -> SinkWorker:
        self._thread.start()
        return self

    def drain(self) -> None:
        self._draining.set()

    def stop(self) -> None:
        self._stopped.set()

    def join(self, timeout_s: float | None = None) -> bool:
        """True once the worker has ended."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            lock = self._lock()
            if lock is None:
                return
            with lock, requests.Session() as session:
                self._deliver(session)
        except Exception:  # a worker must not die silently: what it owes stays owed for the next one
            log.exception("sink %s: delivery stopped by an unexpected error; its alerts stay owed", self.sink.name)

    def _lock(self):
        """This sink's lock in this folder, waiting while another process delivers to it; None if stopped first."""
        handle = open(self._out / f".deliver-{self.sink.name}.lock", "w")  # noqa: SIM115 - closed by the caller's with
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                if self._stopped.wait(self._poll_s):
                    handle.close()
                    return None

    def _deliver(self, session: requests.Session) -> None:
        subscribe(self._out, (self.sink,))
        ledger = read_ledger(self._out)[self.sink.name]
        tail = AlertsTail(self._out / ALERTS_FILE, ledger.since or 0)
        settled = ledger.settled
        limit = RateLimit(self.sink.max_per_minute)
        queue: deque[dict] = deque()
        taken: set[str] = set()  # queued or held: an id listed twice in the file is sent once
        held: list[dict] = []
        last_digest_at = -RATE_WINDOW_S
        self._ledger = JsonLines(self._out / LEDGER_FILE)
        self._dead_letters = JsonLines(self._out / DEAD_LETTER_FILE)
        try:
            while not self._stopped.is_set():
                draining = self._draining.is_set()  # before the read: every line written before the drain is read
                for alert in tail.read():
                    if alert["alert_id"] not in settled and alert["alert_id"] not in taken:
                        taken.add(alert["alert_id"])
                        queue.append(alert)
                while queue and not self._stopped.is_set():
                    alert = queue.popleft()
                    if not limit.allow(time.monotonic()):
                        held.append(alert)
                    elif not self._settle([alert], self._send(session, [alert], digest=False), settled):
                        return
                if held and (draining or time.monotonic() - last_digest_at >= RATE_WINDOW_S):
                    batch, held = held, []
                    last_digest_at = time.monotonic()
                    if not self._settle(batch, self._send(session, batch, digest=True), settled):
                        return
                    continue
                if draining and not queue and not held:
                    return
                self._stopped.wait(self._poll_s)
        finally:
            self._ledger.close()
            self._dead_letters.close()

    def _send(self, session: requests.Session, alerts: list[dict], digest: bool) -> Delivery:
        """One message: a single alert, or a digest of `alerts`."""
        if self.sink.kind == "stdout":
            lines = [f"ALERT DIGEST {digest_id_of(alerts)}: {len(alerts)} more alerts"] if digest else []
            print("\n".join(lines + [stdout_line(alert) for alert in alerts]), file=sys.stdout, flush=True)
            return Delivery(True, 1)
        if not self._url.startswith(("http://", "https://")):
            return Delivery(False, 0, f"environment variable {self.sink.url_env} does not hold an http(s) URL here")
        form = self.sink.format
        body, key = (
            (digest_message(alerts, form), digest_id_of(alerts))
            if digest
            else (alert_message(alerts[0], form), alerts[0]["alert_id"])
        )
        return post_with_retries(session, self._url, body, key, self.sink, sleep=self._stopped.wait)

    def _settle(self, alerts: list[dict], delivery: Delivery, settled: set[str]) -> bool:
        """Write the outcome to the ledger, the metrics and, for a failure, the dead letters; False if the
        worker was stopped before the outcome was known (the alerts stay owed)."""
        if delivery.stopped or self._stopped.is_set() and not delivery.ok:
            return False
        status = DELIVERED if delivery.ok else DEAD
        digest = {"digest_id": digest_id_of(alerts)} if len(alerts) > 1 else {}
        for alert in alerts:
            self._ledger.write(
                {"sink": self.sink.name, "alert_id": alert["alert_id"], "status": status, "reason": delivery.reason}
                | digest
                | {"at": iso_utc(time.time())}
            )
            settled.add(alert["alert_id"])
            telemetry.alert_delivered(self.sink.name, "ok" if delivery.ok else "dead_letter")
            if delivery.ok:
                self.delivered += 1
                continue
            self.dead += 1
            dead = DeadLetter(
                feed=alert["feed"],
                url=safe_link(alert["url"]),
                stage="deliver",
                reason=f"sink {self.sink.name}: {delivery.reason}",
                at=time.time(),
            )
            self._dead_letters.write({**dead.to_json(), "alert_id": alert["alert_id"], "sink": self.sink.name})
        return True


# --- every sink of a run ----------------------------------------------------------------


class Deliveries:
    """The workers of every sink for one output folder."""

    def __init__(self, sinks: tuple[SinkConfig, ...], out: Path, environ: Mapping[str, str] | None = None):
        self._out = out
        self.workers = [SinkWorker(sink, out, environ) for sink in sinks]

    def start(self) -> Deliveries:
        subscribe(self._out, tuple(worker.sink for worker in self.workers))
        for worker in self.workers:
            worker.start()
        return self

    def finish(self, grace_s: float | None) -> dict[str, int]:
        """Deliver what is owed for at most `grace_s` seconds (None: until done), then stop; returns what each
        sink is still owed."""
        deadline = None if grace_s is None else time.monotonic() + grace_s
        for worker in self.workers:
            worker.drain()
        for worker in self.workers:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        for worker in self.workers:
            worker.stop()
        for worker in self.workers:
            worker.join(0.2)  # a worker between attempts ends at once; one inside a request is left to the exit
        return {worker.sink.name: len(owed(self._out, worker.sink.name)) for worker in self.workers}

    def stopped(self) -> bool:
        """True once every worker has ended."""
        return all(worker.join(0) for worker in self.workers)

    def totals(self) -> tuple[int, int]:
        """(delivered, dead-lettered) by these workers."""
        return sum(w.delivered for w in self.workers), sum(w.dead for w in self.workers)


def counted(n: int, noun: str) -> str:
    """`1 alert`, `2 alerts`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def owed_line(still_owed: Mapping[str, int]) -> str:
    """`2 alerts to desk, 1 alert to chat`; `nothing` when no sink is owed anything."""
    if not any(still_owed.values()):
        return "nothing"
    parts = [f"{counted(n, 'alert')} to {name}" for name, n in still_owed.items() if n]
    return ", ".join(parts) + " (sent by the next run or `newswatch deliver`)"
