"""Response deadlines: working-time arithmetic, policy choice, and the escalation
chain end to end through the real ingest (clock moved, never slept)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from hub.clients.attachments import AttachmentStore
from hub.desk.desk import Desk
from hub.desk.replies import reply
from hub.ingest.ingestor import Ingestor
from hub.jobs.deadlines import Escalator
from hub.jobs.waiting import Assigner
from hub.kernel.clock import FrozenClock
from hub.kernel.types import Channel, ManagerRef
from routing import Rule, Rules
from routing.hours import parse_hours
from routing.sla import Policy, add_working, choose, timing
from storage import Database
from storage.models import Conversation, Deadline, Interaction, Manager, Outbox
from tests.test_ingest import ANNA_TG, add_manager, message, rows, scalar

OFFICE = parse_hours("Mon-Fri 09:00-18:00")
MSK = "Europe/Moscow"


def msk(day: int, hour: int, minute: int = 0) -> datetime:
    """January 2026 in Moscow (UTC+3); the 5th is a Monday."""
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC) - timedelta(hours=3)


# --- working time ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "minutes", "expected"),
    [
        (msk(5, 10), 60, msk(5, 11)),  # inside a working day
        (msk(5, 17, 30), 60, msk(6, 9, 30)),  # over the night
        (msk(9, 17, 30), 60, msk(12, 9, 30)),  # Friday evening: over the weekend
        (msk(10, 3), 30, msk(12, 9, 30)),  # started on a Saturday night
        (msk(5, 7), 15, msk(5, 9, 15)),  # before the day begins
        (msk(5, 10), 18 * 60, msk(7, 10)),  # 8 h on Monday, 9 on Tuesday, 1 on Wednesday
    ],
)
def test_working_time_skips_nights_and_weekends(
    start: datetime, minutes: int, expected: datetime
) -> None:
    assert add_working(start, timedelta(minutes=minutes), OFFICE, MSK) == expected


def test_holidays_are_not_working_time() -> None:
    holidays = frozenset({date(2026, 1, 6)})
    assert add_working(msk(5, 17, 30), timedelta(hours=1), OFFICE, MSK, holidays) == msk(7, 9, 30)


def test_a_span_past_midnight_counts_across_it() -> None:
    night = parse_hours("Mon-Sun 22:00-06:00")
    assert add_working(msk(5, 23), timedelta(hours=2), night, MSK) == msk(6, 1)
    assert add_working(msk(5, 5), timedelta(hours=2), night, MSK) == msk(5, 23)


def test_calendar_time_counts_every_minute() -> None:
    policy = Policy("p", first_response=timedelta(hours=1))
    steps = timing(policy, "first_response", msk(9, 17, 30))
    assert steps is not None and steps.due_at == msk(9, 18, 30)


def test_every_step_of_a_working_time_deadline_is_in_working_hours() -> None:
    policy = Policy(
        "p",
        first_response=timedelta(hours=1),
        hours=OFFICE,
        timezone=MSK,
        reassign_after=timedelta(minutes=30),
    )
    steps = timing(policy, "first_response", msk(9, 17, 50))  # Friday 17:50
    assert steps is not None
    assert steps.remind_at == msk(12, 9, 38)  # 48 of the 60 minutes: 10 on Friday, 38 Monday
    assert steps.due_at == msk(12, 9, 50)
    assert steps.reassign_at == msk(12, 10, 20)


def test_the_named_policy_else_the_first_that_fits() -> None:
    vip = Policy("vip", priorities=frozenset({"high"}))
    mail = Policy("mail", channels=frozenset({"email"}))
    anything = Policy("any")
    policies = (vip, mail, anything)
    assert choose(policies, None, "high", "telegram") is vip
    assert choose(policies, None, "normal", "email") is mail
    assert choose(policies, None, "normal", "telegram") is anything
    assert choose(policies, "mail", "high", "telegram") is mail


# --- the escalation chain ------------------------------------------------------------------


POLICY = Policy(
    "standard",
    first_response=timedelta(hours=1),
    next_response=timedelta(hours=2),
    resolution=timedelta(hours=8),
    hours=OFFICE,
    timezone=MSK,
    reassign_after=timedelta(minutes=30),
)


async def _setup(
    db: Database, tmp_path: Path, clock: FrozenClock
) -> tuple[Ingestor, Escalator, dict[str, int]]:
    ids = {
        "Anna": await add_manager(db, "Anna", 1001),
        "Boris": await add_manager(db, "Boris", 1002),
        "Vera": await add_manager(db, "Vera", 1003),
    }
    async with db.write() as conn:
        await conn.execute(
            update(Manager).where(Manager.id == ids["Vera"]).values(role="supervisor")
        )
    ingestor = Ingestor(
        db,
        clock,
        AttachmentStore(tmp_path / "files", 10**6),
        staff_channel="telegram",
        rules=Rules((Rule("to Anna", pool=(ids["Anna"],)),)),
        policies=(POLICY,),
        timezone=MSK,
    )
    assigner = Assigner(db, clock, Rules(), staff_channel="telegram", timezone=MSK)
    escalator = Escalator(
        db, clock, (POLICY,), assigner, staff_channel="telegram", language="en", timezone=MSK
    )
    return ingestor, escalator, ids


async def _events(db: Database) -> list[str]:
    found = await rows(
        db,
        select(Interaction.text).where(Interaction.direction == "event").order_by(Interaction.id),
    )
    return [r.text for r in found if not r.text.startswith("routed:")]


async def test_an_unanswered_request_walks_the_chain_and_is_reassigned(
    db: Database, tmp_path: Path
) -> None:
    clock = FrozenClock(msk(9, 17, 50))  # Friday 17:50
    ingestor, escalator, ids = await _setup(db, tmp_path, clock)
    await ingestor.start()
    try:
        result = await ingestor(message(Channel.TELEGRAM, "t1", ANNA_TG, text="Где заказ?"))
    finally:
        await ingestor.stop()
    assert await scalar(db, select(Conversation.assignee_id)) == ids["Anna"]
    assert await scalar(db, select(Conversation.due_at)) == msk(12, 9, 50)

    for moment in (msk(9, 23), msk(10, 12), msk(11, 3), msk(12, 9, 37)):  # night and weekend
        clock.set(moment)
        assert await escalator.run() == 0, moment
    clock.set(msk(12, 9, 38))
    assert await escalator.run() == 1  # reminded
    clock.set(msk(12, 9, 50))
    assert await escalator.run() == 1  # missed
    clock.set(msk(12, 10, 19))
    assert await escalator.run() == 0
    clock.set(msk(12, 10, 20))
    assert await escalator.run() == 1  # reassigned
    clock.set(msk(14, 12))
    assert await escalator.run() == 1  # the resolution deadline (8 working hours) nears

    assert await _events(db) == [
        "⏰ Deadline near: first response by 12.01 09:50",
        "❗ Deadline missed: first response (due 12.01 09:50, policy “standard”)",
        "↪️ Reassigned to Boris (deadline missed)",
        "⏰ Deadline near: resolution by 12.01 16:50",
    ]
    assert await scalar(db, select(Conversation.assignee_id)) == ids["Boris"]
    alerts = await rows(
        db,
        select(Outbox.kind, Outbox.recipient)
        .where(Outbox.idempotency_key.like("sla:%"))
        .order_by(Outbox.id),
    )
    assert [tuple(a) for a in alerts][:5] == [
        ("alert", "1001"),  # Anna reminded
        ("alert", "1003"),  # the supervisor told of the miss
        ("alert", "staff"),  # and the client's topic shows it
        ("assigned", "1002"),  # Boris told it is his now
        ("alert", "1002"),  # Boris reminded of the resolution deadline
    ]
    del result


async def test_an_answer_in_time_meets_the_deadline_and_stops_the_chain(
    db: Database, tmp_path: Path
) -> None:
    clock = FrozenClock(msk(5, 10))
    ingestor, escalator, ids = await _setup(db, tmp_path, clock)
    await ingestor.start()
    try:
        result = await ingestor(message(Channel.TELEGRAM, "t1", ANNA_TG, text="Вопрос"))
        clock.set(msk(5, 10, 30))
        assert result.conversation_id is not None
        await reply(db, clock, result.conversation_id, "Ответ", author="Anna")
        clock.set(msk(5, 11, 0))
        # The client writes again: the next response is due in 2 working hours.
        await ingestor(message(Channel.TELEGRAM, "t2", ANNA_TG, text="Спасибо, ещё вопрос"))
    finally:
        await ingestor.stop()
    kinds = await rows(
        db, select(Deadline.kind, Deadline.status, Deadline.due_at).order_by(Deadline.id)
    )
    assert [tuple(k) for k in kinds] == [
        ("first_response", "met", msk(5, 11)),
        ("resolution", "open", msk(5, 18)),
        ("next_response", "open", msk(5, 13)),  # two working hours after the client wrote
    ]
    clock.set(msk(5, 12))
    assert await escalator.run() == 0  # the met deadline sends nothing
    desk = Desk(db, clock, AttachmentStore(tmp_path / "files", 10**6), staff_channel="telegram")
    await desk.act(result.client_id, ManagerRef(ids["Anna"], "Anna", 1001, "manager"), "resolve")
    clock.set(msk(7, 12))
    assert await escalator.run() == 0  # resolved: nothing is due any more
    statuses = await rows(db, select(Deadline.status))
    assert {s.status for s in statuses} == {"met"}
    assert await scalar(db, select(Conversation.due_at)) is None
