"""The SLA deadlines a batch opens: first response and resolution for a new
request, next response when the client writes again after an answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from hub.ingest.records import Conv, Routed
from routing.sla import Policy, choose, timing
from storage import sla as sla_q


def open_deadlines(
    conn: Connection,
    policies: tuple[Policy, ...],
    new: list[Conv],
    joined: dict[int, Conv],
    routed: list[Routed],
    now: datetime,
) -> None:
    """Deadlines for the conversations the batch opened (``new``) and for the
    existing ones its messages joined (``joined``, by id), in two statements."""
    opened = _Opened(now)
    named = {r.conv: r.decision.sla for r in routed}  # the policy a matched rule names
    for conv in new:
        assert conv.row is not None
        policy = choose(policies, named.get(conv), conv.row["priority"], conv.row["channel"])
        if policy is not None:
            opened.add(conv, policy, ("first_response", "resolution"))
    by_name = {p.name: p for p in policies}
    for conv_id, info in sla_q.of_conversations(conn, list(joined)).items():
        policy = by_name.get(info.policy)
        if policy is None:
            continue
        kinds = []
        if not info.kinds & {"first_response", "next_response"}:
            kinds.append("next_response")
        if "resolution" not in info.kinds:
            kinds.append("resolution")
        opened.add(joined[conv_id], policy, tuple(kinds))
    sla_q.add(conn, opened.rows)
    sla_q.set_due(conn, opened.due)


class _Opened:
    """The deadline rows to add, and each conversation's response deadline."""

    __slots__ = ("due", "now", "rows")

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.rows: list[dict[str, Any]] = []
        self.due: dict[int, datetime] = {}

    def add(self, conv: Conv, policy: Policy, kinds: tuple[str, ...]) -> None:
        now = self.now
        for kind in kinds:
            steps = timing(policy, kind, now)
            if steps is None:
                continue
            self.rows.append(
                {
                    "conversation_id": conv.id,
                    "client_id": conv.client_id,
                    "policy": policy.name,
                    "kind": kind,
                    "started_at": now,
                    "remind_at": steps.remind_at,
                    "due_at": steps.due_at,
                    "reassign_at": steps.reassign_at,
                    "step": 0,
                    "next_at": steps.remind_at,
                    "status": "open",
                    "met_at": None,
                    "created_at": now,
                }
            )
            if kind != "resolution":
                self.due[conv.id] = steps.due_at
