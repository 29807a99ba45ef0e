"""Outgoing events (issue 18): signed POSTs to ``[[webhooks]]``, at least once, in
order per client; an event that keeps failing is parked (counted in /metrics,
listed and replayed through the admin API) and the client's later events go on.
A real hub on both backends, a local aiohttp receiver that checks every signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import insert, select, update

from hub import config as hub_config
from hub.admin.tokens import Tokens
from hub.app.cli import main
from hub.app.run import Hub
from hub.clients.book import ClientBook
from hub.config.sections import WEBHOOK_EVENTS
from hub.kernel.identities import identity
from hub.kernel.types import Channel, InboundMessage, IngestResult
from storage import Database
from storage import webhooks as webhooks_q
from storage.models import Audit, Interaction, Outbox
from storage.tables import clients
from tests.cluster import free_port, to_toml
from tests.fakes import RecordingChannel

TOKEN = "webhooks-admin-token-0123456789"
SECRET = "whsec-0123456789abcdef"
Verdict = int | float | None  # a status to answer, seconds to hang, or None: take it


@dataclass
class Delivery:
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def client(self) -> int | None:
        value = self.body["data"].get("client_id")
        return int(value) if value is not None else None


@dataclass
class Receiver:
    """A webhook receiver on loopback: checks each signature, answers as ``verdict``
    says, keeps what it took (a 2xx)."""

    secret: bytes = SECRET.encode()
    got: list[Delivery] = field(default_factory=list)
    forged: list[str] = field(default_factory=list)
    requests: int = 0
    verdict: Callable[[dict[str, Any]], Verdict] = lambda body: None
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests += 1
        fields = dict(
            part.split("=", 1) for part in request.headers.get("X-Hub-Signature", "").split(",")
        )
        expected = hmac.new(
            self.secret, fields.get("t", "").encode() + b"." + raw, hashlib.sha256
        ).hexdigest()
        body = json.loads(raw)
        if not hmac.compare_digest(expected, fields.get("v1", "")) or request.headers.get(
            "X-Hub-Event-Id"
        ) != body.get("id"):
            self.forged.append(raw.decode())
            return web.Response(status=401)
        verdict = self.verdict(body)
        if isinstance(verdict, float):
            await asyncio.sleep(verdict)  # longer than the hub waits: it gives up
            return web.Response(status=200)
        if verdict is not None:
            return web.Response(status=verdict)
        async with self.changed:
            self.got.append(Delivery(body, dict(request.headers)))
            self.changed.notify_all()
        return web.Response(status=204)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        async def waiter() -> None:
            async with self.changed:
                await self.changed.wait_for(predicate)

        try:
            await asyncio.wait_for(waiter(), timeout)
        except TimeoutError:
            types = [d.body["type"] for d in self.got]
            raise AssertionError(f"receiver timed out; got {types}") from None

    def types(self) -> list[str]:
        return [d.body["type"] for d in self.got]

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [d.body["data"] for d in self.got if d.body["type"] == type_]


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    rec.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


class ShiftedClock:
    """The system clock, moved forward by the test (deadlines fall due) and never back."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


def config(
    db_url: str, tmp_path: Path, url: str | None, *, events: list[str] | None = None, **extra: Any
) -> hub_config.Config:
    values: dict[str, Any] = {
        "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
        "admin": {"listen": f"127.0.0.1:{free_port()}", "token": TOKEN},
        "dispatcher": {
            "max_attempts": 50,
            "backoff_base_s": 0.02,
            "backoff_max_s": 0.1,
            "idle_poll_s": 0.2,
        },
        "managers": [
            {"name": "Анна", "telegram_id": 501},
            {"name": "Вера", "telegram_id": 503},
        ],
        **extra,
    }
    if url is not None:
        values["webhooks"] = [
            {
                "name": "crm",
                "url": url,
                "events": events or ["*"],
                "secret": SECRET,
                "timeout_s": 0.3,
            }
        ]
    path = tmp_path / f"hub-{free_port()}.toml"
    path.write_text(to_toml(values))
    return hub_config.load(path)


