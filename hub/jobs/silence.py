"""The silence round: requests waiting on the client (``/wait``) close themselves
after ``[waiting] close_after_days`` without a word from them.

Each one closed is resolved with its deadlines met, logged on the client's
timeline, told to its assignee (an ``alert``), announced to the webhooks
(``conversation.resolved``) and, when ``note`` is on, the client is told over the
conversation's reply route in their language (an ``out`` interaction and an
outbox row of kind ``closed``; an email one in the thread of their last message).
The round claims its conversations with SKIP LOCKED and closes only those still
waiting, so two instances running it at once close each one once, with one note.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.delivery.outbox import Outgoing
from hub.desk.replies import REPLY_ROUTE
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.texts import TEXTS, text
from hub.kernel.types import Delivery, Direction
from storage import Database
from storage import sla as sla_q
from storage import waiting as q
from storage.webhooks import Emitted, emit

log = loggers.scheduler

CLOSED = "closed"  # the outbox kind of the note to the client
_CHUNK = 100  # conversations closed per transaction


@dataclass(frozen=True, slots=True)
class Silence:
    """What the round reads of ``[waiting]`` (and of the hub), at each run."""

    after_days: float
    note: bool
    staff_channel: str | None
    language: str  # the staff's, for the timeline and the assignee's notice


async def close_silent(db: Database, clock: Clock, silence: Silence) -> int:
    """One round; how many requests it closed."""
    if silence.after_days <= 0:
        return 0
    now = clock.now()
    before = now - timedelta(days=silence.after_days)
    total = 0
    while True:
        async with db.write() as conn:
            closed = await q.close_silent(conn, before, now, _CHUNK)
            if closed:
                await _told(conn, closed, silence, now)
        total += len(closed)
        if len(closed) < _CHUNK:
            break
    if total:
        loggers.event(log, "waiting.closed", closed=total)
    return total


async def _told(
    conn: AsyncConnection, closed: list[q.Closed], silence: Silence, now: datetime
) -> None:
    """The timeline, the assignees, the webhooks and (``note``) the clients."""
    said = text("waiting_closed", silence.language, days=_days(silence.after_days))
    event_ids = await q.append(
        conn,
        [
            {
                "client_id": x.client_id,
                "conversation_id": x.id,
                "direction": Direction.EVENT.value,
                "author": "hub",
                "text": said,
                "at": now,
            }
            for x in closed
        ],
    )
    if silence.staff_channel is not None:
        await _tell_assignees(conn, closed, event_ids, said, silence.staff_channel, now)
    await emit(
        conn,
        [
            Emitted(
                "conversation.resolved",
                x.client_id,
                now,
                {
                    "conversation_id": x.id,
                    "channel": x.channel,
                    "by": "hub",
                    "reason": "silence",
                    "waiting_since": x.waiting_since.isoformat(),
                },
            )
            for x in closed
        ],
        now,
    )
    if silence.note:
        await _notes(conn, closed, silence.language, now)


async def _tell_assignees(
    conn: AsyncConnection,
    closed: list[q.Closed],
    event_ids: list[int],
    said: str,
    staff_channel: str,
    now: datetime,
) -> None:
    telegram_ids = (await sla_q.staff(conn)).telegram_ids
    await q.enqueue(
        conn,
        [
            Outgoing(
                idempotency_key=f"{CLOSED}:{event_id}:assignee",
                channel=staff_channel,
                account="staff",
                recipient=str(telegram_ids[x.assignee_id]),
                kind="alert",
                text=said,
                at=now,
                client_id=x.client_id,
                conversation_id=x.id,
            ).row()
            for x, event_id in zip(closed, event_ids, strict=True)
            if x.assignee_id is not None and x.assignee_id in telegram_ids
        ],
    )


@dataclass(frozen=True, slots=True)
class _Note:
    """The note to one client: where it goes and in which words."""

    conv: q.Closed
    channel: str
    recipient: str
    text: str
    thread: str | None


async def _notes(
    conn: AsyncConnection, closed: list[q.Closed], language: str, now: datetime
) -> None:
    """Each client told, over the conversation's reply route (a client with no
    address on it is skipped, and that logged)."""
    reach = await q.reach(conn, closed)
    notes: list[_Note] = []
    for x in closed:
        channel, kind = REPLY_ROUTE.get(x.channel, (x.channel, x.channel))
        recipient = reach.addresses.get((x.client_id, kind))
        if recipient is None:
            loggers.event(log, "waiting.no_address", conversation=x.id, client=x.client_id)
            continue
        spoken = _language(reach.languages.get(x.client_id), language)
        said = text("waiting_closed_note", spoken)
        notes.append(_Note(x, channel, recipient, said, reach.threads.get(x.id)))
    interaction_ids = await q.append(conn, [_interaction(n, now) for n in notes])
    await q.enqueue(
        conn, [_outgoing(n, iid, now) for n, iid in zip(notes, interaction_ids, strict=True)]
    )


def _interaction(note: _Note, now: datetime) -> dict[str, Any]:
    return {
        "client_id": note.conv.client_id,
        "conversation_id": note.conv.id,
        "direction": Direction.OUT.value,
        "channel": note.channel,
        "account": note.conv.account,
        "author": "hub",
        "subject": note.conv.subject,
        "text": note.text,
        "extras": {"auto_reply": CLOSED},
        "at": now,
        "delivery": Delivery.PENDING.value,
    }


def _outgoing(note: _Note, interaction_id: int, now: datetime) -> dict[str, Any]:
    return Outgoing(
        idempotency_key=f"{CLOSED}:{interaction_id}",
        channel=note.channel,
        account=note.conv.account,
        recipient=note.recipient,
        kind=CLOSED,
        text=note.text,
        at=now,
        subject=note.conv.subject,
        extras={"in_reply_to": note.thread} if note.thread else None,
        client_id=note.conv.client_id,
        conversation_id=note.conv.id,
        interaction_id=interaction_id,
    ).row()


def _language(spoken: str | None, default: str) -> str:
    """The client's language when the hub speaks it (``en-GB`` is ``en``), else the hub's."""
    short = (spoken or "")[:2].lower()
    return short if short in TEXTS["waiting_closed_note"] else default


def _days(days: float) -> str:
    return str(int(days)) if days == int(days) else f"{days:g}"
