"""The hub's tables as SQLAlchemy 2 declarative models.

Interactions are append-only: the migration installs triggers that refuse a
DELETE and any change of what was said (only delivery state and the client link
may change). Hot paths use the Core tables (``Model.__table__``) for bulk work.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.types import JSONDict, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONDict(),
    }


class Manager(Base):
    __tablename__ = "managers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(20), default="manager")
    hours: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str | None] = mapped_column(String(64))
    capacity: Mapped[int] = mapped_column(Integer, default=20)
    attrs: Mapped[dict[str, Any] | None]
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    away: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(300))
    stage: Mapped[str] = mapped_column(String(30), default="prospect")
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id"))
    language: Mapped[str | None] = mapped_column(String(8))
    source: Mapped[str | None] = mapped_column(String(300))
    tags: Mapped[list[str] | None] = mapped_column(JSON)
    custom: Mapped[dict[str, Any] | None]
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("clients.id"))
    # Blocked by a supervisor or an admin: the client's messages are logged and
    # reach no manager.
    blocked_at: Mapped[datetime | None]
    blocked_by: Mapped[int | None] = mapped_column(ForeignKey("managers.id"))
    # Flood control: when the client's current minute of messages began, and how
    # many requests they sent in it (the ingest path adds each batch's).
    flood_at: Mapped[datetime | None]
    flood_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The person asked to be forgotten: their data is tombstoned (see Erasure).
    forgotten_at: Mapped[datetime | None]
    # When a person last moved the stage (a rule leaves it alone that day), and
    # the stage a lapsed client returns to.
    stage_by_hand_at: Mapped[datetime | None]
    stage_before_lapse: Mapped[str | None] = mapped_column(String(30))


class Identity(Base):
    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("kind", "value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime]


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_client_channel", "client_id", "channel", "status"),
        Index("ix_conversations_status_assignee", "status", "assignee_id"),
        # the console's live feed: the newest change of any request
        Index("ix_conversations_updated_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    channel: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="open")
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id"))
    subject: Mapped[str | None] = mapped_column(String(500))
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    first_response_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    # status ``waiting``: since when the request waits on the client
    waiting_since: Mapped[datetime | None]


class Interaction(Base):
    __tablename__ = "interactions"
    __table_args__ = (
        UniqueConstraint("channel", "external_id"),
        Index("ix_interactions_client", "client_id", "id"),
        Index("ix_interactions_conversation", "conversation_id", "id"),
        # the reports' period: counted from the index alone (time, direction, channel)
        Index("ix_interactions_at", "at", "direction", "channel"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"))
    direction: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str | None] = mapped_column(String(16))
    account: Mapped[str | None] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(500))
    author: Mapped[str | None] = mapped_column(String(300))
    subject: Mapped[str | None] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str | None] = mapped_column(Text)
    extras: Mapped[dict[str, Any] | None]
    at: Mapped[datetime]
    delivery: Mapped[str | None] = mapped_column(String(8))
    delivery_error: Mapped[str | None] = mapped_column(Text)


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    interaction_id: Mapped[int] = mapped_column(ForeignKey("interactions.id"), index=True)
    filename: Mapped[str] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)


class Outbox(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        # what was sent in the last minute: the staff chats' budgets after a restart
        Index("ix_outbox_sent", "status", "sent_at"),
        # a reply to what the hub sent threads by the id the peer gave it
        Index("ix_outbox_external", "channel", "external_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(200))
    recipient: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text, default="")
    extras: Mapped[dict[str, Any] | None]
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id"))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"))
    interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class Reminder(Base):
    __tablename__ = "reminders"
    __table_args__ = (
        Index("ix_reminders_due", "status", "due_at"),
        # an automatic follow-up's key: created once per occasion
        Index("ix_reminders_key", "key", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id"))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id"))
    due_at: Mapped[datetime]
    text: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(20), default="reminder")
    status: Mapped[str] = mapped_column(String(10), default="pending")
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    fired_at: Mapped[datetime | None]
    key: Mapped[str | None] = mapped_column(String(200))
    # a delivered reminder's buttons act only on the firing they came with
    fired_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Audit(Base):
    __tablename__ = "audit"
    __table_args__ = (
        Index("ix_audit_object", "object_type", "object_id"),
        # ``hub audit`` and ``/api/audit`` read a period, newest first
        Index("ix_audit_at", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str | None] = mapped_column(String(50))
    object_id: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any] | None]


class StaffTopic(Base):
    """The forum topic of a client in a staff chat."""

    __tablename__ = "staff_topics"
    __table_args__ = (UniqueConstraint("chat_id", "thread_id"),)

    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    thread_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class MailboxCursor(Base):
    """How far an IMAP mailbox was read: UIDVALIDITY and the last UID committed."""

    __tablename__ = "mailbox_cursors"

    key: Mapped[str] = mapped_column(String(500), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class Deadline(Base):
    """A response deadline (SLA) of a conversation and how far its escalation went.

    ``kind``: ``first_response``, ``next_response`` or ``resolution``. ``step``:
    0 set, 1 assignee reminded, 2 missed (supervisors told), 3 reassigned.
    ``next_at`` is when the next step is due (None: no more steps); the
    escalation round claims rows by it. ``status``: ``open``, ``met``.
    """

    __tablename__ = "deadlines"
    __table_args__ = (
        Index("ix_deadlines_next", "status", "next_at"),
        Index("ix_deadlines_conversation", "conversation_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    policy: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime]
    remind_at: Mapped[datetime]
    due_at: Mapped[datetime]
    reassign_at: Mapped[datetime | None]
    step: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(10), default="open")
    met_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    # the clock stopped while the request waits on the client
    paused_at: Mapped[datetime | None]


class Campaign(Base):
    """A marketer's campaign: a segment, a script (with variants) and a mode.

    ``mode``: ``message`` (sent over each client's channel) or ``calls`` (a call
    task per client for the managers). ``status``: ``draft``, ``running``,
    ``paused``, ``done``. ``spec`` holds the segment, the script and the options
    as the campaign file gave them.
    """

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), default="draft")
    spec: Mapped[dict[str, Any]]
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # when the segment was turned into targets: once per campaign
    targeted_at: Mapped[datetime | None]


class CampaignTarget(Base):
    """One client of a campaign: a message to send or a call task to make.

    ``status``: ``pending`` (not yet enqueued; ``due_at`` defers it past quiet
    hours), ``queued`` (its outbox row is written, keyed by campaign and
    client), ``skipped`` (``reason`` says why: opted out, unreachable), and for
    call tasks ``done`` once an outcome is recorded.
    """

    __tablename__ = "campaign_targets"
    __table_args__ = (
        UniqueConstraint("campaign_id", "client_id"),
        Index("ix_campaign_targets_due", "campaign_id", "status", "due_at"),
        Index("ix_campaign_targets_manager", "manager_id", "outcome"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    variant: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(10), default="pending")
    channel: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(40))
    due_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    outbox_key: Mapped[str | None] = mapped_column(String(200))
    interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id"))
    outcome: Mapped[str | None] = mapped_column(String(20))
    outcome_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Merge(Base):
    """A merge of two client records, with what it moved, so that it can be undone."""

    __tablename__ = "merges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kept_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    merged_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    actor: Mapped[str] = mapped_column(String(200))
    moved: Mapped[dict[str, Any] | None]
    at: Mapped[datetime]
    undone_at: Mapped[datetime | None]


class SearchPosition(Base):
    """How far the full-text index has read the interaction log (SQLite's FTS5)."""

    __tablename__ = "search_positions"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)


