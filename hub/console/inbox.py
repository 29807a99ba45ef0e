"""The inbox: the requests the desk knows, filtered by status, deadline, assignee
and channel, paged, newest first, and refreshed live as the log moves.

A manager sees what the desk lets them see (the requests of clients nobody keeps,
their own and their team's); supervisors and admins see every request and may
look at anyone's or nobody's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from hub.console.app import (
    WITH_CONVERSATIONS,
    ConsoleContext,
    Nav,
    Person,
    page,
    person_of,
    requires,
    shown_at,
    texts_for,
)
from hub.kernel.types import OVERSEERS
from storage import console as q
from storage.tables import UNRESOLVED

PAGE_SIZE = 50
SOON = timedelta(hours=1)  # "due soon": within the hour

STATUSES = ("active", "open", "pending", "waiting", "resolved")
DEADLINES = ("any", "overdue", "soon")
ASSIGNEES = ("anyone", "me", "nobody")
CHANNELS = ("any", "telegram", "email", "webform")

NAV = (Nav("/inbox", "inbox.nav", WITH_CONVERSATIONS),)
TEXTS = {
    "inbox.nav": ("Входящие", "Inbox"),
    "inbox.title": ("Входящие запросы", "Inbox"),
    "inbox.filters": ("Отбор", "Filters"),
    "inbox.apply": ("Показать", "Show"),
    "inbox.status": ("Статус", "Status"),
    "inbox.status.active": ("все нерешённые", "all unresolved"),
    "inbox.status.open": ("открытые", "open"),
    "inbox.status.pending": ("отвеченные", "answered"),
    "inbox.status.waiting": ("ждём клиента", "waiting on the client"),
    "inbox.status.resolved": ("решённые", "resolved"),
    "inbox.deadline": ("Срок", "Deadline"),
    "inbox.deadline.any": ("любой", "any"),
    "inbox.deadline.overdue": ("просрочен", "overdue"),
    "inbox.deadline.soon": ("в ближайший час", "within the hour"),
    "inbox.assignee": ("Кто ведёт", "Assignee"),
    "inbox.assignee.anyone": ("все", "anyone"),
    "inbox.assignee.me": ("я", "me"),
    "inbox.assignee.nobody": ("никто", "nobody"),
    "inbox.channel": ("Канал", "Channel"),
    "inbox.channel.any": ("любой", "any"),
    "inbox.channel.telegram": ("Telegram", "Telegram"),
    "inbox.channel.email": ("почта", "email"),
    "inbox.channel.webform": ("веб-форма", "web form"),
    "inbox.state.open": ("открыт", "open"),
    "inbox.state.pending": ("отвечен", "answered"),
    "inbox.state.waiting": ("ждём клиента", "waiting on the client"),
    "inbox.state.resolved": ("решён", "resolved"),
    "inbox.bad_value": ("Нет такого значения; показаны все.", "No such value; showing all."),
    "inbox.col.request": ("Запрос", "Request"),
    "inbox.col.client": ("Клиент", "Client"),
    "inbox.col.channel": ("Канал", "Channel"),
    "inbox.col.status": ("Статус", "Status"),
    "inbox.col.assignee": ("Ведёт", "Assignee"),
    "inbox.col.created": ("Создан", "Created"),
    "inbox.col.due": ("Срок", "Due"),
    "inbox.col.last": ("Последнее сообщение", "Last message"),
    "inbox.nobody": ("—", "—"),
    "inbox.unnamed": ("без имени", "no name"),
    "inbox.empty": ("Запросов нет.", "No requests."),
    "inbox.live": ("Список обновляется сам.", "The list updates by itself."),
}


@dataclass(frozen=True, slots=True)
class Choice:
    """The filters as asked (each a known value), with the fields asked wrongly."""

    status: str
    deadline: str
    assignee: str
    channel: str
    page: int
    errors: dict[str, str]

    def query(self, **change: Any) -> str:
        values = {
            "status": self.status,
            "deadline": self.deadline,
            "assignee": self.assignee,
            "channel": self.channel,
            "page": self.page,
        }
        values.update(change)
        return urlencode(values)


def choose(query: Any, bad: str) -> Choice:
    """The filters from the query string; an unknown value is the default, said."""
    errors: dict[str, str] = {}

    def one(name: str, known: tuple[str, ...]) -> str:
        value = query.get(name, known[0])
        if value in known:
            return str(value)
        errors[name] = bad
        return known[0]

    raw_page = query.get("page", "1")
    number = int(raw_page) if raw_page.isascii() and raw_page.isdigit() else 0
    if not 1 <= number <= 100_000:
        errors["page"], number = bad, 1
    return Choice(
        one("status", STATUSES),
        one("deadline", DEADLINES),
        one("assignee", ASSIGNEES),
        one("channel", CHANNELS),
        number,
        errors,
    )


async def where(ctx: ConsoleContext, person: Person, choice: Choice) -> q.InboxFilter:
    """The filter in storage's terms, narrowed to what the person may see."""
    now = ctx.clock.now()
    statuses = UNRESOLVED if choice.status == "active" else (choice.status,)
    visible: tuple[int, ...] | None = None
    if person.role not in OVERSEERS:
        async with ctx.db.read() as conn:
            visible = tuple(await q.team_ids(conn, person.team))
    return q.InboxFilter(
        statuses=statuses,
        channel=None if choice.channel == "any" else choice.channel,
        assignee=person.id if choice.assignee == "me" else None,
        unassigned=choice.assignee == "nobody",
        overdue_before=now if choice.deadline == "overdue" else None,
        due_between=(now, now + SOON) if choice.deadline == "soon" else None,
        visible_to=visible,
    )


