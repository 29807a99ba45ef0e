"""Delivery status notifications (RFC 3464): a bounce of a message the hub sent
marks that message failed, logs it on the client and tells the staff, instead
of opening a conversation with a mailer daemon."""

from __future__ import annotations

from hub.delivery.dispatcher import DELIVERS_INTERACTION, report_failure
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.types import InboundMessage, IngestResult
from storage import Database
from storage import outbox as q

log = loggers.ingest


async def record_bounce(
    db: Database, clock: Clock, message: InboundMessage, *, staff_channel: str | None
) -> IngestResult | None:
    """Record a bounce of one of the hub's messages; None when it reports on a
    message the hub does not know (the caller logs it as an ordinary message)."""
    bounced = message.extras.get("bounced_message_id")
    if not isinstance(bounced, str) or not bounced:
        return None
    reason = str(message.extras.get("bounce_reason") or "bounced")[:500]
    channel = message.channel.value
    async with db.write() as conn:
        seen = await q.logged(conn, channel, message.external_id)
        sent = await q.find_sent(conn, channel, bounced)
        if sent is None or sent.client_id is None:
            return None
        if seen is not None:
            return IngestResult(seen[0], seen[1], sent.conversation_id, duplicate=True)
        delivers = sent.interaction_id if sent.kind in DELIVERS_INTERACTION else None
        await q.fail_sent(conn, sent.id, error=reason, interaction_id=delivers)
        event_id = await report_failure(
            conn,
            outbox_id=sent.id,
            channel=channel,
            client_id=sent.client_id,
            conversation_id=sent.conversation_id,
            reason=reason,
            now=clock.now(),
            staff_channel=staff_channel,
            report=(channel, message.external_id),
        )
    loggers.event(
        log,
        "ingest.bounce",
        outbox=sent.id,
        client=sent.client_id,
        interaction=event_id,
        reason=reason,
    )
    return IngestResult(event_id, sent.client_id, sent.conversation_id, duplicate=False)
