"""The IMAP watcher against a real Dovecot on loopback (tests/dovecot.py).

Each test works in its own folder of the one test mailbox, so the tests do not
see each other's mail.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aioimaplib  # type: ignore[import-untyped]
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from channels.email.channel import EmailChannel
from channels.email.imap import (
    ImapError,
    ImapLoginError,
    ImapWatcher,
    MemoryCursorStore,
    cursor_key,
)
from hub.clients.attachments import AttachmentStore
from hub.config import EmailSection, ImapSection
from hub.ingest.cursors import DbCursorStore
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import SystemClock
from hub.kernel.errors import StorageUnavailable
from storage import Database
from storage.models import Interaction
from tests import dovecot

TIMEOUT = 15.0


@pytest.fixture(scope="module")
def server() -> Iterator[dovecot.DovecotServer]:
    srv = dovecot.start()
    try:
        yield srv
    finally:
        srv.stop()


class Recorder:
    """A ``deliver`` that records the Message-IDs it got and can be told to fail."""

    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.attempts = 0
        self.failing = False
        self._changed = asyncio.Condition()

    async def __call__(self, raw: bytes) -> None:
        async with self._changed:
            self.attempts += 1
            self._changed.notify_all()
            if self.failing:
                raise StorageUnavailable("database down (test)")
            match = re.search(rb"^Message-ID: <([^>]+)>", raw, re.MULTILINE)
            assert match is not None
            self.delivered.append(match.group(1).decode())
            self._changed.notify_all()

    async def until(self, predicate: Callable[[Recorder], bool]) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), TIMEOUT)


async def until(predicate: Callable[[], bool]) -> None:
    """Poll a condition that nothing notifies about, bounded by TIMEOUT."""
    async with asyncio.timeout(TIMEOUT):
        while not predicate():
            await asyncio.sleep(0.02)


class Mailbox:
    """A second IMAP client that plays the mail server's other users."""

    def __init__(self, client: Any, folder: str) -> None:
        self.client = client
        self.folder = folder

    async def append(self, message_id: str) -> None:
        raw = (
            f"From: Client <client@example.org>\r\nTo: desk@example.com\r\n"
            f"Subject: test {message_id}\r\nMessage-ID: <{message_id}>\r\n\r\n"
            f"hello {message_id}\r\n"
        ).encode()
        response = await self.client.append(raw, mailbox=self.folder)
        assert response.result == "OK", response

    async def flags(self) -> dict[int, str]:
        """UID → FLAGS text of every message in the folder."""
        response = await self.client.select(self.folder)
        assert response.result == "OK", response
        response = await self.client.uid("fetch", "1:*", "(UID FLAGS)")
        assert response.result == "OK", response
        found: dict[int, str] = {}
        for line in response.lines:
            if isinstance(line, bytes):
                match = re.search(rb"UID (\d+)", line)
                flags = re.search(rb"FLAGS \(([^)]*)\)", line)
                if match and flags:
                    found[int(match.group(1))] = flags.group(1).decode()
        return found

    async def uidvalidity(self) -> int:
        response = await self.client.select(self.folder)
        for line in response.lines:
            match = re.search(rb"\[UIDVALIDITY (\d+)\]", line)
            if match:
                return int(match.group(1))
        raise AssertionError(response)


@pytest.fixture
async def mailbox(server: dovecot.DovecotServer, request: pytest.FixtureRequest) -> Any:
    client = aioimaplib.IMAP4(server.host, server.port, timeout=TIMEOUT)
    await client.wait_hello_from_server()
    assert (await client.login(server.user, server.password)).result == "OK"
    folder = "t_" + request.node.name.replace("[", "_").replace("]", "")
    assert (await client.create(folder)).result == "OK"
    try:
        yield Mailbox(client, folder)
    finally:
        await client.logout()


def settings(
    server: dovecot.DovecotServer, folder: str, password: str | None = None
) -> ImapSection:
    return ImapSection(
        host=server.host,
        port=server.port,
        user=server.user,
        password=SecretStr(password if password is not None else server.password),
        folder=folder,
        tls=False,
    )


