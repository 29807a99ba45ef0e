"""A client's satisfaction rating in Telegram: the five buttons under the hub's ask
(an outbox row whose extras name the ``rating``), and a press of one handed to the
hub (:class:`hub.kernel.ports.ClientRatings`), which records it only when the
presser is the rating's own client (https://core.telegram.org/bots/api#callbackquery).

A press is answered with a short notice (``answerCallbackQuery``) and changes no
message: the buttons stay, and a later press changes the score.
"""

from __future__ import annotations

import re

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup

from channels.telegram.inbound import language
from hub.kernel import loggers
from hub.kernel.ports import ClientRatings
from hub.kernel.texts import text

log = loggers.channels

PREFIX = "rate:"  # the staff's buttons start with "hub:": these are the clients'
_DATA = re.compile(r"^rate:(?P<rating>[0-9]{1,12}):(?P<score>[1-5])$")


def keyboard(rating_id: int) -> InlineKeyboardMarkup:
    """One row of five buttons, 1 to 5."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=str(s), callback_data=f"{PREFIX}{rating_id}:{s}")
                for s in range(1, 6)
            ]
        ]
    )


def parse(data: str | None) -> tuple[int, int] | None:
    """(rating id, score) of a button's data; None for anything else."""
    match = _DATA.match(data or "")
    return (int(match["rating"]), int(match["score"])) if match else None


async def press(bot: Bot, query: CallbackQuery, ratings: ClientRatings | None) -> None:
    """A client pressed a button under a message of the bot: a rating's goes to the
    hub (its failure raises, and the update comes again); the query is answered."""
    pressed = parse(query.data)
    said: str | None = None
    if pressed is not None and ratings is not None:
        said = await ratings.rate("telegram", str(query.from_user.id), *pressed)
        if said is None:
            said = text("csat_not_yours", language(query.from_user.language_code))
    else:
        loggers.event(log, "telegram.button_ignored", 10, user=query.from_user.id)
    try:
        await bot.answer_callback_query(query.id, text=said[:200] if said else None)
    except TelegramAPIError as exc:  # too old, or answered already: the score stands
        loggers.event(log, "telegram.callback_unanswered", query=query.id, error=exc.message)
