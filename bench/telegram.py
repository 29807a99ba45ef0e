"""Telegram webhook throughput through the whole path, against bare aiogram.

The hub: the Telegram channel in webhook mode takes each update (secret checked),
ingest commits it on SQLite (client, conversation, interaction, the staff mirror
in the outbox) and only then the webhook answers 200. The baseline, measured in
the same run with the same updates posted the same way: aiogram's own webhook
handler (SimpleRequestHandler) feeding a Dispatcher whose message handler does
nothing. Both answer a local Bot API server (tests/botapi) at start.

    python bench/telegram.py [--updates 20000] [--clients 2000] [--connections 40]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Message
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from channels.telegram import TelegramChannel
from hub.clients.attachments import AttachmentStore
from hub.config import TelegramSection
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import SystemClock
from storage.db import Database
from storage.migrate import upgrade
from tests.botapi import BotApiServer, Limits

SECRET = "bench-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def updates(count: int, clients: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        user = 100_000 + i % clients
        out.append(
            {
                "update_id": i + 1,
                "message": {
                    "message_id": i // clients + 1,
                    "date": 1_767_600_000 + i,
                    "chat": {"id": user, "type": "private", "first_name": f"Client {user}"},
                    "from": {
                        "id": user,
                        "is_bot": False,
                        "first_name": f"Client {user}",
                        "language_code": "ru",
                    },
                    "text": f"Здравствуйте! Вопрос номер {i} по заказу {i * 7}",
                },
            }
        )
    return out


async def post_all(url: str, payloads: list[dict[str, Any]], connections: int) -> float:
    """POST every update, ``connections`` at a time as Telegram does; seconds taken."""
    work = iter(payloads)
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            for payload in work:
                async with http.post(url, json=payload, headers=headers) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"webhook answered {resp.status}")
                    await resp.read()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return time.perf_counter() - start


async def run_hub(
    server: BotApiServer, folder: Path, payloads: list[dict[str, Any]], connections: int
) -> float:
    db = Database(f"sqlite+aiosqlite:///{folder}/hub.db")
    await upgrade(db)
    ingestor = Ingestor(
        db, SystemClock(), AttachmentStore(folder / "files", 10**7), staff_channel="telegram"
    )
    await ingestor.start()
    port = free_port()
    config = TelegramSection(
        enabled=True,
        token=server.token,
        api_base=server.base_url,
        mode="webhook",
        webhook_url=f"http://127.0.0.1:{port}/telegram",
        webhook_listen=f"127.0.0.1:{port}",
        webhook_secret=SECRET,
        staff_chat_id=server.forum.id,
    )
    channel = TelegramChannel(config, max_attachment_bytes=10**7)
    await channel.start(ingestor)
    try:
        return await post_all(f"http://127.0.0.1:{port}/telegram", payloads, connections)
    finally:
        await channel.stop()
        await ingestor.stop()
        await db.dispose()


async def run_bare(server: BotApiServer, payloads: list[dict[str, Any]], connections: int) -> float:
    bot = Bot(
        server.token, session=AiohttpSession(api=TelegramAPIServer.from_base(server.base_url))
    )
    dispatcher = Dispatcher()

    @dispatcher.message()
    async def nothing(message: Message) -> None:
        return None

    app = web.Application()
    SimpleRequestHandler(dispatcher, bot, secret_token=SECRET).register(app, path="/telegram")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        return await post_all(f"http://127.0.0.1:{port}/telegram", payloads, connections)
    finally:
        await runner.cleanup()
        await bot.session.close()


async def main_async(args: argparse.Namespace) -> None:
    payloads = updates(args.updates, args.clients)
    async with BotApiServer(limits=Limits.off()) as server:
        with tempfile.TemporaryDirectory() as tmp:
            hub_s = await run_hub(server, Path(tmp), payloads, args.connections)
        bare_s = await run_bare(server, payloads, args.connections)
    hub_rate, bare_rate = args.updates / hub_s, args.updates / bare_s
    print(f"updates {args.updates}, clients {args.clients}, connections {args.connections}")
    print(
        f"hub (webhook -> committed interaction -> mirror in the outbox): {hub_s:.2f} s, "
        f"{hub_rate:,.0f} updates/s"
    )
    print(f"bare aiogram webhook with a no-op handler: {bare_s:.2f} s, {bare_rate:,.0f} updates/s")
    print(f"ratio hub/bare: {hub_rate / bare_rate:.2f} (target >= 0.5)")


def main() -> None:
    logging.getLogger("hub").setLevel(logging.WARNING)  # one line per message is for operators
    logging.getLogger("aiogram").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=2_000)
    parser.add_argument("--connections", type=int, default=40)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
