"""What the staff chat shows: client cards, mirrors, notices, inbox and search lists,
and the buttons under them (callback data ``hub:…``, parsed back here).

Everything is HTML for ``parse_mode="HTML"`` (https://core.telegram.org/bots/api#html-style);
text that came from people goes through aiogram's ``html_decoration.quote``.
Telegram measures its limits in UTF-16 code units of the text after the markup
is parsed: 4096 for a message, 1024 for a caption, 128 for a forum topic name;
callback data is at most 64 bytes.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.text_decorations import html_decoration

from channels.telegram.text import fit
from channels.telegram.text import utf16_len as utf16_len
from hub.kernel.http import is_decimal
from hub.kernel.texts import text
from hub.kernel.types import ClientCard, InboxItem, Topic

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024
TOPIC_NAME_LIMIT = 128
CALLBACK_LIMIT = 64
CALLBACK_PREFIX = "hub:"
BUTTONS = ("take", "resolve", "wait", "reopen", "card")
STAGE_BUTTONS = ("stage_down", "stage_up")  # a second row: the relationship stage

_TAG = re.compile(r"<[^>]*>")
_CHANNEL_ICONS = {"telegram": "💬", "email": "✉️", "webform": "📝"}
_IDENTITY_ICONS = {"telegram": "✈️", "email": "✉️", "phone": "📞"}
_DIRECTION_MARKS = {"in": "←", "out": "→"}


def visible_len(markup: str) -> int:
    """Length of an HTML message as Telegram counts it: without tags, entities decoded."""
    return utf16_len(html.unescape(_TAG.sub("", markup)))


def escape(value: str) -> str:
    return html_decoration.quote(value)


def clip(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` UTF-16 units, with an ellipsis when cut."""
    if utf16_len(value) <= limit:
        return value
    return value[: fit(value, max(limit - 1, 0))].rstrip() + "…"


def split_text(value: str, limit: int, first_limit: int | None = None) -> list[str]:
    """Plain text in pieces of at most ``limit`` UTF-16 units (the first piece
    ``first_limit``), cut at a line break or a space when one is near the end."""
    pieces: list[str] = []
    rest = value
    room = limit if first_limit is None else first_limit
    while utf16_len(rest) > room:
        cut = fit(rest, room)
        if cut == 0:  # no room at all in this piece (the header filled it)
            pieces.append("")
            room = limit
            continue
        floor = cut * 3 // 4
        brk = rest.rfind("\n", floor, cut)
        if brk < 0:
            brk = rest.rfind(" ", floor, cut)
        if brk > 0:
            pieces.append(rest[:brk])
            rest = rest[brk + 1 :]
        else:
            pieces.append(rest[:cut])
            rest = rest[cut:]
        room = limit
    pieces.append(rest)
    return pieces


