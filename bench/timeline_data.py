"""The big client base of ``bench.timeline``: generated once per size and backend,
kept in a folder between runs (SQLite files, a PostgreSQL cluster).

The schema is the hub's own (its migrations). The rows go in raw, with the
secondary indexes of the big tables dropped first and built again after the load
(``executemany`` in big transactions on SQLite, binary ``COPY`` on PostgreSQL),
then the full-text index is filled the way the hub fills it and the planner's
statistics are gathered. How many interactions a client has follows a long tail
(most have a few, some thousands). The log's words: a vocabulary of 5,000
(each in about 1.5 in 1,000 messages), ten common words (each in 1 message of
100) and rare words (each in 50 messages, at any size).
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import random
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from storage import Database, terms
from storage import search as full_text
from storage.migrate import upgrade

FILLERS = (full_text.index_new, terms.index_new)

SIZES = {
    "100k": (10_000, 100_000),  # a quick look only
    "1m": (100_000, 1_000_000),
    "10m": (1_000_000, 10_000_000),
}
T0 = datetime(2025, 1, 1, tzinfo=UTC)
SPAN = 365 * 24 * 3600
FIRST = ["Иван", "Анна", "Мария", "Олег", "Ivan", "Anna", "Maria", "Peter", "Olga", "Sergey"]
LAST = [
    *("Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов"),
    *("Новиков", "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров"),
    *("Smith", "Johnson", "Brown", "Taylor", "Miller", "Wilson", "Moore", "Clark"),
]
CHANNELS = ("telegram", "email", "webform")
COMMON = (
    "zakaz",
    "oplata",
    "dostavka",
    "vozvrat",
    "skidka",
    "tovar",
    "chek",
    "adres",
    "srok",
    "cena",
)
RARE_HITS = 50  # messages that hold each rare word, at any size
CHUNK = 200_000
BIG_TABLES = ("clients", "identities", "conversations", "interactions")


@dataclass(frozen=True)
class Spec:
    size: str
    clients: int
    total: int
    seed: int = 8

    @property
    def rare(self) -> list[str]:
        """Words each in exactly ``RARE_HITS`` messages."""
        return [f"redk{n:04d}" for n in range(min(2000, self.total // RARE_HITS // 10))]

    def email(self, n: int) -> str | None:
        return f"client{n}@example.org" if n % 2 == 0 else None

    def phone(self, n: int) -> str | None:
        return f"+7916{n:07d}" if n % 3 == 0 else None

    def username(self, n: int) -> str | None:
        """The Telegram @username a telegram client's inbound messages carry."""
        return f"User_{n}_tg" if self.channel(n) == "telegram" else None

    def channel(self, n: int) -> str:
        return CHANNELS[n % 3]


def stamp(moment: datetime) -> str:
    """As SQLAlchemy stores an aware UTC time on SQLite (naive text)."""
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _texts(rng: random.Random) -> list[str]:
    letters = "абвгдеёжзийклмнопрстуфхцчшщыэюя"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(4, 9))) for _ in range(5000)]
    # A pool of messages drawn from the vocabulary: drawing each of ten million
    # messages word by word would triple the generation time.
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(1 << 16)]


def client_rows(spec: Spec) -> tuple[list[tuple[Any, ...]], ...]:
    """Clients (id, name, owner), identities (client, kind, value), conversations."""
    rng = random.Random(spec.seed)
    clients = [
        (n, f"{rng.choice(FIRST)} {rng.choice(LAST)}", rng.randint(1, 20))
        for n in range(1, spec.clients + 1)
    ]
    identities: list[tuple[Any, ...]] = []
    for n in range(1, spec.clients + 1):
        identities.append((n, "telegram", str(1_000_000 + n)))
        if email := spec.email(n):
            identities.append((n, "email", email))
        if phone := spec.phone(n):
            identities.append((n, "phone", phone))
    # One conversation per client on its main channel, one in ten open.
    conversations = [
        (n, n, spec.channel(n), "open" if n % 10 == 0 else "resolved", 1 + n % 20)
        for n in range(1, spec.clients + 1)
    ]
    return clients, identities, conversations