class StaffPrivateMessage(Base):
    """A message the bot posted in a manager's private chat about a client: a reply
    to it answers that client, after a restart too. ``entry`` is the number of an
    entry in a message that gathers several clients (0: the whole message)."""

    __tablename__ = "staff_private_messages"
    __table_args__ = (Index("ix_staff_private_messages_at", "at"),)

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    entry: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"))
    at: Mapped[datetime]


class StaffCurrentClient(Base):
    """The client a manager's plain text in the private chat goes to (``/c ID``)."""

    __tablename__ = "staff_current_clients"

    manager_id: Mapped[int] = mapped_column(ForeignKey("managers.id"), primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    at: Mapped[datetime]


class ApiToken(Base):
    """A person's admin API token: only its SHA-256 is kept (the secret is shown once).

    ``name`` is who holds it (the audit's actor is ``api:NAME``), ``role`` what it
    may do; a revoked token answers 401. A revoked name may be given a new token.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Erasure(Base):
    """Personal data erased on purpose: the one exception to the log's append-only
    rule. A client forgotten on request (``client_id``), or every message logged
    before ``before`` (retention). The log's guard lets a row's text become the
    tombstone only where an erasure covers it; who did it and why is kept here."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id"), index=True)
    before: Mapped[datetime | None]


