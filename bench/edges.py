"""Forms and SMTP under attack (issue 16): the legitimate load's throughput with the
attack against the same load without it, in one run, and ``/healthz``'s answer time.

``hub run`` on SQLite with the default ``[edges]`` and the default form rate limit
(10 posts a minute an address), a fresh data folder for each of three phases:
without the attack, with it, and without it again (the baseline is the mean of
the two, so that the machine's drift over the run counts against neither). The
legitimate load, the same in every phase, goes as fast as the hub answers:
``--forms`` form posters (JSON, each post from an address of its own in
127.1.0.0/16, so that no visitor is over the rate limit) and ``--mail`` SMTP
sessions (from 127.0.3.x, each sending message after message); a probe asks
``/healthz`` every 0.1 s on a new connection. Counted: posts answered 201 and
messages answered 250 in a ``--seconds`` window (after a few seconds' warm-up),
and afterwards that every one of them is in the log.

The attack runs in a process of its own (``python -m bench.edges attack``) so
that it does not share the load's event loop: ``--slow`` connections (half to
the form port sending a request head a byte every 5 s, half to SMTP sending a
command a byte every 5 s, from 127.0.1.x; each opened again when the hub cuts
it), and 4 addresses (127.0.2.1-4) each posting a 20 MiB multipart body of
about 380,000 tiny parts every 6 s (the rate limit). The window starts once the
slow connections are all open.

Printed: the phases' rates, the legitimate throughput ratio (target >= 0.8),
the p99 of ``/healthz`` under attack (target < 1 s), what the attack got, and
whether every answered message was logged.

    python -m bench.edges [--seconds 25] [--slow 1000] [--forms 16] [--mail 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib

from hub.kernel.edges import raise_fd_limit
from tests.cluster import ROOT, HubProcess, free_port

DOMAIN = "desk.example.com"
SLOW_EVERY = 5.0  # seconds between two bytes of a slow client
POST_EVERY = 6.0  # the many-part posters' pace: 10 a minute, the form rate limit
POSTERS = [f"127.0.2.{n}" for n in range(1, 5)]
BODY_BYTES = 20 * 1024 * 1024
WARM_UP = 3.0
BOUNDARY = b"b0undary"


def config(folder: Path) -> dict[str, Any]:
    return {
        "hub": {"log_level": "WARNING"},
        "storage": {
            "url": f"sqlite+aiosqlite:///{folder}/hub.db",
            "attachments_dir": str(folder / "files"),
        },
        "admin": {"listen": f"127.0.0.1:{free_port()}", "token": "bench-token-0123456789"},
        "email": {
            "smtp": {"listen": f"127.0.0.1:{free_port()}", "domains": [DOMAIN]},
            "spool": str(folder / "mail-spool.db"),
        },
        "webform": {"listen": f"127.0.0.1:{free_port()}"},
        "webform.forms": [{"id": "contact", "language": "en", "min_fill_seconds": 0}],
    }


# --- the legitimate load -------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """What the legitimate load got: answers in the window, all accepted, the rest."""

    start: float = 0.0
    end: float = 0.0
    forms: int = 0  # 201 in the window
    mails: int = 0  # 250 in the window
    accepted: int = 0  # 201 and 250 at any time (each must be logged)
    other: Counter[str] = field(default_factory=Counter)
    health: list[float] = field(default_factory=list)  # seconds, in the window

    def inside(self, at: float) -> bool:
        return self.start <= at < self.end

    @property
    def going(self) -> bool:
        return time.monotonic() < self.end


def form_sources() -> itertools.cycle[str]:
    """A visitor's address per post: 64,000 of them, none over 10 posts a minute."""
    return itertools.cycle(f"127.1.{a}.{b}" for a in range(256) for b in range(1, 251))


async def http(port: int, request: bytes, source: str = "127.0.0.1", within: float = 30.0) -> int:
    """One request on a new connection (``Connection: close``): the answer's status."""
    async with asyncio.timeout(within):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        try:
            writer.write(request)
            status = int((await reader.readline()).split()[1])
            await reader.read()  # to the end: the server closes
            return status
        finally:
            writer.close()


