"""Routing rules through the real ingest, and waiting requests given out later:
nobody available, then somebody back; an offer to all; a queue whose offer
times out and goes to the next; the first to accept gets it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from hub.clients.attachments import AttachmentStore
from hub.desk.desk import Desk
from hub.ingest.ingestor import Ingestor
from hub.jobs import waiting
from hub.jobs.waiting import Assigner
from hub.kernel.clock import FrozenClock
from hub.kernel.types import Channel, ManagerRef
from routing import Rule, Rules, decide
from storage import Database
from storage.models import Client, Conversation, Interaction, Manager, Outbox
from tests.test_ingest import ANNA, ANNA_TG, BORIS_TG, T0, add_manager, message, rows, scalar


@asynccontextmanager
async def ingest(
    db: Database, tmp_path: Path, rules: Rules, clock: FrozenClock | None = None
) -> AsyncIterator[Ingestor]:
    ingestor = Ingestor(
        db,
        clock or FrozenClock(T0),
        AttachmentStore(tmp_path / "files", 10**6),
        staff_channel="telegram",
        rules=rules,
    )
    await ingestor.start()
    try:
        yield ingestor
    finally:
        await ingestor.stop()


async def set_away(db: Database, manager_id: int, away: bool) -> None:
    async with db.write() as conn:
        await conn.execute(update(Manager).where(Manager.id == manager_id).values(away=away))


async def events(db: Database) -> list[str]:
    return [
        r.text
        for r in await rows(
            db,
            select(Interaction.text)
            .where(Interaction.direction == "event")
            .order_by(Interaction.id),
        )
    ]


async def offers(db: Database) -> list[str]:
    return [
        r.recipient
        for r in await rows(
            db, select(Outbox.recipient).where(Outbox.kind == "offer").order_by(Outbox.id)
        )
    ]


async def test_a_matched_rule_sets_priority_tags_and_its_own_reply(
    db: Database, tmp_path: Path
) -> None:
    anna = await add_manager(db, "Anna", 1001)
    rules = Rules(
        (
            Rule(
                "Refunds",
                keywords=("возврат",),
                priority="urgent",
                add_tags=("refund",),
                reply=(("ru", "Вернём деньги за 3 дня"), ("en", "Refund in 3 days")),
            ),
        )
    )
    async with ingest(db, tmp_path, rules) as ingestor:
        result = await ingestor(message(Channel.TELEGRAM, "t1", ANNA_TG, text="Хочу ВОЗВРАТ"))
        await ingestor(message(Channel.TELEGRAM, "t2", ANNA_TG, text="и ещё возврат"))
    conv = (await rows(db, select(Conversation.priority, Conversation.assignee_id)))[0]
    assert tuple(conv) == ("urgent", anna)
    tags = await scalar(db, select(Client.tags).where(Client.id == result.client_id))
    assert tags == ["refund"]
    replies = await rows(db, select(Outbox.text).where(Outbox.kind == "auto_reply"))
    assert [r.text for r in replies] == ["Вернём деньги за 3 дня"]  # once: a new request only
    assert "routed: rule 'Refunds' matched: least loaded: Anna" in await events(db)


async def test_a_rule_on_the_clients_tags_reads_them(db: Database, tmp_path: Path) -> None:
    await add_manager(db, "Anna", 1001)
    boris = await add_manager(db, "Boris", 1002)
    rules = Rules((Rule("VIP", tags=frozenset({"vip"}), pool=(boris,)),))
    async with ingest(db, tmp_path, rules) as ingestor:
        first = await ingestor(message(Channel.EMAIL, "<1@x>", ANNA, text="hi"))
        async with db.write() as conn:
            await conn.execute(
                update(Client).where(Client.id == first.client_id).values(tags=["vip"])
            )
            await conn.execute(update(Conversation).values(status="resolved"))
        await ingestor(message(Channel.EMAIL, "<2@x>", ANNA, text="again"))
    assignees = [
        r.assignee_id
        for r in await rows(db, select(Conversation.assignee_id).order_by(Conversation.id))
    ]
    assert assignees[1] == boris
    assert any("rule 'VIP' matched" in e for e in await events(db))


async def test_nobody_available_waits_and_goes_out_when_somebody_is_back(
    db: Database, tmp_path: Path
) -> None:
    anna = await add_manager(db, "Anna", 1001)
    await set_away(db, anna, True)
    clock = FrozenClock(T0)
    async with ingest(db, tmp_path, Rules(), clock) as ingestor:
        await ingestor(message(Channel.TELEGRAM, "t1", ANNA_TG, text="Есть кто?"))
        assigner = Assigner(db, clock, Rules(), staff_channel="telegram")
        assert await assigner.give_out() == 0  # still nobody: nothing happens, no noise
        assert await scalar(db, select(Conversation.assignee_id)) is None
        await set_away(db, anna, False)
        assert await assigner.give_out() == 1
        assert await assigner.give_out() == 0  # given out once
    assert await scalar(db, select(Conversation.assignee_id)) == anna
    assert await events(db) == ["routed: nobody available: queued", "routed: least loaded: Anna"]
    told = await rows(db, select(Outbox.recipient).where(Outbox.kind == "assigned"))
    assert [r.recipient for r in told] == ["1001"]


async def test_a_round_with_nobody_free_decides_nothing(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every manager away: the round does not route each waiting request again only
    to name nobody (on a busy desk that held the event loop 100 ms every 5 s); once
    somebody is back, and after the round fills them up, it stops deciding."""
    anna = await add_manager(db, "Anna", 1001)
    async with db.write() as conn:
        await conn.execute(update(Manager).where(Manager.id == anna).values(capacity=1))
    await set_away(db, anna, True)
    decided: list[str] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        decided.append(args[1].text)
        return decide(*args, **kwargs)

    monkeypatch.setattr(waiting, "decide", counting)
    clock = FrozenClock(T0)
    async with ingest(db, tmp_path, Rules(), clock) as ingestor:
        await ingestor(message(Channel.TELEGRAM, "t1", ANNA_TG, text="Есть кто?"))
        await ingestor(message(Channel.TELEGRAM, "t2", BORIS_TG, text="И я жду"))
        assigner = Assigner(db, clock, Rules(), staff_channel="telegram")
        assert await assigner.give_out() == 0
        assert decided == []  # nobody free: nothing decided at all
        await set_away(db, anna, False)
        assert await assigner.give_out() == 1  # Anna takes one, then is full
        assert len(decided) == 1  # the other one is not decided for nobody
        assert await assigner.give_out() == 0
        assert len(decided) == 1


