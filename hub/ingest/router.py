"""Routing as one batch asks it: what it reads is read once for the whole batch.

The managers' snapshot (with their loads) is read on the first request to
route, the clients' profiles on the first rule that looks at them; each
decision adds to the snapshot's loads, so the batch shares requests out as a
stream of single messages would.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol

from sqlalchemy.engine import Connection

from hub.jobs.waiting import snapshot_of
from hub.kernel.types import InboundMessage
from routing import Decision, Request, Rules, Snapshot, decide
from storage import ingest as q


class RoutingSettings(Protocol):
    """What routing reads of the ingestor, at each batch (they may change between)."""

    rules: Rules
    needs_profile: bool  # whether a rule looks at the client's tags, stage or language
    timezone: str
    holidays: frozenset[date]
    last_given: dict[str, int]  # round robin, kept between batches


class Router:
    """The routing of one batch, inside its transaction."""

    def __init__(self, settings: RoutingSettings, conn: Connection, now: datetime) -> None:
        self.settings = settings
        self.conn = conn
        self.now = now
        self.clients: list[int] = []  # the batch's clients, whose profiles a rule may read
        self.snapshot: Snapshot | None = None
        self.profiles: dict[int, q.ClientProfile] | None = None
        self.telegram_ids: dict[int, int] = {}

    def decide(
        self, m: InboundMessage, client_id: int, owner_id: int | None, new_client: bool
    ) -> Decision:
        """Who takes the request ``m`` opens or renews, and what a matched rule adds."""
        if self.snapshot is None:
            self.snapshot = self._load_snapshot()
        profile = self._profile(client_id)
        request = Request(
            m.channel.value,
            m.account,
            owner_id,
            new_client,
            m.text,
            m.subject or "",
            m.language or (profile.language if profile else None),
            profile.tags if profile else frozenset(),
            profile.stage if profile else None,
        )
        decision = decide(self.snapshot, request, self.now, self.settings.rules)
        if decision.assignee_id is not None:
            self.snapshot.add_load(decision.assignee_id)
        return decision

    def telegram_id(self, manager_id: int) -> int:
        """A manager's private chat (read with the snapshot, or once when not)."""
        if manager_id not in self.telegram_ids:
            self.telegram_ids.update(q.manager_telegram_ids(self.conn))
        return self.telegram_ids[manager_id]

    def add_tags(self, tags: dict[int, tuple[str, ...]]) -> dict[int, set[str]]:
        """Give clients the tags matched rules add (client id -> tags), in one
        statement; the tags each client did not have (for the stage rules)."""
        if not tags:
            return {}
        # The batch's profiles, when a rule already read them, are still current:
        # nothing in the batch writes tags before this.
        current = self.profiles
        if current is None:
            current = q.client_profiles(self.conn, list(tags))
        merged, new = {}, {}
        for client_id, added in tags.items():
            old = current[client_id].tags if client_id in current else frozenset()
            if not set(added) <= old:
                merged[client_id] = sorted(old | set(added))
                new[client_id] = set(added) - old
        q.set_client_tags(self.conn, merged)
        return new

    def _profile(self, client_id: int) -> q.ClientProfile | None:
        """The client's tags, stage and language; read (for the whole batch) only
        when a rule looks at them."""
        if not self.settings.needs_profile:
            return None
        if self.profiles is None:
            self.profiles = q.client_profiles(self.conn, self.clients)
        return self.profiles.get(client_id)

    def _load_snapshot(self) -> Snapshot:
        rows = q.routing_managers(self.conn)
        self.telegram_ids = {r.id: r.telegram_id for r in rows}
        s = self.settings
        return snapshot_of(rows, s.timezone, s.holidays, s.last_given)
