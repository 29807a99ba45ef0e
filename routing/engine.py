"""Who gets a request: rules in order, first match wins, then a strategy.

Pure code over a :class:`Snapshot` taken by the caller (managers with their
load, availability and skills); no I/O, so a decision is fast and testable.
:func:`decide` returns a :class:`Decision` carrying its reason in words
("rule 'VIP' matched: owner Anna"), which the hub logs as an event.

Strategies (``strategy`` of a rule, else the default):

- ``owner_first``: the client's owner when available, else the least loaded;
- ``round_robin``: the next available manager after the last one given a request;
- ``least_loaded``: the lowest share of capacity in use;
- ``skill``: the least loaded of those with the rule's skill;
- ``all``: offered to every available manager; the first to take it gets it;
- ``queue``: offered to one manager at a time in the pool's order; not taken
  within the accept timeout, it is offered to the next.

A manager is available when active, not a marketer, not ``/away``, inside
their working hours in their time zone, not on a holiday, and under capacity.
Nobody available: the request waits unassigned and is given out as soon as
somebody is (the hub re-runs :func:`decide` for waiting requests).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from routing.hours import Hours

Strategy = Literal["owner_first", "round_robin", "least_loaded", "skill", "all", "queue"]
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)


@dataclass(frozen=True, slots=True)
class ManagerInfo:
    id: int
    name: str
    role: str = "manager"
    hours: Hours | None = None
    timezone: str = "UTC"
    capacity: int = 20
    load: int = 0
    away: bool = False
    skills: frozenset[str] = frozenset()
    holidays: frozenset[date] = frozenset()

    def on_duty(self, now: datetime, holidays: frozenset[date] = frozenset()) -> bool:
        """Working now (hours, holidays, away, role), whatever the load."""
        if self.away or self.role == "marketer":
            return False
        local = now.astimezone(ZoneInfo(self.timezone))
        if local.date() in self.holidays or local.date() in holidays:
            return False
        return self.hours is None or self.hours.contains(local)

    def available(self, now: datetime, holidays: frozenset[date] = frozenset()) -> bool:
        """On duty and under capacity: can take one more request now."""
        return self.load < self.capacity and self.on_duty(now, holidays)


@dataclass(frozen=True, slots=True)
class Request:
    channel: str
    account: str
    client_owner_id: int | None
    new_client: bool
    text: str = ""
    subject: str = ""
    language: str | None = None
    tags: frozenset[str] = frozenset()
    stage: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """``assignee_id`` None: waiting (queued), or offered to ``offered``."""

    assignee_id: int | None
    reason: str
    rule: str | None = None
    strategy: str = "owner_first"
    priority: str | None = None
    tags: tuple[str, ...] = ()
    reply: tuple[tuple[str, str], ...] = ()  # (language, text) of the rule's auto-reply
    sla: str | None = None
    offered: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """One routing rule: conditions (each given one must hold) and actions.

    ``owners`` holds manager ids, with None standing for "the client has no owner".
    ``pool`` limits the candidates to these manager ids (empty: everybody).
    """

    name: str
    channels: frozenset[str] = frozenset()
    accounts: frozenset[str] = frozenset()
    keywords: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    languages: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    stages: frozenset[str] = frozenset()
    owners: frozenset[int | None] = frozenset()
    client: Literal["new", "returning"] | None = None
    hours: Hours | None = None
    timezone: str = "UTC"
    strategy: Strategy | None = None
    pool: tuple[int, ...] = ()
    skill: str | None = None
    priority: str | None = None
    add_tags: tuple[str, ...] = ()
    reply: tuple[tuple[str, str], ...] = ()
    sla: str | None = None

    def matches(self, request: Request, now: datetime, lowered: str) -> bool:
        """``lowered``: the request's subject and text, lower-cased once by the caller."""
        if self.channels and request.channel not in self.channels:
            return False
        if self.accounts and request.account not in self.accounts:
            return False
        if self.client == "new" and not request.new_client:
            return False
        if self.client == "returning" and request.new_client:
            return False
        if self.languages and request.language not in self.languages:
            return False
        if self.stages and request.stage not in self.stages:
            return False
        if self.tags and not (self.tags & request.tags):
            return False
        if self.owners and request.client_owner_id not in self.owners:
            return False
        if self.keywords and not any(k in lowered for k in self.keywords):
            return False
        if self.pattern is not None and not (
            self.pattern.search(request.subject) or self.pattern.search(request.text)
        ):
            return False
        return self.hours is None or self.hours.contains(now.astimezone(ZoneInfo(self.timezone)))


