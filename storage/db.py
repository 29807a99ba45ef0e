"""The database handle: engine, connection setup per backend, units of work.

SQLite runs in WAL mode with ``synchronous=FULL`` (a commit is on disk before
it returns). pysqlite's own transaction handling is switched off so that the
hub emits ``BEGIN`` itself: ``BEGIN IMMEDIATE`` takes the write lock at the
start of a unit of work that must be exclusive (SQLite drops ``FOR UPDATE``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

T = TypeVar("T")

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
    "PRAGMA cache_size=-65536",
    "PRAGMA temp_store=MEMORY",
)


class Database:
    """One engine for the hub; ``write()`` and ``read()`` open units of work."""

    def __init__(self, url: str, *, echo: bool = False, busy_timeout_ms: int = 10_000) -> None:
        """``busy_timeout_ms``: how long SQLite waits for another process's lock
        before the write fails (and the channel answers "try again later")."""
        self.url = make_url(url)
        self._connect = _sqlite_connector(busy_timeout_ms)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            database = self.url.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["pool_size"] = 8
            kwargs["max_overflow"] = 8
        else:
            kwargs["pool_size"] = 10
            kwargs["max_overflow"] = 10
            kwargs["pool_pre_ping"] = True
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", self._connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self._writer_engine: Engine | None = None
        self._writer_conn: Connection | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._reader_engine: Engine | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._turn = asyncio.Lock()  # SQLite: one writer of this process at a time

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed on normal exit, rolled back on error.

        On SQLite it starts with ``BEGIN IMMEDIATE``: the write lock is held from
        the first statement, so reads inside see what the write will build on.
        The process's writers take turns on an asyncio lock first: SQLite has one
        writer, and connections that collide on its lock wait in its busy handler,
        which sleeps up to 100 ms at a time (another process still can collide,
        and waits up to ``busy_timeout_ms``).
        """
        if not self.is_sqlite:
            async with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        async with self._turn, self.engine.connect() as conn:
            conn = await conn.execution_options(sqlite_immediate=True)
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only unit of work (rolled back at the end)."""
        async with self.engine.connect() as conn, conn.begin() as tx:
            yield conn
            await tx.rollback()

    async def run_read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(conn)`` in one read-only unit of work (rolled back); return its result.

        For reads of several statements (a client's card, its timeline). On SQLite
        the work runs in a reader thread over a plain pysqlite connection: one
        thread hop for the whole read, where aiosqlite takes several per statement.
        On PostgreSQL it runs through the async driver (``run_sync``) without a
        transaction: each statement sees what was committed when it ran, and the
        read saves BEGIN and ROLLBACK, two of a card's four round trips (a fifth
        of its time). SQLite in memory, which another engine cannot see, reads
        through the async driver in a transaction.
        """
        if not self.is_sqlite:
            async with self.engine.connect() as conn:
                untransacted = await conn.execution_options(isolation_level="AUTOCOMMIT")
                return await untransacted.run_sync(work)
        if in_memory(str(self.url)):
            async with self.read() as conn:
                return await conn.run_sync(work)
        if self._readers is None:
            self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sqlite-reader")
            self._reader_engine = create_engine(
                self.url.set(drivername="sqlite"), pool_size=4, max_overflow=4
            )
            event.listen(self._reader_engine, "connect", self._connect)
            event.listen(self._reader_engine, "begin", _sqlite_begin)
        engine = self._reader_engine
        assert engine is not None

        def transaction() -> T:
            with engine.connect() as conn, conn.begin() as tx:
                try:
                    return work(conn)
                finally:
                    tx.rollback()

        return await asyncio.get_running_loop().run_in_executor(self._readers, transaction)

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(conn)`` in one write transaction and commit; return its result.

        For the hot paths that do many statements per transaction. On SQLite the
        work runs in one dedicated writer thread over a plain pysqlite
        connection (``BEGIN IMMEDIATE``): one thread hop per transaction instead
        of one per statement, and SQLite's own work overlaps the event loop. On
        PostgreSQL it runs through the async driver (``run_sync``).
        """
        if not self.is_sqlite:
            async with self.engine.connect() as conn, conn.begin():
                return await conn.run_sync(work)
        async with self._turn:
            return await self._run_in_writer(work)

    async def _run_in_writer(self, work: Callable[[Connection], T]) -> T:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
            self._writer_engine = create_engine(self.url.set(drivername="sqlite"), pool_size=1)
            event.listen(self._writer_engine, "connect", self._connect)
            event.listen(self._writer_engine, "begin", _sqlite_begin)
        engine = self._writer_engine
        assert engine is not None

        def transaction() -> T:
            # One connection kept by the writer thread: no pool round trip per batch.
            if self._writer_conn is None or self._writer_conn.closed:
                self._writer_conn = engine.connect().execution_options(sqlite_immediate=True)
            conn = self._writer_conn
            try:
                with conn.begin():
                    return work(conn)
            except BaseException:
                if conn.invalidated:
                    conn.close()
                raise

        return await asyncio.get_running_loop().run_in_executor(self._writer, transaction)

    async def dispose(self) -> None:
        if self._readers is not None:
            readers, reader_engine = self._readers, self._reader_engine
            self._readers = self._reader_engine = None
            if reader_engine is not None:
                await asyncio.get_running_loop().run_in_executor(readers, reader_engine.dispose)
            readers.shutdown(wait=True)
        if self._writer is not None:
            writer, engine = self._writer, self._writer_engine
            self._writer = self._writer_engine = None
            conn, self._writer_conn = self._writer_conn, None

            def close() -> None:
                if conn is not None:
                    conn.close()
                if engine is not None:
                    engine.dispose()

            await asyncio.get_running_loop().run_in_executor(writer, close)
            writer.shutdown(wait=True)
        await self.engine.dispose()


def in_memory(url: str) -> bool:
    """An SQLite database only this process can see (in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database or ""
    return (
        database in ("", ":memory:")
        or "mode=memory" in database
        or (parsed.query.get("mode") == "memory")
    )


def _sqlite_connector(busy_timeout_ms: int) -> Callable[[Any, ConnectionPoolEntry], None]:
    def connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    return connect


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