def interaction_chunks(spec: Spec) -> Iterator[list[tuple[Any, ...]]]:
    """(id, client, direction, channel, external_id, text, at, delivery, extras) in chunks."""
    rng = random.Random(spec.seed + 1)
    texts = _texts(rng)
    order = list(range(1, spec.clients + 1))
    rng.shuffle(order)  # a long tail: client k of this order gets a share ~ 1/sqrt(k)
    rare = spec.rare
    step = spec.total // RARE_HITS
    clients, total, channel, username = spec.clients, spec.total, spec.channel, spec.username
    chunk: list[tuple[Any, ...]] = []
    for n in range(total):
        client = order[min(int(clients * rng.random() ** 2), clients - 1)]
        text = texts[rng.getrandbits(16)]
        if n % 100 < len(COMMON):
            text = f"{text} {COMMON[n % 100]}"
        if n % step < len(rare):
            text = f"{text} {rare[n % step]}"
        inbound = n % 2 == 0
        said = channel(client)
        user = username(client) if inbound and said == "telegram" else None
        chunk.append(
            (
                n + 1,
                client,
                "in" if inbound else "out",
                said,
                f"x{n}" if inbound else None,
                text,
                T0 + timedelta(seconds=SPAN * n / total),
                None if inbound else "sent",
                json.dumps({"username": user}) if user else None,
            )
        )
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def busiest(spec: Spec) -> list[int]:
    """The top 1% of clients by how many interactions they have (by the tail's law)."""
    rng = random.Random(spec.seed + 1)
    _texts(rng)
    order = list(range(1, spec.clients + 1))
    rng.shuffle(order)
    return order[: max(spec.clients // 100, 1)]


# SQLite ------------------------------------------------------------------------------


def _sqlite_indexes(db: sqlite3.Connection) -> list[tuple[str, str]]:
    marks = ",".join("?" * len(BIG_TABLES))
    return db.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        f" AND tbl_name IN ({marks})",
        BIG_TABLES,
    ).fetchall()


def load_sqlite(path: Path, spec: Spec) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1048576")
    indexes = _sqlite_indexes(db)
    for name, _ in indexes:
        db.execute(f'DROP INDEX "{name}"')
    now = stamp(T0)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO managers (id, name, telegram_id, role, capacity, active, away, created_at)"
        " VALUES (?, ?, ?, 'manager', 20, 1, 0, ?)",
        [(n, f"Manager {n}", 10_000 + n, now) for n in range(1, 21)],
    )
    clients, identities, conversations = client_rows(spec)
    db.executemany(
        "INSERT INTO clients (id, name, stage, owner_id, opted_out, created_at, updated_at)"
        " VALUES (?, ?, 'client', ?, 0, ?, ?)",
        [(*row, now, now) for row in clients],
    )
    db.executemany(
        "INSERT INTO identities (client_id, kind, value, created_at) VALUES (?, ?, ?, ?)",
        [(*row, now) for row in identities],
    )
    db.executemany(
        "INSERT INTO conversations (id, client_id, channel, account, status, assignee_id,"
        " priority, created_at, updated_at) VALUES (?, ?, ?, 'main', ?, ?, 'normal', ?, ?)",
        [(*row, now, now) for row in conversations],
    )
    db.execute("COMMIT")
    for chunk in interaction_chunks(spec):
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO interactions (id, client_id, conversation_id, direction, channel,"
            " external_id, text, at, delivery, extras) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(r[0], r[1], r[1], *r[2:6], stamp(r[6]), *r[7:]) for r in chunk],
        )
        db.execute("COMMIT")
    for _, sql in indexes:
        db.execute(sql)
    db.close()


async def fill_behind(url: str) -> int:
    """Catch the indexes kept behind the log up, as the hub does after ingest (kept
    data too: a migration may have added one); the planner's statistics after."""
    db = Database(url)
    filled = 0
    try:
        while True:
            done = 0
            for index_new in FILLERS:
                async with db.write() as conn:
                    done += await index_new(conn, 1_000_000)
            if not done:
                break
            filled += done
        if filled:
            async with db.write() as conn:
                # SQLite's FTS tables; PostgreSQL's usernames table (the rest it keeps)
                await conn.exec_driver_sql(
                    "ANALYZE" if db.is_sqlite else "ANALYZE search_terms_usernames"
                )
    finally:
        await db.dispose()
    return filled


async def ensure_sqlite(folder: Path, spec: Spec, *, catch_up: bool = True) -> str:
    """The URL of the generated SQLite database of ``spec`` (made when missing); kept
    data catches up the indexes kept behind the log unless ``catch_up`` is false."""
    path = folder / f"sqlite-{spec.size}" / "hub.db"
    url = f"sqlite+aiosqlite:///{path}"
    done = path.parent / "done.json"
    if done.exists():
        await _migrate(url)
        if catch_up:
            await fill_behind(url)
        print(f"SQLite {spec.size}: kept data {path} ({_took(done)})")
        return url
    shutil.rmtree(path.parent, ignore_errors=True)
    path.parent.mkdir(parents=True)
    started = time.perf_counter()
    await _migrate(url)
    await asyncio.to_thread(load_sqlite, path, spec)
    loaded = time.perf_counter() - started
    await fill_behind(url)
    took = {"load_s": round(loaded, 1), "total_s": round(time.perf_counter() - started, 1)}
    done.write_text(json.dumps(took))
    print(f"SQLite {spec.size}: generated {path} ({_took(done)})")
    return url


def _took(done: Path) -> str:
    took = json.loads(done.read_text())
    return f"generated in {took['total_s']} s, of which the rows and indexes {took['load_s']} s"


