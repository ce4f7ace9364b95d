"""Normalisation as plain functions: text, URLs, fingerprints, times."""

from __future__ import annotations

import pytest

from pipelines.furniture import strip_furniture
from pipelines.normalise import (
    NormaliseError,
    canonical_url,
    fingerprint,
    html_to_text,
    normalise_entry,
    publication_time,
)


def test_html_to_text_unescapes_and_drops_scripts_and_styles():
    html = (
        "<p>Talks&nbsp;in Gen&egrave;ve &amp; Doha &#8220;soon&#8221;</p><script>alert(1)</script>"
        "<style>p{}</style><img src=x onerror=alert(2)><p>Second <b>para</b></p>"
    )
    assert html_to_text(html) == "Talks in Genève & Doha “soon”\nSecond para"


@pytest.mark.parametrize(
    "url, expected",
    [
        (
            "HTTPS://WWW.Example.org:443/World/Story/?utm_source=rss&utm_medium=feed&id=7#top",
            "https://example.org/World/Story?id=7",
        ),
        ("http://example.org:8080/a/?b=2&a=1&fbclid=x&gclid=y", "http://example.org:8080/a?a=1&b=2"),
        ("https://amp.example.org/amp/news/story", "https://example.org/news/story"),
        ("https://m.example.org/news/story.amp.html", "https://example.org/news/story.html"),
        ("https://example.org/", "https://example.org/"),
        ("javascript:alert(1)", ""),
        ("ftp://example.org/file", ""),
        ("not a url", ""),
        ("http://[::1", ""),
    ],
)
def test_canonical_url(url, expected):
    assert canonical_url(url) == expected


def test_fingerprint_ignores_case_punctuation_and_page_furniture():
    body = "The ceasefire took effect at noon on Sunday, officials said, and both sides pulled back heavy guns."
    wrapped = strip_furniture("Headline A", "Photo: file\n" + body.upper().replace(",", " ;") + "\nRead more: other news")
    assert fingerprint("Headline A", body) == fingerprint("Another headline", wrapped)
    assert fingerprint("Headline A", body) != fingerprint("Headline A", body.replace("noon", "midnight"))


def test_short_bodies_fingerprint_with_their_title():
    assert fingerprint("Truce agreed in the north", "") != fingerprint("Truce collapses in the north", "")


def test_publication_time_falls_back_to_fetch_time_and_flags_it():
    fetched = 1_800_000_000.0
    assert publication_time((2026, 11, 25, 9, 0, 0), fetched) == (1795597200.0, False)
    assert publication_time(None, fetched) == (fetched, True)
    assert publication_time((2099, 1, 1, 0, 0, 0), fetched) == (fetched, True)


def test_normalise_entry_gives_stable_identity_without_link_or_guid():
    raw = {
        "feed": "f",
        "title": "<b>Aid</b> arrives",
        "body_html": "<p>Trucks crossed.</p>",
        "link": "",
        "guid": "",
        "published": None,
        "fetched_at": 1_700_000_000.0,
    }
    first, again = normalise_entry(raw), normalise_entry(dict(raw, fetched_at=1_700_000_100.0))
    assert first.title == "Aid arrives" and first.text == "Trucks crossed." and first.published_estimated
    assert first.identity_key == again.identity_key and first.fingerprint == again.fingerprint


def test_entry_without_title_or_text_is_rejected():
    with pytest.raises(NormaliseError, match="neither a title nor any text"):
        normalise_entry(
            {
                "feed": "f",
                "title": "",
                "body_html": "<script>x</script>",
                "link": "",
                "guid": "",
                "published": None,
                "fetched_at": 0.0,
            }
        )
