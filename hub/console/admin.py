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
from hub.console.app import (
    ConsoleContext,
    Nav,
    person_of,
    refusal,
    render,
    requires,
    see_other,
    shown_at,
)
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
    when = shown_at(view.changed_at, zone)
    return t("admin.source.console", who=view.changed_by or "-", when=when)


class Pages:
    """The section's pages over the hub's settings."""

    def __init__(self, ctx: ConsoleContext) -> None:
        self.ctx = ctx

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.ctx.config().hub.timezone)

    def known(self, request: web.Request) -> tuple[Settings, str] | web.Response:
        """The settings and the key the path names, or the page saying why not."""
        settings, key = self.ctx.settings, request.match_info["key"]
        if settings is None:
            return refusal(request, 503, texts(request)("admin.unavailable"))
        if key not in EDITABLE:
            return refusal(request, 404, texts(request)("admin.unknown_key"))
        return settings, key

    async def editor(
        self,
        request: web.Request,
        settings: Settings,
        key: str,
        *,
        text: str | None = None,
        problems: list[str] | None = None,
    ) -> web.StreamResponse:
        """The key's editor: the value in force (or what was typed, with its problems)."""
        view = await settings.view(key)
        done = request.query.get("done")
        response = await render(
            request,
            "admin/edit.html",
            view=view,
            text=view.toml if text is None else text,
            problems=problems or [],
            source=_source(request, view, self.zone()),
            done=done if done in ("saved", "unset", "not_set") else None,
        )
        response.set_status(422 if problems else 200)
        return response

    async def index(self, request: web.Request) -> web.StreamResponse:
        settings = self.ctx.settings
        if settings is None:
            return refusal(request, 503, texts(request)("admin.unavailable"))
        rows = [(v, _source(request, v, self.zone())) for v in await settings.views()]
        return await render(request, "admin/index.html", rows=rows)

    async def show(self, request: web.Request) -> web.StreamResponse:
        found = self.known(request)
        return found if isinstance(found, web.Response) else await self.editor(request, *found)

    async def save(self, request: web.Request) -> web.StreamResponse:
        found = self.known(request)
        if isinstance(found, web.Response):
            return found
        settings, key = found
        text = str((await request.post()).get("toml", ""))
        try:
            await settings.set(key, from_toml(key, text), person_of(request).actor)
        except ConfigError as exc:
            return await self.editor(request, settings, key, text=text, problems=exc.problems)
        return see_other(f"/admin/{key}?done=saved")

    async def unset(self, request: web.Request) -> web.StreamResponse:
        found = self.known(request)
        if isinstance(found, web.Response):
            return found
        settings, key = found
        try:
            await settings.unset(key, person_of(request).actor)
        except NotSet:
            return see_other(f"/admin/{key}?done=not_set")
        except ConfigError as exc:
            return await self.editor(request, settings, key, problems=exc.problems)
        return see_other(f"/admin/{key}?done=unset")


def add_routes(app: web.Application, ctx: ConsoleContext) -> None:
    pages = Pages(ctx)
    admins_only = requires(*ADMINS)
    app.router.add_get("/admin", admins_only(pages.index))
    app.router.add_get("/admin/{key}", admins_only(pages.show))
    app.router.add_post("/admin/{key}", admins_only(pages.save))
    app.router.add_post("/admin/{key}/unset", admins_only(pages.unset))
