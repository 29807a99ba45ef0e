"""The Telegram channel (Bot API through aiogram): clients write to the bot,
managers answer from a staff forum."""

from channels.telegram.channel import TelegramChannel

__all__ = ["TelegramChannel"]
