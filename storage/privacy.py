"""Personal data on request and by age: one person's rows read out, erased, or aged out.

Erasing leaves every row in place (reports count them) and replaces what a
person said or is called by the tombstone :data:`TOMBSTONE`. The log's guard
(migration 0014) allows that change only where a row of ``erasures`` covers it,
so each erasure is recorded first. SQLite's full-text index (FTS5, external
content) is told to drop each erased row's words before the row changes;
PostgreSQL's index is over the text itself and follows it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import terms
from storage.models import Erasure
from storage.tables import (
    attachments,
    audit,
    clients,
    conversations,
    current_clients,
    identities,
    interactions,
    merges,
    outbox,
    private_messages,
    ratings,
    reminders,
    topics,
)

TOMBSTONE = "[erased]"
erasures = cast(Table, Erasure.__table__)
BODIES = ("in", "out", "note")  # what retention erases: what was said, not the hub's events
_CHUNK = 500


@dataclass
class Erased:
    """What an erasure changed, by table; files whose bytes nobody refers to any more."""

    counts: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    topics: list[tuple[int, int]] = field(default_factory=list)  # (chat, thread)
    private: list[tuple[int, int]] = field(default_factory=list)  # (chat, message)


@dataclass(frozen=True, slots=True)
class Person:
    """What a person is known by: for finding their traces elsewhere."""

    names: list[str]
    identities: list[tuple[str, str]]  # (kind, value)
    display_names: list[str]


# --- who ---------------------------------------------------------------------------


async def family(conn: AsyncConnection, client_id: int) -> list[int] | None:
    """The live record of ``client_id`` (merges followed) and every record merged
    into it, the live one first; None when there is no such client."""
    c = clients.c
    current, seen = client_id, set[int]()
    while current not in seen:
        seen.add(current)
        row = (await conn.execute(select(c.merged_into).where(c.id == current))).one_or_none()
        if row is None:
            return None
        if row[0] is None:
            break
        current = int(row[0])
    found, frontier = [current], [current]
    while frontier:
        rows = await conn.execute(select(c.id).where(c.merged_into.in_(frontier)))
        frontier = [int(r[0]) for r in rows if int(r[0]) not in found]
        found.extend(frontier)
    return found


async def person(conn: AsyncConnection, ids: Sequence[int]) -> Person:
    c, i = clients.c, identities.c
    names = [str(n) for (n,) in await conn.execute(select(c.name).where(c.id.in_(ids))) if n]
    rows = (
        await conn.execute(
            select(i.kind, i.value, i.display_name).where(i.client_id.in_(ids)).order_by(i.id)
        )
    ).all()
    return Person(names, [(k, v) for k, v, _ in rows], [str(d) for _, _, d in rows if d])


# --- export ------------------------------------------------------------------------


def _plain(row: Any) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row._mapping.items()}


async def _rows(conn: AsyncConnection, table: Table, where: Any) -> list[dict[str, Any]]:
    result = await conn.execute(select(table).where(where).order_by(*table.primary_key))
    return [_plain(r) for r in result]


async def export(conn: AsyncConnection, ids: Sequence[int]) -> dict[str, Any]:
    """Every row held on the records ``ids`` (the live one first): the records,
    identities, conversations, the whole log with each entry's attachments, and
    reminders."""
    records = await _rows(conn, clients, clients.c.id.in_(ids))
    records.sort(key=lambda r: list(ids).index(r["id"]))
    log = await _rows(conn, interactions, interactions.c.client_id.in_(ids))
    files = await _rows(
        conn,
        attachments,
        attachments.c.interaction_id.in_(
            select(interactions.c.id).where(interactions.c.client_id.in_(ids))
        ),
    )
    by_entry: dict[int, list[dict[str, Any]]] = {}
    for f in files:
        by_entry.setdefault(f["interaction_id"], []).append(f)
    for entry in log:
        entry["attachments"] = by_entry.get(entry["id"], [])
    return {
        "client": records[0],
        "merged": records[1:],
        "identities": await _rows(conn, identities, identities.c.client_id.in_(ids)),
        "conversations": await _rows(conn, conversations, conversations.c.client_id.in_(ids)),
        "timeline": log,
        "reminders": await _rows(conn, reminders, reminders.c.client_id.in_(ids)),
    }


# --- forget ------------------------------------------------------------------------


async def record_erasure(conn: AsyncConnection, values: dict[str, Any]) -> int:
    """The erasure (at, actor, reason, and client_id or before): written before the
    rows it covers change, since the log's guard looks for it."""
    return int((await conn.execute(insert(erasures).returning(erasures.c.id), values)).scalar_one())


