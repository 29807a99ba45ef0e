"""The database of ``bench.console``: ``bench.timeline_data``'s 1,000,000 interactions
over 100,000 clients (its generator and loaders, unchanged), then shaped into a
busy desk: 10,000 requests not resolved (open, pending, waiting), a third of them
with nobody assigned, each with a response deadline (some overdue, most due within
a day), the busiest client's (about 3,000 interactions) among them.

The shaping runs once on the loaded data and leaves a mark (``console.json`` beside
the SQLite file; a comment on the conversations table on PostgreSQL).
"""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench import timeline_data as data

OPEN_REQUESTS = 10_000
POLICY = "bench"


@dataclass(frozen=True)
class Desk:
    """The shaped requests: (id, status, assignee, due, waiting since) and deadlines."""

    busiest: int  # the client with the most interactions; its request id is the same
    requests: list[tuple[int, str, int | None, datetime, datetime | None]]
    resolved: list[int]  # open in the loaded data, resolved here


def shape(spec: data.Spec, now: datetime) -> Desk:
    """Which conversations are unresolved and how: the loaded data keeps one in ten
    open (ids divisible by 10, one conversation per client, id = client id)."""
    rng = random.Random(spec.seed + 3)
    top = data.busiest(spec)[0]
    chosen = [n for n in range(10, spec.clients + 1, 10)][:OPEN_REQUESTS]
    resolved: list[int] = []
    if top not in chosen:
        resolved.append(chosen.pop())
        chosen.append(top)
    statuses = ("open",) * 6 + ("pending",) * 2 + ("waiting",) * 2
    requests = []
    for i, n in enumerate(sorted(chosen)):
        status = statuses[i % 10]
        assignee = None if i % 3 == 0 else 1 + n % 20
        due = now + timedelta(minutes=rng.randint(-600, 1440))  # about a third overdue
        waiting = now - timedelta(hours=rng.randint(1, 48)) if status == "waiting" else None
        requests.append((n, status, assignee, due, waiting))
    return Desk(top, requests, resolved)


def _deadline_rows(desk: Desk, now: datetime) -> list[tuple[Any, ...]]:
    """(conversation, client, started, remind, due, created): one first response each;
    no next step (no escalation round picks them up while the bench runs)."""
    rows = []
    for n, _, _, due, _ in desk.requests:
        started = due - timedelta(hours=24)
        rows.append((n, n, started, due - timedelta(hours=1), due, started))
    return rows


# SQLite ------------------------------------------------------------------------------


def shape_sqlite(path: Path, spec: data.Spec) -> Desk:
    now = datetime.now(UTC).replace(microsecond=0)
    desk = shape(spec, now)
    last = data.stamp(data.T0 + timedelta(seconds=data.SPAN))
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN")
        db.executemany(
            "UPDATE conversations SET status = 'resolved', resolved_at = ? WHERE id = ?",
            [(last, n) for n in desk.resolved],
        )
        db.executemany(
            "UPDATE conversations SET status = ?, assignee_id = ?, due_at = ?,"
            " waiting_since = ?, updated_at = ? WHERE id = ?",
            [
                (status, who, data.stamp(due), waiting and data.stamp(waiting), last, n)
                for n, status, who, due, waiting in desk.requests
            ],
        )
        db.executemany(
            "INSERT INTO deadlines (conversation_id, client_id, policy, kind, started_at,"
            " remind_at, due_at, step, status, created_at)"
            " VALUES (?, ?, ?, 'first_response', ?, ?, ?, 0, 'open', ?)",
            [
                (r[0], r[1], POLICY, *(data.stamp(t) for t in r[2:]))
                for r in _deadline_rows(desk, now)
            ],
        )
        db.execute("COMMIT")
        db.execute("ANALYZE")
    finally:
        db.close()
    return desk


async def ensure_sqlite(folder: Path, spec: data.Spec) -> tuple[str, int]:
    """The URL of the shaped SQLite database and the busiest client."""
    url = await data.ensure_sqlite(folder, spec)
    path = Path(url.split("///", 1)[1])
    mark = path.parent / "console.json"
    if not mark.exists():
        desk = shape_sqlite(path, spec)
        mark.write_text(json.dumps({"busiest": desk.busiest, "shaped_at": str(datetime.now(UTC))}))
        print(f"SQLite {spec.size}: {len(desk.requests):,} unresolved requests shaped")
    return url, int(json.loads(mark.read_text())["busiest"])


# PostgreSQL --------------------------------------------------------------------------


async def shape_postgresql(conn: asyncpg.Connection, spec: data.Spec) -> Desk:
    now = datetime.now(UTC).replace(microsecond=0)
    desk = shape(spec, now)
    last = data.T0 + timedelta(seconds=data.SPAN)
    async with conn.transaction():
        await conn.executemany(
            "UPDATE conversations SET status = 'resolved', resolved_at = $1 WHERE id = $2",
            [(last, n) for n in desk.resolved],
        )
        await conn.executemany(
            "UPDATE conversations SET status = $1, assignee_id = $2, due_at = $3,"
            " waiting_since = $4, updated_at = $5 WHERE id = $6",
            [
                (status, who, due, waiting, last, n)
                for n, status, who, due, waiting in desk.requests
            ],
        )
        await conn.copy_records_to_table(
            "deadlines",
            records=[
                (*r[:2], POLICY, "first_response", *r[2:], 0, "open")
                for r in _deadline_rows(desk, now)
            ],
            columns=[
                *("conversation_id", "client_id", "policy", "kind", "started_at", "remind_at"),
                *("due_at", "created_at", "step", "status"),
            ],
        )
        mark = json.dumps({"busiest": desk.busiest})
        await conn.execute(f"COMMENT ON TABLE conversations IS '{mark}'")
    await conn.execute("ANALYZE conversations")
    await conn.execute("ANALYZE deadlines")
    return desk


async def ensure_postgresql(admin_dsn: str, spec: data.Spec) -> tuple[str, int]:
    """The DSN of the shaped database on the server of ``admin_dsn``, the busiest client."""
    dsn = await data.ensure_postgresql(admin_dsn, spec)
    conn = await asyncpg.connect(dsn)
    try:
        mark = await conn.fetchval("SELECT obj_description('conversations'::regclass)")
        if not mark:
            desk = await shape_postgresql(conn, spec)
            print(f"PostgreSQL {spec.size}: {len(desk.requests):,} unresolved requests shaped")
            mark = await conn.fetchval("SELECT obj_description('conversations'::regclass)")
    finally:
        await conn.close()
    return dsn, int(json.loads(mark)["busiest"])
