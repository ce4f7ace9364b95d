"""The benchmark corpus: our labeled examples recombined into distinct feed items.

Each item takes one example's title and the texts of three examples behind a lead line of its own (a dateline and
words drawn from the whole corpus), so no two items are copies or near-copies: the story
stage compares leads and whole texts. A share of items mention a tracked actor, and a share
are republished copies of an earlier item (page furniture added, a new headline and a
tracking parameter), as syndicated stories are.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from classifiers.corpus import load_corpus
from tests.feedserver import Entry, rss

ACTORS = ("Antonio Guterres", "Vladimir Putin", "Volodymyr Zelensky", "Sergei Lavrov")
PLACES = ("Geneva", "Doha", "Nairobi", "Warsaw", "Hanoi", "Istanbul", "Cairo", "Oslo", "Bogota", "Jakarta", "Amman", "Dakar")
BASE_TIME = datetime(2026, 11, 20, tzinfo=UTC)
COPY_PARAMETER = "copy"  # a republished copy's link carries it (and keeps it through URL canonicalisation)


def is_copy(url: str) -> bool:
    return f"{COPY_PARAMETER}=" in url


@dataclass(frozen=True)
class Shape:
    actor_share: float = 0.3
    copy_share: float = 0.05


def generate(n_items: int, seed: int = 7, shape: Shape = Shape()) -> list[Entry]:
    """n_items distinct entries (plus republished copies counted within n_items)."""
    rng = random.Random(seed)
    examples = [e for e in load_corpus() if e.text]
    vocabulary = sorted({word for e in examples for word in e.text.split() if len(word) > 3 and word.isalpha()})
    entries: list[Entry] = []
    for n in range(n_items):
        if entries and rng.random() < shape.copy_share:
            original = rng.choice(entries)
            entries.append(
                Entry(
                    title="Republished: " + original.title,
                    text="<p>Photo: file</p>" + original.text + "<p>Read the original article</p>",
                    link=f"{original.link}?utm_source=rss&{COPY_PARAMETER}={n}",
                    published=original.published,
                )
            )
            continue
        # Three examples' texts: items sharing one example stay far apart (Jaccard about 1/3).
        example, *others = rng.sample(examples, 3)
        text = " ".join([example.text, *(other.text for other in others)])
        if rng.random() < shape.actor_share:
            text = f"{rng.choice(ACTORS)} commented on the events. {text}"
        place, when = rng.choice(PLACES), BASE_TIME + timedelta(minutes=n)
        lead = f"{place.upper()}, {when:%d %B %Y}, dispatch {n}: " + " ".join(rng.sample(vocabulary, 14)) + "."
        body = f"<p>{lead}</p><p>{text}</p>"
        entries.append(Entry(title=example.title, text=body, link=f"https://bench.example.org/story/{n}", published=when))
    return entries


def feeds_of(entries: list[Entry], per_feed: int) -> dict[str, bytes]:
    """Split entries into RSS documents of at most `per_feed` entries: {path: body}."""
    return {
        f"/feed-{k}.xml": rss(f"Bench feed {k}", entries[start : start + per_feed])
        for k, start in enumerate(range(0, len(entries), per_feed))
    }
