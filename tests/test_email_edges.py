"""Real-world mail at the email channel's edges (issue 16): long lines, a banner
that names no software, control characters in the envelope, and mail whose
sender cannot be read, over real SMTP sessions and a real Dovecot mailbox.

The unusual mail is built here as bytes, after the kinds the issue met: a test
mail sent with curl (no From), a Russian Outlook message exported without From,
an image sent by a script, a header block whose first line is folded, input
that is no RFC 822 message at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aioimaplib  # type: ignore[import-untyped]
import aiosmtplib
import pytest
from sqlalchemy import func, select

from channels.email.channel import EmailChannel
from channels.email.imap import MemoryCursorStore
from channels.email.parse import may_name_sender, parse
from channels.email.smtp_server import SmtpServer
from channels.email.spool import MailSpool
from channels.email.worker import MailWorker
from channels.telegram import render
from hub import config as hub_config
from hub.app.wiring import mail_worker
from hub.clients.attachments import AttachmentStore
from hub.clients.book import ClientBook
from hub.config import EmailSection, SmtpServerSection
from hub.desk.desk import Desk
from hub.ingest.ingestor import Ingestor
from hub.kernel import loggers
from hub.kernel.clock import SystemClock
from hub.kernel.texts import text
from storage import Database
from storage.models import Client, Interaction, Outbox
from tests import dovecot
from tests.corpus import email_corpus

TIMEOUT = 30.0
DOMAIN = "desk.example.com"
HOST = "mx.desk.example.com"
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT) -> None:
    """Poll a condition nothing notifies about (the database, another process)."""
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


def mail(*headers: str, body: str = "Hello", charset: str = "utf-8") -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return head.encode(charset) + b"\r\n" + body.encode(charset) + b"\r\n"


# --- mail as the issue met it -------------------------------------------------------

CURL = mail(
    "To: help@desk.example.com",
    "Subject: test from curl",
    "Message-ID: <curl-1@localhost>",
    body="This is a test mail sent with curl. Please answer!",
)
OUTLOOK_RU = mail(
    f"To: {Header('Служба поддержки', 'windows-1251').encode()} <help@desk.example.com>",
    f"Subject: {Header('Просим выставить счёт!', 'windows-1251').encode()}",
    "Date: Mon, 30 Nov 2026 18:02:11 +0300",
    "Message-ID: <0a1b01dbf3$aa@OUTLOOK-PC>",
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=windows-1251",
    "Content-Transfer-Encoding: 8bit",
    "X-Mailer: Microsoft Outlook 16.0",
    "Thread-Index: AdtD8qBvq1",
    body="Здравствуйте! Просим выставить счёт на оплату. Заранее спасибо.",
    charset="cp1251",
)
SCRIPT_IMAGE = (
    b"To: help@desk.example.com\r\n"
    b"Subject: camera 3\r\n"
    b"Message-ID: <cam3-20261201@nas.local>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"Motion detected at the back door\r\n"
    b"--b1\r\n"
    b"Content-Type: image/png\r\n"
    b'Content-Disposition: attachment; filename="cam3.png"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\r\n"
    b"--b1--\r\n"
)
FOLDED_FIRST = mail(
    " From: Мария <maria@client.example>",
    "To: help@desk.example.com",
    "Subject: folded",
    "Message-ID: <folded-1@client.example>",
    "Content-Type: text/plain; charset=utf-8",
    body="Мой заказ 77 не пришёл",
)
NOT_RFC822 = "Заявка: позвоните мне, пожалуйста.\r\nТелефон +7 900 000-00-00\r\n".encode()
BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
NAME_WITHOUT_ADDRESS = mail(
    "From: Иван Петров",
    "Reply-To: ivan@client.example",
    "Sender: robot@sender.example",
    "To: help@desk.example.com",
    "Subject: reply-to",
    "Message-ID: <reply-to-1@client.example>",
    "Content-Type: text/plain; charset=utf-8",
    body="Ответьте мне на этот адрес",
)

# --- the parser -------------------------------------------------------------------


def _read(raw: bytes, envelope: str = "") -> Any:
    parsed = parse(
        raw, account="help@x", received_at=AT, max_attachment_bytes=10**6, envelope_from=envelope
    )
    return parsed, parsed.message or parsed.anonymous


@pytest.mark.parametrize(
    ("headers", "envelope", "expected", "source"),
    [
        (
            ["From: <@@>", "Reply-To: r@a.example", "Sender: s@a.example"],
            "",
            "r@a.example",
            "Reply-To",
        ),
        (
            ["From: Anna", "Sender: s@a.example", "Return-Path: <p@a.example>"],
            "",
            "s@a.example",
            "Sender",
        ),
        (["Return-Path: <p@a.example>"], "e@a.example", "p@a.example", "Return-Path"),
        (["Subject: x"], "e@a.example", "e@a.example", "MAIL FROM"),
        (["From: a@a.example", "Reply-To: r@a.example"], "e@a.example", "a@a.example", None),
    ],
)
def test_the_sender_is_the_first_address_that_can_be_read(
    headers: list[str], envelope: str, expected: str, source: str | None
) -> None:
    parsed, message = _read(mail(*headers), envelope)
    assert parsed.message is message
    assert [i.value for i in message.identities] == [expected]
    assert message.extras.get("sender_source") == source


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (CURL, "sent with curl"),
        (OUTLOOK_RU, "Просим выставить счёт"),
        (SCRIPT_IMAGE, "Motion detected"),
        (NOT_RFC822, "Заявка: позвоните мне"),
        (b"", ""),
    ],
    ids=["curl", "outlook", "script", "not-rfc822", "empty"],
)
def test_mail_with_no_sender_is_read_without_one(raw: bytes, said: str) -> None:
    parsed, message = _read(raw)
    assert parsed.message is None and message is not None
    assert message.identities == ()
    assert said in message.text
    assert any("no valid sender" in p for p in parsed.problems)
    assert not may_name_sender(raw, "")  # over SMTP with the null sender: 554


def test_input_that_is_no_message_is_kept_as_its_raw_text() -> None:
    parsed, message = _read(NOT_RFC822)
    # "Заявка:" looks like a header field; nothing else does: it is text.
    assert message.text == NOT_RFC822.decode().replace("\r\n", "\n").strip()
    assert "no RFC 822 message: kept as its raw text" in parsed.problems
    _, binary = _read(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01")
    assert "\x00" not in binary.text  # a database takes it


def test_a_folded_first_line_is_read_as_a_field() -> None:
    parsed, message = _read(FOLDED_FIRST)
    assert parsed.message is message
    assert message.identities[0].value == "maria@client.example"
    assert message.subject == "folded"
    assert may_name_sender(FOLDED_FIRST, "")
    # A first line of blanks alone is dropped, not read as the end of the header.
    _, blank = _read(b" \t\r\nFrom: a@a.example\r\nSubject: s\r\n\r\nbody\r\n")
    assert blank.identities[0].value == "a@a.example" and blank.text == "body"


def test_a_name_without_an_address_is_kept_for_a_person_to_read() -> None:
    _, message = _read(mail("From: Иван Петров", "Subject: x"))
    assert message.identities == ()
    assert message.extras["from"] == "Иван Петров"


# --- the log ----------------------------------------------------------------------


def test_log_values_never_hold_control_characters_raw(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("hub.test.edges")
    caplog.set_level(logging.INFO, logger="hub.test.edges")
    values = {
        "nul": "a\x00b@x.example",
        "crlf": "x\r\nsmtp_message result=accepted",
        "esc": "\x1b[2J",
        "sep": "a\u2028b",
        "ru": "Заказ",
    }
    loggers.event(logger, "probe", logging.INFO, **values)
    [line] = [r.getMessage() for r in caplog.records]
    assert not re.search("[\x00-\x1f\x7f\u2028]", line), line
    assert line == (
        r'probe nul="a\x00b@x.example" crlf="x\r\nsmtp_message result=accepted"'
        r' esc="\x1b[2J" sep="a\u2028b" ru=Заказ'
    )
    as_json = loggers.JsonFormatter().format(caplog.records[0])
    assert "\x00" not in as_json and json.loads(as_json)["nul"] == values["nul"]


# --- SMTP sessions ------------------------------------------------------------------


class Session:
    """A raw SMTP client: one command a line, the whole reply back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> str:
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if line[3:4] != b"-":
                return "\n".join(lines)

    async def say(self, line: bytes) -> str:
        self.writer.write(line + b"\r\n")
        await self.writer.drain()
        return await self.reply()


