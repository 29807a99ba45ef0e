"""The Telegram channel's clients' side (channels/telegram) against the local Bot API
server (tests/botapi) with the real aiogram client, the real ingest pipeline as
its sink, on SQLite and PostgreSQL. Issue 3: commit first, confirm after."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiogram import Bot
from aiogram.types import Message, Update
from pydantic import SecretStr
from sqlalchemy import select

from channels.telegram import TelegramChannel
from channels.telegram.commands import Command, parse
from channels.telegram.inbound import language, normalize
from channels.telegram.outbound import split_text
from channels.telegram.text import utf16_len
from channels.telegram.updates import SECRET_HEADER
from hub.clients.attachments import AttachmentStore
from hub.config import TelegramSection
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import SystemClock
from hub.kernel.errors import (
    HubError,
    MessageRejected,
    PermanentDeliveryError,
    StorageUnavailable,
    TemporaryDeliveryError,
)
from hub.kernel.identities import identity
from hub.kernel.ports import InboundSink
from hub.kernel.types import Channel, InboundMessage, IngestResult, OutboundMessage, SendResult
from storage import Database
from storage.models import Attachment as AttachmentRow
from storage.models import Client, Identity, Interaction
from tests.botapi import BotApiServer, Limits, User
from tests.test_botapi import png

T = TypeVar("T")
WEBHOOK_SECRET = "hook-Secret_42"


# -- the world around the channel ---------------------------------------------------


class Commits:
    """Wakes waiters at every ingest commit, so tests wait on the database, not sleep."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __call__(self) -> None:
        self.event.set()

    async def until(self, check: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
        async def loop() -> T:
            while True:
                self.event.clear()
                value = await check()
                if value:
                    return value
                await self.event.wait()

        return await asyncio.wait_for(loop(), timeout)


class Sink:
    """The ingestor behind switches: fail the next calls, hold a call before or
    after it commits; records every result."""

    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor
        self.fail: list[Exception] = []
        self.calls = 0
        self.results: list[IngestResult] = []
        self.hold_before: asyncio.Event | None = None
        self.hold_after_call: int | None = None
        self.changed = asyncio.Condition()

    async def __call__(self, message: InboundMessage) -> IngestResult:
        async with self.changed:
            self.calls += 1
            call = self.calls
            self.changed.notify_all()
        if self.fail:
            raise self.fail.pop(0)
        if self.hold_before is not None:
            await self.hold_before.wait()
        result = await self.ingestor(message)
        self.results.append(result)
        if call == self.hold_after_call:
            await asyncio.Event().wait()  # committed, never returns: cancelled at stop
        return result

    async def reached(self, calls: int, timeout: float = 10.0) -> None:
        async def wait() -> None:
            async with self.changed:
                await self.changed.wait_for(lambda: self.calls >= calls)

        await asyncio.wait_for(wait(), timeout)


@pytest.fixture
async def server() -> AsyncIterator[BotApiServer]:
    async with BotApiServer(limits=Limits.off()) as running:
        yield running
        assert running.internal_errors == []


@pytest.fixture
def commits() -> Commits:
    return Commits()


@pytest.fixture
def files(tmp_path: Path) -> AttachmentStore:
    return AttachmentStore(tmp_path / "files", 10**6)


@pytest.fixture
async def ingestor(
    db: Database, files: AttachmentStore, commits: Commits
) -> AsyncIterator[Ingestor]:
    ingest = Ingestor(db, SystemClock(), files, on_commit=commits)
    await ingest.start()
    try:
        yield ingest
    finally:
        await ingest.stop()


@pytest.fixture
def sink(ingestor: Ingestor) -> Sink:
    return Sink(ingestor)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def section(server: BotApiServer, **overrides: Any) -> TelegramSection:
    return TelegramSection(
        enabled=True,
        token=SecretStr(server.token),
        api_base=server.base_url,
        staff_chat_id=server.forum.id,
        **overrides,
    )


def webhook_section(server: BotApiServer) -> TelegramSection:
    port = free_port()
    return section(
        server,
        mode="webhook",
        webhook_url=f"http://127.0.0.1:{port}/telegram/hook",
        webhook_listen=f"127.0.0.1:{port}",
        webhook_secret=SecretStr(WEBHOOK_SECRET),
    )


@asynccontextmanager
async def running(
    config: TelegramSection,
    sink: InboundSink,
    *,
    max_bytes: int = 10**6,
    staff: Any = None,
    grace: float = 5.0,
) -> AsyncIterator[TelegramChannel]:
    channel = TelegramChannel(
        config,
        staff=staff,
        max_attachment_bytes=max_bytes,
        poll_timeout=5,
        retry_backoff=(0.01, 0.1),
        grace=grace,
    )
    await channel.start(sink)
    try:
        yield channel
    finally:
        await channel.stop()


async def rows(db: Database, statement: Any) -> list[Any]:
    async with db.read() as conn:
        return list((await conn.execute(statement)).all())


async def inbound(db: Database) -> list[Any]:
    table = Interaction.__table__
    return await rows(db, select(table).where(table.c.direction == "in").order_by(table.c.id))


async def logged(db: Database, commits: Commits, count: int) -> list[Any]:
    """Wait until at least ``count`` inbound interactions are committed; answer them."""

    async def check() -> list[Any]:
        found = await inbound(db)
        return found if len(found) >= count else []

    return await commits.until(check)


def ext(server: BotApiServer, update: dict[str, Any]) -> str:
    message = update.get("message") or update["edited_message"]
    return f"{server.bot.id}:{message['chat']['id']}:{message['message_id']}"


# -- receiving ------------------------------------------------------------------------


async def test_a_new_client_by_polling(
    server: BotApiServer,
    sink: Sink,
    db: Database,
    commits: Commits,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    anna = server.add_user("Anna", last_name="Karenina", username="anna_k", language_code="ru")
    async with running(section(server), sink) as channel:
        assert channel.account == "hub_test_bot"
        sent = await server.user_sends(anna, "Hello, I need a quote")
        [row] = await logged(db, commits, 1)
        # confirmed with the next getUpdates, only after the commit
        await server.wait_for(lambda: not server.pending_updates())

    assert row.text == "Hello, I need a quote"
    assert row.channel == "telegram" and row.account == "hub_test_bot"
    assert row.external_id == ext(server, sent)
    assert row.author == "Anna Karenina"
    assert row.at == datetime.fromtimestamp(sent["message"]["date"], UTC)
    assert row.extras["kind"] == "text" and row.extras["username"] == "anna_k"
    assert row.extras["chat_id"] == anna.id
    assert row.extras["message_id"] == sent["message"]["message_id"]
    [client] = await rows(db, select(Client.id, Client.name, Client.language))
    assert (client.name, client.language) == ("Anna Karenina", "ru")
    idents = await rows(db, select(Identity.client_id, Identity.kind, Identity.value))
    assert idents == [(client.id, "telegram", str(anna.id))]
    assert len(await inbound(db)) == 1
    assert "telegram.started mode=polling bot=@hub_test_bot" in caplog.text
    assert server.token.split(":")[1] not in caplog.text


async def test_a_new_client_by_webhook(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    config = webhook_section(server)
    async with running(config, sink) as channel:
        assert channel.bot is not None
        info = await channel.bot.get_webhook_info()
        assert info.url == config.webhook_url
        assert info.allowed_updates == [
            "message",
            "edited_message",
            "callback_query",
            "my_chat_member",
        ]
        boris = server.add_user("Boris", language_code="de")
        await server.user_sends(boris, "Guten Tag")
        [row] = await logged(db, commits, 1)
        await server.wait_for(lambda: not server.pending_updates())
        assert [a.status for a in server.webhook_attempts()] == [200]
    assert row.text == "Guten Tag" and row.author == "Boris"
    [client] = await rows(db, select(Client.name, Client.language))
    assert tuple(client) == ("Boris", "en")
    # Stopping leaves the webhook in place for the other instances behind it.
    assert server.bot.webhook is not None and server.bot.webhook.url == config.webhook_url


async def test_the_webhook_refuses_a_missing_or_wrong_secret(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    config = webhook_section(server)
    assert config.webhook_url is not None
    anna = server.add_user("Anna")
    body = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": 1_767_607_200,
            "chat": anna.private_chat(),
            "from": anna.to_api(),
            "text": "forged",
        },
    }
    async with running(config, sink) as channel:
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {SECRET_HEADER: "guess"}, {SECRET_HEADER: WEBHOOK_SECRET[:-1]}):
                async with http.post(config.webhook_url, json=body, headers=headers) as response:
                    assert response.status == 401
            async with http.post(
                config.webhook_url, data=b"{not json", headers={SECRET_HEADER: WEBHOOK_SECRET}
            ) as response:
                assert response.status == 400

        # Telegram itself with another secret (a stale setWebhook): refused, kept.
        assert channel.bot is not None
        await channel.bot.set_webhook(config.webhook_url, secret_token="stale-secret")
        await server.user_sends(anna, "hello")
        await server.wait_for(lambda: len(server.webhook_attempts()) >= 2)
        assert {a.status for a in server.webhook_attempts()} == {401}
        assert [u["message"]["text"] for u in server.pending_updates()] == ["hello"]
        assert sink.calls == 0
        assert await inbound(db) == []

        await channel.bot.set_webhook(config.webhook_url, secret_token=WEBHOOK_SECRET)
        [row] = await logged(db, commits, 1)
        assert row.text == "hello"
        await server.wait_for(lambda: not server.pending_updates())
    assert server.webhook_attempts()[-1].status == 200


async def test_the_webhook_answers_503_until_the_update_is_committed(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    sink.fail = [StorageUnavailable("database is locked"), RuntimeError("a bug")]
    async with running(webhook_section(server), sink):
        anna = server.add_user("Anna")
        await server.user_sends(anna, "are you open on Sunday?")
        [row] = await logged(db, commits, 1)
        await server.wait_for(lambda: not server.pending_updates())
    assert row.text == "are you open on Sunday?"
    assert [a.status for a in server.webhook_attempts()] == [503, 503, 200]
    assert len(await inbound(db)) == 1


async def test_polling_confirms_an_update_only_after_its_commit(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    sink.fail = [StorageUnavailable("database is locked")]
    sink.hold_before = asyncio.Event()
    anna = server.add_user("Anna")
    async with running(section(server), sink):
        sent = await server.user_sends(anna, "first")
        await server.user_sends(anna, "second")
        await sink.reached(2)  # failed once, now retried and held before the commit
        pending = [u["update_id"] for u in server.pending_updates()]
        assert pending == [sent["update_id"], sent["update_id"] + 1]
        assert await inbound(db) == []
        # nothing was asked past the failed update
        offsets = [c.params.get("offset") for c in server.calls_to("getUpdates")]
        assert all(o is None or int(o) <= sent["update_id"] for o in offsets)

        sink.hold_before.set()
        await logged(db, commits, 2)
        await server.wait_for(lambda: not server.pending_updates())
    assert [r.text for r in await inbound(db)] == ["first", "second"]
    assert sink.calls == 3


async def test_a_rejected_message_is_confirmed_and_the_stream_goes_on(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    sink.fail = [MessageRejected("the message cannot be stored: DataError")]
    anna = server.add_user("Anna")
    async with running(section(server), sink):
        await server.user_sends(anna, "\x00 broken")
        await server.user_sends(anna, "fine")
        [row] = await logged(db, commits, 1)
        await server.wait_for(lambda: not server.pending_updates())
    assert row.text == "fine"
    assert sink.calls == 2


async def test_photo_and_document_are_stored_with_their_bytes(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits, files: AttachmentStore
) -> None:
    picture = png(4, 3)
    price = b"%PDF-1.4 the price list"
    anna = server.add_user("Anna")
    async with running(section(server), sink):
        await server.user_sends(anna, photo=picture, caption="like this one")
        await server.user_sends(anna, document=("price.pdf", price))
        photo_row, doc_row = await logged(db, commits, 2)
    assert photo_row.text == "like this one" and photo_row.extras["kind"] == "photo"
    assert doc_row.text == "" and doc_row.extras["kind"] == "document"
    stored = await rows(
        db,
        select(
            AttachmentRow.interaction_id,
            AttachmentRow.filename,
            AttachmentRow.content_type,
            AttachmentRow.size,
            AttachmentRow.sha256,
        ).order_by(AttachmentRow.id),
    )
    assert [tuple(s) for s in stored] == [
        (
            photo_row.id,
            f"photo_{photo_row.extras['message_id']}.jpg",
            "image/jpeg",
            len(picture),
            hashlib.sha256(picture).hexdigest(),
        ),
        (
            doc_row.id,
            "price.pdf",
            "application/pdf",
            len(price),
            hashlib.sha256(price).hexdigest(),
        ),
    ]
    # the largest photo size, not Telegram's thumbnail
    assert await files.get(stored[0].sha256) == picture
    assert await files.get(stored[1].sha256) == price


async def test_an_oversized_file_is_not_downloaded_and_is_noted(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    anna = server.add_user("Anna")
    async with running(section(server), sink, max_bytes=1000):
        await server.user_sends(anna, document=("video.bin", b"x" * 5000), caption="big one")
        await server.user_sends(anna, document=("small.txt", b"tiny"))
        big, small = await logged(db, commits, 2)
    assert big.text == "big one"
    assert big.extras["attachments_skipped"] == ["video.bin: 5000 bytes, over the limit of 1000"]
    assert "attachments_skipped" not in small.extras
    names = await rows(db, select(AttachmentRow.interaction_id, AttachmentRow.filename))
    assert [tuple(n) for n in names] == [(small.id, "small.txt")]
    assert len(server.calls_to("getFile")) == 1


async def test_a_file_telegram_refuses_is_noted_and_a_failed_download_is_retried(
    server: BotApiServer,
    sink: Sink,
    db: Database,
    commits: Commits,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    anna = server.add_user("Anna")
    async with running(section(server), sink):
        server.fail_next("getFile", 400, "Bad Request: file is too big")
        await server.user_sends(anna, document=("huge.zip", b"zip"))
        [refused] = await logged(db, commits, 1)
        server.fail_next("getFile", 502, "Bad Gateway")
        await server.user_sends(anna, document=("later.txt", b"fetched on retry"))
        _, retried = await logged(db, commits, 2)
        await server.wait_for(lambda: not server.pending_updates())
    assert refused.extras["attachments_skipped"] == ["huge.zip: Bad Request: file is too big"]
    [att] = await rows(db, select(AttachmentRow.interaction_id, AttachmentRow.filename))
    assert tuple(att) == (retried.id, "later.txt")
    assert [c.status for c in server.calls_to("getFile")] == [400, 502, 200]
    assert "telegram.update_retry" in caplog.text

    # A file gone from Telegram's storage: the download's 404 (whose URL holds the
    # token) becomes a note.
    sent = await server.user_sends(anna, document=("gone.txt", b"gone"))
    stored = server.world.files.by_id[sent["message"]["document"]["file_id"]]
    del server.world.files.by_path[stored.file_path]
    async with running(section(server), sink):
        [*_, gone] = await logged(db, commits, 3)
    assert gone.external_id == ext(server, sent)
    assert gone.extras["attachments_skipped"] == ["gone.txt: download answered 404"]
    assert server.token.split(":")[1] not in caplog.text


async def test_sticker_location_voice_and_video(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits, files: AttachmentStore
) -> None:
    voice, video = b"OggS voice bytes", b"\x00\x00\x00\x18ftypmp42 video"
    anna = server.add_user("Anna")
    async with running(section(server), sink):
        await server.user_sends(anna, sticker="😀")
        await server.user_sends(anna, location=(55.75, 37.61))
        await server.user_sends(anna, voice=voice, duration=5)
        await server.user_sends(anna, video=video, caption="how it looks")
        sticker, location, voice_row, video_row = await logged(db, commits, 4)
    assert sticker.text == "[sticker 😀]" and sticker.extras["kind"] == "sticker"
    assert location.text == "[location 55.75, 37.61]"
    assert (location.extras["latitude"], location.extras["longitude"]) == (55.75, 37.61)
    assert voice_row.extras["kind"] == "voice" and voice_row.text == ""
    assert video_row.extras["kind"] == "video" and video_row.text == "how it looks"
    stored = await rows(
        db,
        select(
            AttachmentRow.interaction_id,
            AttachmentRow.filename,
            AttachmentRow.content_type,
            AttachmentRow.sha256,
        ).order_by(AttachmentRow.id),
    )
    assert [tuple(s)[:3] for s in stored] == [
        (voice_row.id, f"voice_{voice_row.extras['message_id']}.ogg", "audio/ogg"),
        (video_row.id, f"video_{video_row.extras['message_id']}.mp4", "video/mp4"),
    ]
    assert await files.get(stored[0].sha256) == voice
    assert await files.get(stored[1].sha256) == video
    # the sticker was not downloaded: it is named, not stored
    assert len(server.calls_to("getFile")) == 2


async def test_a_shared_own_contact_links_the_phone_across_channels(
    server: BotApiServer, sink: Sink, ingestor: Ingestor, db: Database, commits: Commits
) -> None:
    anna = server.add_user("Anna", last_name="K")
    async with running(section(server), sink):
        await server.user_sends(anna, "hi")
        # Telegram gives a user's own number without the plus sign
        await server.user_sends(anna, contact="79123456789")
        _, row = await logged(db, commits, 2)
    assert row.text == "[contact +79123456789]"
    assert row.extras["contact"]["own"] is True
    [client_id] = {r.client_id for r in await inbound(db)}
    idents = await rows(
        db, select(Identity.kind, Identity.value).where(Identity.client_id == client_id)
    )
    assert sorted(tuple(i) for i in idents) == [
        ("phone", "+79123456789"),
        ("telegram", str(anna.id)),
    ]

    # The same phone, written another way, through a web form: the same client.
    form = InboundMessage(
        Channel.WEBFORM,
        "contact",
        "form-1",
        (
            identity("phone", "8 (912) 345-67-89", "Anna K", default_region="RU"),
            identity("email", "anna@example.com", "Anna K"),
        ),
        datetime.now(UTC),
        text="please call me back",
    )
    result = await ingestor(form)
    assert result.client_id == client_id and not result.new_client
    assert len(await rows(db, select(Client.id))) == 1


async def test_someone_elses_contact_is_kept_but_not_linked(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    anna = server.add_user("Anna")
    boris = server.add_user("Boris")
    contact = {"phone_number": "+79990001122", "first_name": "Boris", "user_id": boris.id}
    async with running(section(server), sink):
        await server.user_sends(anna, contact=contact)
        [row] = await logged(db, commits, 1)
    assert row.text == "[contact +79990001122]"
    assert row.extras["contact"] == {
        "phone": "+79990001122",
        "name": "Boris",
        "own": False,
        "user_id": boris.id,
    }
    idents = await rows(db, select(Identity.kind, Identity.value))
    assert [tuple(i) for i in idents] == [("telegram", str(anna.id))]


async def test_an_edit_is_a_new_interaction_pointing_to_the_original(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    anna = server.add_user("Anna")
    async with running(section(server), sink):
        first = await server.user_sends(anna, "I want 5 boxes")
        await logged(db, commits, 1)
        edited = await server.user_sends(anna, "I want 7 boxes", edit_of=first)
        original, edit = await logged(db, commits, 2)
    assert original.text == "I want 5 boxes"
    assert original.external_id == ext(server, first)
    assert edit.external_id == (
        f"{ext(server, first)}:edit:{edited['edited_message']['edit_date']}"
    )
    assert edit.text == "[edited] I want 7 boxes"
    assert edit.extras["edit_of"] == original.external_id
    assert edit.conversation_id == original.conversation_id
    assert edit.client_id == original.client_id


async def test_start_with_a_payload_records_the_source_and_stop_opts_out(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    anna = server.add_user("Anna")
    boris = server.add_user("Boris")
    async with running(section(server), sink):
        await server.start_bot(anna, "spring-campaign_42")
        await logged(db, commits, 1)
        await server.start_bot(boris)
        await server.user_sends(anna, "/stop")
        started, bare, stop = await logged(db, commits, 3)
    assert started.extras["command"] == "start"
    assert started.extras["source"] == "spring-campaign_42"
    assert bare.extras["command"] == "start" and "source" not in bare.extras
    assert stop.extras["command"] == "stop" and stop.extras["opt_out"] is True
    assert stop.client_id == started.client_id
    sources = dict(await rows(db, select(Client.id, Client.source)))
    assert sources == {started.client_id: "spring-campaign_42", bare.client_id: None}


async def test_a_restart_mid_stream_loses_nothing_and_logs_nothing_twice(
    server: BotApiServer, sink: Sink, ingestor: Ingestor, db: Database, commits: Commits
) -> None:
    anna = server.add_user("Anna")
    boris = server.add_user("Boris")
    # The third message is committed but its handler never returns: it is left
    # unconfirmed when the channel stops, and comes again after the restart.
    sink.hold_after_call = 3
    async with running(section(server), sink, grace=0.2):
        for n in range(3):
            await server.user_sends(anna, f"anna {n}")
            await server.user_sends(boris, f"boris {n}")
        await sink.reached(3)
        await logged(db, commits, 3)
    assert len(server.pending_updates()) == 4

    for n in range(3, 5):
        await server.user_sends(anna, f"anna {n}")
    again = Sink(ingestor)
    async with running(section(server), again):
        await logged(db, commits, 8)
        await server.wait_for(lambda: not server.pending_updates())
    texts = [r.text for r in await inbound(db)]
    assert sorted(texts) == sorted(
        [f"anna {n}" for n in range(5)] + [f"boris {n}" for n in range(3)]
    )
    assert len({r.external_id for r in await inbound(db)}) == 8
    assert [r.duplicate for r in again.results] == [True, False, False, False, False, False]


async def test_polling_removes_a_webhook_left_by_an_earlier_run(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    config = webhook_section(server)
    async with running(config, sink):
        pass
    assert server.bot.webhook is not None
    anna = server.add_user("Anna")
    await server.user_sends(anna, "queued while nobody listened")
    async with running(section(server), sink):
        [row] = await logged(db, commits, 1)
    assert row.text == "queued while nobody listened"
    assert server.bot.webhook is None


async def test_a_wrong_token_fails_the_start_without_showing_it(
    server: BotApiServer, sink: Sink
) -> None:
    config = section(server).model_copy(update={"token": SecretStr("123456:wrong-secret-part")})
    channel = TelegramChannel(config, max_attachment_bytes=1000)
    with pytest.raises(HubError, match="cannot start: TelegramUnauthorizedError") as caught:
        await channel.start(sink)
    assert "wrong-secret-part" not in str(caught.value)
    assert channel.bot is None
    await channel.stop()  # nothing to stop: harmless


# -- the staff side's seam ------------------------------------------------------------


class RecordingStaff:
    """A staff surface that claims the staff forum's updates and records them."""

    def __init__(self, chat_id: int) -> None:
        self.chat_id = chat_id
        self.handled: list[Update] = []
        self.sent: list[OutboundMessage] = []
        self.stopped = False

    async def handles(self, update: Update) -> bool:
        message = update.message or update.edited_message
        return message is not None and message.chat.id == self.chat_id

    async def handle(self, bot: Bot, update: Update) -> None:
        self.handled.append(update)

    async def send(self, bot: Bot, message: OutboundMessage) -> SendResult:
        self.sent.append(message)
        sent = await bot.send_message(self.chat_id, message.text)
        return SendResult(f"staff:{sent.message_id}")

    async def stop(self) -> None:
        self.stopped = True


async def test_staff_updates_and_kinds_go_to_the_staff_surface(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    staff = RecordingStaff(server.forum.id)
    anna = server.add_user("Anna")
    maria = server.add_manager("Maria")
    stranger = server.add_user("Stranger")
    other = server.add_group("Other group", is_forum=False)
    async with running(section(server), sink, staff=staff) as channel:
        await server.user_sends(maria, "morning, team", chat=server.forum)
        await server.user_sends(stranger, "spam", chat=other)
        await server.user_sends(anna, "hi")
        [row] = await logged(db, commits, 1)
        await server.wait_for(lambda: not server.pending_updates())
        assert row.text == "hi"
        assert [u.message.text for u in staff.handled if u.message] == ["morning, team"]

        mirror = OutboundMessage(1, "telegram", "staff", "staff", "mirror", "Anna: hi", "m:1")
        result = await channel.send(mirror)
        assert staff.sent == [mirror]
        assert result.external_id is not None and result.external_id.startswith("staff:")
        assert [m["text"] for m in server.sent_to(server.forum)] == ["Anna: hi"]
        assert server.sent_to(anna) == []
        assert not staff.stopped
    assert staff.stopped  # the channel's stop ends the staff side's own work
    assert len(await inbound(db)) == 1


async def test_staff_kinds_without_a_staff_surface_are_refused(
    server: BotApiServer, sink: Sink
) -> None:
    async with running(section(server), sink) as channel:
        with pytest.raises(PermanentDeliveryError, match="no staff surface"):
            await channel.send(OutboundMessage(1, "telegram", "staff", "staff", "mirror", "x", "k"))
    assert server.sent_to(server.forum) == []


# -- sending to clients ---------------------------------------------------------------


def reply(user: User, text: str, key: str = "reply:1") -> OutboundMessage:
    return OutboundMessage(
        outbox_id=1,
        channel="telegram",
        account="hub_test_bot",
        recipient=str(user.id),
        kind="reply",
        text=text,
        idempotency_key=key,
    )


@asynccontextmanager
async def talking(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> AsyncIterator[tuple[TelegramChannel, User]]:
    """A running channel and a client who wrote to the bot (so it may answer)."""
    anna = server.add_user("Anna")
    async with running(section(server), sink) as channel:
        await server.user_sends(anna, "hello?")
        await logged(db, commits, 1)
        yield channel, anna


async def test_a_reply_reaches_the_client_with_html_characters_literally(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    async with talking(server, sink, db, commits) as (channel, anna):
        text = "Price: 5 < 7 & <b>not bold</b> &amp; done"
        result = await channel.send(reply(anna, text))
        [sent] = server.sent_to(anna)
    assert sent["text"] == text
    assert "entities" not in sent
    assert result.external_id == f"{server.bot.id}:{anna.id}:{sent['message_id']}"


async def test_a_long_reply_arrives_in_parts_in_order(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    first, second = "a" * 3000, ("b <&> " * 333).strip()
    async with talking(server, sink, db, commits) as (channel, anna):
        result = await channel.send(reply(anna, f"{first}\n\n{second}"))
        one, two = server.sent_to(anna)
        await channel.send(reply(anna, "z" * 5000, key="reply:2"))
        three, four = server.sent_to(anna)[2:]
    assert (one["text"], two["text"]) == (first, second)
    assert len(first) + 2 + len(second) > 4096
    assert result.external_id == f"{server.bot.id}:{anna.id}:{two['message_id']}"
    assert (three["text"], four["text"]) == ("z" * 4096, "z" * 904)
    assert one["message_id"] < two["message_id"] < three["message_id"] < four["message_id"]


async def test_a_blocked_client_is_a_permanent_failure(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    async with talking(server, sink, db, commits) as (channel, anna):
        await server.block(anna)
        with pytest.raises(PermanentDeliveryError, match="blocked by the user"):
            await channel.send(reply(anna, "are you still there?"))
        # the my_chat_member update that follows is confirmed, not logged
        await server.wait_for(lambda: not server.pending_updates())
    assert server.sent_to(anna) == []
    assert len(await inbound(db)) == 1


async def test_flood_control_is_a_temporary_failure_with_retry_after(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    async with talking(server, sink, db, commits) as (channel, anna):
        server.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
        with pytest.raises(TemporaryDeliveryError) as caught:
            await channel.send(reply(anna, "one"))
        assert caught.value.retry_after == 7
        assert server.sent_to(anna) == []
        await channel.send(reply(anna, "one"))
    assert [m["text"] for m in server.sent_to(anna)] == ["one"]
    assert [t.scope for t in server.throttled] == ["injected"]


async def test_a_wrong_bot_url_is_temporary_and_a_too_large_payload_permanent(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    # The same map as the staff side's (channels/telegram/errors.py): they disagreed.
    async with talking(server, sink, db, commits) as (channel, anna):
        server.fail_next("sendMessage", 404, "Not Found")
        with pytest.raises(TemporaryDeliveryError, match="Not Found"):
            await channel.send(reply(anna, "one"))
        server.fail_next("sendMessage", 413, "Request Entity Too Large")
        with pytest.raises(PermanentDeliveryError, match="Too Large"):
            await channel.send(reply(anna, "one"))
        await channel.send(reply(anna, "one"))
    assert [m["text"] for m in server.sent_to(anna)] == ["one"]


async def test_a_retry_of_a_long_reply_sends_only_the_parts_not_sent(
    server: BotApiServer, sink: Sink, db: Database, commits: Commits
) -> None:
    async with talking(server, sink, db, commits) as (channel, anna):
        assert channel.bot is not None
        original = channel.bot.send_message
        calls = 0

        async def second_part_throttled(*args: Any, **kwargs: Any) -> Message:
            nonlocal calls
            calls += 1
            if calls == 2:
                server.fail_next(
                    "sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3
                )
            return await original(*args, **kwargs)

        channel.bot.send_message = second_part_throttled  # type: ignore[method-assign]
        text = "a" * 4000 + "\n" + "b" * 4000
        with pytest.raises(TemporaryDeliveryError) as caught:
            await channel.send(reply(anna, text))
        assert caught.value.retry_after == 3
        assert [m["text"] for m in server.sent_to(anna)] == ["a" * 4000]
        await channel.send(reply(anna, text))
    assert [m["text"] for m in server.sent_to(anna)] == ["a" * 4000, "b" * 4000]


async def test_sending_needs_a_running_channel(server: BotApiServer, sink: Sink) -> None:
    channel = TelegramChannel(section(server), max_attachment_bytes=1000)
    anna = server.add_user("Anna")
    with pytest.raises(TemporaryDeliveryError, match="not running"):
        await channel.send(reply(anna, "hi"))
    async with running(section(server), sink) as started:
        with pytest.raises(PermanentDeliveryError, match="not a Telegram user id"):
            await started.send(
                OutboundMessage(1, "telegram", "b", "anna@x.org", "reply", "hi", "k")
            )


# -- normalization and splitting, without a server ------------------------------------


def test_split_text_counts_utf16_and_cuts_at_boundaries() -> None:
    assert split_text("short") == ["short"]
    assert split_text("") == []
    text = "para one\n\npara two line\nline two words here"
    assert split_text(text, 20) == ["para one", "para two line", "line two words here"]
    assert split_text("abcdef", 4) == ["abcd", "ef"]
    emoji = "🙂" * 3000  # two UTF-16 units each
    parts = split_text(emoji)
    assert [utf16_len(p) for p in parts] == [4096, 1904]
    assert "".join(parts) == emoji


def command(text: str) -> Command | None:
    return parse(text, "hub_test_bot")


def test_language_and_commands() -> None:
    assert [language(c) for c in ("ru", "ru-RU", "en", "de", None, "")] == [
        "ru",
        "ru",
        "en",
        "en",
        None,
        None,
    ]
    assert command("/start abc") == ("start", "abc")
    assert command("/START@hub_test_bot abc ") == ("start", "abc")
    assert command("/stop") == ("stop", "")
    assert command("hello /stop") is None


def test_normalize_an_unlinkable_own_contact_and_a_bare_start_with_text() -> None:
    base = {
        "date": 1_767_607_200,
        "chat": {"id": 42, "type": "private", "first_name": "Anna"},
        "from": {"id": 42, "is_bot": False, "first_name": "Anna"},
    }
    garbage = Message.model_validate(
        {
            **base,
            "message_id": 7,
            "contact": {"phone_number": "12", "first_name": "Anna", "user_id": 42},
        }
    )
    draft = normalize(garbage, bot_id=9, account="bot", max_attachment_bytes=10)
    assert draft is not None and draft.file is None
    assert [i.kind.value for i in draft.message.identities] == ["telegram"]
    assert draft.message.text == "[contact 12]"
    assert draft.message.external_id == "9:42:7"
    assert draft.message.received_at == datetime(2026, 1, 5, 10, 0, tzinfo=UTC)

    # Text after /start that is not a deep-link payload is not a source.
    chatty = Message.model_validate({**base, "message_id": 8, "text": "/start hello there"})
    draft = normalize(chatty, bot_id=9, account="bot", max_attachment_bytes=10)
    assert draft is not None
    assert draft.message.extras["command"] == "start"
    assert "source" not in draft.message.extras
