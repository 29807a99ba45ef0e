"""Reading the config: TOML, ``${NAME}`` from the environment, validation, and
one problem a line naming its key (``telegram.token: missing``)."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from hub.config.checks import MissingKeys
from hub.config.model import Config
from hub.kernel.errors import ConfigError

_ENV = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_SECRET_WORDS = ("token", "password", "secret")


def _expand(value: Any, path: str, problems: list[str]) -> Any:
    """Replace ``${NAME}`` in every string with the environment's value."""
    if isinstance(value, dict):
        return {k: _expand(v, f"{path}.{k}" if path else k, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def sub(match: re.Match[str]) -> str:
            name, default = match.group("name"), match.group("default")
            found = os.environ.get(name)
            if found is None:
                if default is None:
                    problems.append(f"{path}: environment variable {name} is not set")
                    return ""
                return default
            return found

        return _ENV.sub(sub, value)
    return value


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _required_fields(loc: tuple[int | str, ...]) -> list[str]:
    """The required keys of a missing section (``admin`` -> ``token``)."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int) or model is None:
            return []
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    if model is None:
        return []
    return [name for name, f in model.model_fields.items() if f.is_required()]


def _problems(exc: ValidationError, skip: set[str]) -> list[str]:
    lines: list[str] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = _path(loc)
        if path in skip:
            continue  # already reported: its environment variable is not set
        ctx_error = err.get("ctx", {}).get("error")
        if isinstance(ctx_error, MissingKeys):
            lines.extend(f"{path}.{key}: missing" for key in ctx_error.keys)
            continue
        if err["type"] == "missing":
            required = _required_fields(loc)
            if required:
                lines.extend(f"{path}.{key}: missing" for key in required)
                continue
            message = "missing"
        elif err["type"] == "extra_forbidden":
            message = "unknown key"
        else:
            message = err["msg"].removeprefix("Value error, ")
            secret = any(word in str(part) for part in loc for word in _SECRET_WORDS)
            if err["type"] not in ("value_error", "assertion_error") and not secret:
                message += f" (got {err.get('input')!r})"
        lines.append(f"{path}: {message}")
    return lines


def parse(data: dict[str, Any]) -> Config:
    """Validate a config mapping (as read from TOML); raise :class:`ConfigError`."""
    problems: list[str] = []
    expanded = _expand(data, "", problems)
    unset = {line.split(": ", 1)[0] for line in problems}
    try:
        config = Config.model_validate(expanded)
    except ValidationError as exc:
        problems.extend(_problems(exc, unset))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML config file; raise :class:`ConfigError` naming each problem."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"{file}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{file}: invalid TOML: {exc}"]) from None
    return parse(data)


def resolve_path(explicit: str | None) -> str:
    """``--config`` if given, else ``./config.toml`` if it exists, else ``HUB_CONFIG``."""
    if explicit:
        return explicit
    if Path("config.toml").exists():
        return "config.toml"
    return os.environ.get("HUB_CONFIG", "config.toml")
