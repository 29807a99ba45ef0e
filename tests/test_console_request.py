"""A request's page in the web console, in real Chromium (issue 20): a Telegram
client answered from the console gets the answer through the local Bot API and
its topic sees it as an answer given outside it; a double-posted form answers
once; a note reaches no client; take and resolve show in the topic; an email
client's answer reaches the SMTP relay in their thread; a new message of the
client appears in the open page; another team's client and a marketer are
refused (403), a form without its CSRF token too; axe finds nothing on the page."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import aiosmtplib
from sqlalchemy import select

from storage.models import Conversation, Identity, Interaction, Manager
from tests.botapi.server import ChatRef
from tests.console_kit import PEOPLE, ConsoleKit, axe, browser, console_hub, free_port
from tests.test_webform_browser import relay

__all__ = ["browser"]  # the fixture, imported for pytest

T = TypeVar("T")
TIMEOUT = 20.0


async def until(predicate: Callable[[], Awaitable[T | None]], timeout: float = TIMEOUT) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


async def _request_of(kit: ConsoleKit, kind: str, value: str) -> int:
    """The conversation of the client with that identity, once the hub has logged it."""
    db = kit.hub.db
    assert db is not None

    async def found() -> int | None:
        async with db.read() as conn:
            return (
                await conn.execute(
                    select(Conversation.id)
                    .join(Identity, Identity.client_id == Conversation.client_id)
                    .where(Identity.kind == kind, Identity.value == value)
                    .order_by(Conversation.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()

    return await until(found)


def _texts(kit: ConsoleKit, chat: ChatRef) -> list[str]:
    return [m.get("text") or m.get("caption") or "" for m in kit.server.sent_to(chat)]


async def _said_in_topic(kit: ConsoleKit, fragment: str) -> str:
    def seen() -> str:
        return next((t for t in _texts(kit, kit.server.forum) if fragment in t), "")

    return await kit.server.wait_for(seen, timeout=TIMEOUT)


async def _form(page: Any, selector: str) -> dict[str, str]:
    """The hidden fields of a form on the page (its CSRF and one-time tokens)."""
    return dict(
        await page.eval_on_selector(
            selector,
            "f => Object.fromEntries([...f.querySelectorAll('input[type=hidden]')]"
            ".map(i => [i.name, i.value]))",
        )
    )


async def test_a_telegram_client_is_answered_from_the_console(
    browser: Any, db_url: str, tmp_path: Path
) -> None:
    async with console_hub(db_url, tmp_path) as kit:
        anna = kit.server.add_user("Анна", language_code="ru")
        await kit.server.user_sends(anna, "Здравствуйте, где мой заказ?")
        conversation = await _request_of(kit, "telegram", str(anna.id))
        await _said_in_topic(kit, "где мой заказ")  # the topic exists and shows her

        page = await kit.signed_in(browser, "Мария")
        await page.goto(kit.url(f"/requests/{conversation}"))
        assert "Анна" in await page.inner_text("h1")
        assert "где мой заказ" in await page.inner_text("#timeline")
        await axe(page)

        await page.fill("#answer-text", "   ")  # only spaces: said next to the field
        await page.click("text=Отправить клиенту")
        await page.wait_for_selector("#answer-error:text('Напишите текст')")
        assert await page.get_attribute("#answer-text", "aria-invalid") == "true"
        await axe(page)

        await page.fill("#answer-text", "Заказ <b>в пути</b>")
        await page.click("text=Отправить клиенту")
        await page.wait_for_selector("text=Ответ отправлен клиенту")

        def answered() -> list[str] | None:
            got = [t for t in _texts(kit, anna) if "в пути" in t]
            return got or None

        assert await kit.server.wait_for(answered, timeout=TIMEOUT) == ["Заказ <b>в пути</b>"]
        mirrored = await _said_in_topic(kit, "Заказ <b>в пути</b>")
        assert "Мария" in mirrored  # as an answer given outside the topic

        # The same form posted twice (a double click, a retry) answers once.
        await page.fill("#answer-text", "Один раз")
        fields = await _form(page, "form[action$='/answer']")
        post = {**fields, "text": "Один раз", "mode": "answer"}
        for _ in range(2):
            sent = await page.request.post(kit.url(f"/requests/{conversation}/answer"), form=post)
            assert sent.status == 200
        await kit.server.wait_for(lambda: "Один раз" in _texts(kit, anna), timeout=TIMEOUT)

        # A note reaches the topic, never the client.
        await page.goto(kit.url(f"/requests/{conversation}"))
        await page.fill("#answer-text", "любит звонки утром")
        await page.click("text=Сохранить заметку")
        await page.wait_for_selector("text=Заметка сохранена")
        await _said_in_topic(kit, "любит звонки утром")
        assert not any("утром" in t for t in _texts(kit, anna))
        assert _texts(kit, anna).count("Один раз") == 1

        await page.click("text=Взять в работу")
        await page.wait_for_selector("text=Взято в работу: Мария")
        await _said_in_topic(kit, "Взято в работу: Мария")
        await page.click("button:text('Закрыть')")
        await page.wait_for_selector(".request-status:text('закрыто')")
        await _said_in_topic(kit, "Обращение закрыто: Мария")
        await axe(page)


async def test_a_new_message_appears_in_the_open_page(
    browser: Any, db_url: str, tmp_path: Path
) -> None:
    async with console_hub(db_url, tmp_path) as kit:
        anna = kit.server.add_user("Anna")
        await kit.server.user_sends(anna, "first")
        conversation = await _request_of(kit, "telegram", str(anna.id))
        page = await kit.signed_in(browser, "supervisor")
        await page.goto(kit.url(f"/requests/{conversation}"))
        await page.wait_for_selector("#timeline >> text=first")
        await kit.server.user_sends(anna, "second, while you look")
        await page.wait_for_selector(
            "#timeline >> text=second, while you look", timeout=TIMEOUT * 1000
        )
        assert await page.locator("#timeline >> text=second, while you look").count() == 1

        # The log's earlier pages: a fragment for htmx, the whole page without it.
        earlier = await page.request.get(kit.url(f"/requests/{conversation}/earlier?before=1000"))
        assert earlier.status == 200 and "second, while you look" in await earlier.text()
        whole = await page.request.get(kit.url(f"/requests/{conversation}?before=1000"))
        assert "<h1>" in await whole.text()

        # A take in the Telegram topic shows in the open page as it happens.
        topic = await kit.server.wait_for(lambda: kit.server.topics(), timeout=TIMEOUT)
        assert await page.inner_text(".request-assignee") != "Admin"
        admin = kit.people["Admin"]
        await kit.server.manager_sends_in_topic(admin, topic[0].message_thread_id, "/take")
        await page.wait_for_selector(".request-assignee:text('Admin')", timeout=TIMEOUT * 1000)


async def _mail(port: int, message_id: str) -> None:
    message = EmailMessage()
    message["From"] = "Bob Stone <bob@example.org>"
    message["To"] = "desk@desk.example.com"
    message["Subject"] = "Invoice 7"
    message["Message-ID"] = message_id
    message.set_content("Please send the invoice.")
    await aiosmtplib.send(message, hostname="127.0.0.1", port=port, start_tls=False, timeout=20)


async def test_an_email_client_is_answered_by_email_in_their_thread(
    browser: Any, db_url: str, tmp_path: Path
) -> None:
    async with relay() as (mailbox, relay_port):
        smtp = free_port()
        email = {
            "worker": False,
            "smtp": {"listen": f"127.0.0.1:{smtp}", "domains": ["desk.example.com"]},
            "outbound": {
                "host": "127.0.0.1",
                "port": relay_port,
                "from": "Desk <desk@desk.example.com>",
                "starttls": False,
            },
        }
        async with console_hub(db_url, tmp_path, config={"email": email}) as kit:
            await _mail(smtp, "<q-1@example.org>")
            conversation = await _request_of(kit, "email", "bob@example.org")
            page = await kit.signed_in(browser, "supervisor")
            await page.goto(kit.url(f"/requests/{conversation}"))
            assert "Please send the invoice." in await page.inner_text("#timeline")
            await page.fill("#answer-text", "Here it is.")
            await page.click("text=Send to the client")
            await page.wait_for_selector("text=The answer is on its way to the client")
            mails = await mailbox.wait_for(1)
            [answer] = [m for m in mails if m["To"] and "bob@example.org" in m["To"]]
            assert answer["In-Reply-To"] == "<q-1@example.org>"
            assert "q-1@example.org" in (answer["References"] or "")
            assert "Invoice 7" in (answer["Subject"] or "")


async def test_refusals_another_teams_client_a_marketer_and_a_form_without_csrf(
    browser: Any, db_url: str, tmp_path: Path
) -> None:
    people = (*PEOPLE, ("Борис", "manager", "ru"))
    teams = {"Мария": "north", "Борис": "south"}
    async with console_hub(db_url, tmp_path, people=people, teams=teams) as kit:
        anna = kit.server.add_user("Anna")
        await kit.server.user_sends(anna, "hello")
        conversation = await _request_of(kit, "telegram", str(anna.id))
        keeper = await _assignee(kit, conversation)  # routing gave it to one of them
        other = "Борис" if keeper == "Мария" else "Мария"
        kept = await kit.signed_in(browser, keeper)
        await kept.goto(kit.url(f"/requests/{conversation}"))
        await kept.click("text=Взять в работу")
        await kept.wait_for_selector(f"text=Взято в работу: {keeper}")

        refused_page = await kit.signed_in(browser, other)
        shown = await refused_page.goto(kit.url(f"/requests/{conversation}"))
        assert shown is not None and shown.status == 403
        assert "другой команды" in await refused_page.inner_text("main")
        await axe(refused_page)
        fields = await _form(kept, "form[action$='/answer']")
        forged = {"csrf": await _csrf(refused_page), "token": fields["token"], "text": "mine"}
        refused = await refused_page.request.post(
            kit.url(f"/requests/{conversation}/answer"), form={**forged, "mode": "answer"}
        )
        assert refused.status == 403
        taken = await refused_page.request.post(
            kit.url(f"/requests/{conversation}/act"),
            form={"csrf": forged["csrf"], "token": fields["token"], "action": "take"},
        )
        assert taken.status == 403

        for path, status in (
            ("/requests/99999999999", 404),  # beyond the id column: no such request
            ("/requests/0", 404),
            (f"/requests/{conversation}?before=x", 400),
            (f"/requests/{conversation}/tail?after=99999999999", 400),
        ):
            got = await kept.request.get(kit.url(path))
            assert got.status == status, path

        marketer = await kit.signed_in(browser, "marketer")
        shown = await marketer.goto(kit.url(f"/requests/{conversation}"))
        assert shown is not None and shown.status == 403

        no_csrf = await kept.request.post(
            kit.url(f"/requests/{conversation}/answer"),
            form={"token": fields["token"], "text": "forged", "mode": "answer"},
        )
        assert no_csrf.status == 403
        db = kit.hub.db
        assert db is not None
        async with db.read() as conn:
            out = (
                await conn.execute(select(Interaction.text).where(Interaction.direction == "out"))
            ).scalars()
            assert list(out) == []  # nobody was answered


async def _assignee(kit: ConsoleKit, conversation: int) -> str:
    db = kit.hub.db
    assert db is not None

    async def found() -> str | None:
        async with db.read() as conn:
            return (
                await conn.execute(
                    select(Manager.name)
                    .join(Conversation, Conversation.assignee_id == Manager.id)
                    .where(Conversation.id == conversation)
                )
            ).scalar_one_or_none()

    return await until(found)


async def _csrf(page: Any) -> str:
    """The person's CSRF token, as their own pages carry it."""
    return str(await page.get_attribute("form[action='/signout'] input[name=csrf]", "value"))