async def say(channel: RecordingChannel, hub: Hub, user: int, text: str) -> IngestResult:
    assert channel.sink is not None
    return await channel.sink(
        InboundMessage(
            Channel.TELEGRAM,
            "bot",
            f"{user}:{text}",
            (identity("telegram", user, f"Client {user}"),),
            hub.clock.now(),
            text=text,
        )
    )


async def new_clients(db: Database, n: int) -> list[int]:
    now = datetime.now(UTC)
    async with db.write() as conn:
        result = await conn.execute(
            insert(clients).returning(clients.c.id),
            [
                {
                    "name": f"client {i}",
                    "stage": "prospect",
                    "opted_out": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(n)
            ],
        )
        return sorted(int(r[0]) for r in result)


async def emit(hub: Hub, ids: list[int], per_client: int, start: int = 0) -> None:
    """``per_client`` events of each client, interleaved, in a few transactions."""
    assert hub.db is not None and hub.dispatcher is not None
    for seq in range(start, start + per_client):
        now = hub.clock.now()
        events = [
            webhooks_q.Emitted("event.recorded", c, now, {"client_id": c, "seq": seq}) for c in ids
        ]
        async with hub.db.write() as conn:
            await webhooks_q.emit(conn, events, now)
    hub.dispatcher.wake()


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll a condition nothing notifies about (the database, a request count)."""
    async with asyncio.timeout(timeout):
        while True:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return
            await asyncio.sleep(0.05)


async def settled(hub: Hub) -> bool:
    """No outgoing event is waiting or being sent (each recorded sent or parked)."""
    assert hub.db is not None
    async with hub.db.read() as conn:
        return not (await webhooks_q.counts(conn)).get("crm", webhooks_q.Queued()).pending


def in_order(rec: Receiver, ids: list[int], per_client: int) -> None:
    """Every client's events taken once each, in the order they were emitted."""
    for c in ids:
        seqs = [d.body["data"]["seq"] for d in rec.got if d.client == c]
        assert seqs == list(range(per_client)), (c, seqs)


async def api(
    hub: Hub, method: str, path: str, *, token: str = TOKEN, **kwargs: Any
) -> tuple[int, Any]:
    assert hub.admin is not None
    url = f"http://127.0.0.1:{hub.admin.port}{path}"
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, headers=headers, **kwargs) as response,
    ):
        text = await response.text()
        data = json.loads(text) if response.content_type == "application/json" else text
        return response.status, data


# -- each event type ---------------------------------------------------------------


