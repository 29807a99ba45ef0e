"""The web console's clients pages: search, the card (identities, stage history,
business events, ratings, the timeline in pages), merge and undo, import with its
per-row report, export, and who may see which client."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sqlalchemy import insert

from hub.clients.event_writer import EventRecorder
from hub.clients.events import ClientRef, EventIn
from hub.clients.stages import move
from hub.kernel.clock import FrozenClock
from hub.kernel.identities import identity
from hub.kernel.types import Channel
from storage import Database
from storage.client_page import read_client_page, read_timeline_page
from storage.models import Rating
from storage.read import read_timeline
from tests.test_ingest import T0, message, running


@dataclass(frozen=True)
class Seeded:
    client_id: int
    conversation_id: int


async def seed_client(db: Database, tmp_path: Path) -> Seeded:
    """Анна Петрова with an email, a phone, a few messages, a stage move, a purchase
    and a rating of 4."""
    async with running(db, tmp_path) as ingest:
        first = await ingest(
            message(
                Channel.EMAIL,
                "<1@x>",
                identity("email", "anna@example.org", "Анна Петрова"),
                identity("phone", "+7 916 123-45-67", default_region="RU"),
                text="Где мой заказ?",
            )
        )
        for n in range(2, 6):
            await ingest(
                message(
                    Channel.EMAIL,
                    f"<{n}@x>",
                    identity("email", "anna@example.org"),
                    text=f"письмо {n}",
                )
            )
    assert first.conversation_id is not None
    async with db.write() as conn:
        await move(conn, first.client_id, "prospect", "client", who="olga", why="signed", now=T0)
        await conn.execute(
            insert(Rating).values(
                conversation_id=first.conversation_id,
                client_id=first.client_id,
                channel="email",
                score=4,
                comment="быстро ответили",
                asked_at=T0,
                rated_at=T0,
            )
        )
    recorder = EventRecorder(db, FrozenClock(T0))
    try:
        await recorder.record(
            EventIn(
                "order-1",
                "purchase",
                ClientRef(id=first.client_id),
                at=T0,
                amount=Decimal("1250.00"),
                currency="RUB",
            ),
            actor="api:shop",
        )
    finally:
        await recorder.close()
    return Seeded(first.client_id, first.conversation_id)


async def test_the_client_page_reads_stage_history_events_ratings_and_timeline_pages(
    db: Database, tmp_path: Path
) -> None:
    seeded = await seed_client(db, tmp_path)
    page = await db.run_read(lambda c: read_client_page(c, seeded.client_id, page=3))
    assert page is not None
    assert page.card.name == "Анна Петрова"
    assert {i.kind for i in page.card.identities} == {"email", "phone"}
    [stage] = page.stages
    assert (stage.old, stage.new, stage.who) == ("prospect", "client", "olga")
    [event] = page.events
    assert (event.kind, event.amount, event.currency) == ("purchase", Decimal("1250.00"), "RUB")
    [rating] = page.ratings
    assert (rating.score, rating.comment) == (4, "быстро ответили")
    whole = [i.id for i in await db.run_read(lambda c: read_timeline(c, seeded.client_id))]
    assert len(whole) >= 7  # 5 messages, the stage move, the purchase (and what ingest notes)
    first = page.timeline
    assert len(first.items) == 3 and first.older is not None
    assert [i.id for i in first.items] == sorted((i.id for i in first.items), reverse=True)
    pages, before = [first], first.older
    while before is not None:
        older = before
        pages.append(
            await db.run_read(
                lambda c: read_timeline_page(c, seeded.client_id, before=older, page=3)
            )
        )
        before = pages[-1].older
    every = [i.id for p in pages for i in p.items]
    assert every == sorted(whole, reverse=True)
    assert all(len(p.items) == 3 for p in pages[:-1]) and 1 <= len(pages[-1].items) <= 3
    assert pages[-1].items[-1].text == "Где мой заказ?"
    assert await db.run_read(lambda c: read_client_page(c, 10**6)) is None
