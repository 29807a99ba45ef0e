"""What a search box query means: a name or address fragment, a phone written any
way, an exact identity (used by the admin API and the managers' /find)."""

from __future__ import annotations

import re
import unicodedata

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
    digits = "".join(ch for ch in text if ch.isdigit()) if _PHONE_LIKE.fullmatch(text) else ""
    return ClientSearch(text=text, phone_digits=digits, exact=tuple(exact))
