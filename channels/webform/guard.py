"""What keeps a form from abuse and from double submits: the signed render time
(HMAC-SHA256, RFC 2104), the per-address rate limit, and the window in which
the same content is one submission."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable

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
        if not millis.isdigit() or len(millis) > 16:
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


def client_address(request: web.Request, trust_forwarded: bool) -> str:
    """The poster's address; behind a proxy (``trust_forwarded``), the one the proxy
    saw, i.e. the last entry of ``X-Forwarded-For``."""
    if trust_forwarded:
        forwarded = request.headers.get("X-Forwarded-For", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.remote or "unknown"
