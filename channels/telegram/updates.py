"""Receiving Bot API updates: long polling with ``getUpdates`` and a webhook server
(https://core.telegram.org/bots/api#getting-updates). Commit first, confirm after.

Polling handles updates one at a time, in order, and moves the offset past an
update only once its handler returned; a handler that fails is retried with a
bounded exponential backoff and nothing after it is confirmed meanwhile
(aiogram's ``Dispatcher.start_polling`` confirms an update as soon as its task
starts, and confirms a failed one too). The webhook answers 200 only once the
handler returned and 503 when it failed, so Telegram delivers the update again.
A handler raising :class:`~hub.kernel.errors.MessageRejected` is confirmed: that update
can never be stored, and retrying it would stop the bot's whole stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramConflictError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.types import Update
from aiohttp import web

from hub.kernel import loggers
from hub.kernel.edges import Edges
from hub.kernel.errors import HubError, MessageRejected
from hub.kernel.http import serve

log = loggers.channels

ALLOWED_UPDATES = ("message", "edited_message", "callback_query", "my_chat_member")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)

Handler = Callable[[Update], Awaitable[None]]
Redact = Callable[[str], str]


class Backoff:
    """Delays doubling from ``first`` up to ``most`` seconds, until reset."""

    def __init__(self, first: float = 0.5, most: float = 30.0) -> None:
        self.first = first
        self.most = most
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.most)
        return delay

    def reset(self) -> None:
        self._next = self.first


def describe(exc: BaseException, redact: Redact) -> str:
    """One line naming an error, for the log (aiogram's text without its doc link)."""
    text = getattr(exc, "message", None) or str(exc)
    first = text.splitlines()[0] if text else ""
    return redact(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


async def settle(handle: Handler, update: Update, redact: Redact) -> str | None:
    """Run the handler; ``None`` when the update may be confirmed, else why not."""
    try:
        await handle(update)
    except MessageRejected as exc:
        loggers.event(
            log,
            "telegram.update_rejected",
            logging.WARNING,
            update=update.update_id,
            reason=redact(str(exc)),
        )
        return None
    except (HubError, TelegramAPIError) as exc:
        return describe(exc, redact)
    except Exception as exc:
        # A bug: keep its traceback (the download path strips URLs holding the token).
        log.error(
            "telegram.update_error update=%d error=%s",
            update.update_id,
            type(exc).__name__,
            exc_info=True,
        )
        return describe(exc, redact)
    return None


class Poller:
    """``getUpdates`` in a loop; ``offset`` is the first update not yet handled."""

    def __init__(
        self,
        bot: Bot,
        handle: Handler,
        *,
        redact: Redact,
        timeout: int = 25,
        backoff: tuple[float, float] = (0.5, 30.0),
        grace: float = 10.0,
    ) -> None:
        self.bot = bot
        self.handle = handle
        self.redact = redact
        self.timeout = timeout
        self.backoff = backoff
        self.grace = grace
        self.offset: int | None = None
        self._confirmed: int | None = None
        self._stopping = asyncio.Event()
        self._fetching = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="telegram-polling")

    async def stop(self) -> None:
        """An update being handled gets ``grace`` seconds to finish; a long poll in
        flight is abandoned (what it fetched stays unconfirmed)."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        if self._fetching:
            task.cancel()
        try:
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), self.grace)
        except TimeoutError:
            loggers.event(log, "telegram.stop_timeout", logging.WARNING, offset=self.offset)
        if self.offset is not None and self.offset != self._confirmed:
            await self._confirm()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _run(self) -> None:
        backoff = Backoff(*self.backoff)
        while not self._stopping.is_set():
            delay: float | None = None
            error = ""
            self._fetching = True
            try:
                updates = await self.bot.get_updates(
                    offset=self.offset,
                    timeout=self.timeout,
                    allowed_updates=list(ALLOWED_UPDATES),
                    request_timeout=self.timeout + 10,
                )
            except TelegramRetryAfter as exc:
                delay = float(exc.retry_after)
                error = "flood control"
            except (TelegramConflictError, TelegramUnauthorizedError) as exc:
                # another poller, a webhook, a revoked token: the operator must act
                delay = backoff.most
                error = describe(exc, self.redact)
            except Exception as exc:
                delay = backoff.next()
                error = describe(exc, self.redact)
            finally:
                self._fetching = False
            if delay is not None:
                loggers.event(
                    log,
                    "telegram.poll_failed",
                    logging.WARNING,
                    error=error,
                    retry_in=f"{delay:g}s",
                )
                await self._pause(delay)
                continue
            backoff.reset()
            self._confirmed = self.offset
            for update in updates:
                if not await self._settle(update, backoff):
                    break
                self.offset = update.update_id + 1
                if self._stopping.is_set():
                    break

    async def _settle(self, update: Update, backoff: Backoff) -> bool:
        """Handle one update until it succeeds; False when stopped before that."""
        attempt = 1
        while True:
            error = await settle(self.handle, update, self.redact)
            if error is None:
                backoff.reset()
                return True
            if self._stopping.is_set():
                return False
            delay = backoff.next()
            loggers.event(
                log,
                "telegram.update_retry",
                logging.WARNING,
                update=update.update_id,
                attempt=attempt,
                error=error,
                retry_in=f"{delay:g}s",
            )
            await self._pause(delay)
            if self._stopping.is_set():
                return False
            attempt += 1

    async def _confirm(self) -> None:
        """Tell Telegram what was handled before stopping (else it comes again,
        and is recognized as a redelivery)."""
        try:
            await self.bot.get_updates(offset=self.offset, limit=1, timeout=0, request_timeout=5)
            self._confirmed = self.offset
        except Exception as exc:
            loggers.event(
                log,
                "telegram.confirm_failed",
                logging.INFO,
                offset=self.offset,
                error=describe(exc, self.redact),
            )


class WebhookServer:
    """An aiohttp server taking Telegram's POSTs at the path of ``url``."""

    def __init__(
        self,
        bot: Bot,
        handle: Handler,
        *,
        url: str,
        listen: str,
        secret: str,
        redact: Redact,
        grace: float = 10.0,
        edges: Edges | None = None,
    ) -> None:
        self.bot = bot
        self.handle = handle
        self.url = url
        self.path = urlsplit(url).path or "/"
        self.listen = listen
        self.redact = redact
        self.grace = grace
        self.edges = edges
        self._secret = secret.encode()
        self._runner: web.AppRunner | None = None
        self._closing = False

    async def start(self) -> None:
        """Listen, then ``setWebhook`` (with the secret and the update kinds)."""
        app = web.Application()
        app.router.add_post(self.path, self._receive)
        runner = await serve(app, self.listen, shutdown_timeout=self.grace, edges=self.edges)
        self._closing = False
        try:
            await self.bot.set_webhook(
                self.url,
                secret_token=self._secret.decode(),
                allowed_updates=list(ALLOWED_UPDATES),
            )
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening; requests in flight get ``grace`` seconds. The webhook stays
        set: other instances behind the same URL keep receiving."""
        self._closing = True
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        if self._closing:
            return web.Response(status=503, text="stopping")
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            loggers.event(
                log,
                "telegram.webhook_refused",
                logging.WARNING,
                peer=request.remote or "-",
                secret="wrong" if given else "missing",
            )
            return web.Response(status=401, text="unauthorized")
        try:
            update = Update.model_validate(await request.json(), context={"bot": self.bot})
        except ValueError:
            loggers.event(log, "telegram.webhook_malformed", logging.WARNING)
            return web.Response(status=400, text="not an update")
        error = await settle(self.handle, update, self.redact)
        if error is not None:
            loggers.event(
                log,
                "telegram.update_deferred",
                logging.WARNING,
                update=update.update_id,
                error=error,
            )
            return web.Response(status=503, text="try again")
        return web.Response(status=200)
