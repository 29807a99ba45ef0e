"""The assembled hub with Telegram on, against the local Bot API server: a client's
message opens a topic with the card in the staff forum, a manager answers there
(text and a photo) and the client gets it, a note stays inside, a stranger is
ignored, and a restart in the middle loses nothing and sends nothing twice."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from hub import config as hub_config
from hub.app.run import Hub
from storage import Database
from storage.models import Interaction, Outbox
from tests.botapi import BotApiServer, Limits
from tests.botapi.world import User

PHOTO = b"\x89PNG\r\n\x1a\n" + b"manager's photo" * 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(db_url: str, tmp_path: Path, server: BotApiServer, manager: User) -> hub_config.Config:
    return hub_config.parse(
        {
            "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
            "admin": {"listen": f"127.0.0.1:{_free_port()}", "token": "e2e-admin-token-0123456789"},
            "dispatcher": {"idle_poll_s": 0.2},
            "telegram": {
                "enabled": True,
                "token": server.token,
                "api_base": server.base_url,
                "mode": "polling",
                "staff_chat_id": server.forum.id,
            },
            "managers": [{"name": "Мария", "telegram_id": manager.id}],
        }
    )


@asynccontextmanager
async def running(config: hub_config.Config) -> AsyncIterator[Hub]:
    hub = Hub(config)
    async with hub.lifespan():
        yield hub


def _texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m.get("text") or m.get("caption") or "" for m in messages]


async def _count(db_url: str, statement: Any) -> int:
    db = Database(db_url)
    try:
        async with db.read() as conn:
            return int((await conn.execute(statement)).scalar_one())
    finally:
        await db.dispose()


async def test_client_and_manager_talk_through_the_hub(db_url: str, tmp_path: Path) -> None:
    async with BotApiServer(limits=Limits.off()) as server:
        manager = server.add_manager("Мария")
        stranger = server.add_manager("Чужой")
        client = server.add_user("Пётр", last_name="Иванов", language_code="ru")
        config = _config(db_url, tmp_path, server, manager)
        async with running(config):
            await server.user_sends(client, text="Здравствуйте! Где мой заказ?")
            topic = await server.wait_for(
                lambda: server.topic_named("Пётр Иванов") or next(iter(server.topics()), None),
                timeout=15,
            )
            thread = topic.message_thread_id
            posted = await server.wait_for(
                lambda: (lambda m: m if len(m) >= 2 else None)(
                    server.sent_to(server.forum, thread)
                ),
                timeout=15,
            )
            assert "Пётр" in _texts(posted)[0]  # the card comes first
            assert any("Где мой заказ?" in t for t in _texts(posted))

            await server.manager_sends_in_topic(manager, thread, "Добрый день! Заказ в пути.")
            await server.manager_sends_in_topic(manager, thread, photo=PHOTO)
            await server.manager_sends_in_topic(manager, thread, "!клиент VIP, не спешить")
            await server.manager_sends_in_topic(stranger, thread, "я тут чужой")
            got = await server.wait_for(
                lambda: (lambda m: m if len(m) >= 2 else None)(server.sent_to(client)), timeout=15
            )
            assert _texts(got)[0] == "Добрый день! Заказ в пути."
            assert "photo" in got[1]
        # Nothing else reached the client: not the note, not the stranger's text.
        assert len(server.sent_to(client)) == 2

        # A message while the hub is down is taken after the restart, once.
        await server.user_sends(client, text="Спасибо! А когда привезут?")
        async with running(config):
            await server.wait_for(
                lambda: any(
                    "когда привезут" in t for t in _texts(server.sent_to(server.forum, thread))
                ),
                timeout=15,
            )
            await server.wait_for(lambda: not server.pending_updates(), timeout=15)
    inbound = await _count(
        db_url, select(func.count()).select_from(Interaction).where(Interaction.direction == "in")
    )
    notes = await _count(
        db_url, select(func.count()).select_from(Interaction).where(Interaction.direction == "note")
    )
    replies = await _count(
        db_url,
        select(func.count())
        .select_from(Outbox)
        .where(Outbox.kind == "reply", Outbox.status == "sent"),
    )
    assert (inbound, notes, replies) == (2, 1, 2)
    assert len([t for t in server.topics()]) == 1