async def forget(
    conn: AsyncConnection,
    ids: Sequence[int],
    *,
    now: datetime,
    keep_extras: frozenset[str],
    staff_kinds: frozenset[str],
) -> Erased:
    """Erase the records ``ids`` (an erasure of the first must be recorded): their
    log, files, conversations' subjects, reminders, outbox rows, identities,
    names, staff topics and the merges' copies of their card."""
    erased = Erased()
    await _secure(conn)
    entry_ids = select(interactions.c.id).where(interactions.c.client_id.in_(ids))
    erased.counts["interactions"] = await _erase_log(
        conn, interactions.c.client_id.in_(ids), keep_extras, forget=True
    )
    erased.files = await _erase_files(conn, entry_ids, erased)
    cv = conversations.c
    await conn.execute(update(conversations).where(cv.client_id.in_(ids)).values(subject=None))
    r = reminders.c
    await conn.execute(update(reminders).where(r.client_id.in_(ids)).values(text=TOMBSTONE))
    rated = ratings.c  # the score stays (the team's figures), the client's words go
    await conn.execute(
        update(ratings)
        .where(rated.client_id.in_(ids), rated.comment.is_not(None))
        .values(comment=TOMBSTONE)
    )
    await conn.execute(
        update(reminders)
        .where(r.client_id.in_(ids), r.status == "pending")
        .values(status="fired", fired_at=now)
    )
    about = or_(
        outbox.c.client_id.in_(ids),
        outbox.c.interaction_id.in_(entry_ids),
        outbox.c.conversation_id.in_(select(cv.id).where(cv.client_id.in_(ids))),
    )
    erased.counts["outbox"] = await _erase_outbox(conn, about, keep_extras, staff_kinds)
    await terms.forget(conn, ids)
    gone = await conn.execute(delete(identities).where(identities.c.client_id.in_(ids)))
    erased.counts["identities"] = int(gone.rowcount or 0)
    await conn.execute(
        update(clients)
        .where(clients.c.id.in_(ids))
        .values(name=None, custom=None, opted_out=True, forgotten_at=now, updated_at=now)
    )
    await _erase_merges(conn, ids)
    await _drop_staff_links(conn, ids, erased)
    return erased


async def _erase_log(
    conn: AsyncConnection, where: Any, keep_extras: frozenset[str], *, forget: bool, limit: int = 0
) -> int:
    """Tombstone the log's rows ``where`` says (not yet erased); how many.
    ``forget``: their authors (of what came in) and external ids go too."""
    i = interactions.c
    left = [i.text != TOMBSTONE, i.html.is_not(None), i.subject.is_not(None)]
    if forget:
        left += [i.external_id.is_not(None), and_(i.direction == "in", i.author.is_not(None))]
    query = select(i.id, i.text, i.direction, i.extras, i.author).where(where, or_(*left))
    if limit:
        query = query.order_by(i.id).limit(limit)
    rows = (await conn.execute(query)).all()
    if not rows:
        return 0
    await _unindex(conn, [(r.id, r.text, r.direction) for r in rows])
    values: dict[str, Any] = {
        "text": TOMBSTONE,
        "html": None,
        "subject": None,
        "delivery_error": None,
        "extras": bindparam("b_extras", type_=i.extras.type),
    }
    if forget:
        values |= {"external_id": None, "author": bindparam("b_author")}
    statement = update(interactions).where(i.id == bindparam("b_id")).values(**values)
    params = [
        {
            "b_id": r.id,
            "b_extras": _kept(r.extras, keep_extras),
            "b_author": None if r.direction == "in" else r.author,
        }
        for r in rows
    ]
    for start in range(0, len(params), _CHUNK):
        await conn.execute(statement, params[start : start + _CHUNK])
    return len(rows)


def _kept(extras: dict[str, Any] | None, keep: frozenset[str]) -> dict[str, Any] | None:
    """The bookkeeping keys of ``extras`` (what the reports read), nothing a person said."""
    kept = {k: v for k, v in (extras or {}).items() if k in keep}
    return kept or None


