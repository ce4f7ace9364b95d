"""The labeled data: JSON lines, one example a line, in two sets kept apart.

- The training corpus, classifiers/data/corpus/: mostly short items in our own words; the model is
  fitted on its train and validation parts, its test part is held out.
- The development set, classifiers/data/dev/: items in the forms real feeds deliver them (long pages,
  bare headlines, machine-translated text, aggregator copies with furniture, live blogs, word-sense
  negatives). Never fitted on: thresholds are chosen on its validation half, quality is measured on
  its test half.

Each example has `id`, `lang`, `form`, `title`, `text` and `labels` (a subset of TOPICS); a development
item may carry a `note` on why it is labeled so. Splits are fixed by a hash of the id, so adding
examples never moves an existing one from a held-out part into training or tuning.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifiers import TOPICS
from pipelines.furniture import strip_furniture

CORPUS_DIR = Path(__file__).parent / "data" / "corpus"
DEV_DIR = Path(__file__).parent / "data" / "dev"
FORMS = ("headline", "summary", "lead", "page")
DEV_FORMS = ("page", "headline", "translated", "aggregator", "liveblog", "negative")
# Shares of the hash space: 70% train, 15% validation, 15% held-out test.
SPLIT_BOUNDS = (("train", 0.70), ("validation", 0.85), ("test", 1.0))
# The development set: half to choose thresholds on, half held out for the quality figures.
DEV_SPLIT_BOUNDS = (("validation", 0.5), ("test", 1.0))


class CorpusError(ValueError):
    """A corpus line that does not have the documented shape."""


@dataclass(frozen=True)
class Example:
    id: str
    lang: str
    form: str
    title: str
    text: str
    labels: tuple[str, ...]

    @property
    def parts(self) -> tuple[str, str]:
        """(title, text) as the pipeline hands the item to the model: page furniture removed."""
        return self.title, strip_furniture(self.title, self.text)

    @property
    def content(self) -> str:
        """The one string the model is fitted on."""
        return model_input(*self.parts)


def model_input(title: str, text: str) -> str:
    """The one string the model sees for an item: its title, then its text."""
    return f"{title.strip()}\n{text.strip()}".strip()


def split_of(example_id: str, bounds: tuple[tuple[str, float], ...] = SPLIT_BOUNDS) -> str:
    """The split an id belongs to, from its SHA-256: stable across runs, machines and corpus growth."""
    digest = hashlib.sha256(example_id.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    for name, bound in bounds:
        if position < bound:
            return name
    return bounds[-1][0]


def parse_example(line: str, where: str, forms: tuple[str, ...] = FORMS) -> Example:
    """One corpus line -> Example; CorpusError naming `where` (file:line) if it has the wrong shape."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as err:
        raise CorpusError(f"{where}: not valid JSON ({err.msg}); write one JSON object per line") from err
    if not isinstance(raw, dict):
        raise CorpusError(f"{where}: expected a JSON object, found {type(raw).__name__}")
    missing = [key for key in ("id", "lang", "title", "text", "labels") if key not in raw]
    if missing:
        raise CorpusError(f"{where}: missing field(s) {', '.join(missing)}")
    if not isinstance(raw["labels"], list):
        raise CorpusError(f"{where}: labels must be a list of topics, found {raw['labels']!r}")
    unknown = sorted(set(map(str, raw["labels"])) - set(TOPICS))
    if unknown:
        raise CorpusError(f"{where}: unknown label(s) {unknown}; use only {list(TOPICS)}")
    form = str(raw.get("form", "summary"))
    if form not in forms:
        raise CorpusError(f"{where}: unknown form {form!r}; use one of {list(forms)}")
    if not str(raw["title"]).strip() and not str(raw["text"]).strip():
        raise CorpusError(f"{where}: title and text are both empty")
    return Example(
        id=str(raw["id"]),
        lang=str(raw["lang"]),
        form=form,
        title=str(raw["title"]),
        text=str(raw["text"]),
        labels=tuple(label for label in TOPICS if label in raw["labels"]),
    )


def load_corpus(corpus_dir: Path = CORPUS_DIR, forms: tuple[str, ...] = FORMS) -> list[Example]:
    """Every example in every *.jsonl file of the folder, in a stable order."""
    examples: list[Example] = []
    seen: dict[str, str] = {}
    for path in sorted(corpus_dir.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            example = parse_example(line, where, forms)
            if example.id in seen:
                raise CorpusError(f"{where}: id {example.id!r} already used at {seen[example.id]}")
            seen[example.id] = where
            examples.append(example)
    if not examples:
        raise CorpusError(f"{corpus_dir}: no examples found in *.jsonl")
    return examples


def load_dev(dev_dir: Path = DEV_DIR) -> list[Example]:
    """The development set (see the module docstring)."""
    return load_corpus(dev_dir, DEV_FORMS)


def corpus_hash(examples: list[Example]) -> str:
    """A short digest of every example's id, text and labels: the model records what it learned from."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example.id, example.title, example.text, example.labels]).encode())
    return digest.hexdigest()[:16]


def split(examples: list[Example], bounds: tuple[tuple[str, float], ...] = SPLIT_BOUNDS) -> dict[str, list[Example]]:
    """Examples -> {"train": [...], "validation": [...], "test": [...]} (or the parts `bounds` names), in order."""
    parts: dict[str, list[Example]] = {name: [] for name, _ in bounds}
    for example in examples:
        parts[split_of(example.id, bounds)].append(example)
    return parts


def label_matrix(examples: list[Example]) -> np.ndarray:
    """Examples -> 0/1 matrix of shape (examples, TOPICS), column k for TOPICS[k]."""
    return np.array([[label in example.labels for label in TOPICS] for example in examples], dtype=int).reshape(-1, len(TOPICS))
