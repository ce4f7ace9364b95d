"""The alert rule and the alert record, as plain functions."""

from __future__ import annotations

from contextlib import closing
from dataclasses import replace

from pipelines.alerts import alert_id_of, build_alert
from pipelines.config import AlertRules
from pipelines.records import Annotated, Item, Mention, Source, iso_utc
from pipelines.store import StateStore

ITEM = Item(
    feed="wire",
    url="https://wire.example.org/a",
    guid="",
    title="Lavrov in Riyadh",
    text="Talks on a truce.",
    published=1_795_597_200.0,
    published_estimated=False,
    fetched_at=1_795_600_000.0,
    identity_key="i1",
    fingerprint="f1",
    story_id="s-1",
    sources=(Source("wire", "https://wire.example.org/a"),),
)
LAVROV = Mention(actor="Sergei Lavrov", alias="Lavrov", span="Lavrov", start=0, end=6, field="title")
ANNOTATED = Annotated(
    item=ITEM,
    topics=("ceasefire", "diplomatic_visit"),
    scores={"ceasefire": 0.91, "humanitarian_aid": 0.02, "diplomatic_visit": 0.62},
    terms={"ceasefire": ["truce"], "diplomatic_visit": ["in riyadh"]},
    mentions=(LAVROV,),
)


def test_alert_carries_the_contract_fields_and_evidence():
    alert = build_alert(ANNOTATED, AlertRules())
    assert alert["alert_id"] == alert_id_of("s-1", ["Sergei Lavrov"], ["ceasefire", "diplomatic_visit"])
    assert alert["published"] == "2026-11-25T09:00:00Z"
    assert alert["topics"] == ["ceasefire", "diplomatic_visit"] and alert["actors"] == ["Sergei Lavrov"]
    assert alert["sources"] == [{"feed": "wire", "url": "https://wire.example.org/a"}]
    assert alert["evidence"]["actors"][0]["span"] == "Lavrov"
    assert alert["evidence"]["topics"] == {"ceasefire": ["truce"], "diplomatic_visit": ["in riyadh"]}


def test_alert_needs_an_actor_and_an_alert_topic():
    assert build_alert(replace(ANNOTATED, mentions=()), AlertRules()) is None
    assert build_alert(replace(ANNOTATED, topics=()), AlertRules()) is None
    assert build_alert(ANNOTATED, AlertRules(topics=("humanitarian_aid",))) is None


def test_min_score_drops_weak_topics_from_the_alert():
    alert = build_alert(ANNOTATED, AlertRules(min_score=0.8))
    assert alert["topics"] == ["ceasefire"] and list(alert["evidence"]["topics"]) == ["ceasefire"]
    assert build_alert(ANNOTATED, AlertRules(min_score=0.95)) is None


def test_alert_id_depends_on_story_actor_set_and_topic_set_only():
    assert alert_id_of("s-1", ["B", "A"], ["y", "x"]) == alert_id_of("s-1", ["A", "B"], ["x", "y"])
    assert alert_id_of("s-1", ["A"], ["x"]) != alert_id_of("s-2", ["A"], ["x"])
    assert alert_id_of("s-1", ["A"], ["x"]) != alert_id_of("s-1", ["A", "B"], ["x"])


def test_an_alert_key_raises_again_only_for_a_copy_published_a_window_later(tmp_path):
    """The window runs on publication time: replays of old copies never re-alert, and each occurrence has its own id."""
    alert = build_alert(ANNOTATED, AlertRules())
    day, written = 24 * 3600.0, []
    with closing(StateStore(tmp_path / "state")) as store:

        def raise_at(hours: float):
            published = ITEM.published + hours * 3600
            raised = store.raise_alert({**alert, "published": iso_utc(published)}, written.append, published, day)
            return raised and raised["alert_id"]

        key = alert["alert_id"]
        assert [raise_at(h) for h in (0, 1, 23.9, 24, 30, 47.9, 48)] == [key, None, None, f"{key}-2", None, None, f"{key}-3"]
        assert [a["alert_id"] for a in written] == [key, f"{key}-2", f"{key}-3"]
    with closing(StateStore(tmp_path / "fresh")) as store:  # a new state dir that adopts the alerts file
        store.adopt_alerts(written)
        assert store.raise_alert(alert, written.append, ITEM.published + 50 * 3600, day) is None
