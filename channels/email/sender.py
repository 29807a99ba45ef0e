"""Outbound email: RFC 5322 messages sent over SMTP (RFC 5321) with aiosmtplib.

:class:`SmtpSender` builds the message (text with an optional HTML
alternative, attachments with RFC 2231 file names, RFC 2047 encoded words for
non-ASCII names and subjects, threading headers) on the stdlib's compat32
classes, and submits it to ``email.outbound``: STARTTLS (RFC 3207) per the
settings, login when a user is set, a few connections reused across sends and
reopened when they dropped.

The Message-ID is derived from the outbox idempotency key, so a retry after a
crash carries the same Message-ID and the receiving side can recognize the
repeat; it also carries the conversation id (see :func:`message_id` and
:func:`conversation_of`) so a client's answer finds its thread. Auto-replies
carry ``Auto-Submitted: auto-replied`` (RFC 3834).

Failures map onto the hub's delivery errors by the reply code (RFC 5321 4.2.1,
RFC 3463): 5xx is a :class:`~hub.kernel.errors.PermanentDeliveryError`; 4xx, a lost
connection or a timeout is a :class:`~hub.kernel.errors.TemporaryDeliveryError`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import io
import logging
import re
import secrets
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.encoders import encode_base64
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.policy import Compat32
from email.utils import format_datetime, formataddr, getaddresses
from typing import Any

import aiosmtplib

from hub.config import OutboundSmtpSection
from hub.kernel import loggers
from hub.kernel.clock import Clock, SystemClock
from hub.kernel.errors import PermanentDeliveryError, TemporaryDeliveryError
from hub.kernel.types import OutboundMessage, SendResult

log = loggers.channels

_REPLY_PREFIX = re.compile(r"^\s*re\s*(\[\d+\])?\s*:", re.IGNORECASE)
_MSG_ID = re.compile(r"^<[^<>\s]+@[^<>\s]+>$")
_FRESH_S = 10.0  # a connection used this recently is used again without a NOOP


_BREAK = re.compile(r"[\r\n]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN = re.compile(r"^[a-z0-9!#$&^_.+-]+$")


# The message is built on the stdlib's compat32 classes and written by its
# generator: the modern policy parses every header back into a tree to fold it
# (about 0.6 ms a message against 0.2), and every value here is made by the hub.
class _Policy(Compat32):
    """compat32, writing a short ASCII header as it is: folding it through
    :class:`~email.header.Header` would leave it unchanged, at 30 µs a header."""

    def fold_binary(self, name: str, value: Any) -> bytes:
        if (
            isinstance(value, str)
            and value.isascii()
            and not _BREAK.search(value)
            and len(name) + len(value) + 2 <= (self.max_line_length or 78)
        ):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_OUT = _Policy(linesep="\r\n", max_line_length=78)
_MAX_LINE = 998  # RFC 5322 2.1.1: longer lines need an encoding


def _header(value: str) -> str | Header:
    """An unstructured header value: non-ASCII as RFC 2047 encoded words."""
    if _BREAK.search(value):
        raise ValueError(f"a header value cannot contain a line break: {value!r}")
    return value if value.isascii() else Header(value, "utf-8")


@functools.lru_cache(maxsize=256)  # the From and Reply-To repeat on every message
def _addresses(value: str) -> tuple[str, tuple[str, ...]]:
    """An address header value (display names encoded per RFC 2047) and the bare
    addresses for the envelope; a non-ASCII address raises: it would need SMTPUTF8."""
    if _BREAK.search(value):
        raise ValueError(f"an address cannot contain a line break: {value!r}")
    found = getaddresses([value])
    if not found or not all(address and "@" in address for _, address in found):
        raise ValueError(f"not an email address: {value!r}")
    header = ", ".join(formataddr(pair, charset="utf-8") for pair in found)
    return header, tuple(address for _, address in found)


def _boundary() -> str:
    """A random boundary: the generator's own searches the body with a regular
    expression compiled anew for each message."""
    return f"=_{secrets.token_hex(16)}"


def _text(body: str, subtype: str) -> Message:
    """A text part: plain ASCII as 7bit, anything else (long lines, NUL) as UTF-8 in
    base64. Made by hand: MIMEText parses its own Content-Type back to set the charset."""
    body = body.replace("\r\n", "\n")
    part = Message()
    if (
        body.isascii()
        and "\x00" not in body
        and all(len(line) <= _MAX_LINE for line in body.split("\n"))
    ):
        part["Content-Type"] = f'text/{subtype}; charset="us-ascii"'
        part["Content-Transfer-Encoding"] = "7bit"
        part.set_payload(body)
    else:
        part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
        part["Content-Transfer-Encoding"] = "base64"
        part.set_payload(base64.encodebytes(body.encode("utf-8")).decode("ascii"))
    return part


def _attachment(filename: str, content_type: str, data: bytes) -> MIMEBase:
    # RFC 2045 tokens only (a stored type comes from a client's message or upload)
    maintype, _, subtype = content_type.split(";", 1)[0].strip().lower().partition("/")
    if not (_TOKEN.match(maintype) and _TOKEN.match(subtype)) or maintype == "multipart":
        maintype, subtype = "application", "octet-stream"
    part = MIMEBase(maintype, subtype)
    del part["MIME-Version"]
    part.set_payload(data)
    encode_base64(part)  # byte for byte, whatever the type says
    name = _CONTROL.sub("", filename).strip() or "attachment"
    # RFC 2231 for a name beyond ASCII
    part.add_header(
        "Content-Disposition",
        "attachment",
        filename=name if name.isascii() else ("utf-8", "", name),
    )
    return part


_HUB_ID = re.compile(r"^<c(?P<conversation>\d+)\.[0-9a-f]{32}@(?P<domain>[^<>\s]+)>$")


def message_id(idempotency_key: str, domain: str, conversation_id: int | None = None) -> str:
    """The Message-ID of an outbound message: the same key gives the same id."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    if conversation_id is None:
        return f"<{digest}@{domain}>"
    return f"<c{conversation_id}.{digest}@{domain}>"


