"""The Telegram channel: one bot on the Bot API (https://core.telegram.org/bots/api)
through aiogram, for clients and, through a :class:`StaffSurface`, for managers.

Updates arrive by long polling or a webhook (``telegram.mode``, see updates.py)
and are confirmed only after they were handled: a staff surface takes the
updates it claims, every other message of a private chat is a client's and goes
to the ingest sink (inbound.py); anything else is ignored. ``send`` gives the
staff kinds (``STAFF_KINDS``) to the staff surface and delivers the rest to the
client's private chat as text (outbound.py).
"""

from __future__ import annotations

import logging

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramNotFound
from aiogram.types import Message, Update

from channels.telegram import inbound, ratings
from channels.telegram.base import STAFF_KINDS, StaffSurface
from channels.telegram.errors import delivery_error
from channels.telegram.outbound import BotBudget, ClientSender
from channels.telegram.updates import Poller, WebhookServer, describe
from hub.config import TelegramSection
from hub.kernel import loggers
from hub.kernel.edges import Edges
from hub.kernel.errors import (
    DeliveryError,
    HubError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)
from hub.kernel.ports import (
    AttachmentSource,
    Budgeted,
    ChannelLimits,
    ClientRatings,
    InboundSink,
    RateLimit,
    RecentSends,
)
from hub.kernel.types import OutboundMessage, SendResult

log = loggers.channels


class DownloadFailed(HubError):
    """A file could not be fetched now; the update is retried later."""


