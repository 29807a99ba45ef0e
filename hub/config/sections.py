"""The hub-wide sections of the config: the hub itself, storage, the admin API,
the bounds of the listening sockets, auto-replies, the dispatcher, managers,
reminders, stages and campaigns."""

# Pydantic copies a field's default for each instance; ruff cannot see that
# Section (checks.py) is a pydantic model and takes the lists for shared state.
# ruff: noqa: RUF012

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from hub.config.checks import (
    Hours,
    KnownStage,
    Listen,
    QuietHours,
    Section,
    TimeZone,
    known_stage,
    once,
)
from hub.kernel.types import Role

SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
DEFAULT_REPLY_WINDOW_DAYS = 3.0  # a campaign's reply counts within this many days


class HubSection(Section):
    language: Literal["ru", "en"] = "ru"
    timezone: TimeZone = "UTC"
    default_region: str = "RU"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    hours: Hours | None = None


class StorageSection(Section):
    url: str = "sqlite+aiosqlite:///data/hub.db"
    attachments_dir: str = "data/attachments"
    max_attachment_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    group_commit_ms: float = Field(default=0.0, ge=0, le=1000)
    group_commit_max: int = Field(default=2000, ge=1, le=100_000)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError(
                "missing scheme; use sqlite+aiosqlite:///PATH or postgresql+asyncpg://HOST/DB"
            )
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {exc}") from exc
        if url.drivername not in SUPPORTED_DRIVERS:
            raise ValueError(
                f"unsupported scheme {url.drivername!r}; use one of {', '.join(SUPPORTED_DRIVERS)}"
            )
        return value


class AdminSection(Section):
    listen: Listen = "127.0.0.1:8080"
    token: SecretStr

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("empty")
        return value


class EdgesSection(Section):
    """Bounds of every listening socket (forms, admin and ``/u``, webhook, SMTP)."""

    header_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    body_timeout_s: float = Field(default=60.0, gt=0, le=86400)
    # Each this many bytes of a body that came move its deadline a second later.
    body_min_bytes_per_s: int = Field(default=1024, ge=0, le=1_000_000_000)
    keepalive_timeout_s: float = Field(default=75.0, gt=0, le=86400)
    connections: int = Field(default=0, ge=0, le=10_000_000)  # 0: the fd limit less the reserve
    connections_per_address: int = Field(default=200, ge=1, le=10_000_000)
    fd_reserve: int = Field(default=256, ge=16, le=1_000_000)
    exempt_addresses: list[IPvAnyNetwork] = []  # no per-address cap: a reverse proxy


class RepliesSection(Section):
    greeting_ru: str | None = None
    greeting_en: str | None = None
    out_of_hours_ru: str | None = None
    out_of_hours_en: str | None = None


class DispatcherSection(Section):
    max_attempts: int = Field(default=10, ge=1)
    backoff_base_s: float = Field(default=2.0, gt=0)
    backoff_max_s: float = Field(default=3600.0, gt=0)
    lease_s: float = Field(default=120.0, gt=0)
    batch: int = Field(default=100, ge=1, le=10_000)
    idle_poll_s: float = Field(default=1.0, gt=0)


class ManagerSection(Section):
    name: str = Field(min_length=1)
    telegram_id: int
    email: str | None = None
    role: Role = Role.MANAGER
    hours: Hours | None = None
    timezone: TimeZone | None = None
    capacity: int = Field(default=20, ge=0)
    skills: list[str] = []
    team: str | None = None
    language: Literal["ru", "en"] | None = None
    holidays: list[date] = []

    @field_validator("role")
    @classmethod
    def _a_person(cls, value: Role) -> Role:
        if value is Role.INTEGRATION:
            raise ValueError("'integration' is a business system's API token, not a person's role")
        return value


class StageContactSection(Section):
    stage: str
    every_days: float = Field(gt=0)

    @field_validator("stage")
    @classmethod
    def _known_stage(cls, value: str) -> str:
        return known_stage(value)


class StageRuleSection(Section):
    """One automatic stage move: when its condition holds for a client (in one of
    ``from_`` when given), the client moves ``to`` that stage.

    ``when``: ``purchase`` (the client's ``count``-th event of ``kinds``),
    ``total`` (the amounts of ``kinds`` in ``currency`` within ``within_days``
    reach ``amount_at_least``), ``rating`` (a satisfaction score within
    ``score_at_least``..``score_at_most``), ``tag`` (the client got ``tag``),
    ``return`` (a lapsed client writes or buys again: back to the stage they had,
    or ``to`` when none is known)."""

    name: str | None = None
    when: Literal["purchase", "total", "rating", "tag", "return"]
    to: KnownStage | None = None
    from_: list[KnownStage] = Field(default=[], alias="from")
    kinds: list[str] = ["purchase"]
    count: int = Field(default=1, ge=1, le=1_000_000)
    amount_at_least: float | None = Field(default=None, gt=0)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    within_days: int | None = Field(default=None, ge=1, le=36_500)
    score_at_least: int | None = Field(default=None, ge=1, le=5)
    score_at_most: int | None = Field(default=None, ge=1, le=5)
    tag: str | None = None

    @model_validator(mode="after")
    def _keys_of_when(self) -> StageRuleSection:
        """The keys its ``when`` reads, all there, and no other: a key another kind
        of rule reads would be silently ignored here. A key counts as given by its
        value (not its default): a reload validates the config's dump again."""
        given = {
            RULE_KEY.get(name, name)
            for name, field in type(self).model_fields.items()
            if field.is_required() or getattr(self, name) != field.get_default()
        }
        foreign = sorted(given - RULE_KEYS[self.when])
        if foreign:
            raise ValueError(f"when = {self.when!r} takes no {', '.join(foreign)}")
        needed = [key for key in RULE_NEEDS[self.when] if key not in given]
        if self.when == "rating" and not given & {"score_at_least", "score_at_most"}:
            needed.append("score_at_least or score_at_most")
        if needed:
            raise ValueError(f"when = {self.when!r} needs {' and '.join(needed)}")
        low, high = self.score_at_least, self.score_at_most
        if low is not None and high is not None and low > high:
            raise ValueError(f"score_at_least ({low}) is over score_at_most ({high})")
        return self

    @property
    def label(self) -> str:
        """How the log names the rule: its name, else its ``to`` stage (else its kind)."""
        return self.name or self.to or self.when


