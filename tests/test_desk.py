"""The managers' desk (hub/desk/) against the database, on SQLite and PostgreSQL:
managers and refusals, topics, cards, answers and notes (deduplicated by key),
take, resolve, reopen, transfer, tag, stage, remind, inbox and find."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from hub.clients.attachments import AttachmentStore
from hub.desk.desk import Desk, NoConversation, NotSent
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import FrozenClock
from hub.kernel.identities import identity
from hub.kernel.types import (
    Attachment,
    Channel,
    Identity,
    InboundMessage,
    IngestResult,
    ManagerRef,
    Topic,
)
from storage import Database
from storage.models import Attachment as AttachmentRow
from storage.models import (
    Audit,
    Client,
    Conversation,
    Interaction,
    Manager,
    Outbox,
    Reminder,
)

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
ANNA = identity("telegram", 4242, "Anna")


@dataclass
class World:
    db: Database
    clock: FrozenClock
    desk: Desk
    ingestor: Ingestor
    maria: ManagerRef
    boris: ManagerRef
    serial: int = 0

    async def write(
        self,
        *identities: Identity,
        text: str = "hello",
        channel: Channel = Channel.TELEGRAM,
        subject: str | None = None,
        external_id: str | None = None,
        extras: dict[str, Any] | None = None,
    ) -> IngestResult:
        self.serial += 1
        return await self.ingestor(
            InboundMessage(
                channel,
                f"{channel.value}-account",
                external_id or f"m{self.serial}",
                identities,
                self.clock.now(),
                text=text,
                subject=subject,
                extras=extras or {},
            )
        )


async def _manager(
    db: Database, name: str, telegram_id: int, *, language: str | None = None, active: bool = True
) -> int:
    async with db.write() as conn:
        result = await conn.execute(
            insert(Manager)
            .values(
                name=name,
                telegram_id=telegram_id,
                created_at=T0,
                active=active,
                attrs={"language": language} if language else None,
            )
            .returning(Manager.id)
        )
        return int(result.scalar_one())


async def rows(db: Database, statement: Any) -> list[Any]:
    async with db.read() as conn:
        return list((await conn.execute(statement)).all())


async def one(db: Database, statement: Any) -> Any:
    async with db.read() as conn:
        return (await conn.execute(statement)).one()


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> AsyncIterator[World]:
    clock = FrozenClock(T0)
    files = AttachmentStore(tmp_path / "files", 10**6)
    maria_id = await _manager(db, "Maria", 111)
    boris_id = await _manager(db, "Boris", 222, language="ru")
    await _manager(db, "Gone", 333, active=False)
    # Nobody gets requests by routing here: the tests assign them by hand.
    async with db.write() as conn:
        await conn.execute(update(Manager).values(away=True))
    ingestor = Ingestor(db, clock, files, staff_channel="telegram")
    await ingestor.start()
    desk = Desk(db, clock, files, language="en", timezone="UTC", region="RU")
    try:
        yield World(
            db,
            clock,
            desk,
            ingestor,
            ManagerRef(maria_id, "Maria", 111, "manager", None),
            ManagerRef(boris_id, "Boris", 222, "manager", "ru"),
        )
    finally:
        await ingestor.stop()


async def conversation(db: Database, conversation_id: int | None) -> Any:
    return await one(
        db,
        select(
            Conversation.status,
            Conversation.assignee_id,
            Conversation.first_response_at,
            Conversation.resolved_at,
        ).where(Conversation.id == conversation_id),
    )


async def events(db: Database, client_id: int) -> list[tuple[str, str | None]]:
    found = await rows(
        db,
        select(Interaction.text, Interaction.author)
        .where(Interaction.client_id == client_id, Interaction.direction == "event")
        .order_by(Interaction.id),
    )
    return [(t, a) for t, a in found if not t.startswith("routed:")]


# -- managers, refusals, topics --------------------------------------------------


async def test_only_active_registered_managers_are_known(world: World) -> None:
    assert await world.desk.manager(111) == world.maria
    assert await world.desk.manager(222) == world.boris  # with the language of their attrs
    assert await world.desk.manager(333) is None  # inactive
    assert await world.desk.manager(999) is None


async def test_a_refusal_is_audited(world: World) -> None:
    await world.desk.refused(999, "message in staff chat: /take")
    audit = await one(world.db, select(Audit.actor, Audit.action, Audit.details, Audit.at))
    assert tuple(audit) == (
        "telegram:999",
        "refused",
        {"what": "message in staff chat: /take"},
        T0,
    )


async def test_topics_are_saved_replaced_and_forgotten(world: World) -> None:
    anna = await world.write(ANNA)
    desk = world.desk
    assert await desk.topic_of(anna.client_id) is None
    await desk.save_topic(anna.client_id, Topic(-1001, 7))
    assert await desk.topic_of(anna.client_id) == Topic(-1001, 7)
    assert await desk.client_of_topic(Topic(-1001, 7)) == anna.client_id
    assert await desk.client_of_topic(Topic(-1001, 8)) is None
    await desk.save_topic(anna.client_id, Topic(-1002, 9))  # recreated elsewhere
    assert await desk.topic_of(anna.client_id) == Topic(-1002, 9)
    assert await desk.client_of_topic(Topic(-1001, 7)) is None
    await desk.forget_topic(anna.client_id)
    assert await desk.topic_of(anna.client_id) is None


# -- cards -------------------------------------------------------------------------


async def test_the_card_shows_the_client_and_the_last_contacts(world: World) -> None:
    phone = identity("phone", "+7 912 345-67-89")
    first = await world.write(ANNA, phone, text="one")
    for n in range(2, 8):
        world.clock.advance(timedelta(minutes=1))
        await world.write(ANNA, text=f"message {n}")
    await world.desk.act(first.client_id, world.maria, "take")
    await world.desk.answer(first.client_id, "answer", manager=world.maria, key="k1")
    await world.desk.answer(first.client_id, "private", manager=world.maria, key="k2", note=True)
    await world.desk.act(first.client_id, world.maria, "tag", "vip")
    card = await world.desk.card(first.client_id)
    assert card is not None
    assert (card.id, card.name, card.stage, card.open_requests, card.assignee) == (
        first.client_id,
        "Anna",
        "prospect",
        1,
        "Maria",
    )
    assert card.identities == (("telegram", "4242"), ("phone", "+79123456789"))
    assert card.tags == ("vip",)
    # The last five messages in and out, oldest first; notes and events are not contacts.
    assert [(c.direction, c.text) for c in card.last_contacts] == [
        ("in", "message 4"),
        ("in", "message 5"),
        ("in", "message 6"),
        ("in", "message 7"),
        ("out", "answer"),
    ]
    assert card.last_contacts[0].channel == "telegram"
    assert await world.desk.card(10_000) is None


# -- answers and notes -------------------------------------------------------------


async def test_an_answer_is_logged_and_queued_over_the_conversation_channel(world: World) -> None:
    anna = await world.write(ANNA)
    desk = world.desk
    first = await desk.answer(anna.client_id, "Hi Anna", manager=world.maria, key="tg:-1:5")
    again = await desk.answer(anna.client_id, "Hi Anna", manager=world.maria, key="tg:-1:5")
    assert first == again  # a redelivered manager message is logged once
    out = await rows(
        world.db,
        select(
            Interaction.id,
            Interaction.direction,
            Interaction.channel,
            Interaction.account,
            Interaction.author,
            Interaction.text,
            Interaction.delivery,
            Interaction.conversation_id,
        ).where(Interaction.direction == "out"),
    )
    assert [tuple(r) for r in out] == [
        (
            first,
            "out",
            "telegram",
            "telegram-account",
            "Maria",
            "Hi Anna",
            "pending",
            anna.conversation_id,
        )
    ]
    queued = await rows(
        world.db,
        select(
            Outbox.idempotency_key,
            Outbox.channel,
            Outbox.account,
            Outbox.recipient,
            Outbox.kind,
            Outbox.text,
            Outbox.interaction_id,
            Outbox.status,
        ).where(Outbox.kind == "reply"),
    )
    assert [tuple(r) for r in queued] == [
        (
            "tg:-1:5",
            "telegram",
            "telegram-account",  # the bot the client wrote to, not the channel's name
            "4242",
            "reply",
            "Hi Anna",
            first,
            "pending",
        )
    ]
    status, assignee, first_response, _ = await conversation(world.db, anna.conversation_id)
    assert (status, assignee, first_response) == ("pending", world.maria.id, T0)


async def test_the_first_answer_sets_first_response_time_once(world: World) -> None:
    anna = await world.write(ANNA)
    await world.desk.answer(anna.client_id, "one", manager=world.maria, key="a")
    world.clock.advance(timedelta(minutes=5))
    await world.desk.answer(anna.client_id, "two", manager=world.maria, key="b")
    assert (await conversation(world.db, anna.conversation_id))[2] == T0


async def test_an_email_answer_keeps_the_thread(world: World) -> None:
    bob = identity("email", "bob@example.org", "Bob")
    mail = await world.write(
        bob, channel=Channel.EMAIL, subject="Invoice 42", external_id="<m1@example.org>"
    )
    await world.desk.answer(mail.client_id, "Here it is", manager=world.maria, key="tg:-1:6")
    row = await one(
        world.db,
        select(
            Outbox.channel, Outbox.account, Outbox.recipient, Outbox.subject, Outbox.extras
        ).where(Outbox.kind == "reply"),
    )
    assert tuple(row) == (
        "email",
        "email-account",
        "bob@example.org",
        "Invoice 42",
        {"in_reply_to": "<m1@example.org>"},
    )


async def test_a_form_client_is_answered_by_email(world: World) -> None:
    eve = identity("email", "eve@example.com", "Eve")
    form = await world.write(eve, channel=Channel.WEBFORM, text="call me")
    await world.desk.answer(form.client_id, "Sure", manager=world.maria, key="k")
    row = await one(
        world.db, select(Outbox.channel, Outbox.recipient).where(Outbox.kind == "reply")
    )
    assert tuple(row) == ("email", "eve@example.com")


async def test_an_answer_over_a_channel_the_hub_cannot_send_on_is_logged_as_not_sent(
    world: World,
) -> None:
    """A form client with no outbound email set up: the answer is logged on the
    client as failed (nothing would ever send it) and the manager is told at once."""
    world.desk.sending = frozenset({"telegram"})
    eve = identity("email", "eve@example.com", "Eve")
    form = await world.write(eve, channel=Channel.WEBFORM, text="call me")
    with pytest.raises(NotSent, match="email"):
        await world.desk.answer(form.client_id, "Sure", manager=world.maria, key="k")
    logged = await rows(
        world.db,
        select(Interaction.text, Interaction.delivery).where(Interaction.direction == "out"),
    )
    assert [tuple(r) for r in logged] == [("Sure", "failed")]
    queued = await rows(world.db, select(Outbox.status).where(Outbox.kind == "reply"))
    assert [r.status for r in queued] == ["failed"]  # never claimed by the dispatcher
    # The same Telegram message again is recognized, not logged twice.
    await world.desk.answer(form.client_id, "Sure", manager=world.maria, key="k")
    assert len(await rows(world.db, select(Outbox.id).where(Outbox.kind == "reply"))) == 1
    world.desk.sending = frozenset({"telegram", "email"})
    await world.desk.answer(form.client_id, "Sure again", manager=world.maria, key="k2")
    queued = await rows(world.db, select(Outbox.status).where(Outbox.kind == "reply"))
    assert sorted(r.status for r in queued) == ["failed", "pending"]


async def test_a_note_is_logged_and_never_queued(world: World) -> None:
    anna = await world.write(ANNA)
    desk = world.desk
    note = await desk.answer(anna.client_id, "VIP", manager=world.maria, key="n1", note=True)
    assert await desk.answer(anna.client_id, "VIP", manager=world.maria, key="n1", note=True) == (
        note
    )
    found = await rows(
        world.db,
        select(Interaction.id, Interaction.text, Interaction.author, Interaction.delivery).where(
            Interaction.direction == "note"
        ),
    )
    assert [tuple(r) for r in found] == [(note, "VIP", "Maria", None)]
    assert await rows(world.db, select(Outbox.id).where(Outbox.kind == "reply")) == []
    status, _, first_response, _ = await conversation(world.db, anna.conversation_id)
    assert (status, first_response) == ("open", None)  # a note is no answer


async def test_an_answer_keeps_its_files(world: World) -> None:
    anna = await world.write(ANNA)
    interaction = await world.desk.answer(
        anna.client_id,
        "the contract",
        manager=world.maria,
        key="f1",
        attachments=[Attachment("contract.pdf", "application/pdf", b"%PDF-1.4 ...")],
    )
    stored = await world.desk.attachments(interaction)
    assert [(a.filename, a.content_type, a.size) for a in stored] == [
        ("contract.pdf", "application/pdf", 12)
    ]
    assert await world.desk.attachment_bytes(stored[0].sha256) == b"%PDF-1.4 ..."
    assert len(await rows(world.db, select(AttachmentRow.id))) == 1


async def test_no_conversation_no_answer(world: World) -> None:
    started = await world.write(ANNA, text="/start", extras={"service": True})
    assert started.conversation_id is None
    with pytest.raises(NoConversation):
        await world.desk.answer(started.client_id, "hi", manager=world.maria, key="x")


async def test_an_answer_goes_to_the_conversation_of_the_latest_message(world: World) -> None:
    anna_mail = identity("email", "anna@example.com", "Anna")
    tg = await world.write(ANNA, anna_mail)
    world.clock.advance(timedelta(minutes=1))
    mail = await world.write(anna_mail, channel=Channel.EMAIL, subject="Re: order")
    assert mail.client_id == tg.client_id and mail.conversation_id != tg.conversation_id
    await world.desk.answer(tg.client_id, "by mail", manager=world.maria, key="k")
    row = await one(
        world.db, select(Outbox.channel, Outbox.conversation_id).where(Outbox.kind == "reply")
    )
    assert tuple(row) == ("email", mail.conversation_id)


# -- actions -------------------------------------------------------------------------


async def test_take_resolve_reopen(world: World) -> None:
    anna = await world.write(ANNA)
    desk, cid, conv = world.desk, anna.client_id, anna.conversation_id
    assert await desk.act(cid, world.maria, "take") == "Taken by Maria"
    assert (await conversation(world.db, conv))[:2] == ("open", world.maria.id)
    world.clock.advance(timedelta(minutes=3))
    assert await desk.act(cid, world.boris, "resolve") == "Обращение закрыто: Boris"
    status, _, _, resolved_at = await conversation(world.db, conv)
    assert (status, resolved_at) == ("resolved", T0 + timedelta(minutes=3))
    assert await desk.act(cid, world.maria, "take") == "No open requests"
    assert await desk.act(cid, world.maria, "resolve") == "No open requests"
    assert await desk.act(cid, world.maria, "reopen") == "Reopened by Maria"
    assert (await conversation(world.db, conv))[0::3] == ("open", None)
    assert await events(world.db, cid) == [
        ("Taken by Maria", "Maria"),
        ("Обращение закрыто: Boris", "Boris"),
        ("Reopened by Maria", "Maria"),
    ]


async def test_transfer_assigns_and_tells_the_new_assignee(world: World) -> None:
    anna = await world.write(ANNA)
    desk, cid = world.desk, anna.client_id
    assert await desk.act(cid, world.maria, "transfer") == "Say what exactly: /transfer NAME"
    assert await desk.act(cid, world.maria, "transfer", "Nobody") == "No manager named “Nobody”"
    assert await desk.act(cid, world.maria, "transfer", "gone") == "No manager named “gone”"
    reply = await desk.act(cid, world.maria, "transfer", "bor")  # a unique prefix
    assert reply == "Transferred to Boris by Maria"
    assert (await conversation(world.db, anna.conversation_id))[1] == world.boris.id
    told = await rows(
        world.db,
        select(Outbox.recipient, Outbox.kind, Outbox.text, Outbox.client_id).where(
            Outbox.kind == "assigned"
        ),
    )
    assert [tuple(r) for r in told] == [("222", "assigned", reply, cid)]
    assert await desk.act(cid, world.boris, "transfer", "111") == (
        "Передано: Maria (передал Boris)"
    )
    assert (await conversation(world.db, anna.conversation_id))[1] == world.maria.id


async def test_tags_add_up_without_repeats(world: World) -> None:
    anna = await world.write(ANNA)
    desk, cid = world.desk, anna.client_id
    assert await desk.act(cid, world.maria, "tag", "#vip, wholesale") == "Tags: vip, wholesale"
    assert await desk.act(cid, world.maria, "tag", "vip late") == "Tags: vip, wholesale, late"
    assert await desk.act(cid, world.maria, "tag", " ") == "Say what exactly: /tag WORD …"
    tags = (await one(world.db, select(Client.tags).where(Client.id == cid)))[0]
    assert tags == ["vip", "wholesale", "late"]


async def test_stage_is_one_of_the_known_stages(world: World) -> None:
    anna = await world.write(ANNA)
    desk, cid = world.desk, anna.client_id
    assert await desk.act(cid, world.maria, "stage", "Repeat buyer") == (
        "Stage: repeat_buyer (Maria)"
    )
    assert (await desk.act(cid, world.maria, "stage", "boss")).startswith("No such stage: boss")
    assert (await one(world.db, select(Client.stage).where(Client.id == cid)))[0] == (
        "repeat_buyer"
    )


async def test_a_stage_move_is_logged_once_with_its_facts(world: World) -> None:
    """The desk moves stages through hub.clients.stages.move: the event holds the
    move in its extras (what the reports count), the audit log names the manager by
    Telegram id, and a redelivered command moves nothing twice."""
    anna = await world.write(ANNA)
    desk, cid = world.desk, anna.client_id
    first = await desk.act(cid, world.maria, "stage_up", key="tg:-100:78")
    again = await desk.act(cid, world.maria, "stage_up", key="tg:-100:78")
    assert first == "Stage: first_time_buyer (Maria)"
    assert again == "stage: prospect → first_time_buyer (by hand)"  # the logged event
    moves = await rows(
        world.db,
        select(Interaction.text, Interaction.author, Interaction.extras).where(
            Interaction.text.like("stage:%")
        ),
    )
    assert [tuple(m) for m in moves] == [
        (
            "stage: prospect → first_time_buyer (by hand)",
            "Maria",
            {
                "stage_move": {
                    "from": "prospect",
                    "to": "first_time_buyer",
                    "by": "Maria",
                    "why": "by hand",
                }
            },
        )
    ]
    audit = await rows(world.db, select(Audit.actor, Audit.details).where(Audit.action == "stage"))
    assert [tuple(a) for a in audit] == [
        ("telegram:111", {"from": "prospect", "to": "first_time_buyer", "why": "by hand"})
    ]


async def test_remind_sets_a_reminder_for_the_manager(world: World) -> None:
    anna = await world.write(ANNA)
    desk, cid = world.desk, anna.client_id
    reply = await desk.act(cid, world.maria, "remind", "2h call back")
    assert reply == "Reminder set for Mon 5 Jan 12:00: call back"
    assert (await desk.act(cid, world.maria, "remind", "someday")).startswith(
        "Cannot read the time"
    )
    found = await rows(
        world.db,
        select(
            Reminder.client_id,
            Reminder.conversation_id,
            Reminder.manager_id,
            Reminder.due_at,
            Reminder.text,
            Reminder.status,
        ),
    )
    assert [tuple(r) for r in found] == [
        (cid, anna.conversation_id, world.maria.id, T0 + timedelta(hours=2), "call back", "pending")
    ]
    assert await events(world.db, cid) == [(reply, "Maria")]


async def test_an_unknown_action_changes_nothing(world: World) -> None:
    anna = await world.write(ANNA)
    assert await world.desk.act(anna.client_id, world.maria, "explode") == (
        "Unknown command: explode"
    )
    assert await events(world.db, anna.client_id) == []


# -- inbox and find -------------------------------------------------------------------


async def test_the_inbox_lists_my_open_requests_oldest_first(world: World) -> None:
    desk = world.desk
    older = await world.write(identity("telegram", 1, "Older"))
    world.clock.advance(timedelta(minutes=10))
    newer = await world.write(identity("telegram", 2, "Newer"))
    others = await world.write(identity("telegram", 3, "Boris's"))
    done = await world.write(identity("telegram", 4, "Done"))
    await desk.act(newer.client_id, world.maria, "take")
    await desk.act(older.client_id, world.maria, "take")
    await desk.act(others.client_id, world.boris, "take")
    await desk.act(done.client_id, world.maria, "take")
    await desk.act(done.client_id, world.maria, "resolve")
    await desk.save_topic(older.client_id, Topic(-100, 5))
    inbox = await desk.inbox(world.maria)
    assert [(i.client_name, i.conversation_id, i.channel, i.topic) for i in inbox] == [
        ("Older", older.conversation_id, "telegram", Topic(-100, 5)),
        ("Newer", newer.conversation_id, "telegram", None),
    ]
    assert inbox[0].waiting_since < inbox[1].waiting_since
    assert [i.client_name for i in await desk.inbox(world.boris)] == ["Boris's"]


async def test_find_by_phone_written_any_way_by_name_and_by_email(world: World) -> None:
    desk = world.desk
    anna = await world.write(ANNA, identity("phone", "+7 912 345-67-89"))
    bob = await world.write(
        identity("email", "bob@example.org", "Bob Stone"), channel=Channel.EMAIL
    )
    for query in ("8 (912) 345-67-89", "+79123456789", "9123456789"):
        assert [c.id for c in await desk.find(world.maria, query)] == [anna.client_id], query
    assert [c.name for c in await desk.find(world.maria, "stone")] == ["Bob Stone"]
    assert [c.id for c in await desk.find(world.maria, "example.org")] == [bob.client_id]
    assert await desk.find(world.maria, "nobody at all") == []


async def test_a_redelivered_command_acts_once(world: World) -> None:
    """A command's update handled twice (a crash between commit and confirm) sets
    one reminder and answers the same confirmation."""
    anna = await world.write(ANNA)
    desk, cid = world.desk, anna.client_id
    first = await desk.act(cid, world.maria, "remind", "2h call back", key="tg:-100:77")
    again = await desk.act(cid, world.maria, "remind", "2h call back", key="tg:-100:77")
    assert again == first
    assert len(await rows(world.db, select(Reminder.id))) == 1
    assert await events(world.db, cid) == [(first, "Maria")]
