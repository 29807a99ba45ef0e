"""``hub event`` (one business event, as ``POST /api/events``) and ``hub event
import EVENTS.csv`` (many: columns ``id``, ``kind``, one of ``client_id``,
``email``, ``phone``, ``telegram_id``, then ``at``, ``amount``, ``currency``,
``name``; any other column is a field of the event). Every bad row is reported
by number with all its problems; the exit code is 0 when every row went in,
1 when some were refused; an event id recorded before is not recorded again."""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hub import config as config_module
from hub.clients.event_writer import MAX_BATCH, EventRecorder, Outcome, Recorded
from hub.clients.events import BadEvent, EventIn, UnknownClient, parse
from hub.clients.stage_rules import compile_stage_rules
from hub.kernel.clock import SystemClock

T = TypeVar("T")
_CONFIG_HELP = "config file (default ./config.toml, then $HUB_CONFIG)"
CLIENT_COLUMNS = {
    "client_id": "id",
    "email": "email",
    "phone": "phone",
    "telegram_id": "telegram_id",
}
EVENT_COLUMNS = ("id", "kind", "at", "amount", "currency")


def add_parser(sub: Any) -> None:
    help_text = (
        "record a business event (a purchase, order, payment, meeting, call) on a client, "
        "as POST /api/events does; `hub event import FILE.csv` records many"
    )
    cmd = sub.add_parser("event", help=help_text, description=help_text)
    cmd.add_argument("--config", metavar="FILE", help=_CONFIG_HELP)
    cmd.add_argument("--kind", help="purchase, order, payment, meeting, call, …")
    cmd.add_argument("--id", help="your id of the event (default: a new one each time)")
    for key in ("id", "email", "phone", "telegram-id", "name"):
        cmd.add_argument(f"--client-{key}", metavar=key.upper().replace("-", "_"))
    cmd.add_argument("--at", help="when, ISO 8601 with a UTC offset (default: now)")
    cmd.add_argument("--amount")
    cmd.add_argument("--currency", help="ISO 4217, e.g. RUB")
    cmd.add_argument(
        "--field", action="append", default=[], metavar="NAME=VALUE", help="a field (repeatable)"
    )
    cmd.set_defaults(handler=_one)
    actions = cmd.add_subparsers(dest="action", metavar="ACTION")
    help_text = (
        "record the events of a CSV file (columns id, kind, client_id|email|phone|telegram_id, "
        "at, amount, currency, and any other as a field); exit 0 when every row went in, "
        "1 when some were refused"
    )
    imp = actions.add_parser("import", help=help_text, description=help_text)
    imp.add_argument("--config", metavar="FILE", help=_CONFIG_HELP)
    imp.add_argument("file", metavar="EVENTS.csv")
    imp.set_defaults(handler=_import)


def _with_recorder(args: argparse.Namespace, work: Callable[[EventRecorder], Awaitable[T]]) -> T:
    from storage import Database
    from storage.migrate import upgrade

    config = config_module.load(config_module.resolve_path(args.config))
    rules = compile_stage_rules(config)
    args.region = config.hub.default_region

    async def run() -> T:
        db = Database(config.storage.url)
        try:
            await upgrade(db)
            return await work(EventRecorder(db, SystemClock(), lambda: rules))
        finally:
            await db.dispose()

    return asyncio.run(run())


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _one(args: argparse.Namespace) -> int:
    if args.kind is None:
        print("hub event: --kind is needed (or `hub event import FILE.csv`)", file=sys.stderr)
        return 2
    client = {
        key: value
        for key, value in (
            ("id", args.client_id),
            ("email", args.client_email),
            ("phone", args.client_phone),
            ("telegram_id", args.client_telegram_id),
            ("name", args.client_name),
        )
        if value
    }
    fields: dict[str, Any] = {}
    for given in args.field:
        name, sep, value = given.partition("=")
        if not sep:
            print(f"hub event: --field {given!r}: expected NAME=VALUE", file=sys.stderr)
            return 2
        fields[name.strip()] = value
    data = {
        "id": args.id or f"cli:{uuid.uuid4().hex}",
        "kind": args.kind,
        "client": client or None,
        "at": args.at,
        "amount": args.amount,
        "currency": args.currency,
        "fields": fields,
    }

    async def record(recorder: EventRecorder) -> Outcome | str:
        try:
            event = parse(data, region=args.region)
        except BadEvent as exc:
            return str(exc)
        try:
            return await recorder.record(event, actor=_actor())
        except UnknownClient as exc:
            return exc

    done = _with_recorder(args, record)
    if not isinstance(done, Recorded):
        print(f"hub event: {done}", file=sys.stderr)
        return 1
    said = "already recorded as event" if done.duplicate else "recorded event"
    new = " (a new client)" if done.new_client else ""
    print(f"{said} #{done.id} on client #{done.client_id}{new}")
    return 0


