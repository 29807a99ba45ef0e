"""A manager's private chat with the bot: /inbox, /find, /report, /away, campaign commands.

``/report week`` (or ``month``) answers with a short summary and the charts as
photos (sendPhoto); commands not in :attr:`PrivateChat.commands` are offered to
the campaign desk, and anything else is answered with the help.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiogram import Bot
from aiogram.methods import SendPhoto
from aiogram.types import BufferedInputFile, Message

from channels.telegram import commands, render
from channels.telegram.commands import Command
from channels.telegram.staff.calls import HTML, Calls
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.errors import DeliveryError
from hub.kernel.ports import CampaignDesk, ReportDigest, StaffDesk, StaffReports
from hub.kernel.texts import text
from hub.kernel.types import ManagerRef

__all__ = ["PrivateChat", "Reply"]

log = loggers.channels


@dataclass(frozen=True, slots=True)
class Reply:
    """What the bot answers: HTML messages, then a report's charts."""

    parts: list[str]
    digest: ReportDigest | None = None


def _said(plain: str) -> Reply:
    return Reply([render.escape(plain)])


PrivateCommand = Callable[[ManagerRef, str, Command], Awaitable[Reply]]


class PrivateChat:
    """Answers registered managers in their private chats with the bot."""

    def __init__(
        self,
        desk: StaffDesk,
        calls: Calls,
        *,
        language: str,
        clock: Clock,
        reports: StaffReports | None,
        campaigns: CampaignDesk | None,
    ) -> None:
        self.desk = desk
        self.calls = calls
        self.language = language
        self.clock = clock
        self.reports = reports
        self.campaigns = campaigns
        # Each takes the manager, their language and the command.
        self.commands: dict[str, PrivateCommand] = {
            "inbox": self._inbox,
            "away": self._away,
            "back": self._away,
            "find": self._find,
            "report": self._report,
        }

    async def handle(self, bot: Bot, message: Message, manager: ManagerRef) -> None:
        """A registered manager's message in their private chat with the bot."""
        assert message.from_user is not None
        user = message.from_user.id
        language = manager.language or self.language
        command = commands.parse(message.text or "", (await bot.me()).username or "")
        reply = await self._reply(manager, language, command)
        name = command.name if command is not None else ""
        loggers.event(log, "staff.private", command=name or "-", manager=manager.id)
        await self.calls.say(bot, user, None, reply.parts, strict=False)
        if reply.digest is not None:
            await self._photos(bot, user, reply.digest)

    async def _reply(self, manager: ManagerRef, language: str, command: Command | None) -> Reply:
        if command is None:
            return _said(text("private_help", language))
        handler = self.commands.get(command.name)
        if handler is not None:
            return await handler(manager, language, command)
        if self.campaigns is not None:
            said = await self.campaigns.campaign_command(manager, command.name, command.argument)
            if said:
                return _said(said)
        return _said(text("private_help", language))

    # -- the commands ----------------------------------------------------------------

    async def _inbox(self, manager: ManagerRef, language: str, command: Command) -> Reply:
        items = await self.desk.inbox(manager)
        return Reply(render.inbox_html(items, language, self.clock.now()))

    async def _away(self, manager: ManagerRef, language: str, command: Command) -> Reply:
        return _said(await self.desk.set_away(manager, command.name == "away"))

    async def _find(self, manager: ManagerRef, language: str, command: Command) -> Reply:
        query = command.argument
        if not query:
            return _said(text("need_argument", language, usage="/find TEXT"))
        cards = await self.desk.find(manager, query)
        found = [(card, await self.desk.topic_of(card.id)) for card in cards]
        return Reply(render.find_html(found, query, language))

    async def _report(self, manager: ManagerRef, language: str, command: Command) -> Reply:
        """The report of ``week`` (the default) or ``month``; the usage for anything else."""
        if self.reports is None:
            return _said(text("report_unavailable", language))
        name = command.argument.strip().lower() or "week"
        if name not in ("week", "month"):
            return _said(text("report_usage", language))
        digest = await self.reports.digest(name, language)
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
