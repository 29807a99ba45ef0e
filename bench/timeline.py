"""The client card and client search over a big log: 1,000,000 interactions over
100,000 clients on SQLite, against bare ``sqlite3`` running the same statements
in the same run.

The schema is the hub's own (its migrations); rows go in with raw
``executemany`` and the full-text index is filled the way the hub fills it.
How many interactions a client has follows a long tail (most have a few, some
thousands), as in a real client base. Measured per request, over random
clients:

- card: what the admin API runs for a client's card and its timeline
  (``storage.read.client_card`` and ``storage.read.timeline``, the last 50
  shown), in one read unit of work;
- staff card: what the managers' Telegram ``/card`` runs (``hub.desk.desk.Desk.card``);
- search: ``storage.read.search_clients`` over ``hub.clients.search.client_search`` for
  a name, an email address, a phone number, a Telegram @username, or a word of the log.

The bare baseline replays the exact statements (SQL and parameters) the hub
sent for each request, captured from the engine, on a plain ``sqlite3``
connection: the ratio is what the hub's layers (SQLAlchemy, aiosqlite, the
event loop, building the results) cost on top of SQLite's own work.
Target: card p99 under 10 ms.

    python -m bench.timeline [--clients 100000] [--interactions 1000000] [--samples 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

from hub.clients.attachments import AttachmentStore
from hub.clients.search import client_search
from hub.desk.desk import Desk
from hub.kernel.clock import FrozenClock
from storage import Database
from storage import read as q
from storage.db import SQLITE_PRAGMAS
from storage.migrate import upgrade

T0 = datetime(2025, 1, 1, tzinfo=UTC)
FIRST = ["Иван", "Анна", "Мария", "Олег", "Ivan", "Anna", "Maria", "Peter", "Olga", "Sergey"]
LAST = [
    *("Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов"),
    *("Новиков", "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров"),
    *("Smith", "Johnson", "Brown", "Taylor", "Miller", "Wilson", "Moore", "Clark"),
]
CHANNELS = ("telegram", "email", "webform")


def stamp(moment: datetime) -> str:
    """As SQLAlchemy stores an aware UTC time on SQLite (naive text)."""
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    letters = "абвгдеёжзийклмнопрстуфхцчшщыэюя"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(4, 9))) for _ in range(size)]


def generate(path: Path, clients: int, total: int, seed: int) -> dict[str, Any]:
    """Fill the migrated database at ``path``; what the samples can look for."""
    rng = random.Random(seed)
    words = vocabulary(rng)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    now = stamp(T0)
    db.executemany(
        "INSERT INTO managers (id, name, telegram_id, role, capacity, active, away, created_at)"
        " VALUES (?, ?, ?, 'manager', 20, 1, 0, ?)",
        [(n, f"Manager {n}", 10_000 + n, now) for n in range(1, 21)],
    )
    names = [f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(clients)]
    db.executemany(
        "INSERT INTO clients (id, name, stage, owner_id, opted_out, created_at, updated_at)"
        " VALUES (?, ?, 'client', ?, 0, ?, ?)",
        [(n + 1, names[n], rng.randint(1, 20), now, now) for n in range(clients)],
    )
    identities: list[tuple[int, str, str]] = []
    emails, phones = [], []
    for n in range(1, clients + 1):
        identities.append((n, "telegram", str(1_000_000 + n)))
        if n % 2 == 0:
            email = f"client{n}@example.org"
            identities.append((n, "email", email))
            emails.append(email)
        if n % 3 == 0:
            phone = f"+7916{n:07d}"
            identities.append((n, "phone", phone))
            phones.append(phone)
    db.executemany(
        "INSERT INTO identities (client_id, kind, value, created_at) VALUES (?, ?, ?, ?)",
        [(*row, now) for row in identities],
    )
    # One conversation per client and channel it uses: the client's main channel.
    channel_of = [CHANNELS[n % 3] for n in range(clients + 1)]
    db.executemany(
        "INSERT INTO conversations (id, client_id, channel, account, status, assignee_id,"
        " priority, created_at, updated_at) VALUES (?, ?, ?, 'main', ?, ?, 'normal', ?, ?)",
        [
            (n, n, channel_of[n], "open" if n % 10 == 0 else "resolved", 1 + n % 20, now, now)
            for n in range(1, clients + 1)
        ],
    )
    # A long tail: client k (in a shuffled order) gets a share ~ 1/sqrt(k).
    order = list(range(1, clients + 1))
    rng.shuffle(order)
    span = 365 * 24 * 3600
    rows = []
    for n in range(total):
        client = order[min(int(clients * rng.random() ** 2), clients - 1)]
        direction = "in" if n % 2 == 0 else "out"
        text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
        # A Telegram client's own messages carry their @username (inbound extras).
        said_by = direction == "in" and channel_of[client] == "telegram"
        at = T0 + timedelta(seconds=span * n / total)
        rows.append(
            (
                client,
                client,
                direction,
                channel_of[client],
                f"x{n}" if direction == "in" else None,
                text,
                stamp(at),
                None if direction == "in" else "sent",
                f'{{"username": "{username(client)}"}}' if said_by else None,
            )
        )
    db.executemany(
        "INSERT INTO interactions (client_id, conversation_id, direction, channel, external_id,"
        " text, at, delivery, extras) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    # The full-text index, as storage.search.index_new fills it behind ingest.
    db.execute(
        "INSERT INTO interactions_fts(rowid, text) SELECT id, text FROM interactions"
        " WHERE text != '' AND direction != 'event'"
    )
    db.execute(
        "INSERT INTO search_positions(name, last_id) SELECT 'interactions', max(id)"
        " FROM interactions"
    )
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()
    usernames = [username(n) for n in range(1, clients + 1) if channel_of[n] == "telegram"]
    return {
        "names": names,
        "emails": emails,
        "phones": phones,
        "words": words,
        "usernames": usernames,
    }


def username(client: int) -> str:
    return f"User_{client}_tg"


Statement = tuple[str, Any]


class Recorder:
    """The statements the hub's engine sends, per request."""

    def __init__(self, db: Database) -> None:
        self.current: list[Statement] | None = None
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        if self.current is not None:
            self.current.append((statement, params))

    async def capture(self, work: Callable[[], Awaitable[Any]]) -> list[Statement]:
        self.current = []
        try:
            await work()
            return self.current
        finally:
            self.current = None


