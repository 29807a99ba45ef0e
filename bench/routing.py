"""Routing decisions per second: 100 rules, 50 managers.

The rules are of every kind (channel, account, keywords, regular expressions,
language, tags, stage, owner, new or returning, hours) and every strategy; most
requests walk many rules before one matches or none does. The managers have
working hours in several time zones, skills, loads and capacities. Measured:
:func:`routing.decide` on 20,000 requests. Baseline in the same run: the same
requests decided with no rules at all (the default strategy alone over the
same 50 managers), so the ratio shows what the rules cost.

    python -m bench.routing [--requests 20000]
"""

from __future__ import annotations

import argparse
import random
import re
import time
from datetime import UTC, datetime, timedelta

from routing import STRATEGIES, ManagerInfo, Request, Rule, Rules, Snapshot, decide
from routing.hours import parse_hours

ZONES = ("Europe/Moscow", "Asia/Yekaterinburg", "Europe/Berlin", "UTC", "Asia/Vladivostok")
WORDS = [f"word{i}" for i in range(200)]


def managers(rng: random.Random) -> list[ManagerInfo]:
    return [
        ManagerInfo(
            id=i,
            name=f"manager {i}",
            role="supervisor" if i % 10 == 0 else "manager",
            hours=parse_hours("Mon-Fri 00:00-24:00; Sat 10:00-16:00") if i % 3 else None,
            timezone=ZONES[i % len(ZONES)],
            capacity=20,
            load=rng.randrange(0, 20),
            skills=frozenset({"english"} if i % 4 == 0 else {"sales"}),
        )
        for i in range(1, 51)
    ]


def rules(rng: random.Random) -> Rules:
    made = []
    for i in range(100):
        kind = i % 10
        strategy = STRATEGIES[i % len(STRATEGIES)]
        extra = {"skill": "english"} if strategy == "skill" else {}
        pool = tuple(rng.sample(range(1, 51), 5)) if i % 7 == 0 else ()
        common = {"name": f"rule {i}", "strategy": strategy, "pool": pool, **extra}
        if kind == 0:
            made.append(Rule(channels=frozenset({"email"}), keywords=(WORDS[i],), **common))
        elif kind == 1:
            made.append(Rule(accounts=frozenset({f"bot{i}"}), **common))
        elif kind == 2:
            made.append(Rule(keywords=(WORDS[i], WORDS[i + 1]), **common))
        elif kind == 3:
            made.append(Rule(pattern=re.compile(rf"order\s*#?{i}\d+", re.I), **common))
        elif kind == 4:
            made.append(Rule(languages=frozenset({"de"}), **common))
        elif kind == 5:
            made.append(Rule(tags=frozenset({f"tag{i}"}), **common))
        elif kind == 6:
            made.append(Rule(stages=frozenset({f"stage{i}"}), **common))
        elif kind == 7:
            made.append(Rule(owners=frozenset({i % 50 + 1}), client="returning", **common))
        elif kind == 8:
            made.append(Rule(client="new", keywords=(WORDS[i],), **common))
        else:
            made.append(
                Rule(hours=parse_hours("Sat-Sun 00:00-24:00"), keywords=(WORDS[i],), **common)
            )
    return Rules(tuple(made), default_strategy="owner_first")


def requests(rng: random.Random, count: int) -> list[Request]:
    out = []
    for _ in range(count):
        words = " ".join(rng.sample(WORDS, 3))
        out.append(
            Request(
                channel=rng.choice(("telegram", "email", "webform")),
                account=f"bot{rng.randrange(0, 120)}",
                client_owner_id=rng.choice((None, rng.randrange(1, 51))),
                new_client=rng.random() < 0.3,
                text=f"Здравствуйте, {words}. Где мой заказ order #{rng.randrange(0, 10**6)}?",
                subject="Заказ",
                language=rng.choice(("ru", "en", None)),
                tags=frozenset({f"tag{rng.randrange(0, 150)}"}),
                stage=f"stage{rng.randrange(0, 150)}",
            )
        )
    return out


def run(snapshot: Snapshot, reqs: list[Request], now: datetime, ruleset: Rules | None) -> float:
    start = time.perf_counter()
    for i, request in enumerate(reqs):
        decide(snapshot, request, now + timedelta(seconds=i), ruleset)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    rng = random.Random(7)
    team, ruleset, reqs = managers(rng), rules(rng), requests(rng, args.requests)
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    run(Snapshot(list(team)), reqs[:1000], now, ruleset)  # warm up
    matched = sum(decide(Snapshot(list(team)), r, now, ruleset).rule is not None for r in reqs)
    hub_s = run(Snapshot(list(team)), reqs, now, ruleset)
    bare_s = run(Snapshot(list(team)), reqs, now, None)
    hub_rate, bare_rate = args.requests / hub_s, args.requests / bare_s
    print(f"requests {args.requests}, rules 100, managers 50; a rule matched {matched}")
    print(f"decide with the rules: {hub_rate:,.0f} decisions/s (target >= 10,000)")
    print(f"decide with no rules (default strategy alone): {bare_rate:,.0f} decisions/s")
    print(f"ratio: {hub_rate / bare_rate:.2f}")


if __name__ == "__main__":
    main()
