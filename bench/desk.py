"""The managers' desk under Telegram's limits, end to end: ``hub run`` in webhook
mode against the local Bot API server with Telegram's limits enforced (edits,
deletions and topic creation counted as posts), one staff forum group, and
managers who answer every client once, by replying to the bot's notice or with
``/r N`` to a digest's entry.

Three scenarios (``--scenario``):

- ``ten``: 10 managers, 100 new clients, 600 messages in 60 s, the hub killed
  with SIGKILL midway and started again; then every client's topic is waited for
  (``--topics-minutes``, 30 by default) until it shows all the client's words;
- ``two``: the same with 2 managers (their private chats take the load by digests);
- ``small``: 2 managers, 30 clients, 120 messages in 60 s, no kill.

Printed for each: how many messages were visible to a manager (in the private
chat: a notice or a digest) within 60 s and the delays; messages lost and logged
twice (from the database); requests answered by two managers; requests the Bot
API answered 429; answers a client received twice (the crash window: a send in
flight at the kill may go again, as at-least-once delivery allows).

    python -m bench.desk [--scenario ten|two|small|all] [--topics-minutes 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import re
import sqlite3
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.botapi import BotApiServer
from tests.botapi.world import Json, User
from tests.cluster import HubProcess, free_port

TOKEN = re.compile(r"\bq(\d+)q\b")
CLIENT = re.compile(r"\bClient(\d+)\b")
ENTRY = re.compile(r"^(\d+)\. .*?\bClient(\d+)\b", re.MULTILINE)
ANSWER = re.compile(r"^re q(\d+)q by M(\d+)$")
SECRET = "bench-webhook-secret-0123"
LOG_LEVEL = ["WARNING"]  # the hub's (--log-level)
KEEP: list[str | None] = [None]  # --keep: the folder to leave the hub's files in


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    managers: int
    clients: int
    messages: int
    seconds: float
    kill: bool
    topics: bool


SCENARIOS = {
    "ten": Scenario("ten", 10, 100, 600, 60.0, kill=True, topics=True),
    "two": Scenario("two", 2, 100, 600, 60.0, kill=True, topics=False),
    "small": Scenario("small", 2, 30, 120, 60.0, kill=False, topics=False),
}


@dataclass(slots=True)
class Managers:
    """Simulated managers: each reads their private chat and answers every client of
    theirs once, quoting the first of the client's messages they saw."""

    server: BotApiServer
    people: list[User]
    reached: dict[int, float] = field(default_factory=dict)  # message: first seen by a manager
    scanned: int = 0  # the Bot API server's posts read so far
    answered: set[tuple[int, int]] = field(default_factory=set)  # (manager, client)

    async def round(self) -> None:
        """The bot's new posts to the managers, read once each (the server's whole list
        is not walked again: that would slow the server sharing this process)."""
        now = time.monotonic()
        numbers = {manager.id: number for number, manager in enumerate(self.people)}
        sent = self.server.world.sent
        start, self.scanned = self.scanned, len(sent)
        for _, message in sent[start:]:
            number = numbers.get(message["chat"]["id"])
            if number is None:
                continue
            body = str(message.get("text") or message.get("caption") or "")
            for found in TOKEN.finditer(body):
                self.reached.setdefault(int(found.group(1)), now)
            await self._answer(number, self.people[number], message, body)

    async def _answer(self, number: int, manager: User, message: Json, body: str) -> None:
        entries = list(ENTRY.finditer(body))
        if entries:  # a digest: /r N for each entry of a client not answered yet
            for index, entry in enumerate(entries):
                end = entries[index + 1].start() if index + 1 < len(entries) else len(body)
                token = TOKEN.search(body, entry.end(), end)
                client = int(entry.group(2))
                if token and (manager.id, client) not in self.answered:
                    self.answered.add((manager.id, client))
                    reply = f"/r {entry.group(1)} re q{token.group(1)}q by M{number}"
                    await self.server.user_sends(manager, reply, reply_to=message)
            return
        client_found, token = CLIENT.search(body), TOKEN.search(body)
        if client_found is None or token is None:
            return  # a confirmation, a help text
        client = int(client_found.group(1))
        if (manager.id, client) not in self.answered:
            self.answered.add((manager.id, client))
            reply = f"re q{token.group(1)}q by M{number}"
            await self.server.user_sends(manager, reply, reply_to=message)


