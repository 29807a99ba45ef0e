"""Reports: how fast and how well the team serves clients, over a period.

First response time (a request opened in the period, until the first answer)
and resolution time (a request resolved in the period, from its opening), as
median and 90th percentile by manager (the request's assignee), channel and
day; deadlines that came due in the period and how many were missed (step 2 of
the escalation reached); inbound and outbound volume by channel and by hour of
day; open requests per manager now; stage moves; campaign results; the clients'
satisfaction scores (``hub.reports.satisfaction``).

Days and hours are those of ``hub.timezone``. ``week`` is the last 7 days and
``month`` the last 30, today included, up to now; ``--from``/``--to`` dates
are inclusive. The figures come from ``storage.reports``; this module rolls
them up into :class:`Table` s that the CLI prints as text or CSV, the admin API
serves as JSON, and ``hub.reports.charts`` draws (``hub.reports.reporter``
serves them all, and imports both: charts imports this module, not the reverse).
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from hub.config import DEFAULT_REPLY_WINDOW_DAYS
from hub.kernel.errors import HubError
from hub.kernel.texts import text
from hub.kernel.types import Channel
from storage import Database
from storage import campaigns as campaigns_q
from storage import ratings as ratings_q
from storage import reports as q
from storage.campaigns import VariantStats

PERIODS = {"week": 7, "month": 30}
CHANNELS = tuple(c.value for c in Channel)

Value = str | int | float | None
Kind = Literal["text", "count", "seconds", "percent"]


class ReportError(HubError, ValueError):
    """A report was asked for in a way that cannot be answered (a bad period)."""


# -- statistics ---------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation between closest ranks
    (numpy's default); ``None`` for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within 0..1 (got {q})")
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Iterable[float]) -> float | None:
    return percentile(values, 0.5)


@dataclass(frozen=True, slots=True)
class Spread:
    """How long something took: count, median and 90th percentile, in seconds."""

    count: int
    median: float | None
    p90: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Spread:
        return cls(len(seconds), median(seconds), percentile(seconds, 0.9))


def duration(seconds: float | None) -> str:
    """``45s``, ``12m``, ``1h 05m``, ``2d 03h``; ``—`` for nothing."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


# -- periods ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)``; ``first`` and ``last`` are its local days, inclusive."""

    start: datetime
    end: datetime
    first: date
    last: date

    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    @property
    def label(self) -> str:
        return f"{self.first.isoformat()} – {self.last.isoformat()}"


def period(
    name: str | None,
    now: datetime,
    tz: ZoneInfo,
    *,
    first: date | None = None,
    last: date | None = None,
) -> Period:
    """``week`` or ``month`` up to ``now``, or the days ``first``..``last`` (local,
    inclusive); ``week`` when nothing is said."""
    if first is not None or last is not None:
        if name is not None:
            raise ReportError("period: give week, month, or --from and --to, not both")
        if first is None or last is None:
            raise ReportError("period: --from and --to go together")
        if last < first:
            raise ReportError(f"period: --to {last} is before --from {first}")
        if (last - first).days > 366:
            raise ReportError("period: at most 367 days")
        try:
            return Period(
                _midnight(first, tz), _midnight(last + timedelta(days=1), tz), first, last
            )
        except OverflowError:  # the day after 9999-12-31, or year 1 moved to UTC
            raise ReportError(f"period: {first}..{last} is out of the calendar's range") from None
    length = PERIODS.get(name or "week")
    if length is None:
        raise ReportError(f"period: must be week or month (got {name!r})")
    today = now.astimezone(tz).date()
    start_day = today - timedelta(days=length - 1)
    return Period(_midnight(start_day, tz), now, start_day, today)


def parse_day(value: str, what: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ReportError(f"{what}: not a date YYYY-MM-DD (got {value[:40]!r})") from None


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tz).astimezone(UTC)


# -- tables -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    title: str
    kind: Kind = "count"


@dataclass(frozen=True, slots=True)
class Table:
    """One report table; ``key`` and the columns' keys are the stable names (JSON, CSV)."""

    key: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Value, ...], ...]

    def records(self) -> list[dict[str, Value]]:
        keys = [c.key for c in self.columns]
        return [dict(zip(keys, row, strict=True)) for row in self.rows]

    def column(self, key: str) -> list[Value]:
        index = next(i for i, c in enumerate(self.columns) if c.key == key)
        return [row[index] for row in self.rows]


