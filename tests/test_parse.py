"""ParseEntries' pure core: feedparser, guarded."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.parse import ParseError, parse_feed

FEEDS = Path(__file__).resolve().parent.parent / "pipelines" / "defaults" / "feeds"


@pytest.mark.parametrize("name, count", [("wire-world.xml", 12), ("eurasia-monitor.atom", 8), ("relief-bulletin.rdf", 6)])
def test_rss_atom_and_rdf_entries(name, count):
    entries, cut = parse_feed((FEEDS / name).read_bytes())
    assert len(entries) == count and cut == 0
    assert all(e["title"] and e["link"].startswith("https://") and e["published"] for e in entries)


def test_entry_cap_counts_the_rest():
    entries, cut = parse_feed((FEEDS / "wire-world.xml").read_bytes(), max_entries=5)
    assert (len(entries), cut) == (5, 7)


@pytest.mark.parametrize("body, reason", [
    (b"", "empty response body"),
    (b"   \n", "empty response body"),
    (b"<html><body><p>Our homepage</p></body></html>", "not a"),
    (b"\x00\x9f\x13binary noise\xff", "not a"),
])
def test_bodies_that_are_not_feeds_are_rejected_with_a_reason(body, reason):
    with pytest.raises(ParseError, match=reason):
        parse_feed(body)
