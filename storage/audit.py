"""Reading the audit log: entries by who, what, which client and when, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import audit


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Every field that is set narrows the entries; ``since`` is inclusive, ``until`` not."""

    actor: str | None = None
    action: str | None = None
    client_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    object_type: str | None
    object_id: int | None
    details: dict[str, Any] | None


async def entries(
    conn: AsyncConnection, where: AuditFilter, *, limit: int, offset: int = 0
) -> list[AuditEntry]:
    a = audit.c
    query = select(a.id, a.at, a.actor, a.action, a.object_type, a.object_id, a.details).order_by(
        a.at.desc(), a.id.desc()
    )
    if where.actor is not None:
        query = query.where(a.actor == where.actor)
    if where.action is not None:
        query = query.where(a.action == where.action)
    if where.client_id is not None:
        query = query.where(a.object_type == "client", a.object_id == where.client_id)
    if where.since is not None:
        query = query.where(a.at >= where.since)
    if where.until is not None:
        query = query.where(a.at < where.until)
    rows = await conn.execute(query.limit(limit).offset(offset))
    return [AuditEntry(*row) for row in rows]
