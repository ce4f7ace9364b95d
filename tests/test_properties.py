"""Property-based tests of the pure functions that read strangers' text."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipelines.actors import match_actors
from pipelines.config import DEFAULT_WATCHLIST, load_watchlist
from pipelines.furniture import strip_furniture
from pipelines.normalise import canonical_url, fingerprint, html_to_text, normalise_entry

WATCHLIST = load_watchlist(DEFAULT_WATCHLIST)
urls = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda scheme, host, path, query: f"{scheme}://{host}/{path}?{query}",
        st.sampled_from(["http", "https", "HTTP", "ftp"]),
        st.from_regex(r"[A-Za-z0-9.-]{1,20}(:[0-9]{1,5})?", fullmatch=True),
        st.text(max_size=30),
        st.text(max_size=30),
    ),
)


@given(urls)
@example("http://0/ ")  # found by hypothesis: whitespace in a path segment
@example("HTTP://.")
def test_canonical_url_is_idempotent_and_only_http(url):
    once = canonical_url(url)
    assert canonical_url(once) == once
    assert once == "" or once.startswith(("http://", "https://"))


@settings(max_examples=300)
@given(st.text(), st.text())
def test_normalisation_never_raises_on_arbitrary_unicode(title, body):
    text = strip_furniture(title, html_to_text(body))
    assert "<script" not in text.lower() or "<script" in body.lower()
    fingerprint(title, text)
    try:
        normalise_entry(
            {
                "feed": "f",
                "title": title,
                "body_html": body,
                "link": title,
                "guid": body[:10],
                "published": None,
                "fetched_at": 0.0,
            }
        )
    except ValueError as err:  # NormaliseError: an entry with no text at all, a dead letter
        assert "neither a title nor any text" in str(err)


@settings(max_examples=300)
@given(
    st.text(alphabet=st.characters(), max_size=300)
    | st.builds(lambda a, b: f"{a} Путина {b} Zełenskiego {a}", st.text(max_size=40), st.text(max_size=40))
)
def test_actor_matching_never_raises_and_spans_are_inside_the_text(text):
    for mention in match_actors(text, WATCHLIST):
        assert 0 <= mention.start < mention.end <= len(text)
        assert text[mention.start : mention.end] == mention.span
