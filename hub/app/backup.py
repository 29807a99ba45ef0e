"""``hub backup DIR`` and ``hub restore DIR``: the database, the mail spool and the
attachments, copied while the hub runs and brought back while it does not.

A backup folder holds ``manifest.json`` (written last: a backup cut short has
none and is never restored), the database (``hub.db``, an SQLite copy taken
with SQLite's online backup API, or ``hub.dump``, PostgreSQL's ``pg_dump`` in
its custom format), ``mail-spool.db`` and ``attachments/`` (content-addressed,
so a backup into the same folder again copies only the new files).

The order is what keeps a copy whole: the spool first, then the database, then
the files. A message the mail worker logs in between is in both copies, and is
recognized as a redelivery when the restored spool hands it over again; every
file a row of the database copy names was on disk before that row committed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from hub import config as config_module
from hub.app import datalock
from hub.config import Config
from hub.kernel import loggers
from hub.kernel.errors import HubError
from storage import backup as copies
from storage.db import Database
from storage.migrate import current

MANIFEST = "manifest.json"
SQLITE_COPY = "hub.db"
PG_DUMP = "hub.dump"
SPOOL_COPY = "mail-spool.db"
FILES = "attachments"
FORMAT = "omnihub-backup"
_OURS = frozenset({MANIFEST, SQLITE_COPY, PG_DUMP, SPOOL_COPY, FILES})
_CONFIG_HELP = "config file (default ./config.toml, then $HUB_CONFIG)"


class BackupRefused(HubError):
    """A backup or restore that would not be whole or would destroy something."""


class DatabaseCopy(BaseModel):
    backend: Literal["sqlite", "postgresql"]
    file: Literal["hub.db", "hub.dump"]
    bytes: int
    sha256: str
    revision: str | None


class SpoolCopy(BaseModel):
    file: Literal["mail-spool.db"]
    bytes: int
    sha256: str
    rows: int


class FilesCopy(BaseModel):
    folder: Literal["attachments"]
    files: int
    bytes: int
    copied: int
    damaged: list[str] = []


class Manifest(BaseModel):
    format: Literal["omnihub-backup"]
    version: Literal[1]
    hub_version: str
    code_head: str
    started_at: datetime
    finished_at: datetime
    database: DatabaseCopy
    spool: SpoolCopy | None
    attachments: FilesCopy


def add_parsers(sub: Any) -> None:
    help_text = (
        "copy the database, the mail spool and the attachments into DIR while the hub runs "
        "(DIR: new, empty, or an earlier backup, which then gets only what is new)"
    )
    cmd = sub.add_parser("backup", help=help_text, description=help_text)
    cmd.add_argument("--config", metavar="FILE", help=_CONFIG_HELP)
    cmd.add_argument("dir", metavar="DIR")
    cmd.set_defaults(handler=_backup)
    help_text = "bring back a backup made by hub backup (the hub must be stopped)"
    cmd = sub.add_parser("restore", help=help_text, description=help_text)
    cmd.add_argument("--config", metavar="FILE", help=_CONFIG_HELP)
    cmd.add_argument("dir", metavar="DIR")
    cmd.add_argument(
        "--force", action="store_true", help="replace a database or spool that holds data"
    )
    cmd.set_defaults(handler=_restore)


def _load(args: argparse.Namespace) -> Config:
    return config_module.load(config_module.resolve_path(args.config))


def _now() -> datetime:
    return datetime.now(UTC)


def _version() -> str:
    try:
        return importlib.metadata.version("omnihub")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --- backup ------------------------------------------------------------------


def _backup(args: argparse.Namespace) -> int:
    config = _load(args)
    folder = Path(args.dir)
    _check_folder(folder)
    _check_apart(folder, config)
    try:
        manifest = _take(config, folder)
    except (copies.BackupError, OSError) as exc:
        raise BackupRefused(f"backup failed, {folder} holds no complete backup: {exc}") from None
    _write_manifest(folder, manifest)
    print(f"backup written to {folder.absolute()}:")
    for line in _describe(manifest):
        print(f"  {line}")
    print(f"  {MANIFEST}")
    for name in manifest.attachments.damaged:
        print(f"hub backup: {FILES}/{name} does not match its name: damaged, not copied")
    return 1 if manifest.attachments.damaged else 0


def _check_folder(folder: Path) -> None:
    """DIR is new, empty, or a backup of ours: anything else is someone's."""
    if folder.exists() and not folder.is_dir():
        raise BackupRefused(f"{folder} is not a folder")
    if not folder.exists():
        return
    foreign = sorted(
        p.name for p in folder.iterdir() if p.name not in _OURS and not p.name.endswith(".tmp")
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (" …" if len(foreign) > 5 else "")
        raise BackupRefused(
            f"{folder} holds something other than a hub backup ({shown}): "
            "give a new or empty folder, or one an earlier hub backup wrote"
        )
    if (folder / MANIFEST).exists():
        _read_manifest(folder)  # a manifest that is not ours is someone else's folder too


def _check_apart(folder: Path, config: Config) -> None:
    """DIR is none of the hub's own folders: a copy onto what it copies is none."""
    where = folder.resolve()
    files = Path(config.storage.attachments_dir).resolve()
    data = {files, Path(config.email.spool).resolve().parent}
    sqlite = copies.sqlite_file(config.storage.url)
    if sqlite is not None:
        data.add(sqlite.resolve().parent)
    if where in data or where.is_relative_to(files) or files.is_relative_to(where):
        raise BackupRefused(f"{folder} is where the hub keeps its data: give a folder of its own")


def _take(config: Config, folder: Path) -> Manifest:
    """The copies, in the order that keeps them whole (see the module's docstring)."""
    url = config.storage.url
    sqlite = copies.sqlite_file(url)
    pg_dump = None if sqlite else _pg_dump(url, folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Until the new manifest is written the folder holds no complete backup.
    (folder / MANIFEST).unlink(missing_ok=True)
    started = _now()
    spool = _backup_spool(Path(config.email.spool), folder)
    if sqlite is not None:
        database = _backup_sqlite(sqlite, folder)
    else:
        assert pg_dump is not None
        database = _backup_postgres(url, folder, pg_dump)
    stale = PG_DUMP if sqlite else SQLITE_COPY
    (folder / stale).unlink(missing_ok=True)
    found = copies.copy_files(Path(config.storage.attachments_dir), folder / FILES)
    return Manifest(
        format=FORMAT,
        version=1,
        hub_version=_version(),
        code_head=copies.code_head(),
        started_at=started,
        finished_at=_now(),
        database=database,
        spool=spool,
        attachments=FilesCopy(
            folder=FILES,
            files=found.files,
            bytes=found.bytes,
            copied=found.copied,
            damaged=found.damaged,
        ),
    )


def _backup_spool(spool: Path, folder: Path) -> SpoolCopy | None:
    target = folder / SPOOL_COPY
    if not spool.exists():
        target.unlink(missing_ok=True)
        return None
    copies.copy_sqlite(spool, target)
    return SpoolCopy(
        file=SPOOL_COPY,
        bytes=target.stat().st_size,
        sha256=copies.sha256_of(target),
        rows=copies.sqlite_count(target, "spool"),
    )


def _backup_sqlite(database: Path, folder: Path) -> DatabaseCopy:
    if not database.exists():
        raise BackupRefused(f"there is no database at {database}: check storage.url")
    target = folder / SQLITE_COPY
    copies.copy_sqlite(database, target)
    return DatabaseCopy(
        backend="sqlite",
        file=SQLITE_COPY,
        bytes=target.stat().st_size,
        sha256=copies.sha256_of(target),
        revision=copies.sqlite_revision(target),
    )


def _pg_dump(url: str, folder: Path) -> str:
    """pg_dump's path, or how to do without it."""
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        target, conn = folder / PG_DUMP, copies.pg_connection(url)
        raise BackupRefused(
            "pg_dump is not on PATH: install PostgreSQL's client tools, of the server's "
            "version or newer (Debian: apt-get install postgresql-client), and run hub backup "
            "again; by hand: pg_dump --format=custom "
            f"--file={target} {conn.shown()} (the password in PGPASSWORD), "
            "then copy the mail spool and the attachments folder beside it"
        )
    return pg_dump


def _backup_postgres(url: str, folder: Path, pg_dump: str) -> DatabaseCopy:
    target = folder / PG_DUMP
    conn = copies.pg_connection(url)
    revision = asyncio.run(_pg_revision(url))
    temp = target.with_name(target.name + ".tmp")
    _run_pg([pg_dump, "--format=custom", f"--file={temp}", *conn.args], conn)
    os.replace(temp, target)
    return DatabaseCopy(
        backend="postgresql",
        file=PG_DUMP,
        bytes=target.stat().st_size,
        sha256=copies.sha256_of(target),
        revision=revision,
    )


async def _pg_revision(url: str) -> str | None:
    db = Database(url)
    try:
        return await current(db)
    except Exception as exc:  # the driver's many kinds: unreachable, refused, no such database
        raise BackupRefused(_unreachable(exc)) from None
    finally:
        await db.dispose()


def _unreachable(exc: Exception) -> str:
    return f"cannot reach the database: {loggers.redact(str(exc) or type(exc).__name__)[:500]}"


def _run_pg(command: list[str], conn: copies.PgConnection) -> None:
    name = Path(command[0]).name
    done = subprocess.run(  # noqa: S603 - PostgreSQL's own tool, found on PATH
        command,
        env={**os.environ, **conn.env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        said = done.stderr.strip()[-2000:] or f"exit code {done.returncode}"
        raise copies.BackupError(f"{name} failed: {said}")


def _write_manifest(folder: Path, manifest: Manifest) -> None:
    path = folder / MANIFEST
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "w", encoding="utf-8") as fh:
        fh.write(manifest.model_dump_json(indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, path)


def _describe(manifest: Manifest) -> list[str]:
    db, spool, files = manifest.database, manifest.spool, manifest.attachments
    lines = [
        f"database: {db.file} ({db.backend}), {_size(db.bytes)}, schema {db.revision or '-'}, "
        f"sha256 {db.sha256}"
    ]
    if spool is None:
        lines.append("mail spool: none (no spool file)")
    else:
        lines.append(f"mail spool: {spool.file}, {spool.rows} messages, {_size(spool.bytes)}")
    lines.append(
        f"attachments: {files.files} files, {_size(files.bytes)} ({files.copied} copied now)"
    )
    return lines


def _size(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError


# --- restore -----------------------------------------------------------------


def _read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Manifest.model_validate(data)
    except FileNotFoundError:
        raise BackupRefused(
            f"{folder} holds no complete hub backup (no {MANIFEST}: a backup cut short, "
            "or not a backup)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupRefused(f"cannot read {path}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '-'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise BackupRefused(f"{path} is not a hub backup's manifest ({problems})") from None


def _restore(args: argparse.Namespace) -> int:
    config = _load(args)
    folder = Path(args.dir)
    manifest = _read_manifest(folder)
    _check_backup(folder, manifest, config)
    with datalock.hold(config, exclusive=True):
        try:
            _check_target(config, manifest, force=args.force)
            lines, damaged = _bring_back(config, folder, manifest)
        except (copies.BackupError, OSError) as exc:
            raise BackupRefused(f"restore failed: {exc}") from None
    print(f"restored from {folder.absolute()} (backup of {manifest.finished_at.isoformat()}):")
    for line in lines:
        print(f"  {line}")
    for name in damaged:  # the rest is back; these files are lost with this backup
        print(f"hub restore: {FILES}/{name} in the backup does not match its name: not restored")
    return 1 if damaged else 0


def _check_backup(folder: Path, manifest: Manifest, config: Config) -> None:
    """The backup is whole, of this code's schema or older, and of the config's backend."""
    db = manifest.database
    if db.revision is not None and not copies.known_revision(db.revision):
        raise BackupRefused(
            f"the backup's schema ({db.revision}) is newer than this hub's "
            f"({copies.code_head()}): restore it with the hub version that wrote it "
            f"({manifest.hub_version}) or newer"
        )
    backend = "sqlite" if copies.sqlite_file(config.storage.url) else "postgresql"
    if db.backend != backend:
        raise BackupRefused(
            f"the backup holds a {db.backend} database, and storage.url is {backend}: "
            "restore it with a config of the same backend"
        )
    checked: list[SpoolCopy | DatabaseCopy] = [db] + ([manifest.spool] if manifest.spool else [])
    for copy in checked:
        path = folder / copy.file
        if not path.is_file():
            raise BackupRefused(f"the backup is incomplete: {path} is missing")
        if copies.sha256_of(path) != copy.sha256:
            raise BackupRefused(f"{path} is damaged: its sha256 is not the manifest's")


def _check_target(config: Config, manifest: Manifest, *, force: bool) -> None:
    """Nothing that holds data is replaced without ``--force``; on PostgreSQL
    nobody else may be connected (a hub running on another machine)."""
    held: list[str] = []
    sqlite = copies.sqlite_file(config.storage.url)
    if sqlite is None:
        others, has_data = asyncio.run(_pg_state(config.storage.url))
        if others:
            raise BackupRefused(
                f"{others} other sessions are connected to the database (a hub running "
                "elsewhere?): stop them first"
            )
        if has_data:
            held.append("the database holds clients or interactions")
    elif sqlite.exists() and any(
        copies.sqlite_count(sqlite, table) for table in ("clients", "interactions")
    ):
        held.append(f"the database {sqlite} holds clients or interactions")
    spool = Path(config.email.spool)
    if manifest.spool is not None and spool.exists():
        rows = copies.sqlite_count(spool, "spool")
        if rows:
            held.append(f"the mail spool {spool} holds {rows} messages")
    if held and not force:
        raise BackupRefused("; ".join(held) + ": hub restore --force replaces them")


async def _pg_state(url: str) -> tuple[int, bool]:
    db = Database(url)
    try:
        return await copies.other_sessions(db), await copies.holds_data(db)
    except Exception as exc:  # the driver's many kinds: unreachable, refused, no such database
        raise BackupRefused(_unreachable(exc)) from None
    finally:
        await db.dispose()


def _bring_back(config: Config, folder: Path, manifest: Manifest) -> tuple[list[str], list[str]]:
    """Database, spool, attachments; what was done, a line each, and the attachments
    found damaged in the backup (not copied)."""
    url = config.storage.url
    sqlite = copies.sqlite_file(url)
    if sqlite is not None:
        sqlite.absolute().parent.mkdir(parents=True, exist_ok=True)
        copies.copy_sqlite(folder / SQLITE_COPY, sqlite)
        lines = [f"database: {sqlite} from {SQLITE_COPY}"]
    else:
        _pg_restore(url, folder / PG_DUMP)
        lines = [f"database: {copies.pg_connection(url).shown()} from {PG_DUMP} (pg_restore)"]
    lines[0] += f", schema {manifest.database.revision or '-'}"
    spool = Path(config.email.spool)
    if manifest.spool is None:
        lines.append(f"mail spool: none in the backup, {spool} left as it is")
    else:
        spool.absolute().parent.mkdir(parents=True, exist_ok=True)
        copies.copy_sqlite(folder / SPOOL_COPY, spool)
        lines.append(f"mail spool: {spool}, {manifest.spool.rows} messages")
    files = Path(config.storage.attachments_dir)
    found = copies.copy_files(folder / FILES, files)
    lines.append(f"attachments: {files}, {found.copied} files copied, {found.files} in all")
    if manifest.database.revision != copies.code_head():
        lines.append("the schema is older than this hub's: hub run (or hub migrate) upgrades it")
    return lines, found.damaged


def _pg_restore(url: str, dump: Path) -> None:
    conn = copies.pg_connection(url)
    pg_restore = shutil.which("pg_restore")
    if pg_restore is None:
        raise BackupRefused(
            "pg_restore is not on PATH: install PostgreSQL's client tools (Debian: apt-get "
            "install postgresql-client) and run hub restore again; by hand: pg_restore --clean "
            f"--if-exists --no-owner --single-transaction {conn.shown()} {dump} (the password "
            "in PGPASSWORD), then copy the spool and the attachments back"
        )
    _run_pg(
        [
            pg_restore,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            *conn.args,
            str(dump),
        ],
        conn,
    )
