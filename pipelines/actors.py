"""MatchActors: find tracked actors in an item's title and text.

`Matcher` compiles one pattern for the whole watchlist once per worker. Matching is
case- and accent-insensitive (accents are folded on Latin letters only, so Cyrillic й
stays distinct from и), whole-word, and lets surnames take the case endings of Slavic
languages: Путина, Лавровым, Putinem; Зеленського, Zełenskiego from Зеленський,
Zełenski; while Olena Zelenska (a different, feminine form) does not match Zelensky.

Role aliases ("UN chief") count only while valid on the item's publication date, and only
where they stand for the person: not inside a longer title, not before a person's name.
The search runs on an Aho-Corasick automaton, which bench/match_actors.py measured at about
twice the speed of one compiled pattern of every alias.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from functools import lru_cache

import ahocorasick
import apache_beam as beam

from pipelines import telemetry
from pipelines.config import RoleAlias, Watchlist
from pipelines.records import Annotated, Mention

# Endings added to a noun-like surname or first name (Putin -> Putina, Путин -> Путиным).
_NOUN_ENDINGS = (
    "a",
    "u",
    "owi",
    "em",
    "ie",
    "e",
    "om",
    "ovi",
    "i",
    "а",
    "у",
    "ю",
    "я",
    "ым",
    "им",
    "ом",
    "ем",
    "е",
    "і",
    "ові",
    "еві",
)
# Masculine adjective-like surnames change their ending (Зеленский -> Зеленского); the
# feminine endings (-ska, -ская, -ська) are left out on purpose: they name another person.
_ADJECTIVE_STEMS = re.compile(r"(sk|ck|ck)(?:yy|yi|iy|ij|i|y)$|(ськ|ск|цк|цьк)(?:ий|ый|ой)$")
_ADJECTIVE_ENDINGS = (
    "i",
    "y",
    "yy",
    "yi",
    "iy",
    "ij",
    "iego",
    "iemu",
    "im",
    "ego",
    "emu",
    "ogo",
    "omu",
    "ym",
    "ий",
    "ый",
    "ого",
    "ому",
    "им",
    "ым",
    "ом",
    "ім",
)


_HYPHENS = "-‐‑"
# A word just before a role that makes it another title (a deputy, a former holder): whole words, and stems
# (folded) so that inflected forms (заместителя, бывшего, zastępcy, byłego) count too.
_QUALIFIER_WORDS = frozenset({"deputy", "under", "assistant", "vice", "former", "ex", "acting", "interim", "экс", "екс", "wice"})
_QUALIFIER_STEMS = ("замест", "замглав", "бывш", "заступник", "колишн", "zastep", "był")
# A role named as someone else's relation to its holder: "the UN chief's predecessor", "the predecessor of the
# UN chief", "предшественник генсека ООН". Folded stems, so inflected forms count (предшественника, poprzednika).
_RELATION_STEMS = (
    "predecess",
    "successor",
    "predecesseur",
    "successeur",
    "predecesor",
    "sucesor",
    "предшествен",
    "преемник",
    "попередник",
    "наступник",
    "poprzedni",
    "nastepc",
    "następc",
    "tien nhiem",
    "ke nhiem",
)
_RELATION_BEFORE = re.compile(r"(?:^|\W)(" + "|".join(map(re.escape, _RELATION_STEMS)) + r")\w*(?:\s+\w+){0,3}\s+$")
_RELATION_AFTER = re.compile(r"(?:['’]s)?\s+(?:\w+\s+)?(?:" + "|".join(map(re.escape, _RELATION_STEMS)) + ")")
_SEPARATORS = re.compile(r"[\s\-‐‑]+")
_PREVIOUS_WORD = re.compile(r"(\w+)\s+$")
# The word right before a surname, in the original text, with what precedes it (to tell a sentence's first word).
_WORD_BEFORE = re.compile(r"(^|[.!?:;«»\"“”(\n—–-])?\s*([^\W\d_][^\W\d_'’]*)\s+$")
# Honorifics and office words that may stand capitalised before a surname ("Mr Lavrov", "Premier Putin", "Ông Putin"),
# besides the words of the watchlist's own roles. Folded.
_TITLE_WORDS = frozenset(
    "mr mrs ms mme m dr sir herr pan pani senor sr don ong ba ngai господин пан пани товарищ president premier minister "
    "chancellor chief leader head envoy foreign prime secretary general kremlin monday tuesday wednesday thursday friday "
    "saturday sunday january february march april may june july august september october november december".split()
)
_NEXT_WORD = re.compile(r"[ \t\u00a0]+(\w)")
_LONG_WORD = re.compile(r"[^\W\d_]{4,}")


# Latin letters that Unicode does not decompose but that feeds written without diacritics replace all the same.
_UNDECOMPOSED = {"đ": "d", "Đ": "d", "ł": "l", "Ł": "l"}


def _fold_char(char: str) -> str:
    if char in _UNDECOMPOSED:
        return _UNDECOMPOSED[char]
    decomposed = unicodedata.normalize("NFKD", char)
    if decomposed and ord(decomposed[0]) < 0x250:
        char = "".join(c for c in decomposed if not unicodedata.combining(c))
    else:
        char = unicodedata.normalize("NFKC", char)
    return char.casefold()


class _FoldTable(dict):
    """Character -> folded string, for `str.translate`, filled in as characters are first seen."""

    def __missing__(self, code: int) -> str:
        if len(self) >= 65_536:  # bounded: a stream can carry any character
            self.clear()
        folded = self[code] = _fold_char(chr(code))
        return folded


_FOLD_TABLE = _FoldTable()


def fold(text: str) -> tuple[str, Sequence[int]]:
    """Case- and (Latin) accent-folded text, with each folded character's index in the original."""
    if text.isascii():  # most English text: folding is lower-casing, one character for one
        return text.lower(), range(len(text))
    folded = text.translate(_FOLD_TABLE)
    if len(folded) == len(text):  # no character folded to two (every one folds to at least one)
        return folded, range(len(text))
    origin: list[int] = []
    for index, char in enumerate(text):
        origin.extend([index] * len(_FOLD_TABLE[ord(char)]))
    return folded, origin


