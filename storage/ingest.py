"""The queries of the ingest path: set-based, so a batch costs a few statements.

They are synchronous functions over a :class:`~sqlalchemy.engine.Connection`:
ingest runs a whole batch in one unit of work through ``Database.run_write``.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    String,
    Table,
    Update,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import Select

from storage.stages import LAPSED
from storage.tables import (
    UNRESOLVED,
    attachments,
    clients,
    conversations,
    identities,
    interactions,
    managers,
    outbox,
)
from storage.types import UTCDateTime


@dataclass(frozen=True, slots=True)
class Received:
    interaction_id: int
    client_id: int
    conversation_id: int | None


class KnownIdentity(NamedTuple):
    """A client found by one of a batch's identities (a tuple: the batch makes many)."""

    client_id: int
    owner_id: int | None
    blocked: bool = False
    flood: int = 0  # the client's requests in their current minute (0: none, or it is over)
    lapsed: bool = False  # the client's stage is lapsed (writing again may bring them back)


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
    attrs: dict[str, Any] | None
    load: int


def _one_of(dialect: str, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """``column IN :name`` with the whole list as ONE bound parameter (see
    :func:`_listed`): an expanded ``IN (?, ?, …)`` costs a bind per value and,
    on SQLite, a fresh statement per list length; a batch asks with hundreds."""
    if dialect == "sqlite":
        listed: Select[tuple[Any]] = select(literal_column("value")).select_from(
            func.json_each(bindparam(name, type_=String))
        )
        return column.in_(listed.scalar_subquery())
    return column == any_(bindparam(name, type_=ARRAY(column.type)))


def _listed(conn: Connection, values: Sequence[Any]) -> Any:
    return json.dumps(list(values)) if conn.dialect.name == "sqlite" else list(values)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A hot-path statement compiled once for SQLite: its SQL, its parameters in
    order, their defaults, and the bind processors of those that have one (a
    datetime's)."""

    sql: str
    names: tuple[str, ...]
    defaults: dict[str, Any]
    processors: dict[str, Callable[[Any], Any]]

    def bind(self, params: dict[str, Any]) -> tuple[Any, ...]:
        values = []
        for name in self.names:
            value = params[name] if name in params else self.defaults[name]
            proc = self.processors.get(name)
            values.append(proc(value) if proc is not None and value is not None else value)
        return tuple(values)


_prepared: dict[str, _Prepared] = {}


def _prepare(conn: Connection, name: str, build: Callable[[str], Any]) -> _Prepared:
    prepared = _prepared.get(name)
    if prepared is None:
        compiled = build(conn.dialect.name).compile(dialect=conn.dialect)
        processors = {
            key: proc
            for key, bind in compiled.binds.items()
            if (proc := bind.type._cached_bind_processor(conn.dialect)) is not None
        }
        prepared = _prepared[name] = _Prepared(
            compiled.string, tuple(compiled.positiontup or ()), dict(compiled.params), processors
        )
    return prepared


def _fetch(
    conn: Connection, name: str, build: Callable[[str], Select[Any]], params: dict[str, Any]
) -> Sequence[Any]:
    """Run a hot-path SELECT. On SQLite it is compiled once and executed straight
    by the driver, which halves its cost; elsewhere through SQLAlchemy as usual."""
    dialect = conn.dialect.name
    if dialect != "sqlite":
        return conn.execute(build(dialect), params).all()
    prepared = _prepare(conn, name, build)
    return conn.exec_driver_sql(prepared.sql, prepared.bind(params)).all()


def _received_query(dialect: str) -> Select[Any]:
    t = interactions.c
    return select(t.external_id, t.id, t.client_id, t.conversation_id).where(
        t.channel == bindparam("channel"), _one_of(dialect, t.external_id, "ids")
    )


def find_received(
    conn: Connection, channel: str, external_ids: Sequence[str]
) -> dict[str, Received]:
    rows = _fetch(
        conn, "received", _received_query, {"channel": channel, "ids": _listed(conn, external_ids)}
    )
    return {ext: Received(iid, cid, conv) for ext, iid, cid, conv in rows}


def _clients_query(dialect: str) -> Select[Any]:
    i, c, v = identities.c, clients.c, conversations.c
    flood = case((c.flood_at > bindparam("since", type_=c.flood_at.type), c.flood_count), else_=0)
    return (
        select(
            i.value,
            i.client_id,
            c.owner_id,
            v.id,
            v.status,
            v.assignee_id,
            c.blocked_at.is_not(None),
            flood,
            c.stage == LAPSED,
        )
        .join_from(identities, clients, i.client_id == c.id)
        .outerjoin(
            conversations,
            and_(v.client_id == c.id, v.channel == bindparam("channel"), v.status != "resolved"),
        )
        .where(i.kind == bindparam("kind"), _one_of(dialect, i.value, "values"))
    )


def find_clients(
    conn: Connection, channel: str, pairs: Sequence[tuple[str, str]], since: datetime
) -> tuple[dict[tuple[str, str], KnownIdentity], dict[int, OpenConversation]]:
    """The clients holding these ``(kind, value)`` identities (whether they are
    blocked, and their requests in a minute begun after ``since``), and the newest
    not-resolved conversation on ``channel`` of each, in one query per kind."""
    found: dict[tuple[str, str], KnownIdentity] = {}
    open_: dict[int, OpenConversation] = {}
    by_kind: dict[str, list[str]] = {}
    for kind, value in pairs:
        by_kind.setdefault(kind, []).append(value)
    for kind, values in by_kind.items():
        rows = _fetch(
            conn,
            "clients",
            _clients_query,
            {
                "channel": channel,
                "kind": str(kind),
                "values": _listed(conn, values),
                "since": since,
            },
        )
        for value, client_id, owner_id, conv_id, status, assignee_id, *client in rows:
            blocked, flood, lapsed = client
            found[(kind, value)] = KnownIdentity(
                client_id, owner_id, bool(blocked), int(flood), bool(lapsed)
            )
            if conv_id is not None:
                seen = open_.get(client_id)
                if seen is None or seen.id < conv_id:
                    open_[client_id] = OpenConversation(conv_id, client_id, status, assignee_id)
    return found, open_


def insert_many(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows in one statement and return their ids, in the order of ``rows``.

    On SQLite the unit of work holds the write lock (``BEGIN IMMEDIATE``), so the
    ids after the current maximum are ours to give: a plain executemany, far
    faster than RETURNING row by row. PostgreSQL returns ids in parameter order.
    """
    if not rows:
        return []
    if conn.dialect.name == "sqlite":
        top = conn.exec_driver_sql(
            f"SELECT coalesce(max(id), 0) FROM {table.name}"  # noqa: S608 - a table of ours
        ).scalar_one()
        ids = list(range(int(top) + 1, int(top) + 1 + len(rows)))
        for row, new_id in zip(rows, ids, strict=True):
            row["id"] = new_id
        insert_rows(conn, table, rows)
        return ids
    result = conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
    return [int(x) for x in result.scalars().all()]


class InteractionRow(NamedTuple):
    """One row of ``interactions`` as the hot path writes it: a tuple in column
    order (no dict per row), its fields named."""

    client_id: int
    conversation_id: int | None
    direction: str
    channel: str | None
    account: str | None
    external_id: str | None
    author: str | None
    subject: str | None
    text: str
    html: str | None
    extras: dict[str, Any] | None
    at: datetime
    delivery: str | None


INTERACTION_COLUMNS: tuple[str, ...] = InteractionRow._fields
OUTBOX_COLUMNS = (
    "idempotency_key",
    "channel",
    "account",
    "recipient",
    "kind",
    "subject",
    "text",
    "client_id",
    "conversation_id",
    "interaction_id",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
)


def insert_tuples(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    *,
    returning_ids: bool = False,
) -> list[int]:
    """Insert rows given as tuples in ``columns`` order (the hot path's shape: no dict
    per row); with ``returning_ids``, return their ids in order (see insert_many)."""
    if not rows:
        return []
    if conn.dialect.name != "sqlite":
        dicts = [dict(zip(columns, row, strict=True)) for row in rows]
        if returning_ids:
            return insert_many(conn, table, dicts)
        insert_rows(conn, table, dicts)
        return []
    ids: list[int] = []
    if returning_ids:
        top = int(
            conn.exec_driver_sql(
                f"SELECT coalesce(max(id), 0) FROM {table.name}"  # noqa: S608 - a table of ours
            ).scalar_one()
        )
        ids = list(range(top + 1, top + 1 + len(rows)))
        columns = ("id", *columns)
        rows = [(i, *row) for i, row in zip(ids, rows, strict=True)]
    binder = _binder(table, columns, conn.dialect)
    conn.exec_driver_sql(binder.sql, binder.bind(rows))
    return ids


def insert_clients(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    return insert_many(conn, clients, rows)


def insert_conversations(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    return insert_many(conn, conversations, rows)


def insert_interactions(conn: Connection, rows: list[InteractionRow]) -> list[int]:
    """The rows' ids, in order."""
    return insert_tuples(conn, interactions, INTERACTION_COLUMNS, rows, returning_ids=True)


def insert_notifications(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Outbox rows in ``OUTBOX_COLUMNS`` order."""
    insert_tuples(conn, outbox, OUTBOX_COLUMNS, rows)


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


@dataclass(frozen=True, slots=True)
class ClientProfile:
    tags: frozenset[str]
    stage: str | None
    language: str | None


def client_profiles(conn: Connection, client_ids: Sequence[int]) -> dict[int, ClientProfile]:
    """Tags, stage and language of these clients (for routing rules that ask)."""
    if not client_ids:
        return {}
    c = clients.c
    rows = conn.execute(
        select(c.id, c.tags, c.stage, c.language).where(_one_of(conn.dialect.name, c.id, "ids")),
        {"ids": _listed(conn, list(client_ids))},
    )
    return {row[0]: ClientProfile(frozenset(row[1] or ()), row[2], row[3]) for row in rows.all()}


def set_client_tags(conn: Connection, tags: dict[int, list[str]]) -> None:
    """Replace the tags of these clients (the caller merged old and new)."""
    if tags:
        c = clients.c
        conn.execute(
            update(clients).where(c.id == bindparam("b_id")).values(tags=bindparam("b_tags")),
            [{"b_id": k, "b_tags": v} for k, v in tags.items()],
        )


def _flood_update() -> Update:
    c = clients.c
    current = c.flood_at > bindparam("b_since", type_=c.flood_at.type)
    added = bindparam("b_n", type_=c.flood_count.type)
    return (
        update(clients)
        .where(c.id == bindparam("b_id"))
        .values(
            flood_count=case((current, c.flood_count + added), else_=added),
            flood_at=case((current, c.flood_at), else_=bindparam("b_now", type_=c.flood_at.type)),
        )
    )


def count_requests(
    conn: Connection, counts: dict[int, int], now: datetime, since: datetime
) -> None:
    """Add each client's requests of the batch to their current minute, or begin a
    new minute at ``now`` when theirs began before ``since``. One statement for
    the batch; it adds to what the row holds, so concurrent writers lose nothing."""
    if not counts:
        return
    if conn.dialect.name != "sqlite":
        params = [{"b_id": k, "b_n": n, "b_since": since, "b_now": now} for k, n in counts.items()]
        conn.execute(_flood_update(), params)
        return
    # Straight to the driver, the instants bound once: a batch updates hundreds of
    # clients. The same statement as _flood_update, with numbered parameters.
    bind = clients.c.flood_at.type._cached_bind_processor(conn.dialect)
    assert bind is not None
    since_at, now_at = bind(since), bind(now)
    conn.exec_driver_sql(
        "UPDATE clients SET"
        " flood_count = CASE WHEN flood_at > ?3 THEN flood_count + ?2 ELSE ?2 END,"
        " flood_at = CASE WHEN flood_at > ?3 THEN flood_at ELSE ?4 END"
        " WHERE id = ?1",
        [(client_id, n, since_at, now_at) for client_id, n in counts.items()],
    )


def opt_out(conn: Connection, client_ids: list[int]) -> None:
    """Clients who asked for no more campaigns (/stop, an unsubscribe link)."""
    if client_ids:
        conn.execute(
            update(clients).where(clients.c.id.in_(set(client_ids))).values(opted_out=True)
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


class Thread(NamedTuple):
    """The conversation an earlier message belongs to, and the client it was with."""

    conversation_id: int
    client_id: int


def find_threads(conn: Connection, channel: str, hints: Sequence[str]) -> dict[str, Thread]:
    """External id of an earlier message, received or sent by the hub (the id the
    peer gave it: an email Message-ID) -> its :class:`Thread`. A hint ``#N`` (the
    subject tag of email) names conversation N of this channel."""
    found: dict[str, Thread] = {}
    tags = {int(h[1:]): h for h in hints if h[:1] == "#" and h[1:].isascii() and h[1:].isdigit()}
    if tags:
        c = conversations.c
        tagged = conn.execute(
            select(c.id, c.client_id).where(
                c.channel == channel, _one_of(conn.dialect.name, c.id, "ids")
            ),
            {"ids": _listed(conn, list(tags))},
        )
        found.update({tags[conv]: Thread(conv, client) for conv, client in tagged.all()})
        hints = [h for h in hints if h not in tags.values()]
        if not hints:
            return found
    for table in (outbox, interactions):
        t = table.c
        rows = conn.execute(
            select(t.external_id, t.conversation_id, t.client_id).where(
                t.channel == channel,
                _one_of(conn.dialect.name, t.external_id, "hints"),
                t.conversation_id.is_not(None),
                t.client_id.is_not(None),
            ),
            {"hints": _listed(conn, hints)},
        )
        found.update({ext: Thread(conv, client) for ext, conv, client in rows.all()})
    return found


def get_conversations(conn: Connection, ids: Sequence[int]) -> dict[int, OpenConversation]:
    if not ids:
        return {}
    c = conversations.c
    rows = conn.execute(
        select(c.id, c.client_id, c.status, c.assignee_id).where(
            _one_of(conn.dialect.name, c.id, "ids")
        ),
        {"ids": _listed(conn, ids)},
    )
    return {row[0]: OpenConversation(*row) for row in rows}


def manager_loads() -> Select[Any]:
    """How many unresolved conversations each manager holds."""
    c = conversations.c
    return (
        select(c.assignee_id, func.count())
        .where(c.status.in_(UNRESOLVED), c.assignee_id.is_not(None))
        .group_by(c.assignee_id)
    )


def routing_managers(conn: Connection) -> list[ManagerRow]:
    m = managers.c
    loads = {int(a): int(n) for a, n in conn.execute(manager_loads()).all()}
    rows = conn.execute(
        select(
            m.id, m.name, m.telegram_id, m.role, m.hours, m.timezone, m.capacity, m.away, m.attrs
        )
        .where(m.active.is_(True))
        .order_by(m.id)
    )
    return [ManagerRow(*row, load=int(loads.get(row.id, 0))) for row in rows]


def manager_telegram_ids(conn: Connection) -> dict[int, int]:
    m = managers.c
    return {int(i): int(t) for i, t in conn.execute(select(m.id, m.telegram_id)).all()}


def drop_identities(conn: Connection, pairs: Sequence[tuple[str, str]]) -> None:
    """Delete these ``(kind, value)`` identities (a used hint; rare: one at a time)."""
    i = identities.c
    for kind, value in pairs:
        conn.execute(delete(identities).where(i.kind == kind, i.value == value))


def add_identities(conn: Connection, rows: list[dict[str, Any]]) -> None:
    insert_rows(conn, identities, rows)


def insert_attachments(conn: Connection, rows: list[dict[str, Any]]) -> None:
    insert_rows(conn, attachments, rows)


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """One INSERT for many rows; on SQLite straight to the driver (see :class:`_Binder`)."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), rows)
        return
    columns = tuple(rows[0])
    binder = _binder(table, columns, conn.dialect)
    conn.exec_driver_sql(binder.sql, binder.bind(binder.get(row) for row in rows))


class _Binder:
    """A positional INSERT with the columns' own bind processors.

    The same conversion SQLAlchemy applies per value, without its per-row
    bookkeeping: the ingest hot path writes thousands of rows per commit. Datetime
    conversions are memoized within a call, as a batch repeats the same instants.
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
        # (column index, processor, whether to memoize by object: datetimes repeat)
        self.processors: list[tuple[int, Callable[[Any], Any], bool]] = []
        for i, name in enumerate(columns):
            column_type = table.c[name].type
            proc = column_type._cached_bind_processor(dialect)
            if proc is not None:
                self.processors.append((i, proc, isinstance(column_type, UTCDateTime)))

    def bind(self, rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        processors = self.processors
        if not processors:
            return list(rows)
        memo: dict[int, Any] = {}  # id() of a value -> its bound form, for this call
        out = []
        for row in rows:
            values = list(row)
            for i, proc, memoized in processors:
                value = values[i]
                if value is None:
                    continue
                if memoized:
                    bound = memo.get(id(value))
                    if bound is None:
                        bound = memo[id(value)] = proc(value)
                    values[i] = bound
                else:
                    values[i] = proc(value)
            out.append(tuple(values))
        return out


@functools.cache
def _binder(table: Table, columns: tuple[str, ...], dialect: Dialect) -> _Binder:
    return _Binder(table, columns, dialect)
