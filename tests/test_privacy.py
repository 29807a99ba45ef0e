"""Personal data (issue 17): ``hub client export`` holds everything on a person;
``hub client forget`` leaves no trace of them in any table, the search index, the
mail spool or the outbox, keeps the reports' counts, queues the staff topic's
deletion, and the log's guard still refuses every other change; a forgotten
person who writes again is a new client; retention erases old bodies only."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import DBAPIError

from channels.email import spool as mail_spool
from channels.email.spool import MailSpool
from hub.app.cli import main
from hub.clients.attachments import AttachmentStore
from hub.clients.book import ClientBook
from hub.clients.privacy import TOMBSTONE, Privacy
from hub.clients.search import client_search
from hub.kernel.clock import FrozenClock
from hub.kernel.identities import identity
from hub.kernel.types import Attachment, Channel
from hub.reports.reporter import Reporter
from hub.reports.reports import period
from storage import Database
from storage import desk as desk_q
from storage import search as full_text
from storage.models import Base
from storage.read import search_clients
from storage.tables import (
    attachments,
    audit,
    identities,
    interactions,
    outbox,
    private_messages,
    ratings,
    topics,
)
from tests.botapi import BotApiServer, Limits
from tests.test_ingest import T0, message, running
from tests.test_telegram_staff import staff_desk

IVAN = identity("email", "ivan.petrov@example.com", "Иван Петров")
IVAN_TG = identity("telegram", 987654321, "Иван Петров")
BORIS = identity("email", "boris@example.org", "Boris")
# What must be gone once Ivan is forgotten, compared case-blind.
NEEDLES = ("иван", "петров", "ivan.petrov", "987654321", "zebraumbrella", "квазар")
PASSPORT = b"%PDF passport of the person"
SHARED = b"a file both people sent"


@dataclass
class World:
    ivan: int
    ivan_tg: int
    boris: int
    files: AttachmentStore
    spool: Path


async def _world(db: Database, tmp_path: Path) -> World:
    """Ivan by email (with files) and by Telegram (merged into one record), Boris,
    the staff's topic and private message about Ivan, searches for him in the
    audit, a reply still to go, and both people's mail in the spool."""
    files = AttachmentStore(tmp_path / "files", 10**6)
    async with running(db, tmp_path, staff="telegram", store=files) as ingest:
        first = message(
            Channel.EMAIL,
            "<m1@example.com>",
            IVAN,
            text="Мой паспорт zebraumbrella, квазар",
            attachments=(
                Attachment("Паспорт-Петров.pdf", "application/pdf", PASSPORT),
                Attachment("shared.txt", "text/plain", SHARED),
            ),
        )
        ivan = (await ingest(first)).client_id
        said = message(Channel.TELEGRAM, "987654321:5", IVAN_TG, text="zebraumbrella ещё раз")
        ivan_tg = (await ingest(said)).client_id
        said = message(
            Channel.EMAIL,
            "<m2@example.org>",
            BORIS,
            text="invoice please",
            attachments=(Attachment("shared.txt", "text/plain", SHARED),),
        )
        boris = (await ingest(said)).client_id
    await ClientBook(db, FrozenClock(T0)).merge(ivan, ivan_tg, actor="cli")
    await _staff_and_audit(db, ivan, boris)
    spool = tmp_path / "mail-spool.db"
    mail = MailSpool(spool)
    await mail.open()
    for sender in ("ivan.petrov@example.com", "boris@example.org"):
        raw = f"From: {sender}\r\nSubject: hi\r\n\r\nzebraumbrella from {sender}\r\n".encode()
        await mail.submit(raw, sender, ["desk@hub.example"], T0)
    await mail.close()
    if db.is_sqlite:
        async with db.write() as conn:
            await full_text.index_new(conn)
    return World(ivan, ivan_tg, boris, files, spool)


async def _staff_and_audit(db: Database, ivan: int, boris: int) -> None:
    async with db.write() as conn:
        await conn.execute(
            insert(topics).values(client_id=ivan, chat_id=-100, thread_id=77, created_at=T0)
        )
        await conn.execute(
            insert(private_messages).values(
                chat_id=555, message_id=9, entry=0, client_id=ivan, at=T0
            )
        )
        await conn.execute(
            insert(outbox).values(
                idempotency_key="reply:ivan",
                channel="email",
                account="desk",
                recipient="ivan.petrov@example.com",
                kind="reply",
                subject="Re: Петров",
                text="Иван Петров, ответ",
                client_id=ivan,
                status="pending",
                attempts=0,
                next_attempt_at=T0,
                created_at=T0,
            )
        )
        for query, shown in (
            ("Петров", [ivan]),
            ("IVAN.PETROV@example.com", []),
            ("Boris", [boris]),
        ):
            details = {"query": query, "shown": shown}
            await desk_q.audit(
                conn, {"at": T0, "actor": "telegram:1", "action": "search", "details": details}
            )


