"""Reminders set from the desk fire once, at their time, to their manager."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, update

from hub.clients.attachments import AttachmentStore
from hub.desk.desk import Desk
from hub.ingest.ingestor import Ingestor
from hub.jobs.reminders import ReminderLoop, fire_due, scan
from hub.kernel.clock import FrozenClock
from hub.kernel.identities import identity
from hub.kernel.types import Channel, InboundMessage, ManagerRef
from storage import Database
from storage.models import Client, Interaction, Manager, Outbox, Reminder


async def _setup(db: Database, tmp_path: Path, clock: FrozenClock) -> tuple[Desk, int]:
    async with db.write() as conn:
        await conn.execute(
            insert(Manager),
            {
                "name": "Ольга",
                "telegram_id": 555,
                "role": "manager",
                "capacity": 5,
                "active": True,
                "away": False,
                "created_at": clock.now(),
                "attrs": {"language": "ru"},
            },
        )
    files = AttachmentStore(tmp_path / "files", 10**6)
    ingestor = Ingestor(db, clock, files)
    await ingestor.start()
    try:
        result = await ingestor(
            InboundMessage(
                Channel.TELEGRAM,
                "bot",
                "1:1",
                (identity("telegram", 42, "Пётр"),),
                clock.now(),
                text="Перезвоните мне",
            )
        )
    finally:
        await ingestor.stop()
    return Desk(db, clock, files, timezone="Europe/Moscow"), result.client_id


async def test_a_reminder_fires_once_at_its_time(db: Database, tmp_path: Path) -> None:
    clock = FrozenClock()
    desk, client_id = await _setup(db, tmp_path, clock)
    manager = await desk.manager(555)
    assert manager is not None
    confirmation = await desk.act(client_id, manager, "remind", "2h перезвонить")
    assert "перезвонить" in confirmation
    assert await fire_due(db, clock, staff_channel="telegram") == 0  # not yet
    clock.advance(timedelta(hours=2, seconds=1))
    assert await fire_due(db, clock, staff_channel="telegram") == 1
    assert await fire_due(db, clock, staff_channel="telegram") == 0  # once
    async with db.read() as conn:
        sent = (
            await conn.execute(select(Outbox.kind, Outbox.recipient, Outbox.text, Outbox.client_id))
        ).all()
        events = (
            (await conn.execute(select(Interaction.text).where(Interaction.direction == "event")))
            .scalars()
            .all()
        )
    assert [tuple(s) for s in sent] == [
        ("reminder", "555", "⏰ Напоминание: перезвонить", client_id)
    ]
    assert "⏰ Напоминание: перезвонить" in events


async def test_concurrent_firing_fires_each_reminder_once(db: Database, tmp_path: Path) -> None:
    """Two instances (or two runs) claiming at once: every reminder fires exactly once."""
    clock = FrozenClock()
    desk, client_id = await _setup(db, tmp_path, clock)
    manager = await desk.manager(555)
    assert manager is not None
    for i in range(20):
        await desk.act(client_id, manager, "remind", f"{i + 1}m звонок {i}")
    clock.advance(timedelta(hours=1))
    fired = await asyncio.gather(*(fire_due(db, clock, staff_channel="telegram") for _ in range(4)))
    assert sum(fired) == 20
    async with db.read() as conn:
        statuses = (await conn.execute(select(Reminder.status))).scalars().all()
        keys = (await conn.execute(select(Outbox.idempotency_key))).scalars().all()
    assert set(statuses) == {"fired"}
    assert len(keys) == len(set(keys)) == 20


# -- issue 6 "Reminders": automatic follow-ups, the firing loop, restarts, instances --


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Wait until ``check()`` holds; the database has no event to wait on, so it is polled."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


async def passed(loop: ReminderLoop) -> None:
    """The loop has made a full pass since now: whatever was due has fired."""
    async with asyncio.timeout(30):
        await loop.wake_and_wait()


async def _reminders(db: Database) -> list[Any]:
    async with db.read() as conn:
        return list(
            (
                await conn.execute(
                    select(
                        Reminder.kind,
                        Reminder.key,
                        Reminder.manager_id,
                        Reminder.client_id,
                        Reminder.conversation_id,
                        Reminder.status,
                    ).order_by(Reminder.id)
                )
            ).all()
        )


async def _client_writes(db: Database, clock: FrozenClock, tmp_path: Path, text: str) -> None:
    ingestor = Ingestor(db, clock, AttachmentStore(tmp_path / "files", 10**6))
    await ingestor.start()
    try:
        await ingestor(
            InboundMessage(
                Channel.TELEGRAM,
                "bot",
                f"1:{text}",
                (identity("telegram", 42, "Пётр"),),
                clock.now(),
                text=text,
            )
        )
    finally:
        await ingestor.stop()


async def test_no_reply_to_a_managers_message_in_n_days_reminds_the_assignee_once(
    db: Database, tmp_path: Path
) -> None:
    clock = FrozenClock()
    desk, client_id = await _setup(db, tmp_path, clock)
    manager = await desk.manager(555)
    assert manager is not None
    follow = functools.partial(scan, db, clock, follow_up_days=3, stages=())
    assert await follow() == 0  # the client spoke last
    await desk.answer(client_id, "Перезвоню в понедельник", manager=manager, key="m1")
    clock.advance(timedelta(days=2, hours=23))
    assert await follow() == 0  # not yet three days
    clock.advance(timedelta(hours=1))
    assert await follow() == 1
    assert await follow() == 0  # once per occasion
    [made] = await _reminders(db)
    assert (made.kind, made.manager_id, made.client_id, made.status) == (
        "follow_up",
        manager.id,
        client_id,
        "pending",
    )
    assert made.key.startswith(f"follow_up:{made.conversation_id}:")
    assert await fire_due(db, clock, staff_channel="telegram") == 1
    async with db.read() as conn:
        [told] = (await conn.execute(select(Outbox.text).where(Outbox.kind == "reminder"))).all()
    assert told.text == "⏰ Клиент не ответил на ваше сообщение: напомните о себе"

    # The client answers, the manager writes again, and the client falls silent again.
    await _client_writes(db, clock, tmp_path, "Да, жду")
    await desk.answer(client_id, "Отправил счёт", manager=manager, key="m2")
    clock.advance(timedelta(days=3))
    assert await follow() == 1
    assert [r.kind for r in await _reminders(db)] == ["follow_up", "follow_up"]
    # Once the request is resolved nothing more is asked of anyone.
    await desk.act(client_id, manager, "resolve")
    await desk.answer(client_id, "Закрываю", manager=manager, key="m3")
    await desk.act(client_id, manager, "resolve")
    clock.advance(timedelta(days=30))
    assert await follow() == 0


async def test_a_stage_that_asks_for_periodic_contact_reminds_the_owner_once_per_quiet_spell(
    db: Database, tmp_path: Path
) -> None:
    clock = FrozenClock()
    desk, client_id = await _setup(db, tmp_path, clock)
    manager = await desk.manager(555)
    assert manager is not None
    async with db.write() as conn:
        await conn.execute(
            update(Client).where(Client.id == client_id).values(stage="client", owner_id=manager.id)
        )
    stages = [("client", 30.0), ("partner", 7.0)]
    contact = functools.partial(scan, db, clock, follow_up_days=0, stages=stages)
    clock.advance(timedelta(days=29))
    assert await contact() == 0
    clock.advance(timedelta(days=1))
    assert await contact() == 1
    assert await contact() == 0
    [made] = await _reminders(db)
    assert (made.kind, made.manager_id, made.client_id) == ("stage_contact", manager.id, client_id)
    assert await fire_due(db, clock, staff_channel="telegram") == 1
    async with db.read() as conn:
        [told] = (await conn.execute(select(Outbox.text).where(Outbox.kind == "reminder"))).all()
    assert told.text == "⏰ Пора снова связаться с клиентом (стадия client)"
    # A contact starts a new quiet spell; an auto-reply or an event does not count.
    await _client_writes(db, clock, tmp_path, "Добрый день")
    clock.advance(timedelta(days=30))
    assert await contact() == 1
    assert await contact() == 0


async def _remind(db: Database, clock: FrozenClock, count: int, due: timedelta) -> None:
    """``count`` reminders for manager 1 (client 1), due ``due`` from now."""
    now = clock.now()
    async with db.write() as conn:
        await conn.execute(
            insert(Reminder),
            [
                {
                    "client_id": 1,
                    "manager_id": 1,
                    "due_at": now + due,
                    "text": f"звонок {i}",
                    "kind": "reminder",
                    "status": "pending",
                    "created_at": now,
                }
                for i in range(count)
            ],
        )


async def _fired(db: Database) -> int:
    async with db.read() as conn:
        return int(
            (await conn.execute(select(func.count()).where(Outbox.kind == "reminder"))).scalar_one()
        )


def _loop(db: Database, clock: FrozenClock) -> ReminderLoop:
    return ReminderLoop(db, clock, staff_channel="telegram", max_sleep=0.05, batch=100)


async def test_the_loop_fires_a_reminder_once_it_is_due(db: Database, tmp_path: Path) -> None:
    clock = FrozenClock()
    await _setup(db, tmp_path, clock)
    loop = _loop(db, clock)
    await loop.start()
    try:
        await _remind(db, clock, 1, timedelta(minutes=5))
        clock.advance(timedelta(minutes=4, seconds=59))
        await passed(loop)
        assert await _fired(db) == 0
        clock.advance(timedelta(seconds=1))
        await eventually(lambda: _has_fired(db, 1))
    finally:
        await loop.stop()


async def _has_fired(db: Database, count: int) -> bool:
    return await _fired(db) >= count


async def test_reminders_survive_a_restart_and_one_missed_while_down_fires_on_start(
    db_url: str, tmp_path: Path
) -> None:
    clock = FrozenClock()
    first = Database(db_url)
    try:
        await _setup(first, tmp_path, clock)
        loop = _loop(first, clock)
        await loop.start()
        await _remind(first, clock, 3, timedelta(hours=1))
        await passed(loop)
        await loop.stop()  # the hub stops before they are due
    finally:
        await first.dispose()
    clock.advance(timedelta(hours=5))  # ... and is down when they fall due
    second = Database(db_url)
    loop = _loop(second, clock)
    try:
        await loop.start()  # started again: they fire at once, each once
        await eventually(lambda: _has_fired(second, 3))
        await passed(loop)
        assert await _fired(second) == 3
        async with second.read() as conn:
            statuses = (await conn.execute(select(Reminder.status))).scalars().all()
        assert statuses == ["fired"] * 3
    finally:
        await loop.stop()
        await second.dispose()


async def test_two_instances_fire_each_of_1000_reminders_exactly_once(
    db_url: str, tmp_path: Path
) -> None:
    clock = FrozenClock()
    one, two = Database(db_url), Database(db_url)
    loops = [_loop(one, clock), _loop(two, clock)]
    try:
        await _setup(one, tmp_path, clock)
        await _remind(one, clock, 1000, timedelta(minutes=1))
        for loop in loops:
            await loop.start()
        clock.advance(timedelta(minutes=1))
        for loop in loops:
            loop.wake()
        await eventually(lambda: _has_fired(one, 1000))
        for loop in loops:
            await passed(loop)
        async with one.read() as conn:
            keys = (
                (
                    await conn.execute(
                        select(Outbox.idempotency_key).where(Outbox.kind == "reminder")
                    )
                )
                .scalars()
                .all()
            )
            events = (
                await conn.execute(
                    select(func.count()).where(
                        Interaction.direction == "event", Interaction.text.like("⏰%")
                    )
                )
            ).scalar_one()
        assert len(keys) == len(set(keys)) == 1000
        assert events == 1000
    finally:
        for loop in loops:
            await loop.stop()
        await one.dispose()
        await two.dispose()


async def _set_and_fire(
    db: Database, desk: Desk, clock: FrozenClock, client_id: int, manager: ManagerRef
) -> int:
    """A reminder set for in an hour, an hour later fired: its id."""
    await desk.act(client_id, manager, "remind", "1h позвонить")
    clock.advance(timedelta(hours=1))
    assert await fire_due(db, clock, staff_channel="telegram") == 1
    async with db.read() as conn:
        [rid] = (await conn.execute(select(Reminder.id))).scalars().all()
    return int(rid)


async def test_a_redelivered_press_answers_as_the_first_and_acts_once(
    db: Database, tmp_path: Path
) -> None:
    clock = FrozenClock()
    desk, client_id = await _setup(db, tmp_path, clock)
    manager = await desk.manager(555)
    assert manager is not None
    rid = await _set_and_fire(db, desk, clock, client_id, manager)
    first = await desk.settle_reminder(rid, 1, manager, "snooze_day", key="tg:callback:q1")
    again = await desk.settle_reminder(rid, 1, manager, "snooze_day", key="tg:callback:q1")
    assert first == again == "Напоминание отложено до 06.01 14:00: позвонить (Ольга)"
    async with db.read() as conn:
        [due] = (await conn.execute(select(Reminder.due_at))).scalars().all()
        logged = (
            (await conn.execute(select(Interaction.text).where(Interaction.author == "Ольга")))
            .scalars()
            .all()
        )
    assert due == clock.now() + timedelta(days=1)
    assert logged.count(first) == 1


async def test_a_snooze_answers_in_the_managers_own_time_zone(db: Database, tmp_path: Path) -> None:
    """Issue 15: a reminder's times are told in the manager's zone, never the hub's."""
    clock = FrozenClock()
    desk, client_id = await _setup(db, tmp_path, clock)
    async with db.write() as conn:
        await conn.execute(
            update(Manager).where(Manager.telegram_id == 555).values(timezone="Asia/Yekaterinburg")
        )
    manager = await desk.manager(555)
    assert manager is not None
    rid = await _set_and_fire(db, desk, clock, client_id, manager)
    answer = await desk.settle_reminder(rid, 1, manager, "snooze_day", key="tg:callback:q2")
    # The hub's zone would say 06.01 14:00 (as the test above); Yekaterinburg is UTC+5.
    local = (clock.now() + timedelta(days=1)).astimezone(ZoneInfo("Asia/Yekaterinburg"))
    assert answer == f"Напоминание отложено до {local:%d.%m %H:%M}: позвонить (Ольга)"
