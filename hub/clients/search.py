"""What a search box query means: a name or address fragment, a phone written any
way, an exact identity (used by the admin API and the managers' /find)."""

from __future__ import annotations

import re
import unicodedata

import phonenumbers

from hub.kernel.identities import InvalidIdentity, identity
from hub.kernel.types import IdentityKind
from storage.read import ClientSearch

_PHONE_LIKE = re.compile(r"[0-9\s()+.\-]*[0-9][0-9\s()+.\-]*")


def visible(text: str) -> str:
    """``text`` without control characters (a tab or a line break reads as a
    space): no name or address holds one, and a NUL would end SQLite's pattern
    early, so that it matched every client."""
    kept = (
        (" " if ch.isspace() else "") if unicodedata.category(ch) == "Cc" else ch for ch in text
    )
    return "".join(kept).strip()


def _valid(number: str) -> bool:
    """Whether ``number`` (E.164) is a whole number of its country, not just digits
    the identity rules let through as one (a part of a number typed alone)."""
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(number)))
    except phonenumbers.NumberParseException:
        return False


def client_search(text: str, region: str | None) -> ClientSearch:
    """Read a search box query: a name or address fragment, a phone written any way, an id.
    A query of nothing but control characters matches no client."""
    text = visible(text)
    exact: list[tuple[str, str]] = []
    for kind in IdentityKind:
        try:
            found = identity(kind, text, default_region=region)
        except (InvalidIdentity, ValueError):  # idna refuses some hosts with ValueError
            continue
        exact.append((found.kind.value, found.value))
    # A whole number is found by its normalized form, through the identities' key (the
    # supervisor with the client on the line); only a part of one is looked for among
    # the digits of every number (its trigrams, which grow with the client base).
    whole = any(kind == IdentityKind.PHONE.value and _valid(value) for kind, value in exact)
    phone_like = _PHONE_LIKE.fullmatch(text) and not whole
    digits = "".join(ch for ch in text if ch.isdigit()) if phone_like else ""
    return ClientSearch(text=text, phone_digits=digits, exact=tuple(exact))
