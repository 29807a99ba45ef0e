"""Campaign send rates through the assembled hub: Telegram against its allowed rate,
email against a bare aiosmtplib loop.

Telegram: N clients (default 10,000) get a campaign through the hub (runner →
outbox → dispatcher → aiogram) against the local Bot API server, which answers
429 to anything over Telegram's limits. By default at Telegram's own 30 messages a
second (10,000 sends take about 6 minutes); ``--scale K`` multiplies the per-bot
limit on both sides (the stand-in's window and the channel's pacing) for a quicker
run or a stress test; the ratio is to the allowed rate either way. With
``--kill-at F`` the hub is stopped once a fraction F has gone out and started
again; every client must end with exactly one message. Printed: the achieved
rate over the allowed one (target ≥ 0.95) and the number of 429 answers
(target 0).

Email: M clients get a campaign by email to a local aiosmtpd sink; the baseline,
in the same run, is a bare aiosmtplib loop sending the same number of messages
over one connection to the same sink. The email channel's own pacing (10/s by
default, for a shared relay) is lifted for this comparison.

    python -m bench.campaign [--clients 10000] [--scale 1] [--kill-at 0.4] [--emails 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
from sqlalchemy import insert

from channels.email.channel import EmailChannel
from channels.telegram import TelegramChannel
from hub import config as hub_config
from hub.app.run import Hub
from hub.campaigns.spec import parse_spec
from hub.kernel.ports import ChannelLimits, RateLimit
from hub.kernel.types import STAFF_KINDS
from storage import Database
from storage.migrate import upgrade
from storage.models import Client, Identity
from tests.botapi import BotApiServer, Limits, Rate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def add_clients(db: Database, kind: str, values: list[str]) -> None:
    now = datetime.now(UTC)
    async with db.write() as conn:
        ids = (
            (
                await conn.execute(
                    insert(Client).returning(Client.id, sort_by_parameter_order=True),
                    [
                        {
                            "name": f"Client {i}",
                            "stage": "prospect",
                            "opted_out": False,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for i in range(len(values))
                    ],
                )
            )
            .scalars()
            .all()
        )
        await conn.execute(
            insert(Identity),
            [
                {"client_id": cid, "kind": kind, "value": v, "created_at": now}
                for cid, v in zip(ids, values, strict=True)
            ],
        )


def config(url: str, tmp: Path, **sections: Any) -> hub_config.Config:
    return hub_config.parse(
        {
            "hub": {"language": "en"},
            "storage": {"url": url, "attachments_dir": str(tmp / "files")},
            "admin": {
                "listen": f"127.0.0.1:{free_port()}",
                "token": "bench-admin-token-0123456789",
            },
            "dispatcher": {"idle_poll_s": 0.2},
            "campaigns": {"quiet_hours": "", "scan_every_s": 0.2, "window": 300},
            **sections,
        }
    )


async def telegram(clients: int, scale: float, kill_at: float | None) -> None:
    per_bot = int(30 * scale)
    TelegramChannel.limits = ChannelLimits(
        overall=RateLimit(per_bot, burst=1),
        per_recipient=RateLimit(1, burst=1),
        self_paced=STAFF_KINDS,
    )
    limits = Limits(per_bot=Rate(per_bot, 1.0))
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/hub.db"
        db = Database(url)
        await upgrade(db)
        async with BotApiServer(limits=limits) as server:
            users = []
            for i in range(clients):
                user = server.add_user(f"U{i}")
                server.bot.started.add(user.id)
                users.append(user)
            await add_clients(db, "telegram", [str(u.id) for u in users])
            cfg = config(
                url,
                Path(tmp),
                telegram={
                    "enabled": True,
                    "token": server.token,
                    "api_base": server.base_url,
                    "mode": "polling",
                    "staff_chat_id": server.forum.id,
                },
            )
            times: list[float] = []
            seen = 0

            def received() -> int:
                nonlocal seen
                count = len(server.world.sent)
                while seen < count:
                    times.append(time.perf_counter())
                    seen += 1
                return count

            hub = Hub(cfg)
            async with hub.lifespan():
                assert hub.campaigns is not None
                spec = parse_spec({"name": "Bench", "text": "Offer for {{ client.name }}"})
                campaign_id = await hub.campaigns.create(spec, actor="bench")
                await hub.campaigns.start(campaign_id, actor="bench")
                target = int(clients * kill_at) if kill_at else clients
                await server.wait_for(lambda: received() >= target, timeout=3600)
            restarted = None
            if kill_at:
                restarted = received()
                hub = Hub(cfg)
                async with hub.lifespan():
                    await server.wait_for(lambda: received() >= clients, timeout=3600)
            received()
        await db.dispose()
    per_user = Counter(m["chat"]["id"] for _, m in server.world.sent)
    twice = sum(1 for n in per_user.values() if n > 1)
    missing = clients - len(per_user)
    # The rate over the steady part: the first message to the last, less any restart gap.
    span = times[-1] - times[0]
    if restarted:
        gap = times[restarted] - times[restarted - 1]
        span -= gap
    rate = (len(times) - 1) / span if span > 0 else 0.0
    print(
        f"telegram: {clients} clients, allowed {per_bot}/s (scale {scale:g}): "
        f"{rate:.1f}/s = {rate / per_bot:.3f} of allowed; 429 answered: {len(server.throttled)}; "
        f"twice: {twice}; missing: {missing}"
        + (f"; stopped after {restarted} and resumed" if restarted else "")
    )


# The SMTP sink runs in a process of its own, as a relay would: in this process
# its thread would wait for the interpreter lock whenever the hub is busy, and
# every SMTP round trip would pay for that. It prints the running count.
_SINK = """
import sys
from aiosmtpd.controller import Controller

