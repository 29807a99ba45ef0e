"""The ingest path (hub/ingest/) on SQLite and PostgreSQL: identities, conversations,
threading, redelivery, group commit, routing and the outbox, attachments, stop."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select, update
from sqlalchemy.engine import Engine

from hub.clients.attachments import AttachmentStore, StoredFile
from hub.ingest.ingestor import AutoReplies, Ingestor
from hub.kernel.clock import FrozenClock
from hub.kernel.errors import MessageRejected, StorageUnavailable
from hub.kernel.identities import identity
from hub.kernel.types import Attachment, Channel, InboundMessage
from hub.kernel.types import Identity as Ident
from routing.hours import parse_hours
from routing.sla import Policy
from storage import Database
from storage.models import Attachment as AttachmentRow
from storage.models import Client, Conversation, Identity, Interaction, Manager, Outbox

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)

ANNA = identity("email", "Anna@Example.com", "Анна")
ANNA_TG = identity("telegram", 4242, "Анна")
ANNA_PHONE = identity("phone", "+7 912 345-67-89")
BORIS = identity("email", "boris@example.org", "Boris")
BORIS_TG = identity("telegram", 5151, "Boris")


def message(
    channel: Channel,
    external_id: str,
    *identities: Ident,
    text: str = "hello",
    hints: tuple[str, ...] = (),
    at: datetime = T0,
    attachments: tuple[Attachment, ...] = (),
) -> InboundMessage:
    return InboundMessage(
        channel,
        f"{channel.value}-account",
        external_id,
        identities,
        at,
        text=text,
        thread_hints=hints,
        attachments=attachments,
    )


@asynccontextmanager
async def running(
    db: Database,
    tmp_path: Path,
    *,
    staff: str | None = None,
    max_bytes: int = 10**6,
    store: AttachmentStore | None = None,
    auto_replies: AutoReplies | None = None,
) -> AsyncIterator[Ingestor]:
    files = store or AttachmentStore(tmp_path / "files", max_bytes)
    ingestor = Ingestor(db, FrozenClock(T0), files, staff_channel=staff, auto_replies=auto_replies)
    await ingestor.start()
    try:
        yield ingestor
    finally:
        await ingestor.stop()


async def rows(db: Database, statement: Any) -> list[Any]:
    async with db.read() as conn:
        return list((await conn.execute(statement)).all())


async def scalar(db: Database, statement: Any) -> Any:
    async with db.read() as conn:
        return (await conn.execute(statement)).scalar_one()


async def execute(db: Database, statement: Any) -> None:
    async with db.write() as conn:
        await conn.execute(statement)


async def add_manager(db: Database, name: str, telegram_id: int) -> int:
    async with db.write() as conn:
        result = await conn.execute(
            insert(Manager)
            .values(name=name, telegram_id=telegram_id, created_at=T0)
            .returning(Manager.id)
        )
        return int(result.scalar_one())


async def resolve(db: Database, conversation_id: int) -> None:
    await execute(
        db,
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(status="resolved", resolved_at=T0),
    )


async def identities_of(db: Database, client_id: int) -> set[tuple[str, str]]:
    found = await rows(
        db, select(Identity.kind, Identity.value).where(Identity.client_id == client_id)
    )
    return {(kind, value) for kind, value in found}


async def in_count(db: Database) -> int:
    return int(
        await scalar(
            db, select(func.count()).select_from(Interaction).where(Interaction.direction == "in")
        )
    )


# Identities


async def test_same_email_over_email_and_webform_is_one_client(
    db: Database, tmp_path: Path
) -> None:
    async with running(db, tmp_path) as ingest:
        by_mail = await ingest(message(Channel.EMAIL, "<1@example.com>", ANNA))
        by_form = await ingest(
            message(Channel.WEBFORM, "form-1", identity("email", " anna@EXAMPLE.com "))
        )
    assert by_form.client_id == by_mail.client_id
    assert (by_mail.new_client, by_form.new_client) == (True, False)
    assert by_form.conversation_id != by_mail.conversation_id
    assert await scalar(db, select(func.count()).select_from(Client)) == 1
    assert await identities_of(db, by_mail.client_id) == {("email", "anna@example.com")}


async def test_a_message_proving_two_identities_links_them(db: Database, tmp_path: Path) -> None:
    async with running(db, tmp_path) as ingest:
        first = await ingest(message(Channel.TELEGRAM, "1:1", ANNA_TG, ANNA_PHONE))
        # later the same person fills a form giving only the phone
        by_phone = await ingest(message(Channel.WEBFORM, "form-1", ANNA_PHONE))
    assert first.new_client
    assert await identities_of(db, first.client_id) == {
        ("telegram", "4242"),
        ("phone", "+79123456789"),
    }
    assert by_phone.client_id == first.client_id
    assert not by_phone.new_client


async def test_an_identity_held_by_another_client_is_never_moved(
    db: Database, tmp_path: Path
) -> None:
    async with running(db, tmp_path) as ingest:
        anna = await ingest(message(Channel.TELEGRAM, "1:1", ANNA_TG, ANNA_PHONE))
        boris = await ingest(message(Channel.EMAIL, "<b0@example.org>", BORIS))
        # Boris writes from his mail and claims Anna's phone: a probable duplicate
        # or a typo, for a person to decide; no silent move, no merge.
        claim = await ingest(message(Channel.EMAIL, "<b1@example.org>", BORIS, ANNA_PHONE))
        # Anna, in turn, claims Boris's address from her Telegram
        again = await ingest(message(Channel.TELEGRAM, "1:2", ANNA_TG, BORIS))
    assert boris.client_id != anna.client_id
    assert boris.new_client
    assert claim.client_id == boris.client_id
    assert again.client_id == anna.client_id
    assert await identities_of(db, anna.client_id) == {
        ("telegram", "4242"),
        ("phone", "+79123456789"),
    }
    assert await identities_of(db, boris.client_id) == {("email", "boris@example.org")}
    assert await scalar(db, select(func.count()).select_from(Client)) == 2


async def test_an_identity_proven_earlier_in_the_same_batch_makes_no_orphan_client(
    db: Database, tmp_path: Path
) -> None:
    # Regression: the batch created a client for every unknown sender before the
    # links were made, so a sender proven by an earlier message of the same batch
    # left an empty client behind. Sequential ingest creates exactly one client.
    async with running(db, tmp_path) as ingest:
        before = ingest.batches
        first, second = await asyncio.gather(
            ingest(message(Channel.TELEGRAM, "1:1", ANNA_TG, ANNA_PHONE)),
            ingest(message(Channel.WEBFORM, "form-1", ANNA_PHONE)),
        )
        assert ingest.batches == before + 1  # both in one transaction
    assert second.client_id == first.client_id
    assert await scalar(db, select(func.count()).select_from(Client)) == 1


# Conversations


async def test_flags_and_conversation_reuse_per_channel(db: Database, tmp_path: Path) -> None:
    async with running(db, tmp_path) as ingest:
        first = await ingest(message(Channel.TELEGRAM, "1:1", ANNA_TG, ANNA))
        second = await ingest(message(Channel.TELEGRAM, "1:2", ANNA_TG))
        by_mail = await ingest(message(Channel.EMAIL, "<1@example.com>", ANNA))
        other = await ingest(message(Channel.TELEGRAM, "2:1", BORIS_TG))
    assert (first.new_client, first.new_conversation) == (True, True)
    assert (second.new_client, second.new_conversation) == (False, False)
    assert second.conversation_id == first.conversation_id
    assert (by_mail.client_id, by_mail.new_client, by_mail.new_conversation) == (
        first.client_id,
        False,
        True,
    )
    assert by_mail.conversation_id != first.conversation_id
    assert other.client_id != first.client_id
    assert other.conversation_id not in {first.conversation_id, by_mail.conversation_id}
    convs = await rows(
        db,
        select(Conversation.channel, Conversation.status)
        .where(Conversation.client_id == first.client_id)
        .order_by(Conversation.id),
    )
    assert [tuple(r) for r in convs] == [("telegram", "open"), ("email", "open")]
    linked = await rows(
        db,
        select(Interaction.external_id, Interaction.conversation_id, Interaction.client_id)
        .where(Interaction.direction == "in")
        .order_by(Interaction.id),
    )
    assert [tuple(r) for r in linked] == [
        ("1:1", first.conversation_id, first.client_id),
        ("1:2", first.conversation_id, first.client_id),
        ("<1@example.com>", by_mail.conversation_id, first.client_id),
        ("2:1", other.conversation_id, other.client_id),
    ]


async def test_a_new_message_reopens_a_pending_conversation(db: Database, tmp_path: Path) -> None:
    async with running(db, tmp_path) as ingest:
        first = await ingest(message(Channel.TELEGRAM, "1:1", ANNA_TG, at=T0))
        async with db.write() as conn:
            await conn.execute(
                update(Conversation)
                .where(Conversation.id == first.conversation_id)
                .values(status="pending")
            )
        second = await ingest(message(Channel.TELEGRAM, "1:2", ANNA_TG, at=T0))
    assert second.conversation_id == first.conversation_id
    assert not second.new_conversation
    status = await scalar(
        db, select(Conversation.status).where(Conversation.id == first.conversation_id)
    )
    assert status == "open"


async def test_a_message_after_resolution_opens_a_new_conversation(
    db: Database, tmp_path: Path
) -> None:
    async with running(db, tmp_path) as ingest:
        first = await ingest(message(Channel.EMAIL, "<1@example.com>", ANNA))
        await resolve(db, first.conversation_id)
        second = await ingest(message(Channel.EMAIL, "<2@example.com>", ANNA))
    assert second.new_conversation
    assert second.conversation_id != first.conversation_id


async def test_a_thread_hint_joins_and_reopens_the_earlier_conversation(
    db: Database, tmp_path: Path
) -> None:
    async with running(db, tmp_path) as ingest:
        first = await ingest(message(Channel.EMAIL, "<1@example.com>", ANNA))
        await resolve(db, first.conversation_id)
        # a fresh request meanwhile opens another conversation on the channel
        fresh = await ingest(message(Channel.EMAIL, "<2@example.com>", ANNA))
        reply = await ingest(
            message(
                Channel.EMAIL,
                "<3@example.com>",
                ANNA,
                hints=("<unknown@example.com>", "<1@example.com>"),
            )
        )
    assert fresh.conversation_id != first.conversation_id
    assert reply.conversation_id == first.conversation_id
    assert not reply.new_conversation
    status, resolved_at = (
        await rows(
            db,
            select(Conversation.status, Conversation.resolved_at).where(
                Conversation.id == first.conversation_id
            ),
        )
    )[0]
    assert (status, resolved_at) == ("open", None)


async def test_a_thread_hint_never_joins_another_clients_conversation(
    db: Database, tmp_path: Path
) -> None:
    async with running(db, tmp_path) as ingest:
        anna = await ingest(message(Channel.EMAIL, "<1@example.com>", ANNA))
        await resolve(db, anna.conversation_id)
        boris = await ingest(
            message(Channel.EMAIL, "<b1@example.org>", BORIS, hints=("<1@example.com>",))
        )
        boris_again = await ingest(
            message(Channel.EMAIL, "<b2@example.org>", BORIS, hints=("<1@example.com>",))
        )
    assert boris.client_id != anna.client_id
    assert boris.new_conversation
    assert boris.conversation_id != anna.conversation_id
    # his next message with the same foreign hint joins his own open conversation
    assert boris_again.conversation_id == boris.conversation_id
    owner, status = (
        await rows(
            db,
            select(Conversation.client_id, Conversation.status).where(
                Conversation.id == anna.conversation_id
            ),
        )
    )[0]
    assert (owner, status) == (anna.client_id, "resolved")
    in_annas = await scalar(
        db,
        select(func.count())
        .select_from(Interaction)
        .where(Interaction.conversation_id == anna.conversation_id, Interaction.direction == "in"),
    )
    assert in_annas == 1


# Redelivery


async def test_a_redelivery_is_acknowledged_without_a_second_interaction(
    db: Database, tmp_path: Path
) -> None:
    async with running(db, tmp_path) as ingest:
        first = await ingest(message(Channel.TELEGRAM, "1:1", ANNA_TG, text="hello"))
        again = await ingest(message(Channel.TELEGRAM, "1:1", ANNA_TG, text="edited"))
        # the dedup key is per channel: the same id elsewhere is another message
        elsewhere = await ingest(message(Channel.WEBFORM, "1:1", ANNA))
    assert not first.duplicate
    assert again.duplicate
    assert (again.interaction_id, again.client_id, again.conversation_id) == (
        first.interaction_id,
        first.client_id,
        first.conversation_id,
    )
    assert not elsewhere.duplicate
    assert elsewhere.interaction_id != first.interaction_id
    stored = await rows(
        db,
        select(Interaction.text).where(Interaction.external_id == "1:1").order_by(Interaction.id),
    )
    assert [r.text for r in stored] == ["hello", "hello"]
    assert await in_count(db) == 2


async def test_a_redelivery_within_one_batch_is_stored_once(db: Database, tmp_path: Path) -> None:
    async with running(db, tmp_path) as ingest:
        before = ingest.batches
        results = await asyncio.gather(
            ingest(message(Channel.TELEGRAM, "1:1", ANNA_TG)),
            ingest(message(Channel.TELEGRAM, "1:1", ANNA_TG)),
            ingest(message(Channel.TELEGRAM, "1:2", ANNA_TG)),
        )
        assert ingest.batches == before + 1
    first, twice, other = results
    assert (first.duplicate, twice.duplicate, other.duplicate) == (False, True, False)
    assert twice.interaction_id == first.interaction_id
    assert twice.conversation_id == first.conversation_id == other.conversation_id
    assert await in_count(db) == 2


# Group commit


async def test_concurrent_ingests_are_group_committed_each_exactly_once(
    db: Database, tmp_path: Path
) -> None:
    senders = [identity("telegram", 10_000 + n) for n in range(40)]
    messages = [
        message(Channel.TELEGRAM, f"c:{n}", senders[n % len(senders)], text=f"m{n}")
        for n in range(200)
    ]
    async with running(db, tmp_path) as ingest:
        results = await asyncio.gather(*(ingest(m) for m in messages))
        assert ingest.committed == 200
        assert ingest.batches < 200
    assert not any(r.duplicate for r in results)
    assert len({r.interaction_id for r in results}) == 200
    stored = {
        ext: (iid, text, client, conv)
        for ext, iid, text, client, conv in await rows(
            db,
            select(
                Interaction.external_id,
                Interaction.id,
                Interaction.text,
                Interaction.client_id,
                Interaction.conversation_id,
            ).where(Interaction.direction == "in"),
        )
    }
    assert await in_count(db) == 200
    for n, (m, r) in enumerate(zip(messages, results, strict=True)):
        assert stored[m.external_id] == (r.interaction_id, f"m{n}", r.client_id, r.conversation_id)
    # one client and one conversation per sender, however the batches fell
    assert len({r.client_id for r in results}) == 40
    assert len({r.conversation_id for r in results}) == 40
    assert await scalar(db, select(func.count()).select_from(Conversation)) == 40


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL statements run meanwhile, by any engine."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


async def test_a_batch_costs_the_same_statements_however_many_messages_it_holds(
    db: Database, tmp_path: Path
) -> None:
    """Group commit pays only if a batch costs a few set-based statements: a batch
    of many new clients, threads, routing, deadlines, auto-replies and notices
    runs as many statements as a small one, and so does a batch of their replies."""
    await add_manager(db, "Olga", 1001)
    await add_manager(db, "Petr", 1002)
    ingest = Ingestor(
        db,
        FrozenClock(T0),
        AttachmentStore(tmp_path / "files", 10**6),
        staff_channel="telegram",
        auto_replies=REPLIES,
        policies=(Policy("standard", first_response=timedelta(hours=1)),),
    )

    def round_of(senders: range, again: bool) -> list[InboundMessage]:
        suffix = "again" if again else "first"
        out = []
        for n in senders:
            mail = identity("email", f"c{n}@example.com")
            out += [
                message(Channel.TELEGRAM, f"{n}:{suffix}", identity("telegram", n)),
                message(Channel.EMAIL, f"<{n}.{suffix}@x>", mail, hints=(f"<{n}.first@x>",)),
                dataclasses.replace(
                    message(Channel.WEBFORM, f"{n}-{suffix}", mail),
                    extras={"confirmation": {"to": mail.value, "text": "Got it"}},
                ),
            ]
        return out

    async def cost(messages: list[InboundMessage]) -> list[str]:
        before = ingest.batches
        with statements() as seen:
            await asyncio.gather(*(ingest(m) for m in messages))
        assert ingest.batches == before + 1
        return seen

    await ingest.start()
    try:
        small = [await cost(round_of(range(1, 3), again)) for again in (False, True)]
        large = [await cost(round_of(range(100, 110), again)) for again in (False, True)]
    finally:
        await ingest.stop()
    assert [len(s) for s in large] == [len(s) for s in small], (small, large)
    assert await scalar(db, select(func.count()).select_from(Outbox)) > 0


# Routing and the outbox


async def test_a_new_conversation_is_routed_and_the_manager_told(
    db: Database, tmp_path: Path
) -> None:
    olga = await add_manager(db, "Olga", 1001)
    petr = await add_manager(db, "Petr", 1002)
    async with running(db, tmp_path, staff="telegram") as ingest:
        first = await ingest(message(Channel.TELEGRAM, "1:1", ANNA_TG))
        second = await ingest(message(Channel.TELEGRAM, "1:2", ANNA_TG))
        boris = await ingest(message(Channel.EMAIL, "<b1@example.org>", BORIS))
    assignees = dict(
        await rows(db, select(Conversation.id, Conversation.assignee_id).order_by(Conversation.id))
    )
    # equal loads: the first manager; then the other, less loaded one
    assert assignees == {first.conversation_id: olga, boris.conversation_id: petr}
    owners = dict(await rows(db, select(Client.id, Client.owner_id)))
    assert owners == {first.client_id: olga, boris.client_id: petr}
    events = await rows(
        db,
        select(Interaction.conversation_id, Interaction.text)
        .where(Interaction.direction == "event")
        .order_by(Interaction.id),
    )
    assert [tuple(e) for e in events] == [
        (first.conversation_id, "routed: least loaded: Olga"),
        (boris.conversation_id, "routed: least loaded: Petr"),
    ]
    outbox = await rows(
        db,
        select(Outbox.kind, Outbox.channel, Outbox.recipient, Outbox.interaction_id).order_by(
            Outbox.id
        ),
    )
    mirrors = [o for o in outbox if o.kind == "mirror"]
    assert sorted(o.interaction_id for o in mirrors) == sorted(
        r.interaction_id for r in (first, second, boris)
    )
    assert {o.channel for o in outbox} == {"telegram"}
    assigned = sorted((o.recipient, o.interaction_id) for o in outbox if o.kind == "assigned")
    assert assigned == [("1001", first.interaction_id), ("1002", boris.interaction_id)]
    # Anna's second message: her manager is told in private as well as in the group.
    notified = [(o.recipient, o.interaction_id) for o in outbox if o.kind == "notify"]
    assert notified == [("1001", second.interaction_id)]
    assert len(outbox) == 6


async def test_without_managers_the_conversation_waits_and_no_manager_is_told(
    db: Database, tmp_path: Path
) -> None:
    async with running(db, tmp_path, staff="telegram") as ingest:
        first = await ingest(message(Channel.TELEGRAM, "1:1", ANNA_TG))
        second = await ingest(message(Channel.TELEGRAM, "1:2", ANNA_TG))
    assert second.conversation_id == first.conversation_id
    assignee = await scalar(
        db, select(Conversation.assignee_id).where(Conversation.id == first.conversation_id)
    )
    owner = await scalar(db, select(Client.owner_id).where(Client.id == first.client_id))
    assert (assignee, owner) == (None, None)
    outbox = await rows(db, select(Outbox.kind, Outbox.recipient, Outbox.interaction_id))
    assert sorted((o.kind, o.recipient, o.interaction_id) for o in outbox) == sorted(
        ("mirror", "staff", r.interaction_id) for r in (first, second)
    )
    events = await rows(db, select(Interaction.text).where(Interaction.direction == "event"))
    assert [e.text for e in events] == ["routed: nobody available: queued"]


async def test_without_a_staff_channel_nothing_is_queued(db: Database, tmp_path: Path) -> None:
    await add_manager(db, "Olga", 1001)
    async with running(db, tmp_path, staff=None) as ingest:
        result = await ingest(message(Channel.TELEGRAM, "1:1", ANNA_TG))
    assert await scalar(db, select(func.count()).select_from(Outbox)) == 0
    assert await scalar(
        db, select(Conversation.assignee_id).where(Conversation.id == result.conversation_id)
    )


async def test_a_returning_client_goes_to_its_owner(db: Database, tmp_path: Path) -> None:
    olga = await add_manager(db, "Olga", 1001)
    petr = await add_manager(db, "Petr", 1002)
    async with running(db, tmp_path, staff="telegram") as ingest:
        anna = await ingest(message(Channel.TELEGRAM, "1:1", ANNA_TG))
        await resolve(db, anna.conversation_id)
        # Boris ties to Olga too, so she is busier than Petr: least loaded would pick Petr
        other = await ingest(message(Channel.TELEGRAM, "2:1", BORIS_TG))
        back = await ingest(message(Channel.TELEGRAM, "1:2", ANNA_TG))
    assert back.conversation_id != anna.conversation_id
    assignees = dict(await rows(db, select(Conversation.id, Conversation.assignee_id)))
    assert assignees == {
        anna.conversation_id: olga,
        other.conversation_id: olga,
        back.conversation_id: olga,
    }
    assert petr not in assignees.values()
    last_event = (
        await rows(
            db,
            select(Interaction.text)
            .where(Interaction.conversation_id == back.conversation_id)
            .where(Interaction.direction == "event"),
        )
    )[0]
    assert last_event.text == "routed: owner Olga"


async def test_an_unassigned_conversation_routed_again_to_the_same_manager(
    db: Database, tmp_path: Path
) -> None:
    # Regression: the notice's idempotency key was conversation+manager, so a
    # conversation released (assignee cleared) and routed again to the same
    # manager broke the unique key and every later message failed to commit.
    olga = await add_manager(db, "Olga", 1001)
    async with running(db, tmp_path, staff="telegram") as ingest:
        first = await ingest(message(Channel.TELEGRAM, "1:1", ANNA_TG))
        await execute(
            db,
            update(Conversation)
            .where(Conversation.id == first.conversation_id)
            .values(assignee_id=None),
        )
        second = await ingest(message(Channel.TELEGRAM, "1:2", ANNA_TG))
    assert second.conversation_id == first.conversation_id
    assert (
        await scalar(
            db, select(Conversation.assignee_id).where(Conversation.id == first.conversation_id)
        )
        == olga
    )
    assigned = await rows(
        db, select(Outbox.recipient, Outbox.interaction_id).where(Outbox.kind == "assigned")
    )
    assert sorted(tuple(a) for a in assigned) == [
        ("1001", first.interaction_id),
        ("1001", second.interaction_id),
    ]


# Attachments


async def test_the_same_file_stored_by_many_messages_at_once(tmp_path: Path) -> None:
    """Two messages carrying the same invoice arrive together: both are stored
    (the writes race to one file name and must not trip over each other)."""
    store = AttachmentStore(tmp_path / "files", 10**6)
    data = b"%PDF-1.4 the same invoice" * 1000
    stored = await asyncio.gather(*(store.put(data) for _ in range(20)))
    assert {s.sha256 for s in stored} == {hashlib.sha256(data).hexdigest()}
    assert await store.get(stored[0].sha256) == data
    assert [p.name for p in store.path(stored[0].sha256).parent.iterdir()] == [stored[0].sha256]


async def test_attachments_are_stored_by_content_and_oversized_ones_skipped(
    db: Database, tmp_path: Path
) -> None:
    store = AttachmentStore(tmp_path / "files", 100)
    small, big = b"%PDF-1.4 invoice", b"x" * 101
    async with running(db, tmp_path, store=store) as ingest:
        result = await ingest(
            message(
                Channel.EMAIL,
                "<1@example.com>",
                ANNA,
                text="see attached",
                attachments=(
                    Attachment("invoice.pdf", "application/pdf", small),
                    Attachment("huge.bin", "application/octet-stream", big),
                ),
            )
        )
        # the same content again is one file, two records
        again = await ingest(
            message(
                Channel.EMAIL,
                "<2@example.com>",
                ANNA,
                attachments=(Attachment("copy.pdf", "application/pdf", small),),
            )
        )
    digest = hashlib.sha256(small).hexdigest()
    stored = await rows(
        db,
        select(
            AttachmentRow.interaction_id,
            AttachmentRow.filename,
            AttachmentRow.content_type,
            AttachmentRow.sha256,
            AttachmentRow.size,
        ).order_by(AttachmentRow.id),
    )
    assert [tuple(s) for s in stored] == [
        (result.interaction_id, "invoice.pdf", "application/pdf", digest, len(small)),
        (again.interaction_id, "copy.pdf", "application/pdf", digest, len(small)),
    ]
    assert await store.get(digest) == small
    assert not store.path(hashlib.sha256(big).hexdigest()).exists()
    assert sum(1 for p in (tmp_path / "files").rglob("*") if p.is_file()) == 1
    text, extras = (
        await rows(
            db,
            select(Interaction.text, Interaction.extras).where(
                Interaction.id == result.interaction_id
            ),
        )
    )[0]
    assert text == "see attached"
    skipped = extras["attachments_skipped"]
    assert len(skipped) == 1
    assert "huge.bin" in skipped[0]
    assert "101" in skipped[0]


# Lifecycle


async def test_the_ingestor_refuses_messages_before_start_and_after_stop(
    db: Database, tmp_path: Path
) -> None:
    ingestor = Ingestor(db, FrozenClock(T0), AttachmentStore(tmp_path / "files", 100))
    with pytest.raises(StorageUnavailable):
        await ingestor(message(Channel.TELEGRAM, "1:0", ANNA_TG))
    await ingestor.start()
    accepted = await ingestor(message(Channel.TELEGRAM, "1:1", ANNA_TG))
    await ingestor.stop()
    with pytest.raises(StorageUnavailable):
        await ingestor(message(Channel.TELEGRAM, "1:2", ANNA_TG))
    assert not accepted.duplicate
    externals = await rows(db, select(Interaction.external_id).where(Interaction.direction == "in"))
    assert [e.external_id for e in externals] == ["1:1"]


async def test_a_message_without_identity_is_logged_on_a_client_of_its_own(
    db: Database, tmp_path: Path
) -> None:
    """Issue 16: mail with no readable sender is logged, never refused; each such
    message has its own client (nobody can tell two unknown senders apart)."""
    async with running(db, tmp_path) as ingest:
        first, second = await asyncio.gather(
            ingest(message(Channel.EMAIL, "<nobody-1@x>")),
            ingest(message(Channel.EMAIL, "<nobody-2@x>")),
        )
        again = await ingest(message(Channel.EMAIL, "<nobody-1@x>"))
    assert first.new_client and second.new_client
    assert first.client_id != second.client_id
    assert again.duplicate and again.client_id == first.client_id
    assert await in_count(db) == 2
    names = await rows(db, select(Client.name).order_by(Client.id))
    assert [n.name for n in names] == ["неизвестный отправитель, email-account"] * 2
    assert await scalar(db, select(func.count()).select_from(Identity)) == 0


class _GatedStore(AttachmentStore):
    """Holds every ``put`` until released, so a test can stop the hub meanwhile."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, 10**6)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def put(self, data: bytes) -> StoredFile:
        self.entered.set()
        await self.release.wait()
        return await super().put(data)


