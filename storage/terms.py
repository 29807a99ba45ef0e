"""Substring search on clients' email addresses, phones, names and Telegram usernames
through trigram indexes, never a scan of every client.

SQLite: three FTS5 tables with the trigram tokenizer (Unicode case folding: "анна"
finds "Анна"), filled in batches behind ingest by :func:`index_new` like the log's
full-text index, so that ingest never pays for them. Each row points at the row it
was read from: ``search_terms_identities`` at an identity (email, phone, username
hint), ``search_terms_names`` at a client, ``search_terms_usernames`` at the first
inbound Telegram message that carried a client's username. A hit is joined back to
that row and takes its client from there, so merges and unmerges (which move
identities and messages) need nothing from the index; the row's own condition is
checked again, so that a term left stale never finds the wrong client. What the
round has not reached yet (ids past its positions, a few seconds of ingest) is
matched directly, so results never lag ingest. The paths that change a client's name
(merge, unmerge, import) re-index it in their transaction (:func:`renamed`), and
forgetting deletes every term of the person (:func:`forget`).

PostgreSQL: ``pg_trgm`` GIN indexes on ``identities.value``, ``clients.name`` and the
username of inbound Telegram messages, which the database keeps itself.

Trigrams need three characters: a shorter query matches the beginning of names only,
through a btree index, once per spelling of its letters in either case (both
``lower()`` functions fold only ASCII, and names are often Cyrillic).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    column,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import TextClause, UnaryExpression

from storage.tables import clients, identities, interactions, search_positions

SHORTEST = 3  # the fewest characters a trigram index can look up
# The identity kinds matched by a fragment (a Telegram id only as a whole, by ``exact``).
KINDS = ("email", "phone", "tg_username")

_IDENTITIES = table("search_terms_identities", column("rowid", Integer), column("term"))
_NAMES = table("search_terms_names", column("rowid", Integer), column("term"))
_USERNAMES = table("search_terms_usernames", column("rowid", Integer), column("term"))
# PostgreSQL's table of the same role (migration 0019): a plain table, GIN-indexed.
_PG_USERNAMES = table(
    "search_terms_usernames", column("interaction_id", Integer), column("term", String)
)
_POSITIONS = {
    "identities": "terms:identities",
    "names": "terms:names",
    "usernames": "terms:usernames",
    "identity trigrams": "trigrams:identities",
    "username trigrams": "trigrams:usernames",
}
_GLOB_SPECIAL = frozenset("*?[")
_REGEX_SPECIAL = frozenset("\\^$.|?*+()[]{}")


# -- the queries ---------------------------------------------------------------------
#
# Built once per query shape with bound parameters (``storage.read`` caches them); the
# ``*_values`` functions give the values a fragment binds. On PostgreSQL each way gives
# only the first ``first`` clients by id (not merged), so that a common name sends a
# page of clients up to the union rather than every holder (the first ``first`` of the
# union are among the first ``first`` of its members); the trigram index still finds
# and rechecks every holder, as a GIN index has no order to stop early in.


def identity_hits(dialect: str, kind: str) -> list[Select[Any]]:
    """Clients holding an identity of ``kind`` whose value contains a fragment (as
    stored: emails lower-case, phones in E.164, username hints lower-case); binds
    :func:`identity_values` of ``kind``."""
    i = identities.c
    like = bindparam(f"{kind}_like", type_=String)
    of_kind = _unindexed(i.kind, dialect) == kind
    if dialect != "sqlite":
        # The index reads the rarest trigrams' lists; each row is checked for the whole.
        whole = _unindexed(i.value, dialect).like(like, escape="\\")
        return [_bounded(i.client_id, and_(of_kind, *_rare_likes(i.value, kind), whole))]
    holds = and_(of_kind, i.value.like(like, escape="\\"))
    phrase = bindparam(f"{kind}_phrase", type_=String)
    found = select(_IDENTITIES.c.rowid).where(_IDENTITIES.c.term.op("MATCH")(phrase))
    return [
        select(i.client_id.label("id")).where(i.id.in_(found), holds),
        select(i.client_id.label("id")).where(i.id > _position("identities"), holds),
    ]


def identity_values(
    dialect: str, kind: str, fragment: str, known: Counts, source: str = "identities"
) -> dict[str, str]:
    """What :func:`identity_hits` binds (``kind`` names the way; :func:`username_hits`
    binds these of ``usernames`` besides those of ``tg_username``): the fragment, and
    the trigrams the index is read by, the rarest of ``source`` that ``known`` counts."""
    picked = rarest(dialect, source, fragment, known)
    like = f"%{_like(fragment)}%"
    if dialect == "sqlite":
        phrase = " AND ".join(map(_phrase, picked)) if picked else _phrase(fragment)
        return {f"{kind}_phrase": phrase, f"{kind}_like": like}
    patterns = [f"%{_like(gram)}%" for gram in picked] or [like]
    values = {f"{kind}_like": like}
    for n in range(PICK):  # fewer picked: the last one again (the same trigram read once)
        values[f"{kind}_t{n}"] = patterns[min(n, len(patterns) - 1)]
    return values


def name_hits(dialect: str) -> list[Select[Any]]:
    """The first ``first`` clients (by id, merged ones left out) whose name contains a
    fragment in any letter case; binds :func:`name_values` and ``first``."""
    c = clients.c
    current = c.merged_into.is_(None)
    pattern = bindparam("name_pattern", type_=String)
    if dialect != "sqlite":
        return _walk_then_index(lambda name: name.regexp_match(pattern))
    named = c.name.op("GLOB")(pattern)
    t = _NAMES.c
    # Driven by the index in rowid (= client id) order, so that a common name stops
    # at the first few clients rather than reading every one of them.
    indexed = (
        select(c.id)
        .join_from(_NAMES, clients, c.id == t.rowid)
        .where(t.term.op("MATCH")(bindparam("name_phrase", type_=String)), named, current)
        .order_by(t.rowid)
        .limit(_FIRST)
    )
    tail = select(c.id).where(c.id > _position("names"), named, current).order_by(c.id)
    return [_sub(indexed), _sub(tail.limit(_FIRST))]


WALK = 5000  # PostgreSQL: clients read in id order before a name's trigrams are


def _walk_then_index(named: Callable[[Any], ColumnElement[bool]]) -> list[Select[Any]]:
    """PostgreSQL: the first ``first`` clients (by id) whose name ``named`` picks: read
    from the first ``WALK`` clients in id order, and only when fewer are there, from
    the trigram index. A common name (one client in 25 named Ivanov) is found in the
    first thousand clients (1 ms), where the index reads every Ivanov to sort them (41,000
    rows, 60 ms at a million clients); a rare one costs the walk (3 ms) and its few
    matches."""
    c = clients.c
    current = c.merged_into.is_(None)
    first_clients = (
        select(c.id, c.name, c.merged_into)
        .order_by(c.id)
        .limit(bindparam("walk", type_=Integer))
        .subquery()
    )
    w = first_clients.c
    walk = select(w.id).where(named(w.name), w.merged_into.is_(None)).limit(_FIRST).cte("name_walk")
    short = select(func.count()).select_from(walk).scalar_subquery() < _FIRST
    indexed = _first(select(c.id).where(named(c.name), current))
    return [select(walk.c.id), indexed.where(short)]


def name_values(dialect: str, fragment: str) -> dict[str, Any]:
    """What :func:`name_hits` binds for ``fragment``."""
    if dialect != "sqlite":
        # A digit or an @ is in no common name: an address, a number or a word of the
        # log goes to the index at once, not through the walk (3 ms for nothing).
        walk = 0 if any(ch.isdigit() or ch == "@" for ch in fragment) else WALK
        return {"name_pattern": _regex(fragment), "walk": walk}
    return {"name_phrase": _phrase(fragment), "name_pattern": f"*{_glob(fragment)}*"}


def name_prefix_hits(dialect: str, spellings: int) -> list[Select[Any]]:
    """The clients whose name begins with a prefix (shorter than trigrams), read from
    the name index once per case spelling of it (``spellings`` of them, bound by
    :func:`prefix_values`). On SQLite every one of them, as ordering by id would walk
    every client for a rare prefix."""
    c = clients.c
    patterns = [bindparam(f"prefix_{n}", type_=String) for n in range(spellings)]
    if dialect == "sqlite":
        begins = [c.name.op("GLOB")(p) for p in patterns]
        return [select(c.id).where(or_(*begins), c.merged_into.is_(None))]
    begins = [c.name.like(p, escape="\\") for p in patterns]
    return [_first(select(c.id).where(or_(*begins), c.merged_into.is_(None)))]


def prefix_values(dialect: str, prefix: str) -> dict[str, str]:
    """What :func:`name_prefix_hits` binds for ``prefix``: one pattern per spelling."""
    spellings = ["".join(p) for p in itertools.product(*(_cases(ch) for ch in prefix))]
    if dialect == "sqlite":
        patterns = [_glob_literal(s) + "*" for s in spellings]
    else:
        patterns = [_like(s) + "%" for s in spellings]
    return {f"prefix_{n}": pattern for n, pattern in enumerate(patterns)}


def username_hits(dialect: str) -> list[Select[Any]]:
    """Clients whose inbound Telegram messages carried a username containing a
    fragment (lower-case); binds :func:`identity_values` of ``tg_username``."""
    x = interactions.c
    said: ColumnElement[Any]
    if dialect == "sqlite":
        said = func.json_extract(x.extras, "$.username")
    else:
        said = x.extras.op("->>")(literal_column("'username'"))
    holds = and_(
        _unindexed(x.channel, dialect) == "telegram",
        _unindexed(x.direction, dialect) == "in",
        said.is_not(None),  # as PostgreSQL's partial index says, so that it applies
        func.lower(said).like(bindparam("tg_username_like", type_=String), escape="\\"),
    )
    if dialect != "sqlite":
        u = _PG_USERNAMES.c
        like = bindparam("tg_username_like", type_=String)
        whole = _unindexed(u.term, dialect).like(like, escape="\\")
        found = select(u.interaction_id).where(*_rare_likes(u.term, "usernames"), whole)
        # The tail not read yet, from the position bound apart (compared with a
        # subquery, PostgreSQL would guess a third of the log and read it all).
        tail = and_(x.id > bindparam("usernames_from", type_=Integer), holds)
        return [_bounded(x.client_id, x.id.in_(found)), _bounded(x.client_id, tail)]
    phrase = bindparam("usernames_phrase", type_=String)
    found = select(_USERNAMES.c.rowid).where(_USERNAMES.c.term.op("MATCH")(phrase))
    return [
        select(x.client_id.label("id")).where(x.id.in_(found), holds),
        select(x.client_id.label("id")).where(x.id > _position("usernames"), holds),
    ]


# -- a fragment is read by its rarest trigrams --------------------------------------------
#
# An index reads the whole list of every trigram it is asked for: an address like
# ``client123456@example.org`` read the lists of "cli", "exa" and ".or", each as long as
# the client base, to find one row. A fragment is read by its rarest few trigrams
# instead (as counted in ``search_terms_trigrams``, filled behind the indexes), and the
# whole fragment is checked on each row they find.

PICK = 3
COMMONER = 10  # a trigram read besides the rarest is at most so many times commoner,
CHEAP = 1_000  # or in so few rows that its list costs nothing
_TRIGRAMS = table(
    "search_terms_trigrams",
    column("source", String),
    column("term", String),
    column("n", Integer),
)


@dataclass(frozen=True, slots=True)
class Counts:
    """How many rows of each index (``source``) hold some trigrams, as counted so far."""

    rows: dict[tuple[str, str], int]
    complete: frozenset[str] = frozenset()  # the indexes whose every row is counted

    def of(self, dialect: str, source: str, gram: str) -> int | None:
        """Rows of ``source`` holding ``gram``; ``None`` when not known. A trigram not
        counted in a complete count is in no row (on PostgreSQL only an ASCII one:
        ``pg_trgm`` shows others hashed, and they are not counted)."""
        n = self.rows.get((source, gram))
        if n is None and source in self.complete and (dialect == "sqlite" or gram.isascii()):
            return 0
        return n


NO_COUNTS = Counts({})


def trigrams(dialect: str, fragment: str) -> list[str]:
    """The trigrams of ``fragment`` an index holds, each once, in their order: every
    three characters in a row (lower case) on SQLite, those of letters and digits on
    PostgreSQL (``pg_trgm`` indexes words)."""
    lowered = fragment.lower()
    if len(lowered) != len(fragment):  # "İ" lowers to two characters: read it whole
        return []
    grams = [lowered[n : n + 3] for n in range(len(lowered) - 2)]
    if dialect != "sqlite":
        grams = [gram for gram in grams if gram.isalnum()]
    return list(dict.fromkeys(grams))


def counted(conn: Connection, fragments: Sequence[str]) -> Counts:
    """How many rows of each index hold the trigrams of the fragments that have more
    than one, and which counts are complete (one statement, none when no fragment has
    more than one)."""
    dialect = conn.dialect.name
    wanted = {
        gram
        for fragment in fragments
        if len(grams := trigrams(dialect, fragment)) > 1
        for gram in grams
        if dialect == "sqlite" or gram.isascii()  # PostgreSQL counts no other (Counts.of)
    }
    if not wanted:
        return NO_COUNTS
    counts = _COUNTS[_backend(dialect)]
    rows = conn.execute(_COUNTED[_backend(dialect)], {"terms": sorted(wanted)}).all()
    complete = frozenset(c.source for c, late in zip(counts, rows[0], strict=False) if not late)
    known = {(row[-3], row[-2]): row[-1] for row in rows if row[-3] is not None}
    return Counts(known, complete)


def _counted(counts: Sequence[_Count]) -> Select[Any]:
    """Whether each of ``counts`` is behind its index, then the counts of the
    trigrams bound as ``terms``: a row each (or one of nothing)."""
    t = _TRIGRAMS.c
    late = select(
        *(_past(c.key, c.position).label(f"late_{n}") for n, c in enumerate(counts))
    ).subquery("late")
    of_terms = t.term.in_(bindparam("terms", expanding=True))
    return select(*late.c, t.source, t.term, t.n).select_from(late.outerjoin(_TRIGRAMS, of_terms))


def rarest(dialect: str, source: str, fragment: str, known: Counts) -> list[str]:
    """The trigrams of ``fragment`` the index of ``source`` is read by: the rarest,
    then up to ``PICK`` in all of those not much commoner (reading a list costs less
    than checking a row it would have ruled out); none (the whole fragment) when none
    is known. A trigram whose count is not known is taken as common: a wrong guess
    costs time, never a result."""
    grams = trigrams(dialect, fragment)
    ranked = sorted(
        (n, gram) for gram in grams if (n := known.of(dialect, source, gram)) is not None
    )
    if not ranked:
        return []
    fewest = ranked[0][0]
    if fewest == 0:  # in no row: its empty list answers
        return [ranked[0][1]]
    bound = max(fewest * COMMONER, CHEAP)
    return [gram for n, gram in ranked[:PICK] if n <= bound]


def _rare_likes(column: ColumnElement[str], kind: str) -> list[ColumnElement[bool]]:
    """PostgreSQL: ``column`` holds each trigram :func:`identity_values` picked for
    ``kind`` (the GIN index reads their lists only)."""
    return [column.like(bindparam(f"{kind}_t{n}", type_=String), escape="\\") for n in range(PICK)]


def _unindexed(column: ColumnElement[str], dialect: str) -> ColumnElement[str]:
    """``column`` as an expression no btree index of it serves (SQLite's ``+column``),
    so that the trigram index's hits lead the lookup rather than every row of one
    kind or channel."""
    if dialect == "sqlite":
        return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)
    return column.concat("")


_FIRST = bindparam("first", type_=Integer)


def _first(ids: Select[Any]) -> Select[Any]:
    """``ids`` (client ids) as its first ``first`` by id, a member of a compound select."""
    return _sub(ids.order_by(_unordered(clients.c.id)).limit(_FIRST))


def _bounded(client_id: ColumnElement[int], holds: ColumnElement[bool]) -> Select[Any]:
    """The first ``first`` distinct clients (by id) of the rows that ``holds`` picks, a
    member of a compound select (no merged client among them: a merge moves the
    identities and messages to the client kept)."""
    key = _unordered(client_id).label("id")
    picked = select(key).where(holds).distinct().order_by(key).limit(_FIRST)
    return _sub(picked)


def _unordered(column: ColumnElement[int]) -> ColumnElement[int]:
    """``column + 0``: ordered by it, PostgreSQL still leads with the trigram index and
    sorts the hits, where it might walk the primary key hoping to meet hits early (a
    whole table for a rare fragment, when its guess of how many match is wrong)."""
    return column + 0


def _sub(query: Select[Any]) -> Select[Any]:
    """``query`` (ordered and limited) as a member a compound select may take."""
    inner = query.subquery()
    return select(inner.c.id)


def position_values(conn: Connection) -> dict[str, int]:
    """PostgreSQL: what :func:`username_hits` binds besides its fragment, read first
    (the id up to which usernames are indexed)."""
    return {"usernames_from": int(conn.execute(select(_position("usernames"))).scalar() or 0)}


def _position(name: str) -> Any:
    p = search_positions.c
    return (
        select(func.coalesce(func.max(p.last_id), 0))
        .where(p.name == _POSITIONS[name])
        .scalar_subquery()
    )


def _phrase(fragment: str) -> str:
    """An FTS5 query matching ``fragment`` as a substring (trigrams in a row)."""
    return '"' + fragment.replace('"', '""') + '"'


# -- filling the index (SQLite) -----------------------------------------------------------


async def behind(conn: AsyncConnection) -> bool:
    """Whether identities, clients or messages were written since the index last
    caught up, or indexed since their trigrams were counted (a read: an idle check
    takes no write lock)."""
    return bool((await conn.execute(_BEHIND[_backend(conn.dialect.name)])).scalar())


def _backend(dialect: str) -> str:
    return "sqlite" if dialect == "sqlite" else "postgresql"


def _behind(kept: dict[str, ColumnElement[int]]) -> Select[Any]:
    """Whether any key of ``kept`` (index name → the key its position counts) has
    rows past its position."""
    return select(or_(*(_past(key, name) for name, key in kept.items())))


def _past(key: ColumnElement[int], name: str) -> ColumnElement[bool]:
    """Whether the newest ``key`` is past the position ``name``: read from the end of
    its index (PostgreSQL plans ``EXISTS (... key > (subquery))`` as a scan of the
    whole table, 0.1 s for a million identities)."""
    newest = select(key).order_by(key.desc()).limit(1).scalar_subquery()
    past: ColumnElement[bool] = func.coalesce(newest, 0) > _position(name)
    return past


# Each source: the table read, and the statement indexing its rows in (:last, :top].
_FILL = {
    "identities": (
        identities,
        "INSERT OR REPLACE INTO search_terms_identities(rowid, term) SELECT id, value"
        " FROM identities WHERE id > :last AND id <= :top"
        " AND kind IN ('email', 'phone', 'tg_username')",
    ),
    "names": (
        clients,
        "INSERT OR REPLACE INTO search_terms_names(rowid, term) SELECT id, name FROM clients"
        " WHERE id > :last AND id <= :top AND name IS NOT NULL AND name != ''",
    ),
    # A client's username once (the first message that carried it), not per message:
    # one an earlier message of the same client carried is skipped. Looked up in the
    # client's own messages (ix_interactions_client, newest first, stopping at the
    # last one that carried a username), not by a MATCH in the trigram table, whose
    # common trigrams ("use", "ser") made each lookup read most of it.
    "usernames": (
        interactions,
        "INSERT OR REPLACE INTO search_terms_usernames(rowid, term)"
        " SELECT first, said FROM (SELECT min(id) AS first, client_id, said FROM ("
        "SELECT id, client_id, lower(json_extract(extras, '$.username')) AS said"
        " FROM interactions WHERE id > :last AND id <= :top"
        " AND channel = 'telegram' AND direction = 'in') WHERE said IS NOT NULL AND said != ''"
        " GROUP BY client_id, said) AS fresh WHERE coalesce(("
        "SELECT lower(json_extract(y.extras, '$.username')) FROM interactions AS y"
        " WHERE y.client_id = fresh.client_id AND y.id <= :last"
        " AND y.channel = 'telegram' AND y.direction = 'in'"
        " AND json_extract(y.extras, '$.username') IS NOT NULL"
        " ORDER BY y.id DESC LIMIT 1), '') != fresh.said",
    ),
}


# PostgreSQL: the same rows, and again the last ``REREAD`` ids before the position: on
# several instances (and with group commit) a message may commit after one with a
# higher id that a batch already read; ON CONFLICT makes reading one twice harmless.
REREAD = 10_000
_PG_FILL = (
    "INSERT INTO search_terms_usernames(interaction_id, term)"
    " SELECT first, said FROM (SELECT min(id) AS first, client_id, said FROM ("
    "SELECT id, client_id, lower(extras ->> 'username') AS said"
    " FROM interactions WHERE id > :last AND id <= :top"
    " AND channel = 'telegram' AND direction = 'in') AS x WHERE said IS NOT NULL"
    " AND said != '' GROUP BY client_id, said) AS fresh WHERE coalesce(("
    "SELECT lower(y.extras ->> 'username') FROM interactions AS y"
    " WHERE y.client_id = fresh.client_id AND y.id <= :last"
    " AND y.channel = 'telegram' AND y.direction = 'in'"
    " AND (y.extras ->> 'username') IS NOT NULL"
    " ORDER BY y.id DESC LIMIT 1), '') != fresh.said"
    " ON CONFLICT (interaction_id) DO NOTHING"
)


# The trigrams of some indexed rows (``{rows}``), counted once per row (SQLite: three
# characters in a row, as FTS5's trigram tokenizer reads them; PostgreSQL:
# ``show_trgm``'s trigrams of letters and digits, not those padded at a word's edge),
# then added to the counts or taken from them.
_GRAMS_SQLITE = (
    "WITH RECURSIVE cut(id, s, i) AS (SELECT rowid, lower(term), 1 FROM {table}"
    " WHERE {rows} AND length(term) >= 3"
    " UNION ALL SELECT id, s, i + 1 FROM cut WHERE i + 3 <= length(s)),"
    " grams(gram, k) AS (SELECT gram, count(*) FROM (SELECT DISTINCT id, substr(s, i, 3)"
    " AS gram FROM cut) GROUP BY gram) "
)
_GRAMS_POSTGRESQL = (
    "WITH grams(gram, k) AS (SELECT gram, count(*) FROM {table},"
    " unnest(show_trgm({text})) AS gram WHERE {rows}"
    " AND length(gram) = 3 AND strpos(gram, ' ') = 0 GROUP BY gram) "
)
_ADD = (
    "INSERT INTO search_terms_trigrams(source, term, n) SELECT '{source}', gram, k FROM grams"
    " WHERE true ON CONFLICT (term, source) DO UPDATE SET n = search_terms_trigrams.n + excluded.n"
)
_TAKE = (
    "UPDATE search_terms_trigrams SET n = n - (SELECT k FROM grams"
    " WHERE gram = search_terms_trigrams.term) WHERE source = '{source}'"
    " AND term IN (SELECT gram FROM grams)"
)
_KINDS_SQL = "kind IN (" + ", ".join(f"'{kind}'" for kind in KINDS) + ")"


class _Count(NamedTuple):
    """A count kept behind an index: its position's name, the key it follows, and its
    rows as the statements name them."""

    position: str
    key: ColumnElement[int]
    source: str
    grams: str  # _GRAMS_* for its table and text
    key_sql: str
    owned: str  # its rows of the clients bound as :ids
    only: str = "true"

    def add(self) -> str:
        """Count the rows in (:last, :top]."""
        rows = f"{self.key_sql} > :last AND {self.key_sql} <= :top AND {self.only}"
        return self.grams.format(rows=rows) + _ADD.format(source=self.source)

    def take(self) -> TextClause:
        """Take back the counted rows of the clients :ids."""
        counted_up_to = (
            "(SELECT coalesce(max(last_id), 0) FROM search_positions WHERE name = :position)"
        )
        rows = f"{self.owned} AND {self.key_sql} <= {counted_up_to} AND {self.only}"
        sql = self.grams.format(rows=rows) + _TAKE.format(source=self.source)
        ids: BindParameter[Any] = bindparam("ids", expanding=True)
        return text(sql).bindparams(ids, position=_POSITIONS[self.position])


_SAID_BY = "(SELECT id FROM interactions WHERE client_id IN :ids)"
_COUNTS = {
    "sqlite": (
        _Count(
            "identity trigrams",
            _IDENTITIES.c.rowid,
            "identities",
            _GRAMS_SQLITE.replace("{table}", "search_terms_identities"),
            "rowid",
            "rowid IN (SELECT id FROM identities WHERE client_id IN :ids)",
        ),
        _Count(
            "username trigrams",
            _USERNAMES.c.rowid,
            "usernames",
            _GRAMS_SQLITE.replace("{table}", "search_terms_usernames"),
            "rowid",
            f"rowid IN {_SAID_BY}",
        ),
    ),
    "postgresql": (
        _Count(
            "identity trigrams",
            identities.c.id,
            "identities",
            _GRAMS_POSTGRESQL.replace("{table}", "identities").replace("{text}", "value"),
            "id",
            "client_id IN :ids",
            _KINDS_SQL,
        ),
        _Count(
            "username trigrams",
            _PG_USERNAMES.c.interaction_id,
            "usernames",
            _GRAMS_POSTGRESQL.replace("{table}", "search_terms_usernames").replace(
                "{text}", "term"
            ),
            "interaction_id",
            f"interaction_id IN {_SAID_BY}",
        ),
    ),
}


# The indexes kept behind the log, by the key each position follows (PostgreSQL keeps
# its others itself), and with them the counts kept behind the indexes.
_BEHIND = {
    backend: _behind({**indexes, **{c.position: c.key for c in _COUNTS[backend]}})
    for backend, indexes in {
        "sqlite": {
            "identities": identities.c.id,
            "names": clients.c.id,
            "usernames": interactions.c.id,
        },
        "postgresql": {"usernames": interactions.c.id},
    }.items()
}
_COUNTED = {backend: _counted(counts) for backend, counts in _COUNTS.items()}


async def index_new(conn: AsyncConnection, limit: int = 20_000) -> int:
    """Index up to ``limit`` rows of each source written since the last call, then
    count the trigrams of up to ``limit`` rows indexed; how many rows were read."""
    done = 0
    sqlite = conn.dialect.name == "sqlite"
    if not sqlite:
        position = _POSITIONS["usernames"]
        done += await _index_from(conn, position, interactions.c.id, _PG_FILL, limit, REREAD)
    else:
        for name, (source, fill) in _FILL.items():
            done += await _index_from(conn, _POSITIONS[name], source.c.id, fill, limit)
    for count in _COUNTS[_backend(conn.dialect.name)]:
        done += await _index_from(conn, _POSITIONS[count.position], count.key, count.add(), limit)
    return done


async def _index_from(
    conn: AsyncConnection,
    position: str,
    key: ColumnElement[int],
    fill: str,
    limit: int,
    reread: int = 0,
) -> int:
    """Run ``fill`` on the next ``limit`` rows by ``key`` past ``position``, and move
    the position past them."""
    row = (
        await conn.execute(
            text("SELECT last_id FROM search_positions WHERE name = :name"), {"name": position}
        )
    ).first()
    last = int(row[0]) if row else 0
    batch = select(key.label("id")).where(key > last).order_by(key).limit(limit).subquery()
    span = (await conn.execute(select(func.count(), func.max(batch.c.id)))).one()
    if span[1] is None:
        return 0
    await conn.execute(text(fill), {"last": max(last - reread, 0), "top": span[1]})
    await conn.execute(
        text(
            "INSERT INTO search_positions(name, last_id) VALUES (:name, :top) "
            "ON CONFLICT(name) DO UPDATE SET last_id = excluded.last_id"
        ),
        {"name": position, "top": span[1]},
    )
    return int(span[0])


async def renamed(conn: AsyncConnection, client_ids: Sequence[int]) -> None:
    """Index these clients' names as they are now (a merge, an unmerge or an import
    changed them), in the caller's transaction."""
    if conn.dialect.name != "sqlite" or not client_ids:
        return
    c = clients.c
    await conn.execute(delete(_NAMES).where(_NAMES.c.rowid.in_(client_ids)))
    named = select(c.id, c.name).where(c.id.in_(client_ids), c.name.is_not(None), c.name != "")
    await conn.execute(insert(_NAMES).from_select(["rowid", "term"], named))


