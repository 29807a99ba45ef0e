"""The web console's application: its context, the sign-in, session and CSRF
middleware, ``render`` and ``requires`` for the sections' pages, and the list of
sections (each a module with ``TEXTS``, ``NAV`` and ``add_routes(app, ctx)``).

Pages are rendered on the server (Jinja2, autoescaped); live parts use htmx and
server-sent events (``live.py``), shipped in ``static/``. A person signed in is a
``[[managers]]`` entry; what their role may do is what the desk and the admin API
already enforce (``hub.admin.access``, ``hub.kernel.types``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from hub.admin.access import RIGHTS, Right
from hub.admin.settings import Settings
from hub.admin.tokens import digest
from hub.campaigns.campaigns import Campaigns
from hub.config import Config
from hub.console.i18n import Catalog
from hub.console.live import Live
from hub.desk.desk import Desk
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.errors import StorageUnavailable
from hub.kernel.http import bound_port, serve
from hub.kernel.types import ManagerRef, Role
from storage import Database
from storage import console as q
from storage import desk as desk_q

log = loggers.console

HERE = Path(__file__).parent
COOKIE = "hub_console"
FORM_COOKIE = "hub_console_form"  # the CSRF pair of forms shown before signing in
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
EVERYONE = frozenset(r for r in Role if r is not Role.INTEGRATION)
# Who reads clients' conversations: the roles with that right in the admin API.
WITH_CONVERSATIONS = frozenset(r for r in EVERYONE if Right.CONVERSATIONS in RIGHTS[r])
_TOUCH_EVERY_S = 60.0  # a session's last_seen_at written at most once a minute

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Callable[..., Awaitable[web.StreamResponse]])
SendMail = Callable[[str, str, str], Awaitable[None]]  # to, subject, text


@dataclass(frozen=True, slots=True)
class Person:
    """Who is signed in: a manager of the config, with the session they hold."""

    id: int  # the managers table's
    name: str
    role: Role
    telegram_id: int
    email: str | None
    language: str | None
    team: str | None
    session_id: int
    session_hash: str

    @property
    def actor(self) -> str:
        """How the audit log names them."""
        return f"console:{self.name}"

    def as_manager(self) -> ManagerRef:
        """The person as the desk knows a manager."""
        return ManagerRef(
            id=self.id,
            name=self.name,
            telegram_id=self.telegram_id,
            role=self.role.value,
            language=self.language,
            team=self.team,
        )


class Nav(NamedTuple):
    """A section's entry in the navigation, shown to ``roles``."""

    path: str
    text: str  # a key of the section's TEXTS
    roles: frozenset[Role]


