"""The web console over a big desk, on SQLite or PostgreSQL: its pages' server time
against the bare driver replaying the same statements, and its live feed against a
bare aiohttp SSE echo of the same writes, measured in the same run.

The data (``bench.console_data``): 1,000,000 interactions over 100,000 clients
with 10,000 requests not resolved (open, pending, waiting; a third with nobody
assigned; each with a deadline), generated once and kept in ``--data``. A real
Hub (no channels) serves the console on loopback; a supervisor's session is made
in the database and its signed cookie sent with every request. Measured:

- pages, over HTTP one at a time, from the request sent to the last byte read:
  the inbox's first page (``GET /inbox``, where ``GET /`` sends a supervisor;
  and a manager's, narrowed to the requests the desk lets them see),
  the busiest client's page (``GET /clients/{id}``, about 3,000 interactions)
  and its open request's page (``GET /requests/{id}``). The bare baseline
  replays the statements the hub sent for that very request (captured from the
  engines, the request's own unit by unit) on ``sqlite3`` / ``asyncpg``: the
  ratio is what HTTP, the session check, SQLAlchemy and the templates cost on
  top of the database's own work.
- live: 50 open ``GET /live`` streams; each round writes a message to the log as
  another process would (its own connection, bare driver) and times until every
  stream got the change that shows it (p50/p99 over the rounds). The bare
  baseline is an aiohttp SSE server polling the same marks at the same interval
  (``console.live_poll_s``) with the bare driver, fanning out to 50 streams.

The hub's own rounds run as they would: on this desk (a third of the requests
with nobody, every manager over capacity) the give-out round decides 500 waiting
requests every 5 s, which shows in the pages' p99.

    python -m bench.console [--backend sqlite|postgresql] [--data /work/benchkeep/console]
        [--pg-url postgresql://...] [--samples 1000] [--streams 50] [--rounds 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import random
import secrets
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from sqlalchemy import event
from sqlalchemy.engine import Engine

from bench import console_data
from bench import timeline_data as data
from bench.timeline import quantiles
from hub import config as hub_config
from hub.app.run import Hub
from hub.console.app import COOKIE, digest, session_cookie
from hub.kernel import loggers
from storage import console as console_q
from storage.db import SQLITE_PRAGMAS

# Targets of the issue: a page's p99 server time, every console told of a write.
PAGE_P99_MS = 50.0
LIVE_P99_MS = 1000.0
TIME_PER_PAGE = 120.0  # seconds: then a page stops at the samples it has
ROUND_TIMEOUT = 10.0
SUPERVISOR = ("Supervisor", 99_999)
LIVE_CLIENT = "bench.console live writes"
MARKS_SQL = (
    "SELECT (SELECT max(id) FROM interactions), (SELECT max(id) FROM conversations),"
    " (SELECT max(updated_at) FROM conversations)"
)

Statement = tuple[str, Any]


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- what a request sent to the database ----------------------------------------------


class Recorder:
    """The statements the hub's engines send, tagged by who sent them: the asyncio
    task (statements of the async engine run in its greenlet) or the thread (the
    SQLite reader threads). A request's own are its handler task's and the readers'."""

    def __init__(self) -> None:
        self.seen: list[tuple[object, str, Any]] | None = None
        event.listen(Engine, "before_cursor_execute", self._statement)
        event.listen(Engine, "begin", self._begin)

    def close(self) -> None:
        event.remove(Engine, "before_cursor_execute", self._statement)
        event.remove(Engine, "begin", self._begin)

    @staticmethod
    def _who() -> object:
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(RuntimeError):
                return asyncio.current_task()
        return threading.current_thread().name

    def _statement(self, conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        if self.seen is not None:
            self.seen.append((self._who(), statement, params))

    def _begin(self, conn: Any) -> None:
        # SQLite's BEGIN is a statement of its own (storage.db); PostgreSQL's is asyncpg's
        if self.seen is not None and conn.dialect.name == "postgresql":
            self.seen.append((self._who(), "BEGIN", None))

    async def capture(self, work: Callable[[], Awaitable[Any]]) -> list[Statement]:
        self.seen = []
        try:
            await work()
            seen = self.seen
        finally:
            self.seen = None
        handler = next(
            (who for who, sql, _ in seen if "console_sessions" in sql and "SELECT" in sql), None
        )
        return [
            (sql, params)
            for who, sql, params in seen
            if who is handler or (isinstance(who, str) and who.startswith("sqlite-reader"))
        ]


class BareSqlite:
    """Replays a request's statements unit by unit (each BEGIN ends the one before)."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in SQLITE_PRAGMAS:
            self.conn.execute(pragma)

    async def replay(self, statements: list[Statement]) -> None:
        for statement, params in statements:
            if statement.startswith("BEGIN") and self.conn.in_transaction:
                self.conn.execute("COMMIT")
            self.conn.execute(statement, params or ()).fetchall()
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    async def marks(self) -> Any:
        return self.conn.execute(MARKS_SQL).fetchone()

    async def close(self) -> None:
        self.conn.close()


class BareAsyncpg:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def replay(self, statements: list[Statement]) -> None:
        open_ = False
        for statement, params in statements:
            if statement == "BEGIN":
                if open_:
                    await self.conn.execute("COMMIT")
                await self.conn.execute("BEGIN")
                open_ = True
                continue
            await self.conn.fetch(statement, *(params or ()))
        if open_:
            await self.conn.execute("COMMIT")

    async def marks(self) -> Any:
        return await self.conn.fetchrow(MARKS_SQL)

    async def close(self) -> None:
        await self.conn.close()


Bare = BareSqlite | BareAsyncpg


# -- the hub ------------------------------------------------------------------------


def hub_settings(url: str, folder: Path) -> dict[str, Any]:
    """The generated data's 20 managers (as the config names them) and a supervisor."""
    managers = [
        {"name": f"Manager {n}", "telegram_id": 10_000 + n, "role": "manager"} for n in range(1, 21)
    ]
    managers.append({"name": SUPERVISOR[0], "telegram_id": SUPERVISOR[1], "role": "supervisor"})
    return {
        "storage": {"url": url, "attachments_dir": str(folder / "files")},
        "admin": {"listen": f"127.0.0.1:{free_port()}", "token": secrets.token_urlsafe(24)},
        "hub": {"language": "en"},
        "managers": managers,
        "console": {"listen": f"127.0.0.1:{free_port()}"},
    }


async def signed_in(hub: Hub, name: str = SUPERVISOR[0]) -> str:
    """A session of the person opened in the database: its cookie's value."""
    ctx, db = hub.console_ctx, hub.db
    assert ctx is not None and db is not None
    secret = secrets.token_urlsafe(32)
    async with db.write() as conn:
        person = await console_q.person_by_name(conn, name)
        assert person is not None
        await console_q.open_session(
            conn,
            secret_hash=digest(secret),
            manager_id=person.id,
            name=person.name,
            now=datetime.now(UTC),
        )
    return session_cookie(ctx, secret)


# -- pages --------------------------------------------------------------------------


async def measure_page(
    name: str,
    fetch: Callable[[], Awaitable[int]],
    recorder: Recorder,
    bare: Bare,
    driver: str,
    samples: int,
) -> dict[str, float]:
    hub_ms: list[float] = []
    raw_ms: list[float] = []
    deadline = time.monotonic() + TIME_PER_PAGE
    sizes = []
    for _ in range(samples):
        if time.monotonic() > deadline and len(hub_ms) >= 20:
            break
        statements = await recorder.capture(fetch)  # warms the caches both use
        started = time.perf_counter()
        sizes.append(await fetch())
        hub_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await bare.replay(statements)
        raw_ms.append((time.perf_counter() - started) * 1000)
    hub50, hub99 = quantiles(hub_ms)
    raw50, raw99 = quantiles(raw_ms)
    print(
        f"{name:<14} hub p50 {hub50:7.2f} ms  p99 {hub99:7.2f} ms | {driver} p50 {raw50:6.2f} ms"
        f"  p99 {raw99:6.2f} ms | ratio p50 {hub50 / raw50:5.1f}  p99 {hub99 / raw99:5.1f}"
        f" | {len(hub_ms)} requests, {len(statements)} statements, {sizes[-1] // 1024} KiB",
        flush=True,
    )
    return {"hub_p50": hub50, "hub_p99": hub99, "raw_p50": raw50, "raw_p99": raw99}


async def pages(
    base: str, cookies: tuple[str, str], busiest: int, recorder: Recorder, bare: Bare, samples: int
) -> dict[str, dict[str, float]]:
    driver = "sqlite3" if isinstance(bare, BareSqlite) else "asyncpg"
    async with aiohttp.ClientSession() as http:

        def page(path: str, cookie: str = cookies[0]) -> Callable[[], Awaitable[int]]:
            headers = {"Cookie": f"{COOKIE}={cookie}"}

            async def fetch() -> int:
                async with http.get(
                    base + path, headers=headers, allow_redirects=False
                ) as response:
                    body = await response.read()
                    if response.status != 200:
                        raise SystemExit(f"GET {path}: {response.status} {body[:300]!r}")
                    return len(body)

            return fetch

        found = {
            "inbox": page("/inbox"),
            "inbox, manager": page("/inbox", cookies[1]),
            "client page": page(f"/clients/{busiest}"),
            "request page": page(f"/requests/{busiest}"),
        }
        return {
            name: await measure_page(name, fetch, recorder, bare, driver, samples)
            for name, fetch in found.items()
        }


# -- live -------------------------------------------------------------------------


@dataclass
class Round:
    """One write and the streams told of it."""

    expected: int  # the interaction id written
    streams: int
    arrivals: dict[int, float] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def told(self, stream: int, interaction: int | None, at: float) -> None:
        if interaction is not None and interaction >= self.expected:
            self.arrivals.setdefault(stream, at)
            if len(self.arrivals) == self.streams:
                self.done.set()


class Streams:
    """``count`` SSE streams of ``url``, each noting the change events it reads."""

    def __init__(self, url: str, count: int, headers: dict[str, str]) -> None:
        self.url, self.count, self.headers = url, count, headers
        self.current: Round | None = None
        self.ready: set[int] = set()
        self.all_ready = asyncio.Event()

    async def _listen(self, http: aiohttp.ClientSession, stream: int) -> None:
        async with http.get(self.url) as response:
            if response.status != 200:
                raise SystemExit(f"GET {self.url}: {response.status}")
            kind = b""
            async for line in response.content:
                if line.startswith(b"event:"):
                    kind = line[6:].strip()
                elif line.startswith(b"data:") and kind == b"change":
                    at = time.perf_counter()
                    self.ready.add(stream)
                    if len(self.ready) == self.count:
                        self.all_ready.set()
                    if self.current is not None:
                        self.current.told(stream, json.loads(line[5:])["interaction"], at)

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[Streams]:
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with aiohttp.ClientSession(
            headers=self.headers, connector=connector, timeout=timeout
        ) as http:
            tasks = [asyncio.create_task(self._listen(http, n)) for n in range(self.count)]
            try:
                async with asyncio.timeout(30):
                    await self.all_ready.wait()  # every stream told once it listens
                yield self
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


class Writer:
    """Messages written to the log as another process would: its own connection.

    They go to a client of their own with a resolved request (made once, kept with
    the data): the log is append-only, and the pages measured stay as generated."""

    def __init__(self, backend: str, target: str) -> None:
        self.backend, self.target = backend, target
        self.sqlite: sqlite3.Connection | None = None
        self.pg: asyncpg.Connection | None = None
        self.client = 0
        self.conversation = 0

    async def open(self) -> None:
        if self.backend == "sqlite":
            db = self.sqlite = sqlite3.connect(
                self.target, isolation_level=None, check_same_thread=False
            )
            for pragma in SQLITE_PRAGMAS:
                db.execute(pragma)
            found = db.execute(
                "SELECT c.id, v.id FROM clients c JOIN conversations v ON v.client_id = c.id"
                " WHERE c.name = ?",
                (LIVE_CLIENT,),
            ).fetchone()
            if found is None:
                now = data.stamp(datetime.now(UTC))
                db.execute("BEGIN IMMEDIATE")
                done = db.execute(
                    "INSERT INTO clients (name, stage, opted_out, created_at, updated_at)"
                    " VALUES (?, 'client', 0, ?, ?)",
                    (LIVE_CLIENT, now, now),
                )
                talk = db.execute(
                    "INSERT INTO conversations (client_id, channel, account, status,"
                    " priority, created_at, updated_at)"
                    " VALUES (?, 'telegram', 'main', 'resolved', 'normal', ?, ?)",
                    (done.lastrowid, now, now),
                )
                db.execute("COMMIT")
                found = (done.lastrowid, talk.lastrowid)
            self.client, self.conversation = int(found[0]), int(found[1])
            return
        pg = self.pg = await asyncpg.connect(self.target)
        found = await pg.fetchrow(
            "SELECT c.id, v.id FROM clients c JOIN conversations v ON v.client_id = c.id"
            " WHERE c.name = $1",
            LIVE_CLIENT,
        )
        if found is None:
            at = datetime.now(UTC)
            async with pg.transaction():
                client = await pg.fetchval(
                    "INSERT INTO clients (name, stage, opted_out, created_at, updated_at)"
                    " VALUES ($1, 'client', false, $2, $2) RETURNING id",
                    LIVE_CLIENT,
                    at,
                )
                talk = await pg.fetchval(
                    "INSERT INTO conversations (client_id, channel, account, status,"
                    " priority, created_at, updated_at)"
                    " VALUES ($1, 'telegram', 'main', 'resolved', 'normal', $2, $2) RETURNING id",
                    client,
                    at,
                )
            found = (client, talk)
        self.client, self.conversation = int(found[0]), int(found[1])

    async def reserve(self) -> int:
        """The id of the next message (the sequence's, on PostgreSQL)."""
        if self.pg is not None:
            return int(
                await self.pg.fetchval(
                    "SELECT nextval(pg_get_serial_sequence('interactions', 'id'))"
                )
            )
        # the hub logs too (its give-out rounds): the newest id now, just before the write
        assert self.sqlite is not None
        return int(self.sqlite.execute("SELECT max(id) FROM interactions").fetchone()[0]) + 1

    async def write(self, n: int) -> None:
        """Message ``n`` from the client (on SQLite: the next id, ``n`` or after)
        and its request's change time."""
        now = datetime.now(UTC)
        c, v = self.client, self.conversation
        if self.sqlite is not None:
            db = self.sqlite

            def write() -> None:
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "INSERT INTO interactions (client_id, conversation_id, direction,"
                    " channel, text, at) VALUES (?, ?, 'in', 'telegram', ?, ?)",
                    (c, v, f"bench live {n}", data.stamp(now)),
                )
                db.execute(
                    "UPDATE conversations SET updated_at = ? WHERE id = ?", (data.stamp(now), v)
                )
                db.execute("COMMIT")

            await asyncio.to_thread(write)
            return
        assert self.pg is not None
        async with self.pg.transaction():
            await self.pg.execute(
                "INSERT INTO interactions (id, client_id, conversation_id, direction,"
                " channel, text, at) VALUES ($1, $2, $3, 'in', 'telegram', $4, $5)",
                n,
                c,
                v,
                f"bench live {n}",
                now,
            )
            await self.pg.execute("UPDATE conversations SET updated_at = $1 WHERE id = $2", now, v)

    async def close(self) -> None:
        if self.sqlite is not None:
            self.sqlite.close()
        if self.pg is not None:
            await self.pg.close()


