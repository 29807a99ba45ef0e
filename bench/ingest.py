"""Durable ingest throughput on SQLite with group commit, against raw sqlite3.

The hub's whole ingest path (identity resolution, conversations, routing,
interactions, staff notifications in the outbox) takes N messages from S
concurrent senders; each sender waits for its commit before the next message.
The baseline, measured in the same run, is the standard library's sqlite3
inserting the very rows the hub wrote (clients, identities, conversations,
interactions, outbox) with ``executemany``, into the same schema with the same
PRAGMAs (WAL, synchronous=FULL), committed in as many transactions as the hub's
group commit used: the same durability, without the hub's work.

With ``--search-index both`` the hub's ingest runs twice in the run, with the
substring search's indexes and their round (as ``hub run`` has them) and without:
their cost is the ratio of the two.

    python bench/ingest.py [--messages 50000] [--clients 2000] [--senders 500]
        [--search-index on|off|both]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from hub.clients.attachments import AttachmentStore
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import SystemClock
from hub.kernel.identities import identity
from hub.kernel.types import Channel, InboundMessage
from storage import terms
from storage.db import SQLITE_PRAGMAS, Database
from storage.migrate import upgrade

TABLES = ("clients", "identities", "conversations", "interactions", "outbox")


async def seed_managers(db: Database) -> None:
    from sqlalchemy import insert

    from storage.models import Manager

    now = datetime.now(UTC)
    async with db.write() as conn:
        await conn.execute(
            insert(Manager),
            [
                {
                    "name": f"Manager {i}",
                    "telegram_id": 1000 + i,
                    "role": "manager",
                    "capacity": 10**6,
                    "active": True,
                    "away": False,
                    "created_at": now,
                }
                for i in range(3)
            ],
        )


async def run_hub(
    path: Path,
    messages: list[InboundMessage],
    senders: int,
    max_batch: int = 2000,
    *,
    search_index: bool = True,
) -> tuple[float, int]:
    """The hub's ingest of ``messages``, timed; ``search_index``: with the substring
    search's indexes (migration 0016) and their round filling them every 2 s, as
    ``hub run`` does, else without either."""
    db = Database(f"sqlite+aiosqlite:///{path}")
    await upgrade(db)
    await seed_managers(db)
    async with db.write() as conn:
        if not search_index:
            for statement in NO_SEARCH_INDEX:
                await conn.exec_driver_sql(statement)
    rounds = asyncio.create_task(index_behind(db)) if search_index else None
    ingestor = Ingestor(
        db,
        SystemClock(),
        AttachmentStore(path.parent / "files", 10**7),
        staff_channel="telegram",
        max_batch=max_batch,
    )
    await ingestor.start()
    work = iter(messages)

    async def sender() -> None:
        for message in work:
            await ingestor(message)

    start = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    elapsed = time.perf_counter() - start
    if rounds is not None:
        rounds.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rounds
    await ingestor.stop()
    await db.dispose()
    return elapsed, ingestor.batches


NO_SEARCH_INDEX = (
    "DROP TABLE search_terms_identities",
    "DROP TABLE search_terms_names",
    "DROP TABLE search_terms_usernames",
    "DROP INDEX ix_search_terms_name_prefix",
)


async def index_behind(db: Database) -> None:
    """The hub's search-index round for the substring search, every 2 s."""
    while True:
        await asyncio.sleep(2)
        async with db.read() as conn:
            if not await terms.behind(conn):
                continue
        async with db.write() as conn:
            await terms.index_new(conn)


