"""JSON bodies of the admin API's calls (RFC 8259): one object of valid Unicode,
or the reason it is not, for a 400."""

from __future__ import annotations

import json
from typing import Any


class BadBody(ValueError):
    """The body is no JSON object the API can take; the message says why."""


def json_object(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object, else :class:`BadBody`: not JSON, nested past
    the parser's depth, or holding a lone surrogate (``"\\ud800"``), which no
    database or log line can store."""
    try:
        data = json.loads(raw or b"null")
    except RecursionError:
        raise BadBody("body: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise BadBody(f"body: {exc}") from None
    if not isinstance(data, dict):
        raise BadBody("body: expected an object")
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadBody("body: holds text that is not valid Unicode (a lone surrogate)") from None
    return data