def form_request(n: int) -> bytes:
    body = json.dumps(
        {
            "name": f"Visitor {n}",
            "email": f"visitor{n % 500}@example.org",
            "message": f"Question {n}: where is my order?",
        }
    ).encode()
    head = (
        "POST /f/contact HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def form_poster(port: int, sources: itertools.cycle[str], first: int, tally: Tally) -> None:
    for n in itertools.count(first):
        if not tally.going:
            return
        try:
            status = await http(port, form_request(n), next(sources))
        except (OSError, TimeoutError, ValueError, IndexError) as exc:
            tally.other[f"form {type(exc).__name__}"] += 1
            continue
        if status == 201:
            tally.accepted += 1
            tally.forms += tally.inside(time.monotonic())
        else:
            tally.other[f"form {status}"] += 1


def mail(n: int) -> tuple[str, bytes]:
    sender = f"client{n % 500}@example.org"
    raw = (
        f"From: Client {n % 500} <{sender}>\r\nTo: help@{DOMAIN}\r\nSubject: Order {n}\r\n"
        f"Message-ID: <m{n}@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello! Where is my order {n}?\r\n"
    ).encode()
    return sender, raw


async def mail_sender(port: int, source: str, first: int, tally: Tally) -> None:
    n = first
    while tally.going:
        smtp = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, start_tls=False, source_address=(source, 0)
        )
        try:
            await smtp.connect()
            while tally.going:
                sender, raw = mail(n)
                n += 1
                await smtp.sendmail(sender, [f"help@{DOMAIN}"], raw)
                tally.accepted += 1
                tally.mails += tally.inside(time.monotonic())
        except (aiosmtplib.SMTPException, OSError) as exc:
            tally.other[f"smtp {type(exc).__name__}"] += 1
        finally:
            smtp.close()


async def health_probe(port: int, tally: Tally) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n"
    while tally.going:
        started = time.monotonic()
        try:
            status = await http(port, request, within=5.0)
        except (OSError, TimeoutError, ValueError, IndexError):
            status = 0
        took = time.monotonic() - started if status == 200 else 5.0
        if tally.inside(started):
            tally.health.append(took)
            if status != 200:
                tally.other[f"healthz {status or 'no answer'}"] += 1
        await asyncio.sleep(max(0.0, 0.1 - took))  # the probe's pace


async def legit_load(hub: HubProcess, args: argparse.Namespace) -> Tally:
    """The load for the warm-up and the window; the tally of both."""
    tally = Tally()
    tally.start = time.monotonic() + WARM_UP
    tally.end = tally.start + args.seconds
    sources = form_sources()
    tasks = [
        asyncio.create_task(form_poster(hub.form_port, sources, k * 10**7, tally))
        for k in range(args.forms)
    ]
    tasks += [
        asyncio.create_task(mail_sender(hub.smtp_port, f"127.0.3.{k + 1}", k * 10**7, tally))
        for k in range(args.mail)
    ]
    tasks.append(asyncio.create_task(health_probe(hub.admin_port, tally)))
    # Each ends at the window's end, its request under way answered or timed out.
    _, late = await asyncio.wait(tasks, timeout=WARM_UP + args.seconds + 60)
    for task in late:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return tally


# --- the attack (a process of its own) -------------------------------------------------


@dataclass(slots=True)
class AttackState:
    open_http: int = 0
    open_smtp: int = 0
    cut: int = 0  # slow connections the hub closed
    refused: int = 0  # connections refused at once (503, 421) or not made
    posts: Counter[str] = field(default_factory=Counter)
    post_seconds: list[float] = field(default_factory=list)

    def line(self) -> str:
        return json.dumps(
            {
                "open_http": self.open_http,
                "open_smtp": self.open_smtp,
                "cut": self.cut,
                "refused": self.refused,
                "posts": dict(self.posts),
                "post_max_s": round(max(self.post_seconds, default=0.0), 2),
            }
        )


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """A byte every SLOW_EVERY seconds until the server closes the connection; what
    it said (an SMTP greeting, a refusal)."""
    said = b""
    while True:
        try:
            got = await asyncio.wait_for(reader.read(4096), SLOW_EVERY)
        except TimeoutError:
            writer.write(b"a")
            continue
        except OSError:
            return said
        if not got:
            return said
        said += got[:100]


async def slow_client(port: int, source: str, smtp: bool, state: AttackState) -> None:
    """One slow slot: open, trickle, and open again when the hub cuts it."""
    while True:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0)
            )
        except OSError:
            state.refused += 1
            await asyncio.sleep(1.0)  # the attacker's retry pace
            continue
        if smtp:
            state.open_smtp += 1
            writer.write(b"NOOP")  # a command never ended
        else:
            state.open_http += 1
            writer.write(b"GET /f/contact HTTP/1.1\r\nHost: hub\r\nX-Slow: ")
        try:
            said = await _trickle(reader, writer)
        finally:
            if smtp:
                state.open_smtp -= 1
            else:
                state.open_http -= 1
            writer.close()
        if said.startswith((b"HTTP/1.1 503", b"421")):
            state.refused += 1  # the connection table was full for this address
            await asyncio.sleep(1.0)  # the attacker's retry pace
        else:
            state.cut += 1


