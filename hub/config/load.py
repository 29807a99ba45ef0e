"""Reading the config: TOML, ``${NAME}`` from the environment, validation, one
problem a line naming its key (``telegram.token: missing``), and relative paths
read from the config file's folder."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import make_url

from hub.config.checks import MissingKeys
from hub.config.model import Config
from hub.kernel.errors import ConfigError

_ENV = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_SECRET_WORDS = ("token", "password", "secret")


def _expand(
    value: Any, path: str, problems: list[str], sources: dict[str, list[str]] | None = None
) -> Any:
    """Replace ``${NAME}`` in every string with the environment's value; ``sources``
    gets the variables each key read."""
    if isinstance(value, dict):
        return {
            k: _expand(v, f"{path}.{k}" if path else k, problems, sources) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]", problems, sources) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        if sources is not None:
            sources[path] = [m.group("name") for m in _ENV.finditer(value)]

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


def _missing(key: str, sources: dict[str, list[str]]) -> str:
    """``KEY: missing``, naming the environment variable the key reads, if any."""
    names = sources.get(key)
    return (
        f"{key}: missing ({' or '.join(names)} is empty or not set)" if names else f"{key}: missing"
    )


def _problems(exc: ValidationError, skip: set[str], sources: dict[str, list[str]]) -> list[str]:
    lines: list[str] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = _path(loc)
        if path in skip:
            continue  # already reported: its environment variable is not set
        ctx_error = err.get("ctx", {}).get("error")
        if isinstance(ctx_error, MissingKeys):
            lines.extend(_missing(f"{path}.{key}", sources) for key in ctx_error.keys)
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


def _across(data: dict[str, Any]) -> list[str]:
    """What one section needs of another, told at once with the sections' own
    problems (a model check would wait until every section is valid)."""
    telegram = data.get("telegram")
    if isinstance(telegram, dict) and telegram.get("enabled") is True and not data.get("managers"):
        return ["managers: missing (telegram is on: a [[managers]] table with each telegram_id)"]
    return []


def parse(data: dict[str, Any]) -> Config:
    """Validate a config mapping (as read from TOML); raise :class:`ConfigError`.
    Relative paths stay relative to the current folder (:func:`load` anchors them)."""
    problems: list[str] = []
    sources: dict[str, list[str]] = {}
    expanded = _expand(data, "", problems, sources)
    unset = {line.split(": ", 1)[0] for line in problems}
    problems.extend(_across(expanded))
    try:
        config = Config.model_validate(expanded)
    except ValidationError as exc:
        problems.extend(_problems(exc, unset, sources))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A TOML config file as written (``${NAME}`` not yet read); :class:`ConfigError`
    when it cannot be read or is no TOML."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read: {exc.strerror}"]) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"{file}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{file}: invalid TOML: {exc}"]) from None


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML config file; raise :class:`ConfigError` naming each problem."""
    return anchor(parse(read(path)), Path(path).resolve().parent)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (as written: maybe relative); ``None`` for another
    database or an in-memory one."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def anchor(config: Config, base: Path, cwd: Path | None = None) -> Config:
    """``config`` with its relative paths (a SQLite file, attachments, the mail
    spool, TLS and CA files) made absolute from ``base``, the config file's folder.
    Data left at the old place (relative to the current folder ``cwd``) with
    nothing at the new one is an error saying what to move, never a new empty
    database."""
    here = Path.cwd() if cwd is None else cwd
    storage, email, smtp = config.storage, config.email, config.email.smtp

    def at(value: str | None) -> str | None:
        return None if value is None else str(base / value)

    url, db = storage.url, sqlite_file(storage.url)
    if db is not None and not db.is_absolute():
        url = make_url(url).set(database=str(base / db)).render_as_string(hide_password=False)
    moved = _moved(config, base, here)
    if moved:
        raise ConfigError([moved])
    return config.model_copy(
        update={
            "storage": storage.model_copy(
                update={"url": url, "attachments_dir": at(storage.attachments_dir)}
            ),
            "email": email.model_copy(
                update={
                    "spool": at(email.spool),
                    "smtp": smtp.model_copy(
                        update={"tls_cert": at(smtp.tls_cert), "tls_key": at(smtp.tls_key)}
                    ),
                    "imap": [m.model_copy(update={"ca_file": at(m.ca_file)}) for m in email.imap],
                }
            ),
        }
    )


def _moved(config: Config, base: Path, here: Path) -> str | None:
    """The problem when the database is found relative to the current folder only."""
    db = sqlite_file(config.storage.url)
    if db is None or db.is_absolute() or here.resolve() == base.resolve():
        return None
    if not (here / db).exists() or (base / db).exists():
        return None
    relative = [str(db)] + [
        path
        for path in (f"{db}-wal", config.email.spool, config.storage.attachments_dir)
        if not Path(path).is_absolute() and (here / path).exists() and not (base / path).exists()
    ]
    return (
        f"storage.url: the database {db} is in the current folder ({here}), not next to "
        f"the config file: relative paths in the config are read from the config file's "
        f"folder ({base}). Move {', '.join(relative)} from {here} to {base}, or write "
        "absolute paths in the config"
    )


def resolve_path(explicit: str | None) -> str:
    """``--config`` if given, else ``./config.toml`` if it exists, else ``HUB_CONFIG``."""
    if explicit:
        return explicit
    if Path("config.toml").exists():
        return "config.toml"
    return os.environ.get("HUB_CONFIG", "config.toml")
