"""A client's Telegram message as the hub's :class:`~hub.kernel.types.InboundMessage`.

Reads Bot API ``Message`` objects (https://core.telegram.org/bots/api#message)
of private chats. :func:`normalize` is pure: it answers a :class:`Draft`, the
message without its file plus the file still to fetch (one within the size
limit); :func:`complete` fetches that file through a download function. The
external id is ``{bot id}:{chat id}:{message id}`` (an edit adds
``:edit:{edit date}``), the same shape the channel gives the messages it sends,
so a client's reply to one of them threads into its conversation.
"""

from __future__ import annotations

import dataclasses
import mimetypes
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiogram.types import Contact, Location, Message, Sticker, User, Venue

from channels.telegram import commands
from hub.kernel import loggers
from hub.kernel.errors import HubError
from hub.kernel.identities import InvalidIdentity, identity
from hub.kernel.types import Attachment, Channel, Identity, IdentityKind, InboundMessage

log = loggers.channels

EDIT_PREFIX = "[edited] "
# A deep-link payload (t.me/<bot>?start=<payload>) as Telegram allows it.
_PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class FileUnavailable(HubError):
    """Telegram will never give this file (too big for getFile, gone): log the
    message without it rather than retry."""


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file a message carries, still to download."""

    file_id: str
    filename: str
    content_type: str
    size: int | None


@dataclass(frozen=True, slots=True)
class Draft:
    """A normalized message and the file it still needs (``None``: nothing to fetch)."""

    message: InboundMessage
    file: FileRef | None = None


Download = Callable[[str], Awaitable[bytes]]


def message_id(bot_id: int, chat_id: int, message_id: int) -> str:
    """The hub's external id of a Telegram message in a bot's chat."""
    return f"{bot_id}:{chat_id}:{message_id}"


def language(code: str | None) -> str | None:
    """``ru`` for Russian-speaking clients, ``en`` for everyone else who told us."""
    if not code:
        return None
    return "ru" if code.lower().split("-")[0] == "ru" else "en"


def display_name(user: User) -> str:
    return " ".join(part for part in (user.first_name, user.last_name) if part).strip()


def _coordinates(latitude: float, longitude: float) -> str:
    return f"{round(latitude, 6)}, {round(longitude, 6)}"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _file(message: Message, kind: str) -> FileRef | None:
    """The file of a media message: the largest photo size, or the one media object."""
    n = message.message_id
    if kind == "photo" and message.photo:
        size = message.photo[-1]  # Telegram lists sizes smallest first
        return FileRef(size.file_id, f"photo_{n}.jpg", "image/jpeg", size.file_size)
    media: Any = getattr(message, kind, None)
    if media is None:
        return None
    defaults = {
        "document": ("bin", "application/octet-stream"),
        "animation": ("mp4", "video/mp4"),
        "video": ("mp4", "video/mp4"),
        "video_note": ("mp4", "video/mp4"),
        "voice": ("ogg", "audio/ogg"),
        "audio": ("mp3", "audio/mpeg"),
    }
    ext, fallback = defaults[kind]
    name: str | None = getattr(media, "file_name", None)
    mime: str | None = getattr(media, "mime_type", None)
    content_type = mime or (name and mimetypes.guess_type(name)[0]) or fallback
    return FileRef(media.file_id, name or f"{kind}_{n}.{ext}", content_type, media.file_size)


_MEDIA = ("photo", "animation", "document", "video", "video_note", "voice", "audio")


def media_file(message: Message) -> FileRef | None:
    """The file a message carries (a photo, document, voice …), if any."""
    kind = next((k for k in _MEDIA if getattr(message, k, None)), None)
    return _file(message, kind) if kind is not None else None


@dataclass(slots=True)
class _Content:
    """What a message says, by its kind: the text the log shows, the file to fetch, the
    extras it adds, and the sender's own phone number when they shared their contact."""

    kind: str
    text: str
    file: FileRef | None = None
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)
    phone: Identity | None = None


def normalize(
    message: Message,
    *,
    bot_id: int,
    account: str,
    max_attachment_bytes: int,
    default_region: str | None = "RU",
    edited: bool = False,
) -> Draft | None:
    """A client's private-chat message (or its edit) as a :class:`Draft`; ``None``
    when the message has no human sender (a channel post, an anonymous admin).
    ``account`` is the bot's username: commands named for another bot are text."""
    sender = message.from_user
    if sender is None or sender.is_bot:
        return None
    own_id = message_id(bot_id, message.chat.id, message.message_id)
    extras = _sender_extras(message, sender)
    hints = _reply_hints(message, bot_id, extras)
    content = _content(message, sender, account=account, region=default_region, edited=edited)
    extras.update(content.extras)
    extras["kind"] = content.kind
    file = _within_limit(content.file, max_attachment_bytes, extras)
    identities = [
        identity(IdentityKind.TELEGRAM, sender.id, display_name(sender) or sender.username),
        *([content.phone] if content.phone is not None else []),
    ]
    external_id, received_at, text = own_id, _utc(message.date), content.text
    if edited:
        edit_date = message.edit_date or int(message.date.timestamp())
        external_id = f"{own_id}:edit:{edit_date}"
        received_at = datetime.fromtimestamp(edit_date, UTC)
        extras["edit_of"] = own_id
        hints.insert(0, own_id)
        text = EDIT_PREFIX + text
    inbound = InboundMessage(
        channel=Channel.TELEGRAM,
        account=account,
        external_id=external_id,
        identities=tuple(identities),
        received_at=received_at,
        text=text,
        thread_hints=tuple(hints),
        language=language(sender.language_code),
        extras=extras,
    )
    return Draft(inbound, file)


