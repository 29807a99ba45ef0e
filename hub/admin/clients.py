"""Admin API for client records: duplicate suggestions, merge and unmerge, stage
moves, CSV import and export. Every change lands in the audit log with the rest
of it, naming the token's holder (``api:NAME``)."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

from aiohttp import web

from hub.admin.access import actor
from hub.admin.bodies import BadBody, json_object
from hub.clients.book import ClientBook, ClientError
from hub.clients.stages import move
from hub.kernel.http import MAX_ID, decimal, error_response, json_response
from hub.kernel.types import STAGES
from storage import clients as q

MAX_CSV = 20 * 1024 * 1024


def _id(request: web.Request) -> int:
    return decimal(request.match_info["id"], "id")


async def _body(request: web.Request) -> dict[str, Any] | None:
    try:
        return json_object(await request.read())
    except BadBody:
        return None


def add_routes(app: web.Application, book: ClientBook) -> None:
    api = _ClientsApi(book)
    app.router.add_get("/api/duplicates", api.duplicates)
    app.router.add_post("/api/clients/{id}/merge", api.merge)
    app.router.add_post("/api/merges/{id}/undo", api.unmerge)
    app.router.add_post("/api/clients/{id}/stage", api.stage)
    app.router.add_post("/api/clients.csv", api.import_csv)
    app.router.add_get("/api/clients.csv", api.export_csv)


class _ClientsApi:
    def __init__(self, book: ClientBook) -> None:
        self.book = book

    async def duplicates(self, request: web.Request) -> web.Response:
        found = await self.book.duplicates()
        return json_response([dataclasses.asdict(s) for s in found])

    async def merge(self, request: web.Request) -> web.Response:
        """``{"other": N}``: client N is merged into this one."""
        keep, body = _id(request), await _body(request)
        other = body.get("other") if body else None
        if not isinstance(other, int) or isinstance(other, bool) or not 1 <= other <= MAX_ID:
            return error_response(400, 'expected a JSON body {"other": CLIENT_ID}')
        try:
            merge_id = await self.book.merge(keep, other, actor=actor(request))
        except ClientError as exc:
            return error_response(409 if "already" in str(exc) else 404, str(exc))
        return json_response({"merge": merge_id, "kept": keep, "merged": other}, 201)

    async def unmerge(self, request: web.Request) -> web.Response:
        merge_id = _id(request)
        try:
            keep, other = await self.book.unmerge(merge_id, actor=actor(request))
        except ClientError as exc:
            return error_response(409 if "already" in str(exc) else 404, str(exc))
        return json_response({"merge": merge_id, "kept": keep, "restored": other})

    async def stage(self, request: web.Request) -> web.Response:
        """``{"stage": "client", "why": "signed the contract"}``."""
        client_id, body = _id(request), await _body(request)
        stage = body.get("stage") if body else None
        why = body.get("why", "by hand") if body else "by hand"
        if stage not in STAGES or not isinstance(why, str):
            return error_response(400, f"stage: one of {', '.join(STAGES)}")
        now = self.book.clock.now()
        async with self.book.db.write() as conn:
            record = await q.record(conn, client_id)
            if record is None:
                return error_response(404, "no such client")
            if record.stage != stage:
                await move(
                    conn, client_id, record.stage, stage, who=actor(request), why=why[:200], now=now
                )
        return json_response({"id": client_id, "stage": stage})

    async def import_csv(self, request: web.Request) -> web.Response:
        """The CSV as the body (UTF-8): the per-row report; 200 when every row went
        in, 422 when some were refused (the good ones are in)."""
        if (request.content_length or 0) > MAX_CSV:
            return error_response(413, f"larger than {MAX_CSV} bytes")
        raw = await request.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return error_response(400, "the file is not UTF-8 text")
        report = await self.book.import_csv(io.StringIO(text, newline=""))  # as csv reads
        body = {
            "added": report.added,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "errors": [{"row": n, "problem": p} for n, p in report.errors],
        }
        return json_response(body, 422 if report.errors else 200)

    async def export_csv(self, request: web.Request) -> web.Response:
        out = io.StringIO()
        await self.book.export_csv(out)
        return web.Response(
            text=out.getvalue(),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": 'attachment; filename="clients.csv"'},
        )
