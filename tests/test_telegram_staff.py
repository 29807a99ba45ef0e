"""The managers' side of the Telegram channel (channels/telegram/staff/), issue 3
"Managers": the real aiogram client against the local Bot API server, the real
Desk and Ingestor, on SQLite and PostgreSQL. Topics and cards, mirrors and
media, a deleted topic, answers and notes, commands and buttons, strangers, the
private inbox and search, private notices, errors, and the group's message
budget under flood control (with the hub's dispatcher retrying)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Update
from sqlalchemy import func, insert, select, update

from channels.telegram import render
from channels.telegram.base import STAFF_KINDS
from channels.telegram.staff import Pacer, StaffSide
from hub.clients.attachments import AttachmentStore
from hub.config import DispatcherSection, TelegramSection
from hub.delivery.dispatcher import Dispatcher, outbound_of
from hub.desk.desk import Desk
from hub.ingest.ingestor import Ingestor
from hub.jobs.reminders import fire_due
from hub.kernel.clock import Clock, FrozenClock, SystemClock
from hub.kernel.errors import PermanentDeliveryError, TemporaryDeliveryError
from hub.kernel.identities import identity
from hub.kernel.ports import ChannelLimits, InboundSink
from hub.kernel.types import (
    Attachment,
    Channel,
    Identity,
    InboundMessage,
    IngestResult,
    OutboundMessage,
    SendResult,
    Topic,
)
from storage import Database
from storage.models import Audit, Client, Conversation, Interaction, Manager, Outbox, Reminder
from tests.botapi import BotApiServer, Limits
from tests.botapi.limits import Rate
from tests.botapi.world import Group, Json, User
from tests.test_botapi import png

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
ANNA = identity("telegram", 4242, "Anna")
RETRYING = DispatcherSection(
    max_attempts=50, backoff_base_s=0.05, backoff_max_s=0.5, idle_poll_s=0.05, lease_s=60
)


def unpaced() -> Pacer:
    """No pacing: for a server whose flood limits are off."""
    return Pacer(gap=0.0, group=None)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Wait until ``check()`` holds; the database has no event to wait on, so it is polled."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


async def rows(db: Database, statement: Any) -> list[Any]:
    async with db.read() as conn:
        return list((await conn.execute(statement)).all())


def visible(message: Json) -> str:
    return str(message.get("text") or message.get("caption") or "")


def topic_texts(messages: list[Json]) -> list[str]:
    """Visible texts; a topic's first message split into the card and the words below it."""
    texts: list[str] = []
    for message in messages:
        card, mark, below = visible(message).partition(f"\n{render.HISTORY_MARK}\n")
        texts.extend([card, below] if mark else [card])
    return texts


def links(message: Json) -> list[str]:
    entities = message.get("entities") or message.get("caption_entities") or []
    return [e["url"] for e in entities if e["type"] == "text_link"]


@dataclass
class StaffDesk:
    """A staff desk under test: the Bot API server, the bot, the hub's desk and
    ingest, and the staff side; ``writes`` plays a client, ``feed`` the update stream."""

    server: BotApiServer
    bot: Bot
    db: Database
    clock: Clock
    desk: Desk
    ingestor: Ingestor
    staff: StaffSide
    offset: int = 0
    serial: int = 0

    @property
    def forum(self) -> Group:
        return self.server.forum

    async def manager(self, name: str, *, away: bool = True) -> User:
        """A registered manager, member of the staff forum; ``away`` ones get no routing."""
        user = self.server.add_manager(name)
        async with self.db.write() as conn:
            await conn.execute(
                insert(Manager).values(
                    name=name,
                    telegram_id=user.id,
                    created_at=T0,
                    attrs={"language": "en"},
                    away=away,
                )
            )
        return user

    async def writes(
        self,
        who: Identity,
        text: str = "hello",
        *more: Identity,
        channel: Channel = Channel.TELEGRAM,
        subject: str | None = None,
        attachments: tuple[Attachment, ...] = (),
    ) -> IngestResult:
        """A client's message as a channel hands it to ingest."""
        self.serial += 1
        return await self.ingestor(
            InboundMessage(
                channel,
                f"{channel.value}-account",
                f"ext-{self.serial}",
                (who, *more),
                self.clock.now(),
                text=text,
                subject=subject,
                attachments=attachments,
            )
        )

    async def pending(self, *kinds: str) -> list[OutboundMessage]:
        found = await rows(
            self.db,
            select(Outbox)
            .where(Outbox.status == "pending", Outbox.kind.in_(kinds or STAFF_KINDS))
            .order_by(Outbox.id),
        )
        return [outbound_of(row) for row in found]

    async def flush(self) -> list[SendResult]:
        """Send each pending staff row through the staff side, as the dispatcher would."""
        results = []
        for message in await self.pending():
            results.append(await self.staff.send(self.bot, message))
            async with self.db.write() as conn:
                await conn.execute(
                    update(Outbox).where(Outbox.id == message.outbox_id).values(status="sent")
                )
        return results

    async def feed(self) -> int:
        """Hand the staff side the updates the server holds for the bot; how many it took."""
        taken = 0
        for upd in await self.bot.get_updates(offset=self.offset, timeout=0):
            self.offset = upd.update_id + 1
            if await self.staff.handles(upd):
                await self.staff.handle(self.bot, upd)
                taken += 1
        return taken

    async def says(self, user: User, thread: int, text: str | None = None, **content: Any) -> Json:
        """A manager (or anyone) posts in a topic, and the staff side handles it."""
        sent = await self.server.manager_sends_in_topic(user, thread, text, **content)
        await self.feed()
        return sent

    def thread(self, name: str) -> int:
        topic = next(t for t in self.server.topics() if t.name.startswith(name))
        return topic.message_thread_id

    def in_topic(self, thread: int, chat: Group | None = None) -> list[Json]:
        return self.server.sent_to(chat or self.forum, thread)


def make_bot(server: BotApiServer) -> Bot:
    api = TelegramAPIServer.from_base(server.base_url)
    return Bot(server.token, session=AiohttpSession(api=api))


