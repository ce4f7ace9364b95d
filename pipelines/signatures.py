"""Near-duplicate signatures and the copy test: plain functions, no Beam.

Two kinds of values come out of an item's normalised text (furniture already removed by
`pipelines.furniture`; titles are left out, outlets retitle):
- LSH band values (`signature`): MinHash over 3-word shingles cut into bands of `ROWS` values,
  `TEXT_BANDS` of the whole text and `LEAD_BANDS` of the lead (the first `LEAD_WORDS` words from
  the first line of prose; fewer rows per band, so an edited word or a copy shorter than the lead still
  matches). Equal band values only make two items *candidates*.
- A `Sketch` that decides whether a candidate is a copy (`is_copy`), small enough to be kept
  beside every bucket entry:
  * `text`: `TEXT_SKETCH` four-bit MinHash values of the whole text (two to a byte), from permutations of
    their own (the band rows are equal in every candidate, so they would only inflate the count); the share
    of equal values, less the 1 in 16 that agree by chance, estimates the Jaccard similarity (edited,
    furnished, lightly reworded copies);
  * `words` and `windows`: the word count from the lead on, and one byte per window of words
    (`WINDOWS`: four of five words in the lead, then 20-25, 25-31, ... words, each about 1.25 times the
    last). A trimmed copy is the beginning of its original: every window it holds is the original's.
    The shorter text is contained in the longer when the equal windows cover at least
    `threshold` (less `WINDOW_MARGIN`) of its words. Two long items that share a lead and then differ are not.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

from datasketch import MinHash

TEXT_BANDS = 3
ROWS = 3  # MinHash values per text band
LEAD_BANDS = 4
LEAD_ROWS = 2  # fewer per lead band: a word edited in the lead, or a copy shorter than the lead, still finds it
BANDS = TEXT_BANDS + LEAD_BANDS
SHINGLE_WORDS = 3
LEAD_WORDS = 20  # about a wire story's first sentence
PROSE_LINE_WORDS = 12  # shorter lines at the top (bylines, datelines, "Updated ...") are not the lead
MIN_WORDS = 12  # shorter texts (headlines, one-liners) are left to the exact steps
# Changing the seed or the shingle hash changes every band value, so the near keys stored by earlier versions stop matching.
MINHASH_SEED = 20261125
TEXT_SKETCH = 32  # four-bit MinHash values of the whole text kept to verify a text-band candidate (16 bytes)
TEXT_MARGIN = 0.12  # a candidate's estimated similarity may fall this far under the threshold (estimate noise)
# The lead and the equal windows may cover this much less than the threshold of the shorter text: an edited word
# costs its whole window (up to a fifth of the text), and the last window is partly cut off.
WINDOW_MARGIN = 0.1
# Window boundaries after the lead, each about 1.25 times the last, so a trimmed copy's last partial window is at most a
# fifth of it; beyond the last boundary only whole-text similarity counts.
WINDOWS = (0, 5, 10, 15, LEAD_WORDS, 25, 31, 39, 49, 61, 76, 95, 119, 149, 186, 232, 290, 363, 454)
MAX_WORDS = 2**16 - 1

_WORD = re.compile(r"\w+", re.UNICODE)
_COUNT = struct.Struct(">H")


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def prose_words(text: str) -> list[str]:
    """The words from the first line of prose on (bylines and datelines above it skipped)."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if len(_WORD.findall(line)) >= PROSE_LINE_WORDS), 0)
    return words_of("\n".join(lines[start:]))


def lead_of(text: str) -> list[str]:
    """The first LEAD_WORDS words, from the first line of prose."""
    return prose_words(text)[:LEAD_WORDS]


def shingles(words: list[str]) -> list[bytes]:
    count = max(1, len(words) - SHINGLE_WORDS + 1)
    return [" ".join(words[i : i + SHINGLE_WORDS]).encode("utf-8") for i in range(count)]


@lru_cache(maxsize=4)
def _permutations(num_perm: int):
    return MinHash(num_perm=num_perm, seed=MINHASH_SEED).permutations


def _minhash(words: list[str], num_perm: int):
    minhash = MinHash(num_perm=num_perm, hashfunc=zlib.crc32, permutations=_permutations(num_perm), scheme="affine32")
    minhash.update_batch(shingles(words))
    return minhash.hashvalues


def _bands(values, bands: int, rows: int) -> tuple[int, ...]:
    return tuple(
        int.from_bytes(hashlib.blake2b(values[i * rows : (i + 1) * rows].tobytes(), digest_size=4).digest(), "big")
        for i in range(bands)
    )


def band_values(words: list[str], bands: int, rows: int = ROWS) -> tuple[int, ...]:
    """`bands` 32-bit band values of the MinHash of `words`' shingles (`rows` values per band)."""
    return _bands(_minhash(words, bands * rows), bands, rows)


