"""The console's campaigns and call lists: the list with status and progress, the
editor of a draft (the segment with its live count, the script per A/B variant with
a preview rendered for sample clients, quiet hours, channels), start, pause and
resume, a campaign's live progress and results per variant (a chart beside its
table), and a call list's calls with each outcome.

Everything goes through :class:`hub.campaigns.campaigns.Campaigns`, as ``hub
campaign`` and the admin API do: the same checks, the same audit entries (in the
person's name). Whoever may run campaigns through the admin API may do it here
(:mod:`hub.admin.access`); others are refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hub.admin.access import RIGHTS, needed
from hub.campaigns.campaigns import Campaigns
from hub.campaigns.spec import CampaignError, CampaignSpec
from hub.campaigns.status import OUTCOMES, PreviewItem, Status
from hub.console import campaign_work as work
from hub.console.app import (
    ConsoleContext,
    Nav,
    page,
    person_of,
    refusal,
    render,
    requires,
    see_other,
    texts_for,
)
from hub.kernel.http import is_decimal
from hub.kernel.types import Role
from storage import campaigns as q

LISTED = 50  # campaigns the list shows
CALLS_PAGE = 100  # calls a call list's page shows
POLL = "every 1s"  # how often a running campaign's page asks for its progress

# Whoever may create, start and pause campaigns through the admin API.
RUNNERS = frozenset(
    r for r in Role if r is not Role.INTEGRATION and needed("POST", "/api/campaigns") in RIGHTS[r]
)
# Whoever may read them there (a supervisor follows a campaign; a manager makes its calls).
VIEWERS = frozenset(
    r for r in Role if r is not Role.INTEGRATION and needed("GET", "/api/campaigns") in RIGHTS[r]
)
NAV = (Nav("/campaigns", "campaigns.nav", VIEWERS),)

TEXTS = {
    "campaigns.nav": ("Кампании", "Campaigns"),
    "campaigns.title": ("Кампании", "Campaigns"),
    "campaigns.call_lists": ("Обзвоны", "Call lists"),
    "campaigns.all": ("Все кампании", "All campaigns"),
    "campaigns.new": ("Новая кампания", "New campaign"),
    "campaigns.none": ("Кампаний пока нет.", "No campaigns yet."),
    "campaigns.col.id": ("№", "No."),
    "campaigns.col.name": ("Название", "Name"),
    "campaigns.col.mode": ("Вид", "Mode"),
    "campaigns.col.status": ("Состояние", "Status"),
    "campaigns.col.progress": ("Ход", "Progress"),
    "campaigns.col.created": ("Создал", "Created by"),
    "campaigns.mode.message": ("сообщения", "messages"),
    "campaigns.mode.calls": ("обзвон", "calls"),
    "campaigns.status.draft": ("черновик", "draft"),
    "campaigns.status.running": ("идёт", "running"),
    "campaigns.status.paused": ("на паузе", "paused"),
    "campaigns.status.done": ("завершена", "done"),
    "campaigns.progress": ("{done} из {total}", "{done} of {total}"),
    # the editor
    "campaigns.edit": ("Изменить черновик", "Edit the draft"),
    "campaigns.editing": ("Черновик «{name}»", "Draft “{name}”"),
    "campaigns.problems": (
        "Кампания не сохранена: исправьте отмеченные поля.",
        "The campaign is not saved: correct the fields marked.",
    ),
    "campaigns.f.name": ("Название", "Name"),
    "campaigns.f.mode": ("Вид", "Mode"),
    "campaigns.f.channels": ("Каналы (по порядку)", "Channels (in order)"),
    "campaigns.f.quiet_hours": ("Тихие часы", "Quiet hours"),
    "campaigns.h.quiet_hours": (
        "Например 21:00-09:00, по часам клиента; пусто — без тихих часов.",
        "Such as 21:00-09:00, in the client's time; empty for none.",
    ),
    "campaigns.f.reply_window_days": ("Ответ засчитывается, дней", "Replies counted, days"),
    "campaigns.f.managers": ("Кто звонит (имена)", "Who calls (names)"),
    "campaigns.f.call_back_hours": ("Перезвонить через, часов", "Call back after, hours"),
    "campaigns.segment": ("Сегмент", "Segment"),
    "campaigns.h.lists": (
        "Списки — через запятую; пустое поле не сужает выбор.",
        "Lists are comma-separated; an empty field narrows nothing.",
    ),
    "campaigns.f.segment.tags": ("Есть любой из тегов", "Has any of the tags"),
    "campaigns.f.segment.tags_all": ("Есть все теги", "Has all the tags"),
    "campaigns.f.segment.not_tags": ("Нет тегов", "Has none of the tags"),
    "campaigns.f.segment.stages": ("Стадии", "Stages"),
    "campaigns.f.segment.owners": (
        "Ответственные (имена; none — без ответственного)",
        "Owners (names; none for nobody's)",
    ),
    "campaigns.f.segment.sources": ("Источники", "Sources"),
    "campaigns.f.segment.languages": ("Языки", "Languages"),
    "campaigns.f.segment.last_contact_after": (
        "Последний контакт не раньше (ГГГГ-ММ-ДД)",
        "Last contact on or after (YYYY-MM-DD)",
    ),
    "campaigns.f.segment.last_contact_before": (
        "Последний контакт раньше (ГГГГ-ММ-ДД)",
        "Last contact before (YYYY-MM-DD)",
    ),
    "campaigns.f.segment.clients": ("Только клиенты (номера)", "Only clients (numbers)"),
    "campaigns.f.segment.reachable": ("Доступен через", "Reachable over"),
    "campaigns.f.segment.custom": (
        "Поля клиента (строка: ключ = значение, значение)",
        "Client fields (a line: key = value, value)",
    ),
    "campaigns.count": ("Подходит клиентов: {n}", "Clients matching: {n}"),
    "campaigns.count_bad": ("Сегмент с ошибкой: {error}", "The segment has an error: {error}"),
    "campaigns.script": ("Текст и варианты (A/B)", "Script and variants (A/B)"),
    "campaigns.h.script": (
        "Шаблон Jinja2 по полям клиента: {{ client.first_name }}, {{ manager }}. "
        "Пустой вариант не сохраняется; доля — вес варианта.",
        "A Jinja2 template over the client's fields: {{ client.first_name }}, "
        "{{ manager }}. An empty variant is not saved; the share is its weight.",
    ),
    "campaigns.variant": ("Вариант {n}", "Variant {n}"),
    "campaigns.f.name_v": ("Имя варианта", "Variant name"),
    "campaigns.f.weight": ("Доля", "Share"),
    "campaigns.f.subject": ("Тема письма", "Email subject"),
    "campaigns.f.text": ("Текст", "Text"),
    "campaigns.f.fallback": (
        "Запасной текст (если у клиента нет поля)",
        "Fallback text (when the client lacks a field)",
    ),
    "campaigns.preview": ("Предпросмотр", "Preview"),
    "campaigns.preview_client": (
        "Для клиента (номер, необязательно)",
        "For client (number, optional)",
    ),
    "campaigns.preview_go": ("Показать предпросмотр", "Show the preview"),
    "campaigns.preview_for": (
        "Клиент {client}, вариант {variant}, канал: {channel}",
        "Client {client}, variant {variant}, channel: {channel}",
    ),
    "campaigns.preview_skip": ("не отправится ({why})", "not sent ({why})"),
    "campaigns.preview_none": ("В сегменте нет клиентов.", "The segment holds no clients."),
    "campaigns.preview_bad": (
        "Предпросмотр невозможен: исправьте отмеченные поля.",
        "No preview: correct the fields marked.",
    ),
    "campaigns.save": ("Сохранить черновик", "Save the draft"),
    # a campaign's page
    "campaigns.start": ("Запустить", "Start"),
    "campaigns.pause": ("Приостановить", "Pause"),
    "campaigns.resume": ("Продолжить", "Resume"),
    "campaigns.definition": ("Что рассылается", "What goes out"),
    "campaigns.results": ("Результаты по вариантам", "Results per variant"),
    "campaigns.chart": (
        "Диаграмма результатов по вариантам; те же цифры в таблице рядом.",
        "Chart of the results per variant; the same figures are in the table beside it.",
    ),
    "campaigns.figures": ("Цифры диаграммы", "The chart's figures"),
    "campaigns.r.variant": ("вариант", "variant"),
    "campaigns.r.targeted": ("адресатов", "targeted"),
    "campaigns.r.pending": ("ждут", "pending"),
    "campaigns.r.skipped": ("пропущено", "skipped"),
    "campaigns.r.queued": ("в очереди", "queued"),
    "campaigns.r.sent": ("отправлено", "sent"),
    "campaigns.r.delivered": ("доставлено", "delivered"),
    "campaigns.r.failed": ("не доставлено", "failed"),
    "campaigns.r.replied": ("ответили", "replied"),
    "campaigns.r.opted_out": ("отписались", "opted out"),
    "campaigns.outcomes": ("Итоги звонков по вариантам", "Call outcomes per variant"),
    "campaigns.by_manager": ("Итоги звонков по менеджерам", "Call outcomes per manager"),
    "campaigns.calls": ("Звонки", "Calls"),
    "campaigns.calls_of": ("Звонки кампании «{name}»", "Calls of “{name}”"),
    "campaigns.open_calls": ("Список звонков", "The list of calls"),
    "campaigns.o.open": ("не сделан", "not made"),
    "campaigns.o.reached": ("дозвонились", "reached"),
    "campaigns.o.interested": ("интересно", "interested"),
    "campaigns.o.not_interested": ("не интересно", "not interested"),
    "campaigns.o.call_back": ("перезвонить", "call back"),
    "campaigns.o.wrong_number": ("неверный номер", "wrong number"),
    "campaigns.c.client": ("клиент", "client"),
    "campaigns.c.phone": ("телефон", "phone"),
    "campaigns.c.manager": ("менеджер", "manager"),
    "campaigns.c.status": ("состояние", "status"),
    "campaigns.c.outcome": ("итог", "outcome"),
    "campaigns.c.when": ("когда", "when"),
    "campaigns.c.count": ("звонков", "calls"),
    "campaigns.t.pending": ("ждёт", "waiting"),
    "campaigns.t.queued": ("у менеджера", "with the manager"),
    "campaigns.t.skipped": ("пропущен", "skipped"),
    "campaigns.t.done": ("сделан", "made"),
    "campaigns.no_calls": ("Звонков пока нет: кампания не запущена.", "No calls yet: not started."),
    "campaigns.next": ("Дальше", "Next"),
    "campaigns.prev": ("Назад", "Back"),
    "campaigns.refused": ("Не получилось: {error}", "Not done: {error}"),
    "campaigns.not_draft": (
        "Кампания уже запущена: менять можно только черновик.",
        "The campaign has started: only a draft can be changed.",
    ),
}

# The figures of a message campaign's results, in the order shown.
FIGURES = ("targeted", "pending", "skipped", "sent", "delivered", "failed", "replied", "opted_out")
CHARTED = ("sent", "delivered", "failed", "replied", "opted_out", "skipped")
COLOURS = {
    "sent": "#1f5fa8",
    "delivered": "#2e7d32",
    "failed": "#b3261e",
    "replied": "#6a3fa0",
    "opted_out": "#8a5a00",
    "skipped": "#5f6368",
}
CALL_OUTCOMES = ("open", *OUTCOMES)


# -- the chart: bars drawn as SVG in the page (no script, no image request) --------------


@dataclass(frozen=True, slots=True)
class Bar:
    y: int
    label: str
    value: int
    width: int
    colour: str


@dataclass(frozen=True, slots=True)
class Chart:
    bars: tuple[Bar, ...]
    height: int
    groups: tuple[tuple[int, str], ...]  # (y, variant) headings


def chart(rows: Sequence[tuple[str, Sequence[tuple[str, str, int]]]], width: int = 300) -> Chart:
    """Bars per group: ``rows`` is (group, [(key, label, value)]); the longest bar
    spans ``width``."""
    top = max((v for _, bars in rows for _, _, v in bars), default=0) or 1
    y, out, groups = 0, [], []
    for group, bars in rows:
        groups.append((y + 14, group))
        y += 22
        for key, label, value in bars:
            scaled = round(width * value / top)
            out.append(Bar(y, label, value, scaled, COLOURS.get(key, "#1f5fa8")))
            y += 20
        y += 6
    return Chart(tuple(out), max(y, 20), tuple(groups))


# -- the pages --------------------------------------------------------------------------


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not is_decimal(raw):
        raise web.HTTPNotFound()
    return int(raw)


class _Pages:
    def __init__(self, ctx: ConsoleContext, campaigns: Campaigns) -> None:
        self.ctx = ctx
        self.campaigns = campaigns

    def quiet_default(self) -> str:
        return self.ctx.config().campaigns.quiet_hours

    async def listing(self, request: web.Request) -> web.StreamResponse:
        mode = request.query.get("mode", "")
        rows = await self.campaigns.listing(LISTED)
        if mode == "calls":
            rows = [r for r in rows if r.mode == "calls"]
        shown = [(row, await self.campaigns.status(row.id)) for row in rows]
        can_run = person_of(request).role in RUNNERS
        values = {"shown": shown, "calls": mode == "calls", "can_run": can_run}
        return await render(request, "campaigns/list.html", **values)

    async def editor(self, request: web.Request) -> web.StreamResponse:
        """A new campaign's editor, or a draft's."""
        if "id" not in request.match_info:
            form = work.form_of_spec(None, quiet_hours=self.quiet_default())
            return await render(request, "campaigns/edit.html", form=form, campaign=None)
        found = await self._found(request)
        if isinstance(found, web.Response):
            return found
        row, spec = found
        if row.status != "draft":
            return refusal(request, 409, texts_for(request)("campaigns.not_draft"))
        form = work.form_of_spec(spec, quiet_hours=self.quiet_default())
        return await render(request, "campaigns/edit.html", form=form, campaign=row)

    async def save(self, request: web.Request) -> web.StreamResponse:
        """Create the campaign, or change the draft; the form again with its problems."""
        campaign_id = _id(request) if "id" in request.match_info else None
        form = work.form_of_post(await request.post())
        spec = work.check(form)
        actor = person_of(request).actor
        try:
            if spec is not None and campaign_id is None:
                campaign_id = await self.campaigns.create(spec, actor=actor)
                return see_other(f"/campaigns/{campaign_id}")
            if spec is not None and campaign_id is not None:
                await self.campaigns.update(campaign_id, spec, actor=actor)
                return see_other(f"/campaigns/{campaign_id}")
        except CampaignError as exc:
            if not work.owner_error(str(exc), form):
                form.errors["campaign"] = str(exc)
        row = None
        if campaign_id is not None:
            async with self.ctx.db.read() as conn:
                row = await q.get(conn, campaign_id)
        return page(request, "campaigns/edit.html", status=400, form=form, campaign=row)

    async def count(self, request: web.Request) -> web.StreamResponse:
        """The segment's live count, as the editor's segment stands (htmx)."""
        form = work.form_of_post(request.query)
        segment = work.check_segment(form)
        t = texts_for(request)
        if segment is None:
            error = "; ".join(f"{k}: {v}" for k, v in form.errors.items())
            return web.Response(text=t("campaigns.count_bad", error=error))
        try:
            size = await self.campaigns.segment_size(segment)
        except CampaignError as exc:
            return web.Response(text=t("campaigns.count_bad", error=str(exc)))
        return web.Response(text=t("campaigns.count", n=size))

    async def preview(self, request: web.Request) -> web.StreamResponse:
        """The script rendered for a few clients of the segment (or one), as the runner
        renders it (htmx, from the editor)."""
        post = await request.post()
        form = work.form_of_post(post)
        spec = work.check(form)
        raw_client = str(post.get("preview.client", "")).strip()
        raw_id = str(post.get("id", "")).strip()
        if raw_client and not is_decimal(raw_client):
            form.errors["preview.client"] = texts_for(request)("campaigns.preview_bad")
        items: list[PreviewItem] = []
        size = 0
        if spec is not None and not form.errors:
            try:
                size, items = await self.campaigns.preview_spec(
                    spec,
                    int(raw_id) if is_decimal(raw_id) else 0,
                    client_id=int(raw_client) if raw_client else None,
                )
            except CampaignError as exc:
                if not work.owner_error(str(exc), form):
                    form.errors["preview.client"] = str(exc)
        return page(request, "campaigns/_preview.html", form=form, items=items, size=size)

    async def _found(
        self, request: web.Request
    ) -> tuple[q.CampaignRow, CampaignSpec] | web.Response:
        try:
            return await self.campaigns.campaign(_id(request))
        except CampaignError:
            return refusal(request, 404, texts_for(request)("not_found"))

    async def campaign(self, request: web.Request) -> web.StreamResponse:
        found = await self._found(request)
        if isinstance(found, web.Response):
            return found
        row, spec = found
        values = await self._progress_values(request, row.id)
        items: list[Any] = []
        size = 0
        if row.status == "draft":
            with contextlib.suppress(CampaignError):  # an owner removed since: the editor says
                size, items = await self.campaigns.preview(row.id)
        return await render(
            request,
            "campaigns/page.html",
            row=row,
            spec=spec,
            form=work.form_of_spec(spec, quiet_hours=self.quiet_default()),
            items=items,
            size=size,
            **values,
        )

    async def _progress_values(self, request: web.Request, campaign_id: int) -> dict[str, Any]:
        status = await self.campaigns.status(campaign_id)
        t = texts_for(request)
        by_variant: list[tuple[str, str, int]] = []
        if status.campaign.mode == "calls":
            async with self.ctx.db.read() as conn:
                by_variant = await q.outcomes_by_variant(conn, campaign_id)
        return {
            "state": status,
            "figures": FIGURES,
            "chart": _results_chart(status, by_variant, t),
            "by_variant": _outcome_table(by_variant),
            "outcome_keys": CALL_OUTCOMES,
            "poll": POLL,
            "can_run": person_of(request).role in RUNNERS,
        }

    async def progress(self, request: web.Request) -> web.StreamResponse:
        """The progress and results, polled by the page while the campaign runs."""
        found = await self._found(request)
        if isinstance(found, web.Response):
            return found
        values = await self._progress_values(request, found[0].id)
        return page(request, "campaigns/_progress.html", row=found[0], **values)

    async def move(self, request: web.Request) -> web.StreamResponse:
        """Start, pause or resume (a start of a paused campaign resumes it)."""
        campaign_id = _id(request)
        actor = person_of(request).actor
        try:
            if request.match_info["action"] == "pause":
                await self.campaigns.pause(campaign_id, actor=actor)
            else:
                await self.campaigns.start(campaign_id, actor=actor)
        except CampaignError as exc:
            status = 404 if str(exc).startswith("no campaign") else 409
            return refusal(request, status, texts_for(request)("campaigns.refused", error=exc))
        return see_other(f"/campaigns/{campaign_id}")

    async def calls(self, request: web.Request) -> web.StreamResponse:
        """A call list: each call, who makes it and how it went, a page at a time."""
        found = await self._found(request)
        if isinstance(found, web.Response):
            return found
        raw = request.query.get("page", "1")
        number = int(raw) if is_decimal(raw) and 0 < int(raw) < 1_000_000 else 1
        async with self.ctx.db.read() as conn:
            rows = await q.call_list(
                conn, found[0].id, offset=(number - 1) * CALLS_PAGE, limit=CALLS_PAGE + 1
            )
        return await render(
            request,
            "campaigns/calls.html",
            row=found[0],
            calls=rows[:CALLS_PAGE],
            more=len(rows) > CALLS_PAGE,
            number=number,
        )


def _results_chart(status: Status, by_variant: list[tuple[str, str, int]], t: Any) -> Chart:
    if status.campaign.mode == "calls":
        groups: dict[str, list[tuple[str, str, int]]] = {}
        for variant, outcome, n in by_variant:
            groups.setdefault(variant, []).append((outcome, t(f"campaigns.o.{outcome}"), n))
        return chart(list(groups.items()))
    return chart(
        [
            (v.variant, [(k, t(f"campaigns.r.{k}"), int(getattr(v, k))) for k in CHARTED])
            for v in status.variants
        ]
    )


def _outcome_table(by_variant: list[tuple[str, str, int]]) -> list[tuple[str, dict[str, int]]]:
    table: dict[str, dict[str, int]] = {}
    for variant, outcome, n in by_variant:
        table.setdefault(variant, {})[outcome] = n
    return list(table.items())


def add_routes(app: web.Application, ctx: ConsoleContext) -> None:
    if ctx.campaigns is None:
        return
    pages = _Pages(ctx, ctx.campaigns)
    allowed, reading = requires(*RUNNERS), requires(*VIEWERS)
    app.router.add_get("/campaigns", reading(pages.listing))
    app.router.add_get("/campaigns/new", allowed(pages.editor))
    app.router.add_post("/campaigns/new", allowed(pages.save))
    app.router.add_get("/campaigns/count", allowed(pages.count))
    app.router.add_post("/campaigns/preview", allowed(pages.preview))
    app.router.add_get(r"/campaigns/{id:\d+}", reading(pages.campaign))
    app.router.add_get(r"/campaigns/{id:\d+}/edit", allowed(pages.editor))
    app.router.add_post(r"/campaigns/{id:\d+}/edit", allowed(pages.save))
    app.router.add_get(r"/campaigns/{id:\d+}/progress", reading(pages.progress))
    app.router.add_post(r"/campaigns/{id:\d+}/{action:start|pause}", allowed(pages.move))
    app.router.add_get(r"/campaigns/{id:\d+}/calls", reading(pages.calls))
