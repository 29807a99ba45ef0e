"""Relationship stages: the ladder of the CRM literature, plus lapsed.

prospect → first-time buyer → repeat buyer → client → supporter → advocate →
partner; any stage may fall to lapsed (no contact for a long time). A move is
made by hand (``/stage``, the card's ⬆️/⬇️ buttons) or by a rule, and each is
logged on the client as an event ``stage: OLD → NEW (why)`` with who moved it
(the move itself in the event's ``extras["stage_move"]``, which the reports
count), and in the audit log.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.kernel.types import LADDER, LAPSED, STAGES, Direction
from storage import clients as q
from storage import desk as desk_q


def up(stage: str) -> str | None:
    """One rung up; a lapsed client comes back as a repeat buyer. None at the top."""
    if stage == LAPSED:
        return "repeat_buyer"
    i = LADDER.index(stage) if stage in LADDER else -1
    return LADDER[i + 1] if i + 1 < len(LADDER) else None


def down(stage: str) -> str | None:
    """One rung down; below the first rung is lapsed. None when already lapsed."""
    if stage == LAPSED:
        return None
    i = LADDER.index(stage) if stage in LADDER else 0
    return LADDER[i - 1] if i > 0 else LAPSED


def parse(text: str) -> str | None:
    stage = text.strip().lower().replace(" ", "_").replace("-", "_")
    return stage if stage in STAGES else None


def note(old: str, new: str, why: str) -> str:
    """The event text of a move, for people (the reports read the move's extras)."""
    return f"stage: {old} → {new} ({why})"


async def move(
    conn: AsyncConnection,
    client_id: int,
    old: str,
    new: str,
    *,
    who: str,
    why: str,
    now: datetime,
    conversation_id: int | None = None,
    actor: str | None = None,
    channel: str | None = None,
    external_id: str | None = None,
) -> None:
    """Set the stage, log the move on the client (``who`` as the event's author)
    and in the audit log (``actor``, by default ``who``: the audit log names a
    member of staff by ``storage.desk.staff_actor``). ``channel`` and
    ``external_id``: the command that moved it, so that a redelivered one is
    recognized."""
    await q.update_client(conn, client_id, {"stage": new, "updated_at": now})
    await desk_q.event(
        conn,
        {
            "client_id": client_id,
            "conversation_id": conversation_id,
            "direction": Direction.EVENT.value,
            "author": who,
            "text": note(old, new, why),
            "extras": {"stage_move": {"from": old, "to": new, "by": who, "why": why}},
            "channel": channel,
            "external_id": external_id,
            "at": now,
        },
    )
    await desk_q.audit(
        conn,
        {
            "at": now,
            "actor": actor or who,
            "action": "stage",
            "object_type": "client",
            "object_id": client_id,
            "details": {"from": old, "to": new, "why": why},
        },
    )