async def _erase_files(conn: AsyncConnection, entries: Any, erased: Erased) -> list[str]:
    """Tombstone the attachments of ``entries``; the digests of their files that no
    other attachment refers to (to delete from disk once this commits)."""
    a = attachments.c
    digests = {
        str(d)
        for (d,) in await conn.execute(
            select(a.sha256).where(a.interaction_id.in_(entries), a.sha256 != "")
        )
    }
    done = await conn.execute(
        update(attachments)
        .where(a.interaction_id.in_(entries), a.sha256 != "")
        .values(filename=TOMBSTONE, sha256="")
    )
    erased.counts["attachments"] = int(done.rowcount or 0)
    if not digests:
        return []
    still = {
        str(d)
        for (d,) in await conn.execute(
            select(a.sha256).where(a.sha256.in_(sorted(digests))).distinct()
        )
    }
    return sorted(digests - still)


async def _erase_outbox(
    conn: AsyncConnection, about: Any, keep_extras: frozenset[str], staff_kinds: frozenset[str]
) -> int:
    """Tombstone the outbox rows ``about`` the person; what was still to go never goes."""
    o = outbox.c
    rows = (await conn.execute(select(o.id, o.kind, o.extras).where(about))).all()
    await conn.execute(
        update(outbox)
        .where(about, o.status.in_(("pending", "sending")))
        .values(status="failed", last_error="erased: the client was forgotten", claimed_until=None)
    )
    statement = (
        update(outbox)
        .where(o.id == bindparam("b_id"))
        .values(
            text=TOMBSTONE,
            subject=None,
            external_id=None,
            extras=bindparam("b_extras", type_=o.extras.type),
            recipient=bindparam("b_recipient"),
        )
    )
    params = [
        {
            "b_id": r.id,
            "b_extras": _kept(r.extras, keep_extras),
            "b_recipient": "staff" if r.kind in staff_kinds else TOMBSTONE,
        }
        for r in rows
    ]
    for start in range(0, len(params), _CHUNK):
        await conn.execute(statement, params[start : start + _CHUNK])
    return len(rows)


async def _erase_merges(conn: AsyncConnection, ids: Sequence[int]) -> None:
    """The copy of a card a merge kept (to undo it) loses the person's name and fields."""
    m = merges.c
    rows = await conn.execute(
        select(m.id, m.moved).where(or_(m.kept_id.in_(ids), m.merged_id.in_(ids)))
    )
    for merge_id, moved in rows.all():
        before = dict((moved or {}).get("kept_before") or {})
        if not before:
            continue
        before |= {"name": None, "custom": None}
        await conn.execute(
            update(merges).where(m.id == merge_id).values(moved={**moved, "kept_before": before})
        )


async def _drop_staff_links(conn: AsyncConnection, ids: Sequence[int], erased: Erased) -> None:
    """The staff's topics and private messages about the person: forgotten here, and
    returned so that the staff side deletes them in Telegram."""
    t, p = topics.c, private_messages.c
    erased.topics = [
        (int(c), int(th))
        for c, th in await conn.execute(select(t.chat_id, t.thread_id).where(t.client_id.in_(ids)))
    ]
    erased.private = [
        (int(c), int(m))
        for c, m in await conn.execute(
            select(p.chat_id, p.message_id).where(p.client_id.in_(ids)).distinct()
        )
    ]
    await conn.execute(delete(topics).where(t.client_id.in_(ids)))
    await conn.execute(delete(private_messages).where(p.client_id.in_(ids)))
    await conn.execute(delete(current_clients).where(current_clients.c.client_id.in_(ids)))


async def scrub_audit(
    conn: AsyncConnection, names: Callable[[str], bool], shown: Sequence[int]
) -> int:
    """Audit entries whose details name the person (``names`` says of a string) or
    show one of the records ``shown`` (a search that found them): those strings
    become the tombstone. How many entries changed."""
    a = audit.c
    changed, after = 0, 0
    wanted = set(shown)
    while True:
        rows = (
            await conn.execute(
                select(a.id, a.details)
                .where(a.id > after, a.details.is_not(None))
                .order_by(a.id)
                .limit(5000)
            )
        ).all()
        if not rows:
            return changed
        after = int(rows[-1].id)
        for row_id, details in rows:
            shows = isinstance(details, dict) and bool(wanted & set(_ints(details.get("shown"))))
            clean = _scrub(details, _anything if shows else names)
            if clean != details:
                await conn.execute(update(audit).where(a.id == row_id).values(details=clean))
                changed += 1


