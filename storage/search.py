"""Full-text search over the interaction log.

What clients, managers and notes said (events, the hub's own notes, are left
out). SQLite: an FTS5 index (``interactions_fts``) filled in batches behind the log by
:func:`index_new`, so that ingest never pays for it (a message is searchable a
few seconds after it is logged). PostgreSQL: a GIN index over
``to_tsvector('simple', text)`` that the database keeps itself.
"""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy import (
    ColumnClause,
    ColumnElement,
    Integer,
    Select,
    String,
    any_,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY  # also registers to_tsvector's types
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import clients, interactions

_POSITION = "interactions"
# Written into the statement, not bound: the GIN index is on to_tsvector('simple', text),
# and a generic plan of a prepared statement matches an index expression only so.
_SIMPLE: ColumnClause[Any] = literal_column("'simple'::regconfig")
NEWEST = 1000  # the latest messages with a word that a client search looks at
# PostgreSQL: how many messages with a word :func:`newest_said` reads in stretches.
COMMON = 10 * NEWEST
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
    """A condition on ``interactions`` (SQLite) or on ``clients`` (PostgreSQL): one of
    the ``NEWEST`` latest interactions whose text has every word of a query, or its
    client (binds :func:`matching_values`, and on PostgreSQL :func:`newest_said`'s
    clients as ``log_clients``).

    Newest first, and no further: a word said ten thousand times would otherwise
    read every message that holds it to find a page of clients. FTS5 walks its
    index by descending rowid and stops at the limit, without sorting. PostgreSQL's
    GIN index gives every match unordered, so :func:`newest_said` asks it for the
    newest stretch of the log first and for older ones only while too few are found."""
    if dialect == "sqlite":
        rowid: ColumnClause[Any] = literal_column("rowid")
        ids: Select[Any] = (
            select(rowid)
            .select_from(text("interactions_fts"))
            .where(
                literal_column("interactions_fts").op("MATCH")(bindparam("log_words", type_=String))
            )
            .order_by(rowid.desc())
            .limit(bindparam("log_newest", type_=Integer))
        )
        return interactions.c.id.in_(ids)
    return clients.c.id == any_(cast(bindparam("log_clients"), ARRAY(Integer)))


def newest_said(conn: Connection, said: str) -> list[int]:
    """PostgreSQL: the clients of the ``NEWEST`` latest messages holding every word of
    ``said`` (as :func:`matching_values` binds it), newest first.

    The GIN index gives every match, unordered. A word that the index's statistics
    count among the log's most common (``COMMON`` messages or more) is looked for in
    stretches of the log from the newest, sized by its share to hold about twice
    ``NEWEST`` of it (then ten times wider while too few are found): the GIN index and
    the primary key's range intersected, a few thousand rows read rather than every
    match. Any other word reads its every match, which are few."""
    # Two settings for these statements, made by the first of them (each statement is
    # a round trip) for the session, as a read may run without a transaction
    # (Database.run_read), and given back after: the search's own statement keeps its
    # generic plan, which needs no planning, and the connection goes back to the pool
    # as it came. A plan for the values at hand every time: the generic plan
    # PostgreSQL settles on after a few runs of a prepared statement would intersect
    # with the primary key's range even a word of fifty matches, reading millions of
    # keys. Room for the bitmap of a common word's every match (100,000 at 10,000,000
    # messages): in the default 4 MB it turns lossy, and the rows of each lossy page
    # are tested again by computing to_tsvector (40 ms more).
    mode, memory, _, _, lexemes, high = conn.execute(_SHARE, {"log_words": said}).one()
    try:
        shares = _common_shares(conn)
        share = min((shares.get(lexeme, 0.0) for lexeme in lexemes or ()), default=0.0)
        found: list[int] = []
        if not share or share * high < COMMON:
            found += conn.execute(_EVERY, {"log_words": said, "limit": NEWEST}).scalars()
        else:
            width = int(2 * NEWEST / share)
            while high > 0 and len(found) < NEWEST:
                low = max(high - width, 0)
                values = {"log_words": said, "low": low, "high": high, "limit": NEWEST - len(found)}
                found += conn.execute(_STRETCH, values).scalars()
                high, width = low, width * 10
    finally:
        conn.execute(_RESTORE, {"mode": mode, "memory": memory})
    return list(dict.fromkeys(found))


def _said(*stretch: ColumnElement[bool]) -> Select[Any]:
    """The clients of the newest ``limit`` messages with the words (in ``stretch``)."""
    i = interactions.c
    # OFFSET 0 keeps PostgreSQL from walking the primary key backwards with the limit in
    # view, computing to_tsvector row by row: inside the fence it reads the GIN index's
    # matches (intersected with the stretch's range of ids when there is one).
    hits = (
        select(i.id, i.client_id)
        .where(
            *stretch,
            i.direction != "event",  # what was said and written, not the hub's own notes
            func.to_tsvector(_SIMPLE, i.text).op("@@")(
                func.plainto_tsquery(_SIMPLE, bindparam("log_words", type_=String))
            ),
        )
        .offset(0)
        .subquery("hits")
    )
    return (
        select(hits.c.client_id).order_by(hits.c.id.desc()).limit(bindparam("limit", type_=Integer))
    )


_EVERY = _said()
_STRETCH = _said(
    interactions.c.id > bindparam("low", type_=Integer),
    interactions.c.id <= bindparam("high", type_=Integer),
)
# The query's words as the index holds them, and the newest id. Two settings are made
# too, read first: a subquery kept apart (OFFSET 0) is computed first.
_SHARE = text(
    "SELECT was.mode, was.memory,"
    " set_config('plan_cache_mode', 'force_custom_plan', false),"
    " set_config('work_mem', '32MB', false),"
    " tsvector_to_array(to_tsvector('simple'::regconfig, :log_words)),"
    " (SELECT coalesce(max(id), 0) FROM interactions)"
    " FROM (SELECT current_setting('plan_cache_mode') AS mode,"
    " current_setting('work_mem') AS memory OFFSET 0) AS was"
)
# The index's most common words and their shares, as the last ANALYZE kept them. The
# frequencies array carries three more numbers than the words (minimum, maximum,
# nulls): unnest pairs them with no word.
_COMMON_WORDS = text(
    "SELECT e, f FROM pg_stats s, unnest(s.most_common_elems::text::text[],"
    " s.most_common_elem_freqs) AS m(e, f) WHERE s.schemaname = current_schema()"
    " AND s.tablename = 'ix_interactions_fts' AND e IS NOT NULL"
)
KEEP_COMMON_S = 300.0  # how long they are kept: they change only when ANALYZE runs
_common: dict[str, tuple[float, dict[str, float]]] = {}  # database → (read at, shares)


def _common_shares(conn: Connection) -> dict[str, float]:
    """The log's most common words and their shares (read again every
    ``KEEP_COMMON_S``: unnesting the statistics took 1.5 ms of each search)."""
    database = str(conn.engine.url)
    kept = _common.get(database)
    now = time.monotonic()
    if kept is None or now - kept[0] > KEEP_COMMON_S:
        kept = (now, {word: share for word, share in conn.execute(_COMMON_WORDS)})
        _common[database] = kept
    return kept[1]


_RESTORE = text(
    "SELECT set_config('plan_cache_mode', :mode, false), set_config('work_mem', :memory, false)"
)


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
