"""Alert delivery to the sinks of the watchlist's `alerts: sinks:` (stdout and webhooks), at the pipeline's edge.

One `DeliverAlertsFn` per sink receives each newly raised alert. What it guarantees:
- A webhook gets a POST of JSON: the alert record (`format: json`) or a Slack-compatible `{"text": ...}`
  (`format: slack`), with the header `Idempotency-Key: <alert_id>` (a digest: `d-<hash of its alert ids>`).
- Timeouts, connection errors, 408, 429 and 5xx are retried with exponential backoff and jitter, up to
  `max_attempts`; a 429/503 `Retry-After` is honoured (and if it asks for more than `max_backoff_s`, the
  alert is given up). Other answers are final. An alert that cannot be delivered is a dead letter
  (`stage: deliver`, with the sink and the reason).
- Never twice from one process (a process-wide claim per state dir, sink and alert), nor across restarts
  (the state store's outbox: an alert is queued for every sink in the transaction that raises it, and
  marked delivered or dead once the sink is done; what a stopped run still owed is sent by the next).
  Only a crash between the receiver's 2xx and that mark can resend, with the same Idempotency-Key.
- At most `max_per_minute` single-alert messages per sink in any minute; the excess goes out as one digest
  message, at the end of a bundle once the last digest is a minute old, and at the latest at shutdown.
- Plain text only: markup and control characters are removed from every text, and a link is passed on
  only if it is http(s). The webhook URL (a secret) is read from the environment in `setup` and never
  logged or written; failure reasons name the sink, never its URL.
"""

from __future__ import annotations

import hashlib
import html
import os
import random
import re
import sys
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests

from pipelines import telemetry
from pipelines.config import SinkConfig
from pipelines.records import DeadLetter
from pipelines.sinks import DEAD_LETTER_FILE, FileSinkFn

RATE_WINDOW_S = 60.0
_TAG = re.compile(r"<[^>]*>")
_RETRYABLE_STATUS = {408, 429}

_claimed: set[tuple[str, str, str]] = set()
_claim_lock = threading.Lock()


# --- plain text -------------------------------------------------------------------------


def plain_text(value: str) -> str:
    """Text with entities decoded, tags and control characters removed and whitespace collapsed."""
    text = _TAG.sub(" ", html.unescape(_TAG.sub(" ", value)))
    text = "".join(" " if unicodedata.category(char) in ("Cc", "Cf") else char for char in text)
    return " ".join(text.split())


def safe_link(url: str) -> str:
    """`url` if it is an absolute http(s) link without spaces or markup characters, else ""."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if not parts or parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    if any(char.isspace() or char in '<>"' or unicodedata.category(char) in ("Cc", "Cf") for char in url):
        return ""
    return url


def safe_alert(alert: dict) -> dict:
    """The alert record with every text made plain and every link http(s) or empty."""
    evidence = alert["evidence"]
    return {
        **alert,
        "title": plain_text(alert["title"]),
        "url": safe_link(alert["url"]),
        "feed": plain_text(alert["feed"]),
        "sources": [{"feed": plain_text(s["feed"]), "url": safe_link(s["url"])} for s in alert["sources"]],
        "evidence": {
            "actors": [{**m, "alias": plain_text(m["alias"]), "span": plain_text(m["span"])} for m in evidence["actors"]],
            "topics": {topic: [plain_text(term) for term in terms] for topic, terms in evidence["topics"].items()},
        },
    }


# --- messages ---------------------------------------------------------------------------


def digest_id_of(alerts: list[dict]) -> str:
    return "d-" + hashlib.sha1(",".join(sorted(a["alert_id"] for a in alerts)).encode()).hexdigest()[:16]


def _slack_escape(text: str) -> str:
    # Slack reads <...> as links and mentions (<!channel>) and & as an entity: escaped, they stay text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summary_line(alert: dict) -> str:
    """One plain line: title, actors, topics and the link (if http(s))."""
    safe = safe_alert(alert)
    line = f"{safe['title']} ({', '.join(safe['actors'])}; {', '.join(safe['topics'])})"
    return f"{line} {safe['url']}".rstrip()


def alert_message(alert: dict, form: str) -> dict:
    """The JSON body for one alert: the plain-text alert record, or Slack's {"text": ...}."""
    if form == "slack":
        return {"text": _slack_escape("newswatch alert: " + summary_line(alert))}
    return safe_alert(alert)