@asynccontextmanager
async def session(port: int) -> AsyncIterator[tuple[Session, str]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = Session(reader, writer)
    try:
        yield client, await client.reply()
    finally:
        writer.close()


@dataclass
class Recorder:
    calls: list[tuple[bytes, str, list[str]]]

    async def __call__(self, raw: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
        self.calls.append((raw, mail_from, rcpt_tos))


@asynccontextmanager
async def smtp_server(**settings: Any) -> AsyncIterator[tuple[SmtpServer, Recorder]]:
    recorder = Recorder([])
    section = SmtpServerSection(domains=[DOMAIN], **settings)
    server = SmtpServer(section, recorder, listen="127.0.0.1:0", hostname=HOST)
    await server.start()
    try:
        yield server, recorder
    finally:
        await server.stop()


def long_mail(*lengths: int) -> bytes:
    lines = [f"{n}:" + "x" * (n - len(f"{n}:")) for n in lengths]
    return mail(
        "From: Bounce <mailer-daemon@yandex.example>",
        f"To: help@{DOMAIN}",
        "Subject: long lines",
        "Message-ID: <long@yandex.example>",
        body="\r\n".join(["before", *lines, "after"]),
    )


async def test_long_lines_arrive_byte_for_byte() -> None:
    raw = long_mail(4036, 30_000, 65_536)
    corpus = email_corpus() / "php-mime-mail-parser-issue115.eml"  # a 3,596-character line
    real = corpus.read_bytes() if corpus.is_file() else None
    async with smtp_server() as (server, recorder):
        for message in (raw, real):
            if message is None:
                continue
            await aiosmtplib.send(
                message,
                sender="bounces@yandex.example",
                recipients=[f"help@{DOMAIN}"],
                hostname="127.0.0.1",
                port=server.port,
                start_tls=False,
                timeout=TIMEOUT,
            )
    expected = (
        [raw] if real is None else [raw, real.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")]
    )
    assert [r for r, _, _ in recorder.calls] == expected
    assert max(len(line) for line in recorder.calls[0][0].split(b"\r\n")) == 65_536


async def test_a_line_over_the_limit_is_refused_saying_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hub.channels")
    limited = smtp_server(max_line_length=1000)
    async with limited as (server, recorder), session(server.port) as (client, _):
        assert (await client.say(b"EHLO client.example")).startswith("250")
        answers = []
        for length in (1001, 1000):
            assert (await client.say(b"MAIL FROM:<a@client.example>")).startswith("250")
            assert (await client.say(f"RCPT TO:<help@{DOMAIN}>".encode())).startswith("250")
            assert (await client.say(b"DATA")).startswith("354")
            answers.append(await client.say(long_mail(length) + b"."))
    refused, accepted = answers
    # The refusal says why, and the session goes on.
    assert refused == ("500 5.5.2 line too long: the limit is 1000 characters (RFC 5321 4.5.3.1.6)")
    assert accepted.startswith("250 2.0.0")
    assert "smtp_refused reason=line_too_long" in caplog.text
    assert [len(max(r.split(b"\r\n"), key=len)) for r, _, _ in recorder.calls] == [1000]


def test_the_line_limit_is_checked_at_load() -> None:
    with pytest.raises(ValueError, match="max_line_length"):
        SmtpServerSection(max_line_length=100)
    assert SmtpServerSection().max_line_length == 65536


async def test_the_banner_and_answers_name_only_the_host() -> None:
    async with smtp_server() as (server, _), session(server.port) as (client, banner):
        answers = [
            banner,
            await client.say(b"EHLO client.example"),
            await client.say(b"HELP"),
            await client.say(b"HELP MAIL"),
            await client.say(b"NOOP"),
            await client.say(b"VRFY someone"),
            await client.say(b"XYZZY"),
        ]
    assert banner == f"220 {HOST} ESMTP"
    said = "\n".join(answers).lower()
    for leak in ("python", "aiosmtpd", "1.4", "smtpd"):
        assert leak not in said, answers


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (b"EHLO client\x00.example", "501 5.5.4"),
        (b"HELO client\x01.example", "501 5.5.4"),
        (b"MAIL FROM:<a\x00b@client.example>", "553 5.1.3"),
        (b"MAIL FROM:<ab@client.example> SIZE=1\x00", "553 5.1.3"),
        (f"RCPT TO:<help\x00@{DOMAIN}>".encode(), "553 5.1.3"),
        (b"RCPT TO:<x@foreign.example\x1b[2J>", "553 5.1.3"),
    ],
)
async def test_control_characters_in_the_envelope_are_refused_and_never_logged_raw(
    command: bytes, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with smtp_server() as (server, recorder), session(server.port) as (client, _):
        if not command.startswith((b"EHLO", b"HELO")):
            assert (await client.say(b"EHLO client.example")).startswith("250")
        if command.startswith(b"RCPT"):
            assert (await client.say(b"MAIL FROM:<ab@client.example>")).startswith("250")
        assert (await client.say(command)).startswith(expected)
        # The session goes on: the next good command is answered.
        assert (await client.say(b"RSET")).startswith("250")
    assert recorder.calls == []
    hub_lines = [r.getMessage() for r in caplog.records if r.name.startswith("hub")]
    assert not any(re.search("[\x00-\x08\x0b-\x1f]", line) for line in hub_lines)


async def test_an_unprintable_envelope_value_is_logged_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hub.channels")
    async with smtp_server() as (server, _), session(server.port) as (client, _):
        assert (await client.say(b"EHLO client.example")).startswith("250")
        sender = "a\u2028b@client.example".encode()
        assert (await client.say(b"MAIL FROM:<" + sender + b"> SMTPUTF8")).startswith("250")
        assert (await client.say(b"RCPT TO:<x@foreign.example>")).startswith("550")
    [line] = [r.getMessage() for r in caplog.records if "relaying_denied" in r.getMessage()]
    assert "\u2028" not in line and r'mail_from="a\u2028b@client.example"' in line


# --- mail without a readable sender, logged (SMTP, in the hub's process) ---------------


@dataclass
class Hub:
    db: Database
    channel: EmailChannel | None
    files: AttachmentStore

    @property
    def port(self) -> int:
        assert self.channel is not None and self.channel.server is not None
        return self.channel.server.port

    async def send(self, sender: str, raw: bytes) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=self.port, start_tls=False)
        await smtp.connect(timeout=TIMEOUT)
        try:
            await smtp.sendmail(sender, [f"help@{DOMAIN}"], raw)  # "" is the null sender
        finally:
            await smtp.quit()

    async def logged(self) -> list[Any]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(
                    Interaction.id,
                    Interaction.client_id,
                    Interaction.conversation_id,
                    Interaction.external_id,
                    Interaction.author,
                    Interaction.subject,
                    Interaction.text,
                    Client.name,
                )
                .join(Client, Client.id == Interaction.client_id)
                .where(Interaction.direction == "in")
                .order_by(Interaction.id)
            )
            return list(rows.all())

    async def mirror(self, interaction_id: int) -> str:
        async with self.db.read() as conn:
            return str(
                (
                    await conn.execute(
                        select(Outbox.text).where(
                            Outbox.kind == "mirror", Outbox.interaction_id == interaction_id
                        )
                    )
                ).scalar_one()
            )

    async def card(self, client_id: int) -> str:
        card = await Desk(self.db, SystemClock(), self.files, language="en").card(client_id)
        assert card is not None
        return render.card_html(card, "en", ZoneInfo("UTC"))


