"""Email through the hub's SMTP server, against a bare aiosmtpd server.

The hub as it runs: the email channel's SMTP server commits each message to the
mail spool and answers 250; the mail worker process parses and logs it on
SQLite. The time counts until every message is in the log (committed
interactions, counted again at the end). The baseline, in the same run with the
same messages and the same client: aiosmtpd with a handler that only answers
250 (the target: the hub at 0.7 of it). A second baseline shows what durability
alone costs: the same bare server committing each message to raw sqlite3 (WAL,
``synchronous=FULL``, as the hub runs SQLite) before its 250. The client is
aiosmtplib, ``--clients`` sessions at once, each sending its share of the
messages over one connection, each message from its client's own address.

    python -m bench.email [--messages 5000] [--clients 20]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import socket
import sqlite3
import tempfile
import time
from pathlib import Path

import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import text

from bench.hub_config import in_folder
from channels.email.channel import EmailChannel
from hub.app.wiring import mail_worker
from hub.clients.attachments import AttachmentStore
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import SystemClock
from storage.db import Database
from storage.migrate import upgrade

DOMAIN = "support.example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def messages(count: int) -> list[tuple[str, bytes]]:
    """(envelope sender, message): 500 clients writing in turn."""
    out = []
    for i in range(count):
        client = i % 500
        out.append(
            (
                f"client{client}@example.org",
                (
                    f"From: Клиент {client} <client{client}@example.org>\r\n"
                    f"To: help@{DOMAIN}\r\nSubject: Заказ {i}\r\n"
                    f"Message-ID: <m{i}@example.org>\r\nMIME-Version: 1.0\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\n"
                    "Content-Transfer-Encoding: 8bit\r\n\r\n"
                    f"Здравствуйте! Где мой заказ номер {i}? Спасибо.\r\n"
                ).encode(),
            )
        )
    return out


async def send_all(port: int, payloads: list[tuple[str, bytes]], clients: int) -> float:
    async def client(share: list[tuple[str, bytes]]) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        try:
            for sender, raw in share:
                await smtp.sendmail(sender, [f"help@{DOMAIN}"], raw)
        finally:
            await smtp.quit()

    start = time.perf_counter()
    await asyncio.gather(*(client(payloads[k::clients]) for k in range(clients)))
    return time.perf_counter() - start


async def run_hub(folder: Path, payloads: list[tuple[str, bytes]], clients: int) -> float:
    port = free_port()
    config = in_folder(folder, {"smtp": {"listen": f"127.0.0.1:{port}", "domains": [DOMAIN]}})
    db = Database(config.storage.url)
    await upgrade(db)
    ingestor = Ingestor(db, SystemClock(), AttachmentStore(folder / "files", 10**7))
    await ingestor.start()
    # As the hub runs it: the mail worker process parses and logs (hub.mail_worker).
    channel = EmailChannel(config.email, max_attachment_bytes=10**7, offload=mail_worker(config))
    await channel.start(ingestor)
    try:
        start = time.perf_counter()
        await send_all(port, payloads, clients)
        # Each 250 came once the message was spooled; the time counts until all are logged.
        while ingestor.ingested["email"] < len(payloads):
            if time.perf_counter() - start > 300:
                raise SystemExit(f"logged {ingestor.ingested['email']} of {len(payloads)}")
            await asyncio.sleep(0.002)
        seconds = time.perf_counter() - start
    finally:
        await channel.stop()
        await ingestor.stop()
    async with db.read() as conn:
        inbound = text("SELECT count(*) FROM interactions WHERE direction = 'in'")
        logged = (await conn.execute(inbound)).scalar_one()
    await db.dispose()
    if logged != len(payloads):
        raise SystemExit(f"the hub logged {logged} of {len(payloads)} messages")
    return seconds


class _Bare:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


class _Durable:
    """The bare server made durable the plain way: each message committed to raw
    sqlite3 (WAL, ``synchronous=FULL``, as the hub runs SQLite) before its 250."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE mail (id INTEGER PRIMARY KEY, sender TEXT, raw BLOB)")

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.db.execute(
            "INSERT INTO mail (sender, raw) VALUES (?, ?)",
            (envelope.mail_from, envelope.original_content),
        )
        return "250 OK"


async def run_bare(
    payloads: list[tuple[str, bytes]], clients: int, handler: object | None = None
) -> float:
    loop = asyncio.get_running_loop()
    handler = handler or _Bare()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench", enable_SMTPUTF8=True, loop=loop),
        "127.0.0.1",
        0,
    )
    port = server.sockets[0].getsockname()[1]
    try:
        return await send_all(port, payloads, clients)
    finally:
        server.close()
        await server.wait_closed()


async def main_async(args: argparse.Namespace) -> None:
    payloads = messages(args.messages)
    gc.collect()
    gc.freeze()  # the input, not the servers' heap
    with tempfile.TemporaryDirectory() as tmp:
        hub_s = await run_hub(Path(tmp), payloads, args.clients)
        bare_s = await run_bare(payloads, args.clients)
        durable = _Durable(Path(tmp) / "bare.db")
        durable_s = await run_bare(payloads, args.clients, durable)
        durable.db.close()
    hub_rate, bare_rate = args.messages / hub_s, args.messages / bare_s
    durable_rate = args.messages / durable_s
    print(f"messages {args.messages}, SMTP sessions at once {args.clients}")
    print(
        f"hub (SMTP session -> spool -> 250; worker -> every message logged): {hub_s:.2f} s, "
        f"{hub_rate:,.0f} messages/s"
    )
    print(f"bare aiosmtpd answering 250: {bare_s:.2f} s, {bare_rate:,.0f} messages/s")
    print(f"ratio hub/bare: {hub_rate / bare_rate:.2f} (target >= 0.7)")
    print(
        f"bare aiosmtpd committing each message to raw sqlite3 before 250: {durable_s:.2f} s, "
        f"{durable_rate:,.0f} messages/s; ratio hub/durable bare: {hub_rate / durable_rate:.2f}"
    )


def main() -> None:
    logging.getLogger("hub").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=20)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
