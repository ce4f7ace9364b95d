"""Alert delivery: a real loopback webhook receiver that fails the first attempts (a timeout, a 429 with
Retry-After, a 500) and records what it receives; each alert must arrive exactly once, with its key.
(tests/test_delivery.py: a stream run with receivers that fail for good, and `newswatch deliver`.)"""

from __future__ import annotations

import json
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import pytest

from pipelines.config import DEFAULT_WATCHLIST, ConfigError, SinkConfig, load_watchlist
from pipelines.delivery import LEDGER_FILE, AlertsTail, Deliveries, adopt_legacy_outbox, owed
from pipelines.store import StateStore
from pipelines.webhooks import (
    RateLimit,
    alert_message,
    backoff_s,
    digest_id_of,
    digest_message,
    plain_text,
    post_with_retries,
    retry_after_s,
    safe_link,
)
from tests.conftest import read_lines, run_newswatch, write_yaml
from tests.feedserver import FeedServer, rss
from tests.stories import AID_CONVOY, CEASEFIRE_TALKS, DOMESTIC_DECREE, NEW_TRUCE, entry

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "pipelines" / "schemas" / "alert.schema.json").read_text())
TOKEN = "T0k3n-s3cr3t-9f8e7d"  # in every webhook URL: must never be logged or written
FLAKY = ("timeout", "429", "500")  # what the receiver answers to the first attempts with each key
CLIENT_TIMEOUT_S = 0.3
RETRY_AFTER_S = 1


@dataclass
class Attempt:
    path: str
    key: str | None
    body: dict
    outcome: str  # timeout, 429, 500, 404, 200
    at: float = field(default_factory=time.monotonic)


class Receiver(FeedServer):
    """The feed server, taught to take POSTs as a webhook receiver. Each path has a plan: the answers to the first
    attempts with each Idempotency-Key ("timeout": answer only after the client gave up), then 200;
    "always-500" (or another status) never succeeds; a path without a plan is a 404."""

    def __init__(self, plans: dict[str, tuple[str, ...]]):
        super().__init__()
        self.plans = plans
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(self._httpd.RequestHandlerClass):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outcome = receiver.answer(self.path, self.headers.get("Idempotency-Key"), body)
                if outcome == "timeout":
                    time.sleep(CLIENT_TIMEOUT_S * 3)
                status = {"timeout": 503, "429": 429, "500": 500, "503": 503, "404": 404}.get(outcome, 200)
                try:
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", str(RETRY_AFTER_S))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up waiting

        self._httpd.RequestHandlerClass = Handler

    def answer(self, path: str, key: str | None, body: dict) -> str:
        with self._lock:
            plan = self.plans.get(path.rsplit("/", 1)[0])
            earlier = sum(1 for a in self.attempts if a.path == path and a.key == key)
            if plan is None:
                outcome = "404"
            elif plan and plan[0].startswith("always-"):  # always-500, always-503: never succeeds
                outcome = plan[0].removeprefix("always-")
            else:
                outcome = plan[earlier] if earlier < len(plan) else "200"
            self.attempts.append(Attempt(path, key, body, outcome))
            return outcome

    def hook_url(self, name: str) -> str:
        return self.url(f"/{name}/{TOKEN}")

    def accepted(self, name: str) -> list[Attempt]:
        return [a for a in self.attempts if a.path == f"/{name}/{TOKEN}" and a.outcome == "200"]

    def tries(self, name: str, key: str) -> list[str]:
        return [a.outcome for a in self.attempts if a.path == f"/{name}/{TOKEN}" and a.key == key]


@pytest.fixture
def receiver():
    with Receiver({"/desk": FLAKY, "/chat": (), "/broken": ("always-500",)}) as server:
        yield server


def hook(name: str, **settings) -> SinkConfig:
    return SinkConfig(
        name=name,
        kind="webhook",
        url_env=f"NW_TEST_{name.upper()}_URL",
        **{"timeout_s": CLIENT_TIMEOUT_S, "backoff_s": 0.05, "max_backoff_s": 5.0, **settings},
    )


