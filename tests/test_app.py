"""The assembled hub: lifespan order, a message through a channel to the log and
back out through the dispatcher, `hub run` stopping cleanly on SIGTERM, and no
secret in the logs; the log quiet while idle, and in JSON when asked."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from hub import config as hub_config
from hub.app.run import Hub
from hub.delivery.outbox import Outgoing
from hub.kernel import loggers
from hub.kernel.identities import identity
from hub.kernel.types import Channel, InboundMessage
from storage import outbox as outbox_q
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


def _toml(tmp_path: Path, port: int, hub: str = "") -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f"[hub]\n{hub}\n"
        f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path}/hub.db"\n'
        f'attachments_dir = "{tmp_path}/files"\n'
        f'[admin]\nlisten = "127.0.0.1:{port}"\ntoken = "${{TEST_ADMIN_TOKEN}}"\n'
    )
    return config


async def _hub_run(config: Path, while_ready: Callable[[], Awaitable[None]]) -> tuple[int, str]:
    """``hub run`` as a user starts it: wait until it is ready, do ``while_ready``,
    stop it with SIGTERM; its exit code and everything it wrote."""
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
            lines.append(line)

        await asyncio.wait_for(until_ready(), 30)
        await while_ready()
        proc.send_signal(signal.SIGTERM)
        try:
            rest, _ = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            rest, _ = await proc.communicate()
            raise AssertionError(
                "hub run did not stop on SIGTERM:\n" + "".join(lines) + rest.decode()
            ) from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, "".join(lines) + rest.decode()


async def test_hub_run_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    config = _toml(tmp_path, port)

    async def healthy() -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as resp,
        ):
            assert resp.status == 200

    code, text = await _hub_run(config, healthy)
    assert code == 0, text
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


class _CountingHub(Hub):
    """Counts the campaign scheduler's rounds."""

    rounds = 0

    async def run_campaigns(self) -> None:
        await super().run_campaigns()
        self.rounds += 1


class _HeldRoundHub(Hub):
    """Its campaign round runs statements in one transaction until cancelled."""

    held: asyncio.Event
    round_task: asyncio.Task[object] | None = None

    async def run_campaigns(self) -> None:
        assert self.db is not None
        self.round_task = asyncio.current_task()
        async with self.db.write() as conn:
            while True:  # statement after statement: cancelled in the middle of one
                await conn.execute(text("SELECT 1"))
                self.held.set()


def _connection_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "connection_worker" in t.name}


async def test_stopping_waits_for_a_scheduled_round_under_way(db_url: str, tmp_path: Path) -> None:
    """A round cut off mid-transaction at stop is waited for before the database
    closes: left behind, its connection's thread kept the process from exiting."""
    before = _connection_threads()
    config = hub_config.parse(
        {
            "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
            "admin": {"listen": f"127.0.0.1:{_free_port()}", "token": TOKEN},
            "campaigns": {"scan_every_s": 0.05},
        }
    )
    hub = _HeldRoundHub(config)
    hub.held = asyncio.Event()
    async with hub.lifespan():
        await asyncio.wait_for(hub.held.wait(), 10)
    assert hub.round_task is not None and hub.round_task.done()

    async def threads_gone() -> None:
        while _connection_threads() - before:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(threads_gone(), 10)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``loggers.setup`` changes the process's logging: put it back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in loggers.CHATTY}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in chatty.items():
        logging.getLogger(name).setLevel(old)


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
async def test_an_idle_hubs_scheduler_rounds_show_only_at_debug(
    level: str,
    db_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    restore_logging: None,
) -> None:
    """At INFO an idle hub writes nothing while its scheduler runs round after
    round (APScheduler's "Running job" lines are DEBUG-only); at DEBUG they show."""
    config = hub_config.parse(
        {
            "hub": {"log_level": level},
            "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
            "admin": {"listen": f"127.0.0.1:{_free_port()}", "token": TOKEN},
            "campaigns": {"scan_every_s": 0.05},
        }
    )
    loggers.setup(config.hub.log_level, config.hub.log_format)
    caplog.set_level(logging.DEBUG)
    hub = _CountingHub(config)
    async with hub.lifespan():
        caplog.clear()
        rounds = hub.rounds
        while hub.rounds < rounds + 3:
            await asyncio.sleep(0.01)
    idle = caplog.records[
        : next(i for i, r in enumerate(caplog.records) if "hub.stopping" in r.msg)
    ]
    scheduler = [r for r in idle if r.name.startswith("apscheduler")]
    if level == "INFO":
        assert scheduler == []
        assert [r.getMessage() for r in idle if r.levelno >= logging.INFO] == []
    else:
        assert any("Running job" in r.getMessage() for r in scheduler)
    # aiosmtpd's every SMTP command (and sender), alike.
    assert logging.getLogger("mail.log").isEnabledFor(logging.INFO) is (level == "DEBUG")
    assert logging.getLogger("mail.log").isEnabledFor(logging.WARNING)


