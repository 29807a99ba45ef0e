"""Hostile input at the public edges (issue 16), over HTTP to the assembled hub.

Forms: a body of many tiny parts is refused as the part past ``max_fields``
arrives, while the same server answers others; the largest bodies allowed in
each encoding leave the event loop free; every malformed body gets a 400 or a
422 that says why (deep JSON, lone surrogates, broken part headers, a NUL in a
file name), never a 500. The rate limit counts the address the proxy saw,
never the client's own ``X-Forwarded-For`` line. The admin API takes ids in
ASCII decimal only, and ``?q=%00`` matches no client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from multidict import CIMultiDict
from sqlalchemy import select

from hub import config as hub_config
from hub.clients.search import client_search
from hub.kernel.errors import ConfigError
from storage import Database
from storage import read as q
from storage.models import Attachment, Interaction
from tests.test_webform import CONTACT, TOKEN, Site, site

BOUNDARY = "b0undary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
MAX_BODY = 25 * 1024 * 1024  # webform.max_body_bytes by default
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _part(name: str, value: bytes, extra: str = "") -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"{extra}\r\n\r\n'
    return head.encode() + value + b"\r\n"


def _multipart(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def _many_tiny_parts(count: int) -> bytes:
    return _multipart(*[_part("x", b"y")] * count)


class _LoopLag:
    """The longest the event loop went without running a 5 ms ticker, meanwhile
    (up to the end: a block just before it counts too)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._last = time.perf_counter()

    def _lap(self) -> None:
        now = time.perf_counter()
        self.worst = max(self.worst, now - self._last - 0.005)
        self._last = now

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.005)
            self._lap()

    @asynccontextmanager
    async def measuring(self) -> AsyncIterator[_LoopLag]:
        self._last = time.perf_counter()
        task = asyncio.create_task(self._tick())
        try:
            yield self
        finally:
            self._lap()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _raw_post(
    s: Site, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    """POST over a plain socket, the body written alongside reading the answer, so
    that an answer given before the server read everything (and the connection
    it closes) is read as the client sees it."""
    address = urlsplit(s.base)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    lines = {
        "Host": address.netloc,
        "Content-Length": str(len(body)),
        "Accept": "application/json",
        "Connection": "close",
        **headers,
    }
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in lines.items())
    writer.write(head.encode() + b"\r\n")

    async def send() -> None:
        try:
            for at in range(0, len(body), 256 * 1024):
                writer.write(body[at : at + 256 * 1024])
                await writer.drain()
        except ConnectionError:
            pass  # the server answered and closed before reading it all

    sending = asyncio.create_task(send())
    try:
        status = int((await reader.readline()).split()[1])
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        answer = json.loads(await reader.read())
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()
    return status, answer


# --- many parts, big bodies: refused early, the loop stays free ------------------


async def test_a_body_of_many_tiny_parts_is_refused_while_the_server_answers(
    db_url: str, tmp_path: Path
) -> None:
    # As measured in issue 16: 400,000 parts in 23.5 MB took 56 s of the event
    # loop each, and four at once (from four addresses) 226 s.
    body = _many_tiny_parts(400_000)
    assert 23_000_000 < len(body) < MAX_BODY
    async with site(db_url, tmp_path, trust_forwarded=True) as s, _LoopLag().measuring() as lag:
        started = time.perf_counter()
        posts = [
            asyncio.create_task(
                _raw_post(
                    s,
                    "/f/contact",
                    body,
                    {"Content-Type": MULTIPART, "X-Forwarded-For": f"198.51.100.{n}"},
                )
            )
            for n in range(4)
        ]
        pages = 0
        while not all(p.done() for p in posts) or not pages:
            async with asyncio.timeout(5):
                async with s.http.get(f"{s.base}/f/contact") as page:
                    assert page.status == 200
                async with s.http.get(f"{s.admin}/healthz") as health:
                    assert health.status == 200
            pages += 1
        answers = [await p for p in posts]
        took = time.perf_counter() - started
    for status, answer in answers:
        assert status == 400
        assert answer["errors"]["_form"] == "Too many fields: 100 at most"
    assert took < 10, took
    assert lag.worst < 1.0, lag.worst  # measured: about 0.02 s


