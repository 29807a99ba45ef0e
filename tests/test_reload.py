"""Reload without restart (issue 17): a running hub takes new managers, routing
rules, SLA policies, canned answers and form fields from its config file, in its
own process and in the mail worker's; a bad file changes nothing and says why;
keys that need a restart are named. In process, and ``hub run`` on SIGHUP and
``hub reload``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from sqlalchemy import select

from hub import config as hub_config
from hub.app.run import Hub
from hub.desk.desk import UnknownTemplate
from hub.kernel.identities import identity
from hub.kernel.types import Channel, InboundMessage, IngestResult
from storage import Database
from storage import desk as desk_q
from storage.models import Audit, Conversation, Deadline, Interaction, Manager
from tests.cluster import HUB, ROOT, HubProcess, free_port, to_toml
from tests.fakes import RecordingChannel
from tests.test_mail_worker import until

TOKEN = "reload-admin-token-0123456789"
DOMAIN = "desk.example.com"


async def hub_reload(path: Path) -> tuple[int, str, str]:
    """``hub reload --config PATH`` as a user runs it: exit code, stdout, stderr."""
    command = await asyncio.create_subprocess_exec(
        HUB,
        "reload",
        "--config",
        str(path),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(command.communicate(), 60)
    assert command.returncode is not None
    return command.returncode, out.decode(), err.decode()


def _base(db_url: str, tmp_path: Path) -> dict[str, Any]:
    return {
        "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
        "admin": {"listen": f"127.0.0.1:{free_port()}", "token": TOKEN},
        "managers": [
            {"name": "Анна", "telegram_id": 501},
            {"name": "Вера", "telegram_id": 503},
        ],
    }


def _write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(to_toml(config))
    return path


async def _assignee(db: Database, conversation_id: int | None) -> str:
    assert conversation_id is not None
    async with db.read() as conn:
        found = await conn.execute(
            select(Manager.name)
            .join(Conversation, Conversation.assignee_id == Manager.id)
            .where(Conversation.id == conversation_id)
        )
        return str(found.scalar_one_or_none())


async def _managers(db: Database) -> dict[str, tuple[bool, bool, int]]:
    """Name -> (active, away, capacity)."""
    async with db.read() as conn:
        rows = await conn.execute(
            select(Manager.name, Manager.active, Manager.away, Manager.capacity)
        )
        return {r.name: (r.active, r.away, r.capacity) for r in rows}


async def _say(
    hub: Hub, channel: RecordingChannel, user: int, text: str, **extras: str
) -> IngestResult:
    assert channel.sink is not None
    return await channel.sink(
        InboundMessage(
            Channel.TELEGRAM,
            "bot",
            f"{user}:1",
            (identity("telegram", user, "Пётр Иванов"),),
            hub.clock.now(),
            text=text,
            extras=extras,
        )
    )


def _reloaded(config: dict[str, Any]) -> dict[str, Any]:
    """A new manager, a rule giving them "vip" requests under a new SLA policy, a
    canned answer, a greeting, a stage rule; Вера gone, Анна with a new capacity."""
    return {
        **config,
        "managers": [
            {"name": "Анна", "telegram_id": 501, "capacity": 7},
            {"name": "Борис", "telegram_id": 502, "language": "ru"},
        ],
        "routing": {"rules": [{"name": "vip", "keywords": ["vip"], "managers": ["Борис"]}]},
        "sla": {
            "policies": [{"name": "fast", "first_response_minutes": 15, "calendar": "calendar"}]
        },
        "desk": {"templates": [{"name": "thanks", "ru": "Спасибо, {{ first_name }}!"}]},
        "replies": {"greeting_ru": "Здравствуйте! Ответим в течение часа."},
        "stages": {
            "lapse_after_days": 90,
            "rules": [{"name": "happy", "when": "rating", "score_at_least": 5, "to": "supporter"}],
        },
    }


async def test_reload_takes_managers_rules_policies_and_templates(
    db_url: str, tmp_path: Path
) -> None:
    config = {**_base(db_url, tmp_path), "csat": {"notify": True}}
    path = _write(tmp_path / "hub.toml", config)
    channel = RecordingChannel("telegram")
    hub = Hub(hub_config.load(path), channels={"telegram": channel}, config_path=str(path))
    async with hub.lifespan():
        assert hub.db is not None and hub.desk is not None and hub.scheduler is not None
        assert hub.desk.csat is not None and hub.desk.csat.rules is not None
        assert hub.desk.csat.rules.of("rating") == ()
        before = await _say(hub, channel, 71, "vip: where is my order?")
        assert await _assignee(hub.db, before.conversation_id) in ("Анна", "Вера")
        anna = await hub.desk.manager(501)
        assert anna is not None
        with pytest.raises(UnknownTemplate):
            await hub.desk.answer_template(
                before.client_id, "thanks", manager=anna, key="t0", mirror=False
            )
        async with hub.db.write() as conn:
            await desk_q.set_away(conn, anna.id, True)
        assert hub.escalator is None and hub.scheduler.get_job("sla") is None
        assert hub.scheduler.get_job("lapse") is None

        _write(path, _reloaded(config))
        result = await hub.reload_file("test")

        assert result.ok, result.problems
        assert set(result.changed) == {
            "managers",
            "routing.rules",
            "sla.policies",
            "desk.templates",
            "replies.greeting_ru",
            "stages.lapse_after_days",
            "stages.rules",
        }
        assert result.restart == ()
        # the rating rule reaches the desk and the satisfaction service alike
        assert [r.name for r in hub.desk.stage_rules.of("rating")] == ["happy"]
        assert [r.name for r in hub.desk.csat.rules.of("rating")] == ["happy"]
        staff = await _managers(hub.db)
        assert staff["Борис"] == (True, False, 20)
        assert staff["Вера"][0] is False  # gone from the file: deactivated, kept
        assert staff["Анна"] == (True, True, 7)  # a new capacity, still away

        after = await _say(hub, channel, 72, "VIP: my order, please")
        assert await _assignee(hub.db, after.conversation_id) == "Борис"
        async with hub.db.read() as conn:
            policies = await conn.execute(
                select(Deadline.policy).where(Deadline.conversation_id == after.conversation_id)
            )
            assert set(policies.scalars()) == {"fast"}
        assert hub.escalator is not None and hub.scheduler.get_job("sla") is not None
        assert hub.scheduler.get_job("lapse") is not None
        started = await _say(hub, channel, 73, "/start", command="start")
        greeted = "Здравствуйте! Ответим в течение часа."
        await channel.wait_for(
            lambda: any(
                m.text == greeted and m.client_id == started.client_id for m in channel.sent
            )
        )

        boris = await hub.desk.manager(502)
        assert boris is not None
        await hub.desk.answer_template(
            after.client_id, "thanks", manager=boris, key="t1", mirror=False
        )
        await channel.wait_for(lambda: any(m.text == "Спасибо, Пётр!" for m in channel.sent))
        async with hub.db.read() as conn:
            audited = await conn.execute(select(Audit.actor).where(Audit.action == "reload"))
            assert list(audited.scalars()) == ["test"]

        again = await hub.reload_file("test")
        assert again.ok and again.changed == () and again.restart == ()


async def test_a_bad_file_changes_nothing_and_says_why(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _base(db_url, tmp_path)
    path = _write(tmp_path / "hub.toml", config)
    hub = Hub(
        hub_config.load(path), channels={"telegram": RecordingChannel()}, config_path=str(path)
    )
    async with hub.lifespan(), aiohttp.ClientSession() as http:
        assert hub.ingestor is not None and hub.admin is not None and hub.db is not None
        running, rules = hub.config, hub.ingestor.rules
        caplog.set_level(logging.INFO)

        broken = _reloaded(config)
        broken["routing"] = {"rules": [{"name": "vip", "keywords": ["vip"], "managers": ["Глеб"]}]}
        _write(path, broken)
        result = await hub.reload_file("test")
        assert not result.ok
        assert len(result.problems) == 1
        assert result.problems[0].endswith("rule 'vip': no manager named 'Глеб'")
        assert result.lines()[0] == "not reloaded, nothing changed:"
        assert hub.config is running and hub.ingestor.rules is rules
        assert "Борис" not in await _managers(hub.db)
        assert any(
            "hub.reload_refused" in r.getMessage() and "Глеб" in r.getMessage()
            for r in caplog.records
        )

        path.write_text("[admin\ntoken = 1\n")
        url = f"http://127.0.0.1:{hub.admin.port}/api/reload"
        async with http.post(url) as response:
            assert response.status == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with http.post(url, headers=headers) as response:
            assert response.status == 422
            answer = await response.json()
        assert answer["ok"] is False and answer["changed"] == []
        assert "invalid TOML" in answer["problems"][0]
        assert hub.config is running

        moved = {
            **_reloaded(config),
            "admin": {"listen": f"127.0.0.1:{free_port()}", "token": "another-token-0123456789"},
            "storage": {**config["storage"], "group_commit_ms": 5},
        }
        _write(path, moved)
        async with http.post(url, headers=headers) as response:
            assert response.status == 200
            answer = await response.json()
        assert answer["ok"] is True
        assert answer["restart"] == ["storage.group_commit_ms", "admin.listen", "admin.token"]
        assert "managers" in answer["changed"]
        assert hub.config.admin == running.admin  # kept until a restart
        assert hub.config.storage == running.storage
        assert [m.name for m in hub.config.managers] == ["Анна", "Борис"]
        async with hub.db.read() as conn:
            audited = await conn.execute(select(Audit.actor).where(Audit.action == "reload"))
            assert list(audited.scalars()) == ["api:config"]


def _mail(text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Client <client@example.org>"
    message["To"] = f"help@{DOMAIN}"
    message["Subject"] = "Invoice"
    message["Message-ID"] = "<invoice-1@example.org>"
    message.set_content(text)
    return message


async def test_forms_and_the_mail_worker_take_a_reload(db_url: str, tmp_path: Path) -> None:
    form_port, smtp_port = free_port(), free_port()
    config = {
        **_base(db_url, tmp_path),
        "webform": {"listen": f"127.0.0.1:{form_port}", "forms": [{"id": "contact"}]},
        "email": {
            "smtp": {"listen": f"127.0.0.1:{smtp_port}", "domains": [DOMAIN]},
            "spool": str(tmp_path / "spool" / "mail.db"),
        },
    }
    path = _write(tmp_path / "hub.toml", config)
    hub = Hub(hub_config.load(path), config_path=str(path))
    form_url = f"http://127.0.0.1:{form_port}/f/contact"
    async with hub.lifespan(), aiohttp.ClientSession() as http:
        assert hub.db is not None
        async with http.get(form_url) as response:
            assert 'name="company"' not in await response.text()
        worker = getattr(hub.channels["email"], "offload", None)
        pid = getattr(worker, "pid", None)
        assert pid is not None

        fields = [
            {"name": "email", "type": "email", "required": True},
            {"name": "company", "label": "Company", "label_ru": "Компания"},
            {"name": "message", "type": "textarea"},
        ]
        new = {
            **_reloaded(config),
            "routing": {
                "rules": [{"name": "bills", "keywords": ["invoice"], "managers": ["Борис"]}]
            },
            "webform": {**config["webform"], "forms": [{"id": "contact", "fields": fields}]},
        }
        _write(path, new)
        result = await hub.reload_file("test")
        assert result.ok, result.problems
        assert "webform.forms" in result.changed and result.restart == ()

        async with http.get(form_url) as response:
            assert response.status == 200
            assert 'name="company"' in await response.text()

        await aiosmtplib.send(
            _mail("Please resend the invoice."),
            hostname="127.0.0.1",
            port=smtp_port,
            timeout=20,
            start_tls=False,
        )
        db = hub.db
        await until(lambda: _mailed(db, present=True))
        conversation = await _mailed(db)
        assert conversation is not None
        assert await _assignee(db, conversation) == "Борис"
        assert getattr(worker, "pid", None) == pid  # reconfigured, not restarted


async def _mailed(db: Database, *, present: bool = False) -> Any:
    """The conversation of the mail logged (``present``: whether there is one)."""
    async with db.read() as conn:
        found = await conn.execute(
            select(Interaction.conversation_id).where(Interaction.channel == "email")
        )
        conversation = found.scalar_one_or_none()
    return conversation is not None if present else conversation


async def test_hub_run_reloads_on_sighup_and_on_hub_reload(db_url: str, tmp_path: Path) -> None:
    config = _base(db_url, tmp_path)
    hub = HubProcess("reload", config, tmp_path)
    db = Database(db_url)
    await hub.start()
    try:
        await hub.ready()
        _write(
            hub.path, {**_reloaded(config), "storage": {**config["storage"], "group_commit_ms": 3}}
        )
        code, out, err = await hub_reload(hub.path)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == (
            "reloaded: replies.greeting_ru, managers, routing.rules, sla.policies, "
            "stages.lapse_after_days, stages.rules, desk.templates"
        )
        assert lines[1] == "changed, takes effect after a restart: storage.group_commit_ms"
        assert (await _managers(db))["Борис"][0] is True

        third = {**_reloaded(config)}
        third["managers"] = [*third["managers"], {"name": "Глеб", "telegram_id": 504}]
        _write(hub.path, third)
        assert hub.proc is not None
        hub.proc.send_signal(signal.SIGHUP)

        async def has_gleb() -> bool:
            return "Глеб" in await _managers(db)

        await until(has_gleb)

        hub.path.write_text("not toml at all")
        hub.proc.send_signal(signal.SIGHUP)

        async def refused() -> bool:
            return "hub.reload_refused" in hub.log.read_text(errors="replace")

        await until(refused)
        assert "invalid TOML" in hub.log.read_text(errors="replace")
        assert hub.running
        code, out, err = await hub_reload(hub.path)
        assert code == 2
        assert "invalid TOML" in err + out
    finally:
        await hub.stop()
        await db.dispose()
    assert hub.proc is not None and hub.proc.returncode == 0, hub.tail()
