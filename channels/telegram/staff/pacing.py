"""Send budgets per chat: one message a second into any chat, about 20 a minute into a group.

Telegram lets a bot post about 20 messages a minute into a group and one a
second into any chat (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this).
A sender takes a :meth:`Pacer.turn` of a chat for the sends it is about to make;
others see the line it announced and can go elsewhere or defer.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from hub.kernel.errors import TemporaryDeliveryError

__all__ = ["Pacer", "Turn"]


@dataclass(slots=True)
class _ChatPace:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    done: deque[float] = field(default_factory=deque)  # when recent sends completed
    last: float = -math.inf
    paused_until: float = -math.inf
    queued: int = 0  # sends promised by turns waiting for or holding the lock


class Pacer:
    """Send budgets per chat: one send at a time, ``gap`` seconds apart, and into a
    group (negative chat id) at most ``group[0]`` sends in any ``group[1]`` seconds.

    Times are taken when a request completes, never before it is made: Telegram
    counts a request when it receives it, which is earlier, so a sender paced
    here never exceeds a limit there.
    """

    def __init__(
        self,
        *,
        gap: float = 1.05,
        group: tuple[int, float] | None = (20, 60.5),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gap = gap
        self.group = group
        self.monotonic = monotonic
        self._chats: dict[int, _ChatPace] = {}

    def _pace(self, chat: int) -> _ChatPace:
        pace = self._chats.get(chat)
        if pace is None:
            pace = self._chats[chat] = _ChatPace()
        return pace

    def _window_wait(self, chat: int, pace: _ChatPace, now: float, steps: int) -> float:
        if self.group is None or chat >= 0:
            return 0.0
        count, period = self.group
        while pace.done and pace.done[0] <= now - period:
            pace.done.popleft()
        over = len(pace.done) + steps - count
        if over <= 0:
            return 0.0
        if over > len(pace.done):
            return period
        return pace.done[over - 1] + period - now

    def estimate(self, chat: int, steps: int = 1) -> float:
        """Seconds before ``steps`` more sends could start, after those already in line."""
        pace, now = self._pace(chat), self.monotonic()
        start = max(0.0, max(pace.last + self.gap, pace.paused_until) - now)
        start += pace.queued * self.gap
        return max(start, self._window_wait(chat, pace, now, pace.queued + steps))

    def next_slot(self, chat: int) -> float:
        """Seconds before the next single send may start (inside a turn)."""
        pace, now = self._pace(chat), self.monotonic()
        start = max(0.0, max(pace.last + self.gap, pace.paused_until) - now)
        return max(start, self._window_wait(chat, pace, now, 1))

    def sent(self, chat: int, *, promised: bool = False) -> None:
        """A send completed now (``promised``: one a turn announced)."""
        pace, now = self._pace(chat), self.monotonic()
        pace.done.append(now)
        pace.last = now
        if promised:
            pace.queued -= 1

    def pause(self, chat: int, seconds: float) -> None:
        """Telegram said to wait (``retry_after``)."""
        pace = self._pace(chat)
        pace.paused_until = max(pace.paused_until, self.monotonic() + seconds)

    @contextlib.asynccontextmanager
    async def turn(self, chat: int, steps: int, patience: float) -> AsyncIterator[Turn]:
        """Hold the chat for ``steps`` sends (announced at once, so others see the line);
        a send that would wait longer than ``patience`` raises TemporaryDeliveryError."""
        pace = self._pace(chat)
        pace.queued += steps
        handle = Turn(self, chat, steps, patience)
        try:
            async with pace.lock:
                yield handle
        finally:
            pace.queued -= handle.left


class Turn:
    """The sends one caller makes into a chat while it holds the chat."""

    __slots__ = ("chat", "left", "pacer", "patience")

    def __init__(self, pacer: Pacer, chat: int, steps: int, patience: float) -> None:
        self.pacer = pacer
        self.chat = chat
        self.left = steps
        self.patience = patience

    async def ready(self) -> None:
        while (wait := self.pacer.next_slot(self.chat)) > 0:
            if wait > self.patience:
                raise TemporaryDeliveryError(f"chat {self.chat} is busy", retry_after=wait)
            await asyncio.sleep(wait)

    def spent(self) -> None:
        self.pacer.sent(self.chat, promised=self.left > 0)
        self.left = max(self.left - 1, 0)