async def test_every_event_type_arrives_signed_with_the_contracts_body(
    db_url: str, tmp_path: Path
) -> None:
    clock = ShiftedClock()
    sla = {"policies": [{"name": "fast", "first_response_minutes": 15, "calendar": "calendar"}]}
    async with receiver() as rec:
        channel = RecordingChannel("telegram")
        hub = Hub(
            config(db_url, tmp_path, rec.url, sla=sla),
            clock=clock,
            channels={"telegram": channel},
        )
        async with hub.lifespan():
            assert hub.desk is not None and hub.db is not None
            first = await say(channel, hub, 71, "where is my order?")
            await rec.wait_for(lambda: "conversation.assigned" in rec.types())
            assert rec.types()[:3] == ["client.created", "message.in", "conversation.assigned"]
            (created,) = rec.of("client.created")
            assert created == {
                "client_id": first.client_id,
                "name": "Client 71",
                "channel": "telegram",
            }
            (said,) = rec.of("message.in")
            assert said["text"] == "where is my order?"
            assert said["interaction_id"] == first.interaction_id
            assert said["conversation_id"] == first.conversation_id
            assert rec.of("conversation.assigned")[0]["by"] == "routing"

            # The deadline passes unmet: missed, then reassigned.
            clock.advance(timedelta(minutes=16))
            for _ in range(3):
                await hub.escalate()
            await rec.wait_for(lambda: "deadline.missed" in rec.types())
            (missed,) = rec.of("deadline.missed")
            assert missed["conversation_id"] == first.conversation_id
            assert missed["policy"] == "fast" and missed["deadline"] == "first_response"

            anna = await hub.desk.manager(501)
            assert anna is not None
            await hub.desk.act(first.client_id, anna, "take")
            answer_id = await hub.desk.answer(first.client_id, "today", manager=anna, key="a1")
            await hub.desk.act(first.client_id, anna, "transfer", "Вера")
            await hub.desk.act(first.client_id, anna, "resolve")
            second = await say(channel, hub, 72, "hello")
            await ClientBook(hub.db, hub.clock).merge(
                first.client_id, second.client_id, actor="test"
            )
            await rec.wait_for(lambda: "client.merged" in rec.types())

            (out,) = rec.of("message.out")
            assert out == {
                "client_id": first.client_id,
                "conversation_id": first.conversation_id,
                "interaction_id": answer_id,
                "channel": "telegram",
                "text": "today",
                "manager": "Анна",
            }
            (answered,) = rec.of("conversation.answered")
            assert answered["manager"] == "Анна" and answered["interaction_id"] == answer_id
            assigned = [(a["by"], a["manager"]) for a in rec.of("conversation.assigned")]
            assert ("take", "Анна") in assigned and ("transfer", "Вера") in assigned
            (resolved,) = rec.of("conversation.resolved")
            assert resolved == {
                "client_id": first.client_id,
                "conversation_id": first.conversation_id,
                "manager": "Анна",
            }
            (merged,) = rec.of("client.merged")
            assert merged["client_id"] == first.client_id
            assert merged["merged_id"] == second.client_id

            # Every type of the contract, queued as the other parts queue theirs.
            before = len(rec.got)
            now = hub.clock.now()
            async with hub.db.write() as conn:
                await webhooks_q.emit(
                    conn,
                    [webhooks_q.Emitted(t, first.client_id, now, {"n": t}) for t in WEBHOOK_EVENTS],
                    now,
                )
            assert hub.dispatcher is not None
            hub.dispatcher.wake()
            await rec.wait_for(lambda: len(rec.got) == before + len(WEBHOOK_EVENTS))
            assert [d.body["type"] for d in rec.got[before:]] == list(WEBHOOK_EVENTS)

    assert rec.forged == []
    ids = set()
    for d in rec.got:
        assert set(d.body) == {"id", "type", "at", "data"}
        assert d.headers["X-Hub-Event-Id"] == d.body["id"]
        assert d.headers["Content-Type"] == "application/json"
        assert datetime.fromisoformat(d.body["at"]).utcoffset() is not None
        ids.add(d.body["id"])
    assert len(ids) == len(rec.got)  # one id per event


# -- failures, retries, parking ----------------------------------------------------


async def test_a_failing_receiver_recovers_and_every_event_arrives_in_order(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rng = random.Random(18)
    async with receiver() as rec:
        failures = 0

        def flaky(body: dict[str, Any]) -> Verdict:
            nonlocal failures
            if failures >= 120:
                return None  # recovered
            failures += 1
            return 0.6 if rng.random() < 0.1 else rng.choice([500, 502, 503, 404, None])

        rec.verdict = flaky
        hub = Hub(config(db_url, tmp_path, rec.url, events=["event.recorded"]), channels={})
        async with hub.lifespan():
            assert hub.db is not None
            ids = await new_clients(hub.db, 12)
            await emit(hub, ids, 8)
            await rec.wait_for(lambda: len(rec.got) >= len(ids) * 8, timeout=60)

            await until(lambda: settled(hub))
            async with hub.db.read() as conn:
                left = await conn.execute(
                    select(Outbox.status).where(Outbox.channel == "webhook").distinct()
                )
                assert set(left.scalars()) == {"sent"}
    assert failures == 120
    assert rec.forged == []
    in_order(rec, ids, 8)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("hub"))
    assert "outbox.retry" in ours
    leaked = [r.name for r in caplog.records if SECRET in r.getMessage()]
    assert leaked == []
    assert "/hook" not in ours  # nor the URL


