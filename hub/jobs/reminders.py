"""Reminders fire once: a due reminder becomes a message to its manager and an
event on the client's record, in the transaction that claims it.

:class:`ReminderLoop` sleeps until the next reminder falls due, never longer
than ``max_sleep`` (so that reminders another instance adds are seen), and fires
what is due; the database is the truth, so a reminder missed while the hub was
down fires on start. :func:`settle` is what a manager's button on a delivered
reminder does (done, snooze); :func:`scan` creates the automatic follow-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.delivery.outbox import Outgoing
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.texts import text
from hub.kernel.types import Direction, ManagerRef
from storage import Database
from storage import desk as desk_q
from storage import managers as managers_q
from storage import reminders as q
from storage.reminders import DueReminder

log = loggers.scheduler

SNOOZES = {"snooze_hour": timedelta(hours=1), "snooze_day": timedelta(days=1)}
SETTLE_ACTIONS = ("done", *SNOOZES)


def message_of(reminder: DueReminder, language: str) -> str:
    """What the manager is told, in their language."""
    if reminder.kind == "follow_up":
        return text("reminder_follow_up", language)
    if reminder.kind == "stage_contact":
        return text("reminder_stage", language, stage=reminder.text)
    return text("reminder", language, text=reminder.text or "—")


async def fire_batch(
    db: Database,
    clock: Clock,
    *,
    staff_channel: str | None,
    language: str = "ru",
    limit: int = 500,
) -> list[DueReminder]:
    """Claim and fire up to ``limit`` due reminders in one transaction; return them."""
    now = clock.now()
    async with db.write() as conn:
        due = await q.claim_due(conn, now, limit)
        events, messages = [], []
        for reminder in due:
            said = message_of(reminder, reminder.language or language)
            if reminder.client_id is not None:
                events.append(
                    {
                        "client_id": reminder.client_id,
                        "conversation_id": reminder.conversation_id,
                        "direction": Direction.EVENT.value,
                        "author": "hub",
                        "text": said,
                        "at": now,
                    }
                )
            if staff_channel is not None and reminder.telegram_id is not None:
                messages.append(
                    Outgoing(
                        # one delivery per firing: a snoozed reminder fires again
                        idempotency_key=f"reminder:{reminder.id}:{reminder.fired_count}",
                        channel=staff_channel,
                        account="staff",
                        recipient=str(reminder.telegram_id),
                        kind="reminder",
                        text=said,
                        at=now,
                        extras={"reminder": reminder.id, "fired": reminder.fired_count},
                        client_id=reminder.client_id,
                        conversation_id=reminder.conversation_id,
                    ).row()
                )
        await q.record_firing(conn, events, messages)
    for reminder in due:
        loggers.event(
            log,
            "reminder.fired",
            reminder=reminder.id,
            kind=reminder.kind,
            client=reminder.client_id,
            manager=reminder.manager_id,
        )
    return due


async def fire_due(
    db: Database, clock: Clock, *, staff_channel: str | None, language: str = "ru"
) -> int:
    """Fire every due reminder; return how many fired."""
    total = 0
    while True:
        fired = await fire_batch(db, clock, staff_channel=staff_channel, language=language)
        total += len(fired)
        if len(fired) < 500:
            return total


class ReminderLoop:
    """Fires reminders as they fall due: sleeps until the next one (at most
    ``max_sleep`` seconds), or until :meth:`wake` says a reminder was added."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        staff_channel: str | None,
        language: str = "ru",
        max_sleep: float = 1.0,
        batch: int = 500,
        on_fired: Callable[[Sequence[DueReminder]], None] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.staff_channel = staff_channel
        self.language = language
        self.max_sleep = max_sleep
        self.batch = batch
        self.on_fired = on_fired
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = self._done = 0  # passes begun and finished
        self._passed = asyncio.Condition()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reminders")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        self._wake.set()

    async def wake_and_wait(self) -> None:
        """Wake the loop and return once a pass begun after this call has finished:
        whatever was due then has fired (for tests, which move the clock, not sleep)."""
        target = self._started + 1
        self.wake()
        async with self._passed:
            await self._passed.wait_for(lambda: self._done >= target)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self._started += 1
            delay = await self._step()
            self._done += 1
            async with self._passed:
                self._passed.notify_all()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    async def _step(self) -> float:
        """Fire what is due; return how long to sleep before looking again."""
        try:
            fired = await fire_batch(
                self.db,
                self.clock,
                staff_channel=self.staff_channel,
                language=self.language,
                limit=self.batch,
            )
            if fired and self.on_fired is not None:
                self.on_fired(fired)
            if len(fired) == self.batch:
                return 0.0  # more may be due
            async with self.db.read() as conn:
                upcoming = await q.next_due(conn)
        except Exception as exc:  # the database may be down: look again shortly
            loggers.event(log, "reminders.failed", 30, error=loggers.redact(str(exc)[:200]))
            return self.max_sleep
        if upcoming is None:
            return self.max_sleep
        wait = (upcoming - self.clock.now()).total_seconds()
        # Due but not claimed here: another instance holds it; do not spin on it.
        return min(self.max_sleep, max(wait, 0.0 if fired else 0.01))


