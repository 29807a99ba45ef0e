"""The hub's inbound SMTP server (RFC 5321) on aiosmtpd, in the hub's own event loop.

The protocol edge is kept thin: refuse early, hand over, answer after the commit.
Replies carry RFC 3463 enhanced status codes:

- ``RCPT`` to a domain outside ``email.smtp.domains`` → ``550 5.7.1`` (never an
  open relay); more than :data:`MAX_RECIPIENTS` recipients → ``452 4.5.3``;
- a message over ``email.smtp.max_message_bytes`` → ``552 5.3.4``, both when the
  ``SIZE=`` of ``MAIL FROM`` (RFC 1870) announces it and when the data exceeds it;
- a line of the message longer than ``email.smtp.max_line_length`` (64 KiB) →
  ``500 5.5.2 line too long``; shorter ones are taken whatever RFC 5321 says
  (998), as Postfix does: real mail (bounces, one-line HTML) has them;
- a control character (NUL, CR…) in ``HELO``/``EHLO`` → ``501 5.5.4``, in a
  ``MAIL`` or ``RCPT`` address → ``553 5.1.3 malformed address``;
- ``DATA`` → ``deliver(raw, mail_from, rcpt_tos)``; ``250 2.0.0`` only once it
  returned (the message is committed), ``554 5.6.0`` when it raised
  :class:`~hub.kernel.errors.MessageRejected`, ``451 4.3.0`` for
  :class:`~hub.kernel.errors.StorageUnavailable` or any other error, so the sender
  retries. aiosmtpd answers an uncaught exception with a permanent ``500``; this
  module never lets one through.

``raw`` is the RFC 5322 message exactly as received (dot-unstuffed, CRLF line
ends), whatever the length of its lines. The null reverse-path of a bounce
(``MAIL FROM:<>``) is passed as ``""``. The greeting names the host and nothing
of the software (``220 host ESMTP``).
A ``deliver`` in progress is finished even when the client hangs up meanwhile
(the client retries; the channel recognizes the redelivery).

STARTTLS (RFC 3207) is offered when a ``tls_context`` is given (from
``email.smtp.tls_cert`` / ``tls_key``); ``email.smtp.require_tls`` refuses every
command but EHLO, STARTTLS and QUIT on a plaintext connection (``530 5.7.0``).
AUTH PLAIN and LOGIN (RFC 4954) check ``email.smtp.users``, and only over TLS;
``email.smtp.require_auth`` makes MAIL wait for a successful AUTH. A failed AUTH
is logged with the peer and the user name, never the password. Authentication
never widens the recipient domains: the server is never a relay.

A session ends after ``email.smtp.idle_timeout_s`` without a command and after
``session_timeout_s`` in all; it takes a place in the process's connection table
or is refused with 421 (:mod:`channels.email.sessions`).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import re
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from channels.email.sessions import SessionBounds, SessionLimits
from hub.config import SmtpServerSection, split_listen
from hub.kernel import loggers
from hub.kernel.edges import Edges
from hub.kernel.errors import ConfigError, MessageRejected, StorageUnavailable

log = loggers.channels

Deliver = Callable[[bytes, str, list[str]], Awaitable[object]]

MAX_RECIPIENTS = 100  # RFC 5321 4.5.3.1.8: at least 100 must be accepted

RELAY_DENIED = "550 5.7.1 relaying denied"
TOO_BIG = "552 5.3.4 message too big"
TOO_MANY_RECIPIENTS = "452 4.5.3 too many recipients"
TEMPORARY_FAILURE = "451 4.3.0 temporary failure, try again later"
LINE_TOO_LONG = "500 5.5.2 line too long: the limit is {} characters (RFC 5321 4.5.3.1.6)"
BAD_HOSTNAME = "501 5.5.4 invalid host name: control characters"
IDENT = "ESMTP"  # the greeting's text after the host name: nothing of the software
_REJECTED = "554 5.6.0 message rejected: {}"

_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _reply_text(reason: str, limit: int = 200) -> str:
    """One printable ASCII line, safe inside an SMTP reply."""
    text = " ".join(_UNPRINTABLE.sub(" ", reason).split())
    return (text[: limit - 3] + "...") if len(text) > limit else text or "unspecified"


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower() if "@" in address else ""


class _Handler:
    """aiosmtpd hooks: the relay check, the hand-over and the answer."""

    def __init__(self, domains: frozenset[str], deliver: Deliver) -> None:
        self._domains = domains
        self._deliver = deliver
        self.pending: set[asyncio.Task[object]] = set()
        self._prefix = secrets.token_hex(4)
        self._n = 0

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if _domain(address) not in self._domains:
            loggers.event(
                log,
                "smtp_refused",
                logging.WARNING,
                reason="relaying_denied",
                peer=_peer(session),
                mail_from=envelope.mail_from or "-",
                rcpt_domain=_domain(address) or "-",
            )
            return RELAY_DENIED
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return TOO_MANY_RECIPIENTS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        mail_from = envelope.mail_from or ""
        if mail_from == "<>":
            mail_from = ""
        rcpt_tos = list(envelope.rcpt_tos)
        self._n += 1
        queue_id = f"{self._prefix}{self._n:x}"
        fields: dict[str, Any] = {
            "id": queue_id,
            "peer": _peer(session),
            "mail_from": mail_from or "<>",
            "rcpts": len(rcpt_tos),
            "size": len(raw),
        }
        # A client hanging up must not cancel a commit half way: a coroutine runs
        # shielded as a task of its own; a future is work going on elsewhere
        # already (the mail spool's), which the hang-up cannot cut short.
        work = self._deliver(raw, mail_from, rcpt_tos)
        if not isinstance(work, asyncio.Future):
            task = asyncio.ensure_future(work)
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)
            work = asyncio.shield(task)
        try:
            await work
        except MessageRejected as error:
            loggers.event(log, "smtp_message", result="rejected", reason=str(error), **fields)
            return _REJECTED.format(_reply_text(str(error)))
        except StorageUnavailable as error:
            loggers.event(
                log, "smtp_message", logging.WARNING, result="deferred", reason=error, **fields
            )
            return TEMPORARY_FAILURE
        except Exception as error:
            log.exception("smtp_deliver_failed id=%s", queue_id)
            loggers.event(
                log,
                "smtp_message",
                logging.ERROR,
                result="deferred",
                reason=type(error).__name__,
                **fields,
            )
            return TEMPORARY_FAILURE
        loggers.event(log, "smtp_message", result="accepted", **fields)
        return f"250 2.0.0 OK queued as {queue_id}"

    async def handle_exception(self, error: Exception) -> str:
        # Anything aiosmtpd did not expect: temporary, so the mail is retried, not lost.
        log.exception("smtp_session_error")
        return TEMPORARY_FAILURE


class _Authenticator:
    """Checks AUTH credentials against ``email.smtp.users`` in constant time."""

    def __init__(self, settings: SmtpServerSection) -> None:
        self._users = {
            u.user.encode(): u.password.get_secret_value().encode() for u in settings.users
        }

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            expected = self._users.get(data.login)
            # Compared even for an unknown user, so timing does not tell users apart.
            ok = hmac.compare_digest(expected or b"\0", data.password) and expected is not None
            loggers.event(
                log,
                "smtp_auth",
                logging.INFO if ok else logging.WARNING,
                result="ok" if ok else "refused",
                mechanism=mechanism,
                user=data.login.decode("utf-8", "replace"),
                peer=_peer(session),
            )
            if ok:
                return AuthResult(success=True, auth_data=data.login.decode("utf-8", "replace"))
        return AuthResult(success=False, handled=False)


def tls_context_of(settings: SmtpServerSection) -> ssl.SSLContext | None:
    """The server's TLS context from ``tls_cert`` and ``tls_key``; None without them."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"email.smtp.tls_cert: cannot load the certificate: {exc}"]) from exc
    return context