def config(server: BotApiServer, folder: Path, managers: list[User]) -> dict[str, Any]:
    webhook = free_port()
    return {
        "hub": {"language": "ru", "log_level": LOG_LEVEL[0]},
        "storage": {
            "url": f"sqlite+aiosqlite:///{folder}/hub.db",
            "attachments_dir": str(folder / "files"),
        },
        "admin": {"listen": f"127.0.0.1:{free_port()}", "token": "bench-token-0123456789"},
        "dispatcher": {"idle_poll_s": 0.2, "lease_s": 10.0},
        "telegram": {
            "enabled": True,
            "token": server.token,
            "api_base": server.base_url,
            "mode": "webhook",
            "webhook_url": f"http://127.0.0.1:{webhook}/telegram",
            "webhook_listen": f"127.0.0.1:{webhook}",
            "webhook_secret": SECRET,
            "staff_chat_id": server.forum.id,
        },
        "managers": [
            {"name": f"Manager {i}", "telegram_id": m.id, "capacity": 1000}
            for i, m in enumerate(managers)
        ],
    }


@dataclass(slots=True)
class Fed:
    arrived: dict[int, float]  # message: when the client sent it
    of_client: dict[int, int]  # message: its client's number


async def feed(server: BotApiServer, clients: list[User], scenario: Scenario) -> Fed:
    """Every client writes first (each is a new request), then the rest in random order,
    each client as often as the others (none over ``desk.flood_per_minute``), evenly
    spread over the scenario's seconds."""
    rng = random.Random(7)
    rest = [n % len(clients) for n in range(scenario.messages - len(clients))]
    rng.shuffle(rest)
    order = list(range(len(clients))) + rest
    fed = Fed({}, {})
    start = time.monotonic()
    for n, client in enumerate(order):
        due = start + n * scenario.seconds / scenario.messages
        await asyncio.sleep(max(0.0, due - time.monotonic()))  # the load's own pace
        fed.arrived[n] = time.monotonic()
        fed.of_client[n] = client
        await server.user_sends(clients[client], text=f"Вопрос q{n}q по заказу")
    return fed


async def crash(hub: HubProcess, after: float) -> float:
    """SIGKILL the hub ``after`` seconds in, start it again; the seconds it was down."""
    await asyncio.sleep(after)  # the scenario's moment, not synchronization
    killed = time.monotonic()
    await hub.kill()
    await hub.start()
    await hub.ready(timeout=120)
    return time.monotonic() - killed


async def until(condition: Any, within: float, period: float = 0.2) -> bool:
    """Poll ``condition`` (a coroutine function) until it is true or ``within`` seconds pass."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(period)  # a sampling period: the hub is another process
    return False


def database(folder: Path) -> tuple[Counter[int], int]:
    """Each client message's count in the log, and the answers to clients still pending."""
    with sqlite3.connect(folder / "hub.db") as db:
        logged: Counter[int] = Counter()
        for (text,) in db.execute("SELECT text FROM interactions WHERE direction = 'in'"):
            for found in TOKEN.finditer(text or ""):
                logged[int(found.group(1))] += 1
        (pending,) = db.execute(
            "SELECT count(*) FROM outbox WHERE status = 'pending' AND kind = 'reply'"
        ).fetchone()
    return logged, int(pending)


@dataclass(slots=True)
class Outcome:
    delays: list[float]
    lost: int
    twice: int
    by_two: int
    throttled: int
    repeated: int
    down: float | None
    topics: str


async def run(scenario: Scenario, topics_minutes: float) -> Outcome:
    # Telegram's limits, edits and topics counted; webhook updates POSTed up to 40 at
    # once (Telegram's default max_connections), one per chat at a time.
    async with BotApiServer(webhook_parallel=40) as server:
        people = [server.add_manager(f"Manager{i}") for i in range(scenario.managers)]
        clients = [
            server.add_user(f"Client{i}", language_code="ru") for i in range(scenario.clients)
        ]
        with _folder() as folder:
            hub = HubProcess("hub", config(server, folder, people), folder)
            await hub.start()
            try:
                await hub.ready(timeout=120)
                for manager in people:  # a bot may write only to who started it
                    await server.start_bot(manager)
                desk = Managers(server, people)
                reading = asyncio.create_task(_keep_reading(desk))
                crashing = (
                    asyncio.create_task(crash(hub, scenario.seconds / 2)) if scenario.kill else None
                )
                fed = await feed(server, clients, scenario)
                down = await crashing if crashing is not None else None
                await until(_all_reached(desk, fed), 240)
                await until(_settled(folder, desk, fed), 300)
                topics = await _topics(server, fed, topics_minutes) if scenario.topics else "-"
                reading.cancel()
                logged, _ = database(folder)
                return _outcome(server, clients, desk, fed, logged, down, topics)
            finally:
                await hub.stop()


