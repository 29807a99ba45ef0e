"""Received mail spooled in the hub's process, parsed and logged in a child: the mail worker.

Parsing MIME and writing the interaction cost several times what an SMTP
session does. On the event loop of the hub's process they would take the
interpreter from the SMTP sessions, Telegram and the admin API. So the SMTP
server (and each IMAP watcher) commits each message, exactly as received, to the
mail spool (spool.py, an SQLite file of its own) and answers 250 once it is
committed there, as a mail server does with its queue. The spool hands every
committed batch to one child process, which parses each message
(:func:`channels.email.channel.read_received`) and logs it through the ingest
writer its composition root opened on the hub's database (``hub.app.mail_worker``:
the same rules, auto-replies and SLA policies). It reports what it logged; the
spool then lets those rows go, and the hub's own process counts them and wakes
its outbox.

Nothing accepted is lost: a row stays in the spool until the log holds its
message. Whatever a worker left (it died, the database was away, the hub was
stopped) is sent again to the next worker when it starts; a message logged
already is recognized as a redelivery (the Message-ID, or the content's hash).
Every message is logged, one with no readable sender on a client of its own
(:func:`channels.email.channel.read_received`; mail that names no sender at all
is refused with 554 by the SMTP edge before it is spooled). Only a message the
database refuses as such (its data, not the moment) or one that meets a bug
while it is logged is set aside in the spool, kept with the reason, logged as
an error and counted (``hub_mail_spool_set_aside``).

The two processes talk over a socket pair, each frame a 4-byte length and a
pickle. To the worker: first its setup (whatever its composition root needs),
then lists of :class:`~channels.email.spool.Spooled` messages, and
``("reload", change)`` when the hub's config is reloaded (the change is its
composition root's to apply, before the messages sent after it). From it:
``"ready"`` (or why it could not start), then ``("logged", [(id, duplicate), ...])``,
``("aside", id, reason)`` and ``("reloaded", problem)`` (empty: applied). The
worker lives as long as its socket: it ignores SIGINT and SIGTERM (the hub stops
it by closing its end, after the SMTP sessions in progress are answered) and
finishes what it holds when the hub's process is gone. When the worker dies, a
new one starts, after 0.5 s at first and up to 30 s between attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from channels.email.channel import log_received, read_received
from channels.email.spool import MailSpool, Spooled
from hub.kernel import loggers
from hub.kernel.errors import MessageRejected, StorageUnavailable
from hub.kernel.ports import InboundSink
from hub.kernel.types import InboundMessage, IngestResult

log = loggers.channels

_LENGTH = struct.Struct("!I")
_ROOT = str(Path(__file__).resolve().parents[2])  # the worker imports the hub from here
_START_TIMEOUT = 60.0  # seconds for the worker to import, connect and say ready
_STOP_TIMEOUT = 30.0  # seconds for it to finish and exit once told to stop
_FIRST_DELAY, _MAX_DELAY = 0.5, 30.0  # between restarts
_RESEND_CHUNK = 500  # spooled messages read at a time when a worker starts
_IN_HAND = 5000  # messages the worker parses and logs at once, at most
_RETRY_FIRST, _RETRY_MAX = 1.0, 60.0  # seconds between attempts to log a message


def _frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


async def _read(reader: asyncio.StreamReader) -> Any:
    (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    # Only ever the hub's own process at the other end of a private socket pair.
    return pickle.loads(await reader.readexactly(size))  # noqa: S301


@runtime_checkable
class CountsElsewhere(Protocol):
    """A sink that counts what another process committed (the hub's ingestor)."""

    def committed_elsewhere(self, channel: str, new: int, duplicates: int = 0) -> None: ...


# The hub's side ------------------------------------------------------------------


class MailWorker:
    """The hub's side (an :class:`channels.email.channel.Offload`): the spool at
    ``spool``, and the worker process it feeds, started as ``python -m module FD``
    and given ``setup`` first. ``sink`` (given to ``start``) is the hub's own
    ingestor: it counts what the worker logged and wakes the outbox."""

    def __init__(self, spool: str | Path, *, module: str, setup: object) -> None:
        self.module = module
        self.setup = setup
        self.spool = MailSpool(spool, on_spooled=self._send)
        self.pid: int | None = None
        self._sink: InboundSink | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._closing = False
        self._stopped = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._change: object = None  # the last reload's, for a worker started meanwhile

    async def start(self, sink: InboundSink) -> None:
        """Open the spool and start the worker; raise if it cannot get ready (a
        broken setup shows at once). What the spool holds is sent to it."""
        self._sink = sink
        self._closing = False
        self._stopped.clear()
        await self.spool.open()
        try:
            reader = await self._spawn()
        except BaseException:
            await self.spool.close()
            raise
        self._supervisor = asyncio.create_task(self._supervise(reader), name="mail-worker")

    async def stop(self) -> None:
        """Let the worker log what it holds and exit (killed after 30 s); close
        the spool. What is not logged by then stays spooled for the next start."""
        self._closing = True
        self._stopped.set()
        writer, process = self._writer, self._process
        if writer is not None and not writer.is_closing():
            with contextlib.suppress(OSError):
                writer.write_eof()
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), _STOP_TIMEOUT)
            except TimeoutError:
                log.warning("mail_worker.killed pid=%s", process.pid)
                process.kill()
                await process.wait()
        if self._supervisor is not None:
            await self._supervisor
            self._supervisor = None
        await self.spool.close()

    def submit(
        self, raw: bytes, mail_from: str, rcpt_tos: list[str], received_at: datetime
    ) -> asyncio.Future[int]:
        """Spool one received message: done once it is committed to the spool."""
        return self.spool.submit(raw, mail_from, rcpt_tos, received_at)

    def reconfigure(self, setup: object, change: object) -> None:
        """A reload of the config: ``change`` to the running worker, after what it
        was sent already and before what comes next; ``setup`` for the next one."""
        self.setup, self._change = setup, change
        writer = self._writer
        if writer is not None and not writer.is_closing():
            writer.write(_frame(("reload", change)))

    def _send(self, batch: list[Spooled]) -> None:
        writer = self._writer
        if writer is not None and not writer.is_closing():
            writer.write(_frame(batch))
        # else: the next worker gets them from the spool

    async def _spawn(self) -> asyncio.StreamReader:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.module,
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
            )
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        setup = self.setup
        try:
            writer.write(_frame(setup))
            ready = await asyncio.wait_for(_read(reader), _START_TIMEOUT)
        except (TimeoutError, OSError, EOFError, asyncio.IncompleteReadError) as exc:
            ready = type(exc).__name__
        if ready != "ready":
            writer.close()
            if process.returncode is None:
                process.kill()
            await process.wait()
            raise StorageUnavailable(
                f"the mail worker did not start (exit code {process.returncode}): {ready}"
            )
        self._process, self._writer, self.pid = process, writer, process.pid
        loggers.event(log, "mail_worker.started", pid=process.pid)
        if setup is not self.setup:  # reloaded while it started
            writer.write(_frame(("reload", self._change)))
        await self._resend()
        return reader

    async def _resend(self) -> None:
        """Everything the spool holds, to a worker that just started."""
        after, sent = 0, 0
        while self._writer is not None:
            batch = await self.spool.waiting(after=after, limit=_RESEND_CHUNK)
            if not batch:
                break
            self._send(batch)
            await self._writer.drain()
            after, sent = batch[-1].id, sent + len(batch)
        if sent:
            loggers.event(log, "mail_worker.resent", messages=sent)

    async def _supervise(self, reader: asyncio.StreamReader) -> None:
        delay = _FIRST_DELAY
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            await self._answers(reader)
            await self._reap()
            if loop.time() - began > 10 * _MAX_DELAY:
                delay = _FIRST_DELAY  # it had been up a while: not a crash loop
            restarted = await self._restart(delay)
            if restarted is None:
                return
            reader, delay = restarted

    async def _reap(self) -> None:
        """The worker's socket closed: close ours and wait for its process."""
        process, writer = self._process, self._writer
        self._writer = None
        if writer is not None:
            writer.close()
        if process is not None:
            code = await process.wait()
            if not self._closing:
                loggers.event(log, "mail_worker.died", logging.ERROR, pid=process.pid, code=code)

    async def _restart(self, delay: float) -> tuple[asyncio.StreamReader, float] | None:
        """A new worker, after ``delay`` and longer after each failed attempt;
        ``None`` once the hub stops. Also answers the next delay."""
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), delay)
            if self._closing:
                break
            delay = min(delay * 2, _MAX_DELAY)
            try:
                return await self._spawn(), delay
            except (StorageUnavailable, OSError) as exc:
                loggers.event(log, "mail_worker.start_failed", logging.ERROR, reason=exc)
            except Exception:  # whatever it is, mail waits in the spool: try again
                log.exception("mail_worker.start_failed")
        return None

    async def _answers(self, reader: asyncio.StreamReader) -> None:
        sink = self._sink
        counts = sink if isinstance(sink, CountsElsewhere) else None
        while True:
            try:
                answer = await _read(reader)
            except (asyncio.IncompleteReadError, OSError, EOFError):
                return
            if answer[0] == "logged":
                logged: list[tuple[int, bool]] = answer[1]
                self.spool.done(i for i, _ in logged)
                if counts is not None:
                    duplicates = sum(1 for _, duplicate in logged if duplicate)
                    counts.committed_elsewhere("email", len(logged) - duplicates, duplicates)
            elif answer[0] == "aside":
                self.spool.set_aside(answer[1], answer[2])
            elif answer[0] == "reloaded":
                _reloaded(self.pid, answer[1])


