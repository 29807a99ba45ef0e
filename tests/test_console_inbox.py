"""The console's inbox (issue 20): requests listed with their filters, paged, what a
manager may see, each linking to its page; a new request appearing live in an
open inbox without a reload (a Telegram message, and a row written by another
process); the live feed's poller; axe and the keyboard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from hub.console.live import Live
from storage import Database
from storage import console as q
from storage.models import Client, Conversation, Interaction, Manager
from tests.console_kit import axe, browser, console_hub

__all__ = ["browser"]  # the fixture, imported for pytest


async def _request(
    db: Database,
    text: str,
    *,
    channel: str = "email",
    status: str = "open",
    assignee: int | None = None,
    owner: int | None = None,
    due_at: datetime | None = None,
    name: str | None = "Клиент",
) -> int:
    """A client, their request and its message, written straight to the database
    (as the mail worker or another instance would)."""
    now = datetime.now(UTC)
    async with db.write() as conn:
        client = (
            await conn.execute(
                insert(Client).returning(Client.id),
                {"name": name, "owner_id": owner, "created_at": now, "updated_at": now},
            )
        ).scalar_one()
        conversation = (
            await conn.execute(
                insert(Conversation).returning(Conversation.id),
                {
                    "client_id": client,
                    "channel": channel,
                    "account": "support",
                    "status": status,
                    "assignee_id": assignee,
                    "created_at": now,
                    "updated_at": now,
                    "due_at": due_at,
                },
            )
        ).scalar_one()
        await conn.execute(
            insert(Interaction),
            {
                "client_id": client,
                "conversation_id": conversation,
                "direction": "in",
                "channel": channel,
                "text": text,
                "at": now,
            },
        )
    return int(conversation)


async def _manager(db: Database, name: str, telegram_id: int, team: str | None) -> int:
    async with db.write() as conn:
        return int(
            (
                await conn.execute(
                    insert(Manager).returning(Manager.id),
                    {
                        "name": name,
                        "telegram_id": telegram_id,
                        "role": "manager",
                        "attrs": {"team": team},
                        "created_at": datetime.now(UTC),
                    },
                )
            ).scalar_one()
        )


async def test_the_inbox_filters_pages_and_narrows_to_what_a_manager_may_see(
    db: Database,
) -> None:
    ann = await _manager(db, "Ann", 1, "north")
    bob = await _manager(db, "Bob", 2, "south")
    soon = datetime.now(UTC) + timedelta(minutes=20)
    late = datetime.now(UTC) - timedelta(minutes=5)
    free = await _request(db, "nobody's", channel="telegram")
    anns = await _request(db, "Ann's", assignee=ann, due_at=late)
    owned = await _request(db, "owned by Bob", owner=bob, due_at=soon)
    waiting = await _request(db, "waiting", status="waiting", assignee=bob)
    done = await _request(db, "resolved", status="resolved")
    unresolved = ("open", "pending", "waiting")

    async def ids(**where: Any) -> list[int]:
        async with db.read() as conn:
            rows = await q.inbox_page(
                conn, q.InboxFilter(**{"statuses": unresolved, **where}), limit=50, offset=0
            )
        return [r.id for r in rows]

    assert await ids() == [waiting, owned, anns, free]  # newest first
    assert await ids(statuses=("resolved",)) == [done]
    assert await ids(channel="telegram") == [free]
    assert await ids(assignee=ann) == [anns]
    assert await ids(unassigned=True) == [owned, free]
    now = datetime.now(UTC)
    assert await ids(overdue_before=now) == [anns]
    assert await ids(due_between=(now, now + timedelta(hours=1))) == [owned]
    async with db.read() as conn:
        north = await q.team_ids(conn, "north")
    assert north == [ann]
    assert await ids(visible_to=tuple(north)) == [anns, free]  # not Bob's own nor his client's
    async with db.read() as conn:
        [row] = await q.inbox_page(conn, q.InboxFilter(statuses=unresolved), limit=1, offset=1)
        assert (row.id, row.last_text, row.assignee) == (owned, "owned by Bob", None)


async def test_the_inbox_shows_a_manager_what_the_desk_lets_them_see(db: Database) -> None:
    """The inbox narrows by the desk's rule (``Desk.visible``), not one of its own: a
    client kept by a teammate through another request, a client whose other request a
    stranger holds, an owner's client, nobody's; a manager without a team too."""
    from hub.desk.desk import Desk
    from hub.kernel.types import ManagerRef

    ann = await _manager(db, "Ann", 1, "north")
    ada = await _manager(db, "Ada", 3, "north")
    bob = await _manager(db, "Bob", 2, "south")
    lone = await _manager(db, "Lone", 4, None)
    await _request(db, "nobody's")
    await _another(db, await _request(db, "Ada's client, unassigned"), assignee=ada)
    await _another(db, await _request(db, "Bob's client, unassigned"), assignee=bob)
    await _request(db, "owned by Ada", owner=ada)
    await _request(db, "Bob's, owned by Ann", assignee=bob, owner=ann)
    await _request(db, "Lone's", assignee=lone)
    await _request(db, "resolved Bob's keeps nobody", status="resolved", assignee=bob)
    unresolved = ("open", "pending", "waiting")
    for manager, team in ((ann, "north"), (bob, "south"), (lone, None)):
        async with db.read() as conn:
            every = await q.inbox_page(conn, q.InboxFilter(unresolved), limit=50, offset=0)
            mine = await q.team_ids(conn, team)
            shown = await q.inbox_page(
                conn, q.InboxFilter(unresolved, visible_to=tuple(mine)), limit=50, offset=0
            )
            me = ManagerRef(manager, "", 0, "manager", team=team)
            seen = set(await Desk.visible(conn, me, [r.client_id for r in every]))
        assert [r.id for r in shown] == [r.id for r in every if r.client_id in seen], team
        assert 0 < len(shown) < len(every)


async def _another(db: Database, conversation: int, *, assignee: int | None) -> int:
    """A second request of the client of ``conversation``."""
    now = datetime.now(UTC)
    async with db.write() as conn:
        client = (
            await conn.execute(
                select(Conversation.client_id).where(Conversation.id == conversation)
            )
        ).scalar_one()
        return int(
            (
                await conn.execute(
                    insert(Conversation).returning(Conversation.id),
                    {
                        "client_id": client,
                        "channel": "email",
                        "account": "support",
                        "status": "open",
                        "assignee_id": assignee,
                        "created_at": now,
                        "updated_at": now,
                    },
                )
            ).scalar_one()
        )


async def test_the_live_feed_tells_each_subscriber_of_a_change(db: Database) -> None:
    live = Live(db, poll_s=0.05)
    await live.start()
    try:
        async with live.subscribe() as first, live.subscribe() as second:
            for subscriber in (first, second):  # told once on coming, after the first read
                assert await subscriber.next(5) is not None
            assert await first.next(0.2) is None  # nothing moved
            conversation = await _request(db, "hello")
            for subscriber in (first, second):
                change = await subscriber.next(5)
                assert change is not None and change.marks.conversation == conversation
            async with db.write() as conn:  # a change of a request alone is one too
                await conn.execute(
                    update(Conversation)
                    .where(Conversation.id == conversation)
                    .values(updated_at=datetime.now(UTC) + timedelta(seconds=1))
                )
            assert await first.next(5) is not None
        assert live.listeners == 0
    finally:
        await live.stop()


async def test_a_new_request_appears_live_in_an_open_inbox(
    browser: Any, db_url: str, tmp_path: Path
) -> None:
    async with console_hub(db_url, tmp_path) as kit:
        page = await kit.signed_in(browser, "supervisor")
        await page.goto(kit.url("/inbox"))
        await page.wait_for_selector("text=No requests.")
        await page.evaluate("() => { window.notReloaded = true }")

        anna = kit.server.add_user("Анна")
        await kit.server.user_sends(anna, "Здравствуйте, нужна помощь с заказом")
        row = await page.wait_for_selector("tr:has-text('нужна помощь с заказом')", timeout=15_000)
        assert row is not None and "Анна" in await row.inner_text()
        link = await row.query_selector("a")
        assert link is not None
        href = await link.get_attribute("href")
        assert href is not None and href.startswith("/requests/")

        # Another process writes to the database (the mail worker, another instance).
        other = Database(db_url)
        try:
            await _request(other, "Письмо из другого процесса", channel="email", name="Борис")
        finally:
            await other.dispose()
        await page.wait_for_selector("text=Письмо из другого процесса", timeout=15_000)
        assert await page.evaluate("() => window.notReloaded === true")
        assert await page.locator("tbody#inbox-rows tr").count() == 2


async def test_the_inbox_page_filters_with_the_keyboard_and_passes_axe(
    browser: Any, db_url: str, tmp_path: Path
) -> None:
    async with console_hub(db_url, tmp_path, teams={"Мария": "north"}) as kit:
        db = kit.hub.db
        assert db is not None
        async with db.read() as conn:
            olga = await q.person_by_name(conn, "Olga")
        assert olga is not None
        theirs = await _request(db, "assigned to Olga", assignee=olga.id, channel="telegram")
        free = await _request(db, "a request nobody has", channel="email")

        supervisor = await kit.signed_in(browser, "supervisor")
        await supervisor.goto(kit.url("/inbox"))
        assert await supervisor.locator(f"a[href='/requests/{theirs}']").count() == 1
        await axe(supervisor)
        await supervisor.select_option("#f-assignee", "me")
        await supervisor.click("text=Show")
        await supervisor.wait_for_url(lambda url: "assignee=me" in url)
        assert await supervisor.locator("tbody#inbox-rows a").all_inner_texts() == [f"#{theirs}"]

        answer = await supervisor.goto(kit.url("/inbox?channel=fax&page=x"))
        assert answer is not None and answer.status == 400
        assert "No such value" in await supervisor.inner_text("#f-channel-error")
        await axe(supervisor)

        # A manager of another team sees the request nobody has, not Olga's.
        manager = await kit.signed_in(browser, "Мария")
        await manager.goto(kit.url("/inbox"))
        links = await manager.locator("tbody#inbox-rows a").all_inner_texts()
        assert links == [f"#{free}"]
        # The keyboard reaches the request's link.
        for _ in range(30):
            await manager.keyboard.press("Tab")
            focused = await manager.evaluate(
                "() => document.activeElement && document.activeElement.getAttribute('href')"
            )
            if focused == f"/requests/{free}":
                break
        else:
            raise AssertionError("Tab never reached the request's link")
        await axe(manager)
