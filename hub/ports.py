"""The one narrow contract a channel implements, and what the hub hands it.

A channel translates between the outside world and the hub's types: it calls
the ``sink`` with each :class:`InboundMessage` and acknowledges upstream only
after the sink returned (the message is committed), and delivers
:class:`OutboundMessage` s the dispatcher gives to ``send``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from hub.types import InboundMessage, IngestResult, OutboundMessage, SendResult

InboundSink = Callable[[InboundMessage], Awaitable[IngestResult]]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``per_second`` sends per key, in bursts of up to ``burst``."""

    per_second: float
    burst: int = 1


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """Send limits of a channel: over the whole account, and per recipient."""

    overall: RateLimit | None = None
    per_recipient: RateLimit | None = None


class ChannelPort(Protocol):
    """``start(sink)``, ``stop()``, ``send(outbound)``; ``name`` as in the outbox."""

    name: str
    limits: ChannelLimits

    async def start(self, sink: InboundSink) -> None:
        """Begin receiving; return once listening (health turns ok after every start)."""

    async def stop(self) -> None:
        """Stop receiving; in-flight messages finish or are left for redelivery."""

    async def send(self, message: OutboundMessage) -> SendResult:
        """Deliver, or raise TemporaryDeliveryError / PermanentDeliveryError."""
