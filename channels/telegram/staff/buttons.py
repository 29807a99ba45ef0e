"""Inline buttons pressed by managers: a card's actions, a reminder's, an offer's, a call's.

Every press is answered (answerCallbackQuery), with the desk's reply as a toast;
a card's button then refreshes the card in place (editMessageText) and, in a
client's topic, says what was done there. Presses by anyone but a registered
manager are refused through the desk, which records them.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.methods import AnswerCallbackQuery, EditMessageText
from aiogram.types import CallbackQuery, Message

from channels.telegram import render
from channels.telegram.staff.calls import HTML, NO_PREVIEW, Calls
from hub.kernel import loggers
from hub.kernel.errors import DeliveryError
from hub.kernel.ports import CampaignDesk, StaffDesk
from hub.kernel.types import ManagerRef

__all__ = ["Buttons"]

log = loggers.channels


class Buttons:
    """Acts on callback queries whose data starts with ``render.CALLBACK_PREFIX``;
    ``staff_chats`` are the chats where a card may be refreshed and replied under."""

    def __init__(
        self,
        desk: StaffDesk,
        calls: Calls,
        *,
        staff_chats: frozenset[int],
        language: str,
        tz: ZoneInfo,
        campaigns: CampaignDesk | None,
    ) -> None:
        self.desk = desk
        self.calls = calls
        self.staff_chats = staff_chats
        self.language = language
        self.tz = tz
        self.campaigns = campaigns

    async def press(self, bot: Bot, query: CallbackQuery) -> None:
        manager = await self.desk.manager(query.from_user.id)
        if manager is None:
            try:
                await self.desk.refused(query.from_user.id, f"button {query.data or ''}")
            finally:
                await self._answer_query(bot, query, None)
            return
        on_reminder = render.parse_reminder_callback(query.data)
        if on_reminder is not None:
            await self._reminder(bot, query, manager, *on_reminder)
            return
        on_call = render.parse_call_callback(query.data)
        if on_call is not None and self.campaigns is not None:
            await self._call(bot, query, manager, *on_call)
            return
        on_card = render.parse_callback(query.data)
        if on_card is None:
            await self._answer_query(bot, query, None)
            return
        await self._on_card(bot, query, manager, *on_card)

    async def _on_card(
        self, bot: Bot, query: CallbackQuery, manager: ManagerRef, action: str, client_id: int
    ) -> None:
        """An action on the client's request (``card`` only refreshes the card)."""
        confirmation: str | None = None
        try:
            if action != "card":
                confirmation = await self.desk.act(
                    client_id, manager, action, key=f"tg:callback:{query.id}"
                )
                loggers.event(
                    log, "staff.button", action=action, client=client_id, manager=manager.id
                )
        finally:
            await self._answer_query(bot, query, confirmation)
        await self._refresh_card(bot, query, client_id)
        target = query.message
        if (
            confirmation is not None
            and isinstance(target, Message)
            and target.chat.id in self.staff_chats
            and target.message_thread_id is not None
        ):
            await self.calls.say(
                bot,
                target.chat.id,
                target.message_thread_id,
                [render.escape(confirmation)],
                strict=False,
            )

    async def _reminder(
        self,
        bot: Bot,
        query: CallbackQuery,
        manager: ManagerRef,
        action: str,
        reminder_id: int,
        fired: int,
    ) -> None:
        """Done or snooze on a delivered reminder; the answer shows in the button's toast."""
        reply: str | None = None
        try:
            reply = await self.desk.settle_reminder(
                reminder_id, fired, manager, action, key=f"tg:callback:{query.id}"
            )
            loggers.event(
                log,
                "staff.reminder_button",
                action=action,
                reminder=reminder_id,
                manager=manager.id,
            )
        finally:
            await self._answer_query(bot, query, reply)

    async def _call(
        self, bot: Bot, query: CallbackQuery, manager: ManagerRef, outcome: str, task_id: int
    ) -> None:
        """An outcome of a call task; the answer shows in the button's toast."""
        assert self.campaigns is not None
        reply: str | None = None
        try:
            reply = await self.campaigns.call_outcome(
                task_id, manager, outcome, key=f"tg:callback:{query.id}"
            )
            loggers.event(
                log, "staff.call_button", outcome=outcome, task=task_id, manager=manager.id
            )
        finally:
            await self._answer_query(bot, query, reply)

    async def _answer_query(self, bot: Bot, query: CallbackQuery, reply: str | None) -> None:
        try:
            await self.calls.request(
                bot,
                AnswerCallbackQuery(
                    callback_query_id=query.id, text=render.clip(reply, 200) if reply else None
                ),
            )
        except DeliveryError as exc:
            loggers.event(log, "staff.callback_unanswered", query=query.id, error=exc.reason)

    async def _refresh_card(self, bot: Bot, query: CallbackQuery, client_id: int) -> None:
        """Show the card as it is now, in place of the one whose button was pressed."""
        target = query.message
        if not isinstance(target, Message) or target.chat.id not in self.staff_chats:
            return
        card = await self.desk.card(client_id)
        if card is None:
            return
        try:
            await self.calls.request(
                bot,
                EditMessageText(
                    chat_id=target.chat.id,
                    message_id=target.message_id,
                    text=render.card_html(card, self.language, self.tz),
                    parse_mode=HTML,
                    reply_markup=render.card_keyboard(client_id, self.language),
                    link_preview_options=NO_PREVIEW,
                ),
            )
        except DeliveryError as exc:  # not modified, or gone: the card stays as it was
            loggers.event(log, "staff.card_not_refreshed", client=client_id, error=exc.reason)
