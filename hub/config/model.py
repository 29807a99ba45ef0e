"""The whole config: every section, and the checks across sections (names that
rules and policies give must exist)."""

# Pydantic copies a field's default for each instance; ruff cannot see that
# Section (checks.py) is a pydantic model and takes the lists for shared state.
# ruff: noqa: RUF012

from __future__ import annotations

from pydantic import field_validator, model_validator

from hub.config.channel_sections import EmailSection, TelegramSection, WebformSection
from hub.config.checks import Section, once
from hub.config.desk import DeskSection
from hub.config.rules import RoutingSection, SlaSection
from hub.config.sections import (
    AdminSection,
    CampaignsSection,
    ConsoleSection,
    CsatSection,
    DispatcherSection,
    EdgesSection,
    HubSection,
    ManagerSection,
    PrivacySection,
    RemindersSection,
    RepliesSection,
    StagesSection,
    StorageSection,
    WaitingSection,
    WebhookSection,
)


class Config(Section):
    hub: HubSection = HubSection()
    storage: StorageSection = StorageSection()
    admin: AdminSection
    edges: EdgesSection = EdgesSection()
    dispatcher: DispatcherSection = DispatcherSection()
    replies: RepliesSection = RepliesSection()
    telegram: TelegramSection = TelegramSection()
    managers: list[ManagerSection] = []
    email: EmailSection = EmailSection()
    webform: WebformSection = WebformSection()
    reminders: RemindersSection = RemindersSection()
    routing: RoutingSection = RoutingSection()
    sla: SlaSection = SlaSection()
    stages: StagesSection = StagesSection()
    campaigns: CampaignsSection = CampaignsSection()
    desk: DeskSection = DeskSection()
    privacy: PrivacySection = PrivacySection()
    waiting: WaitingSection = WaitingSection()
    csat: CsatSection = CsatSection()
    webhooks: list[WebhookSection] = []
    console: ConsoleSection = ConsoleSection()

    @field_validator("webhooks")
    @classmethod
    def _unique_webhooks(cls, webhooks: list[WebhookSection]) -> list[WebhookSection]:
        once([w.key for w in webhooks], "webhook name")
        return webhooks

    @field_validator("managers")
    @classmethod
    def _unique_managers(cls, managers: list[ManagerSection]) -> list[ManagerSection]:
        seen: set[int] = set()
        for manager in managers:
            if manager.telegram_id in seen:
                raise ValueError(f"telegram_id {manager.telegram_id} is used twice")
            seen.add(manager.telegram_id)
        return managers

    @model_validator(mode="after")
    def _names(self) -> Config:
        """Routing rules and SLA policies name managers and policies that exist."""
        managers = {m.name for m in self.managers}
        policies = {p.name for p in self.sla.policies}
        problems = []
        for rule in self.routing.rules:
            for name in [*rule.managers, *(o for o in rule.owners if o != "none")]:
                if name not in managers:
                    problems.append(f"rule {rule.name!r}: no manager named {name!r}")
            if rule.sla is not None and rule.sla not in policies:
                problems.append(f"rule {rule.name!r}: no SLA policy named {rule.sla!r}")
        for policy in self.sla.policies:
            for name in policy.supervisors:
                if name not in managers:
                    problems.append(f"SLA policy {policy.name!r}: no manager named {name!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self
