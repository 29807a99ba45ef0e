"""Clients' topics in the staff forum: opened with the card when needed, posted into in turn.

A topic is opened (createForumTopic) on the first post for a client, in the
staff chat that can take it soonest, and the client card with its buttons is
posted first: with the client's words so far in the same message when they fit.
A topic someone deleted is opened anew, one a manager closed is reopened
(reopenForumTopic). Every one of these calls spends the chat's budget (pacing.py).
A post the chat cannot take within ``max_wait`` is deferred to the dispatcher
with ``retry_after`` and holds its place in the chat's line, so that the oldest
work goes first.
"""

from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.methods import CreateForumTopic, ReopenForumTopic, SendDocument, SendMessage
from aiogram.methods.base import TelegramMethod
from aiogram.types import BufferedInputFile, Message

from channels.telegram import render
from channels.telegram.errors import TopicClosed, TopicGone
from channels.telegram.outbound import MEDIA_METHODS, media_kind
from channels.telegram.staff.calls import HTML, NO_PREVIEW, Calls, LastPosts, Posted
from channels.telegram.staff.pacing import Pacer, Turn
from hub.kernel import loggers
from hub.kernel.errors import PermanentDeliveryError, TemporaryDeliveryError
from hub.kernel.ports import RecentSend, RecentSends, StaffDesk
from hub.kernel.types import (
    STAFF_KINDS,
    ClientCard,
    OutboundMessage,
    SendResult,
    StoredAttachment,
    Topic,
)

__all__ = ["Step", "Topics"]

log = loggers.channels

MethodOf = Callable[[], TelegramMethod[Message]]
_POSTED = re.compile(r"(-?\d+):\d+")  # what a staff post answers: chat:message
_PART = 4000  # characters of a message part, a little less than Telegram's 4096
COME_BACK = 30.0  # seconds deferred work waits at most before it plans again


@dataclass(frozen=True, slots=True)
class Step:
    """One message of a post: text (HTML), or a file with an optional caption."""

    html: str
    header: str = ""
    file: StoredAttachment | None = None


@dataclass(slots=True)
class _Plan:
    """What a post into a client's topic still takes, and in which chat."""

    chat: int
    wait: float  # seconds before the chat could take all of it
    needed: int  # messages: the topic, the card, the steps not yet posted
    posted: list[int]  # message ids of the steps an earlier attempt posted
    remaining: Sequence[Step]
    card_due: bool
    card: ClientCard | None  # read when the card is due
    merged: bool  # the card and the first step go as one message