def _sender_extras(message: Message, sender: User) -> dict[str, Any]:
    extras: dict[str, Any] = {"message_id": message.message_id, "chat_id": message.chat.id}
    if sender.username:
        extras["username"] = sender.username
    if message.media_group_id:
        extras["media_group_id"] = message.media_group_id
    return extras


def _reply_hints(message: Message, bot_id: int, extras: dict[str, Any]) -> list[str]:
    """The message replied to, which threads this one into its conversation."""
    if message.reply_to_message is None:
        return []
    replied = message_id(bot_id, message.chat.id, message.reply_to_message.message_id)
    extras["reply_to"] = replied
    return [replied]


def _within_limit(file: FileRef | None, max_bytes: int, extras: dict[str, Any]) -> FileRef | None:
    """The file to fetch, unless it is known to be over the limit (then noted as skipped)."""
    if file is None or file.size is None or file.size <= max_bytes:
        return file
    extras["attachments_skipped"] = [
        f"{file.filename}: {file.size} bytes, over the limit of {max_bytes}"
    ]
    return None


def _content(
    message: Message, sender: User, *, account: str, region: str | None, edited: bool
) -> _Content:
    if message.text is not None:
        return _text(message.text, account, edited)
    kind = next((k for k in _MEDIA if getattr(message, k)), None)
    if kind is not None:
        return _Content(kind, message.caption or "", _file(message, kind))
    if message.sticker is not None:
        return _sticker(message.sticker)
    if message.contact is not None:
        return _contact(message, message.contact, sender, region)
    if message.venue is not None:
        return _venue(message.venue)
    if message.location is not None:
        return _location(message.location)
    return _Content("other", message.caption or f"[{message.content_type}]")


def _text(text: str, account: str, edited: bool) -> _Content:
    """Text; ``/start`` (with a deep-link payload) and ``/stop`` are service messages
    for the hub: logged on the client, but no request is opened, routed or mirrored."""
    found = None if edited else commands.parse(text, account)
    if found is None:
        return _Content("text", text)
    name, argument = found
    if name == "start":
        extras: dict[str, Any] = {"command": "start", "service": True}
        if _PAYLOAD.match(argument):
            extras["source"] = argument
        return _Content("text", text, extras=extras)
    if name == "stop":
        return _Content("text", text, extras={"command": "stop", "service": True, "opt_out": True})
    return _Content("text", text)


def _sticker(sticker: Sticker) -> _Content:
    emoji = sticker.emoji
    extras = {"sticker_set": sticker.set_name} if sticker.set_name else {}
    return _Content("sticker", f"[sticker {emoji}]" if emoji else "[sticker]", extras=extras)


def _contact(message: Message, contact: Contact, sender: User, region: str | None) -> _Content:
    """A shared contact; only the sender's own number is linked to them."""
    own = contact.user_id is not None and contact.user_id == sender.id
    details: dict[str, Any] = {
        "phone": contact.phone_number,
        "name": " ".join(p for p in (contact.first_name, contact.last_name) if p),
        "own": own,
    }
    if contact.user_id is not None:
        details["user_id"] = contact.user_id
    phone: Identity | None = None
    if own:
        # Telegram gives a user's own number in international form, often without "+".
        phone = _own_phone(contact.phone_number, region)
        if phone is None:
            loggers.event(log, "telegram.contact_unparsed", chat=message.chat.id)
    else:
        # Someone else's number proves nothing about this client: kept, never linked.
        loggers.event(log, "telegram.contact_not_linked", chat=message.chat.id, user=sender.id)
    shown = phone.value if phone is not None else contact.phone_number
    return _Content("contact", f"[contact {shown}]", extras={"contact": details}, phone=phone)


def _venue(venue: Venue) -> _Content:
    place = _coordinates(venue.location.latitude, venue.location.longitude)
    return _Content(
        "venue",
        f"[venue {venue.title}, {venue.address} — {place}]",
        extras=_place(venue.location),
    )


def _location(location: Location) -> _Content:
    place = _coordinates(location.latitude, location.longitude)
    return _Content("location", f"[location {place}]", extras=_place(location))


def _place(location: Location) -> dict[str, Any]:
    return {"latitude": location.latitude, "longitude": location.longitude}


def _own_phone(phone: str, default_region: str | None) -> Identity | None:
    candidates = [phone] if phone.startswith("+") else [f"+{phone}", phone]
    for candidate in candidates:
        try:
            return identity(IdentityKind.PHONE, candidate, default_region=default_region)
        except InvalidIdentity:
            continue
    return None


async def complete(draft: Draft, download: Download) -> InboundMessage:
    """The draft with its file downloaded; a file Telegram will not give is noted
    in ``extras["attachments_skipped"]`` and the message is logged without it."""
    if draft.file is None:
        return draft.message
    file = draft.file
    try:
        data = await download(file.file_id)
    except FileUnavailable as exc:
        extras = dict(draft.message.extras)
        extras["attachments_skipped"] = [f"{file.filename}: {exc}"]
        return dataclasses.replace(draft.message, extras=extras)
    attachment = Attachment(file.filename, file.content_type, data)
    return dataclasses.replace(draft.message, attachments=(attachment,))
