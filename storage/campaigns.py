"""Campaign queries: campaigns, their targets, the work of sending, results from the log.

A target is claimed inside the unit of work that writes its outbox row and its
interaction and marks it ``queued``: on PostgreSQL with ``FOR UPDATE SKIP
LOCKED`` (two instances never take the same target), on SQLite under the write
lock. Either all of it commits or none, so a crash leaves each target either
pending (taken again) or queued with exactly one outbox row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Interval,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from storage import segments
from storage.ingest import insert_many, insert_rows
from storage.tables import (
    campaign_targets,
    campaigns,
    clients,
    conversations,
    identities,
    interactions,
    managers,
    outbox,
)


@dataclass(frozen=True, slots=True)
class CampaignRow:
    id: int
    name: str
    mode: str
    status: str
    spec: dict[str, Any]
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    targeted_at: datetime | None


# The role that takes call tasks by default: hub.kernel.types.Role.MANAGER, spelled
# here because storage imports nothing of the hub.
MANAGER = "manager"

_CAMPAIGN_COLUMNS = (
    campaigns.c.id,
    campaigns.c.name,
    campaigns.c.mode,
    campaigns.c.status,
    campaigns.c.spec,
    campaigns.c.created_by,
    campaigns.c.created_at,
    campaigns.c.started_at,
    campaigns.c.finished_at,
    campaigns.c.targeted_at,
)


async def create(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(insert(campaigns).returning(campaigns.c.id), values)
    return int(result.scalar_one())


async def get(conn: AsyncConnection, campaign_id: int) -> CampaignRow | None:
    row = (
        await conn.execute(select(*_CAMPAIGN_COLUMNS).where(campaigns.c.id == campaign_id))
    ).one_or_none()
    return CampaignRow(**row._mapping) if row is not None else None


async def listing(conn: AsyncConnection, limit: int = 20) -> list[CampaignRow]:
    rows = await conn.execute(
        select(*_CAMPAIGN_COLUMNS).order_by(campaigns.c.id.desc()).limit(limit)
    )
    return [CampaignRow(**row._mapping) for row in rows]


async def running(conn: AsyncConnection) -> list[int]:
    rows = await conn.execute(
        select(campaigns.c.id).where(campaigns.c.status == "running").order_by(campaigns.c.id)
    )
    return [int(r) for r in rows.scalars()]


async def set_status(
    conn: AsyncConnection,
    campaign_id: int,
    status: str,
    *,
    now: datetime,
    from_statuses: Sequence[str],
    **values: Any,
) -> bool:
    """Move the campaign to ``status`` when it is in one of ``from_statuses``."""
    c = campaigns.c
    result = await conn.execute(
        update(campaigns)
        .where(c.id == campaign_id, c.status.in_(list(from_statuses)))
        .values(status=status, updated_at=now, **values)
    )
    return bool(result.rowcount)


async def update_draft(conn: AsyncConnection, campaign_id: int, values: dict[str, Any]) -> bool:
    """Change a campaign while it is a draft (nothing targeted yet)."""
    c = campaigns.c
    result = await conn.execute(
        update(campaigns).where(c.id == campaign_id, c.status == "draft").values(**values)
    )
    return bool(result.rowcount)


# -- targets -------------------------------------------------------------------------


async def segment_clients(
    conn: AsyncConnection, segment: segments.Segment, limit: int | None = None
) -> list[int]:
    rows = await conn.execute(segments.client_ids(segment, conn.dialect.name).limit(limit))
    return [int(r) for r in rows.scalars()]


async def segment_size(conn: AsyncConnection, segment: segments.Segment) -> int:
    return int((await conn.execute(segments.count(segment, conn.dialect.name))).scalar_one())


async def add_targets(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    """Insert targets; a client already targeted by the campaign is left as it is."""
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        statement: Any = postgresql.insert(campaign_targets).on_conflict_do_nothing(
            index_elements=[campaign_targets.c.campaign_id, campaign_targets.c.client_id]
        )
    else:
        statement = sqlite.insert(campaign_targets).on_conflict_do_nothing(
            index_elements=[campaign_targets.c.campaign_id, campaign_targets.c.client_id]
        )
    result = await conn.execute(statement, rows)
    return max(int(result.rowcount or 0), 0)


@dataclass(frozen=True, slots=True)
class TargetClient:
    """A claimed target with what rendering and routing need of its client."""

    target_id: int
    client_id: int
    variant: str
    manager_id: int | None
    name: str | None
    stage: str
    source: str | None
    language: str | None
    tags: list[str] | None
    custom: dict[str, Any] | None
    opted_out: bool
    owner: str | None
    identities: dict[str, str]


async def claim(
    conn: AsyncConnection, campaign_id: int, *, now: datetime, limit: int
) -> list[TargetClient]:
    """Pending targets due now, locked for this unit of work, with their clients."""
    t = campaign_targets.c
    rows = (
        await conn.execute(
            select(t.id, t.client_id, t.variant, t.manager_id)
            .where(
                t.campaign_id == campaign_id,
                t.status == "pending",
                or_(t.due_at.is_(None), t.due_at <= now),
            )
            .order_by(t.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    info = await _clients(conn, [int(r[1]) for r in rows])
    return [
        TargetClient(int(r[0]), int(r[1]), str(r[2]), r[3], *info[int(r[1])])
        for r in rows
        if int(r[1]) in info
    ]


async def preview_clients(
    conn: AsyncConnection, campaign_id: int, client_ids: Sequence[int]
) -> list[TargetClient]:
    """Clients as a claim would see them (their target, when targeted already)."""
    t = campaign_targets.c
    targeted = {
        int(c): (int(i), str(v), m)
        for i, c, v, m in await conn.execute(
            select(t.id, t.client_id, t.variant, t.manager_id).where(
                t.campaign_id == campaign_id, t.client_id.in_(list(client_ids))
            )
        )
    }
    info = await _clients(conn, client_ids)
    found = []
    for cid in client_ids:
        if cid in info:
            target_id, variant, manager_id = targeted.get(cid, (0, "", None))
            found.append(TargetClient(target_id, cid, variant, manager_id, *info[cid]))
    return found


async def _clients(conn: AsyncConnection, client_ids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
    if not client_ids:
        return {}
    c = clients.c
    owner = aliased(managers)
    rows = await conn.execute(
        select(
            c.id,
            c.name,
            c.stage,
            c.source,
            c.language,
            c.tags,
            c.custom,
            c.opted_out,
            owner.c.name,
        )
        .outerjoin(owner, owner.c.id == c.owner_id)
        .where(c.id.in_(list(client_ids)))
    )
    i = identities.c
    found: dict[int, dict[str, str]] = {}
    for client_id, kind, value in await conn.execute(
        select(i.client_id, i.kind, i.value).where(i.client_id.in_(list(client_ids))).order_by(i.id)
    ):
        found.setdefault(int(client_id), {})[str(kind)] = str(value)  # the newest wins
    return {
        int(r[0]): (
            r[1],
            str(r[2]),
            r[3],
            r[4],
            r[5],
            r[6],
            bool(r[7]),
            r[8],
            found.get(int(r[0]), {}),
        )
        for r in rows
    }


async def accounts(conn: AsyncConnection, client_ids: Sequence[int]) -> dict[tuple[int, str], str]:
    """The account (bot, mailbox) of each client's newest conversation per channel;
    under client 0, the newest of any client (for clients who never wrote)."""
    cv = conversations.c
    found: dict[tuple[int, str], str] = {}
    for client_id, channel, account in await conn.execute(
        select(cv.client_id, cv.channel, cv.account)
        .where(cv.client_id.in_(list(client_ids)))
        .order_by(cv.id)
    ):
        found[(int(client_id), str(channel))] = str(account)
    for channel in ("telegram", "email"):
        newest = (
            await conn.execute(
                select(cv.account).where(cv.channel == channel).order_by(cv.id.desc()).limit(1)
            )
        ).scalar_one_or_none()
        if newest is not None:
            found[(0, channel)] = str(newest)
    return found


async def enqueue_one(conn: AsyncConnection, row: dict[str, Any]) -> int:
    result = await conn.execute(insert(outbox).returning(outbox.c.id), row)
    return int(result.scalar_one())


async def manager_names(conn: AsyncConnection) -> dict[int, str]:
    m = managers.c
    return {int(a): str(b) for a, b in await conn.execute(select(m.id, m.name))}


async def update_target(
    conn: AsyncConnection, target_id: int, *, now: datetime, **values: Any
) -> None:
    await conn.execute(
        update(campaign_targets)
        .where(campaign_targets.c.id == target_id)
        .values(updated_at=now, **values)
    )


async def skip_targets(
    conn: AsyncConnection, target_ids: Sequence[int], *, reason: str, now: datetime
) -> None:
    if target_ids:
        await conn.execute(
            update(campaign_targets)
            .where(campaign_targets.c.id.in_(list(target_ids)))
            .values(status="skipped", reason=reason, updated_at=now)
        )


async def defer_targets(
    conn: AsyncConnection, until: dict[int, datetime], *, now: datetime
) -> None:
    if not until:
        return
    t = campaign_targets.c
    await conn.execute(
        update(campaign_targets)
        .where(t.id == bindparam("b_id"))
        .values(due_at=bindparam("b_due"), updated_at=now),
        [{"b_id": target_id, "b_due": due} for target_id, due in until.items()],
    )


async def write_sends(
    conn: AsyncConnection,
    sends: list[tuple[int, dict[str, Any], dict[str, Any]]],
    *,
    now: datetime,
) -> None:
    """For each (target id, interaction, outbox row): log the interaction, write the
    outbox row linked to it, mark the target queued. One statement per table."""
    if not sends:
        return

    def log_and_queue(sync: Connection) -> list[int]:
        ids = insert_many(sync, interactions, [interaction for _, interaction, _ in sends])
        insert_rows(
            sync,
            outbox,
            [{**row, "interaction_id": iid} for (_, _, row), iid in zip(sends, ids, strict=True)],
        )
        return ids

    interaction_ids = await conn.run_sync(log_and_queue)
    t = campaign_targets.c
    await conn.execute(
        update(campaign_targets)
        .where(t.id == bindparam("b_id"))
        .values(
            status="queued",
            channel=bindparam("b_channel"),
            outbox_key=bindparam("b_key"),
            interaction_id=bindparam("b_interaction"),
            updated_at=now,
        ),
        [
            {
                "b_id": target_id,
                "b_channel": row["channel"],
                "b_key": row["idempotency_key"],
                "b_interaction": iid,
            }
            for (target_id, _, row), iid in zip(sends, interaction_ids, strict=True)
        ],
    )


async def pending_count(conn: AsyncConnection, campaign_id: int) -> int:
    t = campaign_targets.c
    return int(
        (
            await conn.execute(
                select(func.count()).where(t.campaign_id == campaign_id, t.status == "pending")
            )
        ).scalar_one()
    )


async def next_due(conn: AsyncConnection, campaign_id: int) -> datetime | None:
    t = campaign_targets.c
    return cast(
        "datetime | None",
        (
            await conn.execute(
                select(func.min(t.due_at)).where(
                    t.campaign_id == campaign_id, t.status == "pending"
                )
            )
        ).scalar_one(),
    )


async def outbox_waiting(conn: AsyncConnection, kind: str) -> int:
    """Rows of this kind waiting to be sent (a paused campaign's held rows do not count)."""
    o = outbox.c
    return int(
        (
            await conn.execute(
                select(func.count()).where(o.status.in_(("pending", "sending")), o.kind == kind)
            )
        ).scalar_one()
    )


def _campaign_rows(campaign_id: int) -> Any:
    t = campaign_targets.c
    return (
        select(t.outbox_key)
        .where(t.campaign_id == campaign_id, t.outbox_key.is_not(None))
        .scalar_subquery()
    )


async def hold(conn: AsyncConnection, campaign_id: int) -> int:
    """A pause: the campaign's rows still waiting in the outbox are held back."""
    o = outbox.c
    result = await conn.execute(
        update(outbox)
        .where(o.status == "pending", o.idempotency_key.in_(_campaign_rows(campaign_id)))
        .values(status="held")
    )
    return int(result.rowcount or 0)


async def release(conn: AsyncConnection, campaign_id: int, now: datetime) -> int:
    o = outbox.c
    result = await conn.execute(
        update(outbox)
        .where(o.status == "held", o.idempotency_key.in_(_campaign_rows(campaign_id)))
        .values(status="pending", next_attempt_at=now)
    )
    return int(result.rowcount or 0)


# -- call tasks ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallTask:
    id: int
    campaign_id: int
    client_id: int
    manager_id: int | None
    outcome: str | None
    status: str


async def call_task(conn: AsyncConnection, target_id: int) -> CallTask | None:
    t = campaign_targets.c
    row = (
        await conn.execute(
            select(t.id, t.campaign_id, t.client_id, t.manager_id, t.outcome, t.status).where(
                t.id == target_id
            )
        )
    ).one_or_none()
    return CallTask(*row) if row is not None else None


async def record_outcome(
    conn: AsyncConnection, target_id: int, outcome: str, *, now: datetime
) -> None:
    await conn.execute(
        update(campaign_targets)
        .where(campaign_targets.c.id == target_id)
        .values(status="done", outcome=outcome, outcome_at=now, updated_at=now)
    )


async def load_by_manager(conn: AsyncConnection, manager_ids: Sequence[int]) -> dict[int, int]:
    """Open call tasks per manager (over all campaigns): the even split's starting point."""
    t = campaign_targets.c
    rows = await conn.execute(
        select(t.manager_id, func.count())
        .where(t.manager_id.in_(list(manager_ids)), t.outcome.is_(None))
        .group_by(t.manager_id)
    )
    return {int(m): int(n) for m, n in rows}


# -- results -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VariantStats:
    variant: str
    targeted: int
    pending: int
    skipped: int
    queued: int
    sent: int
    delivered: int
    failed: int
    replied: int
    opted_out: int


async def stats(
    conn: AsyncConnection, campaign_id: int, *, reply_window: timedelta
) -> list[VariantStats]:
    """Counts per variant, from the targets, their outbox rows and the client's log.

    sent: handed to the channel (a later bounce keeps it sent); delivered: sent
    and not bounced; replied: the client wrote in within ``reply_window`` after
    the message; opted_out: the client opted out after the message was queued.
    """
    t, o, i, c = campaign_targets.c, outbox.c, interactions.c, clients.c
    sent_msg = aliased(interactions)
    replied = exists(
        select(literal(1)).where(
            i.client_id == t.client_id,
            i.direction == "in",
            i.at > sent_msg.c.at,
            i.at <= sent_msg.c.at + literal(reply_window, Interval()),
        )
    )
    if conn.dialect.name == "sqlite":
        # SQLite keeps datetimes as text: add the window with its own function.
        seconds = f"+{int(reply_window.total_seconds())} seconds"
        replied = exists(
            select(literal(1)).where(
                i.client_id == t.client_id,
                i.direction == "in",
                i.at > sent_msg.c.at,
                func.datetime(i.at) <= func.datetime(sent_msg.c.at, seconds),
            )
        )

    def n(condition: Any) -> Any:
        return func.sum(case((condition, 1), else_=0))

    query = (
        select(
            t.variant,
            func.count(),
            n(t.status == "pending"),
            n(t.status == "skipped"),
            n(t.status.in_(("queued", "done"))),
            n(o.sent_at.is_not(None)),
            n(o.status == "sent"),
            n(o.status == "failed"),
            n(and_(o.sent_at.is_not(None), replied)),
            n(and_(t.status == "queued", c.opted_out.is_(True))),
        )
        .select_from(campaign_targets)
        .join(clients, c.id == t.client_id)
        .outerjoin(outbox, o.idempotency_key == t.outbox_key)
        .outerjoin(sent_msg, sent_msg.c.id == t.interaction_id)
        .where(t.campaign_id == campaign_id)
        .group_by(t.variant)
        .order_by(t.variant)
    )
    return [
        VariantStats(str(r[0]), *(int(v or 0) for v in r[1:])) for r in await conn.execute(query)
    ]


async def outcomes(conn: AsyncConnection, campaign_id: int) -> list[tuple[str, str, int]]:
    """(manager, outcome or "open", count) of a call list."""
    t, m = campaign_targets.c, managers.c
    outcome = func.coalesce(t.outcome, "open")
    rows = await conn.execute(
        select(func.coalesce(m.name, "-"), outcome, func.count())
        .select_from(campaign_targets)
        .outerjoin(managers, m.id == t.manager_id)
        .where(t.campaign_id == campaign_id, t.status != "skipped")
        .group_by(m.name, outcome)
        .order_by(m.name, outcome)
    )
    return [(str(a), str(b), int(n)) for a, b, n in rows]


async def managers_for_calls(conn: AsyncConnection, names: Sequence[str]) -> list[tuple[int, int]]:
    """(id, telegram id) of the active managers who take calls: those named, else
    every active manager of role ``manager`` (else every active one)."""
    m = managers.c
    query = select(m.id, m.telegram_id, m.role, m.name).where(m.active.is_(True)).order_by(m.id)
    rows = (await conn.execute(query)).all()
    if names:
        chosen = [r for r in rows if r[3] in set(names)]
    else:
        chosen = [r for r in rows if r[2] == MANAGER] or list(rows)
    return [(int(r[0]), int(r[1])) for r in chosen]


async def client_owner(conn: AsyncConnection, client_ids: Sequence[int]) -> dict[int, int | None]:
    c = clients.c
    rows = await conn.execute(select(c.id, c.owner_id).where(c.id.in_(list(client_ids))))
    return {int(a): b for a, b in rows}


async def manager_telegram_ids(conn: AsyncConnection) -> dict[int, int]:
    m = managers.c
    return {int(a): int(b) for a, b in await conn.execute(select(m.id, m.telegram_id))}


async def opt_out(conn: AsyncConnection, client_id: int, event: dict[str, Any]) -> bool:
    """Opt the client out and log the event once (its channel and external id)."""
    i = interactions.c
    seen = (
        await conn.execute(
            select(i.id).where(i.channel == event["channel"], i.external_id == event["external_id"])
        )
    ).first()
    await conn.execute(
        update(clients)
        .where(clients.c.id == client_id)
        .values(opted_out=True, updated_at=event["at"])
    )
    if seen is not None:
        return False
    await conn.execute(insert(interactions), event)
    return True


# -- call lists ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallRow:
    """A call of a call list: the client, who calls, and how it went."""

    target_id: int
    client_id: int
    client: str | None
    phone: str | None
    variant: str
    manager: str | None
    status: str
    reason: str | None
    outcome: str | None
    outcome_at: datetime | None


async def call_list(
    conn: AsyncConnection, campaign_id: int, *, offset: int = 0, limit: int = 100
) -> list[CallRow]:
    """A page of a campaign's targets, in the order they were targeted."""
    t, c, m, i = campaign_targets.c, clients.c, managers.c, identities.c
    phone = (
        select(func.min(i.value))
        .where(i.client_id == t.client_id, i.kind == "phone")
        .scalar_subquery()
    )
    rows = await conn.execute(
        select(
            t.id.label("target_id"),
            t.client_id,
            c.name.label("client"),
            phone.label("phone"),
            t.variant,
            m.name.label("manager"),
            t.status,
            t.reason,
            t.outcome,
            t.outcome_at,
        )
        .select_from(campaign_targets)
        .join(clients, c.id == t.client_id)
        .outerjoin(managers, m.id == t.manager_id)
        .where(t.campaign_id == campaign_id)
        .order_by(t.id)
        .offset(offset)
        .limit(limit)
    )
    return [CallRow(**row._mapping) for row in rows]


async def outcomes_by_variant(
    conn: AsyncConnection, campaign_id: int
) -> list[tuple[str, str, int]]:
    """(variant, outcome or "open", count) of a call list's calls not skipped."""
    t = campaign_targets.c
    outcome = func.coalesce(t.outcome, "open")
    rows = await conn.execute(
        select(t.variant, outcome, func.count())
        .where(t.campaign_id == campaign_id, t.status != "skipped")
        .group_by(t.variant, outcome)
        .order_by(t.variant, outcome)
    )
    return [(str(v), str(o), int(n)) for v, o, n in rows]
