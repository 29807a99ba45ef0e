"""Outgoing events: queued for each webhook subscribed to their type, in the same
transaction as what they tell (so an event goes out exactly when its cause
committed), as outbox rows of channel and kind ``webhook``.

A row's ``recipient`` is the webhook's name, its ``text`` the JSON body, its
``extras`` the event's id and type. ``webhook_subscriptions`` mirrors
``[[webhooks]]`` (see :func:`sync`): an install without webhooks pays one small
SELECT per emitting transaction.

Order per client: until it is sent, a row's ``external_id`` holds its queue key
(:func:`queue_key`: client and webhook), which the claim (``storage.outbox``)
looks up through ``ix_outbox_external`` (channel, external_id) to hold a row back
while an earlier one of its queue is still to go. A receiver gives no id of its
own, so the send clears the key, and the index holds only the rows still queued
or parked. A row that failed for good (``failed``) is *parked*: listed, counted,
and replayed on demand (:func:`parked`, :func:`replay`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import outbox, webhook_subscriptions

CHANNEL = "webhook"
ERASED = "[erased]"  # storage.privacy's tombstone: an erased body is never replayed
UNCONFIGURED = "its webhook is no longer in the config ([[webhooks]])"


TEXT_LIMIT = 4000  # characters of a message's text an event carries


def clip(text: str | None) -> str | None:
    """A message's text as an event carries it: at most :data:`TEXT_LIMIT` characters."""
    return text if text is None or len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def queue_key(webhook: str, client_id: int | None) -> str | None:
    """What a row's delivery is ordered by while it waits: its client's events to
    one webhook go out one after another. None (no order) for an event of no client."""
    return None if client_id is None else f"{client_id}:{webhook}"


@dataclass(frozen=True, slots=True)
class Emitted:
    """One event: its type (``message.in`` …), the client it is about (orders its
    delivery), when it happened and its data."""

    type: str
    client_id: int | None
    at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


def body(event_id: str, event: Emitted) -> str:
    """The JSON body every receiver gets (``../shared/INTERFACE.md``)."""
    return json.dumps(
        {"id": event_id, "type": event.type, "at": event.at.isoformat(), "data": event.data},
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )


def _subscribers_query() -> Select[Any]:
    s = webhook_subscriptions.c
    return select(s.webhook, s.type)