async def test_an_offer_to_all_the_first_to_accept_gets_it(db: Database, tmp_path: Path) -> None:
    anna = await add_manager(db, "Anna", 1001)
    boris = await add_manager(db, "Boris", 1002)
    rules = Rules(default_strategy="all")
    clock = FrozenClock(T0)
    async with ingest(db, tmp_path, rules, clock) as ingestor:
        result = await ingestor(message(Channel.TELEGRAM, "t1", ANNA_TG, text="Помогите"))
    assert sorted(await offers(db)) == ["1001", "1002"]
    assert await scalar(db, select(Conversation.assignee_id)) is None
    desk = Desk(db, clock, AttachmentStore(tmp_path / "files", 10**6), staff_channel="telegram")
    first = await desk.act(result.client_id, ManagerRef(boris, "Boris", 1002, "manager"), "accept")
    second = await desk.act(result.client_id, ManagerRef(anna, "Anna", 1001, "manager"), "accept")
    assert first == "Взято в работу: Boris"
    assert second == "Уже взято в работу: Boris"
    assert await scalar(db, select(Conversation.assignee_id)) == boris


async def test_a_queue_offer_not_accepted_in_time_goes_to_the_next(
    db: Database, tmp_path: Path
) -> None:
    anna = await add_manager(db, "Anna", 1001)
    boris = await add_manager(db, "Boris", 1002)
    rules = Rules((Rule("Q", strategy="queue", pool=(boris, anna)),))
    clock = FrozenClock(T0)
    assigner = Assigner(
        db, clock, rules, staff_channel="telegram", accept_timeout=timedelta(minutes=10)
    )
    async with ingest(db, tmp_path, rules, clock) as ingestor:
        await ingestor(message(Channel.TELEGRAM, "t1", BORIS_TG, text="Вопрос"))
    assert await offers(db) == ["1002"]  # the pool's order: Boris first
    clock.advance(timedelta(minutes=9))
    assert await assigner.give_out() == 0  # the offer still stands
    clock.advance(timedelta(minutes=2))
    assert await assigner.give_out() == 1
    assert await offers(db) == ["1002", "1001"]  # then Anna
    clock.advance(timedelta(minutes=11))
    assert await assigner.give_out() == 1
    assert await offers(db) == ["1002", "1001", "1002"]  # round again
    assert await scalar(db, select(Conversation.assignee_id)) is None
    evs = [e for e in await events(db) if "offered" in e]
    assert evs[-1] == "routed: rule 'Q' matched: offered to Boris (queue)"


async def test_two_rounds_at_once_give_a_request_out_once(db: Database, tmp_path: Path) -> None:
    import asyncio

    anna = await add_manager(db, "Anna", 1001)
    await set_away(db, anna, True)
    clock = FrozenClock(T0)
    async with ingest(db, tmp_path, Rules(), clock) as ingestor:
        for n in range(20):
            await ingestor(
                message(Channel.EMAIL, f"<{n}@x>", ANNA.__class__(ANNA.kind, f"c{n}@x.org"))
            )
    await set_away(db, anna, False)
    one = Assigner(db, clock, Rules(), staff_channel="telegram")
    two = Assigner(db, clock, Rules(), staff_channel="telegram")
    done = await asyncio.gather(one.give_out(), two.give_out())
    assert sum(done) == 20
    told: list[Any] = await rows(
        db, select(Outbox.conversation_id).where(Outbox.kind == "assigned")
    )
    assert len(told) == 20 and len({t.conversation_id for t in told}) == 20
