"""Bot commands (https://core.telegram.org/bots/features#commands): ``/name argument``,
parsed once for the clients' chats and the staff's.

In a group, ``/name@bot`` says which bot a command is for; one named for another
bot is not ours to obey. The name is compared without regard to case, as
Telegram's usernames are.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Command", "parse"]

PREFIX = "/"


class Command(NamedTuple):
    """``/remind@bot 2h call back``: ``name`` ``"remind"`` (lower case), ``argument``
    ``"2h call back"``; a bare ``/`` has the empty name."""

    name: str
    argument: str


def parse(text: str, bot: str) -> Command | None:
    """The command ``text`` gives the bot whose username is ``bot``; ``None`` for text
    that is no command, and for a command named for another bot."""
    if not text.startswith(PREFIX):
        return None
    head, *rest = text.split(None, 1)  # Telegram ends a command at whitespace
    name, at, addressee = head.removeprefix(PREFIX).partition("@")
    if at and addressee.lower() != bot.lower():
        return None
    return Command(name.lower(), rest[0].strip() if rest else "")