@functools.lru_cache(maxsize=4096)
def _path(arg: str) -> tuple[str | None, str | None]:
    """The address and the rest of a MAIL or RCPT argument (RFC 5321 4.1.2), as
    aiosmtpd reads it; ``(None, None)`` when it is no address."""
    try:
        parsed = get_angle_addr(arg) if arg.lstrip().startswith("<") else get_addr_spec(arg)
    except HeaderParseError:
        return None, None
    address, rest = parsed
    return str(address.addr_spec), rest


def _peer(session: Session | None) -> str:
    peer = session.peer if session is not None else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer) if peer else "-"


class _Protocol(SMTP):
    """aiosmtpd's SMTP with our size reply and connection tracking."""

    def __init__(
        self,
        handler: _Handler,
        connections: set[_Protocol],
        *,
        data_size_limit: int,
        hostname: str,
        tls_context: ssl.SSLContext | None,
        timeout: float,
        loop: asyncio.AbstractEventLoop,
        settings: SmtpServerSection,
        bounds: SessionBounds,
    ) -> None:
        # The stream's limit, read by SMTP.__init__: a line and its CRLF.
        self.line_length_limit = settings.max_line_length + 2
        super().__init__(
            handler,
            data_size_limit=data_size_limit,
            enable_SMTPUTF8=True,
            hostname=hostname,
            ident=IDENT,
            tls_context=tls_context,
            require_starttls=settings.require_tls,
            auth_required=settings.require_auth,
            auth_require_tls=True,
            authenticator=_Authenticator(settings) if settings.users else None,
            auth_exclude_mechanism=None if settings.users else ["LOGIN", "PLAIN"],
            timeout=timeout,
            loop=loop,
        )
        self._connections = connections
        self._bounds = bounds

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._bounds.open(transport, self):
            return  # refused (421) and closed: aiosmtpd never sees it
        self._connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if not self._bounds.close():
            return
        self._connections.discard(self)
        super().connection_lost(error)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd's own builds a typing.Protocol class at every call and parses
        # the same few addresses (the hub's own, repeat senders) again and again.
        if not arg:
            return "", ""
        if _CONTROL.search(arg):
            return None, None  # never an address; aiosmtpd answers 553
        path, tail = arg, ""
        end = arg.find(">")
        if end > 0 and '"' not in arg and arg.lstrip().startswith("<"):
            path, tail = arg[: end + 1], arg[end + 1 :]  # the parameters (SIZE=…) vary
        addr, rest = _path(path)
        if addr is None:
            return None, None
        rest = (rest or "") + tail
        limit = self.local_part_limit
        if limit and len(addr.rpartition("@")[0]) > limit:
            return None, None
        return addr, rest

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str | None) -> None:
        # None: no host name at all, which aiosmtpd's own answers with a 501
        if hostname and _CONTROL.search(hostname):
            await self.push(BAD_HOSTNAME)
            return
        await super().smtp_HELO(hostname)

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str | None) -> None:
        if hostname and _CONTROL.search(hostname):
            await self.push(BAD_HOSTNAME)
            return
        await super().smtp_EHLO(hostname)

    async def push(self, status: AnyStr) -> None:
        # aiosmtpd's own size refusals ("552 Error: ...") get an RFC 3463 code.
        text = status.decode("ascii", "replace") if isinstance(status, bytes) else status
        if text.rstrip() == "250-AUTH":
            return  # no AUTH mechanisms (no email.smtp.users): not advertised at all
        if text.startswith("552 Error"):
            self._refused("too_big")
            await super().push(TOO_BIG)
            return
        if text.startswith("500 Line too long"):
            self._refused("line_too_long")
            await super().push(LINE_TOO_LONG.format(self.line_length_limit - 2))
            return
        await super().push(status)

    def _refused(self, reason: str) -> None:
        envelope = self.envelope
        loggers.event(
            log,
            "smtp_refused",
            logging.WARNING,
            reason=reason,
            peer=_peer(self.session),
            mail_from=(envelope.mail_from if envelope else None) or "-",
            rcpts=len(envelope.rcpt_tos) if envelope else 0,
        )


