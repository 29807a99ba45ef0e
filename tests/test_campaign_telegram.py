"""Campaigns through the assembled hub and the local Bot API server (issue 7): clients
get the campaign in their chat, /stop opts out, call tasks reach the manager with
outcome buttons that log on the client, marketers drive campaigns from their private
chat, and a campaign stopped midway and resumed reaches everyone exactly once within
Telegram's flood limits."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import insert, select

from hub import config as hub_config
from hub.app.run import Hub
from hub.campaigns.spec import parse_spec
from storage import Database
from storage.models import CampaignTarget, Client, Identity, Interaction
from tests.botapi import BotApiServer, Limits
from tests.botapi.world import User

T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(
    db_url: str, tmp_path: Path, server: BotApiServer, managers: list[dict[str, Any]]
) -> hub_config.Config:
    return hub_config.parse(
        {
            "hub": {"language": "en"},
            "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
            "admin": {"listen": f"127.0.0.1:{_free_port()}", "token": "e2e-admin-token-0123456789"},
            "dispatcher": {"idle_poll_s": 0.2},
            "campaigns": {"quiet_hours": "", "scan_every_s": 0.2, "window": 60},
            "telegram": {
                "enabled": True,
                "token": server.token,
                "api_base": server.base_url,
                "mode": "polling",
                "staff_chat_id": server.forum.id,
            },
            "managers": managers,
        }
    )


@asynccontextmanager
async def running(config: hub_config.Config) -> AsyncIterator[Hub]:
    hub = Hub(config)
    async with hub.lifespan():
        yield hub


async def until(predicate: Callable[[], Awaitable[T | None]], timeout: float = 20.0) -> T:
    """Check ``predicate`` until it answers something truthy (database conditions)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


def _texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m.get("text") or "" for m in messages]


async def test_campaign_stop_calls_and_marketer_commands(db_url: str, tmp_path: Path) -> None:
    async with BotApiServer(limits=Limits.off()) as server:
        maria = server.add_manager("Maria")
        mark = server.add_manager("Mark")
        clients = [server.add_user(name, language_code="en") for name in ("Anna", "Boris", "Vera")]
        config = _config(
            db_url,
            tmp_path,
            server,
            [
                {"name": "Maria", "telegram_id": maria.id},
                {"name": "Mark", "telegram_id": mark.id, "role": "marketer"},
            ],
        )
        db = Database(db_url)
        try:
            async with running(config) as hub:
                assert hub.campaigns is not None
                for user in clients:
                    await server.user_sends(user, "/start")
                await server.user_sends(clients[2], "/stop")  # Vera opts out

                async def opted() -> bool:
                    async with db.read() as conn:
                        rows = (await conn.execute(select(Client.opted_out))).scalars().all()
                    return len(rows) == 3 and sum(rows) == 1

                await until(opted)
                spec = parse_spec(
                    {
                        "name": "Spring",
                        "segment": {"reachable": ["telegram"]},
                        "text": "Hello {{ client.first_name }}, spring prices!",
                    }
                )
                campaign_id = await hub.campaigns.create(spec, actor="test")
                await hub.campaigns.start(campaign_id, actor="test")
                for user in clients[:2]:
                    got = await server.wait_for(
                        lambda u=user: [
                            t for t in _texts(server.sent_to(u)) if "spring prices" in t
                        ],
                        timeout=15,
                    )
                    assert got[0].startswith(f"Hello {user.first_name}, spring prices!")
                    assert "/stop" in got[0]
                status = await until(lambda: _done(hub, campaign_id), timeout=15)
                assert status["variants"][0]["skipped"] == 1  # Vera
                assert not any("spring" in t for t in _texts(server.sent_to(clients[2])))

                # A call list: both tasks go to Maria, the one manager who takes calls.
                await server.user_sends(maria, "/inbox")  # she has a chat with the bot
                calls = parse_spec(
                    {
                        "name": "Ring",
                        "mode": "calls",
                        "segment": {"reachable": ["telegram"]},
                        "text": "Offer {{ client.first_name }} 10% off",
                    }
                )
                calls_id = await hub.campaigns.create(calls, actor="test")
                await hub.campaigns.start(calls_id, actor="test")
                tasks = await server.wait_for(
                    lambda: (
                        [
                            m
                            for m in server.sent_to(maria)
                            if "reply_markup" in m and "10% off" in (m.get("text") or "")
                        ]
                        or None
                    ),
                    timeout=15,
                )
                task = tasks[0]
                buttons = [
                    b["callback_data"]
                    for row in task["reply_markup"]["inline_keyboard"]
                    for b in row
                ]
                assert len(buttons) == 5 and buttons[0].startswith("hub:call:reached:")
                await server.callback(maria, task, buttons[1])  # interested
                answer = await server.wait_for(
                    lambda: (
                        [c for c in server.calls if c.method.lower() == "answercallbackquery"]
                        or None
                    ),
                    timeout=15,
                )
                assert answer

                async def logged() -> list[Any]:
                    async with db.read() as conn:
                        return list(
                            (
                                await conn.execute(
                                    select(Interaction.text).where(
                                        Interaction.author == "Maria",
                                        Interaction.direction == "event",
                                    )
                                )
                            ).scalars()
                        )

                events = await until(logged)
                assert "interested" in events[0]
                async with db.read() as conn:
                    outcome = (
                        await conn.execute(
                            select(CampaignTarget.outcome).where(
                                CampaignTarget.campaign_id == calls_id,
                                CampaignTarget.outcome.is_not(None),
                            )
                        )
                    ).scalar_one()
                assert outcome == "interested"

                # Marketers (not managers) see and drive campaigns from their chat.
                await server.user_sends(mark, "/campaigns")
                listing = await server.wait_for(
                    lambda: [t for t in _texts(server.sent_to(mark)) if "Spring" in t] or None,
                    timeout=15,
                )
                assert f"#{campaign_id} Spring" in listing[0]
                await server.user_sends(maria, f"/campaign_pause {calls_id}")
                refused = await server.wait_for(
                    lambda: [t for t in _texts(server.sent_to(maria)) if "marketers" in t] or None,
                    timeout=15,
                )
                assert refused
                assert (await hub.campaigns.campaign(calls_id))[0].status != "paused"
        finally:
            await db.dispose()


