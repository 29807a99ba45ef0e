"""A form submission: read from the request body, checked field by field against
the form's definition, and turned into the hub's :class:`InboundMessage`.

Three encodings come in (HTML 5 form submission, RFC 7578 multipart, RFC 8259
JSON); all end as one :class:`Posted`. Reading is bounded (:class:`Bounds`): the
body's bytes, the number of fields and files, and each text field's length;
multipart is read part by part as it arrives, the other two are parsed off the
event loop. :func:`validate` answers either the cleaned values or per-field
errors in the form's language, and :func:`to_message` builds the message for
the ingest sink.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
import re
import unicodedata
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

from aiohttp import BodyPartReader, StreamReader, web
from aiohttp.http_exceptions import BadHttpMessage

from hub.config import RESERVED_FIELDS, FormField, FormSection
from hub.kernel.identities import InvalidIdentity, normalize_email, normalize_phone
from hub.kernel.texts import text
from hub.kernel.types import Attachment, Channel, Identity, IdentityKind, InboundMessage

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
FORM_ERROR = "_form"  # the key of an error about the whole submission
_CHECKED = frozenset({"on", "true", "1", "yes"})
_MAX_OTHER = 50  # posted fields the form does not define, kept on the interaction
_MAX_OTHER_LENGTH = 2000
_MAX_NAME = 100  # characters of a posted field's name (the form's own have at most 64)
_MAX_FILE_NAME = 255
_MAX_TYPE = 200  # characters of a file's Content-Type kept (a media type has at most 255)
_CHUNK = 64 * 1024
_JSON = json.JSONDecoder()
_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_SURROGATE = re.compile("[\ud800-\udfff]")
_URLENCODED = ("application/x-www-form-urlencoded", "text/plain", "application/octet-stream")


class BodyTooLarge(Exception):
    """The body is over the form server's limit (HTTP 413)."""


class BadBody(Exception):
    """The body cannot be read (HTTP 400); ``key`` names the text that says why."""

    def __init__(self, key: str = "form_bad_body", **values: Any) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


@dataclass(frozen=True, slots=True)
class Bounds:
    """How much of a submission is read: ``body`` bytes, ``fields`` fields and files
    (more: refused at once), per text field of the form the characters kept
    (more: the field is too long; other fields keep 2,000), per file field the
    bytes kept (more are counted, for validation to name)."""

    body: int
    fields: int
    chars: Mapping[str, int]
    files: Mapping[str, int]

    def of(self, name: str) -> int:
        return self.chars.get(name, _MAX_OTHER_LENGTH)


def bounds(form: FormSection, max_body: int, max_fields: int) -> Bounds:
    """The bounds of a submission to ``form``. A text field may carry twice its
    ``max_length`` and a little (line breaks as CRLF, spaces that are tidied
    away); past that it cannot be valid and is not read further."""
    chars = {f.name: 2 * f.max_length + 1000 for f in form.fields if f.type != "file"}
    files = {f.name: f.max_bytes for f in form.fields if f.type == "file"}
    return Bounds(max_body, max_fields, chars, files)


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
    too_long: set[str] = field(default_factory=set)

    def put(self, name: str, value: str, limit: int, *, cut: bool = False) -> None:
        """The first value of ``name``, cut at ``limit`` characters; ``name`` is too
        long when it was cut here or before (``cut``)."""
        if name in self.values:
            return
        if cut or len(value) > limit:
            self.too_long.add(name)
            value = value[:limit]
        self.values[name] = _sound(value)


def _sound(text: str) -> str:
    """``text`` with every lone surrogate (JSON's ``"\\ud800"``, a header's
    undecodable byte) as U+FFFD: no database, file or log line takes one."""
    return _SURROGATE.sub("\ufffd", text)


def _name(raw: str) -> str:
    return _sound(raw[:_MAX_NAME])


def file_name(raw: str) -> str:
    """A posted file's name as it is kept and logged: no control characters (a NUL
    ends a C string, a line break forges a log line), no lone surrogates."""
    kept = "".join(ch for ch in raw[: _MAX_FILE_NAME * 4] if unicodedata.category(ch) != "Cc")
    return _sound(kept.strip()[:_MAX_FILE_NAME])


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


async def read(request: web.Request, limits: Bounds, executor: Executor | None) -> Posted:
    """The submission in ``request`` (urlencoded, multipart or JSON).

    Raise :class:`BodyTooLarge` past ``limits.body`` bytes, :class:`BadBody` for
    a body that cannot be read or carries more than ``limits.fields`` fields. A
    file over its field's ``max_bytes`` is counted, not kept, so that validation
    can name it. JSON and urlencoded bodies are parsed on ``executor``.
    """
    if request.content_length is not None and request.content_length > limits.body:
        raise BodyTooLarge
    ctype = request.content_type
    if ctype == "multipart/form-data":
        return await _multipart(request, limits)
    if ctype == "application/json" or ctype.endswith("+json"):
        parse = partial(_json, limits=limits)
    elif ctype in _URLENCODED:
        parse = partial(_urlencoded, charset=request.charset or "utf-8", limits=limits)
    else:
        raise BadBody
    raw = await _body(request, limits.body)
    return await asyncio.get_running_loop().run_in_executor(executor, parse, raw)


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


