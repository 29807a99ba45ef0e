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

from sqlalchemy import (
    ColumnClause,
    ColumnElement,
    Integer,
    Select,
    String,
    bindparam,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import interactions

_POSITION = "interactions"
# Written into the statement, not bound: the GIN index is on to_tsvector('simple', text),
# and a generic plan of a prepared statement matches an index expression only so.
_SIMPLE: ColumnClause[Any] = literal_column("'simple'::regconfig")
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


def matching(dialect: str) -> ColumnElement[bool]:
    """A condition on ``interactions``: one of the ``NEWEST`` latest interactions whose
    text has every word of a query (binds :func:`matching_values`).

    Newest first, and no further: a word said ten thousand times would otherwise
    read every message that holds it to find a page of clients. FTS5 walks its
    index by descending rowid and stops at the limit, without sorting; PostgreSQL's
    GIN index gives every match, sorted for the newest (a top-N sort)."""
    i = interactions.c
    said_words = bindparam("log_words", type_=String)
    newest_first = bindparam("log_newest", type_=Integer)
    if dialect == "sqlite":
        rowid: ColumnClause[Any] = literal_column("rowid")
        ids: Select[Any] = (
            select(rowid)
            .select_from(text("interactions_fts"))
            .where(literal_column("interactions_fts").op("MATCH")(said_words))
            .order_by(rowid.desc())
            .limit(newest_first)
        )
        return i.id.in_(ids)
    said = interactions.alias("said")
    # Every match through the GIN index, then the newest: OFFSET 0 keeps PostgreSQL
    # from walking the primary key backwards with the limit in view, computing
    # to_tsvector row by row (800 ms for a word in 1 message of 100, at a million).
    hits = (
        select(said.c.id)
        .where(
            said.c.direction != "event",  # what was said and written, not the hub's own notes
            func.to_tsvector(_SIMPLE, said.c.text).op("@@")(
                func.plainto_tsquery(_SIMPLE, said_words)
            ),
        )
        .offset(0)
        .subquery("hits")
    )
    newest = select(hits.c.id).order_by(hits.c.id.desc()).limit(newest_first)
    return i.id.in_(newest)


def matching_values(dialect: str, query: str) -> dict[str, Any]:
    """What :func:`matching` binds for ``query`` (nothing when it has no words)."""
    found = words(query)
    if not found:
        return {}
    if dialect == "sqlite":
        said = " ".join('"' + w.replace('"', '""') + '"' for w in found)
    else:
        said = " ".join(found)
    return {"log_words": said, "log_newest": NEWEST}
