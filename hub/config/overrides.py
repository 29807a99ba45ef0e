"""Settings set in the console over the config file: which keys may be set, how a
value is checked, and the config the file and the settings make together.

A setting replaces one reloadable key of the file (``routing``, ``managers``,
``hub.hours``…) whole, as the file would spell it; the effective config is the
file's TOML with the settings put in, read by the very :func:`~hub.config.parse`
that ``hub check-config`` runs, so a bad setting is refused with the same key path.
The file is never written. A setting never reads the environment (``${NAME}`` is
the file's alone): a text set from a page must not carry a secret out to a client.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import tomli_w

from hub.config.load import anchor, parse, read
from hub.config.model import Config
from hub.kernel.errors import ConfigError

# The keys a setting may replace: what a running hub takes on reload (with the
# webhooks, whose secrets stay in the file, hub.app.reload.RELOADABLE).
EDITABLE: tuple[str, ...] = (
    "managers",
    "routing",
    "sla",
    "stages",
    "replies",
    "desk",
    "webform.forms",
    "hub.hours",
    "reminders.follow_up_days",
    "reminders.stages",
    "reminders.scan_every_s",
    "privacy",
    "waiting",
)

MAX_TEXT = 200_000  # characters of one setting's TOML: a section, not a data dump


class Absent:
    """The value of a key the file does not write."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = Absent()


@dataclass(frozen=True, slots=True)
class FileLayer:
    """The config file as written (``${NAME}`` unread) and the folder its relative
    paths are read from (None: ``data`` came from a config whose paths are absolute)."""

    data: Mapping[str, Any]
    base: Path | None = None

    @classmethod
    def read(cls, path: str) -> FileLayer:
        """The file at ``path`` (blocking: read it in a thread from async code)."""
        return cls(read(path), Path(path).resolve().parent)

    @classmethod
    def of(cls, config: Config) -> FileLayer:
        """A running config taken for the file (a hub started without a file)."""
        return cls(config.model_dump(by_alias=True))


def editable(key: str) -> str:
    """``key`` if a setting may replace it; else ConfigError naming the keys that may."""
    if key not in EDITABLE:
        raise ConfigError([f"{key[:100]}: not a key set here; these are: {', '.join(EDITABLE)}"])
    return key


def value_at(data: Mapping[str, Any], key: str) -> object:
    """The value under a dotted ``key``, or :data:`ABSENT`."""
    found: object = data
    for part in key.split("."):
        if not isinstance(found, Mapping) or part not in found:
            return ABSENT
        found = found[part]
    return found


def with_value(data: Mapping[str, Any], key: str, value: object) -> dict[str, Any]:
    """A copy of ``data`` with ``key`` set to ``value`` (its tables made as needed)."""
    out = dict(data)
    head, _, rest = key.partition(".")
    if not rest:
        out[head] = copy.deepcopy(value)
        return out
    inner = out.get(head)
    out[head] = with_value(inner if isinstance(inner, Mapping) else {}, rest, value)
    return out


def _environment_read(value: object, path: str) -> list[str]:
    """The places of ``value`` that would read the environment."""
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _environment_read(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _environment_read(v, f"{path}[{i}]")]
    if isinstance(value, str) and "${" in value:
        return [f"{path}: ${{…}} reads the environment only in the config file, not in a setting"]
    return []


def layered(file: FileLayer, settings: Mapping[str, object]) -> Config:
    """The effective config: the file with ``settings`` (key -> value) put in, checked
    as ``hub check-config`` checks the file; ConfigError with each problem's key path."""
    problems = [p for key, value in settings.items() for p in _environment_read(value, key)]
    if problems:
        raise ConfigError(problems)
    data = dict(file.data)
    for key, value in settings.items():
        data = with_value(data, editable(key), value)
    config = parse(data)
    return config if file.base is None else anchor(config, file.base)


def plain(value: object) -> object:
    """``value`` as JSON keeps it: TOML's dates and times as ISO 8601 text (the
    config reads them back from it)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return value


def _no_nulls(value: object) -> object:
    if isinstance(value, Mapping):
        return {k: _no_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_no_nulls(v) for v in value if v is not None]
    return value


def _nest(key: str, value: object) -> dict[str, Any]:
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return dict(out)


def to_toml(key: str, value: object) -> str:
    """``key``'s value as the file would write it (``[routing]``, ``[[managers]]``…)."""
    if value is ABSENT or value is None:  # TOML has no null: the key unwritten
        return ""
    nested = _no_nulls(_nest(key, plain(value)))
    assert isinstance(nested, dict)
    return tomli_w.dumps(nested)


def from_toml(key: str, text: str) -> object:
    """The value of ``key`` in ``text`` (TOML as the file writes it), which holds
    that key alone; ConfigError saying what is wrong."""
    if len(text) > MAX_TEXT:
        raise ConfigError([f"{key}: longer than {MAX_TEXT} characters"])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{key}: invalid TOML: {exc}"]) from None
    value = value_at(data, key)
    if value is ABSENT:
        raise ConfigError([f"{key}: missing (write it as the config file does)"])
    others = [k for k in _leaf_paths(data) if k != key and not k.startswith(f"{key}.")]
    if others:
        raise ConfigError([f"{others[0]}: only {key} is set here"])
    return value


def _leaf_paths(data: Mapping[str, Any], path: str = "") -> list[str]:
    """The keys of ``data`` down to the first that is not a table."""
    out = []
    for k, v in data.items():
        here = f"{path}.{k}" if path else k
        out.extend(_leaf_paths(v, here) if isinstance(v, Mapping) else [here])
    return out