def bare(conn: sqlite3.Connection, statements: list[Statement]) -> None:
    began = False
    for statement, params in statements:
        cursor = conn.execute(statement, params or ())
        cursor.fetchall()
        began = began or statement.strip().upper().startswith("BEGIN")
    if began:
        conn.execute("ROLLBACK")


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


async def measure(
    name: str,
    requests: list[Callable[[], Awaitable[Any]]],
    recorder: Recorder,
    raw: sqlite3.Connection,
) -> dict[str, float]:
    hub_ms, raw_ms = [], []
    for request in requests:
        statements = await recorder.capture(request)  # warms the caches both use
        started = time.perf_counter()
        await request()
        hub_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        bare(raw, statements)
        raw_ms.append((time.perf_counter() - started) * 1000)
    hub50, hub99 = quantiles(hub_ms)
    raw50, raw99 = quantiles(raw_ms)
    print(
        f"{name:<14} hub p50 {hub50:7.2f} ms  p99 {hub99:7.2f} ms | sqlite3 p50 {raw50:6.2f} ms"
        f"  p99 {raw99:6.2f} ms | ratio p50 {hub50 / raw50:4.1f}  p99 {hub99 / raw99:4.1f}"
    )
    return {"hub_p50": hub50, "hub_p99": hub99, "raw_p50": raw50, "raw_p99": raw99}


async def main_async(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed + 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hub.db"
        url = f"sqlite+aiosqlite:///{path}"
        db = Database(url)
        await upgrade(db)
        await db.dispose()
        started = time.perf_counter()
        data = generate(path, args.clients, args.interactions, args.seed)
        print(
            f"{args.interactions:,} interactions over {args.clients:,} clients generated in "
            f"{time.perf_counter() - started:.1f} s ({path.stat().st_size / 2**20:.0f} MB)"
        )
        del data["names"]
        gc.collect()
        gc.freeze()  # the generated input, as the hub freezes its heap after start
        db = Database(url)
        recorder = Recorder(db)
        desk = Desk(db, FrozenClock(), AttachmentStore(Path(tmp) / "files", 10**6))
        raw = sqlite3.connect(path, isolation_level=None)
        for pragma in SQLITE_PRAGMAS:
            raw.execute(pragma)
        try:
            sample = [rng.randint(1, args.clients) for _ in range(args.samples)]

            def card(client_id: int) -> Callable[[], Awaitable[Any]]:
                async def run() -> Any:
                    async with db.read() as conn:
                        found = await q.client_card(conn, client_id)
                        last = await q.timeline(conn, client_id, last=50)
                    return found, last

                return run

            def staff_card(client_id: int) -> Callable[[], Awaitable[Any]]:
                async def run() -> Any:
                    return await desk.card(client_id)

                return run

            def search(text: str) -> Callable[[], Awaitable[Any]]:
                async def run() -> Any:
                    query = client_search(text, "RU")
                    async with db.read() as conn:
                        return await q.search_clients(conn, query, limit=20)

                return run

            texts = {
                "name": [rng.choice(LAST) for _ in range(args.samples // 4)],
                "email": [rng.choice(data["emails"]) for _ in range(args.samples // 4)],
                "phone": ["8 " + rng.choice(data["phones"])[2:] for _ in range(args.samples // 4)],
                "log word": [rng.choice(data["words"]) for _ in range(args.samples // 4)],
                "username": ["@" + rng.choice(data["usernames"]) for _ in range(args.samples // 4)],
            }
            busiest = [
                int(row[0])
                for row in raw.execute(
                    "SELECT client_id FROM interactions GROUP BY client_id"
                    " ORDER BY count(*) DESC LIMIT ?",
                    (max(args.clients // 100, 1),),
                )
            ]
            most = raw.execute(
                "SELECT count(*) FROM interactions WHERE client_id = ?", (busiest[0],)
            ).fetchone()[0]
            print(
                f"the busiest client has {most:,} interactions; median client: "
                f"{args.interactions // args.clients} on average"
            )
            results = {
                "card": await measure("card", [card(c) for c in sample], recorder, raw),
                "card busiest": await measure(
                    "card, top 1%", [card(rng.choice(busiest)) for _ in sample], recorder, raw
                ),
                "staff card": await measure(
                    "staff card", [staff_card(c) for c in sample], recorder, raw
                ),
            }
            for kind, queries in texts.items():
                results[f"search {kind}"] = await measure(
                    f"search {kind}", [search(t) for t in queries], recorder, raw
                )
            every = [search(t) for queries in texts.values() for t in queries]
            rng.shuffle(every)
            results["search"] = await measure("search (all)", every, recorder, raw)
            verdict = "met" if results["card"]["hub_p99"] < 10 else "MISSED"
            print(f"target: card p99 under 10 ms: {verdict}")
        finally:
            raw.close()
            await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=8)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
