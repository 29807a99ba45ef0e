"""Waiting requests: open conversations nobody has, read for a new routing round."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import clients, conversations, interactions, managers, outbox


@dataclass(frozen=True, slots=True)
class Waiting:
    conversation_id: int
    client_id: int
    channel: str
    account: str
    subject: str | None
    owner_id: int | None
    tags: frozenset[str]
    stage: str | None
    language: str | None
    interaction_id: int | None
    text: str


def _waiting() -> tuple[Any, ...]:
    """Open and nobody's, and not a blocked client's (their requests reach no manager)."""
    c, cl = conversations.c, clients.c
    blocked = select(cl.id).where(cl.blocked_at.is_not(None))
    return (c.status == "open", c.assignee_id.is_(None), c.client_id.not_in(blocked))


async def any_waiting(conn: AsyncConnection) -> bool:
    """Whether an open conversation has nobody yet (a read: the idle round's check)."""
    c = conversations.c
    query = select(c.id).where(*_waiting()).limit(1)
    return (await conn.execute(query)).first() is not None


async def waiting(conn: AsyncConnection, limit: int = 500) -> list[Waiting]:
    """Open, unassigned conversations, oldest first, locked for this round (other
    instances skip them), with their client and their latest client message."""
    c, cl, i = conversations.c, clients.c, interactions.c
    locked = (
        select(c.id)
        .where(*_waiting())
        .order_by(c.created_at, c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = [row[0] for row in await conn.execute(locked)]
    if not ids:
        return []
    latest = (
        select(i.conversation_id, func.max(i.id).label("iid"))
        .where(i.conversation_id.in_(ids), i.direction == "in")
        .group_by(i.conversation_id)
        .subquery()
    )
    rows = await conn.execute(
        select(
            c.id,
            c.client_id,
            c.channel,
            c.account,
            c.subject,
            cl.owner_id,
            cl.tags,
            cl.stage,
            cl.language,
            latest.c.iid,
            i.text,
        )
        .join_from(conversations, clients, cl.id == c.client_id)
        .join(latest, latest.c.conversation_id == c.id, isouter=True)
        .join(interactions, i.id == latest.c.iid, isouter=True)
        .where(c.id.in_(ids))
        .order_by(c.created_at, c.id)
    )
    return [
        Waiting(
            r[0], r[1], r[2], r[3], r[4], r[5], frozenset(r[6] or ()), r[7], r[8], r[9], r[10] or ""
        )
        for r in rows.all()
    ]


async def offers(
    conn: AsyncConnection, conversation_ids: list[int]
) -> dict[int, list[tuple[int, datetime]]]:
    """conversation -> [(manager id, offered at)] of the offers made so far."""
    if not conversation_ids:
        return {}
    o, m = outbox.c, managers.c
    rows = await conn.execute(
        select(o.conversation_id, m.id, o.created_at)
        .join_from(outbox, managers, cast(m.telegram_id, String) == o.recipient)
        .where(o.kind == "offer", o.conversation_id.in_(conversation_ids))
        .order_by(o.created_at, o.id)
    )
    found: dict[int, list[tuple[int, datetime]]] = {}
    for conv, manager_id, at in rows.all():
        found.setdefault(conv, []).append((manager_id, at))
    return found


async def assign(
    conn: AsyncConnection, conversation_id: int, manager_id: int, now: datetime
) -> bool:
    """Give a still unassigned conversation to ``manager_id``; False when somebody
    got it first."""
    c = conversations.c
    result = await conn.execute(
        update(conversations)
        .where(c.id == conversation_id, c.assignee_id.is_(None))
        .values(assignee_id=manager_id, updated_at=now)
    )
    return bool(result.rowcount)


async def set_owner_if_none(conn: AsyncConnection, client_id: int, manager_id: int) -> None:
    cl = clients.c
    await conn.execute(
        update(clients).where(cl.id == client_id, cl.owner_id.is_(None)).values(owner_id=manager_id)
    )
