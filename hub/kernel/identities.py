"""Normalization of identities, so that one address written two ways is one identity."""

from __future__ import annotations

import re

import phonenumbers

from hub.kernel.errors import HubError
from hub.kernel.types import Identity, IdentityKind

_LOCAL = re.compile(r"^[^@\s<>()\[\],;:\"]+$")
# An ASCII (already IDNA-encoded) domain: dot-separated labels, no label starting or
# ending with "-", a top-level label of two characters or more.
_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9-]{2,}$")
_TELEGRAM = re.compile(r"^-?[0-9]+$")
# Telegram's rule for usernames: 5 to 32 letters, digits and "_", a letter first.
_USERNAME = re.compile(r"^@([A-Za-z][A-Za-z0-9_]{4,31})$")

# The identity kind of a Telegram @username a person gave (an import): a hint, not
# proof. It is not a way to reach them; when a Telegram user of that username
# first writes, ingest links them to the hint's client and drops the hint.
TELEGRAM_HINT = "tg_username"


class InvalidIdentity(HubError):
    """An identity value that cannot be normalized."""


def normalize_email(value: str) -> str:
    value = value.strip()
    local, at, domain = value.partition("@")
    if not at or not _LOCAL.match(local):
        raise InvalidIdentity(f"not an email address: {value!r}")
    try:
        # An internationalized domain (пример.рф) is kept in its ASCII form (RFC 5891).
        domain = domain.lower().encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidIdentity(f"not an email address: {value!r}") from None
    if not _DOMAIN.match(domain):
        raise InvalidIdentity(f"not an email address: {value!r}")
    # Local parts are case-sensitive by the RFC, but no real provider treats them so;
    # one client writing "Anna@" and "anna@" must stay one client.
    return f"{local.lower()}@{domain}"


def normalize_phone(value: str, default_region: str | None = None) -> str:
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentity(f"not a phone number: {value!r}") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentity(f"not a possible phone number: {value!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_telegram(value: str | int) -> str:
    text = str(value).strip()
    if not _TELEGRAM.match(text):
        raise InvalidIdentity(f"not a Telegram user id: {value!r}")
    return str(int(text))


def telegram_username(value: str) -> str:
    """``@Name`` as a :data:`TELEGRAM_HINT` value: without the "@", lower-case
    (Telegram's usernames ignore case)."""
    found = _USERNAME.match(value.strip())
    if found is None:
        raise InvalidIdentity(f"not a Telegram user id or @username: {value!r}")
    return found.group(1).lower()


def identity(
    kind: IdentityKind | str,
    value: str | int,
    display_name: str | None = None,
    *,
    default_region: str | None = None,
) -> Identity:
    """Build a normalized :class:`Identity`; raise :class:`InvalidIdentity` on bad input."""
    try:
        kind = IdentityKind(kind)
    except ValueError:
        raise InvalidIdentity(f"unknown identity kind {kind!r}") from None
    if kind is IdentityKind.EMAIL:
        norm = normalize_email(str(value))
    elif kind is IdentityKind.PHONE:
        norm = normalize_phone(str(value), default_region)
    else:
        norm = normalize_telegram(value)
    return Identity(kind, norm, display_name or None)
