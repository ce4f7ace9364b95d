"""Webhook messages and their delivery rules; `pipelines.delivery` runs them off the pipeline's thread.

- A webhook gets a POST of JSON: the alert record (`format: json`) or a Slack-compatible `{"text": ...}`
  (`format: slack`), with the header `Idempotency-Key: <alert_id>` (a digest: `d-<hash of its alert ids>`).
- Timeouts, connection errors, 408, 429 and 5xx are retried with exponential backoff and jitter, up to
  `max_attempts`; a 429/503 `Retry-After` is honoured (and if it asks for more than `max_backoff_s`, the
  alert is given up). Other answers are final.
- `RateLimit`: at most `max_per_minute` single-alert messages per sink in any minute; the excess goes out
  as one digest message.
- Plain text only: markup and control characters are removed from every text, and a link is passed on
  only if it is http(s). Failure reasons name the sink's answer, never its URL (a secret).
"""

from __future__ import annotations

import hashlib
import html
import random
import re
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests

from pipelines.config import SinkConfig

RATE_WINDOW_S = 60.0
_TAG = re.compile(r"<[^>]*>")
_RETRYABLE_STATUS = {408, 429}

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
    stopped: bool = False  # the worker was told to stop between attempts: still owed, not a failure


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
    sleep: Callable[[float], object] = time.sleep,
    rand: Callable[[], float] = random.random,
) -> Delivery:
    """POST `body` with `Idempotency-Key: key` until a 2xx, a final answer, or `max_attempts`. `sleep` waits
    between attempts; if it returns True (a stop event's `wait`), the attempts end with `stopped`."""
    for attempt in range(1, sink.max_attempts + 1):
        outcome, retry_after, retryable = _attempt(session, url, body, key, sink.timeout_s)
        if outcome == "ok":
            return Delivery(True, attempt)
        if not retryable:
            return Delivery(False, attempt, f"{outcome}, not retried")
        if retry_after is not None and retry_after > sink.max_backoff_s:
            return Delivery(False, attempt, f"{outcome} asking to retry after {retry_after:g} s, more than max_backoff_s")
        if attempt < sink.max_attempts and sleep(
            retry_after * (1 + rand() / 10) if retry_after is not None else backoff_s(attempt, sink, rand)
        ):
            return Delivery(False, attempt, f"stopped after attempt {attempt}, the last: {outcome}", stopped=True)
    return Delivery(False, sink.max_attempts, f"gave up after {sink.max_attempts} attempts, the last: {outcome}")


# --- rate limit -----------------------------------------------------------------


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
