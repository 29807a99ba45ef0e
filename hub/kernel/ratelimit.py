"""Token buckets per key, for the channels' send limits (and ``retry_after`` pauses)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from hub.kernel.ports import RateLimit


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    paused_until: float = 0.0


class RateLimiter:
    """``delay(key)`` says how long to wait before a send; ``take(key)`` spends a token."""

    def __init__(self, limit: RateLimit, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._monotonic = monotonic
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, key: str) -> _Bucket:
        now = self._monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.limit.burst), now)
        else:
            bucket.tokens = min(
                float(self.limit.burst),
                bucket.tokens + (now - bucket.updated) * self.limit.per_second,
            )
            bucket.updated = now
        return bucket

    def delay(self, key: str) -> float:
        bucket = self._bucket(key)
        wait = max(0.0, bucket.paused_until - bucket.updated)
        if bucket.tokens < 1:
            wait = max(wait, (1 - bucket.tokens) / self.limit.per_second)
        return wait

    def take(self, key: str) -> None:
        self._bucket(key).tokens -= 1

    def pause(self, key: str, seconds: float) -> None:
        """The peer said to wait (e.g. Telegram's ``retry_after``)."""
        bucket = self._bucket(key)
        bucket.paused_until = max(bucket.paused_until, bucket.updated + seconds)
        bucket.tokens = min(bucket.tokens, 0.0)

    def forget_idle(self) -> None:
        """Drop full buckets, so that a million recipients do not pin memory."""
        now = self._monotonic()
        full = float(self.limit.burst)
        for key in [
            k
            for k, b in self._buckets.items()
            if b.paused_until <= now
            and b.tokens + (now - b.updated) * self.limit.per_second >= full
        ]:
            del self._buckets[key]
