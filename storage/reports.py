"""The queries behind the reports: response times, deadlines, volume, load, stages, campaigns.

Read-only and set-based: one statement per figure, grouped in SQL where the
grouping does not depend on the time zone. Volume is counted per quarter of an
hour of UTC (every time zone's offset is a whole number of quarters), so the
caller can fold the counts into local hours and days. Percentiles need every
value and neither backend has the same function for them, so response times
come back one row per conversation and are summarised in ``hub.reports.reports``.

Campaign figures are counted by :func:`storage.campaigns.stats` (the same as a
campaign's own status shows); this module finds the campaigns of a period and
answers ``None`` when the campaign tables do not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Select,
    and_,
    case,
    cast,
    exists,
    extract,
    func,
    inspect,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import (
    UNRESOLVED,
    campaign_targets,
    campaigns,
    conversations,
    deadlines,
    interactions,
    managers,
)

QUARTER_S = 900


@dataclass(frozen=True, slots=True)
class ConversationTimes:
    """A conversation opened or resolved in the period, with its times."""

    id: int
    channel: str
    manager: str | None
    created_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeadlineCount:
    kind: str
    policy: str
    manager: str | None
    due: int
    missed: int


@dataclass(frozen=True, slots=True)
class VolumeCount:
    """Messages of one channel and direction in one quarter hour (``quarter`` × 900 s
    after the Unix epoch, UTC)."""

    channel: str
    direction: str
    quarter: int
    count: int


@dataclass(frozen=True, slots=True)
class Load:
    manager: str | None  # None: not assigned to anybody
    active: bool
    capacity: int | None
    open: int
    overdue: int


@dataclass(frozen=True, slots=True)
class StageMove:
    old: str
    new: str
    count: int


@dataclass(frozen=True, slots=True)
class CampaignAlive:
    id: int
    name: str
    mode: str
    status: str
    reply_window_days: float | None


async def conversation_times(
    conn: AsyncConnection, start: datetime, end: datetime
) -> list[ConversationTimes]:
    """Conversations opened in ``[start, end)`` or resolved in it, by id."""
    v, m = conversations.c, managers.c
    rows = await conn.execute(
        select(v.id, v.channel, m.name, v.created_at, v.first_response_at, v.resolved_at)
        .join_from(conversations, managers, v.assignee_id == m.id, isouter=True)
        .where(
            or_(
                and_(v.created_at >= start, v.created_at < end),
                and_(v.resolved_at >= start, v.resolved_at < end),
            )
        )
        .order_by(v.id)
    )
    return [ConversationTimes(*row) for row in rows]


async def deadline_counts(
    conn: AsyncConnection, start: datetime, end: datetime
) -> list[DeadlineCount]:
    """Deadlines that came due in ``[start, end)``: how many, how many missed (step >= 2),
    by kind, policy and the conversation's assignee."""
    d, v, m = deadlines.c, conversations.c, managers.c
    missed = func.sum(case((d.step >= 2, 1), else_=0))
    rows = await conn.execute(
        select(d.kind, d.policy, m.name, func.count(), missed)
        .select_from(
            deadlines.join(conversations, d.conversation_id == v.id).join(
                managers, v.assignee_id == m.id, isouter=True
            )
        )
        .where(d.due_at >= start, d.due_at < end)
        .group_by(d.kind, d.policy, m.name)
        .order_by(d.kind, d.policy, m.name)
    )
    return [
        DeadlineCount(kind, policy, name, due, int(miss or 0))
        for kind, policy, name, due, miss in rows
    ]


def volume_query(dialect: str, start: datetime, end: datetime) -> Select[Any]:
    """Read from ``ix_interactions_at`` alone: the period's part of the log."""
    t = interactions.c
    quarter = _quarter(t.at, dialect).label("quarter")
    return (
        select(t.channel, t.direction, quarter, func.count())
        .where(t.at >= start, t.at < end, t.direction.in_(("in", "out")), t.channel.is_not(None))
        .group_by(t.channel, t.direction, quarter)
    )


async def volume(conn: AsyncConnection, start: datetime, end: datetime) -> list[VolumeCount]:
    """Inbound and outbound messages in ``[start, end)`` by channel and quarter hour."""
    rows = await conn.execute(volume_query(conn.dialect.name, start, end))
    return [VolumeCount(ch, d, int(q), n) for ch, d, q, n in rows]


