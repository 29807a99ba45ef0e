"""Outbound email: RFC 5322 messages sent over SMTP (RFC 5321) with aiosmtplib.

:class:`SmtpSender` builds the message (text with an optional HTML
alternative, attachments with RFC 2231 file names, threading headers) and
submits it to ``email.outbound``: STARTTLS (RFC 3207) per the settings, login
when a user is set, one connection reused across sends and reopened when it
dropped.

The Message-ID is derived from the outbox idempotency key, so a retry after a
crash carries the same Message-ID and the receiving side can recognize the
repeat; it also carries the conversation id (see :func:`message_id` and
:func:`conversation_of`) so a client's answer finds its thread. Auto-replies
carry ``Auto-Submitted: auto-replied`` (RFC 3834).

Failures map onto the hub's delivery errors by the reply code (RFC 5321 4.2.1,
RFC 3463): 5xx is a :class:`~hub.errors.PermanentDeliveryError`; 4xx, a lost
connection or a timeout is a :class:`~hub.errors.TemporaryDeliveryError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email import policy
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

import aiosmtplib

from hub import loggers
from hub.clock import Clock, SystemClock
from hub.config import OutboundSmtpSection
from hub.errors import PermanentDeliveryError, TemporaryDeliveryError
from hub.types import OutboundMessage, SendResult

log = loggers.channels

_REPLY_PREFIX = re.compile(r"^\s*re\s*(\[\d+\])?\s*:", re.IGNORECASE)
_MSG_ID = re.compile(r"^<[^<>\s]+@[^<>\s]+>$")
_FRESH_S = 10.0  # a connection used this recently is used again without a NOOP


class _Headers(HeaderRegistry):
    """The standard header registry, making each header's class once: the stdlib
    builds a new class on every header set (about 27 µs, a millisecond a message)."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


_POLICY = policy.SMTP.clone(header_factory=_Headers())
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
    ) -> EmailMessage:
        """The RFC 5322 message for ``message``; raises ValueError for a bad header value."""
        msg = EmailMessage(policy=_POLICY)
        msg["From"] = self._settings.from_
        msg["To"] = message.recipient
        if self._settings.reply_to:
            msg["Reply-To"] = self._settings.reply_to
        parent = _ids([in_reply_to]) if in_reply_to else []
        subject = reply_subject(message.subject) if parent else message.subject
        if self._settings.subject_tag and message.conversation_id is not None:
            subject = tag_subject(subject, message.conversation_id)
        if subject:
            msg["Subject"] = subject
        msg["Date"] = format_datetime(self._clock.now())
        msg["Message-ID"] = message_id(
            message.idempotency_key, self._domain, message.conversation_id
        )
        if parent:
            msg["In-Reply-To"] = parent[0]
        thread = _ids([*references, *parent])
        if thread:
            msg["References"] = " ".join(thread)
        if message.kind == "auto_reply":
            msg["Auto-Submitted"] = "auto-replied"
            msg["X-Auto-Response-Suppress"] = "All"
        if message.kind == "campaign":
            # RFC 2369 and RFC 8058: a one-click unsubscribe the mail client can offer.
            url = message.extras.get("unsubscribe_url")
            if isinstance(url, str) and url:
                msg["List-Unsubscribe"] = f"<{url}>"
                msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            msg["Precedence"] = "bulk"
        msg.set_content(message.text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        for filename, content_type, data in attachments:
            maintype, _, subtype = content_type.partition("/")
            if not maintype or not subtype or maintype == "multipart":
                maintype, subtype = "application", "octet-stream"
            msg.add_attachment(data, maintype, subtype, filename=filename)
        return msg

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
            msg = self.build(
                message,
                in_reply_to=in_reply_to,
                references=references,
                html=html,
                attachments=attachments,
            )
        except ValueError as error:
            raise PermanentDeliveryError(f"cannot build the message: {error}") from error
        sender = parseaddr(self._settings.from_)[1]
        recipient = parseaddr(message.recipient)[1]
        if not recipient:
            raise PermanentDeliveryError(f"not an email address: {message.recipient!r}")
        msg_id = str(msg["Message-ID"])
        fields: dict[str, Any] = {
            "outbox": message.outbox_id,
            "message_id": msg_id,
            "kind": message.kind,
        }
        async with self._slots:
            line = self._free.pop()
            try:
                await self._send_on(line, msg, sender, recipient, fields)
            finally:
                self._free.append(line)
        loggers.event(log, "smtp_sent", **fields)
        return SendResult(external_id=msg_id)

    async def _send_on(
        self, line: _Line, msg: EmailMessage, sender: str, recipient: str, fields: dict[str, Any]
    ) -> None:
        try:
            client = await self._connected(line)
            try:
                await client.send_message(msg, sender=sender, recipients=[recipient])
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                if not line.reused:
                    raise
                # The relay closed the connection while it idled: once more on a new one.
                self._drop(line)
                client = await self._connected(line)
                await client.send_message(msg, sender=sender, recipients=[recipient])
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
