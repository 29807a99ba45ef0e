"""``hub backup`` and ``hub restore`` (issue 17): a backup taken while a real ``hub run``
takes forms with files, restored into a fresh folder and compared; restore refused
while a hub holds the data; foreign folders, damaged or newer backups refused;
PostgreSQL through pg_dump and pg_restore."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest
from sqlalchemy import func, select

from channels.email.spool import MailSpool
from hub import config as hub_config
from hub.app import datalock
from hub.app.run import Hub
from storage import Database
from storage.migrate import upgrade
from storage.models import Attachment, Client, Interaction
from tests import pg
from tests.cluster import HUB, ROOT, HubProcess, free_port, to_toml
from tests.conftest import BACKENDS, _pg_database

FORM = {
    "id": "contact",
    "language": "en",
    "min_fill_seconds": 0,
    "fields": [
        {"name": "name"},
        {"name": "email", "type": "email", "required": True},
        {"name": "message", "type": "textarea"},
        {"name": "doc", "type": "file", "max_bytes": 100_000, "accept": ["application/pdf"]},
    ],
}


class Snapshot(NamedTuple):
    clients: int
    texts: dict[int, str]
    files: set[str]


def _config(folder: Path, url: str | None = None, **extra: Any) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "storage": {
            "url": url or f"sqlite+aiosqlite:///{folder}/hub.db",
            "attachments_dir": str(folder / "files"),
        },
        "admin": {"listen": f"127.0.0.1:{free_port()}", "token": "backup-admin-token-0123456789"},
        "email": {"spool": str(folder / "mail-spool.db")},
        **extra,
    }


def _write(config: dict[str, Any], folder: Path) -> str:
    path = folder / "hub.toml"
    path.write_text(to_toml(config))
    return str(path)


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """``hub ARGS`` through its installed entry point: exit code and everything said."""
    proc = await asyncio.create_subprocess_exec(
        HUB,
        *args,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def _snapshot(url: str) -> Snapshot:
    db = Database(url)
    try:
        async with db.read() as conn:
            clients = (await conn.execute(select(func.count()).select_from(Client))).scalar_one()
            texts = dict((await conn.execute(select(Interaction.id, Interaction.text))).all())
            files = set((await conn.execute(select(Attachment.sha256))).scalars())
        return Snapshot(int(clients), {int(k): str(v) for k, v in texts.items()}, files)
    finally:
        await db.dispose()


def _assert_files(root: Path, wanted: set[str]) -> None:
    for sha in wanted:
        path = root / sha[:2] / sha
        assert path.is_file(), f"{sha} missing under {root}"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha


def _spool_rows(path: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT id, mail_from, rcpt_tos, raw, error FROM spool").fetchall()


async def _fill_spool(path: Path, count: int) -> None:
    spool = MailSpool(path)
    await spool.open()
    try:
        for n in range(count):
            raw = f"From: x{n}@example.com\r\nSubject: s{n}\r\n\r\nbody {n}\r\n".encode()
            await spool.submit(raw, f"x{n}@example.com", ["desk@example.com"], datetime.now(UTC))
    finally:
        await spool.close()


async def _until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def _post_forms(
    port: int, accepted: list[int], *, limit: int, stop: asyncio.Event | None = None
) -> None:
    """Submissions, four at a time, each with a PDF of its own, until ``stop`` is
    set or ``limit`` were sent."""
    numbers = iter(range(limit))

    async def poster(http: aiohttp.ClientSession) -> None:
        for n in numbers:
            if stop is not None and stop.is_set():
                return
            form = aiohttp.FormData()
            form.add_field("email", f"person{n}@example.com")
            form.add_field("message", f"message number {n} — с приветом")
            pdf = b"%PDF-1.4\n" + f"document {n}\n".encode() * 50
            form.add_field("doc", pdf, filename=f"doc{n}.pdf", content_type="application/pdf")
            async with http.post(
                f"http://127.0.0.1:{port}/f/contact",
                data=form,
                headers={"Accept": "application/json"},
            ) as response:
                assert response.status == 201, await response.text()
                accepted.append(int((await response.json())["id"]))

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(poster(http) for _ in range(4)))


async def test_backup_while_the_hub_takes_forms_then_restore_into_fresh_folders(
    tmp_path: Path,
) -> None:
    form_port = free_port()
    live = _config(
        tmp_path / "live",
        webform={
            "listen": f"127.0.0.1:{form_port}",
            "rate_limit_per_minute": 100_000,
            "forms": [FORM],
        },
    )
    live_url = live["storage"]["url"]
    spool = Path(live["email"]["spool"])
    await _fill_spool(spool, 3)  # mail not yet logged: a hub without SMTP leaves it be
    hub = HubProcess("live", live, tmp_path)
    backup = str(tmp_path / "backup")
    await hub.start()
    try:
        await hub.ready()
        accepted: list[int] = []
        stop = asyncio.Event()
        writer = asyncio.create_task(_post_forms(form_port, accepted, limit=5000, stop=stop))
        await _until(lambda: len(accepted) >= 10)
        before = len(accepted)
        code, said = await _cli("backup", "--config", str(hub.path), backup)
        assert code == 0, said
        assert len(accepted) > before and not writer.done()  # the hub wrote meanwhile
        copied_first = json.loads((Path(backup) / "manifest.json").read_text())["attachments"]
        stop.set()
        await writer
        written = len(accepted)

        code, said = await _cli("restore", "--config", str(hub.path), backup)
        assert code == 1 and "a hub is running on this data" in said, said

        # The copy taken amid the writes: whole as of one moment.
        first = tmp_path / "first"
        code, said = await _cli("restore", "--config", _write(_config(first), first), backup)
        assert code == 0, said
        taken = await _snapshot(f"sqlite+aiosqlite:///{first}/hub.db")
        now = await _snapshot(live_url)
        assert len(taken.texts) >= 10
        assert all(now.texts[i] == text for i, text in taken.texts.items())
        assert taken.clients <= now.clients and taken.files <= now.files
        _assert_files(first / "files", taken.files)
        assert _spool_rows(first / "mail-spool.db") == _spool_rows(spool)

        # Again into the same folder once the writes are over: only the new files are copied.
        code, said = await _cli("backup", "--config", str(hub.path), backup)
        assert code == 0, said
        manifest = json.loads((Path(backup) / "manifest.json").read_text())
        assert manifest["attachments"]["files"] == len(now.files) == written
        assert copied_first["files"] >= len(taken.files)  # files outlive their rows' snapshot
        assert manifest["attachments"]["copied"] == written - copied_first["files"]
        assert manifest["spool"]["rows"] == 3
        second = tmp_path / "second"
        code, said = await _cli("restore", "--config", _write(_config(second), second), backup)
        assert code == 0, said
    finally:
        await hub.stop()
    restored = await _snapshot(f"sqlite+aiosqlite:///{second}/hub.db")
    assert restored == await _snapshot(live_url)
    assert set(accepted) <= restored.texts.keys() and restored.clients == written
    _assert_files(second / "files", restored.files)
    assert _spool_rows(second / "mail-spool.db") == _spool_rows(spool)
    with contextlib.closing(sqlite3.connect(second / "hub.db")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def _seeded(folder: Path) -> dict[str, Any]:
    """A config whose SQLite database holds one client (imported)."""
    config = _config(folder)
    path = _write(config, folder)
    (folder / "c.csv").write_text("name,email\nAnna,anna@example.com\n", encoding="utf-8")
    code, said = await _cli("migrate", "--config", path)  # import makes no database itself
    assert code == 0, said
    code, said = await _cli("import", "--config", path, str(folder / "c.csv"))
    assert code == 0, said
    return config


async def test_restore_refused_while_the_lock_is_held_and_a_hub_waits_for_a_restore(
    tmp_path: Path,
) -> None:
    config = await _seeded(tmp_path / "data")
    path = str(tmp_path / "data" / "hub.toml")
    code, said = await _cli("backup", "--config", path, str(tmp_path / "b"))
    assert code == 0, said
    parsed = hub_config.parse(config)
    with datalock.hold(parsed):  # what hub run takes as it starts
        code, said = await _cli("restore", "--force", "--config", path, str(tmp_path / "b"))
        assert code == 1, said
        assert f"a hub is running on this data (it holds {tmp_path / 'data' / 'hub.lock'})" in said
    code, said = await _cli("restore", "--force", "--config", path, str(tmp_path / "b"))
    assert code == 0, said
    refused = pytest.raises(datalock.DataInUse, match="a restore is running")
    with datalock.hold(parsed, exclusive=True), refused:  # as a restore holds it
        async with Hub(parsed).lifespan():
            pass


async def test_refusals_name_what_is_wrong(tmp_path: Path) -> None:
    await _seeded(tmp_path / "data")
    path = str(tmp_path / "data" / "hub.toml")
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    code, said = await _cli("backup", "--config", path, str(foreign))
    assert code == 1 and "holds something other than a hub backup (holiday.jpg)" in said
    assert sorted(p.name for p in foreign.iterdir()) == ["holiday.jpg"]
    code, said = await _cli("restore", "--config", path, str(foreign))
    assert code == 1 and "holds no complete hub backup" in said
    code, said = await _cli("backup", "--config", path, str(tmp_path / "data" / "files" / "b"))
    assert code == 1 and "is where the hub keeps its data" in said, said

    backup = tmp_path / "b"
    code, said = await _cli("backup", "--config", path, str(backup))
    assert code == 0 and "database: hub.db (sqlite)" in said, said
    code, said = await _cli("restore", "--config", path, str(backup))
    assert code == 1 and "holds clients or interactions: hub restore --force" in said, said

    manifest = json.loads((backup / "manifest.json").read_text())
    newer = {**manifest, "database": {**manifest["database"], "revision": "9999_future"}}
    (backup / "manifest.json").write_text(json.dumps(newer))
    code, said = await _cli("restore", "--force", "--config", path, str(backup))
    assert code == 1 and "schema (9999_future) is newer than this hub's" in said, said

    (backup / "manifest.json").write_text(json.dumps({"format": "photos"}))
    code, said = await _cli("restore", "--config", path, str(backup))
    assert code == 1 and "is not a hub backup's manifest" in said, said
    code, said = await _cli("backup", "--config", path, str(backup))
    assert code == 1 and "is not a hub backup's manifest" in said, said

    (backup / "manifest.json").write_text(json.dumps(manifest))
    # A file of the backup whose content is not its name: the rest comes back, the
    # command says which file is lost and fails.
    digest = hashlib.sha256(b"a receipt").hexdigest()
    bad = backup / "attachments" / digest[:2] / digest
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"not the receipt")
    code, said = await _cli("restore", "--force", "--config", path, str(backup))
    assert code == 1 and "restored from" in said, said
    assert f"attachments/{digest[:2]}/{digest} in the backup does not match" in said, said
    assert not (tmp_path / "data" / "files" / digest[:2] / digest).exists()
    bad.unlink()

    with open(backup / "hub.db", "r+b") as fh:
        fh.seek(5000)
        fh.write(b"\x00damage\x00")
    code, said = await _cli("restore", "--force", "--config", path, str(backup))
    assert code == 1 and "hub.db is damaged" in said, said


needs_pg = pytest.mark.skipif("postgresql" not in BACKENDS, reason="HUB_TEST_BACKENDS lacks it")


@needs_pg
async def test_postgresql_round_trip_with_pg_dump(tmp_path: Path, pg_server: pg.PgServer) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump or pg_restore is not on PATH (Debian: postgresql-client)")
    form_port = free_port()
    source = _config(
        tmp_path / "live",
        await _pg_database(pg_server),
        webform={
            "listen": f"127.0.0.1:{form_port}",
            "forms": [FORM],
            "rate_limit_per_minute": 1000,
        },
    )
    async with Hub(hub_config.parse(source)).lifespan():
        await _post_forms(form_port, [], limit=6)
    path = _write(source, tmp_path / "live")
    backup = tmp_path / "b"
    code, said = await _cli("backup", "--config", path, str(backup))
    assert code == 0 and "database: hub.dump (postgresql)" in said, said

    target_url = await _pg_database(pg_server)
    target = _config(tmp_path / "restored", target_url)
    target_path = _write(target, tmp_path / "restored")
    watcher = Database(target_url)
    try:
        async with watcher.read():  # another session on the database: a hub elsewhere?
            code, said = await _cli("restore", "--config", target_path, str(backup))
        assert code == 1 and "other sessions are connected" in said, said
    finally:
        await watcher.dispose()
    code, said = await _cli("restore", "--config", target_path, str(backup))
    assert code == 0 and "(pg_restore)" in said, said
    restored, live = await _snapshot(target_url), await _snapshot(source["storage"]["url"])
    assert restored == live and live.clients == 6 and len(live.files) == 6
    _assert_files(tmp_path / "restored" / "files", restored.files)
    code, said = await _cli("restore", "--config", target_path, str(backup))
    assert code == 1 and "the database holds clients or interactions" in said, said
    db = Database(target_url)
    try:
        assert await upgrade(db) == []  # the restored schema is this code's head
    finally:
        await db.dispose()


@needs_pg
async def test_postgresql_without_pg_dump_says_how(tmp_path: Path, pg_server: pg.PgServer) -> None:
    config = _config(tmp_path, await _pg_database(pg_server))
    path = _write(config, tmp_path)
    empty = tmp_path / "bin"
    empty.mkdir()
    code, said = await _cli(
        "backup", "--config", path, str(tmp_path / "b"), env={"PATH": str(empty)}
    )
    assert code == 1, said
    assert "pg_dump is not on PATH" in said and "apt-get install postgresql-client" in said
    assert "pg_dump --format=custom" in said and f"--port {pg_server.port}" in said
    assert not (tmp_path / "b").exists()  # refused before anything was copied
