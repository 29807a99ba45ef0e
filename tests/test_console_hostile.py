"""The web console under hostile and careless input (it faces the internet like the
forms): every route, signed in and not, with ids and query values of any shape and
form posts of any body, with and without the CSRF token, gets a clear answer —
never a 5xx, never a traceback — and a post without the token changes nothing."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from hub.console import live
from storage.tables import audit as audit_log
from tests.console_kit import ConsoleKit, console_hub

# Values people and tools put where an id, a page number or a date goes.
ODD = [
    "",
    "0",
    "-1",
    "²",
    "١",
    "1e9",
    "99999999999999999999",
    "2147483648",
    "1.5",
    "%00",
    "..%2F..%2Fetc%2Fpasswd",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    '"; DROP TABLE clients; --',
    "Ωmega ∑ 🙂",
    "a" * 5000,
    "2026-02-30",
    "9999-12-31",
    "\u202eevil",
    "NaN",
    "true",
    "[]",
    "{}",
]
GETS = [
    "/",
    "/inbox?status={v}&deadline={v}&assignee={v}&channel={v}&page={v}",
    "/inbox/rows?page={v}",
    "/requests/{v}",
    "/requests/{v}/earlier?before={v}",
    "/requests/{v}/tail?after={v}",
    "/requests/{v}/status",
    "/clients?q={v}&page={v}",
    "/clients/{v}",
    "/clients/1/timeline?before={v}",
    "/clients/import/{v}",
    "/reports?from={v}&to={v}&period={v}",
    "/reports/{v}.csv?from={v}",
    "/reports/chart/{v}.png?from={v}",
    "/campaigns?page={v}",
    "/campaigns/{v}",
    "/campaigns/count?{v}={v}",
    "/admin/{v}",
    "/audit?actor={v}&action={v}&client={v}&since={v}&until={v}&page={v}",
    "/signin?k={v}",
    "/static/{v}",
]
POSTS = [
    "/requests/{v}/answer",
    "/requests/{v}/template",
    "/requests/{v}/act",
    "/clients/{v}/merge",
    "/clients/merges/{v}/undo",
    "/campaigns/new",
    "/campaigns/preview",
    "/campaigns/{v}/start",
    "/admin/{v}",
    "/admin/{v}/unset",
    "/signin",
    "/signin/email",
]
FIELDS = ["text", "action", "template", "key", "other", "to", "when", "toml", "k", "email", "name"]


def _quoted(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _clear(status: int, body: str, what: str) -> None:
    assert status < 500, f"{what}: {status} {body[:300]}"
    assert "Traceback" not in body, f"{what}: {body[:300]}"


async def _csrf(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(base + "/inbox") as page:
        html = await page.text()
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


async def _sign_in(http: aiohttp.ClientSession, kit: ConsoleKit, who: str) -> None:
    """Sign ``http`` in as the person through a link, as a browser would."""
    link = await kit.link(who)
    async with http.get(link) as r:  # the button, with its form's token
        form = re.search(r'name="csrf" value="([^"]+)"', await r.text())
    assert form is not None
    data = {"k": link.split("k=", 1)[1], "csrf": form.group(1)}
    async with http.post(kit.url("/signin"), data=data) as r:
        assert r.status == 200 and "/signin" not in str(r.url)


async def test_every_route_answers_odd_input_clearly(db_url: str, tmp_path: Path) -> None:
    rng = random.Random(20)
    async with console_hub(db_url, tmp_path) as kit:
        db = kit.hub.db
        assert db is not None
        jar = aiohttp.CookieJar(unsafe=True)
        async with (
            aiohttp.ClientSession(cookie_jar=jar) as signed,
            aiohttp.ClientSession() as stranger,
        ):
            await _sign_in(signed, kit, "admin")
            csrf = await _csrf(signed, kit.base)
            for http in (signed, stranger):
                for route in GETS:
                    for value in rng.sample(ODD, 6):
                        path = route.format(v=_quoted(value))
                        async with http.get(kit.url(path), allow_redirects=False) as r:
                            _clear(r.status, await r.text(errors="replace"), f"GET {path}")
            async with db.read() as conn:
                audited = (await conn.execute(select(func.count()).select_from(audit_log))).scalar()
            for route in POSTS:
                for value in rng.sample(ODD, 5):
                    path = route.format(v=_quoted(value))
                    body = {name: rng.choice(ODD) for name in rng.sample(FIELDS, 4)}
                    async with signed.post(kit.url(path), data=body, allow_redirects=False) as r:
                        text = await r.text(errors="replace")
                        _clear(r.status, text, f"POST {path} without the token")
                        if not path.startswith("/signin"):
                            assert r.status in (403, 404, 405), f"POST {path}: {r.status}"
            async with db.read() as conn:  # without the token, nothing was done
                after = (await conn.execute(select(func.count()).select_from(audit_log))).scalar()
            assert after == audited
            for route in POSTS:
                for value in rng.sample(ODD, 5):
                    path = route.format(v=_quoted(value))
                    body = {name: rng.choice(ODD) for name in rng.sample(FIELDS, 4)}
                    body["csrf"] = csrf
                    async with signed.post(kit.url(path), data=body, allow_redirects=False) as r:
                        _clear(r.status, await r.text(errors="replace"), f"POST {path}")


async def test_a_closed_live_stream_ends_quietly(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A page closed while its live stream is open: the next write finds the
    connection gone and the stream ends, with no storage outage reported."""
    monkeypatch.setattr(live, "HEARTBEAT_S", 0.05)  # a write soon after the close
    async with console_hub(db_url, tmp_path) as kit:
        feed = kit.hub.console_ctx.live if kit.hub.console_ctx is not None else None
        assert feed is not None
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            await _sign_in(http, kit, "supervisor")
            async with http.get(kit.url("/live")) as stream:
                assert stream.status == 200
                assert (await stream.content.readline()).startswith(b"retry:")
                assert feed.listeners == 1
        async with asyncio.timeout(10):
            while feed.listeners:
                await asyncio.sleep(0.02)
        assert "console.unavailable" not in caplog.text
