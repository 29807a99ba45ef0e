"""Issue 15 "The managers' desk under Telegram's real limits": answering from the
private chat and canned answers. The real aiogram client against the local Bot
API server, the real Desk and Ingestor, on SQLite and PostgreSQL:

- a reply to the bot's notice with a client's words answers that client over
  the conversation's channel (Telegram, email, a web form's email), and the
  answer is copied into the client's topic by a paced outbox row;
- ``!`` makes a note; the current client (``/c ID``, ``/inbox`` buttons) takes
  plain text; a restart keeps both which client a notice is about and the
  current client;
- the buttons under a notice: take, resolve, card, transfer and remind;
- ``[[desk.templates]]``: ``/t NAME`` and ``/t`` buttons, in a topic and in private;
- strangers and managers of another team are refused, and the refusals audited.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiogram.types import Update
from sqlalchemy import insert, select, update

from channels.telegram.staff import StaffSide
from hub.clients.attachments import AttachmentStore
from hub.clients.book import ClientBook
from hub.config import TelegramSection, TemplateSection
from hub.desk.desk import Desk, NotAllowed
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import Clock, FrozenClock
from hub.kernel.identities import identity
from hub.kernel.types import Channel, ManagerRef
from storage import Database
from storage.models import Audit, Client, Conversation, Interaction, Manager, Outbox, Reminder
from tests.botapi import BotApiServer, Limits
from tests.botapi.world import Json, User
from tests.test_telegram_staff import (
    ANNA,
    T0,
    StaffDesk,
    conversation,
    make_bot,
    manager_id,
    rows,
    unpaced,
    visible,
)

TEMPLATES = [
    TemplateSection(
        name="hello",
        ru="Здравствуйте, {{ first_name or 'клиент' }}! Меня зовут {{ manager }}.",
        en="Hello, {{ first_name or 'there' }}! I am {{ manager }}.",
    ),
    TemplateSection(name="delivery", en="Delivery takes 2 days ({{ email or 'no email' }})."),
]
BOB = identity("email", "bob@example.org", "Bob Stone")
FORM = identity("email", "carol@example.org", "Carol")


@contextlib.asynccontextmanager
async def private_desk(
    db: Database, tmp_path: Path, server: BotApiServer, *, clock: Clock | None = None
) -> AsyncIterator[StaffDesk]:
    """The staff desk of tests/test_telegram_staff.py, with canned answers."""
    clock = clock or FrozenClock(T0)
    files = AttachmentStore(tmp_path / "files", 10**7)
    desk = Desk(db, clock, files, language="en", timezone="UTC", region="RU", templates=TEMPLATES)
    ingestor = Ingestor(db, clock, files, staff_channel="telegram")
    await ingestor.start()
    bot = make_bot(server)
    config = TelegramSection(staff_chat_id=server.forum.id)
    staff = StaffSide(desk, config, language="en", clock=clock, pacer=unpaced())
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
    async with private_desk(db, tmp_path, server) as running:
        yield running


async def manager(
    hub: StaffDesk,
    name: str,
    *,
    away: bool = False,
    team: str | None = None,
    timezone: str | None = None,
) -> User:
    """A registered manager who opened the private chat with the bot; routing gives
    requests to those not ``away``."""
    user = hub.server.add_manager(name)
    async with hub.db.write() as conn:
        await conn.execute(
            insert(Manager).values(
                name=name,
                telegram_id=user.id,
                created_at=T0,
                attrs={"language": "en", "team": team},
                away=away,
                timezone=timezone,
            )
        )
    await hub.server.user_sends(user, "/start")
    await hub.feed()
    return user


def present(found: ManagerRef | None) -> ManagerRef:
    assert found is not None
    return found


def last(hub: StaffDesk, user: User) -> Json:
    return hub.server.sent_to(user.id)[-1]


async def replies(hub: StaffDesk) -> list[tuple[str, str, str]]:
    """The answers queued for clients: (channel, recipient, text)."""
    found = await rows(
        hub.db,
        select(Outbox.channel, Outbox.recipient, Outbox.text)
        .where(Outbox.kind == "reply")
        .order_by(Outbox.id),
    )
    return [tuple(r) for r in found]


async def refusals(hub: StaffDesk) -> list[tuple[str, Any]]:
    found = await rows(
        hub.db,
        select(Audit.actor, Audit.details).where(Audit.action == "refused").order_by(Audit.id),
    )
    return [(r.actor, r.details) for r in found]


async def writes_and_is_shown(hub: StaffDesk, user: User, text: str = "hi", **how: Any) -> Json:
    """A client writes; the staff rows go out; the notice the manager got."""
    await hub.writes(how.pop("who", ANNA), text, **how)
    await hub.flush()
    return last(hub, user)


async def test_a_reply_to_a_notice_answers_the_client_and_shows_in_the_topic(
    hub: StaffDesk,
) -> None:
    maria = await manager(hub, "Maria")
    notice = await writes_and_is_shown(hub, maria, "Where is my order?")
    anna = await hub.desk.client_of_private(maria.id, notice["message_id"])
    assert anna is not None
    lines = notice["text"].splitlines()
    assert lines[:3] == [
        "🆕 Assigned to you: Anna",
        "Where is my order?",
        f"💬 telegram · stage: prospect · #{anna}",
    ]
    buttons = [b["callback_data"] for row in notice["reply_markup"]["inline_keyboard"] for b in row]
    assert buttons == [
        f"hub:{action}:{anna}"
        for action in ("take", "resolve", "wait", "card", "transfer", "remind")
    ]

    sent = await hub.server.user_sends(maria, "It ships today", reply_to=notice)
    assert await hub.feed() == 1
    assert visible(last(hub, maria)) == "✓ Sent to Anna"
    assert await replies(hub) == [("telegram", "4242", "It ships today")]
    # Telegram redelivers the update: nothing twice.
    await hub.staff.handle(hub.bot, Update.model_validate(sent, context={"bot": hub.bot}))
    assert len(await replies(hub)) == 1

    # The topic shows it through the outbox, paced like any post, never directly.
    thread = hub.thread("Anna")
    before = [visible(m) for m in hub.in_topic(thread)]
    [copy] = await hub.pending("answered")
    assert (copy.recipient, copy.client_id) == ("staff", anna)
    await hub.flush()
    assert [visible(m) for m in hub.in_topic(thread)] == [
        *before,
        "↩️ Maria answered:\nIt ships today",
    ]


async def test_email_and_form_clients_are_answered_from_the_private_chat(
    hub: StaffDesk,
) -> None:
    maria = await manager(hub, "Maria")
    by_mail = await writes_and_is_shown(
        hub, maria, "Invoice?", who=BOB, channel=Channel.EMAIL, subject="Invoice 7"
    )
    assert "✉️ email · stage: prospect" in by_mail["text"]
    by_form = await writes_and_is_shown(hub, maria, "Call me", who=FORM, channel=Channel.WEBFORM)
    assert "📝 webform · stage: prospect" in by_form["text"]

    await hub.server.user_sends(maria, "Attached again", reply_to=by_mail)
    await hub.server.user_sends(maria, "We will call at 5", reply_to=by_form)
    assert await hub.feed() == 2
    # A web form leaves no channel to answer on: its answer goes by email.
    assert await replies(hub) == [
        ("email", "bob@example.org", "Attached again"),
        ("email", "carol@example.org", "We will call at 5"),
    ]
    subjects = await rows(hub.db, select(Outbox.subject).where(Outbox.kind == "reply"))
    assert subjects[0].subject == "Invoice 7"


async def test_a_note_starts_with_an_exclamation_mark(hub: StaffDesk) -> None:
    maria = await manager(hub, "Maria")
    notice = await writes_and_is_shown(hub, maria)
    await hub.server.user_sends(maria, "! she is a VIP", reply_to=notice)
    await hub.feed()
    assert visible(last(hub, maria)) == "📝 Note on Anna saved"
    notes = await rows(hub.db, select(Interaction.text).where(Interaction.direction == "note"))
    assert [n.text for n in notes] == ["she is a VIP"]
    assert await replies(hub) == []
    await hub.flush()
    assert visible(hub.in_topic(hub.thread("Anna"))[-1]) == "📝 Note by Maria:\nshe is a VIP"


async def test_the_current_client_takes_plain_text_and_survives_a_restart(
    db: Database, tmp_path: Path, server: BotApiServer
) -> None:
    async with private_desk(db, tmp_path, server) as hub:
        maria = await manager(hub, "Maria")
        notice = await writes_and_is_shown(hub, maria)
        await writes_and_is_shown(hub, maria, who=BOB, channel=Channel.EMAIL)
        anna, bob = [
            await hub.desk.client_of_private(maria.id, m["message_id"])
            for m in hub.server.sent_to(maria.id)[-2:]
        ]
        assert anna is not None and bob is not None
        # No current client: the help says how to choose one.
        await hub.server.user_sends(maria, "hello?")
        await hub.feed()
        assert "/c ID" in visible(last(hub, maria))
        assert await replies(hub) == []

        await hub.server.user_sends(maria, "/inbox")
        await hub.feed()
        inbox = last(hub, maria)
        labels = [b["text"] for row in inbox["reply_markup"]["inline_keyboard"] for b in row]
        assert labels == ["1. Anna", "2. Bob Stone"]
        await hub.server.callback(maria, inbox, f"hub:cur:{bob}")
        await hub.feed()
        assert visible(last(hub, maria)).startswith(f"Current client: Bob Stone (#{bob})")
        await hub.server.user_sends(maria, "Your invoice is attached")
        await hub.feed()
        assert visible(last(hub, maria)) == "✓ Sent to Bob Stone, your current client"

        await hub.server.user_sends(maria, f"/c {anna}")
        await hub.server.user_sends(maria, "Hi Anna")
        await hub.feed()
        assert visible(last(hub, maria)) == "✓ Sent to Anna, your current client"
    # Another process (or the same after a restart): replies to old notices still
    # answer their client, and the current client is kept.
    async with private_desk(db, tmp_path, server) as again:
        await server.user_sends(maria, "Replying to the first", reply_to=notice)
        await server.user_sends(maria, "And to the current one")
        await server.user_sends(maria, "/c 0")
        await server.user_sends(maria, "to nobody")
        # The last two updates come again (never confirmed): they do nothing twice.
        assert await again.feed() == 6
        assert [r[1:] for r in await replies(again)] == [
            ("bob@example.org", "Your invoice is attached"),
            ("4242", "Hi Anna"),
            ("4242", "Replying to the first"),
            ("4242", "And to the current one"),
        ]
        assert visible(last(again, maria)).startswith("/inbox")


async def test_the_buttons_under_a_notice(hub: StaffDesk) -> None:
    maria = await manager(hub, "Maria", away=True)  # offered nothing: she takes it
    olga = await manager(hub, "Olga", away=True)
    result = await hub.writes(ANNA, "hi")
    await hub.flush()
    anna = result.client_id
    # Nobody was assigned, so nobody was told in private; Maria asks for the card.
    await hub.server.user_sends(maria, f"/c {anna}")
    await hub.server.user_sends(maria, "/card")
    await hub.feed()
    card = last(hub, maria)
    assert card["text"].startswith(f"👤 Anna · #{anna}")

    async def press(data: str, message: Json | None = None) -> str | None:
        query = await hub.server.callback(maria, message or card, data)
        await hub.feed()
        answer = hub.server.callback_answers[query["callback_query"]["id"]]
        return None if answer["text"] is None else str(answer["text"])

    assert await press(f"hub:take:{anna}") == "Taken by Maria"
    assert await conversation(hub.db, result.conversation_id) == (
        "open",
        await manager_id(hub.db, maria),
    )
    assert await press(f"hub:transfer:{anna}") is None
    choices = last(hub, maria)
    assert visible(choices) == "Transfer Anna to:"
    assert await press(f"hub:to:{anna}:{olga.id}", choices) == "Transferred to Olga by Maria"
    assert await conversation(hub.db, result.conversation_id) == (
        "open",
        await manager_id(hub.db, olga),
    )
    assert await press(f"hub:remind:{anna}") is None
    choices = last(hub, maria)
    assert [b["text"] for b in choices["reply_markup"]["inline_keyboard"][0]] == [
        "In an hour",
        "In 3 hours",
        "Tomorrow",
    ]
    assert (await press(f"hub:in:{anna}:1h", choices) or "").startswith("Reminder set for")
    [reminder] = await rows(hub.db, select(Reminder.due_at, Reminder.client_id))
    assert reminder.client_id == anna and reminder.due_at.hour == T0.hour + 1
    assert await press(f"hub:card:{anna}") is None
    assert last(hub, maria)["text"].startswith(f"👤 Anna · #{anna}")
    assert await press(f"hub:resolve:{anna}") == "Resolved by Maria"
    reads = await rows(hub.db, select(Audit.action).where(Audit.action == "read"))
    assert len(reads) == 2  # /card and its button, each on record


async def test_canned_answers_in_the_topic_and_in_private(hub: StaffDesk) -> None:
    maria = await manager(hub, "Maria")
    notice = await writes_and_is_shown(hub, maria)
    thread = hub.thread("Anna")
    await hub.says(maria, thread, "/t hello")
    assert await replies(hub) == [("telegram", "4242", "Hello, Anna! I am Maria.")]
    await hub.flush()
    assert visible(hub.in_topic(thread)[-1]) == "↩️ Maria answered:\nHello, Anna! I am Maria."

    # /t alone: the templates as buttons; a press sends one.
    await hub.says(maria, thread, "/t")
    listing = hub.in_topic(thread)[-1]
    assert visible(listing) == "Canned answers for Anna: press one to send it"
    anna = await hub.desk.client_of_private(maria.id, notice["message_id"])
    query = await hub.server.callback(maria, listing, f"hub:tpl:{anna}:delivery")
    await hub.feed()
    assert hub.server.callback_answers[query["callback_query"]["id"]]["text"] == "✓ Sent to Anna"
    assert (await replies(hub))[-1][2] == "Delivery takes 2 days (no email)."

    # In private, to the client replied to, in the client's language.
    async with hub.db.write() as conn:
        await conn.execute(update(Client).where(Client.id == anna).values(language="ru"))
    await hub.server.user_sends(maria, "/t HELLO", reply_to=notice)
    await hub.server.user_sends(maria, "/t nope", reply_to=notice)
    await hub.feed()
    assert (await replies(hub))[-1][2] == "Здравствуйте, Anna! Меня зовут Maria."
    said = [visible(m) for m in hub.server.sent_to(maria.id)[-2:]]
    assert said == ["✓ Sent to Anna", "No template “nope”. Templates: hello, delivery"]
    assert len(await replies(hub)) == 3


async def test_strangers_and_other_teams_are_refused_and_audited(hub: StaffDesk) -> None:
    maria = await manager(hub, "Maria", team="north")
    boris = await manager(hub, "Boris", away=True, team="south")
    notice = await writes_and_is_shown(hub, maria)
    anna = await hub.desk.client_of_private(maria.id, notice["message_id"])

    # Boris, of another team, may neither choose Anna nor answer her.
    await hub.server.user_sends(boris, f"/c {anna}")
    await hub.feed()
    not_yours = "This client belongs to another team: their manager or a supervisor acts"
    assert visible(last(hub, boris)) == not_yours
    ref = present(await hub.desk.manager(boris.id))
    with pytest.raises(NotAllowed):
        await hub.desk.answer(anna, "psst", manager=ref, key="tg:x:1", mirror=True)

    # A stranger's press is refused; their private messages are a client's, not obeyed.
    eve = hub.server.add_user("Eve")
    await hub.server.callback(eve, notice, f"hub:take:{anna}")
    assert await hub.feed() == 1
    await hub.server.user_sends(eve, f"/c {anna}")
    [upd] = await hub.bot.get_updates(offset=hub.offset, timeout=0)
    assert not await hub.staff.handles(upd)

    assert await replies(hub) == []
    assert await refusals(hub) == [
        (f"telegram:{boris.id}", {"what": "current client"}),
        (f"telegram:{boris.id}", {"what": "answer"}),
        (f"telegram:{eve.id}", {"what": f"button hub:take:{anna}"}),
    ]
    [(status, assignee)] = [
        tuple(r) for r in await rows(hub.db, select(Conversation.status, Conversation.assignee_id))
    ]
    assert (status, assignee) == ("open", await manager_id(hub.db, maria))


async def test_a_reply_to_a_message_about_no_client_is_refused(hub: StaffDesk) -> None:
    maria = await manager(hub, "Maria")
    await hub.server.user_sends(maria, "/find nobody")
    await hub.feed()
    await hub.server.user_sends(maria, "to whom?", reply_to=last(hub, maria))
    await hub.feed()
    assert visible(last(hub, maria)).startswith("This message is about no client")
    assert await replies(hub) == []


async def test_a_sticker_sends_nothing_and_says_so(hub: StaffDesk) -> None:
    maria = await manager(hub, "Maria")
    notice = await writes_and_is_shown(hub, maria)
    await hub.server.user_sends(maria, sticker="👍", reply_to=notice)
    await hub.feed()
    assert visible(last(hub, maria)).startswith("Nothing to send to the client")
    assert await replies(hub) == []


async def test_which_client_a_private_message_is_about_follows_merges(hub: StaffDesk) -> None:
    maria = await manager(hub, "Maria")
    notice = await writes_and_is_shown(hub, maria)
    anna = await hub.desk.client_of_private(maria.id, notice["message_id"])
    other = (await hub.writes(BOB, "me too", channel=Channel.EMAIL)).client_id
    assert anna is not None
    # An entry of a message that gathers several clients is remembered on its own.
    await hub.desk.remember_private(maria.id, 999, other, None, entry=2)
    assert await hub.desk.client_of_private(maria.id, 999, entry=2) == other
    assert await hub.desk.client_of_private(maria.id, 999) is None
    await hub.server.user_sends(maria, f"/c {other}")
    await hub.feed()

    await ClientBook(hub.db, hub.clock).merge(anna, other, actor="test")
    assert await hub.desk.client_of_private(maria.id, 999, entry=2) == anna
    assert await hub.desk.current_client(present(await hub.desk.manager(maria.id))) == anna


async def test_what_a_private_message_was_about_is_forgotten_after_ninety_days(
    hub: StaffDesk,
) -> None:
    """The map grows with every notice: the hub's hourly round forgets what is older
    than ``PRIVATE_KEPT``; a reply to a notice that old is about no client."""
    from hub.app.run import PRIVATE_KEPT
    from storage import desk as desk_q

    maria = await manager(hub, "Maria")
    notice = await writes_and_is_shown(hub, maria)
    assert await hub.desk.client_of_private(maria.id, notice["message_id"]) is not None
    async with hub.db.write() as conn:
        assert await desk_q.forget_private(conn, hub.clock.now() - PRIVATE_KEPT) == 0
        assert await desk_q.forget_private(conn, hub.clock.now() + timedelta(seconds=1)) == 1
    assert await hub.desk.client_of_private(maria.id, notice["message_id"]) is None
    await hub.server.user_sends(maria, "too late", reply_to=notice)
    await hub.feed()
    assert visible(last(hub, maria)).startswith("This message is about no client")
    assert await replies(hub) == []


async def test_the_card_in_the_private_chat_tells_times_in_the_managers_zone(
    hub: StaffDesk,
) -> None:
    maria = await manager(hub, "Maria", timezone="Asia/Vladivostok")  # UTC+10
    anna = (await hub.writes(ANNA, "hi")).client_id
    await hub.flush()
    await hub.server.user_sends(maria, f"/c {anna}")
    await hub.server.user_sends(maria, "/remind 2h call back")
    await hub.server.user_sends(maria, "/card")
    await hub.feed()
    card = visible(last(hub, maria))
    assert card.startswith(f"👤 Anna · #{anna}")
    assert "⏰ 05.01 22:00 call back" in card  # 12:00 UTC, in Maria's zone


async def test_confirmations_waiting_for_a_busy_chat_end_with_the_hub() -> None:
    """A confirmation waits for its chat's next free moment in a task of its own; the
    staff side's stop cancels such tasks rather than leaving them to the loop's end."""
    from typing import cast

    from channels.telegram.staff.digests import Digests

    class FarPacer:
        def estimate(self, chat: int) -> float:
            return 3600.0  # the chat's next slot is an hour away

    class Calls:
        pacer = FarPacer()

    digests = Digests(cast(Any, None), cast(Any, Calls()))
    digests.confirm(cast(Any, None), 42, "✓ Sent")
    [waiting] = digests._flushing.values()
    await digests.close()
    assert waiting.cancelled() and digests._flushing == {} and digests._confirmations == {}
