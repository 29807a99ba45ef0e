"""Sending the hub's messages to clients over the Bot API's ``sendMessage``
(https://core.telegram.org/bots/api#sendmessage); what fails is told as the hub's
delivery errors (errors.py).

A client's message is its text, HTML-escaped and sent with ``parse_mode=HTML``,
split into parts of at most 4096 UTF-16 code units (Telegram's limit, counted
after the markup is parsed) on paragraph, line or word boundaries; then the
files logged with the interaction (a manager's photo or document), each by
``sendPhoto``, ``sendVoice`` or ``sendDocument``.

Each part is a post of its own in Telegram's limits: the dispatcher spaces the
messages (one a second per chat, 30 a second for the bot), and the sender keeps
the same pace between the parts of one message, and from one message's last
part to the next message's first.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from aiogram import Bot
from aiogram.enums import ParseMode
from aiogram.methods import SendDocument, SendPhoto, SendVideo, SendVoice, TelegramMethod
from aiogram.types import BufferedInputFile, Message
from aiogram.utils.text_decorations import html_decoration

from channels.telegram.errors import delivery_error
from channels.telegram.inbound import message_id
from channels.telegram.ratings import keyboard
from channels.telegram.text import fit, utf16_len
from hub.kernel import loggers
from hub.kernel.errors import PermanentDeliveryError, TemporaryDeliveryError
from hub.kernel.ports import AttachmentSource, RateLimit
from hub.kernel.ratelimit import RateLimiter
from hub.kernel.types import FILE_KINDS, OutboundMessage, SendResult, StoredAttachment

log = loggers.channels

MAX_TEXT = 4096  # UTF-16 code units per message
GAP = 1.05  # seconds from one post into a chat to the next (Telegram: about one a second)
PER_BOT = RateLimit(30, burst=1)  # posts a second over all chats
_SEPARATORS = ("\n\n", "\n", " ")


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """``text`` in parts of at most ``limit`` UTF-16 code units, cut at the last
    paragraph break, else line break, else space of each part (else mid-word);
    blank parts are dropped (Telegram refuses an empty message)."""
    parts: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        head = rest[: fit(rest, limit)]
        for separator in _SEPARATORS:
            cut = head.rfind(separator)
            if cut > 0:
                parts.append(rest[:cut])
                rest = rest[cut + len(separator) :]
                break
        else:
            parts.append(head)
            rest = rest[len(head) :]
    parts.append(rest)
    return [part for part in parts if part.strip()]


PHOTO_LIMIT = 10 * 1024 * 1024  # larger images go as documents
_MEDIA_OF = {
    "image/jpeg": "photo",
    "image/png": "photo",
    "image/webp": "photo",
    "audio/ogg": "voice",
    "audio/opus": "voice",
    "video/mp4": "video",
}
# How each kind of file is sent: the Bot API method and its file field.
MEDIA_METHODS: dict[str, tuple[type[TelegramMethod[Message]], str]] = {
    "photo": (SendPhoto, "photo"),
    "voice": (SendVoice, "voice"),
    "video": (SendVideo, "video"),
    "document": (SendDocument, "document"),
}


def media_kind(content_type: str, size: int) -> str:
    """``photo``, ``voice``, ``video`` or ``document``: how Telegram shows a file."""
    kind = _MEDIA_OF.get(content_type.split(";")[0].strip().lower(), "document")
    return "document" if kind == "photo" and size > PHOTO_LIMIT else kind


class BotBudget(Protocol):
    """The bot's own limit (about 30 posts a second), shared with the staff side."""

    def bot_wait(self) -> float: ...

    def bot_posted(self, posts: int = 1) -> None: ...


class ClientSender:
    """Sends text messages to clients' private chats with one bot. ``budget``: the
    bot's 30 a second, shared with the staff side (else this sender's own).

    When a long message fails after some of its parts went out, the parts sent
    are remembered (by idempotency key, in this process) and the retry sends
    only the rest.
    """

    def __init__(
        self,
        bot: Bot,
        *,
        files: AttachmentSource | None = None,
        remember: int = 1000,
        monotonic: Callable[[], float] = time.monotonic,
        budget: BotBudget | None = None,
    ) -> None:
        self.bot = bot
        self.budget = budget
        self.files = files
        self._remember = remember
        self._progress: OrderedDict[str, int] = OrderedDict()
        self._monotonic = monotonic
        self._posted: OrderedDict[int, float] = OrderedDict()  # chat: its last post ended
        self._per_bot = RateLimiter(PER_BOT, monotonic)

    async def send(self, message: OutboundMessage) -> SendResult:
        try:
            chat_id = int(message.recipient)
        except ValueError:
            raise PermanentDeliveryError(f"not a Telegram user id: {message.recipient!r}") from None
        attached: list[StoredAttachment] = []
        if (
            self.files is not None
            and message.interaction_id is not None
            and message.kind in FILE_KINDS
        ):
            attached = await self.files.attachments(message.interaction_id)
        steps: list[str | StoredAttachment] = [*split_text(message.text), *attached]
        if not steps:
            raise PermanentDeliveryError("nothing to send: the message has no text")
        parts = steps
        key = message.idempotency_key
        done = self._progress.pop(key, 0)
        last: int | None = None
        rating = message.extras.get("rating")  # the buttons of a rating's ask, at its end
        markup = keyboard(rating) if isinstance(rating, int) and not attached else None
        for index in range(done, len(parts)):
            await self._turn(chat_id)
            try:
                step = parts[index]
                if isinstance(step, str):
                    sent = await self.bot.send_message(
                        chat_id,
                        html_decoration.quote(step),
                        parse_mode=ParseMode.HTML,
                        reply_markup=markup if index == len(parts) - 1 else None,
                    )
                else:
                    sent = await self._send_file(chat_id, step)
            except Exception as exc:
                error = delivery_error(exc)
                if index > 0 and isinstance(error, TemporaryDeliveryError):
                    self._keep(key, index)
                loggers.event(
                    log,
                    "telegram.send_failed",
                    30,
                    outbox=message.outbox_id,
                    chat=chat_id,
                    part=f"{index + 1}/{len(parts)}",
                    error=error.reason,
                )
                raise error from None
            finally:
                self._posted[chat_id] = self._monotonic()
            last = sent.message_id
        assert last is not None
        return SendResult(external_id=message_id(self.bot.id, chat_id, last))

    async def _turn(self, chat_id: int) -> None:
        """Wait until the chat and the bot can take one more post, and take it."""
        while True:
            since = self._monotonic() - self._posted.get(chat_id, -math.inf)
            bot = self.budget.bot_wait() if self.budget else self._per_bot.delay("bot")
            wait = max(GAP - since, bot)
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        if self.budget is not None:
            self.budget.bot_posted()
        else:
            self._per_bot.take("bot")
        self._posted.pop(chat_id, None)  # the oldest chats are forgotten first
        self._posted[chat_id] = self._monotonic()
        while len(self._posted) > self._remember:
            self._posted.popitem(last=False)

    async def _send_file(self, chat_id: int, attachment: StoredAttachment) -> Message:
        assert self.files is not None
        data = await self.files.attachment_bytes(attachment.sha256)
        upload = BufferedInputFile(data, filename=attachment.filename)
        method, field = MEDIA_METHODS[media_kind(attachment.content_type, attachment.size)]
        return await self.bot(method(chat_id=chat_id, **{field: upload}))

    def _keep(self, key: str, parts_sent: int) -> None:
        self._progress[key] = parts_sent
        while len(self._progress) > self._remember:
            self._progress.popitem(last=False)
