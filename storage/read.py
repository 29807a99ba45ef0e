"""The read queries behind the admin API: client search, client card, timeline, conversations.

Read-only; every function takes a connection from ``Database.read()``. Client search
goes through indexes only (``storage.terms`` for fragments of names, addresses, phones
and usernames, ``storage.search`` for words of the log), each way giving client ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    CompoundSelect,
    Connection,
    Select,
    bindparam,
    false,
    select,
    union,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import search as full_text
from storage import terms
from storage.tables import clients, conversations, identities, interactions, managers, reminders


@dataclass(frozen=True, slots=True)
class ClientSearch:
    """What a search box query means, as the caller understood it.

    ``text`` matches names (case-insensitive substring) and email addresses
    (substring of the normalized address); ``phone_digits`` is a substring of a
    phone number's digits; ``exact`` lists identities ``(kind, value)`` the query
    normalizes to (an email with a Unicode domain, a phone with a trunk prefix, a
    Telegram id).
    """

    text: str = ""
    phone_digits: str = ""
    exact: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class IdentityView:
    kind: str
    value: str


@dataclass(frozen=True, slots=True)
class ClientSummary:
    id: int
    name: str | None
    stage: str
    owner: str | None
    identities: tuple[IdentityView, ...]


@dataclass(frozen=True, slots=True)
class ConversationView:
    id: int
    client_id: int
    channel: str
    status: str
    assignee: str | None
    subject: str | None
    created_at: datetime
    first_response_at: datetime | None
    due_at: datetime | None


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A client's whole record, as the admin API and `hub card` show it (the staff card is
    :class:`hub.kernel.types.ClientCard`)."""

    id: int
    name: str | None
    stage: str
    owner: str | None
    identities: tuple[IdentityView, ...]
    tags: tuple[str, ...]
    language: str | None
    source: str | None
    created_at: datetime
    open_conversations: tuple[ConversationView, ...]
    custom: dict[str, Any] = field(default_factory=dict)
    reminders: tuple[ReminderView, ...] = ()
    merged_into: int | None = None


@dataclass(frozen=True, slots=True)
class ReminderView:
    id: int
    due_at: datetime
    text: str
    manager: str | None


@dataclass(frozen=True, slots=True)
class InteractionView:
    id: int
    at: datetime
    direction: str
    channel: str | None
    author: str | None
    text: str
    conversation_id: int | None
    delivery: str | None


async def search_clients(
    conn: AsyncConnection, search: ClientSearch | None, *, limit: int = 100, offset: int = 0
) -> list[ClientSummary]:
    """Clients matching ``search`` (all clients when ``None``), ordered by id."""
    c, m = clients.c, managers.c
    query = select(c.id, c.name, c.stage, m.name.label("owner")).join_from(
        clients, managers, c.owner_id == m.id, isouter=True
    )
    query = query.where(c.merged_into.is_(None))  # a merged record lives on in the kept one
    if search is not None:
        query = query.where(c.id.in_(_matching(search, conn.dialect.name, limit + offset)))
    rows = (await conn.execute(query.order_by(c.id).limit(limit).offset(offset))).all()
    found = await _identities(conn, [row.id for row in rows])
    return [
        ClientSummary(row.id, row.name, row.stage, row.owner, found.get(row.id, ())) for row in rows
    ]


async def client_card(conn: AsyncConnection, client_id: int) -> ClientRecord | None:
    """The client's card with its open (not resolved) conversations; ``None`` if unknown.
    (:func:`read_card` in ``Database.run_read`` reads it in one hop on SQLite.)"""
    return await conn.run_sync(read_card, client_id)


def read_card(conn: Connection, client_id: int) -> ClientRecord | None:
    """:func:`client_card` on a sync connection: four statements, rows as plain tuples."""
    row = conn.execute(_CARD, {"client_id": client_id}).first()
    if row is None:
        return None
    ident, open_, due = (conn.execute(q, {"client_id": client_id}).all() for q in _CARD_PARTS)
    return ClientRecord(
        id=row[0],
        name=row[1],
        stage=row[2],
        owner=row[3],
        identities=tuple([IdentityView(kind, value) for kind, value in ident]),
        tags=tuple(row[4] or ()),
        language=row[5],
        source=row[6],
        created_at=row[7],
        open_conversations=tuple([ConversationView(*r) for r in open_]),
        custom=dict(row[8] or {}),
        reminders=tuple([ReminderView(*r) for r in due]),
        merged_into=row[9],
    )


async def client_exists(conn: AsyncConnection, client_id: int) -> bool:
    found = await conn.execute(select(clients.c.id).where(clients.c.id == client_id))
    return found.first() is not None


async def timeline(
    conn: AsyncConnection, client_id: int, *, last: int | None = None
) -> list[InteractionView]:
    """Every interaction of the client, oldest first (ties by id, the order of
    writing); ``last``: only the latest so many written, read from the end of the
    client's index without sorting the whole log."""
    return await conn.run_sync(read_timeline, client_id, last)


def read_timeline(
    conn: Connection, client_id: int, last: int | None = None
) -> list[InteractionView]:
    """:func:`timeline` on a sync connection."""
    if last is not None:
        rows = conn.execute(_NEWEST, {"client_id": client_id, "last": last}).all()
        found = [InteractionView(*row) for row in reversed(rows)]
        found.sort(key=lambda v: (v.at, v.id))  # written order is nearly always time order
        return found
    return [InteractionView(*row) for row in conn.execute(_WHOLE, {"client_id": client_id})]