async def rounds(streams: Streams, writer: Writer, count: int, poll_s: float) -> dict[str, float]:
    """``count`` writes at random phases of the poll; the time until all were told."""
    rng = random.Random(5)
    all_ms: list[float] = []
    each_ms: list[float] = []
    missed = 0
    for _ in range(count):
        await asyncio.sleep(rng.uniform(0.1, 0.1 + poll_s))
        n = await writer.reserve()
        current = streams.current = Round(n, streams.count)
        started = time.perf_counter()
        await writer.write(n)
        try:
            async with asyncio.timeout(ROUND_TIMEOUT):
                await current.done.wait()
        except TimeoutError:
            missed += 1
            continue
        finally:
            streams.current = None
        times = [(at - started) * 1000 for at in current.arrivals.values()]
        all_ms.append(max(times))
        each_ms.extend(times)
    all50, all99 = quantiles(all_ms) if all_ms else (float("inf"),) * 2
    each50, each99 = quantiles(each_ms) if each_ms else (float("inf"),) * 2
    return {
        "all_p50": all50,
        "all_p99": all99,
        "all_max": max(all_ms, default=float("inf")),
        "each_p50": each50,
        "each_p99": each99,
        "missed": missed,
    }


class Echo:
    """The bare baseline: an aiohttp SSE server polling the marks with the bare driver
    every ``poll_s`` and writing each change to every stream."""

    def __init__(self, bare: Bare, poll_s: float) -> None:
        self.bare, self.poll_s = bare, poll_s
        self.queues: set[asyncio.Queue[str]] = set()
        self.port = 0

    async def _poll(self) -> None:
        last = None
        while True:
            marks = tuple(await self.bare.marks())
            if marks != last:
                last = marks
                said = json.dumps({"interaction": marks[0]})
                for queue in self.queues:
                    if queue.full():
                        queue.get_nowait()
                    queue.put_nowait(said)
            await asyncio.sleep(self.poll_s)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        queue.put_nowait(json.dumps({"interaction": None}))
        self.queues.add(queue)
        try:
            while True:
                said = await queue.get()
                await response.write(f"event: change\ndata: {said}\n\n".encode())
        finally:
            self.queues.discard(queue)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_get("/live", self._stream)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        self.port = free_port()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        poller = asyncio.create_task(self._poll())
        try:
            yield f"http://127.0.0.1:{self.port}/live"
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await runner.cleanup()


