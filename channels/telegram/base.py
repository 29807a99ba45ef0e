"""The seam between the Telegram channel's two sides.

``TelegramChannel`` (channel.py) owns the bot, the update stream (polling or
webhook, commit first, confirm after) and the clients' side. The managers'
side — the staff forum, topics, cards, mirrors, commands and buttons — plugs in
as a :class:`StaffSurface`, built over the hub's :class:`~hub.kernel.ports.StaffDesk`.
"""

from __future__ import annotations

from typing import Protocol

from aiogram import Bot
from aiogram.types import Update

from hub.kernel.types import STAFF_KINDS, OutboundMessage, SendResult

__all__ = ["STAFF_KINDS", "StaffSurface"]  # STAFF_KINDS: delivered by the staff side


class StaffSurface(Protocol):
    async def handles(self, update: Update) -> bool:
        """Whether the update is the staff's: from a staff chat, a button press, or a
        registered manager's private chat with the bot."""

    async def handle(self, bot: Bot, update: Update) -> None:
        """Act on a staff update; return once its effects are committed."""

    async def send(self, bot: Bot, message: OutboundMessage) -> SendResult:
        """Deliver a staff kind (see STAFF_KINDS); raise the hub's delivery errors."""

    async def stop(self) -> None:
        """End the work it keeps running in the process (before the bot's session closes)."""