@contextlib.asynccontextmanager
async def staff_desk(
    db: Database,
    tmp_path: Path,
    server: BotApiServer,
    *,
    clock: Clock | None = None,
    pacer: Pacer | None = None,
    max_wait: float = 2.5,
    extra_chats: tuple[int, ...] = (),
) -> AsyncIterator[StaffDesk]:
    clock = clock or FrozenClock(T0)
    files = AttachmentStore(tmp_path / "files", 10**7)
    desk = Desk(db, clock, files, language="en", timezone="UTC", region="RU")
    ingestor = Ingestor(db, clock, files, staff_channel="telegram")
    await ingestor.start()
    bot = make_bot(server)
    config = TelegramSection(staff_chat_id=server.forum.id, extra_staff_chat_ids=list(extra_chats))
    staff = StaffSide(
        desk, config, language="en", clock=clock, pacer=pacer or unpaced(), max_wait=max_wait
    )
    try:
        yield StaffDesk(server, bot, db, clock, desk, ingestor, staff)
    finally:
        await ingestor.stop()
        await bot.session.close()


@pytest.fixture
async def server() -> AsyncIterator[BotApiServer]:
    async with BotApiServer(limits=Limits.off()) as running:
        yield running


@pytest.fixture
async def hub(db: Database, tmp_path: Path, server: BotApiServer) -> AsyncIterator[StaffDesk]:
    async with staff_desk(db, tmp_path, server) as running:
        yield running


async def conversation(db: Database, conversation_id: int | None) -> tuple[str, int | None]:
    [found] = await rows(
        db,
        select(Conversation.status, Conversation.assignee_id).where(
            Conversation.id == conversation_id
        ),
    )
    return found.status, found.assignee_id


async def manager_id(db: Database, user: User) -> int:
    [found] = await rows(db, select(Manager.id).where(Manager.telegram_id == user.id))
    return int(found.id)


# -- topics and mirrors ------------------------------------------------------------


async def test_a_first_message_opens_a_topic_with_the_card_and_the_text_in_one_message(
    hub: StaffDesk,
) -> None:
    anna = await hub.writes(ANNA, "hello <b>world</b> & co")
    [result] = await hub.flush()
    [topic] = hub.server.topics()
    assert topic.name == "Anna · telegram"
    thread = topic.message_thread_id
    assert await hub.desk.topic_of(anna.client_id) == Topic(hub.forum.id, thread)

    [card] = hub.in_topic(thread)  # the topic's creation and one message: two posts
    assert card["text"].startswith(f"👤 Anna · #{anna.client_id}\n✈️ 4242\n")
    assert "Stage: prospect" in card["text"] and "Open requests: 1" in card["text"]
    assert "← 05.01 10:00 telegram: hello <b>world</b> & co" in card["text"]
    buttons = card["reply_markup"]["inline_keyboard"][0]
    assert [b["callback_data"] for b in buttons] == [
        f"hub:{action}:{anna.client_id}" for action in ("take", "resolve", "wait", "reopen", "card")
    ]
    assert [b["text"] for b in buttons] == ["Take", "Resolve", "⏸ Wait", "Reopen", "Card"]
    # The client's text below the card, as they wrote it: escaped, never parsed as markup.
    assert card["text"].endswith("\n┈┈┈┈┈┈┈┈\n💬 telegram\nhello <b>world</b> & co")
    assert result.external_id == f"{hub.forum.id}:{card['message_id']}"

    await hub.writes(ANNA, "second")
    await hub.flush()
    assert len(hub.server.topics()) == 1
    assert [visible(m) for m in hub.in_topic(thread)][1:] == ["💬 telegram\nsecond"]


async def test_an_email_is_mirrored_with_its_channel_and_subject(hub: StaffDesk) -> None:
    bob = identity("email", "bob@example.org", "Bob Stone")
    await hub.writes(bob, "Where is my order?", channel=Channel.EMAIL, subject="Order 42")
    await hub.flush()
    [topic] = hub.server.topics()
    assert topic.name == "Bob Stone · email"
    [card] = hub.in_topic(topic.message_thread_id)
    assert "✉️ bob@example.org" in card["text"]
    assert card["text"].endswith("\n✉️ email · Order 42\nWhere is my order?")


async def test_media_are_relayed_not_named(hub: StaffDesk, tmp_path: Path) -> None:
    image = png(4, 3)
    await hub.writes(ANNA, "look", attachments=(Attachment("p.png", "image/png", image),))
    await hub.writes(
        ANNA,
        "",
        attachments=(
            Attachment("contract.pdf", "application/pdf", b"%PDF-1.4 contract"),
            Attachment("voice.ogg", "audio/ogg", b"OggS voice"),
        ),
    )
    await hub.flush()
    thread = hub.thread("Anna")
    _, photo, document, voice = hub.in_topic(thread)
    assert photo["caption"] == "💬 telegram\nlook" and "photo" in photo
    assert hub.server.file_bytes(photo["photo"][-1]["file_id"]) == image
    assert document["caption"] == "💬 telegram"
    assert document["document"]["file_name"] == "contract.pdf"
    assert hub.server.file_bytes(document["document"]["file_id"]) == b"%PDF-1.4 contract"
    assert "voice" in voice and hub.server.file_bytes(voice["voice"]["file_id"]) == b"OggS voice"

    # A photo Telegram cannot process goes as a file.
    hub.server.fail_next("sendPhoto", 400, "Bad Request: IMAGE_PROCESS_FAILED")
    await hub.writes(ANNA, "", attachments=(Attachment("odd.png", "image/png", b"not a png"),))
    await hub.flush()
    fallback = hub.in_topic(thread)[-1]
    assert fallback["document"]["file_name"] == "odd.png"


async def test_a_long_message_is_split_at_4096(hub: StaffDesk) -> None:
    words = " ".join(f"w{n:04d}" for n in range(1500))  # 8999 characters
    await hub.writes(ANNA, words)
    await hub.flush()
    _, *parts = hub.in_topic(hub.thread("Anna"))
    assert len(parts) == 3
    assert all(render.utf16_len(visible(p)) <= 4096 for p in parts)
    text = " ".join(visible(p) for p in parts)
    assert text == "💬 telegram\n" + words


