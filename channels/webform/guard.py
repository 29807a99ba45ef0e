"""What keeps a form from abuse and from double submits: the signed render time
(HMAC-SHA256, RFC 2104), the poster's address (behind a proxy, from
``X-Forwarded-For``), the per-address rate limit, and the window in which the
same content is one submission."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from aiohttp import web

from hub.kernel.ports import RateLimit
from hub.kernel.ratelimit import RateLimiter

DOUBLE_SUBMIT_WINDOW = 60.0  # seconds: the same content again within it is the same submission


class RenderStamp:
    """Signs the time the hub rendered a form, so a post can show how long the
    visitor had it. A forged or foreign token proves nothing and is ignored."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, form_id: str, millis: int) -> str:
        message = f"{form_id}:{millis}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def sign(self, form_id: str, at: float) -> str:
        millis = int(at * 1000)
        return f"{millis}.{self._mac(form_id, millis)}"

    def verify(self, form_id: str, token: str) -> float | None:
        """The render time (epoch seconds) ``token`` proves, or None."""
        millis, _, mac = token.partition(".")
        if not (millis.isascii() and millis.isdigit()) or len(millis) > 16:
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(form_id, int(millis)).encode()):
            return None
        return int(millis) / 1000


class Recent:
    """External ids of submissions seen in the last ``window`` seconds, by content."""

    def __init__(
        self, window: float = DOUBLE_SUBMIT_WINDOW, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self._monotonic = monotonic
        self._seen: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def external_id(self, content: str, fresh: Callable[[], str]) -> str:
        """The id given to this content within the window, else a ``fresh()`` one."""
        now = self._monotonic()
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if now - oldest[1] <= self.window:
                break
            self._seen.popitem(last=False)
        seen = self._seen.get(content)
        if seen is not None:
            return seen[0]
        external_id = fresh()
        self._seen[content] = (external_id, now)
        return external_id

    def forget(self, content: str) -> None:
        """The submission was not stored: a retry must be free to go through."""
        self._seen.pop(content, None)


class PerAddress:
    """At most ``per_minute`` posts per client address, in bursts of as many."""

    def __init__(self, per_minute: int, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._limiter = RateLimiter(RateLimit(per_minute / 60, burst=per_minute), monotonic)
        self._calls = 0

    def allow(self, address: str) -> float:
        """0 when the post may go on (and counts it), else seconds to wait."""
        self._calls += 1
        if self._calls % 1000 == 0:
            self._limiter.forget_idle()
        wait = self._limiter.delay(address)
        if wait > 0:
            return wait
        self._limiter.take(address)
        return 0.0


_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class ClientAddress:
    """The poster's address, by which the rate limit counts.

    Without ``trust_forwarded``: the peer's. With it: the rightmost entry of
    ``X-Forwarded-For`` across all its lines, i.e. the one the proxy appended;
    a line the client sent itself comes first and is never taken. With
    ``trusted_proxies`` too, the peer and the entries from the right that are
    those proxies' addresses are skipped, so that a chain of proxies gives the
    address the first of them saw; a peer that is none of them is the poster
    (it came around the proxies). ``Forwarded`` (RFC 7239) is not read: a proxy
    that only appends ``X-Forwarded-For`` passes a client's own ``Forwarded`` on.
    """

    def __init__(self, trust_forwarded: bool, trusted_proxies: Sequence[str] = ()) -> None:
        self.trust_forwarded = trust_forwarded
        self.proxies = [ipaddress.ip_network(p) for p in trusted_proxies]

    def __call__(self, request: web.Request) -> str:
        peer = request.remote or "unknown"
        if not self.trust_forwarded:
            return peer
        hops = [
            hop.strip()
            for line in request.headers.getall("X-Forwarded-For", ())
            for hop in line.split(",")
            if hop.strip()
        ]
        if not self.proxies:
            return _shown(hops[-1]) if hops else peer
        chain = [*hops, peer]
        poster = next((hop for hop in reversed(chain) if not self._trusted(hop)), chain[0])
        return _shown(poster)

    def _trusted(self, hop: str) -> bool:
        ip = _ip(hop)
        return ip is not None and any(ip in network for network in self.proxies)


def _ip(hop: str) -> _IP | None:
    """The address in an ``X-Forwarded-For`` entry: ``1.2.3.4``, ``1.2.3.4:5678``,
    ``2001:db8::1`` or ``[2001:db8::1]:5678``; an IPv4-mapped IPv6 one as IPv4."""
    if hop.startswith("["):
        hop = hop[1:].partition("]")[0]
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    try:
        ip = ipaddress.ip_address(hop)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _shown(hop: str) -> str:
    ip = _ip(hop)
    return str(ip) if ip is not None else hop[:100]
