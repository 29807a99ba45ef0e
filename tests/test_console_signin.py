"""Signing in to the web console in real Chromium (issue 20): a link printed by
``hub console link``, sent by the bot's ``/web`` over the local Bot API, or by
email; a link used once; sign-out; CSRF and role refusals; sessions ended by a
revoked token and by a manager's removal; a client's first read audited once."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from sqlalchemy import insert, select

from hub import config as hub_config
from hub.admin.tokens import Tokens
from hub.console.app import CTX, PERSON, ConsoleContext, Person
from hub.kernel.clock import SystemClock
from hub.kernel.types import Role
from storage import Database
from storage.models import Audit, Client, ConsoleLink, ConsoleSession, Manager
from tests.console_kit import axe, browser, console_hub
from tests.test_webform_browser import relay

__all__ = ["browser"]  # the fixture, imported for pytest

LINK = re.compile(r"http://127\.0\.0\.1:\d+/signin\?k=[A-Za-z0-9_-]{43}")


async def _cli_link(config: Path, name: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.app.cli", "console", "link", name, "--config", str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return int(process.returncode or 0), out.decode(), err.decode()


async def test_a_printed_link_signs_in_once_and_sign_out_ends_it(
    browser: Any, db_url: str, tmp_path: Path
) -> None:
    async with console_hub(db_url, tmp_path) as kit:
        config = kit.config_file(tmp_path)
        code, out, err = await _cli_link(config, "Мария")
        assert code == 0, err
        url = out.strip()
        assert LINK.fullmatch(url) and url.startswith(kit.base)
        code, out, err = await _cli_link(config, "Nobody")
        assert code == 1 and "no manager named 'Nobody'" in err and not out

        page = await (await browser.new_context()).new_page()
        await page.goto(kit.url("/inbox"))  # not signed in: the sign-in page
        assert "/signin" in page.url
        await axe(page)
        # A GET of the link (a mail or chat scanner) signs nobody in, nor uses it.
        for _ in range(2):
            await page.goto(url)
            await page.wait_for_selector("#signin")
        await axe(page)
        await page.click("#signin")
        await page.wait_for_url(kit.url("/inbox"))
        assert await page.inner_text("h1") == "Входящие запросы"
        assert "Мария" in await page.inner_text("header")

        other = await (await browser.new_context()).new_page()
        await other.goto(url)  # used: refused, and its POST too
        await other.wait_for_selector("#link-bad")
        assert "уже использована" in await other.inner_text("#link-bad")

        await page.click("text=Выйти")
        await page.wait_for_url(re.compile(r"/signin\?out=1$"))
        assert "Вы вышли" in await page.inner_text("main")
        await page.goto(kit.url("/inbox"))
        assert "/signin" in page.url
        db = kit.hub.db
        assert db is not None
        async with db.read() as conn:
            [session] = (await conn.execute(select(ConsoleSession))).all()
            links = (await conn.execute(select(ConsoleLink.secret_hash))).scalars().all()
            audited = (
                await conn.execute(select(Audit.actor, Audit.action).order_by(Audit.id))
            ).all()
        assert [tuple(a) for a in audited] == [
            ("console:Мария", "console.sign_in"),
            ("console:Мария", "console.sign_out"),
        ]
        assert session.ended_at is not None and session.name == "Мария"
        assert url.rpartition("=")[2] not in links  # only hashes are kept


async def test_the_bots_web_command_sends_a_link(browser: Any, db_url: str, tmp_path: Path) -> None:
    async with console_hub(db_url, tmp_path) as kit:
        olga = kit.people["Olga"]
        await kit.server.user_sends(olga, "/web")

        def link() -> str | None:
            for message in kit.server.sent_to(olga.id):
                found = LINK.search(message.get("text") or "")
                if found:
                    return found.group(0)
            return None

        url = await kit.server.wait_for(link, timeout=15)
        page = await (await browser.new_context()).new_page()
        await page.goto(url)
        await page.click("#signin")
        await page.wait_for_url(kit.url("/inbox"))
        assert await page.inner_text("h1") == "Inbox"  # Olga reads English


async def test_csrf_and_role_refusals(browser: Any, db_url: str, tmp_path: Path) -> None:
    async with console_hub(db_url, tmp_path) as kit:
        page = await kit.signed_in(browser, "supervisor")
        refused = await page.request.post(kit.url("/signout"), max_redirects=0)
        assert refused.status == 403
        assert "out of date" in await refused.text()
        forged = await page.request.post(
            kit.url("/signout"), form={"csrf": "0" * 40}, max_redirects=0
        )
        assert forged.status == 403
        await page.goto(kit.url("/inbox"))  # still signed in
        assert await page.inner_text("h1") == "Inbox"

        marketer = await kit.signed_in(browser, "marketer")
        answer = await marketer.goto(kit.url("/inbox"))
        assert answer is not None and answer.status == 403
        said = await marketer.inner_text("main")
        assert "Ваша роль: маркетолог" in said and "руководитель" in said
        await axe(marketer)


async def test_sessions_end_on_a_revoked_token_and_a_removed_manager(
    browser: Any, db_url: str, tmp_path: Path
) -> None:
    async with console_hub(db_url, tmp_path) as kit:
        db = kit.hub.db
        assert db is not None
        tokens = Tokens(db)
        await tokens.add("Olga", "supervisor")
        olga = await kit.signed_in(browser, "Olga")
        maria = await kit.signed_in(browser, "Мария")
        await tokens.revoke("Olga")
        await olga.goto(kit.url("/inbox"))
        assert "/signin" in olga.url
        olga_again = await kit.signed_in(browser, "Olga")  # a new sign-in after it: good
        await olga_again.goto(kit.url("/inbox"))
        assert await olga_again.inner_text("h1") == "Inbox"

        config = kit.hub.config
        without = config.model_copy(
            update={"managers": [m for m in config.managers if m.name != "Мария"]}
        )
        result = await kit.hub.reload(without)
        assert not result.problems
        await maria.goto(kit.url("/inbox"))
        assert "/signin" in maria.url
        async with db.read() as conn:
            ended = (
                await conn.execute(
                    select(ConsoleSession.name).where(ConsoleSession.ended_at.is_not(None))
                )
            ).scalars()
            assert sorted(ended) == ["Olga", "Мария"]


async def test_a_link_by_email(browser: Any, db_url: str, tmp_path: Path) -> None:
    async with relay() as (mailbox, relay_port):
        outbound = {"host": "127.0.0.1", "port": relay_port, "from": "Hub <hub@example.com>"}
        people = (("Olga", "supervisor", "en"), ("Мария", "manager", "ru"))
        async with console_hub(
            db_url, tmp_path, config={"email": {"outbound": {**outbound, "starttls": False}}},
            people=people,
        ) as kit:  # fmt: skip
            await _register_email(kit.hub, "Olga", "olga@example.com")
            page = await (await browser.new_context()).new_page()
            await page.goto(kit.url("/signin"))
            await page.fill("#email", "not an address")
            await page.click("text=Прислать ссылку")
            await page.wait_for_selector("#email-error")
            assert await page.get_attribute("#email", "aria-invalid") == "true"
            await axe(page)

            for address in ("nobody@example.com", "OLGA@example.com"):
                await page.fill("#email", address)
                await page.click("text=Прислать ссылку")
                await page.wait_for_selector("#sent")  # the same answer for both
            [mail] = await mailbox.wait_for(1)
            assert mail["To"] == "OLGA@example.com"
            payload = mail.get_payload(decode=True)
            assert isinstance(payload, bytes)
            body = payload.decode()
            url = LINK.search(body)
            assert url is not None and "Olga" in body
            await page.goto(url.group(0))
            await page.click("#signin")
            await page.wait_for_url(kit.url("/inbox"))
            assert await page.inner_text("h1") == "Inbox"
            assert len(mailbox.mail) == 1

            # Five asks a minute from one address; the sixth is refused, said as such.
            limited = await (await browser.new_context()).new_page()
            statuses = []
            for _ in range(5):
                await limited.goto(kit.url("/signin"))
                await limited.fill("#email", "nobody@example.com")
                async with limited.expect_response(kit.url("/signin/email")) as answer:
                    await limited.click("text=Прислать ссылку")
                statuses.append((await answer.value).status)
            assert statuses[-1] == 429 and 200 in statuses
            assert "Слишком много" in await limited.inner_text("#email-error")


async def _register_email(hub: Any, name: str, address: str) -> None:
    """``[[managers]] email`` set for ``name`` and taken by a reload."""
    config: hub_config.Config = hub.config
    managers = [
        m.model_copy(update={"email": address}) if m.name == name else m for m in config.managers
    ]
    result = await hub.reload(config.model_copy(update={"managers": managers}))
    assert not result.problems


async def test_a_clients_first_read_in_a_session_is_audited_once(db: Database) -> None:
    config = hub_config.parse({"admin": {"token": "x" * 20}})
    ctx = ConsoleContext(db, lambda: config, SystemClock())
    app = web.Application()
    app[CTX] = ctx
    now = ctx.clock.now()
    async with db.write() as conn:
        manager = (
            await conn.execute(
                insert(Manager).returning(Manager.id),
                {"name": "A", "telegram_id": 1, "role": "manager", "created_at": now},
            )
        ).scalar_one()
        client = (
            await conn.execute(
                insert(Client).returning(Client.id),
                {
                    "name": "C",
                    "stage": "prospect",
                    "opted_out": False,
                    "created_at": now,
                    "updated_at": now,
                },
            )
        ).scalar_one()
        sessions = [
            (
                await conn.execute(
                    insert(ConsoleSession).returning(ConsoleSession.id),
                    {
                        "secret_hash": f"{n}" * 64,
                        "manager_id": manager,
                        "name": "A",
                        "created_at": now,
                        "last_seen_at": now,
                    },
                )
            ).scalar_one()
            for n in (1, 2)
        ]
    for session_id in (*sessions, sessions[0]):
        request = make_mocked_request("GET", "/requests/1", app=app)
        request[PERSON] = Person(manager, "A", Role.MANAGER, 1, None, None, None, session_id, "h")
        await ctx.audit_first_read(request, client)
        await ctx.audit_first_read(request, client)  # a live refresh: nothing more
    async with db.read() as conn:
        rows = (await conn.execute(select(Audit.actor, Audit.action, Audit.object_id))).all()
    assert rows == [("console:A", "read", client)] * 2  # once per session
