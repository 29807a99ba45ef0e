"""The mail spool: received mail committed to disk, as it came, before its 250.

An SQLite file of its own (WAL, ``synchronous=FULL``) with one table of raw
messages, kept apart from the hub's database so that committing a message never
waits behind the log's writer. :meth:`MailSpool.submit` queues a message and
returns a future that completes once its row is committed: every message
submitted meanwhile goes in the same transaction (group commit), run by a thread
of the spool's own, so the event loop never waits on the disk. Ids are never
reused (``AUTOINCREMENT``). :meth:`MailSpool.done` lets rows go once the log
holds them (deleted in the next transaction); :meth:`MailSpool.set_aside` keeps
a row that can never be logged, with the reason; :meth:`MailSpool.waiting` reads
what is still to be logged (after a restart, say).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from hub.kernel.errors import StorageUnavailable

T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS spool ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " received_at TEXT NOT NULL,"
    " mail_from TEXT NOT NULL,"
    " rcpt_tos TEXT NOT NULL,"  # one address a line
    " raw BLOB NOT NULL,"
    " error TEXT)"
)
_NEXT_ID = (
    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'spool'), 0),"
    " coalesce((SELECT max(id) FROM spool), 0))"
)


@dataclass(frozen=True, slots=True)
class Spooled:
    id: int
    raw: bytes
    mail_from: str
    rcpt_tos: list[str]
    received_at: datetime


class MailSpool:
    """``on_spooled`` is called on the event loop with each committed batch."""

    def __init__(
        self, path: str | Path, *, on_spooled: Callable[[list[Spooled]], None] | None = None
    ) -> None:
        self.path = Path(path)
        self.on_spooled = on_spooled
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._queue: list[tuple[Spooled, asyncio.Future[int]]] = []
        self._done: list[int] = []
        self._aside: list[tuple[str, int]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def open(self) -> None:
        self._closing = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mail-spool")
        await self._run(self._connect)
        self._task = asyncio.create_task(self._writer(), name="mail-spool")

    async def close(self) -> None:
        """Commit what is queued, then close."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._thread is not None:
            await self._run(self._disconnect)
            self._thread.shutdown(wait=True)
            self._thread = None

    def submit(
        self, raw: bytes, mail_from: str, rcpt_tos: list[str], received_at: datetime
    ) -> asyncio.Future[int]:
        """The message's spool id, once its row is committed; StorageUnavailable
        when the spool could not take it."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if self._closing or self._task is None:
            future.set_exception(StorageUnavailable("the mail spool is closed (stopping)"))
            return future
        self._queue.append((Spooled(0, raw, mail_from, rcpt_tos, received_at), future))
        self._wake.set()
        return future

    def done(self, ids: Iterable[int]) -> None:
        self._done.extend(ids)
        self._wake.set()

    def set_aside(self, spool_id: int, reason: str) -> None:
        self._aside.append((reason[:2000], spool_id))
        self._wake.set()

    async def waiting(self, *, after: int = 0, limit: int = 500) -> list[Spooled]:
        """Rows still to be logged (not set aside), by id from ``after``."""

        def read() -> list[Spooled]:
            assert self._db is not None
            rows = self._db.execute(
                "SELECT id, raw, mail_from, rcpt_tos, received_at FROM spool"
                " WHERE id > ? AND error IS NULL ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
            return [
                Spooled(
                    i, raw, sender, rcpts.split("\n") if rcpts else [], datetime.fromisoformat(at)
                )
                for i, raw, sender, rcpts, at in rows
            ]

        return await self._run(read)

    async def counts(self) -> tuple[int, int]:
        """(messages waiting to be logged, messages set aside)."""

        def count() -> tuple[int, int]:
            assert self._db is not None
            waiting, aside = self._db.execute(
                "SELECT count(*) - count(error), count(error) FROM spool"
            ).fetchone()
            return int(waiting), int(aside)

        return await self._run(count)

    # -- the writer ------------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            if not (self._queue or self._done or self._aside):
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, self._queue = self._queue, []
            done, self._done = self._done, []
            aside, self._aside = self._aside, []
            try:
                first = await self._run(self._commit, [m for m, _ in batch], done, aside)
            except Exception as exc:
                failure = StorageUnavailable(f"the mail spool failed: {type(exc).__name__}")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(failure)
                self._done[:0] = done  # let go next time
                self._aside[:0] = aside
                if not batch:  # nothing to answer: do not spin on a broken disk
                    await asyncio.sleep(1.0)
                continue
            spooled = []
            for n, (message, future) in enumerate(batch):
                spooled.append(dataclasses.replace(message, id=first + n))
                if not future.done():
                    future.set_result(first + n)
            if spooled and self.on_spooled is not None:
                self.on_spooled(spooled)

    def _commit(self, batch: list[Spooled], done: list[int], aside: list[tuple[str, int]]) -> int:
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            if done:
                db.executemany("DELETE FROM spool WHERE id = ?", [(i,) for i in done])
            if aside:
                db.executemany("UPDATE spool SET error = ? WHERE id = ?", aside)
            first = int(db.execute(_NEXT_ID).fetchone()[0]) + 1
            if batch:
                db.executemany(
                    "INSERT INTO spool (id, received_at, mail_from, rcpt_tos, raw)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [
                        (
                            first + n,
                            m.received_at.isoformat(),
                            m.mail_from,
                            "\n".join(m.rcpt_tos),
                            m.raw,
                        )
                        for n, m in enumerate(batch)
                    ],
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return first

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=10000")
        db.execute(_SCHEMA)
        self._db = db

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)


def erase(path: str | Path, addresses: Iterable[str]) -> int:
    """Delete the spooled mail from, or naming, any of ``addresses`` (a person who
    asked to be forgotten), whether still waiting or set aside; how many.

    Run from another process than the hub's (``hub client forget``): a plain
    connection waits for the spool's writer as SQLite's lock says. The bytes are
    zeroed on disk (``secure_delete``) and the WAL is checkpointed when no reader
    holds it. A spool file that is not there is left alone.
    """
    wanted = [a.strip().lower().encode() for a in addresses if a.strip()]
    file = Path(path)
    if not wanted or not file.exists():
        return 0
    db = sqlite3.connect(file, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA secure_delete=ON")
        db.execute("BEGIN IMMEDIATE")
        try:
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'spool'").fetchone():
                db.execute("ROLLBACK")
                return 0
            ids = [
                (spool_id,)
                for spool_id, sender, raw in db.execute("SELECT id, mail_from, raw FROM spool")
                if any(
                    a == str(sender).strip().lower().encode() or a in bytes(raw).lower()
                    for a in wanted
                )
            ]
            db.executemany("DELETE FROM spool WHERE id = ?", ids)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(ids)
    finally:
        db.close()
