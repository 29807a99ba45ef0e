"""Real SMTP sessions on loopback, both directions (issue 4).

Inbound: the hub's :class:`SmtpServer` on a free port, driven by the standard
library's ``smtplib`` (in a thread), with a ``deliver`` that records. Outbound:
:class:`SmtpSender` against a small capturing aiosmtpd server that records
envelopes and counts connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import shutil
import smtplib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from channels.email.sender import SmtpSender, conversation_of, message_id
from channels.email.smtp_server import SmtpServer
from hub.config import OutboundSmtpSection, SmtpServerSection
from hub.kernel.errors import (
    MessageRejected,
    PermanentDeliveryError,
    StorageUnavailable,
    TemporaryDeliveryError,
)
from hub.kernel.types import OutboundMessage

T = TypeVar("T")

CREDENTIALS = (b"hub", b"s3cret \xd0\xbf")

FROM = "anna@client.example"
TO = "support@hub.example"
RAW = (
    b"From: Anna <anna@client.example>\r\n"
    b"To: support@hub.example\r\n"
    b"Subject: =?utf-8?b?0JfQsNC60LDQtw==?=\r\n"
    b"Message-ID: <m1@client.example>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82\r\n"
    b".a line that starts with a dot\r\n"
    b"..and two\r\n"
)


# --- inbound: the hub's SMTP server -------------------------------------------------


@dataclass
class Recorder:
    """A ``deliver`` that records each call; may raise or wait for a gate."""

    calls: list[tuple[bytes, str, list[str]]] = field(default_factory=list)
    error: Exception | None = None
    gate: asyncio.Event | None = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    order: list[str] = field(default_factory=list)

    async def __call__(self, raw: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        self.calls.append((raw, mail_from, rcpt_tos))
        self.order.append("deliver returned")


@dataclass
class Inbound:
    server: SmtpServer
    deliver: Recorder

    async def session(self, fn: Callable[[smtplib.SMTP], T]) -> T:
        """Run ``fn`` over a fresh smtplib session in a thread."""

        def run() -> T:
            with smtplib.SMTP("127.0.0.1", self.server.port, timeout=10) as client:
                return fn(client)

        return await asyncio.to_thread(run)


@pytest.fixture
async def inbound() -> AsyncIterator[Inbound]:
    settings = SmtpServerSection(domains=["hub.example", "Sales.Example"], max_message_bytes=2000)
    deliver = Recorder()
    server = SmtpServer(settings, deliver, listen="127.0.0.1:0", hostname="mx.hub.example")
    await server.start()
    try:
        yield Inbound(server, deliver)
    finally:
        await server.stop()


async def test_binds_a_free_port(inbound: Inbound) -> None:
    assert inbound.server.port != 0
    code, _ = await inbound.session(lambda c: c.noop())
    assert code == 250


async def test_accepted_mail_reaches_deliver_with_exact_bytes_and_envelope(
    inbound: Inbound,
) -> None:
    def send(c: smtplib.SMTP) -> tuple[int, bytes]:
        c.ehlo()
        assert c.mail(FROM)[0] == 250
        assert c.rcpt(TO)[0] == 250
        assert c.rcpt("Sales@SALES.example")[0] == 250  # domains match case-insensitively
        return c.data(RAW)

    code, text = await inbound.session(send)
    assert code == 250
    assert text.startswith(b"2.0.0 OK queued as ")
    assert inbound.deliver.calls == [(RAW, FROM, [TO, "Sales@SALES.example"])]


async def test_more_than_100_recipients_are_refused_with_452(inbound: Inbound) -> None:
    def send(c: smtplib.SMTP) -> list[int]:
        c.ehlo()
        c.mail(FROM)
        codes = [c.rcpt(f"user{n}@hub.example")[0] for n in range(101)]
        assert c.data(RAW)[0] == 250
        return codes

    codes = await inbound.session(send)
    assert codes == [250] * 100 + [452]
    assert [len(rcpts) for _, _, rcpts in inbound.deliver.calls] == [100]


async def test_a_bounce_with_the_null_sender_is_accepted(inbound: Inbound) -> None:
    def send(c: smtplib.SMTP) -> tuple[int, bytes]:
        c.ehlo()
        assert c.mail("<>")[0] == 250
        assert c.rcpt(TO)[0] == 250
        return c.data(RAW)

    code, _ = await inbound.session(send)
    assert code == 250
    assert [(mail_from, rcpts) for _, mail_from, rcpts in inbound.deliver.calls] == [("", [TO])]


@pytest.mark.parametrize(
    "rcpt",
    [
        "victim@elsewhere.example",
        "someone@sub.hub.example",  # a subdomain is another domain
        "someone@hub.example.evil.example",
        "postmaster",
        "someone@[127.0.0.1]",
    ],
)
async def test_open_relay_attempt_is_refused_with_550(inbound: Inbound, rcpt: str) -> None:
    def send(c: smtplib.SMTP) -> None:
        c.sendmail(FROM, [rcpt], RAW)

    with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        await inbound.session(send)
    assert caught.value.recipients == {rcpt: (550, b"5.7.1 relaying denied")}
    assert inbound.deliver.calls == []
    assert not inbound.deliver.entered.is_set()


async def test_foreign_recipients_are_dropped_from_a_mixed_envelope(inbound: Inbound) -> None:
    refused = await inbound.session(
        lambda c: c.sendmail(FROM, [TO, "victim@elsewhere.example"], RAW)
    )
    assert refused == {"victim@elsewhere.example": (550, b"5.7.1 relaying denied")}
    assert [rcpts for _, _, rcpts in inbound.deliver.calls] == [[TO]]


async def test_oversized_by_announced_size_gets_552(inbound: Inbound) -> None:
    big = RAW + b"x" * 3000 + b"\r\n"

    def send(c: smtplib.SMTP) -> tuple[int, bytes]:
        c.ehlo()
        assert c.has_extn("size") and c.esmtp_features["size"] == "2000"
        return c.mail(FROM, [f"SIZE={len(big)}"])

    assert await inbound.session(send) == (552, b"5.3.4 message too big")
    assert inbound.deliver.calls == []


async def test_oversized_by_actual_data_gets_552(inbound: Inbound) -> None:
    big = RAW + (b"x" * 70 + b"\r\n") * 40

    def send(c: smtplib.SMTP) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        c.ehlo()
        assert c.mail(FROM)[0] == 250  # no SIZE= announced
        assert c.rcpt(TO)[0] == 250
        too_big = c.data(big)
        # The session stays usable: the next message within the limit goes through.
        assert c.mail(FROM)[0] == 250
        assert c.rcpt(TO)[0] == 250
        return too_big, c.data(RAW)

    too_big, after = await inbound.session(send)
    assert too_big == (552, b"5.3.4 message too big")
    assert after[0] == 250
    assert [raw for raw, _, _ in inbound.deliver.calls] == [RAW]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            StorageUnavailable("database is locked"),
            (451, b"4.3.0 temporary failure, try again later"),
        ),
        (RuntimeError("a bug"), (451, b"4.3.0 temporary failure, try again later")),
        (
            MessageRejected("cannot be stored\r\n250 OK"),
            (554, b"5.6.0 message rejected: cannot be stored 250 OK"),
        ),
    ],
)
async def test_deliver_failures_map_to_smtp_replies(
    inbound: Inbound, error: Exception, expected: tuple[int, bytes]
) -> None:
    inbound.deliver.error = error

    def send(c: smtplib.SMTP) -> tuple[tuple[int, bytes], int]:
        c.ehlo()
        c.mail(FROM)
        c.rcpt(TO)
        reply = c.data(RAW)
        # The session survives the failure (a 500 from aiosmtpd would not say "retry").
        return reply, c.noop()[0]

    reply, noop = await inbound.session(send)
    assert reply == expected
    assert noop == 250
    assert inbound.deliver.entered.is_set()


async def test_250_comes_only_after_deliver_returned(inbound: Inbound) -> None:
    gate = asyncio.Event()
    inbound.deliver.gate = gate
    order = inbound.deliver.order

    def send(c: smtplib.SMTP) -> tuple[int, bytes]:
        c.ehlo()
        c.mail(FROM)
        c.rcpt(TO)
        reply = c.data(RAW)
        order.append("client got reply")
        return reply

    client = asyncio.ensure_future(inbound.session(send))
    try:
        await inbound.deliver.entered.wait()
        # A whole second session runs to the end meanwhile: the server is not stuck,
        # and the first client still has no answer.
        assert (await inbound.session(lambda c: c.noop()))[0] == 250
        assert not client.done()
        assert order == []
        gate.set()
        code, _ = await client
    finally:
        gate.set()
    assert code == 250
    assert order == ["deliver returned", "client got reply"]


async def test_a_client_hanging_up_does_not_cancel_the_commit(inbound: Inbound) -> None:
    gate = asyncio.Event()
    inbound.deliver.gate = gate
    reader, writer = await asyncio.open_connection("127.0.0.1", inbound.server.port)
    try:
        await reader.readline()  # greeting
        for command in (b"HELO c", f"MAIL FROM:<{FROM}>".encode(), f"RCPT TO:<{TO}>".encode()):
            writer.write(command + b"\r\n")
            assert (await reader.readline()).startswith(b"250")
        writer.write(b"DATA\r\n")
        assert (await reader.readline()).startswith(b"354")
        writer.write(RAW.replace(b"\r\n.", b"\r\n..") + b".\r\n")  # dot-stuffed
        await inbound.deliver.entered.wait()
    finally:
        writer.close()
        await writer.wait_closed()
    gate.set()
    await inbound.server.stop()  # waits for the delivery in progress
    assert [raw for raw, _, _ in inbound.deliver.calls] == [RAW]


async def test_stopped_server_refuses_connections(inbound: Inbound) -> None:
    port = inbound.server.port
    await inbound.server.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


# --- outbound: the sender against a capturing server ---------------------------------


@dataclass
class Captured:
    mail_from: str | None
    rcpt_tos: list[str]
    raw: bytes
    tls: bool = False
    login: str | None = None

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class Capture:
    """aiosmtpd hooks that record envelopes; replies can be forced per test."""

    def __init__(self) -> None:
        self.envelopes: list[Captured] = []
        self.connections = 0
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None
        self.protocols: list[SMTP] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        self.envelopes.append(
            Captured(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content or b"",
                tls=session.ssl is not None,
                login=session.auth_data.decode() if isinstance(session.auth_data, bytes) else None,
            )
        )
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == CREDENTIALS
        return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)

    def drop_connections(self) -> None:
        for protocol in self.protocols:
            if protocol.transport is not None:
                protocol.transport.close()


@dataclass
class Outbound:
    capture: Capture
    sender: SmtpSender
    port: int


def _outbound_settings(port: int, **changes: Any) -> OutboundSmtpSection:
    return OutboundSmtpSection.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "from": "Поддержка <support@hub.example>",
            "starttls": False,
            **changes,
        }
    )


@contextlib.asynccontextmanager
async def capturing_server(**options: Any) -> AsyncIterator[tuple[Capture, int]]:
    """A capturing aiosmtpd server on a free port; ``options`` go to aiosmtpd's SMTP."""
    loop = asyncio.get_running_loop()
    capture = Capture()

    def protocol() -> SMTP:
        capture.connections += 1
        smtp = SMTP(
            capture,
            hostname="relay.example",
            enable_SMTPUTF8=True,
            authenticator=capture.authenticate,
            loop=loop,
            **options,
        )
        capture.protocols.append(smtp)
        return smtp

    server = await loop.create_server(protocol, "127.0.0.1", 0)
    try:
        yield capture, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        capture.drop_connections()
        await server.wait_closed()