@dataclass(frozen=True, slots=True)
class Row:
    """A request as the page shows it."""

    id: int
    client: str
    channel: str
    status: str
    assignee: str | None
    created: str
    due: str | None
    due_class: str
    last: str


def _rows(found: list[q.InboxRow], zone: ZoneInfo, now: datetime, unnamed: str) -> list[Row]:
    rows = []
    for r in found:
        due_class = ""
        if r.due_at is not None and r.status != "resolved":
            due_class = "overdue" if r.due_at < now else "soon" if r.due_at < now + SOON else ""
        last = " ".join((r.last_text or "").split())
        rows.append(
            Row(
                id=r.id,
                client=r.client_name or f"{unnamed} #{r.client_id}",
                channel=r.channel,
                status=r.status,
                assignee=r.assignee,
                created=shown_at(r.created_at, zone),
                due=shown_at(r.due_at, zone) if r.due_at is not None else None,
                due_class=due_class,
                last=last[:140] + ("…" if len(last) > 140 else ""),
            )
        )
    return rows


async def _page_values(request: web.Request, ctx: ConsoleContext) -> dict[str, Any]:
    t = texts_for(request)
    person = person_of(request)
    choice = choose(request.query, t("inbox.bad_value"))
    filter_ = await where(ctx, person, choice)
    async with ctx.db.read() as conn:
        found = await q.inbox_page(
            conn, filter_, limit=PAGE_SIZE + 1, offset=(choice.page - 1) * PAGE_SIZE
        )
    zone = ZoneInfo(ctx.config().hub.timezone)
    rows = _rows(found[:PAGE_SIZE], zone, ctx.clock.now(), t("inbox.unnamed"))
    return {
        "choice": choice,
        "rows": rows,
        "more": len(found) > PAGE_SIZE,
        "options": {
            "status": STATUSES,
            "deadline": DEADLINES,
            "assignee": ASSIGNEES,
            "channel": CHANNELS,
        },
    }


def add_routes(app: web.Application, ctx: ConsoleContext) -> None:
    @requires(*WITH_CONVERSATIONS)
    async def inbox(request: web.Request) -> web.StreamResponse:
        values = await _page_values(request, ctx)
        status = 400 if values["choice"].errors else 200
        return page(request, "inbox/inbox.html", status=status, live=True, **values)

    @requires(*WITH_CONVERSATIONS)
    async def rows(request: web.Request) -> web.StreamResponse:
        """The table's body alone, for the live refresh."""
        return page(request, "inbox/rows.html", **await _page_values(request, ctx))

    app.router.add_get("/inbox", inbox)
    app.router.add_get("/inbox/rows", rows)
