"""The managers' side of the Telegram channel: the staff forum and private chats.

A client's topic is opened on their first mirrored message (createForumTopic,
then the client card with its inline buttons), every mirror is posted there
(sendMessage, sendPhoto, sendVoice, sendVideo, sendDocument), and what
managers write in the topic becomes an answer to the client, an internal note
or a command through the :class:`~hub.kernel.ports.StaffDesk`. Buttons are answered
with answerCallbackQuery and refresh the card with editMessageText; files
managers send are fetched with getFile and the file download URL. Private
notices (assigned, reminder, delivery failed) go to the manager's chat with the
bot, where ``/inbox`` and ``/find`` answer too, and ``/report week`` (or
``month``) answers with a short summary and the charts as photos (sendPhoto).

Telegram lets a bot post about 20 messages a minute into a group and one a
second into any chat. :class:`Pacer` keeps those budgets per chat; when a
group's budget is spent, a text mirror is appended to the client's last mirror
(an edit, which costs nothing), else the send is deferred with ``retry_after``
so the dispatcher tries again when there is room. Only registered managers are
obeyed; anyone else is refused through the desk, which records the attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramRetryAfter
from aiogram.methods import (
    AnswerCallbackQuery,
    CreateForumTopic,
    EditMessageText,
    ReopenForumTopic,
    SendDocument,
    SendMessage,
    SendPhoto,
)
from aiogram.methods.base import TelegramMethod
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    Update,
)

from channels.telegram import commands, inbound, render
from channels.telegram.errors import TopicClosed, TopicGone, delivery_error
from channels.telegram.outbound import MEDIA_METHODS, media_kind
from hub.config import TelegramSection
from hub.kernel import loggers
from hub.kernel.clock import Clock, SystemClock
from hub.kernel.errors import (
    DeliveryError,
    HubError,
    PermanentDeliveryError,
    StorageUnavailable,
    TemporaryDeliveryError,
)
from hub.kernel.ports import CampaignDesk, ReportDigest, StaffDesk, StaffReports
from hub.kernel.texts import text
from hub.kernel.types import (
    Attachment,
    ClientCard,
    ManagerRef,
    OutboundMessage,
    SendResult,
    StoredAttachment,
    Topic,
)

log = loggers.channels
T = TypeVar("T")

HTML = "HTML"
ACTIONS = frozenset({"take", "resolve", "reopen", "transfer", "tag", "stage", "remind"})
UPLOAD_LIMIT = 50 * 1024 * 1024  # what a bot may upload (sendDocument)
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
_NOTICE_ICONS = {"assigned": "🆕", "delivery_failed": "⚠️", "reminder": "", "alert": "🔔"}
_OTHER_CONTENT = ("sticker", "contact", "location", "venue", "poll", "dice")
_FILE_KINDS = ("photo", "document", "voice", "video", "audio", "animation", "video_note")


# -- pacing ---------------------------------------------------------------------


@dataclass(slots=True)
class _ChatPace:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    done: deque[float] = field(default_factory=deque)  # when recent sends completed
    last: float = -math.inf
    paused_until: float = -math.inf
    queued: int = 0  # sends promised by turns waiting for or holding the lock


class Pacer:
    """Send budgets per chat: one send at a time, ``gap`` seconds apart, and into a
    group (negative chat id) at most ``group[0]`` sends in any ``group[1]`` seconds.

    Times are taken when a request completes, never before it is made: Telegram
    counts a request when it receives it, which is earlier, so a sender paced
    here never exceeds a limit there.
    """

    def __init__(
        self,
        *,
        gap: float = 1.05,
        group: tuple[int, float] | None = (20, 60.5),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gap = gap
        self.group = group
        self.monotonic = monotonic
        self._chats: dict[int, _ChatPace] = {}

    def _pace(self, chat: int) -> _ChatPace:
        pace = self._chats.get(chat)
        if pace is None:
            pace = self._chats[chat] = _ChatPace()
        return pace

    def _window_wait(self, chat: int, pace: _ChatPace, now: float, steps: int) -> float:
        if self.group is None or chat >= 0:
            return 0.0
        count, period = self.group
        while pace.done and pace.done[0] <= now - period:
            pace.done.popleft()
        over = len(pace.done) + steps - count
        if over <= 0:
            return 0.0
        if over > len(pace.done):
            return period
        return pace.done[over - 1] + period - now

    def estimate(self, chat: int, steps: int = 1) -> float:
        """Seconds before ``steps`` more sends could start, after those already in line."""
        pace, now = self._pace(chat), self.monotonic()
        start = max(0.0, max(pace.last + self.gap, pace.paused_until) - now)
        start += pace.queued * self.gap
        return max(start, self._window_wait(chat, pace, now, pace.queued + steps))

    def next_slot(self, chat: int) -> float:
        """Seconds before the next single send may start (inside a turn)."""
        pace, now = self._pace(chat), self.monotonic()
        start = max(0.0, max(pace.last + self.gap, pace.paused_until) - now)
        return max(start, self._window_wait(chat, pace, now, 1))

    def sent(self, chat: int, *, promised: bool = False) -> None:
        """A send completed now (``promised``: one a turn announced)."""
        pace, now = self._pace(chat), self.monotonic()
        pace.done.append(now)
        pace.last = now
        if promised:
            pace.queued -= 1

    def pause(self, chat: int, seconds: float) -> None:
        """Telegram said to wait (``retry_after``)."""
        pace = self._pace(chat)
        pace.paused_until = max(pace.paused_until, self.monotonic() + seconds)

    @contextlib.asynccontextmanager
    async def turn(self, chat: int, steps: int, patience: float) -> AsyncIterator[_Turn]:
        """Hold the chat for ``steps`` sends (announced at once, so others see the line);
        a send that would wait longer than ``patience`` raises TemporaryDeliveryError."""
        pace = self._pace(chat)
        pace.queued += steps
        handle = _Turn(self, chat, steps, patience)
        try:
            async with pace.lock:
                yield handle
        finally:
            pace.queued -= handle.left


class _Turn:
    """The sends one caller makes into a chat while it holds the chat."""

    __slots__ = ("chat", "left", "pacer", "patience")

    def __init__(self, pacer: Pacer, chat: int, steps: int, patience: float) -> None:
        self.pacer = pacer
        self.chat = chat
        self.left = steps
        self.patience = patience

    async def ready(self) -> None:
        while (wait := self.pacer.next_slot(self.chat)) > 0:
            if wait > self.patience:
                raise TemporaryDeliveryError(f"chat {self.chat} is busy", retry_after=wait)
            await asyncio.sleep(wait)

    def spent(self) -> None:
        self.pacer.sent(self.chat, promised=self.left > 0)
        self.left = max(self.left - 1, 0)


# -- what is posted -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Step:
    """One message of a mirror: text (HTML), or a file with an optional caption."""

    html: str
    header: str = ""
    file: StoredAttachment | None = None


@dataclass(slots=True)
class _Posted:
    """The bot's latest message in a topic; a recent text mirror can take more text."""

    message_id: int
    html: str
    header: str
    mirror: bool
    at: float = 0.0  # monotonic time it was posted