class BusinessEvent(Base):
    """What a client did outside a conversation (a purchase, an order, a payment, a
    meeting, a call), told by the business; ``key`` is the caller's event id (a
    second call with it is the same event). Each is also an interaction on the
    client's timeline (``interaction_id``)."""

    __tablename__ = "business_events"
    __table_args__ = (Index("ix_business_events_client", "client_id", "kind", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))
    at: Mapped[datetime]
    amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    fields: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]


class Rating(Base):
    """A satisfaction ask sent on a request's resolution, and the client's answer
    (``score`` 1–5, then perhaps a ``comment``). ``manager_id``: who resolved it."""

    __tablename__ = "ratings"
    __table_args__ = (
        Index("ix_ratings_client", "client_id", "asked_at"),
        Index("ix_ratings_rated", "rated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id"))
    channel: Mapped[str] = mapped_column(String(16))
    score: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    asked_at: Mapped[datetime]
    rated_at: Mapped[datetime | None]
    commented_at: Mapped[datetime | None]


class WebhookSubscription(Base):
    """``[[webhooks]]`` as rows (synced at start and on reload): an event is queued
    for every subscriber of its type (or of ``*``) by one INSERT … SELECT."""

    __tablename__ = "webhook_subscriptions"
    __table_args__ = (Index("ix_webhook_subscriptions_type", "type"),)

    webhook: Mapped[str] = mapped_column(String(100), primary_key=True)
    type: Mapped[str] = mapped_column(String(40), primary_key=True)


class ConsoleLink(Base):
    """A one-time sign-in link to the web console for a manager: only the SHA-256 of
    its secret is kept; it signs in once (``used_at``) before ``expires_at``.
    ``sent_by``: ``cli``, ``telegram`` or ``email``."""

    __tablename__ = "console_links"
    __table_args__ = (Index("ix_console_links_manager", "manager_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    manager_id: Mapped[int] = mapped_column(ForeignKey("managers.id"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    sent_by: Mapped[str] = mapped_column(String(16))


class ConsoleSession(Base):
    """A person signed in to the web console: the session id kept as its SHA-256;
    ``ended_at`` once they sign out or lose the right (token revoked, removed)."""

    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_manager", "manager_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    manager_id: Mapped[int] = mapped_column(ForeignKey("managers.id"))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class ConsoleKey(Base):
    """The key signing the console's cookies, shared by every instance."""

    __tablename__ = "console_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]


class ConsoleRead(Base):
    """A client a console session has read: the first read is audited, not the rest."""

    __tablename__ = "console_reads"

    session_id: Mapped[int] = mapped_column(ForeignKey("console_sessions.id"), primary_key=True)
    client_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class SettingOverride(Base):
    """A reloadable config key set in the console or the admin API: its value (as
    the file would spell it, under ``value``) overrides the file's on every instance."""

    __tablename__ = "setting_overrides"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict[str, Any]]
    changed_at: Mapped[datetime]
    changed_by: Mapped[str] = mapped_column(String(200))


class SettingsVersion(Base):
    """One row: bumped by every change of the overrides, polled by every instance."""

    __tablename__ = "settings_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class ConsoleImport(Base):
    """A CSV import started in the console: its page on any instance reads the
    outcome here (``state`` running, done or failed; ``report``: the counts and each
    refused row). The progress of one under way lives in the process running it."""

    __tablename__ = "console_imports"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    manager_id: Mapped[int] = mapped_column(ForeignKey("managers.id"))
    file: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(8))
    report: Mapped[dict[str, Any] | None]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
