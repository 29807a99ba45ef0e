"""The reports as a service: a period's report, its charts, and the staff's digest.

Implements :class:`hub.kernel.ports.StaffReports` over :mod:`hub.reports.reports`
(the figures) and :mod:`hub.reports.charts` (the pictures).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo

from hub.config import DEFAULT_REPLY_WINDOW_DAYS
from hub.kernel.clock import Clock
from hub.kernel.ports import Chart, ReportDigest
from hub.reports.reports import Period, Report, ReportError, build, period, summary_text
from storage import Database


@dataclass
class Reporter:
    """Reports over the hub's database in ``timezone``; the staff side asks it for
    a digest (:class:`hub.kernel.ports.StaffReports`)."""

    db: Database
    clock: Clock
    timezone: str = "UTC"
    language: str = "ru"
    telegram_charts: tuple[str, ...] = (
        "first_response",
        "volume_hour",
        "load",
        "breaches",
        "satisfaction",
    )
    reply_window_days: float = DEFAULT_REPLY_WINDOW_DAYS  # campaigns.reply_window_days
    tz: ZoneInfo = field(init=False)

    def __post_init__(self) -> None:
        self.tz = ZoneInfo(self.timezone)

    def period(
        self, name: str | None = None, *, first: date | None = None, last: date | None = None
    ) -> Period:
        return period(name, self.clock.now(), self.tz, first=first, last=last)

    async def report(self, p: Period) -> Report:
        return await build(
            self.db, p, self.tz, self.clock.now(), reply_window_days=self.reply_window_days
        )

    async def chart(self, kind: str, p: Period, language: str | None = None) -> bytes:
        # Imported here: matplotlib takes half a second to import, and only a chart
        # needs it, not every command and process that builds a Reporter.
        from hub.reports import charts

        if kind not in charts.KINDS:
            raise ReportError(f"kind: must be one of {', '.join(charts.KINDS)} (got {kind!r})")
        report = await self.report(p)
        return await asyncio.to_thread(charts.render, report, kind, language or self.language)

    async def digest(self, period_name: str, language: str) -> ReportDigest:
        from hub.reports import charts  # as in chart(): only when drawn

        report = await self.report(self.period(period_name))
        kinds = [k for k in self.telegram_charts if charts.has_data(report, k)]

        def draw() -> list[Chart]:
            return [
                Chart(f"{k}.png", charts.title(k, language), charts.render(report, k, language))
                for k in kinds
            ]

        return ReportDigest(summary_text(report, language), tuple(await asyncio.to_thread(draw)))
