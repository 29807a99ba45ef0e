"""The admin HTTP API (aiohttp): health, client search and cards, timelines, conversations,
reports (JSON, and charts as PNG).

JSON over HTTP. Every ``/api/`` call needs ``Authorization: Bearer <token>`` (RFC
6750): the config's ``admin.token`` (full access, audited as ``api:config``) or a
person's own token (``hub token add``, audited as ``api:NAME``); else 401 with
``WWW-Authenticate``, and 403 when the token's role lacks the call's right (the
table in :mod:`hub.admin.access`). ``/healthz`` and
``/metrics`` (Prometheus text format) answer without it, for load balancers and
scrapers: keep ``admin.listen`` on a private address. Errors are JSON
``{"error": message}``: 400 naming the bad parameter, 404 for an unknown client
or route. Times are ISO 8601 with a UTC offset. One log line per request on
``hub.admin.api`` (method, path, status, milliseconds); the token is never logged.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import time
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from sqlalchemy.exc import DBAPIError

from hub.admin.access import CALLER, Caller, actor, refusal
from hub.admin.audit import add_routes as add_audit_routes
from hub.admin.campaigns import add_routes as add_campaign_routes
from hub.admin.clients import add_routes as add_client_routes
from hub.admin.events import add_routes as add_event_routes
from hub.admin.metrics import CONTENT_TYPE, Metrics
from hub.admin.ratings import add_routes as add_rating_routes
from hub.admin.tokens import CONFIG_NAME, Tokens
from hub.campaigns.campaigns import Campaigns
from hub.clients.book import ClientBook
from hub.clients.event_writer import EventRecorder
from hub.clients.search import client_search
from hub.clients.stage_rules import StageRules
from hub.desk.csat import Csat
from hub.kernel import loggers
from hub.kernel.clock import SystemClock
from hub.kernel.edges import Edges
from hub.kernel.http import (
    BadParameter,
    bound_port,
    decimal,
    error_response,
    json_response,
    serve,
)
from hub.kernel.types import ConversationStatus, Role
from hub.reports.reporter import Reporter
from hub.reports.reports import Period, ReportError, parse_day
from storage import Database
from storage import desk as desk_q
from storage import read as q

log = loggers.admin

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_QUERY = 200
MAX_LAST = 10_000
_STATUSES = tuple(s.value for s in ConversationStatus)
_CONFIG_CALLER = Caller(CONFIG_NAME, Role.ADMIN)
_REALM = 'Bearer realm="hub"'
_UNAUTHORIZED = {
    "missing": "missing bearer token",
    "unknown": "invalid bearer token",
    "revoked": "bearer token revoked",
}


def create_app(
    db: Database,
    token: str,
    ready: Callable[[], bool],
    *,
    default_region: str | None = None,
    metrics: Metrics | None = None,
    reporter: Reporter | None = None,
    campaigns: Campaigns | None = None,
    csat: Csat | None = None,
    stage_rules: Callable[[], StageRules] = StageRules,
) -> web.Application:
    """The admin application; ``ready()`` tells whether every channel is listening.

    ``default_region`` (``hub.default_region``) reads phone numbers written in a
    national format (``8 916 …``) in searches. ``reporter`` answers ``/api/reports``
    (by default: UTC days and the system clock). ``stage_rules``: the rules in
    force (a reload changes them) for business events and imports.
    """
    if not token:
        raise ValueError("the admin API needs a non-empty token")
    api = _Api(db, ready, default_region, reporter or Reporter(db, SystemClock()))
    app = web.Application(middlewares=[_middleware(token.encode(), Tokens(db))])
    app.router.add_get("/healthz", api.healthz)
    if metrics is not None:
        app.router.add_get("/metrics", _metrics_handler(metrics))
    app.router.add_get("/api/clients", api.clients)
    app.router.add_get("/api/clients/{id}", api.client)
    app.router.add_get("/api/clients/{id}/timeline", api.timeline)
    app.router.add_get("/api/conversations", api.conversations)
    app.router.add_get("/api/reports", api.reports)
    app.router.add_get("/api/reports/chart.png", api.chart)
    add_audit_routes(app, db)
    if campaigns is not None:
        add_campaign_routes(app, campaigns)
    if csat is not None:  # the rating links' page, public like /u
        add_rating_routes(app, csat)
    book = ClientBook(db, SystemClock(), region=default_region or "RU", stage_rules=stage_rules)
    add_client_routes(app, book)
    add_event_routes(app, EventRecorder(db, SystemClock(), stage_rules), default_region)
    return app


def _last(request: web.Request) -> int | None:
    """``?last=N``: only the latest N interactions (1 to 10,000)."""
    raw = request.query.get("last")
    return None if raw is None else decimal(raw, "last", high=MAX_LAST)


def _metrics_handler(metrics: Metrics) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        body = await metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    return handler


class AdminServer:
    """Serves an admin application on ``host:port``; ``port`` is the bound one (0 = any free)."""

    def __init__(
        self, app: web.Application, *, shutdown_timeout: float = 5.0, edges: Edges | None = None
    ) -> None:
        self.app = app
        self.shutdown_timeout = shutdown_timeout
        self.edges = edges  # the process's connection table
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        runner = await serve(
            self.app, f"{host}:{port}", shutdown_timeout=self.shutdown_timeout, edges=self.edges
        )
        self._runner = runner
        self.port = bound_port(runner)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


class _Api:
    def __init__(
        self, db: Database, ready: Callable[[], bool], region: str | None, reporter: Reporter
    ) -> None:
        self.db = db
        self.ready = ready
        self.region = region
        self.reporter = reporter

    async def healthz(self, request: web.Request) -> web.Response:
        if self.ready():
            return json_response({"status": "ok"})
        return json_response({"status": "starting"}, status=503)

    async def clients(self, request: web.Request) -> web.Response:
        text = _query_text(request)
        limit, offset = _paging(request)
        search = client_search(text, self.region) if text else None
        found = await self.db.run_read(
            lambda conn: q.read_clients(conn, search, limit=limit, offset=offset)
        )
        return json_response([dataclasses.asdict(c) for c in found])

    async def client(self, request: web.Request) -> web.Response:
        client_id = _client_id(request)
        card = await self.db.run_read(lambda conn: q.read_card(conn, client_id))
        if card is None:
            return _not_found(request)
        await self._audit(request, "card", client_id)
        return json_response(dataclasses.asdict(card))

    async def timeline(self, request: web.Request) -> web.Response:
        client_id = _client_id(request)
        last = _last(request)
        items = await self.db.run_read(lambda conn: q.read_timeline_of(conn, client_id, last))
        if items is None:
            return _not_found(request)
        await self._audit(request, "timeline", client_id)
        return json_response([dataclasses.asdict(i) for i in items])

    async def _audit(self, request: web.Request, what: str, client_id: int) -> None:
        """Who read what: the token's holder read a client's record."""
        async with self.db.write() as conn:
            await desk_q.audit(
                conn,
                {
                    "at": datetime.now(UTC),
                    "actor": actor(request),
                    "action": "read",
                    "object_type": "client",
                    "object_id": client_id,
                    "details": {"what": what},
                },
            )

    async def conversations(self, request: web.Request) -> web.Response:
        status = request.query.get("status") or None
        if status is not None and status not in _STATUSES:
            raise BadParameter(f"status: must be one of {', '.join(_STATUSES)} (got {status!r})")
        limit, offset = _paging(request)
        async with self.db.read() as conn:
            found = await q.list_conversations(conn, status, limit=limit, offset=offset)
        return json_response([dataclasses.asdict(c) for c in found])

    async def reports(self, request: web.Request) -> web.Response:
        """``?period=week|month`` or ``?from=YYYY-MM-DD&to=YYYY-MM-DD``: every report."""
        report = await self.reporter.report(self._period(request))
        return json_response(report.as_json())

    async def chart(self, request: web.Request) -> web.Response:
        """``?kind=…`` and the period as for ``/api/reports``: the chart as PNG."""
        kind = request.query.get("kind", "")
        language = request.query.get("lang") or None
        if language not in (None, "ru", "en"):
            raise BadParameter(f"lang: must be ru or en (got {language[:10]!r})")
        try:
            png = await self.reporter.chart(kind, self._period(request), language)
        except ReportError as exc:
            raise BadParameter(str(exc)) from None
        return web.Response(body=png, content_type="image/png")

    def _period(self, request: web.Request) -> Period:
        query = request.query
        try:
            first = parse_day(query["from"], "from") if "from" in query else None
            last = parse_day(query["to"], "to") if "to" in query else None
            return self.reporter.period(query.get("period") or None, first=first, last=last)
        except ReportError as exc:
            raise BadParameter(str(exc)) from None


def _paging(request: web.Request) -> tuple[int, int]:
    query = request.query
    limit = decimal(query["limit"], "limit", high=MAX_LIMIT) if "limit" in query else None
    offset = decimal(query["offset"], "offset", low=0) if "offset" in query else 0
    return limit or DEFAULT_LIMIT, offset


def _client_id(request: web.Request) -> int:
    return decimal(request.match_info["id"], "id")


def _query_text(request: web.Request) -> str:
    """``?q=``: a search box's text, which holds no control characters (a NUL would
    end SQLite's pattern early and match every client)."""
    text = request.query.get("q", "").strip()
    if len(text) > MAX_QUERY:
        raise BadParameter(f"q: longer than {MAX_QUERY} characters")
    control = next((ch for ch in text if unicodedata.category(ch) == "Cc"), None)
    if control is not None:
        raise BadParameter(f"q: holds a control character (U+{ord(control):04X})")
    return text


