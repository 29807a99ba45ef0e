"""Named loggers per subsystem, and the one-line-per-event log format.

Every event is one line: ``event key=value key=value`` (``hub.log_format =
"text"``), or one JSON object of the time, level, logger, event and its fields
(``"json"``, for log collectors). Secrets are never passed to these loggers;
:func:`redact` masks a URL's password where one is logged.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

core = logging.getLogger("hub.core")
ingest = logging.getLogger("hub.ingest")
dispatcher = logging.getLogger("hub.dispatcher")
scheduler = logging.getLogger("hub.scheduler")
admin = logging.getLogger("hub.admin")
storage = logging.getLogger("hub.storage")
channels = logging.getLogger("hub.channels")
console = logging.getLogger("hub.console")

# Libraries that log routine work at INFO: APScheduler every job's every round,
# aiosmtpd's "mail.log" every SMTP command (and the senders' addresses). Their
# INFO shows only when the hub logs at DEBUG; their warnings and errors always.
CHATTY = ("apscheduler", "mail.log")

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@", re.IGNORECASE)
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_RESERVED = frozenset({"time", "level", "logger", "event", "message", "exception"})


# A value is quoted when it is empty or holds a space, a quote, an "=" or anything
# unprintable; inside the quotes a backslash, a quote and every unprintable
# character (NUL, CR, LF, escape sequences, line separators) are escaped, so a
# value taken from the network (an SMTP envelope, a header) never breaks or
# forges a line of the log.
_SPECIAL = re.compile(r'[ "=]')
_ESCAPED = re.compile(r'[\\"]|[^ -~]')
_SHORT = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    c = match.group()
    if c in _SHORT:
        return _SHORT[c]
    if c.isprintable():
        return c  # a letter of another script
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def redact(text: str) -> str:
    """Mask the password of every URL in ``text``."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event as one line: the name, then ``key=value`` pairs (values quoted when needed)."""
    if not logger.isEnabledFor(level):
        return
    parts = [name]
    for key, value in fields.items():
        text = str(value)
        if not text or not text.isprintable() or _SPECIAL.search(text):
            text = '"' + _ESCAPED.sub(_escape, text) + '"'
        parts.append(f"{key}={text}")
    logger.log(level, " ".join(parts), extra={"hub_event": name, "hub_fields": fields})


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    then ``event`` and its fields for the hub's events, ``message`` for any other
    record, and ``exception`` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        name = getattr(record, "hub_event", None)
        if name is not None:
            out["event"] = name
            fields: dict[str, Any] = getattr(record, "hub_fields", {})
            for key, value in fields.items():
                out[f"{key}_" if key in _RESERVED else key] = _json_value(value)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


def setup(level: str = "INFO", log_format: str = "text") -> None:
    """The process's logging: ``level`` for the hub, ``log_format`` ``"text"`` or ``"json"``."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT_FORMAT)
    )
    logging.basicConfig(level=level.upper(), handlers=[handler])
    quiet(level)


def quiet(level: str) -> None:
    """The :data:`CHATTY` libraries at DEBUG when ``level`` is, else at WARNING (or above)."""
    threshold = logging.getLevelNamesMapping()[level.upper()]
    for name in CHATTY:
        logging.getLogger(name).setLevel(
            logging.DEBUG if threshold <= logging.DEBUG else max(threshold, logging.WARNING)
        )
