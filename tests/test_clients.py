"""The client record as a whole: merge and unmerge with the log intact, duplicate
suggestions (never merged silently), the lapse rule, CSV import with bad rows
and export — on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import io
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub.clients.book import ClientBook, ClientError
from hub.clients.search import client_search
from hub.kernel.clock import FrozenClock
from hub.kernel.identities import identity
from hub.kernel.types import Channel
from storage import Database, read
from storage.models import Audit, Client, Conversation, Identity, Interaction
from tests.test_ingest import T0, message, rows, running, scalar

ANNA_MAIL = identity("email", "anna@example.com", "Анна Петрова")
ANNA_TG = identity("telegram", 4242, "Anna Petrova")
BORIS = identity("email", "boris@example.org", "Boris")


async def _log(db: Database) -> list[tuple[int, int, str]]:
    found = await rows(
        db,
        select(Interaction.id, Interaction.client_id, Interaction.text)
        .where(Interaction.direction != "event")
        .order_by(Interaction.id),
    )
    return [tuple(r) for r in found]


async def test_merge_moves_everything_and_unmerge_puts_it_back(
    db: Database, tmp_path: Path
) -> None:
    async with running(db, tmp_path) as ingest:
        mail = await ingest(message(Channel.EMAIL, "<1@x>", ANNA_MAIL, text="по почте"))
        tg = await ingest(message(Channel.TELEGRAM, "t1", ANNA_TG, text="в телеграме"))
        await ingest(message(Channel.TELEGRAM, "t2", ANNA_TG, text="ещё"))
    before = await _log(db)
    clock = FrozenClock(T0 + timedelta(hours=1))
    book = ClientBook(db, clock)
    merge = await book.merge(mail.client_id, tg.client_id, actor="admin")

    after = await _log(db)
    assert [(i, t) for i, _, t in after] == [(i, t) for i, _, t in before]  # nothing lost
    assert {c for _, c, _ in after} == {mail.client_id}
    idents = await rows(db, select(Identity.kind).where(Identity.client_id == mail.client_id))
    assert sorted(r.kind for r in idents) == ["email", "telegram"]
    assert await scalar(db, select(Client.merged_into).where(Client.id == tg.client_id)) == (
        mail.client_id
    )
    convs = await rows(db, select(Conversation.client_id))
    assert {c.client_id for c in convs} == {mail.client_id}

    with pytest.raises(ClientError, match="already merged"):
        await book.merge(mail.client_id, tg.client_id, actor="admin")
    kept, restored = await book.unmerge(merge, actor="admin")
    assert (kept, restored) == (mail.client_id, tg.client_id)
    assert await _log(db) == before  # each interaction back with its own client
    assert await scalar(db, select(Client.merged_into).where(Client.id == tg.client_id)) is None
    with pytest.raises(ClientError, match="undone already"):
        await book.unmerge(merge, actor="admin")
    actions = [r.action for r in await rows(db, select(Audit.action).order_by(Audit.id))]
    assert actions == ["merge", "unmerge"]
    events = await rows(db, select(Interaction.text).where(Interaction.text.like("%merged:%")))
    assert len(events) == 3  # merged (on the kept), unmerged (on both)


async def test_a_merged_client_gets_new_messages_on_the_kept_record(
    db: Database, tmp_path: Path
) -> None:
    async with running(db, tmp_path) as ingest:
        mail = await ingest(message(Channel.EMAIL, "<1@x>", ANNA_MAIL))
        tg = await ingest(message(Channel.TELEGRAM, "t1", ANNA_TG))
    await ClientBook(db, FrozenClock(T0)).merge(mail.client_id, tg.client_id, actor="admin")
    async with running(db, tmp_path) as ingest:
        again = await ingest(message(Channel.TELEGRAM, "t2", ANNA_TG, text="снова я"))
    assert again.client_id == mail.client_id  # the identity moved with the merge


async def test_probable_duplicates_are_suggested_not_merged(db: Database, tmp_path: Path) -> None:
    async with running(db, tmp_path) as ingest:
        a = await ingest(
            message(Channel.EMAIL, "<1@x>", identity("email", "a@x.org", "Петрова Анна"))
        )
        b = await ingest(message(Channel.TELEGRAM, "t1", identity("telegram", 1, "Анна Петрова")))
        c = await ingest(
            message(Channel.EMAIL, "<2@x>", identity("email", "c@x.org", "Борис Иванов"))
        )
        d = await ingest(message(Channel.EMAIL, "<3@x>", identity("email", "d@x.org", "Ivanov")))
        e = await ingest(
            message(
                Channel.TELEGRAM,
                "t2",
                identity("telegram", 2, "B. I."),
                identity("phone", "+7 912 345-67-89"),
            )
        )
    # The same phone, written the national way, in another client's custom field.
    async with db.write() as conn:
        from sqlalchemy import update

        await conn.execute(
            update(Client)
            .where(Client.id == d.client_id)
            .values(custom={"work": "8 (912) 345 67 89"})
        )
    found = await ClientBook(db, FrozenClock(T0)).duplicates()
    pairs = {(s.a, s.b): s for s in found}
    assert (a.client_id, b.client_id) in pairs  # same words, other order
    assert pairs[(a.client_id, b.client_id)].reason == "similar names"
    assert pairs[(d.client_id, e.client_id)].reason == "same phone …6789"
    assert (c.client_id, d.client_id) not in pairs  # Ivanov alone is not Борис Иванов
    assert (
        await scalar(
            db, select(func.count()).select_from(Client).where(Client.merged_into.is_not(None))
        )
        == 0
    )


async def test_no_contact_for_n_days_makes_a_client_lapsed(db: Database, tmp_path: Path) -> None:
    async with running(db, tmp_path) as ingest:
        old = await ingest(message(Channel.EMAIL, "<1@x>", ANNA_MAIL, at=T0))
    clock = FrozenClock(T0 + timedelta(days=10))
    async with running(db, tmp_path) as ingest:
        ingest.clock = clock
        recent = await ingest(message(Channel.EMAIL, "<2@x>", BORIS, at=clock.now()))
    book = ClientBook(db, FrozenClock(T0 + timedelta(days=181)))
    assert await book.lapse(180) == 1
    assert await book.lapse(180) == 0  # once
    stages = dict(tuple(r) for r in await rows(db, select(Client.id, Client.stage)))
    assert stages == {old.client_id: "lapsed", recent.client_id: "prospect"}
    [moved] = await rows(
        db, select(Interaction.text, Interaction.author).where(Interaction.text.like("stage:%"))
    )
    assert tuple(moved) == ("stage: prospect → lapsed (no contact for 180 days)", "rule")


CSV = """name,email,phone,stage,tags,city
Анна Петрова,anna@example.com,+7 912 345-67-89,client,vip;b2b,Москва
Boris,not-an-email,,,,
,,,,,
Вера,vera@example.org,8 (913) 111-22-33,repeat buyer,,Казань
Clash,anna@example.com,+7 913 111-22-33,,,
Duplicate row,ANNA@example.com,,,,
Bad stage,x@example.org,,wizard,,
"""


async def test_import_reports_each_bad_row_and_links_existing_clients(
    db: Database, tmp_path: Path
) -> None:
    async with running(db, tmp_path) as ingest:
        existing = await ingest(
            message(Channel.EMAIL, "<1@x>", identity("email", "vera@example.org"))
        )
    progress: list[tuple[int, int]] = []
    book = ClientBook(db, FrozenClock(T0), region="RU")
    report = await book.import_csv(io.StringIO(CSV), progress=lambda d, t: progress.append((d, t)))
    assert [n for n, _ in report.errors] == [3, 4, 6, 8]
    assert report.errors[0][1].startswith("email: ")
    assert report.errors[1:] == [
        (4, "no email, phone or Telegram id: nothing to know the client by"),
        (6, "its identities belong to different clients: merge them first"),
        (
            8,
            "stage: unknown stage 'wizard' (one of prospect, first_time_buyer, repeat_buyer,"
            " client, supporter, advocate, partner, lapsed)",
        ),
    ]
    # Анна new; Вера existed and gets a phone; the duplicate row tells Анна nothing new
    assert (report.added, report.updated, report.unchanged) == (1, 1, 1)
    assert progress[-1] == (4, 4)
    anna = await scalar(
        db,
        select(Identity.client_id).where(
            Identity.kind == "phone", Identity.value == "+79123456789"
        ),
    )
    record = (
        await rows(
            db,
            select(Client.name, Client.stage, Client.tags, Client.custom).where(Client.id == anna),
        )
    )[0]
    assert tuple(record) == ("Анна Петрова", "client", ["vip", "b2b"], {"city": "Москва"})
    vera = await rows(db, select(Identity.value).where(Identity.client_id == existing.client_id))
    assert sorted(r.value for r in vera) == ["+79131112233", "vera@example.org"]

    out = io.StringIO()
    assert await book.export_csv(out) == 2
    lines = out.getvalue().splitlines()
    assert (
        lines[0] == "id,name,email,phone,telegram,stage,tags,source,language,owner,created_at,city"
    )
    assert any(
        "Анна Петрова,anna@example.com,+79123456789,,client,vip;b2b,import" in line
        for line in lines
    )


async def test_an_empty_or_identityless_file_is_refused_whole(db: Database) -> None:
    book = ClientBook(db, FrozenClock(T0))
    assert (await book.import_csv(io.StringIO(""))).errors[0][0] == 1
    report = await book.import_csv(io.StringIO("name,city\nAnna,Moscow\n"))
    assert report.errors == [(1, "a column email, phone or telegram is needed")]
    assert await scalar(db, select(func.count()).select_from(Client)) == 0


async def test_an_unknown_sender_merged_into_a_nameless_client_lends_no_name(
    db: Database, tmp_path: Path
) -> None:
    """Mail with no readable sender has a client named "unknown sender, MAILBOX":
    merged into the right client, that placeholder is not taken as their name."""
    nameless = identity("email", "someone@example.org")
    async with running(db, tmp_path) as ingest:
        right = await ingest(message(Channel.EMAIL, "<1@x>", nameless))
        stray = await ingest(message(Channel.EMAIL, "<2@x>"))
    await ClientBook(db, FrozenClock(T0)).merge(right.client_id, stray.client_id, actor="admin")
    assert await scalar(db, select(Client.name).where(Client.id == right.client_id)) is None


# -- issue 17: every problem of a row, "unchanged", the @username hint -------------------


async def test_a_bad_row_names_every_problem(db: Database) -> None:
    bad = "name,email,phone,telegram,stage\nX,not-an-email,12,@a b,wizard\n"
    report = await ClientBook(db, FrozenClock(T0)).import_csv(io.StringIO(bad))
    [(number, problem)] = report.errors
    assert number == 2
    for part in ("email: ", "phone: ", "telegram: ", "stage: unknown stage 'wizard'"):
        assert part in problem, problem
    assert await scalar(db, select(func.count()).select_from(Client)) == 0


async def test_importing_the_same_rows_again_reports_them_unchanged(db: Database) -> None:
    rows_ = "name,email,tags,city\nАнна,anna@example.com,vip,Москва\nBoris,b@example.org,,\n"
    book = ClientBook(db, FrozenClock(T0))
    first = await book.import_csv(io.StringIO(rows_))
    assert (first.added, first.updated, first.unchanged) == (2, 0, 0)
    again = await book.import_csv(io.StringIO(rows_))
    assert (again.added, again.updated, again.unchanged, again.errors) == (0, 0, 2, [])
    more = await book.import_csv(io.StringIO("email,tags\nanna@example.com,b2b\n"))
    assert (more.updated, more.unchanged) == (1, 0)


async def test_a_telegram_username_is_a_hint_until_that_person_writes(
    db: Database, tmp_path: Path
) -> None:
    """An imported ``@username`` is kept as a hint: search finds it, and the first
    message of a Telegram user of that name joins the imported client (the hint
    then dropped: the user id proves them); a re-import matches them still."""
    book = ClientBook(db, FrozenClock(T0))
    csv_rows = "name,telegram,city\nАнна,@Anna_Petrova,Москва\n"
    report = await book.import_csv(io.StringIO(csv_rows))
    assert (report.added, report.errors) == (1, [])
    imported = await scalar(db, select(Client.id).where(Client.name == "Анна"))
    hint = await rows(db, select(Identity.kind, Identity.value))
    assert [tuple(r) for r in hint] == [("tg_username", "anna_petrova")]

    out = io.StringIO()
    await book.export_csv(out)
    assert "@anna_petrova" in out.getvalue()
    async with db.read() as conn:
        found = await read.search_clients(conn, client_search("@ANNA_Petrova", "RU"))
    assert [f.id for f in found] == [imported]

    stranger = identity("telegram", 777, "Someone")
    anna = identity("telegram", 4243, "Anna P")
    async with running(db, tmp_path) as ingest:
        other = await ingest(message(Channel.TELEGRAM, "s1", stranger, text="привет"))
        first = message(Channel.TELEGRAM, "a1", anna, text="здравствуйте")
        written = await ingest(dataclasses.replace(first, extras={"username": "anna_PETROVA"}))
    assert written.client_id == imported
    assert other.client_id != imported
    kinds = await rows(
        db, select(Identity.kind, Identity.value).where(Identity.client_id == imported)
    )
    assert [tuple(r) for r in kinds] == [("telegram", "4243")]  # the hint is gone

    again = await book.import_csv(io.StringIO(csv_rows))
    assert (again.added, again.unchanged, again.errors) == (0, 1, [])
    assert await scalar(db, select(func.count()).select_from(Client)) == 2
