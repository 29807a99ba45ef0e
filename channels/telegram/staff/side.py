"""The staff side as one StaffSurface: which updates are the staff's, and who acts on each."""

from __future__ import annotations

from collections import OrderedDict
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.types import Message, Update

from channels.telegram import render
from channels.telegram.staff.buttons import Buttons
from channels.telegram.staff.calls import Calls, LastPosts
from channels.telegram.staff.erase import ERASE, erase
from channels.telegram.staff.group import StaffGroup
from channels.telegram.staff.mirror import Mirrors
from channels.telegram.staff.notices import Notices
from channels.telegram.staff.pacing import Pacer
from channels.telegram.staff.private import PrivateChat
from channels.telegram.staff.topics import Topics
from hub.config import TelegramSection
from hub.kernel.clock import Clock, SystemClock
from hub.kernel.ports import CampaignDesk, ConsoleLinks, RecentSends, StaffDesk, StaffReports
from hub.kernel.types import ManagerRef, OutboundMessage, SendResult

__all__ = ["StaffSide"]

_FILE_KINDS = ("photo", "document", "voice", "video", "audio", "animation", "video_note")
_OTHER_CONTENT = ("sticker", "contact", "location", "venue", "poll", "dice")


def has_content(message: Message) -> bool:
    """What a person wrote or sent (not a service message: topic created, member joined)."""
    return bool(message.text or message.caption) or any(
        getattr(message, kind, None) for kind in (*_FILE_KINDS, *_OTHER_CONTENT)
    )


def summary(message: Message) -> str:
    """The start of what was said, for the record of a refused stranger."""
    body = message.text or message.caption or ""
    if not body:
        body = next((f"[{kind}]" for kind in _FILE_KINDS if getattr(message, kind, None)), "")
    return " ".join(body.split())[:80]


class StaffSide:
    """The :class:`~channels.telegram.base.StaffSurface` over a :class:`StaffDesk`.

    New topics are spread over ``staff_chat_id`` and ``extra_staff_chat_ids``: the
    chat that can take them soonest, then the one this process opened fewest in.
    ``max_wait`` is how long a send may wait in line for its chat before it is
    deferred to the dispatcher with ``retry_after`` (``coalesce_for`` is no longer
    used: a client's waiting mirrors are gathered into one post, never appended by
    an edit, which costs the chat's budget as a post does).
    """

    def __init__(
        self,
        desk: StaffDesk,
        config: TelegramSection,
        *,
        language: str = "ru",
        timezone: str = "UTC",
        clock: Clock | None = None,
        pacer: Pacer | None = None,
        max_wait: float = 2.5,
        coalesce_for: float = 120.0,
        reports: StaffReports | None = None,
        campaigns: CampaignDesk | None = None,
        console: ConsoleLinks | None = None,
    ) -> None:
        self.desk = desk
        self.language = language
        self.tz = ZoneInfo(timezone)
        self.pacer = pacer or Pacer()
        chats = [config.staff_chat_id, *config.extra_staff_chat_ids]
        self.chats: list[int] = list(dict.fromkeys(c for c in chats if c is not None))
        self._staff_chats = frozenset(self.chats)
        last = LastPosts()
        calls = self.calls = Calls(self.pacer, last, max_wait=max_wait)
        topics = Topics(
            desk, calls, chats=self.chats, language=language, tz=self.tz, coalesce_for=coalesce_for
        )
        self.mirrors = Mirrors(desk, topics, language=language, tz=self.tz)
        self.notices = Notices(desk, topics, calls, language=language)
        self.group = StaffGroup(desk, calls, last, language=language, tz=self.tz)
        self.private = PrivateChat(
            desk,
            calls,
            language=language,
            tz=self.tz,
            clock=clock or SystemClock(),
            reports=reports,
            campaigns=campaigns,
            digests=self.notices.digests,
            console=console,
        )
        self.buttons = Buttons(
            desk,
            calls,
            staff_chats=self._staff_chats,
            language=language,
            tz=self.tz,
            campaigns=campaigns,
        )
        self._is_manager: OrderedDict[int, tuple[bool, float]] = OrderedDict()

    async def handles(self, update: Update) -> bool:
        if update.callback_query is not None:
            return (update.callback_query.data or "").startswith(render.CALLBACK_PREFIX)
        message = update.message or update.edited_message
        if message is None:
            return False
        if message.chat.id in self._staff_chats:
            return True
        if message.chat.type == "private" and message.from_user is not None:
            return await self._known_manager(message.from_user.id)
        return False

    async def handle(self, bot: Bot, update: Update) -> None:
        if update.callback_query is not None:
            await self.buttons.press(bot, update.callback_query)
            return
        message = update.message
        if message is None or message.from_user is None:
            return  # edits of staff messages change nothing already sent
        if message.chat.id in self._staff_chats:
            if not has_content(message):
                return  # forum_topic_created, members joining, pins: nothing to act on
            manager = await self._manager(message, f"message in staff chat {message.chat.id}")
            if manager is not None:
                await self.group.handle(bot, message, manager)
        elif message.chat.type == "private":
            manager = await self._manager(message, "private message")
            if manager is not None:
                await self.private.handle(bot, message, manager)

    def spent(self, recent: RecentSends) -> None:
        """What the bot posted in the last minute (after a restart) spends the chats'
        budgets: see :meth:`Topics.spent`."""
        self.mirrors.topics.spent(recent)

    async def stop(self) -> None:
        await self.notices.digests.close()

    async def send(self, bot: Bot, message: OutboundMessage) -> SendResult:
        if message.kind == "mirror":
            return await self.mirrors.send(bot, message)
        if message.kind == ERASE:
            return await erase(bot, self.calls, message)
        return await self.notices.send(bot, message)

    async def _manager(self, message: Message, where: str) -> ManagerRef | None:
        """The registered manager who wrote; anyone else is refused (the desk records it)."""
        assert message.from_user is not None
        manager = await self.desk.manager(message.from_user.id)
        if manager is None:
            await self.desk.refused(message.from_user.id, f"{where}: {summary(message)}")
        return manager

    async def _known_manager(self, telegram_id: int) -> bool:
        now = self.pacer.monotonic()
        cached = self._is_manager.get(telegram_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        known = await self.desk.manager(telegram_id) is not None
        self._is_manager[telegram_id] = (known, now + 30.0)
        while len(self._is_manager) > 10_000:
            self._is_manager.popitem(last=False)
        return known
