"""Copies of the hub's data for backup and restore: SQLite files through SQLite's
online backup API (consistent while other connections write), PostgreSQL's
connection as ``pg_dump``/``pg_restore`` arguments, content-addressed files by
name, and the schema revision a copy holds."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url

from storage.db import Database, in_memory
from storage.migrate import alembic_config

# Another connection's write lock is waited for this long (a busy hub commits often).
BUSY_TIMEOUT_S = 30.0
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class BackupError(Exception):
    """A copy could not be taken or brought back; the message says why."""


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL; None for PostgreSQL; BackupError in memory."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if in_memory(url):
        raise BackupError("the database is in memory: there is nothing on disk to copy")
    return Path(parsed.database or "")


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of the SQLite file ``source`` as ``target`` (replaced at
    once when complete), in rollback-journal mode: one self-contained file.

    ``source`` may be written meanwhile: in WAL mode the copy reads one snapshot
    and writers go on.
    """
    temp = target.with_name(target.name + ".tmp")
    _unlink(temp, Path(f"{temp}-journal"))
    try:
        src = sqlite3.connect(f"{source.absolute().as_uri()}?mode=rw", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {source}: {exc}") from None
    try:
        src.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        dst = sqlite3.connect(temp)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
            [verdict] = dst.execute("PRAGMA quick_check").fetchone()
        finally:
            dst.close()
    except sqlite3.Error as exc:
        _unlink(temp)
        raise BackupError(f"cannot copy {source}: {exc}") from None
    finally:
        src.close()
    if verdict != "ok":
        _unlink(temp)
        raise BackupError(f"the copy of {source} fails SQLite's check: {verdict}")
    _fsync(temp)
    # A WAL left beside the old file would be read into the new one: it goes first.
    _unlink(Path(f"{target}-wal"), Path(f"{target}-shm"), Path(f"{target}-journal"))
    os.replace(temp, target)
    _fsync(target.parent)


def sqlite_revision(path: Path) -> str | None:
    """The schema revision an SQLite copy holds (its ``alembic_version``)."""
    with _open_ro(path) as conn:
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:
            return None
    return str(row[0]) if row else None


def sqlite_count(path: Path, table: str) -> int:
    """Rows of ``table`` in an SQLite file; 0 when it has no such table."""
    with _open_ro(path) as conn:
        try:
            query = f'SELECT count(*) FROM "{table}"'  # noqa: S608 - a table of ours
            return int(conn.execute(query).fetchone()[0])
        except sqlite3.OperationalError:
            return 0


class _open_ro:
    def __init__(self, path: Path) -> None:
        try:
            self.conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise BackupError(f"cannot open {path}: {exc}") from None

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def code_head() -> str:
    """The newest schema revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def known_revision(revision: str) -> bool:
    """Whether this code has the migration ``revision`` (else it is newer code's)."""
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except Exception:  # alembic raises several kinds for an unknown or malformed id
        return False


async def holds_data(db: Database) -> bool:
    """Whether the database holds any client or interaction."""

    def check(conn: Connection) -> bool:
        names = set(inspect(conn).get_table_names())
        for table in ("clients", "interactions"):
            query = text(f"SELECT 1 FROM {table} LIMIT 1")  # noqa: S608 - a table of ours
            if table in names and conn.execute(query).first():
                return True
        return False

    async with db.read() as conn:
        return await conn.run_sync(check)


async def other_sessions(db: Database) -> int:
    """PostgreSQL: how many other sessions are connected to this database."""
    async with db.read() as conn:
        found = await conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        return int(found.scalar_one())


@dataclass(frozen=True, slots=True)
class PgConnection:
    """libpq's arguments and environment for a PostgreSQL URL; the password goes
    in the environment, never on a command line (``ps`` shows those)."""

    args: list[str]
    env: dict[str, str]

    def shown(self) -> str:
        """The arguments as a person types them (the password never in them)."""
        return " ".join(self.args)


def pg_connection(url: str) -> PgConnection:
    parsed = make_url(url)
    args = ["--no-password"]
    if parsed.host:
        args += ["--host", parsed.host]
    if parsed.port:
        args += ["--port", str(parsed.port)]
    if parsed.username:
        args += ["--username", parsed.username]
    args += ["--dbname", parsed.database or ""]
    env: dict[str, str] = {}
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    ssl = parsed.query.get("ssl") or parsed.query.get("sslmode")
    if isinstance(ssl, str):
        env["PGSSLMODE"] = ssl
    return PgConnection(args, env)


@dataclass
class FileCopy:
    """What :func:`copy_files` found and did."""

    files: int = 0
    bytes: int = 0
    copied: int = 0
    damaged: list[str] = field(default_factory=list)


def copy_files(source: Path, target: Path) -> FileCopy:
    """Copy the content-addressed files (``ab/abcd…``) of ``source`` that ``target``
    lacks; a file whose content does not match its name is reported, not copied.
    Files never change once written, so one present by name is the same file."""
    done = FileCopy()
    if not source.is_dir():
        return done
    for folder in sorted(source.iterdir()):
        if not folder.is_dir() or len(folder.name) != 2:
            continue
        for path in sorted(folder.iterdir()):
            name = path.name
            if not _SHA256.fullmatch(name) or name[:2] != folder.name or not path.is_file():
                continue  # a temporary file of a write in progress, or not ours
            destination = target / folder.name / name
            if destination.exists():
                done.files += 1
                done.bytes += destination.stat().st_size
                continue
            size = _copy_checked(path, destination)
            if size is None:
                done.damaged.append(f"{folder.name}/{name}")
                continue
            done.files += 1
            done.bytes += size
            done.copied += 1
    return done


def _copy_checked(path: Path, destination: Path) -> int | None:
    """Copy, checking the content against the name; its size, or None when damaged."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    temp = destination.with_name(f".{destination.name}.tmp")
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as src, open(temp, "wb") as dst:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    if digest.hexdigest() != path.name:
        _unlink(temp)
        return None
    os.replace(temp, destination)
    return size


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _unlink(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
