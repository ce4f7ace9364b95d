"""The shapes of the elements that flow between stages, written down once.

FetchFeeds emits `FeedResponse`s (parsed entries), ParseEntries raw entry dicts, Normalise `Item`s,
Deduplicate `Item`s with their story and sources, ClassifyTopics and MatchActors
`Annotated`s, EmitAlerts alert dicts. Anything that fails becomes a `DeadLetter`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime


def iso_utc(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class FeedResponse:
    """One successful poll of one feed: its parsed entries (at most the per-poll cap, `cut` more
    left unread), or None when the server said 304 Not Modified."""

    feed: str
    url: str
    fetched_at: float
    entries: tuple[dict, ...] | None
    cut: int = 0


@dataclass(frozen=True)
class DeadLetter:
    feed: str
    url: str
    stage: str  # fetch, parse, normalise, deliver
    reason: str
    at: float
    # True for a rejected entry (it counts in `dead_letter_items`), False for a failed feed poll.
    is_item: bool = False

    def to_json(self) -> dict:
        return {"feed": self.feed, "url": self.url, "stage": self.stage, "reason": self.reason, "time": iso_utc(self.at)}


@dataclass(frozen=True)
class Source:
    feed: str
    url: str


@dataclass(frozen=True)
class Item:
    """A normalised entry: clean text, canonical URL, UTC times, and its dedup keys."""

    feed: str
    url: str
    guid: str
    title: str
    text: str
    published: float
    published_estimated: bool  # True where the feed gave no usable date and fetch time stands in
    fetched_at: float
    identity_key: str  # the same entry seen again (canonical URL, else feed + GUID, else content)
    fingerprint: str  # the same content under another URL or headline
    story_id: str = ""
    sources: tuple[Source, ...] = ()
    near_bands: tuple[int, ...] = ()  # its near-duplicate band values (stories.signature), once Deduplicate has them


@dataclass(frozen=True)
class Mention:
    actor: str
    alias: str
    span: str
    start: int  # offsets of `span` in the item's `field`
    end: int
    field: str = "text"  # title or text


@dataclass(frozen=True)
class Annotated:
    item: Item
    topics: tuple[str, ...]
    scores: dict[str, float]
    terms: dict[str, list[str]] = field(default_factory=dict)
    mentions: tuple[Mention, ...] = ()
    passages: dict[str, tuple[int, int]] = field(default_factory=dict)  # topic -> span of the text that carries it

    @property
    def actors(self) -> list[str]:
        return sorted({mention.actor for mention in self.mentions})

    def to_json(self) -> dict:
        item = self.item
        return {
            "item_id": item.identity_key,
            "fingerprint": item.fingerprint,
            "story_id": item.story_id,
            "title": item.title,
            "url": item.url,
            "feed": item.feed,
            "published": iso_utc(item.published),
            "published_estimated": item.published_estimated,
            "text": item.text,
            "topics": list(self.topics),
            "scores": self.scores,
            "actors": self.actors,
            "sources": [asdict(source) for source in item.sources],
            "evidence": {
                "actors": [asdict(mention) for mention in self.mentions],
                "topics": {topic: self.terms.get(topic, []) for topic in self.topics},
                "passages": {
                    topic: {"start": start, "end": end, "field": "text" if end else "title"}
                    for topic, (start, end) in self.passages.items()
                    if topic in self.topics
                },
            },
        }


@dataclass(frozen=True)
class FeedStatus:
    """The outcome of one poll of one feed, for the summary's feed health."""

    feed: str
    ok: bool
    entries: int
    error: str
    at: float
    cut: int = 0  # entries beyond the per-poll cap, not read
