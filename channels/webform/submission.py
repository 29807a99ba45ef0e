"""A form submission: read from the request body, checked field by field against
the form's definition, and turned into the hub's :class:`InboundMessage`.

Three encodings come in (HTML 5 form submission, RFC 7578 multipart, RFC 8259
JSON); all end as one :class:`Posted`. :func:`validate` answers either the
cleaned values or per-field errors in the form's language, and
:func:`to_message` builds the message for the ingest sink.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import BodyPartReader, web

from hub.config import RESERVED_FIELDS, FormField, FormSection
from hub.kernel.identities import InvalidIdentity, normalize_email, normalize_phone
from hub.kernel.texts import text
from hub.kernel.types import Attachment, Channel, Identity, IdentityKind, InboundMessage

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
FORM_ERROR = "_form"  # the key of an error about the whole submission
_CHECKED = frozenset({"on", "true", "1", "yes"})
_MAX_OTHER = 50  # posted fields the form does not define, kept on the interaction
_MAX_OTHER_LENGTH = 2000
_CHUNK = 64 * 1024


class BodyTooLarge(Exception):
    """The body is over the form server's limit (HTTP 413)."""


class BadBody(Exception):
    """The body cannot be read as any of the accepted encodings (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class Upload:
    """A posted file; ``size`` counts every byte sent, ``data`` only what was kept."""

    filename: str
    content_type: str
    data: bytes
    size: int


@dataclass(slots=True)
class Posted:
    """What a submission carried: text values (the first of each name) and files."""

    values: dict[str, str] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)

    def put(self, name: str, value: str) -> None:
        self.values.setdefault(name, value)


@dataclass(frozen=True, slots=True)
class Cleaned:
    """A submission that passed validation: values normalized, files checked."""

    values: dict[str, str | bool]
    files: dict[str, Upload]


def size_text(limit: int) -> str:
    if limit >= 1024 * 1024:
        return f"{limit / (1024 * 1024):g} MB"
    if limit >= 1024:
        return f"{limit / 1024:g} KB"
    return f"{limit} B"


async def read(request: web.Request, form: FormSection, max_body: int) -> Posted:
    """The submission in ``request`` (urlencoded, multipart or JSON).

    Raise :class:`BodyTooLarge` past ``max_body`` bytes, :class:`BadBody` for a
    body that cannot be read. A file over its field's ``max_bytes`` is counted,
    not kept, so that validation can name it.
    """
    if request.content_length is not None and request.content_length > max_body:
        raise BodyTooLarge
    ctype = request.content_type
    if ctype == "multipart/form-data":
        return await _multipart(request, form, max_body)
    raw = await _body(request, max_body)
    if ctype == "application/json" or ctype.endswith("+json"):
        return _json(raw)
    if ctype in ("application/x-www-form-urlencoded", "text/plain", "application/octet-stream"):
        try:
            pairs = parse_qs(raw.decode(request.charset or "utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError, LookupError):
            raise BadBody from None
        posted = Posted()
        for name, values in pairs.items():
            posted.put(name, values[0])
        return posted
    raise BadBody


async def _body(request: web.Request, max_body: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_body:
            raise BodyTooLarge
        chunks.append(chunk)


def _json(raw: bytes) -> Posted:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise BadBody from None
    if not isinstance(data, dict):
        raise BadBody
    posted = Posted()
    for name, value in data.items():
        if value is None:
            continue
        if isinstance(value, bool):
            posted.put(name, "on" if value else "")
        elif isinstance(value, str | int | float):
            posted.put(name, str(value))
        else:
            raise BadBody
    return posted


async def _multipart(request: web.Request, form: FormSection, max_body: int) -> Posted:
    files = {f.name: f for f in form.fields if f.type == "file"}
    posted = Posted()
    total = 0
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                return posted
            if not isinstance(part, BodyPartReader):
                raise BadBody  # nested multipart has no place in a form
            name = part.name or ""
            spec = files.get(name)
            keep = spec.max_bytes if spec is not None else _MAX_OTHER_LENGTH * 4
            data = bytearray()
            size = 0
            while True:
                chunk = await part.read_chunk(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                total += len(chunk)
                if total > max_body:
                    raise BodyTooLarge
                if size <= keep:
                    data += chunk
            if part.filename is not None:
                if not part.filename and not size:
                    continue  # an empty file input: no file chosen
                ctype = part.headers.get("Content-Type", "application/octet-stream")
                if name not in posted.files:
                    posted.files[name] = Upload(part.filename, ctype, bytes(data), size)
            else:
                posted.put(name, bytes(data).decode(part.get_charset("utf-8"), "replace"))
    except (ValueError, AssertionError, LookupError):
        raise BadBody from None


def from_query(query: Mapping[str, str]) -> dict[str, str]:
    """Values the hosted page carries over from its own address (UTM tags)."""
    return {k: query[k] for k in UTM_KEYS if k in query}


def _accepts(spec: FormField, upload: Upload) -> bool:
    if not spec.accept:
        return True
    ctype = upload.content_type.split(";", 1)[0].strip().lower()
    if ctype in ("", "application/octet-stream"):
        ctype = (mimetypes.guess_type(upload.filename)[0] or ctype).lower()
    name = upload.filename.lower()
    for rule in (a.strip().lower() for a in spec.accept):
        if rule.startswith("."):
            if name.endswith(rule):
                return True
        elif rule.endswith("/*"):
            if ctype.startswith(rule[:-1]):
                return True
        elif ctype == rule:
            return True
    return False


def validate(
    form: FormSection, posted: Posted, language: str, region: str
) -> Cleaned | dict[str, str]:
    """The cleaned submission, or ``{field: message}`` for every field in error."""
    errors: dict[str, str] = {}
    values: dict[str, str | bool] = {}
    files: dict[str, Upload] = {}
    for spec in form.fields:
        name = spec.name
        if spec.type == "file":
            upload, error = _file(spec, posted, language)
            if upload is not None:
                files[name] = upload
        elif spec.type == "checkbox":
            checked = posted.values.get(name, "").strip().lower() in _CHECKED
            error = text("form_required", language) if spec.required and not checked else None
            values[name] = checked
        else:
            value, error = _text(spec, posted.values.get(name, ""), language, region)
            if value is not None:
                values[name] = value
        if error is not None:
            errors[name] = error
    contacts = [f for f in form.fields if f.role in ("email", "phone")]
    if not any(values.get(f.name) for f in contacts) and not any(
        f.name in errors for f in contacts
    ):
        errors[contacts[0].name] = text("form_need_contact", language)
    if errors:
        return errors
    return Cleaned(values, files)


def _file(spec: FormField, posted: Posted, language: str) -> tuple[Upload | None, str | None]:
    """A file field's upload when it is acceptable, else the error (if any)."""
    upload = posted.files.get(spec.name)
    if upload is None:
        if spec.required:
            return None, text("form_required", language)
        if posted.values.get(spec.name):
            return None, text("form_not_a_file", language)
        return None, None
    if upload.size > spec.max_bytes:
        return None, text("form_file_too_big", language, limit=size_text(spec.max_bytes))
    if not _accepts(spec, upload):
        return None, text("form_file_type", language, accept=", ".join(spec.accept))
    return upload, None


