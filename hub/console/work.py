"""A request's page at the desk: what ``/requests/{id}`` shows, and its answer box
and actions done through the managers' desk as the signed-in person's manager.

Everything the page does goes through :class:`hub.desk.desk.Desk` with the
person's manager identity: the same rights, the same record, the same outbox (an
answer is delivered over the client's channel and copied into their Telegram
topic as one given outside it). Each form carries a token: the desk's key of
what it does, so that a form posted twice does it once. An action the desk did
is audited under the person's name and told in the client's topic, as the bot
tells a command given there.
"""

from __future__ import annotations

import asyncio
import re
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from hub.delivery.outbox import Outgoing
from hub.desk.canned import TemplateFailed
from hub.desk.desk import Desk, NoConversation, NotAllowed, NotSent, UnknownTemplate
from hub.desk.replies import REPLY_ROUTE
from hub.kernel import loggers
from hub.kernel.errors import HubError
from hub.kernel.texts import text
from hub.kernel.types import ClientCard, ManagerRef
from storage import desk as desk_q
from storage import requests as q
from storage.requests import DeadlineRow, Entry, RequestRow

__all__ = [
    "ACTIONS",
    "BadInput",
    "Done",
    "Missing",
    "Refused",
    "RequestPage",
    "RequestWork",
    "console_actor",
    "new_token",
]

log = loggers.console

