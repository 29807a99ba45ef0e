"""One send budget per chat that counts every post: one a second into any chat, about
20 a minute into a group, 30 a second for the bot.

Telegram lets a bot post about 20 messages a minute into a group and one a
second into any chat (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this);
its staff say that a bot's edits share that limit and that a forum topic's
creation is a message too (tdlib/td issue 2592). Telegram publishes no exact
list, so every call that posts to a chat is counted (calls.py says which).

A sender takes a :meth:`Pacer.turn` of a chat for the posts it is about to make;
others see the line it announced. Work that would wait longer is deferred and
holds its place (:meth:`Pacer.hold`): newer work is planned after it, so the
oldest goes first. A 429 pauses the whole chat (:meth:`Pacer.pause`). After a
restart the budgets start from what was posted in the last minute (:meth:`Pacer.seed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from hub.kernel.errors import TemporaryDeliveryError

__all__ = ["Pacer", "Turn"]


@dataclass(slots=True)
class _Hold:
    """Deferred work's place in a chat's line: ``steps`` posts from ``at`` on."""

    steps: int
    at: float
    until: float  # forgotten after: the work was given up, or went elsewhere


@dataclass(slots=True)
class _ChatPace:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    holder: asyncio.Task[object] | None = None  # the task holding the lock
    done: deque[float] = field(default_factory=deque)  # when recent posts completed
    last: float = -math.inf
    paused_until: float = -math.inf
    queued: int = 0  # posts promised by turns waiting for or holding the lock
    holds: dict[int, _Hold] = field(default_factory=dict)  # by work (outbox id)


class _Line:
    """Posts placed one after another in a chat's budget, from ``start`` on: each
    ``gap`` after the one before, and into a group no more than ``count`` in any
    ``period`` seconds, counting the posts already ``done``."""

    def __init__(self, pacer: Pacer, chat: int, start: float, window: deque[float]) -> None:
        self.gap = pacer.gap
        self.rate = pacer.group if chat < 0 else None
        self.times = list(window)
        self.next = start

    def place(self, ready: float, steps: int) -> tuple[float, float]:
        """The times of the first and the last of ``steps`` posts ready at ``ready``."""
        self.next = max(self.next, ready)
        first = last = self.next
        for index in range(steps):
            if self.rate is not None and len(self.times) >= self.rate[0]:
                self.next = max(self.next, self.times[-self.rate[0]] + self.rate[1])
            last = self.next
            if index == 0:
                first = last
            self.times.append(last)
            self.next = last + self.gap
        return first, last


class Pacer:
    """Send budgets per chat: one post at a time, ``gap`` seconds apart; into a group
    (negative chat id) at most ``group[0]`` posts in any ``group[1]`` seconds; over
    all chats at most ``bot[0]`` in any ``bot[1]`` seconds.

    Times are taken when a request completes, never before it is made: Telegram
    counts a request when it receives it, which is earlier, so a sender paced
    here never exceeds a limit there. Deferred work holds its place for
    ``hold_grace`` seconds past the time it was told to come back.
    """

    def __init__(
        self,
        *,
        gap: float = 1.05,
        group: tuple[int, float] | None = (20, 60.5),
        bot: tuple[int, float] | None = (30, 1.05),
        hold_grace: float = 3.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gap = gap
        self.group = group
        self.bot = bot
        self.hold_grace = hold_grace
        self.monotonic = monotonic
        self._chats: dict[int, _ChatPace] = {}
        self._all: deque[float] = deque()  # every post of the bot, for its own limit

    def _pace(self, chat: int) -> _ChatPace:
        pace = self._chats.get(chat)
        if pace is None:
            pace = self._chats[chat] = _ChatPace()
        return pace

    def _window(self, chat: int, pace: _ChatPace, now: float) -> deque[float]:
        """The chat's posts still inside its window (those older are dropped)."""
        period = self.group[1] if self.group is not None and chat < 0 else self.gap
        while pace.done and pace.done[0] <= now - period:
            pace.done.popleft()
        return pace.done

    def _line(self, chat: int, pace: _ChatPace, now: float) -> _Line:
        start = max(now, pace.last + self.gap, pace.paused_until)
        return _Line(self, chat, start, self._window(chat, pace, now))

    def estimate(self, chat: int, steps: int = 1, work: int | None = None) -> float:
        """Seconds before ``steps`` posts could start and follow one another without a
        stall, after the posts already in line: turns under way, then the deferred
        work older than ``work`` (work without an id is a person waiting: it goes
        before anything deferred)."""
        pace, now = self._pace(chat), self.monotonic()
        line = self._line(chat, pace, now)
        line.place(now, pace.queued)
        if work is not None:
            for _, hold in self._older(pace, work, now):
                line.place(hold.at, hold.steps)
        together = min(steps, self.group[0]) if self.group is not None and chat < 0 else steps
        first, last = line.place(now, max(together, 1))
        return max(0.0, max(first, last - (together - 1) * self.gap) - now)

    def _older(self, pace: _ChatPace, work: int, now: float) -> list[tuple[int, _Hold]]:
        for key in [key for key, hold in pace.holds.items() if hold.until < now]:
            del pace.holds[key]
        return sorted((k, h) for k, h in pace.holds.items() if k < work)

    def next_slot(self, chat: int) -> float:
        """Seconds before the next single post may start (inside a turn)."""
        pace, now = self._pace(chat), self.monotonic()
        first, _ = self._line(chat, pace, now).place(now, 1)
        return max(first - now, self._bot_wait(now))

    def bot_wait(self) -> float:
        """Seconds before the bot may make one more post anywhere (the clients' side
        asks too: the 30 a second are the bot's, staff and clients together)."""
        return self._bot_wait(self.monotonic())

    def bot_posted(self, posts: int = 1) -> None:
        """``posts`` made outside the staff chats (to clients) spend the bot's budget."""
        self._all.extend([self.monotonic()] * posts)

    def _bot_wait(self, now: float) -> float:
        if self.bot is None:
            return 0.0
        count, period = self.bot
        while self._all and self._all[0] <= now - period:
            self._all.popleft()
        if len(self._all) < count:
            return 0.0
        return self._all[-count] + period - now

    def sent(self, chat: int, *, promised: bool = False, posts: int = 1) -> None:
        """``posts`` completed now (``promised``: ones a turn announced)."""
        pace, now = self._pace(chat), self.monotonic()
        pace.done.extend([now] * posts)
        self._all.extend([now] * posts)
        pace.last = now
        if promised:
            pace.queued -= posts

    def pause(self, chat: int, seconds: float) -> None:
        """Telegram said to wait (``retry_after``): nothing goes into the chat till then."""
        pace = self._pace(chat)
        pace.paused_until = max(pace.paused_until, self.monotonic() + seconds)

    def hold(self, chat: int, work: int, steps: int, after: float) -> None:
        """``work`` was deferred for ``after`` seconds: it keeps its place in the chat's
        line, so that newer work is planned after its ``steps`` posts."""
        at = self.monotonic() + after
        self._pace(chat).holds[work] = _Hold(steps, at, at + self.hold_grace)

    def release_anywhere(self, work: int) -> None:
        """``work`` was done by other work (a later mirror carried by an earlier one):
        its place in any chat's line is free."""
        for pace in self._chats.values():
            pace.holds.pop(work, None)

    def release(self, chat: int, work: int) -> None:
        """``work`` is done with the chat (posted, or gone elsewhere)."""
        self._pace(chat).holds.pop(work, None)

    def seed(self, chat: int, ages: Iterable[float]) -> None:
        """Posts made ``ages`` seconds ago (by an earlier run, or another instance)."""
        pace, now = self._pace(chat), self.monotonic()
        times = sorted([*pace.done, *(now - max(age, 0.0) for age in ages)])
        pace.done = deque(times)
        if times:
            pace.last = max(pace.last, times[-1])

    @contextlib.asynccontextmanager
    async def turn(
        self, chat: int, steps: int, patience: float, work: int | None = None
    ) -> AsyncIterator[Turn]:
        """Hold the chat for ``steps`` posts (announced at once, so others see the line);
        a post that would wait longer than ``patience`` raises TemporaryDeliveryError.
        A task already holding the chat goes on in its own turn. ``work``'s hold, if
        any, ends with the turn."""
        pace = self._pace(chat)
        task = asyncio.current_task()
        if pace.holder is not None and pace.holder is task:
            nested = Turn(self, chat, 0, patience)
            yield nested
            return
        pace.queued += steps
        handle = Turn(self, chat, steps, patience)
        try:
            async with pace.lock:
                pace.holder = task
                try:
                    yield handle
                finally:
                    pace.holder = None
        finally:
            pace.queued -= handle.left
            if work is not None:
                self.release(chat, work)


class Turn:
    """The posts one caller makes into a chat while it holds the chat."""

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

    def spent(self, posts: int = 1) -> None:
        promised = min(posts, self.left)
        if promised:
            self.pacer.sent(self.chat, promised=True, posts=promised)
        if posts > promised:
            self.pacer.sent(self.chat, posts=posts - promised)
        self.left -= promised