def _text(spec: FormField, raw: str, language: str, region: str) -> tuple[str | None, str | None]:
    """A text field's value, whitespace tidied and an address or number
    normalized; ``None`` (and the error, if any) when there is none to keep."""
    value = raw.replace("\r\n", "\n").replace("\r", "\n").strip()
    if spec.type != "textarea":
        value = " ".join(value.split())
    if not value:
        return None, text("form_required", language) if spec.required else None
    if len(value) > spec.max_length:
        return None, text("form_too_long", language, limit=spec.max_length)
    try:
        if spec.role == "email" or spec.type == "email":
            return normalize_email(value), None
        if spec.role == "phone" or spec.type == "tel":
            return normalize_phone(value, region), None
    except InvalidIdentity:
        bad = "form_bad_email" if spec.role == "email" or spec.type == "email" else "form_bad_phone"
        return None, text(bad, language)
    return value, None


def content_key(form: FormSection, cleaned: Cleaned) -> str:
    """A digest of what was submitted: the same content gives the same key."""
    data = {
        "form": form.id,
        "values": sorted((k, v) for k, v in cleaned.values.items() if v not in ("", False)),
        "files": sorted(
            (k, u.filename, hashlib.sha256(u.data).hexdigest()) for k, u in cleaned.files.items()
        ),
    }
    return hashlib.sha256(json.dumps(data, ensure_ascii=False).encode()).hexdigest()


def label(spec: FormField, language: str) -> str:
    if language == "ru" and spec.label_ru:
        return spec.label_ru
    return spec.label or spec.label_ru or spec.name


