"""The console's live feed: one task per hub process polls the database's marks
(the log's newest message, the newest request, the newest change of one) and
tells every open page through server-sent events (``GET /live``).

The database drives it, not this process's own writes: the mail worker process
and other instances log too. The poller reads only while someone listens; a
stream ends after a few minutes and the page reconnects, which checks its
session again (a revoked session loses the feed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from hub.kernel import loggers
from storage import Database
from storage import console as q

if TYPE_CHECKING:
    from hub.console.app import ConsoleContext

log = loggers.console

TEXTS: dict[str, tuple[str, str]] = {}
HEARTBEAT_S = 15.0  # a comment line keeps proxies from closing an idle stream
STREAM_S = 300.0  # then the page reconnects (and its session is checked again)


@dataclass(frozen=True, slots=True)
class Change:
    """What moved since the last change told: ``seq`` counts changes in this process."""

    seq: int
    marks: q.Marks

    def event(self) -> bytes:
        """The change as a server-sent event."""
        return f"event: change\ndata: {self.data()}\n\n".encode()

    def data(self) -> str:
        m = self.marks
        return json.dumps(
            {
                "seq": self.seq,
                "interaction": m.interaction,
                "conversation": m.conversation,
                "changed_at": m.changed_at.isoformat() if m.changed_at else None,
            }
        )


class Subscription:
    """One listener's queue: only the newest change is kept (a slow page skips)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Change | None] = asyncio.Queue(maxsize=1)
        self.closed = False
        self.fresh = True  # told once after the poller's first read since it came

    def put(self, change: Change | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(change)

    async def next(self, timeout: float) -> Change | None:  # noqa: ASYNC109 (None on timeout)
        """The next change, or None after ``timeout`` seconds or once closed."""
        if self.closed:
            return None
        try:
            async with asyncio.timeout(timeout):
                change = await self._queue.get()
        except TimeoutError:
            return None
        if change is None:
            self.closed = True
        return change


class Live:
    """The process's one poller, fanning each change out to every subscriber."""

    def __init__(self, db: Database, poll_s: float = 0.5) -> None:
        self.db = db
        self.poll_s = poll_s
        self.seq = 0
        self._subscribers: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last: q.Marks | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="console-live")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for subscriber in self._subscribers:
            subscriber.put(None)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """Changes from now on, while the block runs."""
        subscription = Subscription()
        self._subscribers.add(subscription)
        self._wake.set()
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    @property
    def listeners(self) -> int:
        return len(self._subscribers)

    async def _run(self) -> None:
        while True:
            if not self._subscribers:
                self._last = None  # marks of long ago would announce a stale change
                self._wake.clear()
                await self._wake.wait()
            try:
                await self.poll()
            except Exception as exc:  # the database may be down: the next round retries
                loggers.event(log, "console.live_failed", 30, error=loggers.redact(str(exc)[:200]))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()

    async def poll(self) -> Change | None:
        """Read the marks once; tell every subscriber when they moved, and a new
        subscriber in any case (what happened before this read but after its page
        was rendered is then fetched)."""
        async with self.db.read() as conn:
            marks = await q.marks(conn)
        moved = self._last is not None and marks != self._last
        self._last = marks
        if moved:
            self.seq += 1
        change = Change(self.seq, marks)
        for subscriber in self._subscribers:
            if moved or subscriber.fresh:
                subscriber.fresh = False
                subscriber.put(change)
        return change if moved else None


def add_routes(app: web.Application, ctx: ConsoleContext) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        """``event: change`` each time the log moves; pages refresh their parts
        with ``hx-trigger="sse:change"``."""
        live = ctx.live
        if live is None:
            raise web.HTTPNotFound()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        loop = asyncio.get_running_loop()
        ends = loop.time() + STREAM_S
        async with live.subscribe() as subscription:
            while loop.time() < ends and not subscription.closed:
                change = await subscription.next(min(HEARTBEAT_S, ends - loop.time()))
                said = b": ping\n\n" if change is None else change.event()
                try:
                    await response.write(said)
                except ConnectionResetError:  # the page went away: nothing is wrong
                    break
        return response

    app.router.add_get("/live", stream)
