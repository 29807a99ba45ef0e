"""Business events in (issue 18): ``POST /api/events`` by every client key, a new
client when nobody matches, 404 for an unknown id, idempotent by the caller's id
(twice, and two posts at once), bad bodies named; ``hub event`` and ``hub event
import`` from the command line; ``event.recorded`` queued for a subscribed webhook."""

from __future__ import annotations

import asyncio
import csv
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.admin.api import AdminServer, create_app
from hub.kernel.identities import identity
from hub.kernel.types import Channel
from storage import Database, webhooks
from storage.models import Audit, BusinessEvent, Client, Identity, Interaction, Outbox
from tests.test_admin_clients import TOKEN, call
from tests.test_ingest import message, rows, running

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def base(db: Database) -> AsyncIterator[str]:
    server = AdminServer(create_app(db, TOKEN, lambda: True, default_region="RU"))
    await server.start("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.port}/api/events"
    finally:
        await server.stop()


async def count(db: Database, model: Any) -> int:
    [row] = await rows(db, select(func.count()).select_from(model))
    return int(row[0])


async def test_events_by_every_client_key(db: Database, tmp_path: Path, base: str) -> None:
    async with running(db, tmp_path) as ingest:
        tg = await ingest(message(Channel.TELEGRAM, "t1", identity("telegram", 4242, "Анна")))
        mail = await ingest(message(Channel.EMAIL, "<1@x>", identity("email", "ivan@x.org")))
    phone_client = await ingest_phone(db)

    posts = [
        ({"id": tg.client_id}, tg.client_id),
        ({"email": "IVAN@X.org"}, mail.client_id),
        ({"phone": "8 (916) 123-45-67"}, phone_client),
        ({"telegram_id": 4242}, tg.client_id),
        ({"telegram_id": "4242"}, tg.client_id),
    ]
    for n, (client, expected) in enumerate(posts):
        body = {"id": f"order-{n}", "kind": "purchase", "client": client, "amount": "1500"}
        status, answer = await call("POST", base, json={**body, "currency": "rub"})
        assert status == 201, answer
        assert answer["client_id"] == expected and answer["duplicate"] is False

    [event] = await rows(
        db,
        select(BusinessEvent.amount, BusinessEvent.currency, BusinessEvent.interaction_id).where(
            BusinessEvent.key == "order-0"
        ),
    )
    assert Decimal(event.amount) == Decimal("1500.00") and event.currency == "RUB"
    [logged] = await rows(
        db,
        select(
            Interaction.direction, Interaction.channel, Interaction.text, Interaction.extras
        ).where(Interaction.id == event.interaction_id),
    )
    assert (logged.direction, logged.channel) == ("event", None)
    assert logged.text == "purchase 1 500.00 RUB"
    assert logged.extras["business_event"]["key"] == "order-0"
    assert await count(db, Client) == 3  # nobody new
    actors = {r.actor for r in await rows(db, select(Audit.actor).where(Audit.action == "event"))}
    assert actors == {"api:config"}


async def ingest_phone(db: Database) -> int:
    from hub.clients.book import ClientBook
    from hub.kernel.clock import SystemClock

    book = ClientBook(db, SystemClock())
    import io

    await book.import_csv(io.StringIO("name,phone\nПётр,+7 916 123 45 67\n"))
    [row] = await rows(db, select(Identity.client_id).where(Identity.kind == "phone"))
    return int(row.client_id)


async def test_a_new_client_when_nobody_matches_and_404_for_an_unknown_id(
    db: Database, base: str
) -> None:
    body = {
        "id": 1,
        "kind": "Meeting",
        "client": {"email": "new@x.org", "phone": "+79160000001", "name": "Ольга"},
        "at": "2026-03-01T10:00:00+03:00",
        "fields": {"outcome": "signed", "minutes": 40},
    }
    status, answer = await call("POST", base, json=body)
    assert status == 201
    [client] = await rows(db, select(Client.id, Client.name, Client.stage, Client.source))
    assert (client.id, client.name, client.stage, client.source) == (
        answer["client_id"],
        "Ольга",
        "prospect",
        "event",
    )
    held = await rows(db, select(Identity.kind, Identity.value).order_by(Identity.kind))
    assert [(r.kind, r.value) for r in held] == [("email", "new@x.org"), ("phone", "+79160000001")]
    # by the phone alone, the same client
    again = {**body, "id": 2, "client": {"phone": "+7 916 000-00-01"}}
    assert (await call("POST", base, json=again))[1]["client_id"] == client.id

    status, answer = await call(
        "POST", base, json={"id": 3, "kind": "call", "client": {"id": 999999}}
    )
    assert (status, answer) == (404, {"error": "client 999999 not found"})
    assert await count(db, Client) == 1 and await count(db, BusinessEvent) == 2


async def test_the_same_id_twice_and_two_posts_at_once_record_one_event(
    db: Database, base: str
) -> None:
    body = {"id": "crm-77", "kind": "payment", "client": {"email": "p@x.org"}, "amount": 10}
    body["currency"] = "EUR"
    first = await call("POST", base, json=body)
    second = await call("POST", base, json=body)
    assert first[0] == 201 and second[0] == 200
    assert second[1] == {**first[1], "duplicate": True}

    race = {"id": "crm-78", "kind": "order", "client": {"email": "race@x.org"}}
    answers = await asyncio.gather(*(call("POST", base, json=race) for _ in range(8)))
    assert sorted(s for s, _ in answers) == [200] * 7 + [201]
    assert len({a["id"] for _, a in answers}) == 1
    assert len({a["client_id"] for _, a in answers}) == 1
    assert await count(db, BusinessEvent) == 2
    assert await count(db, Client) == 2  # one new client each, never two


async def test_new_clients_named_at_once_by_concurrent_posts_are_one(
    db: Database, base: str
) -> None:
    posts = [{"id": f"k{n}", "kind": "order", "client": {"email": "same@x.org"}} for n in range(10)]
    answers = await asyncio.gather(*(call("POST", base, json=p) for p in posts))
    assert {s for s, _ in answers} == {201}
    assert len({a["client_id"] for _, a in answers}) == 1
    assert await count(db, Client) == 1 and await count(db, BusinessEvent) == 10


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"kind": "purchase", "client": {"id": 1}}, "id: missing"),
        ({"id": "x", "client": {"id": 1}}, "kind: missing"),
        ({"id": "x", "kind": "buy stuff", "client": {"id": 1}}, "kind: "),
        ({"id": "x", "kind": "purchase"}, "client: missing"),
        ({"id": "x", "kind": "purchase", "client": {}}, "client: needs one of"),
        ({"id": "x", "kind": "purchase", "client": {"email": "nope"}}, "client.email: "),
        ({"id": "x", "kind": "purchase", "client": {"phone": "12"}}, "client.phone: "),
        ({"id": "x", "kind": "purchase", "client": {"id": "7a"}}, "client.id: "),
        ({"id": "x", "kind": "purchase", "client": {"id": 1, "email": "a@x.org"}}, "client.id"),
        ({"id": "x", "kind": "purchase", "client": {"id": 1}, "amount": "ten"}, "amount: "),
        ({"id": "x", "kind": "purchase", "client": {"id": 1}, "amount": 1}, "currency: needed"),
        ({"id": "x", "kind": "purchase", "client": {"id": 1}, "amount": 1.005}, "amount: "),
        ({"id": "x", "kind": "p", "client": {"id": 1}, "currency": "RUBLES"}, "currency: "),
        ({"id": "x", "kind": "p", "client": {"id": 1}, "at": "yesterday"}, "at: "),
        ({"id": "x", "kind": "p", "client": {"id": 1}, "at": "2026-01-01T10:00"}, "at: needs"),
        ({"id": "x", "kind": "p", "client": {"id": 1}, "fields": {"a": {"b": 1}}}, "fields.a: "),
        ({"id": "x", "kind": "p", "client": {"id": 1}, "fields": {"a": [1]}}, "fields.a: "),
        ({"id": "x", "kind": "p", "client": {"id": 1}, "fields": [1]}, "fields: "),
        ({"id": "x", "kind": "p", "client": {"id": 1}, "fields": {"t": "x" * 1001}}, "fields.t"),
        (
            {
                "id": "x",
                "kind": "p",
                "client": {"id": 1},
                "fields": {f"f{n}": n for n in range(51)},
            },
            "fields: more than 50",
        ),
        ({"id": "x" * 201, "kind": "p", "client": {"id": 1}}, "id: "),
        ({"id": "x", "kind": "p", "client": {"id": 1}, "price": 1}, "price: unknown key"),
    ],
)
async def test_bad_bodies_are_refused_naming_the_field(
    db: Database, base: str, body: dict[str, Any], named: str
) -> None:
    status, answer = await call("POST", base, json=body)
    assert status == 400
    assert named in answer["error"]
    assert await count(db, BusinessEvent) == 0


