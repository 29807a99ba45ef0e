"""Client records as a whole: merge and unmerge, stage moves, import and export,
the candidates for duplicate suggestions, and who may see a client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import terms
from storage.tables import (
    UNRESOLVED,
    clients,
    conversations,
    deadlines,
    identities,
    interactions,
    managers,
    merges,
    outbox,
    ratings,
    reminders,
    topics,
)

# Rows that belong to a client and move with a merge (and back with an unmerge).
MOVABLE: dict[str, Table] = {
    "identities": identities,
    "conversations": conversations,
    "interactions": interactions,
    "reminders": reminders,
    "deadlines": deadlines,
    "outbox": outbox,
    "ratings": ratings,
}


@dataclass(frozen=True, slots=True)
class Record:
    id: int
    name: str | None
    stage: str
    owner_id: int | None
    tags: list[str]
    custom: dict[str, Any]
    source: str | None
    language: str | None
    merged_into: int | None


async def record(conn: AsyncConnection, client_id: int) -> Record | None:
    c = clients.c
    row = (
        await conn.execute(
            select(
                c.id,
                c.name,
                c.stage,
                c.owner_id,
                c.tags,
                c.custom,
                c.source,
                c.language,
                c.merged_into,
            ).where(c.id == client_id)
        )
    ).one_or_none()
    if row is None:
        return None
    return Record(
        row.id,
        row.name,
        row.stage,
        row.owner_id,
        list(row.tags or []),
        dict(row.custom or {}),
        row.source,
        row.language,
        row.merged_into,
    )


# --- merge and unmerge --------------------------------------------------------------


async def move_rows(conn: AsyncConnection, source: int, target: int) -> dict[str, list[int]]:
    """Give every row of client ``source`` to ``target``; the ids moved, by table."""
    moved: dict[str, list[int]] = {}
    for name, table in MOVABLE.items():
        t = table.c
        ids = [
            int(r[0])
            for r in await conn.execute(select(t.id).where(t.client_id == source).order_by(t.id))
        ]
        if ids:
            await conn.execute(update(table).where(t.id.in_(ids)).values(client_id=target))
        moved[name] = ids
    return moved


async def move_back(conn: AsyncConnection, moved: dict[str, list[int]], target: int) -> None:
    for name, ids in moved.items():
        table = MOVABLE.get(name)
        if table is not None and ids:
            await conn.execute(update(table).where(table.c.id.in_(ids)).values(client_id=target))


async def topic_row(conn: AsyncConnection, client_id: int) -> dict[str, Any] | None:
    t = topics.c
    row = (
        await conn.execute(
            select(t.client_id, t.chat_id, t.thread_id, t.created_at).where(
                t.client_id == client_id
            )
        )
    ).one_or_none()
    return dict(row._mapping) if row else None


async def drop_topic(conn: AsyncConnection, client_id: int) -> None:
    await conn.execute(topics.delete().where(topics.c.client_id == client_id))


async def put_topic(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(insert(topics), row)


async def update_client(conn: AsyncConnection, client_id: int, values: dict[str, Any]) -> None:
    await conn.execute(update(clients).where(clients.c.id == client_id).values(**values))
    if "name" in values:  # a merge, an unmerge or an import: search finds the new name
        await terms.renamed(conn, [client_id])


async def add_merge(conn: AsyncConnection, values: dict[str, Any]) -> int:
    return int((await conn.execute(insert(merges).returning(merges.c.id), values)).scalar_one())


async def merge_row(conn: AsyncConnection, merge_id: int) -> dict[str, Any] | None:
    m = merges.c
    row = (
        await conn.execute(
            select(m.id, m.kept_id, m.merged_id, m.moved, m.undone_at)
            .where(m.id == merge_id)
            .with_for_update()
        )
    ).one_or_none()
    return dict(row._mapping) if row else None


async def undo_merge(conn: AsyncConnection, merge_id: int, at: datetime) -> None:
    await conn.execute(update(merges).where(merges.c.id == merge_id).values(undone_at=at))


# --- duplicates ------------------------------------------------------------------------


async def names(conn: AsyncConnection) -> list[tuple[int, str]]:
    """(id, name) of every named client not merged into another."""
    c = clients.c
    rows = await conn.execute(
        select(c.id, c.name).where(c.merged_into.is_(None), c.name.is_not(None)).order_by(c.id)
    )
    return [(int(i), str(n)) for i, n in rows.all() if n]


async def phones(conn: AsyncConnection) -> list[tuple[int, str]]:
    """(client id, value) of every phone identity and every phone-like custom
    field of clients not merged into another."""
    c, i = clients.c, identities.c
    found = [
        (int(cid), str(value))
        for cid, value in await conn.execute(
            select(i.client_id, i.value)
            .join_from(identities, clients, c.id == i.client_id)
            .where(i.kind == "phone", c.merged_into.is_(None))
        )
    ]
    for cid, custom in await conn.execute(
        select(c.id, c.custom).where(c.merged_into.is_(None), c.custom.is_not(None))
    ):
        for value in (custom or {}).values():
            if isinstance(value, str) and sum(ch.isdigit() for ch in value) >= 10:
                found.append((int(cid), value))
    return found


# --- stages ------------------------------------------------------------------------------


async def quiet_since(
    conn: AsyncConnection,
    before: datetime,
    skip: Sequence[str],
    limit: int,
    *,
    by_hand_before: datetime | None = None,
) -> list[tuple[int, str]]:
    """(id, stage) of clients whose last message either way is older than
    ``before``, not in a stage of ``skip``, not merged, and (with
    ``by_hand_before``) whose stage no person set since then."""
    c, i = clients.c, interactions.c
    # The latest message read from the end of the client's (client_id, id) index:
    # the cost follows the clients, not the length of the log.
    last = (
        select(i.at)
        .where(i.client_id == c.id, i.direction.in_(("in", "out")))
        .order_by(i.id.desc())
        .limit(1)
        .correlate(clients)
        .scalar_subquery()
    )
    query = select(c.id, c.stage).where(
        last < before, c.stage.not_in(list(skip)), c.merged_into.is_(None)
    )
    if by_hand_before is not None:
        query = query.where(or_(c.stage_by_hand_at.is_(None), c.stage_by_hand_at < by_hand_before))
    rows = await conn.execute(query.order_by(c.id).limit(limit))
    return [(int(a), str(b)) for a, b in rows.all()]


# --- who may see whom --------------------------------------------------------------------


async def keepers(conn: AsyncConnection, client_id: int) -> list[tuple[int, str | None]]:
    """(manager id, team) of the client's owner and the assignees of its open
    conversations."""
    return (await keepers_of(conn, [client_id])).get(client_id, [])


def kept_by(
    client_id: ColumnElement[int], owner_id: ColumnElement[int | None], ids: Sequence[int]
) -> ColumnElement[bool]:
    """A client (``client_id``, whose owner is ``owner_id``) that nobody keeps, or that
    one of ``ids`` keeps: the desk's rule of who sees whom (``Desk.visible`` over
    :func:`keepers_of`) as a condition, for lists read in one statement. The keepers
    are the owner and the assignees of the client's unresolved requests."""
    k = conversations.alias("keeping")
    assigned = select(k.c.id).where(
        k.c.client_id == client_id, k.c.status.in_(UNRESOLVED), k.c.assignee_id.is_not(None)
    )
    wanted = list(ids)
    by_them = or_(owner_id.in_(wanted), assigned.where(k.c.assignee_id.in_(wanted)).exists())
    kept = or_(owner_id.is_not(None), assigned.exists())
    return or_(by_them, not_(kept))


