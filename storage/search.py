"""Full-text search over the interaction log.

What clients, managers and notes said (events, the hub's own notes, are left
out). SQLite: an FTS5 index (``interactions_fts``) filled in batches behind the log by
:func:`index_new`, so that ingest never pays for it (a message is searchable a
few seconds after it is logged). PostgreSQL: a GIN index over
``to_tsvector('simple', text)`` that the database keeps itself.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnClause, ColumnElement, Select, func, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import interactions

_POSITION = "interactions"
NEWEST = 1000  # the latest messages with a word that a client search looks at
_WORD = re.compile(r"\w+", re.UNICODE)


async def behind(conn: AsyncConnection) -> bool:
    """Whether interactions were logged since the index last caught up (a read, so
    that an idle check does not take SQLite's write lock)."""
    if conn.dialect.name != "sqlite":
        return False
    query = text(
        "SELECT EXISTS (SELECT 1 FROM interactions WHERE id > coalesce("
        "(SELECT last_id FROM search_positions WHERE name = :name), 0))"
    )
    return bool((await conn.execute(query, {"name": _POSITION})).scalar())


async def index_new(conn: AsyncConnection, limit: int = 20_000) -> int:
    """Index up to ``limit`` interactions logged since the last call; how many."""
    if conn.dialect.name != "sqlite":
        return 0
    row = (
        await conn.execute(
            text("SELECT last_id FROM search_positions WHERE name = :name"), {"name": _POSITION}
        )
    ).first()
    last = int(row[0]) if row else 0
    top = (
        await conn.execute(
            text(
                "SELECT max(id) FROM (SELECT id FROM interactions WHERE id > :last "
                "ORDER BY id LIMIT :limit)"
            ),
            {"last": last, "limit": limit},
        )
    ).scalar()
    if top is None:
        return 0
    done = (
        await conn.execute(
            text(
                "INSERT INTO interactions_fts(rowid, text) SELECT id, text FROM interactions "
                "WHERE id > :last AND id <= :top AND text != '' AND direction != 'event'"
            ),
            {"last": last, "top": top},
        )
    ).rowcount
    await conn.execute(
        text(
            "INSERT INTO search_positions(name, last_id) VALUES (:name, :top) "
            "ON CONFLICT(name) DO UPDATE SET last_id = excluded.last_id"
        ),
        {"name": _POSITION, "top": top},
    )
    return int(done or 0)


def words(query: str) -> list[str]:
    return _WORD.findall(query)


def matching(dialect: str, query: str) -> ColumnElement[bool] | None:
    """A condition on ``interactions``: one of the ``NEWEST`` latest interactions whose
    text has every word of ``query`` (None when the query has no words).

    Newest first, and no further: a word said ten thousand times would otherwise
    read every message that holds it to find a page of clients. FTS5 walks its
    index by descending rowid and stops at the limit, without sorting."""
    found = words(query)
    if not found:
        return None
    i = interactions.c
    if dialect == "sqlite":
        phrase = " ".join('"' + w.replace('"', '""') + '"' for w in found)
        rowid: ColumnClause[Any] = literal_column("rowid")
        ids: Select[Any] = (
            select(rowid)
            .select_from(text("interactions_fts"))
            .where(text("interactions_fts MATCH :fts_query").bindparams(fts_query=phrase))
            .order_by(rowid.desc())
            .limit(NEWEST)
        )
        return i.id.in_(ids)
    said = interactions.alias("said")
    newest = (
        select(said.c.id)
        .where(
            said.c.direction != "event",  # what was said and written, not the hub's own notes
            func.to_tsvector("simple", said.c.text).op("@@")(
                func.plainto_tsquery("simple", " ".join(found))
            ),
        )
        .order_by(said.c.id.desc())
        .limit(NEWEST)
    )
    return i.id.in_(newest)
