"""A manager's answer to a client, wherever it is written: the topic or the private chat.

The message's file is fetched (getFile) and the answer, or the note, handed to
the desk, which checks the manager's rights and queues it over the client's
channel. What went wrong is returned as the text to show the manager.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InlineKeyboardMarkup, Message

from channels.telegram import inbound, render
from channels.telegram.staff.calls import Calls
from hub.kernel.errors import HubError, StorageUnavailable
from hub.kernel.ports import StaffDesk
from hub.kernel.texts import text
from hub.kernel.types import Attachment, ManagerRef, SendResult

__all__ = ["Answer", "give", "message_id", "plain", "say_about", "says_something"]


@dataclass(frozen=True, slots=True)
class Answer:
    """A manager's message that answers (or notes on) a client. ``mirror``: written
    outside the client's topic, so the desk copies it there."""

    bot: Bot
    message: Message
    client_id: int
    manager: ManagerRef
    body: str
    note: bool
    mirror: bool

    @property
    def key(self) -> str:
        """The idempotency key of the answer (Telegram redelivers updates)."""
        return f"tg:{self.message.chat.id}:{self.message.message_id}"


async def give(desk: StaffDesk, answer: Answer, language: str) -> str | None:
    """Hand the answer to the desk; None when it is queued (or noted), else why not."""
    try:
        files = await _download(answer.bot, answer.message)
    except TelegramBadRequest as exc:  # too big for getFile, or gone
        return text("file_failed", language, reason=exc.message)
    if not answer.body and not files:
        return None
    try:
        await desk.answer(
            answer.client_id,
            answer.body,
            manager=answer.manager,
            key=answer.key,
            note=answer.note,
            attachments=files,
            mirror=answer.mirror,
        )
    except StorageUnavailable:
        raise
    except HubError as exc:  # not theirs, no conversation, no address to answer on
        return text("cannot_answer", language, reason=str(exc))
    return None


def says_something(message: Message, body: str) -> bool:
    """Whether the message has something to send a client: text, or a file."""
    return bool(body) or inbound.media_file(message) is not None


async def _download(bot: Bot, message: Message) -> list[Attachment]:
    found = inbound.media_file(message)
    if found is None:
        return []
    data = await bot.download(found.file_id)
    assert data is not None  # no destination given: aiogram answers a buffer
    return [Attachment(found.filename, found.content_type, data.read())]


def message_id(result: SendResult) -> int | None:
    """The id of the message a staff send posted (its external id is ``chat:message``)."""
    found = (result.external_id or "").rpartition(":")[2]
    return int(found) if found.isascii() and found.isdigit() else None


async def say_about(
    desk: StaffDesk,
    calls: Calls,
    bot: Bot,
    chat: int,
    client_id: int,
    parts: Sequence[str],
    *,
    keyboard: InlineKeyboardMarkup | None = None,
) -> None:
    """Say something about a client in a manager's private chat, and remember that it
    is about them: a reply to it answers the client."""
    result = await calls.say(bot, chat, None, parts, keyboard=keyboard, strict=False)
    posted = message_id(result)
    if posted is not None:
        await desk.remember_private(chat, posted, client_id, None)


def plain(value: str) -> list[str]:
    """Plain text as the one HTML part of a reply."""
    return [render.escape(value)]