def with_header(header: str, body: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """The header (HTML) and the escaped body, split into messages of at most ``limit``."""
    if not header:
        return [escape(piece) for piece in split_text(body, limit) if piece.strip()]
    if not body:
        return [header]
    first = limit - visible_len(header) - 1
    pieces = split_text(body, limit, first)
    return [f"{header}\n{escape(pieces[0])}".rstrip()] + [
        escape(piece) for piece in pieces[1:] if piece.strip()
    ]


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(tz)


def _label(card: ClientCard) -> str:
    if card.name:
        return card.name
    for _, value in card.identities:
        return value
    return f"#{card.id}"


def client_label(card: ClientCard | None, client_id: int) -> str:
    """The client's name, else an address, else the id (plain text)."""
    return _label(card) if card is not None else f"#{client_id}"


def topic_name(card: ClientCard | None, client_id: int, channel: str | None) -> str:
    """The forum topic title: the client's name and the channel they came by."""
    hint = f" · {channel}" if channel else ""
    name = " ".join(client_label(card, client_id).split()) or f"#{client_id}"
    return clip(name, TOPIC_NAME_LIMIT - utf16_len(hint)) + hint


def decimal_id(value: str) -> bool:
    """An id as a button or a person writes it: ASCII digits only (``str.isdigit``
    takes "²" and "١" too, which ``int`` refuses), of a row's range (a larger
    number failed in the database, and its update was retried for ever)."""
    return is_decimal(value, low=0)


def topic_link(topic: Topic) -> str:
    """https://t.me/c/<chat>/<thread>: opens the topic for members of the group."""
    chat = str(abs(topic.chat_id))
    if topic.chat_id < 0 and chat.startswith("100") and len(chat) > 10:
        chat = chat[3:]  # a supergroup's id is -100<internal id>
    return f"https://t.me/c/{chat}/{topic.thread_id}"


def callback_data(action: str, client_id: int) -> str:
    data = f"{CALLBACK_PREFIX}{action}:{client_id}"
    assert len(data.encode()) <= CALLBACK_LIMIT
    return data


def parse_callback(data: str | None) -> tuple[str, int] | None:
    """``("take", 42)`` from ``"hub:take:42"``; None for anything else."""
    if not data or not data.startswith(CALLBACK_PREFIX):
        return None
    action, _, client = data.removeprefix(CALLBACK_PREFIX).partition(":")
    if action not in (*BUTTONS, *STAGE_BUTTONS, *PICKERS, "accept") or not decimal_id(client):
        return None
    return action, int(client)


def _button(label: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=label, callback_data=data)


# Under a client's message in a manager's private chat: act on the request, show the
# card, or pick whom to transfer it to and when to be reminded (PICKERS).
PRIVATE_BUTTONS = (("take", "resolve", "wait", "card"), ("transfer", "remind"))
PICKERS = ("transfer", "remind")


def private_keyboard(client_id: int, language: str, *, offer: bool) -> InlineKeyboardMarkup:
    """Under a client's message in a private chat; an offered request is accepted
    (the first to accept gets it) rather than taken."""
    rows = []
    for row in PRIVATE_BUTTONS:
        buttons = []
        for action in row:
            if offer and action == "take":
                action = "accept"
            label = text(f"button_{action}", language)
            buttons.append(_button(label, callback_data(action, client_id)))
        rows.append(buttons)
    return InlineKeyboardMarkup(inline_keyboard=rows)


# A choice about a client: ``hub:<kind>:<client>:<value>``: a manager to transfer to
# (``to``, their id), a time to be reminded at (``in``, one of REMIND_PRESETS), a
# canned answer to send (``tpl``, its name); ``hub:cur:<client>`` makes the client
# the manager's current one.
PICKS = ("to", "in", "tpl")
REMIND_PRESETS = ("1h", "3h", "tomorrow")
_CURRENT_PREFIX = f"{CALLBACK_PREFIX}cur:"


def pick_callback(kind: str, client_id: int, value: str) -> str:
    data = f"{CALLBACK_PREFIX}{kind}:{client_id}:{value}"
    assert kind in PICKS and len(data.encode()) <= CALLBACK_LIMIT
    return data


def parse_pick_callback(data: str | None) -> tuple[str, int, str] | None:
    """``("to", 42, "7")`` from ``"hub:to:42:7"``; None for anything else."""
    if not data or not data.startswith(CALLBACK_PREFIX):
        return None
    kind, _, rest = data.removeprefix(CALLBACK_PREFIX).partition(":")
    client, _, value = rest.partition(":")
    if kind not in PICKS or not decimal_id(client) or not value:
        return None
    return kind, int(client), value


def current_callback(client_id: int) -> str:
    return f"{_CURRENT_PREFIX}{client_id}"


def parse_current_callback(data: str | None) -> int | None:
    """``42`` from ``"hub:cur:42"``; None for anything else."""
    if not data or not data.startswith(_CURRENT_PREFIX):
        return None
    client = data.removeprefix(_CURRENT_PREFIX)
    return int(client) if decimal_id(client) else None


def _rows(buttons: list[InlineKeyboardButton], per_row: int) -> InlineKeyboardMarkup:
    rows = [buttons[i : i + per_row] for i in range(0, len(buttons), per_row)]
    return InlineKeyboardMarkup(inline_keyboard=rows)


def transfer_keyboard(
    client_id: int, colleagues: Sequence[tuple[int, str]]
) -> InlineKeyboardMarkup:
    """One button per manager (id, name) the client's request can go to."""
    return _rows(
        [
            _button(clip(name, 40), pick_callback("to", client_id, str(mid)))
            for mid, name in colleagues
        ],
        2,
    )


def remind_keyboard(client_id: int, language: str) -> InlineKeyboardMarkup:
    return _rows(
        [
            _button(
                text(f"button_remind_{preset}", language), pick_callback("in", client_id, preset)
            )
            for preset in REMIND_PRESETS
        ],
        3,
    )


def templates_keyboard(client_id: int, names: Sequence[str]) -> InlineKeyboardMarkup:
    return _rows([_button(name, pick_callback("tpl", client_id, name)) for name in names], 2)


def inbox_keyboard(items: Sequence[InboxItem], limit: int = 40) -> InlineKeyboardMarkup | None:
    """``/inbox``'s clients as buttons, numbered as in the list: a press makes the
    client the manager's current one."""
    buttons = []
    seen: set[int] = set()
    for number, item in enumerate(items[:limit], 1):
        if item.client_id in seen:
            continue
        seen.add(item.client_id)
        label = clip(f"{number}. {item.client_name or f'#{item.client_id}'}", 40)
        buttons.append(_button(label, current_callback(item.client_id)))
    return _rows(buttons, 2) if buttons else None


def digest_keyboard(entries: Sequence[tuple[int, str]]) -> InlineKeyboardMarkup | None:
    """A digest's entries as buttons, numbered as in it: a press makes the entry's
    client the manager's current one."""
    buttons = [
        _button(clip(f"{number}. {name}", 40), current_callback(client_id))
        for number, (client_id, name) in enumerate(entries, 1)
    ]
    return _rows(buttons, 2) if buttons else None


REMINDER_BUTTONS = ("done", "snooze_hour", "snooze_day")
_REMINDER_PREFIX = f"{CALLBACK_PREFIX}rem:"


def reminder_callback(action: str, reminder_id: int, fired: int) -> str:
    data = f"{_REMINDER_PREFIX}{action}:{reminder_id}:{fired}"
    assert len(data.encode()) <= CALLBACK_LIMIT
    return data


def parse_reminder_callback(data: str | None) -> tuple[str, int, int] | None:
    """``("done", 7, 1)`` from ``"hub:rem:done:7:1"`` (the reminder and its firing)."""
    if not data or not data.startswith(_REMINDER_PREFIX):
        return None
    action, _, rest = data.removeprefix(_REMINDER_PREFIX).partition(":")
    reminder, _, fired = rest.partition(":")
    if action not in REMINDER_BUTTONS or not decimal_id(reminder) or not decimal_id(fired):
        return None
    return action, int(reminder), int(fired)


def reminder_keyboard(reminder_id: int, fired: int, language: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=text(f"button_{action}", language),
                    callback_data=reminder_callback(action, reminder_id, fired),
                )
                for action in REMINDER_BUTTONS
            ]
        ]
    )


