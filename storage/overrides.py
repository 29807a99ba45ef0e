"""Settings set in the console: overrides of the config's reloadable keys, and the
one version number every instance polls to follow a change at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.models import SettingOverride, SettingsVersion

overrides = cast(Table, SettingOverride.__table__)
versions = cast(Table, SettingsVersion.__table__)


@dataclass(frozen=True, slots=True)
class Override:
    """A key set over the file: its value as the file would spell it, who set it when."""

    key: str
    value: object
    changed_at: datetime
    changed_by: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every override at one version."""

    version: int
    items: dict[str, Override]

    def values(self) -> dict[str, object]:
        return {key: o.value for key, o in self.items.items()}


async def version(conn: AsyncConnection) -> int:
    """The settings' version: one row read, what every instance polls."""
    found = await conn.execute(select(versions.c.version).where(versions.c.id == 1))
    return int(found.scalar_one_or_none() or 0)


async def snapshot(conn: AsyncConnection) -> Snapshot:
    """The version and every override (in one unit of work: they agree)."""
    at = await version(conn)
    o = overrides.c
    rows = await conn.execute(select(o.key, o.value, o.changed_at, o.changed_by).order_by(o.key))
    return Snapshot(
        at, {r.key: Override(r.key, r.value["value"], r.changed_at, r.changed_by) for r in rows}
    )


async def begin_change(conn: AsyncConnection) -> Snapshot:
    """Bump the version first, so that the row's lock (PostgreSQL; SQLite's write
    lock) keeps another change out until this unit of work ends; then every override
    as it stands, to check the change against."""
    await conn.execute(
        update(versions).where(versions.c.id == 1).values(version=versions.c.version + 1)
    )
    return await snapshot(conn)


async def put(conn: AsyncConnection, key: str, value: object, at: datetime, by: str) -> None:
    """Set ``key`` (a change begun by :func:`begin_change`)."""
    await conn.execute(delete(overrides).where(overrides.c.key == key))
    await conn.execute(
        insert(overrides).values(key=key, value={"value": value}, changed_at=at, changed_by=by)
    )


async def remove(conn: AsyncConnection, key: str) -> bool:
    """Unset ``key`` (a change begun by :func:`begin_change`); whether it was set."""
    done = await conn.execute(delete(overrides).where(overrides.c.key == key))
    return bool(done.rowcount)
