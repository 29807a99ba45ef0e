"""IMAP cursors kept in the database, so a restart reads on exactly where the
last commit left off (the ``CursorStore`` the email channel's watchers use)."""

from __future__ import annotations

from hub.kernel.clock import Clock
from hub.kernel.ports import MailboxHold
from storage import Database, locks
from storage import cursors as q


class DbCursorStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def load(self, key: str) -> tuple[int, int] | None:
        async with self.db.read() as conn:
            return await q.load(conn, key)

    async def save(self, key: str, uidvalidity: int, uid: int) -> None:
        async with self.db.write() as conn:
            await q.save(conn, key, uidvalidity, uid, self.clock.now())


class DbMailboxLocks:
    """One watcher per mailbox across instances: a PostgreSQL advisory lock per
    cursor key (``MailboxLocks`` of the email channel). On SQLite there is one
    instance, so every lock is granted at once."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def acquire(self, key: str) -> MailboxHold | None:
        if self.db.is_sqlite:
            return _Unshared()
        return await locks.try_lock(self.db, f"imap:{key}")


class _Unshared:
    async def alive(self) -> bool:
        return True

    async def release(self) -> None:
        return None
