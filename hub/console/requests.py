"""A request's page (``/requests/{id}``): the client's card, the log newest last
(paged back, its tail live), the request's status, assignee and deadlines, the
answer box (answers, notes, templates) and the desk's actions.

What the page does goes through :mod:`hub.console.work`, that is through the
desk as the signed-in person's manager: the desk's rights, the desk's outbox.
Every form carries a token of what it does (a form posted twice does it once);
a page posted back shows what the desk said, in a status region.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from hub.console.app import ConsoleContext, person_of, refusal, render, texts_for
from hub.console.work import (
    ACTIONS,
    BadInput,
    Done,
    Missing,
    Refused,
    RequestPage,
    RequestWork,
    new_token,
)
from hub.kernel import loggers
from hub.kernel.types import ManagerRef
from storage.requests import NEWEST

log = loggers.console

TEXTS: dict[str, tuple[str, str]] = {
    "request.title": ("Обращение №{id}", "Request #{id}"),
    "request.client": ("Клиент", "Client"),
    "request.stage": ("Стадия", "Stage"),
    "request.owner": ("Ответственный", "Owner"),
    "request.identities": ("Контакты", "Identities"),
    "request.tags": ("Метки", "Tags"),
    "request.reminders": ("Напоминания", "Reminders"),
    "request.blocked": ("Клиент заблокирован", "The client is blocked"),
    "request.open_requests": ("Открытых обращений", "Open requests"),
    "request.client_page": ("Карточка клиента", "The client's page"),
    "request.about": ("Обращение", "The request"),
    "request.status": ("Статус", "Status"),
    "request.status.open": ("открыто", "open"),
    "request.status.pending": ("ждёт ответа клиента", "answered"),
    "request.status.waiting": ("ждём клиента", "waiting on the client"),
    "request.status.resolved": ("закрыто", "resolved"),
    "request.channel": ("Канал", "Channel"),
    "request.subject": ("Тема", "Subject"),
    "request.assignee": ("Исполнитель", "Assignee"),
    "request.nobody": ("никто", "nobody"),
    "request.created": ("Создано", "Opened"),
    "request.first_response": ("Первый ответ", "First response"),
    "request.due": ("Срок ответа", "Response due"),
    "request.waiting_since": ("Ждём клиента с", "Waiting on the client since"),
    "request.resolved_at": ("Закрыто", "Resolved"),
    "request.deadlines": ("Сроки", "Deadlines"),
    "request.deadline.first_response": ("первый ответ", "first response"),
    "request.deadline.next_response": ("следующий ответ", "next response"),
    "request.deadline.resolution": ("решение", "resolution"),
    "request.deadline.open": ("идёт", "running"),
    "request.deadline.met": ("выполнен", "met"),
    "request.timeline": ("Переписка", "Conversation"),
    "request.earlier": ("Раньше", "Earlier"),
    "request.nothing": ("Пока ничего нет", "Nothing yet"),
    "request.direction.in": ("клиент", "client"),
    "request.direction.out": ("ответ", "answer"),
    "request.direction.note": ("заметка", "note"),
    "request.direction.event": ("событие", "event"),
    "request.delivery.pending": ("отправляется", "sending"),
    "request.delivery.sent": ("доставлено", "sent"),
    "request.delivery.failed": ("не доставлено", "not delivered"),
    "request.other_request": ("обращение №{id}", "request #{id}"),
    "request.files": ("Файлы", "Files"),
    "request.answer_box": ("Ответ", "Answer"),
    "request.answer_to": (
        "Ответ уйдёт в обращение №{id} ({channel}) — последнее обращение клиента, как в Telegram.",
        "The answer goes to request #{id} ({channel}), the client's latest, as in Telegram.",
    ),
    "request.text": ("Текст", "Text"),
    "request.send": ("Отправить клиенту", "Send to the client"),
    "request.note": ("Сохранить заметку", "Save as a note"),
    "request.note_hint": (
        "Заметку видят только сотрудники, клиенту она не уходит.",
        "A note is seen by staff only; it never goes to the client.",
    ),
    "request.template": ("Шаблон", "Template"),
    "request.send_template": ("Отправить шаблон", "Send the template"),
    "request.actions": ("Действия", "Actions"),
    "request.take": ("Взять в работу", "Take"),
    "request.resolve": ("Закрыть", "Resolve"),
    "request.wait": ("Ждём клиента", "Wait on the client"),
    "request.reopen": ("Открыть заново", "Reopen"),
    "request.transfer": ("Передать", "Transfer"),
    "request.transfer_to": ("Кому", "To"),
    "request.remind": ("Напомнить", "Remind"),
    "request.remind_what": ("Когда и о чём", "When and what"),
    "request.remind_hint": (
        "Как в Telegram: «завтра 10:00 перезвонить», «через 2 часа».",
        "As in Telegram: “tomorrow 10:00 call back”, “in 2 hours”.",
    ),
    "request.sent": ("Ответ отправлен клиенту", "The answer is on its way to the client"),
    "request.noted": ("Заметка сохранена", "The note is saved"),
    "request.empty_text": ("Напишите текст", "Write something"),
    "request.long_text": ("Слишком длинный текст (до 10 000 знаков)", "Too long (10,000 at most)"),
    "request.control_text": (
        "В тексте есть управляющие символы",
        "The text has control characters",
    ),
    "request.bad_token": (
        "Форма повреждена: откройте страницу заново",
        "The form is damaged: open the page again",
    ),
    "request.bad_action": ("Такого действия нет", "No such action"),
    "request.bad_argument": ("Недопустимый текст", "Not a text this takes"),
    "request.no_template": ("Выберите шаблон", "Choose a template"),
    "request.live": ("Новые сообщения появляются сами", "New messages appear by themselves"),
}


class _Form:
    """A posted form's values as text (a file or a missing field: empty)."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __getitem__(self, name: str) -> str:
        value = self.data.get(name)
        return value if isinstance(value, str) else ""


