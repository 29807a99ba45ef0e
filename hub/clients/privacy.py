"""A person's rights over their data (152-FZ, GDPR): everything held on them as one
archive, erasure on request, and retention (bodies and files past a given age).

Erasure keeps every row (reports still count the messages) and replaces what the
person said or is called by a tombstone, here and in the traces elsewhere: the
search index, the mail spool, the outbox, the audit's search terms, and the staff
chats in Telegram (an outbox row of kind ``erase`` that the running hub's staff
side carries out). Backups and what was already sent to other systems are out of
its reach. A forgotten person who writes again has no identity left to be found
by, and so becomes a new client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hub.clients.attachments import AttachmentStore
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.errors import HubError
from hub.kernel.types import STAFF_KINDS
from storage import Database
from storage import desk as desk_q
from storage import privacy as q
from storage.db import in_memory

log = loggers.core

TOMBSTONE = q.TOMBSTONE
# What the log's extras keep through an erasure: bookkeeping the reports and
# campaigns read, never what a person said or is called.
KEPT_EXTRAS = frozenset(
    {
        "stage_move",
        "campaign",
        "variant",
        "call_task",
        "outcome",
        "opt_out",
        "auto",
        "service",
        "confirmation",
        "consent",
        "command",
    }
)
ERASE_KIND = "erase"  # the staff side deletes the topics and messages it lists
_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)

EraseMail = Callable[[list[str]], int]  # email addresses -> spooled messages deleted


class PrivacyError(HubError):
    """An export or erasure that cannot be done, with the reason."""


@dataclass(frozen=True, slots=True)
class Archive:
    """What an export wrote: the records it covers and how much."""

    ids: list[int]
    entries: int
    files: int


@dataclass
class Forgotten:
    """What an erasure did: the records, rows changed by table, and the traces."""

    ids: list[int]
    counts: dict[str, int] = field(default_factory=dict)
    files_deleted: int = 0
    mail_deleted: int = 0
    telegram: bool = False


class Privacy:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        files: AttachmentStore,
        *,
        erase_mail: EraseMail | None = None,
        staff_channel: str = "telegram",
    ) -> None:
        self.db = db
        self.clock = clock
        self.files = files
        self.erase_mail = erase_mail
        self.staff_channel = staff_channel

    # -- export ---------------------------------------------------------------------

    async def export(self, client_id: int, out: Path) -> Archive:
        """A zip at ``out``: ``client.json`` (the record, the records merged into it,
        identities, conversations, the whole log with its attachments, reminders)
        and the attachment files under ``attachments/``."""
        async with self.db.read() as conn:
            ids = await q.family(conn, client_id)
            if ids is None:
                raise PrivacyError(f"no client #{client_id}")
            data = await q.export(conn, ids)
        data = {"exported_at": self.clock.now().isoformat(), "client_id": ids[0], **data}
        files = 0
        for entry in data["timeline"]:
            for item in entry["attachments"]:
                if item["sha256"]:
                    item["file"] = f"attachments/{item['id']}-{_safe(item['filename'])}"
                    files += 1
        await asyncio.to_thread(self._write_zip, data, out)
        loggers.event(log, "privacy.exported", client=ids[0], entries=len(data["timeline"]))
        return Archive(ids, len(data["timeline"]), files)

    def _write_zip(self, data: dict[str, Any], out: Path) -> None:
        temp = out.with_name(f".{out.name}.tmp")
        try:
            with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                body = json.dumps(data, ensure_ascii=False, indent=2, default=str)
                archive.writestr("client.json", body)
                for entry in data["timeline"]:
                    for item in entry["attachments"]:
                        if "file" in item:
                            archive.write(self.files.path(item["sha256"]), item["file"])
            temp.replace(out)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise

    # -- erasure on request ---------------------------------------------------------

    async def forget(self, client_id: int, *, actor: str, reason: str) -> Forgotten:
        """Erase the person of ``client_id`` (the record merges lead to, and every
        record merged into it), with their traces; audited with ``actor`` and ``reason``."""
        if not reason.strip():
            raise PrivacyError("a reason is needed (it goes in the audit log)")
        now = self.clock.now()
        async with self.db.write() as conn:
            ids = await q.family(conn, client_id)
            if ids is None:
                raise PrivacyError(f"no client #{client_id}")
            person = await q.person(conn, ids)
            erasure = await q.record_erasure(
                conn, {"at": now, "actor": actor, "reason": reason, "client_id": ids[0]}
            )
            erased = await q.forget(
                conn, ids, now=now, keep_extras=KEPT_EXTRAS, staff_kinds=STAFF_KINDS
            )
            audited = await q.scrub_audit(conn, _naming(person), ids)
            telegram = bool(erased.topics or erased.private)
            if telegram:
                await desk_q.enqueue(conn, self._erase_row(erasure, erased, now))
            counts = {**erased.counts, "audit": audited}
            await desk_q.audit(conn, _audit_row(actor, reason, ids, counts, now))
            await q.purge_index(conn)
        done = Forgotten(ids, counts, telegram=telegram)
        done.files_deleted = await asyncio.to_thread(self._delete_files, erased.files)
        emails = [v for kind, v in person.identities if kind == "email"]
        if self.erase_mail is not None and emails:
            done.mail_deleted = await asyncio.to_thread(self.erase_mail, emails)
        await self._checkpoint()
        loggers.event(log, "privacy.forgotten", client=ids[0], records=len(ids), actor=actor)
        return done

    def _erase_row(self, erasure: int, erased: q.Erased, now: datetime) -> dict[str, Any]:
        """The outbox row the staff side deletes the person's topics and messages by."""
        return {
            "idempotency_key": f"erase:{erasure}",
            "channel": self.staff_channel,
            "account": "staff",
            "recipient": "staff",
            "kind": ERASE_KIND,
            "text": "",
            "extras": {
                "topics": [list(t) for t in erased.topics],
                "messages": [list(m) for m in erased.private],
            },
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }

    def _delete_files(self, digests: Iterable[str]) -> int:
        deleted = 0
        for digest in digests:
            with contextlib.suppress(FileNotFoundError):
                self.files.path(digest).unlink()
                deleted += 1
        return deleted

    async def _checkpoint(self) -> None:
        """SQLite: copy the erased pages into the database file and empty the WAL,
        so that the old text lingers in neither (a reader in another process may
        hold the WAL: then it goes at the next checkpoint)."""
        path = self.db.url.database
        if self.db.is_sqlite and path and not in_memory(str(self.db.url)):
            await asyncio.to_thread(_checkpoint, path)

    # -- retention ------------------------------------------------------------------

    async def retain(self, keep_days: int, *, batch: int = 2000) -> int:
        """Erase the message bodies and files logged more than ``keep_days`` ago;
        how many messages. In batches, each its own transaction."""
        cutoff = self.clock.now() - timedelta(days=keep_days)
        async with self.db.read() as conn:
            if not await q.pending_before(conn, cutoff):
                return 0
        total, erasure = 0, False
        while True:
            async with self.db.write() as conn:
                if not erasure:
                    await q.record_erasure(conn, _retention(keep_days, cutoff, self.clock.now()))
                    erasure = True
                erased = await q.erase_before(conn, cutoff, KEPT_EXTRAS, limit=batch)
            await asyncio.to_thread(self._delete_files, erased.files)
            done = erased.counts.get("interactions", 0)
            total += done
            if done < batch:
                break
        loggers.event(log, "privacy.retained", erased=total, keep_days=keep_days)
        return total