class Sink:
    count = 0

    async def handle_DATA(self, server, session, envelope):
        Sink.count += 1
        print(Sink.count, flush=True)
        return "250 OK"

Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1])).start()
print("ready", flush=True)
sys.stdin.read()
"""


class Sink:
    """The sink process and how many messages it has taken."""

    def __init__(self, port: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SINK, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"
        self.count = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.count = int(line)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


async def email(count: int) -> None:
    port = free_port()
    sink = Sink(port)
    try:
        # the bare loop: the same number of messages over one connection
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        started = time.perf_counter()
        for i in range(count):
            msg = EmailMessage()
            msg["From"] = "shop@example.com"
            msg["To"] = f"c{i}@example.com"
            msg["Subject"] = "Bench"
            msg.set_content("Offer for you\n\nUnsubscribe: http://127.0.0.1/u?t=x")
            await smtp.send_message(msg)
        bare = count / (time.perf_counter() - started)
        await smtp.quit()

        EmailChannel.limits = ChannelLimits()  # the relay's own pace only
        before = sink.count
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/hub.db"
            db = Database(url)
            await upgrade(db)
            await add_clients(db, "email", [f"c{i}@example.com" for i in range(count)])
            cfg = config(
                url,
                Path(tmp),
                email={
                    "outbound": {
                        "host": "127.0.0.1",
                        "port": port,
                        "from": "shop@example.com",
                        "starttls": False,
                    }
                },
            )
            hub = Hub(cfg)
            async with hub.lifespan():
                assert hub.campaigns is not None
                spec = parse_spec({"name": "Bench", "subject": "Bench", "text": "Offer for you"})
                campaign_id = await hub.campaigns.create(spec, actor="bench")
                started = time.perf_counter()
                await hub.campaigns.start(campaign_id, actor="bench")
                # the sink counts in aiosmtpd's own thread: look every 10 ms
                while sink.count - before < count:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                elapsed = time.perf_counter() - started
            await db.dispose()
        rate = count / elapsed
        print(
            f"email: {count} messages: hub campaign {rate:.0f}/s, bare aiosmtplib loop "
            f"{bare:.0f}/s: {rate / bare:.2f} of bare"
        )
    finally:
        sink.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--kill-at", type=float, default=0.4)
    parser.add_argument("--emails", type=int, default=1000)
    parser.add_argument("--skip", choices=("telegram", "email"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.skip != "telegram":
        await telegram(args.clients, args.scale, args.kill_at or None)
    if args.skip != "email":
        await email(args.emails)


if __name__ == "__main__":
    asyncio.run(main())
