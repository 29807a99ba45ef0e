"""Issue 15, "Never exceed a limit": the staff side plans within one budget per chat
that counts every post, oldest work first, so that a burst of clients' messages is
mirrored without a single 429, and a restart mid-burst is no burst: the second
instance's budgets start from what the database says went out in the last minute.
The clients' side keeps a chat's pace between the parts of a long message.

The Bot API server enforces Telegram's limits ten times faster (one post in 0.1 s
per chat, 20 in 6 s per group) and the staff side paces to match, so that what
takes Telegram minutes takes the tests seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiogram.methods import EditMessageText
from sqlalchemy import func, select

from channels.telegram import TelegramChannel
from channels.telegram.outbound import ClientSender
from channels.telegram.staff import Pacer, StaffSide
from hub.config import DispatcherSection, TelegramSection
from hub.delivery.dispatcher import Dispatcher
from hub.kernel.clock import SystemClock
from hub.kernel.identities import identity
from hub.kernel.ports import RecentSend, RecentSends, RecentTopic
from hub.kernel.types import Identity, OutboundMessage
from storage import Database
from storage.models import Outbox
from tests.botapi import BotApiServer, Limits, Rate
from tests.test_telegram_staff import (
    StaffChannel,
    StaffDesk,
    eventually,
    make_bot,
    rows,
    staff_desk,
    topic_texts,
)

FAST = Limits(
    per_chat=Rate(1, 0.1), per_group=Rate(20, 6.0), per_bot=Rate(30, 0.1), tolerance=0.005
)
MAX_WAIT = 0.25
# A claimed row of a dead instance is taken over after a short lease.
RETRYING = DispatcherSection(
    max_attempts=50, backoff_base_s=0.05, backoff_max_s=0.5, idle_poll_s=0.05, lease_s=3
)


def fast_pacer() -> Pacer:
    return Pacer(gap=0.105, group=(20, 6.05), bot=(30, 0.105), hold_grace=1.0)


class BudgetedStaffChannel(StaffChannel):
    """The channel as the dispatcher sees it, told at start what went out lately."""

    def spent(self, recent: RecentSends) -> None:
        self.staff.spent(recent)


@contextlib.asynccontextmanager
async def dispatching(hub: StaffDesk) -> AsyncIterator[Dispatcher]:
    channel = BudgetedStaffChannel(hub.staff, hub.bot)
    dispatcher = Dispatcher(
        hub.db, hub.clock, {"telegram": channel}, RETRYING, staff_channel="telegram"
    )
    await dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()


async def crash(dispatcher: Dispatcher) -> None:
    """The instance dies: nothing more is claimed, sends under way are cut short and
    not recorded (their rows stay claimed until the lease runs out)."""
    tasks = [t for t in (dispatcher._task, *dispatcher._inflight) if t is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    dispatcher._task = None
    dispatcher._inflight.clear()


def clients(count: int) -> list[Identity]:
    return [identity("telegram", 5000 + n, f"Client{n:02d}") for n in range(count)]


async def all_mirrored(db: Database, count: int) -> bool:
    [found] = await rows(
        db,
        select(func.count())
        .select_from(Outbox)
        .where(Outbox.kind == "mirror", Outbox.status == "sent"),
    )
    return int(found[0]) == count


def mirrored_in_order(hub: StaffDesk, said: dict[str, list[str]]) -> None:
    """Each client's topic shows the card, then every message of theirs, in order."""
    topics = {t.name.split(" ")[0]: t for t in hub.server.topics()}
    assert sorted(topics) == sorted(said)
    for name, texts in said.items():
        card, *mirrors = topic_texts(hub.in_topic(topics[name].message_thread_id))
        assert card.startswith(f"👤 {name}")
        shown = "\n".join(mirrors)
        where = [shown.index(text) for text in texts]
        assert where == sorted(where), name


