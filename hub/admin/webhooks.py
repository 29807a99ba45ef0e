"""Parked outgoing events, seen and sent again: ``GET /api/webhooks/parked``,
``POST /api/webhooks/parked/replay`` (admins only, see :mod:`hub.admin.access`)
and ``hub webhooks parked|replay``.

An event a webhook still refused after ``[dispatcher] max_attempts`` (or whose
webhook left the config) is parked; the client's later events go on without it.
A replay queues it again, due now and never tried, where it takes its turn
before the client's events still queued behind it; every replay is audited.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hub import config as config_module
from hub.admin.access import actor
from hub.admin.bodies import BadBody, json_object
from hub.kernel import loggers
from hub.kernel.clock import Clock, SystemClock
from hub.kernel.http import MAX_ID, BadParameter, decimal, error_response, json_response
from storage import Database
from storage import desk as desk_q
from storage import webhooks as q

log = loggers.admin

MAX_LIMIT = 1000
MAX_IDS = 10_000
_NAME = 100  # a webhook's name, as [[webhooks]] bounds it


def shown(row: q.Parked) -> dict[str, Any]:
    return {
        "id": row.id,
        "webhook": row.webhook,
        "type": row.type,
        "event_id": row.event_id,
        "client_id": row.client_id,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "created_at": row.created_at.isoformat(),
    }


@dataclass(frozen=True, slots=True)
class Replay:
    """What to queue again: these rows, or every parked one of a webhook."""

    ids: tuple[int, ...] = ()
    webhook: str | None = None


def _a_name(value: Any) -> bool:
    """A webhook's name as the config can give one (PostgreSQL's text refuses a NUL)."""
    return isinstance(value, str) and 1 <= len(value) <= _NAME and value.isprintable()


def replay_of(body: dict[str, Any]) -> Replay:
    """``{"ids": [...]}`` or ``{"webhook": NAME}``; BadParameter saying what is wrong."""
    ids, webhook = body.get("ids"), body.get("webhook")
    if (ids is None) == (webhook is None):
        raise BadParameter('expected {"ids": [ID, …]} or {"webhook": NAME}')
    if webhook is not None:
        if not _a_name(webhook):
            raise BadParameter(f"webhook: a name of 1 to {_NAME} printable characters")
        return Replay(webhook=webhook)
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_IDS:
        raise BadParameter(f"ids: a list of 1 to {MAX_IDS} outbox ids")
    for i in ids:
        if not isinstance(i, int) or isinstance(i, bool) or not 1 <= i <= MAX_ID:
            raise BadParameter(f"ids: whole numbers from 1 to {MAX_ID} (got {str(i)[:40]!r})")
    return Replay(ids=tuple(ids))


class Parking:
    """The parked events of one database: listed, and replayed with an audit entry."""

    def __init__(self, db: Database, clock: Clock, wake: Callable[[], None] | None = None):
        self.db = db
        self.clock = clock
        self.wake = wake  # the dispatcher, when in the hub: replayed rows go at once

    async def listing(self, webhook: str | None, limit: int = MAX_LIMIT) -> list[q.Parked]:
        async with self.db.read() as conn:
            return await q.parked(conn, webhook=webhook, limit=limit)

    async def replay(self, what: Replay, *, by: str) -> list[int]:
        now = self.clock.now()
        async with self.db.write() as conn:
            ids = await q.replay(conn, now, ids=what.ids, webhook=what.webhook)
            if ids:
                details = {"ids": ids[:MAX_IDS], "webhook": what.webhook, "count": len(ids)}
                await desk_q.audit(
                    conn,
                    {
                        "at": now,
                        "actor": by,
                        "action": "webhooks.replay",
                        "object_type": "webhook",
                        "object_id": None,
                        "details": details,
                    },
                )
        loggers.event(log, "webhooks.replayed", by=by, count=len(ids), webhook=what.webhook)
        if ids and self.wake is not None:
            self.wake()
        return ids


# -- the admin API ---------------------------------------------------------------------


def add_routes(app: web.Application, parking: Parking) -> None:
    async def listing(request: web.Request) -> web.Response:
        webhook = request.query.get("webhook") or None
        if webhook is not None and not _a_name(webhook):
            return error_response(400, f"webhook: a name of 1 to {_NAME} printable characters")
        raw = request.query.get("limit")
        limit = decimal(raw, "limit", high=MAX_LIMIT) if raw else MAX_LIMIT
        return json_response([shown(r) for r in await parking.listing(webhook, limit)])

    async def replay(request: web.Request) -> web.Response:
        try:
            what = replay_of(json_object(await request.read()))
        except (BadBody, BadParameter) as exc:
            return error_response(400, str(exc))
        ids = await parking.replay(what, by=actor(request))
        return json_response({"replayed": ids})

    app.router.add_get("/api/webhooks/parked", listing)
    app.router.add_post("/api/webhooks/parked/replay", replay)


# -- the command line ------------------------------------------------------------------


def _run(args: argparse.Namespace, work: Callable[[Parking], Any]) -> Any:
    from storage.migrate import upgrade

    config = config_module.load(config_module.resolve_path(args.config))

    async def run() -> Any:
        db = Database(config.storage.url)
        try:
            await upgrade(db)
            return await work(Parking(db, SystemClock()))
        finally:
            await db.dispose()

    return asyncio.run(run())


def _parked(args: argparse.Namespace) -> int:
    rows: list[q.Parked] = _run(args, lambda p: p.listing(args.webhook))
    for r in rows:
        print(
            f"{r.id}\t{r.webhook}\t{r.type}\tclient {r.client_id or '-'}\t"
            f"{r.attempts} attempts\t{r.created_at.isoformat(timespec='seconds')}\t"
            f"{r.last_error or ''}"
        )
    if not rows:
        print("no parked events", file=sys.stderr)
    return 0


def _replay(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.webhook:
        body["webhook"] = args.webhook
    if args.ids:
        body["ids"] = [int(i) if i.isascii() and i.isdecimal() else i for i in args.ids]
    try:
        what = replay_of(body)
    except BadParameter as exc:
        print(f"hub webhooks replay: {exc}", file=sys.stderr)
        return 2
    ids: list[int] = _run(args, lambda p: p.replay(what, by="cli"))
    print(f"replayed {len(ids)} event(s)" + (f": {', '.join(map(str, ids))}" if ids else ""))
    return 0


def add_parser(sub: Any) -> None:
    """``hub webhooks parked|replay``."""
    cmd = sub.add_parser(
        "webhooks",
        help="outgoing events parked after their retries: list them, queue them again",
    )
    actions = cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    config_help = "config file (default ./config.toml, then $HUB_CONFIG)"
    parked = actions.add_parser("parked", help="the parked events, oldest first")
    parked.add_argument("--config", metavar="FILE", help=config_help)
    parked.add_argument("--webhook", metavar="NAME", help="only this webhook's")
    parked.set_defaults(handler=_parked)
    replay = actions.add_parser(
        "replay", help="queue parked events again (by id, or every one of --webhook)"
    )
    replay.add_argument("--config", metavar="FILE", help=config_help)
    replay.add_argument("--webhook", metavar="NAME", help="every parked event of this webhook")
    replay.add_argument("ids", metavar="ID", nargs="*", help="outbox ids, as listed")
    replay.set_defaults(handler=_replay)
