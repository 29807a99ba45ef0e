"""The queries behind the managers' desk: managers, topics, cards, answers, actions,
and what the managers' private chats refer to (their messages about clients, the
current client)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    Connection,
    Select,
    bindparam,
    delete,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.rows import gathered, moment
from storage.tables import (
    UNRESOLVED,
    attachments,
    clients,
    conversations,
    current_clients,
    identities,
    interactions,
    managers,
    outbox,
    private_messages,
    reminders,
    topics,
)
from storage.tables import audit as audit_table


@dataclass(frozen=True, slots=True)
class ManagerRow:
    id: int
    name: str
    telegram_id: int
    role: str
    attrs: dict[str, Any] | None
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class ClientRow:
    id: int
    name: str | None
    stage: str
    owner: str | None
    language: str | None
    source: str | None
    tags: list[str] | None
    custom: dict[str, Any] | None = None
    blocked_at: datetime | None = None
    blocked_by: str | None = None  # the name of who blocked the client


@dataclass(frozen=True, slots=True)
class ConversationRow:
    id: int
    client_id: int
    channel: str
    status: str
    assignee_id: int | None
    created_at: datetime
    account: str
    subject: str | None


_MANAGER_COLUMNS = (
    managers.c.id,
    managers.c.name,
    managers.c.telegram_id,
    managers.c.role,
    managers.c.attrs,
    managers.c.timezone,
)


async def manager_by_telegram(conn: AsyncConnection, telegram_id: int) -> ManagerRow | None:
    row = (
        await conn.execute(
            select(*_MANAGER_COLUMNS).where(
                managers.c.telegram_id == telegram_id, managers.c.active.is_(True)
            )
        )
    ).one_or_none()
    return ManagerRow(*row) if row else None


async def manager_by_name(conn: AsyncConnection, name: str) -> ManagerRow | None:
    """By exact Telegram id, else by name (case-insensitive, unique prefix)."""
    m = managers.c
    rows = [
        ManagerRow(*r)
        for r in await conn.execute(
            select(*_MANAGER_COLUMNS).where(m.active.is_(True)).order_by(m.id)
        )
    ]
    wanted = name.strip().lstrip("@").casefold()
    for row in rows:
        if str(row.telegram_id) == wanted or row.name.casefold() == wanted:
            return row
    prefixed = [r for r in rows if r.name.casefold().startswith(wanted)]
    return prefixed[0] if len(prefixed) == 1 else None


async def active_managers(conn: AsyncConnection) -> list[ManagerRow]:
    m = managers.c
    rows = await conn.execute(select(*_MANAGER_COLUMNS).where(m.active.is_(True)).order_by(m.id))
    return [ManagerRow(*r) for r in rows]


async def manager_name(conn: AsyncConnection, manager_id: int | None) -> str | None:
    if manager_id is None:
        return None
    return cast(
        "str | None",
        (
            await conn.execute(select(managers.c.name).where(managers.c.id == manager_id))
        ).scalar_one_or_none(),
    )


async def topic_of(conn: AsyncConnection, client_id: int) -> tuple[int, int] | None:
    row = (
        await conn.execute(
            select(topics.c.chat_id, topics.c.thread_id).where(topics.c.client_id == client_id)
        )
    ).one_or_none()
    return (int(row[0]), int(row[1])) if row else None


async def save_topic(
    conn: AsyncConnection, client_id: int, chat_id: int, thread_id: int, now: datetime
) -> None:
    await conn.execute(delete(topics).where(topics.c.client_id == client_id))
    await conn.execute(
        insert(topics).values(
            client_id=client_id, chat_id=chat_id, thread_id=thread_id, created_at=now
        )
    )


async def forget_topic(conn: AsyncConnection, client_id: int) -> None:
    await conn.execute(delete(topics).where(topics.c.client_id == client_id))


async def client_of_topic(conn: AsyncConnection, chat_id: int, thread_id: int) -> int | None:
    return cast(
        "int | None",
        (
            await conn.execute(
                select(topics.c.client_id).where(
                    topics.c.chat_id == chat_id, topics.c.thread_id == thread_id
                )
            )
        ).scalar_one_or_none(),
    )


def _client_select(*more: Any) -> Select[Any]:
    """The columns of a :class:`ClientRow` (the owner's and the blocker's names joined
    in), then ``more``."""
    c, m = clients.c, managers.c
    blocker = managers.alias("blocker")
    return (
        select(
            c.id,
            c.name,
            c.stage,
            m.name,
            c.language,
            c.source,
            c.tags,
            c.custom,
            c.blocked_at,
            blocker.c.name,
            *more,
        )
        .join_from(clients, managers, c.owner_id == m.id, isouter=True)
        .join(blocker, c.blocked_by == blocker.c.id, isouter=True)
    )


async def client(conn: AsyncConnection, client_id: int) -> ClientRow | None:
    query = _client_select().where(clients.c.id == client_id)
    row = (await conn.execute(query)).one_or_none()
    return ClientRow(*tuple(row)) if row else None


async def reminders_due(conn: AsyncConnection, client_id: int) -> list[tuple[datetime, str]]:
    """The client's pending reminders, soonest first."""
    r = reminders.c
    rows = await conn.execute(
        select(r.due_at, r.text)
        .where(r.client_id == client_id, r.status == "pending")
        .order_by(r.due_at, r.id)
        .limit(5)
    )
    return [(at, str(t or "")) for at, t in rows.all()]


