"""Managers in the staff forum: answers, notes and commands in a client's topic.

What a manager writes in a client's topic is an answer to the client (files
fetched with getFile), an internal note when it starts with ``!`` or is
``/note``, a canned answer (``/t NAME``; ``/t`` lists them as buttons), or a
command of :attr:`StaffGroup.commands` (``/block`` and ``/unblock`` among them,
which the desk allows supervisors and admins only), answered in the topic. The
general topic and topics opened by hand belong to no client: nothing there is
acted on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.types import Message

from channels.telegram import commands, render
from channels.telegram.commands import Command
from channels.telegram.staff.answering import Answer, give
from channels.telegram.staff.calls import Calls, LastPosts
from hub.kernel import loggers
from hub.kernel.errors import HubError, StorageUnavailable
from hub.kernel.ports import StaffDesk
from hub.kernel.texts import text
from hub.kernel.types import ManagerRef, Topic

__all__ = ["ACTIONS", "StaffGroup", "TopicMessage"]

log = loggers.channels

# The desk's actions on a client's request, as commands (and some as buttons).
ACTIONS = frozenset(
    {
        "take",
        "resolve",
        "wait",
        "reopen",
        "transfer",
        "tag",
        "stage",
        "remind",
        "block",
        "unblock",
    }
)
NOTE_MARK = "!"


@dataclass(frozen=True, slots=True)
class TopicMessage:
    """A registered manager's message in a client's topic."""

    bot: Bot
    message: Message
    topic: Topic
    client_id: int
    manager: ManagerRef
    language: str

    @property
    def key(self) -> str:
        """The idempotency key of what the message does (Telegram redelivers updates)."""
        return f"tg:{self.message.chat.id}:{self.message.message_id}"


TopicCommand = Callable[[TopicMessage, Command], Awaitable[None]]


class StaffGroup:
    """Acts on what managers write in the staff chats' client topics."""

    def __init__(
        self, desk: StaffDesk, calls: Calls, last: LastPosts, *, language: str, tz: ZoneInfo
    ) -> None:
        self.desk = desk
        self.calls = calls
        self.last = last
        self.language = language
        self.tz = tz
        self.commands: dict[str, TopicCommand] = {
            "note": self._note,
            "away": self._away,
            "back": self._away,
            "card": self._card,
            "help": self._help,
            "start": self._help,
            "t": self._template,
            **dict.fromkeys(sorted(ACTIONS), self._act),
        }

    async def handle(self, bot: Bot, message: Message, manager: ManagerRef) -> None:
        """A manager's message with content, in a staff chat."""
        said = await self._in_client_topic(bot, message, manager)
        if said is None:
            return
        self.last.drop(said.topic)  # a manager spoke after the bot: append nothing above it
        body = message.text or message.caption or ""
        command = commands.parse(body, (await bot.me()).username or "")
        if command is not None:
            await self.commands.get(command.name, self._unknown)(said, command)
        elif body.startswith(commands.PREFIX):
            # Named for another bot of the group: neither ours to obey nor an answer.
            loggers.event(
                log, "staff.not_for_us", logging.DEBUG, chat=said.topic.chat_id, manager=manager.id
            )
        elif body.startswith(NOTE_MARK):
            await self._answer(said, body.removeprefix(NOTE_MARK).strip(), note=True)
        else:
            await self._answer(said, body, note=False)

    async def _in_client_topic(
        self, bot: Bot, message: Message, manager: ManagerRef
    ) -> TopicMessage | None:
        if not message.is_topic_message or message.message_thread_id is None:
            return None  # the general topic belongs to no client
        topic = Topic(message.chat.id, message.message_thread_id)
        client_id = await self.desk.client_of_topic(topic)
        if client_id is None:
            return None  # a topic managers opened by hand
        language = manager.language or self.language
        return TopicMessage(bot, message, topic, client_id, manager, language)

    async def _reply(self, said: TopicMessage, html: str) -> None:
        """Answer in the topic; a failure is logged (what was asked is done)."""
        topic = said.topic
        await self.calls.say(said.bot, topic.chat_id, topic.thread_id, [html], strict=False)

    # -- the commands ----------------------------------------------------------------

    async def _note(self, said: TopicMessage, command: Command) -> None:
        await self._answer(said, command.argument, note=True)

    async def _away(self, said: TopicMessage, command: Command) -> None:
        reply = await self.desk.set_away(said.manager, command.name == "away")
        await self._reply(said, render.escape(reply))

    async def _act(self, said: TopicMessage, command: Command) -> None:
        reply = await self.desk.act(
            said.client_id, said.manager, command.name, command.argument, key=said.key
        )
        loggers.event(
            log,
            "staff.command",
            command=command.name,
            client=said.client_id,
            manager=said.manager.id,
        )
        await self._reply(said, render.escape(reply))

    async def _card(self, said: TopicMessage, command: Command) -> None:
        card = await self.desk.card_for(said.manager, said.client_id)
        if card is None:
            await self._reply(said, render.escape(text("not_yours", said.language)))
            return
        await self.calls.say(
            said.bot,
            said.topic.chat_id,
            said.topic.thread_id,
            [render.card_html(card, said.language, self.tz)],
            keyboard=render.card_keyboard(said.client_id, said.language),
            strict=False,
        )

    async def _help(self, said: TopicMessage, command: Command) -> None:
        await self._reply(said, render.escape(text("topic_help", said.language)))

    async def _unknown(self, said: TopicMessage, command: Command) -> None:
        unknown = text("unknown_action", said.language, action=f"/{command.name}")
        help_ = text("topic_help", said.language)
        await self._reply(said, render.escape(f"{unknown}\n{help_}"))

    # -- answers and notes -----------------------------------------------------------

    async def _answer(self, said: TopicMessage, body: str, *, note: bool) -> None:
        """To the client (or a note on them) through the desk, with the message's file."""
        answer = Answer(
            said.bot, said.message, said.client_id, said.manager, body, note, mirror=False
        )
        failed = await give(self.desk, answer, said.language)
        if failed is not None:
            await self._reply(said, render.escape(failed))

    async def _template(self, said: TopicMessage, command: Command) -> None:
        """``/t NAME`` sends the canned answer (copied into the topic by the desk, as
        the text is not there); ``/t`` alone lists them as buttons."""
        name = command.argument.strip()
        if not name:
            names = await self.desk.templates()
            if not names:
                await self._reply(said, render.escape(text("templates_none", said.language)))
                return
            label = render.client_label(await self.desk.card(said.client_id), said.client_id)
            await self.calls.say(
                said.bot,
                said.topic.chat_id,
                said.topic.thread_id,
                [render.escape(text("templates_title", said.language, client=label))],
                keyboard=render.templates_keyboard(said.client_id, names),
                strict=False,
            )
            return
        try:
            await self.desk.answer_template(
                said.client_id, name, manager=said.manager, key=said.key, mirror=True
            )
        except StorageUnavailable:
            raise
        except HubError as exc:  # no such template, not theirs, no address
            await self._reply(said, render.escape(str(exc)))
