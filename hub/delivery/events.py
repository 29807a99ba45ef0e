"""The outgoing events of what staff and the scheduled rounds do to requests:
answered, assigned, resolved, a deadline missed. Each is queued in its cause's
transaction (``storage.webhooks.emit``: nothing but one small SELECT when no
webhook subscribes); the ingest batch queues its own (``hub.ingest.events``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from storage import webhooks as q


async def answered(
    conn: AsyncConnection,
    *,
    client_id: int,
    conversation_id: int,
    interaction_id: int,
    channel: str,
    text: str,
    manager: str,
    now: datetime,
    assigned: bool = False,
) -> None:
    """A manager's answer queued to the client: ``message.out``, then
    ``conversation.answered``; ``assigned``: the request was nobody's and is
    now theirs (``conversation.assigned`` first)."""
    ids = {"client_id": client_id, "conversation_id": conversation_id}
    events = (
        [
            q.Emitted(
                "conversation.assigned", client_id, now, {**ids, "manager": manager, "by": "answer"}
            )
        ]
        if assigned
        else []
    )
    events.append(
        q.Emitted(
            "message.out",
            client_id,
            now,
            {
                **ids,
                "interaction_id": interaction_id,
                "channel": channel,
                "text": q.clip(text),
                "manager": manager,
            },
        )
    )
    events.append(
        q.Emitted(
            "conversation.answered",
            client_id,
            now,
            {**ids, "interaction_id": interaction_id, "manager": manager},
        )
    )
    await q.emit(conn, events, now)


async def assigned(
    conn: AsyncConnection,
    client_id: int,
    conversation_ids: Sequence[int],
    *,
    manager: str,
    by: str,
    now: datetime,
) -> None:
    """Requests given to ``manager``; ``by``: take, accept, transfer, routing, sla."""
    await q.emit(
        conn,
        [
            q.Emitted(
                "conversation.assigned",
                client_id,
                now,
                {"client_id": client_id, "conversation_id": c, "manager": manager, "by": by},
            )
            for c in conversation_ids
        ],
        now,
    )


async def resolved(
    conn: AsyncConnection,
    client_id: int,
    conversation_ids: Sequence[int],
    *,
    manager: str | None,
    now: datetime,
) -> None:
    """Requests resolved (``manager`` None: by the hub itself)."""
    await q.emit(
        conn,
        [
            q.Emitted(
                "conversation.resolved",
                client_id,
                now,
                {"client_id": client_id, "conversation_id": c, "manager": manager},
            )
            for c in conversation_ids
        ],
        now,
    )


async def missed(
    conn: AsyncConnection,
    *,
    client_id: int,
    conversation_id: int,
    kind: str,
    policy: str,
    due_at: datetime,
    now: datetime,
) -> None:
    """A response deadline (SLA) passed unmet."""
    await q.emit(
        conn,
        [
            q.Emitted(
                "deadline.missed",
                client_id,
                now,
                {
                    "client_id": client_id,
                    "conversation_id": conversation_id,
                    "deadline": kind,
                    "policy": policy,
                    "due_at": due_at.isoformat(),
                },
            )
        ],
        now,
    )