async def keepers_of(
    conn: AsyncConnection, client_ids: Sequence[int]
) -> dict[int, list[tuple[int, str | None]]]:
    """:func:`keepers` of many clients in three statements; a client nobody keeps
    is left out."""
    c, cv, m = clients.c, conversations.c, managers.c
    ids = list(client_ids)
    if not ids:
        return {}
    kept: dict[int, set[int]] = {}
    assigned = await conn.execute(
        select(cv.client_id, cv.assignee_id).where(
            cv.client_id.in_(ids), cv.status.in_(UNRESOLVED), cv.assignee_id.is_not(None)
        )
    )
    owned = await conn.execute(
        select(c.id, c.owner_id).where(c.id.in_(ids), c.owner_id.is_not(None))
    )
    for client_id, manager_id in [*assigned.all(), *owned.all()]:
        kept.setdefault(int(client_id), set()).add(int(manager_id))
    if not kept:
        return {}
    everyone = set().union(*kept.values())
    rows = await conn.execute(select(m.id, m.attrs).where(m.id.in_(everyone)))
    team = {int(mid): (attrs or {}).get("team") for mid, attrs in rows.all()}
    return {
        client_id: [(mid, team[mid]) for mid in sorted(managers_) if mid in team]
        for client_id, managers_ in kept.items()
    }