async def test_an_event_failing_past_its_retries_is_parked_shown_and_replayed(
    db_url: str, tmp_path: Path
) -> None:
    async with receiver() as rec:
        broken = True
        rec.verdict = lambda body: 500 if broken and body["data"]["seq"] == 0 else None
        settings = config(
            db_url,
            tmp_path,
            rec.url,
            events=["event.recorded"],
            dispatcher={"max_attempts": 3, "backoff_base_s": 0.02, "idle_poll_s": 0.2},
        )
        hub = Hub(settings, channels={})
        async with hub.lifespan():
            assert hub.db is not None
            a, b = await new_clients(hub.db, 2)
            await emit(hub, [a], 3)
            await emit(hub, [b], 1, start=5)
            # a's first is parked; a's later events and b's go on.
            await rec.wait_for(lambda: len(rec.got) == 3)
            assert sorted((d.client, d.body["data"]["seq"]) for d in rec.got) == [
                (a, 1),
                (a, 2),
                (b, 5),
            ]
            await until(lambda: settled(hub))
            status, parked = await api(hub, "GET", "/api/webhooks/parked?webhook=crm")
            assert status == 200 and len(parked) == 1
            (row,) = parked
            assert row["webhook"] == "crm" and row["type"] == "event.recorded"
            assert row["client_id"] == a and row["attempts"] == 3
            assert row["last_error"] == "gave up after 3 attempts: the receiver answered 500"
            supervisor = await Tokens(hub.db).add("mary", "supervisor")
            status, _ = await api(hub, "GET", "/api/webhooks/parked", token=supervisor)
            assert status == 403
            status, metrics = await api(hub, "GET", "/metrics")
            assert 'hub_webhook_parked{webhook="crm"} 1.0' in metrics
            assert 'hub_webhook_pending{webhook="crm"} 0.0' in metrics
            async with hub.db.read() as conn:
                told = await conn.execute(
                    select(Interaction.text).where(Interaction.text.like("delivery failed%"))
                )
                assert list(told.scalars()) == []  # not news for the client's record

            status, answer = await api(hub, "POST", "/api/webhooks/parked/replay", json={})
            assert status == 400 and "ids" in answer["error"]
            broken = False
            status, answer = await api(
                hub, "POST", "/api/webhooks/parked/replay", json={"ids": [row["id"]]}
            )
            assert status == 200 and answer == {"replayed": [row["id"]]}
            await rec.wait_for(lambda: len(rec.got) == 4)
            await until(lambda: settled(hub))
            assert rec.got[-1].client == a and rec.got[-1].body["data"]["seq"] == 0
            status, parked = await api(hub, "GET", "/api/webhooks/parked")
            assert parked == []
            status, metrics = await api(hub, "GET", "/metrics")
            assert 'hub_webhook_parked{webhook="crm"}' not in metrics  # none left
            async with hub.db.read() as conn:
                audited = await conn.execute(
                    select(Audit.actor, Audit.details).where(Audit.action == "webhooks.replay")
                )
                ((actor, details),) = audited.all()
                assert actor == "api:config" and details["ids"] == [row["id"]]
    assert rec.forged == []