@dataclass
class ConsoleContext:
    """What every section's handlers reach: storage, the current config (a reload
    swaps it), the clock, the desk's services, templates, texts and the live feed."""

    db: Database
    config: Callable[[], Config]
    clock: Clock
    desk: Desk | None = None
    campaigns: Campaigns | None = None
    send_mail: SendMail | None = None  # sign-in links by email, when email can go out
    reload: Callable[[], Awaitable[object]] | None = None  # reread what the hub takes on reload
    settings: Settings | None = None  # the settings over the config file (admin section)
    catalog: Catalog = field(default_factory=Catalog)
    env: jinja2.Environment = field(
        default_factory=lambda: jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # the package's templates: no file checked at each render
        )
    )
    live: Live | None = None
    key: bytes = b""  # signs cookies and CSRF tokens; from the database at start

    async def load_key(self) -> None:
        """The signing key shared by every instance through the database."""
        async with self.db.write() as conn:
            found = await q.signing_key(conn, secrets.token_hex(32), self.clock.now())
        self.key = bytes.fromhex(found)

    def sign(self, value: str) -> str:
        return hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()

    def language(self, person: Person | None) -> str:
        return (person.language if person else None) or self.config().hub.language

    async def audit(
        self,
        request: web.Request,
        action: str,
        *,
        object_type: str | None = None,
        object_id: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """One audit entry in the signed-in person's name."""
        async with self.db.write() as conn:
            await desk_q.audit(conn, self._entry(request, action, object_type, object_id, details))

    async def audit_first_read(self, request: web.Request, client_id: int) -> None:
        """The person's first read of a client in this session goes to the audit log;
        later reads (and live refreshes) do not."""
        person = request[PERSON]
        async with self.db.write() as conn:
            if await q.first_read(conn, person.session_id, client_id):
                entry = self._entry(request, "read", "client", client_id, {"what": "console"})
                await desk_q.audit(conn, entry)

    def _entry(
        self,
        request: web.Request,
        action: str,
        object_type: str | None,
        object_id: int | None,
        details: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        person = request.get(PERSON)
        return {
            "at": self.clock.now(),
            "actor": person.actor if person is not None else "console:-",
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "details": dict(details) if details else None,
        }


CTX = web.AppKey("console", ConsoleContext)
PERSON = web.RequestKey("console.person", Person)  # the signed-in person


def person_of(request: web.Request) -> Person:
    """The signed-in person (every handler but the public ones has one)."""
    return request[PERSON]


# -- pages ----------------------------------------------------------------------


def texts_for(request: web.Request) -> Callable[..., str]:
    ctx = request.app[CTX]
    language = ctx.language(request.get(PERSON))
    return functools.partial(ctx.catalog.text, language=language)


def _nav(person: Person | None) -> list[Nav]:
    if person is None:
        return []
    return [n for module in SECTIONS for n in getattr(module, "NAV", ()) if person.role in n.roles]


def shown_at(moment: datetime | None, zone: ZoneInfo, *, seconds: bool = False) -> str:
    """A moment as every page shows it: in the hub's time zone, to the minute."""
    if moment is None:
        return "—"
    return moment.astimezone(zone).strftime("%d.%m.%Y %H:%M:%S" if seconds else "%d.%m.%Y %H:%M")


def page(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    """``template`` rendered with the texts, the person, the CSRF token and the
    navigation, as an HTML response."""
    ctx = request.app[CTX]
    person = request.get(PERSON)
    shared: dict[str, Any] = {
        "t": texts_for(request),
        "lang": ctx.language(person),
        "person": person,
        "csrf": csrf_token(request),
        "nav": _nav(person),
        "path": request.path,
        "live": False,  # True: the page listens to /live (hx-trigger="sse:change")
        "when": functools.partial(shown_at, zone=ZoneInfo(ctx.config().hub.timezone)),
    }
    html = ctx.env.get_template(template).render(shared | values)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


async def render(request: web.Request, template: str, **values: Any) -> web.Response:
    """A section's page: ``template`` (``dir/page.html``, extending base.html)."""
    return page(request, template, **values)


def refusal(request: web.Request, status: int, message: str) -> web.Response:
    """The error page: what went wrong, said in the person's language."""
    t = texts_for(request)
    titles = {403: "forbidden", 404: "not_found", 503: "unavailable"}
    return page(
        request,
        "error.html",
        status=status,
        title=t(titles.get(status, "bad_request")),
        message=message,
    )


def requires(*roles: Role) -> Callable[[Handler], Handler]:
    """Refuse every other role with 403 and a page saying why."""
    allowed = frozenset(roles)

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            person = person_of(request)
            if person.role not in allowed:
                t = texts_for(request)
                names = ", ".join(t(f"role.{r.value}") for r in Role if r in allowed)
                why = t("forbidden_role", roles=names, role=t(f"role.{person.role.value}"))
                return refusal(request, 403, why)
            return await handler(request)

        return checked

    return wrap


def see_other(location: str) -> web.Response:
    """A redirect after a POST (the browser GETs ``location``)."""
    return web.Response(status=303, headers={"Location": location})


def public(handler: H) -> H:
    """A page open without signing in (the sign-in pages)."""
    handler.console_public = True  # type: ignore[attr-defined]
    return handler


# -- sessions and CSRF ----------------------------------------------------------


def session_cookie(ctx: ConsoleContext, secret: str) -> str:
    """The cookie's value: the session's secret and its signature."""
    return f"{secret}.{ctx.sign('session:' + secret)}"


def _cookie_secret(ctx: ConsoleContext, value: str | None) -> str | None:
    if not value or value.count(".") != 1:
        return None
    secret, signature = value.split(".")
    return secret if hmac.compare_digest(signature, ctx.sign("session:" + secret)) else None


def secure_cookies(ctx: ConsoleContext) -> bool:
    return (ctx.config().console.public_url or "").startswith("https://")


def set_cookie(response: web.StreamResponse, ctx: ConsoleContext, name: str, value: str) -> None:
    response.set_cookie(
        name, value, httponly=True, samesite="Lax", secure=secure_cookies(ctx), path="/"
    )


def csrf_token(request: web.Request) -> str:
    """The token every form carries: bound to the session, or before signing in to
    the form cookie (set by the middleware when missing)."""
    ctx = request.app[CTX]
    person = request.get(PERSON)
    if person is not None:
        return ctx.sign("csrf:" + person.session_hash)[:40]
    return ctx.sign("form:" + request[FORM_SECRET])[:40]


FORM_SECRET = web.RequestKey("console.form_secret", str)


async def _signed_in(request: web.Request, ctx: ConsoleContext) -> Person | None:
    """The person whose live session the cookie names; a session past its hours, of
    a person removed or whose API token was revoked since, is ended here."""
    secret = _cookie_secret(ctx, request.cookies.get(COOKIE))
    if secret is None:
        return None
    hashed = digest(secret)
    async with ctx.db.read() as conn:
        row = await q.session(conn, hashed)
    if row is None or row.ended_at is not None:
        return None
    now = ctx.clock.now()
    hours = ctx.config().console.session_hours
    revoked = row.token_revoked_at is not None and row.token_revoked_at >= row.created_at
    if not row.person.active or revoked or (now - row.created_at).total_seconds() > hours * 3600:
        async with ctx.db.write() as conn:
            await q.end_session(conn, row.id, now)
        why = "revoked" if revoked else "inactive" if not row.person.active else "expired"
        loggers.event(log, "console.session_ended", session=row.id, why=why)
        return None
    if (now - row.last_seen_at).total_seconds() > _TOUCH_EVERY_S:
        async with ctx.db.write() as conn:
            await q.touch_session(conn, row.id, now)
    p, attrs = row.person, row.person.attrs or {}
    return Person(
        id=p.id,
        name=p.name,
        role=Role(p.role),
        telegram_id=p.telegram_id,
        email=p.email,
        language=attrs.get("language"),
        team=attrs.get("team"),
        session_id=row.id,
        session_hash=hashed,
    )


async def _sent_token(request: web.Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def _is_public(request: web.Request) -> bool:
    handler = request.match_info.handler
    return bool(getattr(handler, "console_public", False)) or request.path.startswith("/static/")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sign-in, CSRF and the error pages, before any section's handler."""
    ctx = request.app[CTX]
    try:
        return await _guarded(request, handler, ctx)
    except ConnectionResetError:  # the browser went away mid-answer: no page to show
        raise
    except (SQLAlchemyError, StorageUnavailable, OSError) as exc:
        loggers.event(log, "console.unavailable", 30, error=loggers.redact(str(exc)[:200]))
        return refusal(request, 503, texts_for(request)("unavailable"))
    except web.HTTPNotFound:
        return refusal(request, 404, texts_for(request)("not_found"))


async def _guarded(
    request: web.Request, handler: Handler, ctx: ConsoleContext
) -> web.StreamResponse:
    form_secret = request.cookies.get(FORM_COOKIE) or ""
    fresh_form = len(form_secret) < 32
    request[FORM_SECRET] = secrets.token_urlsafe(24) if fresh_form else form_secret
    if request.path.startswith("/static/"):  # (its 404 page wants the form secret too)
        return await handler(request)
    person = await _signed_in(request, ctx)
    if person is not None:
        request[PERSON] = person
    elif not _is_public(request):
        if request.method == "GET" and "HX-Request" not in request.headers:
            raise web.HTTPSeeOther(f"/signin?next={quote(request.path_qs, safe='')}")
        raise web.HTTPUnauthorized(text="sign in first")
    if request.method not in SAFE_METHODS:
        sent = await _sent_token(request)
        if not hmac.compare_digest(sent, csrf_token(request)):
            loggers.event(log, "console.csrf_refused", 30, path=request.path)
            return refusal(request, 403, texts_for(request)("csrf_refused"))
    response = await handler(request)
    if fresh_form and person is None and not response.prepared:
        set_cookie(response, ctx, FORM_COOKIE, request[FORM_SECRET])
    return response


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    """No framing, no sniffing, no referrer (a sign-in link is a secret in a URL),
    scripts and styles from the console itself only."""
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith("/static/"):
        return
    response.headers.setdefault("Cache-Control", "no-store")


async def home(request: web.Request) -> web.StreamResponse:
    """The first section the person may see, or a page saying there is none."""
    entries = _nav(person_of(request))
    if entries:
        raise web.HTTPSeeOther(entries[0].path)
    return page(request, "home.html")


# The files the pages load, known at start: any other name is a 404 without touching
# the file system (a name too long for it made aiohttp's static route answer 500).
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}
_STATIC = {
    path.name: (path.read_bytes(), _STATIC_TYPES[path.suffix])
    for path in (HERE / "static").iterdir()
    if path.suffix in _STATIC_TYPES
}


@public
async def _static(request: web.Request) -> web.StreamResponse:
    found = _STATIC.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    body, content_type = found
    response = web.Response(body=body, content_type=content_type, charset="utf-8")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


def create_app(ctx: ConsoleContext) -> web.Application:
    """The console: the sign-in pages, the live feed and every section's routes."""
    for module in SECTIONS:
        ctx.catalog.add(module.TEXTS)
    app = web.Application(middlewares=[guard], client_max_size=20 * 1024 * 1024)
    app[CTX] = ctx
    app.on_response_prepare.append(_headers)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/", home)
    for module in SECTIONS:
        module.add_routes(app, ctx)
    return app


class ConsoleServer:
    """Serves the console at ``console.listen``; ``port`` is the bound one."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, listen: str, edges: Any = None) -> None:
        self._runner = await serve(self.app, listen, shutdown_timeout=2.0, edges=edges)
        self.port = bound_port(self._runner)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


# Sections are listed here, not discovered: each line brings one in. They import
# this module for the context and helpers above, so they come last.
from hub.console import (  # noqa: E402
    admin,
    audit,
    auth,
    campaigns,
    clients,
    inbox,
    live,
    reports,
    requests,
)

SECTIONS: tuple[ModuleType, ...] = (
    auth,
    live,
    inbox,
    requests,
    clients,
    reports,
    campaigns,
    admin,
    audit,
)
