"""The outbox dispatcher: delivers every outbound message once, in time, within limits.

Rows are claimed with a lease (see ``storage.outbox``), sent through their
channel's ``send`` with the row's idempotency key, and the outcome recorded:
sent; a temporary failure retried with exponential backoff (the peer's
``retry_after`` honored); a permanent failure, or too many attempts, marks the
row and the interaction it delivers as failed, logs an event on the client and
tells the staff. Per-channel limits: over the whole account and per recipient.
A channel that keeps budgets of its own (``Budgeted``) is told at start what went
out in the last minute, a send claimed and not recorded counting as sent: a
restart, or a second instance, is no burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.config import DispatcherSection
from hub.delivery.outbox import Outgoing
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.errors import PermanentDeliveryError, TemporaryDeliveryError
from hub.kernel.ports import Budgeted, ChannelPort, RecentSend, RecentSends, RecentTopic
from hub.kernel.ratelimit import RateLimiter
from hub.kernel.types import SHARED_VIEW_KINDS, STAFF_KINDS, Direction, OutboundMessage
from storage import Database
from storage import outbox as q

log = loggers.dispatcher

# Kinds whose outbox row delivers its interaction (the reply itself); the rest
# (mirror, assigned, alerts) only point at the interaction they are about.
DELIVERS_INTERACTION = frozenset({"reply", "auto_reply", "campaign", "confirmation", "closed"})
# Kinds for other systems (outgoing events): one that fails for good is parked for a
# replay, not news for the client's record or the staff.
PARKED_KINDS = frozenset({"webhook"})
# Channels whose rows go out in order (a client's events to a webhook): a send
# recorded lets the next of its queue be claimed at once, not at the next poll.
ORDERED_CHANNELS = frozenset({"webhook"})
BUDGET_WINDOW_S = 61.0  # how far back sends count in a budget (Telegram's: a minute)


async def report_failure(
    conn: AsyncConnection,
    *,
    outbox_id: int,
    channel: str,
    client_id: int,
    conversation_id: int | None,
    reason: str,
    now: datetime,
    staff_channel: str | None,
    report: tuple[str, str] | None = None,
) -> int:
    """A message to a client could not be delivered: an ``event`` on the client's
    record (keyed by ``report``, (channel, external id) of a bounce, so that a
    redelivered bounce is recognized) and a notice to the staff. The event's id."""
    text = f"delivery failed ({channel}): {reason}"
    event_id = await q.append_event(
        conn,
        {
            "client_id": client_id,
            "conversation_id": conversation_id,
            "direction": Direction.EVENT.value,
            "author": "hub",
            "text": text,
            "at": now,
            "channel": report[0] if report else None,
            "external_id": report[1] if report else None,
        },
    )
    if staff_channel is None:
        return event_id
    recipient = "staff"
    if conversation_id is not None:
        telegram_id = await q.assignee_telegram_id(conn, conversation_id)
        if telegram_id is not None:
            recipient = str(telegram_id)
    notice = Outgoing(
        idempotency_key=f"delivery_failed:{outbox_id}",
        channel=staff_channel,
        account="staff",
        recipient=recipient,
        kind="delivery_failed",
        text=text,
        at=now,
        extras={"outbox_id": outbox_id},
        client_id=client_id,
        conversation_id=conversation_id,
        interaction_id=event_id,
    )
    await q.enqueue(conn, [notice.row()])
    return event_id


def outbound_of(row: Any) -> OutboundMessage:
    """An outbox row (claimed, or read whole) as the message its channel sends."""
    return OutboundMessage(
        outbox_id=row.id,
        channel=row.channel,
        account=row.account,
        recipient=row.recipient,
        kind=row.kind,
        text=row.text,
        idempotency_key=row.idempotency_key,
        subject=row.subject,
        client_id=row.client_id,
        conversation_id=row.conversation_id,
        interaction_id=row.interaction_id,
        extras=row.extras or {},
    )


def _recent(row: q.RecentRow, now: datetime) -> RecentSend:
    age = (now - row.sent_at).total_seconds() if row.sent_at is not None else 0.0
    return RecentSend(
        kind=row.kind,
        recipient=row.recipient,
        external_id=row.external_id,
        topic_chat=row.topic_chat,
        length=row.length,
        files=row.files,
        age=max(age, 0.0),
    )