def conversation_of(msg_id: str, domain: str) -> int | None:
    """The conversation id carried by one of our own Message-IDs (None for others)."""
    match = _HUB_ID.match(msg_id.strip())
    if match is None or match["domain"].lower() != domain.lower():
        return None
    return int(match["conversation"])


def tag_subject(subject: str | None, conversation_id: int) -> str:
    """The subject with the conversation's tag (``[#42]``), the threading fallback
    for a reply that lost its In-Reply-To and References."""
    tag = f"[#{conversation_id}]"
    if subject and tag in subject:
        return subject
    return f"{subject} {tag}" if subject else tag


def reply_subject(subject: str | None) -> str | None:
    if not subject:
        return subject
    return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}"


def _ids(values: Iterable[str]) -> list[str]:
    """Well-formed message ids only (a bare ``id@host`` gets its angle brackets):
    a stray value must not break the header."""
    seen: list[str] = []
    for value in values:
        value = value.strip()
        if not value.startswith("<"):
            value = f"<{value}>"
        if _MSG_ID.match(value) and value not in seen:
            seen.append(value)
    return seen


@dataclass
class _Line:
    """One connection to the relay: an SMTP transaction at a time on it."""

    client: aiosmtplib.SMTP | None = None
    reused: bool = False
    last_used: float = 0.0


