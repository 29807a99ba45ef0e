"""The escalation of response deadlines (SLA), one round at a time.

Each open deadline walks at most three steps, each at its own time (computed
when the deadline was opened, in the policy's working time): before the
deadline the assignee is reminded; at the deadline it is missed — logged, and
the supervisors are told, in private and in the client's topic; after
``reassign_after`` the request goes to the least loaded other manager
available. An answer or a resolution meets the deadline and stops the walk.
Every step is an event on the client's record. A round claims the due steps
with SKIP LOCKED, so two instances never take the same step twice.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.delivery import events
from hub.delivery.outbox import Outgoing
from hub.jobs.waiting import Assigner
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.texts import text
from hub.kernel.types import Direction
from routing import Request, Rules, Snapshot, decide
from routing.sla import Policy
from storage import Database
from storage import desk as desk_q
from storage import ingest as ingest_q
from storage import sla as q

log = loggers.scheduler

_REASSIGN = Rules(default_strategy="least_loaded")


class Escalator:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        policies: tuple[Policy, ...],
        assigner: Assigner,
        *,
        staff_channel: str | None,
        language: str = "ru",
        timezone: str = "UTC",
    ) -> None:
        self.db = db
        self.clock = clock
        self.policies = {p.name: p for p in policies}
        self.assigner = assigner
        self.staff_channel = staff_channel
        self.language = language
        self.tz = ZoneInfo(timezone)
        self._snapshot: Snapshot | None = None  # the managers, during a round
        self._staff: q.Staff | None = None  # whom to tell, read once a round

    async def run(self) -> int:
        """One round; returns how many steps were taken."""
        now = self.clock.now()
        taken = 0
        self._snapshot = None
        self._staff = None
        async with self.db.write() as conn:
            for due in await q.claim_due(conn, now):
                if due.status == "resolved" or due.blocked:
                    await q.close(conn, due.id, now)
                    continue
                if due.step == 0:
                    await self._remind(conn, due, now)
                    await q.advance(conn, due.id, 1, due.due_at)
                elif due.step == 1:
                    await self._missed(conn, due, now)
                    await q.advance(conn, due.id, 2, due.reassign_at)
                else:
                    await self._reassign(conn, due, now)
                    await q.advance(conn, due.id, 3, None)
                taken += 1
        if taken:
            loggers.event(log, "sla.steps", taken=taken)
        return taken

    # -- the steps --------------------------------------------------------------

    async def _remind(self, conn: AsyncConnection, due: q.Due, now: datetime) -> None:
        message = text("sla_soon", self.language, kind=self._kind(due.kind), due=self._at(due))
        await self._event(conn, due, message, now)
        if due.assignee_id is not None:
            await self._tell(conn, due, [due.assignee_id], message, now, step=1)
        else:  # nobody has it yet: the staff see it in the client's topic
            await self._topic(conn, due, message, now, step=1)

    async def _missed(self, conn: AsyncConnection, due: q.Due, now: datetime) -> None:
        message = text(
            "sla_missed",
            self.language,
            kind=self._kind(due.kind),
            due=self._at(due),
            policy=due.policy,
        )
        await self._event(conn, due, message, now)
        policy = self.policies.get(due.policy)
        told = list(policy.supervisors) if policy and policy.supervisors else []
        if not told:
            told = (await self._whom(conn)).supervisors
        await self._tell(conn, due, told, message, now, step=2)
        await self._topic(conn, due, message, now, step=2)
        await events.missed(
            conn,
            client_id=due.client_id,
            conversation_id=due.conversation_id,
            kind=due.kind,
            policy=due.policy,
            due_at=due.due_at,
            now=now,
        )

    async def _reassign(self, conn: AsyncConnection, due: q.Due, now: datetime) -> None:
        if self._snapshot is None:  # read once a round, then kept up to date
            self._snapshot = self.assigner.snapshot(await conn.run_sync(ingest_q.routing_managers))
        snapshot = self._snapshot
        skip = [due.assignee_id] if due.assignee_id is not None else []
        request = Request("", "", None, False)
        decision = decide(snapshot, request, now, _REASSIGN, skip=skip)
        if decision.assignee_id is None:
            await self._event(conn, due, text("sla_nobody", self.language), now)
            return
        await desk_q.set_conversations(
            conn, [due.conversation_id], now, assignee_id=decision.assignee_id
        )
        snapshot.add_load(decision.assignee_id)
        assignee = snapshot.by_id(decision.assignee_id)
        name = assignee.name if assignee is not None else str(decision.assignee_id)
        message = text("sla_reassigned", self.language, manager=name)
        await events.assigned(
            conn, due.client_id, [due.conversation_id], manager=name, by="sla", now=now
        )
        await self._event(conn, due, message, now)
        await self._tell(conn, due, [decision.assignee_id], message, now, step=3, kind="assigned")

    # -- helpers -------------------------------------------------------------------

    def _kind(self, kind: str) -> str:
        return text(f"sla_{kind}", self.language)

    def _at(self, due: q.Due) -> str:
        return due.due_at.astimezone(self.tz).strftime("%d.%m %H:%M")

    async def _event(self, conn: AsyncConnection, due: q.Due, message: str, now: datetime) -> None:
        await desk_q.event(
            conn,
            {
                "client_id": due.client_id,
                "conversation_id": due.conversation_id,
                "direction": Direction.EVENT.value,
                "author": "hub",
                "text": message,
                "at": now,
            },
        )

    async def _tell(
        self,
        conn: AsyncConnection,
        due: q.Due,
        manager_ids: list[int],
        message: str,
        now: datetime,
        *,
        step: int,
        kind: str = "alert",
    ) -> None:
        if self.staff_channel is None:
            return
        telegram_ids = (await self._whom(conn)).telegram_ids
        for manager_id in dict.fromkeys(manager_ids):
            if manager_id in telegram_ids:
                await self._enqueue(
                    conn,
                    due,
                    str(telegram_ids[manager_id]),
                    kind,
                    message,
                    now,
                    f"{step}:{manager_id}",
                )

    async def _whom(self, conn: AsyncConnection) -> q.Staff:
        if self._staff is None:
            self._staff = await q.staff(conn)
        return self._staff

    async def _topic(
        self, conn: AsyncConnection, due: q.Due, message: str, now: datetime, *, step: int
    ) -> None:
        if self.staff_channel is not None:
            await self._enqueue(conn, due, "staff", "alert", message, now, f"{step}:topic")

    async def _enqueue(
        self,
        conn: AsyncConnection,
        due: q.Due,
        recipient: str,
        kind: str,
        message: str,
        now: datetime,
        key: str,
    ) -> None:
        assert self.staff_channel is not None
        alert = Outgoing(
            idempotency_key=f"sla:{due.id}:{key}",
            channel=self.staff_channel,
            account="staff",
            recipient=recipient,
            kind=kind,
            text=message,
            at=now,
            client_id=due.client_id,
            conversation_id=due.conversation_id,
        )
        await desk_q.enqueue(conn, alert.row())
