"""Routing without a database: working hours, availability, the default decision."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from routing import Decision, ManagerInfo, Request, Snapshot, decide
from routing.hours import HoursError, parse_hours

MSK = ZoneInfo("Europe/Moscow")  # UTC+3, no DST
# 2024-06-03 is a Monday.
MONDAY = datetime(2024, 6, 3, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0, tz: ZoneInfo | None = None) -> datetime:
    """A moment of the week of 2024-06-03: ``day`` 0 is Monday."""
    return datetime(2024, 6, 3 + day, hour, minute, tzinfo=tz or UTC)


# --- working hours ---------------------------------------------------------------


def test_weekdays_nine_to_six() -> None:
    hours = parse_hours("Mon-Fri 09:00-18:00")
    [span] = hours.spans
    assert span.days == frozenset(range(5))
    assert (span.start, span.end) == (time(9), time(18))
    assert hours.contains(at(0, 9))  # start included
    assert hours.contains(at(4, 17, 59))
    assert not hours.contains(at(4, 18))  # end excluded
    assert not hours.contains(at(2, 8, 59))
    assert not hours.contains(at(5, 12))  # Saturday
    assert not hours.contains(at(6, 12))  # Sunday


def test_several_spans() -> None:
    hours = parse_hours("Mon-Fri 09:00-13:00; Mon-Fri 14:00-18:00; Sat 10:00-14:00")
    assert len(hours.spans) == 3
    assert hours.contains(at(1, 10))
    assert not hours.contains(at(1, 13, 30))  # lunch
    assert hours.contains(at(1, 15))
    assert hours.contains(at(5, 11))
    assert not hours.contains(at(5, 15))
    assert not hours.contains(at(6, 11))


def test_day_lists_and_wrapping_ranges() -> None:
    assert parse_hours("Mon,Wed,Fri 09:00-10:00").spans[0].days == {0, 2, 4}
    assert parse_hours("Mon-Tue, Thu 09:00-10:00").spans[0].days == {0, 1, 3}
    assert parse_hours("Sat-Mon 09:00-10:00").spans[0].days == {5, 6, 0}


@pytest.mark.parametrize(
    "text",
    [
        "Пн-Пт 09:00-18:00",
        "пн-пт 09:00-18:00",
        "ПН-ПТ 09:00-18:00",
        "Понедельник-Пятница 09:00-18:00",
        "mon-fri 9:00-18:00",
        "Monday-Friday 09:00 - 18:00",
        "Пн-Пт 09:00-18:00;",
    ],
)
def test_weekday_spellings(text: str) -> None:
    [span] = parse_hours(text).spans
    assert span.days == frozenset(range(5))
    assert (span.start, span.end) == (time(9), time(18))


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("Вт", 1),
        ("Среда", 2),
        ("Четверг", 3),
        ("Пятница", 4),
        ("Суббота", 5),
        ("Воскресенье", 6),
        ("Вс", 6),
        ("Thu", 3),
        ("Sunday", 6),
    ],
)
def test_single_day_names(text: str, day: int) -> None:
    assert parse_hours(f"{text} 10:00-11:00").spans[0].days == {day}


def test_overnight_span() -> None:
    hours = parse_hours("Fri 22:00-06:00")
    assert hours.contains(at(4, 22))
    assert hours.contains(at(4, 23, 59))
    assert hours.contains(at(5, 0))  # Saturday morning belongs to Friday's shift
    assert hours.contains(at(5, 5, 59))
    assert not hours.contains(at(5, 6))
    assert not hours.contains(at(4, 21, 59))
    assert not hours.contains(at(5, 22))  # Saturday night is not Friday's
    assert not hours.contains(at(3, 23))  # nor is Thursday night
    assert not hours.contains(at(4, 3))  # Friday early morning: Thursday's shift, none


def test_overnight_span_from_sunday_runs_into_monday() -> None:
    hours = parse_hours("Sun 20:00-08:00")
    assert hours.contains(at(0, 7))  # Monday 07:00
    assert hours.contains(at(6, 21))


def test_until_midnight_and_whole_day() -> None:
    evening = parse_hours("Sat 18:00-24:00")
    assert evening.contains(at(5, 23, 59))
    assert not evening.contains(at(6, 0, 30))
    whole = parse_hours("Sat-Sun 00:00-24:00")
    assert whole.contains(at(5, 0)) and whole.contains(at(6, 23, 59))
    assert not whole.contains(at(4, 23, 59)) and not whole.contains(at(0, 0))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "no working hours"),
        ("  ;  ", "no working hours"),
        ("Mon-Fri", "expected e.g."),
        ("Mon-Fri 9-18", "Mon-Fri 9-18"),
        ("09:00-18:00", "expected e.g."),
        ("Mon-Fri 09:00-18:00, Sat 10:00-14:00", "expected e.g."),
        ("Xyz 09:00-18:00", "unknown day 'Xyz'"),
        ("Monkey 09:00-18:00", "unknown day 'Monkey'"),
        ("Mon-Xyz 09:00-18:00", "unknown day 'Xyz'"),
        ("Mon 25:00-26:00", "bad time '25:00'"),
        ("Mon 09:60-10:00", "bad time '09:60'"),
        ("Mon 24:30-10:00", "bad time '24:30'"),
        ("Mon 09:00-09:00", "empty span"),
    ],
)
def test_errors_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(HoursError) as info:
        parse_hours(text)
    assert words in str(info.value)


def test_hours_error_is_a_value_error() -> None:
    """The config validator relies on it to report ``managers[0].hours: …``."""
    assert issubclass(HoursError, ValueError)


# --- availability ----------------------------------------------------------------


def manager(
    id: int,
    *,
    load: int = 0,
    capacity: int = 20,
    role: str = "manager",
    hours: str | None = None,
    timezone: str = "UTC",
    away: bool = False,
) -> ManagerInfo:
    return ManagerInfo(
        id=id,
        name=f"m{id}",
        role=role,
        hours=parse_hours(hours) if hours else None,
        timezone=timezone,
        capacity=capacity,
        load=load,
        away=away,
    )


def test_available_in_the_managers_time_zone() -> None:
    moscow = manager(1, hours="Mon-Fri 09:00-18:00", timezone="Europe/Moscow")
    assert moscow.available(at(0, 6))  # 09:00 in Moscow
    assert not moscow.available(at(0, 5, 59))  # 08:59 in Moscow
    assert moscow.available(at(0, 14, 59))  # 17:59 in Moscow
    assert not moscow.available(at(0, 15))  # 18:00 in Moscow
    assert moscow.available(at(0, 12, tz=MSK))  # an aware time in any zone works


def test_time_zone_moves_the_weekday() -> None:
    vladivostok = manager(1, hours="Mon 09:00-12:00", timezone="Asia/Vladivostok")  # UTC+10
    assert vladivostok.available(MONDAY - timedelta(hours=1))  # Sunday 23:00 UTC
    assert not vladivostok.available(at(0, 9))  # Monday 19:00 there


def test_follows_daylight_saving() -> None:
    berlin = manager(1, hours="Mon-Fri 09:00-17:00", timezone="Europe/Berlin")
    assert berlin.available(at(0, 7))  # June: UTC+2, 09:00 there
    winter_monday_0800_utc = datetime(2024, 1, 8, 8, 0, tzinfo=UTC)  # 09:00 there
    assert berlin.available(winter_monday_0800_utc)
    assert not berlin.available(winter_monday_0800_utc - timedelta(minutes=1))


def test_no_hours_means_always_available() -> None:
    assert manager(1).available(at(6, 3))


def test_away_and_marketers_never_available() -> None:
    assert not manager(1, away=True).available(at(0, 12))
    assert not manager(2, role="marketer").available(at(0, 12))
    assert manager(3, role="supervisor").available(at(0, 12))


# --- the decision ----------------------------------------------------------------


def request(owner: int | None = None, new_client: bool = False) -> Request:
    return Request(channel="telegram", account="bot", client_owner_id=owner, new_client=new_client)


NOON = at(0, 12)


def test_owner_first_when_available() -> None:
    snapshot = Snapshot([manager(1, load=0), manager(2, load=5)])
    decision = decide(snapshot, request(owner=2), NOON)
    assert decision.assignee_id == 2
    assert "owner" in decision.reason


def test_owner_at_capacity_gives_way_to_least_loaded() -> None:
    snapshot = Snapshot([manager(1, load=3), manager(2, load=5, capacity=5), manager(3, load=1)])
    decision = decide(snapshot, request(owner=2), NOON)
    assert decision.assignee_id == 3
    assert "least loaded" in decision.reason


def test_owner_out_of_hours_gives_way() -> None:
    snapshot = Snapshot([manager(1, load=9), manager(2, hours="Sat 10:00-12:00")])
    assert decide(snapshot, request(owner=2), NOON).assignee_id == 1


def test_owner_away_gives_way() -> None:
    snapshot = Snapshot([manager(1, load=9), manager(2, away=True)])
    assert decide(snapshot, request(owner=2), NOON).assignee_id == 1


def test_unknown_owner_gives_way() -> None:
    snapshot = Snapshot([manager(1, load=2), manager(2, load=1)])
    assert decide(snapshot, request(owner=99), NOON).assignee_id == 2


def test_least_loaded_relative_to_capacity() -> None:
    # 4 of 10 is less loaded than 3 of 5.
    snapshot = Snapshot([manager(1, load=3, capacity=5), manager(2, load=4, capacity=10)])
    assert decide(snapshot, request(), NOON).assignee_id == 2


def test_ties_go_to_the_lowest_id() -> None:
    snapshot = Snapshot([manager(3), manager(1), manager(2)])
    assert decide(snapshot, request(), NOON).assignee_id == 1


def test_marketers_never_assigned() -> None:
    snapshot = Snapshot([manager(1, role="marketer"), manager(2, load=19)])
    assert decide(snapshot, request(), NOON).assignee_id == 2
    assert decide(snapshot, request(owner=1), NOON).assignee_id == 2
    only_marketers = Snapshot([manager(1, role="marketer")])
    assert decide(only_marketers, request(), NOON).assignee_id is None


def test_away_managers_skipped() -> None:
    snapshot = Snapshot([manager(1, away=True), manager(2, load=10)])
    assert decide(snapshot, request(), NOON).assignee_id == 2


def test_out_of_hours_managers_skipped() -> None:
    snapshot = Snapshot(
        [manager(1, hours="Mon-Fri 09:00-18:00"), manager(2, load=10, hours="Mon 20:00-08:00")]
    )
    assert decide(snapshot, request(), at(0, 12)).assignee_id == 1
    assert decide(snapshot, request(), at(0, 22)).assignee_id == 2


def test_full_managers_skipped() -> None:
    snapshot = Snapshot([manager(1, load=20), manager(2, load=2, capacity=2), manager(3, load=0)])
    assert decide(snapshot, request(), NOON).assignee_id == 3


@pytest.mark.parametrize(
    "managers",
    [
        [],
        [manager(1, away=True)],
        [manager(1, load=20)],
        [manager(1, capacity=0)],
        [manager(1, hours="Sat 10:00-12:00")],
        [manager(1, role="marketer")],
    ],
)
def test_nobody_available_queues(managers: list[ManagerInfo]) -> None:
    decision = decide(Snapshot(managers), request(owner=1), NOON)
    assert decision == Decision(None, decision.reason)
    assert "queued" in decision.reason


def test_snapshot_load_spreads_a_batch() -> None:
    snapshot = Snapshot([manager(1, capacity=2), manager(2, capacity=2)])
    assigned = []
    for _ in range(5):
        decision = decide(snapshot, request(), NOON)
        assigned.append(decision.assignee_id)
        if decision.assignee_id is not None:
            snapshot.add_load(decision.assignee_id)
    assert assigned == [1, 2, 1, 2, None]
    assert [m.load for m in snapshot.managers] == [2, 2]


def test_add_load_keeps_every_other_attribute() -> None:
    original = manager(1, hours="Mon 09:00-10:00", timezone="Europe/Moscow", capacity=7)
    snapshot = Snapshot([original, manager(2)])
    snapshot.add_load(1)
    snapshot.add_load(42)  # unknown: nothing happens
    updated = snapshot.managers[0]
    assert updated.load == 1
    assert (updated.hours, updated.timezone, updated.capacity, updated.name) == (
        original.hours,
        original.timezone,
        original.capacity,
        original.name,
    )
    assert snapshot.managers[1].load == 0