@dataclass(frozen=True, slots=True)
class Summary:
    requests: int
    first_response: Spread
    resolution: Spread
    deadlines_due: int
    deadlines_missed: int
    open: int
    overdue: int
    unassigned: int
    inbound: dict[str, int]
    outbound: int
    stage_moves: int
    ratings: int = 0  # satisfaction scores given in the period
    rating_average: float | None = None


@dataclass(frozen=True, slots=True)
class Report:
    period: Period
    timezone: str
    summary: Summary
    tables: tuple[Table, ...]
    campaigns: bool  # whether the campaign tables exist

    def table(self, key: str) -> Table:
        return next(t for t in self.tables if t.key == key)

    def as_json(self) -> dict[str, Any]:
        s = self.summary
        return {
            "period": {
                "from": self.period.start.isoformat(),
                "to": self.period.end.isoformat(),
                "first_day": self.period.first.isoformat(),
                "last_day": self.period.last.isoformat(),
                "timezone": self.timezone,
            },
            "summary": {
                "requests": s.requests,
                "answered": s.first_response.count,
                "first_response_median_s": s.first_response.median,
                "first_response_p90_s": s.first_response.p90,
                "resolved": s.resolution.count,
                "resolution_median_s": s.resolution.median,
                "resolution_p90_s": s.resolution.p90,
                "deadlines_due": s.deadlines_due,
                "deadlines_missed": s.deadlines_missed,
                "open": s.open,
                "overdue": s.overdue,
                "unassigned": s.unassigned,
                "inbound": s.inbound,
                "outbound": s.outbound,
                "stage_moves": s.stage_moves,
                "ratings": s.ratings,
                "rating_average": s.rating_average,
            },
            "tables": {t.key: t.records() for t in self.tables},
            "campaigns_available": self.campaigns,
        }


_MANAGER = Column("manager", "manager", "text")
_MEDIAN = Column("median_s", "median", "seconds")
_P90 = Column("p90_s", "p90", "seconds")


def _spread_tables(
    key: str,
    title: str,
    count_columns: tuple[Column, ...],
    groups: dict[str, dict[Any, tuple[list[int], list[float]]]],
    order: dict[str, Callable[[Any], Any]],
    all_days: Sequence[date],
) -> list[Table]:
    """By manager, channel and day: the counts, then median and p90 of the durations."""
    tables = []
    heads = {
        "manager": _MANAGER,
        "channel": Column("channel", "channel", "text"),
        "day": Column("day", "day", "text"),
    }
    for by, found in groups.items():
        # every day of the period, also those with nothing
        keys: Iterable[Any] = (
            [d.isoformat() for d in all_days] if by == "day" else sorted(found, key=order[by])
        )
        rows = []
        for group in keys:
            counts, seconds = found.get(group, ([0] * len(count_columns), []))
            spread = Spread.of(seconds)
            rows.append((group, *counts, spread.median, spread.p90))
        tables.append(
            Table(
                f"{key}_by_{by}",
                f"{title} by {by}",
                (heads[by], *count_columns, _MEDIAN, _P90),
                tuple(rows),
            )
        )
    return tables


def _by_name(name: str | None) -> tuple[bool, str]:
    return (name is None, name or "")