def _anything(_: str) -> bool:
    return True


def _ints(value: Any) -> list[int]:
    return [v for v in value if isinstance(v, int)] if isinstance(value, list) else []


def _scrub(value: Any, named: Callable[[str], bool]) -> Any:
    if isinstance(value, str):
        return TOMBSTONE if named(value) else value
    if isinstance(value, list):
        return [_scrub(v, named) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, named) for k, v in value.items()}
    return value


# --- retention ---------------------------------------------------------------------


async def erase_before(
    conn: AsyncConnection, cutoff: datetime, keep_extras: frozenset[str], *, limit: int
) -> Erased:
    """Up to ``limit`` message bodies logged before ``cutoff`` (an erasure with
    ``before`` must be recorded), their files, and the outbox's copies."""
    i = interactions.c
    erased = Erased()
    old = i.at < cutoff
    said = i.direction.in_(BODIES)
    top = (
        await conn.execute(
            select(func.max(i.id)).where(
                i.id.in_(
                    select(i.id)
                    .where(old, said, or_(i.text != TOMBSTONE, i.subject.is_not(None)))
                    .order_by(i.id)
                    .limit(limit)
                )
            )
        )
    ).scalar()
    if top is None:
        return erased
    await _secure(conn)
    span = and_(old, said, i.id <= top)
    erased.counts["interactions"] = await _erase_log(conn, span, keep_extras, forget=False)
    erased.files = await _erase_files(conn, select(i.id).where(span), erased)
    o = outbox.c
    done = await conn.execute(
        update(outbox)
        .where(o.created_at < cutoff, o.status.in_(("sent", "failed")), o.text != TOMBSTONE)
        .values(text=TOMBSTONE, subject=None, extras=None)
    )
    erased.counts["outbox"] = int(done.rowcount or 0)
    r = ratings.c  # a rating's comment is the client's words too (its score is kept)
    done = await conn.execute(
        update(ratings)
        .where(r.commented_at < cutoff, r.comment != TOMBSTONE)
        .values(comment=TOMBSTONE)
    )
    erased.counts["ratings"] = int(done.rowcount or 0)
    return erased


async def pending_before(conn: AsyncConnection, cutoff: datetime) -> bool:
    """Whether any message body logged before ``cutoff`` is still there (a read)."""
    i = interactions.c
    query = select(i.id).where(
        i.at < cutoff, i.direction.in_(BODIES), or_(i.text != TOMBSTONE, i.subject.is_not(None))
    )
    return (await conn.execute(query.limit(1))).first() is not None


# --- the full-text index (SQLite) --------------------------------------------------


async def _unindex(conn: AsyncConnection, rows: list[tuple[int, str, str]]) -> None:
    """Drop erased rows' words from SQLite's FTS5 index (external content: the
    words to drop must be given as they were indexed)."""
    if conn.dialect.name != "sqlite":
        return
    position = (
        await conn.execute(text("SELECT last_id FROM search_positions WHERE name = 'interactions'"))
    ).scalar()
    indexed = [
        {"id": row_id, "text": said}
        for row_id, said, direction in rows
        if position is not None
        and row_id <= position
        and said not in ("", TOMBSTONE)  # an erased row's words were dropped then
        and direction != "event"
    ]
    if indexed:
        await conn.execute(
            text(
                "INSERT INTO interactions_fts(interactions_fts, rowid, text) "
                "VALUES ('delete', :id, :text)"
            ),
            indexed,
        )


async def purge_index(conn: AsyncConnection) -> None:
    """Merge SQLite's FTS5 index into one segment, so that the words of deleted
    rows are gone from the file, not only marked deleted (``secure_delete``, set
    before the erasure, zeroes the pages they leave)."""
    if conn.dialect.name != "sqlite":
        return
    await conn.execute(text("INSERT INTO interactions_fts(interactions_fts) VALUES ('optimize')"))
    await terms.purge(conn)


async def _secure(conn: AsyncConnection) -> None:
    """SQLite: what this connection deletes or overwrites is zeroed in the file, not
    left in free space (the pooled connection keeps it on: a little slower deletes)."""
    if conn.dialect.name == "sqlite":
        await conn.execute(text("PRAGMA secure_delete = ON"))