@dataclass
class ImportReport:
    recorded: int = 0
    duplicates: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (row number, problems)

    def lines(self) -> list[str]:
        head = (
            f"recorded {self.recorded}, already recorded {self.duplicates}, "
            f"refused {len(self.errors)}"
        )
        return [head, *(f"row {n}: {problem}" for n, problem in sorted(self.errors))]


def read_rows(source: Any, region: str | None, report: ImportReport) -> list[tuple[int, EventIn]]:
    """The good rows of a CSV file as events, numbered as in the file (the header
    is row 1); each bad row's problems go to ``report``."""
    reader = csv.DictReader(source)
    events: list[tuple[int, EventIn]] = []
    try:
        if reader.fieldnames is None:
            report.errors.append((1, "empty file: a header row (id,kind,email,…) is needed"))
            return []
        header = {h.strip().lower() for h in reader.fieldnames if h}
        if not {"id", "kind"} <= header or not header & set(CLIENT_COLUMNS):
            report.errors.append(
                (1, f"the columns id, kind and one of {', '.join(CLIENT_COLUMNS)} are needed")
            )
            return []
        _read_events(reader, region, report, events)
    except (csv.Error, UnicodeDecodeError) as exc:  # the rest is no CSV (or no UTF-8)
        report.errors.append((max(reader.line_num, 1), f"not CSV from here on: {exc}"))
    return events


def _read_events(
    reader: csv.DictReader[str],
    region: str | None,
    report: ImportReport,
    events: list[tuple[int, EventIn]],
) -> None:
    for number, raw in enumerate(reader, start=2):
        values = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        client = {CLIENT_COLUMNS[k]: v for k, v in values.items() if k in CLIENT_COLUMNS and v}
        if values.get("name"):
            client["name"] = values["name"]
        taken = {*EVENT_COLUMNS, *CLIENT_COLUMNS, "name"}
        data = {k: values.get(k) or None for k in EVENT_COLUMNS}
        data["client"] = client or None
        data["fields"] = {k: v for k, v in values.items() if k not in taken and v}
        try:
            events.append((number, parse(data, region=region)))
        except BadEvent as exc:
            report.errors.append((number, str(exc)))


def _import(args: argparse.Namespace) -> int:
    try:
        source = open(args.file, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as exc:
        print(f"hub event import: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    report = ImportReport()

    async def record(recorder: EventRecorder) -> None:
        with source:
            rows = await asyncio.to_thread(read_rows, source, args.region, report)
        for start in range(0, len(rows), MAX_BATCH):
            chunk = rows[start : start + MAX_BATCH]
            outcomes = await recorder.record_many([e for _, e in chunk], actor=_actor())
            for (number, _), outcome in zip(chunk, outcomes, strict=True):
                if isinstance(outcome, UnknownClient):
                    report.errors.append((number, str(outcome)))
                elif outcome.duplicate:
                    report.duplicates += 1
                else:
                    report.recorded += 1

    try:
        _with_recorder(args, record)
    except UnicodeDecodeError:
        print(f"hub event import: {args.file} is not UTF-8 text", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 1 if report.errors else 0
