"""When a manager means: "2h", "30m", "1d", "tomorrow 10:00", "завтра 10:00",
"25.12 14:30", "14:30" — read in the manager's time zone, returned in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

_UNITS = {
    "m": 60,
    "min": 60,
    "м": 60,
    "мин": 60,
    "h": 3600,
    "ч": 3600,
    "d": 86400,
    "д": 86400,
    "дн": 86400,
    "w": 604800,
    "н": 604800,
    "нед": 604800,
}
_RELATIVE = re.compile(r"^(\d+)\s*(min|мин|дн|нед|[mhdwмчдн])\b", re.IGNORECASE)
_TIME = re.compile(r"^(\d{1,2})[:.](\d{2})\b")
_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})(?:\.(\d{2,4}))?\b")
_TOMORROW = ("tomorrow", "завтра")
_TODAY = ("today", "сегодня")


def parse_when(text: str, now: datetime, timezone: str) -> tuple[datetime, str] | None:
    """``(moment in UTC, the rest of the text)``, or None when no time is given."""
    rest = text.strip()
    match = _RELATIVE.match(rest)
    if match:
        seconds = int(match.group(1)) * _UNITS[match.group(2).lower()]
        return now + timedelta(seconds=seconds), rest[match.end() :].strip()
    local = now.astimezone(ZoneInfo(timezone))
    day = local.date()
    dated = False
    word = rest.split(maxsplit=1)[0].lower() if rest else ""
    if word in _TOMORROW or word in _TODAY:
        day = day + timedelta(days=1 if word in _TOMORROW else 0)
        rest = rest[len(word) :].strip()
        dated = True
    else:
        match = _DATE.match(rest)
        if match:
            year = match.group(3)
            try:
                day = day.replace(
                    year=(int(year) + 2000 if year and len(year) == 2 else int(year or day.year)),
                    month=int(match.group(2)),
                    day=int(match.group(1)),
                )
            except ValueError:
                return None
            rest = rest[match.end() :].strip()
            dated = True
    hour, minute = 9, 0
    match = _TIME.match(rest)
    if match:
        hour, minute = int(match.group(1)), int(match.group(2))
        if hour > 23 or minute > 59:
            return None
        rest = rest[match.end() :].strip()
    elif not dated:
        return None
    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(timezone))
    if not dated and moment <= local:
        moment += timedelta(days=1)  # "14:30" already past today: tomorrow
    elif dated and moment <= local and not match and word not in _TODAY:
        moment = moment.replace(year=moment.year + 1)  # "25.12" past this year: next year
    return moment.astimezone(UTC), rest