def run_raw(source: Path, target: Path, transactions: int) -> tuple[float, int]:
    """Insert the rows the hub wrote into a fresh copy of the schema, timed."""
    src = sqlite3.connect(source)
    schema = [
        sql
        for (sql,) in src.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
            # an FTS5 table makes its own shadow tables
            "AND name NOT LIKE 'interactions_fts_%' AND name NOT GLOB 'search_terms_*_*' "
            "ORDER BY type = 'table' DESC"
        )
    ]
    data = {t: src.execute(f"SELECT * FROM {t}").fetchall() for t in TABLES}
    managers = src.execute("SELECT * FROM managers").fetchall()
    outbox_columns = src.execute("PRAGMA table_info(outbox)").fetchall()
    src.close()
    dst = sqlite3.connect(target, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        dst.execute(pragma)
    for sql in schema:
        dst.execute(sql)
    dst.executemany(f"INSERT INTO managers VALUES ({','.join('?' * len(managers[0]))})", managers)
    rows = sum(len(v) for v in data.values())
    # The same split as the hub's batches: parents all in the first transaction,
    # interactions evenly, each outbox row with the interaction it is about.
    parts: dict[str, list[list[tuple[object, ...]]]] = {
        t: [[] for _ in range(transactions)] for t in TABLES
    }
    parts["clients"][0] = data["clients"]
    parts["identities"][0] = data["identities"]
    parts["conversations"][0] = data["conversations"]
    size = -(-len(data["interactions"]) // transactions)
    part_of: dict[object, int] = {}
    for index, row in enumerate(data["interactions"]):
        parts["interactions"][index // size].append(row)
        part_of[row[0]] = index // size
    interaction_column = [c[1] for c in outbox_columns].index("interaction_id")
    for row in data["outbox"]:
        parts["outbox"][part_of.get(row[interaction_column], 0)].append(row)
    start = time.perf_counter()
    for part in range(transactions):
        dst.execute("BEGIN IMMEDIATE")
        for table in TABLES:
            chunk = parts[table][part]
            if chunk:
                marks = ",".join("?" * len(chunk[0]))
                dst.executemany(f"INSERT INTO {table} VALUES ({marks})", chunk)
        dst.execute("COMMIT")
    elapsed = time.perf_counter() - start
    dst.close()
    return elapsed, rows


def main() -> None:
    # One log line per message is for operators, not part of durable ingest.
    logging.getLogger("hub").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=2_000)
    parser.add_argument("--senders", type=int, default=500)
    parser.add_argument("--max-batch", type=int, default=2000, help="storage.group_commit_max")
    parser.add_argument(
        "--search-index",
        choices=("on", "off", "both"),
        default="on",
        help="the substring search's indexes and round: with, without, or both in one run",
    )
    args = parser.parse_args()
    now = datetime.now(UTC)
    messages = [
        InboundMessage(
            Channel.TELEGRAM,
            "bot",
            f"{i % args.clients}:{i}",
            (identity("telegram", 10_000 + i % args.clients, f"Client {i % args.clients}"),),
            now,
            text=f"Message {i}: добрый день, подскажите статус заказа номер {i * 7}",
        )
        for i in range(args.messages)
    ]
    # The messages are the benchmark's input, not the hub's heap: keep the
    # collector from rescanning them on every full collection.
    gc.collect()
    gc.freeze()
    with tempfile.TemporaryDirectory() as tmp:
        hub_db, raw_db = Path(tmp) / "hub.db", Path(tmp) / "raw.db"
        if args.search_index == "both":
            without = Path(tmp) / "without" / "hub.db"
            without.parent.mkdir()
            off_s, _ = asyncio.run(
                run_hub(without, messages, args.senders, args.max_batch, search_index=False)
            )
        on = args.search_index != "off"
        hub_s, batches = asyncio.run(
            run_hub(hub_db, messages, args.senders, args.max_batch, search_index=on)
        )
        raw_s, rows = run_raw(hub_db, raw_db, batches)
    hub_rate, raw_rate = args.messages / hub_s, args.messages / raw_s
    print(f"messages {args.messages}, senders {args.senders}, clients {args.clients}")
    print(
        f"hub ingest: {hub_s:.2f} s, {hub_rate:,.0f} interactions/s, "
        f"{batches} group commits (avg {args.messages / batches:.0f} messages)"
    )
    print(
        f"raw sqlite3 executemany of the same {rows:,} rows in {batches} transactions: "
        f"{raw_s:.2f} s, {raw_rate:,.0f} messages/s"
    )
    print(f"ratio hub/raw: {hub_rate / raw_rate:.2f} (target >= 0.5; and >= 20,000/s)")
    if args.search_index == "both":
        print(
            f"without the search indexes: {off_s:.2f} s, {args.messages / off_s:,.0f}"
            f" interactions/s; ratio with/without: {off_s / hub_s:.2f} (target >= 0.9)"
        )


if __name__ == "__main__":
    main()
