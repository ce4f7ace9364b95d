"""Parsing feed bodies: feedparser, guarded, against ordinary and hostile feeds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipelines.parse import ParseError, feed_min_interval_s, parse_feed

FEEDS = Path(__file__).resolve().parent.parent / "pipelines" / "defaults" / "feeds"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize(
    "path, count",
    [
        (FEEDS / "wire-world.xml", 12),
        (FEEDS / "eurasia-monitor.atom", 8),
        (FEEDS / "relief-bulletin.rdf", 6),
        (FIXTURES / "rss091.xml", 2),
    ],
)
def test_rss_atom_and_rdf_entries(path, count):
    parsed = parse_feed(path.read_bytes())
    assert len(parsed.entries) == count and parsed.cut == 0
    assert all(e["title"] and e["link"].startswith("https://") for e in parsed.entries)


def test_entry_cap_counts_the_rest():
    parsed = parse_feed((FEEDS / "wire-world.xml").read_bytes(), max_entries=5)
    assert (len(parsed.entries), parsed.cut) == (5, 7)


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"", "empty response body"),
        (b"   \n", "empty response body"),
        (b"<html><body><p>Our homepage</p></body></html>", "not a"),
        (b"\x00\x9f\x13binary noise\xff", "not a"),
        (b'{"items": [{"title": "a JSON document"}]}', "not a"),
    ],
)
def test_bodies_that_are_not_feeds_are_rejected_with_a_reason(body, reason):
    with pytest.raises(ParseError, match=reason):
        parse_feed(body)


def test_a_web_page_that_links_to_its_feed_says_where_the_feed_is():
    page = b'<html><head><link rel="alternate" type="application/rss+xml" href="/news/rss.xml"></head><body>Hi</body></html>'
    with pytest.raises(ParseError, match=r"links to a feed at https://example\.org/news/rss\.xml"):
        parse_feed(page, "text/html", base_url="https://example.org/news/")


@pytest.mark.parametrize(
    "meta, seconds",
    [
        ({"ttl": "15"}, 900.0),
        ({"sy_updateperiod": "hourly", "sy_updatefrequency": "2"}, 1800.0),
        ({"sy_updateperiod": "daily"}, 86400.0),
        ({"ttl": "5", "sy_updateperiod": "hourly"}, 3600.0),  # the longer of the two
        ({"ttl": "soon"}, 0.0),
        ({"ttl": "-3"}, 0.0),
        ({"ttl": "nan"}, 0.0),
        ({"sy_updateperiod": "fortnightly"}, 0.0),
        ({}, 0.0),
    ],
)
def test_the_feed_s_own_polling_interval(meta, seconds):
    assert feed_min_interval_s(meta) == seconds


def test_ttl_is_read_from_the_channel():
    assert parse_feed((FEEDS / "wire-world.xml").read_bytes()).min_interval_s == 900.0  # <ttl>15</ttl>
    assert parse_feed((FIXTURES / "rss091.xml").read_bytes()).min_interval_s == 0.0


def test_a_wrong_declared_charset_is_repaired():
    # Saved as windows-1251, declared utf-8: feedparser alone would read it as windows-1252 mojibake.
    parsed = parse_feed((FIXTURES / "wrong-charset.xml").read_bytes(), "application/rss+xml")
    assert parsed.entries[0]["title"] == "Лавров прибыл в Эр-Рияд на переговоры о прекращении огня"
    assert "Сергей Лавров" in parsed.entries[0]["body_html"]


@pytest.mark.parametrize(
    "declared, content_type",
    [
        ("iso-8859-1", ""),  # utf-8 body, a latin-1 declaration
        ("utf-8", "application/rss+xml; charset=iso-8859-1"),  # utf-8 body, a latin-1 HTTP header
        ("windows-1252", "text/xml"),
    ],
)
def test_utf8_bodies_under_a_wrong_label_stay_readable(declared, content_type):
    body = (
        f'<?xml version="1.0" encoding="{declared}"?><rss version="2.0"><channel><title>t</title><item>'
        "<title>Зеленський у Женеві — café</title><link>https://example.org/a</link></item></channel></rss>"
    ).encode()
    assert parse_feed(body, content_type).entries[0]["title"] == "Зеленський у Женеві — café"


def test_a_latin1_body_declared_utf8_is_read_as_latin1():
    body = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title><item>'
        "<title>Le secrétaire général arrive à Genève</title><link>https://example.org/a</link></item></channel></rss>"
    ).encode("latin-1")
    assert parse_feed(body).entries[0]["title"] == "Le secrétaire général arrive à Genève"


def test_an_entity_bomb_does_not_expand_and_the_entry_is_kept():
    started = time.monotonic()
    parsed = parse_feed((FIXTURES / "entity-bomb.xml").read_bytes())
    assert time.monotonic() - started < 5  # a generous bound: expanding would take minutes and gigabytes
    (only,) = parsed.entries
    assert only["title"].startswith("Port authority extends night shifts")
    assert "lollol" not in only["title"] + only["body_html"] and len(only["body_html"]) < 500


def test_external_entities_are_never_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-TOKEN-5e1f0c", encoding="utf-8")
    body = (FIXTURES / "external-entity.xml").read_text(encoding="utf-8").replace("@SECRET_PATH@", str(secret)).encode()
    parsed = parse_feed(body)
    assert parsed.entries[0]["title"].startswith("Council approves new bus route")
    assert "SECRET-TOKEN" not in repr(parsed)


def test_missing_links_guids_and_dates_are_left_for_normalise():
    parsed = parse_feed((FIXTURES / "missing-fields.xml").read_bytes())
    assert [(e["link"], e["guid"]) for e in parsed.entries] == [("", "")] * 3
    assert [e["published"] for e in parsed.entries] == [None, (2099, 1, 1, 9, 0, 0), None]