def _response_tables(
    rows: Sequence[q.ConversationTimes], p: Period, tz: ZoneInfo
) -> tuple[list[Table], Spread, Spread, int]:
    order: dict[str, Callable[[Any], Any]] = {
        "manager": _by_name,
        "channel": str,
    }
    first: dict[str, dict[Any, tuple[list[int], list[float]]]] = {
        "manager": {},
        "channel": {},
        "day": {},
    }
    done: dict[str, dict[Any, tuple[list[int], list[float]]]] = {
        "manager": {},
        "channel": {},
        "day": {},
    }
    all_first: list[float] = []
    all_done: list[float] = []
    requests = 0
    for row in rows:
        if p.start <= row.created_at < p.end:
            requests += 1
            answered = row.first_response_at is not None
            seconds = (
                (row.first_response_at - row.created_at).total_seconds()
                if row.first_response_at is not None
                else None
            )
            day = row.created_at.astimezone(tz).date().isoformat()
            for by, group in (("manager", row.manager), ("channel", row.channel), ("day", day)):
                counts, values = first[by].setdefault(group, ([0, 0], []))
                counts[0] += 1
                counts[1] += answered
                if seconds is not None:
                    values.append(seconds)
            if seconds is not None:
                all_first.append(seconds)
        if row.resolved_at is not None and p.start <= row.resolved_at < p.end:
            seconds = (row.resolved_at - row.created_at).total_seconds()
            day = row.resolved_at.astimezone(tz).date().isoformat()
            for by, group in (("manager", row.manager), ("channel", row.channel), ("day", day)):
                counts, values = done[by].setdefault(group, ([0], []))
                counts[0] += 1
                values.append(seconds)
            all_done.append(seconds)
    days = p.days()
    tables = _spread_tables(
        "first_response",
        "first response",
        (Column("requests", "requests"), Column("answered", "answered")),
        first,
        order,
        days,
    )
    tables += _spread_tables(
        "resolution", "resolution", (Column("resolved", "resolved"),), done, order, days
    )
    return tables, Spread.of(all_first), Spread.of(all_done), requests


def _deadline_tables(rows: Sequence[q.DeadlineCount]) -> tuple[list[Table], int, int]:
    tables = []
    for by, title in (("kind", "kind"), ("policy", "policy"), ("manager", "manager")):
        sums: dict[str | None, list[int]] = {}
        for row in rows:
            group = getattr(row, by)
            due_missed = sums.setdefault(group, [0, 0])
            due_missed[0] += row.due
            due_missed[1] += row.missed
        tables.append(
            Table(
                f"breaches_by_{by}",
                f"deadlines by {title}",
                (
                    Column(by, by, "text"),
                    Column("due", "due"),
                    Column("missed", "missed"),
                    Column("missed_pct", "missed %", "percent"),
                ),
                tuple(
                    (group, due, missed, round(100 * missed / due, 1) if due else None)
                    for group, (due, missed) in sorted(sums.items(), key=lambda i: _by_name(i[0]))
                ),
            )
        )
    return tables, sum(r.due for r in rows), sum(r.missed for r in rows)


def _volume_tables(
    rows: Sequence[q.VolumeCount], opened: Counter[str], tz: ZoneInfo
) -> tuple[list[Table], dict[str, int], int]:
    inbound: Counter[str] = Counter()
    outbound: Counter[str] = Counter()
    hours: dict[int, Counter[str]] = defaultdict(Counter)
    for row in rows:
        if row.direction == "in":
            inbound[row.channel] += row.count
            hour = datetime.fromtimestamp(row.quarter * q.QUARTER_S, UTC).astimezone(tz).hour
            hours[hour][row.channel] += row.count
        else:
            outbound[row.channel] += row.count
    extra = (set(inbound) | set(outbound) | set(opened)) - set(CHANNELS)
    channels = [*CHANNELS, *sorted(extra)]
    by_channel = Table(
        "volume_by_channel",
        "volume by channel",
        (
            Column("channel", "channel", "text"),
            Column("inbound", "inbound"),
            Column("outbound", "outbound"),
            Column("requests", "requests"),
        ),
        tuple((ch, inbound[ch], outbound[ch], opened[ch]) for ch in channels),
    )
    by_hour = Table(
        "volume_by_hour",
        f"inbound by hour ({tz.key})",
        (
            Column("hour", "hour"),
            *(Column(ch, ch) for ch in CHANNELS),
            Column("total", "total"),
        ),
        tuple(
            (
                hour,
                *(hours[hour][ch] for ch in CHANNELS),
                sum(hours[hour].values()),
            )
            for hour in range(24)
        ),
    )
    return [by_channel, by_hour], {ch: inbound[ch] for ch in channels}, sum(outbound.values())


