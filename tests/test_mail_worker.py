"""Received mail through the spool and the mail worker process, as the hub runs it:
real SMTP sessions, a real child process, the database of each backend."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from sqlalchemy import func, select

from channels.email.channel import EmailChannel
from channels.email.parse import may_name_sender, parse
from channels.email.spool import MailSpool
from channels.email.worker import MailWorker
from hub import config as hub_config
from hub.app.run import Hub
from hub.app.wiring import mail_worker
from hub.clients.attachments import AttachmentStore
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import SystemClock
from storage import Database
from storage.models import Interaction
from tests.corpus import email_corpus
from tests.test_app import TOKEN, _free_port
from tests.test_metrics import scrape

DOMAIN = "desk.example.com"


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


@dataclass
class Desk:
    channel: EmailChannel
    worker: MailWorker
    ingestor: Ingestor
    db: Database
    spool: Path

    @property
    def port(self) -> int:
        assert self.channel.server is not None
        return self.channel.server.port

    async def inbound(self) -> list[tuple[str, str]]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(Interaction.external_id, Interaction.text)
                .where(Interaction.direction == "in")
                .order_by(Interaction.id)
            )
            return [(str(a), str(b)) for a, b in rows]

    async def count(self) -> int:
        async with self.db.read() as conn:
            return int(
                (
                    await conn.execute(select(func.count()).where(Interaction.direction == "in"))
                ).scalar_one()
            )

    def spooled(self) -> list[tuple[int, str | None]]:
        with sqlite3.connect(self.spool) as spool:
            return [(int(i), e) for i, e in spool.execute("SELECT id, error FROM spool")]


def _config(db_url: str, tmp_path: Path) -> hub_config.Config:
    return hub_config.parse(
        {
            "admin": {"token": "mail-worker-token"},
            "hub": {"log_level": "INFO"},
            "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
            "email": {
                "smtp": {"listen": "127.0.0.1:2525", "domains": [DOMAIN]},  # port 0 below
                "spool": str(tmp_path / "spool" / "mail.db"),
            },
        }
    )


@asynccontextmanager
async def running(config: hub_config.Config, tmp_path: Path) -> AsyncIterator[Desk]:
    """The email channel on port 0 with its mail worker, as the hub sets them up."""
    db = Database(config.storage.url)
    ingestor = Ingestor(db, SystemClock(), AttachmentStore(tmp_path / "files", 10**7))
    await ingestor.start()
    worker = mail_worker(config)
    assert isinstance(worker, MailWorker)
    channel = EmailChannel(
        config.email, max_attachment_bytes=10**7, offload=worker, listen="127.0.0.1:0"
    )
    await channel.start(ingestor)
    try:
        yield Desk(channel, worker, ingestor, db, Path(config.email.spool))
    finally:
        await channel.stop()
        await ingestor.stop()
        await db.dispose()


@pytest.fixture
async def desk(db_url: str, tmp_path: Path) -> AsyncIterator[Desk]:
    async with running(_config(db_url, tmp_path), tmp_path) as started:
        yield started


def _mail(n: int, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Client {n} <client{n}@example.org>"
    message["To"] = f"help@{DOMAIN}"
    message["Subject"] = f"Order {n}"
    message["Message-ID"] = f"<order-{n}@example.org>"
    for name, value in headers.items():
        del message[name]
        message[name] = value
    message.set_content(f"Where is my order {n}? Заказ {n}.")
    return message


async def _send(port: int, message: EmailMessage, sender: str | None = None) -> None:
    await aiosmtplib.send(
        message, hostname="127.0.0.1", port=port, sender=sender, timeout=20, start_tls=False
    )


async def test_mail_is_answered_once_spooled_and_logged_by_the_worker(desk: Desk) -> None:
    assert desk.worker.pid is not None and desk.worker.pid != os.getpid()
    for n in range(3):
        await _send(desk.port, _mail(n))

    async def logged() -> bool:
        return await desk.count() == 3

    await until(logged)
    inbound = await desk.inbound()
    assert [ext for ext, _ in inbound] == [f"<order-{n}@example.org>" for n in range(3)]
    assert "Заказ 1." in inbound[1][1]
    # Logged: the spool let the rows go; the hub's own process counted them.
    await until(lambda: _true(not desk.spooled()))
    await until(lambda: _true(desk.ingestor.ingested["email"] == 3))
    assert await desk.worker.spool.counts() == (0, 0)


async def _true(value: bool) -> bool:
    return value


async def test_a_message_naming_no_sender_anywhere_is_refused_before_the_spool(
    desk: Desk,
) -> None:
    raw = b"To: help@desk.example.com\r\nSubject: who am I\r\n\r\nno sender here\r\n"
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await _raw_send(desk.port, "", raw)
    assert refused.value.code == 554
    assert desk.spooled() == []


async def _raw_send(port: int, sender: str, raw: bytes) -> None:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=20)
    await smtp.connect()
    try:
        await smtp.sendmail(sender, [f"help@{DOMAIN}"], raw)
    finally:
        await smtp.quit()


async def test_a_sender_the_parser_cannot_read_is_logged_not_set_aside(desk: Desk) -> None:
    """Issue 16: an "@" in From passes the quick look; the address is no address.
    Nothing else names a sender, yet the mail is logged (on a client of its own)."""
    raw = b"From: <@@>\r\nTo: help@desk.example.com\r\nSubject: x\r\n\r\nbroken sender\r\n"
    await _raw_send(desk.port, "", raw)

    async def logged() -> bool:
        return await desk.count() == 1

    await until(logged)
    assert [text for _, text in await desk.inbound()] == ["broken sender"]
    await until(lambda: _true(not desk.spooled()))
    assert await desk.worker.spool.counts() == (0, 0)


async def test_mail_sent_while_the_worker_is_dead_is_logged_once_it_is_back(desk: Desk) -> None:
    first = desk.worker.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    # Answered from the spool whether the worker is up or not.
    for n in range(10, 20):
        await _send(desk.port, _mail(n))

    async def logged() -> bool:
        return await desk.count() >= 10

    await until(logged, 60)
    assert desk.worker.pid not in (None, first)  # a new worker
    inbound = await desk.inbound()
    assert sorted(ext for ext, _ in inbound) == sorted(
        f"<order-{n}@example.org>" for n in range(10, 20)
    )
    await until(lambda: _true(not desk.spooled()))


async def test_what_the_spool_holds_at_start_is_logged(db_url: str, tmp_path: Path) -> None:
    config = _config(db_url, tmp_path)
    # Left by a hub that stopped before its worker logged them.
    spool = MailSpool(config.email.spool)
    await spool.open()
    at = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    ids = [
        await spool.submit(bytes(_mail(n)), f"client{n}@example.org", [f"help@{DOMAIN}"], at)
        for n in (30, 31)
    ]
    await spool.close()
    assert ids[1] > ids[0]
    async with running(config, tmp_path) as desk:

        async def logged() -> bool:
            return await desk.count() == 2

        await until(logged)
        async with desk.db.read() as conn:
            [when] = (await conn.execute(select(func.min(Interaction.at)))).scalars()
        assert when == at  # as received, not as logged
        await until(lambda: _true(not desk.spooled()))


def test_the_quick_look_never_refuses_what_the_parser_reads_a_sender_from() -> None:
    folder = email_corpus()
    files = sorted(folder.glob("*.eml"))
    if not files:
        pytest.skip(f"no email corpus at {folder}")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for path in files:
        raw = path.read_bytes()
        parsed = parse(raw, account="help@x", received_at=at, max_attachment_bytes=10**7)
        if parsed.message is not None:
            assert may_name_sender(raw, ""), path.name
    assert not may_name_sender(b"Subject: x\r\nTo: a@b.c\r\n\r\nFrom: me@x.y\r\n", "")
    assert may_name_sender(b"Subject: x\r\n\r\nbody\r\n", "bounce@x.y")
    assert may_name_sender(b"From: Someone\r\n  <folded@x.y>\r\n\r\nbody\r\n", "")
    assert may_name_sender(b"Reply-To: r@x.y\n\nbody\n", "")


async def test_the_hub_runs_the_worker_and_counts_its_mail(db_url: str, tmp_path: Path) -> None:
    admin, smtp = _free_port(), _free_port()
    config = hub_config.parse(
        {
            "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
            "admin": {"listen": f"127.0.0.1:{admin}", "token": TOKEN},
            "email": {
                "smtp": {"listen": f"127.0.0.1:{smtp}", "domains": [DOMAIN]},
                "spool": str(tmp_path / "mail-spool.db"),
            },
        }
    )
    hub = Hub(config)
    async with hub.lifespan():
        email = hub.channels["email"]
        assert isinstance(email, EmailChannel) and isinstance(email.offload, MailWorker)
        await _send(smtp, _mail(40))
        await _send(smtp, _mail(40))  # sent again: logged once

        async def counted() -> bool:
            metrics = await scrape(admin)
            return metrics.get("hub_ingested_total{channel=email}") == 1 and (
                metrics["hub_mail_spool_waiting"] == 0
            )

        await until(counted)
        metrics = await scrape(admin)
    assert metrics["hub_mail_spool_set_aside"] == 0
    assert metrics["hub_ingested_total{channel=email}"] == 1


async def test_a_spool_that_cannot_commit_answers_451_and_the_retry_is_logged(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = desk.worker.spool
    commit = spool._commit

    def full(*args: object) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(spool, "_commit", full)
    with pytest.raises(aiosmtplib.SMTPDataError) as deferred:
        await _send(desk.port, _mail(50))
    assert deferred.value.code == 451  # the sender keeps it and tries again
    monkeypatch.setattr(spool, "_commit", commit)
    await _send(desk.port, _mail(50))

    async def logged() -> bool:
        return await desk.count() == 1

    await until(logged)
    assert [ext for ext, _ in await desk.inbound()] == ["<order-50@example.org>"]