class Topics:
    """Posts into clients' topics, spread over ``chats`` (the staff chats): a new topic
    goes to the chat that can take it soonest, then the one this process opened fewest
    in. ``coalesce_for`` is kept for the callers' sake: no post is appended to an
    earlier one by an edit any more, which would cost as much as a post of its own
    (mirror.py gathers a client's waiting mirrors into one post instead)."""

    def __init__(
        self,
        desk: StaffDesk,
        calls: Calls,
        *,
        chats: Sequence[int],
        language: str,
        tz: ZoneInfo,
        coalesce_for: float,
    ) -> None:
        self.desk = desk
        self.calls = calls
        self.pacer: Pacer = calls.pacer
        self.last: LastPosts = calls.last
        self.chats = list(chats)
        self.staff_chats = frozenset(self.chats)
        self.language = language
        self.tz = tz
        self.coalesce_for = coalesce_for
        self._patience = calls.max_wait + self.pacer.gap
        self._needs_card: set[int] = set()
        self._opened: dict[int, int] = dict.fromkeys(self.chats, 0)
        self._progress: OrderedDict[int, list[int]] = OrderedDict()  # outbox id: posted

    async def post(
        self,
        bot: Bot,
        message: OutboundMessage,
        steps: Sequence[Step],
        *,
        channel: str | None,
        coalesce: bool,
    ) -> SendResult:
        """Post into the client's topic, opening it (with the card) when there is none,
        and again when someone deleted it. ``coalesce``: a mirror (a client's message)."""
        client_id = message.client_id
        assert client_id is not None
        for _ in range(2):
            topic = await self.desk.topic_of(client_id)
            if topic is not None and topic.chat_id not in self.staff_chats:
                # That chat is no staff chat any more: managers would not be heard there.
                await self._forget(client_id, topic, message)
                topic = None
            try:
                return await self._post(bot, message, topic, steps, channel, coalesce)
            except TopicGone:
                await self._forget(client_id, await self.desk.topic_of(client_id), message)
        raise TemporaryDeliveryError("the client's topic disappeared while posting")

    async def _forget(self, client_id: int, topic: Topic | None, message: OutboundMessage) -> None:
        """The client's topic is gone: the next post opens a new one, with the card."""
        loggers.event(
            log,
            "staff.topic_gone",
            logging.WARNING,
            client=client_id,
            chat=topic.chat_id if topic else None,
            thread=topic.thread_id if topic else None,
        )
        await self.desk.forget_topic(client_id)
        if topic is not None:
            self.last.drop(topic)
        self._progress.pop(message.outbox_id, None)

    def spent(self, recent: RecentSends) -> None:
        """What the bot posted in the last minute spends the chats' budgets: each staff
        message (counted once, however many it carried) in the chat it went to, or
        could have gone to, as many messages as its text's parts and files could take;
        each topic opened, two (its creation and the card)."""
        ages: dict[int, list[float]] = {}
        seen: set[str] = set()
        for send in recent.sends:
            if send.kind not in STAFF_KINDS or send.external_id in seen:
                continue
            if send.external_id is not None:
                seen.add(send.external_id)
            posts = math.ceil((send.length + 300) / _PART) + send.files
            for chat in self._went_to(send):
                ages.setdefault(chat, []).extend([send.age] * posts)
        # The card follows the topic's creation within the turn's patience.
        lag = self._patience + self.pacer.gap
        for topic in recent.topics:
            ages.setdefault(topic.chat_id, []).extend([max(topic.age - lag, 0.0)] * 2)
        for chat, chat_ages in ages.items():
            self.pacer.seed(chat, chat_ages)
        loggers.event(
            log, "staff.budgets_seeded", chats=len(ages), posts=sum(map(len, ages.values()))
        )

    def _went_to(self, send: RecentSend) -> list[int]:
        """The chat a sent staff message is in (its external id says), else those one
        not recorded could be in: the manager's private chat, the client's topic, or
        (not knowing) every staff chat."""
        posted = _POSTED.fullmatch(send.external_id or "")
        if posted is not None:
            return [int(posted.group(1))]
        chats = [send.topic_chat] if send.topic_chat is not None else []
        recipient = send.recipient.strip()
        if recipient.lstrip("-").isascii() and recipient.lstrip("-").isdigit():
            chats.append(int(recipient))
        return chats or list(self.chats)

    async def _plan(
        self, message: OutboundMessage, topic: Topic | None, steps: Sequence[Step], mirror: bool
    ) -> _Plan:
        """What the post takes. A topic opens with the card and, in the same message when
        they fit, the client's words so far (a mirror's first text, which carries the
        client's waiting mirrors): two posts of the chat's budget, not three."""
        assert message.client_id is not None
        posted = self._progress.get(message.outbox_id, [])
        remaining = steps[len(posted) :]
        card_due = topic is None or message.client_id in self._needs_card
        card = await self.desk.card(message.client_id) if card_due else None
        merged = (
            mirror
            and card is not None
            and bool(remaining)
            and remaining[0].file is None
            and render.visible_len(self._card_with(card, remaining[0].html)) <= render.MESSAGE_LIMIT
        )
        needed = (topic is None) + (card_due and not merged) + len(remaining)
        work = message.outbox_id
        if topic is None:
            chat, wait = self._pick_chat(needed, work)
        else:
            chat, wait = topic.chat_id, self.pacer.estimate(topic.chat_id, needed, work)
        return _Plan(chat, wait, needed, posted, remaining, card_due, card, merged)

    def _card_with(self, card: ClientCard, history: str) -> str:
        return render.card_with_history(render.card_html(card, self.language, self.tz), history)

    def _pick_chat(self, steps: int, work: int) -> tuple[int, float]:
        if not self.chats:
            raise PermanentDeliveryError("no staff chat is configured")
        return min(
            ((chat, self.pacer.estimate(chat, steps, work)) for chat in self.chats),
            key=lambda pair: (pair[1] > 0, pair[1], self._opened.get(pair[0], 0)),
        )

    async def _post(
        self,
        bot: Bot,
        message: OutboundMessage,
        topic: Topic | None,
        steps: Sequence[Step],
        channel: str | None,
        coalesce: bool,
    ) -> SendResult:
        plan = await self._plan(message, topic, steps, coalesce)
        work = message.outbox_id
        if plan.wait > self.calls.max_wait:
            self._hold(plan.chat, work, plan.needed, plan.wait)
            # Back within COME_BACK seconds however long the line: it plans again then
            # (cheap), and after a restart, which forgets the line, nothing sleeps long.
            raise TemporaryDeliveryError(
                f"staff chat {plan.chat} is over its budget",
                retry_after=min(plan.wait, COME_BACK),
            )
        try:
            async with self.pacer.turn(plan.chat, plan.needed, self._patience, work) as turn:
                topic = await self._post_in_turn(bot, turn, message, topic, plan, channel, coalesce)
        except TemporaryDeliveryError as exc:
            if exc.retry_after is not None:
                self._hold(plan.chat, work, plan.needed, exc.retry_after)
            raise
        self._progress.pop(message.outbox_id, None)
        loggers.event(
            log,
            "staff.posted",
            kind=message.kind,
            outbox=message.outbox_id,
            client=message.client_id,
            chat=topic.chat_id,
            thread=topic.thread_id,
            messages=len(plan.posted),
        )
        return SendResult(f"{topic.chat_id}:{plan.posted[0]}" if plan.posted else None)

    def _hold(self, chat: int, work: int, steps: int, after: float) -> None:
        """Deferred work keeps its place in the chat's line (oldest first)."""
        self.pacer.hold(chat, work, steps, after)
        loggers.event(
            log,
            "staff.held",
            logging.DEBUG,
            outbox=work,
            chat=chat,
            posts=steps,
            after=f"{after:.1f}",
        )

    async def _post_in_turn(
        self,
        bot: Bot,
        turn: Turn,
        message: OutboundMessage,
        topic: Topic | None,
        plan: _Plan,
        channel: str | None,
        mirror: bool,
    ) -> Topic:
        """The topic (opened when there is none), the card when due, then the steps an
        earlier attempt did not post; each posted step is remembered for a retry."""
        client_id = message.client_id
        assert client_id is not None
        if topic is None:
            topic = await self._open_topic(bot, turn, client_id, plan.card, channel)
        remaining = plan.remaining
        if client_id in self._needs_card:
            card = plan.card or await self.desk.card(client_id)
            if card is not None and plan.merged:
                sent = await self._post_card(bot, turn, topic, card, remaining[0].html)
                self._posted(message, plan, sent)
                remaining = remaining[1:]
            elif card is not None:
                await self._post_card(bot, turn, topic, card)
            self._needs_card.discard(client_id)
        for step in remaining:
            sent = await self._post_step(bot, turn, topic, step, mirror=mirror)
            self._posted(message, plan, sent)
        return topic

    def _posted(self, message: OutboundMessage, plan: _Plan, sent: Message) -> None:
        """A step went out: a retry does not post it again."""
        plan.posted.append(sent.message_id)
        self._progress[message.outbox_id] = plan.posted
        while len(self._progress) > 10_000:
            self._progress.popitem(last=False)

    async def _open_topic(
        self, bot: Bot, turn: Turn, client_id: int, card: ClientCard | None, channel: str | None
    ) -> Topic:
        name = render.topic_name(card, client_id, channel)
        created = await self.calls.request(
            bot, CreateForumTopic(chat_id=turn.chat, name=name), turn=turn
        )
        topic = Topic(turn.chat, created.message_thread_id)
        self._needs_card.add(client_id)
        await self.desk.save_topic(client_id, topic)
        self._opened[turn.chat] = self._opened.get(turn.chat, 0) + 1
        loggers.event(
            log,
            "staff.topic_opened",
            client=client_id,
            chat=topic.chat_id,
            thread=topic.thread_id,
        )
        return topic

    async def _post_card(
        self, bot: Bot, turn: Turn, topic: Topic, card: ClientCard, history: str = ""
    ) -> Message:
        """The card with its buttons, and below it the client's words so far if given."""
        html = (
            self._card_with(card, history)
            if history
            else render.card_html(card, self.language, self.tz)
        )
        sent = await self._in_topic(
            bot,
            turn,
            topic,
            lambda: SendMessage(
                chat_id=topic.chat_id,
                message_thread_id=topic.thread_id,
                text=html,
                parse_mode=HTML,
                reply_markup=render.card_keyboard(card.id, self.language),
                link_preview_options=NO_PREVIEW,
            ),
        )
        self.last.put(topic, Posted(sent.message_id, "", "", mirror=False))
        return sent

    async def _post_step(
        self, bot: Bot, turn: Turn, topic: Topic, step: Step, *, mirror: bool
    ) -> Message:
        if step.file is not None:
            return await self._post_file(bot, turn, topic, step, step.file)
        sent = await self._in_topic(
            bot,
            turn,
            topic,
            lambda: SendMessage(
                chat_id=topic.chat_id,
                message_thread_id=topic.thread_id,
                text=step.html,
                parse_mode=HTML,
                link_preview_options=NO_PREVIEW,
            ),
        )
        self.last.put(
            topic, Posted(sent.message_id, step.html, step.header, mirror, self.pacer.monotonic())
        )
        return sent

    async def _post_file(
        self, bot: Bot, turn: Turn, topic: Topic, step: Step, file: StoredAttachment
    ) -> Message:
        """As a photo, voice or video when it is one, else (or when Telegram will not
        take it as such) as a document."""
        data = await self.desk.attachment_bytes(file.sha256)
        upload = BufferedInputFile(data, filename=file.filename or "file")

        def media(kind: str) -> MethodOf:
            method, field = MEDIA_METHODS[kind]
            return lambda: method(
                chat_id=topic.chat_id,
                message_thread_id=topic.thread_id,
                caption=step.html or None,
                parse_mode=HTML,
                **{field: upload},
            )

        kind = media_kind(file.content_type, file.size)
        try:
            sent = await self._in_topic(bot, turn, topic, media(kind))
        except (TopicGone, TopicClosed):
            raise
        except PermanentDeliveryError as exc:
            if MEDIA_METHODS[kind][0] is SendDocument:
                raise
            # A photo Telegram cannot process, a voice it will not take: as a file then.
            loggers.event(log, "staff.sent_as_document", sha256=file.sha256, error=exc.reason)
            sent = await self._in_topic(bot, turn, topic, media("document"))
        self.last.put(topic, Posted(sent.message_id, "", step.header, mirror=False))
        return sent

    async def _in_topic(self, bot: Bot, turn: Turn, topic: Topic, method: MethodOf) -> Message:
        """Send into the topic; a topic a manager closed is reopened once."""
        try:
            return await self.calls.request(bot, method(), turn=turn)
        except TopicClosed:
            await self.calls.request(
                bot,
                ReopenForumTopic(chat_id=topic.chat_id, message_thread_id=topic.thread_id),
                turn=turn,
            )
            loggers.event(log, "staff.topic_reopened", chat=topic.chat_id, thread=topic.thread_id)
            return await self.calls.request(bot, method(), turn=turn)
