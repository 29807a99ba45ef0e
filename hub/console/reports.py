"""The console's reports: the report set of any period (presets or from/to), each
chart in the page beside the table of its figures (for those who cannot see it),
the satisfaction scores, and every report as CSV.

The figures are those of ``hub report`` and ``GET /api/reports``
(:class:`hub.reports.reporter.Reporter`); whoever may read those through the admin
API may read them here (:mod:`hub.admin.access`). A page and its charts ask for
the same period at once: the report built for it is kept a few seconds, so that
it is read from the database once, not once per chart.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from hub.admin.access import RIGHTS, needed
from hub.console.app import ConsoleContext, Nav, person_of, render, requires
from hub.kernel.types import Role
from hub.reports.reporter import Reporter
from hub.reports.reports import (
    PERIODS,
    Column,
    Report,
    ReportError,
    Table,
    Value,
    duration,
    table_csv,
)

PRESETS = tuple(PERIODS)  # week, month
KEEP_S = 30.0  # how long a period's report is kept for its charts and downloads
KEPT = 16  # reports kept at most

TEXTS = {
    "reports.nav": ("Отчёты", "Reports"),
    "reports.title": ("Отчёты", "Reports"),
    "reports.period": ("Период", "Period"),
    "reports.preset.week": ("7 дней", "7 days"),
    "reports.preset.month": ("30 дней", "30 days"),
    "reports.from": ("С (первый день)", "From (first day)"),
    "reports.to": ("По (последний день)", "To (last day)"),
    "reports.show": ("Показать", "Show"),
    "reports.shown": ("{first} – {last}, часовой пояс {tz}", "{first} – {last}, time zone {tz}"),
    "reports.summary": ("Итоги", "Summary"),
    "reports.csv_all": ("Все отчёты одним CSV", "Every report as one CSV"),
    "reports.csv": ("CSV", "CSV"),
    "reports.csv_of": ("Скачать «{title}» в CSV", "Download “{title}” as CSV"),
    "reports.chart_alt": (
        "График «{title}»; те же цифры в таблице рядом.",
        "Chart “{title}”; the same figures are in the table beside it.",
    ),
    "reports.charts": ("Графики", "Charts"),
    "reports.tables": ("Другие таблицы", "More tables"),
    "reports.none": ("Нет данных за период.", "Nothing in this period."),
    "reports.no_campaigns": ("Кампаний нет.", "No campaigns."),
    "reports.err.date": ("Дата в виде ГГГГ-ММ-ДД", "A date as YYYY-MM-DD"),
    "reports.err.both": ("Укажите оба дня: «с» и «по»", "Give both days: from and to"),
    "reports.err.order": ("Последний день раньше первого", "The last day is before the first"),
    "reports.err.long": ("Не больше 367 дней", "At most 367 days"),
    "reports.err.period": ("Такого периода нет", "No such period"),
    # the summary
    "reports.s.requests": ("Обращений", "Requests"),
    "reports.s.answered": ("С ответом", "Answered"),
    "reports.s.first_median": ("Первый ответ, медиана", "First response, median"),
    "reports.s.first_p90": ("Первый ответ, 90-й перцентиль", "First response, 90th percentile"),
    "reports.s.resolved": ("Решено", "Resolved"),
    "reports.s.resolution_median": ("Решение, медиана", "Resolution, median"),
    "reports.s.resolution_p90": ("Решение, 90-й перцентиль", "Resolution, 90th percentile"),
    "reports.s.deadlines": ("Сроки: пропущено из наступивших", "Deadlines: missed of due"),
    "reports.s.open": (
        "Открыто сейчас (просрочено, без исполнителя)",
        "Open now (overdue, unassigned)",
    ),
    "reports.s.inbound": ("Входящих сообщений", "Inbound messages"),
    "reports.s.outbound": ("Исходящих сообщений", "Outbound messages"),
    "reports.s.stage_moves": ("Смен стадий", "Stage moves"),
    "reports.s.ratings": ("Оценок клиентов (средняя)", "Client ratings (average)"),
    # the tables' titles, by key
    "reports.t.first_response_by_manager": (
        "Первый ответ по менеджерам",
        "First response by manager",
    ),
    "reports.t.first_response_by_channel": ("Первый ответ по каналам", "First response by channel"),
    "reports.t.first_response_by_day": ("Первый ответ по дням", "First response by day"),
    "reports.t.resolution_by_manager": ("Решение по менеджерам", "Resolution by manager"),
    "reports.t.resolution_by_channel": ("Решение по каналам", "Resolution by channel"),
    "reports.t.resolution_by_day": ("Решение по дням", "Resolution by day"),
    "reports.t.breaches_by_kind": ("Сроки по видам", "Deadlines by kind"),
    "reports.t.breaches_by_policy": ("Сроки по правилам SLA", "Deadlines by SLA policy"),
    "reports.t.breaches_by_manager": ("Сроки по менеджерам", "Deadlines by manager"),
    "reports.t.volume_by_channel": ("Сообщения по каналам", "Messages by channel"),
    "reports.t.volume_by_hour": ("Входящие по часам", "Inbound by hour"),
    "reports.t.open_load": ("Открытые обращения сейчас", "Open requests now"),
    "reports.t.stage_moves": ("Смены стадий", "Stage moves"),
    "reports.t.campaigns": ("Кампании", "Campaigns"),
    "reports.t.satisfaction_by_manager": ("Оценки по менеджерам", "Ratings by manager"),
    "reports.t.satisfaction_by_channel": ("Оценки по каналам", "Ratings by channel"),
    "reports.t.satisfaction_by_day": ("Оценки по дням", "Ratings by day"),
    # the columns' titles, by key
    "reports.c.manager": ("менеджер", "manager"),
    "reports.c.channel": ("канал", "channel"),
    "reports.c.day": ("день", "day"),
    "reports.c.requests": ("обращений", "requests"),
    "reports.c.answered": ("с ответом", "answered"),
    "reports.c.median_s": ("медиана", "median"),
    "reports.c.p90_s": ("90-й перцентиль", "90th percentile"),
    "reports.c.resolved": ("решено", "resolved"),
    "reports.c.kind": ("вид", "kind"),
    "reports.c.policy": ("правило", "policy"),
    "reports.c.due": ("наступило", "due"),
    "reports.c.missed": ("пропущено", "missed"),
    "reports.c.missed_pct": ("пропущено, %", "missed %"),
    "reports.c.inbound": ("входящих", "inbound"),
    "reports.c.outbound": ("исходящих", "outbound"),
    "reports.c.hour": ("час", "hour"),
    "reports.c.total": ("всего", "total"),
    "reports.c.open": ("открыто", "open"),
    "reports.c.overdue": ("просрочено", "overdue"),
    "reports.c.capacity": ("предел", "capacity"),
    "reports.c.from": ("из стадии", "from"),
    "reports.c.to": ("в стадию", "to"),
    "reports.c.moves": ("смен", "moves"),
    "reports.c.campaign": ("кампания", "campaign"),
    "reports.c.mode": ("вид", "mode"),
    "reports.c.status": ("состояние", "status"),
    "reports.c.targets": ("адресатов", "targets"),
    "reports.c.sent": ("отправлено", "sent"),
    "reports.c.skipped": ("пропущено", "skipped"),
    "reports.c.delivered": ("доставлено", "delivered"),
    "reports.c.failed": ("не доставлено", "failed"),
    "reports.c.replied": ("ответили", "replied"),
    "reports.c.reply_pct": ("ответили, %", "reply %"),
    "reports.c.outcomes": ("итоги звонков", "outcomes"),
    "reports.c.ratings": ("оценок", "ratings"),
    "reports.c.average": ("средняя", "average"),
    "reports.nobody": ("никто", "nobody"),
}

# Whoever may read the reports through the admin API (GET /api/reports).
READERS = tuple(
    r for r in Role if r is not Role.INTEGRATION and needed("GET", "/api/reports") in RIGHTS[r]
)
NAV = (Nav("/reports", "reports.nav", frozenset(READERS)),)


def said(key: str, language: str, fallback: str = "", **values: object) -> str:
    """One of this section's texts in ``language`` (``fallback`` when there is none)."""
    pair = TEXTS.get(key)
    if pair is None:
        return fallback
    text = pair[1] if language == "en" else pair[0]
    return text.format(**values) if values else text