async def _done(hub: Hub, campaign_id: int) -> dict[str, Any] | None:
    assert hub.campaigns is not None
    status = (await hub.campaigns.status(campaign_id)).as_json()
    return status if status["status"] == "done" and status["done"] == status["targeted"] else None


CLIENTS = 300


async def test_a_campaign_stopped_midway_and_resumed_reaches_everyone_once(
    db_url: str, tmp_path: Path
) -> None:
    """With Telegram's limits on (30 a second per bot): the hub is stopped after a
    third went out, restarted, and every client ends with exactly one message, no
    429 answered. (bench/campaign.py runs 10,000 clients and kills the process.)"""
    async with BotApiServer(limits=Limits()) as server:
        users: list[User] = []
        for i in range(CLIENTS):
            user = server.add_user(f"U{i}")
            server.bot.started.add(user.id)
            users.append(user)
        db = Database(db_url)
        now = datetime.now(UTC)
        async with db.write() as conn:
            ids = (
                (
                    await conn.execute(
                        insert(Client).returning(Client.id, sort_by_parameter_order=True),
                        [
                            {
                                "name": u.first_name,
                                "stage": "prospect",
                                "opted_out": False,
                                "created_at": now,
                                "updated_at": now,
                            }
                            for u in users
                        ],
                    )
                )
                .scalars()
                .all()
            )
            await conn.execute(
                insert(Identity),
                [
                    {"client_id": cid, "kind": "telegram", "value": str(u.id), "created_at": now}
                    for cid, u in zip(ids, users, strict=True)
                ],
            )
        maria = server.add_manager("Maria")  # telegram on needs a manager (check-config)
        config = _config(db_url, tmp_path, server, [{"name": "Maria", "telegram_id": maria.id}])

        def received() -> int:
            return sum(1 for u in users if server.sent_to(u))

        try:
            async with running(config) as hub:
                assert hub.campaigns is not None
                spec = parse_spec({"name": "Bulk", "text": "Offer for {{ client.name }}"})
                campaign_id = await hub.campaigns.create(spec, actor="test")
                await hub.campaigns.start(campaign_id, actor="test")
                await server.wait_for(lambda: received() >= CLIENTS // 3, timeout=60)
            midway = received()
            assert midway < CLIENTS
            async with running(config) as hub:
                await server.wait_for(lambda: received() == CLIENTS, timeout=60)
                await until(lambda: _done(hub, campaign_id), timeout=30)
            per_user = Counter(m["chat"]["id"] for u in users for m in server.sent_to(u))
            assert set(per_user.values()) == {1}
            assert len(per_user) == CLIENTS
            assert server.throttled == []
        finally:
            await db.dispose()