def watcher(
    server: dovecot.DovecotServer,
    mailbox: Mailbox,
    deliver: Recorder,
    cursor: MemoryCursorStore,
    **changes: Any,
) -> ImapWatcher:
    # Long poll and re-IDLE times: mail that arrives in a test came through IDLE.
    return ImapWatcher(
        settings(server, mailbox.folder).model_copy(update=changes),
        deliver,
        cursor=cursor,
        poll_s=3600,
        re_idle_s=3600,
        retry_s=0.05,
        backoff_base_s=0.05,
        backoff_max_s=0.2,
        timeout_s=TIMEOUT,
    )


def idling(w: ImapWatcher) -> bool:
    client = w._client
    return client is not None and bool(client.has_pending_idle())


async def test_backlog_is_delivered_in_order_once_and_marked_seen(
    server: dovecot.DovecotServer, mailbox: Mailbox
) -> None:
    for n in range(1, 6):
        await mailbox.append(f"backlog-{n}@example.org")
    assert all(r"\Seen" not in f for f in (await mailbox.flags()).values())
    rec, cursor = Recorder(), MemoryCursorStore()
    w = watcher(server, mailbox, rec, cursor)
    await w.start()
    try:
        await rec.until(lambda r: len(r.delivered) >= 5)
        await until(lambda: idling(w))  # the round is over: nothing more comes
    finally:
        await w.stop()
    assert rec.delivered == [f"backlog-{n}@example.org" for n in range(1, 6)]
    flags = await mailbox.flags()
    assert len(flags) == 5
    assert all(r"\Seen" in f for f in flags.values()), flags
    key = cursor_key(settings(server, mailbox.folder))
    assert cursor.cursors[key] == (await mailbox.uidvalidity(), max(flags))


@pytest.mark.parametrize("with_move", [True, False], ids=["MOVE", "COPY-EXPUNGE"])
async def test_committed_mail_is_moved_to_the_configured_folder(
    server: dovecot.DovecotServer, mailbox: Mailbox, with_move: bool
) -> None:
    target = mailbox.folder + "_done"
    assert (await mailbox.client.create(target)).result == "OK"
    await mailbox.append("move-1@example.org")
    rec = Recorder()
    w = watcher(server, mailbox, rec, MemoryCursorStore(), move_to=target)
    await w.start()
    try:
        await rec.until(lambda r: len(r.delivered) >= 1)
        await until(lambda: idling(w))
        if not with_move:  # a server without RFC 6851: COPY, \Deleted, UID EXPUNGE
            w._client.protocol.capabilities.discard("MOVE")
        await mailbox.append("move-2@example.org")
        await rec.until(lambda r: len(r.delivered) >= 2)
        await until(lambda: idling(w))
    finally:
        await w.stop()
    assert rec.delivered == ["move-1@example.org", "move-2@example.org"]
    assert await mailbox.flags() == {}  # nothing left in the watched folder
    moved = await Mailbox(mailbox.client, target).flags()
    assert len(moved) == 2
    assert all(r"\Seen" in f and r"\Deleted" not in f for f in moved.values()), moved


async def test_new_mail_arrives_through_idle(
    server: dovecot.DovecotServer, mailbox: Mailbox
) -> None:
    rec = Recorder()
    w = watcher(server, mailbox, rec, MemoryCursorStore())
    await w.start()
    try:
        await until(lambda: idling(w))
        await mailbox.append("idle-1@example.org")
        await rec.until(lambda r: len(r.delivered) >= 1)
        await until(lambda: idling(w))
        await mailbox.append("idle-2@example.org")
        await rec.until(lambda r: len(r.delivered) >= 2)
    finally:
        await w.stop()
    assert rec.delivered == ["idle-1@example.org", "idle-2@example.org"]
    assert all(r"\Seen" in f for f in (await mailbox.flags()).values())


