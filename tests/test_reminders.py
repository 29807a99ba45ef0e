"""Reminders set from the desk fire once, at their time, to their manager."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select

from hub.attachments import AttachmentStore
from hub.clock import FrozenClock
from hub.desk import Desk
from hub.identities import identity
from hub.ingest import Ingestor
from hub.reminders import fire_due
from hub.types import Channel, InboundMessage
from storage import Database
from storage.models import Interaction, Manager, Outbox, Reminder


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
