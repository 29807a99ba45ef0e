"""The read queries behind the admin API: client search, client card, timeline, conversations.

Read-only; every function takes a connection from ``Database.read()``. Client search
goes through indexes only (``storage.terms`` for fragments of names, addresses, phones
and usernames, ``storage.search`` for words of the log), each way giving client ids.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    BindParameter,
    CompoundSelect,
    Connection,
    Select,
    bindparam,
    false,
    func,
    select,
    true,
    union,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import search as full_text
from storage import terms
from storage.rows import gathered, moment
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
    """Clients matching ``search`` (all clients when ``None``), ordered by id.
    (:func:`read_clients` in ``Database.run_read`` reads them in one hop on SQLite.)"""
    return await conn.run_sync(read_clients, search, limit, offset)


def read_clients(
    conn: Connection, search: ClientSearch | None, limit: int = 100, offset: int = 0
) -> list[ClientSummary]:
    """:func:`search_clients` on a sync connection: two statements built once per
    shape of query (on PostgreSQL a word of the log first finds its clients apart,
    :func:`storage.search.newest_said`), rows as plain tuples."""
    dialect = conn.dialect.name
    shape, values = _ways(search, conn) if search is not None else (None, {})
    values |= {"first": limit + offset, "limit": limit, "offset": offset}
    if shape is not None and shape.log and dialect != "sqlite":
        # Only the first of them by id can reach the page (a page is ordered by id, and
        # messages always belong to a current client: a merge moves them).
        said = full_text.newest_said(conn, values["log_words"])
        values["log_clients"] = sorted(said)[: limit + offset]
    if shape is not None and shape.username and dialect != "sqlite":
        values |= terms.position_values(conn)
    rows = conn.execute(_search_statement(dialect, shape), values).all()
    return [
        ClientSummary(
            row[0],
            row[1],
            row[2],
            row[3],
            tuple([IdentityView(kind, value) for _, kind, value in sorted(row[4] or ())]),
        )
        for row in rows
    ]


async def client_card(conn: AsyncConnection, client_id: int) -> ClientRecord | None:
    """The client's card with its open (not resolved) conversations; ``None`` if unknown.
    (:func:`read_card` in ``Database.run_read`` reads it in one hop on SQLite.)"""
    return await conn.run_sync(read_card, client_id)


def read_card(conn: Connection, client_id: int) -> ClientRecord | None:
    """:func:`client_card` on a sync connection, in one statement (the identities, open
    conversations and reminders gathered as JSON arrays)."""
    row = conn.execute(_card_statement(conn.dialect.name), {"client_id": client_id}).first()
    if row is None:
        return None
    ident, open_, due = (sorted(found or ()) for found in row[10:])
    return ClientRecord(
        id=row[0],
        name=row[1],
        stage=row[2],
        owner=row[3],
        identities=tuple([IdentityView(kind, value) for _, kind, value in ident]),
        tags=tuple(row[4] or ()),
        language=row[5],
        source=row[6],
        created_at=row[7],
        open_conversations=tuple(
            [
                ConversationView(i, c, ch, st, who, subj, moment(at), moment(first), moment(at_))
                for i, c, ch, st, who, subj, at, first, at_ in open_
            ]
        ),
        custom=dict(row[8] or {}),
        reminders=tuple(
            sorted(
                [ReminderView(i, moment(at), text, who) for i, at, text, who in due],
                key=lambda r: (r.due_at, r.id),
            )
        ),
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


def _card_statement(dialect: str) -> Select[Any]:
    """The card's one statement for ``dialect``, built once (its compiled form is cached)."""
    if dialect not in _CARD:
        _CARD[dialect] = _build_card(dialect)
    return _CARD[dialect]


def _build_card(dialect: str) -> Select[Any]:
    c, m, i, v, r = clients.c, managers.c, identities.c, conversations.c, reminders.c
    wanted: BindParameter[int] = bindparam("client_id")
    ident = select(i.id, i.kind, i.value).where(i.client_id == wanted)
    open_ = _conversation_query().where(v.client_id == wanted, v.status != "resolved")
    due = (
        select(r.id, r.due_at, r.text, m.name)
        .join_from(reminders, managers, r.manager_id == m.id, isouter=True)
        .where(r.client_id == wanted, r.status == "pending")
        .order_by(r.due_at, r.id)
        .limit(20)
    )
    return (
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
            *(gathered(dialect, q) for q in (ident, open_, due)),
        )
        .join_from(clients, managers, c.owner_id == m.id, isouter=True)
        .where(c.id == wanted)
    )


def _timeline_statements() -> tuple[Select[Any], Select[Any], Select[Any]]:
    t = interactions.c
    columns = (t.id, t.at, t.direction, t.channel, t.author, t.text, t.conversation_id, t.delivery)
    wanted = t.client_id == bindparam("client_id")
    newest = select(*columns).where(wanted).order_by(t.id.desc()).limit(bindparam("last"))
    whole = select(*columns).where(wanted).order_by(t.at, t.id)
    exists = select(clients.c.id).where(clients.c.id == bindparam("client_id"))
    return newest, whole, exists


_CARD: dict[str, Select[Any]] = {}
_NEWEST, _WHOLE, _EXISTS = _timeline_statements()
NEWEST_OF_CLIENT = _NEWEST  # a client's newest ``last`` interactions (binds client_id)


