"""A local Telegram Bot API server for tests that run the real aiogram client."""

from tests.botapi.limits import Limits, Rate, Throttled
from tests.botapi.server import BotApiServer, Call
from tests.botapi.world import BotAccount, Group, Topic, User

__all__ = [
    "BotAccount",
    "BotApiServer",
    "Call",
    "Group",
    "Limits",
    "Rate",
    "Throttled",
    "Topic",
    "User",
]
