"""One clean record per client: merge and unmerge, duplicate suggestions, the
stage rule, and CSV import and export.

Clients are linked automatically only on exact identities (ingest does that:
the same email, E.164 phone or Telegram id is the same client). Everything
fuzzier — similar names, the same phone written another way — is only
*suggested*; a person merges, and a merge can be undone: it records every row
it moved, and the unmerge moves exactly those back, so no interaction is lost
or left with the wrong client.
"""

from __future__ import annotations

import asyncio
import csv
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TextIO

from rapidfuzz import fuzz

from hub.clients.stage_rules import StageRules, after_tags, day_start
from hub.clients.stages import Move, apply
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.errors import HubError
from hub.kernel.identities import TELEGRAM_HINT, InvalidIdentity, identity, telegram_username
from hub.kernel.types import LAPSED, STAGES, Direction
from storage import Database
from storage import clients as q
from storage import desk as desk_q
from storage import webhooks as webhooks_q

log = loggers.core

STANDARD_COLUMNS = ("name", "email", "phone", "telegram", "stage", "tags", "source", "language")


class ClientError(HubError):
    """A merge or unmerge that cannot be done, with the reason."""


@dataclass(frozen=True, slots=True)
class Suggestion:
    """Two client records that may be one person; never merged without a person."""

    a: int
    b: int
    score: float
    reason: str


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0  # matched a client and told it nothing new
    errors: list[tuple[int, str]] = field(default_factory=list)  # (row number, problem)


def _merged(keep: int, other: int, merge_id: int, now: datetime) -> webhooks_q.Emitted:
    """The outgoing event of a merge: ``other`` went into ``keep``."""
    data = {"client_id": keep, "merged_id": other, "merge_id": merge_id}
    return webhooks_q.Emitted("client.merged", keep, now, data)


