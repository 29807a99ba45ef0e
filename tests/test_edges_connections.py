"""Every listening socket has bounded time and count (issue 16, items 1 and 7).

Slow clients that trickle a request head are closed after ``edges.header_timeout_s``
while others are served; a body that does not arrive is cut after
``body_timeout_s``; a per-address and a global cap, shared by the forms, the admin
API and SMTP, refuse new connections at once and keep serving the ones they hold;
SMTP sessions end at their idle and total limits; a bound that bites is logged
once an interval. Real servers on loopback (``127.0.0.N`` as other addresses).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import resource
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from channels.email.smtp_server import SmtpServer
from hub import config as hub_config
from hub.app.run import Hub
from hub.config import SmtpServerSection
from hub.kernel.edges import (
    ACCEPT_FAILED,
    EdgeLimits,
    Edges,
    address_of,
    capacity,
    raise_fd_limit,
)
from hub.kernel.http import bound_port, serve
from tests.cluster import free_port

TOKEN = "edges-admin-token-0123456789"
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``condition`` (polled), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def connect(port: int, source: str = "127.0.0.1") -> Stream:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def get(stream: Stream, path: str) -> int:
    """One keep-alive GET over an open connection: its status."""
    reader, writer = stream
    writer.write(f"GET {path} HTTP/1.1\r\nHost: hub.test\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = re.search(rb"\r\nContent-Length: (\d+)", head, re.IGNORECASE)
    await reader.readexactly(int(length.group(1)) if length else 0)
    return int(head.split()[1])


async def refused(stream: Stream) -> bytes:
    """What a refused connection is told before it is closed (at once)."""
    return await asyncio.wait_for(stream[0].read(), 2)


async def ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def close(streams: list[Stream]) -> None:
    for _, writer in streams:
        writer.close()


@asynccontextmanager
async def hub(db_url: str, tmp_path: Path, **edges: Any) -> AsyncIterator[tuple[Hub, int, int]]:
    """The hub with the forms and the admin API: it, the form port, the admin port."""
    form, admin = free_port(), free_port()
    config = hub_config.parse(
        {
            "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
            "admin": {"listen": f"127.0.0.1:{admin}", "token": TOKEN},
            "webform": {"listen": f"127.0.0.1:{form}", "forms": [{"id": "contact"}]},
            "edges": edges,
        }
    )
    running = Hub(config)
    async with running.lifespan():
        yield running, form, admin


def edges_of(running: Hub) -> Edges:
    assert running.edges is not None
    return running.edges


def limit_lines(caplog: pytest.LogCaptureFixture, limit: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("edges.limit ") and f"limit={limit} " in r.getMessage()
    ]


# --- slow clients ---------------------------------------------------------------------

SLOW = 2_000
SOURCES = [f"127.0.0.{n}" for n in range(10, 20)]  # 200 each: the default per-address cap


async def test_thousands_of_slow_heads_are_closed_after_the_header_timeout_while_others_are_served(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """2,000 connections trickle a request head one byte every half second: a
    normal client and /healthz are answered within a second meanwhile, and every
    slow one is closed once its head is ``header_timeout_s`` late, not before."""
    timeout = 5.0
    async with hub(db_url, tmp_path, header_timeout_s=timeout) as (running, form, admin):
        edges = edges_of(running)
        opened: list[float] = []
        slow: list[Stream] = []
        for n in range(SLOW):
            opened.append(time.monotonic())  # the server's timer starts later, at accept
            stream = await connect(form, SOURCES[n % len(SOURCES)])
            stream[1].write(b"GET /f/contact HTTP/1.1\r\nHost: hub.test\r\nX-Slow: ")
            slow.append(stream)
        closed: list[float | None] = [None] * SLOW

        async def watch(i: int) -> None:
            # Closed without an answer (no head ever came); reset when a byte
            # trickled in as it was closing.
            with contextlib.suppress(ConnectionResetError):
                assert await slow[i][0].read() == b""
            closed[i] = time.monotonic()

        watchers = [asyncio.create_task(watch(i)) for i in range(SLOW)]

        async def trickle() -> None:
            while True:
                await asyncio.sleep(0.5)
                for (_, writer), done in zip(slow, closed, strict=True):
                    if done is None and not writer.is_closing():
                        writer.write(b"x")

        trickling = asyncio.create_task(trickle())
        try:
            await until(lambda: edges.open >= SLOW)
            assert all(c is None for c in closed)
            async with aiohttp.ClientSession() as http:
                started = time.monotonic()
                async with http.get(f"http://127.0.0.1:{form}/f/contact") as response:
                    assert response.status == 200
                    assert 'name="email"' in await response.text()
                async with http.get(f"http://127.0.0.1:{admin}/healthz") as response:
                    assert response.status == 200
                assert time.monotonic() - started < 1.0
            assert edges.open >= SLOW  # the slow ones were still held meanwhile
            await asyncio.wait_for(asyncio.gather(*watchers), timeout + 20)
        finally:
            trickling.cancel()
            for task in watchers:
                task.cancel()
            close(slow)
        lived = [c - o for c, o in zip(closed, opened, strict=True) if c is not None]
        assert min(lived) >= timeout - 0.05
        assert max(lived) < timeout + 15
        await until(lambda: edges.open == 0)
    # One line at once, one with the rest of the count as the hub stopped.
    assert len(limit_lines(caplog, "header_timeout")) == 2
    assert refusals(limit_lines(caplog, "header_timeout")) == SLOW


async def test_a_body_that_does_not_arrive_is_cut_after_the_body_timeout_without_a_traceback(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with hub(
        db_url, tmp_path, body_timeout_s=1.0, header_timeout_s=1.0, body_min_bytes_per_s=1000
    ) as (running, form, admin):
        reader, writer = await connect(form)
        writer.write(
            b"POST /f/contact HTTP/1.1\r\nHost: hub.test\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 1000\r\n\r\nname=Anna&email="
        )
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert time.monotonic() - started >= 0.9
        writer.close()
        # A body that keeps coming (3,000 bytes a second) goes on past body_timeout_s.
        reader, writer = await connect(form)
        writer.write(
            b"POST /f/contact HTTP/1.1\r\nHost: hub.test\r\nConnection: close\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 6005\r\n\r\nname="
        )
        started = time.monotonic()
        for _ in range(6):
            await asyncio.sleep(0.3)  # the client's pace
            writer.write(b"a" * 1000)
        answer = await asyncio.wait_for(reader.read(), 10)
        assert time.monotonic() - started > 1.5
        assert re.match(rb"HTTP/1\.1 [234]\d\d ", answer), answer[:80]
        writer.close()
        # The admin server's heads are timed too.
        reader, writer = await connect(admin)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: ")
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        # A client that hangs up mid-body is no error of ours either.
        reader, writer = await connect(form)
        writer.write(b"POST /f/contact HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\nx=1")
        await until(lambda: edges_of(running).open == 1)
        writer.close()
        await until(lambda: edges_of(running).open == 0)
    assert len(limit_lines(caplog, "body_timeout")) == 1
    assert not [r for r in caplog.records if r.exc_info or "Error handling" in r.getMessage()]


# --- the caps ---------------------------------------------------------------------------


async def test_the_per_address_cap_refuses_the_excess_on_every_server_and_no_one_else(
    db_url: str, tmp_path: Path
) -> None:
    async with hub(db_url, tmp_path, connections_per_address=5) as (running, form, admin):
        held = [await connect(form) for _ in range(5)]
        await until(lambda: edges_of(running).held("127.0.0.1") == 5)
        excess = await connect(form)
        assert (await refused(excess)).startswith(b"HTTP/1.1 503 ")
        # The table is the process's: the admin port refuses this address too.
        assert (await refused(await connect(admin))).startswith(b"HTTP/1.1 503 ")
        other = await connect(admin, "127.0.0.2")
        assert await get(other, "/healthz") == 200
        for stream in held:  # the ones it holds are served
            assert await get(stream, "/f/contact") == 200
        close([excess, other])
        close(held[:1])
        await until(lambda: edges_of(running).held("127.0.0.1") == 4)
        again = await connect(form)
        assert await get(again, "/f/contact") == 200
        close([again, *held[1:]])


async def test_exempt_addresses_have_no_per_address_cap(db_url: str, tmp_path: Path) -> None:
    async with hub(
        db_url, tmp_path, connections_per_address=2, exempt_addresses=["127.0.0.0/30"]
    ) as (_, form, _admin):
        streams = [await connect(form, "127.0.0.2") for _ in range(4)]
        for stream in streams:
            assert await get(stream, "/f/contact") == 200
        capped = [await connect(form, "127.0.0.9") for _ in range(3)]
        assert (await refused(capped[2])).startswith(b"HTTP/1.1 503 ")
        close(streams + capped)


async def test_a_full_table_refuses_new_connections_and_keeps_serving_the_ones_it_has(
    db_url: str, tmp_path: Path
) -> None:
    async with hub(db_url, tmp_path, connections=8) as (running, form, admin):
        edges = edges_of(running)
        assert edges.capacity == 8
        held = [await connect(form, f"127.0.0.{10 + n}") for n in range(8)]
        await until(lambda: edges.open == 8)
        for source in ("127.0.0.1", "127.0.0.50"):
            assert (await refused(await connect(form, source))).startswith(b"HTTP/1.1 503 ")
            assert (await refused(await connect(admin, source))).startswith(b"HTTP/1.1 503 ")
        for _ in range(2):
            for stream in held:
                assert await get(stream, "/f/contact") == 200
        assert await get(held[0], "/healthz") == 404  # the form port has no /healthz
        close(held[:1])
        await until(lambda: edges.open == 7)
        again = await connect(admin)
        assert await get(again, "/healthz") == 200
        close([again, *held[1:]])
        await until(lambda: edges.open == 0)


# --- SMTP -------------------------------------------------------------------------------


async def ok_deliver(raw: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
    return None


@asynccontextmanager
async def smtp(edges: Edges | None = None, **settings: Any) -> AsyncIterator[SmtpServer]:
    section = SmtpServerSection(domains=["hub.example"], **settings)
    server = SmtpServer(
        section, ok_deliver, listen="127.0.0.1:0", hostname="mx.hub.example", edges=edges
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=1)


async def command(stream: Stream, line: bytes) -> bytes:
    stream[1].write(line + b"\r\n")
    return await asyncio.wait_for(stream[0].readline(), 5)


async def test_an_smtp_session_of_noops_ends_at_the_total_limit() -> None:
    async with smtp(idle_timeout_s=5, session_timeout_s=1.5) as server:
        stream = await connect(server.port)
        started = time.monotonic()
        assert (await stream[0].readline()).startswith(b"220 ")
        last = b""
        while True:
            try:
                last = await command(stream, b"NOOP")
            except (ConnectionError, asyncio.IncompleteReadError):
                break
            if not last.startswith(b"250"):
                break
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - started
        rest = last + await asyncio.wait_for(stream[0].read(), 5)
        assert rest.startswith(b"421 4.4.2 mx.hub.example ")
        assert 1.4 <= elapsed < 5
        stream[1].close()


async def test_an_idle_smtp_session_ends_at_the_idle_limit() -> None:
    async with smtp(idle_timeout_s=1, session_timeout_s=60) as server:
        reader, writer = await connect(server.port)
        assert (await reader.readline()).startswith(b"220 ")
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert 0.9 <= time.monotonic() - started < 5
        writer.close()


async def test_smtp_shares_the_caps_with_http() -> None:
    """One table for both: an address that holds its share over HTTP is refused
    over SMTP with a 421, and the sessions it holds go on."""
    edges = Edges(EdgeLimits(per_address=3))
    app = web.Application()
    app.router.add_get("/", ok)
    runner = await serve(app, "127.0.0.1:0", edges=edges)
    try:
        async with smtp(edges) as server:
            web_held = [await connect(bound_port(runner)) for _ in range(2)]
            session = await connect(server.port)
            assert (await session[0].readline()).startswith(b"220 ")
            excess = await connect(server.port)
            told = await refused(excess)
            assert told.startswith(b"421 4.7.0 mx.hub.example ")
            assert (await refused(await connect(bound_port(runner)))).startswith(b"HTTP/1.1 503")
            assert (await command(session, b"NOOP")).startswith(b"250")
            assert await get(web_held[0], "/") == 200
            close([*web_held, session, excess])
            await until(lambda: edges.open == 0)
    finally:
        await runner.cleanup()


def refusals(lines: list[str]) -> int:
    """The refusals the lines tell of: a first line one, a later one its ``times``."""
    counts = [re.search(r" times=(\d+) ", line) for line in lines]
    return sum(int(m.group(1)) if m else 1 for m in counts)


# --- the log ------------------------------------------------------------------------------


async def test_a_bound_that_bites_is_logged_once_an_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    edges = Edges(EdgeLimits(per_address=1, report_every=0.5))
    app = web.Application()
    runner = await serve(app, "127.0.0.1:0", edges=edges)
    port = bound_port(runner)
    caplog.set_level(logging.INFO)
    lines: Callable[[], list[str]] = lambda: limit_lines(caplog, "connections_per_address")  # noqa: E731

    async def burst(n: int) -> None:
        for _ in range(n):
            assert (await refused(await connect(port))).startswith(b"HTTP/1.1 503")

    try:
        held = await connect(port)
        await until(lambda: edges.open == 1)
        await burst(30)
        assert len(lines()) == 1  # the first at once, the rest counted
        assert "address=127.0.0.1" in lines()[0]
        await until(lambda: len(lines()) == 2)
        assert "times=29 " in lines()[1] and "addresses=1 " in lines()[1]
        await burst(10)
        # Counted in the next interval's line (two, should the burst straddle its end).
        await until(lambda: refusals(lines()) == 40)
        assert len(lines()) <= 4
        close([held])
    finally:
        await runner.cleanup()


async def test_malformed_requests_are_answered_400_and_counted_not_traced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    edges = Edges(EdgeLimits(report_every=0.3))
    app = web.Application()
    app.router.add_get("/", ok)
    runner = await serve(app, "127.0.0.1:0", edges=edges)
    port = bound_port(runner)
    bad = [
        b"GET / HTTP/1.1\r\nA header line with no colon\r\n\r\n",
        b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]
    try:
        for _ in range(10):
            for request in bad:
                reader, writer = await connect(port)
                writer.write(request)
                assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.0 400 ")
                writer.close()
        await until(lambda: refusals(limit_lines(caplog, "bad_request")) == 30)
        assert len(limit_lines(caplog, "bad_request")) == 2
        assert not [r for r in caplog.records if r.exc_info]
        assert await get(await connect(port), "/") == 200
    finally:
        await runner.cleanup()
        edges.close()


async def test_accept_failures_for_want_of_descriptors_are_counted_not_traced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """asyncio reports each failed accept() (EMFILE) with a traceback; counted in
    the interval's line instead, while any other report still goes through."""
    loop = asyncio.get_running_loop()
    others: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: others.append(context))
    edges = Edges(EdgeLimits(report_every=0.3))
    undo = edges.watch(loop)
    try:
        failure = OSError(errno.EMFILE, "Too many open files")
        for _ in range(100):
            loop.call_exception_handler({"message": ACCEPT_FAILED, "exception": failure})
        loop.call_exception_handler({"message": "something else"})
        assert [c["message"] for c in others] == ["something else"]
        assert len(limit_lines(caplog, "accept")) == 1
        await until(lambda: len(limit_lines(caplog, "accept")) == 2)
        assert "times=99 " in limit_lines(caplog, "accept")[1]
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        undo()
        edges.close()
        loop.set_exception_handler(previous)


