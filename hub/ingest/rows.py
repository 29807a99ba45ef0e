"""The rows a batch writes for its messages: clients, conversations, interactions, events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub.ingest.records import Entry, Routed
from hub.kernel.texts import text
from hub.kernel.types import Channel, Direction, InboundMessage
from storage.ingest import InteractionRow

IN, OUT, EVENT = Direction.IN.value, Direction.OUT.value, Direction.EVENT.value
CHANNEL = {c: c.value for c in Channel}  # plain strings for the rows, without enum lookups


def clip(text: str | None, limit: int) -> str | None:
    """Fit a header-like field in its column; the full text stays in the message."""
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"


def unknown_sender(m: InboundMessage, language: str) -> str:
    """The name of the client a message with no readable sender is logged on."""
    return text("unknown_sender", language, mailbox=m.account)


def new_client(m: InboundMessage, now: datetime, language: str) -> dict[str, Any]:
    """The client a sender nobody holds becomes; ``language`` (the staff's) names
    the one a message without any identity is logged on."""
    name = m.identities[0].display_name if m.identities else unknown_sender(m, language)
    return {
        "name": clip(name, 300),
        "language": m.language,
        "source": clip(m.extras.get("source"), 300) if m.extras else None,
        "stage": "prospect",
        "owner_id": None,
        "opted_out": False,
        "created_at": now,
        "updated_at": now,
    }


def new_conversation(m: InboundMessage, client_id: int, now: datetime) -> dict[str, Any]:
    """A request the message opens; ``priority`` and ``assignee_id`` follow routing."""
    return {
        "client_id": client_id,
        "channel": m.channel.value,
        "account": m.account,
        "status": "open",
        "subject": clip(m.subject, 500),
        "priority": "normal",
        "created_at": now,
        "updated_at": now,
    }


def inbound(entry: Entry, language: str) -> InteractionRow:
    """The message itself, as logged on its client and conversation; its author
    is the sender's name or address, for one without a sender what its ``From``
    said, else the name of its client (in ``language``)."""
    m = entry.message
    if m.identities:
        first = m.identities[0]
        author = first.display_name or first.value
    else:
        author = (m.extras.get("from") if m.extras else None) or unknown_sender(m, language)
    extras: dict[str, Any] | None = dict(m.extras) if m.extras else None
    if extras and "confirmation" in extras:
        # Logged as its own auto-reply interaction; the request keeps only that it asked.
        extras["confirmation"] = True
    skipped = entry.pending.skipped
    if skipped:
        extras = extras or {}
        extras["attachments_skipped"] = skipped
    conv, rated = entry.conv, entry.rated
    if rated is not None:  # a comment on a rating: logged on the rated request
        extras = {**(extras or {}), "rating_comment": rated.id}
    return InteractionRow(
        entry.client_id,
        conv.id if conv is not None else rated.conversation_id if rated is not None else None,
        IN,
        CHANNEL[m.channel],
        m.account,
        m.external_id,
        clip(author, 300),
        clip(m.subject, 500),
        m.text,
        m.html,
        extras,
        m.received_at,
        None,
    )


def routing_event(routed: Routed, now: datetime) -> InteractionRow:
    """A routing decision, logged as an ``event`` on the conversation."""
    text = f"routed: {routed.decision.reason}"
    return InteractionRow(
        routed.entry.client_id,
        routed.conv.id,
        EVENT,
        None,
        None,
        None,
        "hub",
        None,
        text,
        None,
        None,
        now,
        None,
    )