async def forget(conn: AsyncConnection, client_ids: Sequence[int]) -> None:
    """Delete every term of these clients (before their identities go), in the
    erasure's transaction: a forgotten person is found by nothing they were."""
    if not client_ids:
        return
    ids = list(client_ids)
    # Their trigrams leave the counts too: a count of one would tell that someone's
    # address held those three characters.
    for count in _COUNTS[_backend(conn.dialect.name)]:
        await conn.execute(count.take(), {"ids": ids})
    await conn.execute(delete(_TRIGRAMS).where(_TRIGRAMS.c.n <= 0))
    if conn.dialect.name != "sqlite":
        said = select(interactions.c.id).where(interactions.c.client_id.in_(ids))
        await conn.execute(delete(_PG_USERNAMES).where(_PG_USERNAMES.c.interaction_id.in_(said)))
        return
    owned = {
        _IDENTITIES: select(identities.c.id).where(identities.c.client_id.in_(ids)),
        _NAMES: select(clients.c.id).where(clients.c.id.in_(ids)),
        _USERNAMES: select(interactions.c.id).where(interactions.c.client_id.in_(ids)),
    }
    for terms, rows in owned.items():
        await conn.execute(delete(terms).where(terms.c.rowid.in_(rows)))


_OPTIMIZE = (
    "INSERT INTO search_terms_identities(search_terms_identities) VALUES ('optimize')",
    "INSERT INTO search_terms_names(search_terms_names) VALUES ('optimize')",
    "INSERT INTO search_terms_usernames(search_terms_usernames) VALUES ('optimize')",
)