def _by_type(rows: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for webhook, type_ in rows:
        found.setdefault(type_, []).append(webhook)
    return found


async def subscribers(conn: AsyncConnection) -> dict[str, list[str]]:
    """Webhook names by the event type they take (``*``: every type)."""
    return _by_type((str(r[0]), str(r[1])) for r in await conn.execute(_subscribers_query()))


def subscribers_sync(conn: Connection) -> dict[str, list[str]]:
    """:func:`subscribers` in a synchronous unit of work."""
    return _by_type((str(r[0]), str(r[1])) for r in conn.execute(_subscribers_query()))


def wants(subs: Mapping[str, list[str]], type_: str) -> bool:
    """Whether any webhook takes events of ``type_`` (build them only then)."""
    return bool(subs.get(type_) or subs.get("*"))


def _rows(
    subs: Mapping[str, list[str]], events: Sequence[Emitted], now: datetime
) -> list[dict[str, Any]]:
    """The outbox rows of ``events``: one per event and webhook subscribed to it."""
    rows: list[dict[str, Any]] = []
    for event in events:
        names = sorted({*subs.get(event.type, ()), *subs.get("*", ())})
        if not names:
            continue
        event_id = uuid.uuid4().hex
        text = body(event_id, event)
        rows.extend(
            {
                "idempotency_key": f"wh:{event_id}:{name}"[:200],
                "channel": CHANNEL,
                "account": "",
                "recipient": name,
                "kind": CHANNEL,
                "subject": None,
                "text": text,
                "extras": {"event_id": event_id, "type": event.type},
                "client_id": event.client_id,
                "external_id": queue_key(name, event.client_id),
                "conversation_id": None,
                "interaction_id": None,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for name in names
        )
    return rows


async def emit(conn: AsyncConnection, events: Sequence[Emitted], now: datetime) -> int:
    """Queue ``events`` for their subscribers; how many rows were queued."""
    if not events:
        return 0
    subs = await subscribers(conn)
    rows = _rows(subs, events, now) if subs else []
    if rows:
        await conn.execute(insert(outbox), rows)
    return len(rows)


def emit_sync(
    conn: Connection,
    events: Sequence[Emitted],
    now: datetime,
    subs: Mapping[str, list[str]] | None = None,
) -> int:
    """:func:`emit` for the paths that run a synchronous unit of work (ingest's
    batch, ``Database.run_write``); ``subs``: the subscribers, when already read."""
    if not events:
        return 0
    if subs is None:
        subs = subscribers_sync(conn)
    rows = _rows(subs, events, now) if subs else []
    if rows:
        conn.execute(insert(outbox), rows)
    return len(rows)


async def sync(conn: AsyncConnection, wanted: Iterable[tuple[str, Iterable[str]]]) -> None:
    """Make ``webhook_subscriptions`` what the config says: (name, event types) pairs."""
    rows = [{"webhook": name, "type": t} for name, types in wanted for t in sorted(set(types))]
    await conn.execute(delete(webhook_subscriptions))
    if rows:
        await conn.execute(insert(webhook_subscriptions), rows)


async def park_unconfigured(conn: AsyncConnection, names: Iterable[str]) -> int:
    """Park the rows still to go to a webhook the config no longer names."""
    o = outbox.c
    done = await conn.execute(
        update(outbox)
        .where(o.channel == CHANNEL, o.status == "pending", o.recipient.not_in(sorted(set(names))))
        .values(status="failed", last_error=UNCONFIGURED, claimed_until=None)
    )
    return int(done.rowcount or 0)


@dataclass(frozen=True, slots=True)
class Parked:
    """An event that failed for good: which, to which webhook, and why."""

    id: int
    webhook: str
    type: str
    event_id: str
    client_id: int | None
    attempts: int
    last_error: str | None
    created_at: datetime


def _parked() -> Any:
    o = outbox.c
    return (o.channel == CHANNEL) & (o.status == "failed") & (o.text != ERASED)


async def parked(
    conn: AsyncConnection, *, webhook: str | None = None, limit: int = 1000
) -> list[Parked]:
    """The parked events, oldest first; of one webhook when ``webhook`` is given."""
    o = outbox.c
    query = select(
        o.id, o.recipient, o.extras, o.client_id, o.attempts, o.last_error, o.created_at
    ).where(_parked())
    if webhook is not None:
        query = query.where(o.recipient == webhook)
    rows = await conn.execute(query.order_by(o.id).limit(limit))
    return [
        Parked(
            int(r.id),
            r.recipient,
            str((r.extras or {}).get("type", "")),
            str((r.extras or {}).get("event_id", "")),
            r.client_id,
            int(r.attempts),
            r.last_error,
            r.created_at,
        )
        for r in rows
    ]


async def replay(
    conn: AsyncConnection,
    now: datetime,
    *,
    ids: Sequence[int] = (),
    webhook: str | None = None,
) -> list[int]:
    """Queue parked events again, due now and never tried: those of ``ids``, or
    every one of ``webhook``. The ids requeued (a row not parked is left alone)."""
    o = outbox.c
    which = o.id.in_(list(ids)) if webhook is None else o.recipient == webhook
    done = await conn.execute(
        update(outbox)
        .where(_parked(), which)
        .values(
            status="pending",
            attempts=0,
            next_attempt_at=now,
            last_error=None,
            claimed_until=None,
            claimed_by=None,
        )
        .returning(o.id)
    )
    return sorted(int(r[0]) for r in done)


@dataclass(frozen=True, slots=True)
class Queued:
    """A webhook's events still to go (pending or being sent) and parked."""

    pending: int = 0
    parked: int = 0


async def counts(conn: AsyncConnection) -> dict[str, Queued]:
    """Each webhook's :class:`Queued` (only webhooks with any)."""
    o = outbox.c
    rows = await conn.execute(
        select(o.recipient, o.status, func.count())
        .where(
            o.channel == CHANNEL,
            o.status.in_(("pending", "sending", "failed")),
            (o.status != "failed") | (o.text != ERASED),
        )
        .group_by(o.recipient, o.status)
    )
    found: dict[str, Queued] = {}
    for webhook, status, n in rows:
        q = found.get(webhook, Queued())
        if status == "failed":
            q = Queued(q.pending, q.parked + int(n))
        else:
            q = Queued(q.pending + int(n), q.parked)
        found[webhook] = q
    return found