# -- the period asked for ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Asked:
    """A period as the form gave it: a preset, or the first and last days; ``errors``
    by field (``from``, ``to``, ``period``), each a text key."""

    preset: str | None = None
    first: date | None = None
    last: date | None = None
    raw: Mapping[str, str] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def query(self) -> str:
        """The period as a query string, for the links of the charts and downloads."""
        if self.first is not None and self.last is not None:
            return urlencode({"from": self.first.isoformat(), "to": self.last.isoformat()})
        return urlencode({"period": self.preset or "week"})

    @property
    def key(self) -> tuple[str | None, date | None, date | None]:
        return self.preset, self.first, self.last


def asked(query: Mapping[str, str]) -> Asked:
    """``?period=week|month`` or ``?from=YYYY-MM-DD&to=YYYY-MM-DD`` (the last 7 days
    when nothing is said), every problem by field."""
    raw = {k: query.get(k, "").strip()[:40] for k in ("period", "from", "to")}
    errors: dict[str, str] = {}
    days: dict[str, date | None] = {}
    for name in ("from", "to"):
        days[name] = None
        if raw[name]:
            try:
                days[name] = date.fromisoformat(raw[name])
            except ValueError:
                errors[name] = "reports.err.date"
    first, last = days["from"], days["to"]
    if not errors and (raw["from"] or raw["to"]):
        if first is None or last is None:
            errors["to" if first is not None else "from"] = "reports.err.both"
        elif last < first:
            errors["to"] = "reports.err.order"
        elif (last - first).days > 366:
            errors["to"] = "reports.err.long"
        else:
            return Asked(None, first, last, raw)
    preset = raw["period"] or "week"
    if preset not in PRESETS:
        errors["period"] = "reports.err.period"
    return Asked(preset if preset in PRESETS else None, raw=raw, errors=errors)


