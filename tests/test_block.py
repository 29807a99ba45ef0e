"""Issue 15, "A client who floods": ``/block`` and ``/unblock``.

Supervisors and admins block a client in the client's topic or in their private
chat (the client replied to, or the current one). A blocked client's messages
are logged on the client and reach no manager: no conversation, so no mirror,
no notice, no offer nor assignment, no deadline, no auto-reply. Unblocked, the
client is served as before. Both are logged on the client as events and
audited; a manager who tries is refused, and that audited too. The real Desk
and Ingestor on SQLite and PostgreSQL; over the local Bot API server for the
Telegram staff side.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from hub.clients.attachments import AttachmentStore
from hub.desk.desk import Desk
from hub.ingest.ingestor import Ingestor
from hub.jobs.deadlines import Escalator
from hub.jobs.waiting import Assigner
from hub.kernel.clock import FrozenClock
from hub.kernel.identities import identity
from hub.kernel.types import Channel, InboundMessage, IngestResult, ManagerRef
from routing import Rules
from routing.sla import Policy
from storage import Database
from storage.models import Audit, Client, Conversation, Deadline, Interaction, Manager, Outbox
from tests.botapi import BotApiServer, Limits
from tests.botapi.world import User
from tests.test_ingest import REPLIES, T0, rows
from tests.test_roles import _add
from tests.test_telegram_staff import StaffDesk, staff_desk, visible

ANNA = identity("telegram", 4242, "Anna")
BLOCKED = "🚫 Client blocked by Vera: their messages are logged but reach no manager"
UNBLOCKED = "✅ Client unblocked by Vera: their messages reach the managers again"
REFUSED = "Only supervisors and admins can block and unblock clients"


def message(n: int, text: str, **extras: Any) -> InboundMessage:
    return InboundMessage(
        Channel.TELEGRAM, "bot", f"4242:{n}", (ANNA,), T0, text=text, extras=extras
    )


async def count(db: Database, model: Any) -> int:
    [found] = await rows(db, select(func.count()).select_from(model))
    return int(found[0])


async def audited(db: Database) -> list[tuple[str, str, Any]]:
    found = await rows(db, select(Audit.actor, Audit.action, Audit.details).order_by(Audit.id))
    return [(a.actor, a.action, a.details) for a in found]


async def test_a_blocked_client_is_logged_and_reaches_no_manager(
    db: Database, tmp_path: Path
) -> None:
    clock = FrozenClock(T0)
    files = AttachmentStore(tmp_path / "files", 10**6)
    desk = Desk(db, clock, files, language="en", timezone="UTC")
    ingest = Ingestor(
        db,
        clock,
        files,
        staff_channel="telegram",
        auto_replies=REPLIES,  # closed at T0: a new request is answered out of hours
        policies=(Policy("std", first_response=timedelta(hours=1)),),
        flood_per_minute=10,
        language="en",
    )
    maria = await _add(db, "Maria", 1, "manager", None)
    vera = await _add(db, "Vera", 2, "supervisor", None)
    async with db.write() as conn:
        await conn.execute(update(Manager).where(Manager.id == maria.id).values(away=False))
    await ingest.start()
    try:
        start = await ingest(message(1, "/start", command="start", service=True))
        anna = start.client_id
        await blocks(desk, anna, maria, vera)
        before = await count(db, Outbox)
        spam = await ingest(message(2, "spam"))
        again = await ingest(message(3, "/start", command="start", service=True))
        assert (spam.client_id, spam.conversation_id, again.conversation_id) == (anna, None, None)
        # Logged in full, and nothing else: no request, no deadline, no staff row,
        # no auto-reply.
        assert await count(db, Outbox) == before
        assert (await count(db, Conversation), await count(db, Deadline)) == (0, 0)
        texts = await rows(
            db,
            select(Interaction.text).where(Interaction.direction == "in").order_by(Interaction.id),
        )
        assert [t.text for t in texts] == ["/start", "spam", "/start"]

        await unblocks(desk, anna, maria, vera)
        back = await ingest(message(4, "back"))
    finally:
        await ingest.stop()
    assert back.conversation_id is not None
    served = await rows(
        db, select(Outbox.kind, Outbox.text).where(Outbox.id > before).order_by(Outbox.id)
    )
    assert sorted(tuple(s) for s in served) == [
        ("assigned", "back"),
        ("auto_reply", "Мы закрыты"),
        ("mirror", "back"),
    ]
    assert await count(db, Deadline) == 1
    events = await rows(
        db,
        select(Interaction.text, Interaction.author)
        .where(Interaction.direction == "event", Interaction.client_id == anna)
        .order_by(Interaction.id),
    )
    blocked, unblocked = events[:2]
    assert blocked.text.startswith(BLOCKED) and unblocked.text == UNBLOCKED
    assert (blocked.author, unblocked.author) == ("Vera", "Vera")
    assert await audited(db) == [
        ("telegram:1", "refused", {"what": "block"}),
        ("telegram:2", "block", None),
        ("telegram:1", "refused", {"what": "unblock"}),
        ("telegram:2", "unblock", None),
    ]


async def blocks(desk: Desk, anna: int, maria: ManagerRef, vera: ManagerRef) -> None:
    """Maria may not block Anna; Vera, a supervisor, may (once); the card says so."""
    assert await desk.act(anna, maria, "block") == REFUSED
    assert (await card(desk, anna)).blocked is None
    assert (await desk.act(anna, vera, "block")).startswith(BLOCKED)
    assert await desk.act(anna, vera, "block") == "The client is already blocked"
    blocked = (await card(desk, anna)).blocked
    assert blocked is not None and (blocked.at, blocked.by) == (T0, "Vera")


async def unblocks(desk: Desk, anna: int, maria: ManagerRef, vera: ManagerRef) -> None:
    assert await desk.act(anna, maria, "unblock") == REFUSED
    assert (await desk.act(anna, vera, "unblock")) == UNBLOCKED
    assert await desk.act(anna, vera, "unblock") == "The client is not blocked"
    assert (await card(desk, anna)).blocked is None


async def card(desk: Desk, client_id: int) -> Any:
    found = await desk.card(client_id)
    assert found is not None
    return found


async def test_block_in_the_topic_and_unblock_in_private_over_telegram(
    db: Database, tmp_path: Path
) -> None:
    async with (
        BotApiServer(limits=Limits.off()) as server,
        staff_desk(db, tmp_path, server) as hub,
    ):
        maria = await hub.manager("Maria", away=False)
        vera = await supervisor(hub, "Vera")
        anna = await hub.writes(ANNA, "hi")
        await hub.flush()
        thread = hub.thread("Anna")

        await hub.says(maria, thread, "/block")
        assert visible(hub.in_topic(thread)[-1]) == REFUSED
        await hub.says(vera, thread, "/block")
        assert visible(hub.in_topic(thread)[-1]).startswith(BLOCKED)
        await hub.says(vera, thread, "/card")
        assert "🚫 Blocked 05.01 10:00 · Vera" in visible(hub.in_topic(thread)[-1])

        shown, told = len(hub.in_topic(thread)), len(server.sent_to(maria.id))
        spam = await hub.writes(ANNA, "spam")
        assert spam.conversation_id is None
        assert await hub.pending() == []
        await hub.flush()
        assert (len(hub.in_topic(thread)), len(server.sent_to(maria.id))) == (shown, told)

        # In private, for the current client: Maria is refused, Vera unblocks.
        for user in (maria, vera):
            await private(hub, user, "/start")
            await private(hub, user, f"/c {anna.client_id}")
            await private(hub, user, "/unblock")
        assert visible(server.sent_to(maria.id)[-1]) == REFUSED
        assert visible(server.sent_to(vera.id)[-1]) == UNBLOCKED

        back: IngestResult = await hub.writes(ANNA, "back")
        assert back.conversation_id == anna.conversation_id
        await hub.flush()
        assert visible(hub.in_topic(thread)[-1]) == "💬 telegram\nback"
        assert "back" in visible(server.sent_to(maria.id)[-1])
    [client] = await rows(db, select(Client.blocked_at, Client.blocked_by))
    assert (client.blocked_at, client.blocked_by) == (None, None)
    actions = [(actor, action) for actor, action, _ in await audited(db)]
    assert [a for a in actions if a[1] in ("refused", "block", "unblock")] == [
        (f"telegram:{maria.id}", "refused"),
        (f"telegram:{vera.id}", "block"),
        (f"telegram:{maria.id}", "refused"),
        (f"telegram:{vera.id}", "unblock"),
    ]


async def supervisor(hub: StaffDesk, name: str) -> User:
    user = await hub.manager(name)
    async with hub.db.write() as conn:
        await conn.execute(
            update(Manager).where(Manager.telegram_id == user.id).values(role="supervisor")
        )
    return user


async def private(hub: StaffDesk, user: User, text: str) -> None:
    await hub.server.user_sends(user, text)
    await hub.feed()


async def test_a_blocked_clients_open_request_is_not_given_out_and_keeps_no_deadline(
    db: Database, tmp_path: Path
) -> None:
    """A request opened before the block: the waiting round does not give it out
    and its deadline is closed, not escalated; unblocked, it waits again."""
    clock = FrozenClock(T0)
    files = AttachmentStore(tmp_path / "files", 10**6)
    desk = Desk(db, clock, files, language="en", timezone="UTC")
    policy = Policy("std", first_response=timedelta(hours=1))
    ingest = Ingestor(db, clock, files, staff_channel="telegram", policies=(policy,))
    maria = await _add(db, "Maria", 1, "manager", None)
    vera = await _add(db, "Vera", 2, "supervisor", None)
    await ingest.start()
    try:  # Maria is away: the request waits for somebody
        opened = await ingest(message(1, "hello"))
    finally:
        await ingest.stop()
    assert opened.conversation_id is not None
    assert (await desk.act(opened.client_id, vera, "block")).startswith(BLOCKED)
    async with db.write() as conn:
        await conn.execute(update(Manager).where(Manager.id == maria.id).values(away=False))
    assigner = Assigner(db, clock, Rules(), staff_channel="telegram")
    escalator = Escalator(db, clock, (policy,), assigner, staff_channel="telegram")
    before = await count(db, Outbox)
    assert await assigner.give_out() == 0
    clock.advance(timedelta(hours=2))
    await escalator.run()
    [deadline] = await rows(db, select(Deadline.status))
    assert deadline.status != "open"
    assert await count(db, Outbox) == before
    [conversation] = await rows(db, select(Conversation.assignee_id))
    assert conversation.assignee_id is None

    assert await desk.act(opened.client_id, vera, "unblock") == UNBLOCKED
    assert await assigner.give_out() == 1
