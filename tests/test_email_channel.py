"""The email channel assembled: a client's mail over a real SMTP session lands in
the log, a manager's reply goes out through a real relay with threading headers,
the client's answer to it joins the same conversation, and an auto-reply is
logged but never answered."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from channels.email.channel import EmailChannel
from channels.email.parse import parse
from hub.clients.attachments import AttachmentStore
from hub.config import DispatcherSection, EmailSection
from hub.delivery.dispatcher import Dispatcher
from hub.desk.desk import Desk
from hub.desk.replies import reply
from hub.ingest.ingestor import AutoReplies, Ingestor
from hub.kernel.clock import FrozenClock
from hub.kernel.errors import MessageRejected
from routing.hours import parse_hours
from storage import Database
from storage.models import Attachment, Interaction, Outbox
from tests.corpus import email_corpus
from tests.test_email_smtp import Capture, capturing_server

CLOSED = AutoReplies(
    greeting={},
    out_of_hours={"ru": "Мы закрыты", "en": "We are closed"},
    hours=parse_hours("Mon-Fri 12:00-13:00"),  # the frozen clock's Monday 10:00 is closed
)


@dataclass
class Desk2:
    channel: EmailChannel
    ingestor: Ingestor
    dispatcher: Dispatcher
    capture: Capture
    clock: FrozenClock


@asynccontextmanager
async def email_desk(db: Database, tmp_path: Path) -> AsyncIterator[Desk2]:
    clock = FrozenClock(datetime(2026, 1, 5, 10, 0, tzinfo=UTC))
    files = AttachmentStore(tmp_path / "files", 10**6)
    async with capturing_server() as (capture, relay_port):
        config = EmailSection.model_validate(
            {
                "smtp": {"domains": ["support.example"]},
                "outbound": {
                    "host": "127.0.0.1",
                    "port": relay_port,
                    "from": "Поддержка <help@support.example>",
                    "starttls": False,
                },
            }
        )
        desk = Desk(db, clock, files, staff_channel=None)
        channel = EmailChannel(
            config, max_attachment_bytes=10**6, files=desk, clock=clock, listen="127.0.0.1:0"
        )
        ingestor = Ingestor(db, clock, files, auto_replies=CLOSED)
        dispatcher = Dispatcher(db, clock, {"email": channel}, DispatcherSection())
        await ingestor.start()
        await channel.start(ingestor)
        try:
            yield Desk2(channel, ingestor, dispatcher, capture, clock)
        finally:
            await channel.stop()
            await ingestor.stop()


def _send(port: int, raw: bytes, sender: str = "anna@example.com") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail(sender, ["help@support.example"], raw)


async def _deliver_all(dispatcher: Dispatcher) -> None:
    while await dispatcher.run_once():
        await dispatcher.drain()


async def test_mail_in_reply_out_and_the_answer_threads(db: Database, tmp_path: Path) -> None:
    async with email_desk(db, tmp_path) as d:
        assert d.channel.server is not None
        port = d.channel.server.port
        first = (
            "From: Анна <anna@example.com>\r\nTo: help@support.example\r\n"
            "Subject: Заказ 42\r\nMessage-ID: <q1@example.com>\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nГде мой заказ?\r\n"
        ).encode()
        await asyncio.to_thread(_send, port, first)
        async with db.read() as conn:
            logged = (
                await conn.execute(
                    select(
                        Interaction.conversation_id, Interaction.subject, Interaction.text
                    ).where(Interaction.direction == "in")
                )
            ).all()
        assert [(s, t.strip()) for _, s, t in logged] == [("Заказ 42", "Где мой заказ?")]
        conversation = logged[0][0]

        await reply(db, d.clock, conversation, "Заказ в пути.", author="Мария")
        await _deliver_all(d.dispatcher)
        sent = [c for c in d.capture.envelopes if c.rcpt_tos == ["anna@example.com"]]
        answer = [
            c for c in sent if "Заказ в пути." in c.message.get_body(("plain",)).get_content()
        ]
        assert len(answer) == 1
        headers = answer[0].message
        assert headers["In-Reply-To"] == "<q1@example.com>"
        assert headers["Subject"] == f"Re: Заказ 42 [#{conversation}]"
        assert "<p>Заказ в пути.</p>" in headers.get_body(("html",)).get_content()
        our_id = headers["Message-ID"]

        # The client answers our message: it joins the same conversation.
        second = (
            "From: anna@example.com\r\nTo: help@support.example\r\nSubject: Re: Заказ 42\r\n"
            f"Message-ID: <q2@example.com>\r\nIn-Reply-To: {our_id}\r\n\r\nСпасибо!\r\n"
        ).encode()
        await asyncio.to_thread(_send, port, second)
        async with db.read() as conn:
            convs = (
                (
                    await conn.execute(
                        select(Interaction.conversation_id).where(Interaction.direction == "in")
                    )
                )
                .scalars()
                .all()
            )
            sent_id = (
                await conn.execute(select(Outbox.external_id).where(Outbox.kind == "reply"))
            ).scalar_one()
    assert convs == [conversation, conversation]
    assert sent_id == our_id


async def test_an_auto_reply_is_logged_and_never_answered(db: Database, tmp_path: Path) -> None:
    async with email_desk(db, tmp_path) as d:
        assert d.channel.server is not None
        vacation = (
            b"From: boris@example.org\r\nTo: help@support.example\r\nSubject: Out of office\r\n"
            b"Auto-Submitted: auto-replied\r\nMessage-ID: <v1@example.org>\r\n\r\nI am away.\r\n"
        )
        await asyncio.to_thread(_send, d.channel.server.port, vacation, "boris@example.org")
        async with db.read() as conn:
            extras = (
                await conn.execute(select(Interaction.extras).where(Interaction.direction == "in"))
            ).scalar_one()
            queued = (await conn.execute(select(Outbox.kind))).scalars().all()
    assert extras["auto"] == "auto_reply"
    assert queued == []  # the out-of-hours reply goes to people, not to robots


async def test_a_message_without_a_from_header_is_kept_whole(db: Database, tmp_path: Path) -> None:
    async with email_desk(db, tmp_path) as d:
        assert d.channel.server is not None
        raw = b"To: help@support.example\r\nSubject: ???\r\n\r\nno from header\r\n"
        await asyncio.to_thread(_send, d.channel.server.port, raw, "carol@example.net")
        async with db.read() as conn:
            row = (
                await conn.execute(
                    select(Interaction.id, Interaction.author).where(Interaction.direction == "in")
                )
            ).one()
            kept = (
                (
                    await conn.execute(
                        select(Attachment.filename).where(Attachment.interaction_id == row.id)
                    )
                )
                .scalars()
                .all()
            )
    assert row.author == "carol@example.net"
    assert kept == ["original.eml"]


def _dsn(original_id: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.com\r\nTo: help@support.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn1@mx.example.com>\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.com\r\n\r\n"
        "Final-Recipient: rfc822; anna@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: help@support.example\r\nTo: anna@example.com\r\nMessage-ID: {original_id}\r\n"
        "--B--\r\n"
    ).encode()


async def test_a_bounce_marks_the_reply_failed_instead_of_opening_a_conversation(
    db: Database, tmp_path: Path
) -> None:
    async with email_desk(db, tmp_path) as d:
        assert d.channel.server is not None
        port = d.channel.server.port
        first = (
            "From: anna@example.com\r\nTo: help@support.example\r\nSubject: Вопрос\r\n"
            "Message-ID: <q1@example.com>\r\n\r\nЗдравствуйте\r\n"
        ).encode()
        await asyncio.to_thread(_send, port, first)
        async with db.read() as conn:
            conversation = (
                await conn.execute(
                    select(Interaction.conversation_id).where(Interaction.direction == "in")
                )
            ).scalar_one()
        queued = await reply(db, d.clock, conversation, "Ответ", author="Мария")
        await _deliver_all(d.dispatcher)
        async with db.read() as conn:
            our_id = (
                await conn.execute(select(Outbox.external_id).where(Outbox.id == queued.outbox_id))
            ).scalar_one()
        for _ in range(2):  # a redelivered bounce changes nothing more
            await asyncio.to_thread(_send, port, _dsn(our_id), "")
        async with db.read() as conn:
            status = (
                await conn.execute(
                    select(Outbox.status, Outbox.last_error).where(Outbox.id == queued.outbox_id)
                )
            ).one()
            delivery = (
                await conn.execute(
                    select(Interaction.delivery).where(Interaction.id == queued.interaction_id)
                )
            ).scalar_one()
            events = (
                (
                    await conn.execute(
                        select(Interaction.text).where(Interaction.direction == "event")
                    )
                )
                .scalars()
                .all()
            )
            inbound = (
                (await conn.execute(select(Interaction.id).where(Interaction.direction == "in")))
                .scalars()
                .all()
            )
    assert status[0] == "failed" and "5.1.1" in (status[1] or "")
    assert delivery == "failed"
    assert [e for e in events if e.startswith("delivery failed")] == [
        f"delivery failed (email): {status[1]}"
    ]
    assert len(inbound) == 1  # the daemon opened no conversation


CORPUS = sorted(email_corpus().glob("*.eml"))


async def test_the_whole_corpus_goes_through_ingest(db: Database, tmp_path: Path) -> None:
    """Every real-world message of the corpus is logged (a bounce of mail the hub
    never sent is logged as a message too) or refused with a clear reason:
    nothing crashes, nothing is dropped silently, nothing is logged twice."""
    assert CORPUS, "the email corpus is missing"
    async with email_desk(db, tmp_path) as d:
        refused: list[str] = []
        for path in CORPUS:
            try:
                await d.channel._deliver(path.read_bytes(), "", ["help@support.example"])
            except MessageRejected as exc:
                refused.append(f"{path.name}: {exc}")
        async with db.read() as conn:
            logged = (
                (
                    await conn.execute(
                        select(Interaction.external_id).where(Interaction.direction == "in")
                    )
                )
                .scalars()
                .all()
            )
    assert len(logged) == len(set(logged))
    assert all("no sender" in r for r in refused), refused
    assert len(refused) <= 3
    # Every message that has a sender is in the log under its id (several files of
    # the corpus share a Message-ID: those are one message, logged once).
    stored = set(logged)
    for path in CORPUS:
        parsed = parse(
            path.read_bytes(), account="a", received_at=d.clock.now(), max_attachment_bytes=10**6
        )
        if parsed.message is not None:
            assert parsed.message.external_id in stored, path.name
