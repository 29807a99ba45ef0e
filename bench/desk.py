"""A busy desk under Telegram's limits: 100 clients send 600 messages in one
minute; the local Bot API server enforces 1 message/s per chat, 20/min per
group and 30/s per bot. Measured: how long after its arrival each message
reaches the managers (its mirror in a staff group, or a private notice to its
manager), and how many requests Telegram answered 429. Target: every message
within 60 s, no 429.

    python -m bench.desk [--clients 100] [--messages 600] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import re
import socket
import statistics
import tempfile
import time

from hub import config as hub_config
from hub.app.run import Hub
from tests.botapi import BotApiServer

TOKEN = re.compile(r"\bq(\d+)q\b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main_async(args: argparse.Namespace) -> None:
    async with BotApiServer() as server:  # Telegram's limits on
        groups = [
            server.forum,
            *(server.add_group(f"Staff {i}") for i in range(2, args.groups + 1)),
        ]
        managers = [server.add_manager(f"Manager{i}") for i in range(args.managers)]
        for manager in managers:
            for group in groups[1:]:
                group.members[manager.id] = "member"
        clients = [server.add_user(f"Client{i}", language_code="ru") for i in range(args.clients)]
        with tempfile.TemporaryDirectory() as tmp:
            config = hub_config.parse(
                {
                    "storage": {
                        "url": f"sqlite+aiosqlite:///{tmp}/hub.db",
                        "attachments_dir": f"{tmp}/files",
                    },
                    "admin": {
                        "listen": f"127.0.0.1:{free_port()}",
                        "token": "bench-token-0123456789",
                    },
                    "dispatcher": {"idle_poll_s": 0.2},
                    "telegram": {
                        "enabled": True,
                        "token": server.token,
                        "api_base": server.base_url,
                        "mode": "polling",
                        "staff_chat_id": groups[0].id,
                        "extra_staff_chat_ids": [g.id for g in groups[1:]],
                    },
                    "managers": [
                        {"name": f"Manager {i}", "telegram_id": m.id, "capacity": 1000}
                        for i, m in enumerate(managers)
                    ],
                }
            )
            hub = Hub(config)
            async with hub.lifespan():
                for manager in managers:  # a bot may write only to who started it
                    await server.start_bot(manager)
                arrived: dict[int, float] = {}
                reached: dict[int, float] = {}
                watched = [g.id for g in groups] + [m.id for m in managers]

                def scan() -> None:
                    now = time.monotonic()
                    for chat in watched:
                        for message in server.sent_to(chat):
                            body = (message.get("text") or "") + (message.get("caption") or "")
                            for found in TOKEN.finditer(body):
                                reached.setdefault(int(found.group(1)), now)

                async def watch() -> None:
                    while len(reached) < args.messages:
                        scan()
                        await asyncio.sleep(0.2)  # a sampling period, not synchronization

                watcher = asyncio.create_task(watch())
                rng = random.Random(7)
                start = time.monotonic()
                for n in range(args.messages):
                    due = start + n * args.seconds / args.messages
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    arrived[n] = time.monotonic()
                    await server.user_sends(rng.choice(clients), text=f"Вопрос q{n}q по заказу")
                try:
                    await asyncio.wait_for(watcher, args.seconds + 240)
                except TimeoutError:
                    scan()
    delays = sorted(reached[n] - arrived[n] for n in reached if n in arrived)
    missing = args.messages - len(delays)
    print(
        f"{args.clients} clients, {args.messages} messages in {args.seconds} s, "
        f"{args.groups} staff groups, {args.managers} managers"
    )
    if delays:
        print(
            f"reached the managers: {len(delays)}; delay median {statistics.median(delays):.1f} s, "
            f"p95 {delays[int(len(delays) * 0.95) - 1]:.1f} s, max {delays[-1]:.1f} s"
        )
    print(f"not reached: {missing}; within 60 s: {sum(d <= 60 for d in delays)}")
    print(f"requests answered 429: {len(server.throttled)}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--groups", type=int, default=6)
    parser.add_argument("--managers", type=int, default=10)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
