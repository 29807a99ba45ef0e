"""``hub token add|list|revoke`` (people's admin API tokens) and ``hub audit`` (the
audit log, newest first): the admin side from the command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from hub import config as config_module
from hub.admin.access import RIGHTS
from hub.admin.audit import audit_filter, line, paging, read
from hub.admin.tokens import Tokens
from hub.kernel.http import BadParameter
from hub.kernel.types import Role
from storage import Database

T = TypeVar("T")
_CONFIG_HELP = "config file (default ./config.toml, then $HUB_CONFIG)"


def add_parsers(sub: Any) -> None:
    def command(
        parent: Any, name: str, help_text: str, handler: Callable[[argparse.Namespace], int]
    ) -> Any:
        cmd = parent.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("--config", metavar="FILE", help=_CONFIG_HELP)
        cmd.set_defaults(handler=handler)
        return cmd

    token = sub.add_parser(
        "token", help="people's admin API tokens", description=_roles_help(), formatter_class=_Raw
    )
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    cmd = command(actions, "add", "make a token for NAME with ROLE and print it, once", _add)
    cmd.add_argument("name", metavar="NAME", help="who holds it (the audit names them api:NAME)")
    cmd.add_argument("role", metavar="ROLE", choices=[r.value for r in Role], help=_role_names())
    command(actions, "list", "the tokens: name, role, created, last used, revoked", _list)
    cmd = command(actions, "revoke", "revoke NAME's token: it answers 401 from now on", _revoke)
    cmd.add_argument("name", metavar="NAME")

    cmd = command(sub, "audit", "the audit log, newest first, one entry a line", _audit)
    cmd.add_argument("--actor", help="who: api:NAME, telegram:ID, cli, …")
    cmd.add_argument("--action", help="what: read, merge, stage, refused, …")
    cmd.add_argument("--client", metavar="ID", help="entries about this client")
    cmd.add_argument("--since", metavar="WHEN", help="ISO 8601 date or time (UTC unless given)")
    cmd.add_argument("--until", metavar="WHEN", help="ISO 8601; a date takes that whole day")
    cmd.add_argument("--limit", metavar="N", help="entries to show (default 100, at most 1000)")
    cmd.add_argument("--offset", metavar="M", help="entries to skip (newest first)")


class _Raw(argparse.RawDescriptionHelpFormatter):
    pass


def _role_names() -> str:
    return ", ".join(r.value for r in Role)


def _roles_help() -> str:
    rows = [
        f"  {role.value:<11} {', '.join(sorted(r.value for r in RIGHTS[role]))}" for role in Role
    ]
    return "People's admin API tokens. What each role may do:\n" + "\n".join(rows)


def _with_db(args: argparse.Namespace, work: Callable[[Database], Awaitable[T]]) -> T:
    from storage.migrate import upgrade

    config = config_module.load(config_module.resolve_path(args.config))

    async def run() -> T:
        db = Database(config.storage.url)
        try:
            await upgrade(db)
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def _add(args: argparse.Namespace) -> int:
    secret = _with_db(args, lambda db: Tokens(db).add(args.name, args.role))
    print(secret)
    print(
        f"the token of {args.name} ({args.role}): shown this once, kept only as a hash",
        file=sys.stderr,
    )
    return 0


def _when(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%MZ}" if moment else "never"


def _list(args: argparse.Namespace) -> int:
    rows = _with_db(args, lambda db: Tokens(db).listing())
    if not rows:
        print("no personal tokens (the config's admin.token is the only one)")
    for row in rows:
        state = f"revoked {_when(row.revoked_at)}" if row.revoked_at else "live"
        print(
            f"{row.name}\t{row.role}\tcreated {_when(row.created_at)}"
            f"\tlast used {_when(row.last_used_at)}\t{state}"
        )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    _with_db(args, lambda db: Tokens(db).revoke(args.name))
    print(f"the token of {args.name} is revoked")
    return 0


def _audit(args: argparse.Namespace) -> int:
    try:
        where = audit_filter(
            actor=args.actor,
            action=args.action,
            client=args.client,
            since=args.since,
            until=args.until,
        )
        limit, offset = paging(args.limit, args.offset)
    except BadParameter as exc:
        print(f"hub audit: {exc}", file=sys.stderr)
        return 2
    found = _with_db(args, lambda db: read(db, where, limit, offset))
    for entry in found:
        print(line(entry))
    if not found:
        print("no audit entries match", file=sys.stderr)
    return 0