def _id(raw: str) -> int | None:
    """An id as a path or a query gives it: ASCII digits within the column's range."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or int(raw) > NEWEST:
        return None
    return int(raw)


def _conversation_id(request: web.Request) -> int:
    found = _id(request.match_info["id"])
    if found is None:
        raise web.HTTPNotFound()
    return found


def _cursor(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    found = _id(raw)
    if found is None:
        raise web.HTTPBadRequest(text="a cursor is an id: ASCII digits")
    return found


class RequestPages:
    """The handlers of ``/requests/{id}`` over one :class:`RequestWork`."""

    def __init__(self, ctx: ConsoleContext, work: RequestWork) -> None:
        self.ctx = ctx
        self.work = work

    def _manager(self, request: web.Request) -> ManagerRef:
        return person_of(request).as_manager()

    async def show(
        self,
        request: web.Request,
        *,
        done: Done | None = None,
        error: BadInput | None = None,
        text: str = "",
        status: int = 200,
    ) -> web.StreamResponse:
        """The page (``?before=ID``: the log before that entry)."""
        conversation = _conversation_id(request)
        before = _cursor(request.query.get("before"))
        shown = await self.work.page(self._manager(request), conversation, before=before)
        await self.ctx.audit_first_read(request, shown.card.id)
        response = await render(
            request,
            "request/page.html",
            page=shown,
            actions=ACTIONS,
            token=new_token,
            done=done,
            error=error,
            text=text,
            live=self.ctx.live is not None,
        )
        response.set_status(status)
        return response

    async def earlier(self, request: web.Request) -> web.StreamResponse:
        """The log's page before ``?before=ID`` (htmx puts it above the shown one)."""
        return await self._part(request, "request/earlier.html")

    async def tail(self, request: web.Request) -> web.StreamResponse:
        """What was logged after ``?after=ID``, and the tail that waits for more."""
        conversation = _conversation_id(request)
        after = _cursor(request.query.get("after")) or 0
        manager = self._manager(request)
        entries = await self.work.tail(manager, conversation, after)
        return await render(
            request,
            "request/tail.html",
            conversation=conversation,
            entries=entries,
            after=entries[-1].id if entries else after,
        )

    async def status(self, request: web.Request) -> web.StreamResponse:
        """The request's status, assignee and deadlines as they are now."""
        conversation = _conversation_id(request)
        row, deadlines = await self.work.status(self._manager(request), conversation)
        return await render(
            request,
            "request/status.html",
            request_row=row,
            deadlines=deadlines,
        )

    async def _part(self, request: web.Request, template: str) -> web.StreamResponse:
        conversation = _conversation_id(request)
        before = _cursor(request.query.get("before"))
        shown = await self.work.page(self._manager(request), conversation, before=before)
        return await render(request, template, page=shown)

    async def answer(self, request: web.Request) -> web.StreamResponse:
        """An answer (``mode=answer``) or a note (``mode=note``) from the answer box."""
        form = _Form(await request.post())
        note = form["mode"] == "note"
        try:
            done = await self.work.answer(
                self._manager(request),
                _conversation_id(request),
                form["text"],
                token=form["token"],
                note=note,
            )
        except BadInput as exc:
            return await self.show(request, error=exc, text=form["text"], status=422)
        return await self._said(request, done, "request.noted" if note else "request.sent")

    async def template(self, request: web.Request) -> web.StreamResponse:
        form = _Form(await request.post())
        try:
            done = await self.work.template(
                self._manager(request),
                _conversation_id(request),
                form["template"],
                token=form["token"],
            )
        except BadInput as exc:
            return await self.show(request, error=exc, status=422)
        return await self._said(request, done, "request.sent")

    async def act(self, request: web.Request) -> web.StreamResponse:
        """One of the desk's actions; ``argument``: whom to transfer to, when to remind."""
        form = _Form(await request.post())
        action = form["action"]
        argument = form[f"argument_{action}"] if action in ("transfer", "remind") else ""
        try:
            done = await self.work.act(
                self._manager(request),
                _conversation_id(request),
                action,
                argument,
                token=form["token"],
            )
        except BadInput as exc:
            return await self.show(request, error=exc, status=422)
        return await self._said(request, done, "")

    async def _said(self, request: web.Request, done: Done, given: str) -> web.StreamResponse:
        """The page again with what the desk said (or the page's own word for an
        answer given); a refusal is the 403 page."""
        if not done.said and given:
            done = Done(texts_for(request)(given), done.ok)
        return await self.show(request, done=done, status=200 if done.ok else 409)


def _refused(handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
    """Refused and Missing from a page's work as the 403 and 404 pages."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except Refused as exc:
            return refusal(request, 403, str(exc))
        except Missing:
            raise web.HTTPNotFound() from None
        return response

    return guarded


def add_routes(app: web.Application, ctx: ConsoleContext) -> None:
    if ctx.desk is None:
        return  # no desk, no requests to show
    pages = RequestPages(ctx, RequestWork(ctx.desk))
    app.router.add_get(r"/requests/{id}", _refused(pages.show))
    app.router.add_get(r"/requests/{id}/earlier", _refused(pages.earlier))
    app.router.add_get(r"/requests/{id}/tail", _refused(pages.tail))
    app.router.add_get(r"/requests/{id}/status", _refused(pages.status))
    app.router.add_post(r"/requests/{id}/answer", _refused(pages.answer))
    app.router.add_post(r"/requests/{id}/template", _refused(pages.template))
    app.router.add_post(r"/requests/{id}/act", _refused(pages.act))


__all__ = ["TEXTS", "RequestPage", "RequestPages", "add_routes"]
