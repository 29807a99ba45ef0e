"""The schema on both backends: migrations, WAL, append-only interactions."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import delete, insert, text, update
from sqlalchemy.exc import DBAPIError

from hub.kernel.types import ConversationStatus
from storage import Database
from storage import managers as managers_q
from storage.ingest import manager_loads
from storage.migrate import current, upgrade
from storage.models import Client, Interaction
from storage.reports import volume_query
from storage.tables import UNRESOLVED
from tests import pg


async def test_migrations_are_applied_once(db: Database) -> None:
    assert await current(db) == "0021"
    assert await upgrade(db) == []


async def test_sqlite_runs_in_wal_mode(db: Database, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite only")
    async with db.read() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
        assert (await conn.execute(text("PRAGMA synchronous"))).scalar_one() == 2  # FULL


async def test_interactions_are_append_only(db: Database) -> None:
    now = datetime.now(UTC)
    async with db.write() as conn:
        client_id = (
            await conn.execute(
                insert(Client).returning(Client.id),
                {
                    "name": "A",
                    "stage": "prospect",
                    "opted_out": False,
                    "created_at": now,
                    "updated_at": now,
                },
            )
        ).scalar_one()
        iid = (
            await conn.execute(
                insert(Interaction).returning(Interaction.id),
                {
                    "client_id": client_id,
                    "direction": "in",
                    "text": "hello",
                    "at": now,
                },
            )
        ).scalar_one()
    async with db.write() as conn:  # delivery state may change
        await conn.execute(update(Interaction).where(Interaction.id == iid).values(delivery="sent"))
    with pytest.raises(DBAPIError, match="append-only"):
        async with db.write() as conn:
            await conn.execute(update(Interaction).where(Interaction.id == iid).values(text="x"))
    with pytest.raises(DBAPIError, match="append-only"):
        async with db.write() as conn:
            await conn.execute(delete(Interaction).where(Interaction.id == iid))
    async with db.read() as conn:
        row = (await conn.execute(text("SELECT text, delivery FROM interactions"))).one()
    assert tuple(row) == ("hello", "sent")


async def test_migrations_match_the_models(db: Database) -> None:
    """A model change without its migration would show here."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from storage.models import Base

    def modelled(obj: Any, name: str | None, type_: str, reflected: bool, other: Any) -> bool:
        # The search indexes live outside the models: FTS5 tables and their shadow
        # tables on SQLite, GIN (and pattern) indexes on PostgreSQL.
        prefixes = ("interactions_fts", "ix_interactions_fts", "search_terms", "ix_search_terms")
        return not (name or "").startswith(prefixes)

    async with db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"include_object": modelled}),
                Base.metadata,
            )
        )
    assert diff == []


def test_unresolved_is_every_status_but_resolved() -> None:
    assert set(UNRESOLVED) == {s.value for s in ConversationStatus} - {"resolved"}


async def _plan(db: Database, query: Any) -> str:
    """SQLite's query plan of ``query``, its lines joined."""
    sql = str(query.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
    async with db.read() as conn:
        rows = await conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
        return " ".join(str(row[-1]) for row in rows)


async def test_manager_loads_seek_the_index_instead_of_scanning_history(
    db: Database, backend: str
) -> None:
    """Every ingest batch counts each manager's open conversations: with a long
    history of resolved ones, a scan of them all would cost every batch more."""
    if backend != "sqlite":
        pytest.skip("SQLite's query plan")
    plan = await _plan(db, manager_loads())
    assert "SEARCH conversations USING COVERING INDEX ix_conversations_status_assignee" in plan


async def test_a_report_period_reads_its_part_of_the_log_from_the_time_index(
    db: Database, backend: str
) -> None:
    """A week's volume must not read a year of log: the index on ``at`` (with
    direction and channel) answers it alone."""
    if backend != "sqlite":
        pytest.skip("SQLite's query plan")
    start = datetime(2026, 1, 5, tzinfo=UTC)
    plan = await _plan(db, volume_query(db.dialect, start, start + timedelta(days=7)))
    assert "SEARCH interactions USING COVERING INDEX ix_interactions_at (at>? AND at<?)" in plan


async def test_instances_starting_together_migrate_and_sync_managers_in_turn(
    pg_for_backend: pg.PgServer | None,
) -> None:
    """Two instances started at once on an empty PostgreSQL database: neither may
    fail on the other's tables or manager rows."""
    if pg_for_backend is None:
        pytest.skip("PostgreSQL: SQLite's writers take turns by themselves")
    name = f"hub_empty_{os.getpid()}"
    admin = await asyncpg.connect(pg_for_backend.dsn("postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dbs = [Database(pg_for_backend.url(name)) for _ in range(3)]
    configured = [
        {
            "name": f"Manager {n}",
            "telegram_id": 700 + n,
            "email": None,
            "role": "manager",
            "hours": None,
            "timezone": None,
            "capacity": 20,
            "attrs": {},
        }
        for n in range(5)
    ]

    async def sync(db: Database) -> None:
        async with db.write() as conn:
            await managers_q.sync(conn, configured, datetime.now(UTC))

    try:
        await asyncio.gather(*(upgrade(db) for db in dbs))
        await asyncio.gather(*(sync(db) for db in dbs))
        assert await current(dbs[0]) is not None
        async with dbs[0].read() as conn:
            assert len(await managers_q.ids_by_name(conn)) == 5
    finally:
        for db in dbs:
            await db.dispose()
