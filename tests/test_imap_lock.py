"""One watcher per IMAP mailbox across hub instances (issue 9).

Two watchers, as two instances would run them, on one Dovecot folder and one
PostgreSQL database (the throwaway server of tests/pg.py): the advisory lock
lets one read while the other stands by; when the holder's database session
drops (its process died) or it stops, the other takes over within seconds.
Every message reaches the log once through the real Ingestor.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select

from channels.email.channel import EmailChannel
from channels.email.imap import ImapWatcher
from hub.clients.attachments import AttachmentStore
from hub.config import EmailSection
from hub.ingest.cursors import DbCursorStore, DbMailboxLocks
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import SystemClock
from storage import Database
from storage.locks import lock_key
from storage.models import Interaction
from tests import dovecot, pg
from tests.conftest import _pg_database
from tests.test_email_imap import Mailbox, mailbox, server, settings

__all__ = ["mailbox", "server"]  # fixtures used by name

TIMEOUT = 20.0


async def until(predicate: Any, timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def logged(db: Database) -> Counter[str]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(Interaction.external_id).where(Interaction.direction == "in")
        )
        return Counter(str(x) for x in rows.scalars())


def watcher_of(channel: EmailChannel) -> ImapWatcher:
    (watcher,) = channel.watchers
    return watcher


async def test_one_instance_reads_a_mailbox_and_another_takes_over(
    server: dovecot.DovecotServer,
    mailbox: Mailbox,
    pg_server: pg.PgServer,
    tmp_path: Path,
) -> None:
    url = await _pg_database(pg_server)
    dbs = [Database(url), Database(url)]
    ingestors: list[Ingestor] = []
    channels: list[EmailChannel] = []
    config = EmailSection(imap=[settings(server, mailbox.folder)])
    clock = SystemClock()
    try:
        for n, db in enumerate(dbs):
            ingestor = Ingestor(db, clock, AttachmentStore(str(tmp_path / f"files{n}"), 10**6))
            await ingestor.start()
            ingestors.append(ingestor)
            channel = EmailChannel(
                config,
                max_attachment_bytes=10**6,
                cursors=DbCursorStore(db, clock),
                locks=DbMailboxLocks(db),
            )
            channels.append(channel)

        def fast(channel: EmailChannel) -> None:
            w = watcher_of(channel)
            w.lock_retry_s = w.lock_check_s = 0.2
            w.retry_s = w.backoff_base_s = 0.05
            w.backoff_max_s = 0.2

        sent: list[str] = []

        async def send(count: int) -> None:
            for _ in range(count):
                message_id = f"lock-{len(sent)}@example.org"
                await mailbox.append(message_id)
                sent.append(f"<{message_id}>")

        async def all_logged() -> bool:
            return set(await logged(dbs[0])) >= set(sent)

        await send(5)
        await channels[0].start(ingestors[0])
        fast(channels[0])
        await channels[1].start(ingestors[1])
        fast(channels[1])
        a, b = watcher_of(channels[0]), watcher_of(channels[1])
        assert a.holding and not b.holding
        await until(all_logged)
        await send(5)
        await until(all_logged)
        assert not b.holding and b._client is None  # the stand-by never logged in

        # The holder's session drops, as when its process is killed: the lock is free.
        admin = await asyncpg.connect(pg_server.dsn("postgres"))
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l "
                "JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND d.datname = $1 "
                "AND (l.classid::bigint << 32 | l.objid::bigint) = $2",
                url.rsplit("/", 1)[1],
                lock_key(f"imap:{a.key}"),
            )
        finally:
            await admin.close()
        assert killed == 1

        async def b_took_over() -> bool:
            return b.holding and not a.holding

        loop = asyncio.get_running_loop()
        started = loop.time()
        await until(b_took_over, timeout=10)
        takeover_s = loop.time() - started
        await send(5)
        await until(all_logged)
        assert await b_took_over()  # a stands by now

        # The holder stops cleanly: the other takes over again.
        await channels[1].stop()
        await until(lambda: _true(a.holding))
        await send(5)
        await until(all_logged)
    finally:
        for channel in channels:
            await channel.stop()
        for ingestor in ingestors:
            await ingestor.stop()
        for db in dbs:
            await db.dispose()

    db = Database(url)
    try:
        counts = await logged(db)
    finally:
        await db.dispose()
    duplicates = sum(n - 1 for n in counts.values())
    lost = [m for m in sent if m not in counts]
    print(
        f"\nimap lock: sent={len(sent)} logged={sum(counts.values())} "
        f"duplicates={duplicates} lost={len(lost)} takeover={takeover_s:.2f}s"
    )
    assert lost == [] and duplicates == 0
    assert takeover_s < 5


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_on_sqlite_the_one_instance_holds_every_mailbox(db: Database) -> None:
    hold = await DbMailboxLocks(db).acquire("any")
    assert hold is not None and await hold.alive()
    await hold.release()


async def test_an_advisory_lock_is_held_once_and_freed_on_release(
    pg_server: pg.PgServer,
) -> None:
    url = await _pg_database(pg_server)
    one, two = Database(url), Database(url)
    try:
        first = await DbMailboxLocks(one).acquire("box")
        assert first is not None
        assert await DbMailboxLocks(two).acquire("box") is None
        other = await DbMailboxLocks(two).acquire("another box")
        assert other is not None
        await first.release()
        assert not await first.alive()
        second = await DbMailboxLocks(two).acquire("box")
        assert second is not None
        for hold in (other, second):
            await hold.release()
    finally:
        await one.dispose()
        await two.dispose()