async def identities_of(conn: AsyncConnection, client_id: int) -> list[tuple[str, str]]:
    i = identities.c
    rows = await conn.execute(
        select(i.kind, i.value).where(i.client_id == client_id).order_by(i.id)
    )
    return [(kind, value) for kind, value in rows]


def _conversation_columns() -> tuple[Any, ...]:
    c = conversations.c
    return (
        c.id,
        c.client_id,
        c.channel,
        c.status,
        c.assignee_id,
        c.created_at,
        c.account,
        c.subject,
    )


async def open_conversations(conn: AsyncConnection, client_id: int) -> list[ConversationRow]:
    """Not resolved, the most recently active first."""
    c = conversations.c
    rows = await conn.execute(
        select(*_conversation_columns())
        .where(c.client_id == client_id, c.status != "resolved")
        .order_by(c.updated_at.desc(), c.id.desc())
    )
    return [ConversationRow(*r) for r in rows]


async def latest_conversation(conn: AsyncConnection, client_id: int) -> ConversationRow | None:
    """The conversation of the client's latest inbound message, else the newest."""
    c, i = conversations.c, interactions.c
    last_in = (
        await conn.execute(
            select(i.conversation_id)
            .where(i.client_id == client_id, i.direction == "in", i.conversation_id.is_not(None))
            .order_by(i.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    query = select(*_conversation_columns())
    if last_in is not None:
        query = query.where(c.id == last_in)
    else:
        query = query.where(c.client_id == client_id).order_by(c.id.desc()).limit(1)
    row = (await conn.execute(query)).one_or_none()
    return ConversationRow(*row) if row else None


async def last_interactions(
    conn: AsyncConnection, client_id: int, limit: int
) -> list[tuple[datetime, str, str | None, str]]:
    i = interactions.c
    rows = await conn.execute(
        select(i.at, i.direction, i.channel, i.text)
        .where(i.client_id == client_id, i.direction.in_(("in", "out")))
        .order_by(i.id.desc())
        .limit(limit)
    )
    return [(at, d, ch, text) for at, d, ch, text in reversed(rows.all())]


@dataclass(frozen=True, slots=True)
class CardRows:
    """What the managers' card shows of a client, read in one unit of work."""

    client: ClientRow
    identities: list[tuple[str, str]]
    open_requests: int
    assignee: str | None  # of the most recently active open conversation
    due: datetime | None  # that conversation's next response deadline
    recent: list[tuple[datetime, str, str | None, str]]  # oldest first
    reminders: list[tuple[datetime, str]]


def card_rows(conn: Connection, client_id: int) -> CardRows | None:
    """The card of ``client_id`` on a sync connection (``Database.run_read``), in one
    statement: the identities, open conversations, last five said and pending
    reminders gathered as JSON arrays."""
    dialect = conn.dialect.name
    if dialect not in _CARD:
        _CARD[dialect] = _card_statement(dialect)
    row = conn.execute(_CARD[dialect], {"client_id": client_id}).first()
    if row is None:
        return None
    idents, open_, said, pending = (found or () for found in row[10:])
    # The most recently active open conversation first, as open_conversations orders them.
    latest = max(open_, key=lambda o: (moment(o[0]), o[1]), default=None)
    due = sorted((moment(at), i, str(text or "")) for at, i, text in pending)
    return CardRows(
        client=ClientRow(*row[:10]),
        identities=[(kind, value) for _, kind, value in sorted(idents)],
        open_requests=len(open_),
        assignee=latest[2] if latest else None,
        due=moment(latest[3]) if latest else None,
        recent=[(moment(at), d, ch, text) for _, at, d, ch, text in sorted(said)],
        reminders=[(at, text) for at, _, text in due],
    )


def _card_statement(dialect: str) -> Select[Any]:
    c, m, i, v, r = clients.c, managers.c, identities.c, conversations.c, reminders.c
    x = interactions.c
    wanted: BindParameter[int] = bindparam("client_id")
    # Constants written into the statement, not bound: each bound value is processed
    # at every run, and a literal IN list is even bound anew (SQLAlchemy's post-compile
    # step had been a third of the card's own time).
    idents = select(i.id, i.kind, i.value).where(i.client_id == wanted)
    open_ = (
        select(v.updated_at, v.id, m.name, v.due_at)
        .join_from(conversations, managers, v.assignee_id == m.id, isouter=True)
        .where(v.client_id == wanted, v.status != literal_column("'resolved'"))
    )
    recent = (
        select(x.id, x.at, x.direction, x.channel, x.text)
        .where(
            x.client_id == wanted,
            x.direction.in_([literal_column("'in'"), literal_column("'out'")]),
        )
        .order_by(x.id.desc())
        .limit(literal_column("5"))
    )
    pending = (
        select(r.due_at, r.id, r.text)
        .where(r.client_id == wanted, r.status == literal_column("'pending'"))
        .order_by(r.due_at, r.id)
        .limit(literal_column("5"))
    )
    gathers = (gathered(dialect, q) for q in (idents, open_, recent, pending))
    return _client_select(*gathers).where(c.id == wanted)


_CARD: dict[str, Select[Any]] = {}


async def attachments_of(
    conn: AsyncConnection, interaction_id: int
) -> list[tuple[str, str, int, str]]:
    a = attachments.c
    rows = await conn.execute(
        select(a.filename, a.content_type, a.size, a.sha256)
        .where(a.interaction_id == interaction_id)
        .order_by(a.id)
    )
    return [(f, ct, int(sz), sha) for f, ct, sz, sha in rows]


async def add_attachments(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(attachments), rows)


async def answered(conn: AsyncConnection, key: str, channel: str) -> int | None:
    """The interaction an earlier call with this idempotency key logged, if any."""
    found = (
        await conn.execute(select(outbox.c.interaction_id).where(outbox.c.idempotency_key == key))
    ).scalar_one_or_none()
    if found is not None:
        return int(found)
    return cast(
        "int | None",
        (
            await conn.execute(
                select(interactions.c.id).where(
                    interactions.c.channel == channel, interactions.c.external_id == key
                )
            )
        ).scalar_one_or_none(),
    )


async def event_text(conn: AsyncConnection, key: str, channel: str) -> str | None:
    """The text of the event an action with this key logged, if any."""
    return cast(
        "str | None",
        (
            await conn.execute(
                select(interactions.c.text).where(
                    interactions.c.channel == channel, interactions.c.external_id == key
                )
            )
        ).scalar_one_or_none(),
    )


async def event(conn: AsyncConnection, values: dict[str, Any]) -> int:
    return int(
        (await conn.execute(insert(interactions).returning(interactions.c.id), values)).scalar_one()
    )


async def set_conversations(
    conn: AsyncConnection, ids: list[int], now: datetime, **values: Any
) -> None:
    if ids:
        await conn.execute(
            update(conversations)
            .where(conversations.c.id.in_(ids))
            .values(updated_at=now, **values)
        )


async def set_client(conn: AsyncConnection, client_id: int, now: datetime, **values: Any) -> None:
    await conn.execute(
        update(clients).where(clients.c.id == client_id).values(updated_at=now, **values)
    )


async def fail_unsendable(
    conn: AsyncConnection, outbox_id: int, interaction_id: int, reason: str
) -> None:
    """An answer no channel can send: failed with the reason, never claimed."""
    await conn.execute(
        update(outbox)
        .where(outbox.c.id == outbox_id)
        .values(status="failed", last_error=reason, claimed_until=None)
    )
    await conn.execute(
        update(interactions)
        .where(interactions.c.id == interaction_id)
        .values(delivery="failed", delivery_error=reason)
    )


async def add_reminder(conn: AsyncConnection, values: dict[str, Any]) -> int:
    return int(
        (await conn.execute(insert(reminders).returning(reminders.c.id), values)).scalar_one()
    )


async def enqueue(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(outbox), values)


async def inbox(conn: AsyncConnection, manager_id: int) -> list[tuple[Any, ...]]:
    c, cl, t = conversations.c, clients.c, topics.c
    rows = await conn.execute(
        select(cl.id, cl.name, c.id, c.channel, c.created_at, t.chat_id, t.thread_id)
        .join_from(conversations, clients, c.client_id == cl.id)
        .join(topics, t.client_id == cl.id, isouter=True)
        .where(c.assignee_id == manager_id, c.status.in_(UNRESOLVED))
        .order_by(c.created_at, c.id)
    )
    return [tuple(r) for r in rows]


async def set_away(conn: AsyncConnection, manager_id: int, away: bool) -> None:
    await conn.execute(update(managers).where(managers.c.id == manager_id).values(away=away))


async def audit(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(audit_table), values)


def staff_actor(telegram_id: int) -> str:
    """How the audit log names a member of staff: by Telegram id, which a rename keeps."""
    return f"telegram:{telegram_id}"


async def refused(
    conn: AsyncConnection,
    *,
    at: datetime,
    telegram_id: int,
    what: str,
    object_type: str | None = None,
    object_id: int | None = None,
    manager_id: int | None = None,
) -> None:
    """Audit what a member of staff tried and was refused; ``manager_id`` when the
    refusal is of a registered manager acting on another one's object."""
    details: dict[str, Any] = {"what": what}
    if manager_id is not None:
        details["manager"] = manager_id
    await audit(
        conn,
        {
            "at": at,
            "actor": staff_actor(telegram_id),
            "action": "refused",
            "object_type": object_type,
            "object_id": object_id,
            "details": details,
        },
    )


# --- the managers' private chats -------------------------------------------------------


async def remember_private(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Which client each of the bot's private messages (or entries of one) is about:
    rows of chat_id, message_id, entry, client_id, conversation_id, at."""
    if rows:
        await conn.execute(insert(private_messages), rows)


async def private_client(
    conn: AsyncConnection, chat_id: int, message_id: int | None, entry: int = 0
) -> int | None:
    """The client a private message (None: the chat's latest one with ``entry``) was
    about, as they are now: the client its conversation belongs to, or the one a
    merge kept."""
    p, c = private_messages.c, conversations.c
    found = (
        select(p.client_id, c.client_id)
        .join_from(private_messages, conversations, p.conversation_id == c.id, isouter=True)
        .where(p.chat_id == chat_id, p.entry == entry)
    )
    if message_id is not None:
        found = found.where(p.message_id == message_id)
    row = (await conn.execute(found.order_by(p.message_id.desc()).limit(1))).one_or_none()
    if row is None:
        return None
    return await live_client(conn, int(row[1] if row[1] is not None else row[0]))


async def forget_private(conn: AsyncConnection, before: datetime) -> int:
    """Which client the bot's private messages sent before ``before`` were about is
    forgotten (a reply to one that old is told it is about no client): how many."""
    result = await conn.execute(delete(private_messages).where(private_messages.c.at < before))
    return int(result.rowcount or 0)


async def live_client(conn: AsyncConnection, client_id: int) -> int:
    """``client_id``, or the client it was merged into (and so on)."""
    seen = {client_id}
    while True:
        kept = (
            await conn.execute(select(clients.c.merged_into).where(clients.c.id == client_id))
        ).scalar_one_or_none()
        if kept is None or kept in seen:
            return client_id
        client_id = int(kept)
        seen.add(client_id)


async def current_client(conn: AsyncConnection, manager_id: int) -> int | None:
    found = (
        await conn.execute(
            select(current_clients.c.client_id).where(current_clients.c.manager_id == manager_id)
        )
    ).scalar_one_or_none()
    return None if found is None else await live_client(conn, int(found))


async def set_current_client(
    conn: AsyncConnection, manager_id: int, client_id: int | None, now: datetime
) -> None:
    """The manager's current client; None: none."""
    await conn.execute(delete(current_clients).where(current_clients.c.manager_id == manager_id))
    if client_id is not None:
        await conn.execute(
            insert(current_clients).values(manager_id=manager_id, client_id=client_id, at=now)
        )
