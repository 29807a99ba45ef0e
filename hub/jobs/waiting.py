"""Waiting requests are given out as soon as somebody can take them.

A request nobody could take when it came (everybody away, off duty or full)
waits unassigned; an offered one ("all", "queue") waits for a manager to
accept. :func:`give_out` runs the routing again for each waiting request, from
the scheduler, and:

- assigns it when the decision names a manager (told in private, logged);
- for ``queue``: when the current offer is older than the accept timeout, offers
  it to the next manager in the pool's order (round again once all were asked);
- for ``all``: offers it to managers who became available since.

Each step is an event on the client's record with the decision's reason. The
round takes its conversations with SKIP LOCKED, so two instances never give out
the same request twice.
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.delivery import events
from hub.delivery.outbox import Outgoing
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.types import Direction
from routing import Decision, ManagerInfo, Request, Rules, Snapshot, decide
from routing.hours import Hours, parse_hours
from storage import Database
from storage import assign as q
from storage import desk as desk_q
from storage import ingest as ingest_q

log = loggers.scheduler


@functools.lru_cache(maxsize=256)
def _hours(text: str) -> Hours:
    return parse_hours(text)


def snapshot_of(
    rows: list[ingest_q.ManagerRow],
    timezone: str,
    holidays: frozenset[date],
    last_given: dict[str, int],
) -> Snapshot:
    """Routing's view of the managers (hours, time zone, skills, holidays, load)."""
    return Snapshot(
        [
            ManagerInfo(
                id=r.id,
                name=r.name,
                role=r.role,
                hours=_hours(r.hours) if r.hours else None,
                timezone=r.timezone or timezone,
                capacity=r.capacity,
                load=r.load,
                away=r.away,
                skills=frozenset((r.attrs or {}).get("skills") or ()),
                holidays=frozenset(
                    date.fromisoformat(d) for d in (r.attrs or {}).get("holidays") or ()
                ),
            )
            for r in rows
        ],
        holidays=holidays,
        last_given=last_given,
    )


class Assigner:
    """Holds what routing needs between rounds (rules, round-robin turns)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        rules: Rules,
        *,
        staff_channel: str | None,
        accept_timeout: timedelta = timedelta(minutes=10),
        timezone: str = "UTC",
        holidays: frozenset[date] = frozenset(),
        last_given: dict[str, int] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.rules = rules
        self.staff_channel = staff_channel
        self.accept_timeout = accept_timeout
        self.timezone = timezone
        self.holidays = holidays
        self.last_given = last_given if last_given is not None else {}

    async def give_out(self) -> int:
        """One round; returns how many requests were assigned or offered."""
        async with self.db.read() as conn:
            if not await q.any_waiting(conn):
                return 0  # the usual round: no writer lock taken for nothing
        now = self.clock.now()
        steps = 0
        async with self.db.write() as conn:
            rows = await conn.run_sync(ingest_q.routing_managers)
            snapshot = self.snapshot(rows)
            if not snapshot.anyone_available(now):
                return 0  # deciding hundreds of requests for nobody held the loop 100 ms
            waiting = await q.waiting(conn)
            if not waiting:
                return 0
            telegram_ids = {r.id: r.telegram_id for r in rows}
            offers = await q.offers(conn, [w.conversation_id for w in waiting])
            for w in waiting:
                if not snapshot.anyone_available(now):
                    break  # the round filled everybody up
                request = Request(
                    w.channel,
                    w.account,
                    w.owner_id,
                    False,
                    w.text,
                    w.subject or "",
                    w.language,
                    w.tags,
                    w.stage,
                )
                made = offers.get(w.conversation_id, [])
                decision = decide(snapshot, request, now, self.rules)
                if decision.strategy == "queue":
                    if made and now - made[-1][1] < self.accept_timeout:
                        continue  # the current offer still stands
                    asked = [manager_id for manager_id, _ in made]
                    decision = decide(snapshot, request, now, self.rules, skip=asked)
                    if not decision.offered and asked:
                        # Everybody was asked: round again, from the first.
                        decision = decide(snapshot, request, now, self.rules)
                        if decision.offered == (asked[-1],):
                            continue  # the only one left was just asked
                elif decision.strategy == "all":
                    asked_set = {manager_id for manager_id, _ in made}
                    new = tuple(m for m in decision.offered if m not in asked_set)
                    if not new:
                        continue
                    decision = dataclasses.replace(decision, offered=new)
                if decision.assignee_id is None and not decision.offered:
                    continue  # still nobody: no event every round
                await self._apply(conn, w, decision, now, snapshot, telegram_ids)
                steps += 1
        if steps:
            loggers.event(log, "routing.given_out", steps=steps)
        return steps

    def snapshot(self, rows: list[ingest_q.ManagerRow]) -> Snapshot:
        """The managers as routing sees them, from :func:`storage.ingest.routing_managers`."""
        return snapshot_of(rows, self.timezone, self.holidays, self.last_given)

    async def _apply(
        self,
        conn: AsyncConnection,
        w: q.Waiting,
        decision: Decision,
        now: datetime,
        snapshot: Snapshot,
        telegram_ids: dict[int, int],
    ) -> None:
        if decision.assignee_id is not None:
            if not await q.assign(conn, w.conversation_id, decision.assignee_id, now):
                return
            snapshot.add_load(decision.assignee_id)
            await q.set_owner_if_none(conn, w.client_id, decision.assignee_id)
            manager = snapshot.by_id(decision.assignee_id)
            await events.assigned(
                conn,
                w.client_id,
                [w.conversation_id],
                manager=manager.name if manager else str(decision.assignee_id),
                by="routing",
                now=now,
            )
            targets = [(decision.assignee_id, "assigned")]
        else:
            targets = [(manager_id, "offer") for manager_id in decision.offered]
        await desk_q.event(
            conn,
            {
                "client_id": w.client_id,
                "conversation_id": w.conversation_id,
                "direction": Direction.EVENT.value,
                "author": "hub",
                "text": f"routed: {decision.reason}",
                "at": now,
            },
        )
        if self.staff_channel is None:
            return
        stamp = now.isoformat(timespec="seconds")
        for manager_id, kind in targets:
            telegram_id = telegram_ids.get(manager_id)
            if telegram_id is None:
                continue
            notice = Outgoing(
                idempotency_key=f"{kind}:{w.conversation_id}:{manager_id}:{stamp}",
                channel=self.staff_channel,
                account="staff",
                recipient=str(telegram_id),
                kind=kind,
                text=w.text,
                at=now,
                subject=w.subject,
                client_id=w.client_id,
                conversation_id=w.conversation_id,
                interaction_id=w.interaction_id,
            )
            await desk_q.enqueue(conn, notice.row())