def _token_parts(token: str) -> tuple[str, str]:
    """A folded alias word as its fixed stem and the pattern of the endings it may take."""
    stem = _ADJECTIVE_STEMS.search(token)
    if stem:
        return token[: stem.start()] + (stem.group(1) or stem.group(2)), "(?:" + "|".join(
            map(re.escape, _ADJECTIVE_ENDINGS)
        ) + ")"
    if len(token) >= 4 and token.isalpha():
        return token, "(?:" + "|".join(map(re.escape, _NOUN_ENDINGS)) + ")?"
    return token, ""


def _alias_tokens(alias: str) -> list[str]:
    return [token for token in _SEPARATORS.split(fold(alias)[0].strip()) if token]


def alias_pattern(alias: str) -> str:
    """The pattern of an alias in folded text: its words with their endings, any run of spaces or hyphens between."""
    return _SEPARATORS.pattern.join(re.escape(stem) + endings for stem, endings in map(_token_parts, _alias_tokens(alias)))


@dataclass(frozen=True)
class _Entry:
    actor: str
    alias: str
    role: RoleAlias | None = None


class Matcher:
    """Every alias of the watchlist, found in one pass: an Aho-Corasick automaton (pyahocorasick) finds where
    an alias's first stem starts a word, and that alias's own pattern confirms the rest (later words, case
    endings, the word's end). Built once per worker; `find` returns the mentions in one field."""

    def __init__(self, watchlist: Watchlist):
        entries = [_Entry(actor.name, alias) for actor in watchlist.actors for alias in actor.aliases]
        # An actor's given names (every word but the last of a many-word name alias), and every word of every role:
        # a capitalised word before a lone surname that is neither names someone else ("Kirill Lavrov").
        self._given = {
            actor.name: {token for alias in actor.aliases for token in _alias_tokens(alias)[:-1]} for actor in watchlist.actors
        }
        self._titles = _TITLE_WORDS | {
            token for actor in watchlist.actors for role in actor.roles for token in _alias_tokens(role.text)
        }
        entries += [_Entry(actor.name, role.text, role) for actor in watchlist.actors for role in actor.roles]
        # Longer aliases first, so "Vladimir Putin" wins over "Putin" at the same place.
        entries.sort(key=lambda entry: -len(entry.alias))
        self._entries = entries
        self._confirm = [re.compile(alias_pattern(entry.alias) + r"(?!\w)") for entry in entries]
        by_stem: dict[str, list[int]] = {}
        for index, entry in enumerate(entries):
            by_stem.setdefault(_token_parts(_alias_tokens(entry.alias)[0])[0], []).append(index)
        self._automaton = ahocorasick.Automaton()
        for stem, indexes in by_stem.items():
            self._automaton.add_word(stem, (len(stem), indexes))
        self._automaton.make_automaton()

    def find(self, text: str, field: str = "text", published: float | None = None) -> list[Mention]:
        """Mentions of watchlist actors in `text`, in order. A role alias counts only if valid on the UTC date
        of `published` (epoch seconds; None: today), is no part of a longer title and is not followed by a name;
        a name, only where it is the actor (see `_names_the_actor` and `without_namesakes`)."""
        return without_namesakes(*self.scan(text, field, published))

    def scan(self, text: str, field: str, published: float | None) -> tuple[list[Mention], set[str]]:
        """The mentions in `text`, and the actors a namesake of whom it names ("Kirill Lavrov")."""
        folded, origin = fold(text)
        day = datetime.fromtimestamp(time.time() if published is None else published, tz=UTC).date()
        found = self._spans(folded, day)
        names_at = {start for start, _, entry in found if entry.role is None}
        title_cased = _title_cased(text)
        mentions, namesakes = [], set()
        for at, until, entry in found:
            if entry.role and not _stands_alone(text, folded, origin, at, until, names_at):
                continue
            if entry.role is None and not self._names_the_actor(text, origin[at], entry, title_cased):
                if text[origin[at]].isupper():
                    namesakes.add(entry.actor)
                continue
            start, end = origin[at], origin[until - 1] + 1
            mentions.append(
                Mention(actor=entry.actor, alias=entry.alias, span=text[start:end], start=start, end=end, field=field)
            )
        return mentions, namesakes

    def _names_the_actor(self, text: str, start: int, entry: _Entry, title_cased: bool) -> bool:
        """Whether a name alias found at text[start:] is the actor: a name is capitalised (a lower-case "poutine" or
        "лавровый" is a dish or a leaf), and a lone surname right after someone else's given name is that person
        ("Kirill Lavrov", "Андрей Лавров"); a title, an honorific or a sentence's first word may stand there."""
        if text[start].islower() and not text.islower():
            return False
        if _names_a_thing(text, start):
            return False
        if title_cased or len(_alias_tokens(entry.alias)) > 1:
            return True
        before = _WORD_BEFORE.search(text, max(0, start - 40), start)
        if not before or before.group(1) is not None or before.start(2) == 0:
            return True  # nothing before it, or the first word of a sentence
        word = before.group(2)
        if not (word[0].isupper() and word[1:].islower()):
            return True  # lower case, or an acronym (МИД, UN)
        folded_word = fold(word)[0]
        # Given names decline too (Сергієм, Siergieja): a shared stem is enough.
        return folded_word in self._titles or any(
            folded_word.startswith(name[: max(3, len(name) - 2)]) for name in self._given[entry.actor]
        )

    def _spans(self, folded: str, day: date) -> list[tuple[int, int, _Entry]]:
        """(start, end, entry) of every alias found in folded text, role aliases only where valid on `day`: at each
        start the first entry (longest alias) that matches there, then leftmost first and never overlapping."""
        best: dict[int, tuple[int, int]] = {}
        for last, (length, indexes) in self._automaton.iter(folded):
            start = last - length + 1
            if start and (folded[start - 1].isalnum() or folded[start - 1] == "_"):
                continue  # inside a word
            for index in indexes:
                role = self._entries[index].role
                if (
                    index < best.get(start, (len(self._entries),))[0]
                    and (role is None or role.valid_on(day))
                    and (match := self._confirm[index].match(folded, start))
                ):
                    best[start] = (index, match.end())
                    break
        spans, reach = [], 0
        for start in sorted(best):
            index, end = best[start]
            if start >= reach:
                spans.append((start, end, self._entries[index]))
                reach = end
        return spans


