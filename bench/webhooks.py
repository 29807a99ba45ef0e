"""Outgoing events: webhook deliveries per second to a local receiver.

10,000 events of 1,000 clients (interleaved, ten each) are queued as the hub
queues them (``storage.webhooks.emit``, in transactions of 1,000) into a real
database (SQLite in a temporary folder, or ``--db`` a PostgreSQL URL), then the
hub's dispatcher (:class:`hub.delivery.dispatcher.Dispatcher`, its concurrency as
``hub run`` has it) delivers them through the webhook channel to a local aiohttp
receiver that checks every signature and each client's order. Timed from the
dispatcher's start to the last delivery recorded sent. Target: 500/s or more.

The baseline, in the same run, is bare aiohttp: the same number of signed POSTs
of the same bodies to the same receiver, as many at a time as the dispatcher
sends, from one session. The ratio is hub/bare.

    python -m bench.webhooks [--events 10000] [--clients 1000] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import func, insert, select, text

from hub.config import DispatcherSection
from hub.config.sections import WebhookSection
from hub.delivery.dispatcher import Dispatcher
from hub.delivery.webhooks import WebhookChannel, signature
from hub.delivery.webhooks import sync as sync_webhooks
from hub.kernel.clock import SystemClock
from storage import Database
from storage import webhooks as q
from storage.migrate import upgrade
from storage.tables import clients, outbox

SECRET = "bench-webhook-secret"
CONCURRENCY = 16  # the dispatcher's, as hub run builds it
CHUNK = 1_000


@dataclass
class Receiver:
    """Counts the signed events it takes; a bad signature or a client's event out
    of order is counted apart."""

    expected: int
    taken: int = 0
    forged: int = 0
    disorder: int = 0
    last: dict[int, int] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        fields = dict(
            p.split("=", 1) for p in request.headers.get("X-Hub-Signature", "").split(",")
        )
        expected = hmac.new(
            SECRET.encode(), fields.get("t", "").encode() + b"." + raw, hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, fields.get("v1", "")):
            self.forged += 1
            return web.Response(status=401)
        data = json.loads(raw)["data"]
        client, seq = data.get("client_id"), data.get("seq")
        if isinstance(client, int) and isinstance(seq, int):
            if seq <= self.last.get(client, -1):
                self.disorder += 1
            self.last[client] = seq
        self.taken += 1
        if self.taken >= self.expected:
            self.done.set()
        return web.Response(status=204)

    def reset(self) -> None:
        self.taken = self.forged = self.disorder = 0
        self.last.clear()
        self.done.clear()


async def serve(rec: Receiver) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server  # the port the OS chose
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook"


async def queue(db: Database, webhook: WebhookSection, events: int, clients_n: int) -> None:
    """The clients and their events, as the hub queues them."""
    now = datetime.now(UTC)
    async with db.write() as conn:
        await sync_webhooks(conn, [webhook])
        result = await conn.execute(
            insert(clients).returning(clients.c.id),
            [
                {
                    "name": f"client {i}",
                    "stage": "prospect",
                    "opted_out": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(clients_n)
            ],
        )
        ids = sorted(int(r[0]) for r in result)
    for start in range(0, events, CHUNK):
        batch = [
            q.Emitted(
                "event.recorded",
                ids[k % clients_n],
                now,
                {"client_id": ids[k % clients_n], "seq": k // clients_n, "name": "paid"},
            )
            for k in range(start, min(events, start + CHUNK))
        ]
        async with db.write() as conn:
            await q.emit(conn, batch, now)


async def bodies(db: Database) -> list[bytes]:
    async with db.read() as conn:
        rows = await conn.execute(select(outbox.c.text).where(outbox.c.channel == q.CHANNEL))
        return [str(r[0]).encode() for r in rows]


async def run_hub(db: Database, webhook: WebhookSection, rec: Receiver) -> float:
    channel = WebhookChannel([webhook])
    dispatcher = Dispatcher(
        db, SystemClock(), {q.CHANNEL: channel}, DispatcherSection(), concurrency=CONCURRENCY
    )
    started = time.perf_counter()
    await dispatcher.start()
    try:
        await asyncio.wait_for(rec.done.wait(), 600)
        while True:  # the last sends recorded
            async with db.read() as conn:
                left = (
                    await conn.execute(
                        select(func.count()).where(
                            outbox.c.channel == q.CHANNEL, outbox.c.status != "sent"
                        )
                    )
                ).scalar_one()
            if not left:
                break
            await asyncio.sleep(0.01)
        return time.perf_counter() - started
    finally:
        await dispatcher.stop()
        await channel.stop()


async def run_bare(url: str, payloads: list[bytes]) -> float:
    """The same signed POSTs, ``CONCURRENCY`` at a time, from one aiohttp session."""
    todo = iter(payloads)

    async def worker(session: aiohttp.ClientSession) -> None:
        for body in todo:
            headers = {
                "Content-Type": "application/json",
                "X-Hub-Signature": signature(SECRET.encode(), int(time.time()), body),
            }
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                assert 200 <= response.status < 300

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
    return time.perf_counter() - started


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """One run; its figures (also printed by :func:`main`)."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(args.db or f"sqlite+aiosqlite:///{tmp}/bench.db")
        rec = Receiver(expected=args.events)
        runner, url = await serve(rec)
        try:
            await upgrade(db)
            webhook = WebhookSection(name="bench", url=url, events=["*"], secret=SECRET)
            queued_at = time.perf_counter()
            await queue(db, webhook, args.events, args.clients)
            queue_s = time.perf_counter() - queued_at
            payloads = await bodies(db)
            if db.engine.dialect.name == "postgresql":
                async with db.write() as conn:  # statistics, as autovacuum keeps them
                    await conn.execute(text("ANALYZE outbox"))
            hub_s = await run_hub(db, webhook, rec)
            result: dict[str, Any] = {
                "events": args.events,
                "clients": args.clients,
                "queue_s": queue_s,
                "hub_s": hub_s,
                "forged": rec.forged,
                "out_of_order": rec.disorder,
            }
            rec.reset()
            rec.expected = len(payloads)
            result["bare_s"] = await run_bare(url, payloads)
            result["bare_forged"] = rec.forged
        finally:
            await runner.cleanup()
            await db.dispose()
    result["hub_per_s"] = args.events / result["hub_s"]
    result["bare_per_s"] = args.events / result["bare_s"]
    result["ratio"] = result["hub_per_s"] / result["bare_per_s"]
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=1_000)
    p.add_argument("--db", metavar="URL", help="a database URL (default: SQLite in a temp folder)")
    return p


def main() -> None:
    report(parser().parse_args())


def report(args: argparse.Namespace) -> None:
    """Run once and print the figures (``bench.events`` runs this section too)."""
    # One log line per delivery is for operators, not part of delivering.
    logging.getLogger("hub").setLevel(logging.WARNING)
    r = asyncio.run(run(args))
    print(
        f"webhooks: {r['events']:,} events of {r['clients']:,} clients "
        f"(queued in {r['queue_s']:.2f} s), dispatcher concurrency {CONCURRENCY}"
    )
    print(
        f"hub dispatcher: {r['hub_s']:.2f} s, {r['hub_per_s']:,.0f} deliveries/s "
        f"(target >= 500/s); bad signatures {r['forged']}, out of order {r['out_of_order']}"
    )
    print(
        f"bare aiohttp: {r['bare_s']:.2f} s, {r['bare_per_s']:,.0f} POSTs/s; "
        f"ratio hub/bare {r['ratio']:.2f}"
    )


if __name__ == "__main__":
    main()
