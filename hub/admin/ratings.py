"""The public rating page of a resolution email (served by the admin server, like ``/u``).

``/r?t=TOKEN`` needs no bearer token. GET shows the link's score and one button,
and records nothing: mail scanners and link previews follow links, and a score
they gave would not be the client's. POST (the button) records the score; a later
POST of another of the email's links changes it (the last click wins). A forged
or unknown token is a 404 page. The token rides in the query: request logs name
the path only.
"""

from __future__ import annotations

import html

from aiohttp import web

from hub.admin.campaigns import page
from hub.desk.csat import Csat
from hub.kernel.texts import text


def add_routes(app: web.Application, csat: Csat) -> None:
    pages = _RatingPages(csat)
    app.router.add_get("/r", pages.show)
    app.router.add_post("/r", pages.record)


class _RatingPages:
    def __init__(self, csat: Csat) -> None:
        self.csat = csat

    async def show(self, request: web.Request) -> web.Response:
        token = request.query.get("t", "")
        shown = await self.csat.link(token)
        if shown is None:
            return page(text("csat_bad_link", self.csat.language), 404)
        stars = "★" * shown.score + "☆" * (5 - shown.score)
        form = (
            f'<p style="font-size:2em">{stars}</p>'
            f'<form method="post" action="?t={html.escape(token)}">'
            f'<button type="submit">{html.escape(text("csat_page_button", shown.language))}'
            "</button></form>"
        )
        return page(text("csat_page_title", shown.language, score=shown.score), 200, form)

    async def record(self, request: web.Request) -> web.Response:
        done = await self.csat.rate_by_link(request.query.get("t", ""))
        if done is None:
            return page(text("csat_bad_link", self.csat.language), 404)
        return page(text("csat_page_done", done.language, score=done.score), 200)
