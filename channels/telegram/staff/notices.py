"""Notices for managers: privately with a link to the client's topic, else in the topic.

Assignments, offers, clients' messages (``notify``), reminders, call tasks and
failed deliveries addressed to a manager go to their private chat with the bot,
with the buttons that act on them; a client's message comes with the client's
channel, stage and id, and which client each notice is about is remembered, so
that a reply to it answers them. One the bot cannot write to (never started,
blocked) is told in the client's topic instead. Notices for the staff go to the
client's topic (an answer given outside it, ``answered``, among them), or to a
staff chat's general topic when they concern no client.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from aiogram import Bot
from aiogram.types import InlineKeyboardMarkup

from channels.telegram import render
from channels.telegram.staff.answering import message_id
from channels.telegram.staff.calls import Calls
from channels.telegram.staff.digests import Digests, Entry, Sent
from channels.telegram.staff.topics import Step, Topics
from hub.kernel import loggers
from hub.kernel.errors import DeliveryError, PermanentDeliveryError
from hub.kernel.ports import StaffDesk
from hub.kernel.texts import text
from hub.kernel.types import ClientCard, OutboundMessage, SendResult

__all__ = ["Notices"]

log = loggers.channels

_ICONS = {"assigned": "🆕", "delivery_failed": "⚠️", "reminder": "", "alert": "🔔"}
# Notices that carry a client's message: answered by a reply, acted on by buttons.
_ABOUT_MESSAGES = frozenset({"assigned", "notify", "offer"})


class _Notice(NamedTuple):
    """A private notice's messages, and what a digest's entry shows of it."""

    parts: list[str]
    label: str
    body: str
    facts: str | None


class Notices:
    """Delivers the staff kinds other than mirrors."""

    def __init__(self, desk: StaffDesk, topics: Topics, calls: Calls, *, language: str) -> None:
        self.desk = desk
        self.topics = topics
        self.calls = calls
        self.language = language
        self.digests = Digests(desk, calls)

    async def send(self, bot: Bot, message: OutboundMessage) -> SendResult:
        """To the recipient: a manager's Telegram id, a staff chat (negative), or
        ``staff``; a failed delivery is always shown in the client's topic too."""
        recipient = message.recipient.strip()
        digits = recipient.lstrip("-")
        target = int(recipient) if digits.isascii() and digits.isdigit() else None
        if target is not None and target < 0:
            return await self._general(bot, target, message)
        if target is not None and message.kind != "delivery_failed":
            return await self._private(bot, target, message)
        # For the staff ("staff"), or a failed delivery, which the client's topic shows
        # whoever else is told.
        if message.client_id is None:
            if not self.topics.chats:
                raise PermanentDeliveryError("no staff chat is configured")
            return await self._general(bot, self.topics.chats[0], message)
        result = await self._in_topic(bot, message, None)
        if target is not None:
            await self._private(bot, target, message, best_effort=True)
        return result

    async def _private(
        self, bot: Bot, chat: int, message: OutboundMessage, *, best_effort: bool = False
    ) -> SendResult:
        """To a manager's private chat with the bot, with a link to the client's topic.
        A manager the bot cannot write to is told in the client's topic instead."""
        manager = await self.desk.manager(chat)
        language = (manager.language if manager else None) or self.language
        try:
            sent = await self._post_private(bot, chat, message, language)
        except DeliveryError as exc:
            if best_effort:
                loggers.event(log, "staff.private_failed", chat=chat, error=exc.reason)
                return SendResult(None)
            if not isinstance(exc, PermanentDeliveryError) or message.client_id is None:
                raise
            # Never opened the chat with the bot, or blocked it.
            loggers.event(
                log, "staff.private_refused", logging.WARNING, chat=chat, error=exc.reason
            )
            return await self._in_topic(bot, message, manager.name if manager else str(chat))
        if sent.alone:
            await self._remember(chat, sent.result, message)
        return sent.result

    async def _post_private(
        self, bot: Bot, chat: int, message: OutboundMessage, language: str
    ) -> Sent:
        """A client's message goes alone when the chat has budget, else in a digest."""
        if message.kind in _ABOUT_MESSAGES and message.client_id is not None:
            return await self.digests.send(
                bot, chat, message, lambda: self._entry(message, language), language
            )
        parts = (await self._private_html(message, language)).parts
        keyboard = _keyboard(message, language)
        result = await self.calls.say(bot, chat, None, parts, keyboard=keyboard, strict=True)
        return Sent(result, alone=True)

    async def _remember(self, chat: int, result: SendResult, message: OutboundMessage) -> None:
        """A notice about a client is answered by replying to it: remember whom it is
        about. It was sent: a failure here is logged, not retried (that would send it
        again), and a reply to it is told it is about no client."""
        posted = message_id(result)
        if message.client_id is None or posted is None:
            return
        try:
            await self.desk.remember_private(
                chat, posted, message.client_id, message.conversation_id
            )
        except Exception as exc:  # the database's own errors: the desk does not wrap them
            loggers.event(
                log, "staff.private_unmapped", logging.WARNING, chat=chat, error=repr(exc)[:200]
            )

    async def _entry(self, message: OutboundMessage, language: str) -> Entry:
        """A notice about a client's message: alone, and as a digest's entry."""
        assert message.client_id is not None
        notice = await self._private_html(message, language)
        icon = _ICONS.get(message.kind, "💬") if message.kind != "offer" else "📨"
        headline = " · ".join(filter(None, [f"{icon} {notice.label}", notice.facts]))
        return Entry(
            message.client_id,
            message.conversation_id,
            notice.parts,
            _keyboard(message, language),
            headline,
            notice.body,
            notice.label,
        )

    async def _private_html(self, message: OutboundMessage, language: str) -> _Notice:
        """A bold headline naming the client, the text, a link to the client's topic."""
        client_id = message.client_id
        card = await self.desk.card(client_id) if client_id is not None else None
        topic = await self.desk.topic_of(client_id) if client_id is not None else None
        label = render.client_label(card, client_id) if client_id is not None else ""
        if message.kind == "assigned":
            headline = text("assigned_to_you", language, client=label)
        elif message.kind == "offer" and label:
            headline = text("offered_to_you", language, client=label)
        elif label:
            icon = _ICONS.get(message.kind, "🔔")
            headline = f"{icon} {text('staff_notice', language, client=label)}".strip()
        else:
            headline = "hub"
        body = render.clip(message.text, 1500)
        if message.subject and message.kind in ("assigned", "offer"):
            body = f"{message.subject}\n{body}"
        facts = render.private_facts(card, _came_by(card), language) if card else None
        parts = render.notice_html(headline, body, topic, language, facts=facts)
        return _Notice(parts, label, body, facts)

    async def _in_topic(
        self, bot: Bot, message: OutboundMessage, addressee: str | None
    ) -> SendResult:
        steps = [self._step(message, addressee)]
        return await self.topics.post(bot, message, steps, channel=None, coalesce=False)

    async def _general(self, bot: Bot, chat: int, message: OutboundMessage) -> SendResult:
        step = self._step(message, None)
        return await self.calls.say(bot, chat, None, [step.html], strict=True)

    def _step(self, message: OutboundMessage, addressee: str | None) -> Step:
        """A notice as one message: its icon, whom it is for, its text."""
        if message.kind == "answered":
            return Step(self._answered_html(message))
        if message.kind == "assigned" and addressee:
            body = text("assigned_to", self.language, manager=addressee)
        else:
            body = (
                " ".join(message.text.split())
                if message.kind == "delivery_failed"
                else message.text
            )
            body = f"{addressee}: {body}" if addressee else body
        icon = _ICONS.get(message.kind, "🔔")
        return Step(f"{icon} {render.escape(render.clip(body, 4000))}".strip())

    def _answered_html(self, message: OutboundMessage) -> str:
        """A manager's answer (or note) given outside the topic: who, then what, and
        the names of its files."""
        extras = message.extras
        author = str(extras.get("author") or "")
        key = "noted_by" if extras.get("note") else "answered_by"
        files = [f"📎 {name}" for name in extras.get("files") or ()]
        body = "\n".join([render.clip(message.text, 3500), *files]).strip()
        head = f"<b>{render.escape(text(key, self.language, manager=author))}</b>"
        return f"{head}\n{render.escape(body)}" if body else head


def _came_by(card: ClientCard) -> str | None:
    """The channel of the client's latest message the card shows."""
    return next((c.channel for c in reversed(card.last_contacts) if c.direction == "in"), None)


def _keyboard(message: OutboundMessage, language: str) -> InlineKeyboardMarkup | None:
    """The buttons that act on the notice: on a client's message take (an offer's
    accept), resolve, the card, transfer and remind; a call task's outcomes; a
    delivered reminder's done and snooze (its id and firing in extras)."""
    if message.kind in _ABOUT_MESSAGES and message.client_id is not None:
        return render.private_keyboard(message.client_id, language, offer=message.kind == "offer")
    task = message.extras.get("call_task")
    if message.kind == "call_task" and isinstance(task, int):
        return render.call_keyboard(task, language)
    reminder, fired = message.extras.get("reminder"), message.extras.get("fired")
    if message.kind == "reminder" and isinstance(reminder, int) and isinstance(fired, int):
        return render.reminder_keyboard(reminder, fired, language)
    return None