async def test_a_webhook_removed_by_a_reload_parks_its_queue(db_url: str, tmp_path: Path) -> None:
    async with receiver() as rec:
        rec.verdict = lambda body: 503  # nothing gets through meanwhile
        settings = config(db_url, tmp_path, rec.url, events=["event.recorded"])
        hub = Hub(settings, channels={})
        async with hub.lifespan():
            assert hub.db is not None
            (a,) = await new_clients(hub.db, 1)
            await emit(hub, [a], 2)
            await until(lambda: rec.requests >= 2)  # retrying
            result = await hub.reload(hub.config.model_copy(update={"webhooks": []}))
            assert result.ok and result.changed == ("webhooks",)

            async def both_parked() -> bool:
                assert hub.db is not None
                async with hub.db.read() as conn:
                    return len(await webhooks_q.parked(conn)) == 2

            # The one under way is parked when its retry finds its webhook gone.
            await until(both_parked)
            async with hub.db.read() as conn:
                rows = await webhooks_q.parked(conn)
            assert {r.last_error for r in rows} == {webhooks_q.UNCONFIGURED}
            async with hub.db.read() as conn:
                assert await webhooks_q.subscribers(conn) == {}


async def test_nothing_is_queued_when_no_webhook_subscribes(db_url: str, tmp_path: Path) -> None:
    channel = RecordingChannel("telegram")
    hub = Hub(config(db_url, tmp_path, None), channels={"telegram": channel})
    async with hub.lifespan():
        assert hub.db is not None and hub.desk is not None and hub.dispatcher is not None
        assert "webhook" not in hub.dispatcher.channels
        said = await say(channel, hub, 81, "hi")
        anna = await hub.desk.manager(501)
        assert anna is not None
        await hub.desk.answer(said.client_id, "hello", manager=anna, key="n1")
        await hub.desk.act(said.client_id, anna, "resolve")
        async with hub.db.read() as conn:
            queued = await conn.execute(select(Outbox.id).where(Outbox.channel == "webhook"))
            assert list(queued.scalars()) == []


# -- two instances -----------------------------------------------------------------