# --- import and export ----------------------------------------------------------------


async def owners_of(
    conn: AsyncConnection, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """(kind, value) -> client id, for the identities that exist."""
    if not pairs:
        return {}
    i = identities.c
    found: dict[tuple[str, str], int] = {}
    for start in range(0, len(pairs), 500):
        chunk = pairs[start : start + 500]
        rows = await conn.execute(
            select(i.kind, i.value, i.client_id).where(
                or_(*(and_(i.kind == k, i.value == v) for k, v in chunk))
            )
        )
        for kind, value, cid in rows.all():
            found[(kind, value)] = int(cid)
    return found


async def new_client(conn: AsyncConnection, values: dict[str, Any]) -> int:
    given = {k: v for k, v in values.items() if v is not None}
    given.setdefault("updated_at", given.get("created_at"))
    return int((await conn.execute(insert(clients).returning(clients.c.id), given)).scalar_one())


async def telegram_writers(conn: AsyncConnection, usernames: Sequence[str]) -> dict[str, int]:
    """Lower-case Telegram username -> the client whose messages came from it (the
    newest such message's client), for those of ``usernames`` that ever wrote."""
    if not usernames:
        return {}
    x = interactions.c
    said: ColumnElement[Any]
    if conn.dialect.name == "sqlite":
        said = func.lower(func.json_extract(x.extras, "$.username"))
    else:
        said = func.lower(x.extras.op("->>")(literal("username")))
    found: dict[str, int] = {}
    for start in range(0, len(usernames), 500):
        rows = await conn.execute(
            select(said, x.client_id)
            .where(
                x.channel == "telegram",
                x.direction == "in",
                said.in_(usernames[start : start + 500]),
            )
            .order_by(x.id)
        )
        found.update({name: client_id for name, client_id in rows})
    return found


async def add_identities(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(identities), rows)


async def export_rows(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every client not merged into another, with its identities and owner."""
    c, i, m = clients.c, identities.c, managers.c
    rows = (
        await conn.execute(
            select(
                c.id,
                c.name,
                c.stage,
                m.name.label("owner"),
                c.tags,
                c.source,
                c.language,
                c.custom,
                c.created_at,
            )
            .join_from(clients, managers, c.owner_id == m.id, isouter=True)
            .where(c.merged_into.is_(None))
            .order_by(c.id)
        )
    ).all()
    ident: dict[int, dict[str, list[str]]] = {}
    for cid, kind, value in await conn.execute(select(i.client_id, i.kind, i.value).order_by(i.id)):
        ident.setdefault(int(cid), {}).setdefault(str(kind), []).append(str(value))
    return [dict(row._mapping) | {"identities": ident.get(row.id, {})} for row in rows]
