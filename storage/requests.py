"""The reads behind a request's page in the web console: the request with its
assignee and deadlines, and the client's log paged back from the newest (or the
entries written after one, for the live tail)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import attachments, conversations, deadlines, interactions, managers, outbox


@dataclass(frozen=True, slots=True)
class RequestRow:
    """A conversation as its page shows it (``assignee``: the manager's name)."""

    id: int
    client_id: int
    channel: str
    status: str
    assignee_id: int | None
    assignee: str | None
    subject: str | None
    created_at: datetime
    first_response_at: datetime | None
    due_at: datetime | None
    resolved_at: datetime | None
    waiting_since: datetime | None


@dataclass(frozen=True, slots=True)
class DeadlineRow:
    """One deadline (SLA) of the request: ``kind`` first_response, next_response or
    resolution; ``status`` open or met."""

    kind: str
    due_at: datetime
    status: str


@dataclass(frozen=True, slots=True)
class Entry:
    """One interaction of the client's log, with the names of its files."""

    id: int
    at: datetime
    direction: str
    channel: str | None
    author: str | None
    subject: str | None
    text: str
    conversation_id: int | None
    delivery: str | None
    files: tuple[str, ...] = ()


def _request_statement() -> Select[Any]:
    c, m = conversations.c, managers.c
    return (
        select(
            c.id,
            c.client_id,
            c.channel,
            c.status,
            c.assignee_id,
            m.name,
            c.subject,
            c.created_at,
            c.first_response_at,
            c.due_at,
            c.resolved_at,
            c.waiting_since,
        )
        .join_from(conversations, managers, c.assignee_id == m.id, isouter=True)
        .where(c.id == bindparam("id"))
    )


def _entry_columns() -> tuple[Any, ...]:
    t = interactions.c
    return (
        t.id,
        t.at,
        t.direction,
        t.channel,
        t.author,
        t.subject,
        t.text,
        t.conversation_id,
        t.delivery,
    )


_REQUEST = _request_statement()
_DEADLINES = (
    select(deadlines.c.kind, deadlines.c.due_at, deadlines.c.status)
    .where(deadlines.c.conversation_id == bindparam("id"))
    .order_by(deadlines.c.id)
)
# Newest first by id (the client's index), so that a page is read from the index's end.
_BEFORE = (
    select(*_entry_columns())
    .where(interactions.c.client_id == bindparam("client_id"))
    .where(interactions.c.id < bindparam("before"))
    .order_by(interactions.c.id.desc())
    .limit(bindparam("limit"))
)
_AFTER = (
    select(*_entry_columns())
    .where(interactions.c.client_id == bindparam("client_id"))
    .where(interactions.c.id > bindparam("after"))
    .order_by(interactions.c.id)
    .limit(bindparam("limit"))
)
_FILES = (
    select(attachments.c.interaction_id, attachments.c.filename)
    .where(attachments.c.interaction_id.in_(bindparam("ids", expanding=True)))
    .order_by(attachments.c.id)
)
# The largest id an id column holds (a 32-bit INTEGER on PostgreSQL); "before"
# it reads from the end.
NEWEST = 2**31 - 1


def read_request(conn: Connection, conversation_id: int) -> RequestRow | None:
    row = conn.execute(_REQUEST, {"id": conversation_id}).first()
    return RequestRow(*row) if row is not None else None


def read_deadlines(conn: Connection, conversation_id: int) -> list[DeadlineRow]:
    return [DeadlineRow(*row) for row in conn.execute(_DEADLINES, {"id": conversation_id})]


def read_before(conn: Connection, client_id: int, before: int, limit: int) -> list[Entry]:
    """Up to ``limit`` entries of the client written before the entry ``before``
    (:data:`NEWEST`: the newest ones), oldest first."""
    values = {"client_id": client_id, "before": before, "limit": limit}
    rows = conn.execute(_BEFORE, values).all()
    return _with_files(conn, list(reversed(rows)))


def read_after(conn: Connection, client_id: int, after: int, limit: int) -> list[Entry]:
    """Up to ``limit`` entries of the client written after the entry ``after``, oldest first."""
    rows = conn.execute(_AFTER, {"client_id": client_id, "after": after, "limit": limit}).all()
    return _with_files(conn, list(rows))


def _with_files(conn: Connection, rows: list[Any]) -> list[Entry]:
    if not rows:
        return []
    names: dict[int, list[str]] = {}
    for interaction_id, filename in conn.execute(_FILES, {"ids": [r[0] for r in rows]}):
        names.setdefault(interaction_id, []).append(filename)
    return [
        Entry(
            id=row[0],
            at=row[1],
            direction=row[2],
            channel=row[3],
            author=row[4],
            subject=row[5],
            text=row[6],
            conversation_id=row[7],
            delivery=row[8],
            files=tuple(names.get(row[0], ())),
        )
        for row in rows
    ]


async def queued(conn: AsyncConnection, key: str) -> bool:
    """Whether an outbox row with this idempotency key was written."""
    found = await conn.execute(select(outbox.c.id).where(outbox.c.idempotency_key == key))
    return found.first() is not None


async def enqueue(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(outbox), values)
