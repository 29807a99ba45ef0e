"""What the staff chats show of a person who asked to be forgotten, deleted in Telegram.

``hub client forget`` cannot reach the running hub's bot, so it queues one outbox
row of kind ``erase`` (a staff kind): ``extras["topics"]`` lists the person's forum
topics as ``[chat, thread]`` and ``extras["messages"]`` the bot's private messages
about them as ``[chat, message]``. Deleting a topic deletes every message in it
(deleteForumTopic). What is gone already, or too old for Telegram to delete
(private messages past 48 hours), is passed over; a failure that may pass (the
network, a 429) is raised, and the dispatcher tries the whole row again, which
deletes nothing twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from aiogram import Bot
from aiogram.methods import DeleteForumTopic, DeleteMessages

from channels.telegram.staff.calls import Calls
from hub.kernel import loggers
from hub.kernel.errors import PermanentDeliveryError
from hub.kernel.types import OutboundMessage, SendResult, Topic

__all__ = ["ERASE", "erase"]

log = loggers.channels
ERASE = "erase"
_AT_ONCE = 100  # deleteMessages takes up to 100 ids


def _pairs(value: Any) -> list[tuple[int, int]]:
    if not isinstance(value, list):
        return []
    return [
        (int(p[0]), int(p[1]))
        for p in value
        if isinstance(p, list) and len(p) == 2 and all(isinstance(x, int) for x in p)
    ]


async def erase(bot: Bot, calls: Calls, message: OutboundMessage) -> SendResult:
    """Delete the topics and private messages the row lists."""
    deleted = skipped = 0
    for chat, thread in _pairs(message.extras.get("topics")):
        try:
            await calls.request(bot, DeleteForumTopic(chat_id=chat, message_thread_id=thread))
            calls.last.drop(Topic(chat, thread))
            deleted += 1
        except PermanentDeliveryError as exc:
            skipped += 1
            loggers.event(log, "staff.erase_skipped", logging.WARNING, chat=chat, error=exc.reason)
    by_chat: dict[int, list[int]] = defaultdict(list)
    for chat, message_id in _pairs(message.extras.get("messages")):
        by_chat[chat].append(message_id)
    for chat, ids in by_chat.items():
        for start in range(0, len(ids), _AT_ONCE):
            try:
                await calls.request(
                    bot, DeleteMessages(chat_id=chat, message_ids=ids[start : start + _AT_ONCE])
                )
                deleted += 1
            except PermanentDeliveryError as exc:
                skipped += 1
                loggers.event(
                    log, "staff.erase_skipped", logging.WARNING, chat=chat, error=exc.reason
                )
    loggers.event(log, "staff.erased", outbox=message.outbox_id, deleted=deleted, skipped=skipped)
    return SendResult(None)
