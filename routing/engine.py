"""The default routing decision: owner first, else the least loaded available manager.

Pure code over a :class:`Snapshot` taken by the caller; no I/O, so a decision is
fast and testable. The rules engine of the routing issue extends this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from routing.hours import Hours


@dataclass(frozen=True, slots=True)
class ManagerInfo:
    id: int
    name: str
    role: str = "manager"
    hours: Hours | None = None
    timezone: str = "UTC"
    capacity: int = 20
    load: int = 0
    away: bool = False

    def available(self, now: datetime) -> bool:
        if self.away or self.role == "marketer":
            return False
        if self.hours is None:
            return True
        return self.hours.contains(now.astimezone(ZoneInfo(self.timezone)))


@dataclass(slots=True)
class Snapshot:
    """Managers with their current open load, as read in the ingest transaction.

    ``assign`` updates loads so that one snapshot serves a whole batch.
    """

    managers: list[ManagerInfo] = field(default_factory=list)

    def add_load(self, manager_id: int) -> None:
        for i, m in enumerate(self.managers):
            if m.id == manager_id:
                self.managers[i] = ManagerInfo(
                    m.id, m.name, m.role, m.hours, m.timezone, m.capacity, m.load + 1, m.away
                )
                return


@dataclass(frozen=True, slots=True)
class Request:
    channel: str
    account: str
    client_owner_id: int | None
    new_client: bool
    text: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    assignee_id: int | None
    reason: str


def decide(snapshot: Snapshot, request: Request, now: datetime) -> Decision:
    available = [m for m in snapshot.managers if m.available(now)]
    if request.client_owner_id is not None:
        for m in available:
            if m.id == request.client_owner_id and m.load < m.capacity:
                return Decision(m.id, f"owner {m.name}")
    free = [m for m in available if m.load < m.capacity]
    if not free:
        return Decision(None, "nobody available: queued")
    best = min(free, key=lambda m: (m.load / max(m.capacity, 1), m.load, m.id))
    return Decision(best.id, f"least loaded: {best.name}")
