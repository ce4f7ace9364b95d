"""The story stage replayed in one process with the band steps' own functions, no runner.

`replay` runs items through the band steps in any order per step (a runner may process each
step's input in a different order), then `decide`, and returns the partition the outputs stand
for: each item's story after every merge. The property tests permute orders with it; the story
benchmark measures state size with it. Ids are the items' provisional ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pipelines.buckets import Shard, shard_of
from pipelines.records import Item
from pipelines.signatures import BANDS
from pipelines.story_rules import Pending, StorySettings, band_step, joined_story, merged_stories, sign


class UnionFind:
    """Story ids joined into stories; the root of a set is its smallest id."""

    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, key: int) -> int:
        root = key
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(key, key) != root:  # path compression
            self.parent[key], key = root, self.parent[key]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class Replay:
    pendings: list[Pending]
    stories: UnionFind = field(default_factory=UnionFind)
    shards: dict[int, dict[int, Shard]] = field(default_factory=dict)  # band -> shard number -> shard
    dropped: int = 0

    def story_of(self, index: int) -> int:
        return self.stories.find(self.pendings[index].own)

    def partition(self) -> frozenset[frozenset[int]]:
        """The stories as sets of item indexes."""
        groups: dict[int, set[int]] = {}
        for index in range(len(self.pendings)):
            groups.setdefault(self.story_of(index), set()).add(index)
        return frozenset(frozenset(group) for group in groups.values())


def replay(items: Sequence[Item], settings: StorySettings = StorySettings(), orders: Sequence[Sequence[int]] = ()) -> Replay:
    """Items (unique after the exact steps) -> their stories. `orders[band]` is the order in which band step `band`
    sees the items (default: as given)."""
    run = Replay([sign(item) for item in items])
    for band in range(BANDS):
        by_shard = run.shards.setdefault(band, {})
        for index in orders[band] if band < len(orders) else range(len(items)):
            pending = run.pendings[index]
            if not pending.bands:
                continue
            key = shard_of(pending.bands[band])
            by_shard[key], run.pendings[index], dropped = band_step(by_shard.get(key), pending, band, set(), settings)
            run.dropped += dropped
    for pending in run.pendings:
        joined = joined_story(pending, settings)
        if joined is not None:
            for story in {joined, *merged_stories(pending, settings)}:
                run.stories.union(pending.own, story)
    return run
