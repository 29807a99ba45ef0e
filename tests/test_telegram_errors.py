"""The one map from the Bot API's errors to the hub's delivery errors
(channels/telegram/errors.py), code by code.

Each error is made the way aiogram makes it: its session's ``check_response``
reads the Bot API's answer (status and JSON body) and raises the exception class
for that status, which ``delivery_error`` then classifies. The clients' and the
staff's sends both go through this map (they used to disagree on 404 and 413).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import SendDocument, SendMessage

from channels.telegram.errors import TopicClosed, TopicGone, delivery_error
from hub.kernel.errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError


@dataclass(frozen=True)
class Answer:
    """A failed Bot API answer and what the hub must make of it."""

    status: int
    description: str
    raised: type[TelegramAPIError]
    becomes: type[DeliveryError]
    parameters: dict[str, Any] | None = None
    said: str = ""  # what the reason must hold: by default Telegram's own words

    @property
    def reason(self) -> str:
        return self.said or self.description.split(": ")[-1]


ANSWERS = {
    "400 chat not found": Answer(
        400, "Bad Request: chat not found", TelegramBadRequest, PermanentDeliveryError
    ),
    "400 message too long": Answer(
        400, "Bad Request: message is too long", TelegramBadRequest, PermanentDeliveryError
    ),
    "400 topic deleted": Answer(
        400, "Bad Request: message thread not found", TelegramBadRequest, TopicGone
    ),
    "400 topic closed": Answer(400, "Bad Request: TOPIC_CLOSED", TelegramBadRequest, TopicClosed),
    "400 group upgraded": Answer(
        400,
        "Bad Request: group chat was upgraded to a supergroup chat",
        TelegramMigrateToChat,
        PermanentDeliveryError,
        {"migrate_to_chat_id": -1001234567890},
        said="moved to -1001234567890",
    ),
    "401 token revoked": Answer(
        401, "Unauthorized", TelegramUnauthorizedError, TemporaryDeliveryError
    ),
    "403 blocked": Answer(
        403,
        "Forbidden: bot was blocked by the user",
        TelegramForbiddenError,
        PermanentDeliveryError,
    ),
    "403 kicked": Answer(
        403,
        "Forbidden: bot was kicked from the supergroup chat",
        TelegramForbiddenError,
        PermanentDeliveryError,
    ),
    "404 no such bot or method": Answer(404, "Not Found", TelegramNotFound, TemporaryDeliveryError),
    "409 webhook set": Answer(
        409,
        "Conflict: can't use getUpdates method while webhook is active",
        TelegramConflictError,
        TemporaryDeliveryError,
    ),
    "413 file too large": Answer(
        413, "Request Entity Too Large", TelegramEntityTooLarge, PermanentDeliveryError
    ),
    "429 flood control": Answer(
        429,
        "Too Many Requests: retry after 7",
        TelegramRetryAfter,
        TemporaryDeliveryError,
        {"retry_after": 7},
    ),
    "500 internal error": Answer(
        500, "Internal Server Error", TelegramServerError, TemporaryDeliveryError
    ),
    "502 bad gateway": Answer(502, "Bad Gateway", TelegramServerError, TemporaryDeliveryError),
}


@pytest.fixture(scope="module")
def bot() -> Bot:
    # No request is made: the bot only gives check_response its context.
    return Bot("42:TEST")


def raised(bot: Bot, answer: Answer) -> TelegramAPIError:
    """The exception aiogram raises for that answer to ``sendDocument``."""
    body: dict[str, Any] = {
        "ok": False,
        "error_code": answer.status,
        "description": answer.description,
    }
    if answer.parameters:
        body["parameters"] = answer.parameters
    method = SendDocument(chat_id=1, document="file-id")
    with pytest.raises(TelegramAPIError) as caught:
        bot.session.check_response(bot, method, answer.status, json.dumps(body))
    return caught.value


@pytest.mark.parametrize("answer", ANSWERS.values(), ids=ANSWERS.keys())
def test_each_bot_api_error_is_classified(bot: Bot, answer: Answer) -> None:
    exc = raised(bot, answer)
    assert type(exc) is answer.raised
    error = delivery_error(exc)
    assert type(error) is answer.becomes
    # The reason keeps Telegram's words, for the log and the outbox row.
    assert answer.reason in error.reason


def test_flood_control_says_when_to_retry(bot: Bot) -> None:
    error = delivery_error(raised(bot, ANSWERS["429 flood control"]))
    assert isinstance(error, TemporaryDeliveryError) and error.retry_after == 7.0


def test_errors_without_an_answer_are_temporary() -> None:
    method = SendMessage(chat_id=1, text="hi")
    for exc in (
        TelegramNetworkError(method, "HTTP Client says - ClientConnectorError"),
        aiohttp.ClientConnectionError("connection reset"),
        TimeoutError(),
        ConnectionRefusedError(),
        RuntimeError("a bug"),
    ):
        error = delivery_error(exc)
        assert type(error) is TemporaryDeliveryError and error.retry_after is None


def test_the_hubs_own_delivery_errors_pass_through() -> None:
    permanent = PermanentDeliveryError("no staff chat is configured")
    temporary = TemporaryDeliveryError("busy", retry_after=3.0)
    assert delivery_error(permanent) is permanent
    assert delivery_error(temporary) is temporary
