"""Full-text search over the log: a word any client wrote, in any letter case,
finds the client; the hub's own event notes do not; on SQLite the index follows
the log in batches (and picks up where it stopped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Connection

from hub.clients.search import client_search
from hub.kernel.types import Channel
from storage import Database
from storage import search as full_text
from storage.read import search_clients
from tests.test_ingest import ANNA_TG, BORIS_TG, message, running


async def _found(db: Database, query: str) -> list[int]:
    async with db.read() as conn:
        return [c.id for c in await search_clients(conn, client_search(query, "RU"))]


async def _index(db: Database) -> int:
    async with db.write() as conn:
        return await full_text.index_new(conn)


async def test_a_word_of_the_log_finds_its_client(db: Database, tmp_path: Path) -> None:
    async with running(db, tmp_path) as ingest:
        anna = await ingest(
            message(Channel.TELEGRAM, "t1", ANNA_TG, text="Где мой ЗАКАЗ номер 4217?")
        )
        boris = await ingest(
            message(Channel.TELEGRAM, "t2", BORIS_TG, text="Hello, invoice please")
        )
    sqlite = db.engine.dialect.name == "sqlite"
    if sqlite:
        assert await _found(db, "заказ") == []  # not indexed yet: behind the log
        assert await _index(db) == 2  # the two messages; the routing events are left out
        assert await _index(db) == 0  # nothing new
    assert await _found(db, "заказ") == [anna.client_id]
    assert await _found(db, "Заказ 4217") == [anna.client_id]  # every word, any case
    assert await _found(db, "INVOICE") == [boris.client_id]
    assert await _found(db, "nobody") == []  # in the events ("nobody available"), not said
    assert await _found(db, "заказ invoice") == []
    async with running(db, tmp_path) as ingest:
        await ingest(message(Channel.TELEGRAM, "t3", BORIS_TG, text="и ещё заказ"))
    if sqlite:
        assert await _index(db) == 1  # from where it stopped
    assert sorted(await _found(db, "заказ")) == sorted([anna.client_id, boris.client_id])


async def test_a_telegram_username_finds_its_client(db: Database, tmp_path: Path) -> None:
    import dataclasses

    async with running(db, tmp_path) as ingest:
        said = message(Channel.TELEGRAM, "t1", ANNA_TG, text="hi")
        anna = await ingest(dataclasses.replace(said, extras={"username": "Anna_Pe"}))
        await ingest(message(Channel.TELEGRAM, "t2", BORIS_TG, text="@anna_pe is my friend"))
    assert await _found(db, "@anna_pe") == [anna.client_id]
    assert await _found(db, "@nobody_here") == []


async def test_a_word_said_often_finds_the_clients_of_its_newest_messages(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: a common word reads its newest ``NEWEST`` messages, not every one."""
    monkeypatch.setattr(full_text, "NEWEST", 2)
    async with running(db, tmp_path) as ingest:
        anna = await ingest(message(Channel.TELEGRAM, "t1", ANNA_TG, text="заказ один"))
        boris = await ingest(message(Channel.TELEGRAM, "t2", BORIS_TG, text="заказ два"))
        again = await ingest(message(Channel.TELEGRAM, "t3", BORIS_TG, text="заказ три"))
    assert again.client_id == boris.client_id
    if db.engine.dialect.name == "sqlite":
        await _index(db)
    assert await _found(db, "заказ") == [boris.client_id]  # Anna's is the third newest
    assert await _found(db, "один") == [anna.client_id]  # a rarer word still finds her
    monkeypatch.setattr(full_text, "NEWEST", 3)
    assert sorted(await _found(db, "заказ")) == sorted([anna.client_id, boris.client_id])


async def test_a_common_word_is_found_past_the_newest_stretch_of_the_log(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL looks for a word the statistics call common in stretches of the log
    from the newest: a word said only before the first stretch, and one said in
    several, still finds its clients, newest first up to ``NEWEST`` messages."""
    monkeypatch.setattr(full_text, "COMMON", 1)
    monkeypatch.setattr(full_text, "NEWEST", 2)
    async with running(db, tmp_path) as ingest:
        anna = await ingest(message(Channel.TELEGRAM, "t1", ANNA_TG, text="накладная старая"))
        for n in range(5):
            boris = await ingest(message(Channel.TELEGRAM, f"b{n}", BORIS_TG, text="накладная"))
        for n in range(40):  # later messages without the word: the first stretch misses it
            await ingest(message(Channel.TELEGRAM, f"x{n}", BORIS_TG, text=f"пусто {n}"))
    if db.engine.dialect.name == "sqlite":
        await _index(db)
    else:
        async with db.write() as conn:
            await conn.execute(text("ANALYZE interactions"))
        async with db.read() as conn:
            stretches = await conn.run_sync(_stretches, "накладная")
        assert stretches >= 2  # looked for in stretches, the newest first
    assert await _found(db, "накладная") == [boris.client_id]  # the two newest are his
    assert await _found(db, "старая") == [anna.client_id]
    monkeypatch.setattr(full_text, "NEWEST", 6)
    assert sorted(await _found(db, "накладная")) == sorted([anna.client_id, boris.client_id])


def _stretches(conn: Connection, word: str) -> int:
    """How many stretches :func:`full_text.newest_said` read for ``word``."""
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(conn, "before_cursor_execute", count)
    try:
        full_text.newest_said(conn, word)
    finally:
        event.remove(conn, "before_cursor_execute", count)
    return sum(" <= " in statement for statement in seen)


async def test_a_word_of_the_log_gives_its_settings_back(db: Database, tmp_path: Path) -> None:
    """PostgreSQL reads a word with two settings of its own, made for the session
    (``Database.run_read`` reads without a transaction) and given back after, even
    when a statement fails: the connection goes back to the pool as it came."""
    if db.engine.dialect.name == "sqlite":
        pytest.skip("PostgreSQL's plan cache and work memory")
    async with running(db, tmp_path) as ingest:
        await ingest(message(Channel.TELEGRAM, "t1", ANNA_TG, text="накладная"))
    show = "SELECT current_setting('plan_cache_mode'), current_setting('work_mem')"

    def search(conn: Connection) -> tuple[Any, Any, Any]:
        before = conn.exec_driver_sql(show).one()
        seen: list[Any] = []

        def during(*args: Any) -> None:
            if "hits" in args[2]:  # the word's own statement
                seen.append(args[0].exec_driver_sql(show).one())

        event.listen(conn, "after_cursor_execute", during)
        try:
            full_text.newest_said(conn, "накладная")
        finally:
            event.remove(conn, "after_cursor_execute", during)
        return before, seen, conn.exec_driver_sql(show).one()

    before, during, after = await db.run_read(search)
    assert during == [("force_custom_plan", "32MB")]
    assert after == before == ("auto", "4MB")

    def failing(conn: Connection) -> Any:
        with pytest.raises(Exception, match="division by zero"):
            broken = text("SELECT 1 / 0 AS hits")
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(full_text, "_EVERY", broken)
                full_text.newest_said(conn, "накладная")
        return conn.exec_driver_sql(show).one()

    assert await db.run_read(failing) == ("auto", "4MB")