def test_addresses_count_by_ip_an_ipv6_one_by_its_64() -> None:
    assert address_of(("127.0.0.1", 5)) == "127.0.0.1"
    assert address_of(("::ffff:10.1.2.3", 5, 0, 0)) == "10.1.2.3"
    assert address_of(("2001:db8::1", 5, 0, 0)) == "2001:db8::/64"
    assert address_of(("2001:db8::ffff:1", 6, 0, 0)) == "2001:db8::/64"
    assert address_of(None) == "-"


def test_the_table_keeps_the_fd_reserve() -> None:
    assert capacity(EdgeLimits(), 1024) == 768
    assert capacity(EdgeLimits(connections=100), 1024) == 100
    assert capacity(EdgeLimits(connections=5000), 1024) == 768  # never past the reserve
    assert capacity(EdgeLimits(), 100) == 16


def test_the_soft_fd_limit_is_raised_toward_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = 2048
    if hard != resource.RLIM_INFINITY and hard <= lowered:
        pytest.skip("the hard fd limit leaves no room to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        raised = raise_fd_limit(target=4096)
        expected = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
        assert raised == expected == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert raise_fd_limit(target=1024) == expected  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_edges_config_names_the_key_of_a_bad_value() -> None:
    for edges, key in [
        ({"header_timeout_s": 0}, "edges.header_timeout_s"),
        ({"connections_per_address": 0}, "edges.connections_per_address"),
        ({"exempt_addresses": ["a proxy"]}, "edges.exempt_addresses[0]"),
        ({"fd_reserve": 1}, "edges.fd_reserve"),
    ]:
        with pytest.raises(hub_config.ConfigError, match=re.escape(key)):
            hub_config.parse({"admin": {"token": TOKEN}, "edges": edges})
    with pytest.raises(hub_config.ConfigError, match=r"email\.smtp\.session_timeout_s"):
        hub_config.parse({"admin": {"token": TOKEN}, "email": {"smtp": {"session_timeout_s": -1}}})


async def test_http_answers_name_no_software(db_url: str, tmp_path: Path) -> None:
    """aiohttp's default ``Server`` header names the library and its version."""
    async with hub(db_url, tmp_path) as (_, form, admin), aiohttp.ClientSession() as http:
        for url in (f"http://127.0.0.1:{admin}/healthz", f"http://127.0.0.1:{form}/f/contact"):
            async with http.get(url) as response:
                assert response.headers["Server"] == "hub", url
