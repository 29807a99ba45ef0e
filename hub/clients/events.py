"""Business events in: what a client did outside a conversation (a purchase, an
order, a payment, a meeting, a call), as the business tells it — checked here
into an :class:`EventIn`, every problem naming its field.

The shape is the admin API's ``POST /api/events`` body (``../shared/INTERFACE.md``);
``hub event`` and ``hub event import`` build the same mapping from their
arguments and CSV rows. The client is named by ``id`` (an existing client:
never a new one), or by ``email``, ``phone`` (read as the hub reads phones, in
``hub.default_region``) and ``telegram_id``: the client holding the first of
them, else a new client with them all, as ingest makes one.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from hub.kernel.errors import HubError
from hub.kernel.http import MAX_ID
from hub.kernel.identities import InvalidIdentity, identity

KEY_LENGTH = 200  # business_events.key
KINDS = re.compile(r"^[a-z][a-z0-9_.-]{0,39}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")  # ISO 4217's form; the list itself changes over time
MAX_FIELDS = 50
MAX_FIELD_NAME = 100
MAX_FIELD_TEXT = 1000
MAX_FIELDS_JSON = 8 * 1024
MAX_NAME = 300
MAX_AMOUNT = Decimal(10) ** 16  # Numeric(18, 2)
KEYS = frozenset({"id", "kind", "client", "at", "amount", "currency", "fields"})
CLIENT_KEYS = ("id", "email", "phone", "telegram_id")
IDENTITY_KINDS = {"email": "email", "phone": "phone", "telegram_id": "telegram"}


class BadEvent(HubError):
    """An event that cannot be taken: every problem, each naming its field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class UnknownClient(HubError):
    """The event names a client id that does not exist."""


@dataclass(frozen=True, slots=True)
class ClientRef:
    """Whom an event is about: a client id, or identities (``(kind, value)``,
    normalized, in the order given) and the name a new client gets."""

    id: int | None = None
    identities: tuple[tuple[str, str], ...] = ()
    name: str | None = None


@dataclass(frozen=True, slots=True)
class EventIn:
    key: str
    kind: str
    client: ClientRef
    at: datetime | None = None  # None: when it is recorded
    amount: Decimal | None = None
    currency: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)


def parse(data: Mapping[str, Any], *, region: str | None = None) -> EventIn:
    """``data`` (a JSON body, or the CLI's) as an event; :class:`BadEvent` with
    every problem otherwise."""
    problems = [
        f"{k}: unknown key (keys: {', '.join(sorted(KEYS))})" for k in data if k not in KEYS
    ]
    key = _key(data.get("id"), problems)
    kind = _kind(data.get("kind"), problems)
    client = _client(data.get("client"), region, problems)
    at = _at(data.get("at"), problems)
    amount = _amount(data.get("amount"), problems)
    currency = _currency(data.get("currency"), problems)
    if amount is not None and currency is None and "currency" not in data:
        problems.append("currency: needed with amount (ISO 4217, e.g. RUB)")
    fields = _fields(data.get("fields"), problems)
    if problems:
        raise BadEvent(problems)
    assert key is not None and kind is not None and client is not None
    return EventIn(key, kind, client, at, amount, currency, fields)