async def test_a_deleted_topic_is_recreated_with_the_card(hub: StaffDesk) -> None:
    anna = await hub.writes(ANNA, "first")
    await hub.flush()
    old = hub.thread("Anna")
    await hub.server.delete_topic(old)
    await hub.writes(ANNA, "after the topic was deleted")
    await hub.flush()
    [topic] = hub.server.topics()
    assert topic.message_thread_id != old and topic.name == "Anna · telegram"
    assert await hub.desk.topic_of(anna.client_id) == Topic(hub.forum.id, topic.message_thread_id)
    [card] = hub.in_topic(topic.message_thread_id)
    assert card["text"].startswith("👤 Anna") and card["reply_markup"]
    assert topic_texts([card])[1] == "💬 telegram\nafter the topic was deleted"


async def test_a_closed_topic_is_reopened(hub: StaffDesk) -> None:
    await hub.writes(ANNA, "first")
    await hub.flush()
    thread = hub.thread("Anna")
    await hub.bot.close_forum_topic(hub.forum.id, thread)
    await hub.writes(ANNA, "are you there?")
    await hub.flush()
    [topic] = hub.server.topics()
    assert not topic.closed and topic.message_thread_id == thread
    assert visible(hub.in_topic(thread)[-1]) == "💬 telegram\nare you there?"


async def test_topics_are_spread_over_the_staff_groups(
    db: Database, tmp_path: Path, server: BotApiServer
) -> None:
    second = server.add_group("Staff 2")
    async with staff_desk(db, tmp_path, server, extra_chats=(second.id,)) as hub:
        maria = await hub.manager("Maria")
        await hub.writes(ANNA, "one")
        boris = await hub.writes(identity("telegram", 5151, "Boris"), "two")
        await hub.flush()
        assert [t.name for t in server.topics()] == ["Anna · telegram"]
        [topic] = server.topics(second)
        assert topic.name == "Boris · telegram"
        assert topic_texts(hub.in_topic(topic.message_thread_id, second))[1:] == [
            "💬 telegram\ntwo"
        ]
        # Managers answer there as in the first group.
        await server.manager_sends_in_topic(maria, topic.message_thread_id, "hi", chat=second)
        await hub.feed()
        [reply] = await rows(db, select(Outbox.recipient).where(Outbox.kind == "reply"))
        assert reply.recipient == "5151" and boris.client_id


# -- what managers write in a topic ------------------------------------------------


async def test_a_managers_message_is_an_answer_to_the_client_logged_once(
    hub: StaffDesk,
) -> None:
    maria = await hub.manager("Maria")
    anna = await hub.writes(ANNA, "hi")
    await hub.flush()
    thread = hub.thread("Anna")
    sent = await hub.says(maria, thread, "Hello <Anna> & welcome")
    # The same update again (a redelivery): nothing new.
    await hub.staff.handle(hub.bot, Update.model_validate(sent, context={"bot": hub.bot}))

    outs = await rows(
        hub.db,
        select(Interaction.text, Interaction.author, Interaction.delivery).where(
            Interaction.direction == "out"
        ),
    )
    assert [tuple(r) for r in outs] == [("Hello <Anna> & welcome", "Maria", "pending")]
    replies = await rows(
        hub.db,
        select(Outbox.idempotency_key, Outbox.recipient, Outbox.kind, Outbox.status).where(
            Outbox.kind == "reply"
        ),
    )
    key = f"tg:{hub.forum.id}:{sent['message']['message_id']}"
    assert [tuple(r) for r in replies] == [(key, "4242", "reply", "pending")]
    assert await conversation(hub.db, anna.conversation_id) == (
        "pending",
        await manager_id(hub.db, maria),
    )


async def test_a_managers_photo_goes_to_the_client_with_the_answer(hub: StaffDesk) -> None:
    maria = await hub.manager("Maria")
    await hub.writes(ANNA, "send me the scheme")
    await hub.flush()
    image = png(5, 5)
    await hub.says(maria, hub.thread("Anna"), caption="here it is", photo=image)
    [out] = await rows(
        hub.db, select(Interaction.id, Interaction.text).where(Interaction.direction == "out")
    )
    assert out.text == "here it is"
    [stored] = await hub.desk.attachments(out.id)
    assert stored.content_type == "image/jpeg" and stored.size == len(image)
    assert await hub.desk.attachment_bytes(stored.sha256) == image
    assert len(await rows(hub.db, select(Outbox.id).where(Outbox.kind == "reply"))) == 1


async def test_a_note_is_logged_and_never_queued(hub: StaffDesk) -> None:
    maria = await hub.manager("Maria")
    anna = await hub.writes(ANNA, "hi")
    await hub.flush()
    thread = hub.thread("Anna")
    await hub.says(maria, thread, "! she is a VIP")
    await hub.says(maria, thread, "/note call after 18:00")
    notes = await rows(
        hub.db,
        select(Interaction.text, Interaction.author).where(Interaction.direction == "note"),
    )
    assert [tuple(r) for r in notes] == [
        ("she is a VIP", "Maria"),
        ("call after 18:00", "Maria"),
    ]
    assert await rows(hub.db, select(Outbox.id).where(Outbox.kind == "reply")) == []
    assert (await conversation(hub.db, anna.conversation_id))[0] == "open"