async def _migrate(url: str) -> None:
    db = Database(url)
    try:
        await upgrade(db)
    finally:
        await db.dispose()


# PostgreSQL --------------------------------------------------------------------------


def _bindir() -> str:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise SystemExit("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)")
    return str(found[-1].parent)


def _as_owner(cmd: list[str]) -> None:
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)


class Cluster:
    """A PostgreSQL cluster kept in ``root`` between runs, started on a free loopback port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bindir = _bindir()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])

    def dsn(self, database: str) -> str:
        return f"postgresql://hub@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        data = self.root / "data"
        if not data.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                pw = pwd.getpwnam("postgres")
                os.chown(self.root, pw.pw_uid, pw.pw_gid)
            init = [f"{self.bindir}/initdb", "-D", str(data), "-U", "hub", "-A", "trust"]
            _as_owner([*init, "-E", "UTF8", "--locale=C.UTF-8"])
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c full_page_writes=off -c synchronous_commit=off -c shared_buffers=2GB"
            " -c maintenance_work_mem=1GB -c max_wal_size=16GB -c effective_cache_size=8GB"
        )
        log = f"{self.root}/log"
        _as_owner(
            [f"{self.bindir}/pg_ctl", "-D", str(data), "-o", options, "-l", log, "-w", "start"]
        )

    def stop(self) -> None:
        _as_owner(
            [f"{self.bindir}/pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop"]
        )


async def _pg_indexes(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """The big tables' indexes that no constraint owns (those can be dropped and rebuilt)."""
    rows = await conn.fetch(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = ANY($1::text[])"
        " AND i.schemaname = 'public' AND NOT EXISTS (SELECT 1 FROM pg_constraint c"
        " WHERE c.conindid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))"
        "::regclass)",
        list(BIG_TABLES),
    )
    return [(r[0], r[1]) for r in rows]


async def load_postgresql(dsn: str, spec: Spec) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        indexes = await _pg_indexes(conn)
        for name, _ in indexes:
            await conn.execute(f'DROP INDEX "{name}"')
        await _copy_postgresql(conn, spec)
        for table in BIG_TABLES:
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT max(id) FROM {table}))"
            )
        await conn.execute("SET maintenance_work_mem = '1GB'")
        for _, sql in indexes:
            await conn.execute(sql)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def _copy_postgresql(conn: asyncpg.Connection, spec: Spec) -> None:
    now = T0
    await conn.copy_records_to_table(
        "managers",
        records=[
            (n, f"Manager {n}", 10_000 + n, "manager", 20, True, False, now) for n in range(1, 21)
        ],
        columns=["id", "name", "telegram_id", "role", "capacity", "active", "away", "created_at"],
    )
    await conn.execute("SELECT setval(pg_get_serial_sequence('managers', 'id'), 20)")
    clients, identities, conversations = client_rows(spec)
    await conn.copy_records_to_table(
        "clients",
        records=[(*row, "client", False, now, now) for row in clients],
        columns=["id", "name", "owner_id", "stage", "opted_out", "created_at", "updated_at"],
    )
    await conn.copy_records_to_table(
        "identities",
        records=[(*row, now) for row in identities],
        columns=["client_id", "kind", "value", "created_at"],
    )
    await conn.copy_records_to_table(
        "conversations",
        records=[(*row, "main", "normal", now, now) for row in conversations],
        columns=[
            *("id", "client_id", "channel", "status", "assignee_id", "account", "priority"),
            *("created_at", "updated_at"),
        ],
    )
    columns = ["id", "client_id", "conversation_id", "direction", "channel", "external_id"]
    columns += ["text", "at", "delivery", "extras"]
    for chunk in interaction_chunks(spec):
        await conn.copy_records_to_table(
            "interactions", records=[(r[0], r[1], *r[1:]) for r in chunk], columns=columns
        )


async def ensure_postgresql(admin_dsn: str, spec: Spec) -> str:
    """The DSN of the generated database of ``spec`` on the server of ``admin_dsn``."""
    name = f"timeline_{spec.size}"
    dsn = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    admin = await asyncpg.connect(admin_dsn)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            conn = await asyncpg.connect(dsn)
            try:
                took = await conn.fetchval("SELECT obj_description('interactions'::regclass)")
            finally:
                await conn.close()
            if took:
                await _migrate(url)
                await fill_behind(url)
                print(f"PostgreSQL {spec.size}: kept data, database {name} ({took})")
                return dsn
            await admin.execute(f'DROP DATABASE "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    started = time.perf_counter()
    await _migrate(url)
    await load_postgresql(dsn, spec)
    await fill_behind(url)
    took = f"generated in {time.perf_counter() - started:.1f} s"
    conn = await asyncpg.connect(dsn)
    try:  # the mark of a finished load, kept with the data
        await conn.execute(f"COMMENT ON TABLE interactions IS '{took}'")
    finally:
        await conn.close()
    print(f"PostgreSQL {spec.size}: {took}, database {name}")
    return dsn