class SmtpServer:
    """Listens on ``email.smtp.listen`` (or ``listen``, where port 0 picks a free
    port; ``port`` is the bound one after :meth:`start`)."""

    def __init__(
        self,
        settings: SmtpServerSection,
        deliver: Deliver,
        *,
        listen: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        hostname: str | None = None,
        timeout: float | None = None,
        edges: Edges | None = None,
    ) -> None:
        address = listen or settings.listen
        if address is None:
            raise ConfigError(["email.smtp.listen: missing"])
        self.host, self.port = split_listen(address)
        self._settings = settings
        self._handler = _Handler(frozenset(d.lower() for d in settings.domains), deliver)
        self._tls_context = tls_context or tls_context_of(settings)
        self._hostname = hostname
        self._timeout = settings.idle_timeout_s if timeout is None else timeout
        self._edges = edges or Edges()  # the process's table; by default one of its own
        self._server: asyncio.Server | None = None
        self._connections: set[_Protocol] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Resolved once: aiosmtpd would look it up for every connection.
        hostname = self._hostname or str(await asyncio.to_thread(socket.getfqdn))
        limits = SessionLimits(self._edges, self._settings.session_timeout_s, hostname)

        def protocol() -> _Protocol:
            return _Protocol(
                self._handler,
                self._connections,
                data_size_limit=self._settings.max_message_bytes,
                hostname=hostname,
                tls_context=self._tls_context,
                timeout=self._timeout,
                loop=loop,
                settings=self._settings,
                bounds=limits.session(),
            )

        self._server = await loop.create_server(protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        loggers.event(
            log,
            "smtp_listening",
            host=self.host,
            port=self.port,
            domains=",".join(self._settings.domains) or "-",
            starttls=self._tls_context is not None,
            auth=bool(self._settings.users),
        )

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let deliveries in progress commit (up to ``grace``
        seconds), then close every session."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        pending = set(self._handler.pending)
        if pending:
            await asyncio.wait(pending, timeout=grace)
        for connection in list(self._connections):
            connection.close()
        await server.wait_closed()
        loggers.event(log, "smtp_stopped", port=self.port)
