"""The outbox dispatcher: delivery, retries with backoff, permanent failure, leases,
rate limits; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select, update

from hub.clients.attachments import AttachmentStore
from hub.config import DispatcherSection
from hub.delivery.dispatcher import Dispatcher
from hub.delivery.outbox import Outgoing
from hub.desk.replies import reply
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import FrozenClock
from hub.kernel.errors import PermanentDeliveryError, TemporaryDeliveryError
from hub.kernel.identities import identity
from hub.kernel.ports import ChannelLimits, RateLimit
from hub.kernel.ratelimit import RateLimiter
from hub.kernel.types import Channel, InboundMessage
from storage import Database
from storage import ingest as ingest_q
from storage import outbox as outbox_q
from storage.models import Interaction, Manager, Outbox
from tests.fakes import RecordingChannel

SETTINGS = DispatcherSection(max_attempts=3, backoff_base_s=10, backoff_max_s=100, lease_s=60)


async def _client_conversation(
    db: Database, clock: FrozenClock, tmp_path: Path, staff: str | None = None
) -> int:
    ingestor = Ingestor(db, clock, AttachmentStore(tmp_path / "files", 10**6), staff_channel=staff)
    await ingestor.start()
    try:
        result = await ingestor(
            InboundMessage(
                Channel.TELEGRAM,
                "bot",
                "1:1",
                (identity("telegram", 4242, "Анна"),),
                clock.now(),
                text="Здравствуйте",
            )
        )
    finally:
        await ingestor.stop()
    return result.conversation_id


async def _outbox(db: Database) -> list[Outbox]:
    async with db.read() as conn:
        return [row for row in (await conn.execute(select(Outbox).order_by(Outbox.id))).all()]


async def _round(dispatcher: Dispatcher) -> int:
    claimed = await dispatcher.run_once()
    await dispatcher.drain()
    return claimed


async def test_reply_is_delivered_and_marked_sent(db: Database, tmp_path: Path) -> None:
    clock = FrozenClock()
    conv = await _client_conversation(db, clock, tmp_path)
    queued = await reply(db, clock, conv, "Добрый день!", author="Anna")
    channel = RecordingChannel()
    dispatcher = Dispatcher(db, clock, {"telegram": channel}, SETTINGS)
    assert await _round(dispatcher) == 1
    assert [(m.recipient, m.text, m.kind) for m in channel.sent] == [
        ("4242", "Добрый день!", "reply")
    ]
    assert channel.sent[0].idempotency_key
    async with db.read() as conn:
        row = (await conn.execute(select(Outbox.status, Outbox.external_id, Outbox.attempts))).one()
        delivery = (
            await conn.execute(
                select(Interaction.delivery).where(Interaction.id == queued.interaction_id)
            )
        ).scalar_one()
    assert tuple(row) == ("sent", f"ext-{queued.outbox_id}", 1)
    assert delivery == "sent"
    assert await _round(dispatcher) == 0  # nothing is sent twice
    assert len(channel.sent) == 1


async def test_note_is_never_sent(db: Database, tmp_path: Path) -> None:
    clock = FrozenClock()
    conv = await _client_conversation(db, clock, tmp_path)
    queued = await reply(db, clock, conv, "internal: VIP", author="Anna", note=True)
    assert queued.outbox_id is None
    channel = RecordingChannel()
    assert await _round(Dispatcher(db, clock, {"telegram": channel}, SETTINGS)) == 0
    assert channel.attempts == []


async def test_temporary_failure_backs_off_then_succeeds(db: Database, tmp_path: Path) -> None:
    clock = FrozenClock()
    conv = await _client_conversation(db, clock, tmp_path)
    await reply(db, clock, conv, "hi", author="Anna")
    channel = RecordingChannel()
    failures = iter([TemporaryDeliveryError("timeout"), None])
    channel.fail = lambda m: next(failures)
    dispatcher = Dispatcher(db, clock, {"telegram": channel}, SETTINGS)
    assert await _round(dispatcher) == 1
    (row,) = await _outbox(db)
    assert row.status == "pending" and row.last_error == "timeout"
    delay = (row.next_attempt_at - clock.now()).total_seconds()
    assert 8 <= delay <= 12  # base 10 s, with jitter
    assert await _round(dispatcher) == 0  # not due yet
    clock.advance(timedelta(seconds=13))
    assert await _round(dispatcher) == 1
    (row,) = await _outbox(db)
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(channel.sent) == 1


async def test_retry_after_is_honored(db: Database, tmp_path: Path) -> None:
    clock = FrozenClock()
    conv = await _client_conversation(db, clock, tmp_path)
    await reply(db, clock, conv, "hi", author="Anna")
    channel = RecordingChannel()
    channel.fail = lambda m: TemporaryDeliveryError("429 Too Many Requests", retry_after=37)
    await _round(Dispatcher(db, clock, {"telegram": channel}, SETTINGS))
    (row,) = await _outbox(db)
    assert row.next_attempt_at == clock.now() + timedelta(seconds=37)


async def test_permanent_failure_marks_interaction_and_tells_the_manager(
    db: Database, tmp_path: Path
) -> None:
    clock = FrozenClock()
    async with db.write() as conn:
        await conn.execute(
            insert(Manager),
            {
                "name": "Anna",
                "telegram_id": 777,
                "role": "manager",
                "capacity": 5,
                "active": True,
                "away": False,
                "created_at": clock.now(),
            },
        )
    conv = await _client_conversation(db, clock, tmp_path, staff="telegram")
    queued = await reply(db, clock, conv, "hi", author="Anna")
    channel = RecordingChannel()
    channel.fail = lambda m: (
        PermanentDeliveryError("Forbidden: bot was blocked by the user")
        if m.kind == "reply"
        else None
    )
    dispatcher = Dispatcher(db, clock, {"telegram": channel}, SETTINGS, staff_channel="telegram")
    while await _round(dispatcher):
        pass
    async with db.read() as conn:
        delivery = (
            await conn.execute(
                select(Interaction.delivery, Interaction.delivery_error).where(
                    Interaction.id == queued.interaction_id
                )
            )
        ).one()
        events = (
            (await conn.execute(select(Interaction.text).where(Interaction.direction == "event")))
            .scalars()
            .all()
        )
    assert delivery[0] == "failed" and "blocked" in delivery[1]
    assert any("delivery failed" in e and "blocked" in e for e in events)
    alerts = [m for m in channel.sent if m.kind == "delivery_failed"]
    assert [a.recipient for a in alerts] == ["777"]
    assert "blocked" in alerts[0].text
    statuses = {r.kind: r.status for r in await _outbox(db)}
    assert statuses["reply"] == "failed"


async def test_gives_up_after_max_attempts(db: Database, tmp_path: Path) -> None:
    clock = FrozenClock()
    conv = await _client_conversation(db, clock, tmp_path)
    queued = await reply(db, clock, conv, "hi", author="Anna")
    channel = RecordingChannel()
    channel.fail = lambda m: TemporaryDeliveryError("connection refused")
    dispatcher = Dispatcher(db, clock, {"telegram": channel}, SETTINGS)
    for _ in range(SETTINGS.max_attempts):
        assert await _round(dispatcher) == 1
        clock.advance(timedelta(seconds=SETTINGS.backoff_max_s * 2))
    assert await _round(dispatcher) == 0
    (row,) = await _outbox(db)
    assert row.status == "failed" and "gave up after 3 attempts" in (row.last_error or "")
    async with db.read() as conn:
        assert (
            await conn.execute(
                select(Interaction.delivery).where(Interaction.id == queued.interaction_id)
            )
        ).scalar_one() == "failed"
    assert len(channel.attempts) == 3


async def test_expired_lease_is_claimed_again_once(db: Database, tmp_path: Path) -> None:
    """A dispatcher that died mid-send leaves its row 'sending': after the lease
    another one sends it, once."""
    clock = FrozenClock()
    conv = await _client_conversation(db, clock, tmp_path)
    await reply(db, clock, conv, "hi", author="Anna")
    async with db.write() as conn:
        await conn.execute(
            update(Outbox).values(
                status="sending",
                claimed_by="dead",
                claimed_until=clock.now() + timedelta(seconds=60),
            )
        )
    channel = RecordingChannel()
    dispatcher = Dispatcher(db, clock, {"telegram": channel}, SETTINGS)
    assert await _round(dispatcher) == 0  # the lease still holds
    clock.advance(timedelta(seconds=61))
    assert await _round(dispatcher) == 1
    assert await _round(dispatcher) == 0
    assert len(channel.sent) == 1


async def test_two_dispatchers_send_each_row_once(db: Database, tmp_path: Path) -> None:
    clock = FrozenClock()
    conv = await _client_conversation(db, clock, tmp_path)
    for i in range(60):
        await reply(db, clock, conv, f"message {i}", author="Anna")
    channel = RecordingChannel()
    settings = DispatcherSection(batch=7, lease_s=60)
    first = Dispatcher(db, clock, {"telegram": channel}, settings)
    second = Dispatcher(db, clock, {"telegram": channel}, settings)

    async def work(d: Dispatcher) -> None:
        while await d.run_once():
            await asyncio.sleep(0)
        await d.drain()

    await asyncio.gather(work(first), work(second))
    await first.drain()
    await second.drain()
    texts = sorted(m.text for m in channel.sent)
    assert texts == sorted(f"message {i}" for i in range(60))
    assert first.sent > 0 and second.sent > 0


async def test_dispatcher_loop_delivers_when_woken(db: Database, tmp_path: Path) -> None:
    clock = FrozenClock(datetime.now(UTC))
    conv = await _client_conversation(db, clock, tmp_path)
    channel = RecordingChannel()
    dispatcher = Dispatcher(db, clock, {"telegram": channel}, DispatcherSection(idle_poll_s=30))
    await dispatcher.start()
    try:
        await reply(db, clock, conv, "woken", author="Anna")
        dispatcher.wake()
        await channel.wait_for(lambda: len(channel.sent) == 1)
    finally:
        await dispatcher.stop()
    assert channel.sent[0].text == "woken"


async def test_an_outgoing_message_is_a_pending_row_due_when_written(db: Database) -> None:
    """Every producer builds its outbox row with ``Outgoing``; the batch writer's
    tuples carry the same values in its column order."""
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    message = Outgoing(
        idempotency_key="reminder:1:0",
        channel="telegram",
        account="staff",
        recipient="111",
        kind="reminder",
        text="call back",
        at=now,
        extras={"reminder": 1},
    )
    row = message.row()
    assert (row["status"], row["attempts"], row["next_attempt_at"], row["created_at"]) == (
        "pending",
        0,
        now,
        now,
    )
    assert message.batch_row() == tuple(row[c] for c in ingest_q.OUTBOX_COLUMNS)
    async with db.write() as conn:
        await outbox_q.enqueue(conn, [row])
        [claimed] = await outbox_q.claim(
            conn,
            channels=["telegram"],
            now=now,
            lease_until=now + timedelta(seconds=60),
            worker="first",
            limit=10,
        )
    assert (claimed.idempotency_key, claimed.recipient, claimed.text, claimed.extras) == (
        "reminder:1:0",
        "111",
        "call back",
        {"reminder": 1},
    )
    assert (claimed.subject, claimed.client_id, claimed.attempts) == (None, None, 1)


def test_rate_limiter_spaces_sends_and_pauses() -> None:
    now = [0.0]
    limiter = RateLimiter(RateLimit(per_second=1, burst=2), monotonic=lambda: now[0])
    assert limiter.delay("chat") == 0
    limiter.take("chat")
    limiter.take("chat")
    assert limiter.delay("chat") == 1.0
    assert limiter.delay("other") == 0
    now[0] = 1.0
    assert limiter.delay("chat") == 0
    limiter.pause("chat", 30)
    assert limiter.delay("chat") == 30
    now[0] = 31.0
    assert limiter.delay("chat") == 0


async def test_per_recipient_limit_is_applied(db: Database, tmp_path: Path) -> None:
    """Three replies to one chat at 50/s: the third waits for a token."""
    clock = FrozenClock()
    conv = await _client_conversation(db, clock, tmp_path)
    for i in range(3):
        await reply(db, clock, conv, f"m{i}", author="Anna")
    channel = RecordingChannel(limits=ChannelLimits(per_recipient=RateLimit(50, burst=1)))
    dispatcher = Dispatcher(db, clock, {"telegram": channel}, SETTINGS)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await _round(dispatcher)
    assert [m.text for m in sorted(channel.sent, key=lambda m: m.outbox_id)] == ["m0", "m1", "m2"]
    assert loop.time() - started >= 2 / 50 * 0.9


async def test_flow_control_waits_do_not_use_up_attempts(db: Database, tmp_path: Path) -> None:
    """A peer saying "retry after N s" (Telegram's 429, a busy staff group) is not a
    failure: the row keeps waiting past max_attempts instead of being given up."""
    clock = FrozenClock()
    conv = await _client_conversation(db, clock, tmp_path)
    await reply(db, clock, conv, "hi", author="Anna")
    channel = RecordingChannel()
    channel.fail = lambda m: TemporaryDeliveryError("429 Too Many Requests", retry_after=5)
    dispatcher = Dispatcher(db, clock, {"telegram": channel}, SETTINGS)
    for _ in range(SETTINGS.max_attempts + 2):
        assert await _round(dispatcher) == 1
        clock.advance(timedelta(seconds=6))
    (row,) = await _outbox(db)
    assert row.status == "pending"
    channel.fail = lambda m: None
    assert await _round(dispatcher) == 1
    (row,) = await _outbox(db)
    assert row.status == "sent"


async def test_self_paced_kinds_skip_the_per_recipient_limit(db: Database, tmp_path: Path) -> None:
    """Staff mirrors are paced by the channel itself: a one-per-hour per-recipient
    limit does not hold them back."""
    clock = FrozenClock()
    await _client_conversation(db, clock, tmp_path, staff="telegram")
    ingestor = Ingestor(
        db, clock, AttachmentStore(tmp_path / "f2", 10**6), staff_channel="telegram"
    )
    await ingestor.start()
    try:
        for i in range(3):
            await ingestor(
                InboundMessage(
                    Channel.TELEGRAM,
                    "bot",
                    f"1:{i + 10}",
                    (identity("telegram", 4242, "Анна"),),
                    clock.now(),
                    text=f"more {i}",
                )
            )
    finally:
        await ingestor.stop()
    limits = ChannelLimits(
        per_recipient=RateLimit(1 / 3600, burst=1), self_paced=frozenset({"mirror"})
    )
    channel = RecordingChannel(limits=limits)
    await asyncio.wait_for(_round(Dispatcher(db, clock, {"telegram": channel}, SETTINGS)), 10)
    assert len([m for m in channel.sent if m.kind == "mirror"]) == 4


async def test_a_group_of_sends_is_recorded_at_once_except_a_row_taken_over(
    db: Database, tmp_path: Path
) -> None:
    """Sends finished together are recorded in one transaction; a row whose lease
    another dispatcher took over meanwhile is left as that one has it."""
    clock = FrozenClock()
    conv = await _client_conversation(db, clock, tmp_path)
    for i in range(3):
        await reply(db, clock, conv, f"message {i}", author="Anna")
    now = clock.now()
    async with db.write() as conn:
        rows = await outbox_q.claim(
            conn,
            channels=["telegram"],
            now=now,
            lease_until=now + timedelta(seconds=60),
            worker="first",
            limit=10,
        )
        assert len(rows) == 3
        await conn.execute(
            update(Outbox).where(Outbox.id == rows[1].id).values(claimed_by="second")
        )
        await outbox_q.mark_sent(
            conn,
            [outbox_q.Sent(r.id, f"ext-{r.id}", r.interaction_id) for r in rows],
            worker="first",
            now=now,
        )
    found = {row.id: row for row in await _outbox(db)}
    assert [(found[r.id].status, found[r.id].external_id) for r in rows] == [
        ("sent", f"ext-{rows[0].id}"),
        ("sending", None),
        ("sent", f"ext-{rows[2].id}"),
    ]
    async with db.read() as conn:
        delivery = {
            i: d for i, d in await conn.execute(select(Interaction.id, Interaction.delivery))
        }
    assert delivery[rows[0].interaction_id] == "sent"
    assert delivery[rows[2].interaction_id] == "sent"


async def test_what_a_person_waits_for_is_claimed_before_the_staff_groups_view(
    db: Database,
) -> None:
    """A staff group's mirrors wait for its budget anyway: when both are due, a
    client's answer and a manager's notice are claimed first, older or not."""
    from hub.kernel.types import SHARED_VIEW_KINDS

    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

    def row(key: str, kind: str, recipient: str, age: int) -> dict[str, object]:
        at = now - timedelta(seconds=age)
        return Outgoing(
            idempotency_key=key,
            channel="telegram",
            account="staff",
            recipient=recipient,
            kind=kind,
            text=key,
            at=at,
        ).row()

    async with db.write() as conn:
        await outbox_q.enqueue(
            conn,
            [
                row("mirror-old", "mirror", "staff", 60),
                row("answered-old", "answered", "staff", 50),
                row("notice", "notify", "111", 5),
                row("answer", "reply", "4242", 1),
            ],
        )
        claimed = [
            await outbox_q.claim(
                conn,
                channels=["telegram"],
                now=now,
                lease_until=now + timedelta(seconds=60),
                worker="w",
                limit=limit,
                later=sorted(SHARED_VIEW_KINDS),
            )
            for limit in (2, 10)
        ]
    first, rest = ([r.idempotency_key for r in rows] for rows in claimed)
    assert first == ["notice", "answer"]
    assert rest == ["mirror-old", "answered-old"]  # oldest first
