"""What ``hub run`` prints once the hub is ready: where to look (the forms, the
SMTP server, the admin API and which token it takes, the web console), never a secret."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from hub.config import Config, split_listen
from hub.config.load import sqlite_file
from hub.kernel import loggers

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
_ANY_HOST = {"0.0.0.0", "::", ""}  # noqa: S104  # a wildcard is reached on loopback


def _address(listen: str, port: int | None = None) -> str:
    """``HOST:PORT`` as a person reaches it from this machine."""
    host, given = split_listen(listen)
    host = "127.0.0.1" if host in _ANY_HOST else host
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port or given}"


def token_source(config_path: str | os.PathLike[str]) -> str:
    """Which token the admin API takes, named by its environment variable when the
    config reads one that is set, else by its key in the config file."""
    try:
        raw = tomllib.loads(Path(config_path).read_text("utf-8"))["admin"]["token"]
    except (OSError, ValueError, KeyError, TypeError):
        raw = ""
    names = _ENV.findall(raw if isinstance(raw, str) else "")
    for name in names:
        if os.environ.get(name):
            return f"the value of ${name}"
    if names:
        return f"admin.token's default in {config_path}, until ${names[0]} is set"
    return f"admin.token in {config_path}"


def text(config: Config, *, admin_port: int | None, token: str) -> str:
    """The ready banner: one line per thing to try."""
    lines = ["The hub is ready."]
    if config.webform.listen is not None:
        base = f"http://{_address(config.webform.listen)}"
        lines += [f"  web form   {base}/f/{form.id}" for form in config.webform.forms]
    smtp = config.email.smtp
    if smtp.listen is not None:
        domains = ", ".join(smtp.domains)
        lines.append(f"  SMTP       {_address(smtp.listen)} (mail to any address at {domains})")
    if config.email.imap:
        lines += [f"  IMAP       {m.user} at {m.host}, {m.folder}" for m in config.email.imap]
    admin = f"http://{_address(config.admin.listen, admin_port)}"
    lines.append(f"  admin API  {admin}/api/… (Authorization: Bearer <{token}>)")
    lines.append(f"  health     {admin}/healthz")
    if config.console.listen is not None:
        sign_in = "sign in: hub console link --config FILE NAME, or /web to the bot"
        lines.append(f"  console    {config.console.base_url()} ({sign_in})")
    if config.telegram.enabled:
        lines.append(
            f"  Telegram   on ({config.telegram.mode}), staff group {config.telegram.staff_chat_id}"
        )
    else:
        lines.append("  Telegram   off (README.md, section Telegram, says what it needs)")
    db = sqlite_file(config.storage.url)
    where = str(db) if db is not None else loggers.redact(config.storage.url)
    lines.append(f"  database   {where}")
    lines.append("Stop it with Ctrl-C.")
    return "\n".join(lines)
