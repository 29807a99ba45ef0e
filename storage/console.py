"""The web console's rows: sign-in links, sessions, the cookies' key, first reads,
the inbox's page of requests and the marks the live feed polls."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import clients as clients_q
from storage.models import (
    ApiToken,
    ConsoleImport,
    ConsoleKey,
    ConsoleLink,
    ConsoleRead,
    ConsoleSession,
)
from storage.tables import clients, conversations, interactions, managers

links = cast(Table, ConsoleLink.__table__)
sessions = cast(Table, ConsoleSession.__table__)
keys = cast(Table, ConsoleKey.__table__)
reads = cast(Table, ConsoleRead.__table__)
api_tokens = cast(Table, ApiToken.__table__)


# -- the cookies' key ---------------------------------------------------------


async def signing_key(conn: AsyncConnection, fresh: str, now: datetime) -> str:
    """The key every instance signs cookies with: the oldest kept, ``fresh`` kept
    first when there is none (two instances starting together both read the oldest)."""
    found = (await conn.execute(select(keys.c.secret).order_by(keys.c.id).limit(1))).scalar()
    if found is not None:
        return str(found)
    await conn.execute(insert(keys).values(secret=fresh, created_at=now))
    return str((await conn.execute(select(keys.c.secret).order_by(keys.c.id).limit(1))).scalar())


# -- sign-in links --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkRow:
    id: int
    manager_id: int
    expires_at: datetime
    used_at: datetime | None


async def add_link(
    conn: AsyncConnection,
    *,
    manager_id: int,
    secret_hash: str,
    now: datetime,
    expires_at: datetime,
    sent_by: str,
) -> None:
    await conn.execute(
        insert(links).values(
            manager_id=manager_id,
            secret_hash=secret_hash,
            created_at=now,
            expires_at=expires_at,
            sent_by=sent_by,
        )
    )


async def link(conn: AsyncConnection, secret_hash: str) -> LinkRow | None:
    c = links.c
    row = (
        await conn.execute(
            select(c.id, c.manager_id, c.expires_at, c.used_at).where(c.secret_hash == secret_hash)
        )
    ).first()
    return LinkRow(*row) if row is not None else None


async def use_link(conn: AsyncConnection, link_id: int, now: datetime) -> bool:
    """True for the one caller that used the link while it was still good."""
    c = links.c
    done = await conn.execute(
        update(links)
        .where(c.id == link_id, c.used_at.is_(None), c.expires_at > now)
        .values(used_at=now)
    )
    return bool(done.rowcount)


async def links_since(conn: AsyncConnection, manager_id: int, since: datetime, sent_by: str) -> int:
    c = links.c
    found = await conn.execute(
        select(func.count())
        .select_from(links)
        .where(c.manager_id == manager_id, c.created_at >= since, c.sent_by == sent_by)
    )
    return int(found.scalar_one())


# -- people and sessions ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PersonRow:
    """A manager as the console sees them (the managers table follows the config)."""

    id: int
    name: str
    telegram_id: int
    email: str | None
    role: str
    attrs: dict[str, Any] | None
    active: bool


_PERSON = (
    managers.c.id,
    managers.c.name,
    managers.c.telegram_id,
    managers.c.email,
    managers.c.role,
    managers.c.attrs,
    managers.c.active,
)


async def person_by_name(conn: AsyncConnection, name: str) -> PersonRow | None:
    """The active manager of that name (a name may have been used by one removed)."""
    m = managers.c
    row = (
        await conn.execute(
            select(*_PERSON).where(m.name == name).order_by(m.active.desc(), m.id.desc()).limit(1)
        )
    ).first()
    return PersonRow(*row) if row is not None else None


async def person(conn: AsyncConnection, manager_id: int) -> PersonRow | None:
    row = (await conn.execute(select(*_PERSON).where(managers.c.id == manager_id))).first()
    return PersonRow(*row) if row is not None else None


async def people_by_email(conn: AsyncConnection, address: str) -> list[PersonRow]:
    """Active managers registered with that address (compared without case)."""
    m = managers.c
    rows = await conn.execute(
        select(*_PERSON).where(func.lower(m.email) == address.lower(), m.active.is_(True))
    )
    return [PersonRow(*r) for r in rows]


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: int
    created_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None
    person: PersonRow
    token_revoked_at: datetime | None  # the person's admin API token, revoked then


async def open_session(
    conn: AsyncConnection, *, secret_hash: str, manager_id: int, name: str, now: datetime
) -> int:
    done = await conn.execute(
        insert(sessions)
        .values(
            secret_hash=secret_hash,
            manager_id=manager_id,
            name=name,
            created_at=now,
            last_seen_at=now,
        )
        .returning(sessions.c.id)
    )
    return int(done.scalar_one())


async def session(conn: AsyncConnection, secret_hash: str) -> SessionRow | None:
    """The session with the person signed in and when their API token was revoked,
    in one statement."""
    s, t = sessions.c, api_tokens.c
    row = (
        await conn.execute(
            select(s.id, s.created_at, s.last_seen_at, s.ended_at, *_PERSON, t.revoked_at)
            .join_from(sessions, managers, managers.c.id == s.manager_id)
            .join(api_tokens, t.name == managers.c.name, isouter=True)
            .where(s.secret_hash == secret_hash)
        )
    ).first()
    if row is None:
        return None
    return SessionRow(*row[:4], PersonRow(*row[4:11]), row[11])


async def touch_session(conn: AsyncConnection, session_id: int, now: datetime) -> None:
    await conn.execute(update(sessions).where(sessions.c.id == session_id).values(last_seen_at=now))


async def end_session(conn: AsyncConnection, session_id: int, now: datetime) -> None:
    s = sessions.c
    await conn.execute(
        update(sessions).where(s.id == session_id, s.ended_at.is_(None)).values(ended_at=now)
    )


async def first_read(conn: AsyncConnection, session_id: int, client_id: int) -> bool:
    """Note that the session read the client: True the first time."""
    values = {"session_id": session_id, "client_id": client_id}
    statement: Any
    if conn.dialect.name == "postgresql":
        statement = postgresql.insert(reads).values(values).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(reads).values(values).on_conflict_do_nothing()
    done = await conn.execute(statement)
    return bool(done.rowcount)


# -- the inbox --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboxFilter:
    statuses: tuple[str, ...]
    channel: str | None = None
    assignee: int | None = None  # this manager's
    unassigned: bool = False
    overdue_before: datetime | None = None  # due before then
    due_between: tuple[datetime, datetime] | None = None
    visible_to: tuple[int, ...] | None = None  # kept by these managers (or by nobody)


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: int
    client_id: int
    client_name: str | None
    channel: str
    status: str
    assignee: str | None
    created_at: datetime
    updated_at: datetime
    due_at: datetime | None
    last_text: str | None


def _where(f: InboxFilter) -> list[Any]:
    c, cl = conversations.c, clients.c
    where: list[Any] = [c.status.in_(f.statuses)]
    if f.channel is not None:
        where.append(c.channel == f.channel)
    if f.assignee is not None:
        where.append(c.assignee_id == f.assignee)
    if f.unassigned:
        where.append(c.assignee_id.is_(None))
    if f.overdue_before is not None:
        where.append(c.due_at < f.overdue_before)
    if f.due_between is not None:
        where.append(c.due_at >= f.due_between[0])
        where.append(c.due_at < f.due_between[1])
    if f.visible_to is not None:  # the desk's rule, not one of the inbox's own
        where.append(clients_q.kept_by(c.client_id, cl.owner_id, f.visible_to))
    return where


async def inbox_page(
    conn: AsyncConnection, where: InboxFilter, *, limit: int, offset: int
) -> list[InboxRow]:
    """Requests matching ``where``, newest first; ``limit`` rows from ``offset``."""
    c, cl, i = conversations.c, clients.c, interactions.c
    last_text = (
        select(i.text)
        .where(i.conversation_id == c.id, i.direction == "in")
        .order_by(i.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = await conn.execute(
        select(
            c.id,
            c.client_id,
            cl.name,
            c.channel,
            c.status,
            managers.c.name,
            c.created_at,
            c.updated_at,
            c.due_at,
            last_text,
        )
        .join_from(conversations, clients, cl.id == c.client_id)
        .join(managers, managers.c.id == c.assignee_id, isouter=True)
        .where(*_where(where))
        .order_by(c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [InboxRow(*cast(tuple[Any, ...], r)) for r in rows]


async def team_ids(conn: AsyncConnection, team: str | None) -> list[int]:
    """The managers of ``team`` (those without a team are one team), gone ones too: a
    client they still keep stays their team's, as the desk sees it."""
    m = managers.c
    rows = await conn.execute(select(m.id, m.attrs))
    return [int(mid) for mid, attrs in rows if (attrs or {}).get("team") == team]


