"""Settings set over the config file (issue 20, the console's admin part): kept in
the database, checked as ``hub check-config`` checks the file, followed at once by
the running hub and within a second by every other instance and after a restart;
unset brings the file's value back; the file itself is never written. Through the
admin API, ``hub settings`` and in process, on both backends."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from sqlalchemy import select

from hub import config as hub_config
from hub.admin.tokens import Tokens
from hub.app.reload import RELOADABLE
from hub.app.run import Hub
from hub.config.overrides import EDITABLE, FileLayer, from_toml, layered, to_toml, value_at
from hub.kernel.errors import ConfigError
from storage import Database
from storage import overrides as store
from storage.models import Audit
from tests.cluster import HUB, ROOT, HubProcess, free_port
from tests.cluster import to_toml as file_toml
from tests.fakes import RecordingChannel
from tests.test_mail_worker import until
from tests.test_reload import DOMAIN, _assignee, _mail, _mailed, _say

TOKEN = "settings-admin-token-0123456789"
NAN = float("nan")
VIP_TO_BORIS = (
    '[routing]\n[[routing.rules]]\nname = "vip"\nkeywords = ["vip"]\nmanagers = ["Борис"]\n'
)


def _config(db_url: str, tmp_path: Path) -> dict[str, Any]:
    return {
        "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
        "admin": {"listen": f"127.0.0.1:{free_port()}", "token": TOKEN},
        "managers": [
            {"name": "Анна", "telegram_id": 501},
            {"name": "Борис", "telegram_id": 502},
        ],
        "routing": {"rules": [{"name": "vip", "keywords": ["vip"], "managers": ["Анна"]}]},
    }


# The layer itself -------------------------------------------------------------------


def test_editable_keys_are_reloadable_and_hold_no_secret() -> None:
    assert all(any(k == r or k.startswith(f"{r}.") for r in RELOADABLE) for k in EDITABLE)
    assert "webhooks" not in EDITABLE  # their secrets stay in the file


def test_a_section_reads_back_from_its_toml() -> None:
    value = from_toml("routing", VIP_TO_BORIS)
    assert value == {"rules": [{"name": "vip", "keywords": ["vip"], "managers": ["Борис"]}]}
    assert from_toml("routing", to_toml("routing", value)) == value
    holidays = from_toml("routing", "[routing]\nholidays = [2026-12-31]\n")
    assert "2026-12-31" in to_toml("routing", holidays)
    assert to_toml("hub.hours", "Mon-Fri 09:00-18:00") == '[hub]\nhours = "Mon-Fri 09:00-18:00"\n'


@pytest.mark.parametrize(
    ("key", "text", "problem"),
    [
        ("routing", "[routing\n", "routing: invalid TOML"),
        ("routing", "[sla]\npolicies = []\n", "routing: missing"),
        ("routing", VIP_TO_BORIS + '[hub]\nhours = "Mon 09:00-10:00"\n', "hub.hours: only"),
        ("hub.hours", '[hub]\nhours = "x"\nlanguage = "en"\n', "hub.language: only hub.hours"),
    ],
)
def test_toml_for_one_key_alone(key: str, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_toml(key, text)
    assert caught.value.problems[0].startswith(problem)


def test_a_config_without_a_file_shows_every_key_as_toml_that_reads_back() -> None:
    """A hub started from a config object (no file) takes its config for the file."""
    config = hub_config.parse(
        {
            "admin": {"token": "t" * 20},
            "managers": [
                {"name": "А", "telegram_id": 1, "role": "admin", "holidays": ["2026-01-02"]}
            ],
            "routing": {"holidays": ["2026-01-01"], "rules": [{"name": "r", "managers": ["А"]}]},
            "webform": {"forms": [{"id": "contact"}]},
        }
    )
    file = FileLayer.of(config)
    shown = {key: to_toml(key, value_at(file.data, key)) for key in EDITABLE}
    assert shown["hub.hours"] == ""  # always: no value to write
    settings = {key: from_toml(key, text) for key, text in shown.items() if text}
    assert layered(file, settings) == config


def test_a_bad_setting_is_refused_with_its_key_path() -> None:
    file = FileLayer({"admin": {"token": "t" * 20}, "managers": [{"name": "А", "telegram_id": 1}]})
    bad_regex = {"rules": [{"name": "r", "regex": "("}]}
    with pytest.raises(ConfigError) as caught:
        layered(file, {"routing": bad_regex})
    assert caught.value.problems[0].startswith("routing.rules[0].regex: not a regular expression")
    with pytest.raises(ConfigError) as caught:
        layered(file, {"hub.hours": "Mon 25:00-26:00"})
    assert caught.value.problems[0].startswith("hub.hours: ")
    with pytest.raises(ConfigError) as caught:
        layered(file, {"replies": {"greeting_en": "Hi ${HUB_ADMIN_TOKEN}"}})
    assert caught.value.problems == [
        "replies.greeting_en: ${…} reads the environment only in the config file, not in a setting"
    ]
    with pytest.raises(ConfigError) as caught:
        layered(file, {"webhooks": []})
    assert caught.value.problems[0].startswith("webhooks: not a key set here")
    assert layered(file, {"hub.hours": "Mon-Fri 09:00-18:00"}).hub.hours == "Mon-Fri 09:00-18:00"


# A running hub ------------------------------------------------------------------------


async def _api(
    http: aiohttp.ClientSession, method: str, url: str, token: str = TOKEN, **body: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.request(method, url, headers=headers, json=body or None) as response:
        return response.status, await response.json()


async def test_a_setting_changes_routing_at_once_and_unset_brings_the_file_back(
    db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(file_toml(_config(db_url, tmp_path)))
    written = path.read_bytes()
    channel = RecordingChannel("telegram")
    hub = Hub(hub_config.load(path), channels={"telegram": channel}, config_path=str(path))
    async with hub.lifespan(), aiohttp.ClientSession() as http:
        assert hub.db is not None and hub.admin is not None
        db, url = hub.db, f"http://127.0.0.1:{hub.admin.port}/api/settings"
        first = await _say(hub, channel, 71, "vip: where is my order?")
        assert await _assignee(db, first.conversation_id) == "Анна"

        status, answer = await _api(http, "PUT", f"{url}/routing", toml=VIP_TO_BORIS)
        assert status == 200, answer
        assert answer["reload"]["changed"] == ["routing.rules"]
        second = await _say(hub, channel, 72, "VIP again")
        assert await _assignee(db, second.conversation_id) == "Борис"
        status, shown = await _api(http, "GET", f"{url}/routing")
        assert status == 200
        assert shown["source"] == "console" and shown["changed_by"] == "api:config"
        assert shown["file"]["rules"][0]["managers"] == ["Анна"]
        assert shown["value"]["rules"][0]["managers"] == ["Борис"]

        await _refusals(http, url, db)
        third = await _say(hub, channel, 73, "vip, still")
        assert await _assignee(db, third.conversation_id) == "Борис"

        status, answer = await _api(http, "DELETE", f"{url}/routing")
        assert status == 200 and answer["reload"]["changed"] == ["routing.rules"]
        fourth = await _say(hub, channel, 74, "vip once more")
        assert await _assignee(db, fourth.conversation_id) == "Анна"
        status, answer = await _api(http, "DELETE", f"{url}/routing")
        assert status == 404 and "not set here" in answer["error"]
        status, listed = await _api(http, "GET", url)
        assert [s["key"] for s in listed] == list(EDITABLE)
        assert {s["key"]: s["source"] for s in listed}["routing"] == "file"
        assert {s["key"]: s["source"] for s in listed}["sla"] == "default"
        async with db.read() as conn:
            audited = await conn.execute(
                select(Audit.actor, Audit.action, Audit.details)
                .where(Audit.action.like("settings.%"))
                .order_by(Audit.id)
            )
            rows = [(r.actor, r.action, r.details["key"]) for r in audited]
        assert rows == [
            ("api:config", "settings.set", "routing"),
            ("api:config", "settings.unset", "routing"),
        ]
    assert path.read_bytes() == written  # the file is never written


async def _refusals(http: aiohttp.ClientSession, url: str, db: Database) -> None:
    """Bad settings and callers are refused and leave nothing stored."""
    async with db.read() as conn:
        before = await store.snapshot(conn)
    gleb = VIP_TO_BORIS.replace("Борис", "Глеб")
    status, answer = await _api(http, "PUT", f"{url}/routing", toml=gleb)
    assert status == 422
    assert answer["problems"][0].endswith("rule 'vip': no manager named 'Глеб'")
    status, answer = await _api(http, "PUT", f"{url}/managers", value=[])
    assert status == 422  # the file's rule names Анна, the setting's Борис: both gone
    assert any("no manager named 'Борис'" in p for p in answer["problems"])
    status, answer = await _api(
        http, "PUT", f"{url}/replies", value={"greeting_ru": "${HUB_ADMIN_TOKEN}"}
    )
    assert status == 422 and answer["problems"][0].startswith("replies.greeting_ru: ${…}")
    status, answer = await _api(http, "PUT", f"{url}/waiting", value={"close_after_days": NAN})
    assert status == 422 and answer["problems"] == ["waiting: NaN and infinity are no values here"]
    status, answer = await _api(http, "PUT", f"{url}/hub.hours", value="always")
    assert status == 422 and answer["problems"][0].startswith("hub.hours: ")
    status, answer = await _api(http, "PUT", f"{url}/admin.token", value="x" * 20)
    assert status == 404 and "not a key set here" in answer["error"]
    status, answer = await _api(http, "PUT", f"{url}/routing", other=1)
    assert status == 400
    tokens = Tokens(db)
    supervisor = await tokens.add("sofia", "supervisor")
    for method in ("GET", "PUT", "DELETE"):
        status, answer = await _api(
            http, method, f"{url}/routing", token=supervisor, toml=VIP_TO_BORIS
        )
        assert status == 403, (method, answer)
    async with db.read() as conn:
        assert await store.snapshot(conn) == before


async def _logged(instance: HubProcess, line: str) -> bool:
    return line in instance.log.read_text(errors="replace")


async def _hub_settings(config: Path, *args: str, stdin: bytes = b"") -> tuple[int, str]:
    """``hub settings ARGS --config CONFIG`` as a user runs it: exit code, output."""
    command = await asyncio.create_subprocess_exec(
        HUB,
        "settings",
        *args,
        "--config",
        str(config),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(command.communicate(stdin), 60)
    assert command.returncode is not None
    return command.returncode, out.decode()


async def test_every_instance_follows_a_setting_from_the_command_line(
    db_url: str, backend: str, tmp_path: Path
) -> None:
    """Two ``hub run`` on one PostgreSQL (one on SQLite); ``hub settings set`` in a
    third process: an email to the other instance is routed by the new rule, and a
    restarted instance still follows the setting."""
    instances = []
    for name in ("one", "two") if backend == "postgresql" else ("one",):
        config = _config(db_url, tmp_path)
        smtp = f"127.0.0.1:{free_port()}"
        config["email"] = {
            "smtp": {"listen": smtp, "domains": [DOMAIN]},
            "spool": str(tmp_path / name / "mail.db"),
        }
        instances.append(HubProcess(name, config, tmp_path))
    db = Database(db_url)
    try:
        for instance in instances:
            await instance.start()
        for instance in instances:
            await instance.ready()
        written = instances[0].path.read_bytes()
        code, out = await _hub_settings(instances[0].path, "set", "routing", "-", stdin=b"x")
        assert code == 2 and "routing: invalid TOML" in out
        code, out = await _hub_settings(
            instances[0].path, "set", "routing", "-", stdin=VIP_TO_BORIS.encode()
        )
        assert code == 0, out
        last = instances[-1]

        await until(lambda: _logged(last, "hub.reloaded by=settings changed=routing.rules"))
        await aiosmtplib.send(
            _mail("vip: the invoice, please"),
            hostname="127.0.0.1",
            port=last.smtp_port,
            timeout=20,
            start_tls=False,
        )
        await until(lambda: _mailed(db, present=True))
        assert await _assignee(db, await _mailed(db)) == "Борис"
        code, out = await _hub_settings(instances[0].path, "show")
        assert code == 0 and "routing" in out and "console (cli, " in out
        code, out = await _hub_settings(instances[0].path, "show", "routing")
        assert code == 0 and out.startswith("# routing: console\n") and "Борис" in out
        assert instances[0].path.read_bytes() == written

        await last.stop()
        await last.start()
        await last.ready()
        assert await _logged(last, "hub.reloaded by=start changed=routing.rules")
    finally:
        for instance in instances:
            await instance.stop()
        await db.dispose()
    for instance in instances:
        assert instance.proc is not None and instance.proc.returncode == 0, instance.tail()
