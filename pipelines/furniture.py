"""Page furniture: the lines around an article that are not the article.

Outlets and aggregators wrap a story in section names, photo captions that repeat the headline,
"you are reading <headline> at <site>" lines, related-link lists, share bars, copyright lines and
cookie notices. TOPICS.md says a topic or a name found only there carries nothing, and the
classifier and the story stage both read better without it. The rules are structural, so they
hold in any language and for sites we have never seen:
- a line that stands in several items of the same poll of one feed is the site's, not the story's;
- a line that contains the item's own headline is a caption, a repeated title or a "you are reading" line;
- a line of three words or fewer that is not a sentence is a label (section, "Photo 1", "Back to top"), and
  so is one of up to six words that opens or closes the text (a credit, a byline, a dateline);
- a short line that is not a sentence, next to another such line or to furniture, is part of it (a list of
  related links or tags, a share bar, a caption under a credit);
- a line with a copyright sign is a credit;
- a few multilingual markers (read more, lire aussi, читайте также, ...) that open a teaser line.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

LABEL_MAX_WORDS = 3
EDGE_LABEL_MAX_WORDS = 6
LIST_LINE_MAX_WORDS = 12
# A line shared by this share of a poll's items (and by two at least) is the site's own.
REPEATED_SHARE = 0.2
TITLE_MIN_WORDS = 3

_SENTENCE_END = re.compile(r"[.!?…。»”\"']\s*$")
_NON_WORD = re.compile(r"[\W_]+")
_DIGITS = re.compile(r"\d+")
_TEASER = re.compile(
    r"^\s*(?:read (?:the original article|more|also)\b|back to top|top of page|share (?:this|on)\b|sign up\b"
    r"|subscribe\b|follow us\b|advertisement\b|related(?: stories| articles)?\s*:|click here\b|continue reading\b"
    r"|this article was (?:first |originally )?published\b|lire aussi\b|lire la suite\b|leer más\b|lea también\b"
    r"|читайте также\b|читайте також\b|czytaj (?:też|także|więcej)\b|xem thêm\b|đọc thêm\b)",
    re.I,
)


def line_key(line: str) -> str:
    """A line as it compares with others: case-folded words, numbers as 0, punctuation and spacing gone."""
    return " ".join(_DIGITS.sub("0", _NON_WORD.sub(" ", line.casefold())).split())


def repeated_lines(texts: Iterable[str]) -> frozenset[str]:
    """The keys of lines that stand in at least two of a poll's item texts and in REPEATED_SHARE of them."""
    texts = list(texts)
    counts = Counter(key for text in texts for key in {line_key(line) for line in text.split("\n")} if key)
    needed = max(2, REPEATED_SHARE * len(texts))
    return frozenset(key for key, count in counts.items() if count >= needed)


def _is_sentence(line: str) -> bool:
    return bool(_SENTENCE_END.search(line))


def _words(line: str) -> int:
    return len(line_key(line).split())


def _is_listlike(line: str) -> bool:
    return _words(line) <= LIST_LINE_MAX_WORDS and not _is_sentence(line)


def furniture_lines(title: str, lines: list[str], repeated: frozenset[str] = frozenset()) -> list[bool]:
    """For each line of an item's text, whether it is furniture (see the module docstring)."""
    title_key = line_key(title)
    title_counts = len(title_key.split()) >= TITLE_MIN_WORDS
    flags, listlike = [], []
    edges = {0, len(lines) - 1}
    for at, line in enumerate(lines):
        key = line_key(line)
        listlike.append(_is_listlike(line))
        label_words = EDGE_LABEL_MAX_WORDS if at in edges else LABEL_MAX_WORDS
        flags.append(
            not key
            or key in repeated
            or (title_counts and title_key in key)
            or (len(key.split()) <= label_words and not _is_sentence(line))
            or "©" in line
            or bool(_TEASER.match(line))
        )
    # A short line that is not a sentence belongs to the furniture beside it: a list of links, a caption under
    # a credit. Spread until nothing changes (a page has few lines).
    changed = True
    while changed:
        changed = False
        for i, line_is_listlike in enumerate(listlike):
            neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(lines)]
            if not flags[i] and line_is_listlike and any(flags[j] or listlike[j] for j in neighbours):
                flags[i] = changed = True
    return flags


def strip_furniture(title: str, text: str, repeated: frozenset[str] = frozenset()) -> str:
    """`text` (one line per block) without its furniture lines."""
    lines = text.split("\n")
    return "\n".join(
        line for line, furniture in zip(lines, furniture_lines(title, lines, repeated), strict=True) if not furniture
    )
