"""The queries of business events (``business_events``): synchronous, over one
:class:`~sqlalchemy.engine.Connection`, for the events' group commit
(``Database.run_write``); a batch of events costs a few statements."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from storage.ingest import insert_many
from storage.tables import audit, business_events, clients, identities, interactions


@dataclass(frozen=True, slots=True)
class Stored:
    """An event already recorded under a caller's key."""

    id: int
    client_id: int


def by_keys(conn: Connection, keys: Collection[str]) -> dict[str, Stored]:
    """The events recorded under these keys."""
    if not keys:
        return {}
    e = business_events.c
    rows = conn.execute(select(e.key, e.id, e.client_id).where(e.key.in_(sorted(keys))))
    return {str(k): Stored(int(i), int(c)) for k, i, c in rows}


def live_clients(conn: Connection, client_ids: Collection[int]) -> dict[int, int]:
    """Client id -> the client its record lives on (itself, or the one it was merged
    into), for the ids that exist."""
    if not client_ids:
        return {}
    c = clients.c
    rows = conn.execute(select(c.id, c.merged_into).where(c.id.in_(sorted(client_ids))))
    return {int(i): int(m if m is not None else i) for i, m in rows}


def holders(conn: Connection, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """(kind, value) -> the client holding that identity, for those held: one
    statement per kind (whose form SQLAlchemy caches, however many values)."""
    i = identities.c
    by_kind: dict[str, list[str]] = {}
    for kind, value in pairs:
        by_kind.setdefault(kind, []).append(value)
    found: dict[tuple[str, str], int] = {}
    for kind, values in by_kind.items():
        rows = conn.execute(select(i.value, i.client_id).where(i.kind == kind, i.value.in_(values)))
        found.update({(kind, str(v)): int(c) for v, c in rows})
    return found


def new_clients(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    return insert_many(conn, clients, rows)


def add_identities(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(identities), rows)


def add_events(
    conn: Connection,
    events: list[dict[str, Any]],
    timeline: list[dict[str, Any]],
    audits: list[dict[str, Any]],
) -> list[int]:
    """The events, each with its interaction on the timeline (``events[n]`` gets
    ``timeline[n]``'s id) and its audit entry; the events' ids, in order."""
    interaction_ids = insert_many(conn, interactions, timeline)
    for row, interaction_id in zip(events, interaction_ids, strict=True):
        row["interaction_id"] = interaction_id
    ids = insert_many(conn, business_events, events)
    if audits:
        conn.execute(insert(audit), audits)
    return ids