def _largest_bodies() -> dict[str, tuple[bytes, str]]:
    room = MAX_BODY - 1000
    one_field = "message=" + "%D1%8F" * (room // 6)
    return {
        "urlencoded, one field": (one_field.encode(), "application/x-www-form-urlencoded"),
        "urlencoded, 99 fields": (
            "&".join(f"f{n}=" + "%D1%8F" * (room // 6 // 99) for n in range(99)).encode(),
            "application/x-www-form-urlencoded",
        ),
        "json, one string": (
            json.dumps({"message": "я" * (room // 2 - 20)}, ensure_ascii=False).encode(),
            "application/json",
        ),
        "json, 99 strings": (
            json.dumps({f"f{n}": "\u044f" * (room // 6 // 99 - 10) for n in range(99)}).encode(),
            "application/json",
        ),
        "multipart, 99 parts": (
            _multipart(*[_part(f"f{n}", b"y" * (room // 99 - 100)) for n in range(99)]),
            MULTIPART,
        ),
    }


@pytest.mark.parametrize("kind", list(_largest_bodies()))
async def test_the_largest_bodies_allowed_leave_the_event_loop_free(
    db_url: str, tmp_path: Path, kind: str
) -> None:
    body, content_type = _largest_bodies()[kind]
    assert len(body) <= MAX_BODY
    async with site(db_url, tmp_path) as s:
        async with _LoopLag().measuring() as lag:
            status, answer, _ = await s.post(
                "contact", data=body, headers={"Content-Type": content_type}
            )
        assert status == 422, answer  # too long, or no message and no contact
        assert await s.count(Interaction) == 0
    # Target 0.05 s (measured: 0.01 to 0.04 s); before, one such urlencoded body
    # held the loop for 2.5 s. The bound is generous for a loaded machine.
    assert lag.worst < 1.0, lag.worst


# --- malformed bodies: a 400 or 422 that says why --------------------------------


async def test_malformed_bodies_get_a_clear_400(db_url: str, tmp_path: Path) -> None:
    deep = b'{"message": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    no_colon = _multipart(f"--{BOUNDARY}\r\nno colon\r\n\r\nx\r\n".encode())
    bodies = {
        "nested": (deep, "application/json"),
        "nested at the top": (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        "no colon": (no_colon, MULTIPART),
        "a NUL": (_multipart(_part("brief", b"%PDF", '; filename="a\x00b.pdf"')), MULTIPART),
        "fields": (b"&".join([b"a=1"] * 101), "application/x-www-form-urlencoded"),
        "json fields": (json.dumps({f"f{n}": n for n in range(101)}).encode(), "application/json"),
        "parts": (_many_tiny_parts(101), MULTIPART),
        "not UTF-8": (b'{"message": "\xff"}', "application/json"),
    }
    expected = {
        "nested": "never a nested object or list",
        "nested at the top": "could not be read",
        "no colon": "its header is malformed",
        "a NUL": "its header is malformed",
        "fields": "Too many fields: 100 at most",
        "json fields": "Too many fields: 100 at most",
        "parts": "Too many fields: 100 at most",
        "not UTF-8": "could not be read",
    }
    async with site(db_url, tmp_path) as s:
        for what, (body, content_type) in bodies.items():
            status, answer, _ = await s.post(
                "quote", data=body, headers={"Content-Type": content_type}
            )
            assert status == 400, (what, answer)
            assert expected[what] in answer["errors"]["_form"], (what, answer)
        # a hosted page answers with the page, in its language
        async with s.http.post(
            f"{s.base}/f/ru",
            data=bodies["no colon"][0],
            headers={"Content-Type": MULTIPART},
        ) as page:
            assert page.status == 400 and page.content_type == "text/html"
            assert "Не удалось прочитать часть формы" in await page.text()
        assert await s.count(Interaction) == 0


async def test_lone_surrogates_and_odd_file_names_are_kept_safely(
    db_url: str, tmp_path: Path
) -> None:
    async with site(db_url, tmp_path) as s:
        # JSON's "\ud800" is no character: it is read as U+FFFD, the rest is kept
        status, answer, _ = await s.post(
            "contact", json_body={**CONTACT, "message": "half an emoji \ud83d", "\udc00": "x"}
        )
        assert status == 201, answer
        [said] = await s.rows(select(Interaction.text).where(Interaction.id == answer["id"]))
        assert "half an emoji \ufffd" in said[0]
        # RFC 7578 file names (RFC 2231 encoded) with a NUL and a line break in them
        body = _multipart(
            _part("email", b"boris@example.org"),
            _part("details", b"see the brief"),
            _part("agree", b"on"),
            _part("brief", b"%PDF-1.4", "; filename*=UTF-8''br%00ief%0A%0D.pdf"),
        )
        status, answer, _ = await s.post("quote", data=body, headers={"Content-Type": MULTIPART})
        assert status == 201, answer
        [kept] = await s.rows(select(Attachment.filename))
        assert kept == ("brief.pdf",)
        # a signed render time in other digits is no signed time: the post goes on
        status, answer, _ = await s.post(
            "contact", json_body={**CONTACT, "message": "later", "_ts": "²¹.abc"}
        )
        assert status == 201, answer


async def test_odd_file_part_headers_are_kept_safely(db_url: str, tmp_path: Path) -> None:
    form = {
        "id": "photo",
        "language": "en",
        "min_fill_seconds": 0,
        "fields": [
            {"name": "email", "type": "email"},
            {"name": "message", "type": "textarea"},
            {"name": "pic", "type": "file"},  # images, PDF and text by default
        ],
    }
    odd = {  # the file part's header as sent, byte for byte
        "bytes that are no UTF-8": b'filename="\xff\xfe.png"\r\nContent-Type: image/png',
        "a long type": b'filename="a.png"\r\nContent-Type: image/' + b"x" * 300,
        "a long name": b'filename="' + b"n" * 5000 + b'.png"\r\nContent-Type: image/png',
    }
    async with site(db_url, tmp_path, forms=[form]) as s:
        for what, header in odd.items():
            pic = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="pic"; '.encode()
            body = _multipart(
                _part("email", b"a@example.com"),
                _part("message", what.encode()),
                pic + header + b"\r\n\r\n\x89PNG\r\n",
            )
            status, answer, _ = await s.post(
                "photo", data=body, headers={"Content-Type": MULTIPART}
            )
            assert status == 201, (what, answer)
        kept = await s.rows(select(Attachment.filename, Attachment.content_type))
    assert len(kept) == 3
    assert ("\ufffd\ufffd.png", "image/png") in kept
    assert all(len(name) <= 255 and len(ctype) <= 200 for name, ctype in kept), kept


# --- the poster's address behind a proxy -----------------------------------------


async def _statuses(s: Site, forwarded: list[list[str]]) -> list[int]:
    """One post per entry, each with these ``X-Forwarded-For`` lines in order."""
    statuses = []
    for n, lines in enumerate(forwarded):
        headers = CIMultiDict([("Accept", "application/json")])
        for line in lines:
            headers.add("X-Forwarded-For", line)
        async with s.http.post(
            f"{s.base}/f/contact",
            json={**CONTACT, "message": f"post {n}"},
            headers=headers,
        ) as response:
            statuses.append(response.status)
    return statuses


async def test_the_rate_limit_counts_the_address_the_proxy_added(
    db_url: str, tmp_path: Path
) -> None:
    async with site(db_url, tmp_path, trust_forwarded=True, rate_limit_per_minute=2) as s:
        # the client's own line first, the proxy's appended: a fresh client line
        # each time does not make a fresh address
        own_line = [[f"203.0.113.{n}", "192.0.2.10"] for n in range(3)]
        assert await _statuses(s, own_line) == [201, 201, 429]
        assert await _statuses(s, [["203.0.113.1, 192.0.2.10"]]) == [429]  # in one line
        assert await _statuses(s, [["203.0.113.1", "192.0.2.11"]]) == [201]  # another poster


async def test_trusted_proxies_are_skipped_from_the_right(db_url: str, tmp_path: Path) -> None:
    proxies = ["127.0.0.0/8", "10.0.0.0/8"]
    async with site(
        db_url, tmp_path, trust_forwarded=True, trusted_proxies=proxies, rate_limit_per_minute=2
    ) as s:
        # client's line, then what the edge proxy saw, then an inner proxy
        chain = [[f"203.0.113.{n}", "198.51.100.7, 10.1.2.3"] for n in range(3)]
        assert await _statuses(s, chain) == [201, 201, 429]
        assert await _statuses(s, [["198.51.100.8", "10.1.2.3"]]) == [201]
    async with site(db_url, tmp_path, trust_forwarded=True, trusted_proxies=["10.0.0.0/8"]) as s:
        # the peer (127.0.0.1) is no trusted proxy: what it forwards is its own say
        statuses = await _statuses(s, [[f"198.51.100.{n}"] for n in range(11)])
        assert statuses == [201] * 10 + [429]


@pytest.mark.parametrize(
    ("webform", "problem"),
    [
        ({"trust_forwarded": True, "trusted_proxies": ["10.0.0.1/8"]}, "has host bits set"),
        ({"trust_forwarded": True, "trusted_proxies": ["proxy.local"]}, "not an address"),
        ({"trusted_proxies": ["10.0.0.0/8"]}, "needs trust_forwarded = true"),
        ({"max_fields": 12, "forms": [{"id": "a"}]}, "make 14, over max_fields = 12"),
    ],
)
def test_forwarding_and_field_settings_are_checked(webform: dict[str, Any], problem: str) -> None:
    data = {"storage": {"url": "sqlite+aiosqlite:///x"}, "admin": {"token": "t" * 20}}
    with pytest.raises(ConfigError, match="webform") as caught:
        hub_config.parse({**data, "webform": webform})
    assert problem in str(caught.value)


# --- the admin API: ids in ASCII decimal, search text without control characters ---

BAD_IDS = ["²", "١", "-1", "+1", "1.0", " 1", "0", "2147483648", "9" * 30]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_admin_ids_are_ascii_decimal_only(db_url: str, tmp_path: Path, bad: str) -> None:
    async with site(db_url, tmp_path) as s:
        status, answer, _ = await s.post("contact", json_body=CONTACT)
        assert status == 201
        calls = [
            ("GET", f"/api/clients/{bad}", "id"),
            ("GET", f"/api/clients/{bad}/timeline", "id"),
            ("GET", f"/api/clients/1/timeline?last={bad}", "last"),
            ("GET", f"/api/clients?limit={bad}", "limit"),
            ("GET", f"/api/campaigns/{bad}", "id"),
            ("GET", f"/api/campaigns/1/preview?client={bad}", "client"),
            ("POST", f"/api/campaigns/{bad}/start", "id"),
            ("POST", f"/api/clients/{bad}/stage", "id"),
            ("POST", f"/api/clients/{bad}/merge", "id"),
            ("POST", f"/api/merges/{bad}/undo", "id"),
        ]
        for method, path, name in calls:
            async with s.http.request(
                method, s.admin + path, headers=ADMIN, json={"stage": "client", "other": 1}
            ) as response:
                answer = await response.json()
                assert response.status == 400, (path, answer)
                assert answer["error"].startswith(f"{name}: must be a whole number"), answer
        async with s.http.get(f"{s.admin}/api/clients/1", headers=ADMIN) as response:
            assert (await response.json())["stage"] != "client"  # "١" moved nobody


async def test_admin_json_bodies_past_reading_are_a_400(db_url: str, tmp_path: Path) -> None:
    async with site(db_url, tmp_path) as s:
        status, _, _ = await s.post("contact", json_body=CONTACT)
        assert status == 201
        for path in ("/api/clients/1/stage", "/api/campaigns"):
            for body in (b"[" * 100_000 + b"]" * 100_000, b'{"stage": "client", "why": "\\ud800"}'):
                async with s.http.post(
                    s.admin + path,
                    data=body,
                    headers={**ADMIN, "Content-Type": "application/json"},
                ) as response:
                    assert response.status == 400, (path, body[:20], await response.text())
                    assert (await response.json())["error"]


async def test_search_text_with_a_control_character_matches_nobody(
    db_url: str, tmp_path: Path
) -> None:
    async with site(db_url, tmp_path) as s:
        status, _, _ = await s.post("contact", json_body=CONTACT)
        assert status == 201
        async with s.http.get(f"{s.admin}/api/clients?q=%00", headers=ADMIN) as response:
            assert response.status == 400
            assert (await response.json())["error"] == "q: holds a control character (U+0000)"
        async with s.http.get(f"{s.admin}/api/clients?q=Anna", headers=ADMIN) as response:
            assert [c["name"] for c in await response.json()] == ["Anna"]
    # what the managers' /find reads the same way: nothing but control characters
    # is no query that every client matches (SQLite's pattern ended at the NUL)
    db = Database(db_url)
    try:
        async with db.read() as conn:
            for text in ("\x00", "\x00\x01\t"):
                assert await q.search_clients(conn, client_search(text, None)) == []
            found = await q.search_clients(conn, client_search("An\x00na", None))
            assert [c.name for c in found] == ["Anna"]
    finally:
        await db.dispose()