class Dispatcher:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        channels: dict[str, ChannelPort],
        settings: DispatcherSection,
        *,
        staff_channel: str | None = None,
        concurrency: int = 16,
    ) -> None:
        self.db = db
        self.clock = clock
        self.channels = channels
        self.settings = settings
        self.staff_channel = staff_channel
        self.worker = f"dispatcher-{uuid.uuid4().hex[:12]}"
        self._overall = {
            name: RateLimiter(ch.limits.overall)
            for name, ch in channels.items()
            if ch.limits.overall is not None
        }
        self._per_recipient = {
            name: RateLimiter(ch.limits.per_recipient)
            for name, ch in channels.items()
            if ch.limits.per_recipient is not None
        }
        self.concurrency = concurrency
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        # Sends recorded in groups: one transaction (one fsync) for all that
        # finished while the previous group was being written.
        self._to_record: list[tuple[q.OutboxRow, str | None, int | None, asyncio.Future[None]]] = []
        self._recording = False
        self.sent = 0
        self.failed = 0

    def wake(self) -> None:
        """New rows are due now (called after a commit that wrote to the outbox)."""
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        await self._tell_budgets()
        self._task = asyncio.create_task(self._run(), name="dispatcher")

    async def _tell_budgets(self) -> None:
        """Channels that keep their own send budgets learn what went out in the last
        minute (the staff channel also which topics were opened)."""
        budgeted = {name: ch for name, ch in self.channels.items() if isinstance(ch, Budgeted)}
        if not budgeted:
            return
        now = self.clock.now()
        since = now - timedelta(seconds=BUDGET_WINDOW_S)
        try:
            async with self.db.read() as conn:
                rows = await q.recent_sends(conn, channels=list(budgeted), since=since)
                opened = await q.recent_topics(conn, since=since)
        except Exception as exc:  # the database may be down: start anyway, paced from now
            loggers.event(log, "dispatcher.budgets_unknown", logging.WARNING, error=repr(exc))
            return
        topics = tuple(RecentTopic(chat, (now - at).total_seconds()) for chat, at in opened)
        for name, channel in budgeted.items():
            sends = tuple(_recent(row, now) for row in rows if row.channel == name)
            channel.spent(RecentSends(sends, topics if name == self.staff_channel else ()))
            loggers.event(log, "dispatcher.budgets_told", channel=name, sends=len(sends))

    async def stop(self) -> None:
        """Stop claiming; let sends under way finish (their rows are recorded)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            # Cleared before the claim, so a wake during it is not lost.
            self._wake.clear()
            try:
                claimed = await self.run_once()
            except Exception as exc:  # the database may be down: keep trying
                loggers.event(
                    log,
                    "dispatcher.claim_failed",
                    logging.WARNING,
                    error=loggers.redact(str(exc).splitlines()[0] if str(exc) else ""),
                )
                claimed = 0
            if claimed or self._stopping:
                continue
            idle = await self._idle_wait()  # before the wait's coroutine: a stop may cut this
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle)

    async def _idle_wait(self) -> float:
        wait = self.settings.idle_poll_s
        with contextlib.suppress(Exception):
            async with self.db.read() as conn:
                due = await q.next_due(conn, list(self.channels))
            if due is not None:
                wait = min(wait, max(0.0, (due - self.clock.now()).total_seconds()))
        return max(wait, 0.01)

    async def run_once(self) -> int:
        """Claim what is due and start sending it; return how many rows were claimed."""
        if not self.channels:
            return 0
        free = self.concurrency - len(self._inflight)  # claim no more than can be sent now
        if self._inflight and free < max(1, self.concurrency // 2):
            # Claim in batches: a claim is a commit, and one a finished send is
            # too many (each costs an fsync on SQLite).
            await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
            return 1
        now = self.clock.now()
        async with self.db.write() as conn:
            rows = await q.claim(
                conn,
                channels=list(self.channels),
                now=now,
                lease_until=now + timedelta(seconds=self.settings.lease_s),
                worker=self.worker,
                limit=min(free, self.settings.batch),
                later=sorted(SHARED_VIEW_KINDS),
            )
        for row in rows:
            task = asyncio.create_task(self._deliver(row), name=f"send-{row.id}")
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return len(rows)

    async def drain(self) -> None:
        """Wait for the sends under way (tests)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    async def _deliver(self, row: q.OutboxRow) -> None:
        try:
            await self._limit(row)
            message = outbound_of(row)
            try:
                result = await self.channels[row.channel].send(message)
            except TemporaryDeliveryError as exc:
                await self._temporary(row, exc)
            except PermanentDeliveryError as exc:
                await self._permanent(row, exc.reason)
            except Exception as exc:  # a channel bug: retry, never lose the row
                log.exception("dispatcher.send_crashed outbox=%s", row.id)
                await self._temporary(row, TemporaryDeliveryError(f"{type(exc).__name__}: {exc}"))
            else:
                delivers = row.interaction_id if row.kind in DELIVERS_INTERACTION else None
                await self._record_sent(row, result.external_id, delivers)
                self.sent += 1
                loggers.event(
                    log,
                    "outbox.sent",
                    outbox=row.id,
                    kind=row.kind,
                    channel=row.channel,
                    client=row.client_id,
                    conversation=row.conversation_id,
                )
        except Exception:
            # Recording the outcome failed (database down): the lease runs out
            # and the row is claimed again.
            log.exception("dispatcher.record_failed outbox=%s", row.id)
        if row.channel in ORDERED_CHANNELS:
            self._wake.set()

    async def _record_sent(
        self, row: q.OutboxRow, external_id: str | None, delivers: int | None
    ) -> None:
        """Record a send; returns once it is committed. Whoever finds no group
        being written writes, for everyone queued meanwhile too."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._to_record.append((row, external_id, delivers, done))
        if not self._recording:
            self._recording = True
            try:
                while self._to_record:
                    group, self._to_record = self._to_record, []
                    try:
                        async with self.db.write() as conn:
                            await q.mark_sent(
                                conn,
                                [
                                    q.Sent(sent.id, ext, interaction)
                                    for sent, ext, interaction, _ in group
                                ],
                                worker=self.worker,
                                now=self.clock.now(),
                            )
                    except Exception as exc:
                        for *_, waiting in group:
                            if not waiting.done():
                                waiting.set_exception(exc)
                    else:
                        for *_, waiting in group:
                            if not waiting.done():
                                waiting.set_result(None)
            finally:
                self._recording = False
        await done

    def _recipient_limiter(self, row: q.OutboxRow) -> RateLimiter | None:
        if row.kind in self.channels[row.channel].limits.self_paced:
            return None
        return self._per_recipient.get(row.channel)

    async def _limit(self, row: q.OutboxRow) -> None:
        overall = self._overall.get(row.channel)
        per_recipient = self._recipient_limiter(row)
        key = f"{row.account}:{row.recipient}"
        while True:
            wait = max(
                overall.delay(row.account) if overall else 0.0,
                per_recipient.delay(key) if per_recipient else 0.0,
            )
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        if overall:
            overall.take(row.account)
        if per_recipient:
            per_recipient.take(key)

    def _backoff(self, attempts: int) -> float:
        base = self.settings.backoff_base_s * float(2 ** max(0, attempts - 1))
        return min(self.settings.backoff_max_s, base) * random.uniform(0.8, 1.2)  # noqa: S311

    async def _temporary(self, row: q.OutboxRow, exc: TemporaryDeliveryError) -> None:
        # "Wait N seconds" (a peer's flow control) is not a failure: only other
        # temporary errors count towards giving up.
        if row.attempts >= self.settings.max_attempts and exc.retry_after is None:
            await self._permanent(row, f"gave up after {row.attempts} attempts: {exc.reason}")
            return
        delay = self._backoff(row.attempts)
        if exc.retry_after is not None:
            delay = max(exc.retry_after, 0.0)
            per_recipient = self._recipient_limiter(row)
            if per_recipient is not None:
                per_recipient.pause(f"{row.account}:{row.recipient}", exc.retry_after)
        async with self.db.write() as conn:
            await q.mark_retry(
                conn,
                row.id,
                worker=self.worker,
                error=exc.reason,
                next_attempt_at=self.clock.now() + timedelta(seconds=delay),
            )
        loggers.event(
            log,
            "outbox.retry",
            outbox=row.id,
            channel=row.channel,
            attempt=row.attempts,
            delay_s=f"{delay:.1f}",
            error=exc.reason,
        )

    async def _permanent(self, row: q.OutboxRow, reason: str) -> None:
        now = self.clock.now()
        delivers = row.interaction_id if row.kind in DELIVERS_INTERACTION else None
        async with self.db.write() as conn:
            await q.mark_failed(
                conn, row.id, worker=self.worker, error=reason, now=now, interaction_id=delivers
            )
            if row.kind not in STAFF_KINDS | PARKED_KINDS and row.client_id is not None:
                await self._report_failure(conn, row, reason, now)
        self.failed += 1
        loggers.event(
            log,
            "outbox.failed",
            logging.WARNING,
            outbox=row.id,
            kind=row.kind,
            channel=row.channel,
            client=row.client_id,
            conversation=row.conversation_id,
            error=reason,
        )

    async def _report_failure(
        self, conn: Any, row: q.OutboxRow, reason: str, now: datetime
    ) -> None:
        """Log the failure on the client's record and tell the staff about it."""
        assert row.client_id is not None
        await report_failure(
            conn,
            outbox_id=row.id,
            channel=row.channel,
            client_id=row.client_id,
            conversation_id=row.conversation_id,
            reason=reason,
            now=now,
            staff_channel=self.staff_channel,
        )
        if self.staff_channel is not None:
            self.wake()