@pytest.fixture
async def outbound() -> AsyncIterator[Outbound]:
    async with capturing_server() as (capture, port):
        sender = SmtpSender(_outbound_settings(port), domain="hub.example", timeout=10)
        try:
            yield Outbound(capture, sender, port)
        finally:
            await sender.close()


def outbound_message(key: str = "outbox:1", **changes: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "outbox_id": 1,
        "channel": "email",
        "account": "support",
        "recipient": "anna@client.example",
        "kind": "reply",
        "text": "Здравствуйте, Анна!\nЗаказ отправлен.\n",
        "idempotency_key": key,
        "subject": "Заказ №5",
        "conversation_id": 42,
    }
    fields.update(changes)
    return OutboundMessage(**fields)


async def test_reply_headers_threading_and_envelope(outbound: Outbound) -> None:
    result = await outbound.sender.send(
        outbound_message(),
        in_reply_to="<m2@client.example>",
        references=["<m1@client.example>", "<c42.x@hub.example>"],
    )
    [captured] = outbound.capture.envelopes
    msg = captured.message
    assert captured.mail_from == "support@hub.example"
    assert captured.rcpt_tos == ["anna@client.example"]
    assert msg["From"] == "Поддержка <support@hub.example>"
    assert msg["To"] == "anna@client.example"
    assert msg["Subject"] == "Re: Заказ №5 [#42]"  # the conversation's tag
    assert msg["Reply-To"] is None
    assert msg["In-Reply-To"] == "<m2@client.example>"
    assert msg["References"].split() == [
        "<m1@client.example>",
        "<c42.x@hub.example>",
        "<m2@client.example>",
    ]
    assert msg["Date"] is not None
    assert msg["Auto-Submitted"] is None
    assert result.external_id == msg["Message-ID"]
    assert result.external_id == message_id("outbox:1", "hub.example", 42)
    assert conversation_of(result.external_id, "hub.example") == 42
    assert conversation_of(result.external_id, "other.example") is None
    body = msg.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == "Здравствуйте, Анна!\nЗаказ отправлен.\n"