async def purge(conn: AsyncConnection) -> None:
    """Merge each index into one segment, so that deleted terms are gone from the
    file and not only marked deleted."""
    if conn.dialect.name != "sqlite":
        return
    for statement in _OPTIMIZE:
        await conn.execute(text(statement))


# -- patterns in any letter case --------------------------------------------------------


def _cases(char: str) -> str:
    """The one-character spellings of ``char`` in either case, itself first."""
    variants = [char]
    for other in (char.lower(), char.upper()):
        if len(other) == 1 and other not in variants:
            variants.append(other)
    return "".join(variants)


def _glob(fragment: str) -> str:
    """A SQLite GLOB pattern matching ``fragment`` in any letter case."""
    out = []
    for char in fragment:
        cases = _cases(char)
        out.append(f"[{cases}]" if len(cases) > 1 or char in _GLOB_SPECIAL else char)
    return "".join(out)


def _glob_literal(fragment: str) -> str:
    """``fragment`` as a GLOB pattern matching it exactly (its literal characters
    lead, so that SQLite reads the pattern as a range of its index)."""
    return "".join(f"[{ch}]" if ch in _GLOB_SPECIAL else ch for ch in fragment)


def _regex(fragment: str) -> str:
    """A PostgreSQL regular expression (ARE) matching ``fragment`` in any letter case."""
    out = []
    for char in fragment:
        cases = _cases(char)
        if len(cases) > 1:
            out.append(f"[{cases}]")
        elif char in _REGEX_SPECIAL:
            out.append(f"\\{char}")
        else:
            out.append(char)
    return "".join(out)


def _like(fragment: str) -> str:
    return fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
