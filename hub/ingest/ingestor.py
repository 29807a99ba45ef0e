"""The one ingest path every channel's messages take, with group commit.

``Ingestor.__call__`` is the sink channels hand messages to. Concurrent calls
are gathered by one writer task into one transaction (group commit): resolve
or create clients by identity, find or open conversations (thread hints first,
then the client's open conversation on the channel), append interactions, ask
``routing`` for a decision on new or unassigned conversations, write the
notifications they cause to the outbox. A call returns only after its batch is
committed. A redelivery (same channel and external id) returns the interaction
already stored, with ``duplicate=True``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, DBAPIError, OperationalError

from hub.delivery.bounces import record_bounce
from hub.desk.replies import REPLY_ROUTE
from hub.clients.attachments import AttachmentStore
from hub.ingest.rules import needs_profile
from hub.jobs.waiting import snapshot_of
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.errors import MessageRejected, StorageUnavailable
from hub.kernel.types import Channel, Delivery, Direction, InboundMessage, IngestResult
from routing import Decision, Request, Rules, Snapshot, decide
from routing.hours import Hours
from routing.sla import Policy, choose, timing
from storage import Database
from storage import ingest as q
from storage import sla as sla_q

log = loggers.ingest
_IN, _OUT, _EVENT = Direction.IN.value, Direction.OUT.value, Direction.EVENT.value
_PENDING = Delivery.PENDING.value
_CHANNEL = {c: c.value for c in Channel}  # plain strings for the rows, without enum lookups


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


def _clip(text: str | None, limit: int) -> str | None:
    """Fit a header-like field in its column; the full text stays in the message."""
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class AutoReplies:
    """Texts the hub answers by itself, per language (``ru``, ``en``); ``hours`` are
    the company's working hours (None: always open)."""

    greeting: dict[str, str]
    out_of_hours: dict[str, str]
    default_language: str = "ru"
    hours: Hours | None = None
    timezone: str = "UTC"

    def open_at(self, now: datetime) -> bool:
        return self.hours is None or self.hours.contains(now.astimezone(ZoneInfo(self.timezone)))

    def text(self, kind: str, language: str | None) -> str | None:
        texts = self.greeting if kind == "greeting" else self.out_of_hours
        return texts.get(language or self.default_language) or texts.get(self.default_language)


class _Pending:
    """A message waiting for its batch, with its stored attachment files."""

    __slots__ = ("files", "future", "message", "skipped")

    def __init__(self, message: InboundMessage, future: asyncio.Future[IngestResult]) -> None:
        self.message = message
        self.future = future
        self.files: list[tuple[str, str, str, int]] = []
        self.skipped: list[str] = []


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
    ) -> None:
        self.db = db
        self.policies = policies
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
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
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
        if not message.identities:
            raise ValueError("an inbound message needs at least one identity")
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
        pending = _Pending(message, asyncio.get_running_loop().create_future())
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

    async def _store_files(self, pending: _Pending) -> None:
        for att in pending.message.attachments:
            if len(att.data) > self.attachments.max_bytes:
                pending.skipped.append(
                    f"{att.filename}: {len(att.data)} bytes, over the limit of "
                    f"{self.attachments.max_bytes}"
                )
                continue
            stored = await self.attachments.put(att.data)
            pending.files.append((att.filename, att.content_type, stored.sha256, stored.size))

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

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            results = await self._write(batch)
        except Exception as exc:
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
            return
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

    async def _write(self, batch: list[_Pending]) -> list[IngestResult]:
        now = self.clock.now()
        return await self.db.run_write(lambda conn: _BatchWriter(self, conn, now).run(batch))


class _Conv:
    """A conversation as the batch sees it; ``id`` is 0 until a new one is inserted."""

    __slots__ = ("assignee_id", "changed", "client_id", "id", "row", "status")

    def __init__(
        self,
        id: int,
        client_id: int,
        status: str,
        assignee_id: int | None,
        row: dict[str, Any] | None = None,
    ) -> None:
        self.id = id
        self.client_id = client_id
        self.status = status
        self.assignee_id = assignee_id
        self.row = row
        self.changed = False  # an existing conversation reopened or assigned in this batch


