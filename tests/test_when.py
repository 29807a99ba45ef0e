"""Reading a manager's "when" in Russian and English, in their own time zone (issue 15:
«завтра в 10 перезвонить» was set for 09:00 with the text «в 10 перезвонить»)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select

from hub.clients.attachments import AttachmentStore
from hub.desk.desk import Desk
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import FrozenClock
from hub.kernel.identities import identity
from hub.kernel.types import Channel, InboundMessage
from hub.kernel.when import parse_when, spoken
from routing.hours import parse_hours
from storage import Database
from storage.models import Manager, Reminder

# Monday 5 January 2026, 10:00 in Moscow (07:00 UTC), 12:00 in Yekaterinburg
NOW = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
TZ = "Europe/Moscow"
EKB = "Asia/Yekaterinburg"


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
def test_what_worked_before_still_does(text: str, due: datetime, rest: str) -> None:
    when = parse_when(text, NOW, TZ)
    assert when is not None
    assert (when.due, when.rest) == (due, rest)


# (phrase, zone, the local moment expected, the reminder's text, the day's start taken)
PHRASES = [
    # Russian, Moscow (Monday 10:00)
    ("через 2 часа позвонить", TZ, (1, 5, 12, 0), "позвонить", False),
    ("через 30 минут", TZ, (1, 5, 10, 30), "", False),
    ("через час", TZ, (1, 5, 11, 0), "", False),
    ("через полтора часа", TZ, (1, 5, 11, 30), "", False),
    ("через 1,5 часа", TZ, (1, 5, 11, 30), "", False),
    ("через 2h", TZ, (1, 5, 12, 0), "", False),
    ("завтра в 10 перезвонить", TZ, (1, 6, 10, 0), "перезвонить", False),
    ("завтра в 10:30", TZ, (1, 6, 10, 30), "", False),
    ("завтра в 10: перезвонить", TZ, (1, 6, 10, 0), "перезвонить", False),
    ("в понедельник утром", TZ, (1, 12, 9, 0), "", False),
    ("в понедельник в 2 часа дня созвон", TZ, (1, 12, 14, 0), "созвон", False),
    ("в следующий понедельник в 15:00 созвон", TZ, (1, 12, 15, 0), "созвон", False),
    ("в среду в 14:00 звонок", TZ, (1, 7, 14, 0), "звонок", False),
    ("в эту пятницу", TZ, (1, 9, 9, 0), "", True),
    ("послезавтра", TZ, (1, 7, 9, 0), "", True),
    ("25 декабря поздравить", TZ, (12, 25, 9, 0), "поздравить", True),
    ("25.12 в 15:00", TZ, (12, 25, 15, 0), "", False),
    ("25.12 14.30", TZ, (12, 25, 14, 30), "", False),
    ("в 10", TZ, (1, 6, 10, 0), "", False),  # 10:00 is now: the next one is tomorrow
    ("в 9 отчёт", TZ, (1, 6, 9, 0), "отчёт", False),
    ("в 11", TZ, (1, 5, 11, 0), "", False),
    ("в 7 вечера позвонить", TZ, (1, 5, 19, 0), "позвонить", False),
    ("в 3 дня", TZ, (1, 5, 15, 0), "", False),  # three in the afternoon
    ("через 3 дня", TZ, (1, 8, 10, 0), "", False),  # in three days
    ("в 12 ночи", TZ, (1, 6, 0, 0), "", False),
    ("вечером", TZ, (1, 5, 18, 0), "", False),
    ("утром", TZ, (1, 6, 9, 0), "", False),  # this morning is gone: tomorrow's
    ("сегодня днём", TZ, (1, 5, 13, 0), "", False),
    ("на следующей неделе", TZ, (1, 12, 10, 0), "", False),
    # the text is never eaten
    ("завтра 10 звонков", TZ, (1, 6, 9, 0), "10 звонков", True),
    ("завтра в офисе", TZ, (1, 6, 9, 0), "в офисе", True),
    ("завтра — перезвонить", TZ, (1, 6, 9, 0), "перезвонить", True),
    # English, Moscow
    ("in 3 days", TZ, (1, 8, 10, 0), "", False),
    ("in 2h call back", TZ, (1, 5, 12, 0), "call back", False),
    ("in an hour", TZ, (1, 5, 11, 0), "", False),
    ("in 1h30m", TZ, (1, 5, 11, 30), "", False),
    ("tomorrow at 10am call the client", TZ, (1, 6, 10, 0), "call the client", False),
    ("tomorrow morning", TZ, (1, 6, 9, 0), "", False),
    ("tomorrow in the afternoon send", TZ, (1, 6, 13, 0), "send", False),
    ("next Monday", TZ, (1, 12, 9, 0), "", True),
    ("Monday 9:00", TZ, (1, 12, 9, 0), "", False),
    ("at 10 tomorrow", TZ, (1, 6, 10, 0), "", False),
    ("7 pm", TZ, (1, 5, 19, 0), "", False),
    ("the day after tomorrow call", TZ, (1, 7, 9, 0), "call", True),
    ("next week", TZ, (1, 12, 10, 0), "", False),
    ("December 25", TZ, (12, 25, 9, 0), "", True),
    ("tomorrow may call", TZ, (1, 6, 9, 0), "may call", True),
    # Yekaterinburg: Monday 12:00 there
    ("завтра в 10 перезвонить", EKB, (1, 6, 10, 0), "перезвонить", False),
    ("в 11", EKB, (1, 6, 11, 0), "", False),
    ("в 13", EKB, (1, 5, 13, 0), "", False),
    ("через 2 часа", EKB, (1, 5, 14, 0), "", False),
    ("завтра", EKB, (1, 6, 9, 0), "", True),
    ("tomorrow at 10am", EKB, (1, 6, 10, 0), "", False),
]


@pytest.mark.parametrize(("text", "zone", "local", "rest", "day_start"), PHRASES)
def test_as_people_write(
    text: str, zone: str, local: tuple[int, int, int, int], rest: str, day_start: bool
) -> None:
    month, day, hour, minute = local
    expected = datetime(2026, month, day, hour, minute, tzinfo=ZoneInfo(zone))
    when = parse_when(text, NOW, zone)
    assert when is not None
    assert (when.local, when.rest, when.day_start, when.past) == (expected, rest, day_start, False)
    assert when.due == expected.astimezone(UTC)
    assert when.due.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    ["call back", "", "31.02 10:00", "25:00", "soon", "в офис завтра", "в 25"],
)
def test_not_a_time(text: str) -> None:
    assert parse_when(text, NOW, TZ) is None


@pytest.mark.parametrize(
    ("text", "local"),
    [
        ("сегодня в 9", datetime(2026, 1, 5, 9, 0)),
        ("today 8:00", datetime(2026, 1, 5, 8, 0)),
        ("сегодня", datetime(2026, 1, 5, 9, 0)),  # the working day started at 09:00
        ("01.02.2025 10:00", datetime(2025, 2, 1, 10, 0)),
    ],
)
def test_a_day_and_time_gone_are_past(text: str, local: datetime) -> None:
    when = parse_when(text, NOW, TZ)
    assert when is not None
    assert when.past
    assert when.local == local.replace(tzinfo=ZoneInfo(TZ))


def test_a_date_gone_this_year_is_next_years() -> None:
    now = datetime(2026, 12, 27, 7, 0, tzinfo=UTC)
    zone = ZoneInfo(TZ)
    for text, local in [
        ("25.12", datetime(2027, 12, 25, 9, 0, tzinfo=zone)),
        ("25 декабря", datetime(2027, 12, 25, 9, 0, tzinfo=zone)),
        ("05.01 в 10", datetime(2027, 1, 5, 10, 0, tzinfo=zone)),
    ]:
        when = parse_when(text, now, TZ)
        assert when is not None, text
        assert (when.local, when.past) == (local, False), text
    # the same day with its hour gone is not next year's: it is refused as past
    when = parse_when("27.12 в 9", now, TZ)
    assert when is not None
    assert when.past


def test_a_day_without_a_time_starts_with_the_working_day() -> None:
    hours = parse_hours("Mon-Fri 10:00-19:00; Sat 11:00-15:00").spans
    zone = ZoneInfo(TZ)
    for text, local in [
        ("завтра", datetime(2026, 1, 6, 10, 0, tzinfo=zone)),
        ("в субботу", datetime(2026, 1, 10, 11, 0, tzinfo=zone)),
        ("в воскресенье", datetime(2026, 1, 11, 10, 0, tzinfo=zone)),  # no hours: earliest
        ("завтра в 8", datetime(2026, 1, 6, 8, 0, tzinfo=zone)),  # a time said is kept
    ]:
        when = parse_when(text, NOW, TZ, hours=hours)
        assert when is not None, text
        assert when.local == local, text


def test_a_duration_counts_on_the_real_clock_across_summer_time() -> None:
    # Berlin moves to summer time at 02:00 on 29 March 2026; 00:30 is 23:30 UTC.
    now = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)
    when = parse_when("через 2 часа", now, "Europe/Berlin")
    assert when is not None
    assert when.due == now + timedelta(hours=2)
    assert when.local.strftime("%H:%M") == "03:30"


def test_spoken_in_the_managers_language() -> None:
    local = datetime(2026, 1, 6, 10, 0, tzinfo=ZoneInfo(EKB))
    assert spoken(local, NOW, "ru") == "вт 6 января 10:00"
    assert spoken(local, NOW, "en") == "Tue 6 Jan 10:00"
    assert spoken(local.replace(year=2027), NOW, "en") == "Wed 6 Jan 2027 10:00"


def test_fast_after_the_first_phrase() -> None:
    phrases = [p[0] for p in PHRASES]
    parse_when("завтра в 10", NOW, TZ)  # dateparser loads its languages once
    started = time.perf_counter()
    for text in phrases:
        parse_when(text, NOW, TZ)
    # about 1 ms a phrase; the bound leaves room for a busy machine
    assert (time.perf_counter() - started) / len(phrases) < 0.02


async def _desk_with_manager(
    db: Database, tmp_path: Path, *, timezone: str | None, hours: str | None, language: str
) -> tuple[Desk, int]:
    clock = FrozenClock(NOW)
    async with db.write() as conn:
        await conn.execute(
            insert(Manager),
            {
                "name": "Ольга",
                "telegram_id": 555,
                "role": "manager",
                "capacity": 5,
                "active": True,
                "away": False,
                "created_at": NOW,
                "timezone": timezone,
                "hours": hours,
                "attrs": {"language": language},
            },
        )
    files = AttachmentStore(tmp_path / "files", 10**6)
    ingestor = Ingestor(db, clock, files)
    await ingestor.start()
    try:
        result = await ingestor(
            InboundMessage(
                Channel.TELEGRAM,
                "bot",
                "1:1",
                (identity("telegram", 42, "Пётр"),),
                NOW,
                text="Перезвоните мне",
            )
        )
    finally:
        await ingestor.stop()
    return Desk(db, clock, files, timezone="UTC", hours="Mon-Fri 08:00-17:00"), result.client_id


async def test_the_confirmation_is_in_the_managers_own_time(db: Database, tmp_path: Path) -> None:
    desk, client_id = await _desk_with_manager(
        db, tmp_path, timezone=EKB, hours=None, language="ru"
    )
    manager = await desk.manager(555)
    assert manager is not None
    said = await desk.act(client_id, manager, "remind", "завтра в 10 перезвонить")
    assert said == "Напоминание на вт 6 января 10:00: перезвонить"
    # no clock time: the hub's working day (the manager has no hours of their own)
    said = await desk.act(client_id, manager, "remind", "послезавтра")
    assert said == "Напоминание на ср 7 января 08:00 (начало рабочего дня): —"
    async with db.read() as conn:
        rows = (await conn.execute(select(Reminder.due_at, Reminder.text))).all()
    due = sorted((r.due_at.replace(tzinfo=UTC), r.text) for r in rows)
    assert due == [
        (datetime(2026, 1, 6, 5, 0, tzinfo=UTC), "перезвонить"),  # 10:00 in Yekaterinburg
        (datetime(2026, 1, 7, 3, 0, tzinfo=UTC), ""),
    ]


async def test_refusals_give_examples(db: Database, tmp_path: Path) -> None:
    desk, client_id = await _desk_with_manager(
        db, tmp_path, timezone=None, hours="Mon-Fri 10:00-18:00", language="en"
    )
    manager = await desk.manager(555)
    assert manager is not None
    said = await desk.act(client_id, manager, "remind", "someday call")
    assert said.startswith("Cannot read the time “someday call”")
    assert "tomorrow at 10am" in said and "in 2 hours" in said
    said = await desk.act(client_id, manager, "remind", "today 6:00 call")  # the hub's zone: UTC
    assert said.startswith("That time has already passed: Mon 5 Jan 06:00")
    said = await desk.act(client_id, manager, "remind", "tomorrow call")
    assert said == "Reminder set for Tue 6 Jan 10:00 (start of the working day): call"
    async with db.read() as conn:
        assert len((await conn.execute(select(Reminder.id))).all()) == 1
