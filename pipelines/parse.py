"""ParseEntries: a feed body -> its entries, through feedparser, guarded.

feedparser handles RSS 0.9x/1.0/2.0, Atom and RDF, repairs what it can and sets `bozo`
on what it cannot; it never expands entity bombs or external entities (see the tests),
but it can raise on some malformed input, so it is never called unguarded.
"""

from __future__ import annotations

import logging

import apache_beam as beam
import feedparser

from pipelines import telemetry
from pipelines.records import DeadLetter, FeedResponse, FeedStatus

DEAD_LETTER = "dead_letter"
STATUS = "status"
DEFAULT_MAX_ENTRIES = 500
log = logging.getLogger(__name__)


class ParseError(ValueError):
    pass


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


def parse_feed(body: bytes, content_type: str = "", max_entries: int = DEFAULT_MAX_ENTRIES) -> tuple[list[dict], int]:
    """Entries of a feed body (at most `max_entries`) and how many more were cut off; ParseError if it is not a feed."""
    if not body or not body.strip():
        raise ParseError("empty response body")
    headers = {"content-type": content_type} if content_type else {}
    try:
        parsed = feedparser.parse(body, response_headers=headers, sanitize_html=False, resolve_relative_uris=False)
    except Exception as err:  # feedparser raises assorted errors on hostile bodies
        raise ParseError(f"feed parser failed: {err.__class__.__name__}: {err}") from err
    entries = parsed.get("entries", [])
    if not entries:
        if parsed.get("bozo"):
            raise ParseError(f"not a readable feed: {parsed.get('bozo_exception')}")
        if not parsed.get("version"):
            raise ParseError("not a feed: no RSS, Atom or RDF document found")
    elif parsed.get("bozo"):
        log.info("feed parsed with problems, entries kept: %s", parsed.get("bozo_exception"))
    return [entry_fields(entry) for entry in entries[:max_entries]], max(0, len(entries) - max_entries)


class ParseEntriesFn(beam.DoFn):
    def __init__(self, max_entries: int):
        self._max_entries = max_entries

    def process(self, response: FeedResponse):
        if response.body is None:  # 304 Not Modified: nothing to parse
            telemetry.feed_fetched(response.feed, "not_modified")
            yield beam.pvalue.TaggedOutput(STATUS, FeedStatus(response.feed, True, 0, "", response.fetched_at))
            return
        try:
            entries, cut = parse_feed(response.body, response.content_type, self._max_entries)
        except ParseError as err:
            telemetry.feed_fetched(response.feed, "parse_error")
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(response.feed, response.url, "parse", str(err), response.fetched_at))
            return
        if cut:
            log.warning("feed %s: %d entries beyond the cap of %d were not read", response.feed, cut, self._max_entries)
        telemetry.feed_fetched(response.feed, "ok")
        telemetry.items_fetched(response.feed, len(entries))
        yield beam.pvalue.TaggedOutput(STATUS, FeedStatus(response.feed, True, len(entries), "", response.fetched_at))
        for entry in entries:
            yield {**entry, "feed": response.feed, "feed_url": response.url, "fetched_at": response.fetched_at}


class ParseEntries(beam.PTransform):
    """FeedResponse -> raw entry dicts (main), FeedStatus (`status`), DeadLetter (`dead_letter`)."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES):
        super().__init__()
        self._max_entries = max_entries

    def expand(self, responses):
        return responses | "Parse" >> beam.ParDo(ParseEntriesFn(self._max_entries)).with_outputs(DEAD_LETTER, STATUS, main="entries")
