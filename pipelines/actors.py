"""MatchActors: find tracked actors in an item's title and text.

`Matcher` compiles one pattern for the whole watchlist once per worker. Matching is
case- and accent-insensitive (accents are folded on Latin letters only, so Cyrillic й
stays distinct from и), whole-word, and lets surnames take the case endings of Slavic
languages: Путина, Лавровым, Putinem; Зеленського, Zełenskiego from Зеленський,
Zełenski; while Olena Zelenska (a different, feminine form) does not match Zelensky.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace
from functools import lru_cache

import apache_beam as beam

from pipelines import telemetry
from pipelines.config import Watchlist
from pipelines.records import Annotated, Mention

# Endings added to a noun-like surname or first name (Putin -> Putina, Путин -> Путиным).
_NOUN_ENDINGS = ("a", "u", "owi", "em", "ie", "e", "om", "ovi", "i",
                 "а", "у", "ю", "я", "ым", "им", "ом", "ем", "е", "і", "ові", "еві")
# Masculine adjective-like surnames change their ending (Зеленский -> Зеленского); the
# feminine endings (-ska, -ская, -ська) are left out on purpose: they name another person.
_ADJECTIVE_STEMS = re.compile(r"(sk|ck|ck)(?:yy|yi|iy|ij|i|y)$|(ськ|ск|цк|цьк)(?:ий|ый|ой)$")
_ADJECTIVE_ENDINGS = ("i", "y", "yy", "yi", "iy", "ij", "iego", "iemu", "im", "ego", "emu", "ogo", "omu", "ym",
                      "ий", "ый", "ого", "ому", "им", "ым", "ом", "ім")


def fold(text: str) -> tuple[str, list[int]]:
    """Case- and (Latin) accent-folded text, with each folded character's index in the original."""
    folded: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        decomposed = unicodedata.normalize("NFKD", char)
        if decomposed and ord(decomposed[0]) < 0x250:
            char = "".join(c for c in decomposed if not unicodedata.combining(c))
        else:
            char = unicodedata.normalize("NFKC", char)
        for out in char.casefold():
            folded.append(out)
            origin.append(index)
    return "".join(folded), origin


def _token_pattern(token: str) -> str:
    stem = _ADJECTIVE_STEMS.search(token)
    if stem:
        base = token[: stem.start()] + (stem.group(1) or stem.group(2))
        return re.escape(base) + "(?:" + "|".join(map(re.escape, _ADJECTIVE_ENDINGS)) + ")"
    if len(token) >= 4 and token.isalpha():
        return re.escape(token) + "(?:" + "|".join(map(re.escape, _NOUN_ENDINGS)) + ")?"
    return re.escape(token)


def alias_pattern(alias: str) -> str:
    tokens = re.split(r"[\s\-‐‑]+", fold(alias)[0].strip())
    return r"[\s\-‐‑]+".join(_token_pattern(token) for token in tokens if token)


class Matcher:
    def __init__(self, watchlist: Watchlist):
        entries = [(actor.name, alias) for actor in watchlist.actors for alias in actor.aliases]
        # Longer aliases first, so "Vladimir Putin" wins over "Putin" at the same place.
        entries.sort(key=lambda entry: -len(entry[1]))
        self._entries = entries
        alternatives = [f"(?P<a{i}>{alias_pattern(alias)})" for i, (_, alias) in enumerate(entries)]
        self._pattern = re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)")

    def find(self, text: str, field: str = "text") -> list[Mention]:
        folded, origin = fold(text)
        mentions = []
        for match in self._pattern.finditer(folded):
            actor, alias = self._entries[int(match.lastgroup[1:])]
            start, end = origin[match.start()], origin[match.end() - 1] + 1
            mentions.append(Mention(actor=actor, alias=alias, span=text[start:end], start=start, end=end, field=field))
        return mentions


@lru_cache(maxsize=8)
def _matcher(watchlist: Watchlist) -> Matcher:
    return Matcher(watchlist)


def match_actors(text: str, watchlist: Watchlist, field: str = "text") -> list[Mention]:
    return _matcher(watchlist).find(text, field)


def mentions_in(matcher: Matcher, title: str, text: str) -> tuple[Mention, ...]:
    return tuple(matcher.find(title, "title") + matcher.find(text, "text"))


class MatchActorsFn(beam.DoFn):
    def __init__(self, watchlist: Watchlist):
        self._watchlist = watchlist

    def setup(self):
        self._matcher = Matcher(self._watchlist)

    def process(self, annotated: Annotated):
        mentions = mentions_in(self._matcher, annotated.item.title, annotated.item.text)
        result = replace(annotated, mentions=mentions)
        telemetry.actors_mentioned(result.actors, result.topics)
        yield result


class MatchActors(beam.PTransform):
    """Annotated -> Annotated with `mentions` (actor, alias, span and offsets in title or text)."""

    def __init__(self, watchlist: Watchlist):
        super().__init__()
        self._watchlist = watchlist

    def expand(self, annotated):
        return annotated | "Match" >> beam.ParDo(MatchActorsFn(self._watchlist))