async def test_a_message_still_storing_files_at_stop_is_refused_not_stranded(
    db: Database, tmp_path: Path
) -> None:
    # Regression: a call that was writing its files when stop() drained the
    # queue appended itself after the writer had exited and waited forever.
    store = _GatedStore(tmp_path / "files")
    ingestor = Ingestor(db, FrozenClock(T0), store)
    await ingestor.start()
    call = asyncio.create_task(
        ingestor(
            message(
                Channel.EMAIL,
                "<1@example.com>",
                ANNA,
                attachments=(Attachment("a.txt", "text/plain", b"a"),),
            )
        )
    )
    try:
        await asyncio.wait_for(store.entered.wait(), 5)
        await asyncio.wait_for(ingestor.stop(), 5)
        store.release.set()
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(call, 5)
    finally:
        call.cancel()
    assert await in_count(db) == 0


async def test_one_batch_threading_twice_into_a_resolved_conversation_routes_it_once(
    db: Database, tmp_path: Path
) -> None:
    async with running(db, tmp_path, staff="telegram") as ingest:
        first = await ingest(message(Channel.EMAIL, "<1@example.com>", ANNA))
    await resolve(db, first.conversation_id)
    await add_manager(db, "Olga", 1001)
    await add_manager(db, "Petr", 1002)
    async with running(db, tmp_path, staff="telegram") as ingest:
        before = ingest.batches
        replies = await asyncio.gather(
            *(
                ingest(
                    message(Channel.EMAIL, f"<r{n}@example.com>", ANNA, hints=("<1@example.com>",))
                )
                for n in range(3)
            )
        )
        assert ingest.batches == before + 1
    assert {r.conversation_id for r in replies} == {first.conversation_id}
    events = await rows(
        db,
        select(Interaction.text)
        .where(Interaction.direction == "event")
        .where(Interaction.conversation_id == first.conversation_id)
        .order_by(Interaction.id),
    )
    assert [e.text for e in events] == [
        "routed: nobody available: queued",
        "routed: least loaded: Olga",
    ]
    assigned = await rows(db, select(Outbox.recipient).where(Outbox.kind == "assigned"))
    assert [a.recipient for a in assigned] == ["1001"]


