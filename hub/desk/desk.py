"""The managers' desk: what a staff surface (the Telegram staff chat) can do.

Implements :class:`hub.kernel.ports.StaffDesk`. Every action is one transaction that
also logs an ``event`` (or the answer itself) on the client's record, so the log
tells who did what and when.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.clients import stage_rules, stages
from hub.clients.attachments import AttachmentStore, StoredFile
from hub.clients.search import client_search
from hub.clients.stage_rules import StageRules
from hub.config import TemplateSection
from hub.delivery import events
from hub.delivery.outbox import Outgoing
from hub.desk import csat, replies
from hub.desk.canned import CannedAnswers
from hub.desk.canned import fields as canned_fields
from hub.jobs import reminders
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.errors import HubError
from hub.kernel.texts import text
from hub.kernel.types import (
    OVERSEERS,
    STAGES,
    Attachment,
    Blocked,
    ClientCard,
    Contact,
    Direction,
    InboxItem,
    ManagerRef,
    Role,
    StoredAttachment,
    Topic,
)
from hub.kernel.when import parse_when, spoken
from routing.hours import parse_hours
from storage import Database, read
from storage import assign as assign_q
from storage import clients as clients_q
from storage import desk as q
from storage import managers as managers_q
from storage import replies as replies_q
from storage import sla as sla_q
from storage import waiting as waiting_q

log = loggers.core


class NoConversation(HubError):
    """The client has no conversation to answer in."""


def _ref(row: q.ManagerRow) -> ManagerRef:
    attrs = row.attrs or {}
    return ManagerRef(
        row.id,
        row.name,
        row.telegram_id,
        row.role,
        attrs.get("language"),
        attrs.get("team"),
        row.timezone,
    )


class NotSent(HubError):
    """An answer that is logged on the client but has no channel to go out on."""


class NotAllowed(HubError):
    """A manager acting on a client of another team (the text says so to them)."""


class UnknownTemplate(HubError):
    """``/t NAME`` with a name not configured (the text says so, with the names)."""


@dataclass(frozen=True, slots=True)
class _Command:
    """A staff action in hand: what each action's handler reads, in its transaction."""

    conn: AsyncConnection
    client_id: int
    manager: ManagerRef
    argument: str
    language: str
    now: datetime
    key: str | None  # the staff message's id: logged with the event
    staff: str
    open: list[q.ConversationRow]  # the client's requests not resolved, latest first
    latest: q.ConversationRow | None

    @property
    def ids(self) -> list[int]:
        return [c.id for c in self.open]

    @property
    def event_conversation(self) -> int | None:
        """Where the action is logged: the open request, else the latest one."""
        if self.open:
            return self.open[0].id
        return self.latest.id if self.latest else None

    def event(self, said: str) -> dict[str, Any]:
        """The event that logs the action on the client, under the command's key."""
        return {
            "client_id": self.client_id,
            "conversation_id": self.event_conversation,
            "direction": Direction.EVENT.value,
            "author": self.manager.name,
            "text": said,
            "channel": self.staff if self.key is not None else None,
            "external_id": self.key,
            "at": self.now,
        }


@dataclass(frozen=True, slots=True)
class _Said:
    """An action's answer. ``acted``: something was done (else nothing is logged);
    ``logged``: the action logged its own event (a stage move)."""

    text: str
    acted: bool = True
    logged: bool = False


def _attachment_rows(
    interaction_id: int, stored: Sequence[tuple[Attachment, StoredFile]]
) -> list[dict[str, Any]]:
    return [
        {
            "interaction_id": interaction_id,
            "filename": a.filename,
            "content_type": a.content_type,
            "size": s.size,
            "sha256": s.sha256,
        }
        for a, s in stored
    ]


@dataclass(frozen=True, slots=True)
class _Answer:
    """A manager's answer (or note) in hand, with its files already stored."""

    client_id: int
    text: str
    manager: ManagerRef
    key: str
    note: bool
    mirror: bool
    files: list[tuple[Attachment, StoredFile]]
    now: datetime