async def test_without_idle_new_mail_arrives_by_polling(
    server: dovecot.DovecotServer, mailbox: Mailbox
) -> None:
    rec = Recorder()
    w = ImapWatcher(
        settings(server, mailbox.folder),
        rec,
        cursor=MemoryCursorStore(),
        poll_s=0.05,
        use_idle=False,
        timeout_s=TIMEOUT,
    )
    await w.start()
    try:
        await mailbox.append("poll-1@example.org")
        await rec.until(lambda r: len(r.delivered) >= 1)
        await mailbox.append("poll-2@example.org")
        await rec.until(lambda r: len(r.delivered) >= 2)
        assert not idling(w)
    finally:
        await w.stop()
    assert rec.delivered == ["poll-1@example.org", "poll-2@example.org"]


async def test_restart_with_the_same_cursor_redelivers_nothing(
    server: dovecot.DovecotServer, mailbox: Mailbox
) -> None:
    cursor = MemoryCursorStore()
    await mailbox.append("first-1@example.org")
    await mailbox.append("first-2@example.org")
    first = Recorder()
    w = watcher(server, mailbox, first, cursor)
    await w.start()
    try:
        await first.until(lambda r: len(r.delivered) >= 2)
    finally:
        await w.stop()
    # Unseen again, as if another client had reset them: only the cursor may hold them back.
    for uid in await mailbox.flags():
        assert (await mailbox.client.uid("store", str(uid), "-FLAGS", r"(\Seen)")).result == "OK"
    second = Recorder()
    w = watcher(server, mailbox, second, cursor)
    await w.start()
    try:
        await until(lambda: idling(w))
        await mailbox.append("second-1@example.org")
        await second.until(lambda r: len(r.delivered) >= 1)
    finally:
        await w.stop()
    assert first.delivered == ["first-1@example.org", "first-2@example.org"]
    assert second.delivered == ["second-1@example.org"]


async def test_failed_delivery_is_retried_and_only_then_marked_seen(
    server: dovecot.DovecotServer, mailbox: Mailbox
) -> None:
    await mailbox.append("retry-1@example.org")
    rec, cursor = Recorder(), MemoryCursorStore()
    rec.failing = True
    w = watcher(server, mailbox, rec, cursor)
    await w.start()
    try:
        await rec.until(lambda r: r.attempts >= 2)  # failed, and failed again on retry
        assert rec.delivered == []
        assert all(r"\Seen" not in f for f in (await mailbox.flags()).values())
        assert cursor.cursors == {}
        rec.failing = False
        await rec.until(lambda r: len(r.delivered) >= 1)
        await until(lambda: idling(w))
    finally:
        await w.stop()
    assert rec.delivered == ["retry-1@example.org"]
    assert all(r"\Seen" in f for f in (await mailbox.flags()).values())


async def test_uidvalidity_change_reads_the_folder_again(
    server: dovecot.DovecotServer, mailbox: Mailbox
) -> None:
    await mailbox.append("uv-1@example.org")
    await mailbox.append("uv-2@example.org")
    cursor = MemoryCursorStore()
    key = cursor_key(settings(server, mailbox.folder))
    # A cursor from an earlier incarnation of the folder, far beyond its UIDs.
    cursor.cursors[key] = (await mailbox.uidvalidity() - 1, 1000)
    rec = Recorder()
    w = watcher(server, mailbox, rec, cursor)
    await w.start()
    try:
        await rec.until(lambda r: len(r.delivered) >= 2)
    finally:
        await w.stop()
    assert rec.delivered == ["uv-1@example.org", "uv-2@example.org"]
    assert cursor.cursors[key] == (await mailbox.uidvalidity(), 2)


async def test_lost_connection_is_reopened_and_nothing_is_lost(
    server: dovecot.DovecotServer, mailbox: Mailbox
) -> None:
    rec = Recorder()
    w = watcher(server, mailbox, rec, MemoryCursorStore())
    await w.start()
    try:
        await until(lambda: idling(w))
        old = w._client
        old.protocol.transport.abort()  # the network goes away under the IDLE
        await mailbox.append("lost-1@example.org")
        await mailbox.append("lost-2@example.org")
        await rec.until(lambda r: len(r.delivered) >= 2)
        assert w._client is not old
    finally:
        await w.stop()
    assert rec.delivered == ["lost-1@example.org", "lost-2@example.org"]