# -- the live feed ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Marks:
    """The log's newest message, the newest request and the newest change of one."""

    interaction: int | None
    conversation: int | None
    changed_at: datetime | None


async def marks(conn: AsyncConnection) -> Marks:
    """Three index lookups in one statement."""
    row = (
        await conn.execute(
            select(
                select(func.max(interactions.c.id)).scalar_subquery(),
                select(func.max(conversations.c.id)).scalar_subquery(),
                select(func.max(conversations.c.updated_at)).scalar_subquery(),
            )
        )
    ).one()
    return Marks(*row)


# -- CSV imports ------------------------------------------------------------------------

imports = cast(Table, ConsoleImport.__table__)


@dataclass(frozen=True, slots=True)
class ImportRow:
    id: str
    manager_id: int
    file: str
    state: str  # running, done, failed
    report: dict[str, Any] | None
    started_at: datetime


async def import_started(
    conn: AsyncConnection,
    job_id: str,
    manager_id: int,
    file: str,
    now: datetime,
    *,
    keep_since: datetime | None = None,
) -> None:
    """A new import's row; the rows of imports started before ``keep_since`` go (their
    reports may quote what the rows held: kept for their page, not for ever)."""
    if keep_since is not None:
        await conn.execute(delete(imports).where(imports.c.started_at < keep_since))
    values = {"id": job_id, "manager_id": manager_id, "file": file[:200], "state": "running"}
    await conn.execute(insert(imports).values(**values, started_at=now))


async def import_finished(
    conn: AsyncConnection, job_id: str, report: dict[str, Any] | None, now: datetime
) -> None:
    """The import done (its report) or, without one, failed."""
    state = "done" if report is not None else "failed"
    changed = {"state": state, "report": report, "finished_at": now}
    await conn.execute(update(imports).where(imports.c.id == job_id).values(**changed))


async def import_of(conn: AsyncConnection, job_id: str) -> ImportRow | None:
    i = imports.c
    query = select(i.id, i.manager_id, i.file, i.state, i.report, i.started_at)
    row = (await conn.execute(query.where(i.id == job_id))).first()
    return ImportRow(*row) if row is not None else None
