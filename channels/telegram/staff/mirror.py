"""Clients' messages mirrored into their topics, in order for each client.

A mirror is a header (the channel, the subject, when the answer is due) and the
text, then the files (sendPhoto, sendVoice, sendVideo, sendDocument). A mirror
deferred with ``retry_after`` holds the client's later ones back until it is due;
when it goes, it takes along the client's later text mirrors waiting behind it,
as many as fit in its last message: one post instead of many from the chat's
budget. Each of those is then delivered by that post, when its turn comes.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from aiogram import Bot

from channels.telegram import render
from channels.telegram.staff.topics import Step, Topics
from hub.kernel import loggers
from hub.kernel.errors import PermanentDeliveryError, TemporaryDeliveryError
from hub.kernel.ports import StaffDesk
from hub.kernel.texts import text
from hub.kernel.types import OutboundMessage, SendResult, StoredAttachment

__all__ = ["UPLOAD_LIMIT", "Mirrors"]

log = loggers.channels

UPLOAD_LIMIT = 50 * 1024 * 1024  # what a bot may upload (sendDocument)
_LATE = 10.0  # seconds a deferred mirror is waited for past its time before the next goes
_CARRIED_FOR = 600.0  # seconds a mirror another one carried is remembered


@dataclass(slots=True)
class _Waiting:
    """A client's mirror that waits: what it shows, when it is due again, and the post
    that carried it once an earlier mirror took it along."""

    steps: list[Step] | None  # None while they are being made
    due: float
    queued: bool = False  # in line for the client now (not deferred to the dispatcher)
    carried: SendResult | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # no longer in line

    def settle(self) -> None:
        self.queued = False
        self.settled.set()


class Mirrors:
    """Posts the hub's ``mirror`` messages into clients' topics."""

    def __init__(self, desk: StaffDesk, topics: Topics, *, language: str, tz: ZoneInfo) -> None:
        self.desk = desk
        self.topics = topics
        self.pacer = topics.pacer
        self.language = language
        self.tz = tz
        self._client_locks: weakref.WeakValueDictionary[int, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._waiting: dict[int, dict[int, _Waiting]] = {}  # client: {outbox id: mirror}
        self._channels: OrderedDict[int, str | None] = OrderedDict()  # conversation: channel

    async def send(self, bot: Bot, message: OutboundMessage) -> SendResult:
        client_id = message.client_id
        if client_id is None:
            raise PermanentDeliveryError("a mirror names no client")
        mine = self._waiting.get(client_id, {}).get(message.outbox_id)
        if mine is not None and mine.carried is not None:
            self._forget(client_id, message.outbox_id)
            return mine.carried
        # In line from now on (before anything is awaited, so that a later mirror of
        # the client sees it): an earlier mirror may take it along.
        steps = mine.steps if mine is not None else None
        mine = _Waiting(steps, self.pacer.monotonic(), queued=True)
        self._waiting.setdefault(client_id, {})[message.outbox_id] = mine
        try:
            channel = await self._channel_of(message)
            if mine.steps is None:
                mine.steps = await self._steps(message, channel)
            await self._after_earlier(client_id, message.outbox_id)
            async with self._client_lock(client_id):
                if mine.carried is not None:
                    self._forget(client_id, message.outbox_id)
                    return mine.carried
                return await self._post(bot, message, mine.steps, channel)
        except TemporaryDeliveryError as exc:
            self._defer(message, mine, exc.retry_after)
            raise
        except BaseException:
            self._forget(client_id, message.outbox_id)
            raise

    async def _post(
        self, bot: Bot, message: OutboundMessage, steps: list[Step], channel: str | None
    ) -> SendResult:
        """This mirror, with the client's later text mirrors that are waiting and fit."""
        self._keep_order(message)
        along = self._along(message, steps)
        assert message.client_id is not None
        waiting = self._waiting[message.client_id]
        posted = self._with(steps, [_only(waiting[key].steps) for key in along])
        result = await self.topics.post(bot, message, posted, channel=channel, coalesce=True)
        self._delivered(message, along, result)
        return result

    async def _after_earlier(self, client_id: int, outbox_id: int) -> None:
        """Wait while an earlier mirror of the client is in line here: it may take this
        one along, and else goes first."""
        while True:
            waiting = self._waiting.get(client_id, {})
            ahead = [held for key, held in waiting.items() if key < outbox_id and held.queued]
            if not ahead:
                return
            await ahead[0].settled.wait()

    def _client_lock(self, client_id: int) -> asyncio.Lock:
        lock = self._client_locks.get(client_id)
        if lock is None:
            lock = asyncio.Lock()
            self._client_locks[client_id] = lock
        return lock

    def _keep_order(self, message: OutboundMessage) -> None:
        """A client's mirrors go out in order: while an earlier one waits, so does this
        (and the earlier one may take it along)."""
        assert message.client_id is not None
        waiting = self._waiting.get(message.client_id, {})
        now = self.pacer.monotonic()
        for outbox_id, held in list(waiting.items()):
            if held.queued:
                continue
            late = _CARRIED_FOR if held.carried is not None else _LATE
            if held.due + late < now:
                # Given up on, or sent by another instance: wait no longer for it, so
                # that nothing burns its attempts behind it.
                del waiting[outbox_id]
        earlier = [
            max(held.due, now)
            for outbox_id, held in waiting.items()
            if outbox_id < message.outbox_id and held.carried is None
        ]
        if earlier:
            raise TemporaryDeliveryError(
                "an earlier message of this client is waiting",
                retry_after=max(max(earlier) - now, 0.05),
            )

    def _along(self, message: OutboundMessage, steps: list[Step]) -> list[int]:
        """The client's later text mirrors waiting behind this one that fit, in order,
        into its last message (none when that message is not plain text)."""
        assert message.client_id is not None
        waiting = self._waiting.get(message.client_id, {})
        if not steps or any(step.file is not None for step in steps):
            return []
        along: list[int] = []
        merged = steps[-1]
        for outbox_id in sorted(key for key in waiting if key > message.outbox_id):
            later = waiting[outbox_id]
            if later.carried is not None:
                continue
            if later.steps is None or len(later.steps) != 1 or later.steps[0].file is not None:
                break  # a file, or a long text: it goes on its own, and so what follows
            merged = _appended(merged, later.steps[0])
            if render.visible_len(merged.html) > render.MESSAGE_LIMIT:
                break
            along.append(outbox_id)
        return along

    @staticmethod
    def _with(steps: list[Step], later: list[Step]) -> list[Step]:
        """``steps`` with the ``later`` texts appended to the last one."""
        last = steps[-1] if steps else None
        for step in later:
            assert last is not None
            last = _appended(last, step)
        return [*steps[:-1], last] if last is not None else steps

    def _delivered(self, message: OutboundMessage, along: list[int], result: SendResult) -> None:
        """This mirror went out, and with it the ones it took along."""
        assert message.client_id is not None
        waiting = self._waiting[message.client_id]
        for outbox_id in along:
            self.pacer.release_anywhere(outbox_id)
            waiting[outbox_id].carried = result
            waiting[outbox_id].due = self.pacer.monotonic()
            waiting[outbox_id].settle()
        if along:
            loggers.event(
                log,
                "staff.carried",
                outbox=message.outbox_id,
                client=message.client_id,
                along=",".join(map(str, along)),
            )
        self._forget(message.client_id, message.outbox_id)

    def _forget(self, client_id: int, outbox_id: int) -> None:
        waiting = self._waiting.get(client_id)
        if waiting is not None:
            held = waiting.pop(outbox_id, None)
            if held is not None:
                held.settle()
            if not waiting:
                del self._waiting[client_id]

    def _defer(self, message: OutboundMessage, mine: _Waiting, retry_after: float | None) -> None:
        """Later mirrors of the client wait for this one, when it is known when it is due
        (without ``retry_after`` the dispatcher's backoff decides, unknown here)."""
        assert message.client_id is not None
        loggers.event(
            log,
            "staff.deferred",
            outbox=message.outbox_id,
            client=message.client_id,
            retry_after="-" if retry_after is None else f"{retry_after:.2f}",
        )
        mine.settle()
        if retry_after is None:
            self._forget(message.client_id, message.outbox_id)
            return
        now = self.pacer.monotonic()
        if len(self._waiting) > 10_000:
            self._waiting = {
                client: waiting
                for client, waiting in self._waiting.items()
                if any(held.queued or held.due + _LATE >= now for held in waiting.values())
            }
        mine.due = now + retry_after
        self._waiting.setdefault(message.client_id, {})[message.outbox_id] = mine

    async def _channel_of(self, message: OutboundMessage) -> str | None:
        """The channel the mirrored message came by (stable per conversation)."""
        given = message.extras.get("channel") if message.extras else None
        if isinstance(given, str):
            return given
        key = message.conversation_id
        if key is not None and key in self._channels:
            return self._channels[key]
        assert message.client_id is not None
        card = await self.desk.card(message.client_id)
        found = (
            next(
                (c.channel for c in reversed(card.last_contacts) if c.direction == "in"),
                None,
            )
            if card is not None
            else None
        )
        if key is not None:
            self._channels[key] = found
            while len(self._channels) > 10_000:
                self._channels.popitem(last=False)
        return found

    async def _steps(self, message: OutboundMessage, channel: str | None) -> list[Step]:
        """The header and text, then the files; a single file takes the text as its
        caption when it fits there. Files too big to upload are named in the text."""
        header = render.mirror_header(channel, message.subject, await self._due(message))
        files = (
            await self.desk.attachments(message.interaction_id)
            if message.interaction_id is not None
            else []
        )
        sendable = [f for f in files if f.size <= UPLOAD_LIMIT]
        body = self._with_too_big(message.text, [f for f in files if f.size > UPLOAD_LIMIT])
        if sendable:
            caption = render.with_header(header, body, render.CAPTION_LIMIT)
            if len(caption) <= 1:
                first = Step(caption[0] if caption else "", header, sendable[0])
                return [first, *(Step("", header, f) for f in sendable[1:])]
        texts = render.with_header(header, body) or [header or "…"]
        return [
            *(Step(part, header) for part in texts),
            *(Step("", header, f) for f in sendable),
        ]

    async def _due(self, message: OutboundMessage) -> str | None:
        """When the answer is due (the SLA), in the hub's time zone."""
        if message.conversation_id is None:
            return None
        due = await self.desk.deadline(message.conversation_id)
        return due.astimezone(self.tz).strftime("%d.%m %H:%M") if due is not None else None

    def _with_too_big(self, body: str, too_big: list[StoredAttachment]) -> str:
        said = [
            text("file_too_big", self.language, name=f.filename, size=f"{f.size // 2**20} MB")
            for f in too_big
        ]
        if not said:
            return body
        return "\n".join([body, *said]) if body else "\n".join(said)


def _appended(step: Step, later: Step) -> Step:
    """A text mirror with a later one of the same client below it; the later one's
    header is left out when it says the same."""
    addition = later.html
    if later.header and later.header == step.header and addition.startswith(later.header + "\n"):
        addition = addition[len(later.header) + 1 :]
    return Step(f"{step.html}\n\n{addition}", step.header)


def _only(steps: list[Step] | None) -> Step:
    assert steps is not None and len(steps) == 1
    return steps[0]
