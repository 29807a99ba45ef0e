"""Alembic migrations, applied programmatically on the hub's own engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from storage.db import Database
from storage.locks import lock_key

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK = lock_key("migrations")


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(db: Database, revision: str = "head") -> list[str]:
    """Apply pending migrations; return the revisions applied."""

    def run(connection: Connection) -> list[str]:
        cfg = alembic_config(connection)
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(cfg, revision)
        script = ScriptDirectory.from_config(cfg)
        after = MigrationContext.configure(connection).get_current_revision()
        if before == after:
            return []
        return [rev.revision for rev in reversed(list(script.iterate_revisions(after, before)))]

    async with db.engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:  # instances starting together migrate one at a time
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK})
            await conn.commit()
        try:
            applied = await conn.run_sync(run)
            await conn.commit()
        finally:
            if postgres:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK})
                await conn.commit()
    return applied


async def current(db: Database) -> str | None:
    async with db.engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
