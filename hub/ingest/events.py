"""The batch's outgoing events (``storage.webhooks``): each client it created
(``client.created``), each message it logged (``message.in``), each request
routing gave a manager (``conversation.assigned``), in that order per client.

Set-based like the rest of the batch: one SELECT of the subscriptions, and
nothing more when no webhook subscribes to any of these types.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.engine import Connection

from hub.ingest.records import Entry, Routed
from hub.ingest.router import Router
from storage import webhooks as q

TYPES = ("client.created", "message.in", "conversation.assigned")


def message_in(e: Entry) -> q.Emitted:
    m = e.message
    return q.Emitted(
        "message.in",
        e.client_id,
        m.received_at,
        {
            "client_id": e.client_id,
            "conversation_id": e.conv.id if e.conv is not None else None,
            "interaction_id": e.interaction_id,
            "channel": m.channel.value,
            "subject": m.subject,
            "text": q.clip(m.text),
        },
    )


def client_created(e: Entry, now: datetime) -> q.Emitted:
    m = e.message
    name = m.identities[0].display_name if m.identities else None
    return q.Emitted(
        "client.created",
        e.client_id,
        now,
        {"client_id": e.client_id, "name": name, "channel": m.channel.value},
    )


def assigned(r: Routed, router: Router, now: datetime) -> q.Emitted | None:
    """A routing decision that gave the request a manager (None: it waits)."""
    manager_id = r.decision.assignee_id
    if manager_id is None:
        return None
    manager = router.snapshot.by_id(manager_id) if router.snapshot is not None else None
    return q.Emitted(
        "conversation.assigned",
        r.entry.client_id,
        now,
        {
            "client_id": r.entry.client_id,
            "conversation_id": r.conv.id,
            "manager": manager.name if manager is not None else None,
            "by": "routing",
        },
    )


def emit(
    conn: Connection,
    fresh: Sequence[Entry],
    routed: Sequence[Routed],
    new_clients: set[int],
    router: Router,
    now: datetime,
) -> None:
    """Queue the batch's events for their subscribers (after the log is written:
    the messages' interaction ids are known)."""
    subs = q.subscribers_sync(conn)
    wanted = {t for t in TYPES if q.wants(subs, t)}
    if not wanted:
        return
    by_entry: dict[int, list[Routed]] = {}
    if "conversation.assigned" in wanted:
        for r in routed:
            by_entry.setdefault(id(r.entry), []).append(r)
    events: list[q.Emitted] = []
    announced: set[int] = set()
    for e in fresh:
        if e.client_id in new_clients and e.client_id not in announced:
            announced.add(e.client_id)
            if "client.created" in wanted:
                events.append(client_created(e, now))
        if "message.in" in wanted:
            events.append(message_in(e))
        for r in by_entry.get(id(e), ()):
            event = assigned(r, router, now)
            if event is not None:
                events.append(event)
    q.emit_sync(conn, events, now, subs)