async def _traces(db: Database) -> list[str]:
    """Every place a needle is found: each text, JSON and number of every table."""
    found = []
    async with db.read() as conn:
        for table in Base.metadata.sorted_tables:
            for row in await conn.execute(select(table)):
                for column, value in row._mapping.items():
                    shown = (
                        value
                        if isinstance(value, str)
                        else json.dumps(value, ensure_ascii=False, default=str)
                    )
                    found += [
                        f"{table.name}.{column}: {n}" for n in NEEDLES if n in shown.casefold()
                    ]
    return found


async def _found(db: Database, query: str) -> list[int]:
    async with db.read() as conn:
        return [c.id for c in await search_clients(conn, client_search(query, "RU"))]


async def _report(db: Database) -> Any:
    now = T0 + timedelta(days=1)
    return await Reporter(db, FrozenClock(now)).report(period("week", now, ZoneInfo("UTC")))


# --- export --------------------------------------------------------------------------


async def test_export_holds_everything_on_the_person(db: Database, tmp_path: Path) -> None:
    world = await _world(db, tmp_path)
    privacy = Privacy(db, FrozenClock(T0), world.files)
    out = tmp_path / "ivan.zip"
    archive = await privacy.export(world.ivan_tg, out)  # a merged record leads to the kept one
    assert archive.ids == [world.ivan, world.ivan_tg]
    with zipfile.ZipFile(out) as zipped:
        data = json.loads(zipped.read("client.json"))
        names = set(zipped.namelist())
        files = {
            item["filename"]: zipped.read(item["file"])
            for entry in data["timeline"]
            for item in entry["attachments"]
        }
    async with db.read() as conn:
        logged = (
            await conn.execute(
                select(interactions.c.id, interactions.c.text)
                .where(interactions.c.client_id == world.ivan)
                .order_by(interactions.c.id)
            )
        ).all()
        held = (
            await conn.execute(
                select(identities.c.kind, identities.c.value).where(
                    identities.c.client_id == world.ivan
                )
            )
        ).all()
    assert [(e["id"], e["text"]) for e in data["timeline"]] == [tuple(r) for r in logged]
    assert any("zebraumbrella" in e["text"] for e in data["timeline"])
    assert {(i["kind"], i["value"]) for i in data["identities"]} == {tuple(r) for r in held}
    assert {v for _, v in held} == {"ivan.petrov@example.com", "987654321"}
    assert data["client"]["id"] == world.ivan and data["client"]["name"] == "Иван Петров"
    assert [m["id"] for m in data["merged"]] == [world.ivan_tg]
    assert files == {"Паспорт-Петров.pdf": PASSPORT, "shared.txt": SHARED}
    assert len(names) == 3  # client.json and the two files
    assert archive.files == 2
    with pytest.raises(Exception, match="no client #999"):
        await privacy.export(999, tmp_path / "none.zip")


# --- forget --------------------------------------------------------------------------


async def test_forget_leaves_no_trace_and_keeps_the_counts(db: Database, tmp_path: Path) -> None:
    world = await _world(db, tmp_path)
    assert await _found(db, "zebraumbrella") == [world.ivan]
    assert await _traces(db)  # the scan sees the person before
    if db.is_sqlite:
        with pytest.raises(AssertionError):
            await _no_bytes_left(db)  # and so does the scan of the file's bytes
    before = await _report(db)
    privacy = Privacy(
        db,
        FrozenClock(T0),
        world.files,
        erase_mail=lambda emails: mail_spool.erase(world.spool, emails),
    )
    done = await privacy.forget(world.ivan_tg, actor="dpo", reason="request 12 of 2026-01-05")
    assert done.ids == [world.ivan, world.ivan_tg]
    assert done.mail_deleted == 1 and done.files_deleted == 1 and done.telegram

    assert await _traces(db) == []
    assert await _found(db, "zebraumbrella") == []
    assert await _found(db, "квазар") == []
    assert await _found(db, "invoice") == [world.boris]
    assert await _report(db) == before
    async with db.read() as conn:
        log = (
            await conn.execute(
                select(interactions.c.text, interactions.c.direction).where(
                    interactions.c.client_id == world.ivan
                )
            )
        ).all()
        entry = (await conn.execute(select(outbox.c.extras).where(outbox.c.kind == "erase"))).one()
        reply = (
            await conn.execute(
                select(outbox.c.status).where(outbox.c.idempotency_key == "reply:ivan")
            )
        ).one()
        forget = (await conn.execute(select(audit).where(audit.c.action == "forget"))).one()
        searches = (
            await conn.execute(
                select(audit.c.details).where(audit.c.action == "search").order_by(audit.c.id)
            )
        ).all()
        shared = (
            await conn.execute(select(attachments.c.sha256).where(attachments.c.sha256 != ""))
        ).all()
    assert len(log) >= 3 and {t for t, _ in log} == {TOMBSTONE}  # rows kept, content gone
    assert entry.extras == {"topics": [[-100, 77]], "messages": [[555, 9]]}
    assert reply.status == "failed"  # the reply to the forgotten person never goes
    assert (forget.actor, forget.object_id) == ("dpo", world.ivan)
    assert forget.details["reason"] == "request 12 of 2026-01-05"
    assert forget.details["clients"] == [world.ivan, world.ivan_tg]
    assert [d.details["query"] for d in searches] == [TOMBSTONE, TOMBSTONE, "Boris"]
    assert len(shared) == 1  # Boris's copy of the shared file
    assert not world.files.path(_sha(PASSPORT)).exists()
    assert world.files.path(_sha(SHARED)).exists()  # still Boris's
    spooled = b"".join(p.read_bytes() for p in tmp_path.glob("mail-spool.db*"))
    assert b"ivan.petrov" not in spooled and b"boris@example.org" in spooled
    if db.is_sqlite:
        await _no_bytes_left(db)


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


