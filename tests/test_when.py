"""Reading a manager's "when" in Russian and English."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub.kernel.when import parse_when

# Monday 5 January 2026, 10:00 in Moscow (07:00 UTC)
NOW = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
TZ = "Europe/Moscow"


@pytest.mark.parametrize(
    ("text", "due", "rest"),
    [
        ("2h call back", datetime(2026, 1, 5, 9, 0, tzinfo=UTC), "call back"),
        ("30m", datetime(2026, 1, 5, 7, 30, tzinfo=UTC), ""),
        ("2ч перезвонить", datetime(2026, 1, 5, 9, 0, tzinfo=UTC), "перезвонить"),
        ("1d", datetime(2026, 1, 6, 7, 0, tzinfo=UTC), ""),
        ("tomorrow 10:00 call back", datetime(2026, 1, 6, 7, 0, tzinfo=UTC), "call back"),
        ("завтра 10:00 перезвонить", datetime(2026, 1, 6, 7, 0, tzinfo=UTC), "перезвонить"),
        ("завтра", datetime(2026, 1, 6, 6, 0, tzinfo=UTC), ""),
        ("25.12 14:30 поздравить", datetime(2026, 12, 25, 11, 30, tzinfo=UTC), "поздравить"),
        ("14:30 встреча", datetime(2026, 1, 5, 11, 30, tzinfo=UTC), "встреча"),
        ("09:00", datetime(2026, 1, 6, 6, 0, tzinfo=UTC), ""),  # past today: tomorrow
        ("01.02.2027 10:00", datetime(2027, 2, 1, 7, 0, tzinfo=UTC), ""),
    ],
)
def test_when(text: str, due: datetime, rest: str) -> None:
    assert parse_when(text, NOW, TZ) == (due, rest)


@pytest.mark.parametrize("text", ["call back", "", "31.02 10:00", "25:00", "soon"])
def test_not_a_time(text: str) -> None:
    assert parse_when(text, NOW, TZ) is None