def title(form: FormSection, language: str) -> str:
    if language == "ru" and form.title_ru:
        return form.title_ru
    return form.title or form.title_ru or form.id


def _by_role(form: FormSection, cleaned: Cleaned, role: str) -> str | bool | None:
    for spec in form.fields:
        if spec.role == role:
            return cleaned.values.get(spec.name)
    return None


def summary(form: FormSection, cleaned: Cleaned, language: str) -> str:
    """The submission as text: the message, then the other fields as ``Label: value``."""
    lines: list[str] = []
    message = _by_role(form, cleaned, "message")
    if isinstance(message, str) and message:
        lines += [message, ""]
    yes, no = ("да", "нет") if language == "ru" else ("yes", "no")
    for spec in form.fields:
        if spec.role == "message":
            continue
        if spec.type == "file":
            upload = cleaned.files.get(spec.name)
            if upload is not None:
                lines.append(f"{label(spec, language)}: 📎 {upload.filename}")
            continue
        value = cleaned.values.get(spec.name)
        if value is None or value == "":
            continue
        shown = (yes if value else no) if isinstance(value, bool) else value
        lines.append(f"{label(spec, language)}: {shown}")
    return "\n".join(lines).strip()


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[:limit]


def context(
    posted: Posted, headers: Mapping[str, str], form: FormSection, honeypot: str
) -> dict[str, Any]:
    """Where the submission came from: UTM tags, the page, its referrer, and any
    posted field the form does not define (kept, never dropped)."""
    page = posted.values.get("_page") or headers.get("Referer") or ""
    utm = {k: _clip(posted.values[k], 500) for k in UTM_KEYS if posted.values.get(k)}
    if page and len(utm) < len(UTM_KEYS):
        query = parse_qs(urlsplit(page).query)
        for key in UTM_KEYS:
            if key not in utm and query.get(key):
                utm[key] = _clip(query[key][0], 500)
    known = {f.name for f in form.fields} | RESERVED_FIELDS | {honeypot, *UTM_KEYS}
    other = {
        _clip(k, 100): _clip(v, _MAX_OTHER_LENGTH)
        for k, v in list(posted.values.items())[: _MAX_OTHER + len(known)]
        if k not in known
    }
    out: dict[str, Any] = {}
    if utm:
        out["utm"] = utm
    if page:
        out["page"] = _clip(page, 2000)
    referrer = posted.values.get("_referrer")
    if referrer:
        out["referrer"] = _clip(referrer, 2000)
    if other:
        out["other"] = dict(list(other.items())[:_MAX_OTHER])
    return out


def to_message(
    form: FormSection,
    cleaned: Cleaned,
    *,
    external_id: str,
    language: str,
    received_at: datetime,
    origin: Mapping[str, Any],
    confirm: bool,
) -> InboundMessage:
    """The submission as the hub's message: the client by email and/or phone, the
    custom fields, consent and origin in ``extras``, files as attachments."""
    name = _by_role(form, cleaned, "name")
    display = name if isinstance(name, str) and name else None
    email = _by_role(form, cleaned, "email")
    phone = _by_role(form, cleaned, "phone")
    identities: list[Identity] = []
    if isinstance(email, str) and email:
        identities.append(Identity(IdentityKind.EMAIL, email, display))
    if isinstance(phone, str) and phone:
        identities.append(Identity(IdentityKind.PHONE, phone, display))
    custom = {
        spec.name: cleaned.values[spec.name]
        for spec in form.fields
        if spec.role is None and spec.name in cleaned.values
    }
    body = summary(form, cleaned, language)
    subject = title(form, language)
    extras: dict[str, Any] = {"form": form.id, "source": f"webform:{form.id}", **origin}
    if custom:
        extras["fields"] = custom
    consent = _by_role(form, cleaned, "consent")
    if consent is not None:
        extras["consent"] = bool(consent)
    if confirm and isinstance(email, str) and email:
        greeting = f", {display}" if display else ""
        extras["confirmation"] = {
            "to": email,
            "subject": text("form_confirm_subject", language, title=subject),
            "text": text("form_confirm_body", language, name=greeting, summary=body),
        }
    return InboundMessage(
        channel=Channel.WEBFORM,
        account=form.id,
        external_id=external_id,
        identities=tuple(identities),
        received_at=received_at,
        text=body,
        subject=subject,
        attachments=tuple(
            Attachment(u.filename, u.content_type.split(";", 1)[0].strip(), u.data)
            for u in cleaned.files.values()
        ),
        language=language,
        extras=extras,
    )
