"""The hub's HTTP edges (aiohttp): one way to serve an application on ``HOST:PORT``,
and the JSON answers of its APIs."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web


def split_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` too) as host and port."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


async def serve(
    app: web.Application, listen: str, *, shutdown_timeout: float = 10.0
) -> web.AppRunner:
    """Serve ``app`` on ``listen`` (``HOST:PORT``; port 0: any free one, see
    :func:`bound_port`) until the runner is cleaned up, which gives requests in
    flight ``shutdown_timeout`` seconds. No access log (the APIs log their own
    line), no signal handlers (the hub's lifespan owns them)."""
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    host, port = split_listen(listen)
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port a runner from :func:`serve` listens on."""
    return int(runner.addresses[0][1])


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """``data`` as JSON (UTF-8, datetimes in ISO 8601)."""
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
    """``{"error": message}``."""
    return json_response({"error": message}, status, headers)


MAX_ID = 2**31 - 1
"""The largest id a row can have (ids are 32-bit integers on PostgreSQL)."""


class BadParameter(ValueError):
    """A request's parameter is not what it must be; the message names it (HTTP 400)."""


def decimal(raw: str, name: str, *, low: int = 1, high: int = MAX_ID) -> int:
    """``raw`` as a whole number from ``low`` to ``high`` written in ASCII digits,
    else :class:`BadParameter` naming ``name``. ``str.isdigit`` alone would take
    ``²`` (which ``int`` refuses) and ``١`` (which ``int`` reads as 1)."""
    # Eighteen digits are past every range here; int() of thousands of digits
    # would raise (int_max_str_digits) and costs time for nothing.
    if raw.isascii() and raw.isdigit() and len(raw) <= 18 and low <= int(raw) <= high:
        return int(raw)
    raise BadParameter(f"{name}: must be a whole number from {low} to {high} (got {raw[:40]!r})")