async def live(
    args: argparse.Namespace, base: str, cookie: str, bare: Bare, writer: Writer, poll_s: float
) -> dict[str, dict[str, float]]:
    results = {}
    echo = Echo(bare, poll_s)
    async with echo.serving() as url, Streams(url, args.streams, {}).opened() as streams:
        results["live, bare"] = await rounds(streams, writer, args.rounds, poll_s)
    headers = {"Cookie": f"{COOKIE}={cookie}"}
    async with Streams(base + "/live", args.streams, headers).opened() as streams:
        results["live"] = await rounds(streams, writer, args.rounds, poll_s)
    for name, r in results.items():
        print(
            f"{name:<14} all {args.streams} told: p50 {r['all_p50']:6.0f} ms  p99"
            f" {r['all_p99']:6.0f} ms  max {r['all_max']:6.0f} ms | each stream p50"
            f" {r['each_p50']:6.0f} ms  p99 {r['each_p99']:6.0f} ms | {args.rounds} rounds,"
            f" {r['missed']:.0f} missed (poll every {poll_s * 1000:.0f} ms)",
            flush=True,
        )
    hub, raw = results["live"], results["live, bare"]
    print(
        f"live ratio to bare: p50 {hub['all_p50'] / raw['all_p50']:.2f}  p99"
        f" {hub['all_p99'] / raw['all_p99']:.2f}"
    )
    return results