CALL_BUTTONS = ("reached", "interested", "not_interested", "call_back", "wrong_number")
_CALL_PREFIX = f"{CALLBACK_PREFIX}call:"


def call_callback(outcome: str, task_id: int) -> str:
    data = f"{_CALL_PREFIX}{outcome}:{task_id}"
    assert len(data.encode()) <= CALLBACK_LIMIT
    return data


def parse_call_callback(data: str | None) -> tuple[str, int] | None:
    """``("reached", 7)`` from ``"hub:call:reached:7"`` (an outcome of call task 7)."""
    if not data or not data.startswith(_CALL_PREFIX):
        return None
    outcome, _, task = data.removeprefix(_CALL_PREFIX).partition(":")
    if outcome not in CALL_BUTTONS or not decimal_id(task):
        return None
    return outcome, int(task)


def call_keyboard(task_id: int, language: str) -> InlineKeyboardMarkup:
    """Under a call task: its outcomes, two a row."""
    buttons = [
        InlineKeyboardButton(
            text=text(f"button_call_{outcome}", language),
            callback_data=call_callback(outcome, task_id),
        )
        for outcome in CALL_BUTTONS
    ]
    return InlineKeyboardMarkup(inline_keyboard=[buttons[i : i + 2] for i in range(0, 5, 2)])


