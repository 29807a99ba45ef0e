"""Signing in to the console by one-time links, and signing out.

A link (``public_url/signin?k=SECRET``) is made for a manager by ``hub console
link NAME``, by the bot's ``/web`` in their private chat, or sent to their
registered email from the sign-in page. Only its SHA-256 is kept; it is good for
15 minutes and signs in once. A GET of the link only shows a button (link
scanners of mail and chat never sign anyone in); the POST signs in and opens a
session kept in a signed cookie. Asking for a link by email answers the same
whether or not the address is known, and is rate limited.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import deque
from datetime import timedelta
from typing import Any

from aiohttp import web

from hub.admin.tokens import digest
from hub.console.app import (
    COOKIE,
    CTX,
    ConsoleContext,
    page,
    person_of,
    public,
    see_other,
    session_cookie,
    set_cookie,
    texts_for,
)
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.types import ManagerRef
from storage import Database
from storage import console as q
from storage import desk as desk_q

log = loggers.console

LINK_MINUTES = 15
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
_ASKS_PER_ADDRESS_MINUTE = 5  # email asks from one network address a minute

NAV: tuple[()] = ()
TEXTS = {
    "signin.title": ("Вход в консоль", "Sign in to the console"),
    "signin.intro": (
        "Вход — по одноразовой ссылке. Попросите её у бота командой /web в личном чате "
        "или получите на свою рабочую почту.",
        "You sign in with a one-time link. Ask the bot for one with /web in your private "
        "chat, or have it sent to your work email.",
    ),
    "signin.button": ("Войти", "Sign in"),
    "signin.link_intro": (
        "Нажмите «Войти», чтобы открыть консоль. Ссылка действует один раз.",
        "Press “Sign in” to open the console. The link works once.",
    ),
    "signin.link_bad": (
        "Ссылка уже использована или устарела. Запросите новую.",
        "This link was already used or has expired. Ask for a new one.",
    ),
    "signin.email_label": ("Рабочая почта", "Work email"),
    "signin.email_button": ("Прислать ссылку", "Send me a link"),
    "signin.email_bad": (
        "Введите адрес электронной почты, например name@example.com",
        "Enter an email address, such as name@example.com",
    ),
    "signin.email_sent": (
        "Если этот адрес зарегистрирован, ссылка для входа уже в пути. Она действует 15 минут.",
        "If this address is registered, a sign-in link is on its way. It works for 15 minutes.",
    ),
    "signin.email_slow": (
        "Слишком много запросов. Подождите минуту и попробуйте снова.",
        "Too many requests. Wait a minute and try again.",
    ),
    "signin.mail_subject": ("Вход в консоль", "Sign in to the console"),
    "signin.mail_text": (
        "Здравствуйте, {name}!\n\nСсылка для входа в консоль (действует 15 минут, "
        "один раз):\n{url}\n\nЕсли вы не запрашивали вход, просто удалите это письмо.",
        "Hello {name},\n\nYour sign-in link to the console (works once, for 15 "
        "minutes):\n{url}\n\nIf you did not ask to sign in, just delete this email.",
    ),
    "signout.done": ("Вы вышли из консоли.", "You have signed out."),
}


async def make_link(
    db: Database, clock: Clock, *, base_url: str, manager_id: int, sent_by: str
) -> str:
    """A new one-time sign-in URL for the manager; only its hash is kept."""
    secret = secrets.token_urlsafe(32)
    now = clock.now()
    async with db.write() as conn:
        await q.add_link(
            conn,
            manager_id=manager_id,
            secret_hash=digest(secret),
            now=now,
            expires_at=now + timedelta(minutes=LINK_MINUTES),
            sent_by=sent_by,
        )
    loggers.event(log, "console.link_made", manager=manager_id, by=sent_by)
    return f"{base_url}/signin?k={secret}"


class Links:
    """Sign-in links for the bot's ``/web`` (the ``ConsoleLinks`` port)."""

    def __init__(self, ctx: ConsoleContext) -> None:
        self.ctx = ctx

    async def sign_in_link(self, manager: ManagerRef) -> str | None:
        """A link for the registered manager asking, or None when the console is off."""
        base = self.ctx.config().console.base_url()
        if base is None:
            return None
        return await make_link(
            self.ctx.db, self.ctx.clock, base_url=base, manager_id=manager.id, sent_by="telegram"
        )