def _reloaded(pid: int | None, problem: str) -> None:
    if problem:
        loggers.event(log, "mail_worker.reload_failed", logging.ERROR, pid=pid, reason=problem)
    else:
        loggers.event(log, "mail_worker.reloaded", pid=pid)


# The worker's side -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerIngest:
    """What the worker process's composition root opened for it: the ingest sink
    on the hub's database, the attachment limit, and how to close both."""

    sink: InboundSink
    max_attachment_bytes: int
    close: Callable[[], Awaitable[None]]
    reload: Callable[[Any], Awaitable[None]] | None = None  # a reload's change applied


OpenIngest = Callable[[Any], Awaitable[WorkerIngest]]


class _Worker:
    """Parses and logs what the hub sends; reports what is logged."""

    def __init__(self, ingest: WorkerIngest, writer: asyncio.StreamWriter) -> None:
        self.sink = ingest.sink
        self.reload = ingest.reload
        self.writer = writer
        self.limit = ingest.max_attachment_bytes
        self.closing = asyncio.Event()
        self.logging: set[int] = set()  # spool ids in hand here
        self.tasks: set[asyncio.Task[None]] = set()
        self.logged: list[tuple[int, bool]] = []

    def take(self, batch: list[Spooled]) -> None:
        for spooled in batch:
            if spooled.id in self.logging:
                continue  # sent again while in hand (a resend after a restart)
            self.logging.add(spooled.id)
            task = asyncio.create_task(self.log(spooled))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def answer(self, *frame: Any) -> None:
        if not self.writer.is_closing():
            self.writer.write(_frame(frame))

    def flush(self) -> None:
        logged, self.logged = self.logged, []
        self.answer("logged", logged)

    async def log(self, spooled: Spooled) -> None:
        try:
            received = await read_received(
                spooled.raw,
                spooled.mail_from,
                spooled.rcpt_tos,
                received_at=spooled.received_at,
                max_attachment_bytes=self.limit,
            )
            result = await self._ingest(spooled.id, received.message)
            if result is None:
                return
            log_received(received, result)
            self.logged.append((spooled.id, result.duplicate))
            if len(self.logged) == 1:  # one report for all that commit at once
                asyncio.get_running_loop().call_soon(self.flush)
        finally:
            self.logging.discard(spooled.id)

    async def _ingest(self, spool_id: int, message: InboundMessage) -> IngestResult | None:
        """The message logged, retried while the database is away; ``None`` when
        it is set aside, or left in the spool for the next worker."""
        delay = _RETRY_FIRST
        while True:
            try:
                return await self.sink(message)
            except StorageUnavailable:
                pass  # the database is away: again later; the message stays spooled
            except MessageRejected as exc:
                self.set_aside(spool_id, str(exc))
                return None
            except Exception as exc:
                log.exception("mail_worker.log_failed spool=%s", spool_id)
                self.set_aside(spool_id, type(exc).__name__)
                return None
            if self.closing.is_set():
                return None  # spooled: the next worker logs it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), delay)
            delay = min(delay * 2, _RETRY_MAX)

    async def reconfigure(self, change: Any) -> None:
        """A reload, applied before the messages sent after it are taken."""
        problem = ""
        try:
            if self.reload is not None:
                await self.reload(change)
        except Exception as exc:  # the worker goes on with what it had
            log.exception("mail_worker.reload_failed")
            problem = f"{type(exc).__name__}: {loggers.redact(str(exc))[:300]}"
        self.answer("reloaded", problem)

    def set_aside(self, spool_id: int, reason: str) -> None:
        loggers.event(log, "mail_worker.set_aside", logging.ERROR, spool=spool_id, reason=reason)
        self.answer("aside", spool_id, reason)

    async def serve(self, reader: asyncio.StreamReader) -> None:
        """Take what the hub sends until it closes its end."""
        while True:
            try:
                frame = await _read(reader)
            except (asyncio.IncompleteReadError, OSError, EOFError):
                return  # the hub closed its end, or its process is gone
            if isinstance(frame, tuple):
                await self.reconfigure(frame[1])
            else:
                self.take(frame)
            while len(self.tasks) > _IN_HAND:  # a backlog: read on as it shrinks
                await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)

    async def finish(self) -> None:
        """What is in hand is logged now if the database lets, else by the next worker."""
        self.closing.set()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=_STOP_TIMEOUT / 2)


async def _serve(sock: socket.socket, open_ingest: OpenIngest) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    setup = await _read(reader)
    try:
        ingest = await open_ingest(setup)
    except Exception as exc:
        writer.write(_frame(f"{type(exc).__name__}: {loggers.redact(str(exc))[:300]}"))
        raise
    worker = _Worker(ingest, writer)
    writer.write(_frame("ready"))
    try:
        await worker.serve(reader)
    finally:
        await worker.finish()
        await ingest.close()
        if worker.logged:
            worker.flush()
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()


def run(fd: int, open_ingest: OpenIngest) -> None:
    """The worker process: serve the hub at the other end of socket ``fd``;
    ``open_ingest(setup)`` opens the ingest sink from the setup the hub sends."""
    # The hub stops the worker by closing the socket, after its SMTP sessions are
    # answered; a terminal's Ctrl-C or a service manager's SIGTERM to the whole
    # group must not cut the worker off first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    asyncio.run(_serve(socket.socket(fileno=fd), open_ingest))
