"""What a batch tells the staff, as outbox rows written with its messages.

Each message is mirrored to the staff group; the conversation's manager is told
in private too (the group has a small message budget, a private chat its own):
a new assignee by ``assigned``, an existing one by ``notify``; managers a
request is offered to by ``offer``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from hub.delivery.outbox import Outgoing
from hub.ingest.records import Entry, Routed
from hub.ingest.rows import clip

OutboxRow = tuple[Any, ...]  # in ``storage.ingest.OUTBOX_COLUMNS`` order


def staff_notices(
    staff: str,
    fresh: list[Entry],
    routed: list[Routed],
    telegram_id: Callable[[int], int],
    now: datetime,
) -> list[OutboxRow]:
    """The notices about the batch's messages, then those about its routing;
    ``telegram_id`` gives a manager's private chat."""
    out = _about_messages(staff, fresh, routed, telegram_id, now)
    out.extend(_about_routing(staff, routed, telegram_id, now))
    return out


def _about_messages(
    staff: str,
    fresh: list[Entry],
    routed: list[Routed],
    telegram_id: Callable[[int], int],
    now: datetime,
) -> list[OutboxRow]:
    """The mirror of each request's message, and ``notify`` to the manager who
    already holds its conversation (one just assigned hears ``assigned`` instead)."""
    assigned_now = {r.entry for r in routed if r.decision.assignee_id is not None}
    out = []
    for entry in fresh:
        conv = entry.conv
        if conv is None:
            continue  # service messages are not mirrored
        iid = entry.interaction_id
        out.append(_notice(staff, "staff", "mirror", entry, conv.id, f"mirror:{iid}", now))
        if conv.assignee_id is not None and entry not in assigned_now:
            recipient = str(telegram_id(conv.assignee_id))
            out.append(_notice(staff, recipient, "notify", entry, conv.id, f"notify:{iid}", now))
    return out


def _about_routing(
    staff: str, routed: list[Routed], telegram_id: Callable[[int], int], now: datetime
) -> list[OutboxRow]:
    """``offer`` to each manager a request is offered to; ``assigned`` to its assignee."""
    out = []
    for entry, conv, decision in routed:
        iid = entry.interaction_id
        for offered in decision.offered:
            key = f"offer:{conv.id}:{offered}:{iid}"
            out.append(_notice(staff, str(telegram_id(offered)), "offer", entry, conv.id, key, now))
        assignee = decision.assignee_id
        if assignee is not None:
            key = f"assigned:{conv.id}:{assignee}:{iid}"
            recipient = str(telegram_id(assignee))
            out.append(_notice(staff, recipient, "assigned", entry, conv.id, key, now))
    return out


def _notice(
    staff: str,
    recipient: str,
    kind: str,
    entry: Entry,
    conversation_id: int,
    key: str,
    now: datetime,
) -> OutboxRow:
    """A notice about ``entry``'s message; ``key`` makes it idempotent."""
    m = entry.message
    return Outgoing(
        idempotency_key=key,
        channel=staff,
        account="staff",
        recipient=recipient,
        kind=kind,
        subject=clip(m.subject, 500),
        text=m.text,
        client_id=entry.client_id,
        conversation_id=conversation_id,
        interaction_id=entry.interaction_id,
        at=now,
    ).batch_row()
