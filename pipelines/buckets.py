"""What the story steps keep in state, as plain functions: packed entries per key, shards of keys, expiry.

An entry is (story id, expiry in epoch seconds), packed in 12 bytes, followed in the band steps by
`width` bytes of the registering item's sketch (`pipelines.signatures.sketch_part`). A `Shard` is
what one state key of a step holds: the packed entries of many keys (band values, story ids or
exact-dedup keys), and the earliest expiry among them, when the key's timer is due.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

# State keys per step. Each key holds a shard of the step's entries, so the state spreads over up
# to this many workers, and a bundle touches at most this many keys: the FnApiRunner spends about a
# millisecond on each state key a bundle writes (it sizes cached state by walking every loaded module).
SHARDS = 64
# A bucket keeps at most this many stories (the latest to expire): a band value that many items share
# (a boilerplate paragraph repeated by a feed) is capped, never scanned in full; the rest count in a metric.
BUCKET_CAP = 48
SKETCHES_PER_STORY = 3  # entries one story may hold in one bucket, each with another item's sketch

_ENTRY = struct.Struct(">QI")
_MAX_EXPIRY = 2**32 - 1

Entry = tuple[int, int, bytes]  # (story, expiry in epoch seconds, sketch bytes: b"" where the step keeps none)


def shard_of(key: int | str) -> int:
    """The state key (0 to SHARDS - 1) whose shard holds `key`: a band value, story id or exact-dedup key."""
    if isinstance(key, str):
        key = zlib.crc32(key.encode("utf-8"))
    return key % SHARDS


def story_id(story: int) -> str:
    return f"s-{story:016x}"


def story_int(story_id_text: str) -> int:
    return int(story_id_text[2:], 16)


def decode_entries(blob: bytes | None, width: int = 0) -> list[Entry]:
    if not blob:
        return []
    size = _ENTRY.size + width
    out = []
    for offset in range(0, len(blob), size):
        story, expiry = _ENTRY.unpack_from(blob, offset)
        out.append((story, expiry, blob[offset + _ENTRY.size : offset + size]))
    return out


def encode_entries(entries: list[Entry]) -> bytes:
    return b"".join(_ENTRY.pack(story, expiry) + sketch for story, expiry, sketch in entries)


def expiry_at(published_s: float, horizon_s: float) -> int:
    return int(min(max(published_s + horizon_s, 0), _MAX_EXPIRY))


def live(entries: list[Entry], now_s: float) -> list[Entry]:
    return [entry for entry in entries if entry[1] > now_s]


@dataclass(frozen=True)
class Shard:
    entries: dict
    earliest: int


def entries_in(shard: Shard | None, key, now_s: float, width: int = 0) -> list[Entry]:
    """The live entries of `key` in `shard`."""
    return live(decode_entries(shard.entries.get(key), width), now_s) if shard else []


def with_entries(shard: Shard | None, key, entries: list[Entry]) -> Shard:
    """`shard` with `key`'s entries replaced (a copy: state values are not changed in place)."""
    earliest = min(until for _, until, _ in entries)
    if shard is None:
        return Shard({key: encode_entries(entries)}, earliest)
    return Shard({**shard.entries, key: encode_entries(entries)}, min(shard.earliest, earliest))


def after_timer(shard: Shard | None, clock_s: float, fired_s: float, width: int = 0) -> tuple[Shard | None, int | None]:
    """A timer fired at `fired_s` on `shard`; the data has reached `clock_s`.

    -> the entries still live (None: clear the state) and when to fire next (None: not again).
    Entries the data has not passed stay, however early the timer fired; the timer is only
    re-armed for a later time, since the FnApiRunner fires again at once whatever the time.
    """
    kept = {key: live(decode_entries(blob, width), clock_s) for key, blob in (shard.entries if shard else {}).items()}
    kept = {key: entries for key, entries in kept.items() if entries}
    if not kept:
        return None, None
    next_due = min(until for entries in kept.values() for _, until, _ in entries)
    return Shard({key: encode_entries(entries) for key, entries in kept.items()}, next_due), (
        next_due if next_due > fired_s else None
    )


def register(entries: list[Entry], story: int, expiry: int, sketch: bytes = b"", cap: int = 0) -> tuple[list[Entry], int]:
    """The bucket with `story` in it until at least `expiry`, and how many entries a full bucket (`cap`, 0: no cap)
    dropped to make room: those that expire first. A story keeps up to SKETCHES_PER_STORY entries, each with the
    sketch of another of its items (a trimmed copy may only be contained in the original, not in an edited copy)."""
    mine = [kept for known, _, kept in entries if known == story]
    entries = [(known, max(until, expiry) if known == story else until, kept) for known, until, kept in entries]
    if sketch in mine or (mine and (len(mine) >= SKETCHES_PER_STORY or not sketch)):
        return entries, 0
    entries = [*entries, (story, expiry, sketch)]
    if not cap or len(entries) <= cap:
        return entries, 0
    ranked = sorted(range(len(entries)), key=lambda i: entries[i][1], reverse=True)[:cap]
    return [entries[i] for i in sorted(ranked)], len(entries) - cap