async def burst(hub: StaffDesk, who: list[Identity], messages: int) -> dict[str, list[str]]:
    said: dict[str, list[str]] = {}
    for n in range(messages):
        client = who[n % len(who)]
        text = f"q{n:03d}q"
        await hub.writes(client, text)
        said.setdefault(client.display_name or "", []).append(text)
    return said


async def test_a_burst_of_30_clients_and_120_messages_gets_no_429(
    db: Database, tmp_path: Path
) -> None:
    async with (
        BotApiServer(limits=FAST) as server,
        staff_desk(
            db, tmp_path, server, clock=SystemClock(), pacer=fast_pacer(), max_wait=MAX_WAIT
        ) as hub,
    ):
        managers = [await hub.manager(name, away=False) for name in ("Maria", "Olga")]
        for manager in managers:
            await server.start_bot(manager)
        said = await burst(hub, clients(30), 120)
        async with dispatching(hub):
            await eventually(lambda: all_mirrored(db, 120), timeout=120)
        assert server.throttled == []
        mirrored_in_order(hub, said)
        # Each manager was told in private of the requests routed to them.
        assert all(server.sent_to(m.id) for m in managers)


async def test_a_restart_mid_burst_is_no_burst(db: Database, tmp_path: Path) -> None:
    """The second instance's budgets come from the database. (An unseeded control
    run was answered 429 only when the restart beat the group's window, so it is
    left out; test_the_staff_side_counts_what_the_database_says_went_out shows
    the seeding itself.)"""
    async with BotApiServer(limits=FAST) as server:

        def group_posts() -> int:  # the topics' creation and the messages in them
            return len(server.topics()) + len(server.sent_to(server.forum))

        async with staff_desk(
            db, tmp_path, server, clock=SystemClock(), pacer=fast_pacer(), max_wait=MAX_WAIT
        ) as first:
            said = await burst(first, clients(12), 48)
            async with dispatching(first) as dispatcher:
                # The group's budget is spent, then the instance dies mid-send.
                await server.wait_for(lambda: group_posts() >= 18, timeout=30)
                await crash(dispatcher)
        assert server.throttled == []
        async with (
            staff_desk(
                db, tmp_path, server, clock=SystemClock(), pacer=fast_pacer(), max_wait=MAX_WAIT
            ) as second,
            dispatching(second),
        ):
            await eventually(lambda: all_mirrored(db, 48), timeout=120)
        assert server.throttled == []
        assert {t.name.split(" ")[0] for t in server.topics()} == set(said)


def test_the_staff_side_counts_what_the_database_says_went_out() -> None:
    now = [100.0]
    pacer = Pacer(gap=1.0, group=(20, 60.0), monotonic=lambda: now[0])
    group, other, maria = -1001, -1002, 42
    staff = StaffSide(
        desk=None,  # type: ignore[arg-type]  # only the budgets are asked for
        config=TelegramSection(staff_chat_id=group, extra_staff_chat_ids=[other]),
        pacer=pacer,
    )

    def send(
        kind: str, recipient: str, external_id: str | None, age: float, **more: int
    ) -> RecentSend:
        return RecentSend(
            kind=kind,
            recipient=recipient,
            external_id=external_id,
            topic_chat=more.get("topic_chat"),
            length=more.get("length", 20),
            files=more.get("files", 0),
            age=age,
        )

    channel = TelegramChannel(TelegramSection(), staff=staff, max_attachment_bytes=1000)
    channel.spent(
        RecentSends(
            (
                send("mirror", "staff", f"{group}:10", 30.0),
                send("mirror", "staff", f"{group}:10", 29.0),  # carried by the same post
                send("mirror", "staff", f"{group}:12", 20.0, length=5000, files=2),  # 4
                send("assigned", str(maria), f"{maria}:3", 0.5),
                send("mirror", "staff", None, 0.0, topic_chat=group),  # claimed, not recorded
                send("mirror", "staff", None, 0.0),  # no topic yet: in either staff chat
                send("reply", "4242", "7:4242:5", 1.0),  # a client's chat: not the staff's
            ),
            (RecentTopic(group, 40.0),),  # its creation and the card
        )
    )
    # 1 + 4 + 1 + 1 + 2 = 9 posts in the group's minute: 11 more fit (a second after
    # the one claimed), not 12.
    assert pacer.estimate(group, 11) == 1.0
    assert pacer.estimate(group, 12) > 1.0
    assert pacer.estimate(other, 19) == 1.0  # the one it may have gone to
    assert pacer.estimate(other, 20) > 1.0
    assert pacer.estimate(maria) == 0.5  # a second after her notice
    now[0] += 30.0  # the oldest posts leave the window
    assert pacer.estimate(group, 12) == 0.0


