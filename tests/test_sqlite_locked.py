"""SQLite locked by another process (issue 9): the sender is told to try again
later (SMTP 451), nothing is half-written, and once the lock goes the retry goes
in, once, with no manual step; the database passes its integrity check."""

from __future__ import annotations

import asyncio
import smtplib
import sqlite3
import subprocess
import sys
from pathlib import Path

from channels.email.channel import EmailChannel
from hub.clients.attachments import AttachmentStore
from hub.config import EmailSection
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import SystemClock
from storage import Database
from storage.migrate import upgrade

RAW = (
    b"From: Anna <anna@example.org>\r\nTo: help@hub.example\r\nSubject: hi\r\n"
    b"Message-ID: <locked-1@example.org>\r\n\r\nHello\r\n"
)
HOLDER = (
    "import sqlite3, sys\n"
    "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "c.execute('BEGIN EXCLUSIVE')\n"
    "print('locked', flush=True)\n"
    "sys.stdin.readline()\n"
    "c.execute('COMMIT')\n"
)


def _send(port: int) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        try:
            smtp.sendmail("anna@example.org", ["help@hub.example"], RAW)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error.decode()
        return 250, "ok"


async def test_a_database_locked_by_another_process_defers_then_recovers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hub.db"
    db = Database(f"sqlite+aiosqlite:///{path}", busy_timeout_ms=300)
    await upgrade(db)
    ingestor = Ingestor(db, SystemClock(), AttachmentStore(tmp_path / "files", 10**6))
    await ingestor.start()
    channel = EmailChannel(
        EmailSection.model_validate({"smtp": {"domains": ["hub.example"]}}),
        max_attachment_bytes=10**6,
        listen="127.0.0.1:0",
    )
    await channel.start(ingestor)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert await asyncio.to_thread(holder.stdout.readline) == "locked\n"
        assert channel.server is not None
        code, reply = await asyncio.to_thread(_send, channel.server.port)
        assert code == 451, reply  # temporary: the sender keeps the mail and retries
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert await asyncio.to_thread(holder.wait, 10) == 0
        assert await asyncio.to_thread(_send, channel.server.port) == (250, "ok")
        assert await asyncio.to_thread(_send, channel.server.port) == (250, "ok")  # again
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        await channel.stop()
        await ingestor.stop()
        await db.dispose()
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        logged = check.execute(
            "SELECT count(*) FROM interactions WHERE external_id = '<locked-1@example.org>'"
        ).fetchone()
        assert logged == (1,)
    finally:
        check.close()
