"""A kill between writing an output line and committing it to the store loses nothing and doubles nothing."""

from __future__ import annotations

import json
import sqlite3

import pytest

from pipelines.sinks import JsonLines, read_json_lines
from pipelines.store import DB_NAME, StateError, StateStore
from tests.conftest import read_lines, run_newswatch
from tests.test_cli_e2e import feeds_config, serve_world


def test_a_torn_last_line_is_ended_not_merged_with_the_next_record(tmp_path):
    path = tmp_path / "alerts.jsonl"
    path.write_bytes(b'{"alert_id": "a-1"}\n{"alert_id": "a-2", "tit')  # killed mid-write
    JsonLines(path).write({"alert_id": "a-3"})
    assert [r["alert_id"] for r in read_json_lines(path)] == ["a-1", "a-3"]


def test_lines_written_but_not_committed_are_taken_over_at_the_next_start(tmp_path, feed_server):
    serve_world(feed_server)
    feeds, out, state = feeds_config(tmp_path, feed_server), tmp_path / "out", tmp_path / "state"
    args = ("run", "--feeds", str(feeds), "--out", str(out), "--state-dir", str(state))
    assert run_newswatch(*args).returncode == 0
    items, alerts = read_lines(out / "items.jsonl"), read_lines(out / "alerts.jsonl")
    # As if the process had been killed after writing every line but before any store commit.
    with sqlite3.connect(state / DB_NAME) as db:
        db.execute("DELETE FROM seen")
        db.execute("DELETE FROM sink_offsets")
        db.execute("DELETE FROM alerts")
    result = run_newswatch(*args)
    assert result.returncode == 0, result.stderr
    assert read_lines(out / "items.jsonl") == items
    assert read_lines(out / "alerts.jsonl") == alerts
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unique"] == 0 and summary["alerts"] == 0


def test_a_corrupt_state_database_is_an_error_naming_the_file_and_the_way_out(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(StateError) as err:
        StateStore(tmp_path)
    assert str(tmp_path / DB_NAME) in str(err.value) and "move it aside" in str(err.value)
    result = run_newswatch("run", "--state-dir", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "move it aside" in result.stderr