# -- the run ------------------------------------------------------------------------


class ClosedStreams(logging.Filter):
    """Counts (and keeps off the screen) the warnings the console logs when a
    reader closes its live stream: the write to the gone peer is taken for a
    storage outage (``console.unavailable``)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "closing transport" in record.getMessage():
            self.count += 1
            return False
        return True


def verdicts(results: dict[str, dict[str, float]], streams: int) -> list[str]:
    found = []
    for name in ("inbox", "inbox, manager", "client page", "request page"):
        if (r := results.get(name)) is not None:
            found.append(f"{name}: p99 ≤ {PAGE_P99_MS:.0f} ms: {_met(r['hub_p99'] <= PAGE_P99_MS)}")
    if (r := results.get("live")) is not None:
        ok = r["all_p99"] <= LIVE_P99_MS and not r["missed"]
        found.append(f"live: all {streams} consoles told within 1 s (p99): {_met(ok)}")
    return found


async def run(args: argparse.Namespace, url: str, bare: Bare, writer: Writer, busiest: int) -> None:
    gc.collect()
    gc.freeze()
    recorder = Recorder()
    closed = ClosedStreams()
    loggers.console.addFilter(closed)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            hub = Hub(hub_config.parse(hub_settings(url, Path(tmp))), channels={})
            async with hub.lifespan():
                assert hub.console is not None
                base = f"http://127.0.0.1:{hub.console.port}"
                cookie = await signed_in(hub)
                manager = await signed_in(hub, "Manager 1")
                results: dict[str, dict[str, float]] = {}
                if not args.live_only:
                    results |= await pages(
                        base, (cookie, manager), busiest, recorder, bare, args.samples
                    )
                if not args.pages_only:
                    await writer.open()
                    try:
                        poll_s = hub.config.console.live_poll_s
                        results |= await live(args, base, cookie, bare, writer, poll_s)
                    finally:
                        await writer.close()
    finally:
        recorder.close()
        loggers.console.removeFilter(closed)
        await bare.close()
    if closed.count:
        print(f"console.unavailable logged {closed.count} times as live streams closed")
    kept = args.data / f"results-{args.backend}.json"
    every = json.loads(kept.read_text()) if kept.exists() else {}
    every[args.size] = {**every.get(args.size, {}), **results}
    kept.write_text(json.dumps(every, indent=1))
    for line in verdicts(results, args.streams):
        print("target:", line)


async def main_async(args: argparse.Namespace) -> None:
    clients, total = data.SIZES[args.size]
    spec = data.Spec(args.size, clients, total)
    args.data.mkdir(parents=True, exist_ok=True)
    print(f"{total:,} interactions over {clients:,} clients on {args.backend}", flush=True)
    if args.backend == "sqlite":
        url, busiest = await console_data.ensure_sqlite(args.data, spec)
        path = url.split("///", 1)[1]
        await run(args, url, BareSqlite(path), Writer("sqlite", path), busiest)
        return
    cluster = None
    admin = args.pg_url
    if admin is None:
        cluster = data.Cluster(args.data / "pg")
        cluster.start()
        admin = cluster.dsn("postgres")
    try:
        dsn, busiest = await console_data.ensure_postgresql(admin, spec)
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        bare = BareAsyncpg(await asyncpg.connect(dsn))
        await run(args, url, bare, Writer("postgresql", dsn), busiest)
    finally:
        if cluster is not None:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", choices=sorted(data.SIZES), default="1m")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("/work/benchkeep/console"),
        help="where the generated data is kept between runs (outside the repository)",
    )
    parser.add_argument(
        "--pg-url",
        help="a PostgreSQL server to use (postgresql://USER@HOST:PORT/postgres) instead of"
        " a cluster the bench starts in --data",
    )
    parser.add_argument("--samples", type=int, default=1000, help="requests per page")
    parser.add_argument("--streams", type=int, default=50, help="open consoles")
    parser.add_argument("--rounds", type=int, default=50, help="writes the consoles wait for")
    parser.add_argument("--pages-only", action="store_true")
    parser.add_argument("--live-only", action="store_true")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
