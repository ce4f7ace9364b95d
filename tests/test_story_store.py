"""Merged stories in the state store, the story_merged record, and stories.jsonl."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.alerts import AddSourcesFn
from pipelines.records import Source
from pipelines.store import StateStore
from pipelines.stories import SourceUpdate, StoryMerged
from pipelines.story_replay import UnionFind
from pipelines.story_sink import STORIES_FILE, write_stories

IDS = [f"s-{n:016x}" for n in range(1, 7)]


def alert(alert_id: str, story: str, url: str) -> dict:
    return {"alert_id": alert_id, "story_id": story, "published": "2026-11-25T09:00:00Z", "sources": [{"feed": "f", "url": url}]}


def raise_one(store: StateStore, record: dict) -> None:
    store.raise_alert(record, lambda _: None, 0.0, 3600.0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(IDS), st.sampled_from(IDS)), max_size=8))
def test_merges_in_any_order_and_repeated_give_the_same_stories(tmp_path_factory, merges):
    expected = UnionFind()
    for a, b in merges:
        expected.union(int(a[2:], 16), int(b[2:], 16))
    for order in (merges, merges[::-1], merges + merges):
        store = StateStore(tmp_path_factory.mktemp("state"))
        for a, b in order:
            store.merge_stories(a, b)
        assert all(store.story_root(story) == f"s-{expected.find(int(story[2:], 16)):016x}" for story in IDS)
        assert all(store.merge_stories(a, b) is None for a, b in merges)  # idempotent: one story already
        store.close()


def test_merged_stories_share_their_sources_and_keep_their_alert_ids(tmp_path):
    store = StateStore(tmp_path)
    raise_one(store, alert("a-1", IDS[0], "https://a.example/1"))
    raise_one(store, alert("a-2", IDS[1], "https://b.example/1"))
    root, alerts = store.merge_stories(IDS[1], IDS[0])
    assert root == IDS[0] and [a["alert_id"] for a in alerts] == ["a-1", "a-2"]
    assert all({s["url"] for s in a["sources"]} == {"https://a.example/1", "https://b.example/1"} for a in alerts)
    changed = store.add_sources(IDS[1], [{"feed": "g", "url": "https://c.example/1"}], "2026-11-25T12:00:00Z")
    assert {a["alert_id"] for a in changed} == {"a-1", "a-2"}
    assert all(a["story_span"] == {"first_seen": "2026-11-25T09:00:00Z", "last_seen": "2026-11-25T12:00:00Z"} for a in changed)


def test_a_merge_writes_one_story_merged_record_with_the_union_of_sources(tmp_path):
    out, state = tmp_path / "out", tmp_path / "state"
    fn = AddSourcesFn(str(out), str(state), "run")
    fn.setup()
    raise_one(fn._store, alert("a-1", IDS[0], "https://a.example/1"))
    raise_one(fn._store, alert("a-2", IDS[2], "https://b.example/1"))
    fn.process(StoryMerged(IDS[0], IDS[2]))
    fn.process(StoryMerged(IDS[0], IDS[2]))  # again: nothing more
    fn.process(SourceUpdate(IDS[2], (Source("g", "https://c.example/1"),), 1_795_600_000.0))
    fn.teardown()
    lines = [json.loads(line) for line in (out / "alert_updates.jsonl").read_text().splitlines()]
    merged = [line for line in lines if line.get("event") == "story_merged"]
    assert len(merged) == 1 and merged[0]["alert_ids"] == ["a-1", "a-2"] and len(merged[0]["sources"]) == 2
    assert merged[0]["story_id"] == IDS[0] and merged[0]["merged_story_ids"] == [IDS[2]]
    assert {line["alert_id"] for line in lines[1:]} == {"a-1", "a-2"} and all(len(line["sources"]) == 3 for line in lines[1:])


def test_story_records_grow_and_merge_into_one_line_per_story(tmp_path):
    store = StateStore(tmp_path)
    store.story_grew(IDS[0], "2026-11-25T09:00:00Z", [{"feed": "wire", "url": "u1", "published": "2026-11-25T09:00:00Z"}],
                     title="First", topics=("ceasefire",), actors=("Sergei Lavrov",), items=1)  # fmt: skip
    store.story_grew(IDS[3], "2026-11-25T08:00:00Z", [{"feed": "outlet", "url": "u2", "published": "2026-11-25T08:00:00Z"}],
                     title="Earlier", topics=("humanitarian_aid",), items=1)  # fmt: skip
    store.story_grew(IDS[0], "2026-11-25T11:00:00Z", [{"feed": "other", "url": "u3", "published": "2026-11-25T11:00:00Z"}])
    store.merge_stories(IDS[0], IDS[3])
    write_stories(tmp_path / STORIES_FILE, store.story_records())
    (story,) = [json.loads(line) for line in (tmp_path / STORIES_FILE).read_text().splitlines()]
    assert story["story_id"] == IDS[0] and story["merged_story_ids"] == [IDS[3]]
    assert (story["first_seen"], story["last_seen"], story["title"]) == (
        "2026-11-25T08:00:00Z",
        "2026-11-25T11:00:00Z",
        "Earlier",
    )
    assert [s["url"] for s in story["sources"]] == ["u1", "u3", "u2"] and story["items"] == 2
    assert story["topics"] == ["ceasefire", "humanitarian_aid"] and story["actors"] == ["Sergei Lavrov"]
