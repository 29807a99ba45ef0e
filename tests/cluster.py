"""Real ``hub run`` processes on one PostgreSQL for the fault tests (issue 9).

Each :class:`HubProcess` is a subprocess with its own config file (admin, SMTP,
form and webhook ports of its own; one database, Bot API stand-in, Dovecot
folder and outbound relay for all). :class:`Balancer` is the HTTP load balancer
in front of the instances' webhooks: Telegram posts to it, it forwards to a
live instance and answers 502 when none is up. :class:`Sink` is the capturing
SMTP relay the instances send through. Everything here is stopped by its owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import os
import random
import signal
import socket
import sys
import tomllib
from collections.abc import AsyncIterator
from email import policy
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

ROOT = Path(__file__).resolve().parent.parent
HUB = str(Path(sys.executable).with_name("hub"))
WEBHOOK_SECRET = "fault-webhook-secret-0123456789"
ADMIN_TOKEN = "fault-admin-token-0123456789"
DESK = "desk@desk.example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def to_toml(config: dict[str, Any]) -> str:
    """Enough TOML for a hub config: tables of scalars, arrays of inline tables."""
    lines: list[str] = []
    for section, body in config.items():
        if isinstance(body, list):
            for item in body:
                lines.append(f"[[{section}]]")
                lines.extend(f"{k} = {toml_value(v)}" for k, v in item.items())
            continue
        nested = {k: v for k, v in body.items() if isinstance(v, dict)}
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in body.items() if k not in nested)
        for name, sub in nested.items():
            lines.append(f"[{section}.{name}]")
            lines.extend(f"{k} = {toml_value(v)}" for k, v in sub.items())
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # what we wrote must read back
    return text


def _port(listen: str | None) -> int:
    """The port of a ``host:port`` listen address; 0 when the config has none."""
    return int(listen.rsplit(":", 1)[1]) if listen else 0


class HubProcess:
    """One ``hub run`` subprocess; ``kill()`` is SIGKILL, ``stop()`` SIGTERM."""

    def __init__(self, name: str, config: dict[str, Any], folder: Path) -> None:
        self.name = name
        self.config = config
        self.admin_port = int(config["admin"]["listen"].rsplit(":", 1)[1])
        self.smtp_port = _port(config.get("email", {}).get("smtp", {}).get("listen"))
        self.form_port = _port(config.get("webform", {}).get("listen"))
        self.webhook_port = _port(config.get("telegram", {}).get("webhook_listen"))
        self.path = folder / f"{name}.toml"
        self.path.write_text(to_toml(config))
        self.log = folder / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                HUB,
                "run",
                "--config",
                str(self.path),
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.starts += 1

    async def ready(self, timeout: float = 60.0) -> None:
        """Wait until ``/healthz`` answers 200 (polled: nothing else can tell)."""
        url = f"http://127.0.0.1:{self.admin_port}/healthz"
        async with asyncio.timeout(timeout), aiohttp.ClientSession() as http:
            while True:
                if not self.running:
                    raise AssertionError(f"{self.name} exited: {self.tail()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self, timeout: float = 30.0) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            await self.kill()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Balancer:
    """An HTTP load balancer for the webhook: each POST to a random instance that
    takes the connection; 502 when none does (Telegram then posts again)."""

    def __init__(self, instances: list[HubProcess]) -> None:
        self.instances = instances
        self.port = free_port()
        self.statuses: list[int] = []
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/telegram"

    async def __aenter__(self) -> Balancer:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
        app = web.Application()
        app.router.add_post("/telegram", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._http is not None
        body = await request.read()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("content-type", "x-telegram-bot-api-secret-token")
        }
        for instance in random.sample(self.instances, len(self.instances)):
            try:
                async with self._http.post(
                    f"http://127.0.0.1:{instance.webhook_port}/telegram", data=body, headers=headers
                ) as resp:
                    self.statuses.append(resp.status)
                    return web.Response(status=resp.status, body=await resp.read())
            except (aiohttp.ClientError, TimeoutError):
                continue
        self.statuses.append(502)
        return web.Response(status=502, text="no instance")


class Sink:
    """The outbound SMTP relay: keeps every message it accepted."""

    def __init__(self) -> None:
        self.mail: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = email.message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        self.mail.append(parsed)
        return "250 OK"


@contextlib.asynccontextmanager
async def sink() -> AsyncIterator[tuple[Sink, int]]:
    handler = Sink()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, enable_SMTPUTF8=True), "127.0.0.1", 0
    )
    try:
        yield handler, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def instance_config(
    *,
    db_url: str,
    files: Path,
    bot_token: str,
    api_base: str,
    staff_chat_id: int,
    manager_id: int,
    webhook_url: str,
    extra_staff_chat_ids: list[int],
    relay_port: int,
    imap: dict[str, Any] | None,
) -> dict[str, Any]:
    """One instance's config: ports of its own, everything else shared."""
    config: dict[str, Any] = {
        "hub": {"log_level": "INFO"},
        "storage": {"url": db_url, "attachments_dir": str(files)},
        "admin": {"listen": f"127.0.0.1:{free_port()}", "token": ADMIN_TOKEN},
        # short leases: a row a killed instance held is sent by the other soon
        "dispatcher": {"idle_poll_s": 0.2, "lease_s": 5.0, "backoff_base_s": 0.2},
        "reminders": {"max_sleep_s": 0.5},
        "telegram": {
            "enabled": True,
            "token": bot_token,
            "api_base": api_base,
            "mode": "webhook",
            "webhook_url": webhook_url,
            "webhook_listen": f"127.0.0.1:{free_port()}",
            "webhook_secret": WEBHOOK_SECRET,
            "staff_chat_id": staff_chat_id,
            "extra_staff_chat_ids": extra_staff_chat_ids,
        },
        "email": {
            "smtp": {"listen": f"127.0.0.1:{free_port()}", "domains": ["desk.example.com"]},
            "outbound": {
                "host": "127.0.0.1",
                "port": relay_port,
                "from": "Support <help@desk.example.com>",
                "starttls": False,
            },
        },
        "webform": {
            "listen": f"127.0.0.1:{free_port()}",
            "rate_limit_per_minute": 100000,
            "secret": "fault-form-secret-0123456789",
        },
        "webform.forms": [{"id": "contact", "min_fill_seconds": 0, "confirm_email": True}],
        "managers": [{"name": "Maria", "telegram_id": manager_id}],
    }
    if imap is not None:
        config["email.imap"] = [imap]
    return config
