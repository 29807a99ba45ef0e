"""Message formatting as Telegram does it: ``parse_mode`` parsing and entity detection.

Follows https://core.telegram.org/bots/api#formatting-options and the parser of
TDLib (which the Bot API server runs): HTML with the supported tags and the four
named entities, MarkdownV2 with its reserved characters, legacy Markdown.
Errors carry TDLib's wording; the server prefixes them with
``Bad Request: can't parse entities: ``. Offsets and lengths of entities are in
UTF-16 code units; error positions are UTF-8 byte offsets, as Telegram reports them.
"""

from __future__ import annotations

import re
from typing import Any

Entity = dict[str, Any]

HTML_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_HTML_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "tg-emoji": "custom_emoji",
    "a": "text_link",
    "pre": "pre",
    "code": "code",
    "blockquote": "blockquote",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
MARKDOWN_V2_RESERVED = "_*[]()~`>#+-=|{}.!"
# TDLib names entity types this way in "Can't find end of … entity" messages.
_V2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


class ParseError(ValueError):
    """The text does not parse in its parse mode; the message is TDLib's."""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's offsets and limits."""
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


class _Builder:
    """Accumulates the plain text and keeps its UTF-16 length at hand."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.offset = 0
        self.entities: list[Entity] = []

    def add(self, chunk: str) -> None:
        self.parts.append(chunk)
        self.offset += utf16_len(chunk)

    def text(self) -> str:
        return "".join(self.parts)

    def since(self, start_parts: int) -> str:
        return "".join(self.parts[start_parts:])

    def entity(self, kind: str, start: int, **extra: Any) -> None:
        if self.offset > start:
            self.entities.append({"type": kind, "offset": start, "length": self.offset - start})
            self.entities[-1].update({k: v for k, v in extra.items() if v})


def _decode_html_entity(text: str, pos: int) -> tuple[str, int] | None:
    """TDLib's ``decode_html_entity``: the character and the position after it."""
    end = pos + 1
    n = len(text)
    if end < n and text[end] == "#":
        end += 1
        value = 0
        if end < n and text[end] == "x":
            end += 1
            while end < n and text[end] in "0123456789abcdefABCDEF":
                value = value * 16 + int(text[end], 16)
                end += 1
        else:
            while end < n and text[end].isascii() and text[end].isdigit():
                value = value * 10 + int(text[end])
                end += 1
        if value == 0 or value >= 0x10FFFF or end - pos >= 10:
            return None
        char = chr(value)
    else:
        while end < n and text[end].isascii() and text[end].isalpha():
            end += 1
        named = _NAMED_ENTITIES.get(text[pos + 1 : end])
        if named is None:
            return None
        char = named
    if end < n and text[end] == ";":
        end += 1
    return char, end


