"""Raw email bytes → the hub's :class:`~hub.kernel.types.InboundMessage`, never raising.

Speaks RFC 5322 (message format), RFC 2045-2049 (MIME), RFC 2047 (encoded words
in headers), RFC 2231 (parameter values such as attachment names), RFC 3464
(delivery status notifications) and RFC 3834 (``Auto-Submitted``), through the
standard :mod:`email` package: its lenient ``compat32`` parser for the MIME tree
(it also reads the unquoted boundaries real mailers write, which
``policy.default`` rejects) and this module's own header decoding.

:func:`parse` is pure: the same bytes give the same result. It classifies the
mail (a client's message, an auto-reply, a bounce), decodes every charset it can
and falls back where it cannot (UTF-8 with replacement, then Latin-1), turns
HTML-only mail into readable text, separates quoted history from the new text
and records whatever could not be parsed in ``problems`` instead of failing:
a message is never dropped for being broken.

The sender is the first address that can be read of ``From``, ``Reply-To``,
``Sender``, ``Return-Path`` and the SMTP envelope's ``MAIL FROM``; where it came
from, when not ``From``, is in ``extras["sender_source"]``. Mail with none of
them is still read (``ParsedEmail.anonymous``, no identities), and so is input
that is no RFC 822 message at all (its raw text). A header block whose first
line is folded (starts with a space) is read as if that line were not.
"""

from __future__ import annotations

import binascii
import codecs
import hashlib
import html
import mimetypes
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.errors import MissingHeaderBodySeparatorDefect
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser
from email.policy import Compat32
from email.utils import getaddresses
from html.parser import HTMLParser
from typing import Any, Literal, NamedTuple

from hub.kernel.identities import InvalidIdentity, identity
from hub.kernel.types import Attachment, Channel, Identity, InboundMessage

Kind = Literal["message", "auto_reply", "bounce"]

__all__ = [
    "ENVELOPE_SOURCE",
    "Kind",
    "ParsedEmail",
    "html_to_text",
    "may_name_sender",
    "parse",
    "split_quoted",
    "unfold_first_line",
]


@dataclass(frozen=True, slots=True)
class ParsedEmail:
    """What :func:`parse` made of one raw message.

    ``message`` is None only when no sender address could be found at all (the
    reason is in ``problems``); ``anonymous`` is then the same message read
    without a sender (no identities), unless the parser itself failed. For a
    bounce, ``bounced_message_id`` names the outbound message it reports on and
    ``bounce_reason`` says why it failed.
    """

    kind: Kind
    message: InboundMessage | None
    problems: list[str] = field(default_factory=list)
    message_id: str | None = None
    bounced_message_id: str | None = None
    bounce_reason: str | None = None
    anonymous: InboundMessage | None = None


# --- charsets -------------------------------------------------------------------

# Labels that mail clients write but Python does not know, or knows only as a
# narrower charset than the one the senders actually use.
_CHARSET_ALIASES: dict[str, tuple[str, ...]] = {
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "x-gbk": ("gb18030",),
    "iso-8859-1": ("cp1252", "latin-1"),
    "latin1": ("cp1252", "latin-1"),
    "iso-8859-8-i": ("iso-8859-8",),
    "ks_c_5601-1987": ("cp949",),
    "euc-kr": ("cp949",),
    "iso-2022-jp": ("iso2022_jp", "iso2022_jp_2", "iso2022_jp_ext"),
    "shift_jis": ("cp932",),
    "x-sjis": ("cp932",),
    "big5": ("big5hkscs", "cp950"),
    "tis-620": ("cp874",),
    "windows-874": ("cp874",),
    "unicode-1-1-utf-7": ("utf-7",),
    "utf8": ("utf-8",),
    "uft-8": ("utf-8",),
}


def _codecs_for(label: str | None) -> tuple[str, ...] | None:
    """Codec names for a charset label; None when the label is unknown."""
    if not label:
        return ()
    name = label.strip().strip("\"'").lower()
    if name in _CHARSET_ALIASES:
        return _CHARSET_ALIASES[name]
    for candidate in (name, name.removeprefix("x-"), name.removeprefix("x-").replace("-", "_")):
        try:
            return (codecs.lookup(candidate).name,)
        except (LookupError, ValueError):  # ValueError: a NUL in the label (issue 9)
            continue
    return None


