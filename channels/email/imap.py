"""An IMAP mailbox watcher: IMAP4rev1 (RFC 3501) with IDLE (RFC 2177), aioimaplib.

One :class:`ImapWatcher` per ``[[email.imap]]`` mailbox. It keeps a cursor of
(UIDVALIDITY, last UID) in a :class:`CursorStore`, so that nothing is re-read
and nothing is skipped after a disconnect of any length. Each round fetches the
UIDs above the cursor with ``BODY.PEEK[]`` (which leaves ``\\Seen`` alone), hands
each message in UID order to ``deliver`` (which returns after the commit), and
only then sets ``\\Seen`` and advances the cursor. A ``deliver`` that raises ends
the round without advancing; the message is tried again in the next one. When
UIDVALIDITY changes the folder is read from the start (ingest deduplicates by
Message-ID). Between rounds it IDLEs where the server has it, re-issuing IDLE
every 29 minutes, and polls otherwise; a lost connection is reopened with
bounded exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aioimaplib  # type: ignore[import-untyped]

from hub.config import ImapSection
from hub.kernel import loggers
from hub.kernel.errors import HubError, MessageRejected
from hub.kernel.ports import CursorStore, MailboxHold, MailboxLocks

log = loggers.channels

Deliver = Callable[[bytes], Awaitable[None]]

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_FETCH_UID = re.compile(rb"\bUID (\d+)")
_FETCH_START = re.compile(rb"^\d+ FETCH \(")
_RE_IDLE_S = 29 * 60.0  # RFC 2177: servers may drop an IDLE after 30 minutes
_FETCH_BATCH = 100


class MemoryCursorStore:
    """A :class:`CursorStore` in a dict: for tests and for runs without a database."""

    def __init__(self) -> None:
        self.cursors: dict[str, tuple[int, int]] = {}

    async def load(self, key: str) -> tuple[int, int] | None:
        return self.cursors.get(key)

    async def save(self, key: str, uidvalidity: int, uid: int) -> None:
        self.cursors[key] = (uidvalidity, uid)


class ImapError(HubError):
    """The IMAP mailbox could not be reached or used."""


class ImapLoginError(ImapError):
    """The server refused the configured user and password."""


class _ConnectionLost(Exception):
    pass


def cursor_key(settings: ImapSection) -> str:
    """The cursor's key: one mailbox folder of one account on one server."""
    return f"{settings.user}@{settings.host}:{settings.port}/{settings.folder}"


def parse_fetch(lines: list[Any]) -> list[tuple[int, bytes]]:
    """(UID, message) pairs from a ``UID FETCH … (UID BODY.PEEK[])`` response's lines."""
    found: list[tuple[int, bytes]] = []
    uid: int | None = None
    body: bytes | None = None

    def flush() -> None:
        if uid is not None and body is not None:
            found.append((uid, body))

    for line in lines:
        if isinstance(line, bytearray):
            body = bytes(line)
            continue
        if not isinstance(line, bytes):
            continue
        if _FETCH_START.match(line):
            flush()
            uid, body = None, None
        match = _FETCH_UID.search(line)
        if match:
            uid = int(match.group(1))
    flush()
    return found


