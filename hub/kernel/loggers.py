"""Named loggers per subsystem, and the one-line-per-event log format.

Every event is one line: ``event key=value key=value``. Secrets are never passed
to these loggers; :func:`redact` masks a URL's password where one is logged.
"""

from __future__ import annotations

import logging
import re
from typing import Any

core = logging.getLogger("hub.core")
ingest = logging.getLogger("hub.ingest")
dispatcher = logging.getLogger("hub.dispatcher")
scheduler = logging.getLogger("hub.scheduler")
admin = logging.getLogger("hub.admin")
storage = logging.getLogger("hub.storage")
channels = logging.getLogger("hub.channels")

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@", re.IGNORECASE)


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
        if not text or any(c.isspace() or c in '"=' for c in text):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        parts.append(f"{key}={text}")
    logger.log(level, " ".join(parts))


def setup(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
