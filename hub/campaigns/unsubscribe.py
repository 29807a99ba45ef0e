"""Signed unsubscribe links of campaign email (RFC 2369 List-Unsubscribe, RFC 8058).

A token names the client and the campaign and carries an HMAC-SHA256 over both
under the hub's key, so nobody can unsubscribe someone else by guessing. The
link is ``{base}/u?t=TOKEN``: a GET shows a page with a button, a POST (the
button, or a mail client's one-click ``List-Unsubscribe=One-Click``) opts out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from hub.kernel.http import is_decimal

_TOKEN = re.compile(
    r"^(?P<client>[0-9]{1,12})\.(?P<campaign>[0-9]{1,12})\.(?P<mac>[A-Za-z0-9_-]{22})$"
)


class Unsubscribe:
    def __init__(self, key: bytes, base_url: str) -> None:
        self._key = hashlib.sha256(b"hub-unsubscribe:" + key).digest()
        self.base_url = base_url.rstrip("/")

    def _mac(self, client_id: int, campaign_id: int) -> str:
        digest = hmac.new(self._key, f"{client_id}:{campaign_id}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()[:16]).decode().rstrip("=")

    def token(self, client_id: int, campaign_id: int) -> str:
        return f"{client_id}.{campaign_id}.{self._mac(client_id, campaign_id)}"

    def url(self, client_id: int, campaign_id: int) -> str:
        return f"{self.base_url}/u?t={self.token(client_id, campaign_id)}"

    def verify(self, token: str) -> tuple[int, int] | None:
        """(client id, campaign id) of a genuine token, else None."""
        match = _TOKEN.match(token.strip())
        if match is None:
            return None
        client_id, campaign_id = int(match["client"]), int(match["campaign"])
        if not (is_decimal(match["client"]) and is_decimal(match["campaign"])):
            return None  # no row has such an id (a database would refuse to compare it)
        if not hmac.compare_digest(match["mac"], self._mac(client_id, campaign_id)):
            return None
        return client_id, campaign_id