@dataclass(slots=True)
class Snapshot:
    """Managers with their current open load, as read in the ingest transaction.

    ``add_load`` and ``last_given`` are updated as requests are given out, so that
    one snapshot serves a whole batch; ``last_given`` (round robin: the last
    manager given a request, per rule) is kept by the caller between batches.
    """

    managers: list[ManagerInfo] = field(default_factory=list)
    holidays: frozenset[date] = frozenset()
    last_given: dict[str, int] = field(default_factory=dict)

    def add_load(self, manager_id: int) -> None:
        for i, m in enumerate(self.managers):
            if m.id == manager_id:
                self.managers[i] = replace(m, load=m.load + 1)
                return

    def by_id(self, manager_id: int) -> ManagerInfo | None:
        return next((m for m in self.managers if m.id == manager_id), None)

    def anyone_available(self, now: datetime) -> bool:
        """Whether some manager can take one more request now: with nobody, every
        decision names nobody."""
        return any(m.available(now, self.holidays) for m in self.managers)


@dataclass(frozen=True, slots=True)
class Rules:
    """The configured rules in order, and what applies when none matches."""

    rules: tuple[Rule, ...] = ()
    default_strategy: Strategy = "owner_first"
    default_sla: str | None = None


def decide(
    snapshot: Snapshot,
    request: Request,
    now: datetime,
    rules: Rules | None = None,
    *,
    skip: Iterable[int] = (),
) -> Decision:
    """Route ``request``. ``skip``: managers not to offer it to again (queue)."""
    rules = rules or Rules()
    rule = None
    if rules.rules:
        lowered = f"{request.subject}\n{request.text}".lower()
        rule = next((r for r in rules.rules if r.matches(request, now, lowered)), None)
    strategy: Strategy = (rule.strategy if rule else None) or rules.default_strategy
    candidates = snapshot.managers
    if rule is not None and rule.pool:
        order = {manager_id: i for i, manager_id in enumerate(rule.pool)}
        candidates = sorted((m for m in candidates if m.id in order), key=lambda m: order[m.id])
    skipped = frozenset(skip)
    free = [m for m in candidates if m.id not in skipped and m.available(now, snapshot.holidays)]
    assignee, offered, why = _apply(strategy, free, request, snapshot, rule)
    prefix = f"rule {rule.name!r} matched: " if rule else ""
    return Decision(
        assignee_id=assignee,
        reason=prefix + why,
        rule=rule.name if rule else None,
        strategy=strategy,
        priority=rule.priority if rule else None,
        tags=rule.add_tags if rule else (),
        reply=rule.reply if rule else (),
        sla=(rule.sla if rule else None) or rules.default_sla,
        offered=offered,
    )


def _apply(
    strategy: Strategy,
    free: Sequence[ManagerInfo],
    request: Request,
    snapshot: Snapshot,
    rule: Rule | None,
) -> tuple[int | None, tuple[int, ...], str]:
    if strategy == "skill":
        skill = rule.skill if rule else None
        free = [m for m in free if skill in m.skills] if skill else list(free)
        if not free:
            return None, (), f"nobody with skill {skill!r} available: queued"
        best = _least_loaded(free)
        return best.id, (), f"skill {skill}: {best.name}"
    if not free:
        return None, (), "nobody available: queued"
    if strategy == "owner_first":
        owner = next((m for m in free if m.id == request.client_owner_id), None)
        if owner is not None:
            return owner.id, (), f"owner {owner.name}"
        best = _least_loaded(free)
        return best.id, (), f"least loaded: {best.name}"
    if strategy == "least_loaded":
        best = _least_loaded(free)
        return best.id, (), f"least loaded: {best.name}"
    if strategy == "round_robin":
        key = rule.name if rule else ""
        last = snapshot.last_given.get(key)
        ordered = sorted(free, key=lambda m: m.id)
        after = [m for m in ordered if last is None or m.id > last]
        chosen = (after or ordered)[0]
        snapshot.last_given[key] = chosen.id
        return chosen.id, (), f"round robin: {chosen.name}"
    if strategy == "all":
        names = ", ".join(m.name for m in free)
        return None, tuple(m.id for m in free), f"offered to all: {names}"
    first = free[0]  # "queue": the pool's order (config order when no pool)
    return None, (first.id,), f"offered to {first.name} (queue)"


def _least_loaded(free: Sequence[ManagerInfo]) -> ManagerInfo:
    return min(free, key=lambda m: (m.load / max(m.capacity, 1), m.load, m.id))
