"""Working hours: ``"Mon-Fri 09:00-18:00; Sat 10:00-14:00"`` parsed and checked."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, time

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Every accepted spelling, English and Russian, by weekday (Monday is 0).
_DAY_NAMES = {
    name: day
    for day, names in enumerate(
        (
            ("mon", "monday", "пн", "пнд", "пон", "понедельник"),
            ("tue", "tues", "tuesday", "вт", "втр", "вторник"),
            ("wed", "wednesday", "ср", "срд", "среда"),
            ("thu", "thur", "thurs", "thursday", "чт", "чтв", "четверг"),
            ("fri", "friday", "пт", "птн", "пятница"),
            ("sat", "saturday", "сб", "сбт", "суббота"),
            ("sun", "sunday", "вс", "вск", "воскресенье"),
        )
    )
    for name in names
}
_SPAN = re.compile(
    r"^\s*(?P<days>[^\s\d]+(?:\s*-\s*[^\s\d]+)?(?:\s*,\s*[^\s\d]+(?:\s*-\s*[^\s\d]+)?)*)\s+"
    r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$"
)


class HoursError(ValueError):
    """A working-hours text that cannot be read."""


@dataclass(frozen=True, slots=True)
class Span:
    days: frozenset[int]
    start: time
    end: time  # end <= start means the span runs past midnight


@dataclass(frozen=True, slots=True)
class Hours:
    spans: tuple[Span, ...]

    def contains(self, local: datetime) -> bool:
        """Whether ``local`` (already in the manager's time zone) is working time."""
        day, now = local.weekday(), local.time()
        for span in self.spans:
            if span.start < span.end:
                if day in span.days and span.start <= now < span.end:
                    return True
            else:
                if day in span.days and now >= span.start:
                    return True
                if (day - 1) % 7 in span.days and now < span.end:
                    return True
        return False


def _day(name: str) -> int:
    day = _DAY_NAMES.get(name.strip().lower().rstrip("."))
    if day is None:
        raise HoursError(f"unknown day {name.strip()!r}")
    return day


def _time(text: str) -> time:
    hour, minute = (int(x) for x in text.split(":"))
    if hour == 24 and minute == 0:
        return time(0, 0)
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise HoursError(f"bad time {text!r}")
    return time(hour, minute)


@functools.lru_cache(maxsize=64)
def parse_window(text: str) -> tuple[time, time] | None:
    """A daily window ``"21:00-09:00"`` (it may run past midnight); None for an
    empty one or one that starts where it ends."""
    if not text.strip():
        return None
    match = re.fullmatch(r"\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*", text)
    if match is None:
        raise HoursError(f"expected HH:MM-HH:MM, got {text!r}")
    start, end = _time(match[1]), _time(match[2])
    return (start, end) if start != end else None


def parse_hours(text: str) -> Hours:
    spans = []
    for part in text.split(";"):
        if not part.strip():
            continue
        match = _SPAN.match(part)
        if not match:
            raise HoursError(f"expected e.g. 'Mon-Fri 09:00-18:00', got {part.strip()!r}")
        days: set[int] = set()
        for group in match.group("days").split(","):
            first, _, last = group.partition("-")
            a = _day(first)
            b = _day(last) if last else a
            days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
        start, end = _time(match.group("start")), _time(match.group("end"))
        # "00:00-24:00" is a whole day: start == end, read by contains() as such.
        if start == end and match.group("end") != "24:00":
            raise HoursError(f"empty span {part.strip()!r}")
        spans.append(Span(frozenset(days), start, end))
    if not spans:
        raise HoursError("no working hours given")
    return Hours(tuple(spans))
