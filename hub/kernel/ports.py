"""The one narrow contract a channel implements, and what the hub hands it.

A channel translates between the outside world and the hub's types: it calls
the ``sink`` with each :class:`InboundMessage` and acknowledges upstream only
after the sink returned (the message is committed), and delivers
:class:`OutboundMessage` s the dispatcher gives to ``send``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from hub.kernel.types import (
    Attachment,
    ClientCard,
    InboundMessage,
    InboxItem,
    IngestResult,
    ManagerRef,
    OutboundMessage,
    SendResult,
    StoredAttachment,
    Topic,
)

InboundSink = Callable[[InboundMessage], Awaitable[IngestResult]]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``per_second`` sends per key, in bursts of up to ``burst``."""

    per_second: float
    burst: int = 1


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """Send limits of a channel: over the whole account, and per recipient.
    Kinds in ``self_paced`` skip the per-recipient limit: the channel paces them
    itself (Telegram's staff groups have a budget of their own)."""

    overall: RateLimit | None = None
    per_recipient: RateLimit | None = None
    self_paced: frozenset[str] = frozenset()


class ChannelPort(Protocol):
    """``start(sink)``, ``stop()``, ``send(outbound)``; ``name`` as in the outbox."""

    name: str
    limits: ChannelLimits

    async def start(self, sink: InboundSink) -> None:
        """Begin receiving; return once listening (health turns ok after every start)."""

    async def stop(self) -> None:
        """Stop receiving; in-flight messages finish or are left for redelivery."""

    async def send(self, message: OutboundMessage) -> SendResult:
        """Deliver, or raise TemporaryDeliveryError / PermanentDeliveryError."""


@dataclass(frozen=True, slots=True)
class RecentSend:
    """A message of the outbox sent ``age`` seconds ago, or claimed and not recorded
    yet (``age`` 0: it may have gone out a moment ago), with what tells where it went
    and how many messages it took: the peer's ``external_id`` once sent, the chat of
    the client's staff topic (``topic_chat``), the text's ``length``, its ``files``."""

    kind: str
    recipient: str
    external_id: str | None
    topic_chat: int | None
    length: int
    files: int
    age: float


@dataclass(frozen=True, slots=True)
class RecentTopic:
    """A client's staff topic opened ``age`` seconds ago in ``chat_id``."""

    chat_id: int
    age: float


@dataclass(frozen=True, slots=True)
class RecentSends:
    """What went out on a channel in the last minute, as the database knows it."""

    sends: tuple[RecentSend, ...]
    topics: tuple[RecentTopic, ...] = ()


@runtime_checkable
class Budgeted(Protocol):
    """An optional ability of a channel (or its staff surface) that keeps send budgets
    of its own: told at start what went out in the last minute, so that a restart, or
    a second instance, is no burst."""

    def spent(self, recent: RecentSends) -> None: ...


class AttachmentSource(Protocol):
    """The files logged with an interaction, for a channel sending it."""

    async def attachments(self, interaction_id: int) -> list[StoredAttachment]: ...

    async def attachment_bytes(self, sha256: str) -> bytes: ...


