"""Personal admin API tokens: made, listed and revoked from the command line, and
checked on every ``/api/`` call.

A token is ``hub_`` and 43 characters of ``secrets.token_urlsafe(32)`` (256 bits):
shown once when made, kept only as its SHA-256. A slow salted hash (as for
passwords) would guard nothing more against a guess among 2²⁵⁶, and the plain
digest lets a call find its row by an index. The config's ``admin.token`` is the
full-access token named ``config``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.admin.access import Caller
from hub.kernel.clock import Clock, SystemClock
from hub.kernel.errors import HubError
from hub.kernel.types import Role
from storage import Database
from storage import desk as desk_q
from storage import tokens as q
from storage.tokens import TokenRow

PREFIX = "hub_"
CONFIG_NAME = "config"
MAX_SECRET = 200
_NAME = re.compile(r"[\w.@-]{1,100}")
_TOUCH_EVERY = timedelta(minutes=1)
_ROLES = ", ".join(r.value for r in Role)

Refused = Literal["unknown", "revoked"]


class TokenError(HubError):
    """A token cannot be made or revoked as asked; the message says why."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise TokenError(f"name: 1 to 100 letters, digits and . _ @ - (got {name[:40]!r})")
    if name == CONFIG_NAME:
        raise TokenError(f"name: {CONFIG_NAME!r} is the config's admin.token")
    return name


def check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise TokenError(f"role: one of {_ROLES} (got {role[:40]!r})") from None


class Tokens:
    """The token table through the hub's eyes; ``actor`` names who manages tokens."""

    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or SystemClock()

    async def add(self, name: str, role: str, *, actor: str = "cli") -> str:
        """A new token for ``name`` with ``role``: the secret, which nothing keeps."""
        name, checked = check_name(name), check_role(role)
        secret = PREFIX + secrets.token_urlsafe(32)
        now = self.clock.now()
        try:
            async with self.db.write() as conn:
                added = await q.add(
                    conn, name=name, role=checked.value, secret_hash=digest(secret), now=now
                )
                if added:
                    await self._audit(conn, "token_added", name, actor, role=checked.value)
        except IntegrityError:  # the same name added at the same moment elsewhere
            added = False
        if not added:
            raise TokenError(f"{name!r} already has a token (revoke it first)")
        return secret

    async def listing(self) -> list[TokenRow]:
        async with self.db.read() as conn:
            return await q.listing(conn)

    async def revoke(self, name: str, *, actor: str = "cli") -> None:
        async with self.db.write() as conn:
            done = await q.revoke(conn, name, self.clock.now())
            if done:
                await self._audit(conn, "token_revoked", name, actor)
        if not done:
            raise TokenError(f"no live token named {name[:100]!r}")

    async def caller(self, secret: str) -> Caller | Refused:
        """Who holds ``secret``, marking the token used (at most once a minute)."""
        if not secret.startswith(PREFIX) or len(secret) > MAX_SECRET:
            return "unknown"
        # Found by its digest through an index: what the lookup's timing could
        # tell is about the digest, from which nothing of a secret follows.
        async with self.db.read() as conn:
            row = await q.by_hash(conn, digest(secret))
        if row is None:
            return "unknown"
        if row.revoked_at is not None:
            return "revoked"
        now = self.clock.now()
        if row.last_used_at is None or row.last_used_at < now - _TOUCH_EVERY:
            async with self.db.write() as conn:
                await q.touch(conn, row.id, now, now - _TOUCH_EVERY)
        return Caller(row.name, Role(row.role))

    async def _audit(
        self, conn: AsyncConnection, action: str, name: str, actor: str, **details: str
    ) -> None:
        await desk_q.audit(
            conn,
            {
                "at": self.clock.now(),
                "actor": actor,
                "action": action,
                "object_type": "api_token",
                "object_id": None,
                "details": {"name": name, **details},
            },
        )