async def test_message_id_is_stable_across_retries_of_one_key(outbound: Outbound) -> None:
    first = await outbound.sender.send(
        outbound_message("outbox:7"), in_reply_to=None, references=[]
    )
    again = await outbound.sender.send(
        outbound_message("outbox:7"), in_reply_to=None, references=[]
    )
    other = await outbound.sender.send(
        outbound_message("outbox:8"), in_reply_to=None, references=[]
    )
    ids = [c.message["Message-ID"] for c in outbound.capture.envelopes]
    assert ids == [first.external_id, again.external_id, other.external_id]
    assert ids[0] == ids[1] != ids[2]


async def test_bare_and_malformed_thread_ids(outbound: Outbound) -> None:
    await outbound.sender.send(
        outbound_message(),
        in_reply_to="m2@client.example",
        references=["<m1@client.example>", "not an id", "<m1@client.example>"],
    )
    msg = outbound.capture.envelopes[0].message
    assert msg["In-Reply-To"] == "<m2@client.example>"
    assert msg["References"] == "<m1@client.example> <m2@client.example>"


@pytest.mark.parametrize(
    ("subject", "in_reply_to", "expected"),
    [
        ("Re: Заказ", "<m@client.example>", "Re: Заказ [#42]"),
        ("RE[2]: Заказ", "<m@client.example>", "RE[2]: Заказ [#42]"),
        ("Заказ", None, "Заказ [#42]"),  # not an answer: no prefix
        ("Re: Заказ [#42]", "<m@client.example>", "Re: Заказ [#42]"),  # tagged once
    ],
)
async def test_subject_prefix(
    outbound: Outbound, subject: str, in_reply_to: str | None, expected: str
) -> None:
    await outbound.sender.send(
        outbound_message(subject=subject), in_reply_to=in_reply_to, references=[]
    )
    assert outbound.capture.envelopes[0].message["Subject"] == expected


