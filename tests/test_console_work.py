"""The request page's work (hub/console/work.py) against the database, on SQLite and
PostgreSQL: the page's reads and paging, answers and notes through the desk's
outbox once per form token, the desk's actions audited under the person's name
and told in the client's topic, and the desk's refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from hub.clients.attachments import AttachmentStore
from hub.config import TemplateSection
from hub.console.work import BadInput, Missing, Refused, RequestWork, new_token
from hub.desk.desk import Desk
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import FrozenClock
from hub.kernel.identities import identity
from hub.kernel.types import Channel, Identity, InboundMessage, IngestResult, ManagerRef
from storage import Database
from storage.models import Audit, Conversation, Deadline, Interaction, Manager, Outbox

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
ANNA = identity("telegram", 4242, "Anna")
BOB = identity("email", "bob@example.org", "Bob")


@dataclass
class World:
    db: Database
    clock: FrozenClock
    desk: Desk
    work: RequestWork
    ingestor: Ingestor
    maria: ManagerRef  # team a
    boris: ManagerRef  # team b
    mark: ManagerRef  # a marketer
    serial: int = 0

    async def write(
        self,
        *identities: Identity,
        text: str = "hello",
        channel: Channel = Channel.TELEGRAM,
        subject: str | None = None,
    ) -> IngestResult:
        self.serial += 1
        return await self.ingestor(
            InboundMessage(
                channel,
                f"{channel.value}-account",
                f"m{self.serial}",
                identities,
                self.clock.now(),
                text=text,
                subject=subject,
            )
        )


async def _manager(db: Database, name: str, telegram_id: int, role: str, team: str) -> int:
    async with db.write() as conn:
        result = await conn.execute(
            insert(Manager)
            .values(
                name=name,
                telegram_id=telegram_id,
                role=role,
                created_at=T0,
                away=True,  # nobody is given requests by routing here
                attrs={"team": team},
            )
            .returning(Manager.id)
        )
        return int(result.scalar_one())


async def rows(db: Database, statement: Any) -> list[tuple[Any, ...]]:
    async with db.read() as conn:
        return [tuple(r) for r in (await conn.execute(statement)).all()]


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> AsyncIterator[World]:
    clock = FrozenClock(T0)
    files = AttachmentStore(tmp_path / "files", 10**6)
    maria = await _manager(db, "Maria", 111, "manager", "a")
    boris = await _manager(db, "Boris", 222, "manager", "b")
    mark = await _manager(db, "Mark", 333, "marketer", "a")
    ingestor = Ingestor(db, clock, files, staff_channel="telegram")
    await ingestor.start()
    greeting = TemplateSection(name="hello", en="Hello, {{ first_name }}! {{ manager }} here.")
    desk = Desk(db, clock, files, language="en", timezone="UTC", templates=[greeting])
    try:
        yield World(
            db,
            clock,
            desk,
            RequestWork(desk, page=3),
            ingestor,
            ManagerRef(maria, "Maria", 111, "manager", None, "a"),
            ManagerRef(boris, "Boris", 222, "manager", "ru", "b"),
            ManagerRef(mark, "Mark", 333, "marketer", None, "a"),
        )
    finally:
        await ingestor.stop()


async def _kept_by(world: World, conversation_id: int, manager: ManagerRef) -> None:
    async with world.db.write() as conn:
        await conn.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(assignee_id=manager.id)
        )


async def _audit(world: World) -> list[tuple[Any, ...]]:
    return await rows(
        world.db,
        select(Audit.actor, Audit.action, Audit.object_id).order_by(Audit.id),
    )


# -- reading -----------------------------------------------------------------------------


async def test_the_page_shows_the_request_its_client_and_the_log_paged_back(world: World) -> None:
    first = await world.write(ANNA, text="one")
    for n in range(2, 6):
        world.clock.advance(timedelta(minutes=1))
        await world.write(ANNA, text=f"message {n}")
    assert first.conversation_id is not None
    page = await world.work.page(world.maria, first.conversation_id)
    assert page.card.name == "Anna"
    assert ("telegram", "4242") in page.card.identities
    assert page.request.status == "open" and page.request.channel == "telegram"
    assert [e.text for e in page.entries] == ["message 3", "message 4", "message 5"]
    assert page.earlier is not None and page.route == "telegram"
    assert page.answers_in == first.conversation_id
    assert page.templates == ["hello"]
    assert [m.name for m in page.colleagues] == ["Boris"]  # never the marketer, never oneself
    back = await world.work.page(world.maria, first.conversation_id, before=page.earlier)
    assert [e.text for e in back.entries if e.direction == "in"] == ["one", "message 2"]
    assert back.earlier is None
    later = await world.write(ANNA, text="live")
    tail = await world.work.tail(world.maria, first.conversation_id, page.newest)
    assert [(e.id, e.text) for e in tail] == [(later.interaction_id, "live")]


async def test_the_page_shows_the_request_deadlines(world: World) -> None:
    anna = await world.write(ANNA)
    assert anna.conversation_id is not None
    async with world.db.write() as conn:
        await conn.execute(
            insert(Deadline).values(
                conversation_id=anna.conversation_id,
                client_id=anna.client_id,
                policy="standard",
                kind="first_response",
                started_at=T0,
                remind_at=T0 + timedelta(minutes=10),
                due_at=T0 + timedelta(minutes=15),
                status="open",
                created_at=T0,
            )
        )
    page = await world.work.page(world.maria, anna.conversation_id)
    assert [(d.kind, d.due_at, d.status) for d in page.deadlines] == [
        ("first_response", T0 + timedelta(minutes=15), "open")
    ]


async def test_an_unknown_request_is_missing(world: World) -> None:
    with pytest.raises(Missing):
        await world.work.page(world.maria, 999)
    with pytest.raises(Missing):
        await world.work.answer(world.maria, 999, "hi", token=new_token(), note=False)


async def test_another_teams_client_is_refused_and_the_refusal_audited(world: World) -> None:
    anna = await world.write(ANNA)
    assert anna.conversation_id is not None
    await _kept_by(world, anna.conversation_id, world.maria)
    with pytest.raises(Refused, match="другой команды"):
        await world.work.page(world.boris, anna.conversation_id)
    with pytest.raises(Refused):
        await world.work.answer(
            world.boris, anna.conversation_id, "x", token=new_token(), note=False
        )
    with pytest.raises(Refused):
        await world.work.act(world.boris, anna.conversation_id, "take", token=new_token())
    with pytest.raises(Refused):  # marketers work with campaigns, not conversations
        await world.work.page(world.mark, anna.conversation_id)
    assert await _audit(world) == [
        ("console:Boris", "refused", anna.client_id),
        ("console:Boris", "refused", anna.client_id),
        ("console:Boris", "refused", anna.client_id),
        ("console:Mark", "refused", anna.client_id),
    ]
    out = await rows(world.db, select(Interaction.id).where(Interaction.direction == "out"))
    assert out == []  # nothing was answered
    assert (await world.work.page(world.maria, anna.conversation_id)).card.name == "Anna"


# -- answers and notes ------------------------------------------------------------------


async def _outbox(world: World) -> list[tuple[Any, ...]]:
    return await rows(
        world.db,
        select(Outbox.channel, Outbox.recipient, Outbox.kind, Outbox.text).order_by(Outbox.id),
    )


async def test_an_answer_goes_through_the_outbox_once_per_token(world: World) -> None:
    anna = await world.write(ANNA)
    assert anna.conversation_id is not None
    token = new_token()
    done = await world.work.answer(
        world.maria, anna.conversation_id, " Hi Anna \r\n", token=token, note=False
    )
    again = await world.work.answer(
        world.maria, anna.conversation_id, " Hi Anna ", token=token, note=False
    )
    assert done.ok and again.ok
    sent = [r for r in await _outbox(world) if r[2] in ("reply", "answered")]
    assert sent == [
        ("telegram", "4242", "reply", "Hi Anna"),  # to the client over their channel
        ("telegram", "staff", "answered", "Hi Anna"),  # copied into their topic
    ]
    assert await _audit(world) == [("console:Maria", "answer", anna.client_id)]
    status = await rows(
        world.db,
        select(Conversation.status, Conversation.assignee_id).where(
            Conversation.id == anna.conversation_id
        ),
    )
    assert status == [("pending", world.maria.id)]


async def test_a_double_click_posting_twice_at_once_sends_once(world: World) -> None:
    anna = await world.write(ANNA)
    assert anna.conversation_id is not None
    token = new_token()
    both = await asyncio.gather(
        *[
            world.work.answer(world.maria, anna.conversation_id, "Once", token=token, note=False)
            for _ in range(2)
        ]
    )
    assert all(d.ok for d in both)
    replies = await rows(world.db, select(Outbox.id).where(Outbox.kind == "reply"))
    assert len(replies) == 1


async def test_an_email_client_is_answered_by_email_in_their_thread(world: World) -> None:
    bob = await world.write(BOB, channel=Channel.EMAIL, subject="Order 17", text="Where is it?")
    assert bob.conversation_id is not None
    await world.work.answer(
        world.maria, bob.conversation_id, "On its way", token=new_token(), note=False
    )
    reply = await rows(
        world.db,
        select(Outbox.channel, Outbox.recipient, Outbox.subject, Outbox.extras).where(
            Outbox.kind == "reply"
        ),
    )
    assert reply == [("email", "bob@example.org", "Order 17", {"in_reply_to": "m1"})]


async def test_a_note_is_logged_and_never_sent_to_the_client(world: World) -> None:
    anna = await world.write(ANNA)
    assert anna.conversation_id is not None
    token = new_token()
    for _ in range(2):
        done = await world.work.answer(
            world.maria, anna.conversation_id, "she prefers mornings", token=token, note=True
        )
        assert done.ok
    notes = await rows(world.db, select(Interaction.text).where(Interaction.direction == "note"))
    assert notes == [("she prefers mornings",)]
    assert [r[2] for r in await _outbox(world) if r[1] != "staff"] == []  # not to the client
    assert ("telegram", "staff", "answered", "she prefers mornings") in await _outbox(world)
    assert await _audit(world) == [("console:Maria", "note", anna.client_id)]


async def test_a_template_is_rendered_for_the_client_and_sent(world: World) -> None:
    anna = await world.write(ANNA)
    assert anna.conversation_id is not None
    done = await world.work.template(world.maria, anna.conversation_id, "Hello", token=new_token())
    assert done.ok
    replies = await rows(world.db, select(Outbox.text).where(Outbox.kind == "reply"))
    assert replies == [("Hello, Anna! Maria here.",)]
    unknown = await world.work.template(
        world.maria, anna.conversation_id, "nope", token=new_token()
    )
    assert not unknown.ok and "hello" in unknown.said


async def test_bad_input_is_refused_before_anything_is_done(world: World) -> None:
    anna = await world.write(ANNA)
    conv = anna.conversation_id
    assert conv is not None
    before = await rows(world.db, select(Outbox.id))
    cases: list[tuple[str, Any]] = [
        ("empty_text", world.work.answer(world.maria, conv, "  \n", token=new_token(), note=False)),
        (
            "long_text",
            world.work.answer(world.maria, conv, "x" * 10_001, token=new_token(), note=False),
        ),
        (
            "control_text",
            world.work.answer(world.maria, conv, "a\x00b", token=new_token(), note=False),
        ),
        ("bad_token", world.work.answer(world.maria, conv, "hi", token="../../x", note=False)),
        ("bad_action", world.work.act(world.maria, conv, "block", token=new_token())),
        ("bad_argument", world.work.act(world.maria, conv, "remind", "a\x07", token=new_token())),
    ]
    for key, call in cases:
        with pytest.raises(BadInput) as refused:
            await call
        assert refused.value.key == key
    assert await rows(world.db, select(Outbox.id)) == before


# -- actions -----------------------------------------------------------------------------


async def test_take_is_done_audited_and_told_in_the_topic_once(world: World) -> None:
    anna = await world.write(ANNA)
    assert anna.conversation_id is not None
    token = new_token()
    done = await world.work.act(world.maria, anna.conversation_id, "take", token=token)
    again = await world.work.act(world.maria, anna.conversation_id, "take", token=token)
    assert done.ok and done.said == "Taken by Maria" and again.said == "Taken by Maria"
    told = [r for r in await _outbox(world) if r[2] == "alert"]
    assert told == [("telegram", "staff", "alert", "Taken by Maria")]
    assert await _audit(world) == [("console:Maria", "take", anna.client_id)]
    assignee = await rows(
        world.db, select(Conversation.assignee_id).where(Conversation.id == anna.conversation_id)
    )
    assert assignee == [(world.maria.id,)]


async def test_an_action_that_does_nothing_says_why_and_tells_nobody(world: World) -> None:
    anna = await world.write(ANNA)
    assert anna.conversation_id is not None
    await world.work.act(world.maria, anna.conversation_id, "resolve", token=new_token())
    done = await world.work.act(world.maria, anna.conversation_id, "resolve", token=new_token())
    assert not done.ok and done.said == "No open requests"
    assert [r[3] for r in await _outbox(world) if r[2] == "alert"] == ["Resolved by Maria"]
    late = await world.work.act(
        world.maria, anna.conversation_id, "remind", "yesterday", token=new_token()
    )
    assert not late.ok


async def test_transfer_wait_and_remind_go_through_the_desk(world: World) -> None:
    anna = await world.write(ANNA)
    conv = anna.conversation_id
    assert conv is not None
    moved = await world.work.act(world.maria, conv, "transfer", "222", token=new_token())
    assert moved.ok and moved.said == "Transferred to Boris by Maria"
    assigned = await rows(world.db, select(Outbox.recipient).where(Outbox.kind == "assigned"))
    assert assigned == [("222",)]  # Boris is told privately, as by /transfer
    waiting = await world.work.act(world.boris, conv, "wait", token=new_token())
    assert waiting.ok
    reminded = await world.work.act(
        world.boris, conv, "remind", "in 2 hours call back", token=new_token()
    )
    assert reminded.ok
    actions = [a for _, a, _ in await _audit(world)]
    assert actions == ["transfer", "wait", "wait", "remind"]  # the desk audits a wait too
