"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

``HUB_TEST_BACKENDS`` (default ``sqlite,postgresql``) narrows the backends while
developing; the test command runs both.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from storage import Database
from storage.migrate import upgrade
from tests import pg

BACKENDS = [b for b in os.environ.get("HUB_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.PgServer]:
    server = pg.start()

    async def prepare() -> None:
        conn = await asyncpg.connect(server.dsn("postgres"))
        await conn.execute("CREATE DATABASE hub_template")
        await conn.close()
        db = Database(server.url("hub_template"))
        await upgrade(db)
        await db.dispose()

    try:
        asyncio.run(prepare())
        yield server
    finally:
        server.stop()


async def _pg_database(server: pg.PgServer) -> str:
    name = f"hub_test_{os.getpid()}_{next(_counter)}"
    conn = await asyncpg.connect(server.dsn("postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE hub_template')
    finally:
        await conn.close()
    return server.url(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pg_for_backend(backend: str, request: pytest.FixtureRequest) -> pg.PgServer | None:
    """The session's PostgreSQL server when the backend under test is PostgreSQL."""
    return request.getfixturevalue("pg_server") if backend == "postgresql" else None


@pytest.fixture
async def db_url(backend: str, tmp_path: Path, pg_for_backend: pg.PgServer | None) -> str:
    """A URL of an empty, migrated database of the backend under test."""
    if pg_for_backend is not None:
        return await _pg_database(pg_for_backend)
    url = f"sqlite+aiosqlite:///{tmp_path}/hub.db"
    db = Database(url)
    await upgrade(db)
    await db.dispose()
    return url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    try:
        yield database
    finally:
        await database.dispose()