async def test_reply_to_and_no_subject_tag_from_config(outbound: Outbound) -> None:
    settings = _outbound_settings(
        outbound.port, reply_to="Отдел продаж <sales@hub.example>", subject_tag=False
    )
    sender = SmtpSender(settings, domain="hub.example", timeout=10)
    try:
        await sender.send(outbound_message(), in_reply_to="<m@client.example>", references=[])
    finally:
        await sender.close()
    msg = outbound.capture.envelopes[0].message
    assert msg["Reply-To"] == "Отдел продаж <sales@hub.example>"
    assert msg["Subject"] == "Re: Заказ №5"


async def test_text_html_alternatives_and_a_russian_attachment(outbound: Outbound) -> None:
    pdf = b"%PDF-1.4\n" + bytes(range(256))
    await outbound.sender.send(
        outbound_message(kind="auto_reply"),
        in_reply_to=None,
        references=[],
        html="<p>Здравствуйте, <b>Анна</b>!</p>",
        attachments=[
            ("Счёт №5 (итог).pdf", "application/pdf", pdf),
            ("notes.txt", "text/plain", b"ok"),
        ],
    )
    msg = outbound.capture.envelopes[0].message
    assert msg["Auto-Submitted"] == "auto-replied"
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().replace("\r\n", "\n") == "Здравствуйте, Анна!\nЗаказ отправлен.\n"
    assert html.get_content().strip() == "<p>Здравствуйте, <b>Анна</b>!</p>"
    attachments = [
        (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
        for part in msg.iter_attachments()
    ]
    assert attachments == [
        ("Счёт №5 (итог).pdf", "application/pdf", pdf),
        ("notes.txt", "text/plain", b"ok"),
    ]


async def test_one_connection_is_reused_across_sends(outbound: Outbound) -> None:
    for n in range(3):
        await outbound.sender.send(outbound_message(f"k{n}"), in_reply_to=None, references=[])
    assert len(outbound.capture.envelopes) == 3
    assert outbound.capture.connections == 1
    assert outbound.sender.connections == 1


async def test_a_dropped_connection_is_reopened(outbound: Outbound) -> None:
    await outbound.sender.send(outbound_message("k1"), in_reply_to=None, references=[])
    outbound.capture.drop_connections()
    await outbound.sender.send(outbound_message("k2"), in_reply_to=None, references=[])
    assert len(outbound.capture.envelopes) == 2
    assert outbound.capture.connections == 2


async def test_550_for_the_recipient_is_permanent(outbound: Outbound) -> None:
    outbound.capture.rcpt_reply = "550 5.1.1 no such user here"
    with pytest.raises(PermanentDeliveryError) as caught:
        await outbound.sender.send(outbound_message(), in_reply_to=None, references=[])
    assert "5.1.1 no such user here" in caught.value.reason
    assert outbound.capture.envelopes == []


async def test_550_after_data_is_permanent(outbound: Outbound) -> None:
    outbound.capture.data_reply = "554 5.7.1 message refused as spam"
    with pytest.raises(PermanentDeliveryError) as caught:
        await outbound.sender.send(outbound_message(), in_reply_to=None, references=[])
    assert "spam" in caught.value.reason


async def test_451_is_temporary_and_the_connection_stays_usable(outbound: Outbound) -> None:
    outbound.capture.data_reply = "451 4.3.0 try again later"
    with pytest.raises(TemporaryDeliveryError) as caught:
        await outbound.sender.send(outbound_message(), in_reply_to=None, references=[])
    assert "451" in caught.value.reason
    assert not isinstance(caught.value, PermanentDeliveryError)
    outbound.capture.data_reply = None
    await outbound.sender.send(outbound_message(), in_reply_to=None, references=[])
    assert len(outbound.capture.envelopes) == 1
    assert outbound.capture.connections == 1


async def test_450_for_the_recipient_is_temporary(outbound: Outbound) -> None:
    outbound.capture.rcpt_reply = "450 4.2.1 greylisted, come back later"
    with pytest.raises(TemporaryDeliveryError) as caught:
        await outbound.sender.send(outbound_message(), in_reply_to=None, references=[])
    assert "greylisted" in caught.value.reason


async def test_connection_refused_is_temporary() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now.
    sender = SmtpSender(_outbound_settings(port), domain="hub.example", timeout=5)
    try:
        with pytest.raises(TemporaryDeliveryError):
            await sender.send(outbound_message(), in_reply_to=None, references=[])
    finally:
        await sender.close()


async def test_a_header_injection_attempt_is_permanent(outbound: Outbound) -> None:
    with pytest.raises(PermanentDeliveryError):
        await outbound.sender.send(
            outbound_message(recipient="anna@client.example\r\nBcc: all@victims.example"),
            in_reply_to=None,
            references=[],
        )
    assert outbound.capture.envelopes == []


# --- STARTTLS and AUTH -----------------------------------------------------------------


@dataclass
class Certificate:
    """A self-signed certificate for 127.0.0.1: a server context, a client one trusting it."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    folder: Path = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return Certificate(server, client, cert, key)


async def test_inbound_starttls(certificate: Certificate) -> None:
    settings = SmtpServerSection(domains=["hub.example"])
    deliver = Recorder()
    server = SmtpServer(settings, deliver, listen="127.0.0.1:0", tls_context=certificate.server)
    await server.start()

    def send(c: smtplib.SMTP) -> tuple[bool, int, dict[str, tuple[int, bytes]]]:
        c.ehlo()
        offered = c.has_extn("starttls")
        code, _ = c.starttls(context=certificate.client)
        return offered, code, c.sendmail(FROM, [TO], RAW)

    try:
        offered, code, refused = await Inbound(server, deliver).session(send)
    finally:
        await server.stop()
    assert (offered, code, refused) == (True, 220, {})
    assert deliver.calls == [(RAW, FROM, [TO])]


async def test_sender_uses_starttls_and_logs_in(certificate: Certificate) -> None:
    async with capturing_server(tls_context=certificate.server, auth_require_tls=True) as (
        capture,
        port,
    ):
        settings = _outbound_settings(
            port, starttls=True, user=CREDENTIALS[0].decode(), password=CREDENTIALS[1].decode()
        )
        sender = SmtpSender(
            settings, domain="hub.example", timeout=10, tls_context=certificate.client
        )
        try:
            await sender.send(outbound_message("k1"), in_reply_to=None, references=[])
            await sender.send(outbound_message("k2"), in_reply_to=None, references=[])
        finally:
            await sender.close()
    assert [(c.tls, c.login) for c in capture.envelopes] == [(True, "hub"), (True, "hub")]
    assert capture.connections == 1


async def test_wrong_relay_password_is_temporary(certificate: Certificate) -> None:
    async with capturing_server(tls_context=certificate.server) as (capture, port):
        settings = _outbound_settings(port, starttls=True, user="hub", password="wrong")
        sender = SmtpSender(
            settings, domain="hub.example", timeout=10, tls_context=certificate.client
        )
        try:
            with pytest.raises(TemporaryDeliveryError) as caught:
                await sender.send(outbound_message(), in_reply_to=None, references=[])
        finally:
            await sender.close()
    assert "535" in caught.value.reason
    assert "wrong" not in caught.value.reason
    assert capture.envelopes == []


async def test_starttls_required_but_not_offered_is_temporary(outbound: Outbound) -> None:
    sender = SmtpSender(
        _outbound_settings(outbound.port, starttls=True), domain="hub.example", timeout=10
    )
    try:
        with pytest.raises(TemporaryDeliveryError):
            await sender.send(outbound_message(), in_reply_to=None, references=[])
    finally:
        await sender.close()
    assert outbound.capture.envelopes == []


# --- STARTTLS and AUTH from email.smtp -------------------------------------------------


def _tls_settings(certificate: Certificate, **extra: Any) -> SmtpServerSection:
    return SmtpServerSection.model_validate(
        {
            "domains": ["hub.example"],
            "tls_cert": str(certificate.cert),
            "tls_key": str(certificate.key),
            **extra,
        }
    )


async def _serve(settings: SmtpServerSection) -> Inbound:
    deliver = Recorder()
    server = SmtpServer(settings, deliver, listen="127.0.0.1:0", hostname="mx.hub.example")
    await server.start()
    return Inbound(server, deliver)


async def test_require_tls_refuses_mail_in_plaintext(certificate: Certificate) -> None:
    inbound = await _serve(_tls_settings(certificate, require_tls=True))

    def send(c: smtplib.SMTP) -> tuple[int, int, dict[str, tuple[int, bytes]]]:
        c.ehlo()
        plain, _ = c.mail(FROM)
        c.starttls(context=certificate.client)
        c.ehlo()
        c.rset()
        return plain, 0, c.sendmail(FROM, [TO], RAW)

    try:
        plain, _, refused = await inbound.session(send)
    finally:
        await inbound.server.stop()
    assert plain == 530
    assert refused == {}
    assert inbound.deliver.calls == [(RAW, FROM, [TO])]


async def test_auth_is_offered_only_over_tls_and_checks_the_password(
    certificate: Certificate, caplog: pytest.LogCaptureFixture
) -> None:
    password = "pa55-w0rd!"
    inbound = await _serve(
        _tls_settings(
            certificate,
            users=[{"user": "website", "password": password}],
            require_auth=True,
        )
    )

    def run(c: smtplib.SMTP) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        c.ehlo()
        seen["auth_in_plaintext"] = c.has_extn("auth")
        seen["mail_in_plaintext"] = c.mail(FROM)[0]
        c.rset()
        c.starttls(context=certificate.client)
        c.ehlo()
        seen["auth_over_tls"] = c.esmtp_features.get("auth", "")
        seen["mail_before_auth"] = c.mail(FROM)[0]
        c.rset()
        try:
            c.login("website", "wrong")
        except smtplib.SMTPAuthenticationError as exc:
            seen["wrong"] = exc.smtp_code
        c.login("website", password)
        seen["relay_after_auth"] = c.mail(FROM)[0], c.rcpt("victim@elsewhere.example")[0]
        c.rset()
        seen["sent"] = c.sendmail(FROM, [TO], RAW)
        return seen

    try:
        seen = await inbound.session(run)
    finally:
        await inbound.server.stop()
    assert seen["auth_in_plaintext"] is False
    assert seen["mail_in_plaintext"] == 530
    assert "PLAIN" in seen["auth_over_tls"] and "LOGIN" in seen["auth_over_tls"]
    assert seen["mail_before_auth"] == 530
    assert seen["wrong"] == 535
    assert seen["relay_after_auth"] == (250, 550)  # authenticated, still never a relay
    assert seen["sent"] == {}
    assert inbound.deliver.calls == [(RAW, FROM, [TO])]
    assert "smtp_auth result=refused" in caplog.text
    assert "wrong" not in caplog.text and password not in caplog.text


async def test_without_users_auth_is_not_advertised_even_over_tls(
    certificate: Certificate,
) -> None:
    inbound = await _serve(_tls_settings(certificate))

    def run(c: smtplib.SMTP) -> tuple[bool, bool]:
        c.ehlo()
        c.starttls(context=certificate.client)
        c.ehlo()
        return c.has_extn("auth"), c.has_extn("starttls")

    try:
        assert await inbound.session(run) == (False, False)
    finally:
        await inbound.server.stop()


async def test_a_missing_certificate_file_fails_start_clearly() -> None:
    from hub.kernel.errors import ConfigError

    settings = SmtpServerSection.model_validate(
        {
            "domains": ["hub.example"],
            "tls_cert": "/nonexistent/c.pem",
            "tls_key": "/nonexistent/k.pem",
        }
    )
    with pytest.raises(ConfigError, match=r"email\.smtp\.tls_cert"):
        SmtpServer(settings, Recorder(), listen="127.0.0.1:0")


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"users": [{"user": "u", "password": "p"}]}, "need tls_cert and tls_key"),
        ({"require_tls": True}, "need tls_cert and tls_key"),
        ({"require_auth": True}, "require_auth needs"),
    ],
)
def test_tls_and_auth_settings_are_checked(extra: dict[str, Any], problem: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=problem):
        SmtpServerSection.model_validate({"domains": ["hub.example"], **extra})
