"""The reads of the web console's client page: the card with its stage history,
business events, ratings and one page of the timeline, in one read unit of work.

Synchronous, over one :class:`~sqlalchemy.engine.Connection` (``Database.run_read``:
one hop to a reader thread on SQLite). Each list is bounded and read from the
client's own index, newest first, so that the busiest client's page costs what a
quiet one's does.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BindParameter, Select, bindparam, select, type_coerce
from sqlalchemy.engine import Connection

from storage.read import (
    NEWEST_OF_CLIENT,
    ClientRecord,
    ClientSummary,
    IdentityView,
    InteractionView,
    read_card,
)
from storage.tables import (
    business_events,
    clients,
    identities,
    interactions,
    managers,
    merges,
    ratings,
)

HISTORY = 20  # stage moves, business events and ratings shown on the card


@dataclass(frozen=True, slots=True)
class StageMoveView:
    at: datetime
    old: str | None
    new: str
    who: str | None
    text: str


@dataclass(frozen=True, slots=True)
class EventView:
    id: int
    kind: str
    at: datetime
    amount: Decimal | None
    currency: str | None
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RatingView:
    id: int
    conversation_id: int
    manager: str | None
    channel: str
    score: int | None
    comment: str | None
    asked_at: datetime
    rated_at: datetime | None


@dataclass(frozen=True, slots=True)
class TimelinePage:
    """Interactions newest first; ``older``: the ``before`` of the next page, if any."""

    items: tuple[InteractionView, ...]
    older: int | None


@dataclass(frozen=True, slots=True)
class MergeView:
    """A merge into the client not undone: ``merged_id`` went into ``kept_id``."""

    id: int
    kept_id: int
    merged_id: int
    merged_name: str | None
    actor: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ClientPage:
    card: ClientRecord
    stages: tuple[StageMoveView, ...]
    events: tuple[EventView, ...]
    ratings: tuple[RatingView, ...]
    timeline: TimelinePage
    merges: tuple[MergeView, ...] = ()


def read_client_page(
    conn: Connection, client_id: int, *, before: int | None = None, page: int = 50
) -> ClientPage | None:
    """The client's page (``None`` when there is no such client); the timeline's
    page holds the ``page`` newest interactions written before the id ``before``."""
    card = read_card(conn, client_id)
    if card is None:
        return None
    return ClientPage(
        card=card,
        stages=tuple(_stages(conn, client_id)),
        events=tuple(
            EventView(i, kind, at, amount, currency, dict(fields or {}))
            for i, kind, at, amount, currency, fields in conn.execute(
                _EVENTS, {"client_id": client_id, "last": HISTORY}
            )
        ),
        ratings=tuple(
            RatingView(*row)
            for row in conn.execute(_RATINGS, {"client_id": client_id, "last": HISTORY})
        ),
        timeline=read_timeline_page(conn, client_id, before=before, page=page),
        merges=tuple(read_merges(conn, client_id)),
    )


def read_merges(conn: Connection, client_id: int) -> list[MergeView]:
    """The merges into the client that stand (not undone), newest first."""
    g, c = merges.c, clients.c
    rows = conn.execute(
        select(g.id, g.kept_id, g.merged_id, c.name, g.actor, g.at)
        .join_from(merges, clients, c.id == g.merged_id)
        .where(g.kept_id == client_id, g.undone_at.is_(None))
        .order_by(g.id.desc())
        .limit(HISTORY)
    )
    return [MergeView(*row) for row in rows]


def read_summaries(conn: Connection, client_ids: Collection[int]) -> dict[int, ClientSummary]:
    """The named clients as the search lists them (merged ones too), by id."""
    if not client_ids:
        return {}
    c, m, i = clients.c, managers.c, identities.c
    wanted = sorted(set(client_ids))
    found: dict[int, list[IdentityView]] = {n: [] for n in wanted}
    for client_id, kind, value in conn.execute(
        select(i.client_id, i.kind, i.value).where(i.client_id.in_(wanted)).order_by(i.id)
    ):
        found[client_id].append(IdentityView(kind, value))
    rows = conn.execute(
        select(c.id, c.name, c.stage, m.name)
        .join_from(clients, managers, c.owner_id == m.id, isouter=True)
        .where(c.id.in_(wanted))
    )
    return {
        row[0]: ClientSummary(row[0], row[1], row[2], row[3], tuple(found[row[0]])) for row in rows
    }


def read_timeline_page(
    conn: Connection, client_id: int, *, before: int | None = None, page: int = 50
) -> TimelinePage:
    """The ``page`` newest interactions of the client written before ``before``
    (from the newest when ``None``), read backwards along the client's index."""
    values = {"client_id": client_id, "last": page + 1}
    statement = _NEWEST if before is None else _OLDER
    if before is not None:
        values["before"] = before
    rows = [InteractionView(*row) for row in conn.execute(statement, values)]
    older = rows[page - 1].id if len(rows) > page else None
    return TimelinePage(tuple(rows[:page]), older)


def _stages(conn: Connection, client_id: int) -> list[StageMoveView]:
    found = conn.execute(_STAGES, {"client_id": client_id, "last": HISTORY})
    return [
        StageMoveView(at, move.get("from"), str(move["to"]), author, text)
        for at, author, text, extras in found
        if isinstance(move := (extras or {}).get("stage_move"), dict) and move.get("to")
    ]


def _statements() -> tuple[Select[Any], Select[Any], Select[Any], Select[Any], Select[Any]]:
    t, e, r, m = interactions.c, business_events.c, ratings.c, managers.c
    client: BindParameter[int] = bindparam("client_id")
    newest = NEWEST_OF_CLIENT  # the timeline's own newest page, as the admin API reads it
    older = newest.where(t.id < bindparam("before"))
    # Every move is written with extras["stage_move"] (hub.clients.stages), which
    # the reports count too.
    moved = type_coerce(t.extras, JSON)[("stage_move", "to")].as_string()
    stages = (
        select(t.at, t.author, t.text, t.extras)
        .where(t.client_id == client, t.direction == "event", moved.is_not(None))
        .order_by(t.id.desc())
        .limit(bindparam("last"))
    )
    events = (
        select(e.id, e.kind, e.at, e.amount, e.currency, e.fields)
        .where(e.client_id == client)
        .order_by(e.at.desc(), e.id.desc())
        .limit(bindparam("last"))
    )
    rated = (
        select(r.id, r.conversation_id, m.name, r.channel, r.score, r.comment, r.asked_at)
        .add_columns(r.rated_at)
        .join_from(ratings, managers, r.manager_id == m.id, isouter=True)
        .where(r.client_id == client)
        .order_by(r.asked_at.desc(), r.id.desc())
        .limit(bindparam("last"))
    )
    return newest, older, stages, events, rated


_NEWEST, _OLDER, _STAGES, _EVENTS, _RATINGS = _statements()
