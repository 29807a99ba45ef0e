"""The console's clients: search as the managers' ``/find`` does (paged), the client's
page (identities, stage history, business events, ratings, open requests, the
timeline in pages), merge suggestions with merge and undo, a CSV import with its
progress and per-row report, and the export.

Who sees which client is the desk's rule (:class:`hub.desk.desk.Desk`: supervisors
and admins every client, a manager the clients nobody keeps, their own and their
team's, a marketer none); who may change client records (merge, undo, import,
export) is the admin API's right for the same calls (:mod:`hub.admin.access`).
Changes are audited under the person's name; the first read of a client in a
session too.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiohttp import web

from hub.admin.access import RIGHTS, needed
from hub.admin.clients import MAX_CSV
from hub.clients.book import ClientBook, ClientError, ImportReport, Suggestion
from hub.clients.search import client_search, visible
from hub.clients.stage_rules import compile_stage_rules
from hub.console.app import (
    WITH_CONVERSATIONS,
    ConsoleContext,
    Handler,
    Nav,
    page,
    person_of,
    refusal,
    render,
    requires,
    see_other,
    texts_for,
)
from hub.desk.desk import Desk
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.http import is_decimal
from hub.kernel.types import ManagerRef, Role
from storage import Database
from storage import console as console_q
from storage import desk as desk_q
from storage.client_page import ClientPage, read_client_page, read_summaries, read_timeline_page
from storage.read import ClientSummary, read_clients

log = loggers.console

PAGE = 25  # clients a search page lists
TIMELINE = 50  # interactions a page of the timeline shows
SUGGESTIONS = 50  # merge suggestions listed
MAX_QUERY = 200
JOBS_KEPT = 20  # finished imports kept for their report, per process
# An import still running after this was in a process that stopped (one transaction:
# nothing of it was stored).
STALE_IMPORT = timedelta(hours=1)
# An import's page (and the report it keeps, which may quote the rows) lasts this long.
KEEP_IMPORTS = timedelta(days=7)
POLL = "every 500ms"  # how often an import's page asks for its progress


def _roles(method: str, route: str) -> frozenset[Role]:
    """The roles the admin API lets make this call."""
    right = needed(method, route)
    return frozenset(r for r in Role if r is not Role.INTEGRATION and right in RIGHTS[r])


# The roles the desk lets see some client (a client nobody keeps, at least).
SEEING = frozenset(r for r in Role if r is not Role.INTEGRATION and Desk.sees_clients(r))
MERGING = _roles("POST", "/api/clients/{id}/merge")
UNDOING = _roles("POST", "/api/merges/{id}/undo")
IMPORTING = _roles("POST", "/api/clients.csv")
EXPORTING = _roles("GET", "/api/clients.csv")

NAV = (
    Nav("/clients", "clients.nav", SEEING),
    Nav("/clients/merges", "clients.merges.nav", MERGING),
    Nav("/clients/import", "clients.import.nav", IMPORTING),
)

TEXTS = {
    "clients.nav": ("Клиенты", "Clients"),
    "clients.title": ("Клиенты", "Clients"),
    "clients.search": ("Поиск", "Search"),
    "clients.query": (
        "Имя, почта, телефон или слово из переписки",
        "Name, email, phone or a word they wrote",
    ),
    "clients.find": ("Найти", "Find"),
    "clients.long_query": ("Не длиннее 200 знаков", "At most 200 characters"),
    "clients.found_none": ("Никого не нашлось.", "Nobody found."),
    "clients.col.client": ("Клиент", "Client"),
    "clients.col.stage": ("Стадия", "Stage"),
    "clients.col.owner": ("Ответственный", "Owner"),
    "clients.col.identities": ("Контакты", "Identities"),
    "clients.unnamed": ("без имени", "no name"),
    "clients.nobody": ("—", "—"),
    "clients.newer": ("← Назад", "← Back"),
    "clients.older": ("Дальше →", "Next →"),
    "clients.export": ("Скачать всех клиентов (CSV)", "Download every client (CSV)"),
    "clients.not_yours": (
        "Этот клиент не ваш: его ведёт другой менеджер или команда.",
        "This client is not yours: another manager or team keeps them.",
    ),
    "clients.none_for_role": (
        "Ваша роль не видит клиентов и их переписку.",
        "Your role sees no client and no conversation.",
    ),
    # the client's page
    "clients.card": ("Клиент №{id}", "Client #{id}"),
    "clients.merged_into": (
        "Эта запись объединена с клиентом №{id}.",
        "This record was merged into client #{id}.",
    ),
    "clients.open_kept": ("Открыть его карточку", "Open their page"),
    "clients.stage": ("Стадия", "Stage"),
    "clients.owner": ("Ответственный", "Owner"),
    "clients.tags": ("Метки", "Tags"),
    "clients.source": ("Откуда", "Source"),
    "clients.since": ("Клиент с", "Client since"),
    "clients.language": ("Язык", "Language"),
    "clients.identities": ("Контакты", "Identities"),
    "clients.open_requests": ("Открытые обращения", "Open requests"),
    "clients.request": ("Обращение №{id}", "Request #{id}"),
    "clients.no_requests": ("Открытых обращений нет.", "No open requests."),
    "clients.stages": ("История стадий", "Stage history"),
    "clients.no_stages": ("Стадия не менялась.", "The stage never moved."),
    "clients.events": ("События", "Business events"),
    "clients.no_events": ("Событий нет.", "No business events."),
    "clients.ratings": ("Оценки", "Ratings"),
    "clients.no_ratings": ("Оценок нет.", "No ratings."),
    "clients.not_rated": ("не оценено", "not rated"),
    "clients.col.when": ("Когда", "When"),
    "clients.col.from": ("Из", "From"),
    "clients.col.to": ("В", "To"),
    "clients.col.who": ("Кто", "Who"),
    "clients.col.kind": ("Что", "What"),
    "clients.col.amount": ("Сумма", "Amount"),
    "clients.col.fields": ("Подробности", "Details"),
    "clients.col.score": ("Оценка", "Score"),
    "clients.col.comment": ("Комментарий", "Comment"),
    "clients.col.request": ("Обращение", "Request"),
    "clients.col.manager": ("Менеджер", "Manager"),
    "clients.timeline": ("Вся история", "Timeline"),
    "clients.timeline_hidden": (
        "Переписка клиента вашей роли не видна.",
        "Your role does not see the conversation.",
    ),
    "clients.no_timeline": ("Пока ничего нет.", "Nothing yet."),
    "clients.earlier": ("Раньше", "Earlier"),
    "clients.direction.in": ("клиент", "client"),
    "clients.direction.out": ("ответ", "answer"),
    "clients.direction.note": ("заметка", "note"),
    "clients.direction.event": ("событие", "event"),
    "clients.delivery.pending": ("отправляется", "sending"),
    "clients.delivery.sent": ("доставлено", "sent"),
    "clients.delivery.failed": ("не доставлено", "not delivered"),
    # merges
    "clients.merges.nav": ("Дубликаты", "Duplicates"),
    "clients.merges.title": ("Возможные дубликаты", "Possible duplicates"),
    "clients.merges.none": ("Похожих записей не нашлось.", "No similar records found."),
    "clients.merges.why": ("Почему", "Why"),
    "clients.merges.keep": ("Оставить №{a}, влить в неё №{b}", "Keep #{a}, merge #{b} into it"),
    "clients.merges.made": (
        "Клиент №{other} влит в эту запись.",
        "Client #{other} was merged into this record.",
    ),
    "clients.merges.undone": ("Объединение отменено.", "The merge was undone."),
    "clients.merges.standing": ("Объединения", "Merges"),
    "clients.merges.undo": ("Отменить объединение с №{id}", "Undo the merge of #{id}"),
    "clients.merge.other": (
        "Номер клиента, которого влить в эту запись",
        "Number of the client to merge into this one",
    ),
    "clients.merge.go": ("Объединить", "Merge"),
    "clients.err.number": ("Нужен номер клиента", "A client number is needed"),
    "clients.err.self": (
        "Нельзя объединить клиента с самим собой",
        "A client cannot be merged into itself",
    ),
    "clients.err.no_client": ("Нет такого клиента", "No such client"),
    "clients.err.merged": (
        "Один из них уже объединён с другим",
        "One of them is already merged into another",
    ),
    "clients.err.undone": (
        "Это объединение уже отменено или его нет",
        "That merge is undone already or does not exist",
    ),
    # import
    "clients.import.nav": ("Импорт", "Import"),
    "clients.import.title": ("Импорт клиентов из CSV", "Import clients from CSV"),
    "clients.import.help": (
        "Столбцы name, email, phone, telegram, stage, tags, source, language и свои поля. "
        "Существующие клиенты дополняются, ничего не перезаписывается.",
        "Columns name, email, phone, telegram, stage, tags, source, language, and your own "
        "fields. Existing clients are filled in, nothing is overwritten.",
    ),
    "clients.import.file": ("Файл CSV (UTF-8)", "CSV file (UTF-8)"),
    "clients.import.go": ("Загрузить", "Upload"),
    "clients.import.no_file": ("Выберите файл", "Choose a file"),
    "clients.import.too_big": ("Файл больше 20 МБ", "The file is larger than 20 MB"),
    "clients.import.not_utf8": ("Файл не в кодировке UTF-8", "The file is not UTF-8 text"),
    "clients.import.progress": ("Ход импорта", "Import progress"),
    "clients.import.checking": ("Проверяем строки…", "Checking the rows…"),
    "clients.import.writing": (
        "Записано строк: {done} из {total}",
        "Rows written: {done} of {total}",
    ),
    "clients.import.done": (
        "Готово: добавлено {added}, обновлено {updated}, без изменений {unchanged}, "
        "отклонено {refused}.",
        "Done: added {added}, updated {updated}, unchanged {unchanged}, refused {refused}.",
    ),
    "clients.import.failed": (
        "Импорт не удался, ничего не записано.",
        "The import failed; nothing was written.",
    ),
    "clients.import.refused": ("Отклонённые строки", "Refused rows"),
    "clients.import.row": ("Строка", "Row"),
    "clients.import.problems": ("Что не так", "Problems"),
    "clients.import.gone": (
        "Такого импорта нет (или он был давно).",
        "No such import (or it was long ago).",
    ),
    "clients.import.again": ("Загрузить ещё файл", "Upload another file"),
}


def _client_id(request: web.Request, name: str = "id") -> int:
    raw = request.match_info[name]
    if not is_decimal(raw):
        raise web.HTTPNotFound()
    return int(raw)


def _number(raw: str | None, *, low: int = 1) -> int | None:
    raw = (raw or "").strip()
    return int(raw) if is_decimal(raw, low=low) else None


# -- search ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    """A search page: the clients the person may see, and whether more follow."""

    clients: list[ClientSummary]
    more: bool


async def visible_to(
    db: Any, manager: ManagerRef, found: list[ClientSummary]
) -> list[ClientSummary]:
    """The clients of ``found`` the desk lets ``manager`` see (as ``/find`` does)."""
    async with db.read() as conn:
        shown = set(await Desk.visible(conn, manager, [s.id for s in found]))
    return [s for s in found if s.id in shown]


async def search(db: Any, region: str, manager: ManagerRef, text: str, number: int) -> Found:
    """Page ``number`` (from 1) of the clients matching ``text`` (every client when
    empty) that ``manager`` may see, through the search's indexes in one hop."""
    query = client_search(text, region) if text else None
    offset = (number - 1) * PAGE
    found = await db.run_read(lambda conn: read_clients(conn, query, limit=PAGE + 1, offset=offset))
    return Found(await visible_to(db, manager, found[:PAGE]), len(found) > PAGE)


