"""Business events written: a batch of them in one unit of work, with group
commit for the API's concurrent callers.

:func:`write` takes checked events (:mod:`hub.clients.events`) and, in one
synchronous transaction: answers a key recorded already with what it recorded
(``duplicate``), finds each client (by id, following a merge; else by the
first identity somebody holds; else a new client with them all, whose
identities nobody held), writes each event as a ``business_events`` row and an
``event`` interaction on the client's timeline (``extras["business_event"]``)
with its audit entry, queues ``event.recorded`` (and ``client.created``) for
the webhooks, and runs the stage rules on what was recorded.

Two callers naming the same new client, or posting the same key, at the same
moment: on SQLite the writes take turns (``BEGIN IMMEDIATE``), so the second
finds the first's rows; on PostgreSQL one of them breaks a unique constraint,
and :class:`EventRecorder` writes its batch again event by event, when the
other's rows are there to be found.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from hub.clients import stage_rules
from hub.clients.events import ClientRef, EventIn, UnknownClient, line
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.types import Direction
from storage import Database
from storage import events as q
from storage.webhooks import Emitted, emit_sync

log = loggers.core

Pair = tuple[str, str]
MAX_BATCH = 500


@dataclass(frozen=True, slots=True)
class Recorded:
    """What an event became: its id and client; ``duplicate`` when the key was
    recorded before (then the first recording's id and client)."""

    id: int
    client_id: int
    duplicate: bool = False
    new_client: bool = False


Outcome = Recorded | UnknownClient
_Waiting = tuple[EventIn, "asyncio.Future[Outcome]"]  # an event and its caller's answer


@dataclass(slots=True)
class _Batch:
    """A batch on its way through :func:`write`."""

    events: Sequence[EventIn]
    outcomes: list[Outcome | None]
    clients: list[int | None]  # per event: its client, once known
    fresh: list[int] = field(default_factory=list)  # the places of events to write
    created: dict[int, str | None] = field(default_factory=dict)  # new client -> name


def write(
    conn: Connection,
    events: Sequence[EventIn],
    *,
    rules: stage_rules.StageRules,
    actor: str,
    now: datetime,
) -> list[Outcome]:
    """Record ``events`` in the caller's unit of work; an outcome per event, in order."""
    batch = _Batch(events, [None] * len(events), [None] * len(events))
    _deduplicate(conn, batch)
    _find_clients(conn, batch, now)
    facts = _record(conn, batch, actor, now)
    stage_rules.on_events(conn, rules, facts, now)
    return [o for o in batch.outcomes if o is not None]


def _deduplicate(conn: Connection, batch: _Batch) -> None:
    """Keys recorded before answer with their event; a key twice in the batch is
    written once (the later ones answered after, in :func:`_record`)."""
    stored = q.by_keys(conn, {e.key for e in batch.events})
    first: set[str] = set()
    for place, event in enumerate(batch.events):
        found = stored.get(event.key)
        if found is not None:
            batch.outcomes[place] = Recorded(found.id, found.client_id, duplicate=True)
        elif event.key not in first:
            first.add(event.key)
            batch.fresh.append(place)


def _find_clients(conn: Connection, batch: _Batch, now: datetime) -> None:
    """Each fresh event's client: by id (unknown: the event's outcome), else by
    identity, creating those nobody holds."""
    refs = {p: batch.events[p].client for p in batch.fresh}
    live = q.live_clients(conn, {r.id for r in refs.values() if r.id is not None})
    pairs = list(dict.fromkeys(pair for r in refs.values() for pair in r.identities))
    held = q.holders(conn, pairs)
    wanted: dict[Pair, ClientRef] = {}  # the identity a new client is made for
    for place, ref in refs.items():
        if ref.id is not None:
            if ref.id in live:
                batch.clients[place] = live[ref.id]
            else:
                batch.outcomes[place] = UnknownClient(f"client {ref.id} not found")
            continue
        holder = next((held[p] for p in ref.identities if p in held), None)
        if holder is None:
            key = next((p for p in ref.identities if p in wanted), ref.identities[0])
            wanted.setdefault(key, ref)
            for pair in ref.identities:
                wanted.setdefault(pair, wanted[key])  # later events find it by any
    made = _new_clients(conn, wanted, now)
    batch.created.update((client_id, wanted[pair].name) for pair, client_id in made.items())
    _link(conn, batch, refs, held, made, now)


def _new_clients(conn: Connection, wanted: dict[Pair, ClientRef], now: datetime) -> dict[Pair, int]:
    """One new client per distinct :class:`ClientRef` of ``wanted``; their ids by
    each identity that names them."""
    refs = list(dict.fromkeys(wanted.values()))
    rows = [
        {
            "name": ref.name,
            "language": None,
            "source": "event",
            "stage": "prospect",
            "owner_id": None,
            "opted_out": False,
            "created_at": now,
            "updated_at": now,
        }
        for ref in refs
    ]
    ids = dict(zip(refs, q.new_clients(conn, rows), strict=True))
    return {pair: ids[ref] for pair, ref in wanted.items()}


def _link(
    conn: Connection,
    batch: _Batch,
    refs: dict[int, ClientRef],
    held: dict[Pair, int],
    made: dict[Pair, int],
    now: datetime,
) -> None:
    """Each event's client by identity; the identities nobody held join it."""
    rows: list[dict[str, Any]] = []
    for place, ref in refs.items():
        if ref.id is not None:
            continue
        client_id = next((held[p] for p in ref.identities if p in held), None)
        if client_id is None:
            client_id = next(made[p] for p in ref.identities if p in made)
        batch.clients[place] = client_id
        for kind, value in ref.identities:
            if (kind, value) not in held:
                held[(kind, value)] = client_id
                rows.append(
                    {"client_id": client_id, "kind": kind, "value": value, "created_at": now}
                )
    q.add_identities(conn, rows)


def _record(conn: Connection, batch: _Batch, actor: str, now: datetime) -> list[stage_rules.Fact]:
    """The fresh events written (row, timeline, audit, webhooks); repeats of a
    key in the batch answered with its first; the facts for the stage rules."""
    places = [p for p in batch.fresh if batch.outcomes[p] is None]
    rows, timeline, audits, facts = [], [], [], []
    for place in places:
        e, client_id = batch.events[place], batch.clients[place]
        assert client_id is not None
        at = e.at or now
        rows.append(_event_row(e, client_id, at, now))
        timeline.append(_timeline_row(e, client_id, at, actor))
        audits.append(_audit_row(e, client_id, actor, now))
        facts.append(stage_rules.Fact(client_id, e.kind, e.amount, e.currency, at))
    ids = q.add_events(conn, rows, timeline, audits)
    emitted = [
        Emitted("client.created", c, now, {"client_id": c, "name": name, "channel": None})
        for c, name in sorted(batch.created.items())
    ]
    by_key: dict[str, Recorded] = {}
    for place, event_id, row in zip(places, ids, rows, strict=True):
        client_id = row["client_id"]
        done = Recorded(event_id, client_id, new_client=client_id in batch.created)
        batch.outcomes[place] = by_key[row["key"]] = done
        emitted.append(Emitted("event.recorded", client_id, row["at"], _data(event_id, row)))
    emit_sync(conn, emitted, now)
    for place, event in enumerate(batch.events):
        if batch.outcomes[place] is None and event.key in by_key:
            first = by_key[event.key]
            batch.outcomes[place] = Recorded(first.id, first.client_id, duplicate=True)
    return facts


def _event_row(e: EventIn, client_id: int, at: datetime, now: datetime) -> dict[str, Any]:
    return {
        "key": e.key,
        "kind": e.kind,
        "client_id": client_id,
        "interaction_id": None,
        "at": at,
        "amount": e.amount,
        "currency": e.currency,
        "fields": dict(e.fields) or None,
        "created_at": now,
    }


def _said(e: EventIn) -> dict[str, Any]:
    """The event as its timeline entry and outgoing event tell it."""
    return {
        "key": e.key,
        "kind": e.kind,
        "amount": None if e.amount is None else str(e.amount),
        "currency": e.currency,
        "fields": dict(e.fields),
    }


def _timeline_row(e: EventIn, client_id: int, at: datetime, actor: str) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "conversation_id": None,
        "direction": Direction.EVENT.value,
        "channel": None,
        "author": actor,
        "text": line(e.kind, e.amount, e.currency, e.fields),
        "extras": {"business_event": _said(e)},
        "at": at,
    }