@asynccontextmanager
async def smtp_hub(db: Database, tmp_path: Path) -> AsyncIterator[Hub]:
    files = AttachmentStore(tmp_path / "files", 10**6)
    ingestor = Ingestor(db, SystemClock(), files, staff_channel="telegram", language="en")
    await ingestor.start()
    config = EmailSection.model_validate({"smtp": {"domains": [DOMAIN]}})
    channel = EmailChannel(config, max_attachment_bytes=10**6, listen="127.0.0.1:0")
    await channel.start(ingestor)
    try:
        yield Hub(db, channel, files)
    finally:
        await channel.stop()
        await ingestor.stop()


async def test_over_smtp_the_sender_comes_from_the_first_readable_address(
    db: Database, tmp_path: Path
) -> None:
    async with smtp_hub(db, tmp_path) as hub:
        await hub.send("ivan@client.example", mail("From: ivan@client.example", "Subject: first"))
        await hub.send("robot@sender.example", NAME_WITHOUT_ADDRESS)
        await hub.send("olga@client.example", mail("Subject: no From", body="from the envelope"))
        first, fallback, envelope = await hub.logged()
        assert fallback.client_id == first.client_id  # Reply-To's client
        assert fallback.author == "ivan@client.example"
        assert (await hub.mirror(fallback.id)).startswith(
            text("mirror_sender_fallback", "en", source="Reply-To")
        )
        assert envelope.name is None and envelope.text == "from the envelope"
        assert (await hub.mirror(envelope.id)).startswith(
            "⚠️ The From field could not be read: the sender is taken from MAIL FROM"
        )
        assert "cannot be answered" not in await hub.card(envelope.client_id)