def alert(n: int, title: str = "Lavrov arrives in Riyadh", url: str = "https://wire.example.org/a") -> dict:
    return {
        "alert_id": f"a-{n:016x}",
        "story_id": f"s-{n}",
        "title": title,
        "url": url,
        "feed": "wire",
        "published": "2026-11-25T09:00:00Z",
        "topics": ["ceasefire"],
        "scores": {"ceasefire": 0.9},
        "actors": ["Sergei Lavrov"],
        "sources": [{"feed": "wire", "url": url}],
        "evidence": {
            "actors": [{"actor": "Sergei Lavrov", "alias": "Lavrov", "span": "Lavrov", "start": 0, "end": 6, "field": "title"}],
            "topics": {"ceasefire": ["truce"]},
        },
        "raised_at": "2026-11-25T09:01:00Z",
    }


# --- plain text and messages -------------------------------------------------------------


def test_no_markup_from_feeds_and_only_http_links_reach_a_webhook():
    hostile = alert(
        1,
        title="<b>Lavrov</b> &lt;script&gt;alert(1)&lt;/script&gt; in\x1b[31m Riyadh <img src=x onerror=y>",
        url="javascript:alert(1)",
    )
    body = alert_message(hostile, "json")
    assert body["title"] == "Lavrov alert(1) in [31m Riyadh"
    assert body["url"] == "" and body["sources"] == [{"feed": "wire", "url": ""}]
    jsonschema.validate(body, SCHEMA)
    slack = alert_message({**hostile, "title": "Talks <!channel> & <https://evil.example|click>"}, "slack")
    assert "<" not in slack["text"] and ">" not in slack["text"]
    assert slack["text"].startswith("newswatch alert: Talks &amp;")


@pytest.mark.parametrize(
    "url, safe",
    [
        ("https://wire.example.org/a?b=1&c=2", True),
        ("http://x.example/p", True),
        ("javascript:alert(1)", False),
        ("data:text/html,hi", False),
        ("file:///etc/passwd", False),
        ("//no-scheme.example/x", False),
        ('https://x.example/"><script>', False),
        ("https://x.example/a b", False),
    ],
)
def test_only_absolute_http_links_are_passed_on(url, safe):
    assert safe_link(url) == (url if safe else "")


def test_plain_text_decodes_entities_and_drops_tags_and_control_characters():
    assert plain_text("A&amp;B <i>C</i>\u200b\x07 D\n\tE") == "A&B C D E"


def test_digest_carries_every_held_alert_under_its_own_key():
    alerts = [alert(1), alert(2)]
    body = digest_message(alerts, "json")
    assert body["digest_id"] == digest_id_of(list(reversed(alerts))) and body["count"] == 2
    for record in body["alerts"]:
        jsonschema.validate(record, SCHEMA)
    assert digest_message(alerts, "slack")["text"].count("\n• ") == 2


# --- retries -------------------------------------------------------------------------------