def _checkpoint(path: str) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def _retention(keep_days: int, cutoff: datetime, now: datetime) -> dict[str, Any]:
    return {
        "at": now,
        "actor": "retention",
        "reason": f"privacy.keep_days = {keep_days}",
        "before": cutoff,
    }


def _audit_row(
    actor: str, reason: str, ids: list[int], counts: dict[str, int], now: datetime
) -> dict[str, Any]:
    return {
        "at": now,
        "actor": actor,
        "action": "forget",
        "object_type": "client",
        "object_id": ids[0],
        "details": {"reason": reason, "clients": ids, "erased": counts},
    }


def _safe(name: str) -> str:
    """A file name safe inside an archive (no folders, no odd characters)."""
    cleaned = _UNSAFE.sub("_", name).strip("._")[:100]
    return cleaned or "file"


def _naming(person: q.Person) -> Callable[[str], bool]:
    """Whether a string (a search someone typed, say) names the person: their full
    name, a word of it of four letters or more, an identity, a phone's digits."""
    words: set[str] = set()
    for name in [*person.names, *person.display_names]:
        words.add(name.casefold().strip())
        words.update(w for w in re.findall(r"\w+", name.casefold()) if len(w) >= 4)
    digits: set[str] = set()
    for kind, value in person.identities:
        words.add(value.casefold())
        if kind == "email":
            local = value.split("@", 1)[0].casefold()
            if len(local) >= 4:
                words.add(local)
        only = re.sub(r"\D", "", value)
        if kind in ("phone", "telegram") and len(only) >= 5:
            digits.add(only[-10:])
    words.discard("")

    def names(text: str) -> bool:
        folded = text.casefold()
        if any(w in folded for w in words):
            return True
        only = re.sub(r"\D", "", text)
        return bool(only) and any(d in only for d in digits)

    return names
