"""Outgoing events delivered: the ``webhook`` channel the dispatcher sends through.

Each outbox row of channel ``webhook`` (queued by :mod:`storage.webhooks`) is
POSTed to its webhook's URL as it was queued, signed at send time
(``../shared/INTERFACE.md``, "Outgoing events"): the headers ``X-Hub-Event-Id``
and ``X-Hub-Signature: t=UNIX_TIME,v1=HEX``, HEX being the HMAC-SHA256, keyed by
the webhook's ``secret``, of ``"{t}.{body}"``. A 2xx delivers it; anything else
(another status, a timeout, a refused connection) is a temporary failure the
dispatcher retries with its backoff until ``[dispatcher] max_attempts``, after
which the row is parked. A row whose webhook left the config is parked at once.

One aiohttp session for every webhook (its connections pooled), each request
bounded by the webhook's ``timeout_s``; a redirect is followed only when it keeps
the method and body (307, 308) and stays on the same scheme, host and port.
Secrets and URLs never reach a log line or an error (a URL may carry a token).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from sqlalchemy.ext.asyncio import AsyncConnection
from yarl import URL

from hub.config.sections import WebhookSection
from hub.kernel.clock import Clock, SystemClock
from hub.kernel.errors import PermanentDeliveryError, TemporaryDeliveryError
from hub.kernel.ports import ChannelLimits, InboundSink
from hub.kernel.types import OutboundMessage, SendResult
from storage import webhooks as q

CHANNEL = q.CHANNEL
MAX_REDIRECTS = 3
_KEEP_METHOD = frozenset({307, 308})
_READ_LIMIT = 64 * 1024  # of an answer's body: read so the connection is reused


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Hub-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True, slots=True)
class Target:
    url: URL
    secret: bytes
    timeout_s: float


def targets(webhooks: Sequence[WebhookSection]) -> dict[str, Target]:
    """The config's webhooks by their key (the outbox row's recipient)."""
    return {
        w.key: Target(URL(w.url), w.secret.get_secret_value().encode(), w.timeout_s)
        for w in webhooks
    }


def subscriptions(webhooks: Sequence[WebhookSection]) -> list[tuple[str, list[str]]]:
    """(webhook key, event types) pairs, as ``storage.webhooks.sync`` takes them."""
    return [(w.key, list(w.events)) for w in webhooks]


async def sync(conn: AsyncConnection, webhooks: Sequence[WebhookSection]) -> int:
    """In the caller's transaction: the subscriptions made the config's, and the
    events still queued for a webhook no longer configured parked; how many were."""
    await q.sync(conn, subscriptions(webhooks))
    return await q.park_unconfigured(conn, [w.key for w in webhooks])


def _same_origin(a: URL, b: URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _reason(exc: BaseException, timeout_s: float) -> str:
    """Why a request failed, without its URL (which may carry a token)."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or type(exc.os_error).__name__}"
    return f"request failed: {type(exc).__name__}"


class WebhookChannel:
    """The channel port for outgoing events: ``send`` only (nothing comes in)."""

    name = CHANNEL
    limits = ChannelLimits()

    def __init__(self, webhooks: Sequence[WebhookSection], clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.targets = targets(webhooks)
        self._session: aiohttp.ClientSession | None = None

    def configure(self, webhooks: Sequence[WebhookSection]) -> None:
        """Take the webhooks of a reloaded config (a send under way keeps its own)."""
        self.targets = targets(webhooks)

    async def start(self, sink: InboundSink) -> None:
        """Nothing to receive."""

    async def stop(self) -> None:
        """Close the connections (after the dispatcher stopped sending)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _pool(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, limit_per_host=50),
                trust_env=False,
                auto_decompress=False,
            )
        return self._session

    async def send(self, message: OutboundMessage) -> SendResult:
        target = self.targets.get(message.recipient)
        if target is None:
            raise PermanentDeliveryError(q.UNCONFIGURED)
        body = message.text.encode()
        timestamp = int(self.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Event-Id": str(message.extras.get("event_id", "")),
            "X-Hub-Signature": signature(target.secret, timestamp, body),
        }
        try:
            status = await self._post(target, body, headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TemporaryDeliveryError(_reason(exc, target.timeout_s)) from None
        if not 200 <= status < 300:
            raise TemporaryDeliveryError(f"the receiver answered {status}")
        return SendResult()

    async def _post(self, target: Target, body: bytes, headers: dict[str, str]) -> int:
        """POST, following a same-origin 307/308; the final status."""
        url = target.url
        timeout = aiohttp.ClientTimeout(total=target.timeout_s)
        for _ in range(MAX_REDIRECTS + 1):
            async with self._pool().post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                await response.content.read(_READ_LIMIT)
                location = response.headers.get("Location")
                if response.status not in _KEEP_METHOD or location is None:
                    return response.status
                following = url.join(URL(location))
                if not _same_origin(url, following):
                    return response.status  # never to another host: a failure
                url = following
        return response.status
