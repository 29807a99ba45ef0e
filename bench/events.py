"""Business events recorded per second through ``POST /api/events``, against bare
sqlite3 committing each event, in one run.

The hub is ``hub run`` on SQLite (WAL, synchronous=FULL) with the example's
stage rules (first and second purchase); 20 concurrent callers post N events
(purchases with an amount, over a few hundred clients named by email, so the
first events create clients and the rules move them), each caller waiting for
its answer (201) before its next post. Timed from the first post to the last
answer. The baseline is the standard library's sqlite3 with the same PRAGMAs
inserting an equivalent row (the event's columns) and committing, once per
event, the same count: what durability alone costs. Target: ratio ≥ 0.3.

Then the outgoing events: webhook deliveries per second through the dispatcher to
a local receiver, against bare aiohttp POSTs (``bench/webhooks.py``; target ≥ 500/s).

    python -m bench.events [--events 10000] [--callers 20] [--clients 500]
                           [--deliveries 10000] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench import webhooks
from tests.cluster import HubProcess, free_port

TOKEN = "bench-token-0123456789"
RULES = [
    {"name": "first purchase", "when": "purchase", "count": 1, "to": "first_time_buyer"},
    {"name": "second purchase", "when": "purchase", "count": 2, "to": "repeat_buyer"},
]


def config(folder: Path) -> dict[str, Any]:
    return {
        "hub": {"log_level": "WARNING"},
        "storage": {
            "url": f"sqlite+aiosqlite:///{folder}/hub.db",
            "attachments_dir": str(folder / "files"),
        },
        "admin": {"listen": f"127.0.0.1:{free_port()}", "token": TOKEN},
        "stages": {"rules": RULES},
    }


def body(n: int, clients: int) -> dict[str, Any]:
    return {
        "id": f"order-{n}",
        "kind": "purchase",
        "client": {"email": f"client{n % clients}@example.com"},
        "amount": f"{100 + n % 900}.50",
        "currency": "RUB",
        "fields": {"order": n, "shop": "main"},
    }


async def post_all(port: int, args: argparse.Namespace) -> tuple[float, Counter[int]]:
    """Every event posted by ``args.callers`` callers; seconds taken, answers by status."""
    url = f"http://127.0.0.1:{port}/api/events"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    answers: Counter[int] = Counter()
    numbers = iter(range(args.events))
    connector = aiohttp.TCPConnector(limit=args.callers)

    async def caller(http: aiohttp.ClientSession) -> None:
        for n in numbers:
            async with http.post(url, json=body(n, args.clients), headers=headers) as resp:
                await resp.read()
                answers[resp.status] += 1

    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.post(url, json=body(-1, args.clients), headers=headers) as warm:
            await warm.read()
        started = time.perf_counter()
        await asyncio.gather(*(caller(http) for _ in range(args.callers)))
        return time.perf_counter() - started, answers


async def through_the_hub(args: argparse.Namespace) -> tuple[float, Counter[int], int]:
    """The hub's rate, its answers, and the events it holds afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        hub = HubProcess("hub", config(folder), folder)
        await hub.start()
        try:
            await hub.ready(timeout=60)
            seconds, answers = await post_all(hub.admin_port, args)
        finally:
            await hub.stop()
        db = sqlite3.connect(folder / "hub.db")
        try:
            held = int(db.execute("SELECT count(*) FROM business_events").fetchone()[0])
        finally:
            db.close()
    return args.events / seconds, answers, held


def bare(args: argparse.Namespace) -> float:
    """sqlite3 inserting and committing one equivalent row per event."""
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "bare.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(
            "CREATE TABLE business_events (id INTEGER PRIMARY KEY, key VARCHAR(200) UNIQUE,"
            " kind VARCHAR(40), client_id INTEGER, interaction_id INTEGER, at DATETIME,"
            " amount NUMERIC(18, 2), currency VARCHAR(3), fields JSON, created_at DATETIME)"
        )
        insert = (
            "INSERT INTO business_events (key, kind, client_id, interaction_id, at, amount,"
            " currency, fields, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        started = time.perf_counter()
        for n in range(args.events):
            event = body(n, args.clients)
            now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
            row = (event["id"], "purchase", n % args.clients + 1, None, now)
            rest = (event["amount"], "RUB", json.dumps(event["fields"]), now)
            db.execute("BEGIN")
            db.execute(insert, row + rest)
            db.execute("COMMIT")
        seconds = time.perf_counter() - started
        db.close()
    return float(args.events / seconds)


def run_events(args: argparse.Namespace) -> None:
    print(
        f"business events: {args.events} through POST /api/events, {args.callers} callers, "
        f"{args.clients} clients",
        file=sys.stderr,
    )
    hub_rate, answers, held = asyncio.run(through_the_hub(args))
    bare_rate = bare(args)
    said = ", ".join(f"{status}: {n}" for status, n in sorted(answers.items()))
    print(f"hub:  {hub_rate:,.0f} events/s ({said}; {held} events held)")
    print(f"bare: {bare_rate:,.0f} events/s (sqlite3, one row and a commit per event)")
    print(f"ratio {hub_rate / bare_rate:.2f} (target 0.3)")
    if answers != Counter({201: args.events}) or held != args.events + 1:
        raise SystemExit("some events were not recorded once each")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--callers", type=int, default=20)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--deliveries", type=int, default=10_000, help="webhook events")
    parser.add_argument("--db", metavar="URL", help="the webhook section's database URL")
    args = parser.parse_args()
    run_events(args)
    webhooks.report(argparse.Namespace(events=args.deliveries, clients=1_000, db=args.db))


if __name__ == "__main__":
    main()
