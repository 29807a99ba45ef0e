"""The console's admin section and audit log in real Chromium (issue 20): an admin
changes a routing rule and a new client message is routed by it; a bad rule is
refused with its key path and nothing changes; unset brings the file's rule back;
a supervisor is refused the settings but reads the audit log, filtered; a form
without its CSRF token is refused; every page passes axe-core."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from storage import Database
from storage import overrides as store
from storage.models import Conversation, Interaction, Manager
from tests.console_kit import PEOPLE, axe, browser, console_hub
from tests.test_mail_worker import until

__all__ = ["browser"]  # the fixture, used by name

PEOPLE_AND_BORIS = (*PEOPLE, ("Борис", "manager", "ru"))
FILE_RULE = {"rules": [{"name": "vip", "keywords": ["vip"], "managers": ["Мария"]}]}
TO_BORIS = '[routing]\n[[routing.rules]]\nname = "vip"\nkeywords = ["vip"]\nmanagers = ["Борис"]\n'


async def _assignee(db: Database, text: str) -> str | None:
    """Who holds the request of the client message ``text``, once routed."""
    async with db.read() as conn:
        found = await conn.execute(
            select(Manager.name)
            .join(Conversation, Conversation.assignee_id == Manager.id)
            .join(Interaction, Interaction.conversation_id == Conversation.id)
            .where(Interaction.text == text)
        )
        return found.scalar_one_or_none()


async def _routed_to(kit: Any, user: Any, text: str) -> str:
    db = kit.hub.db
    await kit.server.user_sends(user, text)

    async def routed() -> bool:
        return await _assignee(db, text) is not None

    await until(routed)
    name = await _assignee(db, text)
    assert name is not None
    return name


async def test_an_admin_changes_a_rule_and_routing_follows(
    db_url: str, tmp_path: Path, browser: Any
) -> None:
    async with console_hub(
        db_url, tmp_path, config={"routing": FILE_RULE}, people=PEOPLE_AND_BORIS
    ) as kit:
        client = kit.server.add_user("Пётр", language_code="ru")
        assert await _routed_to(kit, client, "vip: first") == "Мария"
        page = await kit.signed_in(browser, "admin")
        answer = await page.goto(kit.url("/admin"))
        assert answer.status == 200
        row = page.locator("tr[data-key='routing']")
        assert "the file" in await row.inner_text()
        await axe(page)

        await row.get_by_role("link").click()
        await page.wait_for_url(kit.url("/admin/routing"))
        assert "Мария" in await page.locator("#toml").input_value()
        await axe(page)

        await page.fill("#toml", TO_BORIS.replace("Борис", "Глеб"))
        await page.get_by_role("button", name="Save").click()
        problems = page.locator("#problems")
        assert "rule 'vip': no manager named 'Глеб'" in await problems.inner_text()
        assert await page.locator("#toml").get_attribute("aria-invalid") == "true"
        assert "Глеб" in await page.locator("#toml").input_value()  # what was typed, kept
        await axe(page)
        assert await _routed_to(kit, client, "vip: second") == "Мария"

        await page.fill("#toml", TO_BORIS)
        await page.get_by_role("button", name="Save").click()
        await page.wait_for_url(kit.url("/admin/routing?done=saved"))
        assert "set here: console:Admin" in await page.locator("#source").inner_text()
        other = kit.server.add_user("Ирина", language_code="ru")
        assert await _routed_to(kit, other, "vip: third") == "Борис"

        await page.get_by_role("button", name="Back to the file's value").focus()
        await page.keyboard.press("Enter")  # the keyboard alone does it
        await page.wait_for_url(kit.url("/admin/routing?done=unset"))
        assert "the file" in await page.locator("#source").inner_text()
        third = kit.server.add_user("Олег", language_code="ru")
        assert await _routed_to(kit, third, "vip: fourth") == "Мария"

        await page.goto(kit.url("/audit?action=settings.set"))
        assert "console:Admin" in await page.locator("table.rows tbody").inner_text()
        await axe(page)


async def test_roles_csrf_and_the_audit_filters(db_url: str, tmp_path: Path, browser: Any) -> None:
    async with console_hub(db_url, tmp_path, config={"routing": FILE_RULE}) as kit:
        db = kit.hub.db
        assert db is not None
        supervisor = await kit.signed_in(browser, "supervisor")
        answer = await supervisor.goto(kit.url("/admin/routing"))
        assert answer.status == 403
        assert "admin" in await supervisor.locator("main").inner_text()
        await axe(supervisor)
        answer = await supervisor.goto(kit.url("/audit"))
        assert answer.status == 200
        await axe(supervisor)

        await supervisor.fill("#a-since", "2026-12-31")
        await supervisor.fill("#a-until", "2026-01-01")
        await supervisor.get_by_role("button", name="Show").click()
        error = supervisor.locator("#a-since-error")
        assert "since: must come before until" in await error.inner_text()
        assert await supervisor.locator("#a-since").get_attribute("aria-invalid") == "true"
        await axe(supervisor)
        answer = await supervisor.goto(kit.url("/audit?actor=console:Olga&page=1"))
        assert answer.status == 200

        manager = await kit.signed_in(browser, "manager")
        answer = await manager.goto(kit.url("/audit"))
        assert answer.status == 403
        assert "/admin" not in await manager.locator("header").inner_html()

        admin = await kit.signed_in(browser, "admin")
        await admin.goto(kit.url("/admin/routing"))
        forged = await admin.request.post(
            kit.url("/admin/routing"), form={"toml": TO_BORIS.replace("Борис", "Olga")}
        )
        assert forged.status == 403
        async with db.read() as conn:
            assert (await store.snapshot(conn)).items == {}
        answer = await admin.goto(kit.url("/admin/admin.token"))
        assert answer.status == 404