@dataclass(frozen=True, slots=True)
class _Answered:
    """What an answer wrote; ``unsent``: why no channel will send it (None: one will)."""

    conversation_id: int
    interaction_id: int
    unsent: str | None


def _only(said: str) -> _Said:
    """An answer with nothing done (no open request, a bad argument)."""
    return _Said(said, acted=False)


class Desk:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        files: AttachmentStore,
        *,
        language: str = "ru",
        timezone: str = "UTC",
        hours: str | None = None,
        region: str | None = None,
        staff_channel: str | None = "telegram",
        templates: Sequence[TemplateSection] = (),
    ) -> None:
        self.region = region
        self.canned = CannedAnswers(templates)
        self.db = db
        self.clock = clock
        self.files = files
        self.language = language
        self.timezone = timezone
        self.hours = hours  # hub.hours: a manager's working day when theirs is not set
        self.staff_channel = staff_channel
        # The channels the hub can send on (set once they are built): an answer
        # routed to another one would wait in the outbox for ever, unseen.
        self.sending: frozenset[str] | None = None
        self.csat: csat.Csat | None = None  # [csat]: the client told and asked on resolve
        self.stage_rules = StageRules()  # [[stages.rules]] (a reload replaces them)

    async def manager(self, telegram_id: int) -> ManagerRef | None:
        async with self.db.read() as conn:
            row = await q.manager_by_telegram(conn, telegram_id)
        return _ref(row) if row else None

    async def refused(self, telegram_id: int, what: str) -> None:
        loggers.event(log, "staff.refused", 30, telegram_id=telegram_id, what=what[:80])
        async with self.db.write() as conn:
            await q.refused(conn, at=self.clock.now(), telegram_id=telegram_id, what=what[:500])

    async def topic_of(self, client_id: int) -> Topic | None:
        async with self.db.read() as conn:
            found = await q.topic_of(conn, client_id)
        return Topic(*found) if found else None

    async def save_topic(self, client_id: int, topic: Topic) -> None:
        async with self.db.write() as conn:
            await q.save_topic(conn, client_id, topic.chat_id, topic.thread_id, self.clock.now())

    async def forget_topic(self, client_id: int) -> None:
        async with self.db.write() as conn:
            await q.forget_topic(conn, client_id)

    async def client_of_topic(self, topic: Topic) -> int | None:
        async with self.db.read() as conn:
            return await q.client_of_topic(conn, topic.chat_id, topic.thread_id)

    async def card(self, client_id: int) -> ClientCard | None:
        return await self.db.run_read(lambda conn: _card(conn, client_id))

    async def deadline(self, conversation_id: int) -> datetime | None:
        """When the conversation's next response is due (SLA); None: no deadline."""
        async with self.db.read() as conn:
            return await sla_q.due_of(conn, conversation_id)

    async def attachments(self, interaction_id: int) -> list[StoredAttachment]:
        async with self.db.read() as conn:
            rows = await q.attachments_of(conn, interaction_id)
        return [StoredAttachment(*row) for row in rows]

    async def attachment_bytes(self, sha256: str) -> bytes:
        return await self.files.get(sha256)

    async def answer(
        self,
        client_id: int,
        text_: str,
        *,
        manager: ManagerRef,
        key: str,
        note: bool = False,
        attachments: Sequence[Attachment] = (),
        mirror: bool = False,
    ) -> int:
        """Log a manager's answer (or note) in the client's latest conversation and
        queue it; ``key`` (the staff message's id) makes a redelivery a no-op;
        ``mirror``: given outside the client's topic, so copied into it."""
        stored = [(a, await self.files.put(a.data)) for a in attachments]
        said = _Answer(client_id, text_, manager, key, note, mirror, stored, self.clock.now())
        answered: _Answered | None = None
        async with self.db.write() as conn:
            done = await q.answered(conn, key, self.staff_channel or "staff")
            if done is not None:
                return done  # a redelivered manager message
            if await self._allowed(conn, manager, client_id):
                answered = await self._write_answer(conn, said)
            else:
                # Committed, then raised: the refused attempt stays on record.
                await self._refuse(conn, manager, client_id, "answer")
        if answered is None:
            raise NotAllowed(text("not_yours", manager.language or self.language))
        loggers.event(
            log,
            "staff.note" if note else "staff.answer",
            client=client_id,
            conversation=answered.conversation_id,
            interaction=answered.interaction_id,
            manager=manager.id,
        )
        if answered.unsent is not None:
            raise NotSent(answered.unsent)
        return answered.interaction_id

    async def _write_answer(self, conn: AsyncConnection, said: _Answer) -> _Answered:
        """The answer (or note) in the client's latest conversation, its files, and
        its copy for the client's topic when it was given elsewhere."""
        conv = await q.latest_conversation(conn, said.client_id)
        if conv is None:
            raise NoConversation(f"client {said.client_id} has no conversation")
        manager, now = said.manager, said.now
        unsent = None if said.note else self._unsendable(conv, manager)
        queued = await self._queue(
            conn, conv, said.text, manager, key=said.key, note=said.note, now=now
        )
        if unsent is not None and queued.outbox_id is not None:
            # Logged like any answer, and failed at once: nothing would ever send it.
            await q.fail_unsendable(conn, queued.outbox_id, queued.interaction_id, unsent)
        if not said.note:
            if conv.status != waiting_q.WAITING:  # one waiting on the client stays so
                await q.set_conversations(conn, [conv.id], now, status="pending")
            if conv.assignee_id is None:
                await q.set_conversations(conn, [conv.id], now, assignee_id=manager.id)
            if unsent is None:
                await events.answered(
                    conn,
                    client_id=conv.client_id,
                    conversation_id=conv.id,
                    interaction_id=queued.interaction_id,
                    channel=replies.REPLY_ROUTE.get(conv.channel, (conv.channel, ""))[0],
                    text=said.text,
                    manager=manager.name,
                    now=now,
                    assigned=conv.assignee_id is None,
                )
        await q.add_attachments(conn, _attachment_rows(queued.interaction_id, said.files))
        if said.mirror and self.staff_channel is not None:
            copy = replies.topic_copy(
                client_id=conv.client_id,
                conversation_id=conv.id,
                interaction_id=queued.interaction_id,
                text=said.text,
                author=manager.name,
                note=said.note,
                files=[a.filename for a, _ in said.files],
                staff_channel=self.staff_channel,
                now=now,
            )
            await q.enqueue(conn, copy.row())
        return _Answered(conv.id, queued.interaction_id, unsent)

    def _unsendable(self, conv: q.ConversationRow, manager: ManagerRef) -> str | None:
        """Why an answer in ``conv`` cannot go out (no channel of the hub sends on its
        route), in the manager's language; None when it can."""
        route = replies.REPLY_ROUTE.get(conv.channel, (conv.channel, ""))[0]
        if self.sending is None or route in self.sending:
            return None
        return text("channel_not_configured", manager.language or self.language, channel=route)

    async def _queue(
        self,
        conn: AsyncConnection,
        conv: q.ConversationRow,
        text_: str,
        manager: ManagerRef,
        *,
        key: str,
        note: bool,
        now: datetime,
    ) -> replies.Queued:
        try:
            return await replies.queue(
                conn,
                conversation=replies_q.ConversationRow(
                    conv.id, conv.client_id, conv.channel, conv.account, conv.subject, None
                ),
                text=text_,
                author=manager.name,
                now=now,
                key=key,
                note=note,
                note_channel=self.staff_channel or "staff",
            )
        except replies.NoAddress as exc:
            raise NoConversation(str(exc)) from None

    async def act(
        self,
        client_id: int,
        manager: ManagerRef,
        action: str,
        argument: str = "",
        *,
        key: str | None = None,
    ) -> str:
        """Do ``action`` (one of :data:`ACTIONS`) on the client's requests and log it
        as an event; ``key`` (the staff message's id) makes a redelivery a no-op."""
        language = manager.language or self.language
        staff = self.staff_channel or "staff"
        async with self.db.write() as conn:
            if key is not None:
                done = await q.event_text(conn, key, staff)
                if done is not None:
                    return done  # a redelivered command: acted on already
            if not await read.client_exists(conn, client_id):
                return text("no_client", language, id=client_id)  # no row to write about
            if not await self._allowed(conn, manager, client_id):
                await self._refuse(conn, manager, client_id, action)
                return text("not_yours", language)
            handler = _HANDLERS.get(action)
            if handler is None:
                return text("unknown_action", language, action=action)
            command = _Command(
                conn,
                client_id,
                manager,
                argument.strip(),
                language,
                self.clock.now(),
                key,
                staff,
                await q.open_conversations(conn, client_id),
                await q.latest_conversation(conn, client_id),
            )
            said = await handler(self, command)
            if said.acted and not said.logged:
                await q.event(conn, command.event(said.text))
        if said.acted:
            loggers.event(log, "staff.action", action=action, client=client_id, manager=manager.id)
        return said.text

    # -- the actions: each answers what it did, or why it did nothing -----------------

    async def _take(self, c: _Command) -> _Said:
        if not c.ids:
            return _only(text("no_open", c.language))
        await q.set_conversations(c.conn, c.ids, c.now, assignee_id=c.manager.id)
        await events.assigned(
            c.conn, c.client_id, c.ids, manager=c.manager.name, by="take", now=c.now
        )
        return _Said(text("taken", c.language, manager=c.manager.name))

    async def _accept(self, c: _Command) -> _Said:
        """An offer ("all", "queue"): the first to accept gets it."""
        if not c.ids:
            return _only(text("no_open", c.language))
        got = [
            conv.id
            for conv in c.open
            if conv.assignee_id is None
            and await assign_q.assign(c.conn, conv.id, c.manager.id, c.now)
        ]
        if not got:  # somebody was quicker (the update is conditional)
            holder = await q.manager_name(c.conn, c.open[0].assignee_id)
            return _only(text("already_taken", c.language, manager=holder or "—"))
        await events.assigned(
            c.conn, c.client_id, got, manager=c.manager.name, by="accept", now=c.now
        )
        return _Said(text("taken", c.language, manager=c.manager.name))

    async def _resolve(self, c: _Command) -> _Said:
        if not c.ids:
            return _only(text("no_open", c.language))
        await q.set_conversations(
            c.conn, c.ids, c.now, status="resolved", resolved_at=c.now, waiting_since=None
        )
        for conv_id in c.ids:  # resolved: every deadline of it is met
            await sla_q.meet(c.conn, conv_id, c.now, (*sla_q.RESPONSES, "resolution"))
        await csat.on_resolved(c.conn, self.csat, c.ids, c.manager.id, c.now)
        await events.resolved(c.conn, c.client_id, c.ids, manager=c.manager.name, now=c.now)
        return _Said(text("resolved", c.language, manager=c.manager.name))

    async def _wait(self, c: _Command) -> _Said:
        """The ball is with the client: the requests wait on them, their resolution
        clock stopped until the client writes (:mod:`storage.waiting`)."""
        held = [conv.id for conv in c.open if conv.status != waiting_q.WAITING]
        if not held:
            return _only(text("already_waiting" if c.open else "no_open", c.language))
        await waiting_q.hold(c.conn, held, c.now)
        await q.audit(
            c.conn,
            {
                "at": c.now,
                "actor": q.staff_actor(c.manager.telegram_id),
                "action": "wait",
                "object_type": "client",
                "object_id": c.client_id,
                "details": {"conversations": held},
            },
        )
        return _Said(text("waiting_set", c.language, manager=c.manager.name))

    async def _reopen(self, c: _Command) -> _Said:
        if c.latest is None:
            return _only(text("no_open", c.language))
        if c.latest.status == waiting_q.WAITING:  # the ball is back: the clock runs again
            await c.conn.run_sync(waiting_q.resume, [c.latest.id], c.now)
        await q.set_conversations(c.conn, [c.latest.id], c.now, status="open", resolved_at=None)
        return _Said(text("reopened", c.language, manager=c.manager.name))

    async def _transfer(self, c: _Command) -> _Said:
        if not c.argument:
            return _only(text("need_argument", c.language, usage="/transfer NAME"))
        target = await q.manager_by_name(c.conn, c.argument)
        if target is None:
            return _only(text("unknown_manager", c.language, name=c.argument))
        if not c.ids:
            return _only(text("no_open", c.language))
        await q.set_conversations(c.conn, c.ids, c.now, assignee_id=target.id)
        await events.assigned(
            c.conn, c.client_id, c.ids, manager=target.name, by="transfer", now=c.now
        )
        reply = text("transferred", c.language, target=target.name, manager=c.manager.name)
        if self.staff_channel is not None:
            notice = Outgoing(
                idempotency_key=f"transfer:{uuid.uuid4().hex}",
                channel=self.staff_channel,
                account="staff",
                recipient=str(target.telegram_id),
                kind="assigned",
                text=reply,
                at=c.now,
                client_id=c.client_id,
                conversation_id=c.ids[0],
            )
            await q.enqueue(c.conn, notice.row())
        return _Said(reply)

    async def _tag(self, c: _Command) -> _Said:
        words = [w.lstrip("#") for w in c.argument.replace(",", " ").split() if w]
        if not words:
            return _only(text("need_argument", c.language, usage="/tag WORD …"))
        client = await q.client(c.conn, c.client_id)
        had = client.tags or [] if client else []
        tags = list(dict.fromkeys([*had, *words]))
        await q.set_client(c.conn, c.client_id, c.now, tags=tags)
        added = {c.client_id: set(tags) - set(had)}
        await stage_rules.after_tags(c.conn, self.stage_rules, added, c.now)
        return _Said(text("tagged", c.language, tags=", ".join(tags)))

    async def _stage(self, c: _Command) -> _Said:
        new = stages.parse(c.argument)
        if new is None:
            stage_list = ", ".join(STAGES)
            return _only(text("bad_stage", c.language, stage=c.argument, stages=stage_list))
        return await self._move(c, new)

    async def _stage_up(self, c: _Command) -> _Said:
        return await self._move(c, None, step=stages.up)

    async def _stage_down(self, c: _Command) -> _Said:
        return await self._move(c, None, step=stages.down)

    async def _move(
        self, c: _Command, new: str | None, *, step: Callable[[str], str | None] | None = None
    ) -> _Said:
        """Move the client to ``new``, or one ``step`` from where they are (at the end
        of the ladder: nothing to do, the stage is said)."""
        client = await q.client(c.conn, c.client_id)
        old = client.stage if client else "prospect"
        if step is not None:
            new = step(old)
        if new is None:
            return _only(text("stage", c.language, stage=old, manager=c.manager.name))
        await stages.move(
            c.conn,
            c.client_id,
            old,
            new,
            who=c.manager.name,
            why="by hand",
            now=c.now,
            conversation_id=c.event_conversation,
            actor=q.staff_actor(c.manager.telegram_id),
            channel=c.staff if c.key is not None else None,
            external_id=c.key,
        )
        return _Said(text("stage", c.language, stage=new, manager=c.manager.name), logged=True)

    async def _block(self, c: _Command) -> _Said:
        return await self._set_blocked(c, blocked=True)

    async def _unblock(self, c: _Command) -> _Said:
        return await self._set_blocked(c, blocked=False)

    async def _set_blocked(self, c: _Command, *, blocked: bool) -> _Said:
        """Supervisors and admins block a client (their messages are logged and reach
        no manager) or unblock them; anyone else is refused, and that audited."""
        action = "block" if blocked else "unblock"
        if c.manager.role not in OVERSEERS:
            await self._refuse(c.conn, c.manager, c.client_id, action)
            return _only(text("block_not_allowed", c.language))
        client = await q.client(c.conn, c.client_id)
        if client is None:
            return _only(text("no_client", c.language, id=c.client_id))
        if (client.blocked_at is not None) == blocked:
            return _only(text("already_blocked" if blocked else "not_blocked", c.language))
        await q.set_client(
            c.conn,
            c.client_id,
            c.now,
            blocked_at=c.now if blocked else None,
            blocked_by=c.manager.id if blocked else None,
        )
        await q.audit(
            c.conn,
            {
                "at": c.now,
                "actor": q.staff_actor(c.manager.telegram_id),
                "action": action,
                "object_type": "client",
                "object_id": c.client_id,
            },
        )
        loggers.event(log, f"desk.{action}", client=c.client_id, manager=c.manager.id)
        return _Said(
            text("blocked" if blocked else "unblocked", c.language, manager=c.manager.name)
        )

    async def _remind(self, c: _Command) -> _Said:
        zone, hours = await managers_q.clock_of(c.conn, c.manager.id)
        hours = hours or self.hours
        spans = parse_hours(hours).spans if hours else ()
        when = parse_when(c.argument, c.now, zone or self.timezone, hours=spans)
        if when is None:
            return _only(text("when_unknown", c.language, text=c.argument))
        said = spoken(when.local, c.now, c.language)  # the manager's own time, never UTC
        if when.day_start:
            said = text("when_day_start", c.language, when=said)
        if when.past:
            return _only(text("when_past", c.language, when=said))
        due, what = when.due, when.rest
        await q.add_reminder(
            c.conn,
            {
                "client_id": c.client_id,
                "conversation_id": c.event_conversation,
                "manager_id": c.manager.id,
                "due_at": due,
                "text": what,
                "kind": "reminder",
                "status": "pending",
                "created_at": c.now,
            },
        )
        return _Said(text("remind_set", c.language, when=said, text=what or "—"))

    async def settle_reminder(
        self, reminder_id: int, fired: int, manager: ManagerRef, action: str, *, key: str
    ) -> str:
        return await reminders.settle(
            self.db,
            self.clock,
            reminder_id=reminder_id,
            fired_count=fired,
            manager=manager,
            action=action,
            key=key,
            staff_channel=self.staff_channel or "staff",
            language=manager.language or self.language,
            timezone=self.timezone,
        )

    async def set_away(self, manager: ManagerRef, away: bool) -> str:
        """``/away`` and ``/back``: no new requests while away; waiting ones go out
        as soon as the manager is back (the assigner's next round)."""
        now = self.clock.now()
        async with self.db.write() as conn:
            await q.set_away(conn, manager.id, away)
            await q.audit(
                conn,
                {
                    "at": now,
                    "actor": q.staff_actor(manager.telegram_id),
                    "action": "away" if away else "back",
                    "object_type": "manager",
                    "object_id": manager.id,
                },
            )
        loggers.event(log, "desk.away" if away else "desk.back", manager=manager.id)
        return text("away_on" if away else "away_off", manager.language or self.language)

    async def inbox(self, manager: ManagerRef) -> list[InboxItem]:
        async with self.db.read() as conn:
            rows = await q.inbox(conn, manager.id)
        return [
            InboxItem(
                cid, name, conv, channel, created, Topic(chat, thread) if chat is not None else None
            )
            for cid, name, conv, channel, created, chat, thread in rows
        ]

    # -- the private chat: which client a message is about, the current client -------

    async def remember_private(
        self,
        chat_id: int,
        message_id: int,
        client_id: int,
        conversation_id: int | None,
        *,
        entry: int = 0,
    ) -> None:
        await self._remember_private(chat_id, message_id, [(entry, client_id, conversation_id)])

    async def remember_entries(
        self, chat_id: int, message_id: int, clients: Sequence[tuple[int, int | None]]
    ) -> None:
        numbered = [(n, client, conv) for n, (client, conv) in enumerate(clients, 1)]
        await self._remember_private(chat_id, message_id, numbered)

    async def _remember_private(
        self, chat_id: int, message_id: int, entries: list[tuple[int, int, int | None]]
    ) -> None:
        """Rows of (entry, client, conversation) for one of the bot's private messages."""
        now = self.clock.now()
        rows = [
            {
                "chat_id": chat_id,
                "message_id": message_id,
                "entry": entry,
                "client_id": client_id,
                "conversation_id": conversation_id,
                "at": now,
            }
            for entry, client_id, conversation_id in entries
        ]
        async with self.db.write() as conn:
            await q.remember_private(conn, rows)

    async def client_of_private(
        self, chat_id: int, message_id: int | None, *, entry: int = 0
    ) -> int | None:
        async with self.db.read() as conn:
            return await q.private_client(conn, chat_id, message_id, entry)

    async def current_client(self, manager: ManagerRef) -> int | None:
        async with self.db.read() as conn:
            return await q.current_client(conn, manager.id)

    async def choose_client(self, manager: ManagerRef, client_id: int | None) -> str:
        """``/c ID``: the manager's current client, if theirs to act on (a refusal is
        audited); None: no current client. The confirmation, or why not."""
        language = manager.language or self.language
        now = self.clock.now()
        async with self.db.write() as conn:
            if client_id is None:
                await q.set_current_client(conn, manager.id, None, now)
                return text("current_cleared", language)
            client_id = await q.live_client(conn, client_id)
            client = await q.client(conn, client_id)
            if client is None:
                return text("no_client", language, id=client_id)
            if not await self._allowed(conn, manager, client_id):
                await self._refuse(conn, manager, client_id, "current client")
                return text("not_yours", language)
            await q.set_current_client(conn, manager.id, client_id, now)
        loggers.event(log, "staff.current_client", client=client_id, manager=manager.id)
        return text("current_set", language, client=client.name or f"#{client_id}", id=client_id)

    async def colleagues(self, manager: ManagerRef) -> list[ManagerRef]:
        """Who a request can be transferred to: the active managers but ``manager``
        and marketers (never given requests)."""
        async with self.db.read() as conn:
            rows = await q.active_managers(conn)
        return [_ref(r) for r in rows if r.id != manager.id and r.role != Role.MARKETER.value]

    # -- canned answers -------------------------------------------------------------

    async def templates(self) -> list[str]:
        return list(self.canned.names)

    async def answer_template(
        self, client_id: int, name: str, *, manager: ManagerRef, key: str, mirror: bool
    ) -> int:
        """The template rendered for the client, in their language, sent as the
        manager's answer (:meth:`answer`: the same rights, the same record)."""
        language = manager.language or self.language
        template = self.canned.find(name)
        if template is None:
            names = ", ".join(self.canned.names) or "—"
            raise UnknownTemplate(text("template_unknown", language, name=name, names=names))
        card = await self.card(client_id)
        if card is None:
            raise NoConversation(f"no client {client_id}")
        spoken_in = (card.language or "")[:2].lower()
        said = self.canned.render(
            template,
            spoken_in if spoken_in in ("ru", "en") else self.language,
            canned_fields(card, manager),
        )
        return await self.answer(client_id, said, manager=manager, key=key, mirror=mirror)

    async def find(self, manager: ManagerRef, text_: str) -> list[ClientCard]:
        """Clients matching ``text_`` that ``manager`` may see (their own, their
        team's, nobody's yet; supervisors and admins see all)."""
        async with self.db.read() as conn:
            found = await read.search_clients(
                conn, client_search(text_.strip(), self.region), limit=50
            )
            visible = (await self.visible(conn, manager, [s.id for s in found]))[:10]
            cards = await conn.run_sync(_cards, visible)
        async with self.db.write() as conn:  # the writer only for the audit row
            await q.audit(
                conn,
                {
                    "at": self.clock.now(),
                    "actor": q.staff_actor(manager.telegram_id),
                    "action": "search",
                    "details": {"query": text_[:200], "shown": visible},
                },
            )
        return cards

    async def allows(self, manager: ManagerRef, client_id: int) -> bool:
        """Whether ``manager`` may see and act on the client (the rule of every action;
        nothing is audited: the caller audits what it shows or refuses)."""
        async with self.db.read() as conn:
            return await self._allowed(conn, manager, client_id)

    async def card_for(self, manager: ManagerRef, client_id: int) -> ClientCard | None:
        """The card as ``manager`` asked for it: None when not theirs to see; the
        read is in the audit log either way."""
        async with self.db.write() as conn:
            allowed = await self._allowed(conn, manager, client_id)
            if allowed:
                await q.audit(
                    conn,
                    {
                        "at": self.clock.now(),
                        "actor": q.staff_actor(manager.telegram_id),
                        "action": "read",
                        "object_type": "client",
                        "object_id": client_id,
                        "details": {"what": "card"},
                    },
                )
            else:
                await q.refused(
                    conn,
                    at=self.clock.now(),
                    telegram_id=manager.telegram_id,
                    what="card",
                    object_type="client",
                    object_id=client_id,
                )
        return await self.card(client_id) if allowed else None

    async def _allowed(self, conn: Any, manager: ManagerRef, client_id: int) -> bool:
        """Roles: supervisors and admins see every client; marketers none (they
        work with campaigns and reports); a manager the clients nobody has yet,
        their own, and their team's (managers without a team are one team)."""
        keepers = await clients_q.keepers(conn, client_id) if self._limited(manager) else []
        return self._may_see(manager, keepers)

    @classmethod
    async def visible(cls, conn: Any, manager: ManagerRef, ids: Sequence[int]) -> list[int]:
        """Those of ``ids`` that ``manager`` may see, in their order (one read of who
        keeps them, when that matters for the role)."""
        limited = cls._limited(manager)
        kept = await clients_q.keepers_of(conn, list(ids)) if limited else {}
        return [i for i in ids if cls._may_see(manager, kept.get(i, []))]

    @classmethod
    def sees_clients(cls, role: Role) -> bool:
        """Whether the role sees any client at all (one nobody keeps, at least)."""
        return cls._may_see(ManagerRef(0, "", 0, role.value), [])

    @staticmethod
    def _limited(manager: ManagerRef) -> bool:
        """Whether what ``manager`` may see depends on who keeps the client."""
        return manager.role not in OVERSEERS and manager.role != Role.MARKETER

    @staticmethod
    def _may_see(manager: ManagerRef, keepers: list[tuple[int, str | None]]) -> bool:
        if manager.role in OVERSEERS:
            return True
        if manager.role == Role.MARKETER:
            return False
        return not keepers or any(
            mid == manager.id or team == manager.team for mid, team in keepers
        )

    async def _refuse(self, conn: Any, manager: ManagerRef, client_id: int, what: str) -> None:
        loggers.event(log, "staff.not_allowed", 30, manager=manager.id, client=client_id)
        await q.refused(
            conn,
            at=self.clock.now(),
            telegram_id=manager.telegram_id,
            what=what,
            object_type="client",
            object_id=client_id,
        )