class TelegramChannel:
    """The hub's :class:`~hub.kernel.ports.ChannelPort` for Telegram (``name = "telegram"``).

    ``files`` gives the files of an answer to send with it (the desk).
    ``staff`` handles the managers' side; without it, staff updates are treated
    like anyone else's and staff kinds cannot be sent. ``max_attachment_bytes``
    bounds what is downloaded from clients. ``budget`` is the bot's 30 posts a second,
    shared with the staff side (the staff's pacer). ``poll_timeout``, ``retry_backoff``
    (first and longest delay before handling a failed update again) and
    ``grace`` (how long ``stop`` lets an update being handled finish) are tuning.
    """

    name = "telegram"
    # About 30 messages a second per bot and one a second per chat; the staff
    # groups' budget (20 a minute) is kept by the staff side itself.
    limits = ChannelLimits(
        overall=RateLimit(30, burst=1),
        per_recipient=RateLimit(1, burst=1),
        self_paced=STAFF_KINDS,
    )

    def __init__(
        self,
        config: TelegramSection,
        *,
        staff: StaffSurface | None = None,
        files: AttachmentSource | None = None,
        max_attachment_bytes: int,
        default_region: str = "RU",
        poll_timeout: int = 25,
        retry_backoff: tuple[float, float] = (0.5, 30.0),
        grace: float = 10.0,
        budget: BotBudget | None = None,
        edges: Edges | None = None,
        ratings: ClientRatings | None = None,
    ) -> None:
        self.config = config
        self.ratings = ratings  # a client's press of a rating button goes there
        self.budget = budget
        self.staff = staff
        self.files = files
        self.max_attachment_bytes = max_attachment_bytes
        self.default_region = default_region
        self.poll_timeout = poll_timeout
        self.retry_backoff = retry_backoff
        self.grace = grace
        self.edges = edges  # the process's connection table, for the webhook's server
        self.bot: Bot | None = None
        self.account = ""
        self._token = ""
        self._sink: InboundSink | None = None
        self._sender: ClientSender | None = None
        self._receiver: Poller | WebhookServer | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def start(self, sink: InboundSink) -> None:
        """Check the token with ``getMe``, then poll or serve the webhook; return
        once updates are being received."""
        config = self.config
        if config.token is None or not config.token.get_secret_value():
            raise HubError("telegram.token: missing")
        self._token = config.token.get_secret_value()
        session = AiohttpSession(api=TelegramAPIServer.from_base(config.api_base))
        try:
            bot = Bot(self._token, session=session)
        except Exception:
            await session.close()
            raise HubError("telegram.token: not a bot token") from None
        try:
            me = await bot.me()  # getMe, kept: the staff side reads the username there
            self.bot, self.account, self._sink = bot, me.username or str(me.id), sink
            if config.mode == "webhook":
                self._receiver = self._webhook(bot)
            else:
                if (await bot.get_webhook_info()).url:
                    # A webhook left by an earlier run would refuse every getUpdates.
                    loggers.event(log, "telegram.webhook_deleted", reason="polling mode")
                    await bot.delete_webhook(drop_pending_updates=False)
                self._receiver = Poller(
                    bot,
                    self._handle,
                    redact=self._redact,
                    timeout=self.poll_timeout,
                    backoff=self.retry_backoff,
                    grace=self.grace,
                )
            await self._receiver.start()
        except Exception as exc:
            self.bot = self._receiver = self._sink = None
            await bot.session.close()
            raise HubError(f"telegram: cannot start: {describe(exc, self._redact)}") from None
        self._sender = ClientSender(bot, files=self.files, budget=self.budget)
        loggers.event(log, "telegram.started", mode=config.mode, bot=f"@{self.account}", id=bot.id)

    def _webhook(self, bot: Bot) -> WebhookServer:
        config = self.config
        if not (config.webhook_url and config.webhook_listen and config.webhook_secret):
            raise HubError("webhook mode needs webhook_url, webhook_listen and webhook_secret")
        return WebhookServer(
            bot,
            self._handle,
            url=config.webhook_url,
            listen=config.webhook_listen,
            secret=config.webhook_secret.get_secret_value(),
            redact=self._redact,
            grace=self.grace,
            edges=self.edges,
        )

    async def stop(self) -> None:
        """Stop receiving (an update being handled finishes, or stays unconfirmed
        and comes again), then close the bot's HTTP session."""
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            await receiver.stop()
        if self.staff is not None:
            await self.staff.stop()
        bot, self.bot = self.bot, None
        self._sender = self._sink = None
        if bot is not None:
            await bot.session.close()
            loggers.event(log, "telegram.stopped", bot=f"@{self.account}")

    # -- updates -----------------------------------------------------------------

    async def _handle(self, update: Update) -> None:
        """Route one update: the staff's to the staff surface, a private chat's
        message to the sink; return once its effects are committed."""
        bot = self.bot
        if bot is None:
            raise HubError("the Telegram channel is not running")
        if self.staff is not None and await self.staff.handles(update):
            await self.staff.handle(bot, update)
            return
        message = update.message or update.edited_message
        if message is not None:
            if message.chat.type != "private":
                loggers.event(
                    log,
                    "telegram.ignored",
                    logging.DEBUG,
                    update=update.update_id,
                    chat=message.chat.id,
                    why="not a private chat",
                )
                return
            await self._client_message(message, edited=update.message is None)
            return
        if update.callback_query is not None:  # a client's button: a rating
            await ratings.press(bot, update.callback_query, self.ratings)
            return
        if update.my_chat_member is not None:
            member = update.my_chat_member
            loggers.event(
                log,
                "telegram.member_status",
                chat=member.chat.id,
                user=member.from_user.id,
                status=member.new_chat_member.status,
            )
            return
        loggers.event(
            log, "telegram.ignored", logging.DEBUG, update=update.update_id, why="no handler"
        )

    async def _client_message(self, message: Message, *, edited: bool) -> None:
        sink = self._sink
        assert self.bot is not None and sink is not None
        draft = inbound.normalize(
            message,
            bot_id=self.bot.id,
            account=self.account,
            max_attachment_bytes=self.max_attachment_bytes,
            default_region=self.default_region,
            edited=edited,
        )
        if draft is None:
            loggers.event(
                log, "telegram.ignored", logging.DEBUG, chat=message.chat.id, why="no sender"
            )
            return
        result = await sink(await inbound.complete(draft, self._download))
        loggers.event(
            log,
            "telegram.received",
            logging.DEBUG,
            chat=message.chat.id,
            message=message.message_id,
            interaction=result.interaction_id,
            duplicate=result.duplicate,
        )

    async def _download(self, file_id: str) -> bytes:
        bot = self.bot
        if bot is None:
            raise DownloadFailed("the channel is stopping")
        try:
            data = await bot.download(file_id, timeout=120)
        except (TelegramBadRequest, TelegramNotFound) as exc:
            raise inbound.FileUnavailable(exc.message) from None
        except aiohttp.ClientResponseError as exc:
            # Its text holds the file URL, and so the token: never logged.
            if 400 <= exc.status < 500:
                raise inbound.FileUnavailable(f"download answered {exc.status}") from None
            raise DownloadFailed(f"download answered {exc.status}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DownloadFailed(f"download failed: {type(exc).__name__}") from None
        if data is None:
            raise DownloadFailed("download gave nothing")
        return data.read()

    # -- sending -----------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        """Staff kinds through the staff surface; others to the client's chat."""
        if message.kind in STAFF_KINDS:
            if self.staff is None:
                raise PermanentDeliveryError(f"no staff surface to send {message.kind!r}")
            if self.bot is None:
                raise TemporaryDeliveryError("the Telegram channel is not running")
            try:
                return await self.staff.send(self.bot, message)
            except DeliveryError:
                raise
            except Exception as exc:
                raise delivery_error(exc) from None
        if self._sender is None:
            raise TemporaryDeliveryError("the Telegram channel is not running")
        return await self._sender.send(message)

    def spent(self, recent: RecentSends) -> None:
        """What went out in the last minute (the outbox knows it) spends the staff
        side's budgets, so that a restart is no burst. (A client's chat takes one
        message a second, which a restart outlasts.)"""
        if isinstance(self.staff, Budgeted):
            self.staff.spent(recent)

    # -- helpers -----------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "<token>") if self._token else text