def _audit_row(e: EventIn, client_id: int, actor: str, now: datetime) -> dict[str, Any]:
    return {
        "at": now,
        "actor": actor,
        "action": "event",
        "object_type": "client",
        "object_id": client_id,
        "details": {"key": e.key, "kind": e.kind},
    }


def _data(event_id: int, row: dict[str, Any]) -> dict[str, Any]:
    amount = row["amount"]
    return {
        "id": event_id,
        "key": row["key"],
        "kind": row["kind"],
        "client_id": row["client_id"],
        "at": row["at"].isoformat(),
        "amount": None if amount is None else str(amount),
        "currency": row["currency"],
        "fields": row["fields"] or {},
    }


class EventRecorder:
    """Records events for concurrent callers with group commit: the events that
    arrive while a batch is being written go together in the next one."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        rules: Callable[[], stage_rules.StageRules] = stage_rules.StageRules,
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        """``rules``: the stage rules in force (a reload changes them)."""
        self.db, self.clock, self.rules, self.max_batch = db, clock, rules, max_batch
        self._queue: list[tuple[EventIn, str, asyncio.Future[Outcome]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, event: EventIn, *, actor: str) -> Recorded:
        """Record one event (once committed); :class:`UnknownClient` for an id
        that names nobody."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append((event, actor, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="events-writer")
        outcome = await future
        if isinstance(outcome, UnknownClient):
            raise outcome
        return outcome

    async def record_many(self, events: Sequence[EventIn], *, actor: str) -> list[Outcome]:
        """Record ``events`` (an import) in one unit of work; an outcome per event."""
        return await self._write(list(events), actor)

    async def close(self) -> None:
        """Wait for the batch being written (at shutdown)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer

    async def _drain(self) -> None:
        while self._queue:
            taken, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            # one actor per unit of work: the audit log names each event's own caller
            by_actor: dict[str, list[_Waiting]] = {}
            for event, actor, future in taken:
                by_actor.setdefault(actor, []).append((event, future))
            for actor, items in by_actor.items():
                await self._answer(items, actor)

    async def _answer(
        self, items: list[tuple[EventIn, asyncio.Future[Outcome]]], actor: str
    ) -> None:
        try:
            outcomes = await self._write([e for e, _ in items], actor)
        except Exception as exc:
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), outcome in zip(items, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    async def _write(self, events: list[EventIn], actor: str) -> list[Outcome]:
        """One unit of work; on a unique key broken by a concurrent writer (of the
        same key, or of the same new client), each event again on its own."""
        try:
            return await self._once(events, actor)
        except IntegrityError:
            if len(events) == 1:
                return await self._once(events, actor)  # the other's rows are there now
        loggers.event(log, "events.retried", count=len(events))
        return [(await self._write([e], actor))[0] for e in events]

    async def _once(self, events: list[EventIn], actor: str) -> list[Outcome]:
        now, rules = self.clock.now(), self.rules()
        return await self.db.run_write(
            lambda conn: write(conn, events, rules=rules, actor=actor, now=now)
        )