_HANDLERS: dict[str, Callable[[Desk, _Command], Awaitable[_Said]]] = {
    "take": Desk._take,
    "accept": Desk._accept,
    "resolve": Desk._resolve,
    "wait": Desk._wait,
    "reopen": Desk._reopen,
    "transfer": Desk._transfer,
    "tag": Desk._tag,
    "remind": Desk._remind,
    "stage": Desk._stage,
    "stage_up": Desk._stage_up,
    "stage_down": Desk._stage_down,
    "block": Desk._block,
    "unblock": Desk._unblock,
}
ACTIONS = tuple(_HANDLERS)


def _card(conn: Connection, client_id: int) -> ClientCard | None:
    """The managers' card of ``client_id`` (one read unit of work: ``Database.run_read``)."""
    found = q.card_rows(conn, client_id)
    if found is None:
        return None
    client = found.client
    return ClientCard(
        id=client.id,
        name=client.name,
        stage=client.stage,
        owner=client.owner,
        identities=tuple(found.identities),
        open_requests=found.open_requests,
        assignee=found.assignee,
        language=client.language,
        source=client.source,
        tags=tuple(client.tags or ()),
        last_contacts=tuple([Contact(at, d, ch, t) for at, d, ch, t in found.recent]),
        due=found.due,
        custom=tuple([(str(k), str(v)) for k, v in (client.custom or {}).items()]),
        reminders=tuple(found.reminders),
        blocked=Blocked(client.blocked_at, client.blocked_by) if client.blocked_at else None,
    )


def _cards(conn: Connection, client_ids: Sequence[int]) -> list[ClientCard]:
    return [card for i in client_ids if (card := _card(conn, i)) is not None]