async def test_over_smtp_554_stays_for_mail_that_names_no_sender_anywhere(
    db: Database, tmp_path: Path
) -> None:
    async with smtp_hub(db, tmp_path) as hub:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await hub.send("", CURL)  # the null sender, no sender field
        assert refused.value.code == 554
        assert "no sender address" in refused.value.message
        # An envelope sender that is no address still names one: logged, on its own client.
        await hub.send("root", CURL)
        await hub.send("scanner", BINARY)  # no message at all, NUL bytes and all
        curl, binary = await hub.logged()
    assert curl.name == binary.name == f"unknown sender, help@{DOMAIN}"
    assert curl.client_id != binary.client_id
    assert curl.text == "This is a test mail sent with curl. Please answer!"
    assert curl.conversation_id is not None and binary.conversation_id is not None
    assert binary.text.startswith("\ufffdPNG") and "\x00" not in binary.text


# --- mail without a readable sender, from a mailbox (Dovecot, the mail worker) ----------


@pytest.fixture(scope="module")
def imap_server() -> Iterator[dovecot.DovecotServer]:
    srv = dovecot.start()
    try:
        yield srv
    finally:
        srv.stop()


class Mailbox:
    """The test's own IMAP client: puts mail in a folder and reads its flags."""

    def __init__(self, client: Any, folder: str) -> None:
        self.client, self.folder = client, folder

    async def append(self, raw: bytes) -> None:
        response = await self.client.append(raw, mailbox=self.folder)
        assert response.result == "OK", response

    async def unseen(self) -> None:
        assert (await self.client.select(self.folder)).result == "OK"
        response = await self.client.uid("store", "1:*", "-FLAGS", r"(\Seen)")
        assert response.result == "OK", response

    async def flags(self) -> list[str]:
        assert (await self.client.select(self.folder)).result == "OK"
        response = await self.client.uid("fetch", "1:*", "(UID FLAGS)")
        assert response.result == "OK", response
        return [
            m.group(1).decode()
            for line in response.lines
            if isinstance(line, bytes) and (m := re.search(rb"FLAGS \(([^)]*)\)", line))
        ]