# -- import jobs ----------------------------------------------------------------------------


@dataclass
class ImportJob:
    """An import under way or done, kept in this process for its page."""

    id: str
    owner: int  # the person who started it
    file: str
    done: int = 0
    total: int | None = None  # known once every row is checked
    report: ImportReport | None = None
    failed: bool = False
    started: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> bool:
        return self.report is not None or self.failed


class ImportJobs:
    """The imports of this process: one task each, their progress for the page. Each
    is also a row of ``console_imports`` (its outcome once done), so that its page
    answers on another instance behind a load balancer too."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._jobs: OrderedDict[str, ImportJob] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(
        self, book: ClientBook, text: str, *, owner: int, file: str, actor: str
    ) -> ImportJob:
        job = ImportJob(secrets.token_urlsafe(16), owner, file)
        now = self.clock.now()
        async with self.db.write() as conn:
            kept = now - KEEP_IMPORTS
            await console_q.import_started(conn, job.id, owner, file, now, keep_since=kept)
        self._jobs[job.id] = job
        task = asyncio.create_task(self._run(book, text, job, actor))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._forget()
        return job

    async def get(self, job_id: str, owner: int) -> ImportJob | None:
        """The job as this process runs it, else as the database holds it."""
        job = self._jobs.get(job_id)
        if job is None:
            job = await self._kept(job_id)
        return job if job is not None and job.owner == owner else None

    async def _kept(self, job_id: str) -> ImportJob | None:
        async with self.db.read() as conn:
            row = await console_q.import_of(conn, job_id[:32])
        if row is None:
            return None
        job = ImportJob(row.id, row.manager_id, row.file)
        if row.state == "done" and row.report is not None:
            r = row.report
            errors = [(int(n), str(problem)) for n, problem in r.get("errors", [])]
            job.report = ImportReport(r["added"], r["updated"], r["unchanged"], errors)
        elif row.state == "failed" or self.clock.now() - row.started_at > STALE_IMPORT:
            job.failed = True  # (a process that died mid-import stored none of it)
        return job

    async def close(self) -> None:
        """Let the imports under way finish (each is one transaction)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, book: ClientBook, text: str, job: ImportJob, actor: str) -> None:
        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        try:
            report = await book.import_csv(io.StringIO(text, newline=""), progress=progress)
        except Exception:
            job.failed = True
            log.exception("console.import_failed job=%s", job.id)
            with contextlib.suppress(Exception):  # the page then says it failed, in time
                async with book.db.write() as conn:
                    await console_q.import_finished(conn, job.id, None, book.clock.now())
            return
        job.total = job.total or 0
        job.report = report
        kept = {
            "added": report.added,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "errors": [[n, problem] for n, problem in report.errors],
        }
        async with book.db.write() as conn:
            await console_q.import_finished(conn, job.id, kept, book.clock.now())
            await desk_q.audit(
                conn,
                {
                    "at": book.clock.now(),
                    "actor": actor,
                    "action": "import",
                    "object_type": "client",
                    "object_id": None,
                    "details": {
                        "file": job.file[:200],
                        "added": report.added,
                        "updated": report.updated,
                        "unchanged": report.unchanged,
                        "refused": len(report.errors),
                    },
                },
            )
        loggers.event(log, "console.imported", added=report.added, refused=len(report.errors))

    def _forget(self) -> None:
        finished = [k for k, job in self._jobs.items() if job.finished]
        for key in finished[: max(0, len(finished) - JOBS_KEPT)]:
            del self._jobs[key]


