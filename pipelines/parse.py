"""Parsing feed bodies, guarded, and ParseEntries: each poll's entries as elements.

feedparser handles RSS 0.9x/1.0/2.0, Atom and RDF, repairs what it can and sets `bozo`
on what it cannot; it never expands entity bombs or external entities (the tests prove it
with our own hostile fixtures), but it can raise on some malformed input, so it is never
called unguarded. `parse_feed` runs inside FetchFeeds' poll, not in a stage of its own, so
that a body which is not a feed counts as that poll's failure: the feed backs off and its
health shows it, like any other failure. ParseEntries then turns each successful poll into
its entry elements and one FeedStatus.
"""

from __future__ import annotations

import codecs
import logging
import math
from dataclasses import dataclass
from urllib.parse import urljoin

import apache_beam as beam
import charset_normalizer
import feedparser
from charset_normalizer.md import mess_ratio

from pipelines import telemetry
from pipelines.furniture import repeated_lines
from pipelines.normalise import html_to_text
from pipelines.records import FeedResponse, FeedStatus

STATUS = "status"
DEFAULT_MAX_ENTRIES = 500
FEED_LINK_TYPES = ("application/rss+xml", "application/atom+xml", "application/rdf+xml")
# The RSS syndication module's periods (sy:updatePeriod), in seconds.
SY_PERIOD_S = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400, "monthly": 30 * 86400, "yearly": 365 * 86400}
log = logging.getLogger(__name__)


class ParseError(ValueError):
    pass


@dataclass(frozen=True)
class ParsedFeed:
    """What one feed body holds: its entries (at most the cap), how many more were cut off,
    and the shortest polling interval the feed itself asks for (<ttl>, sy:updatePeriod; 0 if none)."""

    entries: list[dict]
    cut: int
    min_interval_s: float


def entry_fields(entry) -> dict:
    """The parts of a feedparser entry that Normalise uses, as plain values."""
    contents = [c.get("value", "") for c in entry.get("content", []) if c.get("value")]
    summary = entry.get("summary", "") or ""
    body = max([summary, *contents], key=len)
    published = entry.get("published_parsed") or entry.get("updated_parsed")
    return {
        "title": entry.get("title", "") or "",
        "body_html": body,
        "link": entry.get("link", "") or "",
        "guid": entry.get("id", "") or "",
        "published": tuple(published)[:6] if published else None,
    }


def _positive(value) -> float:
    """`value` as a positive finite number, else 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if 0 < number < math.inf else 0.0


def feed_min_interval_s(feed_meta: dict) -> float:
    """Seconds the feed asks readers to wait between polls: RSS <ttl> (minutes) or the syndication
    module's updatePeriod / updateFrequency, whichever is longer; 0 if it says nothing usable."""
    ttl_s = _positive(feed_meta.get("ttl")) * 60
    period_s = SY_PERIOD_S.get(str(feed_meta.get("sy_updateperiod", "")).strip().lower(), 0)
    return max(ttl_s, period_s / max(1.0, _positive(feed_meta.get("sy_updatefrequency", 1))))


def _feedparser(body: bytes, content_type: str):
    headers = {"content-type": content_type} if content_type else {}
    try:
        return feedparser.parse(body, response_headers=headers, sanitize_html=False, resolve_relative_uris=False)
    except Exception as err:  # feedparser raises assorted errors on hostile bodies
        raise ParseError(f"feed parser failed: {err.__class__.__name__}: {err}") from err


def _codec(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        return name


def repaired_charset(body: bytes, parsed) -> str | None:
    """A better encoding for a body whose declared one failed, or None.

    When the declared encoding cannot decode the body, feedparser falls back to
    windows-1252, which turns Cyrillic (say) into mojibake. We take charset-normalizer's
    guess instead, but only when its text is less garbled than feedparser's fallback."""
    used = parsed.get("encoding") or ""
    # A body that decodes as UTF-8 is UTF-8 (text/xml without a charset reports an override, harmlessly).
    if not isinstance(parsed.get("bozo_exception"), feedparser.CharacterEncodingOverride) or _codec(used) == "utf-8":
        return None
    best = charset_normalizer.from_bytes(body).best()
    if best is None or not used or _codec(best.encoding) == _codec(used):
        return None
    try:
        theirs = mess_ratio(body.decode(used, errors="replace"), maximum_threshold=1.0)
    except LookupError:
        return best.encoding
    return best.encoding if mess_ratio(str(best), maximum_threshold=1.0) < theirs else None


def _not_a_feed(parsed, base_url: str) -> str:
    """Why a body with no entries is not a feed, with the feed URL if it is a page that links to one."""
    links = [link.get("href", "") for link in parsed.get("feed", {}).get("links", []) if link.get("type") in FEED_LINK_TYPES]
    if links and links[0]:
        return f"not a feed but a web page; it links to a feed at {urljoin(base_url, links[0])}: use that URL"
    if parsed.get("bozo"):
        return f"not a readable feed: {parsed.get('bozo_exception')}"
    return "not a feed: no RSS, Atom or RDF document found"


def parse_feed(body: bytes, content_type: str = "", max_entries: int = DEFAULT_MAX_ENTRIES, base_url: str = "") -> ParsedFeed:
    """The feed in `body` (bytes as served, `content_type` as the server declared it); ParseError if it is not one."""
    if not body or not body.strip():
        raise ParseError("empty response body")
    parsed = _feedparser(body, content_type)
    charset = repaired_charset(body, parsed)
    if charset:
        log.info("feed %s declared the wrong encoding (%s); read as %s", base_url, parsed.get("bozo_exception"), charset)
        parsed = _feedparser(body, f"application/xml; charset={charset}")
    entries = parsed.get("entries", [])
    if not entries and (parsed.get("bozo") or not parsed.get("version")):
        raise ParseError(_not_a_feed(parsed, base_url))
    if entries and parsed.get("bozo"):
        log.info("feed %s parsed with problems, entries kept: %s", base_url, parsed.get("bozo_exception"))
    return ParsedFeed(
        entries=[entry_fields(entry) for entry in entries[:max_entries]],
        cut=max(0, len(entries) - max_entries),
        min_interval_s=feed_min_interval_s(parsed.get("feed", {})),
    )


class ParseEntriesFn(beam.DoFn):
    """FeedResponse -> its entry dicts (main) and one FeedStatus (`status`); a 304 has no entries."""

    def process(self, response: FeedResponse):
        entries = response.entries or ()
        if response.cut:
            log.warning(
                "feed %s: %d entries beyond the per-poll cap were not read (raise --max-entries to read them)",
                response.feed,
                response.cut,
            )
        if response.entries is not None:
            telemetry.items_fetched(response.feed, len(entries))
        yield beam.pvalue.TaggedOutput(
            STATUS, FeedStatus(response.feed, True, len(entries), "", response.fetched_at, response.cut)
        )
        # Lines that stand in several of this poll's items are the site's furniture (see pipelines.furniture).
        repeated = repeated_lines(html_to_text(entry["body_html"]) for entry in entries) if len(entries) > 1 else frozenset()
        for entry in entries:
            yield {
                **entry,
                "feed": response.feed,
                "feed_url": response.url,
                "fetched_at": response.fetched_at,
                "repeated_lines": repeated,
            }


class ParseEntries(beam.PTransform):
    """FeedResponse -> raw entry dicts (main) and FeedStatus (`status`)."""

    def expand(self, responses):
        return responses | "Parse" >> beam.ParDo(ParseEntriesFn()).with_outputs(STATUS, main="entries")
