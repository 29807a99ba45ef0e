"""The hub's HTTP edges (aiohttp): one way to serve an application on ``HOST:PORT``
within the bounds of :mod:`hub.kernel.edges`, and the JSON answers of its APIs.

aiohttp bounds neither how long a request's head may take to arrive nor its body:
each accepted connection passes :class:`_Connection` first, which counts it in the
process's table (or refuses it at once with a 503) and closes it when the head
is not complete ``header_timeout`` seconds after its first byte (or after the
connection opened), or the body ``body_timeout`` seconds after the head (longer
while it keeps coming at ``body_min_rate``); a middleware tells it when a request
starts and ends. Idle keep-alive connections close after ``keepalive_timeout``
(aiohttp's own timer). A client's malformed request is answered 400 by aiohttp
and counted in the edges' log, not traced."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import StreamReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from hub.kernel.edges import Edges, address_of

_REFUSAL = b"too many connections, try again later\n"
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nRetry-After: 10\r\nConnection: close\r\n\r\n%s"
    % (len(_REFUSAL), _REFUSAL)
)


def split_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` too) as host and port."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class _Connection(asyncio.Protocol):
    """One accepted connection: counted in the edges' table or refused at once, its
    request heads and bodies timed; aiohttp's own protocol does the rest."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], edges: Edges) -> None:
        self._factory = factory
        self._edges = edges
        self._inner: asyncio.Protocol | None = None
        self._address = "-"
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False  # a request is being handled
        self._received = 0  # bytes, all told
        self.cut = False  # closed by a timer, or by the client, while a request was handled

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        address = self._edges.admit(transport.get_extra_info("peername"))
        if address is None:
            transport.write(REFUSED)
            transport.close()
            return
        self._address, self._transport = address, transport
        self._arm(self._edges.limits.header_timeout, self._head_late)
        self._inner = self._factory()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        self._received += len(data)
        if not self._busy and self._timer is None:
            self._arm(self._edges.limits.header_timeout, self._head_late)  # a new head
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._transport = None
        self.cut = self._busy
        if self._inner is not None:
            self._edges.release(self._address)
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def started(self, request: web.BaseRequest) -> None:
        """A request's head is in: its body, when still on its way, is timed."""
        self._busy = True
        self._disarm()
        body = request.content
        if not body.is_eof():
            since = asyncio.get_running_loop().time(), self._received
            self._arm(self._edges.limits.body_timeout, lambda: self._body_late(body, *since))

    def finished(self) -> None:
        self._busy = False
        self._disarm()

    def _arm(self, seconds: float, expire: Callable[[], None]) -> None:
        self._timer = asyncio.get_running_loop().call_later(seconds, expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_late(self) -> None:
        self._timer = None
        if not self._busy:  # else the head arrived meanwhile
            self._close("header_timeout", self._edges.limits.header_timeout)

    def _body_late(self, body: StreamReader, began: float, received: int) -> None:
        """The body's deadline: ``body_timeout`` after its head, one second later
        for every ``body_min_rate`` bytes that came (a slow link's large upload
        goes on, a trickle does not)."""
        self._timer = None
        if body.is_eof():
            return
        limits = self._edges.limits
        allowed = limits.body_timeout
        if limits.body_min_rate:
            allowed += (self._received - received) / limits.body_min_rate
        left = began + allowed - asyncio.get_running_loop().time()
        if left > 0:
            self._arm(left, lambda: self._body_late(body, began, received))
        else:
            self._close("body_timeout", round(allowed, 1))

    def _close(self, limit: str, seconds: float) -> None:
        if self._transport is not None:
            self._edges.bite(limit, self._address, seconds=seconds)
            self._transport.close()


@web.middleware
async def _timed(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tells the connection a request started and ended. A body cut short (by its
    timer or by the client) is no error of ours: answered quietly (the answer
    goes nowhere), not with aiohttp's 500 and a traceback for each."""
    transport = request.transport
    connection = transport.get_protocol() if transport is not None else None
    if not isinstance(connection, _Connection):
        return await handler(request)
    connection.started(request)
    try:
        return await handler(request)
    except ConnectionError:
        if not connection.cut:
            raise
        return web.Response(status=408, text="the request did not arrive in time")
    finally:
        connection.finished()


class _ProtocolLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's protocol log: a client's request that does not parse (a head line
    too long, a bad header, a broken chunk) is a bound biting, counted in the edges'
    log instead of a traceback each; everything else is logged as aiohttp does."""

    def __init__(self, edges: Edges) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self._edges = edges

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            address = address_of((args[0],)) if args else "-"
            self._edges.bite("bad_request", address, error=type(exc_info).__name__)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


class _Site(web.BaseSite):
    """A TCP site whose connections pass :class:`_Connection` first."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, edges: Edges) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._edges = edges

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        edges = self._edges
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Connection(server, edges), self._host, self._port, backlog=self._backlog
        )


async def serve(
    app: web.Application,
    listen: str,
    *,
    shutdown_timeout: float = 10.0,
    edges: Edges | None = None,
) -> web.AppRunner:
    """Serve ``app`` on ``listen`` (``HOST:PORT``; port 0: any free one, see
    :func:`bound_port`) until the runner is cleaned up, which gives requests in
    flight ``shutdown_timeout`` seconds. Connections count in ``edges`` (the
    process's table; by default one of this server's own). No access log (the
    APIs log their own line), no signal handlers (the hub's lifespan owns them)."""
    edges = edges or Edges()
    if not app.frozen and _timed not in app.middlewares:
        app.middlewares.insert(0, _timed)
        app.on_response_prepare.append(_no_software)
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=edges.limits.keepalive_timeout,
        logger=_ProtocolLog(edges),
    )
    await runner.setup()
    host, port = split_listen(listen)
    try:
        await _Site(runner, host, port, edges).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def _no_software(request: web.Request, response: web.StreamResponse) -> None:
    """The ``Server`` header names no library and no version (aiohttp's default does)."""
    response.headers[hdrs.SERVER] = "hub"


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


def is_decimal(raw: str, *, low: int = 1, high: int = MAX_ID) -> bool:
    """Whether ``raw`` is a whole number from ``low`` to ``high`` written in ASCII
    digits. ``str.isdigit`` alone would take ``²`` (which ``int`` refuses) and ``١``
    (which ``int`` reads as 1)."""
    # Eighteen digits are past every range here; int() of thousands of digits
    # would raise (int_max_str_digits) and costs time for nothing.
    return raw.isascii() and raw.isdigit() and len(raw) <= 18 and low <= int(raw) <= high


def decimal(raw: str, name: str, *, low: int = 1, high: int = MAX_ID) -> int:
    """``raw`` as :func:`is_decimal` takes it, else :class:`BadParameter` naming ``name``."""
    if is_decimal(raw, low=low, high=high):
        return int(raw)
    raise BadParameter(f"{name}: must be a whole number from {low} to {high} (got {raw[:40]!r})")
