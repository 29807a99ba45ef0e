"""The outbox queries: claim due messages, record each send's outcome.

A claim moves rows to ``sending`` with a lease; a row whose lease ran out (its
instance died mid-send) is claimed again. On PostgreSQL the claim skips rows
another instance holds (``FOR UPDATE SKIP LOCKED``); on SQLite the unit of work
holds the write lock (``BEGIN IMMEDIATE``), where ``FOR UPDATE`` would be dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import and_, bindparam, case, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import attachments, conversations, interactions, managers, outbox, topics
from storage.webhooks import CHANNEL as WEBHOOK


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    idempotency_key: str
    channel: str
    account: str
    recipient: str
    kind: str
    subject: str | None
    text: str
    extras: dict[str, Any] | None
    client_id: int | None
    conversation_id: int | None
    interaction_id: int | None
    attempts: int


def _due(now: datetime) -> Any:
    o = outbox.c
    return or_(
        and_(o.status == "pending", o.next_attempt_at <= now),
        and_(o.status == "sending", o.claimed_until < now),
    )


def _in_turn() -> Any:
    """A webhook row waits while an earlier row of its queue (client and webhook,
    kept in ``external_id`` until sent: see ``storage.webhooks``) is still to go;
    one probe of ``ix_outbox_external`` per candidate. A parked row holds nobody."""
    o = outbox.c
    earlier = outbox.alias("earlier")
    e = earlier.c
    ahead = exists().where(
        e.channel == WEBHOOK,
        e.external_id == o.external_id,
        e.id < o.id,
        e.status.in_(("pending", "sending")),
    )
    return or_(o.external_id.is_(None), ~ahead)


_CLAIMED = (
    outbox.c.id,
    outbox.c.idempotency_key,
    outbox.c.channel,
    outbox.c.account,
    outbox.c.recipient,
    outbox.c.kind,
    outbox.c.subject,
    outbox.c.text,
    outbox.c.extras,
    outbox.c.client_id,
    outbox.c.conversation_id,
    outbox.c.interaction_id,
    outbox.c.attempts,
)


async def _take(
    conn: AsyncConnection, which: Any, *, lease_until: datetime, worker: str
) -> list[OutboxRow]:
    o = outbox.c
    result = await conn.execute(
        update(outbox)
        .where(o.id.in_(which))
        .values(
            status="sending", claimed_until=lease_until, claimed_by=worker, attempts=o.attempts + 1
        )
        .returning(*_CLAIMED)
    )
    return [OutboxRow(*row) for row in result]


async def claim(
    conn: AsyncConnection,
    *,
    channels: Sequence[str],
    now: datetime,
    lease_until: datetime,
    worker: str,
    limit: int,
    later: Sequence[str] = (),
) -> list[OutboxRow]:
    """Due rows, oldest first; rows of the ``later`` kinds after all others due;
    outgoing events (webhooks) with what room is left, each in its turn
    (:func:`_in_turn`): what people wait for goes first."""
    o = outbox.c
    order: list[Any] = [o.next_attempt_at, o.id]
    if later:
        order.insert(0, case((o.kind.in_(list(later)), 1), else_=0))
    rows: list[OutboxRow] = []
    others = [c for c in channels if c != WEBHOOK]
    if others:
        due_ids = (
            select(o.id)
            .where(_due(now), o.channel.in_(others))
            .order_by(*order)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        rows = await _take(conn, due_ids, lease_until=lease_until, worker=worker)
    if WEBHOOK in channels and len(rows) < limit:
        ids = await _webhooks_due(conn, now, limit - len(rows))
        if ids:
            rows += await _take(conn, ids, lease_until=lease_until, worker=worker)
    rows.sort(key=lambda r: r.id)
    return rows


async def _webhooks_due(conn: AsyncConnection, now: datetime, limit: int) -> list[int]:
    """Up to ``limit`` webhook rows in their turn: leases run out first, then the
    pending, oldest first. Two queries, so that each walks its index in order and
    stops at ``limit`` instead of sorting every row due (a backlog of thousands)."""
    o = outbox.c
    expired = await conn.execute(
        select(o.id)
        .where(o.status == "sending", o.claimed_until < now, o.channel == WEBHOOK, _in_turn())
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = [int(r[0]) for r in expired]
    if len(ids) < limit:
        pending = await conn.execute(
            select(o.id)
            .where(
                o.status == "pending", o.next_attempt_at <= now, o.channel == WEBHOOK, _in_turn()
            )
            # not by id too: PostgreSQL then walks ix_outbox_due in order (ties are
            # other clients' rows, whose order does not matter)
            .order_by(o.next_attempt_at)
            .limit(limit - len(ids))
            .with_for_update(skip_locked=True)
        )
        ids += [int(r[0]) for r in pending]
    return ids


async def next_due(conn: AsyncConnection, channels: Sequence[str]) -> datetime | None:
    """When the earliest pending row of these channels falls due (a webhook's row
    waiting for its turn does not count: it falls due when the one ahead is sent)."""
    o = outbox.c
    where = [o.status == "pending", o.channel.in_(channels)]
    if WEBHOOK in channels:
        where.append(or_(o.channel != WEBHOOK, _in_turn()))
    return cast(
        "datetime | None",
        (await conn.execute(select(func.min(o.next_attempt_at)).where(*where))).scalar_one(),
    )


@dataclass(frozen=True, slots=True)
class Sent:
    """One send to record: the row, the peer's id for it, the interaction it delivers."""

    row_id: int
    external_id: str | None
    interaction_id: int | None