async def open_load(conn: AsyncConnection, now: datetime) -> list[Load]:
    """Open (not resolved) conversations per manager, and how many of them are past a
    deadline now; every active manager is listed, with a row for nobody's."""
    v, m, d = conversations.c, managers.c, deadlines.c
    # A clock paused while the request waits on the client is not overdue meanwhile.
    overdue = exists().where(
        d.conversation_id == v.id, d.status == "open", d.paused_at.is_(None), d.due_at < now
    )
    counts = (
        select(
            v.assignee_id.label("manager_id"),
            func.count().label("open"),
            func.sum(case((overdue, 1), else_=0)).label("overdue"),
        )
        .where(v.status.in_(UNRESOLVED))
        .group_by(v.assignee_id)
    )
    load = {
        manager_id: (int(n), int(late or 0)) for manager_id, n, late in await conn.execute(counts)
    }
    listed = await conn.execute(select(m.id, m.name, m.active, m.capacity).order_by(m.name))
    found = [
        Load(name, bool(active), capacity, *load.get(manager_id, (0, 0)))
        for manager_id, name, active, capacity in listed
        if active or manager_id in load
    ]
    if None in load:
        found.append(Load(None, True, None, *load[None]))
    return found


async def stage_moves(conn: AsyncConnection, start: datetime, end: datetime) -> list[StageMove]:
    """Stage moves logged in ``[start, end)``, counted by (from, to): read from the
    event's ``extras["stage_move"]``, which every move has been written with."""
    t = interactions.c
    move = type_coerce(t.extras, JSON)
    # Grouped over a subquery: PostgreSQL does not see that two JSON paths, each
    # with its own bound parameter, are the same expression.
    logged = (
        select(
            move[("stage_move", "from")].as_string().label("old"),
            move[("stage_move", "to")].as_string().label("new"),
        )
        .where(t.direction == "event", t.at >= start, t.at < end)
        .subquery()
    )
    rows = await conn.execute(
        select(logged.c.old, logged.c.new, func.count())
        .where(logged.c.new.is_not(None))
        .group_by(logged.c.old, logged.c.new)
        .order_by(logged.c.old, logged.c.new)
    )
    return [StageMove(old, new, n) for old, new, n in rows]


async def has_campaigns(conn: AsyncConnection) -> bool:
    def check(sync: Connection) -> bool:
        found = inspect(sync)
        return found.has_table("campaigns") and found.has_table("campaign_targets")

    return await conn.run_sync(check)


async def campaigns_alive(
    conn: AsyncConnection, start: datetime, end: datetime
) -> list[CampaignAlive] | None:
    """Campaigns alive during ``[start, end)``, with their own reply window (days)
    if their spec sets one; ``None`` when the campaign tables do not exist."""
    if not await has_campaigns(conn):
        return None
    c = campaigns.c
    rows = await conn.execute(
        select(c.id, c.name, c.mode, c.status, c.spec)
        .where(c.created_at < end, or_(c.finished_at.is_(None), c.finished_at >= start))
        .order_by(c.id)
    )
    alive = []
    for cid, name, mode, status, spec in rows:
        window = (spec or {}).get("reply_window_days")
        days = float(window) if isinstance(window, int | float) and window > 0 else None
        alive.append(CampaignAlive(cid, name, mode, status, days))
    return alive


async def campaign_outcomes(conn: AsyncConnection, ids: list[int]) -> dict[int, dict[str, int]]:
    """Call outcomes recorded per campaign: ``{campaign: {outcome: count}}``."""
    if not ids:
        return {}
    g = campaign_targets.c
    rows = await conn.execute(
        select(g.campaign_id, g.outcome, func.count())
        .where(g.campaign_id.in_(ids), g.outcome.is_not(None))
        .group_by(g.campaign_id, g.outcome)
        .order_by(g.campaign_id, g.outcome)
    )
    found: dict[int, dict[str, int]] = {}
    for campaign, outcome, n in rows:
        found.setdefault(campaign, {})[outcome] = n
    return found


def _quarter(at: ColumnElement[datetime], dialect: str) -> ColumnElement[int]:
    """Quarter hours since the Unix epoch (UTC) of a stored time."""
    if dialect == "sqlite":
        # naive UTC text; strftime('%s') reads it as UTC
        return cast(func.strftime("%s", at), BigInteger) // QUARTER_S
    return cast(func.floor(extract("epoch", at)), BigInteger) // QUARTER_S
