"""The queries of the ingest path: set-based, so a batch costs a few statements.

They are synchronous functions over a :class:`~sqlalchemy.engine.Connection`:
ingest runs a whole batch in one unit of work through ``Database.run_write``.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection, Dialect

from storage.models import Attachment, Client, Conversation, Identity, Interaction, Manager, Outbox
from storage.types import UTCDateTime

clients = cast(Table, Client.__table__)
identities = cast(Table, Identity.__table__)
conversations = cast(Table, Conversation.__table__)
interactions = cast(Table, Interaction.__table__)
outbox = cast(Table, Outbox.__table__)
attachments = cast(Table, Attachment.__table__)
managers = cast(Table, Manager.__table__)


@dataclass(frozen=True, slots=True)
class Received:
    interaction_id: int
    client_id: int
    conversation_id: int | None


@dataclass(frozen=True, slots=True)
class KnownIdentity:
    client_id: int
    owner_id: int | None


@dataclass(slots=True)
class OpenConversation:
    id: int
    client_id: int
    status: str
    assignee_id: int | None


@dataclass(frozen=True, slots=True)
class ManagerRow:
    id: int
    name: str
    telegram_id: int
    role: str
    hours: str | None
    timezone: str | None
    capacity: int
    away: bool
    load: int


def _chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def find_received(
    conn: Connection, channel: str, external_ids: Sequence[str]
) -> dict[str, Received]:
    found: dict[str, Received] = {}
    t = interactions.c
    for chunk in _chunks(external_ids):
        rows = conn.execute(
            select(t.external_id, t.id, t.client_id, t.conversation_id).where(
                t.channel == channel, t.external_id.in_(chunk)
            )
        )
        for ext, iid, cid, conv in rows:
            found[ext] = Received(iid, cid, conv)
    return found


def find_identities(
    conn: Connection, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], KnownIdentity]:
    found: dict[tuple[str, str], KnownIdentity] = {}
    i, c = identities.c, clients.c
    by_kind: dict[str, list[str]] = {}
    for kind, value in pairs:
        by_kind.setdefault(kind, []).append(value)
    for kind, values in by_kind.items():
        for chunk in _chunks(values):
            rows = conn.execute(
                select(i.value, i.client_id, c.owner_id)
                .join_from(identities, clients, i.client_id == c.id)
                .where(i.kind == kind, i.value.in_(chunk))
            )
            for value, client_id, owner_id in rows:
                found[(kind, value)] = KnownIdentity(client_id, owner_id)
    return found


def insert_many(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows in one statement and return their ids, in the order of ``rows``.

    On SQLite the unit of work holds the write lock (``BEGIN IMMEDIATE``), so the
    ids after the current maximum are ours to give: a plain executemany, far
    faster than RETURNING row by row. PostgreSQL returns ids in parameter order.
    """
    if not rows:
        return []
    if conn.dialect.name == "sqlite":
        top = conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
        ids = list(range(int(top) + 1, int(top) + 1 + len(rows)))
        for row, new_id in zip(rows, ids, strict=True):
            row["id"] = new_id
        _executemany(conn, table, rows)
        return ids
    result = conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
    return [int(x) for x in result.scalars().all()]


def set_owners(conn: Connection, owners: dict[int, int]) -> None:
    """Give each client without an owner its first assignee as owner."""
    if owners:
        c = clients.c
        conn.execute(
            update(clients)
            .where(c.id == bindparam("b_id"), c.owner_id.is_(None))
            .values(owner_id=bindparam("b_owner")),
            [{"b_id": k, "b_owner": v} for k, v in owners.items()],
        )


def reopen_or_assign(conn: Connection, rows: list[tuple[int, int | None]], now: datetime) -> None:
    """Conversations ``(id, assignee)`` that new inbound mail makes open (again), or
    that routing just assigned."""
    if rows:
        c = conversations.c
        conn.execute(
            update(conversations)
            .where(c.id == bindparam("b_id"))
            .values(
                status="open", resolved_at=None, updated_at=now, assignee_id=bindparam("b_assignee")
            ),
            [{"b_id": i, "b_assignee": a} for i, a in rows],
        )


