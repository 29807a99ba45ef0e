"""The hub's normalized message types, shared by every channel.

A channel adapter turns raw input into an :class:`InboundMessage` and hands it to
the ingest sink; the dispatcher hands an :class:`OutboundMessage` to a channel's
``send``. Channel-specific details travel in ``extras``, never as new fields.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Channel(enum.StrEnum):
    TELEGRAM = "telegram"
    EMAIL = "email"
    WEBFORM = "webform"


class IdentityKind(enum.StrEnum):
    TELEGRAM = "telegram"
    EMAIL = "email"
    PHONE = "phone"


class Direction(enum.StrEnum):
    IN = "in"
    OUT = "out"
    NOTE = "note"
    EVENT = "event"


class Delivery(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class ConversationStatus(enum.StrEnum):
    OPEN = "open"
    PENDING = "pending"  # answered: the manager's turn is over
    WAITING = "waiting"  # waiting on the client: the resolution clock stops
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Identity:
    """How a client is reached: ``kind`` plus a normalized ``value``.

    Build identities with :func:`hub.kernel.identities.normalize` so that the same
    address written two ways is one identity.
    """

    kind: IdentityKind
    value: str
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message from a client, as every channel normalizes it.

    ``external_id`` is the dedup key within the channel (Telegram chat+message
    id, email Message-ID or a content hash, a form's idempotency key): a second
    message with the same channel and external id is a redelivery.
    ``identities`` lists every identity the message proves (the sender first).
    ``thread_hints`` are external ids of earlier messages this one answers.
    """

    channel: Channel
    account: str
    external_id: str
    identities: tuple[Identity, ...]
    received_at: datetime
    text: str = ""
    subject: str | None = None
    html: str | None = None
    thread_hints: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    language: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sender(self) -> Identity:
        return self.identities[0]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What ingest committed: ``duplicate`` is true for a recognized redelivery."""

    interaction_id: int
    client_id: int
    conversation_id: int | None  # None for a service message (a bare /start)
    duplicate: bool
    new_client: bool = False
    new_conversation: bool = False


# Outbox kinds addressed to the staff (the managers' chat or a manager), not to a client.
STAFF_KINDS = frozenset(
    {
        "mirror",
        "notify",
        "assigned",
        "offer",
        "delivery_failed",
        "reminder",
        "alert",
        "call_task",
        "answered",  # a manager's answer given outside the topic, copied into it
        "erase",  # a forgotten client's topic and private messages, deleted
    }
)


# Outbox kinds for the staff group, the team's shared view: sent after what a person
# waits for (a client's answer, a manager's notice) when both are due, since the
# group's budget (20 posts a minute) keeps them waiting anyway.
SHARED_VIEW_KINDS = frozenset({"mirror", "answered"})


# Outbox kinds that carry their interaction's files: a manager's answer. A campaign,
# an auto-reply or a confirmation never does, and its send need not look them up.
FILE_KINDS = frozenset({"reply"})


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message for a channel to deliver, read from the outbox.

    ``idempotency_key`` is stable across retries and restarts: a channel that
    can make the peer recognize a repeat (an email Message-ID) derives it from
    this key.
    """

    outbox_id: int
    channel: str
    account: str
    recipient: str
    kind: str
    text: str
    idempotency_key: str
    subject: str | None = None
    client_id: int | None = None
    conversation_id: int | None = None
    interaction_id: int | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendResult:
    """A channel's receipt: the peer's id of the delivered message, if any."""

    external_id: str | None = None


class Role(enum.StrEnum):
    """What a member of staff is (``[[managers]] role``), and so what they may do."""

    MANAGER = "manager"  # answers the clients nobody keeps yet, their own and their team's
    SUPERVISOR = "supervisor"  # oversees the managers: every client, missed deadlines
    MARKETER = "marketer"  # campaigns and reports, no client's conversation
    ADMIN = "admin"  # everything
    # Not a person: a business system's API token, which only records business
    # events (an order system, a shop); never a manager's role.
    INTEGRATION = "integration"


# Who sees every client and may act on another manager's work (a call outcome).
OVERSEERS = frozenset({Role.SUPERVISOR, Role.ADMIN})
# Who runs campaigns.
MARKETERS = frozenset({Role.MARKETER, Role.ADMIN})


@dataclass(frozen=True, slots=True)
class ManagerRef:
    """A registered manager, as the staff surface sees them."""

    id: int
    name: str
    telegram_id: int
    role: str
    language: str | None = None
    team: str | None = None
    timezone: str | None = None  # IANA; None: the hub's


@dataclass(frozen=True, slots=True)
class Topic:
    """Where a client's conversation lives in the staff chat (a forum topic)."""

    chat_id: int
    thread_id: int


@dataclass(frozen=True, slots=True)
class Contact:
    """One line of a card's recent history."""

    at: datetime
    direction: str
    channel: str | None
    text: str


@dataclass(frozen=True, slots=True)
class Blocked:
    """A client blocked by a supervisor or an admin: when, and by whom."""

    at: datetime
    by: str | None


@dataclass(frozen=True, slots=True)
class ClientCard:
    id: int
    name: str | None
    stage: str
    owner: str | None
    identities: tuple[tuple[str, str], ...]
    open_requests: int
    assignee: str | None
    language: str | None
    source: str | None
    tags: tuple[str, ...]
    last_contacts: tuple[Contact, ...]
    due: datetime | None = None  # the open request's next response deadline (SLA)
    custom: tuple[tuple[str, str], ...] = ()  # custom fields (imports, forms)
    reminders: tuple[tuple[datetime, str], ...] = ()  # pending reminders: (due, text)
    blocked: Blocked | None = None  # None: not blocked


@dataclass(frozen=True, slots=True)
class StoredAttachment:
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class InboxItem:
    client_id: int
    client_name: str | None
    conversation_id: int
    channel: str
    waiting_since: datetime
    topic: Topic | None


# The relationship stages (hub.clients.stages moves clients along them).
LADDER = (
    "prospect",
    "first_time_buyer",
    "repeat_buyer",
    "client",
    "supporter",
    "advocate",
    "partner",
)
LAPSED = "lapsed"
STAGES = (*LADDER, LAPSED)
