"""JSON answers of the hub's HTTP APIs."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=json.dumps(data, ensure_ascii=False, default=_default),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return json_response({"error": message}, status, headers)
