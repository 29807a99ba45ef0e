"""The web console's clients pages: search, the card (identities, stage history,
business events, ratings, the timeline in pages), merge and undo, import with its
per-row report, export, and who may see which client."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from hub.clients.event_writer import EventRecorder
from hub.clients.events import ClientRef, EventIn
from hub.clients.stages import move
from hub.console import clients as console_clients
from hub.kernel.clock import FrozenClock
from hub.kernel.identities import identity
from hub.kernel.types import Channel
from storage import Database
from storage.client_page import read_client_page, read_timeline_page
from storage.models import Audit, Client, Merge, Rating
from storage.read import read_timeline
from tests.console_kit import axe, browser, console_hub
from tests.test_ingest import T0, message, rows, running

__all__ = ["browser"]  # the fixture, imported for pytest


@dataclass(frozen=True)
class Seeded:
    client_id: int
    conversation_id: int
    twin_id: int = 0  # Петрова Анна over Telegram: a suggested duplicate


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
        twin = await ingest(
            message(Channel.TELEGRAM, "t1", identity("telegram", 7, "Петрова Анна"))
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
    return Seeded(first.client_id, first.conversation_id, twin.client_id)


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
                lambda c, older=older: read_timeline_page(c, seeded.client_id, before=older, page=3)
            )
        )
        before = pages[-1].older
    every = [i.id for p in pages for i in p.items]
    assert every == sorted(whole, reverse=True)
    assert all(len(p.items) == 3 for p in pages[:-1]) and 1 <= len(pages[-1].items) <= 3
    assert pages[-1].items[-1].text == "Где мой заказ?"
    assert await db.run_read(lambda c: read_client_page(c, 10**6)) is None


IMPORT = (
    "name,email,phone,stage,city\n"
    "Иван Хороший,ivan@example.org,,,Москва\n"
    "Плохая Строка,not-an-email,,wizard,\n"
    "Пётр,,+7 916 555 44 33,client,\n"
)


async def audited(db: Database, actor: str) -> list[tuple[str, int | None]]:
    found = await rows(
        db, select(Audit.action, Audit.object_id).where(Audit.actor == actor).order_by(Audit.id)
    )
    return [(a, o) for a, o in found]


async def test_a_supervisor_finds_reads_merges_undoes_imports_and_exports(
    browser: Any, db: Database, db_url: str, tmp_path: Path
) -> None:
    seeded = await seed_client(db, tmp_path)
    anna = seeded.client_id
    async with console_hub(db_url, tmp_path) as kit:
        page = await kit.signed_in(browser, "supervisor")  # Olga, in English
        # search by a phone fragment written another way, and by a name
        await page.goto(kit.url("/clients?q=916%20123-45"))
        assert f"#{anna} Анна Петрова" in await page.inner_text("#found")
        await axe(page)
        await page.fill("#q", "петрова")
        await page.click("button:has-text('Find')")
        await page.wait_for_url("**/clients?q=*")
        found = await page.inner_text("#found")
        assert f"#{anna} Анна Петрова" in found and f"#{seeded.twin_id} Петрова Анна" in found

        # the card: identities, stage history, the purchase, the rating, the timeline
        await page.click(f"a[href='/clients/{anna}']")
        await page.wait_for_url(kit.url(f"/clients/{anna}"))
        main = await page.inner_text("main")
        for said in (
            "anna@example.org",
            "+79161234567",
            "purchase",
            "1250.00 RUB",
            "быстро ответили",
        ):
            assert said in main, said
        assert "prospect\tclient\tolga" in await page.inner_text("table[aria-labelledby=stages]")
        assert "Где мой заказ?" in await page.inner_text("ol.timeline")
        assert await page.locator(f"a[href='/requests/{seeded.conversation_id}']").count() > 0
        await axe(page)
        await page.reload()
        reads = [a for a in await audited(db, "console:Olga") if a == ("read", anna)]
        assert len(reads) == 1  # the first read of the session only

        # a merge suggested, made, then undone
        await page.goto(kit.url("/clients/merges"))
        await axe(page)
        await page.click(f"#merge-{anna}-{seeded.twin_id}")
        await page.wait_for_url(f"**/clients/{anna}?merged=*")
        assert f"Client #{seeded.twin_id} was merged" in await page.inner_text("[role=status]")
        [merged] = await rows(db, select(Client.merged_into).where(Client.id == seeded.twin_id))
        assert merged.merged_into == anna
        await axe(page)
        await page.click("button[id^=undo-]")
        await page.wait_for_url(f"**/clients/{anna}?undone=*")
        assert "The merge was undone" in await page.inner_text("[role=status]")
        [undone] = await rows(db, select(Merge.undone_at))
        assert undone.undone_at is not None
        [twin] = await rows(db, select(Client.merged_into).where(Client.id == seeded.twin_id))
        assert twin.merged_into is None
        # a merge into itself: the card again with the error by the field
        await page.fill("#other", str(anna))
        await page.click("button:has-text('Merge')")
        assert "cannot be merged into itself" in await page.inner_text("#other-error")
        await axe(page)

        # an import: the bad row by number with all its problems, the good rows in
        await page.goto(kit.url("/clients/import"))
        await axe(page)
        await page.click("#upload")  # no file: said by the field
        assert "Choose a file" in await page.inner_text("#file-error")
        file = {"name": "clients.csv", "mimeType": "text/csv", "buffer": IMPORT.encode()}
        await page.set_input_files("#file", files=[file])
        await page.click("#upload")
        await page.wait_for_selector("#import-done")
        assert "added 2" in await page.inner_text("#import-done")
        refused = await page.inner_text("#refused tbody")
        assert (
            refused.startswith("3\t") and "email:" in refused and "stage: unknown stage" in refused
        )
        assert await page.locator("progress#import-bar").count() == 1
        polled = await page.request.get(page.url, headers={"HX-Request": "true"})
        fragment = await polled.text()  # what htmx asks for: the progress alone, done
        assert fragment.lstrip().startswith("<section") and "hx-trigger" not in fragment
        await axe(page)
        names = {r.name for r in await rows(db, select(Client.name))}
        assert {"Иван Хороший", "Пётр"} <= names and "Плохая Строка" not in names

        # the export: every client as CSV
        await page.goto(kit.url("/clients"))
        async with page.expect_download() as waiting:
            await page.click("a[href='/clients.csv']")
        download = await waiting.value
        exported = list(csv.DictReader(io.StringIO(Path(await download.path()).read_text())))
        assert {"anna@example.org", "ivan@example.org"} <= {r["email"] for r in exported}
        actions = [a for a, _ in await audited(db, "console:Olga")]
        assert {"search", "merge", "unmerge", "import", "export"} <= set(actions)


async def test_who_may_see_and_change_clients(
    browser: Any, db: Database, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console_clients, "TIMELINE", 3)  # the timeline in pages of 3
    seeded = await seed_client(db, tmp_path)
    card = f"/clients/{seeded.client_id}"
    async with console_hub(db_url, tmp_path) as kit:
        marketer = await kit.signed_in(browser, "marketer")  # Марк: no client at all
        for path in (card, "/clients?q=anna", "/clients/merges", "/clients.csv"):
            response = await marketer.goto(kit.url(path))
            assert response is not None and response.status == 403, path
        await axe(marketer)
        assert "a[href='/clients']" not in await marketer.inner_html("header")
        refused = await audited(db, "console:Марк")
        assert ("refused", seeded.client_id) in refused
        assert ("read", seeded.client_id) not in refused

        manager = await kit.signed_in(browser, "manager")  # Мария: a client nobody keeps
        response = await manager.goto(kit.url(card))
        assert response is not None and response.status == 200
        timeline = manager.locator("ol.timeline > li.entry")
        assert await timeline.count() == 3
        while await manager.locator("li.earlier a").count():  # each page put in place by htmx
            shown = await timeline.count()
            await manager.click("li.earlier a")
            await manager.wait_for_function(
                "(n) => document.querySelectorAll('ol.timeline > li.entry').length > n", arg=shown
            )
        assert manager.url == kit.url(card)  # never left the page
        said = await timeline.all_inner_texts()
        assert "Где мой заказ?" in said[-1] and len(said) == len(set(said))
        await axe(manager)
        assert await manager.locator("#other").count() == 0  # no merge form: no right
        for path in ("/clients/merges", "/clients/import", "/clients.csv"):
            response = await manager.goto(kit.url(path))
            assert response is not None and response.status == 403, path
        # a POST without the form's token changes nothing
        response = await manager.request.post(
            kit.url(f"/clients/{seeded.client_id}/merge"), form={"other": str(seeded.twin_id)}
        )
        assert response.status == 403
        assert await rows(db, select(Merge.id)) == []


async def test_an_imports_page_answers_on_another_instance(db: Database) -> None:
    """The import's outcome is kept in the database: another instance (another
    ``ImportJobs``) shows its report; one left running by a process that stopped is
    said to have failed after a while; nobody else's import is shown."""
    from datetime import timedelta

    from hub.clients.book import ClientBook
    from storage import console as console_q
    from tests.test_ingest import add_manager

    olga = await add_manager(db, "Olga", 1001)
    clock = FrozenClock(T0)
    here = console_clients.ImportJobs(db, clock)
    there = console_clients.ImportJobs(db, clock)
    book = ClientBook(db, clock)
    text = "name,email\nАнна,anna@example.org\nБорис,not an address\n"
    job = await here.start(book, text, owner=olga, file="list.csv", actor="console:Olga")
    await here.close()
    seen = await there.get(job.id, olga)
    assert seen is not None and seen.report is not None
    assert (seen.report.added, len(seen.report.errors)) == (1, 1)
    assert seen.report.errors[0][0] == 3  # the row's number, as the page shows it
    assert await there.get(job.id, olga + 1) is None  # not theirs
    assert await there.get("no-such-import", olga) is None
    async with db.write() as conn:  # a process that stopped mid-import
        await console_q.import_started(conn, "left-running", olga, "big.csv", T0)
    running_job = await there.get("left-running", olga)
    assert running_job is not None and not running_job.finished  # under way, elsewhere
    clock.advance(console_clients.STALE_IMPORT + timedelta(minutes=1))
    stopped = await there.get("left-running", olga)
    assert stopped is not None and stopped.failed
    clock.advance(console_clients.KEEP_IMPORTS)  # the next import clears those of long ago
    later = await here.start(book, "name\nВера\n", owner=olga, file="b.csv", actor="console:Olga")
    await here.close()
    assert await there.get(job.id, olga) is None
    assert await there.get(later.id, olga) is not None
