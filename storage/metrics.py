"""What the hub's ``/metrics`` reads from the database: one snapshot per scrape."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import deadlines, outbox, reminders

BREACHED_STEP = 2  # deadlines.step: 2 missed (supervisors told), 3 reassigned


@dataclass(frozen=True, slots=True)
class Gauges:
    pending: int  # outbox rows not yet delivered (pending or being sent)
    oldest_pending: datetime | None
    breached: int  # open deadlines that were missed
    reminders_pending: int


async def gauges(conn: AsyncConnection) -> Gauges:
    o, d, r = outbox.c, deadlines.c, reminders.c
    pending, oldest = (
        await conn.execute(
            select(func.count(), func.min(o.created_at)).where(o.status.in_(("pending", "sending")))
        )
    ).one()
    breached = (
        await conn.execute(select(func.count()).where(d.status == "open", d.step >= BREACHED_STEP))
    ).scalar_one()
    waiting = (await conn.execute(select(func.count()).where(r.status == "pending"))).scalar_one()
    return Gauges(int(pending), oldest, int(breached), int(waiting))
