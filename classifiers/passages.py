"""Passages: an item's text cut into the pieces the topic model scores one by one.

A long page reports its topic in one or two paragraphs among background, quotes and other news;
scored as a whole, that paragraph is diluted by the length of the page. The model scores the
headline with each passage as well as the whole item, and a topic is asserted where any of them carries it.

Passages are disjoint spans of the text, so their counts add up to the whole item's (see
`TopicModel.predict`): paragraphs (lines), a short one joined to the next until it has
`MIN_WORDS`, a long one cut at sentence ends into pieces of at most about `MAX_WORDS`.
"""

from __future__ import annotations

import re

MIN_WORDS = 25
MAX_WORDS = 90

_SENTENCE_BREAK = re.compile(r"(?<=[.!?…。])\s+")


def _sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The sentence spans of text[start:end] (each up to and including its closing punctuation)."""
    spans, at = [], start
    for gap in _SENTENCE_BREAK.finditer(text, start, end):
        spans.append((at, gap.start()))
        at = gap.end()
    spans.append((at, end))
    return [span for span in spans if span[1] > span[0]]


def _words(text: str, start: int, end: int) -> int:
    return len(text[start:end].split())


def passage_spans(text: str) -> list[tuple[int, int]]:
    """Disjoint (start, end) spans of `text`, in order, that together hold every word of it."""
    pieces: list[tuple[int, int, int]] = []  # start, end, words
    at = 0
    for line in text.split("\n"):
        start, end = at, at + len(line)
        at = end + 1
        words = _words(text, start, end)
        if not words:
            continue
        if words <= MAX_WORDS:
            pieces.append((start, end, words))
            continue
        for s_start, s_end in _sentences(text, start, end):  # a long paragraph: sentences, packed up to MAX_WORDS
            s_words = _words(text, s_start, s_end)
            if pieces and pieces[-1][0] >= start and pieces[-1][2] + s_words <= MAX_WORDS:
                pieces[-1] = (pieces[-1][0], s_end, pieces[-1][2] + s_words)
            else:
                pieces.append((s_start, s_end, s_words))
    passages: list[tuple[int, int, int]] = []
    for start, end, words in pieces:
        if passages and passages[-1][2] < MIN_WORDS:
            passages[-1] = (passages[-1][0], end, passages[-1][2] + words)
        else:
            passages.append((start, end, words))
    if len(passages) > 1 and passages[-1][2] < MIN_WORDS:  # a short tail joins the passage before it
        tail = passages.pop()
        passages[-1] = (passages[-1][0], tail[1], passages[-1][2] + tail[2])
    return [(start, end) for start, end, _ in passages]
