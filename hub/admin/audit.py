"""The audit log, read: ``GET /api/audit`` and the filters and lines of ``hub audit``.

Filters: ``actor`` (who: ``api:NAME``, ``telegram:ID``, ``cli``), ``action`` (what:
``read``, ``merge``, ``refused``…), ``client`` (entries about that client),
``since`` and ``until`` (ISO 8601: a date is that day in UTC, ``until`` taking
the whole day; a time with no offset is UTC), ``limit`` (1 to 1,000, default
100) and ``offset``. Newest first.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, time, timedelta

from aiohttp import web

from hub.kernel.http import BadParameter, decimal, json_response
from storage import Database
from storage.audit import AuditEntry, AuditFilter, entries

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
_MAX_TEXT = 200


def when(raw: str, name: str, *, end: bool = False) -> datetime:
    """``raw`` (ISO 8601 date or time) as a UTC time; ``end``: a date stands for the
    start of the next day, so that ``until=2026-12-07`` takes that whole day."""
    raw = raw.strip()
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime.combine(day + timedelta(days=int(end)), time(), UTC)
        moment = datetime.fromisoformat(raw)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except ValueError:
        raise BadParameter(
            f"{name}: an ISO 8601 date or time, e.g. 2026-12-07 or 2026-12-07T10:00+03:00 "
            f"(got {raw[:40]!r})"
        ) from None
    except OverflowError:  # the day after 9999-12-31, or year 1 moved to UTC
        raise BadParameter(f"{name}: out of the calendar's range (got {raw[:40]!r})") from None


def _text(raw: str | None, name: str) -> str | None:
    if raw is None or raw == "":
        return None
    if len(raw) > _MAX_TEXT:
        raise BadParameter(f"{name}: longer than {_MAX_TEXT} characters")
    if not raw.isprintable():  # a NUL or a control character: no actor or action has one
        raise BadParameter(f"{name}: control characters are not allowed")
    return raw


def audit_filter(
    *,
    actor: str | None = None,
    action: str | None = None,
    client: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> AuditFilter:
    """The filter from its raw values (a query's or a command line's); BadParameter
    naming the first bad one."""
    where = AuditFilter(
        actor=_text(actor, "actor"),
        action=_text(action, "action"),
        client_id=decimal(client, "client") if client else None,
        since=when(since, "since") if since else None,
        until=when(until, "until", end=True) if until else None,
    )
    if where.since and where.until and where.since >= where.until:
        raise BadParameter("since: must come before until")
    return where


def paging(limit: str | None, offset: str | None) -> tuple[int, int]:
    return (
        decimal(limit, "limit", high=MAX_LIMIT) if limit else DEFAULT_LIMIT,
        decimal(offset, "offset", low=0) if offset else 0,
    )


async def read(db: Database, where: AuditFilter, limit: int, offset: int) -> list[AuditEntry]:
    async with db.read() as conn:
        return await entries(conn, where, limit=limit, offset=offset)


def line(entry: AuditEntry) -> str:
    """One entry on one line: when (UTC), who, what, about what, details."""
    about = f"{entry.object_type} #{entry.object_id}" if entry.object_type else "-"
    if entry.object_type and entry.object_id is None:
        about = entry.object_type
    details = json.dumps(entry.details, ensure_ascii=False) if entry.details else ""
    fields = (entry.actor, entry.action, about)
    shown = "  ".join(" ".join(f.split()) for f in fields)
    return f"{entry.at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z  {shown}  {details}".rstrip()


def add_routes(app: web.Application, db: Database) -> None:
    async def handler(request: web.Request) -> web.Response:
        query = request.query
        where = audit_filter(
            actor=query.get("actor"),
            action=query.get("action"),
            client=query.get("client"),
            since=query.get("since"),
            until=query.get("until"),
        )
        limit, offset = paging(query.get("limit"), query.get("offset"))
        found = await read(db, where, limit, offset)
        return json_response([dataclasses.asdict(e) for e in found])

    app.router.add_get("/api/audit", handler)
