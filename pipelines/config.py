"""The config files, feeds and watchlist, read and validated in one place.

Every error names the file, the line and the entry, and says what to write instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
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
class RoleAlias:
    """A title that names the actor only while they hold it (both dates inclusive, by publication date in UTC)."""

    text: str
    valid_from: date | None = None
    valid_to: date | None = None

    def valid_on(self, day: date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True)
class Actor:
    name: str
    aliases: tuple[str, ...]
    roles: tuple[RoleAlias, ...] = ()


@dataclass(frozen=True)
class SinkConfig:
    """Where alerts go besides alerts.jsonl: `stdout`, or a `webhook` whose URL is in the environment variable `url_env`
    (never in the file). `max_per_minute` caps single-alert messages; the excess goes out as one digest message."""

    name: str
    kind: str  # stdout | webhook
    url_env: str = ""
    format: str = "json"  # json (the alert record) | slack (a `text` message)
    max_per_minute: int | None = None
    timeout_s: float = 10.0
    max_attempts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0


@dataclass(frozen=True)
class AlertRules:
    topics: tuple[str, ...] = TOPICS
    min_score: float | None = None
    window_hours: float = 24.0
    sinks: tuple[SinkConfig, ...] = ()


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
            raise ConfigError(
                f"{_where(path, entry)}: {what}: url scheme {scheme.group(1)!r} is not allowed; use http(s) or a file path"
            )
        if not url.startswith(("http://", "https://")):
            local = (path.parent / url).resolve()
            if not local.is_file():
                raise ConfigError(
                    f"{_where(path, entry)}: {what}: file {local} does not exist; fix the path or use an http(s) url"
                )
            url = str(local)
        interval = _number(path, entry, "interval", what, MIN_INTERVAL_S) if "interval" in entry else 300.0
        feeds.append(Feed(name=name, url=url, interval_s=interval))
    return tuple(feeds)


SINK_FORMATS = ("json", "slack")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_ENV_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _alias_key(alias: str) -> str:
    """What two aliases are compared by when checking for clashes: case and spacing ignored."""
    return " ".join(alias.casefold().replace("-", " ").split())


def _alias_text(path: Path, node: Any, value: Any, what: str) -> str:
    """An alias is literal text (never a pattern) with at least one letter or digit."""
    if not isinstance(value, str) or not any(char.isalnum() for char in value):
        raise ConfigError(
            f"{_where(path, node)}: {what}: `aliases` must be a list of non-empty strings (with a letter or digit) "
            f"and {{role, valid_from, valid_to}} mappings; {value!r} is neither"
        )
    return " ".join(value.split())


def _date(path: Path, node: Any, key: str, what: str) -> date | None:
    """A YAML date (2017-01-01) or the same as a string; a date with a time of day is refused."""
    value = node.get(key)
    if value is None or type(value) is date:
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(f"{_where(path, node)}: {what}: `{key}` must be a date such as 2017-01-01, not {value!r}")


def _role(path: Path, node: Any, what: str) -> RoleAlias:
    _check_keys(path, node, f"{what}: a role alias", {"role"}, {"valid_from", "valid_to"})
    role = RoleAlias(
        _alias_text(path, node, node["role"], what), _date(path, node, "valid_from", what), _date(path, node, "valid_to", what)
    )
    if role.valid_from and role.valid_to and role.valid_from > role.valid_to:
        raise ConfigError(f"{_where(path, node)}: {what}: role {role.text!r} has `valid_from` after `valid_to`; swap them")
    return role


def _actor(path: Path, entry: Any, index: int) -> Actor:
    """One `actors:` entry: {name, aliases}, each alias a name (text) or a role ({role, valid_from, valid_to})."""
    _check_keys(path, entry, f"actor #{index}", {"name"}, {"aliases"})
    name = _text(path, entry, "name", f"actor #{index}")
    what = f"actor {name!r}"
    listed = entry.get("aliases", [])
    if not isinstance(listed, list):
        raise ConfigError(
            f"{_where(path, entry)}: {what}: `aliases` must be a list of names and {{role, valid_from, valid_to}} mappings"
        )
    names = [_alias_text(path, entry, alias, what) for alias in listed if not isinstance(alias, dict)]
    roles = [_role(path, alias, what) for alias in listed if isinstance(alias, dict)]
    return Actor(name=name, aliases=tuple(dict.fromkeys([name, *names])), roles=tuple(dict.fromkeys(roles)))


def _overlap(a: RoleAlias, b: RoleAlias) -> bool:
    return (a.valid_to is None or b.valid_from is None or b.valid_from <= a.valid_to) and (
        b.valid_to is None or a.valid_from is None or a.valid_from <= b.valid_to
    )


def _check_alias_clashes(path: Path, entries: list, actors: list[Actor]) -> None:
    """A name alias belongs to one actor; a role alias to one actor at any one date."""
    owners: dict[str, str] = {}
    for entry, actor in zip(entries, actors, strict=True):
        for alias in actor.aliases:
            owner = owners.setdefault(_alias_key(alias), actor.name)
            if owner != actor.name:
                raise ConfigError(
                    f"{_where(path, entry)}: actor {actor.name!r}: alias {alias!r} is also listed for {owner!r}; "
                    "keep it under one actor"
                )
    roles = [(entry, actor.name, role) for entry, actor in zip(entries, actors, strict=True) for role in actor.roles]
    for n, (entry, name, role) in enumerate(roles):
        for _, other_name, other in roles[:n]:
            if other_name != name and _alias_key(role.text) == _alias_key(other.text) and _overlap(role, other):
                raise ConfigError(
                    f"{_where(path, entry)}: actor {name!r}: role {role.text!r} overlaps in time with the same "
                    f"role of {other_name!r}; give each holder its own valid_from/valid_to"
                )
        if _alias_key(role.text) in owners:
            raise ConfigError(f"{_where(path, entry)}: actor {name!r}: role {role.text!r} is also a name alias; list it once")


def _sink(path: Path, node: Any, index: int, environ: Mapping[str, str] | None) -> SinkConfig:
    """One `sinks:` entry: {type: stdout} or {type: webhook, name, url_env, format, max_per_minute, timeout_s,
    max_attempts, backoff_s, max_backoff_s}. The webhook URL is read from the environment, never from the file,
    and never appears in an error message."""
    what = f"alerts: sink #{index}"
    if not isinstance(node, dict) or node.get("type") not in ("stdout", "webhook"):
        raise ConfigError(f"{_where(path, node)}: {what}: `type` must be stdout or webhook")
    if node["type"] == "stdout":
        _check_keys(path, node, what, {"type"}, {"max_per_minute"})
        return SinkConfig(name="stdout", kind="stdout", max_per_minute=_per_minute(path, node, what))
    _check_keys(
        path,
        node,
        what,
        {"type", "name", "url_env"},
        {"format", "max_per_minute", "timeout_s", "max_attempts", "backoff_s", "max_backoff_s"},
    )
    name = _text(path, node, "name", what)
    if not set(name) <= _NAME_CHARS or name == "stdout":
        raise ConfigError(
            f"{_where(path, node)}: {what}: `name` {name!r} may hold only letters, digits, - and _ (and is not stdout)"
        )
    what = f"alerts: sink {name!r}"
    url_env = _text(path, node, "url_env", what)
    if not set(url_env) <= _ENV_CHARS or url_env[0].isdigit():
        raise ConfigError(
            f"{_where(path, node)}: {what}: `url_env` must name an environment variable (A-Z, 0-9, _), not {url_env!r}"
        )
    if environ is not None and not environ.get(url_env, "").startswith(("http://", "https://")):
        state = "does not hold an http(s) URL" if environ.get(url_env) else "is not set"
        raise ConfigError(f"{_where(path, node)}: {what}: environment variable {url_env} {state}; export it with the webhook URL")
    form = node.get("format", "json")
    if form not in SINK_FORMATS:
        raise ConfigError(f"{_where(path, node)}: {what}: `format` must be one of {list(SINK_FORMATS)}, not {form!r}")
    numbers = {
        key: _number(path, node, key, what, minimum)
        for key, minimum in (("timeout_s", 0.01), ("max_attempts", 1), ("backoff_s", 0.0), ("max_backoff_s", 0.0))
        if key in node
    }
    sink = SinkConfig(
        name=name,
        kind="webhook",
        url_env=url_env,
        format=form,
        max_per_minute=_per_minute(path, node, what),
        **{key: int(value) if key == "max_attempts" else value for key, value in numbers.items()},
    )
    if sink.backoff_s > sink.max_backoff_s:
        raise ConfigError(f"{_where(path, node)}: {what}: `backoff_s` must not exceed `max_backoff_s` ({sink.max_backoff_s})")
    return sink


def _per_minute(path: Path, node: Any, what: str) -> int | None:
    if node.get("max_per_minute") is None:
        return None
    value = node["max_per_minute"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{_where(path, node)}: {what}: `max_per_minute` must be a whole number of at least 1, not {value!r}")
    return value


def _alert_rules(path: Path, section: Any, environ: Mapping[str, str] | None) -> AlertRules:
    """`alerts:` {topics, min_score, window_hours, sinks}."""
    _check_keys(path, section, "the alerts section", set(), {"topics", "min_score", "window_hours", "sinks"})
    topics = section.get("topics", list(TOPICS))
    if not isinstance(topics, list) or not topics or set(topics) - set(TOPICS):
        raise ConfigError(
            f"{_where(path, section)}: alerts: `topics` must be a non-empty list drawn from {list(TOPICS)}, not {topics!r}"
        )
    min_score = _number(path, section, "min_score", "alerts", 0.0) if section.get("min_score") is not None else None
    if min_score is not None and min_score > 1:
        raise ConfigError(f"{_where(path, section)}: alerts: `min_score` is a probability between 0 and 1, not {min_score}")
    window_hours = _number(path, section, "window_hours", "alerts", 0.0) if "window_hours" in section else 24.0
    listed = section.get("sinks", [])
    if not isinstance(listed, list):
        raise ConfigError(
            f"{_where(path, section)}: alerts: `sinks` must be a list of {{type: stdout}} and {{type: webhook, ...}}"
        )
    sinks = [_sink(path, node, index, environ) for index, node in enumerate(listed, start=1)]
    names = [sink.name for sink in sinks]
    if len(set(names)) != len(names):
        raise ConfigError(f"{_where(path, section)}: alerts: sink names must be unique (stdout at most once), not {names}")
    return AlertRules(
        topics=tuple(t for t in TOPICS if t in topics), min_score=min_score, window_hours=window_hours, sinks=tuple(sinks)
    )


def load_watchlist(path: Path | str, environ: Mapping[str, str] | None = None, check_secrets: bool = True) -> Watchlist:
    """`actors:` a list of {name, aliases}; `alerts:` {topics, min_score, window_hours, sinks}. Webhook URLs are
    looked up in `environ` (default: the process environment) and must be there, unless `check_secrets` is off
    (for `newswatch annotate`, which sends nothing)."""
    path = Path(path)
    root = _read_yaml(path)
    _check_keys(path, root, "the watchlist file", {"actors"}, {"alerts"})
    entries = root["actors"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{_where(path, root)}: `actors` must be a non-empty list of {{name, aliases}}")
    actors = [_actor(path, entry, index) for index, entry in enumerate(entries, start=1)]
    seen: set[str] = set()
    for entry, actor in zip(entries, actors, strict=True):
        if actor.name in seen:
            raise ConfigError(f"{_where(path, entry)}: actor {actor.name!r}: listed twice; merge the two entries")
        seen.add(actor.name)
    _check_alias_clashes(path, entries, actors)
    if check_secrets and environ is None:
        environ = os.environ
    rules = _alert_rules(path, root["alerts"], environ if check_secrets else None) if "alerts" in root else AlertRules()
    return Watchlist(actors=tuple(actors), alerts=rules)
