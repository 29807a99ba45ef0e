"""The routing rules of the config, compiled for the pure routing engine.

Rules name managers; the engine works with manager ids, which the database
gives when the configured managers are synced at start (ids are stable), so
the rules are compiled after that sync.
"""

from __future__ import annotations

import re
from datetime import timedelta

from hub.config import Config, RuleSection
from routing import Rule, Rules
from routing.hours import parse_hours
from routing.sla import Policy


def compile_rules(config: Config, manager_ids: dict[str, int]) -> Rules:
    """``manager_ids``: name -> id of every configured manager."""
    return Rules(
        rules=tuple(_rule(r, manager_ids, config.hub.timezone) for r in config.routing.rules),
        default_strategy=config.routing.strategy,
        default_sla=None,
    )


def _rule(rule: RuleSection, ids: dict[str, int], timezone: str) -> Rule:
    reply = tuple(
        (language, value)
        for language, value in (("ru", rule.reply_ru), ("en", rule.reply_en))
        if value
    )
    owners = frozenset(None if name == "none" else ids[name] for name in rule.owners)
    return Rule(
        name=rule.name,
        channels=frozenset(rule.channels),
        accounts=frozenset(rule.accounts),
        keywords=tuple(k.lower() for k in rule.keywords if k),
        pattern=re.compile(rule.regex, re.IGNORECASE) if rule.regex else None,
        languages=frozenset(rule.languages),
        tags=frozenset(rule.tags),
        stages=frozenset(rule.stages),
        owners=owners,
        client=rule.client,
        hours=parse_hours(rule.hours) if rule.hours else None,
        timezone=timezone,
        strategy=rule.strategy,
        pool=tuple(ids[name] for name in rule.managers),
        skill=rule.skill,
        priority=rule.priority,
        add_tags=tuple(rule.add_tags),
        reply=reply,
        sla=rule.sla,
    )


def compile_policies(config: Config, manager_ids: dict[str, int]) -> tuple[Policy, ...]:
    """The SLA policies; "working" time is the policy's hours, else [hub] hours
    (with neither, every minute counts)."""
    policies = []
    for p in config.sla.policies:
        hours_text = p.hours or config.hub.hours
        policies.append(
            Policy(
                name=p.name,
                priorities=frozenset(p.priorities),
                channels=frozenset(p.channels),
                first_response=_minutes(p.first_response_minutes),
                next_response=_minutes(p.next_response_minutes),
                resolution=_minutes(p.resolution_hours * 60 if p.resolution_hours else None),
                hours=parse_hours(hours_text) if p.calendar == "working" and hours_text else None,
                timezone=config.hub.timezone,
                holidays=frozenset(config.routing.holidays),
                remind_at=p.remind_at,
                reassign_after=_minutes(p.reassign_after_minutes),
                supervisors=tuple(manager_ids[n] for n in p.supervisors),
            )
        )
    return tuple(policies)


def _minutes(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(minutes=value)


def needs_profile(rules: Rules) -> bool:
    """Whether any rule looks at the client's tags, stage or language."""
    return any(r.tags or r.stages or r.languages for r in rules.rules)