def digest_message(alerts: list[dict], form: str) -> dict:
    """The JSON body for the alerts held back by the rate limit, in one message."""
    if form == "slack":
        lines = [f"newswatch digest: {len(alerts)} more alerts"] + [f"• {summary_line(a)}" for a in alerts]
        return {"text": _slack_escape("\n".join(lines))}
    return {"digest_id": digest_id_of(alerts), "count": len(alerts), "alerts": [safe_alert(a) for a in alerts]}


def stdout_line(alert: dict) -> str:
    safe = safe_alert(alert)
    return f"ALERT {safe['alert_id']} [{', '.join(safe['topics'])}] {', '.join(safe['actors'])}: {safe['title']}"


# --- posting with retries ---------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    ok: bool
    attempts: int
    reason: str = ""  # why it failed: never the URL


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def backoff_s(attempt: int, sink: SinkConfig, rand: Callable[[], float]) -> float:
    """Exponential backoff with jitter after failed attempt `attempt` (1-based): between half and all of
    backoff_s * 2^(attempt-1), capped at max_backoff_s."""
    delay = min(sink.max_backoff_s, sink.backoff_s * 2 ** (attempt - 1))
    return delay * (0.5 + rand() / 2)


def _attempt(session: requests.Session, url: str, body: dict, key: str, timeout_s: float) -> tuple[str, float | None, bool]:
    """One POST: (outcome, Retry-After seconds, retryable). Outcome is "ok" or a reason without the URL."""
    try:
        response = session.post(url, json=body, headers={"Idempotency-Key": key}, timeout=timeout_s, allow_redirects=False)
    except requests.Timeout:
        return f"no answer within {timeout_s:g} s", None, True
    except requests.ConnectionError as err:
        return f"connection failed ({err.__class__.__name__})", None, True
    except requests.RequestException as err:
        return f"request failed ({err.__class__.__name__})", None, False
    with response:
        if 200 <= response.status_code < 300:
            return "ok", None, True
        retryable = response.status_code in _RETRYABLE_STATUS or response.status_code >= 500
        return f"HTTP {response.status_code}", retry_after_s(response.headers.get("Retry-After"), time.time()), retryable


def post_with_retries(
    session: requests.Session,
    url: str,
    body: dict,
    key: str,
    sink: SinkConfig,
    sleep: Callable[[float], None] = time.sleep,
    rand: Callable[[], float] = random.random,
) -> Delivery:
    """POST `body` with `Idempotency-Key: key` until a 2xx, a final answer, or `max_attempts`."""
    for attempt in range(1, sink.max_attempts + 1):
        outcome, retry_after, retryable = _attempt(session, url, body, key, sink.timeout_s)
        if outcome == "ok":
            return Delivery(True, attempt)
        if not retryable:
            return Delivery(False, attempt, f"{outcome}, not retried")
        if retry_after is not None and retry_after > sink.max_backoff_s:
            return Delivery(False, attempt, f"{outcome} asking to retry after {retry_after:g} s, more than max_backoff_s")
        if attempt < sink.max_attempts:
            sleep(retry_after * (1 + rand() / 10) if retry_after is not None else backoff_s(attempt, sink, rand))
    return Delivery(False, sink.max_attempts, f"gave up after {sink.max_attempts} attempts, the last: {outcome}")


# --- rate limit and once-only -----------------------------------------------------------


class RateLimit:
    """At most `per_minute` sends in any RATE_WINDOW_S (None: no limit), on a clock given by the caller."""

    def __init__(self, per_minute: int | None):
        self._per_minute = per_minute
        self._sent: deque[float] = deque()

    def allow(self, now: float) -> bool:
        if self._per_minute is None:
            return True
        while self._sent and now - self._sent[0] >= RATE_WINDOW_S:
            self._sent.popleft()
        if len(self._sent) >= self._per_minute:
            return False
        self._sent.append(now)
        return True


