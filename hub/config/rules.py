"""The routing and SLA sections of the config: ``[routing]`` with its rules and
``[[sla.policies]]``."""

# Pydantic copies a field's default for each instance; ruff cannot see that
# Section (checks.py) is a pydantic model and takes the lists for shared state.
# ruff: noqa: RUF012

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hub.config.checks import Hours, KnownStage, Regex, Section, once
from hub.kernel.types import Channel
from routing.engine import Strategy

RoutingStrategy = Strategy  # the engine's own list
Priority = Literal["low", "normal", "high", "urgent"]


class RuleSection(Section):
    """A routing rule: every condition given must hold; then its actions apply."""

    name: str = Field(min_length=1)
    channels: list[Channel] = []
    accounts: list[str] = []
    keywords: list[str] = []
    regex: Regex | None = None
    languages: list[str] = []
    tags: list[str] = []
    stages: list[KnownStage] = []
    owners: list[str] = []
    client: Literal["new", "returning"] | None = None
    hours: Hours | None = None
    strategy: RoutingStrategy | None = None
    managers: list[str] = []
    skill: str | None = None
    priority: Priority | None = None
    add_tags: list[str] = []
    reply_ru: str | None = None
    reply_en: str | None = None
    sla: str | None = None

    @model_validator(mode="after")
    def _skill(self) -> RuleSection:
        if self.strategy == "skill" and not self.skill:
            raise ValueError(f"rule {self.name!r}: strategy 'skill' needs skill")
        return self


class RoutingSection(Section):
    strategy: RoutingStrategy = "owner_first"
    accept_timeout_minutes: float = Field(default=10.0, gt=0, le=7 * 24 * 60)
    holidays: list[date] = []
    rules: list[RuleSection] = []

    @field_validator("rules")
    @classmethod
    def _unique(cls, rules: list[RuleSection]) -> list[RuleSection]:
        once([r.name for r in rules], "rule name")
        return rules


class SlaPolicy(Section):
    """Response deadlines for the conversations it applies to (by priority and
    channel, or named by a routing rule's ``sla``)."""

    name: str = Field(min_length=1)
    priorities: list[Priority] = []
    channels: list[Channel] = []
    first_response_minutes: float | None = Field(default=None, gt=0)
    next_response_minutes: float | None = Field(default=None, gt=0)
    resolution_hours: float | None = Field(default=None, gt=0)
    calendar: Literal["working", "calendar"] = "working"
    hours: Hours | None = None
    remind_at: float = Field(default=0.8, gt=0, lt=1)
    reassign_after_minutes: float | None = Field(default=30.0, gt=0)
    supervisors: list[str] = []


class SlaSection(Section):
    policies: list[SlaPolicy] = []

    @field_validator("policies")
    @classmethod
    def _unique(cls, policies: list[SlaPolicy]) -> list[SlaPolicy]:
        once([p.name for p in policies], "policy name")
        return policies