async def test_an_edit_spends_the_chat_budget_like_a_post(db: Database, tmp_path: Path) -> None:
    async with (
        BotApiServer(limits=FAST) as server,
        staff_desk(
            db, tmp_path, server, clock=SystemClock(), pacer=fast_pacer(), max_wait=MAX_WAIT
        ) as hub,
    ):
        await hub.writes(identity("telegram", 4242, "Anna"), "hello")
        [mirror] = await hub.pending()
        await hub.staff.send(hub.bot, mirror)
        card = hub.in_topic(hub.thread("Anna"))[0]
        # A card refreshed by a button (an edit, outside any turn) waits its turn too.
        pacer = hub.staff.pacer
        before = pacer.estimate(hub.forum.id)
        calls = hub.staff.mirrors.topics.calls
        await calls.request(
            hub.bot,
            EditMessageText(chat_id=hub.forum.id, message_id=card["message_id"], text="card"),
        )
        assert pacer.estimate(hub.forum.id) > before
        assert server.throttled == []


def test_deferred_work_keeps_its_place_in_the_line() -> None:
    now = [100.0]
    pacer = Pacer(gap=1.0, group=(3, 10.0), monotonic=lambda: now[0])
    for _ in range(3):
        pacer.sent(-5)
    # The window is full until 110; work 7 was deferred till then, for two posts.
    assert pacer.estimate(-5, 2, work=7) == pytest.approx(10.0)
    pacer.hold(-5, 7, 2, 10.0)
    assert pacer.estimate(-5, 1, work=9) == pytest.approx(12.0)  # newer: after work 7
    assert pacer.estimate(-5, 1, work=3) == pytest.approx(10.0)  # older: before it
    assert pacer.estimate(-5, 1) == pytest.approx(10.0)  # a person waiting goes first
    assert pacer.estimate(-5, 2, work=7) == pytest.approx(10.0)  # its own place
    pacer.release(-5, 7)
    assert pacer.estimate(-5, 1, work=9) == pytest.approx(10.0)
    pacer.hold(-5, 7, 2, 10.0)
    now[0] += 10.0 + 1.0 + pacer.hold_grace  # it never came back: the line moves on
    assert pacer.estimate(-5, 1, work=9) == 0.0
    pacer.hold(-5, 7, 2, 10.0)
    pacer.release_anywhere(7)  # carried by other work: its place is free at once
    assert pacer.estimate(-5, 1, work=9) == 0.0


async def test_the_parts_of_a_long_reply_keep_the_chats_pace() -> None:
    async with BotApiServer() as server:  # Telegram's limits
        anna = server.add_user("Anna")
        await server.start_bot(anna)
        bot = make_bot(server)
        try:
            sender = ClientSender(bot)
            for n, text in enumerate(["a" * 4000 + "\n" + "b" * 4000, "c", "d" * 5000]):
                await sender.send(
                    OutboundMessage(n, "telegram", "bot", str(anna.id), "reply", text, f"r{n}")
                )
        finally:
            await bot.session.close()
        assert [len(m["text"]) for m in server.sent_to(anna)] == [4000, 4000, 1, 4096, 904]
        assert server.throttled == []