async def _no_bytes_left(db: Database) -> None:
    """SQLite: not even the file's free space or its WAL holds the person's words."""
    path = Path(str(db.url.database))
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    for needle in ("Петров", "ivan.petrov", "zebraumbrella", "квазар"):
        assert needle.encode() not in raw, needle


async def test_the_guard_still_refuses_all_but_the_tombstone(db: Database, tmp_path: Path) -> None:
    world = await _world(db, tmp_path)
    await Privacy(db, FrozenClock(T0), world.files).forget(world.ivan, actor="dpo", reason="asked")
    async with db.read() as conn:
        mine = (
            (
                await conn.execute(
                    select(interactions.c.id).where(interactions.c.client_id == world.ivan)
                )
            )
            .scalars()
            .first()
        )
        theirs = (
            (
                await conn.execute(
                    select(interactions.c.id).where(interactions.c.client_id == world.boris)
                )
            )
            .scalars()
            .first()
        )
    i = interactions.c
    refused = [
        update(interactions).where(i.id == mine).values(text="rewritten"),
        update(interactions).where(i.id == mine).values(direction="out"),
        update(interactions).where(i.id == mine).values(text=TOMBSTONE, at=T0 + timedelta(1)),
        update(interactions).where(i.id == theirs).values(text=TOMBSTONE),  # not forgotten
        delete(interactions).where(i.id == mine),
    ]
    for statement in refused:
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.write() as conn:
                await conn.execute(statement)
    async with db.write() as conn:  # delivery state may still change
        await conn.execute(update(interactions).where(i.id == mine).values(delivery="sent"))


async def test_a_forgotten_person_who_writes_again_is_a_new_client(
    db: Database, tmp_path: Path
) -> None:
    world = await _world(db, tmp_path)
    await Privacy(db, FrozenClock(T0), world.files).forget(world.ivan, actor="dpo", reason="asked")
    async with running(db, tmp_path, store=world.files) as ingest:
        again = await ingest(message(Channel.EMAIL, "<m1@example.com>", IVAN, text="снова я"))
        tg = await ingest(message(Channel.TELEGRAM, "987654321:5", IVAN_TG, text="и тут"))
    assert not again.duplicate and not tg.duplicate  # the old message ids were erased too
    assert again.client_id not in (world.ivan, world.ivan_tg, world.boris)
    assert tg.client_id == again.client_id or tg.client_id not in (world.ivan, world.ivan_tg)
    async with db.read() as conn:
        owner = (
            await conn.execute(
                select(identities.c.client_id).where(
                    identities.c.value == "ivan.petrov@example.com"
                )
            )
        ).scalar_one()
    assert owner == again.client_id


# --- retention -----------------------------------------------------------------------


