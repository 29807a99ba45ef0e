"""Queries of satisfaction ratings: the ask made on a resolution, the client's score
and comment, the ratings a batch's clients may be commenting on, and the report's
scores.

A client's comment is looked for on the ingest path (a synchronous
:class:`~sqlalchemy.engine.Connection`): one constant statement a batch over the
``rated_at`` index, which reads only the ratings given within the comment window
(a handful), whoever the batch's senders are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.desk import live_client
from storage.tables import clients, conversations, identities, managers, ratings


@dataclass(frozen=True, slots=True)
class RatingRow:
    """A rating as asked, and as answered so far."""

    id: int
    conversation_id: int
    client_id: int
    manager_id: int | None
    channel: str
    score: int | None
    comment: str | None
    asked_at: datetime
    rated_at: datetime | None


@dataclass(frozen=True, slots=True)
class Asked:
    """What an ask is made of: the resolved conversation, its client and how to reach them."""

    conversation_id: int
    client_id: int
    channel: str
    account: str
    subject: str | None
    client_name: str | None
    language: str | None
    blocked: bool


def _columns() -> tuple[Any, ...]:
    r = ratings.c
    return (
        r.id,
        r.conversation_id,
        r.client_id,
        r.manager_id,
        r.channel,
        r.score,
        r.comment,
        r.asked_at,
        r.rated_at,
    )


async def asked(conn: AsyncConnection, conversation_id: int) -> Asked | None:
    c, k = conversations.c, clients.c
    row = (
        await conn.execute(
            select(
                c.id,
                c.client_id,
                c.channel,
                c.account,
                c.subject,
                k.name,
                k.language,
                k.blocked_at.is_not(None),
            )
            .join_from(conversations, clients, c.client_id == k.id)
            .where(c.id == conversation_id)
        )
    ).one_or_none()
    return Asked(*row) if row is not None else None


async def create(conn: AsyncConnection, values: dict[str, Any]) -> int:
    return int((await conn.execute(insert(ratings).returning(ratings.c.id), values)).scalar_one())


async def get(conn: AsyncConnection, rating_id: int) -> RatingRow | None:
    row = (await conn.execute(select(*_columns()).where(ratings.c.id == rating_id))).one_or_none()
    return RatingRow(*row) if row is not None else None


async def for_update(conn: AsyncConnection, rating_id: int) -> RatingRow | None:
    """The rating, locked for the caller's transaction (two clicks at once: one waits)."""
    query = select(*_columns()).where(ratings.c.id == rating_id)
    if conn.dialect.name != "sqlite":
        query = query.with_for_update()
    row = (await conn.execute(query)).one_or_none()
    return RatingRow(*row) if row is not None else None


async def set_score(conn: AsyncConnection, rating_id: int, score: int, at: datetime) -> None:
    await conn.execute(
        update(ratings).where(ratings.c.id == rating_id).values(score=score, rated_at=at)
    )


async def holds(conn: AsyncConnection, client_id: int, kind: str, value: str) -> bool:
    """Whether the identity (kind, value) is the client's, merges followed."""
    i = identities.c
    found = (
        await conn.execute(select(i.client_id).where(i.kind == kind, i.value == value).limit(1))
    ).scalar_one_or_none()
    if found is None:
        return False
    return await live_client(conn, int(found)) == await live_client(conn, client_id)


async def names(
    conn: AsyncConnection, client_id: int, manager_id: int | None
) -> tuple[str | None, str | None, str | None]:
    """The client's name and language, and the manager's name."""
    k = clients.c
    row = (await conn.execute(select(k.name, k.language).where(k.id == client_id))).one_or_none()
    manager = None
    if manager_id is not None:
        manager = (
            await conn.execute(select(managers.c.name).where(managers.c.id == manager_id))
        ).scalar_one_or_none()
    return (row[0], row[1], manager) if row is not None else (None, None, manager)


# -- the ingest path -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recent:
    """A rating given within the comment window and not commented on yet."""

    id: int
    client_id: int
    conversation_id: int
    manager_id: int | None
    score: int


_RECENT = (
    select(
        ratings.c.id,
        ratings.c.client_id,
        ratings.c.conversation_id,
        ratings.c.manager_id,
        ratings.c.score,
    )
    .where(
        ratings.c.rated_at >= bindparam("since"),
        ratings.c.commented_at.is_(None),
        ratings.c.score.is_not(None),
    )
    .order_by(ratings.c.rated_at)
)


def recent(conn: Connection, since: datetime) -> dict[int, Recent]:
    """By client: the latest rating given since ``since`` with no comment yet."""
    return {
        int(row.client_id): Recent(*row) for row in conn.execute(_RECENT, {"since": since}).all()
    }


def comment(conn: Connection, rows: Sequence[tuple[int, str, datetime]]) -> None:
    """(rating id, comment, when) each: a rating's comment, once."""
    if not rows:
        return
    r = ratings.c
    conn.execute(
        update(ratings)
        .where(r.id == bindparam("rid"), r.commented_at.is_(None))
        .values(comment=bindparam("said"), commented_at=bindparam("at")),
        [{"rid": rid, "said": said, "at": at} for rid, said, at in rows],
    )


def supervisors(conn: Connection) -> list[int]:
    """The active supervisors' Telegram ids."""
    m = managers.c
    rows = conn.execute(
        select(m.telegram_id).where(m.role == "supervisor", m.active.is_(True)).order_by(m.id)
    )
    return [int(t) for (t,) in rows]


# -- reports ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Score:
    """A score given in the period: who resolved the request, over which channel, when."""

    manager: str | None
    channel: str
    score: int
    rated_at: datetime


async def scores(conn: AsyncConnection, start: datetime, end: datetime) -> list[Score]:
    r, m = ratings.c, managers.c
    rows = await conn.execute(
        select(m.name, r.channel, r.score, r.rated_at)
        .join_from(ratings, managers, r.manager_id == m.id, isouter=True)
        .where(r.rated_at >= start, r.rated_at < end, r.score.is_not(None))
        .order_by(r.rated_at)
    )
    return [Score(*row) for row in rows]
