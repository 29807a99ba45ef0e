"""The one ingest path every channel's messages take, with group commit.

``Ingestor.__call__`` is the sink channels hand messages to. Concurrent calls
are gathered by one writer task into one transaction (group commit), which
:mod:`hub.ingest.batch` writes: resolve or create clients by identity, find or
open conversations (thread hints first, then the client's open conversation on
the channel), append interactions, ask ``routing`` for a decision on new or
unassigned conversations, write the notifications they cause to the outbox
(sparing the staff a client's flood, and all of a blocked client's). A
call returns only after its batch is committed. A redelivery (same channel and
external id) returns the interaction already stored, with ``duplicate=True``.
A message without identities (mail whose sender could not be read) is logged
on a new client of its own, with a warning for the staff.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date

from sqlalchemy.exc import DataError, DBAPIError, OperationalError

from hub.clients.attachments import AttachmentStore
from hub.clients.stage_rules import StageRules
from hub.delivery.bounces import record_bounce
from hub.ingest.auto_replies import AutoReplies
from hub.ingest.batch import BatchWriter
from hub.ingest.comments import CommentWindow
from hub.ingest.records import AttachedFile, Pending
from hub.ingest.rules import needs_profile
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.errors import MessageRejected, StorageUnavailable
from hub.kernel.types import InboundMessage, IngestResult
from routing import Rules
from routing.sla import Policy
from storage import Database

__all__ = ["AutoReplies", "Ingestor", "Tuning"]  # configured with the ingestor

log = loggers.ingest


def _refused_data(exc: BaseException) -> bool:
    """The database refused the data itself (SQLSTATE class 22), not the moment."""
    if isinstance(exc, DataError):
        return True
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    return isinstance(code, str) and code.startswith("22")


_MAX_ID = 500  # the external_id column


def _fit_id(external_id: str) -> str:
    """An over-long external id (a broken Message-ID, say) stands in by its digest."""
    if len(external_id) <= _MAX_ID:
        return external_id
    return "sha256:" + hashlib.sha256(external_id.encode("utf-8", "surrogatepass")).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class Tuning:
    """What a reload of the config changes in a running ingestor, all at once."""

    rules: Rules
    policies: tuple[Policy, ...]
    auto_replies: AutoReplies | None
    holidays: frozenset[date]
    flood_per_minute: int
    stage_rules: StageRules = dataclasses.field(default_factory=StageRules)


class Ingestor:
    """The ingest sink; ``start()`` runs the writer, ``stop()`` drains it."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        attachments: AttachmentStore,
        *,
        staff_channel: str | None = None,
        timezone: str = "UTC",
        window_ms: float = 0.0,
        max_batch: int = 2000,
        on_commit: Callable[[], None] | None = None,
        auto_replies: AutoReplies | None = None,
        rules: Rules | None = None,
        holidays: Iterable[date] = (),
        policies: tuple[Policy, ...] = (),
        flood_per_minute: int = 0,
        language: str = "ru",
        csat: CommentWindow | None = None,
        stage_rules: StageRules | None = None,
    ) -> None:
        self.db = db
        self.stage_rules = stage_rules or StageRules()  # [[stages.rules]], and the return
        self.csat = csat  # [csat]: a client's reply right after rating is its comment
        self.policies = policies
        self.flood_per_minute = flood_per_minute  # desk.flood_per_minute; 0: off
        self.language = language  # the staff's (a flood's notice)
        self.rules = rules or Rules()
        self.holidays = frozenset(holidays)
        self.needs_profile = needs_profile(self.rules)
        self.last_given: dict[str, int] = {}  # round robin, kept between batches
        self.clock = clock
        self.attachments = attachments
        self.staff_channel = staff_channel
        self.timezone = timezone
        self.window = window_ms / 1000
        self.max_batch = max_batch
        self.on_commit = on_commit
        self.auto_replies = auto_replies
        self._queue: list[Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._writing = False
        self._retuned: Tuning | None = None  # taken once the batch being written is done
        self.batches = 0
        self.committed = 0
        self.ingested: dict[str, int] = defaultdict(int)  # new messages logged, by channel

    async def start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="ingest-writer")

    async def stop(self) -> None:
        """Refuse new messages, commit what is queued, stop the writer."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def __call__(self, message: InboundMessage) -> IngestResult:
        if self._closing or self._task is None:
            raise StorageUnavailable("the hub is not accepting messages (stopping)")
        if len(message.external_id) > _MAX_ID or (
            message.thread_hints and any(len(h) > _MAX_ID for h in message.thread_hints)
        ):
            message = dataclasses.replace(
                message,
                external_id=_fit_id(message.external_id),
                thread_hints=tuple(_fit_id(h) for h in message.thread_hints),
            )
        if message.extras and message.extras.get("auto") == "bounce":
            try:
                bounce = await record_bounce(
                    self.db, self.clock, message, staff_channel=self.staff_channel
                )
            except (DBAPIError, OSError) as exc:
                raise StorageUnavailable(f"storage failed: {type(exc).__name__}") from None
            if bounce is not None:
                if self.on_commit is not None:
                    self.on_commit()
                return bounce
        pending = Pending(message, asyncio.get_running_loop().create_future())
        if message.attachments:
            await self._store_files(pending)
            if self._closing:
                # stop() may have drained the queue and ended the writer meanwhile
                raise StorageUnavailable("the hub is not accepting messages (stopping)")
        self._queue.append(pending)
        self._wake.set()
        return await pending.future

    def committed_elsewhere(self, channel: str, new: int, duplicates: int = 0) -> None:
        """Messages another process (the mail worker) committed: counted with this
        process's, and the outbox woken for the notifications they brought."""
        if new:
            self.ingested[channel] += new
        if (new or duplicates) and self.on_commit is not None:
            self.on_commit()

    async def _store_files(self, pending: Pending) -> None:
        for att in pending.message.attachments:
            if len(att.data) > self.attachments.max_bytes:
                pending.skipped.append(
                    f"{att.filename}: {len(att.data)} bytes, over the limit of "
                    f"{self.attachments.max_bytes}"
                )
                continue
            stored = await self.attachments.put(att.data)
            pending.files.append(
                AttachedFile(att.filename, att.content_type, stored.sha256, stored.size)
            )

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.window and len(self._queue) < self.max_batch and not self._closing:
                await asyncio.sleep(self.window)
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            await self._commit(batch)

    async def _commit(self, batch: list[Pending]) -> None:
        try:
            results = await self._write(batch)
        except Exception as exc:
            await self._failed(batch, exc)
            return
        self._committed(batch, results)

    async def _failed(self, batch: list[Pending], exc: Exception) -> None:
        """A batch that did not commit: written again message by message when one
        of them may be the cause, else each sender told why (called while ``exc``
        is being handled, so that its traceback is logged)."""
        transient = isinstance(exc, OperationalError | OSError) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated
        )
        if not transient and len(batch) > 1:
            # One message's data, or a concurrent writer of another instance,
            # broke the batch: commit each message alone.
            for pending in batch:
                await self._commit([pending])
            return
        error: Exception = exc
        if _refused_data(exc):
            # The database refuses this message's data as such: retrying
            # cannot help, so the sender is told so (SMTP 554, form 422).
            error = MessageRejected(f"the message cannot be stored: {type(exc).__name__}")
            log.error("ingest.rejected %s", loggers.redact(str(exc).splitlines()[0]))
        elif isinstance(exc, DBAPIError | OSError):
            error = StorageUnavailable(f"storage failed: {type(exc).__name__}")
            loggers.event(
                log,
                "ingest.failed",
                logging.WARNING,
                batch=len(batch),
                error=loggers.redact(str(exc).splitlines()[0] if str(exc) else ""),
            )
        else:
            log.exception("ingest.error")
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)

    def _committed(self, batch: list[Pending], results: list[IngestResult]) -> None:
        """Count the batch, tell the listener, answer (and log) each message."""
        self.batches += 1
        self.committed += len(batch)
        if self.on_commit is not None:
            try:
                self.on_commit()
            except Exception:  # a listener's bug must not stop the writer
                log.exception("ingest.on_commit_failed")
        logged = log.isEnabledFor(logging.INFO)
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)
            if not result.duplicate:
                self.ingested[pending.message.channel.value] += 1
            if logged:
                m = pending.message
                loggers.event(
                    log,
                    "ingest.duplicate" if result.duplicate else "ingest.logged",
                    channel=m.channel.value,
                    account=m.account,
                    interaction=result.interaction_id,
                    client=result.client_id,
                    conversation=result.conversation_id,
                )

    def retune(self, tuning: Tuning) -> None:
        """New rules, policies and replies (a reload), for the next batch: the one
        being written (on SQLite, in another thread) keeps what it began with."""
        self._retuned = tuning
        if not self._writing:
            self._take_tuning()

    def _take_tuning(self) -> None:
        tuning, self._retuned = self._retuned, None
        if tuning is not None:
            self.rules = tuning.rules
            self.needs_profile = needs_profile(tuning.rules)
            self.policies = tuning.policies
            self.auto_replies = tuning.auto_replies
            self.holidays = tuning.holidays
            self.flood_per_minute = tuning.flood_per_minute
            self.stage_rules = tuning.stage_rules

    async def _write(self, batch: list[Pending]) -> list[IngestResult]:
        now = self.clock.now()
        self._writing = True
        try:
            return await self.db.run_write(lambda conn: BatchWriter(self, conn, now).run(batch))
        finally:
            self._writing = False
            self._take_tuning()