# -- the pages ------------------------------------------------------------------------------


class _Clients:
    def __init__(self, ctx: ConsoleContext, desk: Desk) -> None:
        self.ctx = ctx
        self.desk = desk
        self.jobs = ImportJobs(ctx.db, ctx.clock)

    def book(self) -> ClientBook:
        config = self.ctx.config()
        return ClientBook(
            self.ctx.db,
            self.ctx.clock,
            region=config.hub.default_region,
            stage_rules=lambda: compile_stage_rules(self.ctx.config()),
        )

    async def find(self, request: web.Request) -> web.StreamResponse:
        t = texts_for(request)
        person = person_of(request)
        text = visible(request.query.get("q", ""))
        number = _number(request.query.get("page")) or 1
        if len(text) > MAX_QUERY:
            return await render(
                request,
                "clients/search.html",
                status=400,
                q=text[:MAX_QUERY],
                error=t("clients.long_query"),
                found=Found([], False),
                number=1,
                may_export=person.role in EXPORTING,
            )
        found = await search(
            self.ctx.db, self.ctx.config().hub.default_region, person.as_manager(), text, number
        )
        if text:
            await self.ctx.audit(
                request,
                "search",
                details={"query": text, "shown": [c.id for c in found.clients]},
            )
        return await render(
            request,
            "clients/search.html",
            q=text,
            error=None,
            found=found,
            number=number,
            may_export=person.role in EXPORTING,
        )

    def seeing(self, handler: Handler) -> Handler:
        """The desk's rule for whole roles: one that sees no client (a marketer) is
        refused the clients' pages; a refused read of a client is audited."""

        async def checked(request: web.Request) -> web.StreamResponse:
            if person_of(request).role in SEEING:
                return await handler(request)
            if "id" in request.match_info:
                client_id = _client_id(request)
                details = {"what": "card"}
                await self.ctx.audit(
                    request, "refused", object_type="client", object_id=client_id, details=details
                )
            return refusal(request, 403, texts_for(request)("clients.none_for_role"))

        return checked

    async def allowed(self, request: web.Request, client_id: int, what: str) -> bool:
        """Whether the desk lets the person see the client; a refusal is audited."""
        if await self.desk.allows(person_of(request).as_manager(), client_id):
            return True
        await self.ctx.audit(
            request, "refused", object_type="client", object_id=client_id, details={"what": what}
        )
        return False

    async def card(self, request: web.Request, **shown: Any) -> web.StreamResponse:
        """The client's page; ``shown``: what the page says after a merge or an undo."""
        client_id = _client_id(request)
        if not await self.allowed(request, client_id, "card"):
            return refusal(request, 403, texts_for(request)("clients.not_yours"))
        before = _number(request.query.get("before"))
        found: ClientPage | None = await self.ctx.db.run_read(
            lambda conn: read_client_page(conn, client_id, before=before, page=TIMELINE)
        )
        if found is None:
            raise web.HTTPNotFound()
        await self.ctx.audit_first_read(request, client_id)
        person = person_of(request)
        return await render(
            request,
            "clients/card.html",
            status=shown.pop("status", 200),
            client=found,
            show_timeline=person.role in WITH_CONVERSATIONS,
            may_merge=person.role in MERGING,
            may_undo=person.role in UNDOING,
            merge_error=shown.pop("merge_error", None),
            other=shown.pop("other", ""),
            merged=_number(request.query.get("merged")),
            undone=request.query.get("undone") is not None,
        )

    async def timeline(self, request: web.Request) -> web.StreamResponse:
        """An earlier page of the timeline, as the rows htmx puts in place of the
        "earlier" link (the client's page was read and audited already)."""
        client_id = _client_id(request)
        if not await self.allowed(request, client_id, "timeline"):
            return refusal(request, 403, texts_for(request)("clients.not_yours"))
        before = _number(request.query.get("before"))
        if before is None:
            raise web.HTTPNotFound()
        found = await self.ctx.db.run_read(
            lambda conn: read_timeline_page(conn, client_id, before=before, page=TIMELINE)
        )
        await self.ctx.audit_first_read(request, client_id)
        return page(
            request,
            "clients/_timeline.html",
            client_id=client_id,
            timeline=found,
        )

    async def merge(self, request: web.Request) -> web.StreamResponse:
        """``other`` (a client's number) merged into this client."""
        keep = _client_id(request)
        raw = (await request.post()).get("other")
        given = raw.strip()[:20] if isinstance(raw, str) else ""
        other = _number(given)
        problem = "clients.err.number" if other is None else None
        if other == keep:
            problem = "clients.err.self"
        if other is not None and problem is None:
            try:
                merge_id = await self.book().merge(keep, other, actor=person_of(request).actor)
            except ClientError as exc:
                problem = "clients.err.merged" if "already" in str(exc) else "clients.err.no_client"
            else:
                return see_other(f"/clients/{keep}?merged={merge_id}")
        t = texts_for(request)
        return await self.card(request, status=422, merge_error=t(problem), other=given)

    async def undo(self, request: web.Request) -> web.StreamResponse:
        merge_id = _client_id(request)
        try:
            keep, _ = await self.book().unmerge(merge_id, actor=person_of(request).actor)
        except ClientError:
            return refusal(request, 409, texts_for(request)("clients.err.undone"))
        return see_other(f"/clients/{keep}?undone={merge_id}")

    async def suggestions(self, request: web.Request) -> web.StreamResponse:
        found: list[Suggestion] = (await self.book().duplicates())[:SUGGESTIONS]
        ids = {n for s in found for n in (s.a, s.b)}
        named = await self.ctx.db.run_read(lambda conn: read_summaries(conn, ids))
        pairs = [(s, named[s.a], named[s.b]) for s in found if s.a in named and s.b in named]
        return await render(request, "clients/merges.html", pairs=pairs)

    async def export(self, request: web.Request) -> web.StreamResponse:
        out = io.StringIO()
        count = await self.book().export_csv(out)
        await self.ctx.audit(request, "export", object_type="client", details={"clients": count})
        day = self.ctx.clock.now().date().isoformat()
        return web.Response(
            text=out.getvalue(),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="clients_{day}.csv"'},
        )

    async def import_form(self, request: web.Request, error: str | None = None) -> web.Response:
        return await render(
            request, "clients/import.html", status=422 if error else 200, error=error
        )

    async def import_start(self, request: web.Request) -> web.StreamResponse:
        t = texts_for(request)
        upload = (await request.post()).get("file")
        if not isinstance(upload, web.FileField) or not upload.filename:
            return await self.import_form(request, t("clients.import.no_file"))
        raw = await asyncio.to_thread(upload.file.read, MAX_CSV + 1)
        if len(raw) > MAX_CSV:
            return await self.import_form(request, t("clients.import.too_big"))
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return await self.import_form(request, t("clients.import.not_utf8"))
        person = person_of(request)
        job = await self.jobs.start(
            self.book(), text, owner=person.id, file=upload.filename, actor=person.actor
        )
        return see_other(f"/clients/import/{job.id}")

    async def import_progress(self, request: web.Request) -> web.StreamResponse:
        """The import's page; its progress alone when htmx asks."""
        job = await self.jobs.get(request.match_info["job"], person_of(request).id)
        if job is None:
            return refusal(request, 404, texts_for(request)("clients.import.gone"))
        template = "clients/_progress.html" if "HX-Request" in request.headers else None
        if template is not None:
            return page(request, template, job=job, poll=POLL)
        return await render(request, "clients/progress.html", job=job, poll=POLL)


