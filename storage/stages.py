"""The queries of stage moves and stage rules: synchronous, over one
:class:`~sqlalchemy.engine.Connection`, so that ingest's batch, the business
events' writer and the async paths (through ``AsyncConnection.run_sync``) share
them. Set-based: a batch's clients cost one statement per question."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection

from storage.tables import audit, business_events, clients, interactions
from storage.webhooks import Emitted, emit_sync

LAPSED = "lapsed"  # the stage a long silence leaves a client in (hub.kernel.types.LAPSED)


@dataclass(frozen=True, slots=True)
class StageState:
    """What a rule reads of a client before it moves them."""

    stage: str
    before_lapse: str | None
    by_hand_at: datetime | None


def states(conn: Connection, client_ids: Collection[int]) -> dict[int, StageState]:
    """The stage of each client (not merged into another) of ``client_ids``."""
    if not client_ids:
        return {}
    c = clients.c
    rows = conn.execute(
        select(c.id, c.stage, c.stage_before_lapse, c.stage_by_hand_at).where(
            c.id.in_(sorted(client_ids)), c.merged_into.is_(None)
        )
    )
    return {int(i): StageState(str(s), b, h) for i, s, b, h in rows}


def event_counts(
    conn: Connection, client_ids: Collection[int], kinds: Collection[str]
) -> dict[int, int]:
    """How many business events of ``kinds`` each client has."""
    e = business_events.c
    rows = conn.execute(
        select(e.client_id, func.count())
        .where(e.client_id.in_(sorted(client_ids)), e.kind.in_(sorted(kinds)))
        .group_by(e.client_id)
    )
    return {int(i): int(n) for i, n in rows}


def event_totals(
    conn: Connection,
    client_ids: Collection[int],
    kinds: Collection[str],
    currency: str,
    since: datetime | None,
) -> dict[int, Decimal]:
    """The sum of the amounts in ``currency`` of each client's events of ``kinds``
    (at or after ``since`` when given)."""
    e = business_events.c
    query = (
        select(e.client_id, func.sum(e.amount))
        .where(
            e.client_id.in_(sorted(client_ids)),
            e.kind.in_(sorted(kinds)),
            e.currency == currency,
        )
        .group_by(e.client_id)
    )
    if since is not None:
        query = query.where(e.at >= since)
    return {int(i): Decimal(str(total or 0)) for i, total in conn.execute(query)}


@dataclass(frozen=True, slots=True)
class MoveRows:
    """A move as rows: the client's new values (``id`` among them), the event on
    its timeline, the audit entry, and the outgoing event."""

    client: dict[str, Any]
    event: dict[str, Any]
    audit: dict[str, Any]
    emitted: Emitted


def write_moves(conn: Connection, moves: Sequence[MoveRows], now: datetime) -> None:
    """Write the moves: one UPDATE per shape of client values, one INSERT each of
    events and audit entries, and the outgoing ``stage.moved`` events."""
    if not moves:
        return
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for m in moves:
        shapes.setdefault(tuple(sorted(m.client)), []).append(m.client)
    c = clients.c
    for keys, rows in shapes.items():
        values: dict[str, Any] = {k: bindparam(f"v_{k}") for k in keys if k != "id"}
        conn.execute(
            update(clients).where(c.id == bindparam("v_id")).values(**values),
            [{f"v_{k}": v for k, v in row.items()} for row in rows],
        )
    conn.execute(insert(interactions), _same_keys([m.event for m in moves]))
    conn.execute(insert(audit), [m.audit for m in moves])
    emit_sync(conn, [m.emitted for m in moves], now)


def _same_keys(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for one executemany: every row with every key (None where absent)."""
    listed = list(rows)
    keys = {k for row in listed for k in row}
    return [{k: row.get(k) for k in keys} for row in listed]