@pytest.fixture
async def mailbox(
    imap_server: dovecot.DovecotServer, request: pytest.FixtureRequest
) -> AsyncIterator[Mailbox]:
    client = aioimaplib.IMAP4(imap_server.host, imap_server.port, timeout=TIMEOUT)
    await client.wait_hello_from_server()
    assert (await client.login(imap_server.user, imap_server.password)).result == "OK"
    folder = "edges_" + re.sub(r"\W", "_", request.node.name)
    assert (await client.create(folder)).result == "OK"
    try:
        yield Mailbox(client, folder)
    finally:
        await client.logout()


def _imap_config(
    db_url: str, tmp_path: Path, server: dovecot.DovecotServer, folder: str
) -> hub_config.Config:
    return hub_config.parse(
        {
            "admin": {"token": "edges-test-token"},
            "hub": {"language": "en"},
            "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
            "email": {
                "imap": [
                    {
                        "host": server.host,
                        "port": server.port,
                        "user": server.user,
                        "password": server.password,
                        "folder": folder,
                        "tls": False,
                    }
                ],
                "spool": str(tmp_path / "spool" / "mail.db"),
            },
        }
    )


async def test_from_a_mailbox_everything_reaches_a_person(
    db: Database, db_url: str, tmp_path: Path, imap_server: dovecot.DovecotServer, mailbox: Mailbox
) -> None:
    """Each case is logged once on a client (its own when nobody can be read), with
    a conversation, a warning on the mirror and the card, and marked read."""
    unknown = {
        "curl": CURL,
        "outlook": OUTLOOK_RU,
        "script": SCRIPT_IMAGE,
        "raw": NOT_RFC822,
        "binary": BINARY,
    }
    known = {"folded": FOLDED_FIRST, "reply-to": NAME_WITHOUT_ADDRESS}
    for raw in [*unknown.values(), *known.values()]:
        await mailbox.append(raw)
    config = _imap_config(db_url, tmp_path, imap_server, mailbox.folder)
    hub = Hub(db, None, AttachmentStore(tmp_path / "files", 10**6))
    ingestor = Ingestor(db, SystemClock(), hub.files)
    count = len(unknown) + len(known)
    # The second round reads the folder again from the start (a new cursor, the
    # mail unread again): each message is recognized, none is logged twice.
    for _round in range(2):
        worker = mail_worker(config, staff_channel="telegram")
        assert isinstance(worker, MailWorker)
        channel = EmailChannel(
            config.email, max_attachment_bytes=10**6, offload=worker, cursors=MemoryCursorStore()
        )
        await ingestor.start()
        await channel.start(ingestor)
        try:
            await until(lambda: _seen(mailbox, count))

            async def settled(spool: MailSpool = worker.spool) -> bool:
                return await spool.counts() == (0, 0) and len(await hub.logged()) >= count

            await until(settled)  # logged, and nothing set aside
        finally:
            await channel.stop()
            await ingestor.stop()
        await mailbox.unseen()

    rows = await hub.logged()
    assert len(rows) == len({r.external_id for r in rows}) == count  # each once
    texts = {r.text: r for r in rows}
    by_case = {
        "curl": texts["This is a test mail sent with curl. Please answer!"],
        "outlook": texts["Здравствуйте! Просим выставить счёт на оплату. Заранее спасибо."],
        "script": texts["Motion detected at the back door"],
        "raw": texts[NOT_RFC822.decode().replace("\r\n", "\n").strip()],
        "binary": next(r for t, r in texts.items() if "PNG" in t and "IHDR" in t),
        "folded": texts["Мой заказ 77 не пришёл"],
        "reply-to": texts["Ответьте мне на этот адрес"],
    }
    clients = {r.client_id for r in rows}
    assert len(clients) == count  # one of its own for each unknown sender
    for case in unknown:
        row = by_case[case]
        assert row.name == f"unknown sender, {imap_server.user}", case
        assert row.conversation_id is not None, case  # routed
        mirror = await hub.mirror(row.id)
        assert mirror.startswith(text("mirror_sender_unknown", "en")), case
        card = await hub.card(row.client_id)
        assert "cannot be answered" in card and f'{{"other": {row.client_id}}}' in card
    assert by_case["outlook"].subject == "Просим выставить счёт!"
    assert by_case["folded"].name == "Мария"
    assert not (await hub.mirror(by_case["folded"].id)).startswith("⚠️")
    assert (await hub.mirror(by_case["reply-to"].id)).startswith(
        text("mirror_sender_fallback", "en", source="Reply-To")
    )

    # The card's offer holds: merged into the right client, the mail is theirs.
    right, stray = by_case["folded"].client_id, by_case["curl"].client_id
    await ClientBook(db, SystemClock()).merge(right, stray, actor="test")
    async with db.read() as conn:
        moved = await conn.execute(
            select(func.count()).where(
                Interaction.client_id == right, Interaction.direction == "in"
            )
        )
        assert moved.scalar_one() == 2


async def _seen(mailbox: Mailbox, count: int) -> bool:
    flags = await mailbox.flags()
    return len(flags) == count and all(r"\Seen" in f for f in flags)


# --- what the spool still sets aside ----------------------------------------------------


async def test_the_spool_keeps_what_is_set_aside_out_of_the_queue(tmp_path: Path) -> None:
    """Only mail the database refuses as such is set aside now; it stays, counted."""
    spool = MailSpool(tmp_path / "spool.db")
    await spool.open()
    try:
        first = await spool.submit(CURL, "", ["help@x"], AT)
        second = await spool.submit(OUTLOOK_RU, "", ["help@x"], AT)
        spool.set_aside(first, "the message cannot be stored: DataError")
        spool.done([second])

        async def settled() -> bool:
            return await spool.counts() == (0, 1)

        await until(settled)
        assert await spool.waiting() == []
    finally:
        await spool.close()
