"""The Bot API's errors (as aiogram raises them) as the hub's delivery errors: the one map.

aiogram's ``check_response`` turns each HTTP status of the Bot API into one
exception class (https://core.telegram.org/bots/api#making-requests); here each
class becomes a :class:`~hub.kernel.errors.PermanentDeliveryError` (the same
request can never succeed) or a :class:`~hub.kernel.errors.TemporaryDeliveryError`
(worth another try, after ``retry_after`` when Telegram said how long).
"""

from __future__ import annotations

import aiohttp
from aiogram.exceptions import (
    AiogramError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
)

from hub.kernel.errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError

__all__ = ["TopicClosed", "TopicGone", "delivery_error"]

# How the Bot API says a forum topic was deleted (or never was) in a 400.
_TOPIC_GONE = ("thread not found", "topic_deleted", "topic_id_invalid")
_TOPIC_CLOSED = "topic_closed"


class TopicGone(PermanentDeliveryError):
    """The client's topic was deleted in Telegram: open a new one."""


class TopicClosed(PermanentDeliveryError):
    """A manager closed the client's topic: reopen it, then post again."""


def delivery_error(exc: BaseException) -> DeliveryError:
    """The hub's delivery error for what a Bot API call raised."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, TelegramAPIError):
        return _api_error(exc)
    if isinstance(exc, AiogramError | aiohttp.ClientError | TimeoutError | OSError):
        return TemporaryDeliveryError(f"telegram unavailable: {type(exc).__name__}")
    return TemporaryDeliveryError(f"unexpected {type(exc).__name__}")


def _api_error(exc: TelegramAPIError) -> DeliveryError:
    # Order matters: TelegramEntityTooLarge is a TelegramNetworkError in aiogram.
    if isinstance(exc, TelegramRetryAfter):  # 429 (or any answer with retry_after)
        return TemporaryDeliveryError(
            f"flood control: retry after {exc.retry_after} s", retry_after=float(exc.retry_after)
        )
    if isinstance(exc, TelegramMigrateToChat):  # the group became a supergroup
        return PermanentDeliveryError(f"the chat moved to {exc.migrate_to_chat_id}")
    if isinstance(exc, TelegramBadRequest):  # 400: chat not found, message too long …
        return _bad_request(exc)
    if isinstance(exc, TelegramForbiddenError):  # 403: blocked by the user, kicked
        return PermanentDeliveryError(f"forbidden: {exc.message}")
    if isinstance(exc, TelegramEntityTooLarge):  # 413: this payload never fits
        return PermanentDeliveryError(f"too large: {exc.message}")
    if isinstance(exc, TelegramNotFound):
        # 404 on a send is not about the message or the chat (those are 400s): the
        # Bot API answers it for a URL naming no bot or no method, that is a revoked
        # or mistyped token or a wrong api_base. The operator fixes that and the
        # same message then goes through, so it is kept (like a 401), within the
        # dispatcher's attempts, rather than failed for every client at once.
        return TemporaryDeliveryError(f"not found (check the token and api_base): {exc.message}")
    if isinstance(exc, TelegramNetworkError | TelegramServerError):  # no answer, 5xx
        return TemporaryDeliveryError(f"telegram unavailable: {exc.message}")
    # 401 (token revoked), 409 (a webhook set): configuration an operator can fix.
    return TemporaryDeliveryError(f"telegram error: {exc.message}")


def _bad_request(exc: TelegramBadRequest) -> PermanentDeliveryError:
    lowered = exc.message.lower()
    if any(marker in lowered for marker in _TOPIC_GONE):
        return TopicGone(exc.message)
    if _TOPIC_CLOSED in lowered:
        return TopicClosed(exc.message)
    return PermanentDeliveryError(f"refused: {exc.message}")
