"""The admin HTTP API over real HTTP on loopback, with data put in through the real
ingest path; on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import insert, update

from hub.admin.api import AdminServer, create_app
from hub.clients.attachments import AttachmentStore
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import FrozenClock
from hub.kernel.identities import identity
from hub.kernel.types import Channel, InboundMessage, IngestResult
from storage import Database
from storage.models import Conversation, Interaction, Manager

TOKEN = "admin-token-Zq8v1xL0p4"
MSK = timezone(timedelta(hours=3))
NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # the frozen clock: created_at, routing events
OLGA = "Ольга Смирнова"
IVAN_TEXT = "Здравствуйте! Нужна помощь с заказом №42"


@dataclass
class Data:
    ivan: IngestResult
    anna_email: IngestResult
    anna_form: IngestResult
    maria: IngestResult
    reply_id: int


@dataclass
class Api:
    base: str
    session: aiohttp.ClientSession
    data: Data
    ready: list[bool] = field(default_factory=lambda: [False])

    async def get(
        self, path: str, *, token: str | None = TOKEN, **params: str | int
    ) -> tuple[int, Any]:
        status, _, body = await self.raw("GET", path, params, token=token)
        return status, body

    async def raw(
        self,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None = None,
        *,
        token: str | None = TOKEN,
    ) -> tuple[int, Mapping[str, str], Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with self.session.request(
            method, self.base + path, headers=headers, params=params
        ) as resp:
            assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
            return resp.status, resp.headers, await resp.json()


async def _populate(db: Database, tmp_path: Path) -> Data:
    ingestor = Ingestor(db, FrozenClock(NOW), AttachmentStore(tmp_path / "files", 10**6))
    await ingestor.start()
    try:
        # Before any manager exists: nobody to assign, no owner.
        ivan = await ingestor(
            InboundMessage(
                Channel.TELEGRAM,
                "bot",
                "123456789:1",
                (identity("telegram", 123456789, "Иван Петров"),),
                datetime(2026, 1, 5, 11, 0, tzinfo=MSK),
                text=IVAN_TEXT,
                language="ru",
            )
        )
        async with db.write() as conn:
            await conn.execute(insert(Manager).values(name=OLGA, telegram_id=5001, created_at=NOW))
        anna_email = await ingestor(
            InboundMessage(
                Channel.EMAIL,
                "support",
                "<m1@example.com>",
                (identity("email", "Anna.Schmidt@Example.COM", "Anna Schmidt"),),
                datetime(2026, 1, 5, 12, 0, tzinfo=MSK),
                text="Hello, I need an invoice — счёт, пожалуйста",
                subject="Invoice",
                language="en",
            )
        )
        # The same address over another channel, proving a phone as well.
        anna_form = await ingestor(
            InboundMessage(
                Channel.WEBFORM,
                "contact",
                "form-1",
                (
                    identity("email", "anna.schmidt@example.com", "Anna Schmidt"),
                    identity("phone", "+7 916 123-45-67"),
                ),
                datetime(2026, 1, 5, 9, 45, tzinfo=UTC),
                text="Перезвоните мне, пожалуйста",
            )
        )
        maria = await ingestor(
            InboundMessage(
                Channel.WEBFORM,
                "contact",
                "form-2",
                (identity("email", "maria@example.org", "Мария Иванова"),),
                datetime(2026, 1, 5, 9, 50, tzinfo=UTC),
                text="Сколько стоит подписка?",
                language="ru",
                extras={"source": "site: /pricing"},
            )
        )
    finally:
        await ingestor.stop()
    async with db.write() as conn:
        reply_id = (
            await conn.execute(
                insert(Interaction)
                .values(
                    client_id=anna_email.client_id,
                    conversation_id=anna_email.conversation_id,
                    direction="out",
                    channel="email",
                    account="support",
                    author=OLGA,
                    text="Добрый день! Счёт отправим сегодня.",
                    at=datetime(2026, 1, 5, 9, 30, tzinfo=UTC),
                    delivery="sent",
                )
                .returning(Interaction.id)
            )
        ).scalar_one()
        await conn.execute(
            update(Conversation)
            .where(Conversation.id == anna_form.conversation_id)
            .values(
                status="pending",
                first_response_at=datetime(2026, 1, 5, 10, 5, tzinfo=UTC),
                due_at=datetime(2026, 1, 6, 13, 0, tzinfo=MSK),
            )
        )
        await conn.execute(
            update(Conversation)
            .where(Conversation.id == maria.conversation_id)
            .values(status="resolved", resolved_at=NOW)
        )
    return Data(ivan, anna_email, anna_form, maria, reply_id)


@pytest.fixture
async def api(db: Database, tmp_path: Path) -> AsyncIterator[Api]:
    data = await _populate(db, tmp_path)
    ready = [False]
    server = AdminServer(create_app(db, TOKEN, lambda: ready[0], default_region="RU"))
    await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(f"http://127.0.0.1:{server.port}", session, data, ready)
    finally:
        await server.stop()


def _ids(body: list[dict[str, Any]]) -> list[int]:
    return [item["id"] for item in body]


async def test_server_binds_a_free_port_and_stops(api: Api) -> None:
    assert api.base != "http://127.0.0.1:0"
    status, body = await api.get("/api/clients", limit=1)
    assert status == 200
    assert len(body) == 1


async def test_healthz_is_503_until_ready_then_200(api: Api) -> None:
    status, body = await api.get("/healthz", token=None)
    assert (status, body) == (503, {"status": "starting"})
    api.ready[0] = True
    status, body = await api.get("/healthz", token=None)
    assert (status, body) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    "path",
    [
        "/api/clients",
        "/api/clients/1",
        "/api/clients/1/timeline",
        "/api/conversations",
        "/api/no-such-route",
    ],
)
async def test_api_needs_the_bearer_token(api: Api, path: str) -> None:
    status, headers, body = await api.raw("GET", path, token=None)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer realm="hub"'
    assert "token" in body["error"]

    status, headers, body = await api.raw("GET", path, token="admin-token-WRONG")
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer realm="hub", error="invalid_token"'
    assert body == {"error": "invalid bearer token"}

    status, headers, body = await api.raw("GET", path, token=TOKEN + "x")
    assert status == 401

    async with api.session.get(
        api.base + path, headers={"Authorization": f"Basic {TOKEN}"}
    ) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")

    status, _, body = await api.raw("GET", path)
    assert status == (404 if "no-such" in path else 200)


async def test_scheme_is_case_insensitive(api: Api) -> None:
    async with api.session.get(
        api.base + "/api/conversations", headers={"Authorization": f"bearer {TOKEN}"}
    ) as resp:
        assert resp.status == 200


async def test_client_list_shape_and_one_client_per_address(api: Api) -> None:
    d = api.data
    assert d.anna_email.client_id == d.anna_form.client_id
    assert d.anna_form.new_client is False
    status, body = await api.get("/api/clients")
    assert status == 200
    assert body == [
        {
            "id": d.ivan.client_id,
            "name": "Иван Петров",
            "stage": "prospect",
            "owner": None,
            "identities": [{"kind": "telegram", "value": "123456789"}],
        },
        {
            "id": d.anna_email.client_id,
            "name": "Anna Schmidt",
            "stage": "prospect",
            "owner": OLGA,
            "identities": [
                {"kind": "email", "value": "anna.schmidt@example.com"},
                {"kind": "phone", "value": "+79161234567"},
            ],
        },
        {
            "id": d.maria.client_id,
            "name": "Мария Иванова",
            "stage": "prospect",
            "owner": OLGA,
            "identities": [{"kind": "email", "value": "maria@example.org"}],
        },
    ]


@pytest.mark.parametrize(
    ("q", "who"),
    [
        ("schmidt", "anna"),  # name, other case
        ("ПЕТРОВ", "ivan"),  # Cyrillic name, upper case
        ("иванов", "maria"),
        ("мАрИя", "maria"),  # Cyrillic name, mixed case
        ("иван п", "ivan"),
        ("  Иван  ", "ivan,maria"),  # surrounding blanks ignored; "Иванова" holds "Иван"
        ("ANNA.SCHMIDT@EXAMPLE.COM", "anna"),  # email, other case
        ("example.org", "maria"),  # email fragment
        ("@example.", "anna,maria"),
        ("+7 (916) 123-45-67", "anna"),  # phone, international
        ("8 916 123 45 67", "anna"),  # phone, national with trunk prefix
        ("916-123-4567", "anna"),  # phone digits without country code
        ("79161234567", "anna"),
        ("123456789", "ivan"),  # Telegram id
        ("12345678", ""),  # Telegram ids match whole, not in part
        ("nobody", ""),
        ("%", ""),  # LIKE and GLOB wildcards are plain characters
        ("_", ""),
        ("*", ""),
        ("[", ""),
        (".*", ""),
    ],
)
async def test_search(api: Api, q: str, who: str) -> None:
    d = api.data
    ids = {"ivan": d.ivan.client_id, "anna": d.anna_email.client_id, "maria": d.maria.client_id}
    status, body = await api.get("/api/clients", q=q)
    assert status == 200
    assert _ids(body) == [ids[w] for w in who.split(",") if w]


async def test_search_result_has_the_list_shape(api: Api) -> None:
    status, body = await api.get("/api/clients", q="8 (916) 123-45-67")
    assert status == 200
    assert body == [
        {
            "id": api.data.anna_email.client_id,
            "name": "Anna Schmidt",
            "stage": "prospect",
            "owner": OLGA,
            "identities": [
                {"kind": "email", "value": "anna.schmidt@example.com"},
                {"kind": "phone", "value": "+79161234567"},
            ],
        }
    ]


async def test_empty_q_lists_everyone(api: Api) -> None:
    status, body = await api.get("/api/clients", q="   ")
    assert status == 200
    assert len(body) == 3


async def test_limit_and_offset(api: Api) -> None:
    d = api.data
    everyone = [d.ivan.client_id, d.anna_email.client_id, d.maria.client_id]
    assert _ids((await api.get("/api/clients", limit=2))[1]) == everyone[:2]
    assert _ids((await api.get("/api/clients", limit=2, offset=2))[1]) == everyone[2:]
    assert _ids((await api.get("/api/clients", offset=1))[1]) == everyone[1:]
    assert (await api.get("/api/clients", offset=3))[1] == []
    assert _ids((await api.get("/api/clients", q="example", limit=1, offset=1))[1]) == [
        d.maria.client_id
    ]
    assert _ids((await api.get("/api/clients", limit=1000))[1]) == everyone

    conversations = _ids((await api.get("/api/conversations"))[1])
    assert len(conversations) == 4
    assert _ids((await api.get("/api/conversations", limit=3, offset=1))[1]) == conversations[1:]
    assert _ids((await api.get("/api/conversations", limit=1))[1]) == conversations[:1]


async def test_client_card(api: Api) -> None:
    d = api.data
    status, body = await api.get(f"/api/clients/{d.anna_email.client_id}")
    assert status == 200
    assert body == {
        "id": d.anna_email.client_id,
        "name": "Anna Schmidt",
        "stage": "prospect",
        "owner": OLGA,
        "identities": [
            {"kind": "email", "value": "anna.schmidt@example.com"},
            {"kind": "phone", "value": "+79161234567"},
        ],
        "tags": [],
        "language": "en",
        "source": None,
        "created_at": "2026-01-05T10:00:00+00:00",
        "open_conversations": [
            {
                "id": d.anna_email.conversation_id,
                "client_id": d.anna_email.client_id,
                "channel": "email",
                "status": "open",
                "assignee": OLGA,
                "subject": "Invoice",
                "created_at": "2026-01-05T10:00:00+00:00",
                "first_response_at": None,
                "due_at": None,
            },
            {
                "id": d.anna_form.conversation_id,
                "client_id": d.anna_email.client_id,
                "channel": "webform",
                "status": "pending",
                "assignee": OLGA,
                "subject": None,
                "created_at": "2026-01-05T10:00:00+00:00",
                "first_response_at": "2026-01-05T10:05:00+00:00",
                "due_at": "2026-01-06T10:00:00+00:00",
            },
        ],
        "custom": {},
        "reminders": [],
        "merged_into": None,
    }


async def test_card_leaves_out_resolved_conversations(api: Api) -> None:
    status, body = await api.get(f"/api/clients/{api.data.maria.client_id}")
    assert status == 200
    assert body["open_conversations"] == []
    assert (body["name"], body["language"], body["source"]) == (
        "Мария Иванова",
        "ru",
        "site: /pricing",
    )


async def test_timeline_oldest_first(api: Api) -> None:
    d = api.data
    status, body = await api.get(f"/api/clients/{d.anna_email.client_id}/timeline")
    assert status == 200
    events = [i for i in body if i["direction"] == "event"]
    assert body[:3] == [
        {
            "id": d.anna_email.interaction_id,
            "at": "2026-01-05T09:00:00+00:00",
            "direction": "in",
            "channel": "email",
            "author": "Anna Schmidt",
            "text": "Hello, I need an invoice — счёт, пожалуйста",
            "conversation_id": d.anna_email.conversation_id,
            "delivery": None,
        },
        {
            "id": d.reply_id,
            "at": "2026-01-05T09:30:00+00:00",
            "direction": "out",
            "channel": "email",
            "author": OLGA,
            "text": "Добрый день! Счёт отправим сегодня.",
            "conversation_id": d.anna_email.conversation_id,
            "delivery": "sent",
        },
        {
            "id": d.anna_form.interaction_id,
            "at": "2026-01-05T09:45:00+00:00",
            "direction": "in",
            "channel": "webform",
            "author": "Anna Schmidt",
            "text": "Перезвоните мне, пожалуйста",
            "conversation_id": d.anna_form.conversation_id,
            "delivery": None,
        },
    ]
    # routing recorded one event per new conversation, at ingest time; ties by id
    assert body[3:] == events
    assert [(e["conversation_id"], e["at"], e["channel"], e["author"]) for e in events] == [
        (d.anna_email.conversation_id, "2026-01-05T10:00:00+00:00", None, "hub"),
        (d.anna_form.conversation_id, "2026-01-05T10:00:00+00:00", None, "hub"),
    ]
    assert events[0]["id"] < events[1]["id"]
    assert all(OLGA in e["text"] for e in events)


async def test_timeline_last_n_is_the_latest_written_oldest_first(api: Api) -> None:
    url = f"/api/clients/{api.data.anna_email.client_id}/timeline"
    status, everything = await api.get(url)
    assert status == 200
    newest_ids = sorted(i["id"] for i in everything)[-2:]
    status, last = await api.get(url, last=2)
    assert status == 200
    assert [i["id"] for i in last] == [i["id"] for i in everything if i["id"] in newest_ids]
    for bad in ("0", "x", "10001"):
        status, body = await api.get(url, last=bad)
        assert status == 400 and body["error"].startswith("last: ")


async def test_timeline_of_a_client_with_one_message(api: Api) -> None:
    status, body = await api.get(f"/api/clients/{api.data.ivan.client_id}/timeline")
    assert status == 200
    assert [(i["direction"], i["text"]) for i in body] == [
        ("in", IVAN_TEXT),
        ("event", "routed: nobody available: queued"),
    ]
    assert body[0]["at"] == "2026-01-05T08:00:00+00:00"  # sent at 11:00 Moscow time


async def test_conversations_by_status(api: Api) -> None:
    d = api.data
    status, body = await api.get("/api/conversations", status="open")
    assert status == 200
    assert body == [
        {
            "id": d.ivan.conversation_id,
            "client_id": d.ivan.client_id,
            "channel": "telegram",
            "status": "open",
            "assignee": None,
            "subject": None,
            "created_at": "2026-01-05T10:00:00+00:00",
            "first_response_at": None,
            "due_at": None,
        },
        {
            "id": d.anna_email.conversation_id,
            "client_id": d.anna_email.client_id,
            "channel": "email",
            "status": "open",
            "assignee": OLGA,
            "subject": "Invoice",
            "created_at": "2026-01-05T10:00:00+00:00",
            "first_response_at": None,
            "due_at": None,
        },
    ]
    assert _ids((await api.get("/api/conversations", status="pending"))[1]) == [
        d.anna_form.conversation_id
    ]
    resolved = (await api.get("/api/conversations", status="resolved"))[1]
    assert [(c["id"], c["status"], c["client_id"]) for c in resolved] == [
        (d.maria.conversation_id, "resolved", d.maria.client_id)
    ]
    everything = [
        d.ivan.conversation_id,
        d.anna_email.conversation_id,
        d.anna_form.conversation_id,
        d.maria.conversation_id,
    ]
    assert _ids((await api.get("/api/conversations"))[1]) == everything
    assert _ids((await api.get("/api/conversations", status=""))[1]) == everything


@pytest.mark.parametrize(
    ("path", "params", "word"),
    [
        ("/api/clients", {"limit": 0}, "limit"),
        ("/api/clients", {"limit": 1001}, "limit"),
        ("/api/clients", {"limit": "ten"}, "limit"),
        ("/api/clients", {"limit": "-5"}, "limit"),
        ("/api/clients", {"limit": "1.5"}, "limit"),
        ("/api/clients", {"offset": "-1"}, "offset"),
        ("/api/clients", {"offset": "x"}, "offset"),
        ("/api/clients", {"offset": "99999999999"}, "offset"),
        ("/api/clients", {"limit": "1" + "0" * 5000}, "limit"),
        ("/api/clients", {"q": "x" * 201}, "q"),
        ("/api/conversations", {"status": "closed"}, "status"),
        ("/api/conversations", {"limit": "1e3"}, "limit"),
        ("/api/clients/abc", {}, "id"),
        ("/api/clients/0", {}, "id"),
        ("/api/clients/-3", {}, "id"),
        ("/api/clients/1.0/timeline", {}, "id"),
        # issue 16: past the ids a database holds is no id either
        ("/api/clients/99999999999", {}, "id"),
        ("/api/clients/99999999999/timeline", {}, "id"),
        ("/api/clients/" + "9" * 5000, {}, "id"),
    ],
)
async def test_bad_input_is_400_naming_the_parameter(
    api: Api, path: str, params: dict[str, str | int], word: str
) -> None:
    status, _, body = await api.raw("GET", path, params)
    assert status == 400
    assert body["error"].startswith(f"{word}:")


@pytest.mark.parametrize(
    "path",
    [
        "/api/clients/999",
        "/api/clients/999/timeline",
        "/api/clients/2147483647",
    ],
)
async def test_unknown_client_is_404(api: Api, path: str) -> None:
    status, body = await api.get(path)
    assert status == 404
    assert body == {"error": f"client {path.split('/')[3][:40]} not found"}


@pytest.mark.parametrize("path", ["/api/nothing", "/api/clients/1/notes", "/api", "/nothing"])
async def test_unknown_route_is_404_json(api: Api, path: str) -> None:
    status, body = await api.get(path)
    assert status == 404
    assert body == {"error": f"not found: {path}"}


async def test_wrong_method_is_405_json(api: Api) -> None:
    status, headers, body = await api.raw("POST", "/api/clients")
    assert status == 405
    assert "GET" in headers["Allow"]
    assert "error" in body


async def test_russian_text_is_readable_utf8(api: Api) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with api.session.get(
        f"{api.base}/api/clients/{api.data.ivan.client_id}/timeline", headers=headers
    ) as resp:
        raw = await resp.read()
    assert IVAN_TEXT.encode("utf-8") in raw
    assert b"\\u04" not in raw
    status, body = await api.get("/api/clients", q="Иван Петров")
    assert (status, [c["name"] for c in body]) == (200, ["Иван Петров"])


async def test_one_log_line_per_request_without_the_token(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hub.admin")
    await api.get("/api/clients", q="schmidt")
    await api.get("/api/clients", token="admin-token-WRONG")
    await api.get("/healthz", token=None)
    lines = [r.getMessage() for r in caplog.records if r.name == "hub.admin"]
    assert len(lines) == 3
    assert lines[0].startswith("admin.request method=GET path=/api/clients status=200 ms=")
    assert lines[1].startswith("admin.request method=GET path=/api/clients status=401 ms=")
    assert lines[2].startswith("admin.request method=GET path=/healthz status=503 ms=")
    assert not any(TOKEN in line or "WRONG" in line for line in lines)


async def test_create_app_refuses_an_empty_token(db: Database) -> None:
    with pytest.raises(ValueError, match="token"):
        create_app(db, "", lambda: True)


async def test_server_stop_closes_the_port(db: Database) -> None:
    server = AdminServer(create_app(db, TOKEN, lambda: True))
    await server.start("127.0.0.1", 0)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{server.port}/healthz") as resp,
        ):
            assert resp.status == 200
    finally:
        await server.stop()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(f"http://127.0.0.1:{server.port}/healthz"):
                pass


async def test_search_by_internationalized_email(api: Api, db: Database, tmp_path: Path) -> None:
    ingestor = Ingestor(db, FrozenClock(NOW), AttachmentStore(tmp_path / "files", 10**6))
    await ingestor.start()
    try:
        petr = await ingestor(
            InboundMessage(
                Channel.EMAIL,
                "support",
                "<m9@xn--e1afmkfd.xn--p1ai>",
                (identity("email", "Пётр@Пример.РФ", "Пётр"),),
                NOW,
                text="Добрый день",
            )
        )
    finally:
        await ingestor.stop()
    status, body = await api.get("/api/clients", q="пётр@пример.рф")
    assert status == 200
    assert body == [
        {
            "id": petr.client_id,
            "name": "Пётр",
            "stage": "prospect",
            "owner": OLGA,
            "identities": [{"kind": "email", "value": "пётр@xn--e1afmkfd.xn--p1ai"}],
        }
    ]
