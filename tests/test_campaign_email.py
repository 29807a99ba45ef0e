"""Campaign email through the assembled hub to a capturing SMTP server on loopback
(issue 7): each message carries its signed unsubscribe link and the RFC 8058
``List-Unsubscribe`` headers; the link's page does nothing on GET, the one-click
POST opts the client out (logged), a forged link is refused, and the next campaign
skips the client."""

from __future__ import annotations

import asyncio
import email
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import insert, select

from hub import config as hub_config
from hub.app.run import Hub
from hub.campaigns.spec import parse_spec
from storage import Database
from storage.models import Client, Identity, Interaction

T = TypeVar("T")


class Sink:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = email.message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def smtp_sink() -> AsyncIterator[tuple[Sink, int]]:
    sink = Sink()
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


async def until(predicate: Callable[[], Awaitable[T | None]], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_campaign_email_unsubscribe(db_url: str, tmp_path: Path) -> None:
    admin_port = _free_port()
    async with smtp_sink() as (sink, smtp_port):
        config = hub_config.parse(
            {
                "hub": {"language": "en"},
                "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
                "admin": {
                    "listen": f"127.0.0.1:{admin_port}",
                    "token": "mail-admin-token-0123456789",
                },
                "dispatcher": {"idle_poll_s": 0.2},
                "campaigns": {"quiet_hours": "", "scan_every_s": 0.2},
                "email": {
                    "outbound": {
                        "host": "127.0.0.1",
                        "port": smtp_port,
                        "from": "Shop <shop@example.com>",
                        "starttls": False,
                    }
                },
            }
        )
        db = Database(db_url)
        now = datetime.now(UTC)
        async with db.write() as conn:
            ids = []
            for name, address in (("Anna", "anna@example.com"), ("Boris", "boris@example.com")):
                client_id = (
                    await conn.execute(
                        insert(Client).returning(Client.id),
                        {
                            "name": name,
                            "stage": "client",
                            "opted_out": False,
                            "created_at": now,
                            "updated_at": now,
                        },
                    )
                ).scalar_one()
                await conn.execute(
                    insert(Identity),
                    {"client_id": client_id, "kind": "email", "value": address, "created_at": now},
                )
                ids.append(client_id)
        try:
            hub = Hub(config)
            async with hub.lifespan(), aiohttp.ClientSession() as http:
                assert hub.campaigns is not None
                spec = parse_spec(
                    {"name": "News", "subject": "News for {{ client.name }}", "text": "Hi!"}
                )
                first = await hub.campaigns.create(spec, actor="test")
                await hub.campaigns.start(first, actor="test")

                async def two() -> list[EmailMessage]:
                    return list(sink.messages) if len(sink.messages) >= 2 else []

                messages = await until(two)
                anna = next(m for m in messages if m["To"] == "anna@example.com")
                assert anna["Subject"] == "News for Anna"
                header = str(anna["List-Unsubscribe"])
                assert header.startswith(f"<http://127.0.0.1:{admin_port}/u?t=")
                assert anna["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
                url = header.strip("<>")
                body = anna.get_body(("plain",))
                assert body is not None and url in body.get_content()

                forged = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
                async with http.post(forged, data="List-Unsubscribe=One-Click") as response:
                    assert response.status == 404
                async with http.get(url) as response:  # a link scanner: nothing happens
                    assert response.status == 200
                    assert 'method="post"' in await response.text()

                async def opted() -> list[int]:
                    async with db.read() as conn:
                        rows = await conn.execute(select(Client.id).where(Client.opted_out))
                        return list(rows.scalars())

                assert await opted() == []
                async with http.post(
                    url,
                    data="List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                ) as response:
                    assert response.status == 200
                assert await opted() == [ids[0]]

                second = await hub.campaigns.create(
                    parse_spec({"name": "More", "text": "x"}), actor="t"
                )
                await hub.campaigns.start(second, actor="test")

                async def finished() -> dict[str, Any] | None:
                    assert hub.campaigns is not None
                    s = (await hub.campaigns.status(second)).as_json()
                    return s if s["status"] == "done" else None

                status = await until(finished)
                assert status["variants"][0]["skipped"] == 1
                assert sum(1 for m in sink.messages if m["To"] == "anna@example.com") == 1
                first_status = (await hub.campaigns.status(first)).as_json()
                assert first_status["variants"][0]["opted_out"] == 1
            async with db.read() as conn:
                logged = (
                    (
                        await conn.execute(
                            select(Interaction.text).where(
                                Interaction.client_id == ids[0], Interaction.direction == "event"
                            )
                        )
                    )
                    .scalars()
                    .all()
                )
            assert any("unsubscribed" in t for t in logged)
        finally:
            await db.dispose()
