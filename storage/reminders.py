"""Due reminders, claimed once: the claim and what firing causes share one transaction.

The claim is ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``:
on PostgreSQL two instances claim disjoint rows; on SQLite the unit of work holds
the write lock (``BEGIN IMMEDIATE``). Automatic follow-ups are created by
set-based ``INSERT … SELECT … ON CONFLICT (key) DO NOTHING``: the key names the
occasion, so a second scan (or a second instance) creates nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, String, and_, func, insert, literal, or_, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import (
    UNRESOLVED,
    clients,
    conversations,
    interactions,
    managers,
    outbox,
    reminders,
)


@dataclass(frozen=True, slots=True)
class DueReminder:
    id: int
    client_id: int | None
    conversation_id: int | None
    manager_id: int | None
    text: str
    kind: str
    due_at: datetime
    fired_count: int
    telegram_id: int | None
    language: str | None


@dataclass(frozen=True, slots=True)
class ReminderRow:
    id: int
    client_id: int | None
    conversation_id: int | None
    manager_id: int | None
    text: str
    kind: str
    status: str
    due_at: datetime
    fired_count: int


async def claim_due(conn: AsyncConnection, now: datetime, limit: int = 100) -> list[DueReminder]:
    r, m = reminders.c, managers.c
    due = (
        select(r.id)
        .where(r.status == "pending", r.due_at <= now)
        .order_by(r.due_at, r.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    claimed = (
        await conn.execute(
            update(reminders)
            .where(r.id.in_(due))
            .values(status="fired", fired_at=now, fired_count=r.fired_count + 1)
            .returning(
                r.id,
                r.client_id,
                r.conversation_id,
                r.manager_id,
                r.text,
                r.kind,
                r.due_at,
                r.fired_count,
            )
        )
    ).all()
    if not claimed:
        return []
    ids = {row.manager_id for row in claimed if row.manager_id is not None}
    people = {
        row.id: (row.telegram_id, (row.attrs or {}).get("language"))
        for row in await conn.execute(select(m.id, m.telegram_id, m.attrs).where(m.id.in_(ids)))
    }
    return [
        DueReminder(
            row.id,
            row.client_id,
            row.conversation_id,
            row.manager_id,
            row.text,
            row.kind,
            row.due_at,
            row.fired_count,
            *people.get(row.manager_id, (None, None)),
        )
        for row in sorted(claimed, key=lambda row: row.id)
    ]


async def record_firing(
    conn: AsyncConnection, events: list[dict[str, Any]], messages: list[dict[str, Any]]
) -> None:
    """What a batch of firings causes: events on the clients, messages to the managers."""
    if events:
        await conn.execute(insert(interactions), events)
    if messages:
        await conn.execute(insert(outbox), messages)


async def next_due(conn: AsyncConnection) -> datetime | None:
    """When the earliest pending reminder falls due."""
    r = reminders.c
    return cast(
        "datetime | None",
        (await conn.execute(select(func.min(r.due_at)).where(r.status == "pending"))).scalar_one(),
    )


async def get(conn: AsyncConnection, reminder_id: int) -> ReminderRow | None:
    r = reminders.c
    row = (
        await conn.execute(
            select(
                r.id,
                r.client_id,
                r.conversation_id,
                r.manager_id,
                r.text,
                r.kind,
                r.status,
                r.due_at,
                r.fired_count,
            ).where(r.id == reminder_id)
        )
    ).one_or_none()
    return ReminderRow(*row) if row else None


async def settle(
    conn: AsyncConnection,
    reminder_id: int,
    fired_count: int,
    *,
    status: str,
    due_at: datetime | None = None,
) -> bool:
    """Done or snoozed, only while the reminder is still in the firing the button came
    with: a second press (or a press on an older delivery) changes nothing."""
    r = reminders.c
    values: dict[str, Any] = {"status": status}
    if due_at is not None:
        values["due_at"] = due_at
    result = await conn.execute(
        update(reminders)
        .where(r.id == reminder_id, r.status == "fired", r.fired_count == fired_count)
        .values(**values)
    )
    return bool(result.rowcount)


def _insert_ignoring_duplicates(conn: AsyncConnection, query: Select[Any]) -> Any:
    columns = [
        "key",
        "kind",
        "client_id",
        "conversation_id",
        "manager_id",
        "due_at",
        "text",
        "status",
        "fired_count",
        "created_at",
    ]
    if conn.dialect.name == "postgresql":
        return (
            postgresql.insert(reminders)
            .from_select(columns, query)
            .on_conflict_do_nothing(index_elements=[reminders.c.key])
        )
    if conn.dialect.name == "sqlite":
        return (
            sqlite.insert(reminders)
            .from_select(columns, query)
            .on_conflict_do_nothing(index_elements=[reminders.c.key])
        )
    return insert(reminders).from_select(columns, query)  # pragma: no cover


def _text(value: Any) -> Any:
    return sql_cast(value, String)


def _contacts() -> Any:
    """Interactions that are a contact with the client: what they sent, what a person
    sent them (not the hub's automatic replies)."""
    i = interactions.c
    return or_(i.direction == "in", and_(i.direction == "out", i.author != "hub"))


async def add_follow_ups(conn: AsyncConnection, *, silent_since: datetime, now: datetime) -> int:
    """A reminder to the assignee of every open conversation whose latest contact is
    a manager's message sent before ``silent_since``; keyed by that message."""
    c, i = conversations.c, interactions.c
    latest = (
        select(i.conversation_id.label("conversation_id"), func.max(i.id).label("last_id"))
        .join(conversations, c.id == i.conversation_id)
        .where(c.status.in_(UNRESOLVED), c.assignee_id.is_not(None), _contacts())
        .group_by(i.conversation_id)
        .subquery()
    )
    key = literal("follow_up:") + _text(c.id) + literal(":")
    query = (
        select(
            key + _text(i.id),
            literal("follow_up"),
            c.client_id,
            c.id,
            c.assignee_id,
            literal(now, reminders.c.due_at.type),
            literal(""),
            literal("pending"),
            literal(0),
            literal(now, reminders.c.created_at.type),
        )
        .select_from(latest)
        .join(interactions, i.id == latest.c.last_id)
        .join(conversations, c.id == latest.c.conversation_id)
        .where(i.direction == "out", i.at <= silent_since)
    )
    result = await conn.execute(_insert_ignoring_duplicates(conn, query))
    return max(int(result.rowcount or 0), 0)


async def add_stage_contacts(
    conn: AsyncConnection, *, stage: str, quiet_since: datetime, now: datetime
) -> int:
    """A reminder to the owner of every client at ``stage`` with no contact since
    ``quiet_since``; keyed by the client's latest contact (0: none yet)."""
    cl, i = clients.c, interactions.c
    # Each client's latest contact read backwards from the end of its index
    # (client_id, id): the cost follows the clients at the stage, not the log.
    last_contact = (
        select(i.id)
        .where(i.client_id == cl.id, _contacts())
        .order_by(i.id.desc())
        .limit(1)
        .correlate(clients)
        .scalar_subquery()
    )
    due = (
        select(
            cl.id.label("client_id"),
            cl.owner_id.label("owner_id"),
            cl.created_at.label("created_at"),
            func.coalesce(last_contact, 0).label("last_id"),
        )
        .where(cl.stage == stage, cl.owner_id.is_not(None))
        .subquery()
    )
    key = literal("stage:") + _text(due.c.client_id) + literal(":") + _text(due.c.last_id)
    query = (
        select(
            key,
            literal("stage_contact"),
            due.c.client_id,
            literal(None, reminders.c.conversation_id.type),
            due.c.owner_id,
            literal(now, reminders.c.due_at.type),
            literal(stage),
            literal("pending"),
            literal(0),
            literal(now, reminders.c.created_at.type),
        )
        .select_from(due)
        .join(interactions, i.id == due.c.last_id, isouter=True)
        .where(func.coalesce(i.at, due.c.created_at) <= quiet_since)
    )
    result = await conn.execute(_insert_ignoring_duplicates(conn, query))
    return max(int(result.rowcount or 0), 0)