def _load_table(rows: Sequence[q.Load]) -> Table:
    return Table(
        "open_load",
        "open requests now",
        (
            _MANAGER,
            Column("open", "open"),
            Column("overdue", "overdue"),
            Column("capacity", "capacity"),
        ),
        tuple((r.manager, r.open, r.overdue, r.capacity) for r in rows),
    )


def _stage_table(rows: Sequence[q.StageMove]) -> Table:
    return Table(
        "stage_moves",
        "stage moves",
        (Column("from", "from", "text"), Column("to", "to", "text"), Column("moves", "moves")),
        tuple(
            (r.old, r.new, r.count) for r in sorted(rows, key=lambda r: (-r.count, r.old, r.new))
        ),
    )


def _campaign_table(
    alive: Sequence[q.CampaignAlive],
    results: dict[int, list[VariantStats]],
    outcomes: dict[int, dict[str, int]],
) -> Table:
    """Each campaign's figures as its own status shows them (storage.campaigns.stats),
    summed over its variants."""
    rows = []
    for c in alive:
        variants = results.get(c.id, [])
        sent = sum(v.sent for v in variants)
        replied = sum(v.replied for v in variants)
        rows.append(
            (
                c.name,
                c.mode,
                c.status,
                sum(v.targeted for v in variants),
                sent,
                sum(v.skipped for v in variants),
                sum(v.delivered for v in variants),
                sum(v.failed for v in variants),
                replied,
                round(100 * replied / sent, 1) if sent else None,
                ", ".join(f"{k}: {n}" for k, n in outcomes.get(c.id, {}).items()) or None,
            )
        )
    return Table(
        "campaigns",
        "campaigns",
        (
            Column("campaign", "campaign", "text"),
            Column("mode", "mode", "text"),
            Column("status", "status", "text"),
            Column("targets", "targets"),
            Column("sent", "sent"),
            Column("skipped", "skipped"),
            Column("delivered", "delivered"),
            Column("failed", "failed"),
            Column("replied", "replied"),
            Column("reply_pct", "reply %", "percent"),
            Column("outcomes", "outcomes", "text"),
        ),
        tuple(rows),
    )


async def build(
    db: Database,
    p: Period,
    tz: ZoneInfo,
    now: datetime,
    *,
    reply_window_days: float = DEFAULT_REPLY_WINDOW_DAYS,
) -> Report:
    """Every report of the period (and the open load as of ``now``).
    ``reply_window_days``: a campaign's reply window where its spec sets none."""
    async with db.read() as conn:
        times = await q.conversation_times(conn, p.start, p.end)
        due = await q.deadline_counts(conn, p.start, min(p.end, now))
        volume = await q.volume(conn, p.start, p.end)
        load = await q.open_load(conn, now)
        stages = await q.stage_moves(conn, p.start, p.end)
        campaigns = await q.campaigns_alive(conn, p.start, p.end)
        results = {
            c.id: await campaigns_q.stats(
                conn, c.id, reply_window=timedelta(days=c.reply_window_days or reply_window_days)
            )
            for c in campaigns or ()
        }
        outcomes = await q.campaign_outcomes(conn, [c.id for c in campaigns]) if campaigns else {}
        scores = await ratings_q.scores(conn, p.start, p.end)
    tables, first, done, requests = _response_tables(times, p, tz)
    deadline_tables, due_count, missed = _deadline_tables(due)
    opened = Counter(r.channel for r in times if p.start <= r.created_at < p.end)
    volume_tables, inbound, outbound = _volume_tables(volume, opened, tz)
    stage_table = _stage_table(stages)
    tables += deadline_tables + volume_tables + [_load_table(load), stage_table]
    if campaigns is not None:
        tables.append(_campaign_table(campaigns, results, outcomes))
    # Imported here: satisfaction builds its tables of this module's Table.
    from hub.reports import satisfaction

    tables += satisfaction.tables(scores, p.days(), tz)
    summary = Summary(
        requests=requests,
        first_response=first,
        resolution=done,
        deadlines_due=due_count,
        deadlines_missed=missed,
        open=sum(r.open for r in load),
        overdue=sum(r.overdue for r in load),
        unassigned=sum(r.open for r in load if r.manager is None),
        inbound=inbound,
        outbound=outbound,
        stage_moves=sum(r[2] for r in stage_table.rows if isinstance(r[2], int)),
        ratings=len(scores),
        rating_average=satisfaction.average([r.score for r in scores]),
    )
    return Report(p, tz.key, summary, tuple(tables), campaigns is not None)


