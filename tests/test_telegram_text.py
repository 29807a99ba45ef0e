"""Telegram's text length in UTF-16 code units (channels/telegram/text.py), which both
the clients' message splitting and the staff chat's clipping count in."""

from __future__ import annotations

from channels.telegram import outbound, render
from channels.telegram.text import fit, utf16_len


def test_a_character_beyond_the_bmp_counts_two() -> None:
    assert utf16_len("abc") == 3
    assert utf16_len("a😀b") == 4
    assert fit("a😀b", 1) == 1
    assert fit("a😀b", 2) == 1  # the emoji is never cut in half
    assert fit("a😀b", 3) == 2
    assert fit("a😀b", 4) == 3
    assert fit("", 0) == 0


def test_splitting_and_clipping_count_alike() -> None:
    emoji = "😀" * 3000  # 6000 units
    assert [utf16_len(part) for part in outbound.split_text(emoji)] == [4096, 1904]
    clipped = render.clip(emoji, 101)
    assert utf16_len(clipped) == 101 and clipped.endswith("…")
