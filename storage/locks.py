"""Session-level PostgreSQL advisory locks on a dedicated connection.

``pg_try_advisory_lock`` is held by the database session that took it: as long
as that connection lives, no other session gets the same key; when the holder's
process dies or its connection drops, PostgreSQL releases the lock by itself.
A lock is therefore kept on its own connection, never returned to the pool
(a pooled connection would carry the lock to whoever borrows it next): it is
invalidated, i.e. closed, when released.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.db import Database

_CHECK_TIMEOUT_S = 5.0


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for a lock name (what ``pg_try_advisory_lock`` takes)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class AdvisoryLock:
    """A held lock; ``alive()`` tells whether its connection (and so the lock) still stands."""

    def __init__(self, conn: AsyncConnection, key: int) -> None:
        self._conn: AsyncConnection | None = conn
        self.key = key

    async def alive(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT_S):
                await conn.execute(text("SELECT 1"))
        except Exception:
            await self.release()
            return False
        return True

    async def release(self) -> None:
        """Let the lock go: the session ends, and the lock with it."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        # A broken connection fails here too: the server has ended the session already.
        with contextlib.suppress(Exception):
            await conn.invalidate()
        with contextlib.suppress(Exception):
            await conn.close()


async def try_lock(db: Database, name: str) -> AdvisoryLock | None:
    """Take the advisory lock ``name`` on a new connection; None when another session holds it.

    Raises what the driver raises when the database cannot be reached.
    """
    key = lock_key(name)
    conn = await db.engine.connect()
    try:
        # autocommit: the lock is the session's, not a transaction's
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        got = (
            await conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
        ).scalar_one()
    except BaseException:
        await AdvisoryLock(conn, key).release()
        raise
    if not got:
        await conn.close()
        return None
    return AdvisoryLock(conn, key)