async def test_commands_change_the_request_and_the_client_and_are_logged(
    hub: StaffDesk,
) -> None:
    maria = await hub.manager("Maria")
    boris = await hub.manager("Boris")
    anna = await hub.writes(ANNA, "hi")
    await hub.flush()
    thread = hub.thread("Anna")
    conv, cid = anna.conversation_id, anna.client_id
    maria_id, boris_id = await manager_id(hub.db, maria), await manager_id(hub.db, boris)

    await hub.says(maria, thread, "/take")
    assert await conversation(hub.db, conv) == ("open", maria_id)
    await hub.says(maria, thread, "/tag vip, wholesale")
    await hub.says(maria, thread, "/stage repeat buyer")
    [client] = await rows(hub.db, select(Client.tags, Client.stage).where(Client.id == cid))
    assert (client.tags, client.stage) == (["vip", "wholesale"], "repeat_buyer")
    await hub.says(maria, thread, "/remind 2h call back")
    [reminder] = await rows(
        hub.db, select(Reminder.due_at, Reminder.text, Reminder.manager_id, Reminder.client_id)
    )
    assert tuple(reminder) == (T0 + timedelta(hours=2), "call back", maria_id, cid)
    await hub.says(maria, thread, "/transfer Boris")
    assert await conversation(hub.db, conv) == ("open", boris_id)
    [told] = await rows(hub.db, select(Outbox.recipient).where(Outbox.kind == "assigned"))
    assert told.recipient == str(boris.id)
    await hub.says(boris, thread, "/resolve")
    assert (await conversation(hub.db, conv))[0] == "resolved"
    await hub.says(boris, thread, "/reopen@hub_test_bot")
    assert (await conversation(hub.db, conv))[0] == "open"

    confirmations = [
        "Taken by Maria",
        "Tags: vip, wholesale",
        "Stage: repeat_buyer (Maria)",
        "Reminder set for Mon 5 Jan 12:00: call back",
        "Transferred to Boris by Maria",
        "Resolved by Boris",
        "Reopened by Boris",
    ]
    events = await rows(
        hub.db,
        select(Interaction.text)
        .where(Interaction.direction == "event", Interaction.client_id == cid)
        .order_by(Interaction.id),
    )
    # The stage move is logged in a fixed form (reports count the moves).
    logged = [
        "stage: prospect → repeat_buyer (by hand)" if c.startswith("Stage:") else c
        for c in confirmations
    ]
    assert [e.text for e in events if not e.text.startswith("routed")] == logged
    # Each confirmation is shown in the topic, after the command.
    shown = [visible(m) for m in hub.in_topic(thread)]
    assert [s for s in shown if s in confirmations] == confirmations

    await hub.says(maria, thread, "/card")
    card = hub.in_topic(thread)[-1]
    assert card["text"].startswith("👤 Anna") and "Assignee: Boris" in card["text"]
    assert "Tags: vip, wholesale" in card["text"] and card["reply_markup"]

    await hub.says(maria, thread, "/bogus")
    assert hub.in_topic(thread)[-1]["text"].startswith("Unknown command: /bogus")
    # Neither commands nor their answers went to the client.
    assert await rows(hub.db, select(Outbox.id).where(Outbox.kind == "reply")) == []


async def test_a_command_for_another_bot_is_not_obeyed(hub: StaffDesk) -> None:
    # Regression: "/take@otherbot" in a staff group with another bot was taken as ours.
    maria = await hub.manager("Maria")
    anna = await hub.writes(ANNA, "hi")
    await hub.flush()
    thread = hub.thread("Anna")
    conv, maria_id = anna.conversation_id, await manager_id(hub.db, maria)
    before = len(hub.in_topic(thread))

    await hub.says(maria, thread, "/take@otherbot")
    assert await conversation(hub.db, conv) == ("open", None)
    assert len(hub.in_topic(thread)) == before  # no answer, no help
    # Nor is it an answer for the client.
    assert await rows(hub.db, select(Outbox.id).where(Outbox.kind == "reply")) == []

    await hub.says(maria, thread, "/take@Hub_Test_Bot")
    assert await conversation(hub.db, conv) == ("open", maria_id)
    await hub.says(maria, thread, "/resolve@hub_test_bot")
    assert (await conversation(hub.db, conv))[0] == "resolved"
    await hub.says(maria, thread, "/reopen@otherbot")
    assert (await conversation(hub.db, conv))[0] == "resolved"
    await hub.says(maria, thread, "/reopen")
    assert (await conversation(hub.db, conv))[0] == "open"


async def test_buttons_act_answer_and_refresh_the_card(hub: StaffDesk) -> None:
    maria = await hub.manager("Maria")
    anna = await hub.writes(ANNA, "hi")
    await hub.flush()
    thread = hub.thread("Anna")
    cid, conv = anna.client_id, anna.conversation_id
    card = hub.in_topic(thread)[0]
    assert "Assignee: —" in card["text"]

    await hub.server.callback(maria, card, f"hub:take:{cid}")
    await hub.feed()
    assert await conversation(hub.db, conv) == ("open", await manager_id(hub.db, maria))
    assert [a["text"] for a in hub.server.callback_answers.values()] == ["Taken by Maria"]
    card = hub.in_topic(thread)[0]
    assert "Assignee: Maria" in card["text"] and card["reply_markup"]  # refreshed in place
    assert topic_texts([card])[1] == "💬 telegram\nhi"  # the client's words stay below it
    assert visible(hub.in_topic(thread)[-1]) == "Taken by Maria"

    await hub.server.callback(maria, card, f"hub:resolve:{cid}")
    await hub.feed()
    assert (await conversation(hub.db, conv))[0] == "resolved"
    assert "Open requests: 0" in hub.in_topic(thread)[0]["text"]
    await hub.server.callback(maria, card, f"hub:reopen:{cid}")
    await hub.feed()
    assert (await conversation(hub.db, conv))[0] == "open"
    await hub.server.callback(maria, card, f"hub:card:{cid}")
    await hub.feed()
    assert list(hub.server.callback_answers.values())[-1]["text"] is None
    events = await rows(
        hub.db,
        select(Interaction.text).where(
            Interaction.direction == "event", Interaction.author == "Maria"
        ),
    )
    assert [e.text for e in events] == ["Taken by Maria", "Resolved by Maria", "Reopened by Maria"]


