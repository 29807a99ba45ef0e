"""A manager's private chat with the bot: answers to clients, and /inbox, /find,
/report, /away, /c, campaign commands.

A reply (Telegram's reply) to the bot's message about a client — a client's words
in a notice, a card, a confirmation — answers that client over their
conversation's channel, as an answer in the client's topic does; ``!`` first
makes an internal note. Both are copied into the client's topic by the desk. A
manager may choose a current client (``/c ID`` with the id the card shows, or a
button of ``/inbox``) and then just write: plain text goes to them. The commands
of :attr:`PrivateChat.about` (``/take``, ``/resolve``, ``/wait``, ``/transfer NAME``,
``/remind WHEN TEXT``, ``/card``, ``/note TEXT``, ``/t NAME``, and for
supervisors and admins ``/block`` and ``/unblock``) act on the client replied
to, else the current one. The desk checks that the client is the manager's to
act on and audits every refusal.

``/report week`` (or ``month``) answers with a short summary and the charts as
photos (sendPhoto); commands in neither table are offered to the campaign desk,
and anything else is answered with the help.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.methods import SendPhoto
from aiogram.types import BufferedInputFile, InlineKeyboardMarkup, Message

from channels.telegram import commands, render
from channels.telegram.commands import Command
from channels.telegram.staff.answering import Answer, give, plain, say_about, says_something
from channels.telegram.staff.calls import HTML, Calls
from channels.telegram.staff.digests import Digests
from channels.telegram.staff.group import ACTIONS, NOTE_MARK
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.errors import DeliveryError, HubError, StorageUnavailable
from hub.kernel.ports import (
    CampaignDesk,
    ConsoleLinks,
    ReportDigest,
    StaffDesk,
    StaffReports,
)
from hub.kernel.texts import text
from hub.kernel.types import ManagerRef

__all__ = ["PrivateChat", "Reply"]

log = loggers.channels

NO_CLIENT = ("0", "-", "none")  # ``/c 0``: no current client
_NUMBERED = re.compile(r"#?(\d{1,3})(?:\s+(.*))?\Z", re.DOTALL)  # ``/r N TEXT``


@dataclass(frozen=True, slots=True)
class Reply:
    """What the bot answers: HTML messages (the keyboard under the last), then a
    report's charts. ``about``: the client it concerns; a reply to it answers them."""

    parts: list[str]
    digest: ReportDigest | None = None
    keyboard: InlineKeyboardMarkup | None = None
    about: int | None = None
    confirmation: bool = False  # of an answer: may wait for the chat's next post


def _said(plain_text: str, about: int | None = None) -> Reply:
    return Reply(plain(plain_text), about=about)


@dataclass(frozen=True, slots=True)
class Said:
    """A registered manager's message in their private chat with the bot."""

    bot: Bot
    message: Message
    manager: ManagerRef
    language: str
    command: Command | None

    @property
    def key(self) -> str:
        """The idempotency key of what the message does (Telegram redelivers updates)."""
        return f"tg:{self.message.chat.id}:{self.message.message_id}"

    @property
    def argument(self) -> str:
        return self.command.argument if self.command is not None else ""

    def replied_to_bot(self) -> Message | None:
        """The bot's message this one replies to, if it replies to one."""
        replied = self.message.reply_to_message
        author = replied.from_user if replied is not None else None
        return replied if author is not None and author.id == self.bot.id else None


@dataclass(frozen=True, slots=True)
class Target:
    """The client a message is about: the one replied to, else the current one."""

    client_id: int
    current: bool  # chosen with /c, not by a reply


PrivateCommand = Callable[[Said], Awaitable[Reply]]
ClientCommand = Callable[[Said, Target], Awaitable[Reply]]


