"""Stage rules (``[[stages.rules]]``): a client moves when what they did says so.

Each rule is evaluated in the transaction that records its cause, so a move is
there exactly when its cause is:

- after business events (:func:`on_events`): ``purchase`` (the client's n-th
  event of ``kinds``) and ``total`` (the amounts of ``kinds`` in ``currency``
  within ``within_days`` reach ``amount_at_least``) fire on the event that makes
  their condition true;
- after a rating (:func:`after_rating`): ``rating``, a score within its bounds;
- after tags are added (:func:`on_tags`: routing rules' ``add_tags`` in ingest,
  ``/tag`` at the desk, an import): ``tag``;
- when a lapsed client writes (:func:`on_contact`, ingest) or buys again (an
  event of the ``return`` rule's ``kinds``): ``return``, back to the stage they
  had before they lapsed, else the rule's ``to``. With no ``return`` rule in the
  config the ladder's own return holds (:data:`DEFAULT_RETURN`): back to the
  stage before the lapse, else ``repeat_buyer`` (as the card's ⬆️ does).

A rule moves a client in one of its ``from`` stages (default: any but its ``to``),
up or down, never one whose stage a person set the same day in the hub's time
zone. The return comes first, then the rules in the config's order, each seeing
the stage the one before left. Every move names the rule and the reason
("rule first purchase: purchase #1") and emits ``stage.moved``
(:func:`hub.clients.stages.apply`).

The functions are synchronous over one ``Connection`` (ingest's batch and the
events' writer run so); the ``after_*`` coroutines run them from an
``AsyncConnection``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.clients.stages import Move, apply, up
from hub.kernel.types import LAPSED
from storage import stages as q

if TYPE_CHECKING:
    from hub.config import Config
    from hub.config.sections import StageRuleSection

WHO = "rule"


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``[[stages.rules]]`` table, compiled."""

    name: str
    when: str
    to: str | None
    sources: frozenset[str] = frozenset()  # ``from``; empty: any stage but ``to``
    kinds: frozenset[str] = frozenset({"purchase"})
    count: int = 1
    amount: Decimal | None = None
    currency: str | None = None
    within: timedelta | None = None
    lowest: int = 1  # score bounds
    highest: int = 5
    tag: str | None = None

    def takes(self, stage: str) -> bool:
        """Whether the rule moves a client who is at ``stage``."""
        if self.sources:
            return stage in self.sources
        return stage != self.to


DEFAULT_RETURN = Rule("return", "return", None)


@dataclass(frozen=True, slots=True)
class StageRules:
    """The rules of a config and the hub's time zone (a person's move that day is
    left alone); picklable, for the mail worker's ingest."""

    rules: tuple[Rule, ...] = ()
    timezone: str = "UTC"
    comeback: Rule = field(init=False)

    def __post_init__(self) -> None:
        found = next((r for r in self.rules if r.when == "return"), DEFAULT_RETURN)
        object.__setattr__(self, "comeback", found)

    def of(self, when: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.when == when)

    @property
    def on_tags(self) -> bool:
        """Whether any rule looks at tags (else adding tags costs nothing more)."""
        return any(r.when == "tag" for r in self.rules)


def compile_rule(section: StageRuleSection) -> Rule:
    return Rule(
        name=section.label,
        when=section.when,
        to=section.to,
        sources=frozenset(section.from_),
        kinds=frozenset(section.kinds),
        count=section.count,
        amount=None if section.amount_at_least is None else Decimal(str(section.amount_at_least)),
        currency=section.currency,
        within=None if section.within_days is None else timedelta(days=section.within_days),
        lowest=section.score_at_least or 1,
        highest=section.score_at_most or 5,
        tag=section.tag,
    )


def compile_stage_rules(config: Config) -> StageRules:
    return StageRules(
        tuple(compile_rule(r) for r in config.stages.rules), timezone=config.hub.timezone
    )


def day_start(now: datetime, timezone: str) -> datetime:
    """The first instant of ``now``'s day in ``timezone``."""
    zone = ZoneInfo(timezone)
    return datetime.combine(now.astimezone(zone).date(), time(), zone)


class Fact(NamedTuple):
    """A business event as the rules read it."""

    client_id: int
    kind: str
    amount: Decimal | None
    currency: str | None
    at: datetime


class _Ladder:
    """The moves of one evaluation, in one unit of work: the clients' stages read
    once, each move seen by the next rule, all written at the end."""

    def __init__(
        self, conn: Connection, rules: StageRules, now: datetime, ids: Collection[int]
    ) -> None:
        self.conn, self.rules, self.now = conn, rules, now
        self.states = q.states(conn, ids)
        self.today = day_start(now, rules.timezone)
        self.moves: list[Move] = []
        self._counts: dict[frozenset[str], dict[int, int]] = {}

    def counts(self, client_ids: Collection[int], kinds: frozenset[str]) -> dict[int, int]:
        """The clients' events of ``kinds``, read once for the rules that share them."""
        found = self._counts.get(kinds)
        if found is None:
            found = self._counts[kinds] = q.event_counts(self.conn, client_ids, kinds)
        return found

    def stage(self, client_id: int) -> str | None:
        state = self.states.get(client_id)
        return None if state is None else state.stage

    def move(self, client_id: int, rule: Rule, to: str | None, reason: str) -> None:
        state = self.states.get(client_id)
        if state is None or to is None or to == state.stage:
            return
        if state.by_hand_at is not None and state.by_hand_at >= self.today:
            return  # a person set the stage today: theirs stands
        why = f"rule {rule.name}: {reason}"
        self.moves.append(Move(client_id, state.stage, to, WHO, why, by_hand=False))
        before = state.stage if to == LAPSED else None
        self.states[client_id] = q.StageState(to, before, state.by_hand_at)

    def comeback(self, client_ids: Iterable[int], reason: str) -> None:
        """Lapsed clients back to where they were (else the rule's ``to``)."""
        rule = self.rules.comeback
        for client_id in client_ids:
            state = self.states.get(client_id)
            if state is None or state.stage != LAPSED:
                continue
            to = state.before_lapse or rule.to or up(LAPSED)
            self.move(client_id, rule, to, reason)

    def write(self) -> list[Move]:
        apply(self.conn, self.moves, self.now)
        return self.moves


