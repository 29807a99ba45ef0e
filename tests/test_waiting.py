"""Waiting on the client (issue 18, "The relationship loop"): /wait and its button
mark a request ``waiting``, its resolution clock stops, the client's next message
restarts it shifted by the pause, and after ``[waiting] close_after_days`` of
silence it closes itself with one note to the client, however many rounds run at
once. On SQLite and PostgreSQL, with the real ingest, desk, escalation, admin API,
and for Telegram the real aiogram against the local Bot API server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import insert, select, update

from hub import config as hub_config
from hub.admin.api import AdminServer, create_app
from hub.app.run import Hub
from hub.clients.attachments import AttachmentStore
from hub.desk.desk import Desk
from hub.ingest.ingestor import Ingestor
from hub.jobs.deadlines import Escalator
from hub.jobs.silence import Silence, close_silent
from hub.jobs.waiting import Assigner
from hub.kernel.clock import FrozenClock
from hub.kernel.identities import identity
from hub.kernel.types import Channel, InboundMessage, IngestResult, ManagerRef, OutboundMessage
from routing import Rule, Rules
from routing.sla import Policy
from storage import Database
from storage import reports as reports_q
from storage import webhooks as webhooks_q
from storage.models import Audit, Client, Conversation, Deadline, Interaction, Manager, Outbox
from tests.botapi import BotApiServer, Limits
from tests.cluster import free_port, to_toml
from tests.fakes import RecordingChannel
from tests.test_email_build import read as email_read
from tests.test_email_build import sender as email_sender
from tests.test_mail_worker import until
from tests.test_telegram_staff import conversation, staff_desk, visible

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
ANNA = identity("telegram", 4242, "Anna")
BOB = identity("email", "bob@example.org", "Bob")
POLICY = Policy(
    "standard",
    first_response=HOUR,
    next_response=2 * HOUR,
    resolution=8 * HOUR,
    reassign_after=timedelta(minutes=30),
)
TOKEN = "waiting-admin-token-0123456789"


async def rows(db: Database, statement: Any) -> list[Any]:
    async with db.read() as conn:
        return list((await conn.execute(statement)).all())


@dataclass
class World:
    db: Database
    clock: FrozenClock
    desk: Desk
    ingestor: Ingestor
    escalator: Escalator
    olga: ManagerRef  # team a: every request is hers by routing
    boris: ManagerRef  # team b
    vera: ManagerRef  # a supervisor
    mark: ManagerRef  # a marketer
    serial: int = 0

    async def writes(
        self, who: Any = ANNA, text: str = "hello", *, channel: Channel = Channel.TELEGRAM
    ) -> IngestResult:
        self.serial += 1
        return await self.ingestor(
            InboundMessage(
                channel,
                f"{channel.value}-account",
                f"<m{self.serial}@client>",
                (who,),
                self.clock.now(),
                text=text,
                subject="Order 42" if channel == Channel.EMAIL else None,
            )
        )

    def at(self, moment: datetime) -> None:
        self.clock.set(moment)


async def _staff(db: Database, name: str, telegram_id: int, role: str, team: str) -> int:
    async with db.write() as conn:
        found = await conn.execute(
            insert(Manager)
            .values(
                name=name,
                telegram_id=telegram_id,
                role=role,
                created_at=T0,
                attrs={"language": "en", "team": team},
            )
            .returning(Manager.id)
        )
        return int(found.scalar_one())


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> AsyncIterator[World]:
    clock = FrozenClock(T0)
    files = AttachmentStore(tmp_path / "files", 10**6)
    olga = await _staff(db, "Olga", 101, "manager", "a")
    await _staff(db, "Boris", 102, "manager", "b")
    await _staff(db, "Vera", 103, "supervisor", "a")
    await _staff(db, "Mark", 104, "marketer", "a")
    ingestor = Ingestor(
        db,
        clock,
        files,
        staff_channel="telegram",
        rules=Rules((Rule("to Olga", pool=(olga,)),)),
        policies=(POLICY,),
        language="en",
    )
    assigner = Assigner(db, clock, Rules(), staff_channel="telegram")
    escalator = Escalator(db, clock, (POLICY,), assigner, staff_channel="telegram", language="en")
    desk = Desk(db, clock, files, language="en", staff_channel="telegram")
    refs = [await desk.manager(t) for t in (101, 102, 103, 104)]
    assert all(r is not None for r in refs)
    await ingestor.start()
    try:
        yield World(db, clock, desk, ingestor, escalator, *refs)  # type: ignore[arg-type]
    finally:
        await ingestor.stop()


async def _status(db: Database, conversation_id: int | None) -> tuple[str, datetime | None]:
    [found] = await rows(
        db,
        select(Conversation.status, Conversation.waiting_since).where(
            Conversation.id == conversation_id
        ),
    )
    return found.status, found.waiting_since


async def _deadlines(db: Database) -> list[tuple[Any, ...]]:
    found = await rows(
        db,
        select(
            Deadline.kind,
            Deadline.status,
            Deadline.due_at,
            Deadline.next_at,
            Deadline.paused_at,
        ).order_by(Deadline.id),
    )
    return [tuple(r) for r in found]


async def _events(db: Database) -> list[str]:
    found = await rows(
        db,
        select(Interaction.text).where(Interaction.direction == "event").order_by(Interaction.id),
    )
    return [r.text for r in found if not r.text.startswith("routed:")]


# -- the clock stops, and restarts shifted ------------------------------------------------


async def test_wait_stops_the_resolution_clock_and_the_clients_next_message_restarts_it(
    world: World,
) -> None:
    w = world
    asked = await w.writes(text="Where is my order?")
    cid, conv = asked.client_id, asked.conversation_id
    w.at(T0 + timedelta(minutes=30))
    await w.desk.answer(cid, "Send me its number, please", manager=w.olga, key="a1")
    w.at(T0 + timedelta(minutes=40))
    said = await w.desk.act(cid, w.olga, "wait", key="w1")
    assert said == "⏸ Waiting on the client, the resolution clock stopped: Olga"
    paused_at = T0 + timedelta(minutes=40)
    assert await _status(w.db, conv) == ("waiting", paused_at)
    assert await _deadlines(w.db) == [
        ("first_response", "met", T0 + HOUR, None, None),
        ("resolution", "open", T0 + 8 * HOUR, None, paused_at),
    ]
    # Pressed again (a redelivery, or another manager): nothing more.
    assert await w.desk.act(cid, w.olga, "wait", key="w1") == said
    again = await w.desk.act(cid, w.vera, "wait", key="w2")
    assert again == "The request is already waiting on the client"

    # Long past the resolution's reminder and due time: nothing escalates.
    for hours in (7, 9, 20, 30):
        w.at(T0 + hours * HOUR)
        assert await w.escalator.run() == 0, hours
    async with w.db.read() as conn:  # nor is it overdue in the load report
        [olga] = [x for x in await reports_q.open_load(conn, w.clock.now()) if x.manager == "Olga"]
    assert (olga.open, olga.overdue) == (1, 0)
    # The manager's answer keeps it waiting: the ball is still with the client.
    await w.desk.answer(cid, "Still waiting for the number", manager=w.olga, key="a2")
    assert (await _status(w.db, conv))[0] == "waiting"

    back = T0 + 30 * HOUR
    await w.writes(text="It is 12345")
    assert await _status(w.db, conv) == ("open", None)
    gap = back - paused_at
    remind = T0 + 8 * HOUR * 0.8 + gap
    assert await _deadlines(w.db) == [
        ("first_response", "met", T0 + HOUR, None, None),
        ("resolution", "open", T0 + 8 * HOUR + gap, remind, None),
        ("next_response", "open", back + 2 * HOUR, back + 2 * HOUR * 0.8, None),
    ]
    w.at(back + timedelta(minutes=10))
    await w.desk.answer(cid, "Found it, it ships today", manager=w.olga, key="a3")
    w.at(remind - timedelta(minutes=1))
    assert await w.escalator.run() == 0
    w.at(remind)
    assert await w.escalator.run() == 1  # the resolution clock runs again
    assert await _events(w.db) == [
        "⏸ Waiting on the client, the resolution clock stopped: Olga",
        "▶️ The client wrote: the request is open again, its resolution clock runs",
        "⏰ Deadline near: resolution by 06.01 23:20",
    ]
    [audit] = await rows(
        w.db, select(Audit.actor, Audit.object_id, Audit.details).where(Audit.action == "wait")
    )
    assert tuple(audit) == ("telegram:101", cid, {"conversations": [conv]})


async def test_a_manager_not_allowed_is_refused_and_nothing_waits(world: World) -> None:
    w = world
    asked = await w.writes()
    cid, conv = asked.client_id, asked.conversation_id
    for manager in (w.boris, w.mark):  # another team's manager; a marketer
        assert (await w.desk.act(cid, manager, "wait")).startswith("This client belongs to")
    assert await _status(w.db, conv) == ("open", None)
    refused = await rows(w.db, select(Audit.actor).where(Audit.action == "refused"))
    assert sorted(r.actor for r in refused) == ["telegram:102", "telegram:104"]
    # A supervisor may; with nothing open, there is nothing to wait on.
    assert (await w.desk.act(cid, w.vera, "wait")).startswith("⏸ Waiting on the client")
    await w.desk.act(cid, w.vera, "resolve")
    assert await _status(w.db, conv) == ("resolved", None)
    assert await w.desk.act(cid, w.vera, "wait") == "No open requests"


async def test_reopen_takes_the_ball_back_and_the_clock_runs_again(world: World) -> None:
    w = world
    asked = await w.writes()
    w.at(T0 + HOUR)
    await w.desk.act(asked.client_id, w.olga, "wait")
    w.at(T0 + 5 * HOUR)
    assert await w.desk.act(asked.client_id, w.olga, "reopen") == "Reopened by Olga"
    assert await _status(w.db, asked.conversation_id) == ("open", None)
    [resolution] = [d for d in await _deadlines(w.db) if d[0] == "resolution"]
    shifted = T0 + 8 * HOUR + 4 * HOUR
    assert resolution == ("resolution", "open", shifted, T0 + 8 * HOUR * 0.8 + 4 * HOUR, None)


# -- after days of silence it closes itself -----------------------------------------------


SILENCE = Silence(after_days=7, note=True, staff_channel="telegram", language="en")


async def _waiting_pair(w: World) -> tuple[IngestResult, IngestResult]:
    """Anna on Telegram (in English) and Bob by email, both waited on at T0."""
    anna = await w.writes(ANNA, "Where is my order?")
    bob = await w.writes(BOB, "My invoice, please", channel=Channel.EMAIL)
    async with w.db.write() as conn:
        await conn.execute(update(Client).where(Client.id == anna.client_id).values(language="en"))
        await conn.execute(update(Client).where(Client.id == bob.client_id).values(language="ru"))
    for client in (anna.client_id, bob.client_id):
        await w.desk.act(client, w.olga, "wait")
    return anna, bob


async def test_silence_closes_a_waiting_request_once_with_one_note_to_the_client(
    world: World, db_url: str
) -> None:
    w = world
    async with w.db.write() as conn:
        await webhooks_q.sync(conn, [("crm", ["conversation.resolved"])])
    anna, bob = await _waiting_pair(w)
    w.at(T0 + 3 * DAY)
    chatty = await w.writes(identity("telegram", 777, "Chatty"), "hi")
    await w.desk.act(chatty.client_id, w.olga, "wait")

    w.at(T0 + 7 * DAY - timedelta(minutes=1))
    assert await close_silent(w.db, w.clock, SILENCE) == 0
    w.at(T0 + 7 * DAY)
    other = Database(db_url)  # a second instance's round, at the same time
    try:
        closed = await asyncio.gather(
            close_silent(w.db, w.clock, SILENCE), close_silent(other, w.clock, SILENCE)
        )
    finally:
        await other.dispose()
    assert sum(closed) == 2  # each closed by one of them (both, when they split the two)
    for result in (anna, bob):
        assert await _status(w.db, result.conversation_id) == ("resolved", None)
    assert (await _status(w.db, chatty.conversation_id))[0] == "waiting"  # 4 days only
    still = await rows(
        w.db, select(Deadline.conversation_id, Deadline.paused_at).where(Deadline.status == "open")
    )
    assert [tuple(d) for d in still] == [(chatty.conversation_id, T0 + 3 * DAY)]  # paused

    notes = await rows(
        w.db,
        select(Outbox.channel, Outbox.recipient, Outbox.subject, Outbox.text, Outbox.extras)
        .where(Outbox.kind == "closed")
        .order_by(Outbox.conversation_id),
    )
    assert [tuple(n)[:2] for n in notes] == [("telegram", "4242"), ("email", "bob@example.org")]
    assert notes[0].text.startswith("We have not heard back from you")
    assert notes[1].text.startswith("Мы не получили от вас ответа")
    # The email note is in the thread of Bob's message, under its subject.
    assert notes[1].subject == "Order 42"
    assert notes[1].extras == {"in_reply_to": "<m2@client>"}
    alerts = await rows(w.db, select(Outbox.recipient, Outbox.text).where(Outbox.kind == "alert"))
    assert [tuple(a) for a in alerts] == [
        ("101", "Resolved: the client has not answered for 7 days")
    ] * 2
    events = await rows(
        w.db, select(Outbox.text).where(Outbox.channel == "webhook").order_by(Outbox.id)
    )
    assert len(events) == 2 and all('"conversation.resolved"' in e.text for e in events)
    assert all('"reason":"silence"' in e.text for e in events)
    timeline = await rows(
        w.db,
        select(Interaction.direction, Interaction.text)
        .where(Interaction.conversation_id == bob.conversation_id)
        .order_by(Interaction.id),
    )
    assert [tuple(t) for t in timeline][-2:] == [
        ("event", "Resolved: the client has not answered for 7 days"),
        ("out", notes[1].text),
    ]
    # Chatty's turn comes seven days after theirs began, and once.
    w.at(T0 + 10 * DAY - timedelta(minutes=1))
    assert await close_silent(w.db, w.clock, SILENCE) == 0
    w.at(T0 + 10 * DAY)
    assert await close_silent(w.db, w.clock, SILENCE) == 1
    assert await close_silent(w.db, w.clock, SILENCE) == 0
    assert len(await rows(w.db, select(Outbox.id).where(Outbox.kind == "closed"))) == 3


async def test_a_client_who_wrote_back_is_not_closed_and_no_note_when_off(world: World) -> None:
    w = world
    anna, bob = await _waiting_pair(w)
    w.at(T0 + DAY)
    await w.writes(ANNA, "Here is the number: 12345")  # Anna's request is open again
    w.at(T0 + 30 * DAY)
    quiet = Silence(after_days=7, note=False, staff_channel=None, language="en")
    assert await close_silent(w.db, w.clock, quiet) == 1
    assert (await _status(w.db, anna.conversation_id))[0] == "open"
    assert (await _status(w.db, bob.conversation_id))[0] == "resolved"
    told = await rows(w.db, select(Outbox.id).where(Outbox.kind.in_(("closed", "alert"))))
    assert told == []
    never = Silence(after_days=0, note=True, staff_channel=None, language="en")
    await w.desk.act(anna.client_id, w.olga, "wait")
    w.at(T0 + 300 * DAY)
    assert await close_silent(w.db, w.clock, never) == 0


# -- the admin API ---------------------------------------------------------------------------


async def test_the_admin_api_lists_waiting_requests(world: World) -> None:
    w = world
    anna, bob = await _waiting_pair(w)
    await w.desk.act(anna.client_id, w.olga, "resolve")
    open_one = await w.writes(identity("telegram", 777, "Chatty"), "hi")
    server = AdminServer(create_app(w.db, TOKEN, lambda: True))
    await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(
            f"http://127.0.0.1:{server.port}", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as session:
            async with session.get("/api/conversations", params={"status": "waiting"}) as got:
                assert got.status == 200
                waiting = await got.json()
            async with session.get("/api/conversations", params={"status": "sleeping"}) as bad:
                assert bad.status == 400
                problem = await bad.json()
    finally:
        await server.stop()
    assert [(c["id"], c["status"]) for c in waiting] == [(bob.conversation_id, "waiting")]
    assert "open, pending, waiting, resolved" in str(problem)
    assert open_one.conversation_id not in [c["id"] for c in waiting]


# -- Telegram: /wait and the ⏸ button (aiogram against the local Bot API server) -------------


@pytest.fixture
async def server() -> AsyncIterator[BotApiServer]:
    async with BotApiServer(limits=Limits.off()) as running:
        yield running


async def test_wait_in_the_topic_the_private_chat_and_by_the_button(
    db: Database, tmp_path: Path, server: BotApiServer
) -> None:
    async with staff_desk(db, tmp_path, server) as hub:
        maria = await hub.manager("Maria")
        stranger = server.add_manager("Eve")  # in the group, not a manager of the hub
        anna = await hub.writes(ANNA, "Where is my order?")
        await hub.flush()
        thread = hub.thread("Anna")
        cid, conv = anna.client_id, anna.conversation_id
        card = hub.in_topic(thread)[0]
        labels = [b["text"] for b in card["reply_markup"]["inline_keyboard"][0]]
        assert labels[1:3] == ["Resolve", "⏸ Wait"]

        await hub.says(maria, thread, "/wait")
        assert (await conversation(db, conv))[0] == "waiting"
        assert visible(hub.in_topic(thread)[-1]) == (
            "⏸ Waiting on the client, the resolution clock stopped: Maria"
        )
        await hub.writes(ANNA, "It is 12345")
        assert (await conversation(db, conv))[0] == "open"

        await server.callback(stranger, card, f"hub:wait:{cid}")
        await hub.feed()
        assert (await conversation(db, conv))[0] == "open"  # refused
        await server.callback(maria, card, f"hub:wait:{cid}")
        await hub.feed()
        assert (await conversation(db, conv))[0] == "waiting"
        toasts = [a["text"] for a in server.callback_answers.values()]
        assert toasts[-1] == "⏸ Waiting on the client, the resolution clock stopped: Maria"

        # In the private chat, on the current client.
        await hub.writes(ANNA, "Still there?")
        await server.user_sends(maria, f"/c {cid}")
        await server.user_sends(maria, "/wait")
        await hub.feed()
        assert (await conversation(db, conv))[0] == "waiting"
        said = [visible(m) for m in server.sent_to(maria.id)]
        assert said[-1] == "⏸ Waiting on the client, the resolution clock stopped: Maria"
    refused = await rows(db, select(Audit.actor).where(Audit.action == "refused"))
    assert [r.actor for r in refused] == [f"telegram:{stranger.id}"]


# -- hub run: the round scheduled by [waiting], taken on reload, its note delivered ----------


async def test_the_round_follows_the_config_on_reload_and_its_note_is_delivered(
    db_url: str, tmp_path: Path
) -> None:
    config: dict[str, Any] = {
        "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
        "admin": {"listen": f"127.0.0.1:{free_port()}", "token": TOKEN},
        "managers": [{"name": "Olga", "telegram_id": 501}],
        "waiting": {"close_after_days": 0},
    }
    path = tmp_path / "hub.toml"
    path.write_text(to_toml(config))
    channel = RecordingChannel("telegram")
    hub = Hub(hub_config.load(path), channels={"telegram": channel}, config_path=str(path))
    async with hub.lifespan():
        assert hub.db is not None and hub.desk is not None and hub.scheduler is not None
        assert hub.scheduler.get_job("waiting") is None  # 0: never
        assert channel.sink is not None
        asked = await channel.sink(
            InboundMessage(Channel.TELEGRAM, "bot", "9:1", (ANNA,), hub.clock.now(), text="hi")
        )
        olga = await hub.desk.manager(501)
        assert olga is not None
        await hub.desk.act(asked.client_id, olga, "wait")
        async with hub.db.write() as conn:  # three days ago
            await conn.execute(update(Conversation).values(waiting_since=hub.clock.now() - 3 * DAY))
        await hub.close_silent()
        assert (await _status(hub.db, asked.conversation_id))[0] == "waiting"

        path.write_text(
            to_toml({**config, "waiting": {"close_after_days": 2, "check_every_s": 60}})
        )
        result = await hub.reload_file("test")
        assert result.ok, result.problems
        assert set(result.changed) == {"waiting.close_after_days", "waiting.check_every_s"}
        job = hub.scheduler.get_job("waiting")
        assert job is not None and job.trigger.interval == timedelta(seconds=60)

        async def resolved() -> bool:  # by the round the reload scheduled, at once
            assert hub.db is not None
            return (await _status(hub.db, asked.conversation_id))[0] == "resolved"

        await until(resolved)
        await hub.close_silent()  # and once: a round more closes nothing more
        note = "Мы не получили от вас ответа"  # the hub's language: the client's is unknown
        await channel.wait_for(lambda: any(m.text.startswith(note) for m in channel.sent))
        [sent] = [m for m in channel.sent if m.text.startswith(note)]
        assert (sent.kind, sent.recipient) == ("closed", "4242")

        async def delivered() -> bool:
            assert hub.db is not None
            found = await rows(
                hub.db,
                select(Interaction.delivery).where(Interaction.text.startswith(note)),
            )
            return [r.delivery for r in found] == ["sent"]

        await until(delivered)


def test_the_email_note_is_in_the_thread_and_asks_for_no_auto_reply() -> None:
    note = OutboundMessage(
        outbox_id=1,
        channel="email",
        account="support",
        recipient="bob@example.org",
        kind="closed",
        text="We have not heard back from you",
        idempotency_key="closed:9",
        subject="Order 42",
        conversation_id=7,
    )
    data, _ = email_sender("Shop").build(note, in_reply_to="<m2@client>", references=[])
    back = email_read(data)
    assert (back["In-Reply-To"], back["Subject"]) == ("<m2@client>", "Re: Order 42")
    assert back["Auto-Submitted"] == "auto-generated"
