"""Reminder firing on SQLite: lateness (p50, p99) and the process's peak memory.

100,000 pending reminders (for 1,000 clients and 10 managers) fall due evenly
over a short window (``--window`` seconds, starting ``--lead`` seconds after
they are inserted). The hub's real firing loop (:class:`hub.jobs.reminders.ReminderLoop`
on the system clock) fires them: each firing claims the row, logs an event on
the client and queues the manager's message, in one transaction per batch.
Lateness is the wall-clock time from a reminder's ``due_at`` to the commit that
fired it. Targets: p99 under 1 s, peak memory (``ru_maxrss``) under 300 MB.

The baseline, measured in the same run, is catch-up throughput: the same
100,000 reminders, all already due, fired by the hub's loop and by the standard
library's sqlite3 doing the same work bare (``UPDATE … RETURNING`` claiming a
batch, ``executemany`` of the events and the outbox rows, commit), with the same
PRAGMAs (WAL, synchronous=FULL) and batch size. The ratio is hub/bare.

    python -m bench.reminders [--reminders 100000] [--window 60] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import shutil
import sqlite3
import statistics
import tempfile
import time
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert

from hub.jobs.reminders import ReminderLoop
from hub.kernel.clock import SystemClock
from storage.db import SQLITE_PRAGMAS, Database
from storage.migrate import upgrade
from storage.models import Client, Manager
from storage.reminders import DueReminder

CLIENTS, MANAGERS = 1_000, 10


async def prepare(path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{path}")
    await upgrade(db)
    await db.dispose()
    now = datetime.now(UTC)
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(
            insert(Manager),
            [
                {
                    "name": f"Manager {i}",
                    "telegram_id": 1000 + i,
                    "created_at": now,
                    "attrs": {"language": "en"},
                }
                for i in range(MANAGERS)
            ],
        )
        conn.execute(
            insert(Client),
            [{"name": f"Client {i}", "created_at": now, "updated_at": now} for i in range(CLIENTS)],
        )
    engine.dispose()


def _stamp(moment: datetime) -> str:
    """A moment as the hub stores it on SQLite (naive UTC text, microseconds always)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def add_reminders(path: Path, count: int, first: datetime, window: float) -> float:
    """Insert ``count`` pending reminders due evenly from ``first`` over ``window`` s
    (``executemany`` over a generator: the rows never sit in this process's memory)."""
    now = _stamp(datetime.now(UTC))
    step = window / max(count - 1, 1)
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO reminders (client_id, manager_id, due_at, text, kind, status, "
        "fired_count, created_at) VALUES (?, ?, ?, ?, 'reminder', 'pending', 0, ?)",
        (
            (
                1 + i % CLIENTS,
                1 + i % MANAGERS,
                _stamp(first + timedelta(seconds=i * step)),
                f"call back about order {i}",
                now,
            )
            for i in range(count)
        ),
    )
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - start


async def run_hub(path: Path, count: int, batch: int) -> tuple[array[float], float]:
    """Run the firing loop until ``count`` reminders fired: lateness of each, seconds taken."""
    db = Database(f"sqlite+aiosqlite:///{path}")
    late = array("d")
    done = asyncio.Event()

    def fired(reminders: Sequence[DueReminder]) -> None:
        now = time.time()
        late.extend(now - r.due_at.timestamp() for r in reminders)
        if len(late) >= count:
            done.set()

    loop = ReminderLoop(
        db, SystemClock(), staff_channel="telegram", language="en", batch=batch, on_fired=fired
    )
    start = time.perf_counter()
    await loop.start()
    try:
        await done.wait()
    finally:
        await loop.stop()
        await db.dispose()
    return late, time.perf_counter() - start