def _text(value: object) -> str | None:
    """Text, or a whole number written as one (an id from a JSON number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return value.strip() if isinstance(value, str) else None


def _clean(value: str) -> bool:
    """No control characters (and no lone surrogate), which no log line should hold."""
    return not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value)


def _key(value: object, problems: list[str]) -> str | None:
    key = _text(value)
    if value is None:
        problems.append("id: missing (your own id of the event: a second post with it is a no-op)")
    elif not key or len(key) > KEY_LENGTH or not _clean(key):
        problems.append(f"id: text or a whole number, 1 to {KEY_LENGTH} characters")
    else:
        return key
    return None


def _kind(value: object, problems: list[str]) -> str | None:
    kind = value.strip().lower() if isinstance(value, str) else None
    if value is None:
        problems.append("kind: missing (purchase, order, payment, meeting, call, …)")
    elif kind is None or not KINDS.match(kind):
        problems.append(
            "kind: a word of up to 40 letters, digits, '_', '.' or '-', a letter first "
            "(purchase, order, payment, meeting, call, …)"
        )
    else:
        return kind
    return None


def _client(value: object, region: str | None, problems: list[str]) -> ClientRef | None:
    if value is None:
        problems.append(f"client: missing (an object with one of {', '.join(CLIENT_KEYS)})")
        return None
    if not isinstance(value, Mapping):
        problems.append(f"client: must be an object with one of {', '.join(CLIENT_KEYS)}")
        return None
    given = [k for k in CLIENT_KEYS if value.get(k) not in (None, "")]
    unknown = [k for k in value if k not in (*CLIENT_KEYS, "name")]
    if unknown:
        problems.append(f"client.{unknown[0]}: unknown key (keys: {', '.join(CLIENT_KEYS)}, name)")
    if not given:
        problems.append(f"client: needs one of {', '.join(CLIENT_KEYS)}")
        return None
    if "id" in given:
        return _client_id(value["id"], given, problems)
    pairs: list[tuple[str, str]] = []
    for key in given:
        raw = _text(value[key])
        try:
            if raw is None:
                raise InvalidIdentity("must be text")
            found = identity(IDENTITY_KINDS[key], raw, default_region=region)
        except InvalidIdentity as exc:
            problems.append(f"client.{key}: {exc}")
            continue
        pairs.append((found.kind.value, found.value))
    name = value.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
        problems.append(f"client.name: text of up to {MAX_NAME} characters")
        name = None
    return ClientRef(None, tuple(pairs), (name or "").strip() or None)


def _client_id(value: object, given: list[str], problems: list[str]) -> ClientRef | None:
    if len(given) > 1:
        problems.append("client.id: give the id alone (an id names the client already)")
        return None
    raw = _text(value)
    if raw is None or not raw.isascii() or not raw.isdigit() or not 1 <= int(raw[:18]) <= MAX_ID:
        problems.append(f"client.id: a client id, a whole number from 1 to {MAX_ID}")
        return None
    return ClientRef(int(raw))


def _at(value: object, problems: list[str]) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        problems.append("at: an ISO 8601 time with a UTC offset, e.g. 2026-03-01T10:00:00+03:00")
        return None
    if at.tzinfo is None:
        problems.append("at: needs a UTC offset (e.g. +03:00 or Z)")
        return None
    if at.year < 1970:
        problems.append("at: before 1970")
        return None
    return at


def _amount(value: object, problems: list[str]) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise InvalidOperation
        amount = Decimal(value.strip().replace(" ", "") if isinstance(value, str) else str(value))
    except InvalidOperation:
        problems.append("amount: a number, e.g. 1500 or 1500.50")
        return None
    if not amount.is_finite() or abs(amount) >= MAX_AMOUNT:
        problems.append("amount: a finite number under 10^16")
        return None
    if amount != amount.quantize(Decimal("0.01")):
        problems.append("amount: at most two decimal places")
        return None
    return amount.quantize(Decimal("0.01"))


def _currency(value: object, problems: list[str]) -> str | None:
    if value is None or value == "":
        return None
    code = value.strip().upper() if isinstance(value, str) else ""
    if not CURRENCY.match(code):
        problems.append("currency: a three-letter ISO 4217 code, e.g. RUB, USD, EUR")
        return None
    return code


def _fields(value: object, problems: list[str]) -> dict[str, Any]:
    """A small flat object: names to text, numbers, true/false or null."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append("fields: must be an object of names to values")
        return {}
    if len(value) > MAX_FIELDS:
        problems.append(f"fields: more than {MAX_FIELDS} fields")
        return {}
    before = len(problems)
    for name, item in value.items():
        if not isinstance(name, str) or not name or len(name) > MAX_FIELD_NAME:
            problems.append(
                f"fields: names of 1 to {MAX_FIELD_NAME} characters ({str(name)[:40]!r})"
            )
        elif isinstance(item, Mapping | list):
            problems.append(f"fields.{name}: text, a number, true/false or null (nothing nested)")
        elif isinstance(item, str) and (len(item) > MAX_FIELD_TEXT or not _clean(item)):
            problems.append(f"fields.{name}: text of up to {MAX_FIELD_TEXT} characters")
        elif isinstance(item, float) and item != item:  # NaN
            problems.append(f"fields.{name}: not a number")
    if len(problems) > before:
        return {}
    if len(json.dumps(value, ensure_ascii=False, default=str)) > MAX_FIELDS_JSON:
        problems.append(f"fields: more than {MAX_FIELDS_JSON // 1024} KiB as JSON")
        return {}
    return dict(value)


def line(kind: str, amount: Decimal | None, currency: str | None, fields: Mapping[str, Any]) -> str:
    """The event as its timeline shows it: ``purchase 1 500.00 RUB · item: tea``."""
    said = kind
    if amount is not None:
        said += f" {amount:,.2f}".replace(",", " ") + (f" {currency}" if currency else "")
    shown = [f"{k}: {v}" for k, v in list(fields.items())[:5] if v not in (None, "")]
    if shown:
        said += " · " + "; ".join(shown)
    return said if len(said) <= 300 else said[:299] + "…"