async def settle(
    db: Database,
    clock: Clock,
    *,
    reminder_id: int,
    fired_count: int,
    manager: ManagerRef,
    action: str,
    key: str,
    staff_channel: str,
    language: str,
    timezone: str,
) -> str:
    """A button on a delivered reminder: done, or snoozed by an hour or a day. Only
    the reminder's manager may; only once per delivery (a second press, or a press
    on an older delivery, answers without acting); logged on the client's record."""
    now = clock.now()
    async with db.write() as conn:
        done = await desk_q.event_text(conn, key, staff_channel)
        if done is not None:
            return done  # a redelivered press
        reminder = await q.get(conn, reminder_id)
        if reminder is None or action not in SETTLE_ACTIONS:
            return text("reminder_settled", language)
        if reminder.manager_id != manager.id:
            await desk_q.refused(
                conn,
                at=now,
                telegram_id=manager.telegram_id,
                what=f"reminder {action}",
                object_type="reminder",
                object_id=reminder_id,
                manager_id=manager.id,
            )
            return text("reminder_not_yours", language)
        # The answer says the new time in the manager's own zone, as /remind does.
        zone, _ = await managers_q.clock_of(conn, manager.id)
        press = _Press(fired_count, action, manager.name, now, language, zone or timezone)
        reply = await _apply(conn, reminder, press)
        if reply is None:
            return text("reminder_settled", language)
        if reminder.client_id is not None:
            await desk_q.event(
                conn,
                {
                    "client_id": reminder.client_id,
                    "conversation_id": reminder.conversation_id,
                    "direction": Direction.EVENT.value,
                    "author": manager.name,
                    "text": reply,
                    "channel": staff_channel,
                    "external_id": key,
                    "at": now,
                },
            )
    loggers.event(log, "reminder.settled", reminder=reminder_id, action=action, manager=manager.id)
    return reply


@dataclass(frozen=True, slots=True)
class _Press:
    """A manager's press on a delivered reminder's button (its ``fired`` count)."""

    fired: int
    action: str
    manager: str
    at: datetime
    language: str
    timezone: str


async def _apply(conn: AsyncConnection, reminder: q.ReminderRow, press: _Press) -> str | None:
    """Mark the reminder done or snoozed, if this delivery was not settled yet; the
    answer to the manager, or None."""
    what = _subject(reminder, press.language)
    if press.action == "done":
        if not await q.settle(conn, reminder.id, press.fired, status="done"):
            return None
        return text("reminder_done", press.language, text=what, manager=press.manager)
    due = press.at + SNOOZES[press.action]
    if not await q.settle(conn, reminder.id, press.fired, status="pending", due_at=due):
        return None
    when = due.astimezone(ZoneInfo(press.timezone)).strftime("%d.%m %H:%M")
    return text("reminder_snoozed", press.language, when=when, text=what, manager=press.manager)


def _subject(reminder: q.ReminderRow, language: str) -> str:
    """What the reminder is about, as the answer to a press names it."""
    if reminder.kind == "follow_up":
        return text("reminder_follow_up", language)
    if reminder.kind == "stage_contact":
        return text("reminder_stage", language, stage=reminder.text)
    return reminder.text or "—"


async def scan(
    db: Database,
    clock: Clock,
    *,
    follow_up_days: float,
    stages: Sequence[tuple[str, float]],
) -> int:
    """Create the automatic follow-ups now due; each once per occasion (its key)."""
    now = clock.now()
    created = 0
    async with db.write() as conn:
        if follow_up_days > 0:
            created += await q.add_follow_ups(
                conn, silent_since=now - timedelta(days=follow_up_days), now=now
            )
        for stage, every_days in stages:
            created += await q.add_stage_contacts(
                conn, stage=stage, quiet_since=now - timedelta(days=every_days), now=now
            )
    if created:
        loggers.event(log, "reminders.follow_ups", created=created)
    return created
