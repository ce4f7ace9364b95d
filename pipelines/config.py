"""The config files, feeds and watchlist, read and validated in one place.

Every error names the file, the line and the entry, and says what to write instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from classifiers import TOPICS

DEFAULTS_DIR = Path(__file__).parent / "defaults"
DEFAULT_FEEDS = DEFAULTS_DIR / "feeds.yaml"
DEFAULT_WATCHLIST = DEFAULTS_DIR / "watchlist.yaml"
MIN_INTERVAL_S = 1.0


class ConfigError(ValueError):
    """A config file that cannot be used; the message says where and how to fix it."""


class _Mapping(dict):
    line = 0


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader whose mappings remember the line they start on."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> _Mapping:
    mapping = _Mapping(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


@dataclass(frozen=True)
class Feed:
    name: str
    url: str
    interval_s: float

    @property
    def is_local_file(self) -> bool:
        return not self.url.startswith(("http://", "https://"))


@dataclass(frozen=True)
class Actor:
    name: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class AlertRules:
    topics: tuple[str, ...] = TOPICS
    min_score: float | None = None


@dataclass(frozen=True)
class Watchlist:
    actors: tuple[Actor, ...]
    alerts: AlertRules = field(default_factory=AlertRules)


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; pass an existing YAML file")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(err, 'problem', err)})") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text; save the file as UTF-8") from err


def _where(path: Path, node: Any) -> str:
    return f"{path}:{getattr(node, 'line', 0) or 1}"


def _check_keys(path: Path, node: Any, what: str, required: set[str], optional: set[str]) -> None:
    if not isinstance(node, dict):
        raise ConfigError(f"{_where(path, node)}: {what} must be a mapping with keys {sorted(required | optional)}")
    unknown = sorted(set(node) - required - optional)
    if unknown:
        raise ConfigError(
            f"{_where(path, node)}: {what} has unknown key(s) {unknown}; allowed keys are {sorted(required | optional)}"
        )
    missing = sorted(required - set(node))
    if missing:
        raise ConfigError(f"{_where(path, node)}: {what} is missing {missing}")


def _text(path: Path, node: Any, key: str, what: str) -> str:
    value = node[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{_where(path, node)}: {what}: `{key}` must be a non-empty string, not {value!r}")
    return value.strip()


def _number(path: Path, node: Any, key: str, what: str, minimum: float) -> float:
    value = node[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"{_where(path, node)}: {what}: `{key}` must be a number of at least {minimum}, not {value!r}")
    return float(value)


def load_feeds(path: Path | str) -> tuple[Feed, ...]:
    """`feeds:` a list of {name, url, interval}; a relative file url is relative to the feeds file."""
    path = Path(path)
    root = _read_yaml(path)
    _check_keys(path, root, "the feeds file", {"feeds"}, set())
    entries = root["feeds"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{_where(path, root)}: `feeds` must be a non-empty list of {{name, url, interval}}")
    feeds: list[Feed] = []
    names: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        what = f"feed #{index}"
        _check_keys(path, entry, what, {"name", "url"}, {"interval"})
        name = _text(path, entry, "name", what)
        what = f"feed {name!r}"
        if name in names:
            raise ConfigError(f"{_where(path, entry)}: {what}: duplicate name; give every feed its own name")
        names.add(name)
        url = _text(path, entry, "url", what)
        scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*):", url)
        if scheme and scheme.group(1).lower() not in ("http", "https") and len(scheme.group(1)) > 1:
            raise ConfigError(f"{_where(path, entry)}: {what}: url scheme {scheme.group(1)!r} is not allowed; use http(s) or a file path")
        if not url.startswith(("http://", "https://")):
            local = (path.parent / url).resolve()
            if not local.is_file():
                raise ConfigError(f"{_where(path, entry)}: {what}: file {local} does not exist; fix the path or use an http(s) url")
            url = str(local)
        interval = _number(path, entry, "interval", what, MIN_INTERVAL_S) if "interval" in entry else 300.0
        feeds.append(Feed(name=name, url=url, interval_s=interval))
    return tuple(feeds)


def load_watchlist(path: Path | str) -> Watchlist:
    """`actors:` a list of {name, aliases}; `alerts:` {topics, min_score}."""
    path = Path(path)
    root = _read_yaml(path)
    _check_keys(path, root, "the watchlist file", {"actors"}, {"alerts"})
    entries = root["actors"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{_where(path, root)}: `actors` must be a non-empty list of {{name, aliases}}")
    actors: list[Actor] = []
    names: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        what = f"actor #{index}"
        _check_keys(path, entry, what, {"name"}, {"aliases"})
        name = _text(path, entry, "name", what)
        what = f"actor {name!r}"
        if name in names:
            raise ConfigError(f"{_where(path, entry)}: {what}: listed twice; merge the two entries")
        names.add(name)
        aliases = entry.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
            raise ConfigError(f"{_where(path, entry)}: {what}: `aliases` must be a list of non-empty strings")
        actors.append(Actor(name=name, aliases=tuple(dict.fromkeys([name, *(a.strip() for a in aliases)]))))
    rules = AlertRules()
    if "alerts" in root:
        section = root["alerts"]
        _check_keys(path, section, "the alerts section", set(), {"topics", "min_score"})
        topics = section.get("topics", list(TOPICS))
        if not isinstance(topics, list) or not topics or set(topics) - set(TOPICS):
            raise ConfigError(f"{_where(path, section)}: alerts: `topics` must be a non-empty list drawn from {list(TOPICS)}, not {topics!r}")
        min_score = _number(path, section, "min_score", "alerts", 0.0) if section.get("min_score") is not None else None
        if min_score is not None and min_score > 1:
            raise ConfigError(f"{_where(path, section)}: alerts: `min_score` is a probability between 0 and 1, not {min_score}")
        rules = AlertRules(topics=tuple(t for t in TOPICS if t in topics), min_score=min_score)
    return Watchlist(actors=tuple(actors), alerts=rules)