def parse_html(text: str) -> tuple[str, list[Entity]]:
    out = _Builder()
    # (tag, argument, utf16 start, index into out.parts)
    stack: list[tuple[str, str, int, int]] = []
    pre_language: dict[int, str] = {}
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            decoded = _decode_html_entity(text, i)
            if decoded is not None:
                out.add(decoded[0])
                i = decoded[1]
                continue
        if c != "<":
            out.add(c)
            i += 1
            continue
        begin = i
        i += 1
        if i >= n or text[i] != "/":
            j = i
            while j < n and not text[j].isspace() and text[j] != ">":
                j += 1
            if j >= n:
                raise ParseError(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
            tag = text[i:j].lower()
            if tag not in HTML_TAGS:
                raise ParseError(
                    f'Unsupported start tag "{tag}" at byte offset {_byte_offset(text, begin)}'
                )
            i = j
            argument = ""
            while i < n and text[i] != ">":
                while i < n and text[i].isspace():
                    i += 1
                if i < n and text[i] == ">":
                    break
                name_start = i
                while i < n and not text[i].isspace() and text[i] not in "=>":
                    i += 1
                name = text[name_start:i]
                if not name:
                    raise ParseError(
                        f'Empty attribute name in the tag "{tag}" at byte offset '
                        f"{_byte_offset(text, begin)}"
                    )
                while i < n and text[i].isspace():
                    i += 1
                if i >= n or text[i] != "=":
                    if tag == "blockquote" and name == "expandable":
                        argument = "expandable"
                        continue
                    if i >= n:
                        break
                    raise ParseError(
                        "Expected equal sign in declaration of an attribute of the tag "
                        f'"{tag}" at byte offset {_byte_offset(text, begin)}'
                    )
                i += 1
                while i < n and text[i].isspace():
                    i += 1
                if i >= n:
                    break
                if text[i] not in "'\"":
                    token_start = i
                    while i < n and (text[i].isalnum() or text[i] in ".-"):
                        i += 1
                    value = text[token_start:i].lower()
                    if i < n and not text[i].isspace() and text[i] != ">":
                        raise ParseError(
                            "Unexpected end of name token at byte offset "
                            f"{_byte_offset(text, token_start)}"
                        )
                else:
                    quote = text[i]
                    i += 1
                    chars: list[str] = []
                    while i < n and text[i] != quote:
                        decoded = _decode_html_entity(text, i) if text[i] == "&" else None
                        if decoded is not None:
                            chars.append(decoded[0])
                            i = decoded[1]
                        else:
                            chars.append(text[i])
                            i += 1
                    if i < n:
                        i += 1
                    value = "".join(chars)
                if tag == "a" and name == "href":
                    argument = value
                elif tag == "code" and name == "class" and value.startswith("language-"):
                    argument = value.removeprefix("language-")
                elif tag == "span" and name == "class" and value.startswith("tg-"):
                    argument = value.removeprefix("tg-")
                elif tag == "tg-emoji" and name == "emoji-id":
                    argument = value
            if i >= n:
                raise ParseError(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
            if tag == "span" and argument != "spoiler":
                raise ParseError(
                    'Tag "span" must have class "tg-spoiler" at byte offset '
                    f"{_byte_offset(text, begin)}"
                )
            stack.append((tag, argument, out.offset, len(out.parts)))
            i += 1
            continue
        # An end tag.
        if not stack:
            raise ParseError(f"Unexpected end tag at byte offset {_byte_offset(text, begin)}")
        j = i + 1
        while j < n and not text[j].isspace() and text[j] != ">":
            j += 1
        end_name = text[i + 1 : j]
        while j < n and text[j].isspace():
            j += 1
        if j >= n or text[j] != ">":
            raise ParseError(f"Unclosed end tag at byte offset {_byte_offset(text, begin)}")
        tag, argument, start, start_part = stack.pop()
        if end_name and end_name != tag:
            raise ParseError(
                f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
                f'expected "</{tag}>", found "</{end_name}>"'
            )
        kind = _HTML_TYPES[tag]
        if tag == "a":
            out.entity(kind, start, url=argument or out.since(start_part))
        elif tag == "tg-emoji":
            out.entity(kind, start, custom_emoji_id=argument)
        elif tag == "code" and stack and stack[-1][0] == "pre" and argument:
            pre_language[len(stack) - 1] = argument
        elif tag == "pre":
            out.entity(kind, start, language=pre_language.pop(len(stack), ""))
        elif tag == "blockquote":
            out.entity("expandable_blockquote" if argument else kind, start)
        else:
            out.entity(kind, start)
        i = j + 1
    if stack:
        raise ParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return out.text(), out.entities


def parse_markdown_v2(text: str) -> tuple[str, list[Entity]]:
    out = _Builder()
    # (type, argument, utf16 start, byte offset of the opening, index into out.parts)
    stack: list[tuple[str, str, int, int, int]] = []
    quote_start: int | None = None
    n = len(text)

    def at(k: int) -> str:
        return text[k] if k < n else ""

    i = 0
    while i < n:
        c = text[i]
        in_code = bool(stack) and stack[-1][0] in ("code", "pre")
        line_start = i == 0 or text[i - 1] == "\n"
        if line_start and not in_code:
            if quote_start is not None and c != ">":
                # The quote ends with the previous line (its newline excluded).
                out.parts[-1] = out.parts[-1][:-1]
                out.offset -= 1
                out.entity("blockquote", quote_start)
                out.add("\n")
                quote_start = None
            if c == ">":
                if quote_start is None:
                    quote_start = out.offset
                i += 1
                continue
        if c == "\\" and 0 < ord(at(i + 1) or "\0") <= 126:
            out.add(text[i + 1])
            i += 2
            continue
        reserved = "`" if in_code else MARKDOWN_V2_RESERVED
        if c not in reserved:
            out.add(c)
            i += 1
            continue
        top = stack[-1][0] if stack else None
        closes = {
            "bold": c == "*",
            "italic": c == "_" and at(i + 1) != "_",
            "underline": c == "_" and at(i + 1) == "_",
            "strikethrough": c == "~",
            "spoiler": c == "|" and at(i + 1) == "|",
            "code": c == "`",
            "pre": c == "`" and text[i : i + 3] == "```",
            "text_link": c == "]",
            "custom_emoji": c == "]",
        }.get(top or "", False)
        if not closes:
            begin = _byte_offset(text, i)
            argument = ""
            if c == "_" and at(i + 1) == "_":
                kind = "underline"
                i += 1
            elif c == "_":
                kind = "italic"
            elif c == "*":
                kind = "bold"
            elif c == "~":
                kind = "strikethrough"
            elif c == "|" and at(i + 1) == "|":
                kind = "spoiler"
                i += 1
            elif c == "[":
                kind = "text_link"
            elif c == "!" and at(i + 1) == "[":
                kind = "custom_emoji"
                i += 1
            elif c == "`" and text[i : i + 3] == "```":
                kind = "pre"
                i += 3
                lang_end = i
                while lang_end < n and not text[lang_end].isspace() and text[lang_end] != "`":
                    lang_end += 1
                if lang_end != i and lang_end < n and text[lang_end] != "`":
                    argument = text[i:lang_end]
                    i = lang_end
                if at(i) in ("\n", "\r"):
                    i += 2 if at(i + 1) in ("\n", "\r") and at(i + 1) != at(i) else 1
                i -= 1
            elif c == "`":
                kind = "code"
            else:
                raise ParseError(
                    f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
                )
            stack.append((kind, argument, out.offset, begin, len(out.parts)))
            i += 1
            continue
        kind, argument, start, _, start_part = stack.pop()
        if kind in ("underline", "spoiler"):
            i += 1
        elif kind == "pre":
            i += 2
        elif kind in ("text_link", "custom_emoji"):
            if at(i + 1) == "(":
                i += 2
                url_begin = i
                chars: list[str] = []
                while i < n and text[i] != ")":
                    if text[i] == "\\" and 0 < ord(at(i + 1) or "\0") <= 126:
                        chars.append(text[i + 1])
                        i += 2
                        continue
                    chars.append(text[i])
                    i += 1
                if i >= n:
                    raise ParseError(
                        f"Can't find end of a URL at byte offset {_byte_offset(text, url_begin)}"
                    )
                argument = "".join(chars)
            elif kind == "custom_emoji":
                raise ParseError(
                    f"Custom emoji entity must contain a tg://emoji URL at byte offset {i}"
                )
            else:
                argument = out.since(start_part)
        if kind == "text_link":
            out.entity(kind, start, url=argument)
        elif kind == "custom_emoji":
            out.entity(kind, start, custom_emoji_id=argument.rpartition("id=")[2])
        elif kind == "pre":
            out.entity(kind, start, language=argument)
        else:
            out.entity(kind, start)
        i += 1
    if stack:
        kind, _, _, begin, _ = stack[-1]
        raise ParseError(f"Can't find end of {_V2_NAMES[kind]} entity at byte offset {begin}")
    if quote_start is not None:
        out.entity("blockquote", quote_start)
    return out.text(), out.entities


def parse_markdown(text: str) -> tuple[str, list[Entity]]:
    """Legacy ``Markdown``: ``*bold*``, ``_italic_``, `` `code` ``, pre, ``[text](url)``."""
    out = _Builder()
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c not in "_*`[":
            out.add(c)
            i += 1
            continue
        begin = _byte_offset(text, i)
        if text[i : i + 3] == "```":
            end = text.find("```", i + 3)
            if end < 0:
                raise ParseError(f"Can't find end of the entity starting at byte offset {begin}")
            body = text[i + 3 : end]
            language = ""
            first, newline, rest = body.partition("\n")
            if newline and first and " " not in first:
                language, body = first, rest
            start = out.offset
            out.add(body)
            out.entity("pre", start, language=language)
            i = end + 3
            continue
        closing = "]" if c == "[" else c
        end = text.find(closing, i + 1)
        if end < 0:
            raise ParseError(f"Can't find end of the entity starting at byte offset {begin}")
        start = out.offset
        out.add(text[i + 1 : end])
        if c == "[":
            if end + 1 < n and text[end + 1] == "(":
                url_end = text.find(")", end + 2)
                if url_end < 0:
                    raise ParseError(
                        f"Can't find end of the entity starting at byte offset {begin}"
                    )
                out.entity("text_link", start, url=text[end + 2 : url_end])
                i = url_end + 1
                continue
            i = end + 1
            continue
        out.entity({"*": "bold", "_": "italic", "`": "code"}[c], start)
        i = end + 1
    return out.text(), out.entities


_DETECTORS = (
    ("bot_command", re.compile(r"(?<![\w/@])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?!\w)")),
    ("email", re.compile(r"(?<![\w.@])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")),
    ("mention", re.compile(r"(?<![\w@])@[A-Za-z0-9_]{4,32}(?!\w)")),
    ("hashtag", re.compile(r"(?<![\w#])#\w+")),
    ("url", re.compile(r"(?<![\w@])(?:https?://)[^\s<>\"]+")),
)


def detect_entities(text: str) -> list[Entity]:
    """Entities Telegram finds by itself in plain text: commands, mentions, links."""
    found: list[Entity] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _DETECTORS:
        for match in pattern.finditer(text):
            if any(match.start() < end and start < match.end() for start, end in taken):
                continue
            taken.append((match.start(), match.end()))
            found.append(
                {
                    "type": kind,
                    "offset": utf16_len(text[: match.start()]),
                    "length": utf16_len(match.group()),
                }
            )
    found.sort(key=lambda e: (e["offset"], -e["length"]))
    return found


def strip_formatted(text: str, entities: list[Entity]) -> tuple[str, list[Entity]]:
    """Trim surrounding whitespace as Telegram does, moving and clipping entities."""
    stripped = text.strip()
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    size = utf16_len(stripped)
    kept: list[Entity] = []
    for entity in entities:
        start = max(0, entity["offset"] - lead)
        end = min(size, entity["offset"] + entity["length"] - lead)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    kept.sort(key=lambda e: (e["offset"], -e["length"]))
    return stripped, kept


def format_text(text: str, parse_mode: str | None) -> tuple[str, list[Entity]]:
    """Plain text and entities of ``text`` in ``parse_mode`` (None: plain, detected)."""
    if not parse_mode:
        return strip_formatted(text, detect_entities(text))
    mode = parse_mode.lower()
    if mode == "html":
        plain, entities = parse_html(text)
    elif mode == "markdownv2":
        plain, entities = parse_markdown_v2(text)
    elif mode == "markdown":
        plain, entities = parse_markdown(text)
    else:
        raise LookupError(parse_mode)
    return strip_formatted(plain, entities)
