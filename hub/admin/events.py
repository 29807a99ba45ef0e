"""Admin API for business events: ``POST /api/events`` records what a client did
outside a conversation (``../shared/INTERFACE.md``): 201 ``{"id", "client_id",
"duplicate": false}``; the same caller id again: 200 with ``"duplicate": true``;
400 naming every bad field; 404 for a client id that names nobody; 413 past
:data:`MAX_BODY`. Who may: the ``clients`` right (admins and supervisors; see
:mod:`hub.admin.access`); the audit log names the token's holder."""

from __future__ import annotations

from aiohttp import web

from hub.admin.access import actor
from hub.admin.bodies import BadBody, json_object
from hub.clients.event_writer import EventRecorder
from hub.clients.events import BadEvent, UnknownClient, parse
from hub.kernel.http import error_response, json_response

MAX_BODY = 64 * 1024


def add_routes(app: web.Application, recorder: EventRecorder, region: str | None) -> None:
    async def post(request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_BODY:
            return error_response(413, f"body: larger than {MAX_BODY} bytes")
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return error_response(413, f"body: larger than {MAX_BODY} bytes")
        try:
            event = parse(json_object(raw), region=region)
        except (BadBody, BadEvent) as exc:
            return error_response(400, str(exc))
        try:
            done = await recorder.record(event, actor=actor(request))
        except UnknownClient as exc:
            return error_response(404, str(exc))
        body = {"id": done.id, "client_id": done.client_id, "duplicate": done.duplicate}
        return json_response(body, 200 if done.duplicate else 201)

    async def close(app: web.Application) -> None:
        await recorder.close()

    app.router.add_post("/api/events", post)
    app.on_cleanup.append(close)