async def test_one_batch_opening_a_conversation_nobody_takes_logs_one_routing_event(
    db: Database, tmp_path: Path
) -> None:
    async with running(db, tmp_path) as ingest:
        before = ingest.batches
        results = await asyncio.gather(
            *(ingest(message(Channel.TELEGRAM, f"1:{n}", ANNA_TG)) for n in range(3))
        )
        assert ingest.batches == before + 1
    assert len({r.conversation_id for r in results}) == 1
    events = await rows(db, select(Interaction.text).where(Interaction.direction == "event"))
    assert [e.text for e in events] == ["routed: nobody available: queued"]


async def test_a_message_the_database_refuses_is_rejected_alone(
    db: Database, tmp_path: Path, backend: str
) -> None:
    """PostgreSQL enforces column sizes: an account name too long for its column
    is refused with MessageRejected (retrying cannot help), and the message that
    shared its batch is still stored."""
    bad = dataclasses.replace(message(Channel.TELEGRAM, "1:1", ANNA_TG), account="x" * 300)
    good = message(Channel.TELEGRAM, "1:2", ANNA_TG)
    async with running(db, tmp_path) as ingest:
        outcomes = await asyncio.gather(ingest(bad), ingest(good), return_exceptions=True)
    stored = await scalar(
        db, select(func.count()).select_from(Interaction).where(Interaction.direction == "in")
    )
    if backend == "postgresql":
        assert isinstance(outcomes[0], MessageRejected)
        assert stored == 1
    else:  # SQLite keeps any length
        assert not isinstance(outcomes[0], BaseException)
        assert stored == 2
    assert not isinstance(outcomes[1], BaseException)


