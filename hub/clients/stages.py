"""Relationship stages: the ladder of the CRM literature, plus lapsed.

prospect → first-time buyer → repeat buyer → client → supporter → advocate →
partner; any stage may fall to lapsed (no contact for a long time). A move is
made by hand (``/stage``, the card's ⬆️/⬇️ buttons, the admin API) or by a rule
(:mod:`hub.clients.stage_rules`, the lapse round), and each is logged on the
client as an event ``stage: OLD → NEW (why)`` with who moved it (the move itself
in the event's ``extras["stage_move"]``, which the reports count), in the audit
log, and as the outgoing event ``stage.moved``. A move to lapsed keeps the stage
left (``clients.stage_before_lapse``), where a return goes back to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.kernel.types import LADDER, LAPSED, STAGES, Direction
from storage import stages as stages_q
from storage.webhooks import Emitted


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


@dataclass(frozen=True, slots=True)
class Move:
    """One stage move: from ``old`` to ``new``, by ``who`` (a person's name, or
    ``rule``), for ``why``. ``by_hand``: a person made it (a rule then leaves the
    client alone for the rest of the day). ``actor``: the audit log's name of who
    moved (default ``who``); ``channel`` and ``external_id``: the command that
    moved it, so that a redelivered one is recognized."""

    client_id: int
    old: str
    new: str
    who: str
    why: str
    by_hand: bool = True
    conversation_id: int | None = None
    actor: str | None = None
    channel: str | None = None
    external_id: str | None = None


def _client_values(m: Move, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"id": m.client_id, "stage": m.new, "updated_at": now}
    if m.by_hand:
        values["stage_by_hand_at"] = now
    if m.new == LAPSED and m.old != LAPSED:
        values["stage_before_lapse"] = m.old  # where a return takes them back to
    elif m.old == LAPSED and m.new != LAPSED:
        values["stage_before_lapse"] = None
    return values


def rows_of(m: Move, now: datetime) -> stages_q.MoveRows:
    """The rows a move writes (see :func:`storage.stages.write_moves`)."""
    said = {"from": m.old, "to": m.new, "by": m.who, "why": m.why}
    return stages_q.MoveRows(
        client=_client_values(m, now),
        event={
            "client_id": m.client_id,
            "conversation_id": m.conversation_id,
            "direction": Direction.EVENT.value,
            "author": m.who,
            "text": note(m.old, m.new, m.why),
            "extras": {"stage_move": said},
            "channel": m.channel,
            "external_id": m.external_id,
            "at": now,
        },
        audit={
            "at": now,
            "actor": m.actor or m.who,
            "action": "stage",
            "object_type": "client",
            "object_id": m.client_id,
            "details": {"from": m.old, "to": m.new, "why": m.why},
        },
        emitted=Emitted("stage.moved", m.client_id, now, {"client_id": m.client_id, **said}),
    )


def apply(conn: Connection, moves: Sequence[Move], now: datetime) -> None:
    """Write ``moves`` in the caller's (synchronous) unit of work."""
    stages_q.write_moves(conn, [rows_of(m, now) for m in moves], now)


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
    by_hand: bool = True,
) -> None:
    """Set the stage, log the move on the client (``who`` as the event's author)
    and in the audit log (``actor``, by default ``who``: the audit log names a
    member of staff by ``storage.desk.staff_actor``), and queue ``stage.moved``
    for the webhooks. ``by_hand`` (the default: the desk and the admin API) marks
    the day a person set the stage; the rounds and rules pass False."""
    done = Move(
        client_id, old, new, who, why, by_hand, conversation_id, actor, channel, external_id
    )
    await conn.run_sync(apply, [done], now)