RULE_KEY = {"from_": "from"}  # a field as the file spells it
_COMMON = frozenset({"name", "when"})
_MOVES = _COMMON | {"to", "from"}
RULE_KEYS: dict[str, frozenset[str]] = {
    "purchase": _MOVES | {"kinds", "count"},
    "total": _MOVES | {"kinds", "amount_at_least", "currency", "within_days"},
    "rating": _MOVES | {"score_at_least", "score_at_most"},
    "tag": _MOVES | {"tag"},
    "return": _COMMON | {"to", "kinds"},
}
RULE_NEEDS: dict[str, tuple[str, ...]] = {
    "purchase": ("to",),
    "total": ("to", "amount_at_least", "currency"),
    "rating": ("to",),
    "tag": ("to", "tag"),
    "return": (),
}


class StagesSection(Section):
    """Relationship stage rules."""

    lapse_after_days: int = Field(default=0, ge=0, le=3650)
    rules: list[StageRuleSection] = []


class WaitingSection(Section):
    """A request waiting on the client (``/wait``): it closes itself after
    ``close_after_days`` of the client's silence (0: never), with a note to the
    client when ``note`` is on."""

    close_after_days: float = Field(default=7.0, ge=0, le=3650)
    note: bool = True
    check_every_s: float = Field(default=3600.0, gt=0)


class CsatSection(Section):
    """On resolve: a short note to the client (``notify``) and a 1–5 rating asked
    over their own channel (``ask``). A score at or under ``alert_at`` tells the
    supervisors at once; the client's reply within ``comment_minutes`` of their
    rating is its comment, not a new request."""

    notify: bool = False
    ask: bool = False
    alert_at: int = Field(default=2, ge=0, le=5)
    comment_minutes: float = Field(default=60.0, ge=0, le=10_080)


WEBHOOK_EVENTS = (
    "client.created",
    "client.merged",
    "message.in",
    "message.out",
    "conversation.assigned",
    "conversation.answered",
    "conversation.resolved",
    "deadline.missed",
    "stage.moved",
    "rating.received",
    "event.recorded",
)


class WebhookSection(Section):
    """One receiver of outgoing events: signed POSTs of the ``events`` named (or
    ``*``). ``name`` (default: the URL) keys its queue; keep it when the URL moves."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    url: str = Field(pattern=r"^https?://", max_length=2000)
    events: list[str] = Field(min_length=1)
    secret: SecretStr
    timeout_s: float = Field(default=10.0, gt=0, le=300)

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        for event in value:
            if event != "*" and event not in WEBHOOK_EVENTS:
                raise ValueError(f"unknown event {event!r}; events: *, {', '.join(WEBHOOK_EVENTS)}")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("empty")
        return value

    @property
    def key(self) -> str:
        """The name its queue goes by."""
        return self.name or self.url[:100]


class RemindersSection(Section):
    follow_up_days: float = Field(default=0, ge=0)
    stages: list[StageContactSection] = []
    scan_every_s: float = Field(default=300.0, gt=0)
    max_sleep_s: float = Field(default=1.0, gt=0, le=60)
    batch: int = Field(default=500, ge=1, le=10_000)

    @field_validator("stages")
    @classmethod
    def _unique_stages(cls, stages: list[StageContactSection]) -> list[StageContactSection]:
        once([s.stage for s in stages], "stage")
        return stages


class CampaignsSection(Section):
    """Defaults and pacing of marketers' campaigns."""

    quiet_hours: QuietHours = "21:00-09:00"
    reply_window_days: float = Field(default=DEFAULT_REPLY_WINDOW_DAYS, gt=0)
    batch: int = Field(default=500, ge=1, le=10_000)
    window: int = Field(default=300, ge=1, le=100_000)
    scan_every_s: float = Field(default=1.0, gt=0)
    call_back_hours: float = Field(default=24.0, gt=0)
    public_url: str | None = Field(default=None, pattern=r"^https?://")
    unsubscribe_secret: SecretStr | None = None


class ConsoleSection(Section):
    """The web console: where it listens, the address people reach it at (for the
    sign-in links the bot and email send), and how long a sign-in lasts."""

    listen: Listen | None = None
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    session_hours: float = Field(default=12.0, gt=0, le=24 * 90)
    live_poll_s: float = Field(default=0.5, gt=0, le=60)  # how often the live feed reads the log
    email_links_per_hour: int = Field(default=5, ge=1, le=1000)  # per person asking

    def base_url(self) -> str | None:
        """The console's address as people reach it, without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.listen}" if self.listen else None


class PrivacySection(Section):
    """Personal data kept no longer than needed: message bodies and files older than
    ``keep_days`` are erased (tombstoned) by a daily round; absent: kept."""

    keep_days: int | None = Field(default=None, ge=1, le=36_500)
    check_every_s: float = Field(default=3600.0, gt=0)
