"""SQLite's disk fills up under the SMTP server (issue 9).

The database lives on a real, tiny tmpfs (mounted for the test; root only): a
filler file takes the rest of the space, so SQLite meets ENOSPC (SQLITE_FULL)
for real. Senders get 451 (try later), never 250 for a message not stored;
when space comes back the same messages go through with no manual step, the
database passes ``PRAGMA integrity_check`` and every acknowledged message is in
the log once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from sqlalchemy import select

from channels.email.channel import EmailChannel
from hub.clients.attachments import AttachmentStore
from hub.config import EmailSection
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import SystemClock
from storage import Database
from storage.migrate import upgrade
from storage.models import Interaction

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_disk() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    root = Path(tempfile.mkdtemp(prefix="hub-full-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(root)], capture_output=True
    )
    if mounted.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)


def fill(path: Path) -> None:
    """Take every free byte of the file system ``path`` is on."""
    with open(path, "wb", buffering=0) as fh:
        for chunk in (65536, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * chunk)


def mail(n: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Client {n % 3} <c{n % 3}@example.org>"
    message["To"] = "desk@desk.example.com"
    message["Subject"] = f"full-{n}"
    message["Message-ID"] = f"<full-{n}@example.org>"
    message.set_content(f"full-{n} " + "x" * 20_000)
    return message


async def test_disk_full_answers_451_and_recovers_without_a_hand(tiny_disk: Path) -> None:
    url = f"sqlite+aiosqlite:///{tiny_disk}/hub.db"
    db = Database(url)
    await upgrade(db)
    ingestor = Ingestor(db, SystemClock(), AttachmentStore(str(tiny_disk / "files"), 10**6))
    await ingestor.start()
    channel = EmailChannel(
        EmailSection.model_validate({"smtp": {"domains": ["desk.example.com"]}}),
        max_attachment_bytes=10**6,
        listen="127.0.0.1:0",
    )
    acked: list[int] = []
    answers: Counter[int] = Counter()
    try:
        await channel.start(ingestor)
        assert channel.server is not None
        port = channel.server.port

        async def send(n: int) -> int:
            try:
                await aiosmtplib.send(mail(n), hostname="127.0.0.1", port=port, timeout=30)
            except aiosmtplib.SMTPResponseException as exc:
                answers[exc.code] += 1
                return exc.code
            answers[250] += 1
            acked.append(n)
            return 250

        for n in range(5):
            assert await send(n) == 250
        filler = tiny_disk / "filler"
        fill(filler)
        refused = []
        for n in range(5, 60):  # the WAL has some room left: write until it has none
            if await send(n) != 250:
                refused.append(n)
            if len(refused) >= 3:
                break
        assert refused, "the disk never filled"
        filler.unlink()
        for n in refused:  # the senders come back, nobody touched the hub
            assert await send(n) == 250
        assert await send(1000) == 250
    finally:
        await channel.stop()
        await ingestor.stop()
        await db.dispose()

    check = sqlite3.connect(tiny_disk / "hub.db")
    try:
        integrity = check.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        check.close()
    db = Database(url)
    try:
        async with db.read() as conn:
            logged = Counter(
                (
                    await conn.execute(
                        select(Interaction.external_id).where(Interaction.direction == "in")
                    )
                ).scalars()
            )
    finally:
        await db.dispose()
    expected = {f"<full-{n}@example.org>" for n in acked}
    print(
        f"\nsqlite disk full: answers {dict(answers)} acknowledged={len(set(acked))} "
        f"logged={sum(logged.values())} duplicates={sum(n - 1 for n in logged.values())} "
        f"lost={len(expected - set(logged))} integrity={integrity}"
    )
    assert integrity == "ok"
    assert set(logged) == expected
    assert all(n == 1 for n in logged.values())
    assert set(answers) <= {250, 451}
