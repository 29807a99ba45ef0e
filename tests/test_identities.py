"""Identity normalization: one address written two ways is one identity."""

from __future__ import annotations

import pytest

from hub.kernel.identities import (
    InvalidIdentity,
    identity,
    normalize_email,
    normalize_phone,
    normalize_telegram,
)
from hub.kernel.types import Identity, IdentityKind

# --- email -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("anna@example.com", "anna@example.com"),
        ("Anna.Petrova@Example.COM", "anna.petrova@example.com"),
        ("  anna@example.com \n", "anna@example.com"),
        ("first.last+tag@mail.example.co.uk", "first.last+tag@mail.example.co.uk"),
        ("user@пример.рф", "user@xn--e1afmkfd.xn--p1ai"),
        ("User@ПРИМЕР.РФ", "user@xn--e1afmkfd.xn--p1ai"),
        ("user@xn--e1afmkfd.xn--p1ai", "user@xn--e1afmkfd.xn--p1ai"),
        ("kontakt@Bücher.de", "kontakt@xn--bcher-kva.de"),
    ],
)
def test_email_normalized(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


def test_email_written_two_ways_is_one_identity() -> None:
    assert identity("email", " Anna@Пример.рф") == identity(IdentityKind.EMAIL, "anna@пример.РФ")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "anna",
        "anna@",
        "@example.com",
        "anna@example",
        "anna@@example.com",
        "anna petrova@example.com",
        "Anna <anna@example.com>",
        "anna@example..com",
        "anna@.example.com",
        "anna@-example.com",
        "anna@example.com.",
        "anna@example.c",
        "anna@exa mple.com",
        "anna@exam_ple.com",
    ],
)
def test_invalid_email_raises(raw: str) -> None:
    with pytest.raises(InvalidIdentity) as info:
        normalize_email(raw)
    assert "not an email address" in str(info.value)


# --- phone ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "8 (912) 345-67-89",
        "+7 912 345 67 89",
        "89123456789",
        "+79123456789",
        "+7 (912) 345-67-89",
        "7 912 345-67-89",
        "912 345 67 89",
        " 8-912-345-67-89 ",
    ],
)
def test_russian_phone_formats_are_one_number(raw: str) -> None:
    assert normalize_phone(raw, "RU") == "+79123456789"


def test_international_numbers_keep_their_country() -> None:
    assert normalize_phone("+44 20 7946 0958", "RU") == "+442079460958"
    assert normalize_phone("+375 29 123-45-67", "RU") == "+375291234567"
    assert normalize_phone("8 800 555-35-35", "RU") == "+78005553535"


def test_national_number_needs_a_region() -> None:
    assert normalize_phone("+7 912 345 67 89") == "+79123456789"
    with pytest.raises(InvalidIdentity):
        normalize_phone("8 (912) 345-67-89")


@pytest.mark.parametrize(
    "raw", ["", "phone", "12345", "+7 912 345 67 8", "+7 912 345 67 89 0", "+0 123", "+"]
)
def test_invalid_phone_raises(raw: str) -> None:
    with pytest.raises(InvalidIdentity) as info:
        normalize_phone(raw, "RU")
    assert "phone number" in str(info.value)


def test_phone_identity_uses_default_region() -> None:
    found = identity("phone", "8 (912) 345-67-89", "Anna", default_region="RU")
    assert found == Identity(IdentityKind.PHONE, "+79123456789", "Anna")


# --- telegram ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (123456789, "123456789"),
        ("123456789", "123456789"),
        (" 123456789 ", "123456789"),
        ("007", "7"),
        (-1001234567890, "-1001234567890"),
        ("-1001234567890", "-1001234567890"),
    ],
)
def test_telegram_ids(raw: str | int, expected: str) -> None:
    assert normalize_telegram(raw) == expected


@pytest.mark.parametrize("raw", ["", "-", "@username", "12.5", "+5", "1 2", "--1", "²", "١٢٣"])
def test_invalid_telegram_id_raises(raw: str) -> None:
    with pytest.raises(InvalidIdentity):
        normalize_telegram(raw)


# --- identity() -------------------------------------------------------------------


def test_identity_builds_normalized_values() -> None:
    assert identity("telegram", 42) == Identity(IdentityKind.TELEGRAM, "42", None)
    assert identity("email", "A@B.CD", "") == Identity(IdentityKind.EMAIL, "a@b.cd", None)
    assert identity("telegram", "42", "Anna").display_name == "Anna"


def test_identity_rejects_bad_values_and_kinds() -> None:
    with pytest.raises(InvalidIdentity):
        identity("email", "not-an-address")
    with pytest.raises(InvalidIdentity):
        identity("phone", "12", default_region="RU")
    with pytest.raises(InvalidIdentity):
        identity("fax", "12345")


def test_invalid_identity_is_a_hub_error() -> None:
    from hub.kernel.errors import HubError

    assert issubclass(InvalidIdentity, HubError)
