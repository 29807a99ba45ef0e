"""Issue 19: substring search on emails, phones, names and Telegram usernames through
trigram indexes (SQLite FTS5, PostgreSQL pg_trgm): found in any letter case and any
phone spelling, kept in step with merges, unmerges and forgetting, filled behind
ingest on SQLite, and read without a scan of the identities."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select, text

from hub import config as hub_config
from hub.app.run import Hub
from hub.clients.attachments import AttachmentStore
from hub.clients.book import ClientBook
from hub.clients.privacy import Privacy
from hub.clients.search import client_search
from hub.kernel.clock import FrozenClock
from hub.kernel.identities import identity as ident
from hub.kernel.types import Channel
from storage import Database, terms
from storage.read import search_clients
from storage.tables import clients, identities, search_positions
from tests.fakes import RecordingChannel
from tests.test_ingest import message, running

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ANNA = (
    ident("telegram", 4242, "Анна Петрова"),
    ident("email", "Anna.Petrova@Example.com"),
    ident("phone", "+7 912 345-67-89"),
)


async def found(db: Database, query: str) -> list[int]:
    async with db.read() as conn:
        return [c.id for c in await search_clients(conn, client_search(query, "RU"))]


async def catch_up(db: Database) -> None:
    """Run the index's round until it has read everything (SQLite)."""
    for _ in range(100):
        async with db.read() as conn:
            if not await terms.behind(conn):
                return
        async with db.write() as conn:
            await terms.index_new(conn)
    raise AssertionError("the index never caught up")


@pytest.fixture(params=["behind", "indexed"])
async def indexed(request: pytest.FixtureRequest, db: Database) -> AsyncIterator[bool]:
    """Search before the round has run (SQLite matches what it has not read yet
    directly) and after it."""
    yield request.param == "indexed"


async def _two(db: Database, tmp_path: Path) -> tuple[int, int]:
    async with running(db, tmp_path) as ingest:
        said = message(Channel.TELEGRAM, "t1", *ANNA, text="hi")
        anna = await ingest(dataclasses.replace(said, extras={"username": "Anna_Petrova"}))
        boris = await ingest(
            message(Channel.EMAIL, "<b@x>", ident("email", "boris@example.org", "Борис"))
        )
    return anna.client_id, boris.client_id


async def test_fragments_find_their_client(db: Database, tmp_path: Path, indexed: bool) -> None:
    anna, boris = await _two(db, tmp_path)
    if indexed:
        await catch_up(db)
    assert await found(db, "petrova@exa") == [anna]  # a piece of an address
    assert await found(db, "EXAMPLE") == [anna, boris]
    assert await found(db, "+7 (912) 345") == [anna]  # a phone written another way
    assert await found(db, "912 345-67") == [anna]
    assert await found(db, "анна") == [anna]  # a name, in any letter case
    assert await found(db, "ПЕТРОВА") == [anna]
    assert await found(db, "рис") == [boris]
    assert await found(db, "@petrov") == [anna]  # a piece of a Telegram username
    assert await found(db, "@ANNA_P") == [anna]
    assert await found(db, "@nobody") == []
    # Under three characters: the beginning of a name only.
    assert await found(db, "Ан") == [anna]
    assert await found(db, "бо") == [boris]
    assert await found(db, "нн") == []
    assert await found(db, "91") == []


async def test_merges_unmerges_and_forgetting(db: Database, tmp_path: Path, indexed: bool) -> None:
    anna, boris = await _two(db, tmp_path)
    if indexed:
        await catch_up(db)
    book = ClientBook(db, FrozenClock(T0))
    merge = await book.merge(anna, boris, actor="admin")
    assert await found(db, "boris@") == [anna]  # the kept client, by the merged one's address
    assert await found(db, "@anna_pet") == [anna]
    assert await found(db, "Борис") == []  # the merged record's own name is not the kept one's
    await book.unmerge(merge, actor="admin")
    assert await found(db, "boris@") == [boris]
    assert await found(db, "petrova@") == [anna]
    assert await found(db, "Борис") == [boris]

    files = AttachmentStore(tmp_path / "files", 10**6)
    await Privacy(db, FrozenClock(T0), files).forget(anna, actor="admin", reason="asked to")
    for query in ("petrova@", "Anna", "анна петр", "+7912345", "@anna_pe", "Ан"):
        assert await found(db, query) == [], query
    assert await found(db, "boris@") == [boris]
    if db.engine.dialect.name == "sqlite":
        await catch_up(db)  # nothing of hers comes back with the round
        assert await found(db, "petrova@") == []
        assert await _terms_of(db, "petrova") == 0
        assert await _terms_of(db, "анна") == 0