@contextlib.contextmanager
def _folder() -> Iterator[Path]:
    """A temporary folder for the hub's files; kept under ``--keep`` when given."""
    if KEEP[0] is not None:
        yield Path(tempfile.mkdtemp(dir=KEEP[0]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


async def _keep_reading(desk: Managers) -> None:
    while True:
        await desk.round()
        await asyncio.sleep(0.2)  # the managers' reading pace


def _all_reached(desk: Managers, fed: Fed) -> Any:
    async def check() -> bool:
        return len(desk.reached) >= len(fed.arrived)

    return check


def _settled(folder: Path, desk: Managers, fed: Fed) -> Any:
    """Every client answered by someone, and every answer sent."""

    async def check() -> bool:
        answered = {client for _, client in desk.answered}
        return len(answered) >= len(set(fed.of_client.values())) and database(folder)[1] == 0

    return check


async def _topics(server: BotApiServer, fed: Fed, minutes: float) -> str:
    """How long until every client's topic shows all their words (the card with the
    words so far in one message where they fit)."""
    said: dict[int, set[int]] = defaultdict(set)
    for message, client in fed.of_client.items():
        said[client].add(message)
    start = time.monotonic()

    async def complete() -> bool:
        shown = {
            int(found.group(1))
            for message in server.sent_to(server.forum)
            for found in TOKEN.finditer(str(message.get("text") or ""))
        }
        opened = {CLIENT.search(t.name) for t in server.topics()}
        return len(opened) >= len(said) and all(words <= shown for words in said.values())

    done = await until(complete, minutes * 60, period=2.0)
    took = (time.monotonic() - start) / 60
    opened = len(server.topics())
    return f"{opened}/{len(said)} open, all words shown: {'yes' if done else 'no'} ({took:.1f} min)"


def _outcome(
    server: BotApiServer,
    clients: list[User],
    desk: Managers,
    fed: Fed,
    logged: Counter[int],
    down: float | None,
    topics: str,
) -> Outcome:
    delays = sorted(desk.reached[n] - fed.arrived[n] for n in desk.reached if n in fed.arrived)
    answers: Counter[tuple[int, str]] = Counter()
    by: dict[int, set[str]] = defaultdict(set)
    for number, client in enumerate(clients):
        for message in server.sent_to(client):
            found = ANSWER.match(str(message.get("text") or ""))
            if found is not None:
                answers[(number, found.group(0))] += 1
                by[number].add(found.group(2))
    return Outcome(
        delays=delays,
        lost=sum(1 for n in fed.arrived if logged[n] == 0),
        twice=sum(1 for n in fed.arrived if logged[n] > 1),
        by_two=sum(1 for names in by.values() if len(names) > 1),
        throttled=len(server.throttled),
        repeated=sum(count - 1 for count in answers.values() if count > 1),
        down=down,
        topics=topics,
    )


def report(scenario: Scenario, outcome: Outcome) -> None:
    delays, total = outcome.delays, scenario.messages
    within = sum(d <= 60 for d in delays)
    crash_note = f", SIGKILL midway (down {outcome.down:.1f} s)" if outcome.down else ""
    print(
        f"[{scenario.name}] {scenario.managers} managers, {scenario.clients} clients, "
        f"{total} messages in {scenario.seconds:.0f} s, webhook, one staff group{crash_note}"
    )
    if delays:
        p = [delays[min(len(delays) - 1, int(len(delays) * q))] for q in (0.95, 0.99)]
        print(
            f"  visible to a manager within 60 s: {within}/{total} ({100 * within / total:.1f}%); "
            f"p50 {statistics.median(delays):.1f} s, p95 {p[0]:.1f} s, p99 {p[1]:.1f} s, "
            f"max {delays[-1]:.1f} s; never: {total - len(delays)}"
        )
    print(
        f"  lost {outcome.lost}, logged twice {outcome.twice}, "
        f"requests answered by two managers {outcome.by_two}, "
        f"requests answered 429: {outcome.throttled}"
    )
    print(f"  answers a client got twice (the crash window): {outcome.repeated}")
    if scenario.topics:
        print(f"  topics: {outcome.topics}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--topics-minutes", type=float, default=30.0)
    parser.add_argument("--log-level", default="WARNING", help="the hub's log level")
    parser.add_argument("--keep", metavar="DIR", help="leave the hub's database and log here")
    args = parser.parse_args()
    LOG_LEVEL[0], KEEP[0] = args.log_level, args.keep
    chosen = list(SCENARIOS.values()) if args.scenario == "all" else [SCENARIOS[args.scenario]]
    for scenario in chosen:
        report(scenario, asyncio.run(run(scenario, args.topics_minutes)))


if __name__ == "__main__":
    main()
