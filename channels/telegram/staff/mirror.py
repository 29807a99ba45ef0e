"""Clients' messages mirrored into their topics, in order for each client.

A mirror is a header (the channel, the subject, when the answer is due) and the
text, then the files (sendPhoto, sendVoice, sendVideo, sendDocument). A mirror
deferred with ``retry_after`` holds the client's later ones back until it is due.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
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
        self._deferred: dict[int, dict[int, float]] = {}  # client: {outbox id: when due}
        self._channels: OrderedDict[int, str | None] = OrderedDict()  # conversation: channel

    async def send(self, bot: Bot, message: OutboundMessage) -> SendResult:
        if message.client_id is None:
            raise PermanentDeliveryError("a mirror names no client")
        async with self._client_lock(message.client_id):
            try:
                self._keep_order(message)
                channel = await self._channel_of(message)
                steps = await self._steps(message, channel)
                result = await self.topics.post(bot, message, steps, channel=channel, coalesce=True)
            except TemporaryDeliveryError as exc:
                self._defer(message, exc.retry_after)
                raise
            self._undefer(message)
            return result

    def _client_lock(self, client_id: int) -> asyncio.Lock:
        lock = self._client_locks.get(client_id)
        if lock is None:
            lock = asyncio.Lock()
            self._client_locks[client_id] = lock
        return lock

    def _keep_order(self, message: OutboundMessage) -> None:
        """A client's mirrors go out in order: while an earlier one waits, so does this."""
        assert message.client_id is not None
        waiting = self._deferred.get(message.client_id)
        if not waiting:
            return
        now = self.pacer.monotonic()
        for outbox_id, due in list(waiting.items()):
            if due < now:
                # Late (or given up on, or sent by another instance): wait no longer
                # for it, so that nothing burns its attempts behind it.
                del waiting[outbox_id]
        earlier = [due for outbox_id, due in waiting.items() if outbox_id < message.outbox_id]
        if earlier:
            raise TemporaryDeliveryError(
                "an earlier message of this client is waiting",
                retry_after=max(max(earlier) - now, 0.0) + 0.05,
            )

    def _defer(self, message: OutboundMessage, retry_after: float | None) -> None:
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
        if retry_after is None:
            return
        now = self.pacer.monotonic()
        if len(self._deferred) > 10_000:
            self._deferred = {
                client: waiting
                for client, waiting in self._deferred.items()
                if any(due >= now for due in waiting.values())
            }
        self._deferred.setdefault(message.client_id, {})[message.outbox_id] = now + retry_after

    def _undefer(self, message: OutboundMessage) -> None:
        assert message.client_id is not None
        waiting = self._deferred.get(message.client_id)
        if waiting is not None:
            waiting.pop(message.outbox_id, None)
            if not waiting:
                del self._deferred[message.client_id]

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
