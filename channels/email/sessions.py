"""The bounds of an inbound SMTP session (RFC 5321 4.5.3.2): a place in the
process's connection table (:class:`~hub.kernel.edges.Edges`), refused with
``421 4.7.0`` when it is full or the peer holds too many; and the session's total
time, after which it is closed with ``421 4.4.2`` however busy it keeps
(aiosmtpd's own ``timeout`` is the idle one, reset by every command)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from hub.kernel.edges import Edges


class _Connected(Protocol):
    """The SMTP protocol: its transport changes at STARTTLS."""

    @property
    def transport(self) -> asyncio.BaseTransport | None: ...


class SessionLimits:
    """One server's: the shared table, the total time of a session, and the host
    name its refusals give."""

    def __init__(self, edges: Edges, session_timeout: float, hostname: str = "localhost") -> None:
        self.edges = edges
        self.session_timeout = session_timeout
        self.hostname = hostname

    def session(self) -> SessionBounds:
        return SessionBounds(self)


class SessionBounds:
    """One connection's: admitted (or refused) once, timed, released once."""

    def __init__(self, limits: SessionLimits) -> None:
        self._limits = limits
        self._address: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._opened = False

    def open(self, transport: asyncio.BaseTransport, protocol: _Connected) -> bool:
        """Whether the session goes on: true again for the TLS transport of STARTTLS;
        false when refused (the refusal is written and the connection closed)."""
        if self._opened:
            return self._address is not None
        self._opened = True
        limits = self._limits
        self._address = limits.edges.admit(transport.get_extra_info("peername"))
        if self._address is None:
            _close(transport, f"421 4.7.0 {limits.hostname} too many connections, try later")
            return False
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(limits.session_timeout, self._expire, protocol)
        return True

    def close(self) -> bool:
        """Give the place back; whether the session had been admitted."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        address, self._address = self._address, None
        if address is None:
            return False
        self._limits.edges.release(address)
        return True

    def _expire(self, protocol: _Connected) -> None:
        self._timer = None
        transport = protocol.transport
        if transport is None or self._address is None:
            return
        limits = self._limits
        limits.edges.bite("smtp_session_time", self._address, seconds=limits.session_timeout)
        _close(transport, f"421 4.4.2 {limits.hostname} session time limit reached, closing")


def _close(transport: asyncio.BaseTransport, reply: str) -> None:
    if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
        transport.write(reply.encode("ascii", "replace") + b"\r\n")
    transport.close()
