"""When a manager means, read as people write it: «через 2 часа», «завтра в 10»,
«в понедельник утром», "tomorrow at 10am", "next Monday", "2h" — in the manager's
time zone, returned in UTC with the words of the reminder's text that follow.

dateparser does the calendar (units in every inflection, weekdays, months, "next",
"через"); this module decides where the time ends and the text begins, and puts
the time in the form dateparser reads without guessing. The rules, as the README
states them:

- The time comes first; it ends before the first word that is not a time word,
  and a bare number is a time only with what makes it one: «в 10», "at 10", "10am",
  «в 7 вечера», «2 часа», «25 декабря». So «завтра в 10 перезвонить» is tomorrow
  10:00 with the text «перезвонить», and «завтра 10 звонков» is tomorrow with the
  text «10 звонков».
- Parts of the day are fixed times: :data:`DAY_PARTS`.
- A day without a clock time (завтра, в понедельник, 25 декабря) takes the start
  of the manager's working day (the span of that weekday, else the earliest one,
  else :data:`DEFAULT_DAY_START`); :attr:`When.day_start` says so.
- A clock time alone (and a part of the day alone) is its next occurrence: «в 10»
  at 11:00 is tomorrow 10:00. A weekday is the coming one (said on a Monday,
  «в понедельник» is next week's); a date without a year gone this year is next
  year's.
- A duration (2h, через 30 минут, in 3 days) counts from now; a day named
  explicitly together with a time already gone («сегодня в 9» at 10:00) is
  :attr:`When.past`, for the caller to refuse.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo


def _list(words: str) -> list[str]:
    return words.split()


def _set(*lines: str) -> frozenset[str]:
    return frozenset(" ".join(lines).split())


DEFAULT_DAY_START = time(9, 0)
DAY_PARTS: dict[str, time] = {
    **dict.fromkeys(("утром", "утро", "morning"), time(9, 0)),
    **dict.fromkeys(("полдень", "noon", "midday"), time(12, 0)),
    **dict.fromkeys(("днём", "днем", "afternoon"), time(13, 0)),
    **dict.fromkeys(("вечером", "вечер", "evening", "tonight"), time(18, 0)),
}
_HOUR_AFTER = {"в", "во", "к", "at", "by", "около", "around"}  # «в 10»: 10 is an hour
_AMPM = {"утра": 0, "am": 0, "a.m": 0, "дня": 12, "вечера": 12, "pm": 12, "p.m": 12, "ночи": -1}
_DAY_WORDS = _set(
    "сегодня завтра послезавтра today tomorrow "
    "понедельник вторник среда среду четверг пятница пятницу суббота субботу воскресенье "
    "пн вт ср чт пт сб вс monday tuesday wednesday thursday friday saturday sunday "
    "mon tue tues wed thu thur thurs fri sat sun"
)
_MONTHS = _set(
    "января февраля марта апреля мая июня июля августа сентября октября ноября декабря "
    "январь февраль март апрель май июнь июль август сентябрь октябрь ноябрь декабрь "
    "янв фев мар апр июн июл авг сен сент окт ноя дек "
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec"
)
_FILLERS = _set(
    "в во к на через после in at on by next this the after около around "
    "следующий следующую следующее следующей следующем эту этот это этой"
)
_THIS_NEXT = {w for w in _FILLERS if w.startswith(("следующ", "эт"))}
_NUMBER_WORDS = _set(
    "один одну одна два две три четыре пять шесть семь восемь девять десять пятнадцать "
    "двадцать тридцать сорок полтора полторы пол a an one two three four five six seven "
    "eight nine ten fifteen twenty thirty forty"
)
_UNIT = re.compile(
    r"(минут[уаы]?|мин|час|часа|часов|полчаса|сутки|суток|день|дня|дней|недел[юиья]|неделе|"
    r"месяц|месяца|месяцев|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|fortnight)"
)
_COMPACT_UNITS = {
    "m": "minutes", "min": "minutes", "м": "minutes", "мин": "minutes",
    "h": "hours", "ч": "hours",
    "d": "days", "д": "days", "дн": "days",
    "w": "weeks", "н": "weeks", "нед": "weeks",
}  # fmt: skip
_COMPACT = re.compile(r"(?:\d+(?:min|мин|дн|нед|[mhdwмчдн]))+")
_COMPACT_PART = re.compile(r"(\d+)(min|мин|дн|нед|[mhdwмчдн])")
_CLOCK = re.compile(r"(\d{1,2})(?::(\d{2}))?(am|pm|a\.m|p\.m)?")
_DOTTED = re.compile(r"(\d{1,2})\.(\d{1,2})(?:\.(\d{2}|\d{4}))?")
_NUMBER = re.compile(r"\d{1,4}|\d{1,2}(?:st|nd|rd|th)|\d+[.,]\d")
_PUNCTUATION = ",.;:!?—–-"
_MAX_WORDS = 10  # a time is never longer; the rest is the text


class WorkingSpan(Protocol):
    """A span of working hours (``routing.hours.Span``): its weekdays and start."""

    @property
    def days(self) -> frozenset[int]: ...

    @property
    def start(self) -> time: ...


@dataclass(frozen=True, slots=True)
class When:
    """A moment a manager named: ``due`` in UTC, ``local`` in their zone, ``rest`` the
    text after the time words. ``day_start``: a day without a clock time, so the
    working day's start was taken; ``past``: a day and time named explicitly that
    are already gone (nothing to remind of)."""

    due: datetime
    local: datetime
    rest: str
    day_start: bool = False
    past: bool = False


@dataclass(frozen=True, slots=True)
class _Word:
    text: str  # lower case, without the punctuation around it
    end: int  # where the word ends in the text the manager wrote


@dataclass(slots=True)
class _Reading:
    """A run of time words put in the form dateparser reads without guessing."""

    words: list[str] = field(default_factory=list)
    clock: bool = False  # a clock time or a part of the day was given
    day: bool = False  # a day was named (a weekday, a date, tomorrow)
    year_implied: bool = False  # a dotted date without its year

    def put(self, word: str) -> None:
        self.words.append(word)

    def drop_fillers(self) -> None:
        """The prepositions before a time this module spelled out («в 10» → 10:00)."""
        while self.words and self.words[-1] in _FILLERS:
            self.words.pop()


def parse_when(
    text: str,
    now: datetime,
    timezone: str,
    *,
    hours: Sequence[WorkingSpan] = (),
) -> When | None:
    """The moment ``text`` starts with, or None when it does not start with one.
    ``now`` is aware; ``hours`` are the manager's working spans (their start is the
    time of a day named without one)."""
    zone = ZoneInfo(timezone)
    local_now = now.astimezone(zone)
    words = _words(text)
    run = 0
    while run < min(len(words), _MAX_WORDS) and _is_time_word(words[run].text):
        run += 1
    for length in range(run, 0, -1):
        reading = _reading([w.text for w in words[:length]], local_now)
        if reading is None:
            continue
        found = _parse(" ".join(reading.words), local_now.replace(tzinfo=None))
        if found is None:
            continue
        rest = text[words[length - 1].end :].lstrip(" \t\n" + _PUNCTUATION).strip()
        return _moment(found, reading, local_now, hours, rest)
    return None


def _words(text: str) -> list[_Word]:
    found = []
    for match in re.finditer(r"\S+", text):
        word = match.group().lower().strip(_PUNCTUATION + "«»\"'()")
        found.append(_Word(word, match.end()))
    return found


def _is_time_word(word: str) -> bool:
    return bool(
        word in _FILLERS
        or word in _DAY_WORDS
        or word in _MONTHS
        or word in DAY_PARTS
        or word in _AMPM
        or word in _NUMBER_WORDS
        or _UNIT.fullmatch(word)
        or _COMPACT.fullmatch(word)
        or _CLOCK.fullmatch(word)
        or _DOTTED.fullmatch(word)
        or _NUMBER.fullmatch(word)
    )


def _reading(words: list[str], now: datetime) -> _Reading | None:
    """``words`` as dateparser should read them, or None when they are not a time
    on their own (a number nothing makes a time, a trailing preposition)."""
    if words[-1] in _FILLERS:
        return None
    reading = _Reading()
    i = 0
    while i < len(words):
        step = _step(words, i, reading, now)
        if step == 0:
            return None
        i += step
    return reading if reading.words else None


def _step(words: list[str], i: int, reading: _Reading, now: datetime) -> int:
    """Read the word at ``i`` (and those that belong to it) into ``reading``; the
    number of words read, 0 when the word cannot stand where it is."""
    word = words[i]
    before = words[i - 1] if i else ""
    after = words[i + 1] if i + 1 < len(words) else ""
    if word in DAY_PARTS:
        reading.drop_fillers()
        reading.put(_hhmm(DAY_PARTS[word]))
        reading.clock = True
        return 1
    if word in _THIS_NEXT and after in _DAY_WORDS:
        return 1  # «в следующий понедельник» is the coming Monday, as «в понедельник»
    if word in _FILLERS or word in _DAY_WORDS:
        reading.day = reading.day or word in _DAY_WORDS
        reading.put(word)
        return 1
    if _COMPACT.fullmatch(word):
        reading.drop_fillers()  # «через 2h»: dateparser reads one language at a time
        reading.put("in")
        for count, unit in _COMPACT_PART.findall(word):
            reading.put(f"{count} {_COMPACT_UNITS[unit]}")
        return 1
    if _DOTTED.fullmatch(word) and not _UNIT.fullmatch(after):
        return _dotted(word, before, reading, now)
    return _number_or_word(words, i, reading)


def _number_or_word(words: list[str], i: int, reading: _Reading) -> int:
    word = words[i]
    before = words[i - 1] if i else ""
    after = words[i + 1] if i + 1 < len(words) else ""
    clock = _CLOCK.fullmatch(word)
    if clock and _is_clock(clock, before, after):
        return _clock(clock, words[i + 1 : i + 3], reading)
    if word in _MONTHS:
        near = (before, after)
        if not any(_NUMBER.fullmatch(w) for w in near):
            return 0  # "may", «март» as words of the text
        reading.day = True
        reading.put(word)
        return 1
    if _NUMBER.fullmatch(word) or word in _NUMBER_WORDS:
        year_after_date = len(word) == 4 and any(w in _MONTHS for w in words[max(0, i - 2) : i])
        if _UNIT.fullmatch(after) or after in _MONTHS or before in _MONTHS or year_after_date:
            reading.put(word.replace(",", "."))
            return 1
        return 0  # a bare number: «10 звонков», not a time
    if _UNIT.fullmatch(word):
        reading.put(word)
        return 1
    return 0  # am/pm with no hour before it


def _is_clock(match: re.Match[str], before: str, after: str) -> bool:
    """Whether a number is an hour: "10:30", "10am", "7 pm", «в 10», «в 2 часа»,
    «в 3 дня» (but «3 дня» is three days, «в 25 декабря» a date)."""
    if match.group(2) or match.group(3):
        return True
    if after in _MONTHS:
        return False
    if after in _AMPM and (after != "дня" or before in _HOUR_AFTER):
        return True
    return before in _HOUR_AFTER and not (_UNIT.fullmatch(after) and not after.startswith("час"))


def _clock(match: re.Match[str], following: list[str], reading: _Reading) -> int:
    """«в 10», «в 7 вечера», «в 2 часа дня», "10am", "7 pm", "14:30": one clock time."""
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    read = 1
    if following and following[0].startswith("час"):
        read, following = read + 1, following[1:]
    shift = _AMPM.get(match.group(3) or "")
    if shift is None and following and following[0] in _AMPM:
        shift = _AMPM[following[0]]
        read += 1
    if shift == 12 and hour < 12:
        hour += 12
    elif shift == 0 and hour == 12:
        hour = 0  # 12 am is midnight
    elif shift == -1 and hour == 12:
        hour = 0  # «в 12 ночи»
    if hour > 23 or minute > 59:
        return 0
    reading.drop_fillers()
    reading.put(f"{hour:02d}:{minute:02d}")
    reading.clock = True
    return read


def _dotted(word: str, before: str, reading: _Reading, now: datetime) -> int:
    """«25.12», «25.12.2026»: a date (its year implied when not written); after a
    date, «14.30» is its time."""
    match = _DOTTED.fullmatch(word)
    assert match is not None
    first, second, year = match.groups()
    if _DOTTED.fullmatch(before) and not year:
        if int(first) > 23 or int(second) > 59:
            return 0
        reading.put(f"{int(first):02d}:{int(second):02d}")
        reading.clock = True
        return 1
    if year is None:
        year, reading.year_implied = str(now.year), True
    elif len(year) == 2:
        year = f"20{year}"
    reading.put(f"{int(first):02d}.{int(second):02d}.{year}")
    reading.day = True
    return 1


def _moment(
    found: datetime,
    reading: _Reading,
    now: datetime,
    hours: Sequence[WorkingSpan],
    rest: str,
) -> When:
    """The moment dateparser found (naive, in the manager's zone), with the rules of
    this module applied: the working day's start, next occurrences, durations."""
    zone = now.tzinfo
    if not reading.day and not reading.clock:
        # A duration: counted on the real clock, so that a change to summer time
        # between now and then does not move it by an hour.
        due = now.astimezone(UTC) + (found - now.replace(tzinfo=None))
        return When(due, due.astimezone(zone), rest)
    day_start = not reading.clock
    if day_start:
        found = datetime.combine(found.date(), _start_of(found.date(), hours))
    local = found.replace(tzinfo=zone)
    if local <= now:
        if not reading.day:
            local = (found + timedelta(days=1)).replace(tzinfo=zone)  # «в 10» at 11:00
        elif reading.year_implied and local.date() < now.date():
            local = local.replace(year=local.year + 1)  # «25.12» gone this year: next year's
        else:
            return When(local.astimezone(UTC), local, rest, day_start=day_start, past=True)
    return When(local.astimezone(UTC), local, rest, day_start=day_start)


def _start_of(day: date, hours: Sequence[WorkingSpan]) -> time:
    """When the manager's working day starts on ``day`` (the earliest start of any
    of their days when they do not work that day)."""
    starts = [s.start for s in hours if day.weekday() in s.days] or [s.start for s in hours]
    return min(starts, default=DEFAULT_DAY_START)


def _hhmm(moment: time) -> str:
    return f"{moment.hour:02d}:{moment.minute:02d}"


def _parse(phrase: str, base: datetime) -> datetime | None:
    """dateparser's reading of ``phrase`` relative to ``base`` (naive, local)."""
    parser = _parser_class()(
        languages=["ru", "en"],
        settings={
            "RELATIVE_BASE": base,
            "PREFER_DATES_FROM": "future",
            "DATE_ORDER": "DMY",
            "TIMEZONE": "UTC",  # the base is local already: no conversion by the host's zone
            "RETURN_AS_TIMEZONE_AWARE": False,
        },
    )
    try:
        found = parser.get_date_data(phrase).date_obj
    except (ValueError, OverflowError):  # a date that does not exist
        return None
    return found if isinstance(found, datetime) else None


@functools.cache
def _parser_class() -> Any:
    """dateparser, imported on first use: loading it takes a tenth of a second and
    its languages another few, which only the first reminder pays."""
    from dateparser.date import DateDataParser

    return DateDataParser


_MONTH_NAMES = {
    "ru": _list(
        "января февраля марта апреля мая июня июля августа сентября октября ноября декабря"
    ),
    "en": _list("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec"),
}
_WEEKDAY_NAMES = {
    "ru": _list("пн вт ср чт пт сб вс"),
    "en": _list("Mon Tue Wed Thu Fri Sat Sun"),
}


def spoken(local: datetime, now: datetime, language: str | None) -> str:
    """``local`` as a manager reads it: «вт 6 января 10:00», "Tue 6 Jan 10:00" (the
    year only when it is not this one)."""
    lang = "en" if language == "en" else "ru"
    day = (
        f"{_WEEKDAY_NAMES[lang][local.weekday()]} {local.day} {_MONTH_NAMES[lang][local.month - 1]}"
    )
    if local.year != now.astimezone(local.tzinfo).year:
        day += f" {local.year}"
    return f"{day} {_hhmm(local.time())}"
