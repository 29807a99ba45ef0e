"""The email channel: inbound over SMTP (RFC 5321, aiosmtpd), outbound through an
SMTP relay (aiosmtplib), both through the hub's narrow channel contract.

With an ``offload`` (the mail worker, worker.py, as ``hub run`` sets it up),
each accepted message is committed to the mail spool (spool.py) and the SMTP
server answers 250 then; the worker process parses and logs it. Without one, each
message is parsed (parse.py) and handed to the ingest sink here, and the SMTP
server answers 250 only after the sink returned, i.e. after the log's commit.
A message the parser could not read fully is logged with its raw bytes kept as
an attachment and the problems noted. Mail that names no sender anywhere, the
envelope included, is refused over SMTP (554); from a mailbox, where nobody can
be told, it is logged all the same, without a sender (see :func:`read_received`).
Replies go out with threading headers;
their Message-IDs come from the outbox row's idempotency key and carry the
conversation id, and the sent id is recorded so that the client's answer threads.
Each ``[[email.imap]]`` mailbox is watched (imap.py) through the same path;
its cursor is kept by the ``cursors`` store the hub gives (the database), and
with ``locks`` only the instance that holds a mailbox's lock watches it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import html
from collections.abc import Awaitable
from datetime import datetime
from typing import Protocol

from channels.email.imap import ImapWatcher, MemoryCursorStore
from channels.email.parse import may_name_sender, parse
from channels.email.sender import SmtpSender
from channels.email.smtp_server import SmtpServer
from hub.config import EmailSection
from hub.kernel import loggers
from hub.kernel.clock import Clock, SystemClock
from hub.kernel.edges import Edges
from hub.kernel.errors import MessageRejected, PermanentDeliveryError, StorageUnavailable
from hub.kernel.ports import (
    AttachmentSource,
    ChannelLimits,
    CursorStore,
    InboundSink,
    MailboxLocks,
    RateLimit,
)
from hub.kernel.types import (
    FILE_KINDS,
    Attachment,
    Channel,
    InboundMessage,
    IngestResult,
    OutboundMessage,
    SendResult,
)

log = loggers.channels
_READ_IN_PLACE = 64 * 1024  # bytes
NO_SENDER = "no sender address in the message or its envelope"


class Offload(Protocol):
    """Takes received mail to be parsed and logged elsewhere (the hub's mail
    worker process, through its spool).

    ``submit`` returns a future done once the message is safely kept (the SMTP
    server then answers 250); it fails with :class:`~hub.kernel.errors.MessageRejected`
    for a message that can never be logged and with
    :class:`~hub.kernel.errors.StorageUnavailable` when the sender should retry. The
    message goes on to the log even if nobody waits for the future any more."""

    async def start(self, sink: InboundSink) -> None: ...

    async def stop(self) -> None: ...

    def submit(
        self, raw: bytes, mail_from: str, rcpt_tos: list[str], received_at: datetime
    ) -> asyncio.Future[int]: ...


class EmailChannel:
    """``name = "email"``. ``listen`` overrides ``email.smtp.listen`` (tests: port 0).
    With ``offload``, received mail (SMTP and IMAP) is parsed and ingested there
    instead of in this process."""

    name = "email"
    limits = ChannelLimits(overall=RateLimit(10, burst=5))

    def __init__(
        self,
        config: EmailSection,
        *,
        max_attachment_bytes: int,
        files: AttachmentSource | None = None,
        clock: Clock | None = None,
        listen: str | None = None,
        cursors: CursorStore | None = None,
        locks: MailboxLocks | None = None,
        offload: Offload | None = None,
        edges: Edges | None = None,
    ) -> None:
        self.config = config
        self.edges = edges  # the process's connection table, for the SMTP server
        self.offload = offload
        self.cursors = cursors or MemoryCursorStore()
        self.locks = locks
        self.watchers: list[ImapWatcher] = []
        self.max_attachment_bytes = max_attachment_bytes
        self.files = files
        self.clock = clock or SystemClock()
        self._listen = listen
        self._sink: InboundSink | None = None
        self.server: SmtpServer | None = None
        self.sender: SmtpSender | None = None
        if config.outbound is not None:
            domain = config.outbound.from_.rpartition("@")[2].strip(">").strip() or "localhost"
            self.sender = SmtpSender(config.outbound, domain=domain, clock=self.clock)

    async def start(self, sink: InboundSink) -> None:
        self._sink = sink
        if self.offload is not None:
            await self.offload.start(sink)
        if self.config.smtp.listen is not None or self._listen is not None:
            self.server = SmtpServer(
                self.config.smtp, self._from_smtp, listen=self._listen, edges=self.edges
            )
            await self.server.start()
        for mailbox in self.config.imap:
            watcher = ImapWatcher(
                mailbox,
                functools.partial(self._from_mailbox, mailbox.user),
                cursor=self.cursors,
                locks=self.locks,
            )
            await watcher.start()
            self.watchers.append(watcher)

    async def _from_mailbox(self, user: str, raw: bytes) -> None:
        # Whatever it is, a person is shown it: there is no sender to refuse.
        await self._deliver(raw, "", [user])

    def _from_smtp(self, raw: bytes, mail_from: str, rcpt_tos: list[str]) -> Awaitable[object]:
        if not may_name_sender(raw, mail_from):
            # Refused before it is kept: the sending server tells its author.
            refused: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            refused.set_exception(MessageRejected(NO_SENDER))
            return refused
        return self._deliver(raw, mail_from, rcpt_tos)

    async def stop(self) -> None:
        for watcher in self.watchers:
            await watcher.stop()
        self.watchers = []
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self.offload is not None:
            await self.offload.stop()
        if self.sender is not None:
            await self.sender.close()
        self._sink = None

    def _deliver(self, raw: bytes, mail_from: str, rcpt_tos: list[str]) -> Awaitable[object]:
        if self.offload is not None:
            return self.offload.submit(raw, mail_from, rcpt_tos, self.clock.now())
        return self._here(raw, mail_from, rcpt_tos)

    async def _here(self, raw: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
        sink = self._sink
        if sink is None:
            raise StorageUnavailable("the email channel is stopping")
        received = await read_received(
            raw,
            mail_from,
            rcpt_tos,
            received_at=self.clock.now(),
            max_attachment_bytes=self.max_attachment_bytes,
        )
        log_received(received, await sink(received.message))

    async def send(self, message: OutboundMessage) -> SendResult:
        if self.sender is None:
            raise PermanentDeliveryError("email.outbound is not configured")
        in_reply_to = message.extras.get("in_reply_to") if message.extras else None
        attachments: list[tuple[str, str, bytes]] = []
        if (
            self.files is not None
            and message.interaction_id is not None
            and message.kind in FILE_KINDS
        ):
            for stored in await self.files.attachments(message.interaction_id):
                data = await self.files.attachment_bytes(stored.sha256)
                attachments.append((stored.filename, stored.content_type, data))
        return await self.sender.send(
            message,
            in_reply_to=in_reply_to if isinstance(in_reply_to, str) else None,
            references=[in_reply_to] if isinstance(in_reply_to, str) else [],
            html=_html(message.text),
            attachments=attachments,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Received:
    """A received message read for the log: what it is (``message``, ``bounce``,
    ``auto``…) and how many parts the parser could not read."""

    message: InboundMessage
    kind: str
    problems: int


async def read_received(
    raw: bytes,
    mail_from: str,
    rcpt_tos: list[str],
    *,
    received_at: datetime,
    max_attachment_bytes: int,
) -> Received:
    """Parse one received message for the log; never raises.

    Its sender is the first address that can be read (see
    :mod:`channels.email.parse`). With none, the message has no identities: ingest
    logs it on a client of its own, which cannot be answered. Even what the
    parser failed on is logged, as its raw text."""
    account = rcpt_tos[0].lower() if rcpt_tos else "smtp"
    read = functools.partial(
        parse,
        raw,
        account=account,
        received_at=received_at,
        max_attachment_bytes=max_attachment_bytes,
        envelope_from=mail_from,
    )
    # A big message takes the parser long enough to stall every other
    # session: read it off the event loop. A small one is quicker in place.
    parsed = await asyncio.to_thread(read) if len(raw) > _READ_IN_PLACE else read()
    message = parsed.message or parsed.anonymous or _as_text(raw, account, received_at)
    if parsed.problems:
        # Kept whole, so that nothing the parser could not read is lost.
        message = dataclasses.replace(
            message,
            attachments=(
                *message.attachments,
                Attachment("original.eml", "message/rfc822", raw),
            ),
        )
    extras = dict(message.extras)
    extras.setdefault("envelope_from", mail_from)
    if parsed.kind != "message":
        extras["auto"] = parsed.kind
    message = dataclasses.replace(message, extras=extras)
    return Received(message, parsed.kind, len(parsed.problems))


def _as_text(raw: bytes, account: str, received_at: datetime) -> InboundMessage:
    """What the parser failed on, as its raw text (the bytes are kept beside it)."""
    return InboundMessage(
        channel=Channel.EMAIL,
        account=account,
        external_id="sha256:" + hashlib.sha256(raw).hexdigest(),
        identities=(),
        received_at=received_at,
        text=raw.decode("utf-8", "replace").replace("\x00", "\ufffd"),
    )


def log_received(received: Received, result: IngestResult) -> None:
    message = received.message
    loggers.event(
        log,
        "email.received",
        kind=received.kind,
        client=result.client_id,
        interaction=result.interaction_id,
        duplicate=result.duplicate,
        problems=received.problems,
        sender=message.extras.get("sender_source", "From") if message.identities else "none",
    )


def _html(text: str) -> str:
    """The plain answer as a small HTML alternative (paragraphs and line breaks)."""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    body = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
    return f'<!DOCTYPE html><html><body style="font-family:sans-serif">{body}</body></html>'