async def test_the_outbox_queue_line_shows_at_info_only_when_something_waits(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The minute's queue line is routine while the outbox is empty (DEBUG), and
    worth knowing once something waits or failed (INFO)."""
    config = hub_config.parse(
        {
            "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
            "admin": {"listen": f"127.0.0.1:{_free_port()}", "token": TOKEN},
        }
    )
    caplog.set_level(logging.DEBUG, logger="hub.core")
    hub = Hub(config)
    async with hub.lifespan():
        assert hub.db is not None

        async def queue_line() -> logging.LogRecord:
            caplog.clear()
            await hub.report_queue()
            return next(r for r in caplog.records if "outbox.queue" in r.getMessage())

        assert (await queue_line()).levelno == logging.DEBUG
        waiting = Outgoing(
            idempotency_key="queue-line",
            channel="nowhere",
            account="default",
            recipient="someone",
            kind="reply",
            text="hi",
            at=datetime.now(UTC) + timedelta(hours=1),
        )
        async with hub.db.write() as conn:
            await outbox_q.enqueue(conn, [waiting.row()])
        line = await queue_line()
        assert line.levelno == logging.INFO and "pending=1" in line.getMessage()


def test_json_log_line_holds_the_event_and_its_fields() -> None:
    logger = logging.getLogger("hub.test_json")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        loggers.event(logger, "thing.done", client=7, duplicate=False, note="a b", level_=None)
        loggers.event(logger, "thing.odd", logging.WARNING, event="x", at=Path("/p"))
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("plain %s", "text")
    finally:
        logger.removeHandler(handler)
    out = [json.loads(loggers.JsonFormatter().format(r)) for r in records]
    assert out[0]["event"] == "thing.done" and out[0]["level"] == "INFO"
    assert out[0]["logger"] == "hub.test_json" and out[0]["time"].endswith("+00:00")
    assert (out[0]["client"], out[0]["duplicate"], out[0]["note"]) == (7, False, "a b")
    assert out[0]["level_"] is None
    assert (out[1]["event"], out[1]["event_"], out[1]["at"]) == ("thing.odd", "x", "/p")
    assert out[2]["message"] == "plain text" and "RuntimeError: boom" in out[2]["exception"]


async def test_hub_run_logs_json_lines_when_asked(tmp_path: Path) -> None:
    port = _free_port()
    config = _toml(tmp_path, port, 'log_format = "json"')

    async def nothing() -> None:
        pass

    code, text = await _hub_run(config, nothing)
    assert code == 0, text
    assert TOKEN not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert all({"time", "level", "logger"} <= set(r) for r in records), records
    events = {r.get("event"): r for r in records}
    assert events["hub.ready"]["level"] == "INFO"
    assert events["hub.ready"]["logger"] == "hub.core"
    assert events["hub.ready"]["channels"] == "none"
    assert events["admin.listening"]["address"] == f"127.0.0.1:{port}"
    assert "hub.stopped" in events
