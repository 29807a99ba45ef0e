"""Outgoing events: queued for each webhook subscribed to their type, in the same
transaction as what they tell (so an event goes out exactly when its cause
committed), as outbox rows of channel and kind ``webhook``.

A row's ``recipient`` is the webhook's name, its ``text`` the JSON body, its
``extras`` the event's id and type. ``webhook_subscriptions`` mirrors
``[[webhooks]]`` (see :func:`sync`): an install without webhooks pays one small
SELECT per emitting transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import outbox, webhook_subscriptions

CHANNEL = "webhook"


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


def emit_sync(conn: Connection, events: Sequence[Emitted], now: datetime) -> int:
    """:func:`emit` for the paths that run a synchronous unit of work (ingest's
    batch, ``Database.run_write``)."""
    if not events:
        return 0
    subs = _by_type((str(r[0]), str(r[1])) for r in conn.execute(_subscribers_query()))
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
