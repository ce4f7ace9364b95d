"""Generated items for the story benchmark, with the true story of each (our own generator, real sentences).

Sentences come from our labelled corpus (`classifiers/data/corpus`, every language), so texts read like news
and share words the way news does. `specs(n)` describes n items in four groups:
- wire stories (15% of stories), each published by the wire and republished twice by other outlets, each copy
  changed in one to three ways: retitled, wrapped in furniture, trimmed to its first one or two paragraphs,
  lightly edited (one word replaced);
- distinct articles (their own sentences) with a background paragraph drawn from a small shared pool, and one
  in five opening with a lead sentence that other articles open with too;
- boilerplate feeds: five feeds that put the same paragraph at the top of every item;
- `sentence_specs(n)`: the sentence-sharing replay, n items of six sentences drawn from the whole pool, so
  items share single sentences (often their first) but no two are copies.
`entry(spec)` renders a spec as the raw entry that Normalise reads. Read orders: `ordered(specs, order)`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

from classifiers.corpus import load_corpus
from pipelines.furniture import repeated_lines
from pipelines.normalise import html_to_text, normalise_entry

PUBLISHED = 1_795_597_200.0  # 2026-11-25 09:00 UTC
ORDERS = ("wire-first", "wire-last", "shuffled")
WIRE_SHARE = 0.15  # of stories; each has three items
BOILERPLATE_SHARE = 0.15  # of items
BOILERPLATE_FEEDS = 5
FURNITURE = (
    ("Business", "From our correspondents", "You are reading the article {title} on outlet{n}.example"),
    ("World news", "Photo: Reuters", "{title} - Photo 1"),
    ("Share this article", "Read more: latest headlines", "Back to top"),
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_PROSE = re.compile(r"[^\n|]+[.!?]")


@lru_cache(maxsize=1)
def sentences() -> tuple[str, ...]:
    """Every one-line sentence of at least eight words in the corpus (none of its own furniture), in a fixed order."""
    found = {s.strip() for record in load_corpus() for s in _SENTENCE.split(record.text)}
    return tuple(sorted(s for s in found if len(s.split()) >= 8 and _PROSE.fullmatch(s) and "Photo" not in s))


@dataclass(frozen=True)
class Spec:
    """One item: its true story, whether it is a copy, its feed, title and paragraphs (sentences joined)."""

    truth: str
    copy: bool
    feed: str
    title: str
    paragraphs: tuple[str, ...]
    published: float
    furniture: int = -1  # index in FURNITURE, or -1


def _paragraphs(rng: random.Random, count: int) -> list[str]:
    pool = sentences()
    return [" ".join(rng.choice(pool) for _ in range(rng.randint(2, 4))) for _ in range(count)]


def _copy(rng: random.Random, original: Spec, outlet: int) -> Spec:
    """A republished copy: one to three of retitled, furnished, trimmed, edited."""
    changes = rng.sample(("retitled", "furnished", "trimmed", "edited"), rng.randint(1, 3))
    paragraphs = list(original.paragraphs)
    if "trimmed" in changes:
        paragraphs = paragraphs[: rng.randint(1, 2)]
    if "edited" in changes:  # one word replaced, as a copy editor would
        where = rng.randrange(len(paragraphs))
        words = paragraphs[where].split()
        words[rng.randrange(len(words))] = rng.choice(("reportedly", "officials", "Tuesday", "several", "nearly"))
        paragraphs[where] = " ".join(words)
    title = f"{original.title} ({outlet})" if "retitled" in changes else original.title
    furniture = rng.randrange(len(FURNITURE)) if "furnished" in changes else -1
    published = original.published + rng.randint(600, 7200)
    return Spec(original.truth, True, f"outlet{outlet}", title, tuple(paragraphs), published, furniture)


def specs(n: int, seed: int = 16) -> list[Spec]:
    """About n items: wire stories with two copies each, distinct articles, boilerplate-feed items."""
    rng = random.Random(seed)
    boilerplate = [_paragraphs(rng, 1)[0] for _ in range(BOILERPLATE_FEEDS)]
    background = _paragraphs(rng, max(10, n // 50))
    shared_leads = [rng.choice(sentences()) for _ in range(max(5, n // 100))]
    out: list[Spec] = []
    n_boilerplate = int(n * BOILERPLATE_SHARE)
    n_stories = n - n_boilerplate
    n_wire = int(n_stories * WIRE_SHARE / (1 + 2 * WIRE_SHARE))
    for i in range(n_wire):
        original = Spec(f"w{i}", False, "wire", f"Wire story {i}", tuple(_paragraphs(rng, rng.randint(3, 7))), PUBLISHED + 60 * i)
        out += [original, _copy(rng, original, 1), _copy(rng, original, 2)]
    for i in range(n_stories - 3 * n_wire):
        paragraphs = _paragraphs(rng, rng.randint(2, 6))
        paragraphs.insert(rng.randint(1, len(paragraphs)), rng.choice(background))
        if rng.random() < 0.2:
            paragraphs[0] = rng.choice(shared_leads) + " " + paragraphs[0]
        out.append(Spec(f"d{i}", False, f"outlet{3 + i % 20}", f"Article {i}", tuple(paragraphs), PUBLISHED + 30 * i))
    for i in range(n_boilerplate):
        feed = i % BOILERPLATE_FEEDS
        paragraphs = (boilerplate[feed], *_paragraphs(rng, rng.randint(1, 4)))
        out.append(Spec(f"b{i}", False, f"boilerplate{feed}", f"Feed item {i}", paragraphs, PUBLISHED + 20 * i))
    return out


def sentence_specs(n: int, seed: int = 17) -> list[Spec]:
    """The sentence-sharing replay: n distinct items of six sentences each from the whole pool."""
    rng = random.Random(seed)
    pool = sentences()
    return [
        Spec(f"r{i}", False, f"feed{i % 6}", f"Item {i}", (" ".join(rng.choice(pool) for _ in range(6)),), PUBLISHED + i)
        for i in range(n)
    ]


def ordered(items: list[Spec], order: str, seed: int = 3) -> list[Spec]:
    """The items in a read order: the wire feed first, the wire feed last, or shuffled."""
    if order == "wire-first":
        return sorted(items, key=lambda spec: spec.feed != "wire")
    if order == "wire-last":
        return sorted(items, key=lambda spec: spec.feed == "wire")
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    return shuffled


def url_of(spec: Spec, index: int) -> str:
    return f"https://{spec.feed}.example.org/{spec.truth}/{index}"


def entry(spec: Spec, index: int) -> dict:
    """The raw entry Normalise reads (published None: the fetch time stands in)."""
    paragraphs = list(spec.paragraphs)
    if spec.furniture >= 0:
        top = [line.format(title=spec.title, n=spec.feed) for line in FURNITURE[spec.furniture]]
        paragraphs = [*top, *paragraphs, "Share this article"]
    return {
        "feed": spec.feed,
        "title": spec.title,
        "link": url_of(spec, index),
        "body_html": "".join(f"<p>{p}</p>" for p in paragraphs),
        "guid": "",
        "published": None,
        "fetched_at": spec.published,
    }


POLL_ITEMS = 100  # a feed's items are read in polls of this many, as ParseEntries reads them


def items(specs: list[Spec]):
    """The specs as normalised Items, in order: each feed's lines repeated within a poll are its furniture."""
    entries = [entry(spec, index) for index, spec in enumerate(specs)]
    by_feed: dict[str, list[dict]] = {}
    for raw in entries:
        by_feed.setdefault(raw["feed"], []).append(raw)
    for feed_entries in by_feed.values():
        for start in range(0, len(feed_entries), POLL_ITEMS):
            poll = feed_entries[start : start + POLL_ITEMS]
            repeated = repeated_lines(html_to_text(raw["body_html"]) for raw in poll) if len(poll) > 1 else frozenset()
            for raw in poll:
                raw["repeated_lines"] = repeated
    for raw in entries:
        yield normalise_entry(raw)