def read_timeline_of(
    conn: Connection, client_id: int, last: int | None = None
) -> list[InteractionView] | None:
    """:func:`read_timeline`, or ``None`` when there is no such client."""
    if conn.execute(_EXISTS, {"client_id": client_id}).first() is None:
        return None
    return read_timeline(conn, client_id, last)


async def list_conversations(
    conn: AsyncConnection, status: str | None = None, *, limit: int = 100, offset: int = 0
) -> list[ConversationView]:
    """Conversations in ``status`` (all when ``None``), ordered by id."""
    query = _conversation_query()
    if status is not None:
        query = query.where(conversations.c.status == status)
    return await _conversations(
        conn, query.order_by(conversations.c.id).limit(limit).offset(offset)
    )


def _conversation_query() -> Select[Any]:
    v, m = conversations.c, managers.c
    return select(
        v.id,
        v.client_id,
        v.channel,
        v.status,
        m.name.label("assignee"),
        v.subject,
        v.created_at,
        v.first_response_at,
        v.due_at,
    ).join_from(conversations, managers, v.assignee_id == m.id, isouter=True)


def _card_statements() -> tuple[Select[Any], tuple[Select[Any], ...]]:
    """The card's statements, built once (their compiled form is cached by key)."""
    c, m, i, r = clients.c, managers.c, identities.c, reminders.c
    wanted: BindParameter[int] = bindparam("client_id")
    card = (
        select(
            c.id,
            c.name,
            c.stage,
            m.name.label("owner"),
            c.tags,
            c.language,
            c.source,
            c.created_at,
            c.custom,
            c.merged_into,
        )
        .join_from(clients, managers, c.owner_id == m.id, isouter=True)
        .where(c.id == wanted)
    )
    ident = select(i.kind, i.value).where(i.client_id == wanted).order_by(i.id)
    open_ = (
        _conversation_query()
        .where(conversations.c.client_id == wanted, conversations.c.status != "resolved")
        .order_by(conversations.c.id)
    )
    due = (
        select(r.id, r.due_at, r.text, m.name)
        .join_from(reminders, managers, r.manager_id == m.id, isouter=True)
        .where(r.client_id == wanted, r.status == "pending")
        .order_by(r.due_at, r.id)
        .limit(20)
    )
    return card, (ident, open_, due)


def _timeline_statements() -> tuple[Select[Any], Select[Any], Select[Any]]:
    t = interactions.c
    columns = (t.id, t.at, t.direction, t.channel, t.author, t.text, t.conversation_id, t.delivery)
    wanted = t.client_id == bindparam("client_id")
    newest = select(*columns).where(wanted).order_by(t.id.desc()).limit(bindparam("last"))
    whole = select(*columns).where(wanted).order_by(t.at, t.id)
    exists = select(clients.c.id).where(clients.c.id == bindparam("client_id"))
    return newest, whole, exists


_CARD, _CARD_PARTS = _card_statements()
_NEWEST, _WHOLE, _EXISTS = _timeline_statements()


async def _conversations(conn: AsyncConnection, query: Select[Any]) -> list[ConversationView]:
    return [ConversationView(*row) for row in await conn.execute(query)]


async def _identities(
    conn: AsyncConnection, client_ids: Sequence[int]
) -> dict[int, tuple[IdentityView, ...]]:
    if not client_ids:
        return {}
    i = identities.c
    rows = await conn.execute(
        select(i.client_id, i.kind, i.value).where(i.client_id.in_(client_ids)).order_by(i.id)
    )
    found: dict[int, list[IdentityView]] = {}
    for client_id, kind, value in rows:
        found.setdefault(client_id, []).append(IdentityView(kind, value))
    return {k: tuple(v) for k, v in found.items()}


def _matching(search: ClientSearch, dialect: str, first: int) -> CompoundSelect[Any]:
    """The ids of the clients ``search`` finds, each way through an index (the
    first ``first`` by id where a way may find thousands)."""
    i = identities.c
    found: list[Select[Any]] = [
        select(i.client_id.label("id")).where(i.kind == kind, i.value == value)
        for kind, value in search.exact
    ]
    query = search.text
    if len(query) >= terms.SHORTEST:
        found += terms.name_hits(dialect, query, first)
        found += terms.identity_hits(dialect, "email", query.lower())
    elif query:
        found += terms.name_prefix_hits(dialect, query)
    if len(search.phone_digits) >= terms.SHORTEST:
        found += terms.identity_hits(dialect, "phone", search.phone_digits)
    username = query.strip().lstrip("@").lower() if query.strip().startswith("@") else ""
    if len(username) >= terms.SHORTEST:
        # A Telegram @username: the client's own messages carry it, or an import gave
        # it as a hint (kind "tg_username", hub.kernel.identities.TELEGRAM_HINT).
        found += terms.identity_hits(dialect, "tg_username", username)
        found += terms.username_hits(dialect, username)
    in_log = full_text.matching(dialect, query) if query and not username else None
    if in_log is not None:
        found.append(select(interactions.c.client_id.label("id")).where(in_log))
    if not found:
        found.append(select(clients.c.id).where(false()))
    return union(*found)