def claim(state_dir: str, sink: str, alert_id: str) -> bool:
    """True the first time this process is asked about (state dir, sink, alert): whoever claims it delivers it."""
    with _claim_lock:
        if (state_dir, sink, alert_id) in _claimed:
            return False
        _claimed.add((state_dir, sink, alert_id))
        return True


# --- the sink ---------------------------------------------------------------------------


class DeliverAlertsFn(FileSinkFn):
    """alert dict -> (nothing): delivers each alert to one sink, once; what cannot be delivered is a dead letter."""

    FILE = DEAD_LETTER_FILE

    def __init__(self, sink: SinkConfig, out_dir: str, state_dir: str, run_id: str):
        super().__init__(out_dir, state_dir, run_id)
        self._sink = sink

    def setup(self):
        super().setup()
        self._limit = RateLimit(self._sink.max_per_minute)
        self._held: list[dict] = []
        self._last_digest_at = -RATE_WINDOW_S
        self._session = requests.Session() if self._sink.kind == "webhook" else None
        # Read here, on the worker, so the URL never travels in the pipeline's serialized graph.
        self._url = os.environ.get(self._sink.url_env, "") if self._session else ""
        self._owed = self._store.pending_deliveries(self._sink.name)  # what a stopped run did not deliver

    def teardown(self):
        self._send_digest(force=True)
        if self._session:
            self._session.close()
        super().teardown()

    def process(self, alert: dict):
        self._offer_owed()
        self._offer(alert)

    def finish_bundle(self):
        self._offer_owed()
        self._send_digest(force=False)
        super().finish_bundle()

    def _offer_owed(self) -> None:
        owed, self._owed = self._owed, []
        for alert in owed:
            self._offer(alert)

    def _offer(self, alert: dict) -> None:
        name = self._sink.name
        if not claim(self._state_dir, name, alert["alert_id"]) or self._store.delivery_status(name, alert["alert_id"]) in (
            "delivered",
            "dead",
        ):
            return
        if self._limit.allow(time.monotonic()):
            self._settle([alert], self._deliver([alert], digest=False))
        else:
            self._held.append(alert)

    def _send_digest(self, force: bool) -> None:
        if not self._held or not (force or time.monotonic() - self._last_digest_at >= RATE_WINDOW_S):
            return
        held, self._held = self._held, []
        self._last_digest_at = time.monotonic()
        self._settle(held, self._deliver(held, digest=True))

    def _deliver(self, alerts: list[dict], digest: bool) -> Delivery:
        """One message: a single alert, or a digest of `alerts`."""
        if self._session is None:
            lines = [f"ALERT DIGEST {digest_id_of(alerts)}: {len(alerts)} more alerts"] if digest else []
            print("\n".join(lines + [stdout_line(alert) for alert in alerts]), file=sys.stdout, flush=True)
            return Delivery(True, 1)
        if not self._url.startswith(("http://", "https://")):
            return Delivery(False, 0, f"environment variable {self._sink.url_env} does not hold an http(s) URL on this worker")
        form = self._sink.format
        body, key = (
            (digest_message(alerts, form), digest_id_of(alerts))
            if digest
            else (alert_message(alerts[0], form), alerts[0]["alert_id"])
        )
        return post_with_retries(self._session, self._url, body, key, self._sink)

    def _settle(self, alerts: list[dict], delivery: Delivery) -> None:
        """Record the outcome in the outbox, the metrics and, for a failure, the dead letters."""
        ids = [alert["alert_id"] for alert in alerts]
        self._store.record_deliveries(self._sink.name, ids, "delivered" if delivery.ok else "dead", delivery.reason)
        for alert in alerts:
            telemetry.alert_delivered(self._sink.name, "ok" if delivery.ok else "dead_letter")
            if not delivery.ok:
                dead = DeadLetter(
                    feed=alert["feed"],
                    url=safe_link(alert["url"]),
                    stage="deliver",
                    reason=f"sink {self._sink.name}: {delivery.reason}",
                    at=time.time(),
                )
                self._out.write({**dead.to_json(), "alert_id": alert["alert_id"], "sink": self._sink.name})