def add_routes(app: web.Application, ctx: ConsoleContext) -> None:
    if ctx.desk is None:
        return  # no desk, no rule of who sees whom
    clients = _Clients(ctx, ctx.desk)

    async def close(_: web.Application) -> None:
        await clients.jobs.close()

    app.on_shutdown.append(close)
    seeing = clients.seeing
    app.router.add_get("/clients", seeing(clients.find))
    app.router.add_get("/clients.csv", requires(*EXPORTING)(clients.export))
    app.router.add_get("/clients/merges", requires(*MERGING)(clients.suggestions))
    app.router.add_post(r"/clients/merges/{id:\d+}/undo", requires(*UNDOING)(clients.undo))
    app.router.add_get("/clients/import", requires(*IMPORTING)(clients.import_form))
    app.router.add_post("/clients/import", requires(*IMPORTING)(clients.import_start))
    app.router.add_get(
        r"/clients/import/{job:[A-Za-z0-9_-]+}", requires(*IMPORTING)(clients.import_progress)
    )
    app.router.add_get(r"/clients/{id:\d+}", seeing(clients.card))
    app.router.add_get(r"/clients/{id:\d+}/timeline", seeing(clients.timeline))
    app.router.add_post(r"/clients/{id:\d+}/merge", requires(*MERGING)(clients.merge))