async def test_two_instances_on_one_database_keep_each_clients_order(
    db_url: str, tmp_path: Path
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("several instances share PostgreSQL")
    rng = random.Random(9)
    async with receiver() as rec:

        def jittery(body: dict[str, Any]) -> Verdict:
            return rng.choice([None, None, None, 500])

        rec.verdict = jittery
        hubs = [
            Hub(config(db_url, tmp_path, rec.url, events=["event.recorded"]), channels={})
            for _ in range(2)
        ]
        async with hubs[0].lifespan(), hubs[1].lifespan():
            assert hubs[0].db is not None
            ids = await new_clients(hubs[0].db, 30)
            await emit(hubs[0], ids[:15], 10)
            await emit(hubs[1], ids[15:], 10)
            await rec.wait_for(lambda: len(rec.got) >= 300, timeout=60)
        workers = {h.dispatcher.worker for h in hubs if h.dispatcher}
        assert len(workers) == 2
        db = Database(db_url)
        try:
            async with db.read() as conn:
                by = await conn.execute(
                    select(Outbox.claimed_by).where(Outbox.channel == "webhook").distinct()
                )
                assert set(by.scalars()) == workers  # both instances sent
        finally:
            await db.dispose()
    assert rec.forged == []
    in_order(rec, ids, 10)


# -- the command line --------------------------------------------------------------


def hub_command(*args: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    return int(done.value.code or 0)


def test_the_command_line_lists_and_replays_parked_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/hub.db"
    path = tmp_path / "hub.toml"
    path.write_text(f'[admin]\ntoken = "t"\n[storage]\nurl = "{url}"\n')
    assert hub_command("migrate", "--config", str(path)) == 0
    capsys.readouterr()

    async def park() -> tuple[int, int]:
        db = Database(url)
        try:
            (client,) = await new_clients(db, 1)
            now = datetime.now(UTC)
            async with db.write() as conn:
                await webhooks_q.sync(conn, [("crm", ["*"])])
                events = [webhooks_q.Emitted("message.in", client, now, {"n": n}) for n in (1, 2)]
                await webhooks_q.emit(conn, events, now)
                await conn.execute(
                    update(Outbox).values(
                        status="failed", attempts=3, last_error="the receiver answered 500"
                    )
                )
                ids = (await conn.execute(select(Outbox.id).order_by(Outbox.id))).scalars()
                return client, next(iter(ids))
        finally:
            await db.dispose()

    client, first = asyncio.run(park())
    assert hub_command("webhooks", "parked", "--config", str(path)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{first}\tcrm\tmessage.in\tclient {client}\t3 attempts\t")
    assert lines[0].endswith("the receiver answered 500")

    assert hub_command("webhooks", "replay", "--config", str(path)) == 2
    assert "expected" in capsys.readouterr().err
    assert hub_command("webhooks", "replay", "--config", str(path), str(first)) == 0
    assert capsys.readouterr().out.strip() == f"replayed 1 event(s): {first}"
    assert hub_command("webhooks", "replay", "--config", str(path), "--webhook", "crm") == 0
    assert capsys.readouterr().out.strip() == f"replayed 1 event(s): {first + 1}"
    assert hub_command("webhooks", "parked", "--config", str(path)) == 0
    assert capsys.readouterr().out == ""

    async def audited() -> list[str]:
        db = Database(url)
        try:
            async with db.read() as conn:
                found = await conn.execute(
                    select(Audit.actor).where(Audit.action == "webhooks.replay")
                )
                return list(found.scalars())
        finally:
            await db.dispose()

    assert asyncio.run(audited()) == ["cli", "cli"]


async def test_bad_calls_of_the_parked_events_get_a_clear_400(db_url: str, tmp_path: Path) -> None:
    hub = Hub(config(db_url, tmp_path, None), channels={})
    async with hub.lifespan():
        for query in ("limit=0", "limit=abc", "limit=1001", "webhook=" + "x" * 101, "webhook=%00"):
            status, answer = await api(hub, "GET", f"/api/webhooks/parked?{query}")
            assert status == 400 and answer["error"], query
        replay = "/api/webhooks/parked/replay"
        for body in (
            b"not json",
            b"[1]",
            b'{"ids": []}',
            b'{"ids": [true]}',
            b'{"ids": ["1"]}',
            b'{"ids": [1e3]}',
            b'{"ids": [99999999999999999999]}',
            b'{"ids": [1], "webhook": "crm"}',
            b'{"webhook": ""}',
            b'{"webhook": 5}',
            b'{"webhook": "crm\\u0000"}',  # PostgreSQL's text refuses a NUL: a 503 before
            b"[" * 100_000 + b"]" * 100_000,
        ):
            status, answer = await api(hub, "POST", replay, data=body)
            assert status == 400 and answer["error"], body[:40]
        status, answer = await api(hub, "POST", replay, json={"ids": [12345]})
        assert status == 200 and answer == {"replayed": []}  # nothing parked: nothing done
        status, answer = await api(hub, "GET", "/api/webhooks/parked?webhook=nobody")
        assert status == 200 and answer == []


async def test_a_webhook_added_by_a_reload_gets_the_events_from_then_on(
    db_url: str, tmp_path: Path
) -> None:
    async with receiver() as rec:
        channel = RecordingChannel("telegram")
        hub = Hub(config(db_url, tmp_path, None), channels={"telegram": channel})
        async with hub.lifespan():
            assert hub.dispatcher is not None and "webhook" not in hub.dispatcher.channels
            before = await say(channel, hub, 91, "before")
            new = config(db_url, tmp_path, rec.url, events=["message.in"])
            result = await hub.reload(new.model_copy(update={"admin": hub.config.admin}))
            assert result.ok and result.changed == ("webhooks",)
            after = await say(channel, hub, 91, "after")
            await rec.wait_for(lambda: len(rec.got) == 1)
            (said,) = rec.of("message.in")
            assert said["interaction_id"] == after.interaction_id != before.interaction_id
    assert rec.forged == []
