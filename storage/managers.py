"""Managers as configured: the config is the source of truth, the table follows it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.locks import lock_key
from storage.tables import managers, outbox


async def sync(conn: AsyncConnection, configured: list[dict[str, Any]], now: datetime) -> None:
    """Insert or update each configured manager (by ``telegram_id``); deactivate the rest.

    Ids stay stable, so assignments and ownership survive config edits.
    """
    if conn.dialect.name == "postgresql":
        # Instances starting together: one syncs at a time, each seeing the rows of
        # the one before (SQLite's write transaction is exclusive already).
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key("managers-sync")}
        )
    m = managers.c
    existing = {row.telegram_id: row.id for row in await conn.execute(select(m.id, m.telegram_id))}
    for values in configured:
        manager_id = existing.pop(values["telegram_id"], None)
        if manager_id is None:
            await conn.execute(
                insert(managers).values(**values, active=True, away=False, created_at=now)
            )
        else:
            await conn.execute(
                update(managers).where(m.id == manager_id).values(**values, active=True)
            )
    if existing:
        await conn.execute(
            update(managers).where(m.id.in_(list(existing.values()))).values(active=False)
        )


async def ids_by_name(conn: AsyncConnection) -> dict[str, int]:
    """Name -> id of the active managers (routing rules name them)."""
    m = managers.c
    rows = await conn.execute(select(m.name, m.id).where(m.active.is_(True)).order_by(m.id))
    return {name: manager_id for name, manager_id in rows.all()}


@dataclass(frozen=True, slots=True)
class QueueStats:
    pending: int
    oldest_pending: datetime | None
    failed: int


async def queue_stats(conn: AsyncConnection) -> QueueStats:
    o = outbox.c
    pending, oldest = (
        await conn.execute(
            select(func.count(), func.min(o.created_at)).where(o.status.in_(("pending", "sending")))
        )
    ).one()
    failed = (await conn.execute(select(func.count()).where(o.status == "failed"))).scalar_one()
    return QueueStats(int(pending), oldest, int(failed))


async def clock_of(conn: AsyncConnection, manager_id: int) -> tuple[str | None, str | None]:
    """A manager's own time zone and working hours, as configured (None: the hub's)."""
    m = managers.c
    row = (await conn.execute(select(m.timezone, m.hours).where(m.id == manager_id))).one_or_none()
    return (row.timezone, row.hours) if row else (None, None)
