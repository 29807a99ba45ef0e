"""What a popular Python helpdesk gets wrong with a mailbox, shown not to happen here.

Each test fills a folder of a real Dovecot (tests/dovecot.py) and lets the email
channel read it over IMAP into the real ingest (SQLite and PostgreSQL):

- a text attachment is kept, byte for byte, not folded into the body or lost;
- a bounce and an auto-reply are logged on the sender but open no conversation
  and get no automatic answer;
- two fetches of one mailbox at the same time log each message once;
- a message in an unknown charset does not hold up the messages after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aioimaplib  # type: ignore[import-untyped]
import pytest
from sqlalchemy import func, select

from channels.email.channel import EmailChannel
from channels.email.imap import MemoryCursorStore
from hub.clients.attachments import AttachmentStore
from hub.config import EmailSection
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import SystemClock
from storage import Database
from storage.models import Attachment, Conversation, Interaction, Outbox
from tests import dovecot

TIMEOUT = 20.0


@pytest.fixture(scope="module")
def server() -> Iterator[dovecot.DovecotServer]:
    srv = dovecot.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def folder(server: dovecot.DovecotServer, request: pytest.FixtureRequest) -> Any:
    client = aioimaplib.IMAP4(server.host, server.port, timeout=TIMEOUT)
    await client.wait_hello_from_server()
    assert (await client.login(server.user, server.password)).result == "OK"
    name = "hd_" + request.node.name.replace("[", "_").replace("]", "")
    assert (await client.create(name)).result == "OK"
    try:
        yield client, name
    finally:
        await client.logout()


async def _append(folder: tuple[Any, str], *messages: bytes) -> None:
    client, name = folder
    for raw in messages:
        assert (await client.append(raw, mailbox=name)).result == "OK"


def _config(server: dovecot.DovecotServer, name: str) -> EmailSection:
    return EmailSection.model_validate(
        {
            "imap": [
                {
                    "host": server.host,
                    "port": server.port,
                    "user": server.user,
                    "password": server.password,
                    "folder": name,
                    "tls": False,
                }
            ]
        }
    )


@asynccontextmanager
async def reading(
    db: Database, tmp_path: Path, server: dovecot.DovecotServer, name: str, channels: int = 1
) -> AsyncIterator[Ingestor]:
    """``channels`` email channels, each with a cursor of its own, on one folder."""
    ingestor = Ingestor(db, SystemClock(), AttachmentStore(tmp_path / "files", 10**6))
    await ingestor.start()
    started: list[EmailChannel] = []
    try:
        for _ in range(channels):
            channel = EmailChannel(
                _config(server, name), max_attachment_bytes=10**6, cursors=MemoryCursorStore()
            )
            started.append(channel)
        await asyncio.gather(*(c.start(ingestor) for c in started))
        yield ingestor
    finally:
        for channel in started:
            await channel.stop()
        await ingestor.stop()


async def _count(db: Database, statement: Any) -> int:
    async with db.read() as conn:
        return int((await conn.execute(statement)).scalar_one())


async def _until_logged(db: Database, count: int) -> None:
    """Wait until ``count`` inbound interactions are logged (bounded)."""
    query = select(func.count()).select_from(Interaction).where(Interaction.direction == "in")

    async def poll() -> None:
        while await _count(db, query) < count:
            await asyncio.sleep(0.05)  # polling the database for the condition

    await asyncio.wait_for(poll(), TIMEOUT)


def _plain(n: int, sender: str = "client@example.org") -> bytes:
    return (
        f"From: Client <{sender}>\r\nTo: desk@example.com\r\nSubject: Вопрос {n}\r\n"
        f"Message-ID: <plain-{n}@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        f"Сообщение номер {n}\r\n"
    ).encode()


NOTES = "Список:\r\n1. молоко\r\n2. хлеб\r\n".encode("koi8-r")


async def test_a_text_attachment_is_kept_byte_for_byte(
    server: dovecot.DovecotServer, folder: Any, db: Database, tmp_path: Path
) -> None:
    raw = (
        b"From: Client <client@example.org>\r\nTo: desk@example.com\r\nSubject: notes\r\n"
        b"Message-ID: <att-1@example.org>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
        b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the list attached.\r\n"
        b'--XX\r\nContent-Type: text/plain; charset=koi8-r; name="list.txt"\r\n'
        b'Content-Disposition: attachment; filename="list.txt"\r\n'
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + NOTES + b"\r\n--XX--\r\n"
    )
    await _append(folder, raw)
    files = AttachmentStore(tmp_path / "files", 10**6)
    async with reading(db, tmp_path, server, folder[1]):
        await _until_logged(db, 1)
    async with db.read() as conn:
        text = (
            await conn.execute(select(Interaction.text).where(Interaction.direction == "in"))
        ).scalar_one()
        kept = (await conn.execute(select(Attachment.filename, Attachment.sha256))).all()
    assert text.strip() == "See the list attached."
    assert [name for name, _ in kept] == ["list.txt"]
    assert await files.get(kept[0].sha256) == NOTES


VACATION = (
    b"From: Boris <boris@example.org>\r\nTo: desk@example.com\r\n"
    b"Subject: Automatic reply: Your order\r\nAuto-Submitted: auto-replied\r\n"
    b"X-Autoreply: yes\r\nMessage-ID: <vac-1@example.org>\r\n\r\n"
    b"I am out of the office until Monday.\r\n"
)
BOUNCE = (
    b"From: MAILER-DAEMON@mx.example.org\r\nTo: desk@example.com\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-1@mx.example.org>\r\n"
    b"Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
    b"--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
    b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.example.org\r\n\r\n"
    b"Final-Recipient: rfc822; nobody@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    b"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    b"From: desk@example.com\r\nTo: nobody@example.org\r\nMessage-ID: <elsewhere@example.com>\r\n"
    b"--B--\r\n"
)


async def test_bounces_and_auto_replies_open_no_conversation(
    server: dovecot.DovecotServer, folder: Any, db: Database, tmp_path: Path
) -> None:
    await _append(folder, _plain(1), VACATION, BOUNCE, _plain(2, "carol@example.org"))
    async with reading(db, tmp_path, server, folder[1]):
        await _until_logged(db, 4)
    async with db.read() as conn:
        logged = dict(
            (
                await conn.execute(
                    select(Interaction.external_id, Interaction.conversation_id).where(
                        Interaction.direction == "in"
                    )
                )
            ).all()
        )
    assert set(logged) == {
        "<plain-1@example.org>",
        "<vac-1@example.org>",
        "<dsn-1@mx.example.org>",
        "<plain-2@example.org>",
    }
    assert logged["<vac-1@example.org>"] is None
    assert logged["<dsn-1@mx.example.org>"] is None
    assert await _count(db, select(func.count()).select_from(Conversation)) == 2
    kinds = select(func.count()).select_from(Outbox).where(Outbox.recipient.like("%boris%"))
    assert await _count(db, kinds) == 0  # nothing answers a robot


async def test_two_overlapping_fetches_log_each_message_once(
    server: dovecot.DovecotServer, folder: Any, db: Database, tmp_path: Path
) -> None:
    """Two readers of one mailbox at once (two instances, or a restart that
    overlaps the old process), each with a cursor of its own: one interaction
    a message, one conversation a client."""
    await _append(folder, *(_plain(n, f"c{n % 5}@example.org") for n in range(30)))
    async with reading(db, tmp_path, server, folder[1], channels=2):
        await _until_logged(db, 30)
        await _append(folder, *(_plain(n, f"c{n % 5}@example.org") for n in range(30, 40)))
        await _until_logged(db, 40)
    inbound = Interaction.direction == "in"
    ids = select(func.count(func.distinct(Interaction.external_id))).where(inbound)
    assert await _count(db, select(func.count()).select_from(Interaction).where(inbound)) == 40
    assert await _count(db, ids) == 40
    assert await _count(db, select(func.count()).select_from(Conversation)) == 5


async def test_an_unknown_charset_does_not_hold_up_the_queue(
    server: dovecot.DovecotServer, folder: Any, db: Database, tmp_path: Path
) -> None:
    strange = (
        b"From: Dana <dana@example.org>\r\nTo: desk@example.com\r\n"
        b"Subject: =?x-mystery-42?q?=C1=C2?=\r\nMessage-ID: <odd-1@example.org>\r\n"
        b"Content-Type: text/plain; charset=x-mystery-42\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\nHello \xc1\xc2\xc3 world\r\n"
    )
    await _append(folder, _plain(1), strange, _plain(2), _plain(3))
    async with reading(db, tmp_path, server, folder[1]):
        await _until_logged(db, 4)
    async with db.read() as conn:
        odd = (
            await conn.execute(
                select(Interaction.text, Interaction.extras).where(
                    Interaction.external_id == "<odd-1@example.org>"
                )
            )
        ).one()
    assert "Hello" in odd.text and "world" in odd.text
    assert any("unknown charset" in p for p in odd.extras["problems"])