def _urlencoded(raw: bytes, *, charset: str, limits: Bounds) -> Posted:
    """An HTML form's body. A value is cut before it is decoded: a character is
    at most 12 characters encoded (four bytes as ``%XX``)."""
    try:
        body = raw.decode(charset)
    except (UnicodeDecodeError, LookupError):
        raise BadBody from None
    if body.count("&") >= limits.fields:
        raise BadBody("form_too_many_fields", limit=limits.fields)
    posted = Posted()
    for pair in body.split("&"):
        if not pair:
            continue
        encoded_name, _, encoded = pair.partition("=")
        name = _name(unquote_plus(encoded_name[: _MAX_NAME * 12]))
        if name not in posted.values:
            limit = limits.of(name)
            posted.put(name, unquote_plus(encoded[: (limit + 1) * 12]), limit)
    return posted


def _json(raw: bytes, *, limits: Bounds) -> Posted:
    try:
        doc = raw.decode(json.detect_encoding(raw), "surrogatepass")
    except UnicodeDecodeError:
        raise BadBody from None
    posted = Posted()
    try:
        for count, (name, value) in enumerate(_members(doc), 1):
            if count > limits.fields:
                raise BadBody("form_too_many_fields", limit=limits.fields)
            key = _name(name)
            if isinstance(value, bool):
                posted.put(key, "on" if value else "", limits.of(key))
            elif isinstance(value, str | int | float):
                posted.put(key, str(value), limits.of(key))
    except ValueError:  # not JSON, or a number of more digits than int() reads
        raise BadBody from None
    return posted


def _members(doc: str) -> Iterator[tuple[str, Any]]:
    """The members of the JSON object ``doc``, parsed one by one: a nested value
    (a form's values are scalars) is refused before it is parsed, so that no
    depth of nesting costs anything, and the caller counts members as they come."""
    at = _space(doc, 0)
    if doc[at : at + 1] != "{":
        raise BadBody
    at = _space(doc, at + 1)
    while doc[at : at + 1] != "}":
        if doc[at : at + 1] != '"':
            raise BadBody
        name, at = _JSON.raw_decode(doc, at)
        at = _space(doc, at)
        if doc[at : at + 1] != ":":
            raise BadBody
        at = _space(doc, at + 1)
        if doc[at : at + 1] in ("{", "["):
            raise BadBody("form_nested")
        value, at = _JSON.raw_decode(doc, at)
        yield name, value
        at = _space(doc, at)
        if doc[at : at + 1] == ",":
            at = _space(doc, at + 1)
        elif doc[at : at + 1] != "}":
            raise BadBody
    if _space(doc, at + 1) != len(doc):
        raise BadBody


def _space(doc: str, at: int) -> int:
    found = _JSON_SPACE.match(doc, at)
    return found.end() if found else at


async def _multipart(request: web.Request, limits: Bounds) -> Posted:
    """Read part by part as the body arrives, so that the part past
    ``limits.fields`` is refused before the rest is read."""
    posted = Posted()
    try:
        reader = await request.multipart()
        count = 0
        while (part := await reader.next()) is not None:
            count += 1
            if count > limits.fields:
                raise BadBody("form_too_many_fields", limit=limits.fields)
            if not isinstance(part, BodyPartReader):
                raise BadBody  # nested multipart has no place in a form
            await _part(part, posted, limits, request.content)
    except BadHttpMessage:  # a part's header aiohttp cannot read (a NUL, no colon, …)
        raise BadBody("form_bad_part") from None
    except (ValueError, AssertionError, LookupError):
        raise BadBody from None
    return posted


async def _part(part: BodyPartReader, posted: Posted, limits: Bounds, body: StreamReader) -> None:
    """Read one part into ``posted``. The body's size counts what arrived, the
    parts' headers too (up to 128 lines of 8 KB each in aiohttp)."""
    name = _name(part.name or "")
    is_file = part.filename is not None
    keep = limits.files.get(name, 0) if is_file else limits.of(name) * 4  # UTF-8: 4 a character
    data = bytearray()
    size = 0
    while chunk := await part.read_chunk(_CHUNK):
        size += len(chunk)
        if body.total_bytes > limits.body:
            raise BodyTooLarge
        if len(data) < keep:
            data += chunk[: keep - len(data)]
    if is_file:
        if (part.filename or size) and name not in posted.files:  # no name, no bytes: none chosen
            ctype = part.headers.get("Content-Type", "application/octet-stream")[:_MAX_TYPE]
            posted.files[name] = Upload(file_name(part.filename or ""), ctype, bytes(data), size)
    else:
        value = bytes(data).decode(part.get_charset("utf-8"), "replace")
        posted.put(name, value, limits.of(name), cut=size > keep)
    if body.total_bytes > limits.body:
        raise BodyTooLarge


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
        elif name in posted.too_long:
            error = text("form_too_long", language, limit=spec.max_length)
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
