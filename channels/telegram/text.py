"""Telegram's unit of text length: UTF-16 code units, in which every Bot API limit is counted."""

from __future__ import annotations

__all__ = ["fit", "utf16_len"]


def utf16_len(value: str) -> int:
    """Length in UTF-16 code units (a character beyond the BMP, like most emoji, is two)."""
    return len(value.encode("utf-16-le")) // 2


def fit(value: str, limit: int) -> int:
    """How many characters of ``value`` fit in ``limit`` UTF-16 code units."""
    used = 0
    for index, char in enumerate(value):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return index
    return len(value)
