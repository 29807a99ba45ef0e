"""Two ``hub run`` instances on one PostgreSQL under mixed load and faults (issue 9).

Real processes (tests/cluster.py) with Telegram in webhook mode behind a load
balancer, SMTP on each instance, one Dovecot mailbox (held by one instance at a
time), a form server on each, and outbound mail through a capturing relay. The
Bot API stand-in plays Telegram (it posts each update until it gets a 2xx);
senders of mail and forms retry on another instance until they get 250 or 201.

- One instance is killed with SIGKILL at random moments, several times, and
  restarted: every acknowledged message is logged exactly once, every outbound
  message arrives, every reminder fires once. Duplicates are counted: an
  outbound message sent in the moment between the peer's acceptance and the
  commit of "sent" is sent again by the instance that takes its lease over.
- The database is restarted under load: meanwhile senders get 451 and 5xx,
  afterwards the instances go on by themselves and nothing is lost.

Counts are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aioimaplib  # type: ignore[import-untyped]
import aiosmtplib
import pytest
from sqlalchemy import insert, select

from storage import Database
from storage.models import Interaction, Manager, Outbox, Reminder
from tests import dovecot, pg
from tests.botapi import BotApiServer, Limits
from tests.cluster import (
    DESK,
    WEBHOOK_SECRET,
    Balancer,
    HubProcess,
    Sink,
    instance_config,
    sink,
)
from tests.conftest import _pg_database

pytestmark = pytest.mark.slow

SMTP_PROBE = "smtp-900001"
TOKEN_RE = re.compile(r"\b((?:tg|smtp|imap|form|rem)-\d+)\b")
PER_CHANNEL = 20
REMINDERS = 20
KILLS = 3
LOAD_S = 12.0  # the load is spread over about this long, the kills fall inside
CLIENTS = 5  # per channel: a few clients writing often, as in life
STAFF_GROUPS = 6  # Telegram lets a bot post 20 messages a minute into a group


@pytest.fixture(scope="module")
def imap_server() -> Any:
    srv = dovecot.start()
    try:
        yield srv
    finally:
        srv.stop()


async def until(
    predicate: Callable[[], Awaitable[bool]], timeout: float, what: str, poll: float = 0.2
) -> None:
    """Poll a condition nothing can notify about (other processes, the database)."""
    try:
        async with asyncio.timeout(timeout):
            while not await predicate():
                await asyncio.sleep(poll)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@dataclass
class Load:
    """What the senders sent and what they got acknowledged."""

    sent: Counter[str] = field(default_factory=Counter)
    acked: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # temporary errors seen
    tokens: dict[str, set[str]] = field(default_factory=dict)

    def token(self, channel: str, n: int) -> str:
        token = f"{channel}-{n}"
        self.tokens.setdefault(channel, set()).add(token)
        self.sent[channel] += 1
        return token


@dataclass
class Cluster:
    db_url: str
    instances: list[HubProcess]
    telegram: BotApiServer
    sink: Sink
    balancer: Balancer
    imap: dovecot.DovecotServer
    folder: str
    manager_id: int

    def live(self) -> list[HubProcess]:
        return [i for i in self.instances if i.running]


@contextlib.asynccontextmanager
async def cluster(
    pg_server: pg.PgServer, imap_server: dovecot.DovecotServer, tmp_path: Path, folder: str
) -> AsyncIterator[Cluster]:
    db_url = await _pg_database(pg_server)
    client = aioimaplib.IMAP4(imap_server.host, imap_server.port, timeout=15)
    await client.wait_hello_from_server()
    await client.login(imap_server.user, imap_server.password)
    await client.create(folder)
    await client.logout()
    instances: list[HubProcess] = []
    async with (
        BotApiServer(limits=Limits.off(), webhook_parallel=8) as telegram,
        sink() as (relay, relay_port),
    ):
        manager = telegram.add_manager("Maria")
        telegram.bot.started.add(manager.id)  # reminders reach the manager in private
        balancer = Balancer(instances)
        extra = [telegram.add_group(f"Staff {n}").id for n in range(1, STAFF_GROUPS)]
        for name in ("a", "b"):
            config = instance_config(
                db_url=db_url,
                files=tmp_path / "files",
                bot_token=telegram.token,
                api_base=telegram.base_url,
                staff_chat_id=telegram.forum.id,
                manager_id=manager.id,
                webhook_url=balancer.url,
                extra_staff_chat_ids=extra,
                relay_port=relay_port,
                imap={
                    "host": imap_server.host,
                    "port": imap_server.port,
                    "user": imap_server.user,
                    "password": imap_server.password,
                    "folder": folder,
                    "tls": False,
                },
            )
            instances.append(HubProcess(name, config, tmp_path))
        async with balancer:
            try:
                for instance in instances:
                    await instance.start()
                for instance in instances:
                    await instance.ready()
                yield Cluster(
                    db_url, instances, telegram, relay, balancer, imap_server, folder, manager.id
                )
            finally:
                for instance in instances:
                    await instance.stop()


# -- the senders ------------------------------------------------------------------


async def send_telegram(c: Cluster, load: Load, count: int) -> None:
    users = [c.telegram.add_user(f"Client{n}") for n in range(CLIENTS)]
    for n in range(count):
        token = load.token("tg", n)
        await c.telegram.user_sends(users[n % len(users)], text=f"hello {token}")
        await asyncio.sleep(random.uniform(0, 2 * LOAD_S / count))  # the load's pace


async def send_smtp(c: Cluster, load: Load, count: int) -> None:
    async def one(n: int) -> None:
        token = load.token("smtp", n)
        message = EmailMessage()
        message["From"] = f"Client {n % CLIENTS} <smtp{n % CLIENTS}@example.org>"
        message["To"] = DESK
        message["Subject"] = f"question {token}"
        message["Message-ID"] = f"<{token}@example.org>"
        message.set_content(f"hello {token}")
        while True:
            live = c.live() or c.instances
            target = random.choice(live)
            try:
                await aiosmtplib.send(
                    message, hostname="127.0.0.1", port=target.smtp_port, timeout=20
                )
            except (aiosmtplib.SMTPException, OSError) as exc:
                if isinstance(exc, aiosmtplib.SMTPResponseException):
                    load.refused[f"smtp {exc.code}"] += 1
                else:
                    load.refused["smtp unreachable"] += 1
                await asyncio.sleep(0.2)  # a sender's retry interval
                continue
            load.acked["smtp"] += 1
            return

    await _spread(count, one, 4)


async def send_forms(c: Cluster, load: Load, count: int) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:

        async def one(n: int) -> None:
            token = load.token("form", n)
            body = {
                "name": f"Form Client {n % CLIENTS}",
                "email": f"form{n % CLIENTS}@example.org",
                "message": f"hello {token}",
            }
            headers = {"Accept": "application/json", "Idempotency-Key": token}
            while True:
                target = random.choice(c.live() or c.instances)
                url = f"http://127.0.0.1:{target.form_port}/f/contact"
                try:
                    async with http.post(url, json=body, headers=headers) as resp:
                        if resp.status == 201:
                            load.acked["form"] += 1
                            return
                        load.refused[f"form {resp.status}"] += 1
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.2)  # a browser's retry

        await _spread(count, one, 4)


async def send_imap(c: Cluster, load: Load, count: int) -> None:
    client = aioimaplib.IMAP4(c.imap.host, c.imap.port, timeout=15)
    await client.wait_hello_from_server()
    await client.login(c.imap.user, c.imap.password)
    try:
        for n in range(count):
            token = load.token("imap", n)
            raw = (
                f"From: Mail {n % CLIENTS} <imap{n % CLIENTS}@example.org>\r\nTo: {DESK}\r\n"
                f"Subject: {token}\r\nMessage-ID: <{token}@example.org>\r\n\r\n"
                f"hello {token}\r\n"
            ).encode()
            response = await client.append(raw, mailbox=c.folder)
            assert response.result == "OK"
            load.acked["imap"] += 1  # in the mailbox: the hub must take it from there
            await asyncio.sleep(random.uniform(0, 2 * LOAD_S / count))  # the load's pace
    finally:
        await client.logout()


async def _spread(count: int, one: Callable[[int], Awaitable[None]], workers: int) -> None:
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            await one(queue.pop(0))
            await asyncio.sleep(random.uniform(0, 2 * LOAD_S * workers / count))  # the pace

    await asyncio.gather(*(worker() for _ in range(workers)))


async def add_reminders(c: Cluster, load: Load, count: int, over_s: float) -> None:
    db = Database(c.db_url)
    now = datetime.now(UTC)
    try:
        async with db.write() as conn:
            manager = (
                await conn.execute(select(Manager.id).where(Manager.telegram_id == c.manager_id))
            ).scalar_one()
            for n in range(count):
                token = load.token("rem", n)
                await conn.execute(
                    insert(Reminder).values(
                        manager_id=manager,
                        due_at=now + timedelta(seconds=1 + over_s * n / count),
                        text=f"call back {token}",
                        created_at=now,
                    )
                )
    finally:
        await db.dispose()


# -- the checks -------------------------------------------------------------------


async def logged_tokens(db_url: str) -> Counter[str]:
    db = Database(db_url)
    try:
        async with db.read() as conn:
            texts = (
                await conn.execute(select(Interaction.text).where(Interaction.direction == "in"))
            ).scalars()
            return Counter(t for text in texts for t in set(TOKEN_RE.findall(text or "")))
    finally:
        await db.dispose()


async def outbox_open(db_url: str) -> int:
    db = Database(db_url)
    try:
        async with db.read() as conn:
            rows = await conn.execute(select(Outbox.id).where(Outbox.status != "sent"))
            return len(rows.all())
    finally:
        await db.dispose()


async def reminders_fired(db_url: str) -> list[int]:
    db = Database(db_url)
    try:
        async with db.read() as conn:
            return list((await conn.execute(select(Reminder.fired_count))).scalars())
    finally:
        await db.dispose()


async def diagnose(c: Cluster) -> str:
    db = Database(c.db_url)
    try:
        async with db.read() as conn:
            outbox = Counter(
                (await conn.execute(select(Outbox.kind, Outbox.status, Outbox.last_error))).all()
            )
            reminders = Counter(
                (await conn.execute(select(Reminder.status, Reminder.fired_count))).all()
            )
    finally:
        await db.dispose()
    logs = "\n".join(f"--- {i.name}\n{i.tail(15)}" for i in c.instances)
    return f"outbox {dict(outbox)} reminders {dict(reminders)}\n{logs}"


def _plain(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    return str(body.get_content()) if isinstance(body, EmailMessage) else ""


def telegram_deliveries(c: Cluster) -> Counter[tuple[int, str]]:
    """Every message the bot got accepted, by (chat, text): a repeat is a duplicate."""
    found: Counter[tuple[int, str]] = Counter()
    for _, message in c.telegram.world.sent:
        text = message.get("text") or message.get("caption") or ""
        found[(int(message["chat"]["id"]), text)] += 1
    return found


async def settle_and_count(c: Cluster, load: Load, label: str) -> dict[str, int]:
    """Wait until everything sent is through, then count and check."""
    expected = {t for tokens in load.tokens.values() for t in tokens if not t.startswith("rem")}

    async def all_logged() -> bool:
        return set(await logged_tokens(c.db_url)) >= expected

    async def telegram_confirmed() -> bool:
        return not c.telegram.pending_updates()

    async def all_out() -> bool:
        fired = await reminders_fired(c.db_url)
        return await outbox_open(c.db_url) == 0 and all(f >= 1 for f in fired)

    await until(telegram_confirmed, 120, "Telegram updates confirmed")
    try:
        # A watcher that lost the database backs off before it reads again: slow, not lost.
        await until(all_logged, 300, "every message logged")
    except AssertionError as exc:
        missing = sorted(expected - set(await logged_tokens(c.db_url)))
        raise AssertionError(f"{exc}: not logged {missing}: {await diagnose(c)}") from None
    try:
        await until(all_out, 120, "the outbox drained and every reminder fired")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {await diagnose(c)}") from None

    logged = await logged_tokens(c.db_url)
    fired = await reminders_fired(c.db_url)
    deliveries = telegram_deliveries(c)
    staff = Counter(
        t
        for (_, text), n in deliveries.items()
        for t in set(TOKEN_RE.findall(text))
        for _ in range(n)
    )
    mail_ids = Counter(str(m["Message-ID"]) for m in c.sink.mail)
    confirmations = {t for m in c.sink.mail for t in TOKEN_RE.findall(_plain(m))}
    counts = {
        "sent": sum(load.sent[k] for k in ("tg", "smtp", "imap", "form")),
        "acknowledged": sum(load.acked.values()) + load.sent["tg"],
        "logged": sum(logged[t] for t in expected),
        "duplicates": sum(n - 1 for t, n in logged.items() if t in expected and n > 1),
        "lost": len(expected - set(logged)),
        "outbound_telegram": sum(deliveries.values()),
        "outbound_telegram_duplicates": sum(n - 1 for n in deliveries.values()),
        "outbound_mail": len(c.sink.mail),
        "outbound_mail_duplicates": sum(n - 1 for n in mail_ids.values()),
        "mirrors_missing": len([t for t in expected if staff[t] == 0]),
        "confirmations_missing": load.sent["form"] - len(confirmations),
        "reminders": len(fired),
        "reminders_fired_once": sum(1 for f in fired if f == 1),
        "reminder_messages_missing": len([t for t in load.tokens.get("rem", ()) if staff[t] == 0]),
    }
    per_channel = " ".join(
        f"{k}={load.sent[k]}/{load.acked.get(k, load.sent[k])}"
        for k in ("tg", "smtp", "imap", "form")
    )
    print(
        f"\n{label}: " + " ".join(f"{k}={v}" for k, v in counts.items()),
        f"\n{label}: sent/acknowledged by channel {per_channel}; "
        f"temporary errors {dict(load.refused)}; "
        f"webhook answers {dict(Counter(c.balancer.statuses))}",
    )
    repeated = [text[:60] for (_, text), n in deliveries.items() if n > 1]
    if repeated:
        print(f"{label}: Telegram messages sent twice: {repeated}")
    assert counts["lost"] == 0
    assert counts["duplicates"] == 0
    assert counts["mirrors_missing"] == 0
    assert counts["confirmations_missing"] == 0
    assert counts["reminders_fired_once"] == counts["reminders"] == load.sent["rem"]
    assert counts["reminder_messages_missing"] == 0
    return counts


async def test_sigkill_of_one_instance_under_mixed_load_loses_nothing(
    pg_server: pg.PgServer, imap_server: dovecot.DovecotServer, tmp_path: Path
) -> None:
    load = Load()
    async with cluster(pg_server, imap_server, tmp_path, "fault_kill") as c:
        await add_reminders(c, load, REMINDERS, over_s=15)

        async def killer() -> int:
            kills = 0
            for _ in range(KILLS):
                await asyncio.sleep(random.uniform(1.0, 4.0))  # a random moment
                victim = random.choice(c.instances)
                await victim.kill()
                kills += 1
                await asyncio.sleep(random.uniform(0.2, 1.5))  # down for a while
                await victim.start()
                await victim.ready()
            return kills

        async with asyncio.timeout(600):
            results = await asyncio.gather(
                killer(),
                send_telegram(c, load, PER_CHANNEL),
                send_smtp(c, load, PER_CHANNEL),
                send_forms(c, load, PER_CHANNEL),
                send_imap(c, load, PER_CHANNEL),
            )
            for instance in c.instances:
                if not instance.running:
                    await instance.start()
                    await instance.ready()
            counts = await settle_and_count(c, load, f"sigkill x{results[0]}")
        # each kill can repeat at most the sends that were in flight at that moment
        in_flight_bound = KILLS * 2 * 16
        assert counts["outbound_telegram_duplicates"] <= in_flight_bound
        assert counts["outbound_mail_duplicates"] <= in_flight_bound


async def probe(c: Cluster, load: Load) -> dict[str, int]:
    """One message per channel into an instance while the database is down: the
    webhook and the form must tell the sender to come back later; the SMTP server
    keeps the message in its spool (250), and it must be logged once the
    database is back."""
    target = c.live()[0]
    found: dict[str, int] = {}
    message = EmailMessage()
    message["From"] = "probe@example.org"
    message["To"] = DESK
    message["Message-ID"] = "<probe@example.org>"
    message.set_content(f"probe {SMTP_PROBE}")
    try:
        await aiosmtplib.send(message, hostname="127.0.0.1", port=target.smtp_port, timeout=20)
        found["smtp"] = 250
        load.tokens.setdefault("probe", set()).add(SMTP_PROBE)  # so it must be logged
    except aiosmtplib.SMTPResponseException as exc:
        found["smtp"] = exc.code
    update = {
        "update_id": 10**8,
        "message": {
            "message_id": 1,
            "date": int(datetime.now(UTC).timestamp()),
            "chat": {"id": 4242, "type": "private", "first_name": "Probe"},
            "from": {"id": 4242, "is_bot": False, "first_name": "Probe"},
            "text": "probe",
        },
    }
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        async with http.post(
            f"http://127.0.0.1:{target.webhook_port}/telegram",
            json=update,
            headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
        ) as resp:
            found["webhook"] = resp.status
        async with http.post(
            f"http://127.0.0.1:{target.form_port}/f/contact",
            json={"name": "Probe", "email": "probe@example.org", "message": "probe"},
            headers={"Accept": "application/json"},
        ) as resp:
            found["form"] = resp.status
    return found


async def test_database_restart_under_load_gives_temporary_errors_and_loses_nothing(
    pg_server: pg.PgServer, imap_server: dovecot.DovecotServer, tmp_path: Path
) -> None:
    load = Load()
    async with cluster(pg_server, imap_server, tmp_path, "fault_db") as c:
        await add_reminders(c, load, REMINDERS // 2, over_s=10)

        async def outage() -> dict[str, int]:
            await asyncio.sleep(LOAD_S / 3)  # in the middle of the load
            await asyncio.to_thread(pg_server.halt)
            try:
                return await probe(c, load)
            finally:
                await asyncio.sleep(2.0)  # the database stays away a while longer
                await asyncio.to_thread(pg_server.resume)

        async with asyncio.timeout(600):
            answers, *_ = await asyncio.gather(
                outage(),
                send_telegram(c, load, PER_CHANNEL),
                send_smtp(c, load, PER_CHANNEL),
                send_forms(c, load, PER_CHANNEL),
                send_imap(c, load, PER_CHANNEL),
            )
            print(f"\ndatabase down: a sender was answered {answers}")
            counts = await settle_and_count(c, load, "database restart")
            assert all(i.running for i in c.instances)  # nobody had to restart them
    # The SMTP server commits to its own spool, not the database: 250, and the
    # message was logged when the database came back (settle_and_count).
    assert answers == {"smtp": 250, "webhook": 503, "form": 503}
    # Outbound is at least once: a send the database could not record while it was
    # away goes again (an email with the same Message-ID), at most those in flight.
    assert counts["outbound_mail_duplicates"] <= 2 * 16