async def test_bodies_that_are_no_event_object(db: Database, base: str) -> None:
    assert (await call("POST", base, data=b"[1]"))[0] == 400
    assert (await call("POST", base, data=b"{"))[0] == 400
    assert (await call("POST", base, data=b"[" * 100_000))[0] in (400, 413)
    huge = b'{"id": "' + b"x" * 70_000 + b'"}'
    assert (await call("POST", base, data=huge))[0] == 413
    assert (await call("POST", base, token=None, json={}))[0] == 401


async def test_event_recorded_is_queued_for_a_subscribed_webhook(db: Database, base: str) -> None:
    async with db.write() as conn:
        await webhooks.sync(conn, [("crm", ["event.recorded", "client.created"])])
    body = {"id": "w1", "kind": "purchase", "client": {"email": "w@x.org"}, "amount": 5}
    status, answer = await call("POST", base, json={**body, "currency": "USD"})
    assert status == 201
    queued = await rows(db, select(Outbox.recipient, Outbox.extras, Outbox.text, Outbox.client_id))
    assert [(r.recipient, r.extras["type"]) for r in queued] == [
        ("crm", "client.created"),
        ("crm", "event.recorded"),
    ]
    assert all(r.client_id == answer["client_id"] for r in queued)
    assert '"amount":"5.00"' in queued[1].text and '"key":"w1"' in queued[1].text