async def test_an_overlong_external_id_is_kept_by_its_digest(db: Database, tmp_path: Path) -> None:
    long_id = "<" + "a" * 2000 + "@example.com>"
    async with running(db, tmp_path) as ingest:
        first = await ingest(message(Channel.EMAIL, long_id, ANNA))
        again = await ingest(message(Channel.EMAIL, long_id, ANNA))
        reply = await ingest(message(Channel.EMAIL, "<r@example.com>", ANNA, hints=(long_id,)))
    assert again.duplicate and again.interaction_id == first.interaction_id
    assert reply.conversation_id == first.conversation_id


async def test_a_bare_start_is_logged_but_opens_no_request(db: Database, tmp_path: Path) -> None:
    """Regression (Telegram issue): a swarm of bare /start must not open requests,
    route them or mirror them to the staff."""
    start = dataclasses.replace(
        message(Channel.TELEGRAM, "1:1", ANNA_TG, text="/start"),
        extras={"command": "start", "service": True, "source": "ad-42"},
    )
    async with running(db, tmp_path, staff="telegram") as ingest:
        result = await ingest(start)
        real = await ingest(message(Channel.TELEGRAM, "1:2", ANNA_TG, text="Здравствуйте"))
    assert result.conversation_id is None and result.new_client
    assert real.conversation_id is not None and real.new_conversation
    assert await scalar(db, select(Client.source).where(Client.id == result.client_id)) == "ad-42"
    kinds = await rows(db, select(Outbox.kind, Outbox.interaction_id))
    assert [tuple(k) for k in kinds] == [("mirror", real.interaction_id)]