async def test_a_reminder_comes_with_done_and_snooze_buttons_for_its_manager_only(
    hub: StaffDesk,
) -> None:
    """Issue 6 "Reminders": delivered with done, snooze 1 h, snooze 1 day; a press acts
    once, for the reminder's manager only, and is logged on the client."""
    assert isinstance(hub.clock, FrozenClock)
    maria = await hub.manager("Maria")
    boris = await hub.manager("Boris")
    await hub.server.user_sends(maria, "/start")
    await hub.feed()
    anna = await hub.writes(ANNA, "hi")
    await hub.flush()
    await hub.says(maria, hub.thread("Anna"), "/remind 2h call back")
    hub.clock.advance(timedelta(hours=2))
    assert await fire_due(hub.db, hub.clock, staff_channel="telegram") == 1
    await hub.flush()
    notice = hub.server.sent_to(maria.id)[-1]
    assert notice["text"].splitlines()[1] == "⏰ Reminder: call back"
    buttons = notice["reply_markup"]["inline_keyboard"][0]
    assert [b["text"] for b in buttons] == ["Done", "Snooze 1 h", "Snooze 1 day"]
    [rid] = [r.id for r in await rows(hub.db, select(Reminder.id))]
    assert [b["callback_data"] for b in buttons] == [
        f"hub:rem:done:{rid}:1",
        f"hub:rem:snooze_hour:{rid}:1",
        f"hub:rem:snooze_day:{rid}:1",
    ]

    async def press(user: Any, message: Any, data: str) -> str:
        query = await hub.server.callback(user, message, data)
        await hub.feed()
        return str(hub.server.callback_answers[query["callback_query"]["id"]]["text"])

    async def state() -> tuple[str, datetime]:
        [found] = await rows(hub.db, select(Reminder.status, Reminder.due_at))
        return found.status, found.due_at

    # Another manager's press is refused, told why and recorded.
    answer = await press(boris, notice, f"hub:rem:snooze_hour:{rid}:1")
    assert answer == "This reminder is another manager's: only they can use its buttons"
    assert await state() == ("fired", T0 + timedelta(hours=2))
    [refused] = await rows(hub.db, select(Audit.actor, Audit.object_id))
    assert tuple(refused) == (f"telegram:{boris.id}", rid)

    answer = await press(maria, notice, f"hub:rem:snooze_hour:{rid}:1")
    assert answer == "Reminder snoozed until 05.01 13:00: call back (Maria)"
    assert await state() == ("pending", T0 + timedelta(hours=3))
    # Pressed again (or the other snooze): nothing moves.
    assert await press(maria, notice, f"hub:rem:snooze_day:{rid}:1") == (
        "This reminder has been dealt with already"
    )
    assert await state() == ("pending", T0 + timedelta(hours=3))

    hub.clock.advance(timedelta(hours=1))
    assert await fire_due(hub.db, hub.clock, staff_channel="telegram") == 1
    await hub.flush()
    again = hub.server.sent_to(maria.id)[-1]
    assert again["message_id"] != notice["message_id"]
    # The first delivery's buttons are spent; the second's work.
    assert await press(maria, notice, f"hub:rem:done:{rid}:1") == (
        "This reminder has been dealt with already"
    )
    assert await press(maria, again, f"hub:rem:done:{rid}:2") == "Reminder done: call back (Maria)"
    assert (await state())[0] == "done"
    events = await rows(
        hub.db,
        select(Interaction.text)
        .where(Interaction.client_id == anna.client_id, Interaction.direction == "event")
        .order_by(Interaction.id),
    )
    assert [e.text for e in events if e.text.startswith("Reminder ")] == [
        "Reminder set for Mon 5 Jan 12:00: call back",
        "Reminder snoozed until 05.01 13:00: call back (Maria)",
        "Reminder done: call back (Maria)",
    ]


async def test_strangers_are_ignored_and_recorded(hub: StaffDesk) -> None:
    await hub.manager("Maria")
    anna = await hub.writes(ANNA, "hi")
    await hub.flush()
    thread = hub.thread("Anna")
    card = hub.in_topic(thread)[0]
    before = len(hub.in_topic(thread))
    eve = hub.server.add_user("Eve")

    await hub.says(eve, thread, "/resolve")
    await hub.says(eve, thread, "Anna, pay to my card instead")
    await hub.server.user_sends(eve, "/take", chat=hub.forum)  # the general topic
    await hub.server.callback(eve, card, f"hub:resolve:{anna.client_id}")
    assert await hub.feed() == 2

    assert await conversation(hub.db, anna.conversation_id) == ("open", None)
    done = await rows(
        hub.db,
        select(Interaction.direction, Interaction.text).where(Interaction.direction != "in"),
    )
    assert [d for d in done if not d.text.startswith("routed")] == []
    assert await rows(hub.db, select(Outbox.id).where(Outbox.kind == "reply")) == []
    audit = await rows(hub.db, select(Audit.actor, Audit.action, Audit.details).order_by(Audit.id))
    assert [(a.actor, a.action) for a in audit] == [(f"telegram:{eve.id}", "refused")] * 4
    assert audit[0].details == {"what": f"message in staff chat {hub.forum.id}: /resolve"}
    assert audit[3].details == {"what": f"button hub:resolve:{anna.client_id}"}
    assert len(hub.server.callback_answers) == 1  # the button is answered all the same
    assert len(hub.in_topic(thread)) == before  # and nothing is said to them


async def test_what_is_not_about_a_client_is_left_alone(hub: StaffDesk) -> None:
    maria = await hub.manager("Maria")
    await hub.writes(ANNA, "hi")
    await hub.flush()
    handmade = await hub.server.create_topic("Team chat", by=maria)  # a service message
    await hub.server.manager_sends_in_topic(maria, handmade.message_thread_id, "lunch?")
    await hub.server.user_sends(maria, "good morning", chat=hub.forum)  # the general topic
    assert await hub.feed() == 3
    assert await rows(hub.db, select(Interaction.id).where(Interaction.direction == "out")) == []
    assert await rows(hub.db, select(Audit.id)) == []
    # Clients writing to the bot, and buttons of others, are not the staff's.
    client = hub.server.add_user("Client")
    await hub.server.user_sends(client, "/inbox")
    [upd] = await hub.bot.get_updates(offset=hub.offset, timeout=0)
    assert not await hub.staff.handles(upd)


# -- the private chat --------------------------------------------------------------