async def test_retention_erases_old_bodies_and_keeps_new_ones(db: Database, tmp_path: Path) -> None:
    files = AttachmentStore(tmp_path / "files", 10**6)
    async with running(db, tmp_path, store=files) as ingest:
        old = message(
            Channel.EMAIL,
            "<old@example.org>",
            BORIS,
            text="old words",
            at=T0 - timedelta(days=100),
            attachments=(Attachment("old.txt", "text/plain", b"old file"),),
        )
        await ingest(old)
        await ingest(message(Channel.EMAIL, "<new@example.org>", BORIS, text="new words", at=T0))
    async with db.write() as conn:  # a rating's comment is the client's words too
        i = interactions.c
        client, conv = (await conn.execute(select(i.client_id, i.conversation_id).limit(1))).one()
        await conn.execute(
            insert(ratings),
            [
                {
                    "conversation_id": conv,
                    "client_id": client,
                    "channel": "email",
                    "score": score,
                    "comment": comment,
                    "asked_at": at,
                    "rated_at": at,
                    "commented_at": at,
                }
                for score, comment, at in [
                    (2, "old complaint", T0 - timedelta(days=100)),
                    (5, "new praise", T0),
                ]
            ],
        )
    before = await _report(db)
    privacy = Privacy(db, FrozenClock(T0), files)
    assert await privacy.retain(30) == 1
    assert await privacy.retain(30) == 0  # nothing left to erase
    async with db.read() as conn:
        said = dict(
            (
                await conn.execute(
                    select(interactions.c.external_id, interactions.c.text).where(
                        interactions.c.direction == "in"
                    )
                )
            ).all()
        )
        names = (await conn.execute(select(attachments.c.filename))).scalars().all()
        kept = (await conn.execute(select(ratings.c.score, ratings.c.comment))).all()
    assert said == {"<old@example.org>": TOMBSTONE, "<new@example.org>": "new words"}
    assert sorted(kept) == [(2, TOMBSTONE), (5, "new praise")]
    assert names == [TOMBSTONE]
    assert not files.path(_sha(b"old file")).exists()
    assert await _report(db) == before
    with pytest.raises(DBAPIError, match="append-only"):
        async with db.write() as conn:  # the new body is still guarded
            await conn.execute(
                update(interactions)
                .where(interactions.c.external_id == "<new@example.org>")
                .values(text=TOMBSTONE)
            )


# --- the command line ---------------------------------------------------------------


def hub(*args: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    return int(done.value.code or 0)


def test_client_export_and_forget_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[admin]\ntoken = "t"\n[storage]\nurl = "sqlite+aiosqlite:///{tmp_path}/hub.db"\n'
        f'attachments_dir = "{tmp_path}/files"\n[email]\nspool = "{tmp_path}/spool.db"\n'
    )
    people = tmp_path / "people.csv"
    people.write_text("name,email\nИван Петров,ivan.petrov@example.com\n", encoding="utf-8")
    assert hub("migrate", "--config", str(config)) == 0  # import makes no database itself
    assert hub("import", "--config", str(config), str(people)) == 0
    out = tmp_path / "ivan.zip"
    assert hub("client", "export", "--config", str(config), "1", "--out", str(out)) == 0
    assert "client #1: 0 log entries, 0 files" in capsys.readouterr().out
    with zipfile.ZipFile(out) as zipped:
        assert json.loads(zipped.read("client.json"))["client"]["name"] == "Иван Петров"
    missing = tmp_path / "no" / "where.zip"
    assert hub("client", "export", "--config", str(config), "1", "--out", str(missing)) == 2
    assert "no folder" in capsys.readouterr().err
    assert hub("client", "forget", "--config", str(config), "1") == 2  # --reason is required
    assert "--reason" in capsys.readouterr().err
    args = ("client", "forget", "--config", str(config), "1", "--reason", "asked by mail")
    assert hub(*args, "--by", "dpo") == 0
    assert "client #1 forgotten: " in capsys.readouterr().out
    assert hub("card", "--config", str(config), "1") == 0
    card = capsys.readouterr().out
    assert "Иван" not in card and "ivan.petrov" not in card
    assert hub("client", "forget", "--config", str(config), "7", "--reason", "x") == 1
    assert "no client #7" in capsys.readouterr().err


# --- the staff topic in Telegram ----------------------------------------------------


async def test_the_staff_topic_is_deleted_in_telegram(db: Database, tmp_path: Path) -> None:
    """The erase row ``forget`` queues is carried out by the staff side: the topic
    goes, with every message in it; a message gone already is passed over."""
    async with (
        BotApiServer(limits=Limits.off()) as server,
        staff_desk(db, tmp_path, server) as desk,
    ):
        ivan = await desk.writes(IVAN_TG, "zebraumbrella")
        await desk.flush()
        [topic] = server.topics()
        assert desk.in_topic(topic.message_thread_id)
        async with db.write() as conn:
            await conn.execute(
                insert(private_messages).values(
                    chat_id=555, message_id=9, entry=0, client_id=ivan.client_id, at=T0
                )
            )
        files = AttachmentStore(tmp_path / "files", 10**6)
        await Privacy(db, FrozenClock(T0), files).forget(
            ivan.client_id, actor="dpo", reason="asked"
        )
        [erase] = await desk.pending("erase")
        assert erase.extras["topics"] == [[topic.chat_id, topic.message_thread_id]]
        await desk.flush()
        assert topic.deleted
        assert desk.in_topic(topic.message_thread_id) == []