class StaffDesk(Protocol):
    """What the hub offers a staff surface (the managers' Telegram chat).

    The channel calls these for what managers do; each call returns after its
    effects are committed. Every call names the acting manager, already checked
    with :meth:`manager` by the surface: strangers get nothing but a logged refusal.
    """

    async def manager(self, telegram_id: int) -> ManagerRef | None:
        """The active manager with this Telegram id, else None."""

    async def refused(self, telegram_id: int, what: str) -> None:
        """Record that someone who is not a manager tried ``what``."""

    async def topic_of(self, client_id: int) -> Topic | None: ...

    async def save_topic(self, client_id: int, topic: Topic) -> None: ...

    async def forget_topic(self, client_id: int) -> None:
        """The topic is gone (deleted in Telegram): the next mirror opens a new one."""

    async def client_of_topic(self, topic: Topic) -> int | None: ...

    async def card(self, client_id: int) -> ClientCard | None: ...

    async def card_for(self, manager: ManagerRef, client_id: int) -> ClientCard | None:
        """The card as a manager asked for it (audited); None when not theirs to see."""

    async def deadline(self, conversation_id: int) -> datetime | None:
        """When the conversation's next response is due (SLA); None: no deadline."""

    async def attachments(self, interaction_id: int) -> list[StoredAttachment]: ...

    async def attachment_bytes(self, sha256: str) -> bytes: ...

    async def answer(
        self,
        client_id: int,
        text: str,
        *,
        manager: ManagerRef,
        key: str,
        note: bool = False,
        attachments: Sequence[Attachment] = (),
        mirror: bool = False,
    ) -> int:
        """Log the manager's answer (or internal note) and queue it to the client
        over the conversation's channel; return the interaction id. ``key`` (the
        id of the manager's message) makes a repeated call a no-op. ``mirror``: the
        answer was given outside the client's topic, so a copy is queued for it."""

    async def answer_template(
        self, client_id: int, name: str, *, manager: ManagerRef, key: str, mirror: bool
    ) -> int:
        """A canned answer (``[[desk.templates]]``) rendered for the client and sent as
        :meth:`answer`; a HubError saying so for a name not configured."""

    async def templates(self) -> list[str]:
        """The canned answers' names, as configured."""

    async def act(
        self,
        client_id: int,
        manager: ManagerRef,
        action: str,
        argument: str = "",
        *,
        key: str | None = None,
    ) -> str:
        """take, resolve, wait (on the client), reopen, transfer NAME, tag WORDS,
        remind WHEN TEXT, stage NAME: do it, log it on the client, return the
        confirmation to show (localized).
        ``key`` (the id of the manager's message or button press) makes a repeated
        call return the first confirmation without acting again."""

    async def settle_reminder(
        self, reminder_id: int, fired: int, manager: ManagerRef, action: str, *, key: str
    ) -> str:
        """A button on a delivered reminder (done, snooze_hour, snooze_day): only for
        the reminder's manager, once per delivery (``fired``: which one); logged on
        the client; return the answer to show (localized)."""

    async def inbox(self, manager: ManagerRef) -> list[InboxItem]:
        """Open requests assigned to the manager, oldest first."""

    async def set_away(self, manager: ManagerRef, away: bool) -> str:
        """``/away`` (True) or ``/back`` (False); the confirmation to show."""

    async def find(self, manager: ManagerRef, text: str) -> list[ClientCard]:
        """Clients matching a name, email, phone, Telegram id, or text of the log."""

    async def colleagues(self, manager: ManagerRef) -> list[ManagerRef]:
        """The active managers a request can be transferred to (not ``manager``)."""

    async def remember_private(
        self,
        chat_id: int,
        message_id: int,
        client_id: int,
        conversation_id: int | None,
        *,
        entry: int = 0,
    ) -> None:
        """The bot's message in a manager's private chat (``entry``: a numbered entry
        of a message that gathers several clients; 0: the whole message) is about
        this client: a reply to it answers them, after a restart too."""

    async def remember_entries(
        self, chat_id: int, message_id: int, clients: Sequence[tuple[int, int | None]]
    ) -> None:
        """A digest's entries, numbered from 1: the client and conversation of each."""

    async def client_of_private(
        self, chat_id: int, message_id: int | None, *, entry: int = 0
    ) -> int | None:
        """The client a private message of the bot (or an entry of it) is about, as
        merges left them; ``message_id`` None: the chat's latest message with ``entry``."""

    async def current_client(self, manager: ManagerRef) -> int | None:
        """The client the manager's plain text in the private chat goes to."""

    async def choose_client(self, manager: ManagerRef, client_id: int | None) -> str:
        """``/c ID``: make the client current if the manager may act on them (a
        refusal is audited); None: no current client. The confirmation to show."""


@dataclass(frozen=True, slots=True)
class Chart:
    """A report chart as a PNG image, with a caption."""

    filename: str
    caption: str
    png: bytes


@dataclass(frozen=True, slots=True)
class ReportDigest:
    """What a manager gets for ``/report``: a few lines of figures and the charts."""

    summary: str
    charts: tuple[Chart, ...]


class StaffReports(Protocol):
    """Reports a staff surface can hand a manager (``/report week``)."""

    async def digest(self, period_name: str, language: str) -> ReportDigest:
        """The figures of ``week`` or ``month``; ReportError for another name."""


class ClientRatings(Protocol):
    """What a client's channel hands the hub when the client rates a resolved request
    (a Telegram button under the hub's ask)."""

    async def rate(self, channel: str, address: str, rating_id: int, score: int) -> str | None:
        """Record ``score`` (1-5) for rating ``rating_id``, given by the holder of the
        identity ``address`` on ``channel`` (a Telegram user id): only when the rating
        is that client's; the last score wins. The thanks to show the client, in their
        language; None when refused (not theirs, no such rating)."""


class CampaignDesk(Protocol):
    """What a staff surface offers for campaigns: call-task outcomes and the
    marketers' commands. Optional: a surface without it has neither."""

    async def call_outcome(
        self, task_id: int, manager: ManagerRef, outcome: str, *, key: str
    ) -> str:
        """An outcome button on a call task (reached, interested, not_interested,
        call_back, wrong_number): only for the task's manager; logged on the client
        once per press (``key``); the answer to show (localized)."""

    async def campaign_command(
        self, manager: ManagerRef, command: str, argument: str
    ) -> str | None:
        """/campaigns, /campaign N, /campaign_start N, /campaign_pause N (marketers
        and admins only); the answer to show, or None for another command."""


class ConsoleLinks(Protocol):
    """One-time sign-in links to the web console (the bot's ``/web``)."""

    async def sign_in_link(self, manager: ManagerRef) -> str | None:
        """A link for the registered manager asking (good once, for 15 minutes),
        or None when the console is off."""


class CursorStore(Protocol):
    """Where a mailbox's (UIDVALIDITY, last delivered UID) survives restarts."""

    async def load(self, key: str) -> tuple[int, int] | None: ...

    async def save(self, key: str, uidvalidity: int, uid: int) -> None: ...


class MailboxHold(Protocol):
    """A held mailbox lock; ``alive()`` is False once it was lost (its connection dropped)."""

    async def alive(self) -> bool: ...

    async def release(self) -> None: ...


class MailboxLocks(Protocol):
    """One watcher per mailbox across hub instances: ``acquire`` returns the hold,
    or None while another instance holds the mailbox."""

    async def acquire(self, key: str) -> MailboxHold | None: ...
