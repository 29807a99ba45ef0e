"""Telegram's flood limits, as sliding windows over an injectable monotonic clock.

https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this:
about one message a second in a chat, twenty a minute in a group, thirty a second
per bot overall. The stand-in reads each as "at most ``count`` accepted requests in
any ``period`` seconds" — stricter than the real servers, which tolerate short
bursts — so a sender that never sees a 429 here will not see one in production.

Every request that posts to a chat spends its budget, as Telegram counts them
(its staff on tdlib/td issue 2592: a bot's edits share the sending limit, and a
forum topic's creation is a message too; Telegram publishes no exact list, so
all are counted): sends of every kind (each item of a media group), edits,
deletions, pins and unpins, and a forum topic's creation, edit, close, reopen and deletion.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

SEND_METHODS = frozenset(
    {
        "sendmessage",
        "sendphoto",
        "senddocument",
        "sendvoice",
        "sendvideo",
        "sendaudio",
        "sendanimation",
        "sendsticker",
        "sendcontact",
        "sendlocation",
        "sendmediagroup",
        "copymessage",
        "forwardmessage",
    }
)
EDIT_METHODS = frozenset(
    {"editmessagetext", "editmessagecaption", "editmessagemedia", "editmessagereplymarkup"}
)
OTHER_POSTS = frozenset(
    {
        "deletemessage",
        "deletemessages",
        "pinchatmessage",
        "unpinchatmessage",
        "unpinallchatmessages",
        "createforumtopic",
        "editforumtopic",
        "closeforumtopic",
        "reopenforumtopic",
        "deleteforumtopic",
    }
)
# Every request that posts to a chat: what the budgets count.
POST_METHODS = SEND_METHODS | EDIT_METHODS | OTHER_POSTS


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` requests in any window of ``period`` seconds."""

    count: int
    period: float


@dataclass(slots=True)
class Limits:
    """What the server enforces; ``enabled=False`` (or ``Limits.off()``) lets all through.

    ``tolerance`` forgives clock jitter between a paced sender and the server: a
    request is counted in a window for ``period - tolerance`` seconds.
    ``methods`` are the (lower-cased) methods that spend the budget: by default
    every one that posts to a chat (``POST_METHODS``), edits and topic creation too.
    """

    enabled: bool = True
    per_chat: Rate | None = Rate(1, 1.0)
    per_group: Rate | None = Rate(20, 60.0)
    per_bot: Rate | None = Rate(30, 1.0)
    tolerance: float = 0.05
    methods: frozenset[str] = field(default=POST_METHODS)

    @classmethod
    def off(cls) -> Limits:
        return cls(enabled=False)


@dataclass(frozen=True, slots=True)
class Throttled:
    """One request answered 429."""

    token: str
    method: str
    chat_id: int
    scope: str  # "chat", "group" or "bot"
    retry_after: int
    at: float


class FloodControl:
    """Counts accepted requests per (bot, scope, chat) and says when one must wait."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._windows: dict[tuple[str, str, int], deque[float]] = {}

    def _scopes(self, token: str, chat_id: int, is_group: bool) -> list[tuple[str, int, Rate]]:
        scopes: list[tuple[str, int, Rate]] = []
        if self.limits.per_chat is not None:
            scopes.append(("chat", chat_id, self.limits.per_chat))
        if is_group and self.limits.per_group is not None:
            scopes.append(("group", chat_id, self.limits.per_group))
        if self.limits.per_bot is not None:
            scopes.append(("bot", 0, self.limits.per_bot))
        return scopes

    def check(
        self, token: str, chat_id: int, is_group: bool, cost: int = 1
    ) -> tuple[str, int] | None:
        """None when the request may pass (and is counted ``cost`` times: a media group's
        items), else (scope, retry_after)."""
        now = self.clock()
        worst: tuple[str, float] | None = None
        scopes = self._scopes(token, chat_id, is_group)
        for scope, key, rate in scopes:
            window = self._windows.setdefault((token, scope, key), deque())
            horizon = now - (rate.period - self.limits.tolerance)
            while window and window[0] <= horizon:
                window.popleft()
            # A request costing more than the whole budget (an album in a private
            # chat) passes when the window is empty, and fills it.
            over = len(window) + min(cost, rate.count) - rate.count
            if over > 0:
                wait = window[over - 1] - horizon
                if worst is None or wait > worst[1]:
                    worst = (scope, wait)
        if worst is not None:
            return worst[0], max(1, math.ceil(worst[1]))
        for scope, key, _ in scopes:
            self._windows[(token, scope, key)].extend([now] * cost)
        return None
