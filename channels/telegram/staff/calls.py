"""The staff side's Bot API calls: every post paced in its chat's budget, failures as
the hub's delivery errors."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiogram import Bot
from aiogram import methods as m
from aiogram.exceptions import TelegramAPIError, TelegramRetryAfter
from aiogram.methods.base import TelegramMethod
from aiogram.types import InlineKeyboardMarkup, LinkPreviewOptions

from channels.telegram.errors import delivery_error
from channels.telegram.staff.pacing import Pacer, Turn
from hub.kernel import loggers
from hub.kernel.errors import DeliveryError, TemporaryDeliveryError
from hub.kernel.types import SendResult, Topic

__all__ = ["HTML", "NO_PREVIEW", "POSTS", "Calls", "LastPosts", "Posted", "posts"]

log = loggers.channels
T = TypeVar("T")

HTML = "HTML"
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)

# The calls that post to a chat, and so spend its budget. Telegram publishes no
# exact list (its staff count edits and a topic's creation as messages), so every
# call that changes what a chat shows is counted.
POSTS: frozenset[type[TelegramMethod[Any]]] = frozenset(
    {
        m.SendMessage,
        m.SendPhoto,
        m.SendDocument,
        m.SendVoice,
        m.SendVideo,
        m.SendVideoNote,
        m.SendAudio,
        m.SendAnimation,
        m.SendSticker,
        m.SendContact,
        m.SendLocation,
        m.SendVenue,
        m.SendPoll,
        m.SendDice,
        m.SendMediaGroup,
        m.CopyMessage,
        m.CopyMessages,
        m.ForwardMessage,
        m.ForwardMessages,
        m.EditMessageText,
        m.EditMessageCaption,
        m.EditMessageMedia,
        m.EditMessageReplyMarkup,
        m.EditMessageLiveLocation,
        m.StopMessageLiveLocation,
        m.StopPoll,
        m.DeleteMessage,
        m.DeleteMessages,
        m.PinChatMessage,
        m.UnpinChatMessage,
        m.UnpinAllChatMessages,
        m.UnpinAllForumTopicMessages,
        m.CreateForumTopic,
        m.EditForumTopic,
        m.CloseForumTopic,
        m.ReopenForumTopic,
        m.DeleteForumTopic,
        m.EditGeneralForumTopic,
        m.CloseGeneralForumTopic,
        m.ReopenGeneralForumTopic,
    }
)


def posts(method: TelegramMethod[T]) -> tuple[int, int] | None:
    """(chat, posts) when ``method`` posts to a chat: one, or an album's items, or the
    messages copied or forwarded at once; None for any other call (and for an inline
    message, which belongs to no chat)."""
    if type(method) not in POSTS:
        return None
    chat = getattr(method, "chat_id", None)
    if not isinstance(chat, int):
        return None
    if isinstance(method, m.SendMediaGroup):
        return chat, len(method.media)
    if isinstance(method, m.CopyMessages | m.ForwardMessages):
        return chat, len(method.message_ids)
    return chat, 1


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
    """Bot API calls into staff chats. Each post waits in line for its chat (in the
    caller's turn, else in a turn of its own) at most ``max_wait`` seconds; a longer
    wait is deferred to the dispatcher with ``retry_after``. A 429 pauses the chat."""

    def __init__(self, pacer: Pacer, last: LastPosts, *, max_wait: float) -> None:
        self.pacer = pacer
        self.last = last
        self.max_wait = max_wait

    async def request(self, bot: Bot, method: TelegramMethod[T], *, turn: Turn | None = None) -> T:
        """One Bot API call; a post waits for its slot in ``turn`` (or a turn of its own)
        and spends it, whatever the answer."""
        target = posts(method)
        if target is None:
            return await self._call(bot, method, None, 0)
        chat, count = target
        if turn is not None:
            return await self._call(bot, method, turn, count)
        async with self.pacer.turn(chat, count, self.max_wait + self.pacer.gap) as own:
            return await self._call(bot, method, own, count)

    async def _call(self, bot: Bot, method: TelegramMethod[T], turn: Turn | None, count: int) -> T:
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
                turn.spent(count)

    async def say(
        self,
        bot: Bot,
        chat: int,
        thread: int | None,
        parts: Sequence[str],
        *,
        keyboard: InlineKeyboardMarkup | None = None,
        strict: bool,
        work: int | None = None,
    ) -> SendResult:
        """Post HTML messages in a chat (a topic when ``thread``), the keyboard under the
        last. ``strict``: raise the delivery error (the dispatcher retries); else log it
        and carry on. ``work`` (an outbox id) waits behind older deferred work; without
        it a person is waiting, and it goes first."""
        if not parts:
            return SendResult(None)
        try:
            first = await self._post_all(bot, chat, thread, parts, keyboard, work)
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
        work: int | None,
    ) -> int:
        """The parts in one turn of the chat; the first one's message id."""
        estimate = self.pacer.estimate(chat, len(parts), work)
        if estimate > self.max_wait:
            if work is not None:
                self.pacer.hold(chat, work, len(parts), estimate)
            raise TemporaryDeliveryError(f"chat {chat} is busy", retry_after=estimate)
        patience = self.max_wait + self.pacer.gap
        async with self.pacer.turn(chat, len(parts), patience, work) as turn:
            return await self.post_in_turn(bot, turn, thread, parts, keyboard)

    async def post_in_turn(
        self,
        bot: Bot,
        turn: Turn,
        thread: int | None,
        parts: Sequence[str],
        keyboard: InlineKeyboardMarkup | None,
    ) -> int:
        """HTML messages into the turn's chat (a topic when ``thread``), the keyboard
        under the last; the first one's message id."""
        first: int | None = None
        chat = turn.chat
        for index, part in enumerate(parts):
            sent = await self.request(
                bot,
                m.SendMessage(
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
                self.last.put(Topic(chat, thread), Posted(sent.message_id, "", "", mirror=False))
        assert first is not None
        return first
