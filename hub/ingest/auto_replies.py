"""The answers the hub sends by itself, written with the messages that cause them.

A greeting after /start, the out-of-hours reply to a new request, a matched
routing rule's reply, and the confirmation a channel asked for (a form's,
``extras["confirmation"]``). Written in the batch's transaction, so a
redelivery (a duplicate) adds none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hub.delivery.outbox import Outgoing
from hub.desk.replies import REPLY_ROUTE
from hub.ingest.records import Entry
from hub.ingest.rows import CHANNEL, OUT, clip
from hub.kernel.types import Channel, Delivery, InboundMessage
from routing import Decision
from routing.hours import Hours
from storage.ingest import InteractionRow

_PENDING = Delivery.PENDING.value


@dataclass(frozen=True, slots=True)
class AutoReplies:
    """Texts the hub answers by itself, per language (``ru``, ``en``); ``hours`` are
    the company's working hours (None: always open)."""

    greeting: dict[str, str]
    out_of_hours: dict[str, str]
    default_language: str = "ru"
    hours: Hours | None = None
    timezone: str = "UTC"

    def open_at(self, now: datetime) -> bool:
        return self.hours is None or self.hours.contains(now.astimezone(ZoneInfo(self.timezone)))

    def text(self, kind: str, language: str | None) -> str | None:
        texts = self.greeting if kind == "greeting" else self.out_of_hours
        return texts.get(language or self.default_language) or texts.get(self.default_language)


@dataclass(frozen=True, slots=True)
class AutoReply:
    """One answer to a message of the batch: logged as an outbound interaction and
    queued in the outbox."""

    entry: Entry
    kind: str  # confirmation, rule_reply, greeting, out_of_hours
    text: str
    channel: str
    recipient: str
    subject: str | None = None

    def interaction(self, now: datetime) -> InteractionRow:
        entry = self.entry
        conv = entry.conv
        return InteractionRow(
            entry.client_id,
            conv.id if conv is not None else None,
            OUT,
            self.channel,
            entry.message.account,
            None,
            "hub",
            self.subject,
            self.text,
            None,
            {"auto_reply": self.kind},
            now,
            _PENDING,
        )

    def outbox_row(self, interaction_id: int, now: datetime) -> tuple[Any, ...]:
        """Its delivery, in ``storage.ingest.OUTBOX_COLUMNS`` order."""
        entry = self.entry
        conv = entry.conv
        return Outgoing(
            idempotency_key=f"auto_reply:{interaction_id}",
            channel=self.channel,
            account=entry.message.account,
            recipient=self.recipient,
            kind="auto_reply",
            subject=self.subject,
            text=self.text,
            client_id=entry.client_id,
            conversation_id=conv.id if conv is not None else None,
            interaction_id=interaction_id,
            at=now,
        ).batch_row()


def auto_replies(
    fresh: list[Entry],
    rule_replies: dict[Entry, Decision],
    replies: AutoReplies | None,
    now: datetime,
) -> list[AutoReply]:
    """The batch's answers, in the order of its messages. A rule's reply stands
    instead of the greeting or the out-of-hours reply."""
    out: list[AutoReply] = []
    for entry in fresh:
        extras = entry.message.extras
        if extras and extras.get("auto"):
            continue  # an auto-reply or a bounce is never answered automatically
        if extras:
            confirmation = _confirmation(entry)
            if confirmation is not None:
                out.append(confirmation)
        rule = rule_replies.get(entry)
        if rule is not None:
            reply = _rule_reply(entry, rule)
        elif replies is not None:
            reply = _standard_reply(entry, replies, now)
        else:
            continue
        if reply is not None:
            out.append(reply)
    return out


def _confirmation(entry: Entry) -> AutoReply | None:
    """The confirmation a channel asked for, by email to the address it names."""
    confirmation = entry.message.extras.get("confirmation")
    if not (isinstance(confirmation, dict) and confirmation.get("to")):
        return None
    return AutoReply(
        entry,
        "confirmation",
        str(confirmation.get("text", "")),
        Channel.EMAIL.value,
        str(confirmation["to"]),
        clip(confirmation.get("subject"), 500),
    )


def _rule_reply(entry: Entry, rule: Decision) -> AutoReply | None:
    """The matched rule's text in the message's language, else its first one."""
    m = entry.message
    texts = dict(rule.reply)
    body = texts.get(m.language or "") or next(iter(texts.values()))
    target = _reply_target(m)
    return None if target is None else AutoReply(entry, "rule_reply", body, *target)


def _standard_reply(entry: Entry, replies: AutoReplies, now: datetime) -> AutoReply | None:
    """The greeting after /start; the out-of-hours reply to a new request."""
    m, conv = entry.message, entry.conv
    if m.extras and m.extras.get("command") == "start":
        kind = "greeting"
    elif conv is not None and conv.opener is entry and not replies.open_at(now):
        kind = "out_of_hours"
    else:
        return None
    text = replies.text(kind, m.language)
    target = _reply_target(m)
    if text is None or target is None:
        return None
    return AutoReply(entry, kind, text, *target)


def _reply_target(m: InboundMessage) -> tuple[str, str] | None:
    """(channel, recipient) that reaches the sender of ``m``."""
    route = REPLY_ROUTE.get(CHANNEL[m.channel])
    if route is None:
        return None
    channel, identity_kind = route
    recipient = next((i.value for i in m.identities if i.kind == identity_kind), None)
    return None if recipient is None else (channel, recipient)