def card_keyboard(client_id: int, language: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=text(f"button_{action}", language),
                    callback_data=callback_data(action, client_id),
                )
                for action in BUTTONS
            ],
            [
                InlineKeyboardButton(
                    text=text(f"button_{action}", language),
                    callback_data=callback_data(action, client_id),
                )
                for action in STAGE_BUTTONS
            ],
        ]
    )


HISTORY_MARK = "┈┈┈┈┈┈┈┈"  # between a topic's card and the client's words below it


def card_with_history(card: str, history: str) -> str:
    """A topic's first message: the card, then the client's words so far."""
    return f"{card}\n{HISTORY_MARK}\n{history}"


def history_below(html: str) -> str:
    """The client's words under a card (what :func:`card_with_history` put there)."""
    _, mark, history = html.partition(f"\n{HISTORY_MARK}\n")
    return history if mark else ""


def card_html(card: ClientCard, language: str, tz: ZoneInfo) -> str:
    """The client card: name, identities, stage, owner, assignee, open requests, last contacts."""
    lines = [f"👤 <b>{escape(clip(_label(card), 200))}</b> · #{card.id}"]
    if card.identities:
        lines.append(
            " · ".join(
                f"{_IDENTITY_ICONS.get(kind, kind)} {escape(clip(value, 100))}"
                for kind, value in card.identities[:8]
            )
        )
    facts = [
        f"{text('card_stage', language)}: {escape(card.stage)}",
        f"{text('card_owner', language)}: {escape(card.owner or '—')}",
        f"{text('card_assignee', language)}: {escape(card.assignee or '—')}",
        f"{text('card_open', language)}: {card.open_requests}",
    ]
    if card.due is not None:
        when = card.due.astimezone(tz).strftime("%d.%m %H:%M")
        facts.append(f"⏰ {text('card_due', language)}: {when}")
    lines.append(" · ".join(facts[:2]))
    lines.append(" · ".join(facts[2:]))
    if not card.identities:
        # Mail whose sender could not be read: nobody to answer until it is merged.
        lines.append(f"<b>{escape(text('card_no_address', language, id=card.id))}</b>")
    if card.blocked is not None:
        when = _local(card.blocked.at, tz).strftime("%d.%m %H:%M")
        who = f" · {escape(clip(card.blocked.by, 100))}" if card.blocked.by else ""
        lines.append(f"🚫 <b>{text('card_blocked', language)}</b> {when}{who}")
    extra = []
    if card.tags:
        extra.append(f"{text('card_tags', language)}: {escape(clip(', '.join(card.tags), 300))}")
    if card.source:
        extra.append(f"{text('card_source', language)}: {escape(clip(card.source, 100))}")
    if extra:
        lines.append(" · ".join(extra))
    if card.custom:
        lines.append(
            " · ".join(f"{escape(clip(k, 40))}: {escape(clip(v, 100))}" for k, v in card.custom[:8])
        )
    for at, what in card.reminders:
        when = _local(at, tz).strftime("%d.%m %H:%M")
        lines.append(f"⏰ {when} {escape(clip(' '.join(what.split()) or '…', 100))}")
    if card.last_contacts:
        lines.append("")
        lines.append(f"<b>{text('card_recent', language)}:</b>")
        for contact in card.last_contacts:
            when = _local(contact.at, tz).strftime("%d.%m %H:%M")
            mark = _DIRECTION_MARKS.get(contact.direction, "·")
            said = " ".join(contact.text.split()) or "…"
            lines.append(
                f"{mark} {when} {escape(contact.channel or '')}: {escape(clip(said, 120))}"
            )
    return "\n".join(lines)