async def test_inbox_lists_my_open_requests_oldest_first_with_links(hub: StaffDesk) -> None:
    maria = await hub.manager("Maria")
    assert isinstance(hub.clock, FrozenClock)
    older = await hub.writes(identity("telegram", 1, "Older"), "first")
    hub.clock.advance(timedelta(minutes=30))
    newer = await hub.writes(identity("telegram", 2, "Newer"), "second")
    other = await hub.writes(identity("telegram", 3, "Not mine"), "third")
    await hub.flush()
    me = await hub.desk.manager(maria.id)
    assert me is not None
    for cid in (newer.client_id, older.client_id):
        await hub.desk.act(cid, me, "take")
    hub.clock.advance(timedelta(minutes=30))

    await hub.server.user_sends(maria, "/inbox")
    assert await hub.feed() == 1
    reply = hub.server.sent_to(maria.id)[-1]
    lines = reply["text"].splitlines()
    assert lines[0] == "Your open requests (2):"
    assert lines[1] == "1. Older · telegram · waiting 1h 00m"
    assert lines[2] == "2. Newer · telegram · waiting 30m"
    topics = {t.name: t.message_thread_id for t in hub.server.topics()}
    assert links(reply) == [
        render.topic_link(Topic(hub.forum.id, topics["Older · telegram"])),
        render.topic_link(Topic(hub.forum.id, topics["Newer · telegram"])),
    ]
    assert links(reply)[0].startswith("https://t.me/c/")
    assert other.client_id


async def test_find_finds_a_client_by_phone(hub: StaffDesk) -> None:
    maria = await hub.manager("Maria")
    await hub.writes(ANNA, "hi", identity("phone", "+7 912 345-67-89"))
    await hub.writes(identity("telegram", 77, "Boris"), "hello")
    await hub.flush()
    await hub.server.user_sends(maria, "/find 8 (912) 345-67-89")
    await hub.server.user_sends(maria, "/find nobody")
    await hub.server.user_sends(maria, "what can you do?")
    assert await hub.feed() == 3
    found, none, help_ = hub.server.sent_to(maria.id)
    assert found["text"].splitlines()[0] == "Found (1):"
    assert "Anna" in found["text"] and "+79123456789" in found["text"]
    assert links(found) == [render.topic_link(Topic(hub.forum.id, hub.thread("Anna")))]
    assert none["text"] == "Nothing found for “nobody”"
    assert help_["text"].startswith("/inbox")


async def test_the_assigned_manager_is_told_in_private_with_a_link(hub: StaffDesk) -> None:
    maria = await hub.manager("Maria", away=False)  # routing gives her the request
    await hub.server.user_sends(maria, "/start")
    await hub.feed()
    await hub.writes(ANNA, "I need help with my order")
    [assigned] = await hub.pending("assigned")
    assert assigned.recipient == str(maria.id)
    await hub.flush()
    notice = hub.server.sent_to(maria.id)[-1]
    assert notice["text"].splitlines()[:2] == [
        "🆕 Assigned to you: Anna",
        "I need help with my order",
    ]
    assert links(notice) == [render.topic_link(Topic(hub.forum.id, hub.thread("Anna")))]

    # A manager the bot cannot write to (never opened the chat) is told in the topic.
    boris = await hub.manager("Boris")
    reminder = OutboundMessage(
        outbox_id=1000,
        channel="telegram",
        account="staff",
        recipient=str(boris.id),
        kind="reminder",
        text="⏰ Reminder: call back",
        idempotency_key="reminder:1",
        client_id=assigned.client_id,
    )
    await hub.staff.send(hub.bot, reminder)
    assert hub.in_topic(hub.thread("Anna"))[-1]["text"] == "Boris: ⏰ Reminder: call back"
    # Without a client to show it on, that is a permanent failure.
    with pytest.raises(PermanentDeliveryError):
        await hub.staff.send(hub.bot, dataclasses.replace(reminder, client_id=None))


async def test_a_failed_delivery_is_told_in_the_topic_and_to_the_assignee(
    hub: StaffDesk,
) -> None:
    maria = await hub.manager("Maria")
    await hub.server.user_sends(maria, "/start")
    await hub.feed()
    anna = await hub.writes(ANNA, "hi")
    await hub.flush()
    failed = OutboundMessage(
        outbox_id=1001,
        channel="telegram",
        account="staff",
        recipient="staff",
        kind="delivery_failed",
        text="delivery failed (telegram): forbidden: bot was blocked by the user",
        idempotency_key="delivery_failed:1",
        client_id=anna.client_id,
    )
    await hub.staff.send(hub.bot, failed)
    shown = "⚠️ delivery failed (telegram): forbidden: bot was blocked by the user"
    assert hub.in_topic(hub.thread("Anna"))[-1]["text"] == shown
    await hub.staff.send(hub.bot, dataclasses.replace(failed, recipient=str(maria.id)))
    assert hub.in_topic(hub.thread("Anna"))[-1]["text"] == shown
    private = hub.server.sent_to(maria.id)[-1]["text"].splitlines()
    assert private[:2] == ["⚠️ Client: Anna", failed.text]


# -- errors ----------------------------------------------------------------------------


async def test_telegram_errors_become_the_hubs_delivery_errors(hub: StaffDesk) -> None:
    await hub.writes(ANNA, "first")
    await hub.flush()
    await hub.writes(ANNA, "second")
    [mirror] = await hub.pending()

    hub.server.fail_next("sendMessage", 500, "Internal Server Error")
    with pytest.raises(TemporaryDeliveryError):
        await hub.staff.send(hub.bot, mirror)
    hub.server.fail_next("sendMessage", 400, "Bad Request: chat not found")
    with pytest.raises(PermanentDeliveryError, match="chat not found"):
        await hub.staff.send(hub.bot, mirror)
    hub.server.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
    with pytest.raises(TemporaryDeliveryError) as caught:
        await hub.staff.send(hub.bot, mirror)
    assert caught.value.retry_after == 7
    # retry_after is honored: asked again at once, nothing goes to the chat, not even
    # an edit appending the text to the last mirror (issue 15: an edit spends the
    # chat's budget like a message): the mirror waits for the pause to end.
    calls = len(hub.server.calls)
    with pytest.raises(TemporaryDeliveryError) as caught:
        await hub.staff.send(hub.bot, mirror)
    assert caught.value.retry_after is not None and 6 < caught.value.retry_after <= 7
    assert len(hub.server.calls) == calls
    # A file waits too.
    await hub.writes(ANNA, "", attachments=(Attachment("a.png", "image/png", png()),))
    photo = (await hub.pending())[-1]
    with pytest.raises(TemporaryDeliveryError) as caught:
        await hub.staff.send(hub.bot, photo)
    assert caught.value.retry_after is not None and 6 < caught.value.retry_after <= 7
    assert hub.server.calls_to("sendPhoto") == []