class _Window:
    """Asks per key within the last minute (the sign-in page's email form)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._asks: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        asks = self._asks.setdefault(key, deque())
        while asks and asks[0] < now - 60:
            asks.popleft()
        if len(asks) >= self.per_minute:
            return False
        asks.append(now)
        if len(self._asks) > 10_000:  # forget quiet addresses rather than grow
            self._asks = {k: v for k, v in self._asks.items() if v}
        return True


def _form(
    request: web.Request,
    *,
    status: int = 200,
    sent: bool = False,
    error: str | None = None,
    email: str = "",
    out: bool = False,
) -> web.Response:
    """The sign-in page: how to get a link, and the form asking for one by email."""
    values = {"sent": sent, "error": error, "email": email, "out": out}
    return page(request, "signin/signin.html", status=status, **values)


class _SignIn:
    """The sign-in pages' handlers."""

    def __init__(self, ctx: ConsoleContext) -> None:
        self.ctx = ctx
        self.window = _Window(_ASKS_PER_ADDRESS_MINUTE)

    @public
    async def page(self, request: web.Request) -> web.StreamResponse:
        """Without ``k``: the sign-in page. With it: a button (a GET signs nobody in)."""
        secret = request.query.get("k", "")
        if not secret:
            return _form(request, out=request.query.get("out") == "1")
        async with self.ctx.db.read() as conn:
            found = await q.link(conn, digest(secret))
        now = self.ctx.clock.now()
        good = found is not None and found.used_at is None and found.expires_at > now
        return page(request, "signin/link.html", secret=secret, good=good)

    @public
    async def sign_in(self, request: web.Request) -> web.StreamResponse:
        secret = str((await request.post()).get("k", ""))
        opened = await self._open(secret) if secret else None
        if opened is None:
            loggers.event(log, "console.link_refused", 30)
            return page(request, "signin/link.html", status=400, secret="", good=False)
        response = see_other("/")
        set_cookie(response, self.ctx, COOKIE, session_cookie(self.ctx, opened))
        return response

    async def _open(self, secret: str) -> str | None:
        """The link used (once) and a session opened: the session's secret."""
        ctx = self.ctx
        async with ctx.db.write() as conn:
            found = await q.link(conn, digest(secret))
            person = await q.person(conn, found.manager_id) if found is not None else None
            if found is None or person is None or not person.active:
                return None
            if not await q.use_link(conn, found.id, ctx.clock.now()):
                return None
            session_secret = secrets.token_urlsafe(32)
            session_id = await q.open_session(
                conn,
                secret_hash=digest(session_secret),
                manager_id=person.id,
                name=person.name,
                now=ctx.clock.now(),
            )
            await desk_q.audit(conn, _audited(ctx, person.name, "console.sign_in", person.id))
        loggers.event(log, "console.signed_in", manager=person.id, session=session_id)
        return session_secret

    @public
    async def email_link(self, request: web.Request) -> web.StreamResponse:
        address = str((await request.post()).get("email", "")).strip()
        t = texts_for(request)
        if not _EMAIL.fullmatch(address):
            return _form(request, status=422, error=t("signin.email_bad"), email=address)
        if not self.window.allow(request.remote or "-"):
            return _form(request, status=429, error=t("signin.email_slow"), email=address)
        await _send_by_email(self.ctx, address)
        return _form(request, sent=True)

    async def sign_out(self, request: web.Request) -> web.StreamResponse:
        person = person_of(request)
        async with self.ctx.db.write() as conn:
            await q.end_session(conn, person.session_id, self.ctx.clock.now())
            entry = _audited(self.ctx, person.name, "console.sign_out", person.id)
            await desk_q.audit(conn, entry)
        loggers.event(log, "console.signed_out", manager=person.id, session=person.session_id)
        response = see_other("/signin?out=1")
        response.del_cookie(COOKIE, path="/")
        return response


def _audited(ctx: ConsoleContext, name: str, action: str, manager_id: int) -> dict[str, Any]:
    return {
        "at": ctx.clock.now(),
        "actor": f"console:{name}",
        "action": action,
        "object_type": "manager",
        "object_id": manager_id,
        "details": None,
    }


def add_routes(app: web.Application, ctx: ConsoleContext) -> None:
    handlers = _SignIn(ctx)
    app.router.add_get("/signin", handlers.page)
    app.router.add_post("/signin", handlers.sign_in)
    app.router.add_post("/signin/email", handlers.email_link)
    app.router.add_post("/signout", handlers.sign_out)


async def _send_by_email(ctx: ConsoleContext, address: str) -> None:
    """A link to each active manager registered with ``address``, within the hourly
    number per person; nothing said either way (the answer is the same)."""
    base = ctx.config().console.base_url()
    if ctx.send_mail is None or base is None:
        loggers.event(log, "console.email_off", 30)
        return
    async with ctx.db.read() as conn:
        people = await q.people_by_email(conn, address)
        hour_ago = ctx.clock.now() - timedelta(hours=1)
        counts = [await q.links_since(conn, p.id, hour_ago, "email") for p in people]
    limit = ctx.config().console.email_links_per_hour
    for person, count in zip(people, counts, strict=True):
        if count >= limit:
            loggers.event(log, "console.email_limited", 30, manager=person.id)
            continue
        url = await make_link(
            ctx.db, ctx.clock, base_url=base, manager_id=person.id, sent_by="email"
        )
        language = (person.attrs or {}).get("language") or ctx.config().hub.language
        text = ctx.catalog.text("signin.mail_text", language, name=person.name, url=url)
        subject = ctx.catalog.text("signin.mail_subject", language)
        try:
            await ctx.send_mail(address, subject, text)
        except Exception as exc:  # the page answers the same; the log says why
            loggers.event(
                log, "console.email_failed", 30, manager=person.id, error=type(exc).__name__
            )


__all__ = ["CTX", "LINK_MINUTES", "Links", "add_routes", "make_link"]
