"""What the console's browser tests share: a started Hub with the console on a free
loopback port and Telegram on the local Bot API server, one person per role, a
signed-in Chromium page for any of them, and an axe-core check of a page.

    async with console_hub(db_url, tmp_path) as kit:
        page = await kit.signed_in(browser, "supervisor")
        await page.goto(kit.url("/inbox"))
        await axe(page)

``browser`` is a fixture (Debian's Chromium driven by Playwright): import it into
the test module (``from tests.console_kit import browser``).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hub import config as hub_config
from hub.app.run import Hub
from hub.console.auth import make_link
from storage import console as console_q
from tests.botapi import BotApiServer, Limits
from tests.botapi.world import User

CHROMIUM = os.environ.get("HUB_CHROMIUM", "/usr/bin/chromium")
AXE = Path(__file__).with_name("axe.min.js")
ADMIN_TOKEN = "console-admin-token-0123456789"

# One person per role: (name as in [[managers]], role, language).
PEOPLE: tuple[tuple[str, str, str], ...] = (
    ("Мария", "manager", "ru"),
    ("Olga", "supervisor", "en"),
    ("Марк", "marketer", "ru"),
    ("Admin", "admin", "en"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless Chromium; the test is skipped where there is none."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[test]')")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (scripts/test installs Debian's chromium)")
    async with async_playwright() as pw:
        try:
            chromium = await pw.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
            )
        except Exception as exc:
            pytest.skip(f"Chromium at {CHROMIUM} cannot start: {exc}")
        try:
            yield chromium
        finally:
            await chromium.close()


@dataclass
class ConsoleKit:
    """The started hub, its console's address, the Bot API and the people."""

    hub: Hub
    base: str
    server: BotApiServer
    people: dict[str, User] = field(default_factory=dict)  # name → their Telegram user
    roles: dict[str, str] = field(default_factory=dict)  # role → the name having it

    def url(self, path: str) -> str:
        return self.base + path

    def name(self, who: str) -> str:
        """A role or a name → the person's name."""
        return self.roles.get(who, who)

    def config_file(self, folder: Path) -> Path:
        """A config file naming the same database, console and managers (for the CLI)."""
        config = self.hub.config
        lines = [
            f'[admin]\ntoken = "{ADMIN_TOKEN}"',
            f"[storage]\nurl = {json.dumps(config.storage.url)}",
            f"[console]\nlisten = {json.dumps(config.console.listen)}",
        ]
        for m in config.managers:
            lines.append(
                f"[[managers]]\nname = {json.dumps(m.name, ensure_ascii=False)}\n"
                f'telegram_id = {m.telegram_id}\nrole = "{m.role.value}"'
            )
        path = folder / "console.toml"
        path.write_text("\n".join(lines) + "\n", "utf-8")
        return path

    async def link(self, who: str) -> str:
        """A fresh one-time sign-in URL for the person (a role or a name)."""
        db = self.hub.db
        assert db is not None
        async with db.read() as conn:
            person = await console_q.person_by_name(conn, self.name(who))
        assert person is not None, who
        return await make_link(
            db, self.hub.clock, base_url=self.base, manager_id=person.id, sent_by="cli"
        )

    async def sign_in(self, page: Any, who: str) -> None:
        """Sign ``page``'s browser context in as the person, through a link."""
        await page.goto(await self.link(who))
        await page.click("#signin")
        await page.wait_for_url(lambda url: "/signin" not in url)

    async def signed_in(self, browser: Any, who: str) -> Any:
        """A new page in a browser context of its own, signed in as the person."""
        context = await browser.new_context()
        page = await context.new_page()
        await self.sign_in(page, who)
        return page


@asynccontextmanager
async def console_hub(
    db_url: str,
    tmp_path: Path,
    *,
    config: Mapping[str, Any] | None = None,
    people: tuple[tuple[str, str, str], ...] = PEOPLE,
    teams: Mapping[str, str] | None = None,
) -> AsyncIterator[ConsoleKit]:
    """A hub with Telegram on the local Bot API and the console on loopback.
    ``config``: sections merged over the defaults (one level deep); ``teams``: the
    team of some people, by name."""
    async with BotApiServer(limits=Limits.off()) as server:
        users = {name: server.add_manager(name) for name, _, _ in people}
        port = free_port()
        settings: dict[str, Any] = {
            "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
            "admin": {"listen": f"127.0.0.1:{free_port()}", "token": ADMIN_TOKEN},
            "hub": {"language": "ru"},
            "dispatcher": {"idle_poll_s": 0.2},
            "telegram": {
                "enabled": True,
                "token": server.token,
                "api_base": server.base_url,
                "staff_chat_id": server.forum.id,
            },
            "managers": [
                {
                    "name": name,
                    "telegram_id": users[name].id,
                    "role": role,
                    "language": language,
                    **({"team": teams[name]} if teams and name in teams else {}),
                }
                for name, role, language in people
            ],
            "console": {"listen": f"127.0.0.1:{port}", "live_poll_s": 0.2},
        }
        for key, value in (config or {}).items():
            if isinstance(value, Mapping) and isinstance(settings.get(key), dict):
                settings[key] = {**settings[key], **value}
            else:
                settings[key] = value
        hub = Hub(hub_config.parse(settings))
        async with hub.lifespan():
            assert hub.console is not None
            yield ConsoleKit(
                hub,
                f"http://127.0.0.1:{hub.console.port}",
                server,
                people=users,
                roles={role: name for name, role, _ in people},
            )


async def axe(page: Any, *, disable: tuple[str, ...] = ()) -> None:
    """Run axe-core on the page as it is; fail naming every violation."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        # evaluated, not added as a <script>: the console's CSP refuses inline scripts
        await page.evaluate(AXE.read_text("utf-8") + "\n;true")
    options: dict[str, Any] = {"resultTypes": ["violations"]}
    if disable:
        options["rules"] = {rule: {"enabled": False} for rule in disable}
    result = await page.evaluate("(options) => axe.run(document, options)", options)
    found = [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(n["target"]) for n in v["nodes"][:3])
        for v in result["violations"]
    ]
    assert not found, (
        f"axe on {page.url}:\n"
        + "\n".join(found)
        + "\n"
        + json.dumps([v["nodes"][0]["html"] for v in result["violations"]], ensure_ascii=False)
    )
