"""The assembled hub: lifespan order, a message through a channel to the log and
back out through the dispatcher, `hub run` stopping cleanly on SIGTERM, and no
secret in the logs."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from hub import config as hub_config
from hub.app.run import Hub
from hub.kernel.identities import identity
from hub.kernel.types import Channel, InboundMessage
from tests.fakes import RecordingChannel

TOKEN = "s3cret-admin-token-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(db_url: str, tmp_path: Path, port: int) -> hub_config.Config:
    return hub_config.parse(
        {
            "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
            "admin": {"listen": f"127.0.0.1:{port}", "token": TOKEN},
            "managers": [{"name": "Анна", "telegram_id": 501}],
        }
    )


async def test_message_in_through_channel_and_mirrored_out(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = _free_port()
    channel = RecordingChannel("telegram")
    hub = Hub(_config(db_url, tmp_path, port), channels={"telegram": channel})
    async with hub.lifespan():
        assert hub.ready
        assert channel.sink is not None
        result = await channel.sink(
            InboundMessage(
                Channel.TELEGRAM,
                "bot",
                "77:1",
                (identity("telegram", 77, "Пётр"),),
                hub.clock.now(),
                text="Где мой заказ?",
            )
        )
        # The new conversation went to the one manager, who is told in private,
        # and the message is mirrored to the staff chat.
        await channel.wait_for(lambda: {m.kind for m in channel.sent} >= {"mirror", "assigned"})
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
            async with http.get(
                f"http://127.0.0.1:{port}/api/clients/{result.client_id}/timeline",
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as resp:
                timeline = await resp.json()
    assert not hub.ready
    assert channel.sink is None  # channels were stopped
    assert [m.recipient for m in channel.sent if m.kind == "assigned"] == ["501"]
    assert [t["text"] for t in timeline if t["direction"] == "in"] == ["Где мой заказ?"]
    assert TOKEN not in caplog.text


async def test_hub_runs_the_webform_channel_when_it_listens(db_url: str, tmp_path: Path) -> None:
    port = _free_port()
    config = hub_config.parse(
        {
            "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
            "admin": {"listen": f"127.0.0.1:{_free_port()}", "token": TOKEN},
            "webform": {"listen": f"127.0.0.1:{port}", "forms": [{"id": "contact"}]},
        }
    )
    async with Hub(config).lifespan() as hub, aiohttp.ClientSession() as http:
        assert list(hub.channels) == ["webform"]
        async with http.get(f"http://127.0.0.1:{port}/f/contact") as response:
            assert response.status == 200
            assert 'name="email"' in await response.text()


async def test_hub_run_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path}/hub.db"\n'
        f'attachments_dir = "{tmp_path}/files"\n'
        f'[admin]\nlisten = "127.0.0.1:{port}"\ntoken = "${{TEST_ADMIN_TOKEN}}"\n'
    )
    env = {**os.environ, "TEST_ADMIN_TOKEN": TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:

        async def until_ready() -> None:
            while "hub.ready" not in (line := (await proc.stdout.readline()).decode()):
                assert line, "hub exited before it was ready:\n" + "".join(lines)
                lines.append(line)

        await asyncio.wait_for(until_ready(), 30)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as resp,
        ):
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = "".join(lines) + rest.decode()
    assert proc.returncode == 0, text
    assert "hub.stopped" in text
    assert TOKEN not in text


def test_migrate_command(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path}/hub.db"\n[admin]\ntoken = "x"\n'
    )
    run = [sys.executable, "-m", "hub", "migrate", "--config", str(config)]
    first = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "applied: 0001, 0002, 0003, 0004" in first.stdout
    second = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert second.stdout.strip() == "schema is up to date"