class ClientBook:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        region: str = "RU",
        stage_rules: Callable[[], StageRules] | None = None,
    ) -> None:
        """``stage_rules``: the rules in force (a reload changes them), for the
        tags an import adds."""
        self.db = db
        self.clock = clock
        self.region = region
        self.stage_rules = stage_rules or StageRules

    # -- merge and unmerge ------------------------------------------------------------

    async def merge(self, keep: int, other: int, *, actor: str) -> int:
        """Move everything of ``other`` to ``keep``; returns the merge's id."""
        if keep == other:
            raise ClientError("a client cannot be merged into itself")
        now = self.clock.now()
        async with self.db.write() as conn:
            kept, gone = await q.record(conn, keep), await q.record(conn, other)
            if kept is None or gone is None:
                raise ClientError(f"no client #{keep if kept is None else other}")
            if kept.merged_into is not None or gone.merged_into is not None:
                raise ClientError("one of the clients is already merged into another")
            moved: dict[str, Any] = dict(await q.move_rows(conn, other, keep))
            topic = await q.topic_row(conn, other)
            if topic is not None:
                await q.drop_topic(conn, other)
                moved["topic"] = {**topic, "created_at": topic["created_at"].isoformat()}
            moved["kept_before"] = {
                "name": kept.name,
                "tags": kept.tags,
                "custom": kept.custom,
                "owner_id": kept.owner_id,
                "source": kept.source,
                "language": kept.language,
            }
            await q.update_client(
                conn,
                keep,
                {
                    # A client with no address ("unknown sender, MAILBOX") lends no name.
                    "name": kept.name or (gone.name if moved["identities"] else None),
                    "tags": list(dict.fromkeys([*kept.tags, *gone.tags])) or None,
                    "custom": {**gone.custom, **kept.custom} or None,
                    "owner_id": kept.owner_id or gone.owner_id,
                    "source": kept.source or gone.source,
                    "language": kept.language or gone.language,
                    "updated_at": now,
                },
            )
            await q.update_client(conn, other, {"merged_into": keep, "updated_at": now})
            merge_id = await q.add_merge(
                conn,
                {"kept_id": keep, "merged_id": other, "actor": actor, "moved": moved, "at": now},
            )
            label = gone.name or f"#{other}"
            await self._event(conn, keep, f"merged: {label} (#{other}) into #{keep}", actor, now)
            await webhooks_q.emit(conn, [_merged(keep, other, merge_id, now)], now)
            await desk_q.audit(
                conn,
                {
                    "at": now,
                    "actor": actor,
                    "action": "merge",
                    "object_type": "client",
                    "object_id": keep,
                    "details": {"merged": other, "merge": merge_id},
                },
            )
        loggers.event(log, "clients.merged", kept=keep, merged=other, merge=merge_id)
        return merge_id

    async def unmerge(self, merge_id: int, *, actor: str) -> tuple[int, int]:
        """Undo a merge: every row it moved goes back. Returns (kept, restored)."""
        now = self.clock.now()
        async with self.db.write() as conn:
            row = await q.merge_row(conn, merge_id)
            if row is None:
                raise ClientError(f"no merge #{merge_id}")
            if row["undone_at"] is not None:
                raise ClientError(f"merge #{merge_id} was undone already")
            keep, other = int(row["kept_id"]), int(row["merged_id"])
            moved: dict[str, Any] = dict(row["moved"] or {})
            before = moved.pop("kept_before", {})
            topic = moved.pop("topic", None)
            await q.move_back(conn, {k: list(v) for k, v in moved.items()}, other)
            if topic is not None:
                topic["created_at"] = datetime.fromisoformat(topic["created_at"])
                await q.put_topic(conn, topic)
            await q.update_client(conn, keep, {**before, "updated_at": now})
            await q.update_client(conn, other, {"merged_into": None, "updated_at": now})
            await q.undo_merge(conn, merge_id, now)
            text = f"unmerged: #{other} from #{keep} (merge #{merge_id} undone)"
            for client_id in (keep, other):
                await self._event(conn, client_id, text, actor, now)
            await desk_q.audit(
                conn,
                {
                    "at": now,
                    "actor": actor,
                    "action": "unmerge",
                    "object_type": "client",
                    "object_id": keep,
                    "details": {"restored": other, "merge": merge_id},
                },
            )
        loggers.event(log, "clients.unmerged", kept=keep, restored=other, merge=merge_id)
        return keep, other

    # -- duplicates --------------------------------------------------------------------------

    async def duplicates(self, *, threshold: float = 88.0, limit: int = 200) -> list[Suggestion]:
        """Probable duplicates: similar names (token order and case aside), and
        the same phone number written in other formats."""
        async with self.db.read() as conn:
            named = await q.names(conn)
            phones = await q.phones(conn)
        found: dict[tuple[int, int], Suggestion] = {}
        by_tail: dict[str, set[int]] = defaultdict(set)
        for client_id, value in phones:
            digits = re.sub(r"\D", "", value)
            if len(digits) >= 10:
                by_tail[digits[-10:]].add(client_id)
        for tail, ids in by_tail.items():
            ordered = sorted(ids)
            for i, a in enumerate(ordered):
                for b in ordered[i + 1 :]:
                    found[(a, b)] = Suggestion(a, b, 100.0, f"same phone …{tail[-4:]}")
        # Comparing names is CPU work: off the event loop.
        for a, b, score in await asyncio.to_thread(_similar_names, named, threshold):
            if (a, b) not in found:
                found[(a, b)] = Suggestion(a, b, round(score, 1), "similar names")
        ranked = sorted(found.values(), key=lambda s: (-s.score, s.a, s.b))
        return ranked[:limit]

    # -- the stage rule ----------------------------------------------------------------------

    async def lapse(self, days: int, *, limit: int = 1000, timezone: str = "UTC") -> int:
        """Clients with no message either way for ``days`` days become lapsed (the
        stage they leave kept for their return), but for those whose stage a
        person set today (in ``timezone``)."""
        now = self.clock.now()
        why = f"no contact for {days} days"
        async with self.db.write() as conn:
            quiet = await q.quiet_since(
                conn,
                now - timedelta(days=days),
                [LAPSED],
                limit,
                by_hand_before=day_start(now, timezone),
            )
            moves = [Move(cid, stage, LAPSED, "rule", why, by_hand=False) for cid, stage in quiet]
            await conn.run_sync(apply, moves, now)
        if quiet:
            loggers.event(log, "clients.lapsed", count=len(quiet), days=days)
        return len(quiet)

    # -- import and export -------------------------------------------------------------------

    async def import_csv(
        self, source: TextIO, *, progress: Callable[[int, int], None] | None = None
    ) -> ImportReport:
        """Read every row first; then add the good ones in ONE transaction (nothing
        half-imported), matching existing clients by email, phone or Telegram id."""
        report = ImportReport()
        # Reading and checking every row (phone numbers too) is CPU work: off the loop.
        rows = await asyncio.to_thread(self._read, source, report)
        now = self.clock.now()
        async with self.db.write() as conn:
            existing = await _holders(conn, [p for _, _, pairs in rows for p in pairs])
            seen: dict[tuple[str, str], int] = {}
            tagged: dict[int, set[str]] = {}  # client -> the tags the import gave them
            for done, (number, fields, pairs) in enumerate(rows, start=1):
                owners = {existing[p] for p in pairs if p in existing} | {
                    seen[p] for p in pairs if p in seen
                }
                if len(owners) > 1:
                    report.errors.append(
                        (number, "its identities belong to different clients: merge them first")
                    )
                    continue
                new = [p for p in pairs if p not in existing and p not in seen]
                if owners:
                    client_id = owners.pop()
                    added = await self._update(conn, client_id, fields, now)
                    if added is not None or new:
                        report.updated += 1
                    else:
                        report.unchanged += 1
                else:
                    client_id = await q.new_client(conn, {**fields, "created_at": now})
                    report.added += 1
                    added = set(fields["tags"] or ())
                if added:
                    tagged.setdefault(client_id, set()).update(added)
                await q.add_identities(
                    conn,
                    [
                        {"client_id": client_id, "kind": k, "value": v, "created_at": now}
                        for k, v in new
                    ],
                )
                for p in pairs:
                    seen[p] = client_id
                if progress is not None:
                    progress(done, len(rows))
            await after_tags(conn, self.stage_rules(), tagged, now)
        report.errors.sort()
        loggers.event(
            log,
            "clients.imported",
            added=report.added,
            updated=report.updated,
            unchanged=report.unchanged,
            refused=len(report.errors),
        )
        return report

    def _read(
        self, source: TextIO, report: ImportReport
    ) -> list[tuple[int, dict[str, Any], list[tuple[str, str]]]]:
        """The good rows, numbered as in the file; the others go to ``report``."""
        reader = csv.DictReader(source)
        rows: list[tuple[int, dict[str, Any], list[tuple[str, str]]]] = []
        try:
            if reader.fieldnames is None:
                report.errors.append((1, "empty file: a header row (name,email,phone,…) is needed"))
                return []
            header = [h.strip().lower() for h in reader.fieldnames]
            if not {"email", "phone", "telegram"} & set(header):
                report.errors.append((1, "a column email, phone or telegram is needed"))
                return []
            for number, raw in enumerate(reader, start=2):
                values = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
                parsed = self._row(values)
                if isinstance(parsed, str):
                    report.errors.append((number, parsed))
                else:
                    rows.append((number, *parsed))
        except (csv.Error, UnicodeDecodeError) as exc:  # the rest is no CSV (or no UTF-8)
            report.errors.append((max(reader.line_num, 1), f"not CSV from here on: {exc}"))
        return rows

    def _identities(self, values: dict[str, str], problems: list[str]) -> list[tuple[str, str]]:
        """The row's identities, normalized; each bad one a problem. A Telegram
        ``@username`` is kept as a hint until that person writes."""
        pairs: list[tuple[str, str]] = []
        for kind in ("email", "phone", "telegram"):
            value = values.get(kind, "")
            try:
                if kind == "telegram" and value.startswith("@"):
                    pairs.append((TELEGRAM_HINT, telegram_username(value)))
                elif value:
                    found = identity(kind, value, default_region=self.region)
                    pairs.append((found.kind.value, found.value))
            except (InvalidIdentity, ValueError) as exc:
                problems.append(f"{kind}: {exc}")
        if not pairs and not problems:
            problems.append("no email, phone or Telegram id: nothing to know the client by")
        return pairs

    def _row(self, values: dict[str, str]) -> tuple[dict[str, Any], list[tuple[str, str]]] | str:
        """The client's fields and identities, or every problem of the row in one line."""
        problems: list[str] = []
        pairs = self._identities(values, problems)
        stage = values.get("stage", "").lower().replace(" ", "_") or None
        if stage is not None and stage not in STAGES:
            problems.append(
                f"stage: unknown stage {values['stage']!r} (one of {', '.join(STAGES)})"
            )
        name = values.get("name") or None
        if name is not None and len(name) > 300:
            problems.append("name: longer than 300 characters")
        if problems:
            return "; ".join(problems)
        tags = [t.strip() for t in re.split(r"[;,]", values.get("tags", "")) if t.strip()]
        custom = {k: v for k, v in values.items() if k not in STANDARD_COLUMNS and v}
        fields: dict[str, Any] = {
            "name": name,
            "stage": stage,
            "tags": tags or None,
            "source": values.get("source") or "import",
            "language": values.get("language") or None,
            "custom": custom or None,
        }
        return fields, pairs

    async def _update(
        self, conn: Any, client_id: int, fields: dict[str, Any], now: datetime
    ) -> set[str] | None:
        """Fill what the record lacks; never overwrite what is there. The tags it
        added when it changed anything, else None."""
        current = await q.record(conn, client_id)
        if current is None:
            return None
        values: dict[str, Any] = {}
        if fields["name"] and not current.name:
            values["name"] = fields["name"]
        tags = list(dict.fromkeys([*current.tags, *(fields["tags"] or [])]))
        if tags != list(current.tags):
            values["tags"] = tags
        custom = {**(fields["custom"] or {}), **current.custom}
        if custom != current.custom:
            values["custom"] = custom
        if fields["language"] and not current.language:
            values["language"] = fields["language"]
        if not values:
            return None
        await q.update_client(conn, client_id, {**values, "updated_at": now})
        return set(tags) - set(current.tags)

    async def export_csv(self, out: TextIO) -> int:
        """Every client as a CSV row (custom fields as their own columns), written in a
        thread: a whole client base is seconds of CPU the event loop cannot spare."""
        async with self.db.read() as conn:
            rows = await q.export_rows(conn)
        await asyncio.to_thread(_write_export, rows, out)
        return len(rows)

    async def _event(self, conn: Any, client_id: int, text: str, actor: str, now: datetime) -> None:
        await desk_q.event(
            conn,
            {
                "client_id": client_id,
                "direction": Direction.EVENT.value,
                "author": actor,
                "text": text,
                "at": now,
            },
        )