# Words that make a name next to them the name of a place or an idea: "Putin Avenue", "проспект Путина",
# "chủ nghĩa Putin" (Putinism). Folded; Vietnamese ones written without their marks.
_THING_WORDS = frozenset(
    "avenue street boulevard square prospekt rue place calle avenida plaza ulica aleja plac pho duong".split()
)
# Cyrillic ones decline (проспекта, вулиці): their stems.
_THING_STEMS = ("проспект", "улиц", "площад", "бульвар", "вулиц", "майдан")
_THING_PHRASES = ("dai lo", "quang truong", "chu nghia")
_AROUND = re.compile(r"(\w+(?:\s+\w+)?)\s+$")


def _names_a_thing(text: str, start: int) -> bool:
    """Whether the name starting at text[start] stands in a place name or an -ism (see _THING_WORDS), or alone
    in quotation marks as a brand or a title («Лавров»)."""
    before = _AROUND.search(fold(text[max(0, start - 30) : start])[0])
    after = fold(text[start : start + 60])[0].split()
    if before:
        words = before.group(1).split()
        if words[-1] in _THING_WORDS or words[-1].startswith(_THING_STEMS) or " ".join(words) in _THING_PHRASES:
            return True
    if len(after) > 1 and re.sub(r"\W", "", after[1]) in _THING_WORDS and not re.search(r"[.,;:!?]$", after[0]):
        return True
    return start > 0 and text[start - 1] in '«“"„' and bool(re.match(r"\w+[»”\"]", text[start:]))