def test_retries_timeout_429_and_500_then_delivers_once_honouring_retry_after(receiver):
    import requests

    waits: list[float] = []
    with requests.Session() as session:
        result = post_with_retries(
            session, receiver.hook_url("desk"), {"x": 1}, "a-1", hook("desk"), sleep=waits.append, rand=lambda: 0.5
        )
    assert (result.ok, result.attempts) == (True, 4)
    assert receiver.tries("desk", "a-1") == ["timeout", "429", "500", "200"]
    assert len(receiver.accepted("desk")) == 1
    sink = hook("desk")
    assert waits == [backoff_s(1, sink, lambda: 0.5), RETRY_AFTER_S * 1.05, backoff_s(3, sink, lambda: 0.5)]


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    sink = hook("x", backoff_s=1.0, max_backoff_s=5.0)
    assert [backoff_s(n, sink, lambda: 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert [backoff_s(n, sink, lambda: 0.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]


def test_retry_after_in_seconds_or_as_a_date():
    now = 1_795_597_200.0  # 2026-11-25 09:00:00 UTC
    assert retry_after_s("7", now) == 7.0
    assert retry_after_s("Wed, 25 Nov 2026 09:00:30 GMT", now) == 30.0
    assert retry_after_s("soon", now) is None and retry_after_s(None, now) is None


def test_a_sink_that_never_succeeds_gives_up_with_a_reason_that_hides_the_url(receiver):
    import requests

    with requests.Session() as session:
        result = post_with_retries(
            session, receiver.hook_url("broken"), {}, "a-2", hook("broken", max_attempts=3), sleep=lambda s: None
        )
    assert (result.ok, result.attempts) == (False, 3)
    assert result.reason == "gave up after 3 attempts, the last: HTTP 500" and TOKEN not in result.reason


def test_a_final_answer_or_a_long_retry_after_is_not_retried(receiver):
    import requests

    with requests.Session() as session:
        gone = post_with_retries(
            session, receiver.hook_url("desk").replace("/desk/", "/gone/"), {}, "a-3", hook("x"), sleep=lambda s: None
        )
        patient = post_with_retries(
            session, receiver.hook_url("desk"), {}, "a-4", hook("x", max_backoff_s=0.5), sleep=lambda s: None
        )
    assert not gone.ok and gone.attempts == 1 and "not retried" in gone.reason
    assert not patient.ok and "retry after 1 s, more than max_backoff_s" in patient.reason


# --- the delivery worker, on an output folder ------------------------------------------------


def raise_alerts(out: Path, alerts: list[dict]) -> None:
    """What the pipeline does: append each alert to the outbox, alerts.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "alerts.jsonl", "a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(a) + "\n" for a in alerts)


def deliver_all(sink: SinkConfig, out: Path, alerts: list[dict], url: str | None) -> None:
    """A run's delivery: the sink subscribes, the alerts are raised, and the worker sends until nothing is owed."""
    deliveries = Deliveries((sink,), out, environ={sink.url_env: url} if url else {}).start()
    raise_alerts(out, alerts)
    assert deliveries.finish(grace_s=30) == {sink.name: 0}


def statuses(out: Path, sink: str) -> dict[str, str]:
    return {r["alert_id"]: r["status"] for r in read_lines(out / LEDGER_FILE) if r["sink"] == sink and "alert_id" in r}


def test_rate_limit_sends_the_excess_as_one_digest_and_each_alert_once(receiver, tmp_path):
    alerts = [alert(n) for n in range(1, 6)]
    out = tmp_path / "out"
    deliver_all(hook("chat", max_per_minute=2), out, alerts + alerts[:2], receiver.hook_url("chat"))
    bodies = [a.body for a in receiver.accepted("chat")]
    singles = [b for b in bodies if "alert_id" in b]
    [digest] = [b for b in bodies if "digest_id" in b]
    assert [b["alert_id"] for b in singles] == ["a-0000000000000001", "a-0000000000000002"]
    assert [a["alert_id"] for a in digest["alerts"]] == [f"a-{n:016x}" for n in (3, 4, 5)]
    keys = [a.key for a in receiver.accepted("chat")]
    assert keys == [b.get("alert_id", b.get("digest_id")) for b in bodies]
    assert set(statuses(out, "chat").values()) == {"delivered"} and len(statuses(out, "chat")) == 5


def test_an_undeliverable_alert_is_a_dead_letter_with_the_reason(receiver, tmp_path):
    out = tmp_path / "out"
    deliver_all(hook("broken", max_attempts=2), out, [alert(7)], receiver.hook_url("broken"))
    [dead] = read_lines(out / "dead_letter.jsonl")
    assert (dead["stage"], dead["sink"], dead["alert_id"], dead["feed"]) == ("deliver", "broken", "a-0000000000000007", "wire")
    assert dead["reason"] == "sink broken: gave up after 2 attempts, the last: HTTP 500"
    assert statuses(out, "broken") == {"a-0000000000000007": "dead"}


def test_what_a_stopped_run_still_owed_is_sent_by_the_next_once(receiver, tmp_path):
    sink, out = hook("chat"), tmp_path / "out"
    stopped = Deliveries((sink,), out, environ={}).start()  # no URL in this process: it cannot send
    stopped.workers[0].stop()
    raise_alerts(out, [alert(11), alert(12)])  # raised, then the process stopped
    assert stopped.finish(grace_s=0) == {"chat": 2}
    assert [a["alert_id"] for a in owed(out, "chat")] == ["a-000000000000000b", "a-000000000000000c"]
    deliver_all(sink, out, [], receiver.hook_url("chat"))
    assert sorted(a.key for a in receiver.accepted("chat")) == ["a-000000000000000b", "a-000000000000000c"]
    deliver_all(sink, out, [], receiver.hook_url("chat"))  # the next run sends nothing again
    assert len(receiver.accepted("chat")) == 2 and owed(out, "chat") == []


def test_a_sink_is_owed_only_what_was_raised_after_it_first_ran(receiver, tmp_path):
    out = tmp_path / "out"
    raise_alerts(out, [alert(31)])  # the folder's history, from before the sink was in the watchlist
    deliver_all(hook("chat"), out, [alert(32)], receiver.hook_url("chat"))
    assert [a.key for a in receiver.accepted("chat")] == ["a-0000000000000020"]


def test_a_missing_url_where_delivery_runs_is_a_dead_letter_not_a_crash(tmp_path):
    out = tmp_path / "out"
    deliver_all(hook("nowhere"), out, [alert(21)], None)
    [dead] = read_lines(out / "dead_letter.jsonl")
    assert "NW_TEST_NOWHERE_URL does not hold an http(s) URL" in dead["reason"]


def test_rate_limit_counts_a_sliding_minute():
    limit = RateLimit(2)
    assert [limit.allow(t) for t in (0, 1, 2, 59.9, 60.0, 61.0, 61.5)] == [True, True, False, False, True, True, False]
    assert all(RateLimit(None).allow(t) for t in range(100))


# --- the watchlist's sinks -----------------------------------------------------------------


def watchlist_with(tmp_path: Path, sinks: list) -> Path:
    return write_yaml(
        tmp_path / "watchlist.yaml", {"actors": [{"name": "Sergei Lavrov", "aliases": ["Lavrov"]}], "alerts": {"sinks": sinks}}
    )


def test_sinks_load_with_the_url_from_the_environment(tmp_path):
    path = watchlist_with(
        tmp_path,
        [
            {"type": "stdout"},
            {
                "type": "webhook",
                "name": "desk",
                "url_env": "DESK_URL",
                "format": "slack",
                "max_per_minute": 10,
                "max_attempts": 3,
            },
        ],
    )
    rules = load_watchlist(path, environ={"DESK_URL": f"https://hooks.example/{TOKEN}"}).alerts
    assert [(s.name, s.kind, s.format, s.max_per_minute, s.max_attempts) for s in rules.sinks] == [
        ("stdout", "stdout", "json", None, 5),
        ("desk", "webhook", "slack", 10, 3),
    ]
    assert TOKEN not in repr(rules) and rules.window_hours == 24


@pytest.mark.parametrize(
    "sink, environ, message",
    [
        ({"type": "webhook", "name": "desk", "url_env": "DESK_URL"}, {}, "environment variable DESK_URL is not set"),
        (
            {"type": "webhook", "name": "desk", "url_env": "DESK_URL"},
            {"DESK_URL": f"ftp://x/{TOKEN}"},
            "does not hold an http(s) URL",
        ),
        ({"type": "webhook", "name": "desk", "url": f"https://x/{TOKEN}"}, {}, "unknown key(s) ['url']"),
        ({"type": "webhook", "name": "desk", "url_env": "desk-url"}, {}, "must name an environment variable"),
        ({"type": "webhook", "name": "a b", "url_env": "DESK_URL"}, {"DESK_URL": "https://x/"}, "may hold only letters"),
        (
            {"type": "webhook", "name": "desk", "url_env": "DESK_URL", "format": "html"},
            {"DESK_URL": "https://x/"},
            "`format` must be one of",
        ),
        (
            {"type": "webhook", "name": "desk", "url_env": "DESK_URL", "max_per_minute": 0},
            {"DESK_URL": "https://x/"},
            "at least 1",
        ),
        ({"type": "email"}, {}, "`type` must be stdout or webhook"),
    ],
)
def test_bad_sinks_are_config_errors_that_never_show_the_secret(tmp_path, sink, environ, message):
    with pytest.raises(ConfigError) as err:
        load_watchlist(watchlist_with(tmp_path, [sink]), environ=environ)
    assert message in str(err.value) and TOKEN not in str(err.value)


# --- end to end: the real command -----------------------------------------------------------


def test_newswatch_run_delivers_each_alert_once_through_retries_digests_and_dead_letters(tmp_path, receiver, monkeypatch):
    with FeedServer() as feeds:
        feeds.serve(
            "/wire.xml",
            rss(
                "Wire",
                [
                    entry(CEASEFIRE_TALKS, "https://wire.example.org/lavrov-riyadh"),
                    entry(AID_CONVOY, "https://wire.example.org/darfur-convoy"),
                    entry(NEW_TRUCE, "https://wire.example.org/easter-truce"),
                    entry(DOMESTIC_DECREE, "https://wire.example.org/putin-decree"),
                ],
            ),
        )
        feeds_file = write_yaml(tmp_path / "feeds.yaml", {"feeds": [{"name": "wire", "url": feeds.url("/wire.xml")}]})
        watchlist = load_watchlist(DEFAULT_WATCHLIST, environ={})
        actors = [{"name": a.name, "aliases": list(a.aliases)} for a in watchlist.actors]
        sinks = [
            {"type": "stdout"},
            {
                "type": "webhook",
                "name": "desk",
                "url_env": "NW_DESK_URL",
                "max_per_minute": 2,
                "timeout_s": CLIENT_TIMEOUT_S,
                "backoff_s": 0.05,
            },
            {"type": "webhook", "name": "chat", "url_env": "NW_CHAT_URL", "format": "slack"},
            {"type": "webhook", "name": "broken", "url_env": "NW_BROKEN_URL", "max_attempts": 2, "backoff_s": 0.05},
        ]
        watchlist_file = write_yaml(tmp_path / "watchlist.yaml", {"actors": actors, "alerts": {"sinks": sinks}})
        for name in ("desk", "chat", "broken"):  # the child process inherits them
            monkeypatch.setenv(f"NW_{name.upper()}_URL", receiver.hook_url(name))
        out, state = tmp_path / "out", tmp_path / "state"
        args = (
            "run",
            "--feeds",
            str(feeds_file),
            "--watchlist",
            str(watchlist_file),
            "--out",
            str(out),
            "--state-dir",
            str(state),
            "--deliver-grace",
            "30",  # a batch run may finish delivering for this long before it exits (the default is 2 s)
        )
        first = run_newswatch(*args)
        assert first.returncode == 0, first.stderr
        second = run_newswatch(*args)  # a restart: nothing is raised or sent again
        assert second.returncode == 0, second.stderr

    alerts = read_lines(out / "alerts.jsonl")
    ids = sorted(a["alert_id"] for a in alerts)
    assert len(ids) == 3
    # desk: two alerts alone, the third in a digest; every message through timeout, 429 and 500 first.
    accepted = receiver.accepted("desk")
    singles = [a for a in accepted if "alert_id" in a.body]
    [digest] = [a for a in accepted if "digest_id" in a.body]
    delivered = sorted([a.body["alert_id"] for a in singles] + [r["alert_id"] for r in digest.body["alerts"]])
    assert delivered == ids
    assert all(a.key == a.body["alert_id"] for a in singles) and digest.key == digest.body["digest_id"]
    for message in accepted:
        assert receiver.tries("desk", message.key) == [*FLAKY, "200"]
        attempts = [a for a in receiver.attempts if a.path == message.path and a.key == message.key]
        assert attempts[2].at - attempts[1].at >= RETRY_AFTER_S  # Retry-After honoured
    for record in [a.body for a in singles] + digest.body["alerts"]:
        jsonschema.validate(record, SCHEMA)
    # chat: Slack's text form, each alert once.
    assert sorted(a.key for a in receiver.accepted("chat")) == ids
    assert all(set(a.body) == {"text"} for a in receiver.accepted("chat"))
    # broken: never succeeds, so each alert is a dead letter with the reason.
    dead = [d for d in read_lines(out / "dead_letter.jsonl") if d["stage"] == "deliver"]
    assert sorted(d["alert_id"] for d in dead) == ids and {d["sink"] for d in dead} == {"broken"}
    assert len(receiver.tries("broken", ids[0])) == 2
    assert (
        first.stderr.splitlines()[-1] == "newswatch: done; written: 4 items, 3 alerts (every line complete); still owed: nothing"
    )
    # stdout: one line per alert.
    assert sorted(line.split()[1] for line in first.stdout.splitlines() if line.startswith("ALERT ")) == ids
    # The secret in the URLs appears nowhere.
    written = "".join(p.read_text(errors="replace") for p in out.iterdir() if p.is_file())
    assert TOKEN not in first.stdout + first.stderr + second.stdout + second.stderr + written


def test_the_outbox_is_read_in_whole_lines_only(tmp_path):
    path = tmp_path / "alerts.jsonl"
    line = json.dumps(alert(41))
    path.write_text(line[:20])  # a line still being written
    tail = AlertsTail(path, 0)
    assert tail.read() == [] and tail.offset == 0
    path.write_text(line + "\n" + "not json\n")  # the rest arrives; a torn line from a crash is skipped
    assert [a["alert_id"] for a in tail.read()] == ["a-0000000000000029"] and tail.read() == []


def test_newswatch_deliver_needs_an_output_folder_with_alerts(tmp_path):
    result = run_newswatch("deliver", "--out", str(tmp_path / "nowhere"), timeout=60)
    assert result.returncode == 2 and "no alerts.jsonl there" in result.stderr


def test_what_an_older_version_still_owed_in_its_state_store_stays_owed(tmp_path):
    out = tmp_path / "out"
    raise_alerts(out, [alert(51), alert(52), alert(53)])
    with closing(StateStore(tmp_path / "state")) as store:  # the outbox table of versions before the ledger
        store._db.execute("CREATE TABLE deliveries (sink TEXT, alert_id TEXT, status TEXT, reason TEXT DEFAULT '')")
        store._db.executemany(
            "INSERT INTO deliveries (sink, alert_id, status) VALUES ('chat', ?, ?)",
            [(alert(51)["alert_id"], "delivered"), (alert(52)["alert_id"], "pending")],
        )
        pending = store.legacy_deliveries()
    adopt_legacy_outbox(out, (hook("chat"), hook("desk")), pending)
    assert [a["alert_id"] for a in owed(out, "chat")] == [alert(52)["alert_id"]]
    assert owed(out, "desk") == []  # not in the old outbox: subscribed from now on, as any new sink
    with closing(StateStore(tmp_path / "fresh")) as store:
        assert store.legacy_deliveries() is None


def test_one_worker_per_sink_and_folder_the_second_waits_for_the_first(receiver, tmp_path):
    out, sink = tmp_path / "out", hook("chat")
    first = Deliveries((sink,), out, environ={sink.url_env: receiver.hook_url("chat")}).start()
    second = Deliveries((sink,), out, environ={sink.url_env: receiver.hook_url("chat")}).start()
    raise_alerts(out, [alert(61), alert(62)])
    time.sleep(1.0)
    assert first.finish(grace_s=30) == {"chat": 0} and second.finish(grace_s=30) == {"chat": 0}
    assert sorted(a.key for a in receiver.accepted("chat")) == [alert(61)["alert_id"], alert(62)["alert_id"]]
