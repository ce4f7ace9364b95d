"""Actor matching throughput: pipelines.actors.Matcher (pyahocorasick finds where an alias's first stem starts
a word, the alias's own pattern confirms it) against one compiled `re` alternation of every alias pattern.

    .venv/bin/python bench/match_actors.py [--repeat 5] [--copies 20]

Texts: the labeled corpus (title and text of every item, 8 languages), repeated `--copies` times.
Prints items/s, mentions/s and MB/s for each, the median of `--repeat` runs, and checks that both
find exactly the same mentions. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from pipelines.actors import Matcher, alias_pattern
from pipelines.config import DEFAULT_WATCHLIST, load_watchlist

CORPUS = Path(__file__).resolve().parent.parent / "classifiers" / "data" / "corpus"
PUBLISHED = 1_795_597_200.0  # 2026-11-25: every role of the default watchlist is valid


class OnePatternMatcher(Matcher):
    """The same matcher with its alias search done by one compiled alternation of every alias pattern (those
    valid on PUBLISHED: an alternation cannot skip a role outside its dates at match time)."""

    def __init__(self, watchlist):
        super().__init__(watchlist)
        day = datetime.fromtimestamp(PUBLISHED, tz=UTC).date()
        alternatives = [
            f"(?P<a{i}>{alias_pattern(entry.alias)})"
            for i, entry in enumerate(self._entries)
            if entry.role is None or entry.role.valid_on(day)
        ]
        self._pattern = re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)")

    def _spans(self, folded: str, day):
        return [(match.start(), match.end(), self._entries[int(match.lastgroup[1:])]) for match in self._pattern.finditer(folded)]


def corpus_texts(copies: int) -> list[tuple[str, str]]:
    texts = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            texts.append((record["title"], record["text"]))
    return texts * copies


def measure(matcher: Matcher, texts: list[tuple[str, str]], repeat: int) -> tuple[float, int, list]:
    """Median seconds over `repeat` runs, the number of mentions, and the mentions of the last run."""
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        mentions = [matcher.find(title, "title", PUBLISHED) + matcher.find(text, "text", PUBLISHED) for title, text in texts]
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), sum(map(len, mentions)), mentions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--copies", type=int, default=20)
    args = parser.parse_args()
    watchlist = load_watchlist(DEFAULT_WATCHLIST, environ={})
    texts = corpus_texts(args.copies)
    megabytes = sum(len(title.encode()) + len(text.encode()) for title, text in texts) / 1e6
    results = {}
    for name, matcher in (("pyahocorasick + confirm", Matcher(watchlist)), ("one re alternation", OnePatternMatcher(watchlist))):
        seconds, count, mentions = measure(matcher, texts, args.repeat)
        results[name] = mentions
        print(
            f"{name:24s} {len(texts) / seconds:9,.0f} items/s {count / seconds:9,.0f} mentions/s "
            f"{megabytes / seconds:6.2f} MB/s  ({len(texts):,} items, {megabytes:.1f} MB, {count:,} mentions, median of {args.repeat})"
        )
    first, second = results.values()
    print("same mentions from both:", first == second)


if __name__ == "__main__":
    main()