def _stands_alone(text: str, folded: str, origin: Sequence[int], start: int, end: int, names_at: set[int]) -> bool:
    """Whether a role found at start:end of the folded text is the role itself: not inside a longer title
    ("Deputy UN chief", "Under-Secretary-General", "Secretary-General-designate"), not named as another
    person's relation to it ("the UN chief's predecessor"), and not a title followed by a person's name ("UN chief Ban Ki-moon"; a name followed it if a capitalised word does,
    or, in a Title-Cased Headline where every word is capitalised, if a watchlist name does)."""
    if (start >= 2 and folded[start - 1] in _HYPHENS and folded[start - 2].isalnum()) or (
        end + 1 < len(folded) and folded[end] in _HYPHENS and folded[end + 1].isalnum()
    ):
        return False
    before = _PREVIOUS_WORD.search(folded, max(0, start - 40), start)
    if before and (before.group(1) in _QUALIFIER_WORDS or before.group(1).startswith(_QUALIFIER_STEMS)):
        return False
    if _RELATION_BEFORE.search(folded, max(0, start - 60), start) or _RELATION_AFTER.match(folded, end):
        return False
    after = _NEXT_WORD.match(folded, end)
    if not after:
        return True
    if after.start(1) in names_at:
        return False
    return not (text[origin[after.start(1)]].isupper() and not _title_cased(text))


def _title_cased(text: str) -> bool:
    """A Title-Cased Headline: no word of four letters or more starts in lower case (a sentence always has one)."""
    words = _LONG_WORD.findall(text)
    return len(words) >= 3 and all(word[0].isupper() for word in words)


@lru_cache(maxsize=8)
def _matcher(watchlist: Watchlist) -> Matcher:
    return Matcher(watchlist)


def match_actors(text: str, watchlist: Watchlist, field: str = "text", published: float | None = None) -> list[Mention]:
    """Mentions (actor, alias, span, offsets) of watchlist actors in `text`; see `Matcher.find`."""
    return _matcher(watchlist).find(text, field, published)


def without_namesakes(mentions: list[Mention], namesakes: set[str]) -> list[Mention]:
    """An item that names someone else with an actor's surname ("Kirill Lavrov") means that person by the bare
    surname too ("Lavrov died in 2007"), unless it also names the actor in full or by a role."""
    if not namesakes:
        return mentions
    certain = {m.actor for m in mentions if len(m.alias.split()) > 1}
    return [m for m in mentions if m.actor not in namesakes or m.actor in certain]


def mentions_in(matcher: Matcher, title: str, text: str, published: float | None = None) -> tuple[Mention, ...]:
    """The mentions in an item's title and text, namesakes judged over both (see `without_namesakes`)."""
    in_title, title_namesakes = matcher.scan(title, "title", published)
    in_text, text_namesakes = matcher.scan(text, "text", published)
    return tuple(without_namesakes(in_title + in_text, title_namesakes | text_namesakes))


class MatchActorsFn(beam.DoFn):
    def __init__(self, watchlist: Watchlist):
        self._watchlist = watchlist

    def setup(self):
        self._matcher = Matcher(self._watchlist)

    def process(self, annotated: Annotated):
        item = annotated.item
        result = replace(annotated, mentions=mentions_in(self._matcher, item.title, item.text, item.published))
        telemetry.actors_mentioned(result.actors, result.topics)
        yield result


class MatchActors(beam.PTransform):
    """Annotated -> Annotated with `mentions` (actor, alias, span and offsets in title or text)."""

    def __init__(self, watchlist: Watchlist):
        super().__init__()
        self._watchlist = watchlist

    def expand(self, annotated):
        return annotated | "Match" >> beam.ParDo(MatchActorsFn(self._watchlist))