@dataclass(frozen=True)
class Sketch:
    """What decides whether a candidate is a copy: `text` (TEXT_SKETCH bytes) and `shape` (word count + windows)."""

    text: bytes
    shape: bytes

    @property
    def words(self) -> int:
        return _COUNT.unpack_from(self.shape)[0]


TEXT_WIDTH = TEXT_SKETCH // 2
SHAPE_WIDTH = _COUNT.size + len(WINDOWS) - 1


def _window_bytes(words: list[str]) -> bytes:
    out = bytearray()
    for start, end in zip(WINDOWS, WINDOWS[1:], strict=False):
        out.append(zlib.crc32(" ".join(words[start:end]).encode("utf-8")) & 0xFF if len(words) >= end else 0)
    return bytes(out)


def signature_and_sketch(text: str) -> tuple[tuple[int, ...], Sketch | None]:
    """TEXT_BANDS whole-text then LEAD_BANDS lead band values, and the sketch; ((), None) for a text too short."""
    words = words_of(text)
    if len(words) < MIN_WORDS:
        return (), None
    whole = _minhash(words, TEXT_BANDS * ROWS + TEXT_SKETCH)
    prose = prose_words(text)
    bands = _bands(whole, TEXT_BANDS, ROWS) + band_values(prose[:LEAD_WORDS], LEAD_BANDS, LEAD_ROWS)
    nibbles = [int(value) & 0xF for value in whole[TEXT_BANDS * ROWS :]]
    text_sketch = bytes(high << 4 | low for high, low in zip(nibbles[::2], nibbles[1::2], strict=True))
    shape = _COUNT.pack(min(len(prose), MAX_WORDS)) + _window_bytes(prose)
    return bands, Sketch(text_sketch, shape)


def signature(text: str) -> tuple[int, ...]:
    """The band values alone; () for a text too short to compare."""
    return signature_and_sketch(text)[0]


# --- the copy test ---------------------------------------------------------------------


def text_matches_needed(threshold: float) -> int:
    """Equal four-bit values that make a text-band candidate a copy: at a similarity of J, J of them are equal, and
    1 in 16 of the others by chance."""
    similarity = max(threshold - TEXT_MARGIN, 0.0)
    return max(1, math.ceil(TEXT_SKETCH * (similarity + (1 - similarity) / 16) - 1e-9))


def same_text(a: bytes, b: bytes, threshold: float) -> bool:
    """Whole-text sketches `a` and `b` estimate a similarity of at least the threshold (less the margin)."""
    equal = sum((x >> 4 == y >> 4) + (x & 0xF == y & 0xF) for x, y in zip(a, b, strict=False))
    return equal >= text_matches_needed(threshold)


def contained(a: bytes, b: bytes, threshold: float) -> bool:
    """Is the shorter of the two texts (shapes `a`, `b`) covered to `threshold` (less the margin) by the windows
    of words, from the lead on, that are equal in both, up to the second that differs? Each window is whole in the
    shorter text."""
    shorter = min(_COUNT.unpack_from(a)[0], _COUNT.unpack_from(b)[0])
    if shorter == 0:
        return False
    covered = missed = 0
    skip = _COUNT.size
    for index, (start, end) in enumerate(zip(WINDOWS, WINDOWS[1:], strict=False)):
        if end > shorter:
            break
        if a[skip + index] == b[skip + index]:
            covered += end - start
        else:  # one differing window is an edited word; after a second the texts have parted (equal bytes
            missed += 1  # further on would be chance: one in 256 each)
            if missed > 1:
                break
    return covered >= (threshold - WINDOW_MARGIN) * shorter - 1e-9


def words_in(shape: bytes) -> int:
    """The word count a shape (`Sketch.shape`) was made from."""
    return _COUNT.unpack_from(shape)[0]


def is_copy(band: int, mine: Sketch, theirs: bytes, threshold: float) -> bool:
    """An item with sketch `mine` found a bucket entry holding `theirs` in band `band`: is it a copy?"""
    if band < TEXT_BANDS:
        return same_text(mine.text, theirs, threshold)
    return contained(mine.shape, theirs, threshold)


def sketch_part(band: int, sketch: Sketch) -> bytes:
    """What a bucket entry of band `band` keeps of an item's sketch."""
    return sketch.text if band < TEXT_BANDS else sketch.shape


def part_width(band: int) -> int:
    return TEXT_WIDTH if band < TEXT_BANDS else SHAPE_WIDTH


def near_keys(bands: tuple[int, ...]) -> dict[str, str]:
    """The state-store keys of a written item's band values: {"near0": "9f3a01c2", ...}."""
    return {f"near{i}": f"{value:08x}" for i, value in enumerate(bands)}
