"""``hub import``, ``hub export``, ``hub duplicates``, ``hub merge``, ``hub unmerge``,
``hub card`` and ``hub client export|forget``: the client records from the command line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from hub import config as config_module
from hub.clients.attachments import AttachmentStore
from hub.clients.book import ClientBook, report_text
from hub.clients.privacy import Privacy
from hub.kernel.clock import SystemClock
from hub.kernel.identities import TELEGRAM_HINT
from hub.kernel.texts import progress_bar

if TYPE_CHECKING:
    from storage.read import ClientRecord

T = TypeVar("T")
EraseSpool = Callable[[str, list[str]], int]  # (spool file, addresses) -> messages deleted
_CONFIG_HELP = "config file (default ./config.toml, then $HUB_CONFIG)"


def add_parsers(sub: Any, *, erase_spool: EraseSpool | None = None) -> None:
    """The commands; ``erase_spool`` deletes a forgotten person's mail from the mail
    spool (the email channel's, wired in by the app)."""

    def command(name: str, help_text: str, handler: Callable[[argparse.Namespace], int]) -> Any:
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("--config", metavar="FILE", help=_CONFIG_HELP)
        cmd.set_defaults(handler=handler)
        return cmd

    cmd = command(
        "import",
        "import clients from CSV (columns name, email, phone, telegram, stage, tags, source, "
        "language, and custom ones); exit 0 when every row went in, 1 when some were refused",
        _import,
    )
    cmd.add_argument("file", metavar="CLIENTS.csv")
    cmd = command("export", "write every client as CSV", _export)
    cmd.add_argument("--output", metavar="FILE", help="default: standard output")
    command("duplicates", "list probable duplicate clients (never merged by themselves)", _dupes)
    cmd = command("merge", "merge client OTHER into client KEEP (undo with hub unmerge)", _merge)
    cmd.add_argument("keep", type=int, metavar="KEEP")
    cmd.add_argument("other", type=int, metavar="OTHER")
    cmd = command("unmerge", "undo a merge by the id `hub merge` printed", _unmerge)
    cmd.add_argument("merge_id", type=int, metavar="MERGE_ID")
    cmd = command("card", "show a client's card and latest interactions", _card)
    cmd.add_argument("client_id", type=int, metavar="CLIENT_ID")
    cmd.add_argument("--last", type=int, default=20, help="interactions to show (default 20)")
    _client_parsers(sub, erase_spool)


def _client_parsers(sub: Any, erase_spool: EraseSpool | None) -> None:
    client = sub.add_parser(
        "client",
        help="one person's data: export it, or erase it on their request",
        description="one person's data: export it, or erase it on their request",
    )
    actions = client.add_subparsers(dest="action", required=True, metavar="ACTION")
    help_text = (
        "everything held on a client (the record, those merged into it, identities, "
        "the whole log, attachments) as one zip: client.json and the files"
    )
    cmd = actions.add_parser("export", help=help_text, description=help_text)
    cmd.add_argument("--config", metavar="FILE", help=_CONFIG_HELP)
    cmd.add_argument("client_id", type=int, metavar="ID")
    cmd.add_argument("--out", required=True, metavar="FILE.zip", help="the archive to write")
    cmd.set_defaults(handler=_client_export)
    help_text = (
        "erase a client's personal data on their request (names, identities, texts, "
        "files; the search index, the mail spool, the outbox, the audit's search terms, "
        "the staff topic): the rows stay, tombstoned, for the reports; audited"
    )
    cmd = actions.add_parser("forget", help=help_text, description=help_text)
    cmd.add_argument("--config", metavar="FILE", help=_CONFIG_HELP)
    cmd.add_argument("client_id", type=int, metavar="ID")
    cmd.add_argument("--reason", required=True, help="why (kept in the audit log)")
    cmd.add_argument("--by", metavar="NAME", help="who asks (default cli:<login name>)")
    cmd.set_defaults(handler=lambda args: _client_forget(args, erase_spool))


def _with_book(args: argparse.Namespace, work: Callable[[ClientBook], Awaitable[T]]) -> T:
    from storage import Database
    from storage.migrate import upgrade

    config = config_module.load(config_module.resolve_path(args.config))

    async def run() -> T:
        db = Database(config.storage.url)
        try:
            await upgrade(db)
            return await work(ClientBook(db, SystemClock(), region=config.hub.default_region))
        finally:
            await db.dispose()

    return asyncio.run(run())


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty() or done == total:
        end = "\n" if done == total else ""
        print(f"\r{progress_bar(done, total)}", end=end, file=sys.stderr)


def _import(args: argparse.Namespace) -> int:
    try:
        source = open(args.file, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as exc:
        print(f"hub import: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    with source:
        report = _with_book(args, lambda book: book.import_csv(source, progress=_progress))
    print(report_text(report))
    return 1 if report.errors else 0


def _export(args: argparse.Namespace) -> int:
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            count = _with_book(args, lambda book: book.export_csv(out))
        print(f"exported {count} clients to {args.output}", file=sys.stderr)
    else:
        _with_book(args, lambda book: book.export_csv(sys.stdout))
    return 0


def _dupes(args: argparse.Namespace) -> int:
    found = _with_book(args, lambda book: book.duplicates())
    for s in found:
        print(f"#{s.a}\t#{s.b}\t{s.score:.0f}\t{s.reason}")
    if not found:
        print("no probable duplicates")
    return 0


def _merge(args: argparse.Namespace) -> int:
    merge_id = _with_book(args, lambda book: book.merge(args.keep, args.other, actor="cli"))
    print(
        f"merged #{args.other} into #{args.keep}: merge {merge_id} (undo: hub unmerge {merge_id})"
    )
    return 0


def _unmerge(args: argparse.Namespace) -> int:
    keep, other = _with_book(args, lambda book: book.unmerge(args.merge_id, actor="cli"))
    print(f"merge {args.merge_id} undone: #{other} is its own client again, apart from #{keep}")
    return 0


def _when(at: datetime, zone: ZoneInfo) -> str:
    return f"{at.astimezone(zone):%Y-%m-%d %H:%M}"


def _identity(kind: str, value: str) -> str:
    if kind == TELEGRAM_HINT:
        return f"telegram @{value} (unconfirmed until they write)"
    return f"{kind} {value}"


def card_lines(card: ClientRecord, zone: ZoneInfo, now: datetime) -> list[str]:
    """The card as text: identities, owner, stage, tags, custom fields, source,
    open requests with their deadline, and the reminders due."""
    lines = [
        f"#{card.id} {card.name or '—'} · stage {card.stage} · owner {card.owner or '—'}"
        + (f" · language {card.language}" if card.language else ""),
        "identities: " + (", ".join(_identity(i.kind, i.value) for i in card.identities) or "—"),
        f"tags: {', '.join(card.tags) or '—'} · source: {card.source or '—'}"
        f" · since {_when(card.created_at, zone)}",
    ]
    if card.custom:
        lines.append("fields: " + "; ".join(f"{k}: {v}" for k, v in sorted(card.custom.items())))
    if card.merged_into is not None:
        lines.append(f"merged into #{card.merged_into}")
    lines.append(f"open requests: {len(card.open_conversations)}")
    for conv in card.open_conversations:
        due = ""
        if conv.due_at is not None:
            late = " (missed)" if conv.due_at <= now else ""
            due = f" · answer due {_when(conv.due_at, zone)}{late}"
        subject = f" · {conv.subject}" if conv.subject else ""
        lines.append(
            f"  #{conv.id} {conv.channel} {conv.status} · {conv.assignee or 'nobody yet'}"
            f"{due}{subject}"
        )
    lines.append(f"reminders: {len(card.reminders)}")
    lines += [
        f"  {_when(r.due_at, zone)} {r.manager or '—'}: {' '.join(r.text.split())[:200]}"
        for r in card.reminders
    ]
    return lines


def _card(args: argparse.Namespace) -> int:
    from storage import read

    zone = ZoneInfo(config_module.load(config_module.resolve_path(args.config)).hub.timezone)

    async def show(book: ClientBook) -> str | None:
        async with book.db.read() as conn:
            card = await read.client_card(conn, args.client_id)
            if card is None:
                return None
            timeline = await read.timeline(conn, args.client_id, last=args.last)
        lines = [*card_lines(card, zone, book.clock.now()), ""]
        for item in timeline:
            text = " ".join(item.text.split())[:200]
            lines.append(f"{_when(item.at, zone)} {item.direction:5} {item.channel or '':8} {text}")
        return "\n".join(lines)

    shown = _with_book(args, show)
    if shown is None:
        print(f"hub card: no client #{args.client_id}", file=sys.stderr)
        return 1
    print(shown)
    return 0


def _with_privacy(
    args: argparse.Namespace,
    work: Callable[[Privacy], Awaitable[T]],
    erase_spool: EraseSpool | None = None,
) -> T:
    from storage import Database
    from storage.migrate import upgrade

    config = config_module.load(config_module.resolve_path(args.config))
    spool = config.email.spool

    def erase_mail(addresses: list[str]) -> int:
        return erase_spool(spool, addresses) if erase_spool is not None else 0

    async def run() -> T:
        db = Database(config.storage.url)
        try:
            await upgrade(db)
            files = AttachmentStore(
                config.storage.attachments_dir, config.storage.max_attachment_bytes
            )
            return await work(Privacy(db, SystemClock(), files, erase_mail=erase_mail))
        finally:
            await db.dispose()

    return asyncio.run(run())


def _client_export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if not out.parent.is_dir():
        print(f"hub client export: no folder {out.parent}", file=sys.stderr)
        return 2
    try:
        archive = _with_privacy(args, lambda p: p.export(args.client_id, out))
    except OSError as exc:
        print(f"hub client export: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    merged = f" (with #{', #'.join(map(str, archive.ids[1:]))} merged into it)"
    print(
        f"client #{archive.ids[0]}{merged if archive.ids[1:] else ''}: "
        f"{archive.entries} log entries, {archive.files} files -> {out}"
    )
    return 0


def _client_forget(args: argparse.Namespace, erase_spool: EraseSpool | None) -> int:
    actor = args.by or f"cli:{getpass.getuser()}"
    done = _with_privacy(
        args, lambda p: p.forget(args.client_id, actor=actor, reason=args.reason), erase_spool
    )
    counts = ", ".join(f"{n} {what}" for what, n in done.counts.items())
    others = f" and #{', #'.join(map(str, done.ids[1:]))}" if done.ids[1:] else ""
    print(f"client #{done.ids[0]}{others} forgotten: {counts}")
    print(f"files deleted: {done.files_deleted}; spooled mail deleted: {done.mail_deleted}")
    if done.telegram:
        print("the staff topic is deleted in Telegram by the running hub (queued)")
    return 0