def many_parts() -> bytes:
    """20 MiB of tiny parts (the issue's 400,000 parts in 23.5 MB took 56 s each)."""
    part = b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="x"\r\n\r\ny\r\n'
    return part * ((BODY_BYTES - 20) // len(part)) + b"--" + BOUNDARY + b"--\r\n"


async def post_many_parts(port: int, source: str, body: bytes, state: AttackState) -> None:
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    except OSError:
        state.posts["not connected"] += 1
        return
    head = (
        "POST /f/contact HTTP/1.1\r\nHost: hub\r\nAccept: application/json\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY.decode()}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode())

    async def send() -> None:
        with contextlib.suppress(OSError):
            for at in range(0, len(body), 256 * 1024):
                writer.write(body[at : at + 256 * 1024])
                await writer.drain()

    sending = asyncio.create_task(send())
    try:
        line = await asyncio.wait_for(reader.readline(), 300)
        state.posts[line.split()[1].decode() if line else "closed"] += 1
    except (OSError, TimeoutError, IndexError) as exc:
        state.posts[type(exc).__name__] += 1
    finally:
        sending.cancel()
        writer.close()
    state.post_seconds.append(time.monotonic() - started)


async def poster(port: int, source: str, body: bytes, state: AttackState) -> None:
    """A post every POST_EVERY seconds, each on its own (a slow answer delays none)."""
    posts: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    for n in itertools.count(1):
        task = asyncio.create_task(post_many_parts(port, source, body, state))
        posts.add(task)
        task.add_done_callback(posts.discard)
        await asyncio.sleep(max(0.0, start + n * POST_EVERY - time.monotonic()))  # its pace


async def attack(form_port: int, smtp_port: int, slow: int) -> None:
    """Until SIGTERM; a line of the state every second, the last one at the end."""
    raise_fd_limit()
    state = AttackState()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    body = many_parts()
    sources = [f"127.0.1.{n}" for n in range(1, 11)]  # under the hub's 200 an address
    tasks = [
        asyncio.create_task(slow_client(form_port, sources[n % 10], False, state))
        for n in range(slow // 2)
    ]
    tasks += [
        asyncio.create_task(slow_client(smtp_port, sources[n % 10], True, state))
        for n in range(slow - slow // 2)
    ]
    tasks += [asyncio.create_task(poster(form_port, s, body, state)) for s in POSTERS]
    while not stop.is_set():
        print(state.line(), flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(state.line(), flush=True)


class Attacker:
    """The attack's process, its last state line, and how many slow ones were open."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.last: dict[str, Any] = {}
        self.fewest_open = sys.maxsize
        self.counting = False
        self._reading: asyncio.Task[None] | None = None

    async def start(self, hub: HubProcess, slow: int) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.edges",
            "attack",
            f"--form-port={hub.form_port}",
            f"--smtp-port={hub.smtp_port}",
            f"--slow={slow}",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        self._reading = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.last = json.loads(line)
            if self.counting:
                self.fewest_open = min(self.fewest_open, self.open)

    @property
    def open(self) -> int:
        return int(self.last.get("open_http", 0)) + int(self.last.get("open_smtp", 0))

    async def established(self, slow: int) -> None:
        """Every slow connection open and a many-part post answered (a minute at most)."""
        for _ in range(300):
            if self.open >= slow and self.last.get("posts"):
                self.counting = True
                return
            await asyncio.sleep(0.2)  # the attacker reports once a second
        raise SystemExit(f"the attack did not get going: {self.last}")

    async def stop(self) -> None:
        self.counting = False  # what it reports as it stops is no longer the attack
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await self.proc.wait()
        if self._reading is not None:
            await self._reading


# --- the phases -----------------------------------------------------------------------


@dataclass(slots=True)
class Phase:
    tally: Tally
    logged: int
    attack: Attacker | None


def logged(folder: Path) -> int:
    with contextlib.closing(sqlite3.connect(folder / "hub.db")) as db:
        (count,) = db.execute("SELECT count(*) FROM interactions WHERE direction = 'in'").fetchone()
    return int(count)


async def settle(folder: Path, accepted: int) -> int:
    """Mail answered 250 is logged by the mail worker a moment later: wait for it
    (a minute at most); the count logged."""
    for _ in range(120):
        count = logged(folder)
        if count >= accepted:
            return count
        await asyncio.sleep(0.5)  # the worker is another process: polled
    return logged(folder)


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def phase(args: argparse.Namespace, attacked: bool) -> Phase:
    progress(f"phase {'with' if attacked else 'without'} the attack")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        hub = HubProcess("hub", config(folder), folder)
        await hub.start()
        attacker = Attacker() if attacked else None
        try:
            await hub.ready(timeout=60)
            if attacker is not None:
                await attacker.start(hub, args.slow)
                await attacker.established(args.slow)
                progress(f"the attack is on: {attacker.last}")
            tally = await legit_load(hub, args)
            progress(f"the window is over: {tally.forms} forms, {tally.mails} mails")
            if attacker is not None:
                await attacker.stop()
            return Phase(tally, await settle(folder, tally.accepted), attacker)
        finally:
            if attacker is not None:
                await attacker.stop()
            await hub.stop()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")


def rate(run: Phase, seconds: float) -> float:
    return (run.tally.forms + run.tally.mails) / seconds


def describe(name: str, run: Phase, seconds: float) -> str:
    t = run.tally
    return (
        f"  {name}: forms {t.forms / seconds:,.1f}/s, mail {t.mails / seconds:,.1f}/s, "
        f"together {rate(run, seconds):,.1f}/s; /healthz p50 "
        f"{statistics.median(t.health) * 1000:.0f} ms, p99 {p99(t.health) * 1000:.0f} ms "
        f"({len(t.health)} probes); accepted {t.accepted}, logged {run.logged}; "
        f"other answers {dict(t.other) or '-'}"
    )


def report(args: argparse.Namespace, bare: list[Phase], attacked: Phase) -> None:
    seconds = args.seconds
    print(
        "edges under attack: hub run on SQLite, default [edges] and form rate limit; "
        f"window {seconds:.0f} s per phase after {WARM_UP:.0f} s of warm-up"
    )
    print(
        f"legitimate load: {args.forms} form posters (an address per post), "
        f"{args.mail} SMTP sessions, /healthz every 0.1 s"
    )
    print(
        f"attack: {args.slow} slow connections ({args.slow // 2} form heads, "
        f"{args.slow - args.slow // 2} SMTP commands, a byte every {SLOW_EVERY:.0f} s, "
        f"opened again when cut) + {len(POSTERS)} addresses posting "
        f"{BODY_BYTES // 2**20} MiB of tiny parts every {POST_EVERY:.0f} s"
    )
    print(describe("without attack, before", bare[0], seconds))
    print(describe("with attack", attacked, seconds))
    print(describe("without attack, after", bare[1], seconds))
    if attacked.attack is not None:
        a = attacked.attack.last
        print(
            f"  the attack: slow connections open through the window >= "
            f"{attacked.attack.fewest_open}, cut by the hub {a.get('cut')}, "
            f"refused {a.get('refused')}; many-part posts answered {a.get('posts')}, "
            f"the longest in {a.get('post_max_s')} s"
        )
    baseline = statistics.mean(rate(run, seconds) for run in bare)
    print(
        f"legitimate throughput ratio: {rate(attacked, seconds) / baseline:.2f} "
        "(with attack / without, the mean of before and after; target >= 0.8)"
    )
    print(f"/healthz p99 under attack: {p99(attacked.tally.health):.3f} s (target < 1 s)")
    runs = [*bare, attacked]
    lost = sum(max(0, run.tally.accepted - run.logged) for run in runs)
    print(f"answered 201/250 but not logged: {lost}")


async def main_async(args: argparse.Namespace) -> None:
    raise_fd_limit()
    before = await phase(args, attacked=False)
    attacked = await phase(args, attacked=True)
    after = await phase(args, attacked=False)
    report(args, [before, after], attacked)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    if sys.argv[1:2] == ["attack"]:
        parser = argparse.ArgumentParser(description="the attack's process")
        parser.add_argument("role")
        parser.add_argument("--form-port", type=int, required=True)
        parser.add_argument("--smtp-port", type=int, required=True)
        parser.add_argument("--slow", type=int, required=True)
        a = parser.parse_args()
        asyncio.run(attack(a.form_port, a.smtp_port, a.slow))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--forms", type=int, default=16)
    parser.add_argument("--mail", type=int, default=8)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
