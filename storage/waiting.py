"""Requests waiting on the client: held (their resolution clock paused, the
responses they owed met), resumed when the client writes (the clock shifted by the
pause), and claimed once by the silence round that closes them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.sla import RESPONSES
from storage.tables import clients, conversations, deadlines, identities, interactions, outbox

WAITING = "waiting"
HELD_FROM = ("open", "pending")


# --- /wait (async) -----------------------------------------------------------------------


async def hold(conn: AsyncConnection, ids: list[int], now: datetime) -> None:
    """Conversations ``ids`` wait on the client from ``now``: their resolution clock
    stops (``paused_at``, no next step) and the responses they owed are met (a
    request waiting on the client owes none; the client's next message opens a
    next response of its own)."""
    if not ids:
        return
    c, d = conversations.c, deadlines.c
    await conn.execute(
        update(conversations)
        .where(c.id.in_(ids), c.status.in_(HELD_FROM))
        .values(status=WAITING, waiting_since=now, due_at=None, updated_at=now)
    )
    mine = (d.conversation_id.in_(ids), d.status == "open")
    await conn.execute(
        update(deadlines)
        .where(*mine, d.kind.in_(RESPONSES))
        .values(status="met", met_at=now, next_at=None)
    )
    await conn.execute(
        update(deadlines)
        .where(*mine, d.kind == "resolution", d.paused_at.is_(None))
        .values(paused_at=now, next_at=None)
    )


# --- the client writes again (sync, in the ingest transaction) -------------------------


def resume(conn: Connection, ids: list[int], now: datetime) -> None:
    """Conversations ``ids``, waiting until now, wait no more (the batch makes them
    open); their paused clocks go on where they stopped: every step shifted by
    the pause. In working time too the shift is plain time (a pause over a night
    gives back the night as well): close enough for a clock that was stopped."""
    if not ids:
        return
    c, d = conversations.c, deadlines.c
    conn.execute(
        update(conversations)
        .where(c.id.in_(ids), c.status == WAITING)
        .values(waiting_since=None, updated_at=now)
    )
    paused = conn.execute(
        select(d.id, d.step, d.paused_at, d.remind_at, d.due_at, d.reassign_at).where(
            d.conversation_id.in_(ids), d.status == "open", d.paused_at.is_not(None)
        )
    ).all()
    if paused:
        conn.execute(
            update(deadlines)
            .where(d.id == bindparam("b_id"))
            .values(
                remind_at=bindparam("b_remind"),
                due_at=bindparam("b_due"),
                reassign_at=bindparam("b_reassign"),
                next_at=bindparam("b_next"),
                paused_at=None,
            ),
            [_shifted(row, now) for row in paused],
        )


def _shifted(row: Any, now: datetime) -> dict[str, Any]:
    gap = now - row.paused_at
    remind, due = row.remind_at + gap, row.due_at + gap
    reassign = row.reassign_at + gap if row.reassign_at is not None else None
    # The step the escalation walks next (hub.jobs.deadlines): 0 remind, 1 due, 2 reassign.
    following = {0: remind, 1: due, 2: reassign}.get(row.step)
    return {
        "b_id": row.id,
        "b_remind": remind,
        "b_due": due,
        "b_reassign": reassign,
        "b_next": following,
    }


# --- the silence round (async) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Closed:
    """A waiting conversation the round closed, with what its note needs."""

    id: int
    client_id: int
    channel: str
    account: str
    subject: str | None
    assignee_id: int | None
    waiting_since: datetime


async def close_silent(
    conn: AsyncConnection, before: datetime, now: datetime, limit: int = 100
) -> list[Closed]:
    """Resolve the conversations waiting since before ``before``, at most ``limit``
    of them: taken with SKIP LOCKED and updated only while still waiting, so two
    rounds at once (two instances) close each one once."""
    c = conversations.c
    found = await conn.execute(
        select(c.id, c.client_id, c.channel, c.account, c.subject, c.assignee_id, c.waiting_since)
        .where(c.status == WAITING, c.waiting_since <= before)
        .order_by(c.waiting_since, c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    candidates = [Closed(*row) for row in found.all()]
    if not candidates:
        return []
    closed = await conn.execute(
        update(conversations)
        .where(c.id.in_([x.id for x in candidates]), c.status == WAITING)
        .values(status="resolved", resolved_at=now, waiting_since=None, due_at=None, updated_at=now)
        .returning(c.id)
    )
    done = {row[0] for row in closed.all()}
    d = deadlines.c
    await conn.execute(
        update(deadlines)
        .where(d.conversation_id.in_(done), d.status == "open")
        .values(status="met", met_at=now, next_at=None)
    )
    return sorted((x for x in candidates if x.id in done), key=lambda x: x.id)


@dataclass(frozen=True, slots=True)
class Reach:
    """How the note reaches a client: their newest identities by kind, their
    language, and each conversation's last inbound message id (its thread)."""

    addresses: dict[tuple[int, str], str]
    languages: dict[int, str | None]
    threads: dict[int, str | None]


async def reach(conn: AsyncConnection, closed: list[Closed]) -> Reach:
    """For the closed conversations, in three queries whatever their number."""
    client_ids = sorted({x.client_id for x in closed})
    i, k = identities.c, clients.c
    addresses: dict[tuple[int, str], str] = {}
    for client_id, kind, value in await conn.execute(
        select(i.client_id, i.kind, i.value).where(i.client_id.in_(client_ids)).order_by(i.id)
    ):
        addresses[(client_id, kind)] = value  # the newest of each kind wins
    languages = {
        cid: language
        for cid, language in await conn.execute(
            select(k.id, k.language).where(k.id.in_(client_ids))
        )
    }
    t = interactions.c
    last = (
        select(func.max(t.id))
        .where(t.conversation_id.in_([x.id for x in closed]), t.direction == "in")
        .group_by(t.conversation_id)
    )
    threads = {
        conv: external_id
        for conv, external_id in await conn.execute(
            select(t.conversation_id, t.external_id).where(t.id.in_(last.scalar_subquery()))
        )
    }
    return Reach(addresses, languages, threads)


async def append(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
    """Interactions, in one statement; their ids in the order given."""
    if not rows:
        return []
    found = await conn.execute(
        insert(interactions).returning(interactions.c.id, sort_by_parameter_order=True), rows
    )
    return [int(row[0]) for row in found.all()]


async def enqueue(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Outbox rows, in one statement."""
    if rows:
        await conn.execute(insert(outbox), rows)
