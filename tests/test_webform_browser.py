"""Web forms in a real headless Chromium (Debian's, driven by Playwright) against
the assembled hub with Telegram on the local Bot API (issue 5): a person fills
the hosted form, sees the field errors, corrects them and sees the thank-you; a
page on a second local origin embeds the script and submits, while a third
origin is refused; each request lands on the right client and in the managers'
topic, with what the person typed shown as text, never as markup; the person
gets the confirmation and the manager's answer by email (a loopback SMTP relay)."""

from __future__ import annotations

import asyncio
import email
import email.header
import email.message
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from hub import config as hub_config
from hub.app.run import Hub
from storage import Database
from storage.models import Identity, Interaction
from tests.botapi import BotApiServer, Limits
from tests.botapi.world import User
from tests.console_kit import browser, free_port

__all__ = ["browser"]  # the fixture, imported for pytest
NAME = "Анна <b>Смирнова</b>"  # markup typed by a person stays text everywhere


class Relay:
    """A loopback SMTP relay that keeps what the hub sends."""

    def __init__(self) -> None:
        self.mail: list[email.message.Message] = []
        self.changed = asyncio.Condition()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.mail.append(email.message_from_bytes(envelope.original_content or b""))
        async with self.changed:
            self.changed.notify_all()
        return "250 OK"

    async def wait_for(self, count: int, timeout: float = 15) -> list[email.message.Message]:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: len(self.mail) >= count)
        return self.mail


@asynccontextmanager
async def relay() -> AsyncIterator[tuple[Relay, int]]:
    handler = Relay()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    try:
        yield handler, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def hub_with_forms(
    db_url: str,
    tmp_path: Path,
    server: BotApiServer,
    shop_origin: str,
    relay_port: int | None = None,
) -> AsyncIterator[tuple[str, User]]:
    port = free_port()
    manager = server.add_manager("Мария")
    outbound = (
        {
            "outbound": {
                "host": "127.0.0.1",
                "port": relay_port,
                "from": "Support <help@support.example>",
                "starttls": False,
            }
        }
        if relay_port
        else {}
    )
    config = hub_config.parse(
        {
            "email": outbound,
            "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
            "admin": {"listen": f"127.0.0.1:{free_port()}", "token": "browser-admin-token-0123"},
            "hub": {"language": "ru"},
            "dispatcher": {"idle_poll_s": 0.2},
            "telegram": {
                "enabled": True,
                "token": server.token,
                "api_base": server.base_url,
                "staff_chat_id": server.forum.id,
            },
            "managers": [{"name": "Мария", "telegram_id": manager.id}],
            "webform": {
                "listen": f"127.0.0.1:{port}",
                "forms": [
                    {
                        "id": "contact",
                        "min_fill_seconds": 0,
                        "title_ru": "Напишите нам",
                        "confirm_email": True,
                    },
                    {
                        "id": "embed",
                        "language": "en",
                        "min_fill_seconds": 0,
                        "allowed_origins": [shop_origin],
                        "thank_you": "Thanks, shop visitor!",
                    },
                ],
            },
        }
    )
    async with Hub(config).lifespan():
        yield f"http://127.0.0.1:{port}", manager


@asynccontextmanager
async def shop(port: int, hub_base: str) -> AsyncIterator[None]:
    """The company's own site on another origin, embedding the form by its script."""

    async def index(request: web.Request) -> web.Response:
        return web.Response(
            text=(
                "<!DOCTYPE html><html><head><title>Shop</title></head><body>"
                "<h1>Our shop</h1><div id='slot'></div>"
                f"<script src='{hub_base}/f/embed.js' data-target='#slot'></script>"
                "</body></html>"
            ),
            content_type="text/html",
        )

    app = web.Application()
    app.router.add_get("/", index)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def _interactions(db_url: str) -> list[Any]:
    db = Database(db_url)
    try:
        async with db.read() as conn:
            rows = await conn.execute(
                select(Interaction).where(Interaction.direction == "in").order_by(Interaction.id)
            )
            return list(rows.all())
    finally:
        await db.dispose()


async def _identities(db_url: str, client_id: int) -> set[tuple[str, str]]:
    db = Database(db_url)
    try:
        async with db.read() as conn:
            rows = await conn.execute(
                select(Identity.kind, Identity.value).where(Identity.client_id == client_id)
            )
            return {(k, v) for k, v in rows.all()}
    finally:
        await db.dispose()


def _topic_texts(server: BotApiServer) -> Callable[[], list[str] | None]:
    def texts() -> list[str] | None:
        found = [m.get("text") or m.get("caption") or "" for m in server.sent_to(server.forum)]
        return found or None

    return texts