# -- what a page shows ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    number: bool


@dataclass(frozen=True, slots=True)
class TableView:
    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    chart: str | None = None  # the chart kind drawn from this table


def cell(value: Value, column: Column, language: str) -> Cell:
    number = column.kind != "text"
    if value is None:
        shown = said("reports.nobody", language) if column.key == "manager" else "—"
        return Cell(shown, number)
    if column.kind == "seconds" and isinstance(value, int | float):
        return Cell(duration(value), number)
    if column.kind == "percent":
        return Cell(f"{value}%", number)
    return Cell(str(value), number)


def table_view(table: Table, language: str, chart: str | None = None) -> TableView:
    return TableView(
        key=table.key,
        title=said(f"reports.t.{table.key}", language, table.title),
        columns=tuple(said(f"reports.c.{c.key}", language, c.title) for c in table.columns),
        rows=tuple(
            tuple(cell(v, c, language) for v, c in zip(row, table.columns, strict=True))
            for row in table.rows
        ),
        chart=chart,
    )


def summary_view(report: Report, language: str) -> list[tuple[str, str]]:
    """The summary's figures as (label, value) pairs."""
    s = report.summary
    average = f"{s.rating_average:.2f}" if s.rating_average is not None else "—"
    figures = (
        ("requests", str(s.requests)),
        ("answered", str(s.first_response.count)),
        ("first_median", duration(s.first_response.median)),
        ("first_p90", duration(s.first_response.p90)),
        ("resolved", str(s.resolution.count)),
        ("resolution_median", duration(s.resolution.median)),
        ("resolution_p90", duration(s.resolution.p90)),
        ("deadlines", f"{s.deadlines_missed} / {s.deadlines_due}"),
        ("open", f"{s.open} ({s.overdue}, {s.unassigned})"),
        ("inbound", str(sum(s.inbound.values()))),
        ("outbound", str(s.outbound)),
        ("stage_moves", str(s.stage_moves)),
        ("ratings", f"{s.ratings} ({average})"),
    )
    return [(said(f"reports.s.{key}", language), value) for key, value in figures]


def chart_sources() -> dict[str, str]:
    """Chart kind -> the table it draws. Imported when first asked: matplotlib takes
    half a second to import, and only the reports need it."""
    from hub.reports import charts

    return dict(charts.SOURCE)  # the charts' own table, so that they never disagree


# -- the pages -------------------------------------------------------------------------------


