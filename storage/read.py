"""The read queries behind the admin API: client search, client card, timeline, conversations.

Read-only; every function takes a connection from ``Database.read()``. Name search
folds case per character in the pattern itself (``[аА][нН]…``: GLOB on SQLite, a
regular expression on PostgreSQL), because both ``lower()`` implementations fold
only ASCII (SQLite always, PostgreSQL under the C locale) and clients' names are
often Cyrillic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    false,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import search as full_text
from storage.tables import clients, conversations, identities, interactions, managers, reminders

_GLOB_SPECIAL = frozenset("*?[")
_REGEX_SPECIAL = frozenset("\\^$.|?*+()[]{}")


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
        query = query.where(_matches(search, conn.dialect.name))
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


def _matches(search: ClientSearch, dialect: str) -> ColumnElement[bool]:
    c, i = clients.c, identities.c
    by_identity: list[ColumnElement[bool]] = []
    by_name: ColumnElement[bool] = false()
    if search.text:
        if dialect == "sqlite":
            by_name = c.name.op("GLOB")(f"*{_glob(search.text)}*")
        else:
            by_name = c.name.regexp_match(_regex(search.text))
        by_identity.append(
            and_(
                i.kind == "email",
                i.value.like(f"%{_like(search.text.lower())}%", escape="\\"),
            )
        )
    if search.phone_digits:
        by_identity.append(
            and_(i.kind == "phone", i.value.like(f"%{_like(search.phone_digits)}%", escape="\\"))
        )
    by_identity.extend(and_(i.kind == kind, i.value == value) for kind, value in search.exact)
    found: list[ColumnElement[bool]] = [by_name]
    if by_identity:
        found.append(c.id.in_(select(i.client_id).where(or_(*by_identity))))
    username = search.text.strip().lstrip("@") if search.text.strip().startswith("@") else ""
    if username:
        # A Telegram @username: the client's own messages carry it, or an import gave
        # it as a hint (kind "tg_username", hub.kernel.identities.TELEGRAM_HINT).
        hint = and_(i.kind == "tg_username", i.value == username.lower())
        found.append(c.id.in_(select(i.client_id).where(hint)))
        x = interactions.c
        said: ColumnElement[Any]
        if dialect == "sqlite":
            said = func.json_extract(x.extras, "$.username")
        else:
            said = x.extras.op("->>")(literal("username"))
        found.append(
            c.id.in_(
                select(x.client_id).where(
                    x.channel == "telegram",
                    x.direction == "in",
                    func.lower(said) == username.lower(),
                )
            )
        )
    in_log = full_text.matching(dialect, search.text) if search.text and not username else None
    if in_log is not None:
        x = interactions.c
        found.append(c.id.in_(select(x.client_id).where(in_log)))
    return or_(*found)


def _cases(char: str) -> str:
    """The one-character spellings of ``char`` in either case, itself first."""
    variants = [char]
    for other in (char.lower(), char.upper()):
        if len(other) == 1 and other not in variants:
            variants.append(other)
    return "".join(variants)


def _glob(text: str) -> str:
    """A SQLite GLOB pattern matching ``text`` in any letter case."""
    out = []
    for char in text:
        cases = _cases(char)
        if len(cases) > 1 or char in _GLOB_SPECIAL:
            out.append(f"[{cases}]")
        else:
            out.append(char)
    return "".join(out)


def _regex(text: str) -> str:
    """A PostgreSQL regular expression (ARE) matching ``text`` in any letter case."""
    out = []
    for char in text:
        cases = _cases(char)
        if len(cases) > 1:
            out.append(f"[{cases}]")
        elif char in _REGEX_SPECIAL:
            out.append(f"\\{char}")
        else:
            out.append(char)
    return "".join(out)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
