"""Every alert an end-to-end run emits validates against pipelines/schemas/alert.schema.json."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from pipelines.config import DEFAULT_FEEDS, load_feeds
from tests.conftest import ROOT, read_lines, run_newswatch, write_yaml
from tests.feedserver import rss
from tests.stories import AID_CONVOY, CEASEFIRE_TALKS, NEW_TRUCE, entry

SCHEMA_PATH = ROOT / "pipelines" / "schemas" / "alert.schema.json"


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_schema_refuses_what_the_contract_forbids():
    schema = validator()
    good = {
        "alert_id": "a-0123456789abcdef",
        "story_id": "s-1",
        "title": "t",
        "url": "https://x.example/a",
        "feed": "f",
        "published": "2026-11-25T09:00:00Z",
        "topics": ["ceasefire"],
        "scores": {"ceasefire": 0.9},
        "actors": ["A"],
        "sources": [{"feed": "f", "url": "https://x.example/a"}],
        "raised_at": "2026-11-25T09:00:01Z",
        "evidence": {
            "actors": [{"actor": "A", "alias": "A", "span": "A", "start": 0, "end": 1, "field": "title"}],
            "topics": {"ceasefire": ["truce"]},
        },
    }
    assert schema.is_valid(good) and schema.is_valid({**good, "alert_id": "a-0123456789abcdef-2"})
    for bad in (
        {**good, "url": "javascript:alert(1)"},
        {**good, "topics": ["weather"]},
        {**good, "actors": []},
        {**good, "published": "25/11/2026"},
        {**good, "alert_id": "a-1"},
    ):
        assert not schema.is_valid(bad)


def test_every_alert_of_an_end_to_end_run_validates(tmp_path: Path, feed_server):
    """The bundled feeds (eight languages) and loopback feeds of our fixture stories, in one batch run."""
    feed_server.serve(
        "/wire.xml",
        rss(
            "Wire",
            [
                entry(CEASEFIRE_TALKS, "https://wire.example.org/lavrov-riyadh"),
                entry(NEW_TRUCE, "https://wire.example.org/easter-truce"),
            ],
        ),
    )
    feed_server.serve(
        "/outlet.xml",
        rss(
            "Outlet",
            [
                entry(AID_CONVOY, "https://outlet.example.com/darfur?utm_source=rss"),
                entry(CEASEFIRE_TALKS, "https://outlet.example.com/riyadh", wrap=True),
            ],
        ),
    )
    feeds = [{"name": feed.name, "url": feed.url} for feed in load_feeds(DEFAULT_FEEDS)]
    feeds += [{"name": name, "url": feed_server.url(f"/{name}.xml")} for name in ("wire", "outlet")]
    out = tmp_path / "out"
    result = run_newswatch("run", "--feeds", str(write_yaml(tmp_path / "feeds.yaml", {"feeds": feeds})), "--out", str(out))
    assert result.returncode == 0, result.stderr
    alerts = read_lines(out / "alerts.jsonl")
    assert len(alerts) >= 10
    schema = validator()
    problems = [
        f"{alert['alert_id']}: {error.json_path}: {error.message}" for alert in alerts for error in schema.iter_errors(alert)
    ]
    assert problems == []
    assert len({alert["alert_id"] for alert in alerts}) == len(alerts)