async def test_a_wrong_bot_url_is_temporary_and_a_too_large_payload_permanent(
    hub: StaffDesk,
) -> None:
    # The same map as the clients' side (channels/telegram/errors.py): they disagreed.
    await hub.writes(ANNA, "first")
    [mirror] = await hub.pending()
    hub.server.fail_next("createForumTopic", 404, "Not Found")
    with pytest.raises(TemporaryDeliveryError, match="Not Found"):
        await hub.staff.send(hub.bot, mirror)
    hub.server.fail_next("createForumTopic", 413, "Request Entity Too Large")
    with pytest.raises(PermanentDeliveryError, match="Too Large"):
        await hub.staff.send(hub.bot, mirror)
    await hub.staff.send(hub.bot, mirror)
    assert topic_texts(hub.in_topic(hub.thread("Anna")))[1:] == ["💬 telegram\nfirst"]


# -- the group's budget, with the dispatcher -----------------------------------------------


class StaffChannel:
    """The channel as the dispatcher sees it: staff kinds through the staff side,
    replies to clients recorded."""

    name = "telegram"
    limits = ChannelLimits()

    def __init__(self, staff: StaffSide, bot: Bot) -> None:
        self.staff = staff
        self.bot = bot
        self.replies: list[OutboundMessage] = []

    async def start(self, sink: InboundSink) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, message: OutboundMessage) -> SendResult:
        if message.kind in STAFF_KINDS:
            return await self.staff.send(self.bot, message)
        self.replies.append(message)
        return SendResult(None)


@contextlib.asynccontextmanager
async def dispatching(hub: StaffDesk) -> AsyncIterator[Dispatcher]:
    channel = StaffChannel(hub.staff, hub.bot)
    dispatcher = Dispatcher(
        hub.db, hub.clock, {"telegram": channel}, RETRYING, staff_channel="telegram"
    )
    await dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()


async def all_sent(db: Database, count: int) -> bool:
    [found] = await rows(
        db, select(func.count()).select_from(Outbox).where(Outbox.status == "sent")
    )
    return int(found[0]) == count


async def test_a_burst_of_30_mirrors_into_one_group_gets_no_429(
    db: Database, tmp_path: Path
) -> None:
    async with (
        BotApiServer() as server,  # Telegram's flood limits, enforced
        staff_desk(db, tmp_path, server, clock=SystemClock(), pacer=Pacer()) as hub,
    ):
        for n in range(1, 31):
            await hub.writes(ANNA, f"m{n:02d}")
        async with dispatching(hub):
            await eventually(lambda: all_sent(db, 30))
        assert server.throttled == []
        [topic] = server.topics()
        card, *mirrors = topic_texts(hub.in_topic(topic.message_thread_id))
        assert card.startswith("👤 Anna")
        assert len(mirrors) < 30  # bursts were coalesced into earlier mirrors
        text = "\n".join(mirrors)
        where = [text.index(f"m{n:02d}") for n in range(1, 31)]
        assert where == sorted(where)  # every message, in order


async def test_files_over_the_group_budget_wait_for_it_in_order(
    db: Database, tmp_path: Path
) -> None:
    # A small budget (3 sends in 4 s) so that the wait is short; the staff side
    # defers what does not fit, and the dispatcher retries after retry_after.
    limits = Limits(per_group=Rate(3, 4.0))
    async with (
        BotApiServer(limits=limits) as server,
        staff_desk(
            db,
            tmp_path,
            server,
            clock=SystemClock(),
            pacer=Pacer(group=(3, 4.3)),
            max_wait=0.5,
        ) as hub,
    ):
        for n in range(1, 4):
            await hub.writes(
                ANNA, f"photo {n}", attachments=(Attachment(f"{n}.png", "image/png", png(n, n)),)
            )
        await hub.writes(ANNA, "and a text")
        async with dispatching(hub):
            await eventually(lambda: all_sent(db, 4))
        assert server.throttled == []
        _, *mirrors = hub.in_topic(hub.thread("Anna"))
        assert [visible(m) for m in mirrors] == [
            "💬 telegram\nphoto 1",
            "💬 telegram\nphoto 2",
            "💬 telegram\nphoto 3",
            "💬 telegram\nand a text",
        ]
        attempts = [r.attempts for r in await rows(db, select(Outbox.attempts))]
        assert max(attempts) > 1  # some waited for the budget, through the dispatcher


async def test_pacer_counts_a_sliding_window_per_group() -> None:
    now = [100.0]
    pacer = Pacer(gap=1.0, group=(3, 10.0), monotonic=lambda: now[0])
    assert pacer.estimate(-5, 3) == 0.0
    for _ in range(3):
        assert pacer.next_slot(-5) == 0.0
        pacer.sent(-5)
        now[0] += 1.0
    # 3 sends at 100, 101, 102; now 103: the window frees at 110.
    assert pacer.estimate(-5) == pytest.approx(7.0)
    assert pacer.estimate(42) == 0.0  # a private chat has no window, only the gap
    pacer.sent(42)
    assert pacer.estimate(42) == pytest.approx(1.0)
    pacer.pause(42, 5.0)
    assert pacer.estimate(42) == pytest.approx(5.0)