async def _terms_of(db: Database, fragment: str) -> int:
    count = 0
    async with db.read() as conn:
        for name in ("search_terms_identities", "search_terms_names", "search_terms_usernames"):
            query = text(f"SELECT count(*) FROM {name} WHERE term MATCH :q")
            count += int((await conn.execute(query, {"q": f'"{fragment}"'})).scalar_one())
    return count


async def test_an_import_and_a_rename_are_found_at_once(db: Database, tmp_path: Path) -> None:
    import io

    book = ClientBook(db, FrozenClock(T0))
    async with running(db, tmp_path) as ingest:
        nameless = await ingest(message(Channel.EMAIL, "<1@x>", ident("email", "v@example.org")))
    await catch_up(db)
    report = await book.import_csv(io.StringIO("name,email\nВиктория Лебедева,v@example.org\n"))
    assert report.updated == 1
    assert await found(db, "лебедева") == [nameless.client_id]


async def test_the_index_catches_up_behind_ingest(db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's indexes keep themselves")
    channel = RecordingChannel("telegram")
    config = hub_config.parse(
        {
            "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
            "admin": {"listen": f"127.0.0.1:{_free_port()}", "token": "t" * 32},
            "managers": [{"name": "Анна", "telegram_id": 501}],
        }
    )
    hub = Hub(config, channels={"telegram": channel})
    async with hub.lifespan():
        assert channel.sink is not None and hub.db is not None
        said = message(Channel.TELEGRAM, "77:1", ident("telegram", 77, "Пётр Соколов"))
        await channel.sink(dataclasses.replace(said, extras={"username": "psok"}))
        db = hub.db

        async def caught_up() -> bool:
            async with db.read() as conn:
                return not await terms.behind(conn)

        await until(caught_up)
        async with db.read() as conn:
            p = search_positions.c
            names = dict((await conn.execute(select(p.name, p.last_id))).all())
            top = (await conn.execute(select(func.max(clients.c.id)))).scalar_one()
        assert names["terms:names"] == top
        assert await _terms_of(db, "соколов") == 1  # in the index, not only in the tail
        assert await _terms_of(db, "psok") == 1
        assert await found(db, "сокол") == [top]
        assert await found(db, "@psok") == [top]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_a_substring_query_reads_no_identity_in_full(db: Database) -> None:
    """The query plan of a search by a piece of an address, a phone, a name and a
    username: every way in through an index, none a scan of identities."""
    async with db.write() as conn:
        await conn.execute(
            insert(clients),
            [
                {"id": n, "name": f"Client {n}", "created_at": T0, "updated_at": T0}
                for n in range(1, 2001)
            ],
        )
        rows = [
            {"client_id": n, "kind": kind, "value": value, "created_at": T0}
            for n in range(1, 2001)
            for kind, value in (("email", f"c{n}@example.org"), ("phone", f"+7916{n:07d}"))
        ]
        await conn.execute(insert(identities), rows)
        if db.engine.dialect.name != "sqlite":  # usernames the round would have read
            await conn.execute(
                text("INSERT INTO search_terms_usernames(interaction_id, term) VALUES (:i, :t)"),
                [{"i": n, "t": f"user_{n}"} for n in range(1, 2001)],
            )
    await catch_up(db)
    sqlite = db.engine.dialect.name == "sqlite"
    async with db.write() as conn:
        await conn.execute(text("ANALYZE"))
    for query in ("c1234@exa", "916 000 12", "lient 12", "@user_12"):
        plan = await _plan(db, query)
        assert "identities" in plan, plan
        if sqlite:  # nor every identity of a kind, nor every message of a channel
            for whole in ("SCAN identities", "SCAN clients", "(kind=?)", "(channel=?)"):
                assert whole not in plan, plan
        else:
            for whole in ("Seq Scan", "Index Cond: ((kind)", "Index Cond: ((channel)"):
                assert whole not in plan, plan
            assert "ix_search_terms_identities" in plan, plan
            assert "ix_search_terms_names" in plan, plan
            if query.startswith("@"):  # one row per client's username, not every message's
                assert "search_terms_usernames" in plan, plan
    assert await found(db, "c1234@exa") == [1234]


async def _plan(db: Database, query: str) -> str:
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        seen.append((statement, params))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with db.read() as conn:
            await search_clients(conn, client_search(query, "RU"), limit=20)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    [(statement, params)] = [s for s in seen if "UNION" in s[0]]
    async with db.read() as conn:
        if db.engine.dialect.name == "sqlite":
            rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
            return "\n".join(str(list(r)[3]) for r in rows)
        # Small tables: without this the planner reads a few pages whole, index or not.
        await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        rows = await conn.exec_driver_sql("EXPLAIN " + statement, params)
        return "\n".join(str(r[0]) for r in rows)


async def test_a_username_is_indexed_once_per_client(db: Database, tmp_path: Path) -> None:
    """Each later message with the same username adds no term (a new one does),
    round after round: the check reads the client's last message, not the index
    (PostgreSQL reads its last ``REREAD`` ids again, and adds nothing twice)."""
    async with running(db, tmp_path) as ingest:
        for n, username in enumerate(["Anna_P", "anna_p", "Anna_P", "anna_new"]):
            said = message(Channel.TELEGRAM, f"u{n}", *ANNA, text=f"hi {n}")
            await ingest(dataclasses.replace(said, extras={"username": username}))
            await catch_up(db)  # a round after each message
    async with db.read() as conn:
        kept = (await conn.execute(text("SELECT term FROM search_terms_usernames"))).scalars()
        assert sorted(kept) == ["anna_new", "anna_p"]
    assert len(await found(db, "@anna_p")) == 1


def test_a_whole_number_is_looked_up_by_its_normalized_form() -> None:
    """A whole phone number is one identity, found by key; only a part of one is looked
    for among the digits of every number (trigrams, which grow with the client base)."""
    whole = client_search("8 (912) 345-67-89", "RU")
    assert ("phone", "+79123456789") in whole.exact
    assert whole.phone_digits == ""
    part = client_search("345-67-89", "RU")
    assert part.phone_digits == "3456789"  # also among the digits of every number


async def test_a_name_is_read_from_the_first_clients_then_from_its_index(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL reads the first ``WALK`` clients in id order for a name and goes to
    the trigram index only when fewer than a page are there; either way a page is the
    first matching clients by id (SQLite reads its index alone)."""
    names = ["Анна Первая", "Борис", "Анна Вторая", "Вера", "Анна Третья"]
    async with running(db, tmp_path) as ingest:
        ids = [
            (
                await ingest(message(Channel.TELEGRAM, f"n{n}", ident("telegram", 500 + n, name)))
            ).client_id
            for n, name in enumerate(names)
        ]
    await catch_up(db)
    annas = [ids[0], ids[2], ids[4]]
    monkeypatch.setattr(terms, "WALK", 2)

    async def page(limit: int) -> list[int]:
        async with db.read() as conn:
            found = await search_clients(conn, client_search("анна", "RU"), limit=limit)
        return [c.id for c in found]

    assert await page(1) == annas[:1]  # the walk holds a page
    assert await page(3) == annas  # it does not: the index, all of them in id order
    monkeypatch.setattr(terms, "WALK", 0)
    assert await page(2) == annas[:2]


async def test_a_long_fragment_is_read_by_its_rarest_trigrams(db: Database, tmp_path: Path) -> None:
    """Addresses sharing a domain and a prefix: the trigrams counted behind the index
    pick the rarest few of a long fragment ("123", not "cli" or "exa", which every
    address holds); the whole fragment is still checked on each row they find, and an
    address added after the count is found too."""
    async with db.write() as conn:
        await conn.execute(
            insert(clients),
            [{"id": n, "created_at": T0, "updated_at": T0} for n in range(1, 301)],
        )
        await conn.execute(
            insert(identities),
            [
                {
                    "client_id": n,
                    "kind": "email",
                    "value": f"client{n}@example.org",
                    "created_at": T0,
                }
                for n in range(1, 301)
            ],
        )
    await catch_up(db)
    dialect = db.engine.dialect.name
    async with db.read() as conn:
        counts = await conn.run_sync(terms.counted, ["client123@example.org"])
    assert counts.complete == {"identities", "usernames"}
    assert counts.of(dialect, "identities", "exa") == 300
    assert counts.of(dialect, "identities", "123") == 1
    picked = terms.rarest(dialect, "identities", "client123@example.org", counts)
    assert picked[0] == "123"
    assert not {"cli", "exa", "org"} & set(picked)
    assert counts.of(dialect, "identities", "999") == 0  # counted whole: in no address

    assert await found(db, "client123@example.org") == [123]
    assert await found(db, "lient12") == [12, *range(120, 130)]
    assert await found(db, "client999@example.org") == []
    async with db.write() as conn:  # past the count (and on SQLite past the index)
        await conn.execute(insert(clients).values(id=301, created_at=T0, updated_at=T0))
        email = {"client_id": 301, "kind": "email", "value": "client301@example.org"}
        await conn.execute(insert(identities).values(**email, created_at=T0))
    assert await found(db, "client301@example.org") == [301]
    await catch_up(db)
    assert await found(db, "client301@example.org") == [301]

    # Forgetting takes a person's trigrams back from the counts ("301" only theirs).
    assert await _count_of(db, "301") == 1
    files = AttachmentStore(tmp_path / "files", 10**6)
    await Privacy(db, FrozenClock(T0), files).forget(301, actor="admin", reason="asked to")
    assert await _count_of(db, "301") is None
    assert await _count_of(db, "exa") == 300
    assert await found(db, "client30@example.org") == [30]


async def _count_of(db: Database, gram: str) -> int | None:
    async with db.read() as conn:
        query = text(
            "SELECT n FROM search_terms_trigrams WHERE source = 'identities' AND term = :t"
        )
        return (await conn.execute(query, {"t": gram})).scalar_one_or_none()


def test_a_trigram_not_counted_is_rare_only_when_the_count_is_whole() -> None:
    """Not counted in a whole count: in no row (read alone, an empty list). Not counted
    while the count lags: taken as common. A trigram much commoner than the rarest is
    not read. PostgreSQL counts ASCII trigrams only."""
    rows = {("identities", "abc"): 5, ("identities", "bcd"): 50, ("identities", "cde"): 500}
    whole = terms.Counts(rows, frozenset({"identities"}))
    lagging = terms.Counts(rows)
    assert terms.rarest("sqlite", "identities", "abcdef", whole) == ["def"]
    assert terms.rarest("sqlite", "identities", "abcdef", lagging) == ["abc", "bcd", "cde"]
    assert terms.rarest("sqlite", "identities", "xyzw", lagging) == []  # none known: all
    common = {("usernames", "use"): 90_000, ("usernames", "ser"): 80_000, ("usernames", "777"): 900}
    said = terms.Counts(common, frozenset({"usernames"}))
    assert terms.rarest("postgresql", "usernames", "user_777777", said) == ["777"]
    assert whole.of("postgresql", "identities", "ёжи") is None
    assert whole.of("sqlite", "identities", "ёжи") == 0
    assert terms.trigrams("postgresql", "Ann.Lee@x12") == ["ann", "lee", "x12"]  # pg_trgm's words
    assert len(terms.trigrams("sqlite", "Ann.Lee@x12")) == 9
    assert terms.trigrams("sqlite", "İstanbul") == []  # lower case is longer: read whole
