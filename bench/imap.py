"""A mailbox of 1,000 mixed messages read over IMAP into the log.

A throwaway Dovecot (Debian's ``dovecot-imapd``, as the tests start it) holds
one folder of mixed mail: plain, HTML-only, with a PDF attachment, replies to
earlier messages, windows-1251 and koi8-r. The hub, as ``hub run`` sets it up: the
email channel's IMAP watcher reads the folder, commits each message to the mail
spool and marks it ``\\Seen``; the mail worker process parses and logs it on
SQLite — timed from the watcher's start to the last message logged. The
bare baseline, in the same run: aioimaplib fetching the same messages in the
same batches and doing nothing with them.

    python -m bench.imap [--messages 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import aioimaplib  # type: ignore[import-untyped]

from bench.hub_config import in_folder
from channels.email.channel import EmailChannel
from channels.email.imap import MemoryCursorStore
from channels.email.worker import MailWorker
from hub.app.wiring import mail_worker
from hub.clients.attachments import AttachmentStore
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import SystemClock
from storage.db import Database
from storage.migrate import upgrade
from tests import dovecot

FOLDER = "bench"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40  # ~10 KB


def mixed(i: int) -> bytes:
    client = i % 100
    head = (
        f"From: Client {client} <client{client}@example.org>\r\nTo: desk@example.com\r\n"
        f"Message-ID: <m{i}@example.org>\r\nDate: Mon, 5 Jan 2026 10:00:00 +0300\r\n"
        "MIME-Version: 1.0\r\n"
    )
    kind = i % 5
    if kind == 0:
        return (
            head + f"Subject: Заказ {i}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
            f"Здравствуйте! Где мой заказ номер {i}?\r\n"
        ).encode()
    if kind == 1:
        return (
            head + f"Subject: Order {i}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            f"<html><body><p>Hello,</p><p>order <b>{i}</b> is late.</p>"
            "<p><a href='https://shop.example/o'>my order</a></p></body></html>\r\n"
        ).encode()
    if kind == 2:
        pdf = base64.encodebytes(PDF).decode().replace("\n", "\r\n")
        return (
            head + f"Subject: Счёт {i}\r\n"
            'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\nСчёт во вложении.\r\n"
            '--b\r\nContent-Type: application/pdf; name="invoice.pdf"\r\n'
            'Content-Disposition: attachment; filename="invoice.pdf"\r\n'
            f"Content-Transfer-Encoding: base64\r\n\r\n{pdf}--b--\r\n"
        ).encode()
    if kind == 3:
        parent = f"<m{max(0, i - 3)}@example.org>"
        return (
            head + f"Subject: Re: Заказ {i - 3}\r\nIn-Reply-To: {parent}\r\n"
            f"References: {parent}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\nСпасибо!\r\n\r\n"
            "On Mon, 5 Jan 2026 at 10:00, Desk <desk@example.com> wrote:\r\n> Ваш заказ в пути.\r\n"
        ).encode()
    charset = "windows-1251" if i % 2 else "koi8-r"
    return (
        head.encode()
        + (
            f"Subject: =?{charset}?b?"
            + base64.b64encode("Вопрос".encode(charset)).decode()
            + f"?=\r\nContent-Type: text/plain; charset={charset}\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode()
        + f"Добрый день, вопрос {i}.\r\n".encode(charset)
    )


async def fill(server: dovecot.DovecotServer, count: int) -> None:
    client = aioimaplib.IMAP4(server.host, server.port, timeout=60)
    await client.wait_hello_from_server()
    await client.login(server.user, server.password)
    await client.create(FOLDER)
    for i in range(count):
        response = await client.append(mixed(i), mailbox=FOLDER)
        assert response.result == "OK", response
    await client.logout()


def settings(server: dovecot.DovecotServer) -> dict[str, Any]:
    """The ``email`` section: the Dovecot folder to watch."""
    return {
        "imap": [
            {
                "host": server.host,
                "port": server.port,
                "user": server.user,
                "password": server.password,
                "folder": FOLDER,
                "tls": False,
            }
        ]
    }


async def run_hub(server: dovecot.DovecotServer, folder: Path, count: int) -> float:
    config = in_folder(folder, settings(server))
    db = Database(config.storage.url)
    await upgrade(db)
    ingestor = Ingestor(db, SystemClock(), AttachmentStore(folder / "files", 10**7))
    await ingestor.start()
    # As the hub runs it: spooled, then parsed and logged by the mail worker process.
    worker = mail_worker(config)
    assert isinstance(worker, MailWorker)
    channel = EmailChannel(
        config.email, max_attachment_bytes=10**7, cursors=MemoryCursorStore(), offload=worker
    )
    starting = asyncio.create_task(channel.start(ingestor))
    while worker.pid is None:  # the worker process is up: the watcher starts now
        if starting.done():
            await starting  # it failed: say why
        await asyncio.sleep(0.001)
    start = time.perf_counter()
    await starting
    try:
        while ingestor.ingested["email"] < count:
            if time.perf_counter() - start > 600:
                raise SystemExit(f"logged {ingestor.ingested['email']} of {count}")
            await asyncio.sleep(0.005)
        return time.perf_counter() - start
    finally:
        await channel.stop()
        await ingestor.stop()
        await db.dispose()


async def run_bare(server: dovecot.DovecotServer, count: int) -> float:
    start = time.perf_counter()
    client = aioimaplib.IMAP4(server.host, server.port, timeout=60)
    await client.wait_hello_from_server()
    await client.login(server.user, server.password)
    await client.select(FOLDER)
    for first in range(1, count + 1, 100):
        last = min(count, first + 99)
        response = await client.uid("fetch", f"{first}:{last}", "(UID BODY.PEEK[])")
        assert response.result == "OK", response
    elapsed = time.perf_counter() - start
    await client.logout()
    return elapsed


async def main_async(args: argparse.Namespace) -> None:
    server = dovecot.start()
    try:
        await fill(server, args.messages)
        bare_s = await run_bare(server, args.messages)
        with tempfile.TemporaryDirectory() as tmp:
            hub_s = await run_hub(server, Path(tmp), args.messages)
    finally:
        server.stop()
    hub_rate, bare_rate = args.messages / hub_s, args.messages / bare_s
    print(f"messages {args.messages} (plain, HTML, PDF attachment, replies, 8-bit Cyrillic)")
    print(
        f"hub (IMAP fetch -> spool -> \\Seen; worker -> every message logged): {hub_s:.2f} s, "
        f"{hub_rate:,.0f} messages/s (target >= 400)"
    )
    print(f"bare aioimaplib fetching the same: {bare_s:.2f} s, {bare_rate:,.0f} messages/s")
    print(f"ratio hub/bare: {hub_rate / bare_rate:.2f}")


def main() -> None:
    logging.getLogger("hub").setLevel(logging.WARNING)
    logging.getLogger("aioimaplib").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