class SmtpSender:
    """Sends the hub's outbound email through one SMTP relay.

    ``domain`` is the right-hand side of our Message-IDs. Up to ``connections``
    SMTP sessions carry sends side by side (a transaction cannot be interleaved
    on one); they are opened as needed and kept for the next sends. ``timeout``
    bounds each network step. ``tls_context`` replaces the default certificate
    checks for STARTTLS (a private CA); without it the relay's certificate must
    be valid for ``host``.
    """

    def __init__(
        self,
        settings: OutboundSmtpSection,
        *,
        domain: str,
        timeout: float = 30,
        clock: Clock | None = None,
        tls_context: ssl.SSLContext | None = None,
        connections: int | None = None,
    ) -> None:
        self._settings = settings
        size = connections or settings.connections
        self._free = [_Line() for _ in range(size)]  # the last one freed is used first
        self._slots = asyncio.Semaphore(size)
        self._domain = domain
        self._timeout = timeout
        self._clock = clock or SystemClock()
        self._tls_context = tls_context

        self.connections = 0  # opened so far; for logs and tests

    def build(
        self,
        message: OutboundMessage,
        *,
        in_reply_to: str | None,
        references: list[str],
        html: str | None = None,
        attachments: Iterable[tuple[str, str, bytes]] = (),
    ) -> tuple[bytes, str]:
        """The RFC 5322 message for ``message`` and its Message-ID; raises ValueError
        for a value that cannot go into a header."""
        msg: Message = _text(message.text, "plain")
        if html is not None:
            alternative = MIMEMultipart(
                "alternative", _boundary(), _subparts=[msg, _text(html, "html")]
            )
            del alternative["MIME-Version"]
            msg = alternative
        files = [_attachment(*a) for a in attachments]
        if files:
            mixed = MIMEMultipart("mixed", _boundary(), _subparts=[msg, *files])
            del mixed["MIME-Version"]
            msg = mixed
        msg["MIME-Version"] = "1.0"
        msg["From"] = _addresses(self._settings.from_)[0]
        msg["To"] = _addresses(message.recipient)[0]
        if self._settings.reply_to:
            msg["Reply-To"] = _addresses(self._settings.reply_to)[0]
        parent = _ids([in_reply_to]) if in_reply_to else []
        subject = reply_subject(message.subject) if parent else message.subject
        if self._settings.subject_tag and message.conversation_id is not None:
            subject = tag_subject(subject, message.conversation_id)
        if subject:
            # compat32 takes a Header object (it folds its encoded words); the stub says str
            msg["Subject"] = _header(subject)  # type: ignore[assignment]
        msg["Date"] = format_datetime(self._clock.now())
        msg_id = message_id(message.idempotency_key, self._domain, message.conversation_id)
        msg["Message-ID"] = msg_id
        if parent:
            msg["In-Reply-To"] = parent[0]
        thread = _ids([*references, *parent])
        if thread:
            msg["References"] = " ".join(thread)
        if message.kind == "auto_reply":
            msg["Auto-Submitted"] = "auto-replied"
            msg["X-Auto-Response-Suppress"] = "All"
        if message.kind == "closed":
            # A request closed by the hub itself (RFC 3834): no vacation replies to it.
            msg["Auto-Submitted"] = "auto-generated"
            msg["X-Auto-Response-Suppress"] = "All"
        if message.kind == "campaign":
            # RFC 2369 and RFC 8058: a one-click unsubscribe the mail client can offer.
            url = message.extras.get("unsubscribe_url")
            if isinstance(url, str) and url and not _CONTROL.search(url):
                msg["List-Unsubscribe"] = f"<{url}>"
                msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            msg["Precedence"] = "bulk"
        out = io.BytesIO()
        BytesGenerator(out, mangle_from_=False, policy=_OUT).flatten(msg)
        return out.getvalue(), msg_id

    async def send(
        self,
        message: OutboundMessage,
        *,
        in_reply_to: str | None,
        references: list[str],
        html: str | None = None,
        attachments: Iterable[tuple[str, str, bytes]] = (),
    ) -> SendResult:
        try:
            data, msg_id = self.build(
                message,
                in_reply_to=in_reply_to,
                references=references,
                html=html,
                attachments=attachments,
            )
        except ValueError as error:
            raise PermanentDeliveryError(f"cannot build the message: {error}") from error
        sender = _addresses(self._settings.from_)[1][0]  # both read by build() already
        recipient = _addresses(message.recipient)[1][0]
        fields: dict[str, Any] = {
            "outbox": message.outbox_id,
            "message_id": msg_id,
            "kind": message.kind,
        }
        async with self._slots:
            line = self._free.pop()
            try:
                await self._send_on(line, data, sender, recipient, fields)
            finally:
                self._free.append(line)
        loggers.event(log, "smtp_sent", **fields)
        return SendResult(external_id=msg_id)

    async def _send_on(
        self, line: _Line, data: bytes, sender: str, recipient: str, fields: dict[str, Any]
    ) -> None:
        try:
            client = await self._connected(line)
            try:
                await client.sendmail(sender, [recipient], data)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                if not line.reused:
                    raise
                # The relay closed the connection while it idled: once more on a new one.
                self._drop(line)
                client = await self._connected(line)
                await client.sendmail(sender, [recipient], data)
            line.last_used = time.monotonic()
        except asyncio.CancelledError:
            self._drop(line)  # mid-transaction: the session's state is unknown
            raise
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [r.code for r in error.recipients]
            text = "; ".join(f"{r.code} {r.message}" for r in error.recipients)
            self._fail(fields, text)
            if codes and all(code >= 500 for code in codes):
                raise PermanentDeliveryError(text) from error
            raise TemporaryDeliveryError(text) from error
        except aiosmtplib.SMTPAuthenticationError as error:
            # The relay's credentials are wrong: not this message's fault.
            self._drop(line)
            self._fail(fields, f"{error.code} {error.message}", logging.ERROR)
            raise TemporaryDeliveryError(f"{error.code} {error.message}") from error
        except aiosmtplib.SMTPResponseException as error:
            text = f"{error.code} {error.message}"
            self._fail(fields, text)
            if not (line.client and line.client.is_connected):
                self._drop(line)
            if error.code >= 500:
                raise PermanentDeliveryError(text) from error
            raise TemporaryDeliveryError(text) from error
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            self._drop(line)
            text = f"{type(error).__name__}: {error}"
            self._fail(fields, text)
            raise TemporaryDeliveryError(text) from error

    async def close(self) -> None:
        """Say QUIT on the idle connections; the next send opens a new one."""
        for line in list(self._free):
            client, line.client = line.client, None
            if client is not None and client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()

    async def _connected(self, line: _Line) -> aiosmtplib.SMTP:
        client = line.client
        line.reused = client is not None and client.is_connected
        if client is not None and line.reused:
            if time.monotonic() - line.last_used < _FRESH_S:
                return client  # in steady use: a dropped one shows on the next command
            try:
                # Idle for a while: the relay may have dropped it without our noticing.
                await client.noop()
                return client
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                self._drop(line)
                line.reused = False
        settings = self._settings
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            start_tls=settings.starttls,
            username=settings.user,
            password=settings.password.get_secret_value() if settings.password else None,
            timeout=self._timeout,
            tls_context=self._tls_context,
        )
        await client.connect()
        line.client = client
        self.connections += 1
        loggers.event(log, "smtp_connected", host=settings.host, port=settings.port)
        return client

    def _drop(self, line: _Line) -> None:
        client, line.client = line.client, None
        if client is not None:
            client.close()

    def _fail(self, fields: dict[str, Any], reason: str, level: int = logging.WARNING) -> None:
        loggers.event(log, "smtp_send_failed", level, reason=reason, **fields)
