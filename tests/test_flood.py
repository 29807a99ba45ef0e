"""Issue 15, "A client who floods": ``desk.flood_per_minute``.

A client who sends more than the limit of requests in a minute is logged in full,
but past the limit the staff get one mirror with a notice (and the manager one
private notice), then nothing until the client's minute is over: the count is
kept in the database, so it holds across batches and across instances. On
SQLite and PostgreSQL; the last test shows it in the staff topic over the local
Bot API server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.clients.attachments import AttachmentStore
from hub.config import DeskSection
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import FrozenClock
from hub.kernel.identities import identity
from hub.kernel.texts import text
from hub.kernel.types import Channel, Identity, InboundMessage
from storage import Database
from storage.models import Client, Interaction, Outbox
from tests.test_ingest import T0, add_manager, rows
from tests.test_telegram_staff import StaffDesk, make_bot, topic_texts, unpaced

ANNA = identity("telegram", 4242, "Anna")
BORIS = identity("telegram", 5151, "Boris")
NOTICE = text("flood_notice", "en", limit=10)


@asynccontextmanager
async def ingesting(
    db: Database, tmp_path: Path, clock: FrozenClock, *, limit: int = 10
) -> AsyncIterator[Ingestor]:
    files = AttachmentStore(tmp_path / "files", 10**6)
    ingestor = Ingestor(
        db, clock, files, staff_channel="telegram", flood_per_minute=limit, language="en"
    )
    await ingestor.start()
    try:
        yield ingestor
    finally:
        await ingestor.stop()


def said(n: int, who: Identity = ANNA, clock: FrozenClock | None = None) -> InboundMessage:
    return InboundMessage(
        Channel.TELEGRAM,
        "bot",
        f"{who.value}:{n}",
        (who,),
        clock.now() if clock else T0,
        text=f"m{n:02d}",
    )


async def staff_rows(db: Database, recipient: str) -> list[tuple[str, str]]:
    """(kind, text) of the staff rows for ``recipient``, in order."""
    found = await rows(
        db,
        select(Outbox.kind, Outbox.text)
        .where(Outbox.channel == "telegram", Outbox.recipient == recipient)
        .order_by(Outbox.id),
    )
    return [(r.kind, r.text) for r in found]


async def logged(db: Database, client_id: int) -> list[str]:
    found = await rows(
        db,
        select(Interaction.text)
        .where(Interaction.client_id == client_id, Interaction.direction == "in")
        .order_by(Interaction.id),
    )
    return [r.text for r in found]


def shown(limit: int, first: int = 1) -> list[str]:
    """The texts the staff see of a minute's flood from message ``first`` on."""
    last = first + limit
    return [*(f"m{n:02d}" for n in range(first, last)), f"{NOTICE}\n\nm{last:02d}"]


def test_the_limit_is_ten_by_default_and_zero_turns_it_off() -> None:
    assert DeskSection().flood_per_minute == 10
    assert DeskSection(flood_per_minute=0).flood_per_minute == 0
    with pytest.raises(ValueError, match="flood_per_minute"):
        DeskSection(flood_per_minute=-1)


async def test_a_flood_is_logged_in_full_and_shown_once_past_the_limit(
    db: Database, tmp_path: Path
) -> None:
    """30 requests in a minute, sent together (so in a batch or two): all 30 logged;
    the staff group gets 10 mirrors and one with the notice; so does the manager."""
    await add_manager(db, "Maria", 7001)  # routing gives her Anna
    clock = FrozenClock(T0)
    async with ingesting(db, tmp_path, clock) as ingest:
        results = await asyncio.gather(*(ingest(said(n)) for n in range(1, 31)))
    anna = results[0].client_id
    assert await logged(db, anna) == [f"m{n:02d}" for n in range(1, 31)]
    mirrors = await staff_rows(db, "staff")
    assert [t for _, t in mirrors] == shown(10)
    assert {k for k, _ in mirrors} == {"mirror"}
    private = await staff_rows(db, "7001")  # Maria's private chat
    # (a batch lists the notices about its messages before those about its routing)
    assert sorted(private, key=lambda row: row[1]) == [
        ("assigned", "m01"),
        *(("notify", t) for t in shown(10)[1:]),
    ]


async def test_the_minute_is_counted_across_batches_and_instances(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    """One message per batch, alternating between two instances (each its own
    database connection pool): the count is the database's, so the limit holds. A
    client's minute is their own: Boris, writing meanwhile, is shown in full. When
    Anna's minute is over, her next ten are shown again."""
    clock = FrozenClock(T0)
    other = Database(db_url)
    try:
        async with (
            ingesting(db, tmp_path / "a", clock) as first,
            ingesting(other, tmp_path / "b", clock) as second,
        ):
            for n in range(1, 16):
                await (first if n % 2 else second)(said(n, clock=clock))
                clock.advance(timedelta(seconds=2))  # 15 messages in 30 s
            await first(said(1, BORIS, clock))
            clock.advance(timedelta(seconds=31))  # Anna's minute began 61 s ago
            for n in range(16, 31):
                await (second if n % 2 else first)(said(n, clock=clock))
    finally:
        await other.dispose()
    texts = [t for _, t in await staff_rows(db, "staff")]
    assert texts == [*shown(10), "m01", *shown(10, first=16)]
    [count] = await rows(db, select(Client.flood_count).where(Client.name == "Anna"))
    assert count.flood_count == 15  # the second minute's


async def test_zero_shows_every_message(db: Database, tmp_path: Path) -> None:
    clock = FrozenClock(T0)
    async with ingesting(db, tmp_path, clock, limit=0) as ingest:
        for n in range(1, 31):
            await ingest(said(n))
    assert [t for _, t in await staff_rows(db, "staff")] == [f"m{n:02d}" for n in range(1, 31)]


async def test_a_flood_costs_the_staff_topic_ten_messages(db: Database, tmp_path: Path) -> None:
    """Over the local Bot API server: the topic shows the card with the first, the next nine and
    the notice with the eleventh; the rest are in the log, not in the topic."""
    from channels.telegram.staff import StaffSide
    from hub.config import TelegramSection
    from hub.desk.desk import Desk
    from tests.botapi import BotApiServer, Limits

    clock = FrozenClock(T0)
    files = AttachmentStore(tmp_path / "files", 10**6)
    async with (
        BotApiServer(limits=Limits.off()) as server,
        ingesting(db, tmp_path, clock) as ingest,
    ):
        desk = Desk(db, clock, files, language="en", timezone="UTC")
        bot = make_bot(server)
        config = TelegramSection(staff_chat_id=server.forum.id)
        staff = StaffSide(desk, config, language="en", clock=clock, pacer=unpaced())
        hub = StaffDesk(server, bot, db, clock, desk, ingest, staff)
        try:
            for n in range(1, 31):
                await hub.writes(ANNA, f"m{n:02d}")
            await hub.flush()
        finally:
            await bot.session.close()
        [topic] = server.topics()
        card, *mirrors = topic_texts(hub.in_topic(topic.message_thread_id))
    assert card.startswith("👤 Anna")
    texts = [m.removeprefix("💬 telegram\n") for m in mirrors]
    assert texts == shown(10)
