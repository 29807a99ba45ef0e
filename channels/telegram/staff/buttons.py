"""Inline buttons pressed by managers: a card's actions, a reminder's, an offer's, a
call's, and those under a client's message in a manager's private chat.

Every press is answered (answerCallbackQuery), with the desk's reply as a toast;
a card's button then refreshes the card in place (editMessageText) and, in a
client's topic, says what was done there. Transfer and remind offer their
choices as buttons (whom to, when), a canned answer's button sends it, and a
client of ``/inbox`` pressed becomes the manager's current client. Presses by
anyone but a registered manager are refused through the desk, which records them.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.methods import AnswerCallbackQuery, EditMessageText
from aiogram.types import CallbackQuery, Message

from channels.telegram import render
from channels.telegram.staff.answering import plain, say_about
from channels.telegram.staff.calls import HTML, NO_PREVIEW, Calls
from hub.kernel import loggers
from hub.kernel.errors import DeliveryError, HubError, StorageUnavailable
from hub.kernel.ports import CampaignDesk, StaffDesk
from hub.kernel.texts import text
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
        data = query.data
        on_reminder = render.parse_reminder_callback(data)
        if on_reminder is not None:
            await self._reminder(bot, query, manager, *on_reminder)
            return
        on_call = render.parse_call_callback(data)
        if on_call is not None and self.campaigns is not None:
            await self._call(bot, query, manager, *on_call)
            return
        current = render.parse_current_callback(data)
        if current is not None:
            await self._current(bot, query, manager, current)
            return
        picked = render.parse_pick_callback(data)
        if picked is not None:
            await self._picked(bot, query, manager, *picked)
            return
        on_card = render.parse_callback(data)
        if on_card is None:
            await self._answer_query(bot, query, None)
            return
        action, client_id = on_card
        if action in render.PICKERS:
            await self._choices(bot, query, manager, action, client_id)
        elif action == "card" and _private_chat(query) is not None:
            await self._card_in_private(bot, query, manager, client_id)
        else:
            await self._on_card(bot, query, manager, action, client_id)

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

    # -- in a manager's private chat ---------------------------------------------------

    async def _current(
        self, bot: Bot, query: CallbackQuery, manager: ManagerRef, client_id: int
    ) -> None:
        """A client of ``/inbox`` made the manager's current one; said in the chat too,
        as it changes where the manager's next words go."""
        reply: str | None = None
        try:
            reply = await self.desk.choose_client(manager, client_id)
        finally:
            await self._answer_query(bot, query, reply)
        chat = _private_chat(query)
        if chat is not None and reply:
            await self.calls.say(bot, chat, None, plain(reply), strict=False)

    async def _card_in_private(
        self, bot: Bot, query: CallbackQuery, manager: ManagerRef, client_id: int
    ) -> None:
        """The card as the manager asked for it (audited), under the message pressed."""
        card = await self.desk.card_for(manager, client_id)
        language = manager.language or self.language
        await self._answer_query(bot, query, None if card else text("not_yours", language))
        chat = _private_chat(query)
        if card is None or chat is None:
            return
        html = render.card_html(card, language, self.tz)
        keyboard = render.private_keyboard(client_id, language, offer=False)
        await say_about(self.desk, self.calls, bot, chat, client_id, [html], keyboard=keyboard)

    async def _choices(
        self, bot: Bot, query: CallbackQuery, manager: ManagerRef, action: str, client_id: int
    ) -> None:
        """Transfer or remind: the choices as buttons, in the chat (and topic) pressed in."""
        language = manager.language or self.language
        label = render.client_label(await self.desk.card(client_id), client_id)
        if action == "transfer":
            others = [(m.telegram_id, m.name) for m in await self.desk.colleagues(manager)]
            if not others:
                await self._answer_query(bot, query, text("nobody_to_transfer", language))
                return
            title = text("transfer_to", language, client=label)
            keyboard = render.transfer_keyboard(client_id, others)
        else:
            title = text("remind_about", language, client=label)
            keyboard = render.remind_keyboard(client_id, language)
        await self._answer_query(bot, query, None)
        target = query.message
        if isinstance(target, Message):
            thread = target.message_thread_id if target.chat.id in self.staff_chats else None
            await self.calls.say(
                bot, target.chat.id, thread, plain(title), keyboard=keyboard, strict=False
            )

    async def _picked(
        self,
        bot: Bot,
        query: CallbackQuery,
        manager: ManagerRef,
        kind: str,
        client_id: int,
        value: str,
    ) -> None:
        """A choice made: the manager to transfer to (``to``), when to be reminded
        (``in``), the canned answer to send (``tpl``); the answer is the toast."""
        key = f"tg:callback:{query.id}"
        reply: str | None = None
        try:
            if kind == "tpl":
                reply = await self._send_template(manager, client_id, value, key)
            elif kind == "to" or value in render.REMIND_PRESETS:
                action = "transfer" if kind == "to" else "remind"
                reply = await self.desk.act(client_id, manager, action, value, key=key)
            loggers.event(log, "staff.pick", kind=kind, client=client_id, manager=manager.id)
        finally:
            await self._answer_query(bot, query, reply)

    async def _send_template(self, manager: ManagerRef, client_id: int, name: str, key: str) -> str:
        """The canned answer to the client (copied into their topic by the desk)."""
        language = manager.language or self.language
        try:
            await self.desk.answer_template(client_id, name, manager=manager, key=key, mirror=True)
        except StorageUnavailable:
            raise
        except HubError as exc:  # no such template, not theirs, no address
            return str(exc)
        label = render.client_label(await self.desk.card(client_id), client_id)
        return text("sent_to", language, client=label)

    # -- on delivered notices -----------------------------------------------------------

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
                    text=_with_history(render.card_html(card, self.language, self.tz), target),
                    parse_mode=HTML,
                    reply_markup=render.card_keyboard(client_id, self.language),
                    link_preview_options=NO_PREVIEW,
                ),
            )
        except DeliveryError as exc:  # not modified, or gone: the card stays as it was
            loggers.event(log, "staff.card_not_refreshed", client=client_id, error=exc.reason)


def _with_history(card: str, message: Message) -> str:
    """The refreshed card keeps the client's words a topic's first message has below it."""
    history = render.history_below(message.html_text if message.text else "")
    if not history:
        return card
    merged = render.card_with_history(card, history)
    return merged if render.visible_len(merged) <= render.MESSAGE_LIMIT else card


def _private_chat(query: CallbackQuery) -> int | None:
    """The private chat the pressed button is in; None in a group (or unknown)."""
    target = query.message
    if isinstance(target, Message) and target.chat.type == "private":
        return target.chat.id
    return None
