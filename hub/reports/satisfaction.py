"""Satisfaction reports: the clients' 1–5 scores given in a period, by the manager
who resolved the request, by channel and by day, each with the count, the average
and how many of each score (``s1`` … ``s5``). A score changed by a later click
counts once, as it stands, on the day it was last given."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from zoneinfo import ZoneInfo

from hub.reports.reports import Column, Table, Value
from storage.ratings import Score

SCORES = (1, 2, 3, 4, 5)
_COLUMNS = (
    Column("ratings", "ratings"),
    Column("average", "average", "text"),
    *(Column(f"s{s}", str(s)) for s in SCORES),
)


def average(scores: Sequence[int]) -> float | None:
    return round(sum(scores) / len(scores), 2) if scores else None


def _row(group: Value, scores: Sequence[int]) -> tuple[Value, ...]:
    return (group, len(scores), average(scores), *(scores.count(s) for s in SCORES))


def tables(rows: Sequence[Score], days: Sequence[date], tz: ZoneInfo) -> list[Table]:
    """``satisfaction_by_manager``, ``_by_channel`` and ``_by_day`` (every day of the
    period, also those without a score)."""
    by: dict[str, dict[Value, list[int]]] = {"manager": {}, "channel": {}, "day": {}}
    for r in rows:
        day = r.rated_at.astimezone(tz).date().isoformat()
        for key, group in (("manager", r.manager), ("channel", r.channel), ("day", day)):
            by[key].setdefault(group, []).append(r.score)
    ordered: dict[str, list[Value]] = {
        "manager": sorted(by["manager"], key=lambda m: (m is None, str(m or ""))),
        "channel": sorted(by["channel"], key=str),
        "day": [d.isoformat() for d in days],
    }
    return [
        Table(
            f"satisfaction_by_{key}",
            f"satisfaction by {key}",
            (Column(key, key, "text"), *_COLUMNS),
            tuple(_row(group, by[key].get(group, [])) for group in groups),
        )
        for key, groups in ordered.items()
    ]