async def test_stop_opts_the_client_out(db: Database, tmp_path: Path) -> None:
    stop = dataclasses.replace(
        message(Channel.TELEGRAM, "1:1", ANNA_TG, text="/stop"),
        extras={"command": "stop", "service": True, "opt_out": True},
    )
    async with running(db, tmp_path) as ingest:
        result = await ingest(stop)
    assert await scalar(db, select(Client.opted_out).where(Client.id == result.client_id))


REPLIES = AutoReplies(
    greeting={"ru": "Здравствуйте!", "en": "Hello!"},
    out_of_hours={"ru": "Мы закрыты", "en": "We are closed"},
    hours=parse_hours("Mon-Fri 12:00-18:00"),  # T0 is Monday 10:00 UTC: closed
)


async def test_start_gets_the_greeting_in_the_clients_language(
    db: Database, tmp_path: Path
) -> None:
    start = dataclasses.replace(
        message(Channel.TELEGRAM, "1:1", ANNA_TG, text="/start"),
        extras={"command": "start", "service": True},
        language="en",
    )
    async with running(db, tmp_path, auto_replies=REPLIES) as ingest:
        result = await ingest(start)
    sent = await rows(db, select(Outbox.kind, Outbox.recipient, Outbox.text, Outbox.channel))
    assert [tuple(r) for r in sent] == [("auto_reply", "4242", "Hello!", "telegram")]
    logged = await rows(
        db,
        select(Interaction.direction, Interaction.text, Interaction.delivery)
        .where(Interaction.client_id == result.client_id)
        .order_by(Interaction.id),
    )
    assert [tuple(r) for r in logged] == [("in", "/start", None), ("out", "Hello!", "pending")]


