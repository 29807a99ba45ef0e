"""Reminders fire once: a due reminder becomes a message to its manager and an
event on the client's record, in the transaction that claims it."""

from __future__ import annotations

from hub import loggers
from hub.clock import Clock
from hub.texts import text
from hub.types import Direction
from storage import Database
from storage import desk as desk_q
from storage import reminders as q

log = loggers.scheduler


async def fire_due(
    db: Database, clock: Clock, *, staff_channel: str | None, language: str = "ru"
) -> int:
    """Fire every due reminder; return how many fired."""
    now = clock.now()
    async with db.write() as conn:
        due = await q.claim_due(conn, now)
        for reminder in due:
            message = text("reminder", reminder.language or language, text=reminder.text or "—")
            if reminder.client_id is not None:
                await desk_q.event(
                    conn,
                    {
                        "client_id": reminder.client_id,
                        "conversation_id": reminder.conversation_id,
                        "direction": Direction.EVENT.value,
                        "author": "hub",
                        "text": message,
                        "at": now,
                    },
                )
            if staff_channel is not None and reminder.telegram_id is not None:
                await desk_q.enqueue(
                    conn,
                    {
                        "idempotency_key": f"reminder:{reminder.id}",
                        "channel": staff_channel,
                        "account": "staff",
                        "recipient": str(reminder.telegram_id),
                        "kind": "reminder",
                        "text": message,
                        "client_id": reminder.client_id,
                        "conversation_id": reminder.conversation_id,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    },
                )
    for reminder in due:
        loggers.event(
            log,
            "reminder.fired",
            reminder=reminder.id,
            client=reminder.client_id,
            manager=reminder.manager_id,
        )
    return len(due)
