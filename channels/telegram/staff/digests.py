"""Clients' messages for a manager whose private chat is over its budget, gathered
into one digest with numbered entries.

A private chat takes about one post a second. A notice about a client's message
(``notify``, ``assigned``, ``offer``) that cannot go at once (the chat's next
slot is more than ``QUICK`` seconds away, or another notice is about to go) is
deferred with ``retry_after`` and waits here, holding no sender: whichever notice
for the chat goes next takes along every notice waiting at the moment it is
posted, oldest first, as one message: entry N is
answered by ``/r N text`` (or by replying ``/r N text`` to the digest), and its
button makes the client the manager's current one. Each notice so carried is
delivered by that post when its own turn comes. The confirmations of a busy
manager's answers ("✓ Sent to …") wait the same way (:meth:`Digests.confirm`):
the next post into the chat carries them below it, or, when none comes, one post
of their own when the chat is free. What was carried is remembered in
this process only: another instance, or a restart, sends it again (at least once).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiogram import Bot
from aiogram.types import InlineKeyboardMarkup

from channels.telegram import render
from channels.telegram.staff.answering import message_id
from channels.telegram.staff.calls import Calls
from hub.kernel import loggers
from hub.kernel.errors import TemporaryDeliveryError
from hub.kernel.ports import StaffDesk
from hub.kernel.texts import text
from hub.kernel.types import OutboundMessage, SendResult

__all__ = ["Digests", "Entry", "Sent"]

log = loggers.channels

MAX_ENTRIES = 20  # one button each, and still a message a person reads
QUICK = 0.3  # seconds a notice may wait for the chat's slot; longer, it is deferred
ENTRY_TEXT = 400  # characters of a client's words an entry shows
_LATE = 10.0  # seconds a deferred notice is waited for past its time, then forgotten
_CARRIED_FOR = 600.0  # seconds a notice another one carried is remembered
_CONFIRM_AFTER = 2.0  # seconds confirmations wait for a notice to carry them


@dataclass(frozen=True, slots=True)
class Entry:
    """A notice about a client's message: on its own (``parts``, ``keyboard``), and as
    a digest's entry (``headline``, ``body``, the client's ``name`` for its button)."""

    client_id: int
    conversation_id: int | None
    parts: list[str]
    keyboard: InlineKeyboardMarkup | None
    headline: str
    body: str
    name: str


@dataclass(frozen=True, slots=True)
class Sent:
    """How a notice went: on its own (a reply to it answers its client), or in a digest."""

    result: SendResult
    alone: bool


@dataclass(slots=True)
class _Waiting:
    entry: Entry | None  # None while it is being made
    due: float
    queued: bool = False  # trying to go now (not deferred to the dispatcher)
    carried: SendResult | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    def settle(self) -> None:
        self.queued = False
        self.settled.set()


class Digests:
    """Posts notices about clients' messages into managers' private chats."""

    def __init__(self, desk: StaffDesk, calls: Calls) -> None:
        self.desk = desk
        self.calls = calls
        self.pacer = calls.pacer
        self._waiting: dict[int, dict[int, _Waiting]] = {}  # chat: {outbox id: notice}
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        self._confirmations: dict[int, list[str]] = {}  # chat: HTML lines
        self._flushing: dict[int, asyncio.Task[None]] = {}

    def busy(self, chat: int) -> bool:
        """Whether a post into the chat would wait (another is about to go, or the
        chat's next slot is more than ``QUICK`` seconds away)."""
        return self._lock(chat).locked() or self.pacer.estimate(chat) > QUICK

    def confirm(self, bot: Bot, chat: int, html: str) -> None:
        """A confirmation for a busy chat: below the next post into it, else on its own
        once the chat is free."""
        self._confirmations.setdefault(chat, []).append(html)
        if chat not in self._flushing:
            self._flushing[chat] = asyncio.create_task(
                self._flush(bot, chat), name=f"confirm-{chat}"
            )

    async def _flush(self, bot: Bot, chat: int) -> None:
        try:
            while self._confirmations.get(chat):
                # The chat's own schedule, not synchronization: a notice may carry them.
                await asyncio.sleep(self.pacer.estimate(chat) + _CONFIRM_AFTER)
                if not self._confirmations.get(chat) or self.busy(chat):
                    continue
                async with self._lock(chat):
                    lines = self._confirmations.pop(chat, [])
                    if lines:
                        await self.calls.say(bot, chat, None, ["\n".join(lines)], strict=False)
        finally:
            self._flushing.pop(chat, None)

    async def close(self) -> None:
        """Cancel the confirmations still waiting for a free moment in their chat (the
        hub stops: a confirmation is a courtesy, the answers themselves went)."""
        waiting = list(self._flushing.values())
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        self._flushing.clear()  # a task cancelled before it began never ran its finally
        self._confirmations.clear()

    def _footer(self, chat: int, html: str) -> str:
        """``html`` with the chat's waiting confirmations below it, as many as fit."""
        lines = self._confirmations.get(chat, [])
        taken = 0
        for line in lines:
            longer = f"{html}\n{line}"
            if render.visible_len(longer) > render.MESSAGE_LIMIT:
                break
            html, taken = longer, taken + 1
        del lines[:taken]
        return html

    async def send(
        self,
        bot: Bot,
        chat: int,
        message: OutboundMessage,
        make: Callable[[], Awaitable[Entry]],
        language: str,
    ) -> Sent:
        """The notice into the manager's chat, with the ones waiting for it; or the post
        an earlier notice carried it in."""
        waiting = self._waiting.setdefault(chat, {})
        mine = waiting.get(message.outbox_id)
        if mine is not None and mine.carried is not None:
            self._forget(chat, message.outbox_id)
            return Sent(mine.carried, alone=False)
        mine = _Waiting(mine.entry if mine is not None else None, self.pacer.monotonic(), True)
        waiting[message.outbox_id] = mine
        try:
            if mine.entry is None:
                mine.entry = await make()
            lock = self._lock(chat)
            wait = self.pacer.estimate(chat)
            if lock.locked() or wait > QUICK:
                # Waiting would hold one of the dispatcher's senders: the next post
                # into the chat takes this one along instead.
                raise TemporaryDeliveryError(
                    f"chat {chat} is busy", retry_after=max(wait, self.pacer.gap)
                )
            async with lock:
                if mine.carried is not None:
                    self._forget(chat, message.outbox_id)
                    return Sent(mine.carried, alone=False)
                return await self._post(bot, chat, message.outbox_id, language)
        except TemporaryDeliveryError as exc:
            self._defer(chat, message.outbox_id, mine, exc.retry_after)
            raise
        except BaseException:
            self._forget(chat, message.outbox_id)
            raise

    async def _post(self, bot: Bot, chat: int, outbox_id: int, language: str) -> Sent:
        """This notice, and those waiting at the moment its slot comes."""
        waiting = self._waiting[chat]
        patience = self.calls.max_wait + self.pacer.gap
        async with self.pacer.turn(chat, 1, patience) as turn:
            await turn.ready()
            keys = self._along(chat, outbox_id)
            entries = [_ready(waiting[key]) for key in keys]
            if len(entries) == 1:
                only = entries[0]
                parts = [*only.parts[:-1], self._footer(chat, only.parts[-1])]
                first = await self.calls.post_in_turn(bot, turn, None, parts, only.keyboard)
                self._forget(chat, outbox_id)
                return Sent(SendResult(f"{chat}:{first}"), alone=True)
            html = self._footer(chat, digest_html(entries, language))
            keyboard = render.digest_keyboard([(e.client_id, e.name) for e in entries])
            first = await self.calls.post_in_turn(bot, turn, None, [html], keyboard)
        result = SendResult(f"{chat}:{first}")
        await self._remember(chat, result, entries)
        for key in keys:
            if key != outbox_id:
                waiting[key].carried = result
                waiting[key].due = self.pacer.monotonic()
                waiting[key].settle()
        loggers.event(log, "staff.digest", chat=chat, entries=len(entries))
        self._forget(chat, outbox_id)
        return Sent(result, alone=False)

    def _along(self, chat: int, outbox_id: int) -> list[int]:
        """This notice and, oldest first, those waiting for the chat that fit with it."""
        waiting = self._waiting[chat]
        now = self.pacer.monotonic()
        for key, held in list(waiting.items()):
            late = _CARRIED_FOR if held.carried is not None else _LATE
            if not held.queued and held.due + late < now:
                del waiting[key]  # given up on, or sent by another instance
        others = sorted(
            key
            for key, held in waiting.items()
            if key != outbox_id and held.entry is not None and held.carried is None
        )
        chosen = [outbox_id]
        size = render.visible_len(_ready(waiting[outbox_id]).headline) + 200
        for key in others:
            entry = _ready(waiting[key])
            size += render.visible_len(entry.headline) + min(len(entry.body), ENTRY_TEXT) + 80
            if len(chosen) >= MAX_ENTRIES or size > render.MESSAGE_LIMIT - 600:
                break
            chosen.append(key)
        return sorted(chosen)

    async def _remember(self, chat: int, result: SendResult, entries: list[Entry]) -> None:
        """Which client each entry is about (``/r N``). The digest was sent: a failure here
        is logged, not retried (that would send it again)."""
        posted = message_id(result)
        if posted is None:
            return
        try:
            await self.desk.remember_entries(
                chat, posted, [(e.client_id, e.conversation_id) for e in entries]
            )
        except Exception as exc:  # the database's own errors: the desk does not wrap them
            loggers.event(log, "staff.digest_unmapped", chat=chat, error=repr(exc)[:200])

    def _lock(self, chat: int) -> asyncio.Lock:
        lock = self._locks.get(chat)
        if lock is None:
            lock = self._locks[chat] = asyncio.Lock()
        return lock

    def _defer(self, chat: int, outbox_id: int, mine: _Waiting, after: float | None) -> None:
        """The notice waits for its time, or for a later notice to take it along."""
        mine.settle()
        if after is None:
            self._forget(chat, outbox_id)
            return
        mine.due = self.pacer.monotonic() + after
        self._waiting.setdefault(chat, {})[outbox_id] = mine

    def _forget(self, chat: int, outbox_id: int) -> None:
        waiting = self._waiting.get(chat)
        if waiting is None:
            return
        held = waiting.pop(outbox_id, None)
        if held is not None:
            held.settle()
        if not waiting:
            del self._waiting[chat]


def _ready(held: _Waiting) -> Entry:
    assert held.entry is not None
    return held.entry


def digest_html(entries: list[Entry], language: str) -> str:
    """The digest: a headline, then each entry numbered, then how to answer one."""
    lines = [f"<b>{render.escape(text('digest_title', language, count=len(entries)))}</b>"]
    for number, entry in enumerate(entries, 1):
        head = render.escape(render.clip(f"{number}. {entry.headline}", 300))
        body = render.escape(render.clip(entry.body, ENTRY_TEXT))
        lines.append(f"\n<b>{head}</b>\n{body}" if body else f"\n<b>{head}</b>")
    lines.append(f"\n<i>{render.escape(text('digest_hint', language))}</i>")
    return "\n".join(lines)