# --- the command line ---------------------------------------------------------


def hub(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=False,
    )


def config_file(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[admin]\ntoken = "{TOKEN}"\n[storage]\nurl = "{db_url}"\n'
        '[[stages.rules]]\nname = "first purchase"\nwhen = "purchase"\nto = "first_time_buyer"\n',
        "utf-8",
    )
    return path


async def test_hub_event_and_its_csv_import(db: Database, db_url: str, tmp_path: Path) -> None:
    config = str(config_file(tmp_path, db_url))
    done = await asyncio.to_thread(
        hub,
        "event",
        "--config",
        config,
        "--kind",
        "purchase",
        "--client-email",
        "cli@x.org",
        "--amount",
        "1500",
        "--currency",
        "RUB",
        "--id",
        "cli-1",
        "--field",
        "item=tea",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "recorded event" in done.stdout
    [client] = await rows(db, select(Client.id, Client.stage))
    assert client.stage == "first_time_buyer"  # the config's rule ran
    again = await asyncio.to_thread(
        hub, "event", "--config", config, "--kind", "purchase", "--client-email", "cli@x.org",
        "--id", "cli-1", cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0 and "already recorded" in again.stdout

    path = tmp_path / "events.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "kind", "email", "client_id", "at", "amount", "currency", "note"])
        writer.writerow(["r1", "purchase", "a@x.org", "", "", "100", "RUB", "first"])
        writer.writerow(["r2", "call", "", str(client.id), "2026-02-01T10:00:00Z", "", "", "ok"])
        writer.writerow(["r3", "buy it", "bad", "", "noon", "x", "RUB", ""])
        writer.writerow(["r4", "meeting", "", "999999", "", "", "", ""])
    first = await asyncio.to_thread(
        hub, "event", "import", "--config", config, str(path), cwd=tmp_path
    )
    assert first.returncode == 1, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == "recorded 2, already recorded 0, refused 2"
    [row4, row5] = lines[1:]
    assert row4.startswith("row 4: ") and all(
        k in row4 for k in ("kind:", "email", "at:", "amount:")
    )
    assert row5 == "row 5: client 999999 not found"
    notes = await rows(
        db, select(BusinessEvent.key, BusinessEvent.fields).order_by(BusinessEvent.key)
    )
    assert {r.key: r.fields for r in notes}["r1"] == {"note": "first"}

    second = await asyncio.to_thread(
        hub, "event", "import", "--config", config, str(path), cwd=tmp_path
    )
    assert second.stdout.splitlines()[0] == "recorded 0, already recorded 2, refused 2"
    assert await count(db, BusinessEvent) == 3

    # a file that turns to no CSV (a lone CR in a field) or no UTF-8 midway: said, no traceback
    broken = tmp_path / "broken.csv"
    for tail in (b"r7,call,c@x.org,\xff\xfe\n", b'r7,call,"c@x.org\r",\n'):
        broken.write_bytes(b"id,kind,email,note\nr6,call,b@x.org,fine\n" + tail)
        done = await asyncio.to_thread(
            hub, "event", "import", "--config", config, str(broken), cwd=tmp_path
        )
        assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stderr
    assert "r6" in {r.key for r in await rows(db, select(BusinessEvent.key))}


async def test_two_instances_racing_for_one_new_client_and_one_key(db_url: str) -> None:
    """Two hubs' recorders (two engines) writing the same new client and the same
    event id at once: one client, one event (on PostgreSQL one of them breaks a
    unique constraint and writes again)."""
    from hub.clients.event_writer import EventRecorder
    from hub.clients.events import parse
    from hub.kernel.clock import SystemClock

    dbs = [Database(db_url), Database(db_url)]
    try:
        recorders = [EventRecorder(d, SystemClock()) for d in dbs]
        same = parse({"id": "dup", "kind": "order", "client": {"email": "twin@x.org"}})
        others = [
            parse({"id": f"o{n}", "kind": "order", "client": {"email": "twin@x.org"}})
            for n in range(6)
        ]
        done = await asyncio.gather(
            *(r.record(same, actor="test") for r in recorders),
            *(recorders[n % 2].record(e, actor="test") for n, e in enumerate(others)),
        )
        assert sorted(d.duplicate for d in done[:2]) == [False, True]
        assert len({d.client_id for d in done}) == 1
        assert await count(dbs[0], Client) == 1 and await count(dbs[0], BusinessEvent) == 7
    finally:
        for d in dbs:
            await d.dispose()


async def test_who_may_post_events(db: Database, base: str) -> None:
    """The ``events`` right: admins, supervisors and a business system's
    ``integration`` token (which may read nothing); managers and marketers are refused."""
    from hub.admin.tokens import Tokens

    tokens = Tokens(db)
    body = {"kind": "call", "client": {"email": "who@x.org"}}
    posted = {"supervisor", "integration"}
    secrets = {}
    for n, role in enumerate(("supervisor", "integration", "manager", "marketer")):
        secrets[role] = secret = await tokens.add(f"crm-{role}", role)
        status, _ = await call("POST", base, token=secret, json={**body, "id": n})
        assert status == (201 if role in posted else 403)
    actors = await rows(db, select(Audit.actor).where(Audit.action == "event"))
    assert sorted(r.actor for r in actors) == ["api:crm-integration", "api:crm-supervisor"]
    root = base.removesuffix("/api/events")
    for path in ("/api/clients", "/api/clients/1", "/api/conversations", "/api/audit"):
        status, _ = await call("GET", root + path, token=secrets["integration"])
        assert status == 403, path