class ImapWatcher:
    """Watch one IMAP folder and hand each new message to ``deliver`` exactly once."""

    def __init__(
        self,
        settings: ImapSection,
        deliver: Deliver,
        *,
        cursor: CursorStore,
        poll_s: float = 60.0,
        re_idle_s: float = _RE_IDLE_S,
        retry_s: float = 5.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
        timeout_s: float = 30.0,
        use_idle: bool = True,
        locks: MailboxLocks | None = None,
        lock_retry_s: float = 3.0,
        lock_check_s: float = 2.0,
    ) -> None:
        self.settings = settings
        self.deliver = deliver
        self.cursor = cursor
        self.key = cursor_key(settings)
        self.poll_s = poll_s
        self.re_idle_s = re_idle_s
        self.retry_s = retry_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.use_idle = use_idle
        self.locks = locks
        self.lock_retry_s = lock_retry_s
        self.lock_check_s = lock_check_s
        self._hold: MailboxHold | None = None
        self._client: Any = None
        self._uidvalidity = 0
        self._found = 0  # messages the last round found
        self._lost = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def holding(self) -> bool:
        """Whether this watcher holds its mailbox (always, without ``locks``)."""
        return self.locks is None or self._hold is not None

    async def start(self) -> None:
        """Return after the first login; raise :class:`ImapError` when it fails.

        With ``locks``, a watcher whose mailbox another instance holds returns at
        once and stands by: it tries the lock every ``lock_retry_s`` and takes
        over when the holder is gone.
        """
        self._stopping.clear()
        if self.locks is not None:
            self._hold = await self._try_lock()
        if self.holding:
            try:
                self._client = await self._connect()
            except BaseException:
                await self._release()
                raise
        self._task = asyncio.create_task(self._guarded(), name=f"imap {self.key}")

    async def stop(self) -> None:
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            # A delivery under way is let finish, so that its commit is marked \Seen.
            done, _ = await asyncio.wait({task}, timeout=self.timeout_s)
            if not done:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close()
        await self._release()

    # -- the mailbox lock ------------------------------------------------------------

    async def _try_lock(self) -> MailboxHold | None:
        assert self.locks is not None
        try:
            hold = await self.locks.acquire(self.key)
        except Exception as exc:  # the database is down: stand by and retry
            loggers.event(
                log, "imap.lock_failed", logging.WARNING, mailbox=self.key, error=repr(exc)
            )
            return None
        if hold is None:
            loggers.event(log, "imap.standby", mailbox=self.key, retry_in=self.lock_retry_s)
        else:
            loggers.event(log, "imap.lock_taken", mailbox=self.key)
        return hold

    async def _release(self) -> None:
        hold, self._hold = self._hold, None
        if hold is not None:
            with contextlib.suppress(Exception):
                await hold.release()

    async def _lock_lost(self, hold: MailboxHold) -> None:
        """Return once the hold is gone (its connection dropped, so another may take it)."""
        while await hold.alive():  # noqa: ASYNC110 - nothing can notify a dropped session
            await asyncio.sleep(self.lock_check_s)

    async def _guarded(self) -> None:
        """Watch while holding the mailbox; stand by while another instance holds it."""
        if self.locks is None:
            await self._run()
            return
        while not self._stopping.is_set():
            hold = self._hold
            if hold is None:
                await self._sleep(self.lock_retry_s)
                if not self._stopping.is_set():
                    self._hold = await self._try_lock()
                continue
            run = asyncio.create_task(self._run(), name=f"imap {self.key} session")
            lost = asyncio.create_task(self._lock_lost(hold), name=f"imap {self.key} lock")
            try:
                await asyncio.wait({run, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (lost,) if run.done() else (run, lost):
                    task.cancel()
                await asyncio.gather(run, lost, return_exceptions=True)
            if lost.done() and not lost.cancelled() and lost.exception() is None:
                # Another instance may hold the mailbox now: read nothing more. A
                # delivery cut short is read again by the next holder; ingest
                # recognizes it by its Message-ID.
                loggers.event(log, "imap.lock_lost", logging.WARNING, mailbox=self.key)
                self._hold = None
                await self._close()

    # -- connection --------------------------------------------------------------

    async def _connect(self) -> Any:
        s = self.settings
        self._lost.clear()
        if s.tls:
            try:
                context = ssl.create_default_context(cafile=s.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ImapError(f"email.imap: cannot read ca_file {s.ca_file!r}: {exc}") from exc
            client = aioimaplib.IMAP4_SSL(
                s.host, s.port, timeout=self.timeout_s, ssl_context=context
            )
        else:
            client = aioimaplib.IMAP4(s.host, s.port, timeout=self.timeout_s)
        # IMAP4_SSL does not take the callback; the protocol has it either way.
        client.protocol.conn_lost_cb = self._on_connection_lost
        try:
            await client.wait_hello_from_server()
            response = await client.login(s.user, s.password.get_secret_value())
            if response.result != "OK":
                text = b" ".join(x for x in response.lines if isinstance(x, bytes))
                raise ImapLoginError(
                    f"email.imap: login as {s.user!r} at {s.host}:{s.port} refused: "
                    f"{text.decode(errors='replace')}"
                )
            response = await client.select(aioimaplib.quoted(s.folder))
            if response.result != "OK":
                raise ImapError(f"email.imap: cannot select folder {s.folder!r} of {self.key}")
        except ImapError:
            await self._close_client(client)
            raise
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            await self._close_client(client)
            raise ImapError(f"email.imap: cannot reach {s.host}:{s.port}: {exc!r}") from exc
        self._uidvalidity = _uidvalidity(response.lines)
        loggers.event(log, "imap.connected", mailbox=self.key, uidvalidity=self._uidvalidity)
        return client

    def _on_connection_lost(self, exc: Exception | None) -> None:
        self._lost.set()

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._close_client(client)

    async def _close_client(self, client: Any) -> None:
        with contextlib.suppress(Exception):
            if client.protocol.transport is not None and not self._lost.is_set():
                if client.has_pending_idle():
                    client.idle_done()
                await asyncio.wait_for(client.logout(), timeout=2.0)
        with contextlib.suppress(Exception):
            if client.protocol.transport is not None:
                client.protocol.transport.close()

    # -- the loop ------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self.backoff_base_s
        while not self._stopping.is_set():
            try:
                if self._client is None:
                    self._client = await self._connect()
                    backoff = self.backoff_base_s
                await self._session(self._client)
            except (ImapError, _ConnectionLost, OSError, TimeoutError) as exc:
                loggers.event(
                    log,
                    "imap.disconnected",
                    logging.WARNING,
                    mailbox=self.key,
                    error=exc,
                    retry_in=backoff,
                )
            except aioimaplib.AioImapException as exc:
                loggers.event(
                    log,
                    "imap.error",
                    logging.WARNING,
                    mailbox=self.key,
                    error=exc,
                    retry_in=backoff,
                )
            except Exception as exc:
                # The database away (the cursor, the lock) or a bug: never stop
                # watching, and do not back off as for an unreachable server.
                loggers.event(
                    log,
                    "imap.failed",
                    logging.WARNING,
                    mailbox=self.key,
                    error=repr(exc)[:200],
                    retry_in=self.retry_s,
                )
                await self._sleep(self.retry_s)
                continue
            else:
                continue
            await self._close()
            await self._sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max_s)

    async def _session(self, client: Any) -> None:
        while not self._stopping.is_set():
            complete = await self._sync(client)
            if self._stopping.is_set():
                return
            if not complete:
                await self._sleep(self.retry_s)
            elif self._found:
                # Mail that came during this round was announced to its commands,
                # not to the IDLE that follows: look again until a round finds none.
                continue
            elif self.use_idle and client.has_capability("IDLE"):
                await self._idle(client)
            else:
                await self._sleep(self.poll_s)
                self._check(client)
                response = await client.noop()
                if response.result != "OK":
                    raise _ConnectionLost("NOOP failed")

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def _check(self, client: Any) -> None:
        if self._lost.is_set() or client.protocol.transport is None:
            raise _ConnectionLost("connection closed by the server")

    async def _idle(self, client: Any) -> None:
        """One IDLE: return on news from the server, on the re-IDLE time, or on stop."""
        self._check(client)
        idle = await client.idle_start(timeout=self.re_idle_s)
        waits = {
            asyncio.ensure_future(client.wait_server_push(timeout=self.re_idle_s + 60)),
            asyncio.ensure_future(self._lost.wait()),
            asyncio.ensure_future(self._stopping.wait()),
        }
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        self._check(client)
        client.idle_done()
        await asyncio.wait_for(idle, timeout=self.timeout_s)
        queue = client.protocol.idle_queue
        while not queue.empty():  # the next round reads whatever these announced
            queue.get_nowait()

    async def _sync(self, client: Any) -> bool:
        """Deliver every message above the cursor; False when a delivery failed."""
        self._check(client)
        uidvalidity = self._uidvalidity
        stored = await self.cursor.load(self.key)
        last = 0
        if stored is not None:
            if stored[0] == uidvalidity:
                last = stored[1]
            else:
                loggers.event(
                    log,
                    "imap.uidvalidity_changed",
                    logging.WARNING,
                    mailbox=self.key,
                    old=stored[0],
                    new=uidvalidity,
                )
        response = await client.uid_search(f"UID {last + 1}:*", charset=None)
        if response.result != "OK":
            raise ImapError(f"UID SEARCH failed: {response.lines!r}")
        # "N:*" always matches the highest UID, even one at or below N: filter.
        uids = sorted(u for u in _search_uids(response.lines) if u > last)
        self._found = len(uids)
        for start in range(0, len(uids), _FETCH_BATCH):
            batch = uids[start : start + _FETCH_BATCH]
            response = await client.uid("fetch", ",".join(map(str, batch)), "(UID BODY.PEEK[])")
            if response.result != "OK":
                raise ImapError(f"UID FETCH failed: {response.lines!r}")
            fetched = [(uid, raw) for uid, raw in sorted(parse_fetch(response.lines)) if uid > last]
            # Handed over together, so that ingest commits them as one group; each
            # is handed over in UID order, and a failed one stops the cursor there.
            outcomes = await asyncio.gather(*(self._deliver_one(u, r) for u, r in fetched))
            delivered = zip(fetched, outcomes, strict=True)
            done = [uid for (uid, _), outcome in delivered if outcome == "delivered"]
            if done:
                await self._file(client, done)
            complete = next(
                (i for i, outcome in enumerate(outcomes) if outcome == "failed"), len(fetched)
            )
            if complete:
                last = fetched[complete - 1][0]
                await self.cursor.save(self.key, uidvalidity, last)
            if complete < len(fetched):
                return False
        return True

    async def _file(self, client: Any, uids: list[int]) -> None:
        """Mark committed messages ``\\Seen``; with ``move_to``, move them there too
        (MOVE, RFC 6851, where the server has it; else COPY, ``\\Deleted``, EXPUNGE)."""
        members = ",".join(map(str, uids))
        await self._command(client, "store", members, "+FLAGS.SILENT", r"(\Seen)")
        target = self.settings.move_to
        if not target:
            return
        folder = aioimaplib.quoted(target)
        if client.has_capability("MOVE"):
            await self._command(client, "move", members, folder)
            return
        await self._command(client, "copy", members, folder)
        await self._command(client, "store", members, "+FLAGS.SILENT", r"(\Deleted)")
        if client.has_capability("UIDPLUS"):
            await self._command(client, "expunge", members)
        else:
            response = await client.expunge()
            if response.result != "OK":
                raise ImapError(f"EXPUNGE failed: {response.lines!r}")

    async def _command(self, client: Any, command: str, *args: str) -> None:
        response = await client.uid(command, *args)
        if response.result != "OK":
            raise ImapError(f"UID {command.upper()} failed: {response.lines!r}")

    async def _deliver_one(
        self, uid: int, raw: bytes
    ) -> Literal["delivered", "rejected", "failed"]:
        try:
            await self.deliver(raw)
        except MessageRejected as exc:
            # Never storable as it is: left unseen in the mailbox for a human, not retried.
            loggers.event(
                log, "imap.rejected", logging.ERROR, mailbox=self.key, uid=uid, reason=exc
            )
            return "rejected"
        except Exception as exc:
            loggers.event(
                log,
                "imap.deliver_failed",
                logging.WARNING,
                mailbox=self.key,
                uid=uid,
                error=repr(exc),
            )
            return "failed"
        return "delivered"


def _uidvalidity(lines: list[Any]) -> int:
    for line in lines:
        if isinstance(line, bytes):
            match = _UIDVALIDITY.search(line)
            if match:
                return int(match.group(1))
    raise ImapError("the server sent no UIDVALIDITY on SELECT")


def _search_uids(lines: list[Any]) -> list[int]:
    uids: list[int] = []
    for line in lines:
        if isinstance(line, bytes):
            words = line.split()
            if words[:1] == [b"SEARCH"]:
                words = words[1:]
            if words and all(w.isdigit() for w in words):
                uids.extend(int(w) for w in words)
    return uids