# -- formats ------------------------------------------------------------------


def _cell(value: Value, kind: Kind) -> str:
    if value is None:
        return "—"
    if kind == "seconds" and isinstance(value, int | float):
        return duration(value)
    if kind == "percent":
        return f"{value}%"
    return str(value)


def as_text(report: Report) -> str:
    """Plain-text tables, one after another, under a heading with the period."""
    s = report.summary
    out = [
        f"Report {report.period.label} ({report.timezone})",
        f"requests {s.requests}, answered {s.first_response.count}, "
        f"first response median {duration(s.first_response.median)}, "
        f"p90 {duration(s.first_response.p90)}; resolved {s.resolution.count}, "
        f"median {duration(s.resolution.median)}, p90 {duration(s.resolution.p90)}",
    ]
    for table in report.tables:
        out += ["", f"== {table.title} =="]
        cells = [[c.title for c in table.columns]] + [
            [_cell(v, c.kind) for v, c in zip(row, table.columns, strict=True)]
            for row in table.rows
        ]
        if not table.rows:
            out.append("(none)")
            continue
        widths = [max(len(r[i]) for r in cells) for i in range(len(table.columns))]
        for line in cells:
            out.append(
                "  ".join(
                    cell.ljust(w) if c.kind == "text" else cell.rjust(w)
                    for cell, w, c in zip(line, widths, table.columns, strict=True)
                ).rstrip()
            )
    if not report.campaigns:
        out += ["", "== campaigns ==", "(not available)"]
    return "\n".join(out) + "\n"


def as_csv(report: Report) -> str:
    """One CSV: a ``table`` column naming the table, then each table's header and rows
    (durations in seconds, rounded)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for table in report.tables:
        writer.writerow(["table", *(c.key for c in table.columns)])
        for row in table.rows:
            writer.writerow(
                [
                    table.key,
                    *(_csv_cell(v, c.kind) for v, c in zip(row, table.columns, strict=True)),
                ]
            )
        writer.writerow([])
    return buffer.getvalue()


def table_csv(table: Table) -> str:
    """One table as CSV: its columns' keys, then its rows (durations in seconds, rounded)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.key for c in table.columns])
    for row in table.rows:
        writer.writerow([_csv_cell(v, c.kind) for v, c in zip(row, table.columns, strict=True)])
    return buffer.getvalue()


def _csv_cell(value: Value, kind: Kind) -> Value:
    if value is None:
        return ""
    if kind == "seconds" and isinstance(value, int | float):
        return round(value)
    return value


def summary_text(report: Report, language: str) -> str:
    """A few lines for a manager's phone."""
    s = report.summary
    channels = ", ".join(f"{ch} {n}" for ch, n in s.inbound.items() if n) or "0"
    lines = [
        text(
            "report_title",
            language,
            first=report.period.first.strftime("%d.%m"),
            last=report.period.last.strftime("%d.%m"),
        ),
        text(
            "report_first_response",
            language,
            requests=s.requests,
            answered=s.first_response.count,
            median=duration(s.first_response.median),
            p90=duration(s.first_response.p90),
        ),
        text(
            "report_resolution",
            language,
            resolved=s.resolution.count,
            median=duration(s.resolution.median),
            p90=duration(s.resolution.p90),
        ),
        text("report_deadlines", language, missed=s.deadlines_missed, due=s.deadlines_due),
        text(
            "report_open",
            language,
            open=s.open,
            overdue=s.overdue,
            unassigned=s.unassigned,
        ),
        text("report_inbound", language, total=sum(s.inbound.values()), channels=channels),
    ]
    if s.stage_moves:
        lines.append(text("report_stages", language, moves=s.stage_moves))
    if s.ratings:
        average = f"{s.rating_average:.1f}" if s.rating_average is not None else "—"
        lines.append(text("report_satisfaction", language, count=s.ratings, average=average))
    return "\n".join(lines)
