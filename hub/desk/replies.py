"""A manager's answer to a client: one ``out`` interaction and its outbox row,
written in one transaction; the dispatcher delivers it over the client's channel.

Notes (``direction=note``) are logged the same way and never sent. An answer or
a note given outside the client's topic (from a manager's private chat, or a
canned answer) is copied into the topic by an ``answered`` row for the staff
channel, posted as the group's budget allows like any other.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.delivery.outbox import Outgoing
from hub.kernel.clock import Clock
from hub.kernel.errors import HubError
from hub.kernel.types import Channel, Delivery, Direction
from storage import Database
from storage import replies as q
from storage import sla as sla_q

# Over which channel, and to which identity, an answer to a conversation goes.
# A web form leaves no channel to answer on: the answer goes by email.
REPLY_ROUTE = {
    Channel.TELEGRAM.value: (Channel.TELEGRAM.value, "telegram"),
    Channel.EMAIL.value: (Channel.EMAIL.value, "email"),
    Channel.WEBFORM.value: (Channel.EMAIL.value, "email"),
}


class NoAddress(HubError):
    """The client has no identity the conversation's channel can reach."""


class UnknownConversation(HubError):
    pass


@dataclass(frozen=True, slots=True)
class Queued:
    interaction_id: int
    outbox_id: int | None


async def queue(
    conn: AsyncConnection,
    *,
    conversation: q.ConversationRow,
    text: str,
    author: str,
    now: datetime,
    key: str | None = None,
    note: bool = False,
    note_channel: str | None = None,
) -> Queued:
    """In the caller's transaction: log the answer as an ``out`` interaction with
    its outbox row over the conversation's reply route, or a note (``key`` then
    marks the note, on ``note_channel``, so that a repeat is recognized)."""
    said = _Said(conversation, author, text, now)
    if note:
        return await _note(conn, said, key=key, channel=note_channel)
    queued = await _answer(conn, said, key=key)
    await q.mark_responded(conn, conversation.id, now)
    await sla_q.meet(conn, conversation.id, now)  # the response deadlines are met
    return queued


@dataclass(frozen=True, slots=True)
class _Said:
    """What a manager said, where and when: the part a note and an answer share."""

    conversation: q.ConversationRow
    author: str
    text: str
    at: datetime

    def interaction(self) -> dict[str, Any]:
        return {
            "client_id": self.conversation.client_id,
            "conversation_id": self.conversation.id,
            "author": self.author,
            "text": self.text,
            "at": self.at,
        }


async def _note(
    conn: AsyncConnection, said: _Said, *, key: str | None, channel: str | None
) -> Queued:
    interaction_id, _ = await q.append(
        conn,
        {
            **said.interaction(),
            "direction": Direction.NOTE.value,
            "channel": channel,
            "account": channel,
            "external_id": key if channel else None,
        },
        None,
    )
    return Queued(interaction_id, None)


async def _answer(conn: AsyncConnection, said: _Said, *, key: str | None) -> Queued:
    """The ``out`` interaction and its outbox row, to the client's address of the
    conversation's reply route, in the thread of their last message."""
    conv = said.conversation
    channel, kind = REPLY_ROUTE[conv.channel]
    recipient = await q.address(conn, conv.client_id, kind)
    if recipient is None:
        raise NoAddress(f"client {conv.client_id} has no {kind} address to answer on")
    in_reply_to = await q.last_inbound_external_id(conn, conv.id)
    interaction_id, outbox_id = await q.append(
        conn,
        {
            **said.interaction(),
            "direction": Direction.OUT.value,
            "channel": channel,
            "account": conv.account,
            "delivery": Delivery.PENDING.value,
        },
        Outgoing(
            idempotency_key=key or f"reply:{conv.id}:{uuid.uuid4().hex}",
            channel=channel,
            account=conv.account,
            recipient=recipient,
            kind="reply",
            text=said.text,
            at=said.at,
            subject=conv.subject,
            extras={"in_reply_to": in_reply_to} if in_reply_to else None,
            client_id=conv.client_id,
            conversation_id=conv.id,
        ).row(),
    )
    return Queued(interaction_id, outbox_id)


def topic_copy(
    *,
    client_id: int,
    conversation_id: int,
    interaction_id: int,
    text: str,
    author: str,
    note: bool,
    files: Sequence[str],
    staff_channel: str,
    now: datetime,
) -> Outgoing:
    """The copy of an answer (or note) for the client's topic in the staff group."""
    return Outgoing(
        idempotency_key=f"answered:{interaction_id}",
        channel=staff_channel,
        account="staff",
        recipient="staff",
        kind="answered",
        text=text,
        at=now,
        extras={"author": author, "note": note, "files": list(files)},
        client_id=client_id,
        conversation_id=conversation_id,
        interaction_id=interaction_id,
    )


async def reply(
    db: Database,
    clock: Clock,
    conversation_id: int,
    text: str,
    *,
    author: str,
    note: bool = False,
    key: str | None = None,
) -> Queued:
    """Log the answer and queue it for delivery (or just log a note).

    ``key`` is the idempotency key of the outbox row; give the id of what caused
    the reply (e.g. the manager's Telegram message) so that a redelivered
    command queues nothing twice.
    """
    async with db.write() as conn:
        conv = await q.conversation(conn, conversation_id)
        if conv is None:
            raise UnknownConversation(f"no conversation {conversation_id}")
        return await queue(
            conn,
            conversation=conv,
            text=text,
            author=author,
            now=clock.now(),
            key=key,
            note=note,
        )