class _Kept:
    """The reports of the periods asked for in the last few seconds."""

    def __init__(self) -> None:
        self._kept: OrderedDict[tuple[Any, ...], tuple[float, Report]] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> Report | None:
        found = self._kept.get(key)
        if found is None or time.monotonic() - found[0] > KEEP_S:
            return None
        return found[1]

    def put(self, key: tuple[Any, ...], report: Report) -> None:
        self._kept[key] = (time.monotonic(), report)
        self._kept.move_to_end(key)
        while len(self._kept) > KEPT:
            self._kept.popitem(last=False)


class _Reports:
    def __init__(self, ctx: ConsoleContext) -> None:
        self.ctx = ctx
        self.kept = _Kept()
        self._turns: dict[tuple[Any, ...], asyncio.Lock] = {}

    def reporter(self, language: str) -> Reporter:
        config = self.ctx.config()
        return Reporter(
            self.ctx.db,
            self.ctx.clock,
            timezone=config.hub.timezone,
            language=language,
            reply_window_days=config.campaigns.reply_window_days,
        )

    async def report(self, period: Asked, language: str) -> Report:
        """The period's report, built once for a page and its charts."""
        key = (*period.key, self.ctx.config().hub.timezone)
        lock = self._turns.setdefault(key, asyncio.Lock())
        async with lock:
            found = self.kept.get(key)
            if found is None:
                reporter = self.reporter(language)
                found = await reporter.report(
                    reporter.period(period.preset, first=period.first, last=period.last)
                )
                self.kept.put(key, found)
        if not lock.locked():
            self._turns.pop(key, None)
        return found

    async def page(self, request: web.Request) -> web.StreamResponse:
        language = self.ctx.language(person_of(request))
        period = asked(request.query)
        if period.errors:
            return await render(
                request, "reports/index.html", status=400, period=period, report=None
            )
        try:
            report = await self.report(period, language)
        except ReportError:  # the calendar's ends
            period = Asked(raw=period.raw, errors={"to": "reports.err.date"})
            return await render(
                request, "reports/index.html", status=400, period=period, report=None
            )
        sources = await asyncio.to_thread(chart_sources)
        charted = {table: kind for kind, table in sources.items()}
        views = [table_view(t, language, charted.get(t.key)) for t in report.tables]
        return await render(
            request,
            "reports/index.html",
            period=period,
            report=report,
            summary=summary_view(report, language),
            charted=[v for v in views if v.chart is not None],
            others=[v for v in views if v.chart is None],
        )

    async def chart(self, request: web.Request) -> web.StreamResponse:
        from hub.reports import charts

        kind = request.match_info["kind"]
        period = asked(request.query)
        if kind not in charts.KINDS or period.errors:
            raise web.HTTPNotFound()
        language = self.ctx.language(person_of(request))
        report = await self.report(period, language)
        png = await asyncio.to_thread(charts.render, report, kind, language)
        return web.Response(
            body=png, content_type="image/png", headers={"Cache-Control": "private, max-age=60"}
        )

    async def download(self, request: web.Request) -> web.StreamResponse:
        """``/reports.csv`` every report; ``/reports/{key}.csv`` one of them."""
        from hub.reports.reports import as_csv

        period = asked(request.query)
        if period.errors:
            raise web.HTTPNotFound()
        report = await self.report(period, self.ctx.language(person_of(request)))
        key = request.match_info.get("key")
        if key is None:
            body, name = as_csv(report), "reports"
        else:
            table = next((t for t in report.tables if t.key == key), None)
            if table is None:
                raise web.HTTPNotFound()
            body, name = table_csv(table), key
        first, last = report.period.first.isoformat(), report.period.last.isoformat()
        return web.Response(
            text=body,
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}_{first}_{last}.csv"'},
        )


def add_routes(app: web.Application, ctx: ConsoleContext) -> None:
    reports = _Reports(ctx)
    allowed = requires(*READERS)
    app.router.add_get("/reports", allowed(reports.page))
    app.router.add_get("/reports.csv", allowed(reports.download))
    app.router.add_get("/reports/{key:[a-z_]+}.csv", allowed(reports.download))
    app.router.add_get("/reports/chart/{kind:[a-z_]+}.png", allowed(reports.chart))