def _reminder_keyboard(message: OutboundMessage, language: str) -> InlineKeyboardMarkup | None:
    """Done and snooze buttons for a delivered reminder (its id and firing in extras)."""
    reminder, fired = message.extras.get("reminder"), message.extras.get("fired")
    if message.kind != "reminder" or not isinstance(reminder, int) or not isinstance(fired, int):
        return None
    return render.reminder_keyboard(reminder, fired, language)


def _has_content(message: Message) -> bool:
    """What a person wrote or sent (not a service message: topic created, member joined)."""
    return bool(message.text or message.caption) or any(
        getattr(message, kind, None) for kind in (*_FILE_KINDS, *_OTHER_CONTENT)
    )


def _summary(message: Message) -> str:
    body = message.text or message.caption or ""
    if not body:
        body = next((f"[{kind}]" for kind in _FILE_KINDS if getattr(message, kind, None)), "")
    return " ".join(body.split())[:80]


class StaffSide:
    """The :class:`~channels.telegram.base.StaffSurface` over a :class:`StaffDesk`.

    New topics are spread over ``staff_chat_id`` and ``extra_staff_chat_ids``: the
    chat that can take them soonest, then the one this process opened fewest in.
    ``max_wait`` is how long a send may wait in line for its chat before it is
    deferred to the dispatcher with ``retry_after``; a text mirror is appended to
    the client's last mirror only while that is at most ``coalesce_for`` seconds old.
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
    ) -> None:
        self.desk = desk
        self.reports = reports
        self.campaigns = campaigns
        self.language = language
        self.tz = ZoneInfo(timezone)
        self.clock: Clock = clock or SystemClock()
        self.pacer = pacer or Pacer()
        self.max_wait = max_wait
        self.coalesce_for = coalesce_for
        self._patience = max_wait + self.pacer.gap
        chats = [config.staff_chat_id, *config.extra_staff_chat_ids]
        self.chats: list[int] = list(dict.fromkeys(c for c in chats if c is not None))
        self._staff_chats = frozenset(self.chats)
        self._client_locks: weakref.WeakValueDictionary[int, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._last: OrderedDict[Topic, _Posted] = OrderedDict()
        self._needs_card: set[int] = set()
        self._opened: dict[int, int] = dict.fromkeys(self.chats, 0)
        self._progress: OrderedDict[int, list[int]] = OrderedDict()
        self._deferred: dict[int, dict[int, float]] = {}  # client: {outbox id: when due}
        self._channels: OrderedDict[int, str | None] = OrderedDict()
        self._is_manager: OrderedDict[int, tuple[bool, float]] = OrderedDict()

    # -- StaffSurface -------------------------------------------------------------

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
            await self._button(bot, update.callback_query)
            return
        message = update.message
        if message is None or message.from_user is None:
            return  # edits of staff messages change nothing already sent
        if message.chat.id in self._staff_chats:
            await self._in_group(bot, message)
        elif message.chat.type == "private":
            await self._in_private(bot, message)

    async def send(self, bot: Bot, message: OutboundMessage) -> SendResult:
        if message.kind == "mirror":
            return await self._mirror(bot, message)
        recipient = message.recipient.strip()
        target = int(recipient) if recipient.lstrip("-").isdigit() else None
        if target is not None and target < 0:
            return await self._general_notice(bot, target, message)
        if target is not None and message.kind != "delivery_failed":
            return await self._private_notice(bot, target, message)
        # For the staff ("staff"), or a failed delivery, which the client's topic shows
        # whoever else is told.
        if message.client_id is None:
            if not self.chats:
                raise PermanentDeliveryError("no staff chat is configured")
            return await self._general_notice(bot, self.chats[0], message)
        result = await self._topic_notice(bot, message, None)
        if target is not None:
            await self._private_notice(bot, target, message, best_effort=True)
        return result

    # -- mirrors ------------------------------------------------------------------

    def _client_lock(self, client_id: int) -> asyncio.Lock:
        lock = self._client_locks.get(client_id)
        if lock is None:
            lock = asyncio.Lock()
            self._client_locks[client_id] = lock
        return lock

    async def _mirror(self, bot: Bot, message: OutboundMessage) -> SendResult:
        if message.client_id is None:
            raise PermanentDeliveryError("a mirror names no client")
        async with self._client_lock(message.client_id):
            try:
                self._keep_order(message)
                channel = await self._channel_of(message)
                steps = await self._mirror_steps(message, channel)
                result = await self._to_topic(bot, message, steps, channel=channel, coalesce=True)
            except TemporaryDeliveryError as exc:
                self._defer(message, exc.retry_after)
                raise
            self._undefer(message)
            return result

    def _keep_order(self, message: OutboundMessage) -> None:
        """A client's mirrors go out in order: while an earlier one waits, so does this."""
        assert message.client_id is not None
        waiting = self._deferred.get(message.client_id)
        if not waiting:
            return
        now = self.pacer.monotonic()
        for outbox_id, due in list(waiting.items()):
            if due < now:
                # Late (or given up on, or sent by another instance): wait no longer
                # for it, so that nothing burns its attempts behind it.
                del waiting[outbox_id]
        earlier = [due for outbox_id, due in waiting.items() if outbox_id < message.outbox_id]
        if earlier:
            raise TemporaryDeliveryError(
                "an earlier message of this client is waiting",
                retry_after=max(max(earlier) - now, 0.0) + 0.05,
            )

    def _defer(self, message: OutboundMessage, retry_after: float | None) -> None:
        """Later mirrors of the client wait for this one, when it is known when it is due
        (without ``retry_after`` the dispatcher's backoff decides, unknown here)."""
        assert message.client_id is not None
        loggers.event(
            log,
            "staff.deferred",
            outbox=message.outbox_id,
            client=message.client_id,
            retry_after="-" if retry_after is None else f"{retry_after:.2f}",
        )
        if retry_after is None:
            return
        now = self.pacer.monotonic()
        if len(self._deferred) > 10_000:
            self._deferred = {
                client: waiting
                for client, waiting in self._deferred.items()
                if any(due >= now for due in waiting.values())
            }
        self._deferred.setdefault(message.client_id, {})[message.outbox_id] = now + retry_after

    def _undefer(self, message: OutboundMessage) -> None:
        assert message.client_id is not None
        waiting = self._deferred.get(message.client_id)
        if waiting is not None:
            waiting.pop(message.outbox_id, None)
            if not waiting:
                del self._deferred[message.client_id]

    async def _channel_of(self, message: OutboundMessage) -> str | None:
        """The channel the mirrored message came by (stable per conversation)."""
        given = message.extras.get("channel") if message.extras else None
        if isinstance(given, str):
            return given
        key = message.conversation_id
        if key is not None and key in self._channels:
            return self._channels[key]
        assert message.client_id is not None
        card = await self.desk.card(message.client_id)
        found = (
            next(
                (c.channel for c in reversed(card.last_contacts) if c.direction == "in"),
                None,
            )
            if card is not None
            else None
        )
        if key is not None:
            self._channels[key] = found
            while len(self._channels) > 10_000:
                self._channels.popitem(last=False)
        return found

    async def _mirror_steps(self, message: OutboundMessage, channel: str | None) -> list[_Step]:
        due = (
            await self.desk.deadline(message.conversation_id)
            if message.conversation_id is not None
            else None
        )
        when = due.astimezone(self.tz).strftime("%d.%m %H:%M") if due is not None else None
        header = render.mirror_header(channel, message.subject, when)
        files = (
            await self.desk.attachments(message.interaction_id)
            if message.interaction_id is not None
            else []
        )
        body = message.text
        sendable = [f for f in files if f.size <= UPLOAD_LIMIT]
        too_big = [
            text("file_too_big", self.language, name=f.filename, size=f"{f.size // 2**20} MB")
            for f in files
            if f.size > UPLOAD_LIMIT
        ]
        if too_big:
            body = "\n".join([body, *too_big]) if body else "\n".join(too_big)
        if sendable:
            caption = render.with_header(header, body, render.CAPTION_LIMIT)
            if len(caption) <= 1:
                first = _Step(caption[0] if caption else "", header, sendable[0])
                return [first, *(_Step("", header, f) for f in sendable[1:])]
        texts = render.with_header(header, body) or [header or "…"]
        return [
            *(_Step(part, header) for part in texts),
            *(_Step("", header, f) for f in sendable),
        ]

    def _notice_step(self, message: OutboundMessage, addressee: str | None) -> _Step:
        """A notice as one message: its icon, whom it is for, its text."""
        if message.kind == "assigned" and addressee:
            body = text("assigned_to", self.language, manager=addressee)
        else:
            body = (
                " ".join(message.text.split())
                if message.kind == "delivery_failed"
                else message.text
            )
            body = f"{addressee}: {body}" if addressee else body
        icon = _NOTICE_ICONS.get(message.kind, "🔔")
        return _Step(f"{icon} {render.escape(render.clip(body, 4000))}".strip())

    async def _to_topic(
        self,
        bot: Bot,
        message: OutboundMessage,
        steps: Sequence[_Step],
        *,
        channel: str | None,
        coalesce: bool,
    ) -> SendResult:
        """Post into the client's topic, opening it (with the card) when there is none,
        and again when someone deleted it."""
        client_id = message.client_id
        assert client_id is not None
        for _ in range(2):
            topic = await self.desk.topic_of(client_id)
            if topic is not None and topic.chat_id not in self._staff_chats:
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
            self._last.pop(topic, None)
        self._progress.pop(message.outbox_id, None)

    def _pick_chat(self, steps: int) -> tuple[int, float]:
        if not self.chats:
            raise PermanentDeliveryError("no staff chat is configured")
        return min(
            ((chat, self.pacer.estimate(chat, steps)) for chat in self.chats),
            key=lambda pair: (pair[1] > 0, pair[1], self._opened.get(pair[0], 0)),
        )

    async def _post(
        self,
        bot: Bot,
        message: OutboundMessage,
        topic: Topic | None,
        steps: Sequence[_Step],
        channel: str | None,
        coalesce: bool,
    ) -> SendResult:
        assert message.client_id is not None
        client_id = message.client_id
        posted = self._progress.get(message.outbox_id, [])
        remaining = steps[len(posted) :]
        card_due = topic is None or client_id in self._needs_card
        needed = (topic is None) + card_due + len(remaining)
        if topic is None:
            chat, wait = self._pick_chat(needed)
        else:
            chat, wait = topic.chat_id, self.pacer.estimate(topic.chat_id, needed)
        if (
            wait > 0
            and coalesce
            and topic is not None
            and not card_due
            and not posted
            and len(steps) == 1
            and steps[0].file is None
        ):
            merged = await self._coalesce(bot, topic, steps[0], message)
            if merged is not None:
                return merged
        if wait > self.max_wait:
            raise TemporaryDeliveryError(f"staff chat {chat} is over its budget", retry_after=wait)
        async with self.pacer.turn(chat, needed, self._patience) as turn:
            if topic is None:
                topic = await self._open_topic(bot, turn, client_id, channel)
            if client_id in self._needs_card:
                card = await self.desk.card(client_id)
                if card is not None:
                    await self._post_card(bot, turn, topic, card)
                self._needs_card.discard(client_id)
            for step in remaining:
                sent = await self._post_step(bot, turn, topic, step, mirror=coalesce)
                posted.append(sent.message_id)
                self._progress[message.outbox_id] = posted
                while len(self._progress) > 10_000:
                    self._progress.popitem(last=False)
        self._progress.pop(message.outbox_id, None)
        loggers.event(
            log,
            "staff.posted",
            kind=message.kind,
            outbox=message.outbox_id,
            client=client_id,
            chat=topic.chat_id,
            thread=topic.thread_id,
            messages=len(posted),
        )
        return SendResult(f"{topic.chat_id}:{posted[0]}" if posted else None)

    async def _open_topic(
        self, bot: Bot, turn: _Turn, client_id: int, channel: str | None
    ) -> Topic:
        card = await self.desk.card(client_id)
        name = render.topic_name(card, client_id, channel)
        created = await self._request(
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

    async def _post_card(self, bot: Bot, turn: _Turn, topic: Topic, card: ClientCard) -> Message:
        sent = await self._in_topic(
            bot,
            turn,
            topic,
            lambda: SendMessage(
                chat_id=topic.chat_id,
                message_thread_id=topic.thread_id,
                text=render.card_html(card, self.language, self.tz),
                parse_mode=HTML,
                reply_markup=render.card_keyboard(card.id, self.language),
                link_preview_options=_NO_PREVIEW,
            ),
        )
        self._posted(topic, _Posted(sent.message_id, "", "", mirror=False))
        return sent

    async def _post_step(
        self, bot: Bot, turn: _Turn, topic: Topic, step: _Step, *, mirror: bool
    ) -> Message:
        if step.file is None:
            sent = await self._in_topic(
                bot,
                turn,
                topic,
                lambda: SendMessage(
                    chat_id=topic.chat_id,
                    message_thread_id=topic.thread_id,
                    text=step.html,
                    parse_mode=HTML,
                    link_preview_options=_NO_PREVIEW,
                ),
            )
            self._posted(
                topic,
                _Posted(sent.message_id, step.html, step.header, mirror, self.pacer.monotonic()),
            )
            return sent
        file = step.file
        data = await self.desk.attachment_bytes(file.sha256)
        upload = BufferedInputFile(data, filename=file.filename or "file")
        caption = step.html or None
        thread = topic.thread_id

        as_document = False

        def media() -> TelegramMethod[Message]:
            kind = "document" if as_document else media_kind(file.content_type, file.size)
            method, field = MEDIA_METHODS[kind]
            return method(
                chat_id=topic.chat_id,
                message_thread_id=thread,
                caption=caption,
                parse_mode=HTML,
                **{field: upload},
            )

        try:
            sent = await self._in_topic(bot, turn, topic, media)
        except (TopicGone, TopicClosed):
            raise
        except PermanentDeliveryError as exc:
            if isinstance(media(), SendDocument):
                raise
            # A photo Telegram cannot process, a voice it will not take: as a file then.
            loggers.event(log, "staff.sent_as_document", sha256=file.sha256, error=exc.reason)
            as_document = True
            sent = await self._in_topic(bot, turn, topic, media)
        self._posted(topic, _Posted(sent.message_id, "", step.header, mirror=False))
        return sent

    async def _in_topic(
        self,
        bot: Bot,
        turn: _Turn,
        topic: Topic,
        method: Callable[[], TelegramMethod[Message]],
    ) -> Message:
        """Send into the topic; a topic a manager closed is reopened once."""
        try:
            return await self._request(bot, method(), turn=turn)
        except TopicClosed:
            await self._request(
                bot, ReopenForumTopic(chat_id=topic.chat_id, message_thread_id=topic.thread_id)
            )
            loggers.event(log, "staff.topic_reopened", chat=topic.chat_id, thread=topic.thread_id)
            return await self._request(bot, method(), turn=turn)

    async def _coalesce(
        self, bot: Bot, topic: Topic, step: _Step, message: OutboundMessage
    ) -> SendResult | None:
        """Append the text to the client's last mirror when it is the topic's latest
        message and has room: an edit costs none of the group's budget."""
        last = self._last.get(topic)
        if last is None or not last.mirror or self.pacer.monotonic() - last.at > self.coalesce_for:
            return None  # an edit of an older message would go unnoticed
        addition = step.html
        if step.header and step.header == last.header and step.html.startswith(step.header + "\n"):
            addition = step.html[len(step.header) + 1 :]
        merged = f"{last.html}\n\n{addition}"
        if render.visible_len(merged) > render.MESSAGE_LIMIT:
            return None
        try:
            await self._request(
                bot,
                EditMessageText(
                    chat_id=topic.chat_id,
                    message_id=last.message_id,
                    text=merged,
                    parse_mode=HTML,
                    link_preview_options=_NO_PREVIEW,
                ),
            )
        except PermanentDeliveryError as exc:
            # Deleted, or not editable any more: post it as a message of its own.
            self._last.pop(topic, None)
            loggers.event(log, "staff.coalesce_failed", outbox=message.outbox_id, error=exc.reason)
            return None
        last.html = merged
        loggers.event(
            log,
            "staff.coalesced",
            outbox=message.outbox_id,
            client=message.client_id,
            chat=topic.chat_id,
            message=last.message_id,
        )
        return SendResult(f"{topic.chat_id}:{last.message_id}")

    def _posted(self, topic: Topic, posted: _Posted) -> None:
        self._last[topic] = posted
        self._last.move_to_end(topic)
        while len(self._last) > 5_000:
            self._last.popitem(last=False)

    async def _request(
        self, bot: Bot, method: TelegramMethod[T], *, turn: _Turn | None = None
    ) -> T:
        """One Bot API call; inside a turn it waits for its slot and spends it."""
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
                turn.spent()

    # -- private and general notices ------------------------------------------------

    async def _private_notice(
        self, bot: Bot, chat: int, message: OutboundMessage, *, best_effort: bool = False
    ) -> SendResult:
        """To a manager's private chat with the bot, with a link to the client's topic.
        A manager the bot cannot write to is told in the client's topic instead."""
        manager = await self.desk.manager(chat)
        language = (manager.language if manager else None) or self.language
        client_id = message.client_id
        card = await self.desk.card(client_id) if client_id is not None else None
        topic = await self.desk.topic_of(client_id) if client_id is not None else None
        label = render.client_label(card, client_id) if client_id is not None else ""
        if message.kind == "assigned":
            headline = text("assigned_to_you", language, client=label)
        elif message.kind == "offer" and label:
            headline = text("offered_to_you", language, client=label)
        elif label:
            icon = _NOTICE_ICONS.get(message.kind, "🔔")
            headline = f"{icon} {text('staff_notice', language, client=label)}".strip()
        else:
            headline = "hub"
        body = render.clip(message.text, 1500)
        if message.subject and message.kind in ("assigned", "offer"):
            body = f"{message.subject}\n{body}"
        parts = render.notice_html(headline, body, topic, language)
        keyboard = _reminder_keyboard(message, language)
        task = message.extras.get("call_task")
        if message.kind == "call_task" and isinstance(task, int):
            keyboard = render.call_keyboard(task, language)
        if message.kind == "offer" and client_id is not None:
            keyboard = render.offer_keyboard(client_id, language)
        try:
            return await self._say(
                bot, chat, None, parts, keyboard=keyboard, wait=self.max_wait, strict=True
            )
        except DeliveryError as exc:
            if best_effort:
                loggers.event(log, "staff.private_failed", chat=chat, error=exc.reason)
                return SendResult(None)
            if not isinstance(exc, PermanentDeliveryError) or client_id is None:
                raise
            # Never opened the chat with the bot, or blocked it.
            loggers.event(
                log, "staff.private_refused", logging.WARNING, chat=chat, error=exc.reason
            )
            return await self._topic_notice(bot, message, manager.name if manager else str(chat))

    async def _topic_notice(
        self, bot: Bot, message: OutboundMessage, addressee: str | None
    ) -> SendResult:
        steps = [self._notice_step(message, addressee)]
        return await self._to_topic(bot, message, steps, channel=None, coalesce=False)

    async def _general_notice(self, bot: Bot, chat: int, message: OutboundMessage) -> SendResult:
        step = self._notice_step(message, None)
        return await self._say(bot, chat, None, [step.html], wait=self.max_wait, strict=True)

    async def _say(
        self,
        bot: Bot,
        chat: int,
        thread: int | None,
        parts: Sequence[str],
        *,
        keyboard: InlineKeyboardMarkup | None = None,
        wait: float,
        strict: bool,
    ) -> SendResult:
        """Post HTML messages in a chat (a topic when ``thread``). ``strict``: raise the
        delivery error (the dispatcher retries); else log it and carry on."""
        if not parts:
            return SendResult(None)
        try:
            estimate = self.pacer.estimate(chat, len(parts))
            if estimate > wait:
                raise TemporaryDeliveryError(f"chat {chat} is busy", retry_after=estimate)
            first: int | None = None
            async with self.pacer.turn(chat, len(parts), wait + self.pacer.gap) as turn:
                for index, part in enumerate(parts):
                    sent = await self._request(
                        bot,
                        SendMessage(
                            chat_id=chat,
                            message_thread_id=thread,
                            text=part,
                            parse_mode=HTML,
                            reply_markup=keyboard if index == len(parts) - 1 else None,
                            link_preview_options=_NO_PREVIEW,
                        ),
                        turn=turn,
                    )
                    first = first or sent.message_id
                    if thread is not None:
                        self._posted(
                            Topic(chat, thread), _Posted(sent.message_id, "", "", mirror=False)
                        )
            return SendResult(f"{chat}:{first}")
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

    # -- what managers do ----------------------------------------------------------

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

    async def _in_group(self, bot: Bot, message: Message) -> None:
        if not _has_content(message):
            return  # forum_topic_created, members joining, pins: nothing to act on
        assert message.from_user is not None
        chat = message.chat.id
        manager = await self.desk.manager(message.from_user.id)
        if manager is None:
            await self.desk.refused(
                message.from_user.id, f"message in staff chat {chat}: {_summary(message)}"
            )
            return
        if not message.is_topic_message or message.message_thread_id is None:
            return  # the general topic belongs to no client
        topic = Topic(chat, message.message_thread_id)
        client_id = await self.desk.client_of_topic(topic)
        if client_id is None:
            return  # a topic managers opened by hand
        self._last.pop(topic, None)  # a manager spoke after the bot: append nothing above it
        body = message.text or message.caption or ""
        parsed = commands.parse(body, (await bot.me()).username or "")
        if parsed is None and body.startswith(commands.PREFIX):
            # Named for another bot of the group: neither ours to obey nor an answer.
            loggers.event(log, "staff.not_for_us", logging.DEBUG, chat=chat, manager=manager.id)
            return
        command, argument = parsed if parsed is not None else (None, body)
        language = manager.language or self.language
        if command is None:
            note = body.startswith("!")
            await self._answer(
                bot, message, topic, client_id, manager, body[1:].strip() if note else body, note
            )
        elif command == "note":
            await self._answer(bot, message, topic, client_id, manager, argument, True)
        elif command in ("away", "back"):
            reply = await self.desk.set_away(manager, command == "away")
            await self._say(
                bot, chat, topic.thread_id, [render.escape(reply)], wait=self.max_wait, strict=False
            )
        elif command in ACTIONS:
            reply = await self.desk.act(
                client_id,
                manager,
                command,
                argument,
                key=f"tg:{message.chat.id}:{message.message_id}",
            )
            loggers.event(
                log, "staff.command", command=command, client=client_id, manager=manager.id
            )
            await self._say(
                bot, chat, topic.thread_id, [render.escape(reply)], wait=self.max_wait, strict=False
            )
        elif command == "card":
            card = await self.desk.card_for(manager, client_id)
            if card is None:
                await self._say(
                    bot,
                    chat,
                    topic.thread_id,
                    [render.escape(text("not_yours", language))],
                    wait=self.max_wait,
                    strict=False,
                )
            else:
                await self._say(
                    bot,
                    chat,
                    topic.thread_id,
                    [render.card_html(card, language, self.tz)],
                    keyboard=render.card_keyboard(client_id, language),
                    wait=self.max_wait,
                    strict=False,
                )
        else:
            reply = (
                text("topic_help", language)
                if command in ("help", "start")
                else text("unknown_action", language, action=f"/{command}")
                + "\n"
                + text("topic_help", language)
            )
            await self._say(
                bot, chat, topic.thread_id, [render.escape(reply)], wait=self.max_wait, strict=False
            )

    async def _answer(
        self,
        bot: Bot,
        message: Message,
        topic: Topic,
        client_id: int,
        manager: ManagerRef,
        body: str,
        note: bool,
    ) -> None:
        language = manager.language or self.language
        try:
            files = await self._download(bot, message)
        except TelegramBadRequest as exc:  # too big for getFile, or gone
            await self._say(
                bot,
                topic.chat_id,
                topic.thread_id,
                [render.escape(text("file_failed", language, reason=exc.message))],
                wait=self.max_wait,
                strict=False,
            )
            return
        if not body and not files:
            return
        try:
            await self.desk.answer(
                client_id,
                body,
                manager=manager,
                key=f"tg:{message.chat.id}:{message.message_id}",
                note=note,
                attachments=files,
            )
        except StorageUnavailable:
            raise
        except HubError as exc:  # no conversation, no address to answer on
            await self._say(
                bot,
                topic.chat_id,
                topic.thread_id,
                [render.escape(text("cannot_answer", language, reason=str(exc)))],
                wait=self.max_wait,
                strict=False,
            )

    async def _download(self, bot: Bot, message: Message) -> list[Attachment]:
        found = inbound.media_file(message)
        if found is None:
            return []
        data = await bot.download(found.file_id)
        assert data is not None  # no destination given: aiogram answers a buffer
        return [Attachment(found.filename, found.content_type, data.read())]

    async def _button(self, bot: Bot, query: CallbackQuery) -> None:
        manager = await self.desk.manager(query.from_user.id)
        on_reminder = render.parse_reminder_callback(query.data)
        if manager is not None and on_reminder is not None:
            await self._reminder_button(bot, query, manager, *on_reminder)
            return
        on_call = render.parse_call_callback(query.data)
        if manager is not None and on_call is not None and self.campaigns is not None:
            await self._call_button(bot, query, manager, *on_call)
            return
        parsed = render.parse_callback(query.data)
        if manager is None or parsed is None:
            try:
                if manager is None:
                    await self.desk.refused(query.from_user.id, f"button {query.data or ''}")
            finally:
                await self._answer_query(bot, query, None)
            return
        action, client_id = parsed
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
            and target.chat.id in self._staff_chats
            and target.message_thread_id is not None
        ):
            await self._say(
                bot,
                target.chat.id,
                target.message_thread_id,
                [render.escape(confirmation)],
                wait=self.max_wait,
                strict=False,
            )

    async def _reminder_button(
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

    async def _call_button(
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
            await self._request(
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
        if not isinstance(target, Message) or target.chat.id not in self._staff_chats:
            return
        card = await self.desk.card(client_id)
        if card is None:
            return
        try:
            await self._request(
                bot,
                EditMessageText(
                    chat_id=target.chat.id,
                    message_id=target.message_id,
                    text=render.card_html(card, self.language, self.tz),
                    parse_mode=HTML,
                    reply_markup=render.card_keyboard(client_id, self.language),
                    link_preview_options=_NO_PREVIEW,
                ),
            )
        except DeliveryError as exc:  # not modified, or gone: the card stays as it was
            loggers.event(log, "staff.card_not_refreshed", client=client_id, error=exc.reason)

    async def _in_private(self, bot: Bot, message: Message) -> None:
        assert message.from_user is not None
        user = message.from_user.id
        manager = await self.desk.manager(user)
        if manager is None:
            await self.desk.refused(user, f"private message: {_summary(message)}")
            return
        language = manager.language or self.language
        parsed = commands.parse(message.text or "", (await bot.me()).username or "")
        command, argument = parsed if parsed is not None else (None, "")
        digest: ReportDigest | None = None
        if command == "inbox":
            items = await self.desk.inbox(manager)
            parts = render.inbox_html(items, language, self.clock.now())
        elif command in ("away", "back"):
            parts = [render.escape(await self.desk.set_away(manager, command == "away"))]
        elif command == "find":
            if not argument:
                parts = [render.escape(text("need_argument", language, usage="/find TEXT"))]
            else:
                cards = await self.desk.find(manager, argument)
                found = [(card, await self.desk.topic_of(card.id)) for card in cards]
                parts = render.find_html(found, argument, language)
        elif command == "report":
            digest = await self._digest(argument, language)
            reply = digest.summary if digest else text("report_usage", language)
            if self.reports is None:
                reply = text("report_unavailable", language)
            parts = [render.escape(reply)]
        elif (
            command is not None
            and self.campaigns is not None
            and (said := await self.campaigns.campaign_command(manager, command, argument))
        ):
            parts = [render.escape(said)]
        else:
            parts = [render.escape(text("private_help", language))]
        loggers.event(log, "staff.private", command=command or "-", manager=manager.id)
        await self._say(bot, user, None, parts, wait=self.max_wait, strict=False)
        if digest is not None:
            await self._photos(bot, user, digest)

    async def _digest(self, argument: str, language: str) -> ReportDigest | None:
        """The report of ``week`` (the default) or ``month``; None for anything else."""
        name = argument.strip().lower() or "week"
        if self.reports is None or name not in ("week", "month"):
            return None
        return await self.reports.digest(name, language)

    async def _photos(self, bot: Bot, chat: int, digest: ReportDigest) -> None:
        """The report's charts, one photo each; they wait their turn in the chat (a manager
        asked for them), and a refused one is logged, the rest still sent."""
        if not digest.charts:
            return
        steps = len(digest.charts)
        patience = self.max_wait + steps * self.pacer.gap
        async with self.pacer.turn(chat, steps, patience) as turn:
            for chart in digest.charts:
                try:
                    await self._request(
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
