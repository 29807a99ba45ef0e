"""The ``hub`` command line: run, check-config, migrate."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from channels.email import spool as mail_spool
from hub import config as config_module
from hub.admin import cli as admin_command
from hub.admin import webhooks as webhooks_command
from hub.app import backup as backup_command
from hub.app import overrides as settings_command
from hub.app import reload as reload_command
from hub.campaigns import cli as campaign_command
from hub.clients import cli as clients_command
from hub.clients import events_cli as event_command
from hub.console import cli as console_command
from hub.kernel import loggers
from hub.kernel.errors import ConfigError, HubError
from hub.reports import cli as report_command


def _load(path: str | None) -> config_module.Config:
    return config_module.load(config_module.resolve_path(path))


def _check_config(args: argparse.Namespace) -> int:
    try:
        _load(args.config)
    except ConfigError as exc:
        for line in exc.problems:
            print(line)
        return 2
    print("ok")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from storage import Database
    from storage.migrate import upgrade

    config = _load(args.config)

    async def run() -> list[str]:
        db = Database(config.storage.url)
        try:
            return await upgrade(db)
        finally:
            await db.dispose()

    applied = asyncio.run(run())
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    return 0


def _run(args: argparse.Namespace) -> int:
    from hub.app import banner
    from hub.app.run import Hub, run_forever

    path = config_module.resolve_path(args.config)
    config = config_module.load(path)
    loggers.setup(config.hub.log_level, config.hub.log_format)
    token = banner.token_source(path)

    def ready(hub: Hub) -> None:
        port = hub.admin.port if hub.admin is not None else None
        print(banner.text(config, admin_port=port, token=token), flush=True)

    # JSON logs are read by machines, one object a line: no banner among them.
    text_logs = config.hub.log_format == "text"
    asyncio.run(run_forever(config, on_ready=ready if text_logs else None, path=path))
    return 0


# Commands that may make a database where there is none; any other refuses, so that
# one run from the wrong place or with the wrong config never starts an empty one.
_MAKE_DATABASE = frozenset({"run", "migrate", "check-config", "restore"})


def _no_new_database(args: argparse.Namespace) -> None:
    """Refuse (a :class:`HubError`) a command that would create the SQLite file."""
    if args.command in _MAKE_DATABASE:
        return
    path = config_module.resolve_path(getattr(args, "config", None))
    db = config_module.sqlite_file(config_module.load(path).storage.url)
    if db is not None and not db.exists():
        raise HubError(
            f"no database at {db} (storage.url of {path}; relative paths are read from the "
            f"config file's folder). Is it the right config? A new hub makes its database "
            f"with `hub run` or `hub migrate --config {path}`"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hub", description="Omnichannel communication hub: Telegram, email and web forms."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, handler, help_text in (
        ("run", _run, "run every enabled channel, the dispatcher, the scheduler and the admin API"),
        ("check-config", _check_config, "validate the config: exit 0 when valid, else 2"),
        ("migrate", _migrate, "apply database schema migrations"),
    ):
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument(
            "--config", metavar="FILE", help="config file (default ./config.toml, then $HUB_CONFIG)"
        )
        cmd.set_defaults(handler=handler)
    report_command.add_parser(sub)
    clients_command.add_parsers(sub, erase_spool=mail_spool.erase)
    event_command.add_parser(sub)
    campaign_command.add_parser(sub)
    admin_command.add_parsers(sub)
    backup_command.add_parsers(sub)
    reload_command.add_parser(sub)
    settings_command.add_parser(sub)
    webhooks_command.add_parser(sub)
    console_command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        _no_new_database(args)
        code = args.handler(args)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        code = 2
    except HubError as exc:
        print(f"hub: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
