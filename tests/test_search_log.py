"""Full-text search over the log: a word any client wrote, in any letter case,
finds the client; the hub's own event notes do not; on SQLite the index follows
the log in batches (and picks up where it stopped)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