async def _conversations(conn: AsyncConnection, query: Select[Any]) -> list[ConversationView]:
    return [ConversationView(*row) for row in await conn.execute(query)]


class _Shape(NamedTuple):
    """Which ways a search goes (its statement is built once per shape)."""

    exact: int  # identities it normalizes to
    fragment: bool  # names and emails by trigrams
    prefix: int  # spellings of a name's beginning, for a query under three characters
    phone: bool
    username: bool
    log: bool  # words of the log


def _ways(search: ClientSearch, conn: Connection) -> tuple[_Shape, dict[str, Any]]:
    """The shape of ``search`` and the values its statement binds (long fragments read
    by their rarest trigrams, counted in one statement first)."""
    dialect = conn.dialect.name
    values: dict[str, Any] = {}
    for n, (kind, value) in enumerate(search.exact):
        values[f"exact_kind_{n}"], values[f"exact_value_{n}"] = kind, value
    query = search.text
    fragment = len(query) >= terms.SHORTEST
    phone = len(search.phone_digits) >= terms.SHORTEST
    # A Telegram @username: the client's own messages carry it, or an import gave it
    # as a hint (kind "tg_username", hub.kernel.identities.TELEGRAM_HINT).
    username = query.strip().lstrip("@").lower() if query.strip().startswith("@") else ""
    by_kind = {
        "email": query.lower() if fragment else "",
        "phone": search.phone_digits if phone else "",
        "tg_username": username if len(username) >= terms.SHORTEST else "",
    }
    known = terms.counted(conn, [text for text in by_kind.values() if text])
    for kind, text in by_kind.items():
        if text:
            values |= terms.identity_values(dialect, kind, text, known)
    if by_kind["tg_username"]:
        values |= terms.identity_values(dialect, "usernames", username, known, "usernames")
    prefix: dict[str, str] = {}
    if fragment:
        values |= terms.name_values(dialect, query)
    elif query:
        prefix = terms.prefix_values(dialect, query)
        values |= prefix
    said = full_text.matching_values(dialect, query) if query and not username else {}
    values |= said
    shape = _Shape(
        len(search.exact), fragment, len(prefix), phone, bool(by_kind["tg_username"]), bool(said)
    )
    return shape, values


@functools.lru_cache(maxsize=512)
def _search_statement(dialect: str, shape: _Shape | None) -> Select[Any]:
    """The search's statement for ``shape`` (every client when ``None``), built once."""
    c, m = clients.c, managers.c
    query = (
        select(c.id, c.name, c.stage, m.name.label("owner"), _identities_of(dialect))
        .join_from(clients, managers, c.owner_id == m.id, isouter=True)
        .where(c.merged_into.is_(None))  # a merged record lives on in the kept one
    )
    if shape is None:
        return query.order_by(c.id).limit(bindparam("limit")).offset(bindparam("offset"))
    hits = _matching(dialect, shape).subquery("hits")
    if dialect == "sqlite":
        query = query.where(c.id.in_(select(hits.c.id)))
        return query.order_by(c.id).limit(bindparam("limit")).offset(bindparam("offset"))
    # The found ids drive: sorted and cut to the page first, then each client looked up
    # by key (LATERAL, kept apart by OFFSET 0). Told of a few hundred ids, PostgreSQL
    # would rather walk every client by key to merge them (30 ms at 100,000 clients,
    # 10 times that at a million); and looking each up before the cut read a thousand
    # clients for a page of 50 (a common word of the log: 12 ms).
    page = (
        select(hits.c.id)
        .order_by(hits.c.id)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .subquery("page")
    )
    found = query.where(c.id == page.c.id).offset(0).lateral("found")
    return select(*found.c).select_from(page).join(found, true()).order_by(page.c.id)


def _matching(dialect: str, shape: _Shape) -> CompoundSelect[Any]:
    """The ids of the clients a search of ``shape`` finds, each way through an index
    (the first ``first`` by id where a way may find thousands)."""
    i = identities.c
    found: list[Select[Any]] = [
        select(i.client_id.label("id")).where(
            i.kind == bindparam(f"exact_kind_{n}"), i.value == bindparam(f"exact_value_{n}")
        )
        for n in range(shape.exact)
    ]
    if shape.fragment:
        found += terms.name_hits(dialect)
        found += terms.identity_hits(dialect, "email")
    if shape.prefix:
        found += terms.name_prefix_hits(dialect, shape.prefix)
    if shape.phone:
        found += terms.identity_hits(dialect, "phone")
    if shape.username:
        found += terms.identity_hits(dialect, "tg_username")
        found += terms.username_hits(dialect)
    if shape.log and dialect == "sqlite":
        found.append(
            select(interactions.c.client_id.label("id")).where(full_text.matching(dialect))
        )
    elif shape.log:  # the clients newest_said found, bound
        found.append(select(clients.c.id).where(full_text.matching(dialect)))
    if not found:
        found.append(select(clients.c.id).where(false()))
    return union(*found)


def _identities_of(dialect: str) -> Any:
    """Each found client's identities as one JSON array of ``[id, kind, value]``, read
    with the client (a statement fewer: one round trip less on PostgreSQL)."""
    i = identities.c
    if dialect == "sqlite":
        every = func.json_group_array(func.json_array(i.id, i.kind, i.value), type_=JSON)
    else:
        every = func.json_agg(func.json_build_array(i.id, i.kind, i.value), type_=JSON)
    return select(every).where(i.client_id == clients.c.id).scalar_subquery().label("identities")
