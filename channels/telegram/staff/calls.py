"""The staff side's Bot API calls: paced per chat, failures as the hub's delivery errors."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramRetryAfter
from aiogram.methods import SendMessage
from aiogram.methods.base import TelegramMethod
from aiogram.types import InlineKeyboardMarkup, LinkPreviewOptions

from channels.telegram.errors import delivery_error
from channels.telegram.staff.pacing import Pacer, Turn
from hub.kernel import loggers
from hub.kernel.errors import DeliveryError, TemporaryDeliveryError
from hub.kernel.types import SendResult, Topic

__all__ = ["HTML", "NO_PREVIEW", "Calls", "LastPosts", "Posted"]

log = loggers.channels
T = TypeVar("T")

HTML = "HTML"
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


@dataclass(slots=True)
class Posted:
    """The bot's latest message in a topic; a recent text mirror can take more text."""

    message_id: int
    html: str
    header: str
    mirror: bool
    at: float = 0.0  # monotonic time it was posted


class LastPosts:
    """The bot's latest message in each topic, for the ``size`` topics posted in last."""

    def __init__(self, size: int = 5_000) -> None:
        self.size = size
        self._posts: OrderedDict[Topic, Posted] = OrderedDict()

    def get(self, topic: Topic) -> Posted | None:
        return self._posts.get(topic)

    def put(self, topic: Topic, posted: Posted) -> None:
        self._posts[topic] = posted
        self._posts.move_to_end(topic)
        while len(self._posts) > self.size:
            self._posts.popitem(last=False)

    def drop(self, topic: Topic) -> None:
        """Someone else spoke (or the topic is gone): nothing is to be appended above."""
        self._posts.pop(topic, None)


class Calls:
    """Bot API calls into staff chats. A send waits in line for its chat at most
    ``max_wait`` seconds; a longer wait is deferred to the dispatcher with ``retry_after``."""

    def __init__(self, pacer: Pacer, last: LastPosts, *, max_wait: float) -> None:
        self.pacer = pacer
        self.last = last
        self.max_wait = max_wait

    async def request(self, bot: Bot, method: TelegramMethod[T], *, turn: Turn | None = None) -> T:
        """One Bot API call; inside a turn it waits for its slot and spends it."""
        if turn is not None:
            await turn.ready()
        try:
            return await bot(method)
        except TelegramAPIError as exc:
            error = delivery_error(exc)
            if isinstance(exc, TelegramRetryAfter) and turn is not None:
                self.pacer.pause(turn.chat, float(exc.retry_after))
            raise error from exc
        finally:
            if turn is not None:
                turn.spent()

    async def say(
        self,
        bot: Bot,
        chat: int,
        thread: int | None,
        parts: Sequence[str],
        *,
        keyboard: InlineKeyboardMarkup | None = None,
        strict: bool,
    ) -> SendResult:
        """Post HTML messages in a chat (a topic when ``thread``), the keyboard under the
        last. ``strict``: raise the delivery error (the dispatcher retries); else log it
        and carry on."""
        if not parts:
            return SendResult(None)
        try:
            first = await self._post_all(bot, chat, thread, parts, keyboard)
        except DeliveryError as exc:
            if strict:
                raise
            loggers.event(
                log,
                "staff.reply_dropped",
                logging.WARNING,
                chat=chat,
                thread=thread,
                error=exc.reason,
            )
            return SendResult(None)
        return SendResult(f"{chat}:{first}")

    async def _post_all(
        self,
        bot: Bot,
        chat: int,
        thread: int | None,
        parts: Sequence[str],
        keyboard: InlineKeyboardMarkup | None,
    ) -> int:
        """The parts in one turn of the chat; the first one's message id."""
        estimate = self.pacer.estimate(chat, len(parts))
        if estimate > self.max_wait:
            raise TemporaryDeliveryError(f"chat {chat} is busy", retry_after=estimate)
        first: int | None = None
        async with self.pacer.turn(chat, len(parts), self.max_wait + self.pacer.gap) as turn:
            for index, part in enumerate(parts):
                sent = await self.request(
                    bot,
                    SendMessage(
                        chat_id=chat,
                        message_thread_id=thread,
                        text=part,
                        parse_mode=HTML,
                        reply_markup=keyboard if index == len(parts) - 1 else None,
                        link_preview_options=NO_PREVIEW,
                    ),
                    turn=turn,
                )
                first = first or sent.message_id
                if thread is not None:
                    self.last.put(
                        Topic(chat, thread), Posted(sent.message_id, "", "", mirror=False)
                    )
        assert first is not None
        return first