async def test_a_person_fills_the_hosted_form(browser: Any, db_url: str, tmp_path: Path) -> None:
    async with (
        BotApiServer(limits=Limits.off()) as server,
        relay() as (mailbox, relay_port),
        hub_with_forms(db_url, tmp_path, server, "http://127.0.0.1:1", relay_port) as (
            base,
            manager,
        ),
    ):
        page = await browser.new_page()
        await page.goto(f"{base}/f/contact?utm_source=browser-test")
        assert await page.inner_text("h1") == "Напишите нам"
        await page.fill("#field-name", NAME)
        await page.fill("#field-email", "anna at example")
        await page.click("button[type=submit]")

        await page.wait_for_selector("#error-email")
        assert "эл. почты" in await page.inner_text("#error-email")
        assert "Заполните" in await page.inner_text("#error-message")
        # what was typed is still there, as typed
        assert await page.input_value("#field-name") == NAME
        assert await page.input_value("#field-email") == "anna at example"
        assert await _interactions(db_url) == []

        await page.fill("#field-email", "Anna@Example.com")
        await page.fill("#field-phone", "8 912 345-67-89")
        await page.fill("#field-message", "Нужна консультация <script>alert(1)</script>")
        await page.click("button[type=submit]")
        await page.wait_for_selector("#thanks")
        assert "Спасибо" in await page.inner_text("#thanks")

        [row] = await _interactions(db_url)  # committed before the page answered
        assert row.channel == "webform" and row.account == "contact"
        assert row.extras["utm"] == {"utm_source": "browser-test"}
        assert await _identities(db_url, row.client_id) == {
            ("email", "anna@example.com"),
            ("phone", "+79123456789"),
        }
        texts = await server.wait_for(
            lambda: (lambda t: t if t and any("консультация" in x for x in t) else None)(
                _topic_texts(server)()
            ),
            timeout=15,
        )
        [topic] = server.topics()
        assert "Смирнова" in topic.name
        joined = "\n".join(texts)
        # escaped for Telegram's HTML: the markup arrives as the characters typed
        assert NAME in joined
        assert "<script>alert(1)</script>" in joined

        # The manager answers in the topic; the answer goes to the person by email,
        # after the confirmation the form asked for.
        await server.manager_sends_in_topic(manager, topic.message_thread_id, "Позвоним завтра.")
        confirmation, answer = await mailbox.wait_for(2)
        assert confirmation["To"] == answer["To"] == "anna@example.com"
        assert confirmation["Auto-Submitted"] == "auto-replied"
        assert "Напишите нам" in str(
            email.header.make_header(email.header.decode_header(confirmation["Subject"]))
        )
        body = answer.get_payload(0).get_payload(decode=True).decode()
        assert "Позвоним завтра." in body


async def test_a_page_on_another_origin_embeds_the_form(
    browser: Any, db_url: str, tmp_path: Path
) -> None:
    shop_port = free_port()
    shop_origin = f"http://127.0.0.1:{shop_port}"
    async with (
        BotApiServer(limits=Limits.off()) as server,
        hub_with_forms(db_url, tmp_path, server, shop_origin) as (base, _),
        shop(shop_port, base),
    ):
        page = await browser.new_page()
        await page.goto(f"{shop_origin}/?utm_campaign=spring")
        await page.wait_for_selector("#hubf-embed-email")
        await page.fill("#hubf-embed-name", NAME)
        await page.fill("#hubf-embed-email", "bad")
        await page.click("#hubf-embed-root button[type=submit]")
        await page.wait_for_selector("#hubf-embed-error-email:not([hidden])")
        assert "email address" in await page.inner_text("#hubf-embed-error-email")
        assert "Please fill in" in await page.inner_text("#hubf-embed-error-message")

        await page.fill("#hubf-embed-email", "boris@example.org")
        await page.fill("#hubf-embed-message", "Do you ship to Kazan?")
        await page.click("#hubf-embed-root button[type=submit]")
        await page.wait_for_selector("#hubf-embed-thanks")
        assert await page.inner_text("#hubf-embed-thanks") == "Thanks, shop visitor!"

        [row] = await _interactions(db_url)
        assert row.account == "embed"
        assert row.extras["page"] == f"{shop_origin}/?utm_campaign=spring"
        assert row.extras["utm"] == {"utm_campaign": "spring"}
        assert await _identities(db_url, row.client_id) == {("email", "boris@example.org")}
        texts = await server.wait_for(
            lambda: (lambda t: t if t and any("Kazan" in x for x in t) else None)(
                _topic_texts(server)()
            ),
            timeout=15,
        )
        assert NAME in "\n".join(texts)

        # The same page under another origin (localhost is not 127.0.0.1) is refused:
        # the browser's preflight gets 403, the visitor a clear message, the log nothing.
        other = await browser.new_page()
        await other.goto(f"http://localhost:{shop_port}/")
        await other.wait_for_selector("#hubf-embed-email")
        await other.fill("#hubf-embed-email", "eve@example.org")
        await other.fill("#hubf-embed-message", "from elsewhere")
        await other.click("#hubf-embed-root button[type=submit]")
        await other.wait_for_selector("#hubf-embed-error-_form:not([hidden])")
        assert "could not be sent" in await other.inner_text("#hubf-embed-error-_form")
        assert len(await _interactions(db_url)) == 1