def find_threads(
    conn: Connection, channel: str, hints: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """External id of an earlier message -> (conversation id, client id)."""
    found: dict[str, tuple[int, int]] = {}
    t = interactions.c
    for chunk in _chunks(hints):
        rows = conn.execute(
            select(t.external_id, t.conversation_id, t.client_id).where(
                t.channel == channel, t.external_id.in_(chunk), t.conversation_id.is_not(None)
            )
        )
        for ext, conv, client in rows:
            found[ext] = (conv, client)
    return found


def get_conversations(conn: Connection, ids: Sequence[int]) -> dict[int, OpenConversation]:
    c = conversations.c
    found: dict[int, OpenConversation] = {}
    for chunk in _chunks(ids):
        rows = conn.execute(
            select(c.id, c.client_id, c.status, c.assignee_id).where(c.id.in_(chunk))
        )
        for row in rows:
            found[row.id] = OpenConversation(row.id, row.client_id, row.status, row.assignee_id)
    return found


def open_conversations(
    conn: Connection, channel: str, client_ids: Sequence[int]
) -> dict[int, OpenConversation]:
    """The newest not-resolved conversation on ``channel`` of each client."""
    c = conversations.c
    found: dict[int, OpenConversation] = {}
    for chunk in _chunks(client_ids):
        rows = conn.execute(
            select(c.id, c.client_id, c.status, c.assignee_id)
            .where(c.client_id.in_(chunk), c.channel == channel, c.status != "resolved")
            .order_by(c.id)
        )
        for row in rows:
            found[row.client_id] = OpenConversation(
                row.id, row.client_id, row.status, row.assignee_id
            )
    return found


def routing_managers(conn: Connection) -> list[ManagerRow]:
    m, c = managers.c, conversations.c
    loads: dict[int, int] = dict(
        conn.execute(
            select(c.assignee_id, func.count())
            .where(c.status != "resolved", c.assignee_id.is_not(None))
            .group_by(c.assignee_id)
        ).all()
    )
    rows = conn.execute(
        select(m.id, m.name, m.telegram_id, m.role, m.hours, m.timezone, m.capacity, m.away)
        .where(m.active.is_(True))
        .order_by(m.id)
    )
    return [ManagerRow(*row, load=int(loads.get(row.id, 0))) for row in rows]


def add_identities(conn: Connection, rows: list[dict[str, Any]]) -> None:
    _executemany(conn, identities, rows)


def insert_outbox(conn: Connection, rows: list[dict[str, Any]]) -> None:
    _executemany(conn, outbox, rows)


def insert_attachments(conn: Connection, rows: list[dict[str, Any]]) -> None:
    _executemany(conn, attachments, rows)


def _executemany(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """One INSERT for many rows; on SQLite straight to the driver (see :class:`_Binder`)."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), rows)
        return
    columns = tuple(rows[0])
    binder = _binder(table, columns, conn.dialect)
    conn.exec_driver_sql(binder.sql, [binder(binder.get(row)) for row in rows])


class _Binder:
    """A positional INSERT with the columns' own bind processors.

    The same conversion SQLAlchemy applies per value, without its per-row
    bookkeeping: the ingest hot path writes thousands of rows per commit. Datetime
    conversions are memoized, as a batch repeats the same few instants.
    """

    def __init__(self, table: Table, columns: tuple[str, ...], dialect: Dialect) -> None:
        quote = dialect.identifier_preparer.quote
        self.sql = (
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608
            f"VALUES ({', '.join('?' * len(columns))})"
        )
        getter = operator.itemgetter(*columns)
        self.get: Callable[[dict[str, Any]], tuple[Any, ...]] = (
            getter if len(columns) > 1 else lambda row: (getter(row),)
        )
        self.processors: list[tuple[int, Callable[[Any], Any]]] = []
        for i, name in enumerate(columns):
            column_type = table.c[name].type
            proc = column_type._cached_bind_processor(dialect)
            if proc is None:
                continue
            if isinstance(column_type, UTCDateTime):
                proc = functools.lru_cache(maxsize=1024)(proc)
            self.processors.append((i, proc))

    def __call__(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        if not self.processors:
            return row
        values = list(row)
        for i, proc in self.processors:
            value = values[i]
            if value is not None:
                values[i] = proc(value)
        return tuple(values)


@functools.cache
def _binder(table: Table, columns: tuple[str, ...], dialect: Dialect) -> _Binder:
    return _Binder(table, columns, dialect)
