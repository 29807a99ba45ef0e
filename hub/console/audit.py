"""The audit log: who did what, about which client, when; filtered by who, what,
client and period (as ``hub audit`` and ``GET /api/audit`` filter it), newest first,
paged. For the roles with the admin API's audit right."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from hub.admin.access import RIGHTS, Right
from hub.admin.audit import audit_filter, read
from hub.console.app import EVERYONE, ConsoleContext, Nav, render, requires, shown_at
from hub.console.app import texts_for as texts
from hub.kernel.http import BadParameter
from storage.audit import AuditEntry, AuditFilter

PAGE_SIZE = 50
MAX_PAGE = 10_000
FIELDS = ("actor", "action", "client", "since", "until")
AUDITORS = frozenset(r for r in EVERYONE if Right.AUDIT in RIGHTS[r])

NAV = (Nav("/audit", "audit.nav", AUDITORS),)
TEXTS = {
    "audit.nav": ("Журнал", "Audit log"),
    "audit.title": ("Журнал действий", "Audit log"),
    "audit.filters": ("Отбор", "Filters"),
    "audit.actor": ("Кто", "Who"),
    "audit.actor_hint": (
        "console:ИМЯ, api:ИМЯ, telegram:ID, cli",
        "console:NAME, api:NAME, telegram:ID, cli",
    ),
    "audit.action": ("Что", "What"),
    "audit.action_hint": (
        "read, merge, settings.set, reload…",
        "read, merge, settings.set, reload…",
    ),
    "audit.client": ("Клиент (номер)", "Client (number)"),
    "audit.since": ("С даты", "From"),
    "audit.until": ("По дату", "Until"),
    "audit.apply": ("Показать", "Show"),
    "audit.col.at": ("Когда", "When"),
    "audit.col.actor": ("Кто", "Who"),
    "audit.col.action": ("Что", "What"),
    "audit.col.object": ("О чём", "About"),
    "audit.col.details": ("Подробности", "Details"),
    "audit.empty": ("Записей нет.", "No entries."),
    "audit.bad_page": ("Нет такой страницы; показана первая.", "No such page; showing the first."),
}


@dataclass(frozen=True, slots=True)
class Line:
    """An entry as the page shows it."""

    at: str
    actor: str
    action: str
    about: str
    client_id: int | None
    details: str


def _line(entry: AuditEntry, zone: ZoneInfo) -> Line:
    about = entry.object_type or ""
    if entry.object_id is not None:
        about = f"{about} #{entry.object_id}"
    details = json.dumps(entry.details, ensure_ascii=False) if entry.details else ""
    return Line(
        at=shown_at(entry.at, zone, seconds=True),
        actor=entry.actor,
        action=entry.action,
        about=about,
        client_id=entry.object_id if entry.object_type == "client" else None,
        details=details[:300] + ("…" if len(details) > 300 else ""),
    )


def _asked(query: Any) -> tuple[dict[str, str], AuditFilter, dict[str, str]]:
    """The filters as typed, as storage takes them, and the field a bad one names."""
    asked = {name: str(query.get(name, "")).strip()[:200] for name in FIELDS}
    errors: dict[str, str] = {}
    try:
        where = audit_filter(**{k: v or None for k, v in asked.items()})
    except BadParameter as exc:
        field = str(exc).split(":", 1)[0]
        errors[field if field in FIELDS else "actor"] = str(exc)
        where = AuditFilter()
    return asked, where, errors


def _page(query: Any, errors: dict[str, str], bad: str) -> int:
    raw = str(query.get("page", "1"))
    if raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= MAX_PAGE:
        return int(raw)
    errors["page"] = bad
    return 1


def add_routes(app: web.Application, ctx: ConsoleContext) -> None:
    @requires(*AUDITORS)
    async def audit_log(request: web.Request) -> web.StreamResponse:
        asked, where, errors = _asked(request.query)
        number = _page(request.query, errors, texts(request)("audit.bad_page"))
        found = [] if errors.keys() - {"page"} else await _read(ctx, where, number)
        zone = ZoneInfo(ctx.config().hub.timezone)

        def link(n: int) -> str:
            return "/audit?" + urlencode({**{k: v for k, v in asked.items() if v}, "page": n})

        response = await render(
            request,
            "admin/audit.html",
            asked=asked,
            errors=errors,
            lines=[_line(e, zone) for e in found[:PAGE_SIZE]],
            number=number,
            newer=link(number - 1) if number > 1 else None,
            older=link(number + 1) if len(found) > PAGE_SIZE else None,
        )
        response.set_status(400 if errors else 200)
        return response

    app.router.add_get("/audit", audit_log)


async def _read(ctx: ConsoleContext, where: AuditFilter, number: int) -> list[AuditEntry]:
    """A page of entries and one more (whether an older page exists)."""
    return await read(ctx.db, where, PAGE_SIZE + 1, (number - 1) * PAGE_SIZE)
