"""The client card, the managers' card and the timeline keep their shape and content
now that each is read in one unit of work (issue 19): a client with identities,
open and resolved conversations, tags, custom fields, reminders and a deadline;
on SQLite the read is one hop to a reader thread."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.engine import Engine

from hub.clients.attachments import AttachmentStore
from hub.desk.desk import Desk
from hub.kernel.clock import FrozenClock
from hub.kernel.types import Blocked, ClientCard, Contact
from storage import Database
from storage import read as q
from storage.read import ClientRecord, ConversationView, IdentityView, InteractionView, ReminderView
from storage.tables import clients, conversations, identities, interactions, managers, reminders

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


async def _client(db: Database) -> None:
    """Client 7, Анна, owned by Olga, blocked by Pavel, with everything a card shows."""
    async with db.write() as conn:
        await conn.execute(
            insert(managers),
            [
                {"id": 1, "name": "Olga", "telegram_id": 101, "role": "manager", "created_at": T0},
                {"id": 2, "name": "Pavel", "telegram_id": 102, "role": "admin", "created_at": T0},
            ],
        )
        await conn.execute(
            insert(clients).values(
                id=7,
                name="Анна Петрова",
                stage="repeat_buyer",
                owner_id=1,
                language="ru",
                source="webform",
                tags=["vip", "опт"],
                custom={"city": "Казань", "orders": 3},
                created_at=T0,
                updated_at=T0,
                blocked_at=T0 + timedelta(days=3),
                blocked_by=2,
            )
        )
        await conn.execute(insert(clients).values(id=8, name="Other", created_at=T0, updated_at=T0))
        await conn.execute(
            insert(identities),
            [
                {"client_id": 7, "kind": "telegram", "value": "5001", "created_at": T0},
                {"client_id": 7, "kind": "email", "value": "anna@example.org", "created_at": T0},
                {"client_id": 7, "kind": "phone", "value": "+79161234567", "created_at": T0},
                {"client_id": 8, "kind": "telegram", "value": "5002", "created_at": T0},
            ],
        )
        conv = {"client_id": 7, "account": "main", "created_at": T0}
        for row in (
            {"id": 1, "channel": "email", "status": "resolved", "updated_at": T0},
            {
                "id": 2,
                "channel": "telegram",
                "status": "open",
                "assignee_id": 1,
                "subject": "Заказ",
                "due_at": T0 + timedelta(hours=2),
                "first_response_at": T0 + timedelta(minutes=5),
                "updated_at": T0 + timedelta(hours=1),
            },
            {
                "id": 3,
                "channel": "email",
                "status": "waiting",
                "assignee_id": 2,
                "updated_at": T0 + timedelta(minutes=30),
            },
        ):
            await conn.execute(insert(conversations).values(**conv, **row))
        said = [
            ("in", "telegram", 2, "Где мой заказ?", None, None),
            ("out", "telegram", 2, "Уже едет", "Olga", "sent"),
            ("note", None, 2, "позвонить завтра", "Olga", None),
            ("event", None, 2, "assigned to Olga", None, None),
            ("in", "email", 3, "Invoice please", None, None),
            ("out", "email", 3, "Attached", "Pavel", "failed"),
            ("in", "telegram", 2, "Спасибо", None, None),
        ]
        rows = [
            {
                "id": n + 1,
                "client_id": 7,
                "direction": d,
                "channel": ch,
                "conversation_id": c,
                "text": t,
                "author": who,
                "delivery": dl,
                "at": T0 + timedelta(minutes=10 * n),
            }
            for n, (d, ch, c, t, who, dl) in enumerate(said)
        ]
        rows[5]["at"] = rows[4]["at"]  # the same moment: the order of writing decides
        await conn.execute(insert(interactions), rows)
        due = [
            (1, T0 + timedelta(days=2), "later", "pending"),
            (None, T0 + timedelta(days=1), "sooner", "pending"),
            (1, T0, "done", "fired"),
        ]
        await conn.execute(
            insert(reminders),
            [
                {"client_id": 7, "created_at": T0, "kind": "manual", "manager_id": m}
                | {"due_at": at, "text": t, "status": st}
                for m, at, t, st in due
            ],
        )


def _record() -> ClientRecord:
    return ClientRecord(
        id=7,
        name="Анна Петрова",
        stage="repeat_buyer",
        owner="Olga",
        identities=(
            IdentityView("telegram", "5001"),
            IdentityView("email", "anna@example.org"),
            IdentityView("phone", "+79161234567"),
        ),
        tags=("vip", "опт"),
        language="ru",
        source="webform",
        created_at=T0,
        open_conversations=(
            ConversationView(
                2,
                7,
                "telegram",
                "open",
                "Olga",
                "Заказ",
                T0,
                T0 + timedelta(minutes=5),
                T0 + timedelta(hours=2),
            ),
            ConversationView(3, 7, "email", "waiting", "Pavel", None, T0, None, None),
        ),
        custom={"city": "Казань", "orders": 3},
        reminders=(
            ReminderView(2, T0 + timedelta(days=1), "sooner", None),
            ReminderView(1, T0 + timedelta(days=2), "later", "Olga"),
        ),
        merged_into=None,
    )


def _timeline() -> list[InteractionView]:
    at = [T0 + timedelta(minutes=10 * n) for n in range(7)]
    at[5] = at[4]
    return [
        InteractionView(1, at[0], "in", "telegram", None, "Где мой заказ?", 2, None),
        InteractionView(2, at[1], "out", "telegram", "Olga", "Уже едет", 2, "sent"),
        InteractionView(3, at[2], "note", None, "Olga", "позвонить завтра", 2, None),
        InteractionView(4, at[3], "event", None, None, "assigned to Olga", 2, None),
        InteractionView(5, at[4], "in", "email", None, "Invoice please", 3, None),
        InteractionView(6, at[5], "out", "email", "Pavel", "Attached", 3, "failed"),
        InteractionView(7, at[6], "in", "telegram", None, "Спасибо", 2, None),
    ]


async def test_the_client_card_and_timeline_keep_their_shape(db: Database) -> None:
    await _client(db)
    async with db.read() as conn:
        assert await q.client_card(conn, 7) == _record()
        assert await q.client_card(conn, 99) is None
        assert await q.timeline(conn, 7) == _timeline()
        assert await q.timeline(conn, 7, last=3) == _timeline()[-3:]
        assert await q.timeline(conn, 99) == []
    assert await db.run_read(lambda conn: q.read_card(conn, 7)) == _record()
    assert await db.run_read(lambda conn: q.read_timeline_of(conn, 7, 2)) == _timeline()[-2:]
    assert await db.run_read(lambda conn: q.read_timeline_of(conn, 99, 2)) is None
    assert await db.run_read(lambda conn: q.read_timeline_of(conn, 8, None)) == []


async def test_the_managers_card_keeps_its_shape(db: Database, tmp_path: Path) -> None:
    await _client(db)
    desk = Desk(db, FrozenClock(), AttachmentStore(tmp_path / "files", 10**6))
    at = [T0 + timedelta(minutes=10 * n) for n in range(7)]
    assert await desk.card(7) == ClientCard(
        id=7,
        name="Анна Петрова",
        stage="repeat_buyer",
        owner="Olga",
        identities=(
            ("telegram", "5001"),
            ("email", "anna@example.org"),
            ("phone", "+79161234567"),
        ),
        open_requests=2,
        assignee="Olga",  # of the most recently active open conversation
        language="ru",
        source="webform",
        tags=("vip", "опт"),
        last_contacts=(  # the last five said (in and out: no note, no event), oldest first
            Contact(at[0], "in", "telegram", "Где мой заказ?"),
            Contact(at[1], "out", "telegram", "Уже едет"),
            Contact(at[4], "in", "email", "Invoice please"),
            Contact(at[4], "out", "email", "Attached"),
            Contact(at[6], "in", "telegram", "Спасибо"),
        ),
        due=T0 + timedelta(hours=2),
        custom=(("city", "Казань"), ("orders", "3")),
        reminders=((T0 + timedelta(days=1), "sooner"), (T0 + timedelta(days=2), "later")),
        blocked=Blocked(T0 + timedelta(days=3), "Pavel"),
    )
    other = await desk.card(8)
    assert other is not None
    assert (other.open_requests, other.assignee, other.due, other.blocked) == (0, None, None, None)
    assert other.last_contacts == () and other.reminders == () and other.custom == ()
    assert await desk.card(99) is None


async def test_a_card_is_one_hop_to_a_reader_thread_on_sqlite(db: Database) -> None:
    """The card's one statement and the timeline's run on one thread that is not the
    event loop's (SQLite), inside one transaction."""
    await _client(db)
    seen: list[tuple[int, str]] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        seen.append((threading.get_ident(), statement.split()[0].upper()))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        card, last = await db.run_read(
            lambda conn: (q.read_card(conn, 7), q.read_timeline(conn, 7, 50))
        )
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert card == _record() and last == _timeline()
    statements = [s for _, s in seen]
    if db.is_sqlite:
        assert statements == ["BEGIN", "SELECT", "SELECT"]
        threads = {t for t, _ in seen}
        assert len(threads) == 1 and threads != {threading.get_ident()}
    else:  # asyncpg opens the transaction itself: two round trips and its own two
        assert statements == ["SELECT", "SELECT"]
