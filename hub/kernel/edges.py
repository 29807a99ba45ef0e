"""The bounds of the process's listening sockets, HTTP and SMTP alike: one table of
open connections, per address and in all, kept below the fd limit with a reserve
for the database, the spool and outgoing connections; how long a request may take
to arrive; and one log line an interval when a bound bites, never one a connection."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub.kernel import loggers

log = loggers.core

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The soft fd limit is raised at start toward the hard one, up to this: enough
# for the tables below, without promising more connections than memory holds.
FD_TARGET = 65_536
# What asyncio reports, with a traceback, each time accept() fails for want of
# descriptors (it then stops accepting on that socket for a second).
ACCEPT_FAILED = "socket.accept() out of system resource"
_TRACKED = 10_000  # distinct addresses remembered in an interval's tally


@dataclass(frozen=True)
class EdgeLimits:
    """The ``[edges]`` section, in seconds and counts. ``connections`` 0: the fd
    limit less ``fd_reserve``; ``exempt``: networks with no per-address cap (a
    reverse proxy in front of the hub)."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    body_min_rate: int = 1024  # bytes a second that earn a body one more second; 0: none
    keepalive_timeout: float = 75.0
    connections: int = 0
    per_address: int = 200
    fd_reserve: int = 256
    exempt: tuple[Network, ...] = ()
    report_every: float = 60.0


def raise_fd_limit(target: int = FD_TARGET) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` toward the hard limit (up to ``target``,
    never lowering it) where allowed; the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(hard, target)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as exc:
        loggers.event(log, "edges.fd_limit_kept", logging.WARNING, soft=soft, error=exc)
        return soft
    return wanted


def fd_limit() -> int:
    """The process's soft fd limit."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return FD_TARGET if soft == resource.RLIM_INFINITY else soft


def capacity(limits: EdgeLimits, soft_limit: int) -> int:
    """How many connections all listening sockets may hold together: ``connections``
    or the fd limit, less the reserve either way (at least 16)."""
    room = max(soft_limit - limits.fd_reserve, 16)
    return min(limits.connections, room) if limits.connections else room


def address_of(peer: Any) -> str:
    """The address a connection counts against: its IP; an IPv6 one by its /64
    (what one host is usually given), an IPv4-mapped one as IPv4."""
    host = peer[0] if isinstance(peer, tuple) and peer else None
    if not isinstance(host, str):
        return "-"
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _Tally:
    """One bound's log: a line when it first bites, then at most one an interval
    with how often it bit meanwhile and from how many addresses."""

    def __init__(self, limit: str, every: float) -> None:
        self.limit = limit
        self.every = every
        self.times = 0
        self.addresses: Counter[str] = Counter()
        self._timer: asyncio.TimerHandle | None = None

    def hit(self, address: str, fields: dict[str, Any]) -> None:
        if self._timer is not None:
            self.times += 1
            if address in self.addresses or len(self.addresses) < _TRACKED:
                self.addresses[address] += 1
            return
        loggers.event(
            log,
            "edges.limit",
            logging.WARNING,
            limit=self.limit,
            address=address,
            **fields,
            next_report_s=self.every,
        )
        self._arm()

    def _arm(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside a loop nothing can be counted for later
            return
        self._timer = loop.call_later(self.every, self.flush)

    def flush(self) -> None:
        self._timer = None
        if not self.times:
            return  # quiet for a whole interval: the next bite is logged at once
        self._report()
        self._arm()

    def _report(self) -> None:
        top, most = self.addresses.most_common(1)[0] if self.addresses else ("-", 0)
        loggers.event(
            log,
            "edges.limit",
            logging.WARNING,
            limit=self.limit,
            times=self.times,
            seconds=self.every,
            addresses=len(self.addresses),
            top=f"{top}({most})",
        )
        self.times = 0
        self.addresses.clear()

    def close(self) -> None:
        """What the interval counted so far is told, nothing is counted after."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.times:
            self._report()


class Edges:
    """The one connection table of the process, shared by every listening server.

    A server asks :meth:`admit` in ``connection_made``: a refused connection is
    closed at once (the table never stops serving the ones it holds), an admitted
    one is given back with :meth:`release` in ``connection_lost``. :meth:`bite`
    reports any other bound (a timeout) through the same once-an-interval log.
    """

    def __init__(self, limits: EdgeLimits | None = None, *, soft_limit: int | None = None) -> None:
        self.limits = limits or EdgeLimits()
        self.capacity = capacity(self.limits, fd_limit() if soft_limit is None else soft_limit)
        self.open = 0
        self._by_address: Counter[str] = Counter()
        self._tallies: dict[str, _Tally] = {}

    def admit(self, peer: Any) -> str | None:
        """Count a new connection from ``peer`` (a socket's peer name) in: the key
        to release it with, or None when a bound refuses it."""
        address = address_of(peer)
        if self.open >= self.capacity:
            self.bite("connections", address, open=self.open, cap=self.capacity)
            return None
        held = self._by_address[address]
        if held >= self.limits.per_address and not self._exempt(address):
            self.bite("connections_per_address", address, open=held, cap=self.limits.per_address)
            return None
        self.open += 1
        self._by_address[address] = held + 1
        return address

    def release(self, address: str) -> None:
        self.open -= 1
        left = self._by_address[address] - 1
        if left > 0:
            self._by_address[address] = left
        else:
            del self._by_address[address]

    def held(self, address: str) -> int:
        """Connections open from ``address`` (as :func:`address_of` names it)."""
        return self._by_address.get(address, 0)

    def bite(self, limit: str, address: str = "-", **fields: Any) -> None:
        """A bound refused or closed a connection: logged once an interval."""
        tally = self._tallies.get(limit)
        if tally is None:
            tally = self._tallies[limit] = _Tally(limit, self.limits.report_every)
        tally.hit(address, fields)

    def watch(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Count asyncio's accept failures for want of descriptors (EMFILE) in the
        once-an-interval log instead of a traceback each; every other report goes
        where it went. Returns what undoes it."""
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if context.get("message") == ACCEPT_FAILED:
                self.bite("accept", error=context.get("exception"), open=self.open)
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)

        def undo() -> None:
            if loop.get_exception_handler() is handler:
                loop.set_exception_handler(previous)

        return undo

    def close(self) -> None:
        """Report what the current intervals counted (the lifespan's end)."""
        for tally in self._tallies.values():
            tally.close()

    def _exempt(self, address: str) -> bool:
        if not self.limits.exempt:
            return False
        try:
            network = ipaddress.ip_network(address, strict=False)
        except ValueError:
            return False
        return any(
            network.version == allowed.version and network.subnet_of(allowed)  # type: ignore[arg-type]
            for allowed in self.limits.exempt
        )
