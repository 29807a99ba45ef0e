"""The routing rules: every condition, every strategy, availability, and the
worked examples of the README (the table below is the README's table)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

import pytest

from hub.config import Config
from hub.ingest.rules import compile_rules
from routing import ManagerInfo, Request, Rule, Rules, Snapshot, decide
from routing.hours import parse_hours

MONDAY_NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday
SATURDAY_NOON = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def req(**changes: Any) -> Request:
    base: dict[str, Any] = {
        "channel": "telegram",
        "account": "main_bot",
        "client_owner_id": None,
        "new_client": True,
    }
    return Request(**(base | changes))


def team(*loads: int, **changes: Any) -> Snapshot:
    """Managers 1.. with these loads (capacity 10 each)."""
    return Snapshot(
        [
            ManagerInfo(id=i, name=f"m{i}", capacity=10, load=load)
            for i, load in enumerate(loads, 1)
        ],
        **changes,
    )


# --- conditions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "request_", "matches"),
    [
        (Rule("r", channels=frozenset({"email"})), req(channel="email"), True),
        (Rule("r", channels=frozenset({"email"})), req(channel="telegram"), False),
        (Rule("r", accounts=frozenset({"sales_bot"})), req(account="sales_bot"), True),
        (Rule("r", accounts=frozenset({"sales_bot"})), req(account="main_bot"), False),
        (Rule("r", keywords=("срочно",)), req(text="Очень СРОЧНО нужен счёт"), True),
        (Rule("r", keywords=("срочно",)), req(subject="срочно!"), True),
        (Rule("r", keywords=("urgent",)), req(text="whenever you can"), False),
        (Rule("r", pattern=re.compile(r"заказ\s*№?\d+", re.I)), req(text="Заказ №123"), True),
        (Rule("r", pattern=re.compile(r"заказ\s*№?\d+", re.I)), req(text="заказ"), False),
        (Rule("r", languages=frozenset({"en"})), req(language="en"), True),
        (Rule("r", languages=frozenset({"en"})), req(language=None), False),
        (Rule("r", tags=frozenset({"vip"})), req(tags=frozenset({"vip", "b2b"})), True),
        (Rule("r", tags=frozenset({"vip"})), req(tags=frozenset({"b2b"})), False),
        (Rule("r", stages=frozenset({"customer"})), req(stage="customer"), True),
        (Rule("r", stages=frozenset({"customer"})), req(stage="lead"), False),
        (Rule("r", owners=frozenset({2})), req(client_owner_id=2), True),
        (Rule("r", owners=frozenset({2})), req(client_owner_id=3), False),
        (Rule("r", owners=frozenset({None})), req(client_owner_id=None), True),
        (Rule("r", owners=frozenset({None})), req(client_owner_id=1), False),
        (Rule("r", client="new"), req(new_client=True), True),
        (Rule("r", client="new"), req(new_client=False), False),
        (Rule("r", client="returning"), req(new_client=False), True),
        (Rule("r", client="returning"), req(new_client=True), False),
    ],
)
def test_each_condition(rule: Rule, request_: Request, matches: bool) -> None:
    lowered = f"{request_.subject}\n{request_.text}".lower()
    assert rule.matches(request_, MONDAY_NOON, lowered) is matches


def test_time_of_day_and_day_of_week_in_the_hub_time_zone() -> None:
    weekend = Rule("weekend", hours=parse_hours("Sat-Sun 00:00-24:00"), timezone="Europe/Moscow")
    evening = Rule("evening", hours=parse_hours("Mon-Fri 18:00-23:59"), timezone="Europe/Moscow")
    assert weekend.matches(req(), SATURDAY_NOON, "")
    assert not weekend.matches(req(), MONDAY_NOON, "")
    assert evening.matches(req(), datetime(2026, 1, 5, 16, 0, tzinfo=UTC), "")  # 19:00 MSK
    assert not evening.matches(req(), MONDAY_NOON, "")  # 15:00 MSK


def test_every_given_condition_must_hold() -> None:
    rule = Rule("both", channels=frozenset({"email"}), keywords=("invoice",))
    assert rule.matches(req(channel="email", text="invoice"), MONDAY_NOON, "invoice")
    assert not rule.matches(req(channel="email", text="hello"), MONDAY_NOON, "hello")
    assert not rule.matches(req(channel="telegram", text="invoice"), MONDAY_NOON, "invoice")


def test_rules_in_order_first_match_wins_then_the_default() -> None:
    rules = Rules(
        (
            Rule("vip", tags=frozenset({"vip"}), priority="high", strategy="least_loaded"),
            Rule("any-email", channels=frozenset({"email"}), priority="low"),
        ),
        default_strategy="round_robin",
    )
    vip_email = decide(
        team(0, 0), req(channel="email", tags=frozenset({"vip"})), MONDAY_NOON, rules
    )
    assert (vip_email.rule, vip_email.priority, vip_email.strategy) == (
        "vip",
        "high",
        "least_loaded",
    )
    plain_email = decide(team(0, 0), req(channel="email"), MONDAY_NOON, rules)
    assert (plain_email.rule, plain_email.priority) == ("any-email", "low")
    assert plain_email.strategy == "round_robin"  # the rule names none
    telegram = decide(team(0, 0), req(), MONDAY_NOON, rules)
    assert telegram.rule is None and telegram.reason.startswith("round robin")


# --- strategies ------------------------------------------------------------------------


def test_owner_first_falls_back_to_the_least_loaded() -> None:
    snap = team(5, 1, 3)
    assert decide(snap, req(client_owner_id=1, new_client=False), MONDAY_NOON).assignee_id == 1
    away = team(5, 1, 3)
    away.managers[0] = ManagerInfo(id=1, name="m1", capacity=10, load=5, away=True)
    decision = decide(away, req(client_owner_id=1, new_client=False), MONDAY_NOON)
    assert (decision.assignee_id, decision.reason) == (2, "least loaded: m2")


def test_least_loaded_goes_by_share_of_capacity() -> None:
    snap = Snapshot(
        [
            ManagerInfo(id=1, name="big", capacity=40, load=10),  # 25 %
            ManagerInfo(id=2, name="small", capacity=4, load=2),  # 50 %
        ]
    )
    assert decide(snap, req(), MONDAY_NOON, Rules(default_strategy="least_loaded")).assignee_id == 1


def test_round_robin_takes_turns_and_skips_the_unavailable() -> None:
    rules = Rules(default_strategy="round_robin")
    snap = team(0, 0, 0)
    given = [decide(snap, req(), MONDAY_NOON, rules).assignee_id for _ in range(4)]
    assert given == [1, 2, 3, 1]
    snap.managers[1] = ManagerInfo(id=2, name="m2", capacity=10, away=True)
    assert [decide(snap, req(), MONDAY_NOON, rules).assignee_id for _ in range(2)] == [3, 1]


def test_skill_picks_the_least_loaded_with_the_skill_or_waits() -> None:
    snap = Snapshot(
        [
            ManagerInfo(id=1, name="ru", capacity=10),
            ManagerInfo(id=2, name="en1", capacity=10, load=4, skills=frozenset({"english"})),
            ManagerInfo(id=3, name="en2", capacity=10, load=2, skills=frozenset({"english"})),
        ]
    )
    rules = Rules((Rule("en", languages=frozenset({"en"}), strategy="skill", skill="english"),))
    assert decide(snap, req(language="en"), MONDAY_NOON, rules).assignee_id == 3
    snap.managers[2] = ManagerInfo(id=3, name="en2", capacity=10, away=True)
    snap.managers[1] = ManagerInfo(id=2, name="en1", capacity=4, load=4)
    waiting = decide(snap, req(language="en"), MONDAY_NOON, rules)
    assert waiting.assignee_id is None
    assert "nobody with skill 'english'" in waiting.reason


def test_all_at_once_offers_to_every_available_manager() -> None:
    snap = team(0, 10, 3)  # m2 is full
    decision = decide(snap, req(), MONDAY_NOON, Rules(default_strategy="all"))
    assert decision.assignee_id is None
    assert decision.offered == (1, 3)


def test_queue_offers_in_the_pools_order_skipping_those_offered_before() -> None:
    rules = Rules((Rule("q", strategy="queue", pool=(3, 1, 2)),))
    snap = team(0, 0, 0)
    assert decide(snap, req(), MONDAY_NOON, rules).offered == (3,)
    assert decide(snap, req(), MONDAY_NOON, rules, skip=[3]).offered == (1,)
    last = decide(snap, req(), MONDAY_NOON, rules, skip=[3, 1, 2])
    assert last.offered == () and last.reason.endswith("nobody available: queued")


def test_a_pool_limits_the_candidates() -> None:
    rules = Rules((Rule("b2b", tags=frozenset({"b2b"}), pool=(2,)),))
    assert decide(team(0, 5), req(tags=frozenset({"b2b"})), MONDAY_NOON, rules).assignee_id == 2
    full = decide(team(0, 10), req(tags=frozenset({"b2b"})), MONDAY_NOON, rules)
    assert full.assignee_id is None  # never spills over to managers outside the pool


# --- availability ----------------------------------------------------------------------


def test_capacity_holidays_and_away() -> None:
    m = ManagerInfo(id=1, name="a", capacity=2, load=1)
    assert m.available(MONDAY_NOON)
    assert not ManagerInfo(id=1, name="a", capacity=2, load=2).available(MONDAY_NOON)
    assert not ManagerInfo(id=1, name="a", holidays=frozenset({date(2026, 1, 5)})).available(
        MONDAY_NOON
    )
    assert not m.available(MONDAY_NOON, holidays=frozenset({date(2026, 1, 5)}))
    assert not ManagerInfo(id=1, name="a", away=True).available(MONDAY_NOON)
    # A holiday is the manager's own calendar day: 23:30 UTC Sunday is Monday in Moscow.
    moscow = ManagerInfo(
        id=1, name="a", timezone="Europe/Moscow", holidays=frozenset({date(2026, 1, 5)})
    )
    assert not moscow.available(datetime(2026, 1, 4, 23, 30, tzinfo=UTC))


def test_nobody_available_waits() -> None:
    decision = decide(team(10, 10), req(), MONDAY_NOON)
    assert (decision.assignee_id, decision.offered) == (None, ())
    assert decision.reason == "nobody available: queued"


# --- from the config, and the README's worked examples ---------------------------------

CONFIG: dict[str, Any] = {
    "admin": {"token": "t"},
    "managers": [
        {"name": "Anna", "telegram_id": 1, "skills": ["english"]},
        {"name": "Boris", "telegram_id": 2},
        {"name": "Vera", "telegram_id": 3, "role": "supervisor"},
    ],
    "sla": {"policies": [{"name": "vip", "first_response_minutes": 15}]},
    "routing": {
        "strategy": "least_loaded",
        "rules": [
            {
                "name": "VIP",
                "tags": ["vip"],
                "strategy": "owner_first",
                "priority": "high",
                "sla": "vip",
            },
            {
                "name": "Refunds",
                "keywords": ["refund", "возврат"],
                "managers": ["Vera"],
                "add_tags": ["refund"],
            },
            {"name": "English", "languages": ["en"], "strategy": "skill", "skill": "english"},
            {
                "name": "Weekend",
                "hours": "Sat-Sun 00:00-24:00",
                "strategy": "all",
                "reply_ru": "Ответим в понедельник",
                "reply_en": "We answer on Monday",
            },
            {
                "name": "Orders",
                "regex": "заказ\\s*№?\\d+",
                "channels": ["email"],
                "strategy": "queue",
                "managers": ["Boris", "Anna"],
            },
        ],
    },
}
IDS = {"Anna": 1, "Boris": 2, "Vera": 3}

# (request, when, rule matched, assignee or offered, reason) — the README's table.
EXAMPLES: list[tuple[Request, datetime, str | None, int | tuple[int, ...] | None, str]] = [
    (
        req(tags=frozenset({"vip"}), client_owner_id=2, new_client=False),
        MONDAY_NOON,
        "VIP",
        2,
        "rule 'VIP' matched: owner Boris",
    ),
    (
        req(text="Хочу возврат денег"),
        MONDAY_NOON,
        "Refunds",
        3,
        "rule 'Refunds' matched: least loaded: Vera",
    ),
    (
        req(language="en", text="Hello"),
        MONDAY_NOON,
        "English",
        1,
        "rule 'English' matched: skill english: Anna",
    ),
    (
        req(text="Привет"),
        SATURDAY_NOON,
        "Weekend",
        (1, 2, 3),
        "rule 'Weekend' matched: offered to all: Anna, Boris, Vera",
    ),
    (
        req(channel="email", text="Где заказ №42?"),
        MONDAY_NOON,
        "Orders",
        (2,),
        "rule 'Orders' matched: offered to Boris (queue)",
    ),
    (req(text="Привет"), MONDAY_NOON, None, 1, "least loaded: Anna"),
]


@pytest.mark.parametrize(("request_", "when", "rule", "who", "reason"), EXAMPLES)
def test_worked_examples(
    request_: Request,
    when: datetime,
    rule: str | None,
    who: int | tuple[int, ...] | None,
    reason: str,
) -> None:
    rules = compile_rules(Config.model_validate(CONFIG), IDS)
    snapshot = Snapshot([ManagerInfo(id=i, name=n, capacity=10) for n, i in IDS.items()])
    snapshot.managers[0] = ManagerInfo(
        id=1, name="Anna", capacity=10, skills=frozenset({"english"})
    )
    decision = decide(snapshot, request_, when, rules)
    assert decision.rule == rule
    assert (decision.offered if isinstance(who, tuple) else decision.assignee_id) == who
    assert decision.reason == reason


def test_rule_actions_from_the_config() -> None:
    rules = compile_rules(Config.model_validate(CONFIG), IDS)
    snapshot = Snapshot([ManagerInfo(id=i, name=n) for n, i in IDS.items()])
    vip = decide(snapshot, req(tags=frozenset({"vip"})), MONDAY_NOON, rules)
    assert (vip.priority, vip.sla) == ("high", "vip")
    refund = decide(snapshot, req(text="refund please"), MONDAY_NOON, rules)
    assert refund.tags == ("refund",)
    weekend = decide(snapshot, req(), SATURDAY_NOON, rules)
    assert dict(weekend.reply) == {"ru": "Ответим в понедельник", "en": "We answer on Monday"}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"managers": ["Nobody"]}, "no manager named 'Nobody'"),
        ({"owners": ["Ghost"]}, "no manager named 'Ghost'"),
        ({"sla": "gold"}, "no SLA policy named 'gold'"),
        ({"regex": "(unclosed"}, "not a regular expression"),
        ({"strategy": "skill"}, "needs skill"),
        ({"strategy": "random"}, "strategy"),
        ({"hours": "someday"}, "hours"),
    ],
)
def test_bad_rules_are_refused_with_a_clear_problem(change: dict[str, Any], problem: str) -> None:
    from hub.config import ConfigError, parse

    data = CONFIG | {"routing": {"rules": [{"name": "bad"} | change]}}
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert problem in str(caught.value)
