"""Due reminders, claimed once: the claim and what firing causes share one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import managers, reminders


@dataclass(frozen=True, slots=True)
class DueReminder:
    id: int
    client_id: int | None
    conversation_id: int | None
    manager_id: int | None
    text: str
    telegram_id: int | None
    language: str | None


async def claim_due(conn: AsyncConnection, now: datetime, limit: int = 100) -> list[DueReminder]:
    r, m = reminders.c, managers.c
    due = (
        select(r.id)
        .where(r.status == "pending", r.due_at <= now)
        .order_by(r.due_at, r.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    claimed = (
        await conn.execute(
            update(reminders)
            .where(r.id.in_(due))
            .values(status="fired", fired_at=now)
            .returning(r.id, r.client_id, r.conversation_id, r.manager_id, r.text)
        )
    ).all()
    if not claimed:
        return []
    ids = {row.manager_id for row in claimed if row.manager_id is not None}
    people = {
        row.id: (row.telegram_id, (row.attrs or {}).get("language"))
        for row in await conn.execute(select(m.id, m.telegram_id, m.attrs).where(m.id.in_(ids)))
    }
    return [
        DueReminder(
            row.id,
            row.client_id,
            row.conversation_id,
            row.manager_id,
            row.text,
            *people.get(row.manager_id, (None, None)),
        )
        for row in sorted(claimed, key=lambda row: row.id)
    ]
