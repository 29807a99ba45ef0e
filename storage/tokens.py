"""The admin API's personal tokens: add, list, revoke, and find one by its hash."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.models import ApiToken

api_tokens = cast(Table, ApiToken.__table__)


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: int
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


_COLUMNS = (
    api_tokens.c.id,
    api_tokens.c.name,
    api_tokens.c.role,
    api_tokens.c.created_at,
    api_tokens.c.last_used_at,
    api_tokens.c.revoked_at,
)


async def add(
    conn: AsyncConnection, *, name: str, role: str, secret_hash: str, now: datetime
) -> bool:
    """A new token for ``name``; a revoked name's row takes the new one (its audit
    entries keep naming the same person). False when ``name`` holds a live token."""
    t = api_tokens.c
    row = (
        await conn.execute(select(t.id, t.revoked_at).where(t.name == name).with_for_update())
    ).first()
    values = {
        "role": role,
        "secret_hash": secret_hash,
        "created_at": now,
        "last_used_at": None,
        "revoked_at": None,
    }
    if row is None:
        await conn.execute(insert(api_tokens).values(name=name, **values))
        return True
    if row.revoked_at is None:
        return False
    await conn.execute(update(api_tokens).where(t.id == row.id).values(**values))
    return True


async def listing(conn: AsyncConnection) -> list[TokenRow]:
    rows = await conn.execute(select(*_COLUMNS).order_by(api_tokens.c.name))
    return [TokenRow(*row) for row in rows]


async def revoke(conn: AsyncConnection, name: str, now: datetime) -> bool:
    """False when ``name`` has no live token."""
    t = api_tokens.c
    done = await conn.execute(
        update(api_tokens).where(t.name == name, t.revoked_at.is_(None)).values(revoked_at=now)
    )
    return bool(done.rowcount)


async def by_hash(conn: AsyncConnection, secret_hash: str) -> TokenRow | None:
    row = (
        await conn.execute(select(*_COLUMNS).where(api_tokens.c.secret_hash == secret_hash))
    ).first()
    return TokenRow(*row) if row is not None else None


async def touch(conn: AsyncConnection, token_id: int, now: datetime, before: datetime) -> None:
    """Mark the token used at ``now`` unless it already was since ``before``: one
    write a minute per token, not one per request."""
    t = api_tokens.c
    await conn.execute(
        update(api_tokens)
        .where(t.id == token_id, or_(t.last_used_at.is_(None), t.last_used_at < before))
        .values(last_used_at=now)
    )