def on_contact(
    conn: Connection, rules: StageRules, client_ids: Collection[int], now: datetime
) -> list[Move]:
    """Lapsed clients among ``client_ids`` wrote again: back up the ladder."""
    if not client_ids:
        return []
    ladder = _Ladder(conn, rules, now, client_ids)
    ladder.comeback(client_ids, "wrote again")
    return ladder.write()


def on_events(
    conn: Connection, rules: StageRules, facts: Sequence[Fact], now: datetime
) -> list[Move]:
    """Business events just recorded (in this unit of work): the return of a
    lapsed buyer, then the ``purchase`` and ``total`` rules."""
    if not facts:
        return []
    ladder = _Ladder(conn, rules, now, {f.client_id for f in facts})
    back = rules.comeback
    returning = [f for f in facts if f.kind in back.kinds]
    for f in returning:
        ladder.comeback([f.client_id], f"{f.kind} again")
    for rule in rules.rules:
        if rule.when == "purchase":
            _purchase(ladder, rule, facts)
        elif rule.when == "total":
            _total(ladder, rule, facts)
    return ladder.write()


def _purchase(ladder: _Ladder, rule: Rule, facts: Sequence[Fact]) -> None:
    """The event that is the client's ``count``-th of ``kinds``."""
    added: dict[int, list[Fact]] = {}
    for f in facts:
        if f.kind in rule.kinds:
            added.setdefault(f.client_id, []).append(f)
    if not added:
        return
    counts = ladder.counts(added, rule.kinds)
    for client_id, mine in added.items():
        after = counts.get(client_id, 0)
        before = after - len(mine)
        stage = ladder.stage(client_id)
        if before < rule.count <= after and stage is not None and rule.takes(stage):
            nth = mine[rule.count - before - 1]
            ladder.move(client_id, rule, rule.to, f"{nth.kind} #{rule.count}")


def _total(ladder: _Ladder, rule: Rule, facts: Sequence[Fact]) -> None:
    """The event that makes the client's total reach ``amount_at_least``."""
    assert rule.amount is not None and rule.currency is not None
    since = None if rule.within is None else ladder.now - rule.within
    added: dict[int, Decimal] = {}
    for f in facts:
        counted = since is None or f.at >= since
        if f.kind in rule.kinds and f.currency == rule.currency and f.amount and counted:
            added[f.client_id] = added.get(f.client_id, Decimal(0)) + f.amount
    if not added:
        return
    totals = q.event_totals(ladder.conn, added, rule.kinds, rule.currency, since)
    for client_id, amount in added.items():
        after = totals.get(client_id, Decimal(0))
        stage = ladder.stage(client_id)
        if after - amount < rule.amount <= after and stage is not None and rule.takes(stage):
            days = f" in {rule.within.days} days" if rule.within else ""
            ladder.move(client_id, rule, rule.to, f"total {after:.2f} {rule.currency}{days}")


def on_tags(
    conn: Connection, rules: StageRules, added: Mapping[int, Collection[str]], now: datetime
) -> list[Move]:
    """Tags just added to clients (client id -> the new tags)."""
    tag_rules = rules.of("tag")
    hit = {cid: tags for cid, tags in added.items() if any(r.tag in tags for r in tag_rules)}
    if not hit:
        return []
    ladder = _Ladder(conn, rules, now, hit)
    for rule in tag_rules:
        for client_id, tags in hit.items():
            stage = ladder.stage(client_id)
            if rule.tag in tags and stage is not None and rule.takes(stage):
                ladder.move(client_id, rule, rule.to, f"tag {rule.tag}")
    return ladder.write()


def on_rating(
    conn: Connection, rules: StageRules, client_id: int, score: int, now: datetime
) -> list[Move]:
    """A satisfaction score the client just gave."""
    hit = [r for r in rules.of("rating") if r.lowest <= score <= r.highest]
    if not hit:
        return []
    ladder = _Ladder(conn, rules, now, [client_id])
    for rule in hit:
        stage = ladder.stage(client_id)
        if stage is not None and rule.takes(stage):
            ladder.move(client_id, rule, rule.to, f"rating {score}")
    return ladder.write()


async def after_rating(
    conn: AsyncConnection, rules: StageRules, client_id: int, score: int, now: datetime
) -> list[Move]:
    """The ``rating`` rules for a score just recorded, in the caller's transaction;
    the moves made (logged, audited and emitted already)."""
    return await conn.run_sync(on_rating, rules, client_id, score, now)


async def after_tags(
    conn: AsyncConnection, rules: StageRules, added: Mapping[int, Collection[str]], now: datetime
) -> list[Move]:
    """The ``tag`` rules for tags just added, in the caller's transaction."""
    if not rules.on_tags:
        return []
    return await conn.run_sync(on_tags, rules, added, now)
