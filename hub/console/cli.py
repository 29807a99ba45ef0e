"""``hub console link NAME``: a one-time sign-in URL of the web console for the
manager NAME (good once, for 15 minutes), printed for an admin to hand over."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from hub import config as config_module
from hub.console.auth import LINK_MINUTES, make_link
from hub.kernel.clock import SystemClock
from hub.kernel.errors import HubError
from storage import Database
from storage import console as q

_CONFIG_HELP = "config file (default ./config.toml, then $HUB_CONFIG)"


def add_parser(sub: Any) -> None:
    console = sub.add_parser("console", help="the web console", description="the web console")
    actions = console.add_subparsers(dest="action", required=True, metavar="ACTION")
    help_text = f"print a one-time sign-in URL for the manager NAME (good {LINK_MINUTES} minutes)"
    cmd = actions.add_parser("link", help=help_text, description=help_text)
    cmd.add_argument("--config", metavar="FILE", help=_CONFIG_HELP)
    cmd.add_argument("name", metavar="NAME", help="a [[managers]] name")
    cmd.set_defaults(handler=_link)


def _link(args: argparse.Namespace) -> int:
    config = config_module.load(config_module.resolve_path(args.config))
    base = config.console.base_url()
    if base is None:
        raise HubError("the console is off: set console.listen (and console.public_url)")
    configured = {m.name: m for m in config.managers}
    if args.name not in configured:
        known = ", ".join(sorted(configured)) or "none"
        raise HubError(f"no manager named {args.name!r} in [[managers]] (there are: {known})")
    telegram_id = configured[args.name].telegram_id
    print(asyncio.run(_make(config.storage.url, base, args.name, telegram_id)))
    return 0


async def _make(url: str, base: str, name: str, telegram_id: int) -> str:
    db = Database(url)
    try:
        try:
            async with db.read() as conn:
                person = await q.person_by_name(conn, name)
        except SQLAlchemyError as exc:
            why = type(exc).__name__
            raise HubError(f"cannot read the managers ({why}): run hub migrate") from exc
        if person is None or person.telegram_id != telegram_id or not person.active:
            raise HubError(
                f"{name!r} is in the config but not yet in the database: start the hub "
                "(or reload it) once so that it takes the managers"
            )
        clock = SystemClock()
        return await make_link(db, clock, base_url=base, manager_id=person.id, sent_by="cli")
    finally:
        await db.dispose()
