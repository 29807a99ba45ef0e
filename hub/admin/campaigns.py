"""The campaign calls of the admin API, and the public unsubscribe page.

``POST /api/campaigns`` (a campaign as JSON, or as TOML with ``Content-Type:
application/toml``) → 201 ``{"id": …}``; ``GET /api/campaigns``;
``GET /api/campaigns/{id}`` (status and results); ``GET
/api/campaigns/{id}/preview?client=N``; ``POST /api/campaigns/{id}/start`` and
``/pause``. Errors are ``{"error": message}``: 400 for a bad campaign, 404 for
an unknown one.

``/u?t=TOKEN`` needs no bearer token: GET shows a page with a button; POST (the
button, or a mail client's RFC 8058 one-click ``List-Unsubscribe=One-Click``)
opts the client out. The token rides in the query so that request logs, which
name the path only, never carry it.
"""

from __future__ import annotations

import html
import tomllib

from aiohttp import web

from hub.admin.access import actor
from hub.admin.bodies import BadBody, json_object
from hub.campaigns.campaigns import Campaigns
from hub.campaigns.spec import CampaignError, parse_spec
from hub.kernel.http import decimal, error_response, json_response
from hub.kernel.texts import text


def add_routes(app: web.Application, campaigns: Campaigns) -> None:
    api = _CampaignApi(campaigns)
    app.router.add_get("/api/campaigns", api.listing)
    app.router.add_post("/api/campaigns", api.create)
    app.router.add_get("/api/campaigns/{id}", api.status)
    app.router.add_get("/api/campaigns/{id}/preview", api.preview)
    app.router.add_post("/api/campaigns/{id}/start", api.start)
    app.router.add_post("/api/campaigns/{id}/pause", api.pause)
    app.router.add_get("/u", api.unsubscribe_page)
    app.router.add_post("/u", api.unsubscribe)


def _id(request: web.Request) -> int:
    return decimal(request.match_info["id"], "id")


class _CampaignApi:
    def __init__(self, campaigns: Campaigns) -> None:
        self.campaigns = campaigns

    async def listing(self, request: web.Request) -> web.Response:
        rows = await self.campaigns.listing(100)
        return json_response(
            [{"id": r.id, "name": r.name, "mode": r.mode, "status": r.status} for r in rows]
        )

    async def create(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            if request.content_type in ("application/toml", "text/plain"):
                data = tomllib.loads(body.decode())
            else:
                data = json_object(body)
        except BadBody as exc:
            return error_response(400, str(exc))
        except RecursionError:
            return error_response(400, "body: nested too deeply")
        except ValueError as exc:  # TOMLDecodeError, UnicodeDecodeError
            return error_response(400, f"body: {exc}")
        try:
            spec = parse_spec(data)
            campaign_id = await self.campaigns.create(spec, actor=actor(request))
        except CampaignError as exc:
            return error_response(400, str(exc))
        return json_response({"id": campaign_id}, 201)

    async def status(self, request: web.Request) -> web.Response:
        campaign_id = _id(request)
        try:
            return json_response((await self.campaigns.status(campaign_id)).as_json())
        except CampaignError as exc:
            return error_response(404, str(exc))

    async def preview(self, request: web.Request) -> web.Response:
        campaign_id = _id(request)
        raw = request.query.get("client", "")
        client_id = decimal(raw, "client") if raw else None
        try:
            count, items = await self.campaigns.preview(campaign_id, client_id=client_id)
        except CampaignError as exc:
            return error_response(404, str(exc))
        return json_response(
            {
                "segment": count,
                "messages": [
                    {
                        "client_id": i.client_id,
                        "variant": i.variant,
                        "channel": i.channel,
                        "skip": i.skip,
                        "subject": i.subject,
                        "text": i.text,
                    }
                    for i in items
                ],
            }
        )

    async def start(self, request: web.Request) -> web.Response:
        return await self._move(request, pause=False)

    async def pause(self, request: web.Request) -> web.Response:
        return await self._move(request, pause=True)

    async def _move(self, request: web.Request, *, pause: bool) -> web.Response:
        campaign_id = _id(request)
        try:
            if pause:
                await self.campaigns.pause(campaign_id, actor=actor(request))
            else:
                await self.campaigns.start(campaign_id, actor=actor(request))
            return json_response((await self.campaigns.status(campaign_id)).as_json())
        except CampaignError as exc:
            status = 404 if str(exc).startswith("no campaign") else 409
            return error_response(status, str(exc))

    async def unsubscribe_page(self, request: web.Request) -> web.Response:
        token = request.query.get("t", "")
        language = self.campaigns.language
        verified = self.campaigns.unsubscribe and self.campaigns.unsubscribe.verify(token)
        if not verified:
            return page(text("campaign_bad_link", language), 404)
        form = (
            f'<form method="post" action="?t={html.escape(token)}">'
            f'<button type="submit" name="List-Unsubscribe" value="One-Click">'
            f"{html.escape(text('campaign_unsubscribe_button', language))}</button></form>"
        )
        return page(text("campaign_unsubscribe_page", language), 200, form)

    async def unsubscribe(self, request: web.Request) -> web.Response:
        language = self.campaigns.language
        done = await self.campaigns.opt_out(request.query.get("t", ""))
        if done is None:
            return page(text("campaign_bad_link", language), 404)
        return page(text("campaign_unsubscribed_page", language), 200)


def page(title: str, status: int, body: str = "") -> web.Response:
    """A small public page (unsubscribe, rating): a title, and a form when given."""
    markup = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width">'
        f"<title>{html.escape(title)}</title></head>"
        f'<body style="font-family:sans-serif"><h1>{html.escape(title)}</h1>{body}</body></html>'
    )
    return web.Response(text=markup, status=status, content_type="text/html", charset="utf-8")
