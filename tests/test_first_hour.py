"""The first hour on a fresh clone (issue 17): ``./scripts/run`` with the example
config starts a hub whose web form and SMTP server answer, and says where they are.

The example is copied as it is into a folder of the test's own (its data lands
there: relative paths are read from the config file's folder), with its ports
taken from the environment variables it reads, so that runs side by side do not
collide; the hub is started from yet another folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import smtplib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import NamedTuple

import aiohttp
import pytest

from tests.cluster import ROOT, free_port

TOKEN = "first-hour-admin-token-0123456789"
READY_WITHIN = 120.0  # seconds; the mail worker process starts with the hub


class Started(NamedTuple):
    banner: list[str]
    admin: str
    smtp_port: int
    data: Path


def _environment(admin: int, form: int, smtp: int, console: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        HUB_ADMIN_TOKEN=TOKEN,
        HUB_ADMIN_LISTEN=f"127.0.0.1:{admin}",
        HUB_FORM_LISTEN=f"127.0.0.1:{form}",
        HUB_SMTP_LISTEN=f"127.0.0.1:{smtp}",
        HUB_CONSOLE_LISTEN=f"127.0.0.1:{console}",
    )
    return env


async def _banner(stdout: asyncio.StreamReader) -> list[str]:
    """The lines ``hub run`` prints once ready, up to the last one."""
    lines: list[str] = []
    while not lines or not lines[-1].startswith("Stop it with"):
        line = await stdout.readline()
        if not line:
            raise AssertionError(f"the hub closed its output before it was ready: {lines}")
        lines.append(line.decode().rstrip("\n"))
    return lines


@contextlib.asynccontextmanager
async def scripts_run(tmp_path: Path) -> AsyncIterator[Started]:
    """``./scripts/run CONFIG`` with the example as CONFIG; stopped with SIGTERM after."""
    home, elsewhere = tmp_path / "hub", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    config = home / "config.toml"
    shutil.copy(ROOT / "config.example.toml", config)
    admin, form, smtp, console = free_port(), free_port(), free_port(), free_port()
    log = tmp_path / "hub.log"
    with open(log, "wb") as err:
        proc = await asyncio.create_subprocess_exec(
            str(ROOT / "scripts" / "run"),
            str(config),
            cwd=elsewhere,
            env=_environment(admin, form, smtp, console),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    try:
        assert proc.stdout is not None
        try:
            banner = await asyncio.wait_for(_banner(proc.stdout), READY_WITHIN)
        except (TimeoutError, AssertionError) as exc:
            raise AssertionError(f"not ready: {log.read_text(errors='replace')[-3000:]}") from exc
        yield Started(banner, f"http://127.0.0.1:{admin}", smtp, home / "data")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0, log.read_text(errors="replace")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert not (elsewhere / "data").exists()  # nothing made in the folder it ran from


def _send_mail(port: int) -> str:
    """A real SMTP session: EHLO, then a message to the example's local domain."""
    mail = EmailMessage()
    mail["From"] = "Olga First <olga.first@example.org>"
    mail["To"] = "help@localhost"
    mail["Subject"] = "Trying the hub"
    mail.set_content("Hello, is anybody there?")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        code, features = smtp.ehlo("tester.example.org")
        assert code == 250 and b"SIZE" in features
        refused = smtp.send_message(mail)
        assert refused == {}
    return "olga.first@example.org"


async def _client_found(http: aiohttp.ClientSession, admin: str, address: str) -> dict[str, object]:
    """Polls the admin API until the sender is a client (the log is written behind the 250)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with asyncio.timeout(60):
        while True:
            async with http.get(
                f"{admin}/api/clients", params={"q": address}, headers=headers
            ) as r:
                assert r.status == 200, await r.text()
                found = await r.json()
            if found:
                return dict(found[0])
            await asyncio.sleep(0.1)


async def test_scripts_run_serves_the_form_and_smtp_and_says_where(tmp_path: Path) -> None:
    async with scripts_run(tmp_path) as hub, aiohttp.ClientSession() as http:
        text = "\n".join(hub.banner)
        assert TOKEN not in text  # which token, never the secret
        assert "the value of $HUB_ADMIN_TOKEN" in text
        assert f"127.0.0.1:{hub.smtp_port} (mail to any address at localhost" in text
        assert "Telegram   off" in text
        [form_url] = re.findall(r"web form\s+(http://\S+/f/contact)", text)

        async with http.get(form_url) as page:
            assert page.status == 200
            html = await page.text()
        assert "<form" in html and 'name="email"' in html

        async with http.get(f"{hub.admin}/healthz") as health:
            assert health.status == 200
        [console] = re.findall(r"console\s+(http://\S+) \(sign in: hub console link", text)
        async with http.get(f"{console}/signin") as signin:  # the web console's door
            assert signin.status == 200

        address = await asyncio.to_thread(_send_mail, hub.smtp_port)
        client = await _client_found(http, hub.admin, address)
        assert client["name"] == "Olga First"
        assert (hub.data / "hub.db").exists()  # next to the config file


def test_the_banner_names_the_token_never_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.app import banner

    example = ROOT / "config.example.toml"
    monkeypatch.delenv("HUB_ADMIN_TOKEN", raising=False)
    assert banner.token_source(example) == (
        f"admin.token's default in {example}, until $HUB_ADMIN_TOKEN is set"
    )
    monkeypatch.setenv("HUB_ADMIN_TOKEN", TOKEN)
    assert banner.token_source(example) == "the value of $HUB_ADMIN_TOKEN"
    plain = tmp_path / "hub.toml"
    plain.write_text('[admin]\ntoken = "written-here-0123456789"\n')
    assert banner.token_source(plain) == f"admin.token in {plain}"