# The desk's actions the page offers (the rest stay Telegram commands).
ACTIONS = ("take", "resolve", "wait", "reopen", "transfer", "remind")
MAX_TEXT = 10_000
PAGE = 50  # entries of the log a page shows (and each "earlier" adds)
TAIL = 200  # entries the live tail sends at most at once
_TOKEN = re.compile(r"[0-9a-f]{32}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def console_actor(manager: ManagerRef) -> str:
    """How the audit log names a person acting in the console: by their name."""
    return f"console:{manager.name}"


def new_token() -> str:
    """A fresh form token (what the form does, done once)."""
    return uuid.uuid4().hex


class Missing(HubError):
    """No such request."""


class Refused(HubError):
    """The person may not see or act on this client (the desk's rule); audited."""


class BadInput(HubError):
    """A field the page refuses: ``field`` names it, ``key`` the text saying why."""

    def __init__(self, field: str, key: str) -> None:
        super().__init__(f"{field}: {key}")
        self.field = field
        self.key = key


@dataclass(frozen=True, slots=True)
class Done:
    """What the desk said of an answer or an action (in the person's language;
    empty for an answer given: the page says it); ``ok``: it was done (else
    ``said`` tells why not)."""

    said: str
    ok: bool


@dataclass(frozen=True, slots=True)
class RequestPage:
    """What a request's page shows. ``entries``: the client's log, oldest first;
    ``earlier``: where the page before them starts (None: nothing before);
    ``answers_in``: the request an answer goes to (the client's latest, as in
    Telegram) and ``route`` its channel."""

    request: RequestRow
    card: ClientCard
    deadlines: list[DeadlineRow]
    entries: list[Entry]
    earlier: int | None
    answers_in: int
    route: str
    templates: list[str]
    colleagues: list[ManagerRef]

    @property
    def newest(self) -> int:
        """The newest entry shown: the live tail starts after it."""
        return self.entries[-1].id if self.entries else 0


@dataclass(frozen=True, slots=True)
class _Read:
    request: RequestRow
    deadlines: list[DeadlineRow]
    entries: list[Entry]


def _read(conn: Connection, conversation_id: int, before: int, limit: int) -> _Read | None:
    request = q.read_request(conn, conversation_id)
    if request is None:
        return None
    entries = q.read_before(conn, request.client_id, before, limit + 1)
    return _Read(request, q.read_deadlines(conn, conversation_id), entries)


def token_of(raw: str) -> str:
    """The form's token as given, checked (a stranger's key is never stored)."""
    token = raw.strip()
    if not _TOKEN.fullmatch(token):
        raise BadInput("token", "bad_token")
    return token


def said_text(raw: str) -> str:
    """An answer's or a note's text as the desk takes it: something, not too long,
    no control characters but line breaks and tabs."""
    said = raw.replace("\r\n", "\n").strip()
    if not said:
        raise BadInput("text", "empty_text")
    if len(said) > MAX_TEXT:
        raise BadInput("text", "long_text")
    if _CONTROL.search(said):
        raise BadInput("text", "control_text")
    return said


class RequestWork:
    """The request page's reads and deeds over one :class:`Desk`."""

    def __init__(
        self,
        desk: Desk,
        *,
        actor: Callable[[ManagerRef], str] = console_actor,
        page: int = PAGE,
    ) -> None:
        self.desk = desk
        self.actor = actor
        self.page_size = page
        self._turns: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @property
    def _staff(self) -> str:
        return self.desk.staff_channel or "staff"

    # -- reading -------------------------------------------------------------------------

    async def page(
        self, manager: ManagerRef, conversation_id: int, *, before: int | None = None
    ) -> RequestPage:
        """The page of the request for ``manager``: Missing, or Refused (audited)."""
        start = before if before is not None else q.NEWEST
        found = await self.desk.db.run_read(
            lambda conn: _read(conn, conversation_id, start, self.page_size)
        )
        if found is None:
            raise Missing(f"no request {conversation_id}")
        await self.check(manager, found.request.client_id, "read")
        card = await self.desk.card(found.request.client_id)
        if card is None:
            raise Missing(f"no client {found.request.client_id}")
        entries = found.entries
        earlier = None
        if len(entries) > self.page_size:
            entries = entries[1:]
            earlier = entries[0].id
        async with self.desk.db.read() as conn:
            latest = await desk_q.latest_conversation(conn, found.request.client_id)
        channel = latest.channel if latest is not None else found.request.channel
        return RequestPage(
            request=found.request,
            card=card,
            deadlines=found.deadlines,
            entries=entries,
            earlier=earlier,
            answers_in=latest.id if latest is not None else found.request.id,
            route=REPLY_ROUTE.get(channel, (channel, ""))[0],
            templates=await self.desk.templates(),
            colleagues=await self.desk.colleagues(manager),
        )

    async def status(
        self, manager: ManagerRef, conversation_id: int
    ) -> tuple[RequestRow, list[DeadlineRow]]:
        """The request and its deadlines as they are now (the live part of the page)."""
        request = await self.request(conversation_id)
        await self.check(manager, request.client_id, "read")
        deadlines = await self.desk.db.run_read(
            lambda conn: q.read_deadlines(conn, conversation_id)
        )
        return request, deadlines

    async def tail(self, manager: ManagerRef, conversation_id: int, after: int) -> list[Entry]:
        """The client's entries written after ``after`` (the live part of the page:
        checked, not audited as a read; the page was)."""
        request = await self.request(conversation_id)
        await self.check(manager, request.client_id, "read")
        return await self.desk.db.run_read(
            lambda conn: q.read_after(conn, request.client_id, after, TAIL)
        )

    async def request(self, conversation_id: int) -> RequestRow:
        found = await self.desk.db.run_read(lambda conn: q.read_request(conn, conversation_id))
        if found is None:
            raise Missing(f"no request {conversation_id}")
        return found

    async def check(self, manager: ManagerRef, client_id: int, what: str) -> None:
        """Refused (and the refusal audited under the person's name) unless the desk
        lets ``manager`` act on the client."""
        if await self.desk.allows(manager, client_id):
            return
        loggers.event(log, "console.refused", 30, manager=manager.id, client=client_id)
        await self._audit(manager, "refused", client_id, {"what": what})
        raise Refused(text("not_yours", self._language(manager)))

    # -- the answer box ------------------------------------------------------------------

    async def answer(
        self, manager: ManagerRef, conversation_id: int, raw: str, *, token: str, note: bool
    ) -> Done:
        """The answer (or note) given through the desk as ``manager`` gives one from
        their private chat: to the client's latest request, copied into the topic."""
        said = said_text(raw)
        request = await self.request(conversation_id)
        await self.check(manager, request.client_id, "note" if note else "answer")
        client = request.client_id
        return await self._once(
            manager,
            request,
            token_of(token),
            "note" if note else "answer",
            lambda key: self.desk.answer(
                client, said, manager=manager, key=key, note=note, mirror=True
            ),
        )

    async def template(
        self, manager: ManagerRef, conversation_id: int, name: str, *, token: str
    ) -> Done:
        """The canned answer ``name`` rendered for the client and sent (``/t NAME``)."""
        if not name.strip():
            raise BadInput("template", "no_template")
        request = await self.request(conversation_id)
        await self.check(manager, request.client_id, "template")
        client = request.client_id
        return await self._once(
            manager,
            request,
            token_of(token),
            "template",
            lambda key: self.desk.answer_template(
                client, name, manager=manager, key=key, mirror=True
            ),
        )

    async def _once(
        self,
        manager: ManagerRef,
        request: RequestRow,
        token: str,
        what: str,
        give: Callable[[str], Any],
    ) -> Done:
        """``give(key)`` done once for the token: a second post (a double click, a
        retry) finds it done. Another instance writing the same key at the same
        moment loses on the unique key and then finds it done too."""
        key = f"console:{token}"
        language = self._language(manager)
        async with self._turn(key):
            first = not await self._given(key)
            try:
                try:
                    interaction = await give(key)
                except IntegrityError:
                    interaction = await give(key)
            except NotAllowed as exc:
                raise Refused(str(exc)) from None
            except NotSent as exc:  # logged on the client, failed at once: said why
                return Done(str(exc), ok=False)
            except NoConversation:
                return Done(text("no_open", language), ok=False)
            except (UnknownTemplate, TemplateFailed) as exc:
                return Done(str(exc), ok=False)
        if first:
            details = {"conversation": request.id, "interaction": interaction}
            await self._audit(manager, what, request.client_id, details)
            loggers.event(log, f"console.{what}", client=request.client_id, manager=manager.id)
        return Done("", ok=True)

    async def _given(self, key: str) -> bool:
        async with self.desk.db.read() as conn:
            return await desk_q.answered(conn, key, self._staff) is not None

    # -- the actions ---------------------------------------------------------------------

    async def act(
        self,
        manager: ManagerRef,
        conversation_id: int,
        action: str,
        argument: str = "",
        *,
        token: str,
    ) -> Done:
        """One of :data:`ACTIONS` on the client's requests through the desk (which
        answers what it did, or why nothing); what was done is audited under the
        person's name and told in the client's topic, once per token."""
        if action not in ACTIONS:
            raise BadInput("action", "bad_action")
        if len(argument) > 500 or _CONTROL.search(argument):
            raise BadInput("argument", "bad_argument")
        request = await self.request(conversation_id)
        await self.check(manager, request.client_id, action)
        key = f"console:{token_of(token)}"
        async with self._turn(key):
            said = await self.desk.act(request.client_id, manager, action, argument, key=key)
            async with self.desk.db.read() as conn:
                acted = await desk_q.event_text(conn, key, self._staff) is not None
            if acted:
                await self._tell(manager, request, action, said, key)
        return Done(said, ok=acted)

    async def _tell(
        self, manager: ManagerRef, request: RequestRow, action: str, said: str, key: str
    ) -> None:
        """The action audited under the person's name and told in the client's topic
        (as the bot answers a command there), in one transaction, once per key."""
        now = self.desk.clock.now()
        notice = Outgoing(
            idempotency_key=f"{key}:topic",
            channel=self._staff,
            account="staff",
            recipient="staff",
            kind="alert",
            text=said,
            at=now,
            client_id=request.client_id,
            conversation_id=request.id,
        )
        async with self.desk.db.write() as conn:
            if await q.queued(conn, notice.idempotency_key):
                return
            if self.desk.staff_channel is not None:
                await q.enqueue(conn, notice.row())
            details = {"conversation": request.id, "said": said[:500]}
            await desk_q.audit(conn, self._audit_row(manager, action, request.client_id, details))
        loggers.event(log, f"console.{action}", client=request.client_id, manager=manager.id)

    # -- helpers -------------------------------------------------------------------------

    def _turn(self, key: str) -> asyncio.Lock:
        """One at a time per key in this process (a double click's two posts)."""
        lock = self._turns.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._turns[key] = lock
        return lock

    def _language(self, manager: ManagerRef) -> str:
        return manager.language or self.desk.language

    def _audit_row(
        self, manager: ManagerRef, action: str, client_id: int, details: dict[str, Any] | None
    ) -> dict[str, Any]:
        return {
            "at": self.desk.clock.now(),
            "actor": self.actor(manager),
            "action": action,
            "object_type": "client",
            "object_id": client_id,
            "details": details,
        }

    async def _audit(
        self, manager: ManagerRef, action: str, client_id: int, details: dict[str, Any] | None
    ) -> None:
        async with self.desk.db.write() as conn:
            await desk_q.audit(conn, self._audit_row(manager, action, client_id, details))