def _not_found(request: web.Request) -> web.Response:
    return error_response(404, f"client {request.match_info['id'][:40]} not found")


Unauthorized = Literal["missing", "unknown", "revoked"]


async def _caller(request: web.Request, token: bytes, tokens: Tokens) -> Caller | Unauthorized:
    """Who the bearer token names: the config's token, a person's, or why nobody."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return "missing"
    if hmac.compare_digest(given.encode(), token):
        return _CONFIG_CALLER
    return await tokens.caller(given)


async def _authorize(
    request: web.Request, token: bytes, tokens: Tokens
) -> web.StreamResponse | None:
    """None when the call may go on (its caller kept on the request), else the 401 or 403."""
    caller = await _caller(request, token, tokens)
    if not isinstance(caller, Caller):
        challenge = _REALM if caller == "missing" else f'{_REALM}, error="invalid_token"'
        return error_response(401, _UNAUTHORIZED[caller], {"WWW-Authenticate": challenge})
    request[CALLER] = caller
    # An unknown route or method is answered 404 or 405 whoever asks.
    why = None if request.match_info.http_exception else refusal(caller, request)
    if why is None:
        return None
    async with tokens.db.write() as conn:
        await desk_q.audit(
            conn,
            {
                "at": datetime.now(UTC),
                "actor": caller.actor,
                "action": "refused",
                "object_type": None,
                "object_id": None,
                "details": {"what": f"{request.method} {request.path[:200]}"},
            },
        )
    challenge = f'{_REALM}, error="insufficient_scope"'
    return error_response(403, why, {"WWW-Authenticate": challenge})


def _middleware(token: bytes, tokens: Tokens) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response = await _handle(request, handler, token, tokens)
        caller = request.get(CALLER)
        loggers.event(
            log,
            "admin.request",
            method=request.method,
            path=request.path,
            status=response.status,
            ms=f"{(time.perf_counter() - started) * 1000:.1f}",
            caller=caller.name if caller is not None else "-",
        )
        return response

    return middleware


async def _handle(
    request: web.Request, handler: Handler, token: bytes, tokens: Tokens
) -> web.StreamResponse:
    try:
        if request.path == "/api" or request.path.startswith("/api/"):
            refused = await _authorize(request, token, tokens)
            if refused is not None:
                return refused
        return await handler(request)
    except BadParameter as exc:
        return error_response(400, str(exc))
    except web.HTTPException as exc:
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        message = f"not found: {request.path}" if exc.status == 404 else exc.reason
        return error_response(exc.status, message, headers)
    except (DBAPIError, OSError) as exc:
        loggers.event(
            log,
            "admin.storage_failed",
            logging.WARNING,
            path=request.path,
            error=type(exc).__name__,
        )
        return error_response(503, "storage unavailable")
    except Exception:
        log.exception("admin.error path=%s", request.path)
        return error_response(500, "internal error")
