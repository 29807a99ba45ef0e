"""Response deadlines (SLA): which policy applies, and when each step falls due.

Pure code. A policy counts either calendar time or working time; in working
time only the policy's working hours count (in its time zone, holidays
excluded), so every step of the escalation — the reminder before the deadline,
the deadline, the reassignment after it — falls inside working hours: nobody
is woken at night or on a weekend for a deadline counted in working time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from routing.hours import Hours

_HORIZON_DAYS = 3 * 366  # hours with no working time at all cannot stall the search


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    priorities: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    first_response: timedelta | None = None
    next_response: timedelta | None = None
    resolution: timedelta | None = None
    hours: Hours | None = None  # None: calendar time
    timezone: str = "UTC"
    holidays: frozenset[date] = frozenset()
    remind_at: float = 0.8
    reassign_after: timedelta | None = timedelta(minutes=30)
    supervisors: tuple[int, ...] = ()

    def applies(self, priority: str, channel: str) -> bool:
        return (not self.priorities or priority in self.priorities) and (
            not self.channels or channel in self.channels
        )

    def duration(self, kind: str) -> timedelta | None:
        return {
            "first_response": self.first_response,
            "next_response": self.next_response,
            "resolution": self.resolution,
        }[kind]

    def after(self, start: datetime, span: timedelta) -> datetime:
        """``start`` plus ``span`` of this policy's time (working or calendar)."""
        if self.hours is None:
            return start + span
        return add_working(start, span, self.hours, self.timezone, self.holidays)


@dataclass(frozen=True, slots=True)
class Timing:
    """When the steps of one deadline fall due."""

    remind_at: datetime
    due_at: datetime
    reassign_at: datetime | None


def timing(policy: Policy, kind: str, start: datetime) -> Timing | None:
    """The steps of ``kind`` started at ``start``; None when the policy sets none."""
    span = policy.duration(kind)
    if span is None:
        return None
    due = policy.after(start, span)
    remind = policy.after(start, span * policy.remind_at)
    reassign = (
        policy.after(due, policy.reassign_after)
        if policy.reassign_after is not None and kind != "resolution"
        else None
    )
    return Timing(remind, due, reassign)


def choose(
    policies: Sequence[Policy], named: str | None, priority: str, channel: str
) -> Policy | None:
    """The policy a routing rule named, else the first that fits."""
    if named is not None:
        return next((p for p in policies if p.name == named), None)
    return next((p for p in policies if p.applies(priority, channel)), None)


def add_working(
    start: datetime,
    span: timedelta,
    hours: Hours,
    timezone: str,
    holidays: frozenset[date] = frozenset(),
) -> datetime:
    """``start`` plus ``span`` of working time; returned in UTC."""
    remaining = span
    cursor = start.astimezone(UTC)
    for begin, end in _intervals(start, hours, ZoneInfo(timezone), holidays):
        if end <= cursor:
            continue
        begin = max(begin, cursor)
        available = end - begin
        if remaining <= available:
            return begin + remaining
        remaining -= available
        cursor = end
    raise ValueError("the working hours leave no working time to count in")


def _intervals(
    start: datetime, hours: Hours, tz: ZoneInfo, holidays: frozenset[date]
) -> Iterator[tuple[datetime, datetime]]:
    """Working intervals (UTC) in order, from the day before ``start`` on."""
    first = start.astimezone(tz).date() - timedelta(days=1)
    spans = sorted(hours.spans, key=lambda s: s.start)
    for offset in range(_HORIZON_DAYS):
        day = first + timedelta(days=offset)
        if day in holidays:
            continue
        for span in spans:
            if day.weekday() not in span.days:
                continue
            begin = datetime.combine(day, span.start, tzinfo=tz)
            end_day = day if span.end > span.start else day + timedelta(days=1)
            end = datetime.combine(end_day, span.end, tzinfo=tz)
            yield begin.astimezone(UTC), end.astimezone(UTC)
