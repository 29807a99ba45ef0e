"""``hub campaign``: create, preview, test, start, pause, status and list campaigns.

The command works on the database; a running hub (``hub run``) does the
sending. ``start --wait`` and ``status --follow`` draw a progress bar (plain
text: ``[####----]  40% 4000/10000``) until the campaign is done or paused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from hub import config as config_module
from hub.campaigns.campaigns import Campaigns, build
from hub.campaigns.spec import load_spec
from hub.campaigns.status import Status, render_status
from hub.kernel.clock import SystemClock
from hub.kernel.texts import progress_bar

HELP = "campaigns: create FILE, preview ID, test ID, start ID, pause ID, status ID, list"
T = TypeVar("T")


def add_parser(sub: Any) -> None:
    """Add ``campaign`` to the ``hub`` command's subparsers."""
    cmd: argparse.ArgumentParser = sub.add_parser("campaign", help=HELP, description=HELP)
    cmd.add_argument(
        "--config", metavar="FILE", help="config file (default ./config.toml, then $HUB_CONFIG)"
    )
    actions = cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a campaign from a TOML (or YAML) file")
    create.add_argument("file", metavar="CAMPAIGN.toml")
    preview = actions.add_parser("preview", help="the segment's size and a few messages")
    preview.add_argument("id", type=int)
    preview.add_argument("--client", type=int, help="render for this client")
    preview.add_argument("--limit", type=int, default=3)
    test = actions.add_parser("test", help="send the script to yourself")
    test.add_argument("id", type=int)
    to = test.add_mutually_exclusive_group(required=True)
    to.add_argument("--telegram", type=int, metavar="USER_ID")
    to.add_argument("--email", metavar="ADDRESS")
    test.add_argument("--client", type=int, help="render for this client")
    start = actions.add_parser("start", help="start (or resume) sending")
    start.add_argument("id", type=int)
    start.add_argument("--wait", action="store_true", help="show progress until done")
    pause = actions.add_parser("pause", help="pause sending (start resumes)")
    pause.add_argument("id", type=int)
    status = actions.add_parser("status", help="progress and results")
    status.add_argument("id", type=int)
    status.add_argument("--follow", action="store_true", help="show progress until done")
    status.add_argument("--json", action="store_true", help="as JSON")
    actions.add_parser("list", help="the latest campaigns")
    for action in (create, preview, test, start, pause, status):
        action.add_argument("--lang", choices=("ru", "en"), help="language of the output")
    cmd.set_defaults(handler=run)


def _with(config: config_module.Config, work: Callable[[Campaigns], Awaitable[T]]) -> T:
    from storage import Database
    from storage.migrate import upgrade

    async def go() -> T:
        db = Database(config.storage.url)
        try:
            await upgrade(db)
            staff = "telegram" if config.telegram.enabled else None
            return await work(build(config, db, SystemClock(), staff_channel=staff))
        finally:
            await db.dispose()

    return asyncio.run(go())


async def follow(campaigns: Campaigns, campaign_id: int, *, every: float = 1.0) -> Status:
    """Draw the progress bar until the campaign is done or stops running."""
    tty = sys.stdout.isatty()
    last = ""
    while True:
        status = await campaigns.status(campaign_id)
        line = f"{progress_bar(status.done, status.targeted)} {status.campaign.status}"
        if line != last:
            print(f"\r{line}" if tty else line, end="" if tty else "\n", flush=True)
            last = line
        if status.campaign.status != "running":
            if tty:
                print()
            return status
        await asyncio.sleep(every)


def run(args: argparse.Namespace) -> int:
    config = config_module.load(config_module.resolve_path(args.config))
    language = getattr(args, "lang", None) or config.hub.language
    return _ACTIONS[args.action](args, config, language)


def _create(args: argparse.Namespace, config: config_module.Config, language: str) -> int:
    spec = load_spec(args.file)
    print(_with(config, lambda c: c.create(spec, actor="cli")))
    return 0


def _list(args: argparse.Namespace, config: config_module.Config, language: str) -> int:
    rows = _with(config, lambda c: c.listing(50))
    for row in rows:
        print(f"{row.id}\t{row.status}\t{row.mode}\t{row.name}")
    if not rows:
        print("no campaigns (create one: hub campaign create CAMPAIGN.toml)")
    return 0


def _preview(args: argparse.Namespace, config: config_module.Config, language: str) -> int:
    async def preview(c: Campaigns) -> None:
        count, items = await c.preview(args.id, client_id=args.client, limit=args.limit)
        print(f"segment: {count} clients")
        for item in items:
            head = f"--- client {item.client_id}, variant {item.variant}, "
            head += f"{item.channel or 'skipped: ' + str(item.skip)}"
            print(head)
            if item.subject:
                print(f"Subject: {item.subject}")
            print(item.text)

    _with(config, preview)
    return 0


def _test(args: argparse.Namespace, config: config_module.Config, language: str) -> int:
    row_id = _with(
        config,
        lambda c: c.test_send(
            args.id, telegram_id=args.telegram, email=args.email, client_id=args.client
        ),
    )
    print(f"queued: outbox {row_id}")
    return 0


def _start_or_pause(args: argparse.Namespace, config: config_module.Config, language: str) -> int:
    async def move(c: Campaigns) -> Status:
        if args.action == "start":
            await c.start(args.id, actor="cli")
            if args.wait:
                return await follow(c, args.id)
        else:
            await c.pause(args.id, actor="cli")
        return await c.status(args.id)

    print(render_status(_with(config, move), language))
    return 0


def _status(args: argparse.Namespace, config: config_module.Config, language: str) -> int:
    async def show(c: Campaigns) -> Status:
        return await (follow(c, args.id) if args.follow else c.status(args.id))

    status = _with(config, show)
    if args.json:
        print(json.dumps(status.as_json(), ensure_ascii=False, indent=2))
    else:
        print(render_status(status, language))
    return 0


_ACTIONS: dict[str, Callable[[argparse.Namespace, config_module.Config, str], int]] = {
    "create": _create,
    "list": _list,
    "preview": _preview,
    "test": _test,
    "start": _start_or_pause,
    "pause": _start_or_pause,
    "status": _status,
}