async def test_implicit_tls_with_the_servers_certificate(
    server: dovecot.DovecotServer, mailbox: Mailbox
) -> None:
    await mailbox.append("tls-1@example.org")
    rec = Recorder()
    w = watcher(
        server,
        mailbox,
        rec,
        MemoryCursorStore(),
        port=server.tls_port,
        tls=True,
        ca_file=server.ca_file,
    )
    await w.start()
    try:
        await rec.until(lambda r: len(r.delivered) >= 1)
    finally:
        await w.stop()
    assert rec.delivered == ["tls-1@example.org"]


async def test_an_untrusted_certificate_fails_start_clearly(
    server: dovecot.DovecotServer, mailbox: Mailbox
) -> None:
    rec = Recorder()
    w = watcher(server, mailbox, rec, MemoryCursorStore(), port=server.tls_port, tls=True)
    with pytest.raises(ImapError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
        await asyncio.wait_for(w.start(), TIMEOUT)
    await w.stop()
    assert rec.attempts == 0


class FlakyCursor(MemoryCursorStore):
    """A cursor store whose database is away for its first two reads."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 2

    async def load(self, key: str) -> tuple[int, int] | None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("database is away (test)")
        return await super().load(key)


async def test_the_database_away_does_not_stop_the_watcher(
    server: dovecot.DovecotServer, mailbox: Mailbox
) -> None:
    await mailbox.append("away-1@example.org")
    rec, cursor = Recorder(), FlakyCursor()
    w = watcher(server, mailbox, rec, cursor)
    await w.start()
    try:
        await rec.until(lambda r: len(r.delivered) >= 1)
    finally:
        await w.stop()
    assert rec.delivered == ["away-1@example.org"]
    assert cursor.failures == 0


async def test_wrong_password_fails_start_without_showing_it(
    server: dovecot.DovecotServer, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "wrong-Pa55word-xyzzy"
    rec = Recorder()
    w = ImapWatcher(
        settings(server, mailbox.folder, password=secret), rec, cursor=MemoryCursorStore()
    )
    with pytest.raises(ImapLoginError) as info:
        await w.start()
    message = str(info.value)
    assert "refused" in message and server.user in message
    assert secret not in message
    assert secret not in caplog.text
    await w.stop()
    assert rec.attempts == 0


async def test_the_email_channel_logs_mail_from_a_watched_mailbox_once(
    server: dovecot.DovecotServer, mailbox: Mailbox, db: Database, tmp_path: Path
) -> None:
    """Assembled: a mailbox of the config, its cursor in the database, the real
    ingest; a restart of the channel logs nothing twice."""
    clock = SystemClock()
    files = AttachmentStore(tmp_path / "files", 10**6)
    config = EmailSection.model_validate(
        {"imap": [settings(server, mailbox.folder).model_dump() | {"password": server.password}]}
    )
    ingestor = Ingestor(db, clock, files)
    await ingestor.start()
    try:
        for round_ in (1, 2):
            channel = EmailChannel(
                config, max_attachment_bytes=10**6, cursors=DbCursorStore(db, clock)
            )
            await channel.start(ingestor)
            try:
                await mailbox.append(f"imap-e2e-{round_}@example.org")

                async def logged() -> int:
                    async with db.read() as conn:
                        return int(
                            (
                                await conn.execute(
                                    select(func.count())
                                    .select_from(Interaction)
                                    .where(Interaction.direction == "in")
                                )
                            ).scalar_one()
                        )

                async def wait_logged(count: int = round_) -> None:
                    while await logged() < count:
                        await asyncio.sleep(0.05)  # polling the database for the condition

                await asyncio.wait_for(wait_logged(), TIMEOUT)
            finally:
                await channel.stop()
    finally:
        await ingestor.stop()
    async with db.read() as conn:
        rows = (
            (
                await conn.execute(
                    select(Interaction.external_id).where(Interaction.direction == "in")
                )
            )
            .scalars()
            .all()
        )
    # The restarted channel read on from its cursor: the first mail is not logged again.
    assert sorted(rows) == ["<imap-e2e-1@example.org>", "<imap-e2e-2@example.org>"]
