"""Issue 15: a manager answers from the private chat with the bot, in the assembled
hub (``hub run``'s Hub) against the local Bot API server with Telegram's limits
enforced, a capturing SMTP server on loopback and the web form server.

A Telegram client is answered by a reply to the notice with their words; an email
client through the current client (``/c ID``); a web form client with a canned
answer (``/t NAME``), which goes by email. Each answer is copied into the client's
topic, and no request of the hub is answered 429.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import aiosmtplib
from sqlalchemy import text

from channels.telegram import TelegramChannel
from channels.telegram.staff import StaffSide
from hub import config as hub_config
from hub.app.run import Hub
from tests.botapi import BotApiServer
from tests.botapi.world import Json, User
from tests.test_campaign_email import Sink, smtp_sink

TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(
    db_url: str, tmp_path: Path, server: BotApiServer, maria: User, ports: dict[str, int]
) -> hub_config.Config:
    return hub_config.parse(
        {
            "hub": {"language": "en"},
            "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
            "admin": {"listen": f"127.0.0.1:{ports['admin']}", "token": "p" * 24},
            "dispatcher": {"idle_poll_s": 0.1},
            "telegram": {
                "enabled": True,
                "token": server.token,
                "api_base": server.base_url,
                "mode": "polling",
                "staff_chat_id": server.forum.id,
            },
            "managers": [{"name": "Maria", "telegram_id": maria.id, "language": "en"}],
            "email": {
                "worker": False,
                "smtp": {"listen": f"127.0.0.1:{ports['smtp']}", "domains": ["desk.example.com"]},
                "outbound": {
                    "host": "127.0.0.1",
                    "port": ports["sink"],
                    "from": "Desk <desk@desk.example.com>",
                    "starttls": False,
                },
            },
            "webform": {
                "listen": f"127.0.0.1:{ports['form']}",
                "forms": [{"id": "contact", "language": "en", "min_fill_seconds": 0}],
            },
            "desk": {"templates": [{"name": "thanks", "en": "Thank you, {{ first_name }}!"}]},
        }
    )


@asynccontextmanager
async def assembled(
    db_url: str, tmp_path: Path, server: BotApiServer, maria: User
) -> AsyncIterator[tuple[Sink, dict[str, int], Hub]]:
    async with smtp_sink() as (sink, sink_port):
        ports = {"admin": _free_port(), "smtp": _free_port(), "form": _free_port()}
        ports["sink"] = sink_port
        hub = Hub(_config(db_url, tmp_path, server, maria, ports))
        async with hub.lifespan():
            yield sink, ports, hub


def _text(message: Json) -> str:
    return str(message.get("text") or message.get("caption") or "")


def _body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


async def _mail(port: int) -> None:
    message = EmailMessage()
    message["From"] = "Bob Stone <bob@example.org>"
    message["To"] = "desk@desk.example.com"
    message["Subject"] = "Invoice 7"
    message["Message-ID"] = "<invoice-7@example.org>"
    message.set_content("Please send the invoice again.")
    await aiosmtplib.send(message, hostname="127.0.0.1", port=port, start_tls=False, timeout=20)


async def _form(port: int) -> None:
    values = {"name": "Carol", "email": "carol@example.org", "message": "Call me back"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{port}/f/contact",
            json=values,
            headers={"Accept": "application/json"},
        ) as response,
    ):
        assert response.status == 201, await response.text()


async def _noted(hub: Hub, shown: Json) -> None:
    """Until the hub has noted the client of a message it posted in a private chat."""
    assert hub.db is not None
    query = text("SELECT 1 FROM staff_private_messages WHERE chat_id = :chat AND message_id = :id")
    where = {"chat": shown["chat"]["id"], "id": shown["message_id"]}
    async with asyncio.timeout(TIMEOUT):
        while True:
            async with hub.db.read() as conn:
                if (await conn.execute(query, where)).first() is not None:
                    return
            await asyncio.sleep(0.02)  # a condition polled, within the timeout


async def test_a_manager_answers_three_channels_from_the_private_chat(
    db_url: str, tmp_path: Path
) -> None:
    async with BotApiServer() as server:  # Telegram's flood limits, enforced
        maria = server.add_manager("Maria")
        peter = server.add_user("Peter")
        async with assembled(db_url, tmp_path, server, maria) as (sink, ports, hub):
            await server.user_sends(maria, "/start")

            async def notice(words: str) -> Json:
                def found() -> Json | None:
                    return next((m for m in server.sent_to(maria) if words in _text(m)), None)

                return await server.wait_for(found, timeout=TIMEOUT)

            # Telegram: a reply to the notice (once the hub has noted which client it
            # is about: it does when Telegram has answered the send, and a person
            # replies later than a test can).
            await server.user_sends(peter, "Where is my order?")
            shown = await notice("Where is my order?")
            await _noted(hub, shown)
            await server.user_sends(maria, "It ships today", reply_to=shown)
            got = await server.wait_for(lambda: server.sent_to(peter), timeout=TIMEOUT)
            assert [_text(m) for m in got] == ["It ships today"]

            # Email: the current client.
            await _mail(ports["smtp"])
            shown = await notice("Please send the invoice again.")
            match = re.search(r"#(\d+)", _text(shown))
            assert match is not None
            await server.user_sends(maria, f"/c {match.group(1)}")
            await notice("Current client: Bob Stone")
            await server.user_sends(maria, "Attached again.")
            answer = await _mail_to(server, sink, "bob@example.org")
            assert _body(answer).strip() == "Attached again."
            assert "Invoice 7" in str(answer["Subject"])

            # A web form: a canned answer to the client replied to, by email.
            await _form(ports["form"])
            shown = await notice("Call me back")
            await _noted(hub, shown)
            await server.user_sends(maria, "/t thanks", reply_to=shown)
            answer = await _mail_to(server, sink, "carol@example.org")
            assert _body(answer).strip() == "Thank you, Carol!"

            # Each answer shows in its client's topic, posted within the group's budget.
            def copies() -> list[str] | None:
                said = [_text(m) for m in server.sent_to(server.forum)]
                done = [t for t in said if t.startswith("↩️ Maria answered:")]
                return done if len(done) == 3 else None

            assert sorted(await server.wait_for(copies, timeout=TIMEOUT)) == [
                "↩️ Maria answered:\nAttached again.",
                "↩️ Maria answered:\nIt ships today",
                "↩️ Maria answered:\nThank you, Carol!",
            ]
            # A confirmation goes alone, or below the next post when the chat is busy.
            confirmations = [
                line
                for m in server.sent_to(maria)
                for line in _text(m).splitlines()
                if line.startswith("✓")
            ]
            assert confirmations == [
                "✓ Sent to Peter",
                "✓ Sent to Bob Stone, your current client",
                "✓ Sent to Carol",
            ]
        assert server.throttled == []


async def test_a_manager_over_budget_gets_one_digest_and_answers_its_entries(
    db_url: str, tmp_path: Path
) -> None:
    """Three clients write while the manager's private chat is paused (as a 429 pauses
    it): their messages come as one digest, each entry answered on its own channel,
    by ``/r N``, by ``/r N`` in reply to the digest, and by the entry's button."""
    async with BotApiServer() as server:
        maria = server.add_manager("Maria")
        peter = server.add_user("Peter")
        async with assembled(db_url, tmp_path, server, maria) as (sink, ports, hub):
            await server.user_sends(maria, "/start")
            await server.wait_for(lambda: server.sent_to(maria), timeout=TIMEOUT)
            staff = _staff(hub)
            staff.pacer.pause(maria.id, 6.0)  # over budget, as after a 429
            await server.user_sends(peter, "Where is my order?")
            await _mail(ports["smtp"])
            await _form(ports["form"])

            def digest() -> Json | None:
                return next(
                    (m for m in server.sent_to(maria) if "New messages from clients" in _text(m)),
                    None,
                )

            shown = await server.wait_for(digest, timeout=TIMEOUT)
            await _noted(hub, shown)
            body = _text(shown)
            assert "New messages from clients: 3" in body
            numbers = {
                name: int(found.group(1))
                for name in ("Peter", "Bob Stone", "Carol")
                if (found := re.search(rf"^(\d+)\. \S+ {name} · ", body, re.MULTILINE))
            }
            assert sorted(numbers.values()) == [1, 2, 3], body
            assert "Where is my order?" in body and "Call me back" in body

            # A plain reply to the digest is told how to answer an entry.
            await server.user_sends(maria, "Which one?", reply_to=shown)
            await server.wait_for(
                lambda: any("/r NUMBER TEXT" in _text(m) for m in server.sent_to(maria)),
                timeout=TIMEOUT,
            )

            # /r N: the chat's latest digest; Telegram.
            await server.user_sends(maria, f"/r {numbers['Peter']} It ships today")
            got = await server.wait_for(lambda: server.sent_to(peter), timeout=TIMEOUT)
            assert [_text(m) for m in got] == ["It ships today"]

            # /r N in reply to the digest; email.
            await server.user_sends(
                maria, f"/r {numbers['Bob Stone']} Attached again.", reply_to=shown
            )
            answer = await _mail_to(server, sink, "bob@example.org")
            assert _body(answer).strip() == "Attached again."

            # The entry's button makes the client current; then plain text; a form.
            buttons = [b for row in shown["reply_markup"]["inline_keyboard"] for b in row]
            carol = next(b for b in buttons if b["text"].startswith(f"{numbers['Carol']}. "))
            await server.callback(maria, shown, carol["callback_data"])
            await server.wait_for(
                lambda: any("Current client: Carol" in _text(m) for m in server.sent_to(maria)),
                timeout=TIMEOUT,
            )
            await server.user_sends(maria, "We will call you at 5.")
            answer = await _mail_to(server, sink, "carol@example.org")
            assert _body(answer).strip() == "We will call you at 5."

            # Each answer is confirmed: alone, or below the next post while the chat is busy.
            def confirmed() -> bool:
                lines = {ln for m in server.sent_to(maria) for ln in _text(m).splitlines()}
                return {"✓ Sent to Peter", "✓ Sent to Bob Stone"} <= lines

            await server.wait_for(confirmed, timeout=TIMEOUT)

            # An entry the digest does not have is refused, and nothing is sent.
            await server.user_sends(maria, "/r 9 Hello")
            await server.wait_for(
                lambda: any("has no entry 9" in _text(m) for m in server.sent_to(maria)),
                timeout=TIMEOUT,
            )
        assert server.throttled == []


def _staff(hub: Hub) -> StaffSide:
    """The hub's staff side (the test reaches its pacer to pause a chat)."""
    channel = hub.channels["telegram"]
    assert isinstance(channel, TelegramChannel) and isinstance(channel.staff, StaffSide)
    return channel.staff


async def _mail_to(server: BotApiServer, sink: Sink, address: str) -> EmailMessage:
    def found() -> EmailMessage | None:
        return next((m for m in sink.messages if address in str(m["To"])), None)

    return await server.wait_for(found, timeout=TIMEOUT)
