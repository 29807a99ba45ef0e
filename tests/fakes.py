"""Fakes that record, for tests of the core without real channels."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hub.kernel.errors import DeliveryError
from hub.kernel.ports import ChannelLimits, InboundSink
from hub.kernel.types import OutboundMessage, SendResult


class RecordingChannel:
    """A channel that records every send; ``fail`` decides a send's fate."""

    def __init__(self, name: str = "telegram", limits: ChannelLimits | None = None) -> None:
        self.name = name
        self.limits = limits or ChannelLimits()
        self.sent: list[OutboundMessage] = []
        self.attempts: list[OutboundMessage] = []
        self.fail: Callable[[OutboundMessage], DeliveryError | None] = lambda m: None
        self.sink: InboundSink | None = None
        self.changed = asyncio.Condition()

    async def start(self, sink: InboundSink) -> None:
        self.sink = sink

    async def stop(self) -> None:
        self.sink = None

    async def send(self, message: OutboundMessage) -> SendResult:
        self.attempts.append(message)
        error = self.fail(message)
        async with self.changed:
            if error is None:
                self.sent.append(message)
            self.changed.notify_all()
        if error is not None:
            raise error
        return SendResult(external_id=f"ext-{message.outbox_id}")

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async def waiter() -> None:
            async with self.changed:
                await self.changed.wait_for(predicate)

        await asyncio.wait_for(waiter(), timeout)
