"""What a batch tells the staff, as outbox rows written with its messages.

Each message is mirrored to the staff group; the conversation's manager is told
in private too (the group has a small message budget, a private chat its own):
a new assignee by ``assigned``, an existing one by ``notify``; managers a
request is offered to by ``offer``. A client who floods (:mod:`hub.ingest.flood`)
is shown once with a notice, past the minute's limit, and then not at all until
their minute is over; a blocked client's messages have no conversation, so
nothing here. Mail whose ``From`` could not be read comes with a warning: where
its sender was taken from, or that it has none and cannot be answered.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from hub.delivery.outbox import Outgoing
from hub.ingest.flood import Burst
from hub.ingest.records import Entry, Routed
from hub.ingest.rows import clip
from hub.kernel.texts import text
from hub.kernel.types import InboundMessage

OutboxRow = tuple[Any, ...]  # in ``storage.ingest.OUTBOX_COLUMNS`` order


def staff_notices(
    staff: str,
    fresh: list[Entry],
    routed: list[Routed],
    telegram_id: Callable[[int], int],
    now: datetime,
    burst: Burst,
    language: str,
) -> list[OutboxRow]:
    """The notices about the batch's messages, then those about its routing;
    ``telegram_id`` gives a manager's private chat, ``language`` is the staff's."""
    said = {e: _said(e.message, language) for e in fresh}
    out = _about_messages(staff, fresh, routed, telegram_id, now, burst, said)
    out.extend(_about_routing(staff, routed, telegram_id, now, said))
    return out


def _said(m: InboundMessage, language: str) -> str:
    """What a notice shows of a message: its text, after a warning when its
    sender could not be read from ``From``."""
    if m.identities:
        source = m.extras.get("sender_source") if m.extras else None
        if not source:
            return m.text
        warning = text("mirror_sender_fallback", language, source=source)
    else:
        warning = text("mirror_sender_unknown", language)
    return f"{warning}\n\n{m.text}" if m.text else warning


def _about_messages(
    staff: str,
    fresh: list[Entry],
    routed: list[Routed],
    telegram_id: Callable[[int], int],
    now: datetime,
    burst: Burst,
    said_of: dict[Entry, str],
) -> list[OutboxRow]:
    """The mirror of each request's message, and ``notify`` to the manager who
    already holds its conversation (one just assigned hears ``assigned`` instead);
    a flood's first message past the limit with its notice, the rest of it not."""
    assigned_now = {r.entry for r in routed if r.decision.assignee_id is not None}
    quiet, notices = burst.quiet, burst.notice
    out = []
    for entry in fresh:
        conv = entry.conv
        if conv is None or entry in quiet:
            continue  # service messages are not mirrored, nor a flood past its notice
        iid = entry.interaction_id
        said = said_of[entry]
        notice = notices.get(entry)
        if notice is not None:
            said = f"{notice}\n\n{said}" if said else notice
        out.append(_notice(staff, "staff", "mirror", entry, conv.id, f"mirror:{iid}", now, said))
        if conv.assignee_id is not None and entry not in assigned_now:
            recipient = str(telegram_id(conv.assignee_id))
            key = f"notify:{iid}"
            out.append(_notice(staff, recipient, "notify", entry, conv.id, key, now, said))
    return out


def _about_routing(
    staff: str,
    routed: list[Routed],
    telegram_id: Callable[[int], int],
    now: datetime,
    said_of: dict[Entry, str],
) -> list[OutboxRow]:
    """``offer`` to each manager a request is offered to; ``assigned`` to its assignee."""
    out = []
    for entry, conv, decision in routed:
        iid, said = entry.interaction_id, said_of[entry]
        for offered in decision.offered:
            key = f"offer:{conv.id}:{offered}:{iid}"
            recipient = str(telegram_id(offered))
            out.append(_notice(staff, recipient, "offer", entry, conv.id, key, now, said))
        assignee = decision.assignee_id
        if assignee is not None:
            key = f"assigned:{conv.id}:{assignee}:{iid}"
            recipient = str(telegram_id(assignee))
            out.append(_notice(staff, recipient, "assigned", entry, conv.id, key, now, said))
    return out


def _notice(
    staff: str,
    recipient: str,
    kind: str,
    entry: Entry,
    conversation_id: int,
    key: str,
    now: datetime,
    said: str,
) -> OutboxRow:
    """A notice about ``entry``'s message, saying ``said`` (its text, or that with a
    flood notice); ``key`` makes it idempotent."""
    m = entry.message
    return Outgoing(
        idempotency_key=key,
        channel=staff,
        account="staff",
        recipient=recipient,
        kind=kind,
        subject=clip(m.subject, 500),
        text=said,
        client_id=entry.client_id,
        conversation_id=conversation_id,
        interaction_id=entry.interaction_id,
        at=now,
    ).batch_row()