def decode_bytes(data: bytes, label: str | None, problems: list[str], where: str) -> str:
    """Decode ``data`` declared as ``label``; always returns text, notes what was lossy."""
    known = _codecs_for(label)
    if known is None:
        problems.append(f"{where}: unknown charset {label!r}")
        known = ()
    non_ascii = any(b >= 0x80 for b in data)
    # Text that is valid UTF-8 and not plain ASCII is UTF-8 whatever the label says:
    # a legacy charset almost never forms valid UTF-8 by accident.
    if non_ascii:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    for codec in known:
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError, ValueError):
            continue
    if known:
        problems.append(f"{where}: bytes not valid in charset {label!r}")
        try:
            return data.decode(known[0], "replace")
        except (LookupError, ValueError):
            pass
    text = data.decode("utf-8", "replace")
    if text.count("\ufffd") > max(3, len(text) // 10):
        return data.decode("latin-1")
    return text


_SURROGATES = re.compile("[\udc80-\udcff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _clean(value: str, hint: str | None = None) -> str:
    """Repair a header value: raw 8-bit bytes kept as surrogates, CR/LF, NUL."""
    if _SURROGATES.search(value):
        raw = value.encode("utf-8", "surrogateescape")
        value = decode_bytes(raw, hint, [], "header")
    value = value.replace("\r", " ").replace("\n", " ")
    return " ".join(_CONTROL.sub(" ", value).split())


# --- HTML → text ------------------------------------------------------------------

_BLOCK = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "tr",
        "ul",
    ]
)
_PARAGRAPH = frozenset(
    ["p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "ul", "ol", "pre", "hr"]
)
_DROPPED = frozenset(["script", "style", "head", "title", "noscript", "template"])
# Block boundaries are marked first and resolved after: a run of them is one break.
_LINE, _PARA = "\x00", "\x01"
_BREAKS = re.compile(r"[ \t]*[\x00\x01][\x00\x01 \t]*")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0
        self._pre = 0
        self._links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED:
            self._skip += 1
            return
        if self._skip:
            return
        if tag == "br":
            self.out.append("\n")
        elif tag in _PARAGRAPH:
            self.out.append(_PARA)
        elif tag in _BLOCK:
            self.out.append(_LINE)
        elif tag in ("td", "th"):
            self.out.append(" ")
        if tag == "li":
            self.out.append("- ")
        elif tag == "pre":
            self._pre += 1
        elif tag == "a":
            self._links.append((dict(attrs).get("href"), len(self.out)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _DROPPED:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED:
            self._skip = max(0, self._skip - 1)
            return
        if self._skip:
            return
        if tag == "a" and self._links:
            href, start = self._links.pop()
            label = "".join(self.out[start:]).strip()
            if href and label and _shows_link(href.strip(), label):
                self.out.append(f" ({href.strip()})")
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
        if tag in _PARAGRAPH:
            self.out.append(_PARA)
        elif tag in _BLOCK:
            self.out.append(_LINE)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.out.append(data if self._pre else re.sub(r"\s+", " ", data))


def _shows_link(href: str, label: str) -> bool:
    if href.startswith(("#", "javascript:", "cid:")):
        return False
    bare = href.removeprefix("mailto:").removeprefix("tel:")
    return bare not in label and label not in (href, bare)


def _tidy(text: str) -> str:
    text = _BREAKS.sub(lambda m: "\n\n" if _PARA in m.group(0) else "\n", text)
    lines = [re.sub(r"[ \t\xa0]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_to_text(markup: str) -> str:
    """Readable text of an HTML body: blocks on their own lines, links as "text (url)"."""
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
        text = "".join(parser.out)
    except Exception:  # html.parser can still trip on pathological markup
        text = html.unescape(re.sub(r"<[^>]*>", " ", markup))
    return _tidy(text)


# --- quoted history ---------------------------------------------------------------

_ATTRIBUTION = re.compile(
    r"""^\s*(?:
        (?:On|Am|Le|El|Il|Op|Em)\s.+(?:wrote|schrieb|a\s+écrit|escribió|ha\s+scritto|schreef|escreveu)\s*:
      | .+\s(?:писал|написал|пишет)(?:\(а\)|а)?\s*:
      | -{2,}\s*(?:Original\s+Message|Исходное\s+сообщение|Ursprüngliche\s+Nachricht
                  |Message\s+d'origine)\s*-{2,}
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
_ATTRIBUTION_START = re.compile(r"^\s*(?:On|Am|Le|El)\s.+", re.IGNORECASE)
_ATTRIBUTION_END = re.compile(
    r".*(?:wrote|schrieb|a\s+écrit|escribió|писал\(а\)|писал|пишет)\s*:\s*$", re.IGNORECASE
)
_OUTLOOK_FROM = re.compile(r"^\s*\*?(?:From|От|Von|De)\s*:\*?\s+\S", re.IGNORECASE)
_OUTLOOK_NEXT = re.compile(
    r"^\s*\*?(?:Sent|Date|Отправлено|Дата|Gesendet|Envoyé)\s*:\*?\s", re.IGNORECASE
)


def _quote_start(lines: list[str]) -> int | None:
    for i, line in enumerate(lines):
        if _ATTRIBUTION.match(line):
            return i
        if (
            _ATTRIBUTION_START.match(line)
            and i + 1 < len(lines)
            and _ATTRIBUTION_END.match(lines[i + 1])
            and len(line) + len(lines[i + 1]) < 300
        ):
            return i
        if _OUTLOOK_FROM.match(line) and any(_OUTLOOK_NEXT.match(n) for n in lines[i + 1 : i + 5]):
            # Outlook draws a rule of underscores above its header block.
            if i > 0 and set(lines[i - 1].strip()) == {"_"}:
                return i - 1
            return i
        if line.lstrip().startswith(">"):
            rest = lines[i:]
            if all(not r.strip() or r.lstrip().startswith(">") for r in rest):
                return i
    return None


def split_quoted(text: str) -> tuple[str, str]:
    """Split a reply into (new text, quoted history); history is "" when none is found."""
    lines = text.split("\n")
    start = _quote_start(lines)
    if start is None:
        return text, ""
    new = "\n".join(lines[:start]).strip()
    quoted = "\n".join(lines[start:]).strip()
    if not new:
        return text, ""
    return new, quoted


# --- headers ----------------------------------------------------------------------


_ATOM = r'[^\s<>()\[\]\\,;:@"]+'
_SIMPLE_ADDRESS = re.compile(
    rf"\s*(?:(?P<name>[^<>()\[\]\\,;:@\"]*?)\s*<(?P<addr>{_ATOM}@{_ATOM})>|(?P<bare>{_ATOM}@{_ATOM}))\s*$"
)


class _Headers:
    """Header access that survives every broken header.

    Values are read raw (as the compat32 parser keeps them) and decoded here:
    RFC 2047 words through :func:`email.header.decode_header`, 8-bit bytes by
    the message's charset, addresses by :func:`email.utils.getaddresses`. This is
    what ``policy.default``'s header registry does, at a tenth of its cost, and
    with this module's charset fallbacks. Each header is decoded once.
    """

    def __init__(self, msg: Message, problems: list[str], hint: str | None) -> None:
        self.msg = msg
        self.problems = problems
        self.hint = hint
        self._texts: dict[str, str | None] = {}
        self._raw: dict[str, list[str]] = {}
        for key, value in msg.raw_items():
            self._raw.setdefault(key.lower(), []).append(str(value))

    def raw(self, name: str) -> list[str]:
        return self._raw.get(name.lower(), [])

    def text(self, name: str) -> str | None:
        key = name.lower()
        if key not in self._texts:
            raws = self.raw(name)
            self._texts[key] = _decode_raw_header(raws[0], self.hint) if raws else None
        return self._texts[key]

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """(display name, address) pairs of an address header."""
        raws = self.raw(name)
        if not raws:
            return []
        if len(raws) == 1 and (simple := _SIMPLE_ADDRESS.match(raws[0])):
            # The common one-address header, read without the general parser.
            display, address = simple.group("name") or "", simple.group("addr")
            address = _clean(address or simple.group("bare"), self.hint)
            return [(_decode_raw_header(display, self.hint) if display else "", address)]
        try:
            pairs = getaddresses(raws)
        except Exception as exc:  # the stdlib's address parser on hostile input
            self.problems.append(f"header {name}: {type(exc).__name__}: {exc}")
            return []
        found = []
        for display, address in pairs:
            address = _clean(address, self.hint)
            if address and "@" in address:
                found.append((_decode_raw_header(display, self.hint), address))
        if not found and any("=?" in r for r in raws):
            # An address inside an encoded word (=?utf-8?q?a@b?=): decode, then read.
            decoded = [_decode_raw_header(r, self.hint) for r in raws]
            found = [(n, a) for n, a in getaddresses(decoded) if a and "@" in a]
        return found


def _decode_raw_header(value: str, hint: str | None) -> str:
    """Decode RFC 2047 words with this module's charset fallbacks."""
    try:
        chunks = decode_header(value)
    except Exception:  # a malformed encoded word
        return _clean(value, hint)
    out = []
    for chunk, charset in chunks:
        raw = chunk if isinstance(chunk, bytes) else chunk.encode("utf-8", "surrogateescape")
        out.append(decode_bytes(raw, charset or hint, [], "header"))
    return _clean("".join(out), hint)


class _Part(Message):
    """A parsed message part that indexes its headers and Content-* parameters
    on first use (the stdlib scans every header, and re-parses the parameters, on
    each call, and a walk asks for them many times). A change drops the index."""

    def _indexed(self) -> dict[str, Any]:
        index: dict[str, Any] | None = self.__dict__.get("_index")
        if index is None:
            index = {}
            for key, value in self._headers:  # type: ignore[attr-defined]
                index.setdefault(key.lower(), value)
            self.__dict__["_index"] = index
        return index

    def get(self, name: str, failobj: Any = None) -> Any:
        value = self._indexed().get(name.lower())
        return failobj if value is None else self.policy.header_fetch_parse(name, value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._indexed()

    def _get_params_preserve(self, failobj: Any, header: str) -> Any:
        kept: dict[str, Any] = self.__dict__.setdefault("_params", {})
        key = header.lower()
        if key not in kept:
            kept[key] = super()._get_params_preserve(None, header)  # type: ignore[misc]
        value = kept[key]
        return failobj if value is None else list(value)

    def _changed(self) -> None:
        self.__dict__.pop("_index", None)
        self.__dict__.pop("_params", None)

    def set_raw(self, name: str, value: Any) -> None:
        self._changed()
        super().set_raw(name, value)

    def __setitem__(self, name: str, val: Any) -> None:
        self._changed()
        super().__setitem__(name, val)

    def __delitem__(self, name: str) -> None:
        self._changed()
        super().__delitem__(name)

    def add_header(self, _name: str, _value: str, **_params: Any) -> None:
        self._changed()
        super().add_header(_name, _value, **_params)

    def replace_header(self, _name: str, _value: Any) -> None:
        self._changed()
        super().replace_header(_name, _value)


class _RawPolicy(Compat32):
    """compat32 that hands header values over as they came, 8-bit bytes kept as
    surrogates (compat32 itself wraps them in an undecodable ``Header``), so
    that this module decodes them with the message's charset."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_RAW = _RawPolicy()

# Writes a parsed message back as it came: CRLF, no refolding, 8-bit bytes kept.
_AS_RECEIVED = policy.compat32.clone(linesep="\r\n", max_line_length=0)


_MSGID = re.compile(r"<([^<>\s]+)>")
_SUBJECT_TAG = re.compile(r"\[#(\d{1,15})\]")


def _message_ids(value: str | None, *, bare: bool = False) -> list[str]:
    """Message ids in angle brackets; ``bare`` accepts one id written without them."""
    if not value:
        return []
    found = [f"<{m}>" for m in _MSGID.findall(value)]
    if not found and bare:
        token = value.strip()
        if token and " " not in token and "@" in token:
            found = [f"<{token.strip('<>')}>"]
    return found


# --- body and attachments ----------------------------------------------------------


@dataclass
class _Body:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    dsn: list[Message] = field(default_factory=list)
    enclosed: list[Message] = field(default_factory=list)
    enclosed_headers: list[str] = field(default_factory=list)


class _Walker:
    def __init__(self, max_bytes: int, problems: list[str], hint: str | None = None) -> None:
        self.max_bytes = max_bytes
        self.problems = problems
        self.hint = hint
        self.count = 0

    def walk(self, part: Message, body: _Body, depth: int = 0) -> None:
        try:
            self._walk(part, body, depth)
        except Exception as exc:  # a broken part must not cost the rest of the mail
            self.problems.append(f"part {part.get_content_type()}: {type(exc).__name__}: {exc}")

    def _walk(self, part: Message, body: _Body, depth: int) -> None:
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            body.dsn.append(part)
            payload = part.get_payload()
            blocks = payload if isinstance(payload, list) else [payload]
            data = "\r\n".join(str(b) for b in blocks).encode("utf-8", "surrogateescape")
            self._attach(
                body,
                _filename(part.get_filename(), "text/plain", self.count + 1, self.hint),
                ctype,
                data,
            )
            return
        if ctype in ("message/rfc822", "message/global") and part.is_multipart():
            self._enclosed(part, body)
            return
        if part.is_multipart() and depth < 50:
            payload = part.get_payload()
            parts = payload if isinstance(payload, list) else []
            subparts = [p for p in parts if isinstance(p, Message)]
            if ctype == "multipart/alternative":
                self._alternative(subparts, body, depth)
            else:
                for sub in subparts:
                    self.walk(sub, body, depth + 1)
            return
        self._leaf(part, body, ctype)

    def _alternative(self, subparts: list[Message], body: _Body, depth: int) -> None:
        versions = []
        for sub in subparts:
            version = _Body()
            self.walk(sub, version, depth + 1)
            versions.append(version)
        plain = next((v.plain for v in versions if "".join(v.plain).strip()), [])
        rich = next((v.html for v in reversed(versions) if v.html), [])
        body.plain.extend(plain)
        body.html.extend(rich)
        for v in versions:
            body.attachments.extend(v.attachments)
            body.skipped.extend(v.skipped)
            body.dsn.extend(v.dsn)
            body.enclosed.extend(v.enclosed)
            body.enclosed_headers.extend(v.enclosed_headers)

    def _enclosed(self, part: Message, body: _Body) -> None:
        inner = part.get_payload(0)
        if isinstance(inner, Message):
            body.enclosed.append(inner)
            try:
                data = inner.as_bytes(policy=_AS_RECEIVED)
            except Exception:
                data = inner.as_string(policy=policy.compat32).encode("utf-8", "surrogateescape")
            subject = inner.get("subject")
            name = _safe_filename(str(subject), self.hint) if subject else ""
            self._attach(body, f"{name or 'message'}.eml", "message/rfc822", data)

    def _leaf(self, part: Message, body: _Body, ctype: str) -> None:
        data = _payload(part, self.problems)
        if part.get_content_maintype() == "multipart":
            self.problems.append(f"{ctype} without usable boundary; kept as text")
            ctype = "text/plain"
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        if ctype in ("text/rfc822-headers", "message/rfc822-headers"):
            body.enclosed_headers.append(decode_bytes(data, "utf-8", self.problems, ctype))
        is_text = ctype in ("text/plain", "text/html")
        if is_text and disposition != "attachment" and not filename:
            text = decode_bytes(data, part.get_content_charset(), self.problems, ctype)
            (body.plain if ctype == "text/plain" else body.html).append(text)
            return
        self._attach(body, _filename(filename, ctype, self.count + 1, self.hint), ctype, data)

    def _attach(self, body: _Body, filename: str, ctype: str, data: bytes) -> None:
        self.count += 1
        if len(data) > self.max_bytes:
            body.skipped.append({"filename": filename, "content_type": ctype, "size": len(data)})
            return
        body.attachments.append(Attachment(filename=filename, content_type=ctype, data=data))


def _payload(part: Message, problems: list[str]) -> bytes:
    """The decoded body of a leaf part; truncated base64 is repaired, not passed raw."""
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    encoded = part.get_payload()
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte == "base64" and isinstance(encoded, str):
        compact = re.sub(rb"[^A-Za-z0-9+/=]", b"", encoded.encode("ascii", "ignore"))
        if data and data == compact:
            usable = compact.replace(b"=", b"")
            try:
                data = binascii.a2b_base64(usable[: len(usable) // 4 * 4])
                problems.append("broken base64 repaired")
            except binascii.Error:
                problems.append("undecodable base64 kept raw")
    return data


def _safe_filename(name: str, hint: str | None = None) -> str:
    name = _clean(name, hint)
    if "=?" in name:
        name = _decode_raw_header(name, None)
    name = re.sub(r"[\\/:*?\"<>|]+", "_", name).strip(" .")
    return name[:200]


def _filename(name: str | None, ctype: str, number: int, hint: str | None = None) -> str:
    cleaned = _safe_filename(name, hint) if name else ""
    if cleaned:
        return cleaned
    ext = mimetypes.guess_extension(ctype) or ".bin"
    return f"attachment-{number}{ext}"


# --- classification -----------------------------------------------------------------

_AUTO_SUBJECT = re.compile(
    r"^\s*(?:out\s+of\s+(?:the\s+)?office|automatic\s+reply|auto(?:matic)?[-\s]?repl(?:y|ied)"
    r"|autoresponse|auto[-\s]response|vacation|away\s+from|автоответ"
    r"|автоматический\s+ответ|abwesenheit|réponse\s+automatique|respuesta\s+automática"
    r"|fuera\s+de\s+la\s+oficina|automatyczna\s+odpowied)",
    re.IGNORECASE,
)
_BOUNCE_SENDER = re.compile(r"^(?:mailer-daemon|postmaster|mail\.delivery\.system)@", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery\s+(?:status|failure|has\s+failed|notification)|failure\s+notice"
    r"|returned\s+mail|mail\s+delivery\s+failed|could\s+not\s+be\s+delivered"
    r"|не\s+доставлено|недоставленное|non\s+remis|unzustellbar",
    re.IGNORECASE,
)
_BOUNCE_TEXT = re.compile(
    r"could\s+not\s+be\s+delivered|undeliverable|delivery\s+(?:to\s+.+\s+)?failed"
    r"|mailbox\s+is\s+full|user\s+unknown|no\s+such\s+user|не\s+может\s+быть\s+доставлено",
    re.IGNORECASE,
)
_NOREPLY_SENDER = re.compile(r"^(?:no-?reply|do-?not-?reply)@", re.IGNORECASE)
_SMTP_REASON = re.compile(r"^.*\b[45]\d\d[ -]#?[45]\.\d{1,3}\.\d{1,3}\b.*$", re.MULTILINE)
_INLINE_MSGID = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)


def _auto_reason(h: _Headers, subject: str) -> str | None:
    auto_submitted = (h.text("Auto-Submitted") or "").lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return f"auto-submitted: {auto_submitted}"
    precedence = (h.text("Precedence") or "").lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"precedence: {precedence}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-AutoReply-From"):
        if h.text(name) is not None:
            return name.lower()
    if _AUTO_SUBJECT.match(subject):
        suppress = h.text("X-Auto-Response-Suppress")
        return "x-auto-response-suppress" if suppress else "subject"
    return None


def _dsn_fields(dsn: list[Message]) -> list[dict[str, str]]:
    """Per-recipient field groups of message/delivery-status parts (RFC 3464)."""
    groups: list[dict[str, str]] = []
    for part in dsn:
        payload = part.get_payload()
        blocks = payload if isinstance(payload, list) else []
        if not blocks and isinstance(payload, str):
            blocks = [
                BytesParser(policy=policy.compat32).parsebytes(g.encode())
                for g in re.split(r"\n\s*\n", payload.replace("\r\n", "\n"))
            ]
        for block in blocks:
            if isinstance(block, Message):
                groups.append({k.lower(): _clean(str(v)) for k, v in block.raw_items()})
    return groups


@dataclass
class _Bounce:
    is_bounce: bool
    delayed_only: bool
    original_id: str | None
    reason: str | None
    failed: list[str]


def _bounce(
    h: _Headers, msg: Message, body: _Body, sender: str, subject: str, text: str
) -> _Bounce:
    failed = [a for v in h.raw("X-Failed-Recipients") for a in re.split(r"[,\s]+", v) if a]
    is_bounce = _looks_bounced(msg, body, sender, subject, text) or bool(failed)
    groups = _dsn_fields(body.dsn)
    actions = {g["action"].lower() for g in groups if "action" in g}
    delayed_only = bool(actions) and actions <= {"delayed", "delivered", "relayed", "expanded"}
    reason = None
    for g in groups:
        if "diagnostic-code" in g or "status" in g:
            parts = [g.get("status", ""), g.get("diagnostic-code", "")]
            reason = " ".join(p for p in parts if p).strip() or None
            if "final-recipient" in g:
                failed.append(g["final-recipient"].split(";")[-1].strip())
            break
    if reason is None and is_bounce:
        match = _SMTP_REASON.search(text)
        reason = match.group(0).strip()[:500] if match else None
    original = _original_id(h, body, groups, text, is_bounce)
    return _Bounce(is_bounce, delayed_only, original, reason, list(dict.fromkeys(failed)))


def _looks_bounced(msg: Message, body: _Body, sender: str, subject: str, text: str) -> bool:
    """A delivery report (RFC 3464), or a mail daemon's own way of saying one."""
    report_type = msg.get_param("report-type", header="content-type") or ""
    report = msg.get_content_type() == "multipart/report" and str(report_type).lower() in (
        "delivery-status",
        "",
    )
    from_daemon = bool(_BOUNCE_SENDER.match(sender))
    return (
        report
        or bool(body.dsn)
        or (
            from_daemon
            and (
                bool(body.enclosed)
                or bool(body.enclosed_headers)
                or bool(_BOUNCE_SUBJECT.search(subject))
            )
        )
        # Providers that send their own bounce format from a no-reply address (KDDI).
        or (
            (from_daemon or bool(_NOREPLY_SENDER.match(sender)))
            and bool(body.enclosed)
            and bool(_BOUNCE_TEXT.search(text))
        )
    )


def _original_id(
    h: _Headers, body: _Body, groups: list[dict[str, str]], text: str, is_bounce: bool
) -> str | None:
    """The Message-ID of the message a report is about (not the report's own)."""
    candidates: list[str | None] = [h.text("Original-Message-ID")]
    candidates += [_header_of(m, "Message-ID") for m in body.enclosed]
    for headers in body.enclosed_headers:
        parsed = BytesParser(policy=policy.compat32).parsebytes(
            headers.encode("utf-8", "surrogateescape"), headersonly=True
        )
        candidates.append(_header_of(parsed, "Message-ID"))
    candidates += [g.get("original-message-id") for g in groups]
    if is_bounce:
        # An enclosed original whose headers slid into its body (a stray blank line).
        for inner in body.enclosed:
            payload = inner.get_payload()
            if isinstance(payload, str):
                candidates += _INLINE_MSGID.findall(payload)
        candidates += _INLINE_MSGID.findall(text)
    own = _message_ids(h.text("Message-ID"))
    for value in candidates:
        ids = [i for i in _message_ids(value) if i not in own]
        if ids:
            return ids[0]
    return None


def _header_of(msg: Message, name: str) -> str | None:
    try:
        value = msg.get(name)
        return None if value is None else str(value)
    except Exception:
        return None


# --- the entry point ------------------------------------------------------------------


def _count_defects(msg: Message) -> int:
    return sum(len(getattr(part, "defects", ())) for part in msg.walk())


def _charset_hint(msg: Message) -> str | None:
    for part in msg.walk():
        try:
            charset = part.get_content_charset()
        except Exception:  # a broken Content-Type: no hint from this part
            charset = None
        if charset and _codecs_for(charset):
            return charset
    return None


def _body_text(body: _Body) -> str:
    if "".join(body.plain).strip():
        return _tidy("\n\n".join(t.replace("\r\n", "\n").replace("\r", "\n") for t in body.plain))
    if body.html:
        return html_to_text("\n".join(body.html))
    return ""


def _forwarded_text(inner: Message, max_bytes: int, problems: list[str]) -> str:
    h = _Headers(inner, problems, None)
    found = _Body()
    _Walker(max_bytes, problems, _charset_hint(inner)).walk(inner, found)
    text = _body_text(found)
    head = [f"{name}: {value}" for name in ("From", "Subject") if (value := h.text(name))]
    if not text and not head:
        return ""
    return "\n".join(["---------- Forwarded message ----------", *head, "", text]).strip()


_SENDER_FIELDS = (b"from:", b"sender:", b"reply-to:", b"return-path:")


def may_name_sender(raw: bytes, mail_from: str) -> bool:
    """False only when the envelope has the null sender (``""``, a bounce's) and
    no sender field of the header holds an address: mail that names no sender
    anywhere, which an SMTP server refuses before it is parsed (its sender's
    server tells them). It never refuses what :func:`parse` reads a sender from."""
    if mail_from:
        return True
    raw = unfold_first_line(raw)
    end = raw.find(b"\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    in_field = False
    for line in (raw if end < 0 else raw[:end]).split(b"\n"):
        if line[:1] in (b" ", b"\t"):  # folded: part of the field above
            if in_field and b"@" in line:
                return True
            continue
        in_field = line[:13].lower().startswith(_SENDER_FIELDS)
        if in_field and b"@" in line:
            return True
    return False


_LEADING_BLANKS = re.compile(rb"[ \t]+")


def unfold_first_line(raw: bytes) -> bytes:
    """The message with the leading blanks of its first line taken away (a
    continuation with no field before it, which the parser would drop); a
    first line of blanks alone goes whole, so that it does not end the header."""
    blanks = _LEADING_BLANKS.match(raw)
    if blanks is None:
        return raw
    rest = raw[blanks.end() :]
    if rest.startswith(b"\r\n"):
        return rest[2:]
    return rest[1:] if rest.startswith(b"\n") else rest


# Where a sender is read from, in order: the author, where they want answers,
# who sent for them, then where the mail system would return it.
_SENDER_FIELDS_READ = ("From", "Reply-To", "Sender", "Return-Path")
ENVELOPE_SOURCE = "MAIL FROM"


class _Sender(NamedTuple):
    identity: Identity
    source: str  # the header field it was read from, or ENVELOPE_SOURCE


def _sender(h: _Headers, problems: list[str], envelope_from: str) -> _Sender | None:
    for name in _SENDER_FIELDS_READ:
        for display, address in h.addresses(name):
            try:
                return _Sender(identity("email", address, display or None), name)
            except InvalidIdentity as exc:
                problems.append(f"{name}: {exc}")
    if envelope_from:
        try:
            return _Sender(identity("email", envelope_from), ENVELOPE_SOURCE)
        except InvalidIdentity as exc:
            problems.append(f"{ENVELOPE_SOURCE}: {exc}")
    problems.append("no valid sender address (From, Reply-To, Sender, Return-Path, MAIL FROM)")
    return None


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def parse(
    raw: bytes,
    *,
    account: str,
    received_at: datetime,
    max_attachment_bytes: int,
    envelope_from: str = "",
) -> ParsedEmail:
    """Parse one raw RFC 5322 message; never raises, records what it could not read.
    ``envelope_from`` is the SMTP ``MAIL FROM``, the last place a sender is read from."""
    problems: list[str] = []
    try:
        return _parse(raw, account, received_at, max_attachment_bytes, problems, envelope_from)
    except Exception as exc:  # the last guard: a message is logged even if all else failed
        problems.append(f"parser failure: {type(exc).__name__}: {exc}")
        return ParsedEmail(kind="message", message=None, problems=problems)


# Fields every mail program writes: a header block without any of them, and
# without the blank line that ends a header, is no header at all.
_MAIL_FIELDS = frozenset(
    [
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "received",
        "return-path",
        "sender",
        "reply-to",
        "delivered-to",
        "x-mailer",
    ]
)


def _is_rfc822(msg: Message) -> bool:
    keys = {k.lower() for k in msg}
    if not keys:
        return False
    separated = not any(isinstance(d, MissingHeaderBodySeparatorDefect) for d in msg.defects)
    return separated or bool(keys & _MAIL_FIELDS)


def _read(raw: bytes, problems: list[str]) -> Message:
    """The message tree; input that is no RFC 822 message becomes one plain text part."""
    unfolded = unfold_first_line(raw)
    if unfolded is not raw:
        problems.append("the header began with a folded line")
    msg = BytesParser(_Part, policy=_RAW).parsebytes(unfolded)
    if _is_rfc822(msg):
        return msg
    problems.append("no RFC 822 message: kept as its raw text")
    text = _Part(policy=_RAW)
    text.set_payload(decode_bytes(raw, None, problems, "raw input"), "utf-8")
    return text


def _parse(
    raw: bytes,
    account: str,
    received_at: datetime,
    max_bytes: int,
    problems: list[str],
    envelope_from: str = "",
) -> ParsedEmail:
    msg = _read(raw, problems)
    hint = _charset_hint(msg)
    h = _Headers(msg, problems, hint)

    ids = _message_ids(h.text("Message-ID"), bare=True)
    message_id = ids[0] if ids else None
    if message_id is None:
        problems.append("no Message-ID; content hash used")
    subject = h.text("Subject") or ""

    body = _Body()
    _Walker(max_bytes, problems, hint).walk(msg, body)
    full_text = _body_text(body)
    new_text, quoted = split_quoted(full_text)

    sender = _sender(h, problems, envelope_from)
    who = sender.identity.value if sender else ""
    bounce = _bounce(h, msg, body, who, subject, full_text)
    classified = _classify(h, msg, bounce, subject)
    kind = classified.kind
    if kind != "bounce":
        # A forwarded message (message/rfc822) is content the client means us to read;
        # in a bounce it is only our own outbound message coming back.
        for inner in body.enclosed:
            forwarded = _forwarded_text(inner, max_bytes, problems)
            new_text = f"{new_text}\n\n{forwarded}".strip() if forwarded else new_text

    extras = _extras(h, msg, body, classified, message_id, quoted, problems)
    _note_sender(extras, sender, h)
    message = InboundMessage(
        channel=Channel.EMAIL,
        account=account,
        external_id=message_id or "sha256:" + hashlib.sha256(raw).hexdigest(),
        identities=(sender.identity,) if sender else (),
        received_at=received_at,
        text=_no_nul(new_text),
        subject=subject or None,
        html=_no_nul("\n".join(body.html)) if body.html else None,
        thread_hints=_thread_hints(h, subject),
        attachments=tuple(body.attachments),
        extras=extras,
    )
    return ParsedEmail(
        kind=kind,
        message=message if sender else None,
        problems=problems,
        message_id=message_id,
        bounced_message_id=bounce.original_id if kind == "bounce" else None,
        bounce_reason=bounce.reason if kind == "bounce" else None,
        anonymous=None if sender else message,
    )


def _note_sender(extras: dict[str, Any], sender: _Sender | None, h: _Headers) -> None:
    """Where the sender was read from when not ``From``; without one, what ``From`` says."""
    if sender is not None and sender.source != "From":
        extras["sender_source"] = sender.source
    elif sender is None and (written := h.text("From")):
        extras["from"] = written  # a name without an address, say: for a person to read


def _no_nul(text: str) -> str:
    """Text a database takes: PostgreSQL refuses NUL in a string."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _classify(h: _Headers, msg: Message, bounce: _Bounce, subject: str) -> _Classified:
    """What the mail is (a client's message, an auto-reply, a bounce) and why it is automatic."""
    auto = _auto_reason(h, subject)
    if bounce.is_bounce and not bounce.delayed_only:
        return _Classified("bounce", auto, bounce)
    if bounce.is_bounce or auto is not None:
        return _Classified("auto_reply", auto or "delivery delayed", bounce)
    if msg.get_content_type() == "multipart/report":
        # A read receipt (RFC 8098) or a feedback report.
        report = f"report: {msg.get_param('report-type', header='content-type')}"
        return _Classified("auto_reply", report, bounce)
    return _Classified("message", auto, bounce)


@dataclass(frozen=True, slots=True)
class _Classified:
    """What :func:`_classify` made of a mail, with the bounce it read."""

    kind: Kind
    auto: str | None
    bounce: _Bounce


def _extras(
    h: _Headers,
    msg: Message,
    body: _Body,
    classified: _Classified,
    message_id: str | None,
    quoted: str,
    problems: list[str],
) -> dict[str, Any]:
    """What the log keeps beside the text: addresses, defects, problems, and for
    automatic mail why, for a bounce what bounced."""
    extras: dict[str, Any] = {
        "message_id": message_id,
        "to": [a for _, a in h.addresses("To")],
        "cc": [a for _, a in h.addresses("Cc")],
        "defects": _count_defects(msg),
        "problems": problems,
    }
    kind, bounce = classified.kind, classified.bounce
    if kind != "message":
        extras["auto"] = kind
        extras["auto_reason"] = classified.auto if kind == "auto_reply" else "bounce"
    if quoted:
        extras["quoted"] = quoted
    if body.skipped:
        extras["attachments_skipped"] = body.skipped
    if kind == "bounce":
        extras["bounced_message_id"] = bounce.original_id
        extras["bounce_reason"] = bounce.reason
        extras["failed_recipients"] = bounce.failed
    return extras


def _thread_hints(h: _Headers, subject: str) -> tuple[str, ...]:
    """What the reply may thread by: In-Reply-To, References (newest first), then
    the hub's subject tag, tried after every Message-ID."""
    in_reply_to = _message_ids(h.text("In-Reply-To"))
    references = _message_ids(" ".join(h.raw("References")))
    tags = [f"#{n}" for n in _SUBJECT_TAG.findall(subject)]
    return _unique([*in_reply_to, *reversed(references), *tags])
