"""`newswatch annotate` shares the pipeline's annotation: same item, same topics and actors."""

from __future__ import annotations

import json

from tests.conftest import read_lines, run_newswatch


def test_annotate_agrees_with_the_pipeline(tmp_path):
    out = tmp_path / "out"
    assert run_newswatch("run", "--out", str(out)).returncode == 0  # the bundled feeds
    items = read_lines(out / "items.jsonl")
    assert len(items) > 20
    lines = "\n".join(json.dumps({"id": str(n), "title": i["title"], "text": i["text"]}) for n, i in enumerate(items))
    result = run_newswatch("annotate", input=lines + "\nnot json\n")
    assert result.returncode == 0, result.stderr
    annotated = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["id"] for a in annotated] == [str(n) for n in range(len(items))]
    for item, answer in zip(items, annotated, strict=True):
        assert (answer["topics"], answer["scores"], answer["actors"]) == (item["topics"], item["scores"], item["actors"])
    assert "stdin line" in result.stderr and "skipped" in result.stderr


def test_annotate_needs_no_webhook_secret(tmp_path):
    watchlist = tmp_path / "w.yaml"
    watchlist.write_text(
        "actors:\n  - {name: Sergei Lavrov, aliases: [Lavrov]}\n"
        "alerts:\n  sinks:\n    - {type: webhook, name: desk, url_env: NEWSWATCH_TEST_UNSET_HOOK}\n"
    )
    result = run_newswatch(
        "annotate", "--watchlist", str(watchlist), input='{"id": "1", "title": "Lavrov in Riyadh", "text": ""}\n'
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["actors"] == ["Sergei Lavrov"]
    assert run_newswatch("run", "--watchlist", str(watchlist), "--out", str(tmp_path / "out")).returncode == 2