def test_render_splits_by_utf16_and_escapes() -> None:
    emoji = "🙂" * 3000  # 6000 UTF-16 units
    parts = render.split_text(emoji, 4096)
    assert [render.utf16_len(p) for p in parts] == [4096, 1904]
    assert "".join(parts) == emoji
    assert render.with_header("<b>h</b>", "a < b & c") == ["<b>h</b>\na &lt; b &amp; c"]
    assert render.visible_len("<b>h</b>\na &lt; b") == 7
    assert render.topic_link(Topic(-1001234567890, 15)) == "https://t.me/c/1234567890/15"
    assert render.parse_callback("hub:take:12") == ("take", 12)
    assert render.parse_callback("hub:drop:12") is None
    assert render.parse_callback("other:take:12") is None
    long_name = "Анна " * 40
    name = render.topic_name(None, 1, None).strip()
    assert name == "#1"
    assert render.utf16_len(render.topic_name(None, 1, "telegram")) <= 128
    from hub.kernel.types import ClientCard

    card = ClientCard(1, long_name, "prospect", None, (), 0, None, None, None, (), ())
    assert render.utf16_len(render.topic_name(card, 1, "telegram")) <= 128


# -- offers, /away and /back -----------------------------------------------------------


async def test_an_offer_to_all_goes_to_the_first_to_accept(hub: StaffDesk) -> None:
    from routing import Rules

    maria = await hub.manager("Maria", away=False)
    olga = await hub.manager("Olga", away=False)
    for user in (maria, olga):  # each opened the private chat with the bot
        await hub.server.user_sends(user, "/start")
    assert await hub.feed() == 2
    hub.ingestor.rules = Rules(default_strategy="all")
    result = await hub.writes(ANNA, "need help")
    await hub.flush()

    def offer_to(user: User) -> Json:
        [offer] = [m for m in hub.server.sent_to(user.id) if "will you take it" in visible(m)]
        return offer

    data = f"hub:accept:{result.client_id}"
    await hub.server.callback(olga, offer_to(olga), data)
    await hub.server.callback(maria, offer_to(maria), data)
    assert await hub.feed() == 2
    answers = [a["text"] for a in hub.server.callback_answers.values()]
    assert answers == ["Taken by Olga", "Already taken by Olga"]
    [assignee] = await rows(hub.db, select(Conversation.assignee_id))
    assert assignee.assignee_id == await manager_id(hub.db, olga)


async def test_away_and_back_from_the_private_chat(hub: StaffDesk) -> None:
    from hub.jobs.waiting import Assigner
    from routing import Rules

    maria = await hub.manager("Maria", away=False)
    await hub.server.user_sends(maria, "/away")
    assert await hub.feed() == 1
    assert visible(hub.server.sent_to(maria.id)[-1]) == "You are away: no new requests until /back"
    await hub.writes(ANNA, "anyone?")
    [waiting] = await rows(hub.db, select(Conversation.assignee_id))
    assert waiting.assignee_id is None

    await hub.server.user_sends(maria, "/back")
    assert await hub.feed() == 1
    assert visible(hub.server.sent_to(maria.id)[-1]).startswith("Welcome back!")
    assigner = Assigner(hub.db, hub.clock, Rules(), staff_channel="telegram")
    assert await assigner.give_out() == 1
    [given] = await rows(hub.db, select(Conversation.assignee_id))
    assert given.assignee_id == await manager_id(hub.db, maria)
    actions = [r.action for r in await rows(hub.db, select(Audit.action).order_by(Audit.id))]
    assert actions == ["away", "back"]


async def test_the_topic_shows_when_the_answer_is_due(hub: StaffDesk) -> None:
    from routing.sla import Policy

    hub.ingestor.policies = (Policy("standard", first_response=timedelta(minutes=90)),)
    bob = identity("email", "bob@example.org", "Bob Stone")
    await hub.writes(bob, "Where is my order?", channel=Channel.EMAIL, subject="Order 42")
    await hub.flush()
    [topic] = hub.server.topics()
    card, mirror = topic_texts(hub.in_topic(topic.message_thread_id))
    assert mirror == "✉️ email · Order 42 · ⏰ 05.01 11:30\nWhere is my order?"
    assert "⏰ answer by: 05.01 11:30" in card


async def test_the_card_moves_the_stage_up_and_down(hub: StaffDesk) -> None:
    maria = await hub.manager("Maria")
    result = await hub.writes(ANNA, "hi")
    await hub.flush()
    card = hub.in_topic(hub.thread("Anna"))[0]
    cid = result.client_id
    await hub.server.callback(maria, card, f"hub:stage_up:{cid}")
    await hub.server.callback(maria, card, f"hub:stage_up:{cid}")
    await hub.server.callback(maria, card, f"hub:stage_down:{cid}")
    assert await hub.feed() == 3
    [stage] = await rows(hub.db, select(Client.stage).where(Client.id == cid))
    assert stage.stage == "first_time_buyer"
    moves = await rows(
        hub.db,
        select(Interaction.text, Interaction.author)
        .where(Interaction.text.like("stage:%"))
        .order_by(Interaction.id),
    )
    assert [tuple(m) for m in moves] == [
        ("stage: prospect → first_time_buyer (by hand)", "Maria"),
        ("stage: first_time_buyer → repeat_buyer (by hand)", "Maria"),
        ("stage: repeat_buyer → first_time_buyer (by hand)", "Maria"),
    ]
    audit = await rows(hub.db, select(Audit.action).where(Audit.action == "stage"))
    assert len(audit) == 3


async def test_the_card_shows_custom_fields_and_reminders_due(hub: StaffDesk) -> None:
    maria = await hub.manager("Maria")
    result = await hub.writes(ANNA, "hi")
    async with hub.db.write() as conn:
        await conn.execute(
            update(Client).where(Client.id == result.client_id).values(custom={"city": "Казань"})
        )
    me = await hub.desk.manager(maria.id)
    assert me is not None
    await hub.desk.act(result.client_id, me, "remind", "2h позвонить")
    await hub.flush()
    await hub.says(maria, hub.thread("Anna"), "/card")
    card = hub.in_topic(hub.thread("Anna"))[-1]["text"]
    assert "city: Казань" in card
    assert "⏰ 05.01 12:00 позвонить" in card
