"""Admin: the config's reloadable settings (managers, teams, hours, rules, SLA
policies, stages, texts, canned answers, forms) seen with where each value comes
from, and edited as TOML as the file writes it; a change is checked as ``hub
check-config`` checks the file (refused with each problem's key path, nothing
stored), kept in the database over the file and followed by every instance at once.
The file, its comments and its ``${NAME}`` secrets are never written. Admins only.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiohttp import web

from hub.admin.settings import NotSet, Settings, View
from hub.config.overrides import EDITABLE, from_toml
from hub.console.app import ConsoleContext, Nav, person_of, refusal, render, requires, see_other
from hub.console.app import texts_for as texts
from hub.kernel.errors import ConfigError
from hub.kernel.types import Role

ADMINS = frozenset({Role.ADMIN})
NAV = (Nav("/admin", "admin.nav", ADMINS),)
TEXTS = {
    "admin.nav": ("Настройки", "Settings"),
    "admin.title": ("Настройки", "Settings"),
    "admin.intro": (
        "Значения из файла конфигурации и заданные здесь. Заданное здесь хранится в базе, "
        "заменяет значение файла и сразу действует на всех экземплярах; файл не меняется.",
        "Values from the config file and those set here. What is set here is kept in the "
        "database, replaces the file's value and takes effect on every instance at once; "
        "the file is never changed.",
    ),
    "admin.col.key": ("Ключ", "Key"),
    "admin.col.what": ("Что это", "What it is"),
    "admin.col.source": ("Откуда", "Comes from"),
    "admin.source.file": ("файл", "the file"),
    "admin.source.default": ("по умолчанию (нет в файле)", "default (not in the file)"),
    "admin.source.console": ("задано здесь: {who}, {when}", "set here: {who}, {when}"),
    "admin.edit": ("Изменить {name}", "Edit {name}"),
    "admin.value": ("Значение (TOML, как в файле)", "Value (TOML, as the file writes it)"),
    "admin.value_hint": (
        "Только этот ключ. ${ИМЯ} (переменные окружения) — только в файле: "
        "секреты здесь не хранятся и не показываются.",
        "This key only. ${NAME} (environment variables) belongs in the file alone: "
        "secrets are neither kept nor shown here.",
    ),
    "admin.file_value": ("Значение в файле", "The file's value"),
    "admin.file_none": ("В файле этого ключа нет.", "The file does not write this key."),
    "admin.save": ("Сохранить", "Save"),
    "admin.unset": ("Вернуть значение файла", "Back to the file's value"),
    "admin.saved": ("Сохранено и применено.", "Saved and in effect."),
    "admin.unset_done": ("Снова действует значение файла.", "The file's value is in effect again."),
    "admin.not_set": ("Здесь ничего не задано.", "Nothing is set here."),
    "admin.refused": (
        "Не сохранено: конфигурация с этим значением не проходит проверку.",
        "Not saved: the config with this value does not pass its checks.",
    ),
    "admin.unknown_key": ("Такой настройки нет.", "No such setting."),
    "admin.unavailable": (
        "Настройки недоступны: консоль запущена без хаба.",
        "Settings are unavailable: the console runs without a hub.",
    ),
    "admin.back": ("← Все настройки", "← All settings"),
    "admin.key.managers": (
        "Менеджеры: роли, команды, часы, навыки, нагрузка",
        "Managers: roles, teams, hours, skills, capacity",
    ),
    "admin.key.routing": ("Маршрутизация: стратегия и правила", "Routing: strategy and rules"),
    "admin.key.sla": ("Политики SLA", "SLA policies"),
    "admin.key.stages": ("Стадии клиентов и их правила", "Client stages and their rules"),
    "admin.key.replies": (
        "Автоответы: приветствие, вне рабочих часов",
        "Auto-replies: greeting, out of hours",
    ),
    "admin.key.desk": ("Шаблоны ответов менеджеров", "Managers' canned answers"),
    "admin.key.webform.forms": ("Веб-формы и их поля", "Web forms and their fields"),
    "admin.key.hub.hours": ("Рабочие часы", "Working hours"),
    "admin.key.reminders.follow_up_days": (
        "Напоминать о клиенте через столько дней",
        "Follow up on a client after this many days",
    ),
    "admin.key.reminders.stages": ("Напоминания по стадиям", "Follow-ups by stage"),
    "admin.key.reminders.scan_every_s": (
        "Как часто искать, о ком напомнить (секунды)",
        "How often follow-ups are looked for (seconds)",
    ),
    "admin.key.privacy": ("Хранение личных данных", "Keeping personal data"),
    "admin.key.waiting": (
        "Запросы, ждущие клиента: когда закрывать",
        "Requests waiting on the client: when to close them",
    ),
}


def _source(request: web.Request, view: View, zone: ZoneInfo) -> str:
    t = texts(request)
    if view.source != "console" or view.changed_at is None:
        return t(f"admin.source.{view.source}")
    when = view.changed_at.astimezone(zone).strftime("%d.%m.%Y %H:%M")
    return t("admin.source.console", who=view.changed_by or "-", when=when)


def add_routes(app: web.Application, ctx: ConsoleContext) -> None:
    def settings_or_none() -> Settings | None:
        return ctx.settings

    def zone() -> ZoneInfo:
        return ZoneInfo(ctx.config().hub.timezone)

    async def editor(
        request: web.Request,
        settings: Settings,
        key: str,
        *,
        text: str | None = None,
        problems: list[str] | None = None,
        status: int = 200,
    ) -> web.StreamResponse:
        view = await settings.view(key)
        done = request.query.get("done")
        response = await render(
            request,
            "admin/edit.html",
            view=view,
            text=view.toml if text is None else text,
            problems=problems or [],
            source=_source(request, view, zone()),
            done=done if done in ("saved", "unset", "not_set") else None,
        )
        response.set_status(status)
        return response

    def known(request: web.Request) -> tuple[Settings, str] | web.Response:
        settings, key = settings_or_none(), request.match_info["key"]
        if settings is None:
            return refusal(request, 503, texts(request)("admin.unavailable"))
        if key not in EDITABLE:
            return refusal(request, 404, texts(request)("admin.unknown_key"))
        return settings, key

    @requires(*ADMINS)
    async def index(request: web.Request) -> web.StreamResponse:
        settings = settings_or_none()
        if settings is None:
            return refusal(request, 503, texts(request)("admin.unavailable"))
        views = await settings.views()
        rows = [(v, _source(request, v, zone())) for v in views]
        return await render(request, "admin/index.html", rows=rows)

    @requires(*ADMINS)
    async def show(request: web.Request) -> web.StreamResponse:
        found = known(request)
        return found if isinstance(found, web.Response) else await editor(request, *found)

    @requires(*ADMINS)
    async def save(request: web.Request) -> web.StreamResponse:
        found = known(request)
        if isinstance(found, web.Response):
            return found
        settings, key = found
        form = await request.post()
        text = str(form.get("toml", ""))
        try:
            await settings.set(key, from_toml(key, text), person_of(request).actor)
        except ConfigError as exc:
            return await editor(
                request, settings, key, text=text, problems=exc.problems, status=422
            )
        return see_other(f"/admin/{key}?done=saved")

    @requires(*ADMINS)
    async def unset(request: web.Request) -> web.StreamResponse:
        found = known(request)
        if isinstance(found, web.Response):
            return found
        settings, key = found
        try:
            await settings.unset(key, person_of(request).actor)
        except NotSet:
            return see_other(f"/admin/{key}?done=not_set")
        except ConfigError as exc:
            return await editor(request, settings, key, problems=exc.problems, status=422)
        return see_other(f"/admin/{key}?done=unset")

    app.router.add_get("/admin", index)
    app.router.add_get("/admin/{key}", show)
    app.router.add_post("/admin/{key}", save)
    app.router.add_post("/admin/{key}/unset", unset)
