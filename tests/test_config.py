"""Config validation: every error names the file, the line, the entry and the fix."""

from __future__ import annotations

import pytest

from pipelines.config import ConfigError, load_feeds, load_watchlist


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_feeds_load_with_defaults_and_relative_files(tmp_path):
    write(tmp_path, "local.xml", "<rss/>")
    feeds = load_feeds(
        write(
            tmp_path,
            "feeds.yaml",
            """
feeds:
  - {name: wire, url: "https://example.org/rss", interval: 30}
  - {name: local, url: local.xml}
""",
        )
    )
    assert [(f.name, f.interval_s, f.is_local_file) for f in feeds] == [("wire", 30.0, False), ("local", 300.0, True)]
    assert feeds[1].url == str(tmp_path / "local.xml")


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("feeds:\n  - name: a\n    url: http://x/a\n    intervl: 5\n", 2, "unknown key(s) ['intervl']"),
        ("feeds:\n  - {name: a, url: http://x/a}\n  - {name: a, url: http://x/b}\n", 3, "feed 'a': duplicate name"),
        ("feeds:\n  - {name: a, url: missing.xml}\n", 2, "does not exist"),
        ("feeds:\n  - {name: a, url: http://x/a, interval: 0.1}\n", 2, "`interval` must be a number of at least 1.0"),
        ("feeds:\n  - {name: a, url: 'javascript:alert(1)'}\n", 2, "scheme 'javascript' is not allowed"),
        ("feeds: []\n", 1, "non-empty list"),
        ("feeds:\n  - {name: a, url: [1, 2]}\n", 2, "`url` must be a non-empty string"),
        ("feeds: [\n", 2, "not valid YAML"),
    ],
)
def test_feed_errors_name_file_line_and_fix(tmp_path, text, line, message):
    path = write(tmp_path, "feeds.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_feeds(path)
    assert str(err.value).startswith(f"{path}:{line}:")
    assert message in str(err.value)


def test_watchlist_loads_aliases_and_alert_rules(tmp_path):
    watchlist = load_watchlist(
        write(
            tmp_path,
            "w.yaml",
            """
actors:
  - name: Sergei Lavrov
    aliases: [Lavrov, Лавров]
alerts:
  topics: [ceasefire]
  min_score: 0.7
""",
        )
    )
    assert watchlist.actors[0].aliases == ("Sergei Lavrov", "Lavrov", "Лавров")
    assert watchlist.alerts.topics == ("ceasefire",) and watchlist.alerts.min_score == 0.7


@pytest.mark.parametrize(
    "text, message",
    [
        ("actors: []\n", "non-empty list"),
        ("actors:\n  - {name: A, alias: [x]}\n", "unknown key(s) ['alias']"),
        ("actors:\n  - {name: A}\n  - {name: A}\n", "listed twice"),
        ("actors:\n  - {name: A, aliases: [x, '']}\n", "list of non-empty strings"),
        (
            "actors:\n  - {name: A}\nalerts: {topics: [weather]}\n",
            "drawn from ['ceasefire', 'humanitarian_aid', 'diplomatic_visit']",
        ),
        ("actors:\n  - {name: A}\nalerts: {min_score: 3}\n", "between 0 and 1"),
    ],
)
def test_watchlist_errors(tmp_path, text, message):
    path = write(tmp_path, "w.yaml", text)
    with pytest.raises(ConfigError, match=str(path)) as err:
        load_watchlist(path)
    assert message in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_feeds(tmp_path / "nope.yaml")