def mirror_header(channel: str | None, subject: str | None, due: str | None = None) -> str:
    """The first line of a mirrored message: its channel, its subject when it has
    one, and when the answer is due (SLA) when it is."""
    parts = []
    if channel:
        parts.append(f"{_CHANNEL_ICONS.get(channel, '•')} <b>{escape(channel)}</b>")
    if subject:
        parts.append(f"<i>{escape(clip(' '.join(subject.split()), 300))}</i>")
    if due:
        parts.append(f"⏰ {escape(due)}")
    return " · ".join(parts)


def private_facts(card: ClientCard, channel: str | None, language: str) -> str:
    """Under a client's words in a private notice: the channel they came by, the
    client's stage and id (what ``/c ID`` takes)."""
    came_by = f"{_CHANNEL_ICONS.get(channel, '•')} {channel}" if channel else "•"
    return text("private_facts", language, channel=came_by, stage=card.stage, id=card.id)


def notice_html(
    headline: str,
    body: str,
    topic: Topic | None,
    language: str,
    limit: int = MESSAGE_LIMIT,
    *,
    facts: str | None = None,
) -> list[str]:
    """A private notice to a manager: a bold headline, the text, the client's
    ``facts`` in italics, a link to the topic."""
    link = (
        f'\n\n<a href="{escape(topic_link(topic))}">{text("open_topic", language)}</a>'
        if topic is not None
        else ""
    )
    if facts:
        link = f"\n<i>{escape(facts)}</i>{link}"
    head = f"<b>{escape(clip(headline, 300))}</b>"
    parts = with_header(head, body, limit - visible_len(link))
    parts[-1] += link
    return parts


def _age(since: datetime, now: datetime) -> str:
    minutes = max(0, int((now - since).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def _join(lines: Sequence[str], limit: int = MESSAGE_LIMIT) -> list[str]:
    """Lines of HTML into as few messages as fit (a line never straddles two)."""
    messages: list[str] = []
    current: list[str] = []
    used = 0
    for line in lines:
        size = visible_len(line) + 1
        if current and used + size > limit:
            messages.append("\n".join(current))
            current, used = [], 0
        current.append(line)
        used += size
    if current:
        messages.append("\n".join(current))
    return messages


def _link(label: str, topic: Topic | None, language: str) -> str:
    name = escape(clip(label, 100))
    if topic is None:
        return f"{name} ({text('no_topic', language)})"
    return f'<a href="{escape(topic_link(topic))}">{name}</a>'


def inbox_html(
    items: Sequence[InboxItem], language: str, now: datetime, limit_items: int = 100
) -> list[str]:
    """``/inbox``: open requests assigned to the manager, oldest first, with topic links."""
    if not items:
        return [escape(text("inbox_empty", language))]
    lines = [f"<b>{escape(text('inbox_title', language, count=len(items)))}</b>"]
    for number, item in enumerate(items[:limit_items], 1):
        label = item.client_name or f"#{item.client_id}"
        waiting = text("waiting", language, age=_age(item.waiting_since, now))
        lines.append(
            f"{number}. {_link(label, item.topic, language)} · {escape(item.channel)} · {waiting}"
        )
    if len(items) > limit_items:
        lines.append(escape(text("inbox_more", language, count=len(items) - limit_items)))
    return _join(lines)


def find_html(
    found: Sequence[tuple[ClientCard, Topic | None]], query: str, language: str
) -> list[str]:
    """``/find``: matching clients with their identities and topic links."""
    if not found:
        return [escape(text("find_none", language, query=clip(query, 100)))]
    lines = [f"<b>{escape(text('find_title', language, count=len(found)))}</b>"]
    for card, topic in found:
        idents = ", ".join(clip(value, 60) for _, value in card.identities[:4])
        lines.append(
            f"• {_link(_label(card), topic, language)} · #{card.id} · {escape(card.stage)}"
            + (f" · {escape(idents)}" if idents else "")
        )
    return _join(lines)
