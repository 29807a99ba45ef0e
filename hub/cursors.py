"""IMAP cursors kept in the database, so a restart reads on exactly where the
last commit left off (the ``CursorStore`` the email channel's watchers use)."""

from __future__ import annotations

from hub.clock import Clock
from storage import Database
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
