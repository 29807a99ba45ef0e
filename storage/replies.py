"""Queries behind a manager's reply: the conversation's channel, the client's address."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import conversations, identities, interactions, outbox


@dataclass(frozen=True, slots=True)
class ConversationRow:
    id: int
    client_id: int
    channel: str
    account: str
    subject: str | None
    first_response_at: datetime | None


async def conversation(conn: AsyncConnection, conversation_id: int) -> ConversationRow | None:
    c = conversations.c
    row = (
        await conn.execute(
            select(c.id, c.client_id, c.channel, c.account, c.subject, c.first_response_at).where(
                c.id == conversation_id
            )
        )
    ).one_or_none()
    return ConversationRow(*row) if row is not None else None


async def address(conn: AsyncConnection, client_id: int, kind: str) -> str | None:
    """The client's newest identity of ``kind``."""
    i = identities.c
    return cast(
        "str | None",
        (
            await conn.execute(
                select(i.value)
                .where(i.client_id == client_id, i.kind == kind)
                .order_by(i.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none(),
    )


async def last_inbound_external_id(conn: AsyncConnection, conversation_id: int) -> str | None:
    i = interactions.c
    return cast(
        "str | None",
        (
            await conn.execute(
                select(i.external_id)
                .where(i.conversation_id == conversation_id, i.direction == "in")
                .order_by(i.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none(),
    )


async def append(
    conn: AsyncConnection, interaction: dict[str, Any], message: dict[str, Any] | None
) -> tuple[int, int | None]:
    """Append an interaction and, when given, its outbox row (linked to it)."""
    interaction_id = int(
        (
            await conn.execute(insert(interactions).returning(interactions.c.id), interaction)
        ).scalar_one()
    )
    if message is None:
        return interaction_id, None
    outbox_id = int(
        (
            await conn.execute(
                insert(outbox).returning(outbox.c.id),
                {**message, "interaction_id": interaction_id},
            )
        ).scalar_one()
    )
    return interaction_id, outbox_id


async def mark_responded(conn: AsyncConnection, conversation_id: int, at: datetime) -> None:
    """Set the first response time once; note the conversation's activity."""
    c = conversations.c
    await conn.execute(
        update(conversations)
        .where(c.id == conversation_id)
        .values(first_response_at=func.coalesce(c.first_response_at, at), updated_at=at)
    )