async def test_a_new_request_out_of_hours_gets_the_out_of_hours_reply_once(
    db: Database, tmp_path: Path
) -> None:
    async with running(db, tmp_path, auto_replies=REPLIES) as ingest:
        first = await ingest(message(Channel.EMAIL, "<1@x>", ANNA, text="Помогите"))
        await ingest(message(Channel.EMAIL, "<2@x>", ANNA, text="Ещё вопрос"))
    sent = await rows(
        db,
        select(Outbox.kind, Outbox.recipient, Outbox.text, Outbox.channel, Outbox.conversation_id),
    )
    assert [tuple(r) for r in sent] == [
        ("auto_reply", "anna@example.com", "Мы закрыты", "email", first.conversation_id)
    ]


async def test_no_out_of_hours_reply_in_working_hours(db: Database, tmp_path: Path) -> None:
    open_all_day = dataclasses.replace(REPLIES, hours=parse_hours("Mon-Sun 00:00-24:00"))
    async with running(db, tmp_path, auto_replies=open_all_day) as ingest:
        await ingest(message(Channel.EMAIL, "<1@x>", ANNA, text="Помогите"))
    assert await rows(db, select(Outbox.id)) == []


async def test_a_new_address_with_a_known_phone_joins_the_phones_client(
    db: Database, tmp_path: Path
) -> None:
    """A form with a new email and a phone known from Telegram: one client, the
    email linked to it (issue 5: linked with the same email or phone)."""
    async with running(db, tmp_path) as ingest:
        anna = await ingest(message(Channel.TELEGRAM, "1:1", ANNA_TG, ANNA_PHONE))
        form = await ingest(message(Channel.WEBFORM, "f1", ANNA, ANNA_PHONE))
    assert form.client_id == anna.client_id and not form.new_client
    assert await identities_of(db, anna.client_id) == {
        ("telegram", "4242"),
        ("phone", "+79123456789"),
        ("email", "anna@example.com"),
    }