class PrivateChat:
    """Answers registered managers in their private chats with the bot."""

    def __init__(
        self,
        desk: StaffDesk,
        calls: Calls,
        *,
        language: str,
        tz: ZoneInfo,
        clock: Clock,
        reports: StaffReports | None,
        campaigns: CampaignDesk | None,
        digests: Digests | None = None,
        console: ConsoleLinks | None = None,
    ) -> None:
        self.desk = desk
        self.calls = calls
        self.digests = digests
        self.language = language
        self.tz = tz
        self.clock = clock
        self.reports = reports
        self.campaigns = campaigns
        self.console = console
        # Commands about the manager's own work.
        self.commands: dict[str, PrivateCommand] = {
            "inbox": self._inbox,
            "away": self._away,
            "back": self._away,
            "find": self._find,
            "report": self._report,
            "c": self._current,
            "r": self._numbered,
            "help": self._help,
            "web": self._web,
        }
        # Commands about a client: the one replied to, else the current one.
        self.about: dict[str, ClientCommand] = {
            "card": self._card,
            "note": self._note,
            "t": self._template,
            **dict.fromkeys(sorted(ACTIONS), self._act),
        }

    async def handle(self, bot: Bot, message: Message, manager: ManagerRef) -> None:
        """A registered manager's message in their private chat with the bot."""
        assert message.from_user is not None
        body = message.text or message.caption or ""
        command = commands.parse(body, (await bot.me()).username or "")
        language = manager.language or self.language
        said = Said(bot, message, manager, language, command)
        reply = await self._reply(said, body)
        name = command.name if command is not None else ""
        loggers.event(log, "staff.private", command=name or "-", manager=manager.id)
        await self._say(said, reply)

    async def _reply(self, said: Said, body: str) -> Reply:
        command = said.command
        if command is None:
            if body.startswith(commands.PREFIX):
                return await self._help(said)  # a command named for another bot
            return await self._write(said, body)
        handler = self.commands.get(command.name)
        if handler is not None:
            return await handler(said)
        about = self.about.get(command.name)
        if about is not None:
            target = await self._target(said)
            return await about(said, target) if target else self._no_target(said)
        if self.campaigns is not None:
            answer = await self.campaigns.campaign_command(
                said.manager, command.name, command.argument
            )
            if answer:
                return _said(answer)
        return await self._help(said)

    async def _say(self, said: Said, reply: Reply) -> None:
        chat = said.message.chat.id
        if reply.confirmation and self.digests is not None and self.digests.busy(chat):
            # The chat's budget goes to clients' messages first; the confirmation
            # rides along with the next post.
            self.digests.confirm(said.bot, chat, "\n".join(reply.parts))
            return
        if reply.about is not None:
            await say_about(
                self.desk,
                self.calls,
                said.bot,
                chat,
                reply.about,
                reply.parts,
                keyboard=reply.keyboard,
            )
        else:
            await self.calls.say(
                said.bot, chat, None, reply.parts, keyboard=reply.keyboard, strict=False
            )
        if reply.digest is not None:
            await self._photos(said.bot, chat, reply.digest)

    # -- which client ------------------------------------------------------------------

    async def _target(self, said: Said) -> Target | None:
        """The client replied to (None when the message replied to is about none),
        else the manager's current client."""
        replied = said.replied_to_bot()
        if replied is not None:
            client = await self.desk.client_of_private(said.message.chat.id, replied.message_id)
            return Target(client, current=False) if client is not None else None
        current = await self.desk.current_client(said.manager)
        return Target(current, current=True) if current is not None else None

    def _no_target(self, said: Said) -> Reply:
        if said.replied_to_bot() is not None:
            return _said(text("not_about_client", said.language))
        return _said(text("no_current", said.language))

    async def _done(self, said: Said, target: Target, *, note: bool) -> Reply:
        """The confirmation of an answer (or note): to whom, and whether by /c."""
        card = await self.desk.card(target.client_id)
        label = render.client_label(card, target.client_id)
        key = "noted_on" if note else "sent_to"
        key += "_current" if target.current else ""
        said_text = text(key, said.language, client=label)
        return Reply(plain(said_text), about=target.client_id, confirmation=True)

    # -- answers ----------------------------------------------------------------------

    async def _write(self, said: Said, body: str) -> Reply:
        """Plain text (or a file): to the client replied to, or the current one."""
        target = await self._target(said)
        if target is None:
            replied = said.replied_to_bot()
            if replied is None:
                return await self._help(said)  # the help says how to choose a client
            if await self.desk.client_of_private(replied.chat.id, replied.message_id, entry=1):
                return _said(text("digest_reply", said.language))
            return _said(text("not_about_client", said.language))
        note = body.startswith(NOTE_MARK)
        body = body.removeprefix(NOTE_MARK).strip() if note else body
        return await self._answer(said, target, body, note=note)

    async def _answer(self, said: Said, target: Target, body: str, *, note: bool) -> Reply:
        if not says_something(said.message, body):  # a sticker, a location: nothing to send
            return _said(text("nothing_to_send", said.language), about=target.client_id)
        answer = Answer(
            said.bot, said.message, target.client_id, said.manager, body, note, mirror=True
        )
        failed = await give(self.desk, answer, said.language)
        if failed is not None:
            return _said(failed, about=target.client_id)
        return await self._done(said, target, note=note)

    async def _numbered(self, said: Said) -> Reply:
        """``/r N TEXT``: answer entry N of the digest replied to, else of the chat's
        latest digest; ``!`` first makes a note."""
        found = _NUMBERED.match(said.argument)
        body = (found.group(2) or "") if found else ""
        if found is None or not says_something(said.message, body):
            return _said(text("need_argument", said.language, usage="/r N TEXT"))
        replied = said.replied_to_bot()
        client = await self.desk.client_of_private(
            said.message.chat.id,
            replied.message_id if replied is not None else None,
            entry=int(found.group(1)),
        )
        if client is None:
            return _said(text("no_entry", said.language, number=found.group(1)))
        note = body.startswith(NOTE_MARK)
        body = body.removeprefix(NOTE_MARK).strip() if note else body
        return await self._answer(said, Target(client, current=False), body, note=note)

    async def _note(self, said: Said, target: Target) -> Reply:
        if not said.argument:
            return _said(text("need_argument", said.language, usage="/note TEXT"))
        return await self._answer(said, target, said.argument, note=True)

    async def _template(self, said: Said, target: Target) -> Reply:
        """``/t NAME``: the canned answer to the client; ``/t``: the list as buttons."""
        client = target.client_id
        name = said.argument.strip()
        if not name:
            names = await self.desk.templates()
            if not names:
                return _said(text("templates_none", said.language))
            label = render.client_label(await self.desk.card(client), client)
            title = text("templates_title", said.language, client=label)
            return Reply(plain(title), keyboard=render.templates_keyboard(client, names))
        try:
            await self.desk.answer_template(
                client, name, manager=said.manager, key=said.key, mirror=True
            )
        except StorageUnavailable:
            raise
        except HubError as exc:  # no such template, not theirs, no address
            return _said(str(exc), about=client)
        return await self._done(said, target, note=False)

    # -- actions on the client --------------------------------------------------------

    async def _act(self, said: Said, target: Target) -> Reply:
        assert said.command is not None
        reply = await self.desk.act(
            target.client_id, said.manager, said.command.name, said.argument, key=said.key
        )
        return _said(reply, about=target.client_id)

    async def _card(self, said: Said, target: Target) -> Reply:
        client = target.client_id
        card = await self.desk.card_for(said.manager, client)
        if card is None:
            return _said(text("not_yours", said.language))
        return Reply(
            [render.card_html(card, said.language, self._zone(said.manager))],
            keyboard=render.private_keyboard(client, said.language, offer=False),
            about=client,
        )

    def _zone(self, manager: ManagerRef) -> ZoneInfo:
        """The manager's own time zone (the config's, checked at start), else the hub's."""
        return ZoneInfo(manager.timezone) if manager.timezone else self.tz

    # -- the manager's own commands -----------------------------------------------------

    async def _help(self, said: Said) -> Reply:
        return _said(text("private_help", said.language))

    async def _current(self, said: Said) -> Reply:
        """``/c ID``: choose the current client; ``/c 0``: none; ``/c``: which it is."""
        wanted = said.argument.strip().lstrip("#")
        if not wanted:
            current = await self.desk.current_client(said.manager)
            if current is None:
                return _said(text("no_current", said.language))
            return _said(text("current_is", said.language, id=current), about=current)
        if wanted.lower() in NO_CLIENT:
            return _said(await self.desk.choose_client(said.manager, None))
        if not render.decimal_id(wanted):
            return _said(text("need_argument", said.language, usage="/c ID"))
        return _said(await self.desk.choose_client(said.manager, int(wanted)))

    async def _inbox(self, said: Said) -> Reply:
        items = await self.desk.inbox(said.manager)
        return Reply(
            render.inbox_html(items, said.language, self.clock.now()),
            keyboard=render.inbox_keyboard(items),
        )

    async def _web(self, said: Said) -> Reply:
        """A one-time sign-in link to the web console, here in the private chat only."""
        url = await self.console.sign_in_link(said.manager) if self.console else None
        if url is None:
            return _said(text("web_off", said.language))
        return _said(text("web_link", said.language, url=url))

    async def _away(self, said: Said) -> Reply:
        assert said.command is not None
        return _said(await self.desk.set_away(said.manager, said.command.name == "away"))

    async def _find(self, said: Said) -> Reply:
        query = said.argument
        if not query:
            return _said(text("need_argument", said.language, usage="/find TEXT"))
        cards = await self.desk.find(said.manager, query)
        found = [(card, await self.desk.topic_of(card.id)) for card in cards]
        return Reply(render.find_html(found, query, said.language))

    async def _report(self, said: Said) -> Reply:
        """The report of ``week`` (the default) or ``month``; the usage for anything else."""
        if self.reports is None:
            return _said(text("report_unavailable", said.language))
        name = said.argument.strip().lower() or "week"
        if name not in ("week", "month"):
            return _said(text("report_usage", said.language))
        digest = await self.reports.digest(name, said.language)
        return Reply([render.escape(digest.summary)], digest)

    async def _photos(self, bot: Bot, chat: int, digest: ReportDigest) -> None:
        """The report's charts, one photo each; they wait their turn in the chat (a manager
        asked for them), and a refused one is logged, the rest still sent."""
        if not digest.charts:
            return
        steps = len(digest.charts)
        pacer = self.calls.pacer
        patience = self.calls.max_wait + steps * pacer.gap
        async with pacer.turn(chat, steps, patience) as turn:
            for chart in digest.charts:
                try:
                    await self.calls.request(
                        bot,
                        SendPhoto(
                            chat_id=chat,
                            photo=BufferedInputFile(chart.png, filename=chart.filename),
                            caption=render.escape(chart.caption),
                            parse_mode=HTML,
                        ),
                        turn=turn,
                    )
                except DeliveryError as exc:
                    loggers.event(
                        log,
                        "staff.chart_dropped",
                        logging.WARNING,
                        chat=chat,
                        chart=chart.filename,
                        error=exc.reason,
                    )