def run_bare(path: Path, count: int, batch: int) -> float:
    """The same firing with sqlite3 alone: claim a batch, write events and messages, commit."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    telegram = dict(conn.execute("SELECT id, telegram_id FROM managers"))
    fired = 0
    start = time.perf_counter()
    while fired < count:
        now = _stamp(datetime.now(UTC))
        conn.execute("BEGIN IMMEDIATE")
        claimed = conn.execute(
            "UPDATE reminders SET status = 'fired', fired_at = ?, fired_count = fired_count + 1 "
            "WHERE id IN (SELECT id FROM reminders WHERE status = 'pending' AND due_at <= ? "
            "ORDER BY due_at, id LIMIT ?) "
            "RETURNING id, client_id, conversation_id, manager_id, text, fired_count",
            (now, now, batch),
        ).fetchall()
        conn.executemany(
            "INSERT INTO interactions (client_id, conversation_id, direction, author, text, at) "
            "VALUES (?, ?, 'event', 'hub', ?, ?)",
            [(c, conv, f"⏰ Reminder: {t}", now) for _, c, conv, _, t, _ in claimed],
        )
        conn.executemany(
            "INSERT INTO outbox (idempotency_key, channel, account, recipient, kind, text, "
            "extras, client_id, conversation_id, status, attempts, next_attempt_at, created_at) "
            "VALUES (?, 'telegram', 'staff', ?, 'reminder', ?, ?, ?, ?, 'pending', 0, ?, ?)",
            [
                (
                    f"reminder:{rid}:{n}",
                    str(telegram[m]),
                    f"⏰ Reminder: {t}",
                    json.dumps({"reminder": rid, "fired": n}),
                    c,
                    conv,
                    now,
                    now,
                )
                for rid, c, conv, m, t, n in claimed
            ],
        )
        conn.execute("COMMIT")
        fired += len(claimed)
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    # One log line per fired reminder is for operators, not part of firing.
    logging.getLogger("hub").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reminders", type=int, default=100_000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds they fall due over")
    parser.add_argument("--lead", type=float, default=5.0, help="seconds before the first is due")
    parser.add_argument("--batch", type=int, default=500, help="reminders.batch")
    args = parser.parse_args()
    count = args.reminders
    with tempfile.TemporaryDirectory() as tmp:
        seeded, live = Path(tmp) / "seeded.db", Path(tmp) / "live.db"
        asyncio.run(prepare(seeded))
        shutil.copy(seeded, live)

        first = datetime.now(UTC) + timedelta(seconds=args.lead)
        insert_s = add_reminders(live, count, first, args.window)
        late, _ = asyncio.run(run_hub(live, count, args.batch))
        realtime_peak = peak_mb()

        # Catch-up: the same reminders, all due, fired as fast as each can.
        past = datetime.now(UTC) - timedelta(seconds=args.window + 1)
        hub_db, bare_db = Path(tmp) / "hub.db", Path(tmp) / "bare.db"
        shutil.copy(seeded, hub_db)
        shutil.copy(seeded, bare_db)
        add_reminders(hub_db, count, past, args.window)
        add_reminders(bare_db, count, past, args.window)
        _, hub_s = asyncio.run(run_hub(hub_db, count, args.batch))
        bare_s = run_bare(bare_db, count, args.batch)

    p50, p99 = statistics.median(late), percentile(late, 0.99)
    print(
        f"reminders {count:,} due over {args.window:.0f} s "
        f"({count / args.window:,.0f}/s), batch {args.batch}; inserted in {insert_s:.2f} s"
    )
    print(
        f"lateness due_at -> fired and committed: p50 {p50 * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms, max {max(late) * 1000:.0f} ms (target p99 < 1000 ms)"
    )
    print(
        f"peak memory (ru_maxrss): {realtime_peak:.0f} MB during the real-time run, "
        f"{peak_mb():.0f} MB overall (target < 300 MB)"
    )
    hub_rate, bare_rate = count / hub_s, count / bare_s
    print(
        f"catch-up of {count:,} due: hub loop {hub_s:.2f} s ({hub_rate:,.0f}/s), "
        f"bare sqlite3 {bare_s:.2f} s ({bare_rate:,.0f}/s); "
        f"ratio hub/bare {hub_rate / bare_rate:.2f}"
    )


if __name__ == "__main__":
    main()