class _BatchWriter:
    """One batch inside one transaction, in set-based phases: dedup, clients,
    conversations (with routing), interactions, attachments, outbox."""

    def __init__(self, ingestor: Ingestor, conn: Connection, now: datetime) -> None:
        self.ing = ingestor
        self.conn = conn
        self.now = now
        self.snapshot: Snapshot | None = None
        self.telegram_ids: dict[int, int] = {}
        self.clients: list[int] = []
        self.profiles: dict[int, q.ClientProfile] | None = None
        # What matched routing rules ask for, applied set-based after routing.
        self.new_tags: dict[int, tuple[str, ...]] = {}
        self.rule_replies: dict[int, Decision] = {}

    def run(self, batch: list[_Pending]) -> list[IngestResult]:
        conn, now = self.conn, self.now
        results: list[IngestResult | None] = [None] * len(batch)

        # 1. Redeliveries: already stored, or twice in this batch.
        by_channel: dict[str, list[str]] = defaultdict(list)
        for p in batch:
            by_channel[p.message.channel].append(p.message.external_id)
        received: dict[tuple[str, str], q.Received] = {}
        for channel, external_ids in by_channel.items():
            for ext, rec in (q.find_received(conn, channel, external_ids)).items():
                received[(channel, ext)] = rec
        fresh: list[int] = []
        first_of: dict[tuple[str, str], int] = {}
        repeats: list[tuple[int, int]] = []
        for index, p in enumerate(batch):
            key = (p.message.channel, p.message.external_id)
            if key in received:
                rec = received[key]
                results[index] = IngestResult(
                    rec.interaction_id, rec.client_id, rec.conversation_id, duplicate=True
                )
            elif key in first_of:
                repeats.append((index, first_of[key]))
            else:
                first_of[key] = index
                fresh.append(index)

        # 2. Clients by identity (and their open conversations on the message's
        # channel); a sender nobody holds becomes a new client.
        pairs_by_channel: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for x in fresh:
            m = batch[x].message
            channel_pairs = pairs_by_channel[m.channel]
            for ident in m.identities:
                channel_pairs.add((ident.kind, ident.value))
        known: dict[tuple[str, str], q.KnownIdentity] = {}
        open_convs: dict[tuple[str, int], _Conv] = {}
        for channel, pairs in pairs_by_channel.items():
            found, found_open = q.find_clients(conn, channel, list(pairs))
            known.update(found)
            for client_id, row in found_open.items():
                open_convs[(channel, client_id)] = _Conv(
                    row.id, client_id, row.status, row.assignee_id
                )
        # A message joins the client of its first identity somebody holds (in the
        # database, or proven by an earlier message of the batch); when nobody
        # holds any, its sender becomes a new client.
        new_client_rows: list[dict[str, Any]] = []
        new_client_keys: list[tuple[str, str]] = []
        claimed: set[tuple[str, str]] = set()
        decides: dict[int, tuple[str, str]] = {}
        for x in fresh:
            m = batch[x].message
            first = m.identities[0]
            held = (first.kind, first.value)
            if held not in known and held not in claimed:
                held = next(
                    (
                        p
                        for p in ((i.kind, i.value) for i in m.identities[1:])
                        if p in known or p in claimed
                    ),
                    held,
                )
            if held not in known and held not in claimed:
                new_client_keys.append(held)
                new_client_rows.append(
                    {
                        "name": _clip(first.display_name, 300),
                        "language": m.language,
                        "source": _clip(m.extras.get("source"), 300) if m.extras else None,
                        "stage": "prospect",
                        "owner_id": None,
                        "opted_out": False,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            decides[x] = held
            for ident in m.identities:
                claimed.add((ident.kind, ident.value))
        created = dict(zip(new_client_keys, q.insert_clients(conn, new_client_rows), strict=True))
        new_clients = set(created.values())
        client_of: dict[int, int] = {}
        owner_of: dict[int, int | None] = {}
        identity_rows: list[dict[str, Any]] = []
        for x in fresh:
            m = batch[x].message
            sender = known.get(decides[x]) or q.KnownIdentity(created[decides[x]], None)
            client_of[x] = sender.client_id
            owner_of.setdefault(sender.client_id, sender.owner_id)
            # The message's other identities join its client only when nobody holds
            # them yet: one held by another client is a probable duplicate, for a
            # person to merge, never moved silently.
            for ident in m.identities:
                pair = (ident.kind, ident.value)
                if pair not in known:
                    known[pair] = sender
                    identity_rows.append(
                        {
                            "client_id": sender.client_id,
                            "kind": ident.kind.value,
                            "value": ident.value,
                            "display_name": ident.display_name,
                            "created_at": now,
                        }
                    )
        q.add_identities(conn, identity_rows)

        # 3. Conversations: a thread hint first, then the client's open one, else new.
        self.clients = list(set(client_of.values()))
        hints_by_channel: dict[str, list[str]] = defaultdict(list)
        for x in fresh:
            hints_by_channel[batch[x].message.channel].extend(batch[x].message.thread_hints)
        threads: dict[tuple[str, str], tuple[int, int]] = {}
        for channel, hints in hints_by_channel.items():
            if hints:
                for ext, hit in q.find_threads(conn, channel, hints).items():
                    threads[(channel, ext)] = hit
        threaded = q.get_conversations(conn, list({c for c, _ in threads.values()}))
        conv_of: dict[int, _Conv] = {}
        decisions: list[tuple[int, _Conv, Decision]] = []
        new_convs: list[_Conv] = []
        existing: dict[int, _Conv] = {}
        opened_by: dict[int, int] = {}  # a new conversation -> the message that opened it
        owners: dict[int, int] = {}
        # one _Conv per conversation, so it is routed once however many messages join it
        joined: dict[int, _Conv] = {}
        queued: set[_Conv] = set()
        for x in fresh:
            m, client_id = batch[x].message, client_of[x]
            if m.extras and (m.extras.get("service") or m.extras.get("auto")):
                # A bare /start or /stop, an auto-reply, a bounce of mail the hub did
                # not send: logged on the client, but no request to route.
                continue
            channel = m.channel
            conv = None
            for hint in m.thread_hints:
                thread = threads.get((channel, hint))
                # a thread never crosses to another client's conversation
                if thread is not None and thread[1] == client_id:
                    row = threaded[thread[0]]
                    conv = open_convs.get((channel, client_id))
                    if conv is None or conv.id != row.id:
                        conv = joined.setdefault(
                            row.id, _Conv(row.id, client_id, row.status, row.assignee_id)
                        )
                    break
            if conv is None:
                conv = open_convs.get((channel, client_id))
            if conv is None:
                conv = _Conv(
                    0,
                    client_id,
                    "open",
                    None,
                    {
                        "client_id": client_id,
                        "channel": channel.value,
                        "account": m.account,
                        "status": "open",
                        "subject": _clip(m.subject, 500),
                        "priority": "normal",
                        "created_at": now,
                        "updated_at": now,
                    },
                )
                new_convs.append(conv)
                opened_by[id(conv)] = x
                open_convs[(channel, client_id)] = conv
            if conv.assignee_id is None:
                decision = self._route(m, client_id, owner_of[client_id], client_id in new_clients)
                self._actions(x, conv, client_id, decision)
                if decision.assignee_id is not None or (
                    conv.row is not None and conv not in queued
                ):
                    decisions.append((x, conv, decision))
                    if decision.assignee_id is None:
                        queued.add(conv)
                if decision.assignee_id is not None:
                    conv.assignee_id = decision.assignee_id
                    conv.changed = True
                    if owner_of[client_id] is None:
                        owners[client_id] = owner_of[client_id] = decision.assignee_id
            if conv.row is None:
                existing[conv.id] = conv
                if conv.status != "open":  # pending or resolved: the client wrote again
                    conv.status = "open"
                    conv.changed = True
            conv_of[x] = conv
        for conv in new_convs:
            assert conv.row is not None
            conv.row["assignee_id"] = conv.assignee_id
        conv_ids = q.insert_conversations(conn, [c.row for c in new_convs if c.row])
        for conv, conv_id in zip(new_convs, conv_ids, strict=True):
            conv.id = conv_id
        q.reopen_or_assign(
            conn, [(c.id, c.assignee_id) for c in existing.values() if c.changed], now
        )
        q.set_owners(conn, owners)
        self._apply_tags()
        if self.ing.policies:
            self._deadlines(conv_of, new_convs, decisions)
        q.opt_out(conn, [client_of[x] for x in fresh if batch[x].message.extras.get("opt_out")])

        # 4. The interactions: each message, and each routing decision as an event.
        rows = [
            self._interaction(batch[x], client_of[x], conv_of[x].id if x in conv_of else None)
            for x in fresh
        ]
        rows.extend(
            self._event(client_of[x], conv.id, f"routed: {d.reason}") for x, conv, d in decisions
        )
        autos = self._auto_replies(batch, fresh, conv_of, opened_by)
        rows.extend(
            (
                client_of[x],
                conv_id,
                _OUT,
                channel,
                account,
                None,
                "hub",
                subject,
                text,
                None,
                {"auto_reply": kind},
                now,
                _PENDING,
            )
            for x, kind, text, channel, account, _, conv_id, subject in autos
        )
        ids = q.insert_interactions(conn, rows)
        interaction_of = dict(zip(fresh, ids, strict=False))
        auto_ids = ids[len(ids) - len(autos) :] if autos else []

        q.insert_attachments(
            conn,
            [
                {
                    "interaction_id": interaction_of[x],
                    "filename": name,
                    "content_type": ctype,
                    "sha256": sha,
                    "size": size,
                }
                for x in fresh
                for name, ctype, sha, size in batch[x].files
            ],
        )
        q.insert_notifications(
            conn, self._outbox(batch, fresh, client_of, conv_of, interaction_of, decisions)
        )
        q.insert_notifications(
            conn,
            [
                (
                    f"auto_reply:{iid}",
                    channel,
                    account,
                    recipient,
                    "auto_reply",
                    subject,
                    text,
                    client_of[x],
                    conv_id,
                    iid,
                    "pending",
                    0,
                    now,
                    now,
                )
                for (x, _, text, channel, account, recipient, conv_id, subject), iid in zip(
                    autos, auto_ids, strict=True
                )
            ],
        )

        for x in fresh:
            results[x] = IngestResult(
                interaction_of[x],
                client_of[x],
                conv_of[x].id if x in conv_of else None,
                duplicate=False,
                new_client=client_of[x] in new_clients,
                new_conversation=x in conv_of and opened_by.get(id(conv_of[x])) == x,
            )
        for index, original in repeats:
            done = results[original]
            assert done is not None
            results[index] = IngestResult(
                done.interaction_id, done.client_id, done.conversation_id, duplicate=True
            )
        return [r for r in results if r is not None]

    def _route(
        self, m: InboundMessage, client_id: int, owner_id: int | None, new_client: bool
    ) -> Decision:
        if self.snapshot is None:  # loaded once per batch, and only when needed
            self.snapshot = self._load_snapshot()
        profile = self._profile(client_id)
        request = Request(
            m.channel.value,
            m.account,
            owner_id,
            new_client,
            m.text,
            m.subject or "",
            m.language or (profile.language if profile else None),
            profile.tags if profile else frozenset(),
            profile.stage if profile else None,
        )
        decision = decide(self.snapshot, request, self.now, self.ing.rules)
        if decision.assignee_id is not None:
            self.snapshot.add_load(decision.assignee_id)
        return decision

    def _profile(self, client_id: int) -> q.ClientProfile | None:
        """The client's tags, stage and language; read (for the whole batch) only
        when a rule looks at them."""
        if not self.ing.needs_profile:
            return None
        if self.profiles is None:
            self.profiles = q.client_profiles(self.conn, self.clients)
        return self.profiles.get(client_id)

    def _actions(self, x: int, conv: _Conv, client_id: int, decision: Decision) -> None:
        """A matched rule's priority, tags and auto-reply."""
        if decision.priority and conv.row is not None:
            conv.row["priority"] = decision.priority
        if decision.tags:
            self.new_tags[client_id] = (*self.new_tags.get(client_id, ()), *decision.tags)
        if decision.reply and conv.row is not None:
            self.rule_replies[x] = decision

    def _deadlines(
        self,
        conv_of: dict[int, _Conv],
        new_convs: list[_Conv],
        decisions: list[tuple[int, _Conv, Decision]],
    ) -> None:
        """Open the SLA deadlines: first response and resolution for a new request,
        next response when the client writes again after an answer."""
        policies = self.ing.policies
        named = {id(conv): d.sla for _, conv, d in decisions}
        rows: list[dict[str, Any]] = []
        due: dict[int, datetime] = {}
        for conv in new_convs:
            assert conv.row is not None
            policy = choose(
                policies, named.get(id(conv)), conv.row["priority"], conv.row["channel"]
            )
            if policy is not None:
                self._deadline(rows, due, conv, policy, ("first_response", "resolution"))
        again = {c.id: c for c in conv_of.values() if c.row is None}
        known = sla_q.of_conversations(self.conn, list(again))
        by_name = {p.name: p for p in policies}
        for conv_id, info in known.items():
            policy = by_name.get(info.policy)
            if policy is None:
                continue
            kinds = []
            if not info.kinds & {"first_response", "next_response"}:
                kinds.append("next_response")
            if "resolution" not in info.kinds:
                kinds.append("resolution")
            self._deadline(rows, due, again[conv_id], policy, tuple(kinds))
        sla_q.add(self.conn, rows)
        sla_q.set_due(self.conn, due)

    def _deadline(
        self,
        rows: list[dict[str, Any]],
        due: dict[int, datetime],
        conv: _Conv,
        policy: Policy,
        kinds: tuple[str, ...],
    ) -> None:
        for kind in kinds:
            steps = timing(policy, kind, self.now)
            if steps is None:
                continue
            rows.append(
                {
                    "conversation_id": conv.id,
                    "client_id": conv.client_id,
                    "policy": policy.name,
                    "kind": kind,
                    "started_at": self.now,
                    "remind_at": steps.remind_at,
                    "due_at": steps.due_at,
                    "reassign_at": steps.reassign_at,
                    "step": 0,
                    "next_at": steps.remind_at,
                    "status": "open",
                    "met_at": None,
                    "created_at": self.now,
                }
            )
            if kind != "resolution":
                due[conv.id] = steps.due_at

    def _apply_tags(self) -> None:
        if not self.new_tags:
            return
        # The batch's profiles, when a rule already read them, are still current:
        # nothing in the batch writes tags before this.
        current = self.profiles
        if current is None:
            current = q.client_profiles(self.conn, list(self.new_tags))
        merged = {}
        for client_id, tags in self.new_tags.items():
            old = current[client_id].tags if client_id in current else frozenset()
            if not set(tags) <= old:
                merged[client_id] = sorted(old | set(tags))
        q.set_client_tags(self.conn, merged)

    def _telegram_id(self, manager_id: int) -> int:
        if manager_id not in self.telegram_ids:
            self.telegram_ids.update(q.manager_telegram_ids(self.conn))
        return self.telegram_ids[manager_id]

    def _load_snapshot(self) -> Snapshot:
        rows = q.routing_managers(self.conn)
        self.telegram_ids = {r.id: r.telegram_id for r in rows}
        return snapshot_of(rows, self.ing.timezone, self.ing.holidays, self.ing.last_given)

    def _interaction(self, p: _Pending, client_id: int, conv_id: int | None) -> tuple[Any, ...]:
        """A row in ``q.INTERACTION_COLUMNS`` order."""
        m = p.message
        first = m.identities[0]
        extras: dict[str, Any] | None = dict(m.extras) if m.extras else None
        if extras and "confirmation" in extras:
            # Logged as its own auto-reply interaction; the request keeps only that it asked.
            extras["confirmation"] = True
        if p.skipped:
            extras = extras or {}
            extras["attachments_skipped"] = p.skipped
        return (
            client_id,
            conv_id,
            _IN,
            _CHANNEL[m.channel],
            m.account,
            m.external_id,
            _clip(first.display_name or first.value, 300),
            _clip(m.subject, 500),
            m.text,
            m.html,
            extras,
            m.received_at,
            None,
        )

    def _event(self, client_id: int, conv_id: int, text: str) -> tuple[Any, ...]:
        """A routing decision as an ``event`` row, in ``q.INTERACTION_COLUMNS`` order."""
        return (
            client_id,
            conv_id,
            _EVENT,
            None,
            None,
            None,
            "hub",
            None,
            text,
            None,
            None,
            self.now,
            None,
        )

    def _auto_replies(
        self,
        batch: list[_Pending],
        fresh: list[int],
        conv_of: dict[int, _Conv],
        opened_by: dict[int, int],
    ) -> list[tuple[int, str, str, str, str, str, int | None, str | None]]:
        """The greeting after /start, the out-of-hours reply to a new request, and
        the confirmation a channel asked for (``extras["confirmation"]``, a form's):
        ``(message, kind, text, channel, account, recipient, conversation, subject)``."""
        replies = self.ing.auto_replies
        out: list[tuple[int, str, str, str, str, str, int | None, str | None]] = []
        for x in fresh:
            m = batch[x].message
            conv = conv_of.get(x)
            if m.extras and m.extras.get("auto"):
                continue  # an auto-reply or a bounce is never answered automatically
            confirmation = m.extras.get("confirmation") if m.extras else None
            if isinstance(confirmation, dict) and confirmation.get("to"):
                # Written with the message, so a redelivery (a duplicate) adds none.
                out.append(
                    (
                        x,
                        "confirmation",
                        str(confirmation.get("text", "")),
                        Channel.EMAIL.value,
                        m.account,
                        str(confirmation["to"]),
                        conv.id if conv is not None else None,
                        _clip(confirmation.get("subject"), 500),
                    )
                )
            rule = self.rule_replies.get(x)
            if rule is not None:
                texts = dict(rule.reply)
                body = texts.get(m.language or "") or next(iter(texts.values()))
                target = self._reply_target(m)
                if target is not None:
                    out.append(
                        (
                            x,
                            "rule_reply",
                            body,
                            target[0],
                            m.account,
                            target[1],
                            conv.id if conv is not None else None,
                            None,
                        )
                    )
                continue  # the rule's own reply instead of the generic ones
            if replies is None:
                continue
            if m.extras and m.extras.get("command") == "start":
                kind = "greeting"
            elif (
                conv is not None and opened_by.get(id(conv)) == x and not replies.open_at(self.now)
            ):
                kind = "out_of_hours"
            else:
                continue
            text = replies.text(kind, m.language)
            route = REPLY_ROUTE.get(_CHANNEL[m.channel])
            if text is None or route is None:
                continue
            channel, identity_kind = route
            recipient = next((i.value for i in m.identities if i.kind == identity_kind), None)
            if recipient is None:
                continue
            out.append(
                (
                    x,
                    kind,
                    text,
                    channel,
                    m.account,
                    recipient,
                    conv.id if conv is not None else None,
                    None,
                )
            )
        return out

    @staticmethod
    def _reply_target(m: InboundMessage) -> tuple[str, str] | None:
        """(channel, recipient) that reaches the sender of ``m``."""
        route = REPLY_ROUTE.get(_CHANNEL[m.channel])
        if route is None:
            return None
        channel, identity_kind = route
        recipient = next((i.value for i in m.identities if i.kind == identity_kind), None)
        return None if recipient is None else (channel, recipient)

    def _outbox(
        self,
        batch: list[_Pending],
        fresh: list[int],
        client_of: dict[int, int],
        conv_of: dict[int, _Conv],
        interaction_of: dict[int, int],
        decisions: list[tuple[int, _Conv, Decision]],
    ) -> list[tuple[Any, ...]]:
        """Each message mirrored to the staff group; the conversation's manager told
        in private too (the group has a small message budget, a private chat its
        own): a new assignee by ``assigned``, an existing one by ``notify``."""
        staff = self.ing.staff_channel
        if staff is None:
            return []
        assigned_now = {x for x, _, d in decisions if d.assignee_id is not None}
        out = []
        for x in fresh:
            conv = conv_of.get(x)
            if conv is None:
                continue  # service messages are not mirrored
            m, iid = batch[x].message, interaction_of[x]
            out.append(
                self._notice(
                    staff, "staff", "mirror", m, client_of[x], conv.id, iid, f"mirror:{iid}"
                )
            )
            if conv.assignee_id is not None and x not in assigned_now:
                recipient = str(self._telegram_id(conv.assignee_id))
                out.append(
                    self._notice(
                        staff, recipient, "notify", m, client_of[x], conv.id, iid, f"notify:{iid}"
                    )
                )
        for x, conv, decision in decisions:
            for offered in decision.offered:
                iid = interaction_of[x]
                out.append(
                    self._notice(
                        staff,
                        str(self._telegram_id(offered)),
                        "offer",
                        batch[x].message,
                        client_of[x],
                        conv.id,
                        iid,
                        f"offer:{conv.id}:{offered}:{iid}",
                    )
                )
            if decision.assignee_id is None:
                continue
            iid = interaction_of[x]
            recipient = str(self._telegram_id(decision.assignee_id))
            out.append(
                self._notice(
                    staff,
                    recipient,
                    "assigned",
                    batch[x].message,
                    client_of[x],
                    conv.id,
                    iid,
                    f"assigned:{conv.id}:{decision.assignee_id}:{iid}",
                )
            )
        return out

    def _notice(
        self,
        channel: str,
        recipient: str,
        kind: str,
        m: InboundMessage,
        client_id: int,
        conv_id: int,
        interaction_id: int,
        key: str,
    ) -> tuple[Any, ...]:
        """A staff notification, in ``q.OUTBOX_COLUMNS`` order."""
        return (
            key,
            channel,
            "staff",
            recipient,
            kind,
            _clip(m.subject, 500),
            m.text,
            client_id,
            conv_id,
            interaction_id,
            "pending",
            0,
            self.now,
            self.now,
        )
