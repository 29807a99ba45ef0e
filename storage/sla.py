"""Deadlines (SLA) of conversations: opened with a request, met by an answer or
a resolution, claimed once by the escalation round when a step falls due."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import clients, conversations, deadlines, managers

RESPONSES = ("first_response", "next_response")
# The role told of missed deadlines: hub.kernel.types.Role.SUPERVISOR, spelled here
# because storage imports nothing of the hub.
SUPERVISOR = "supervisor"


# --- in the ingest transaction (sync) -----------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenDeadlines:
    policy: str
    kinds: frozenset[str]  # of the open ones


def of_conversations(conn: Connection, ids: list[int]) -> dict[int, OpenDeadlines]:
    """Per conversation that has any deadline: its policy and the open kinds."""
    if not ids:
        return {}
    d = deadlines.c
    found: dict[int, tuple[str, set[str]]] = {}
    rows = conn.execute(
        select(d.conversation_id, d.policy, d.kind, d.status)
        .where(d.conversation_id.in_(ids))
        .order_by(d.id)
    )
    for conv, policy, kind, status in rows.all():
        entry = found.setdefault(conv, (policy, set()))
        if status == "open":
            entry[1].add(kind)
    return {conv: OpenDeadlines(p, frozenset(k)) for conv, (p, k) in found.items()}


def add(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(deadlines.insert(), rows)


def set_due(conn: Connection, due: dict[int, datetime]) -> None:
    """The conversation's next response deadline, as the admin API shows it."""
    if due:
        conn.execute(
            update(conversations)
            .where(conversations.c.id == bindparam("b_id"))
            .values(due_at=bindparam("b_due")),
            [{"b_id": conv, "b_due": at} for conv, at in due.items()],
        )


# --- when a manager answers or resolves (async) --------------------------------------


async def meet(
    conn: AsyncConnection, conversation_id: int, at: datetime, kinds: tuple[str, ...] = RESPONSES
) -> None:
    """The open deadlines of these kinds are met."""
    d = deadlines.c
    await conn.execute(
        update(deadlines)
        .where(d.conversation_id == conversation_id, d.status == "open", d.kind.in_(kinds))
        .values(status="met", met_at=at, next_at=None)
    )
    if "resolution" in kinds or set(RESPONSES) <= set(kinds):
        await conn.execute(
            update(conversations).where(conversations.c.id == conversation_id).values(due_at=None)
        )


# --- the escalation round (async) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Due:
    id: int
    conversation_id: int
    client_id: int
    policy: str
    kind: str
    step: int
    due_at: datetime
    reassign_at: datetime | None
    assignee_id: int | None
    status: str  # of the conversation
    blocked: bool  # the client is blocked: their requests keep no deadlines


async def claim_due(conn: AsyncConnection, now: datetime, limit: int = 200) -> list[Due]:
    """Open deadlines with a step due, locked for this round (SKIP LOCKED)."""
    d, c = deadlines.c, conversations.c
    ids = [
        row[0]
        for row in await conn.execute(
            select(d.id)
            .where(d.status == "open", d.next_at.is_not(None), d.next_at <= now)
            .order_by(d.next_at, d.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ]
    if not ids:
        return []
    rows = await conn.execute(
        select(
            d.id,
            d.conversation_id,
            d.client_id,
            d.policy,
            d.kind,
            d.step,
            d.due_at,
            d.reassign_at,
            c.assignee_id,
            c.status,
            clients.c.blocked_at.is_not(None).label("blocked"),
        )
        .join_from(deadlines, conversations, c.id == d.conversation_id)
        .join(clients, clients.c.id == d.client_id)
        .where(d.id.in_(ids))
        .order_by(d.next_at, d.id)
    )
    return [Due(**row._asdict()) for row in rows.all()]


async def advance(
    conn: AsyncConnection, deadline_id: int, step: int, next_at: datetime | None
) -> None:
    await conn.execute(
        update(deadlines).where(deadlines.c.id == deadline_id).values(step=step, next_at=next_at)
    )


async def close(conn: AsyncConnection, deadline_id: int, at: datetime) -> None:
    """A deadline of a conversation that is resolved meanwhile: nothing more to do."""
    await conn.execute(
        update(deadlines)
        .where(deadlines.c.id == deadline_id)
        .values(status="met", met_at=at, next_at=None)
    )


@dataclass(frozen=True, slots=True)
class Staff:
    """Whom an escalation can tell: each manager's Telegram id, and the active
    supervisors."""

    telegram_ids: dict[int, int]
    supervisors: list[int]


async def staff(conn: AsyncConnection) -> Staff:
    m = managers.c
    rows = (await conn.execute(select(m.id, m.telegram_id, m.role, m.active).order_by(m.id))).all()
    return Staff(
        {int(r.id): int(r.telegram_id) for r in rows},
        [int(r.id) for r in rows if r.role == SUPERVISOR and r.active],
    )


async def due_of(conn: AsyncConnection, conversation_id: int) -> datetime | None:
    c = conversations.c
    return (
        await conn.execute(select(c.due_at).where(c.id == conversation_id))
    ).scalar_one_or_none()
