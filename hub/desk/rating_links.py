"""Signed rating links of a resolution email: ``{base}/r?t=TOKEN``, one per score.

A token names the rating and the score and carries an HMAC-SHA256 over both
under the key the unsubscribe links use (``campaigns.unsubscribe_secret``), for
another purpose (the key is derived apart), so nobody rates someone else's
request by guessing, and an unsubscribe token is no rating token. The token
rides in the query, as the unsubscribe links' does: request logs name the path only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import NamedTuple

from hub.kernel.http import is_decimal

_TOKEN = re.compile(r"^(?P<rating>[0-9]{1,12})\.(?P<score>[1-5])\.(?P<mac>[A-Za-z0-9_-]{22})$")


class Rated(NamedTuple):
    rating_id: int
    score: int


class RatingLinks:
    def __init__(self, key: bytes, base_url: str) -> None:
        self._key = hashlib.sha256(b"hub-rating:" + key).digest()
        self.base_url = base_url.rstrip("/")

    def _mac(self, rating_id: int, score: int) -> str:
        digest = hmac.new(self._key, f"{rating_id}:{score}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()[:16]).decode().rstrip("=")

    def token(self, rating_id: int, score: int) -> str:
        return f"{rating_id}.{score}.{self._mac(rating_id, score)}"

    def url(self, rating_id: int, score: int) -> str:
        return f"{self.base_url}/r?t={self.token(rating_id, score)}"

    def verify(self, token: str) -> Rated | None:
        """The rating and score of a genuine token, else None."""
        match = _TOKEN.match(token.strip())
        if match is None:
            return None
        rating_id, score = int(match["rating"]), int(match["score"])
        if not is_decimal(match["rating"]):
            return None  # no row has such an id (a database would refuse to compare it)
        if not hmac.compare_digest(match["mac"], self._mac(rating_id, score)):
            return None
        return Rated(rating_id, score)