async def mark_sent(
    conn: AsyncConnection, sends: Sequence[Sent], *, worker: str, now: datetime
) -> None:
    """Record deliveries, one statement per table for the whole group (a row whose
    claim was lost to another instance is left as that instance has it)."""
    if not sends:
        return
    o = outbox.c
    await conn.execute(
        update(outbox)
        .where(o.id == bindparam("b_id"), o.status == "sending", o.claimed_by == worker)
        .values(
            status="sent",
            sent_at=now,
            external_id=bindparam("b_external"),
            claimed_until=None,
            last_error=None,
        ),
        [{"b_id": s.row_id, "b_external": s.external_id} for s in sends],
    )
    delivered = [{"b_id": s.interaction_id} for s in sends if s.interaction_id is not None]
    if delivered:
        i = interactions.c
        await conn.execute(
            update(interactions)
            .where(i.id == bindparam("b_id"))
            .values(delivery="sent", delivery_error=None),
            delivered,
        )


async def mark_retry(
    conn: AsyncConnection,
    row_id: int,
    *,
    worker: str,
    error: str,
    next_attempt_at: datetime,
) -> None:
    o = outbox.c
    await conn.execute(
        update(outbox)
        .where(o.id == row_id, o.claimed_by == worker)
        .values(
            status="pending", next_attempt_at=next_attempt_at, last_error=error, claimed_until=None
        )
    )


async def mark_failed(
    conn: AsyncConnection,
    row_id: int,
    *,
    worker: str,
    error: str,
    now: datetime,
    interaction_id: int | None,
) -> None:
    o = outbox.c
    await conn.execute(
        update(outbox)
        .where(o.id == row_id, o.claimed_by == worker)
        .values(status="failed", last_error=error, claimed_until=None, sent_at=None)
    )
    if interaction_id is not None:
        i = interactions.c
        await conn.execute(
            update(interactions)
            .where(i.id == interaction_id)
            .values(delivery="failed", delivery_error=error)
        )


async def append_event(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(insert(interactions).returning(interactions.c.id), values)
    return int(result.scalar_one())


async def enqueue(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(outbox), rows)


async def assignee_telegram_id(conn: AsyncConnection, conversation_id: int) -> int | None:
    c, m = conversations.c, managers.c
    return cast(
        "int | None",
        (
            await conn.execute(
                select(m.telegram_id)
                .join_from(conversations, managers, c.assignee_id == m.id)
                .where(c.id == conversation_id)
            )
        ).scalar_one_or_none(),
    )


@dataclass(frozen=True, slots=True)
class SentRow:
    id: int
    kind: str
    client_id: int | None
    conversation_id: int | None
    interaction_id: int | None


async def find_sent(conn: AsyncConnection, channel: str, external_id: str) -> SentRow | None:
    """The outbox row a peer knows by ``external_id`` (an email's Message-ID)."""
    o = outbox.c
    row = (
        await conn.execute(
            select(o.id, o.kind, o.client_id, o.conversation_id, o.interaction_id)
            .where(o.channel == channel, o.external_id == external_id)
            .limit(1)
        )
    ).one_or_none()
    return SentRow(*row) if row is not None else None


async def logged(conn: AsyncConnection, channel: str, external_id: str) -> tuple[int, int] | None:
    """(interaction id, client id) already logged under this channel and external id."""
    i = interactions.c
    row = (
        await conn.execute(
            select(i.id, i.client_id).where(i.channel == channel, i.external_id == external_id)
        )
    ).one_or_none()
    return (int(row[0]), int(row[1])) if row is not None else None


async def fail_sent(
    conn: AsyncConnection, row_id: int, *, error: str, interaction_id: int | None
) -> None:
    """A message the relay accepted came back undelivered (a bounce)."""
    await conn.execute(
        update(outbox).where(outbox.c.id == row_id).values(status="failed", last_error=error)
    )
    if interaction_id is not None:
        i = interactions.c
        await conn.execute(
            update(interactions)
            .where(i.id == interaction_id)
            .values(delivery="failed", delivery_error=error)
        )


@dataclass(frozen=True, slots=True)
class RecentRow:
    """A row sent since a time (``sent_at``), or claimed and not recorded (None)."""

    channel: str
    kind: str
    recipient: str
    external_id: str | None
    topic_chat: int | None  # the chat of the client's staff topic, if any
    length: int
    files: int
    sent_at: datetime | None


async def recent_sends(
    conn: AsyncConnection, *, channels: Sequence[str], since: datetime
) -> list[RecentRow]:
    """The rows of these channels sent since ``since``, and those claimed whose lease
    ran out no earlier (a send may have gone out before its instance died)."""
    o, t, a = outbox.c, topics.c, attachments.c
    files = select(func.count()).where(a.interaction_id == o.interaction_id).scalar_subquery()
    result = await conn.execute(
        select(
            o.channel,
            o.kind,
            o.recipient,
            o.external_id,
            t.chat_id,
            func.length(o.text),
            files,
            case((o.status == "sent", o.sent_at), else_=None),
        )
        .select_from(outbox.outerjoin(topics, t.client_id == o.client_id))
        .where(
            o.channel.in_(channels),
            or_(
                and_(o.status == "sent", o.sent_at >= since),
                and_(o.status == "sending", o.claimed_until >= since),
            ),
        )
    )
    return [RecentRow(*row) for row in result]


async def recent_topics(conn: AsyncConnection, *, since: datetime) -> list[tuple[int, datetime]]:
    """(chat, when) of the staff topics opened since ``since``."""
    t = topics.c
    result = await conn.execute(select(t.chat_id, t.created_at).where(t.created_at >= since))
    return [(int(chat), at) for chat, at in result]
