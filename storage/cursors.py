"""Mailbox cursors: (UIDVALIDITY, last UID) per mailbox key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import mailbox_cursors as cursors


async def load(conn: AsyncConnection, key: str) -> tuple[int, int] | None:
    row = (
        await conn.execute(select(cursors.c.uidvalidity, cursors.c.uid).where(cursors.c.key == key))
    ).one_or_none()
    return (int(row[0]), int(row[1])) if row is not None else None


async def save(conn: AsyncConnection, key: str, uidvalidity: int, uid: int, now: datetime) -> None:
    changed = await conn.execute(
        update(cursors)
        .where(cursors.c.key == key)
        .values(uidvalidity=uidvalidity, uid=uid, updated_at=now)
    )
    if changed.rowcount == 0:
        await conn.execute(
            cursors.insert().values(key=key, uidvalidity=uidvalidity, uid=uid, updated_at=now)
        )