async def _holders(conn: Any, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The clients holding these identities; a username hint of somebody who has
    written already: that client."""
    existing = await q.owners_of(conn, wanted)
    hints = [v for k, v in wanted if k == TELEGRAM_HINT and (k, v) not in existing]
    for name, client_id in (await q.telegram_writers(conn, hints)).items():
        existing[(TELEGRAM_HINT, name)] = client_id
    return existing


def _normal(name: str) -> str:
    text = unicodedata.normalize("NFKC", name).casefold().replace("ё", "е")
    return " ".join(sorted(re.findall(r"\w+", text)))


def _similar_names(
    named: Iterable[tuple[int, str]], threshold: float
) -> list[tuple[int, int, float]]:
    """Pairs of similar names, compared only within blocks that share a word's
    first three letters (so 100,000 clients are not 10^10 comparisons)."""
    normal = {cid: _normal(name) for cid, name in named}
    blocks: dict[str, list[int]] = defaultdict(list)
    for cid, text in normal.items():
        for word in set(text.split()):
            if len(word) >= 2:
                blocks[word[:3]].append(cid)
    pairs: dict[tuple[int, int], float] = {}
    for ids in blocks.values():
        if len(ids) < 2 or len(ids) > 2000:
            continue
        ids.sort()
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                if (a, b) in pairs:
                    continue
                score = fuzz.token_sort_ratio(normal[a], normal[b])
                if score >= threshold:
                    pairs[(a, b)] = score
    return [(a, b, s) for (a, b), s in pairs.items()]


def report_text(report: ImportReport) -> str:
    lines = [
        f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}, "
        f"refused {len(report.errors)}"
    ]
    lines += [f"row {n}: {problem}" for n, problem in report.errors]
    return "\n".join(lines)


def _write_export(rows: Sequence[Any], out: TextIO) -> None:
    custom = sorted({k for r in rows for k in (r["custom"] or {})} - set(STANDARD_COLUMNS))
    columns = ["id", *STANDARD_COLUMNS, "owner", "created_at", *custom]
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        ident = r["identities"]
        writer.writerow(
            {
                "id": r["id"],
                "name": r["name"] or "",
                "email": ";".join(ident.get("email", [])),
                "phone": ";".join(ident.get("phone", [])),
                "telegram": ";".join(
                    [
                        *ident.get("telegram", []),
                        *(f"@{u}" for u in ident.get(TELEGRAM_HINT, [])),
                    ]
                ),
                "stage": r["stage"],
                "tags": ";".join(r["tags"] or []),
                "source": r["source"] or "",
                "language": r["language"] or "",
                "owner": r["owner"] or "",
                "created_at": r["created_at"].isoformat(),
                **{k: (r["custom"] or {}).get(k, "") for k in custom},
            }
        )
