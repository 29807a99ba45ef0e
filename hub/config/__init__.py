"""The hub's one typed configuration, loaded from TOML and validated once at start.

``"${NAME}"`` (or ``"${NAME:-default}"``) anywhere in a string value is read from
the environment. Every problem is reported with its key path
(``telegram.token: missing``); ``config.example.toml`` documents every key.
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from hub.kernel.errors import ConfigError
from hub.kernel.types import STAGES
from routing.engine import Strategy
from routing.hours import HoursError, parse_hours, parse_window

SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
_ENV = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    if not port.isdigit():
        raise ValueError(f"port {port!r} is not a number")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port} out of range 1-65535")
    return value


Listen = Annotated[str, AfterValidator(_check_listen)]


def split_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def _once(names: list[str], what: str) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{what} {twice[0]!r} is used twice")


DEFAULT_REPLY_WINDOW_DAYS = 3.0  # a campaign's reply counts within this many days


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubSection(Section):
    language: Literal["ru", "en"] = "ru"
    timezone: str = "UTC"
    default_region: str = "RU"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    hours: str | None = None

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_hours(value)
            except HoursError as exc:
                raise ValueError(str(exc)) from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


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


class TelegramSection(Section):
    enabled: bool = False
    token: SecretStr | None = None
    api_base: str = "https://api.telegram.org"
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = None
    webhook_listen: Listen | None = None
    webhook_secret: SecretStr | None = None
    staff_chat_id: int | None = None
    extra_staff_chat_ids: list[int] = []

    @model_validator(mode="after")
    def _required_when_enabled(self) -> TelegramSection:
        if not self.enabled:
            return self
        missing = []
        if self.token is None or not self.token.get_secret_value():
            missing.append("token")
        if self.staff_chat_id is None:
            missing.append("staff_chat_id")
        if self.mode == "webhook":
            for key in ("webhook_url", "webhook_listen", "webhook_secret"):
                if getattr(self, key) is None:
                    missing.append(key)
        if missing:
            raise _MissingKeys(missing)
        return self


class ManagerSection(Section):
    name: str = Field(min_length=1)
    telegram_id: int
    email: str | None = None
    role: Literal["manager", "supervisor", "marketer", "admin"] = "manager"
    hours: str | None = None
    timezone: str | None = None
    capacity: int = Field(default=20, ge=0)
    skills: list[str] = []
    team: str | None = None
    language: Literal["ru", "en"] | None = None
    holidays: list[date] = []

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_hours(value)
            except HoursError as exc:
                raise ValueError(str(exc)) from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return value if value is None else HubSection._tz(value)


class SmtpUser(Section):
    user: str = Field(min_length=1)
    password: SecretStr


class SmtpServerSection(Section):
    listen: Listen | None = None
    domains: list[str] = []
    max_message_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    tls_cert: str | None = None
    tls_key: str | None = None
    require_tls: bool = False
    users: list[SmtpUser] = []
    require_auth: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> SmtpServerSection:
        if self.listen is not None and not self.domains:
            raise _MissingKeys(["domains"])  # it takes mail only for listed domains
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_cert is None and (self.require_tls or self.users):
            # Passwords are never taken over a plaintext connection.
            raise ValueError("require_tls and users need tls_cert and tls_key")
        if self.require_auth and not self.users:
            raise ValueError("require_auth needs at least one of users")
        return self


class ImapSection(Section):
    host: str
    port: int = Field(default=993, ge=1, le=65535)
    user: str
    password: SecretStr
    folder: str = "INBOX"
    tls: bool = True
    ca_file: str | None = None
    move_to: str | None = Field(default=None, min_length=1)


class OutboundSmtpSection(Section):
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    from_: str = Field(alias="from")
    reply_to: str | None = None
    subject_tag: bool = True
    connections: int = Field(default=4, ge=1, le=20)
    starttls: bool = True
    user: str | None = None
    password: SecretStr | None = None


class EmailSection(Section):
    smtp: SmtpServerSection = SmtpServerSection()
    imap: list[ImapSection] = []
    outbound: OutboundSmtpSection | None = None
    # Received mail is spooled here, then parsed and logged in a child process
    # (hub.mail_worker); false: both in the hub's process, 250 after the log.
    worker: bool = True
    spool: str = "data/mail-spool.db"


STANDARD_FIELDS = ("name", "email", "phone", "message", "consent")
# Field names the hub's own form machinery posts alongside the visitor's fields
# (a form's own field names cannot start with "_").
RESERVED_FIELDS = frozenset({"_ts", "_key", "_page", "_referrer"})
DEFAULT_ACCEPT = ["image/*", "application/pdf", "text/plain"]


class FormField(Section):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    label: str | None = None
    label_ru: str | None = None
    type: Literal["text", "textarea", "email", "tel", "checkbox", "file", "hidden"] = "text"
    required: bool = False
    max_length: int = Field(default=2000, gt=0)
    maps_to: Literal["name", "email", "phone", "message", "consent"] | None = None
    max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    accept: list[str] = DEFAULT_ACCEPT

    @field_validator("name")
    @classmethod
    def _own_name(cls, value: str) -> str:
        if value.startswith("_"):
            raise ValueError(f"{value!r}: names starting with '_' are taken by the hub")
        return value

    @property
    def role(self) -> str | None:
        """What the field says about the client: ``maps_to``, else its standard name."""
        if self.maps_to is not None:
            return self.maps_to
        return self.name if self.name in STANDARD_FIELDS else None


def _contact_fields() -> list[FormField]:
    return [
        FormField(name="name", label="Your name", label_ru="Ваше имя", max_length=200),
        FormField(name="email", label="Email", label_ru="Эл. почта", type="email", max_length=320),
        FormField(name="phone", label="Phone", label_ru="Телефон", type="tel", max_length=50),
        FormField(
            name="message",
            label="Message",
            label_ru="Сообщение",
            type="textarea",
            required=True,
            max_length=5000,
        ),
    ]


class FormSection(Section):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    title: str | None = None
    title_ru: str | None = None
    fields: list[FormField] = Field(default_factory=_contact_fields)
    allowed_origins: list[str] = []
    thank_you: str | None = None
    thank_you_ru: str | None = None
    redirect: str | None = None
    language: Literal["ru", "en"] | None = None
    confirm_email: bool = False
    min_fill_seconds: float = Field(default=3.0, ge=0, le=3600)

    @field_validator("fields")
    @classmethod
    def _fields(cls, fields: list[FormField]) -> list[FormField]:
        _once([f.name for f in fields], "field name")
        if not any(f.role in ("email", "phone") for f in fields):
            raise ValueError("a form needs an email or a phone field to know who wrote")
        for role in ("name", "email", "phone", "message", "consent"):
            if sum(f.role == role for f in fields) > 1:
                raise ValueError(f"more than one field maps to {role!r}")
        return fields

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            scheme, sep, rest = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
                raise ValueError(f"an origin is scheme://host[:port], got {origin!r}")
        return [o.lower() for o in origins]

    @model_validator(mode="after")
    def _confirm_needs_email(self) -> FormSection:
        if self.confirm_email and not any(f.role == "email" for f in self.fields):
            raise ValueError("confirm_email needs an email field")
        return self


class WebformSection(Section):
    listen: Listen | None = None
    secret: SecretStr | None = None
    honeypot: str = Field(default="hp_website", pattern=r"^[A-Za-z0-9_-]+$")
    rate_limit_per_minute: int = Field(default=10, ge=1)
    max_body_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    trust_forwarded: bool = False
    forms: list[FormSection] = []

    @field_validator("forms")
    @classmethod
    def _unique_ids(cls, forms: list[FormSection]) -> list[FormSection]:
        _once([form.id for form in forms], "form id")
        return forms

    @model_validator(mode="after")
    def _names_free(self) -> WebformSection:
        for form in self.forms:
            for field in form.fields:
                if field.name == self.honeypot:
                    raise ValueError(
                        f"form {form.id!r}: field name {field.name!r} is taken by the hub"
                    )
        return self


def _check_hours(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_hours(value)
        except HoursError as exc:
            raise ValueError(str(exc)) from exc
    return value


def _check_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
    return value


RoutingStrategy = Strategy  # the engine's own list
Priority = Literal["low", "normal", "high", "urgent"]
ChannelName = Literal["telegram", "email", "webform"]


class RuleSection(Section):
    """A routing rule: every condition given must hold; then its actions apply."""

    name: str = Field(min_length=1)
    channels: list[ChannelName] = []
    accounts: list[str] = []
    keywords: list[str] = []
    regex: Annotated[str | None, AfterValidator(_check_regex)] = None
    languages: list[str] = []
    tags: list[str] = []
    stages: list[str] = []
    owners: list[str] = []
    client: Literal["new", "returning"] | None = None
    hours: Annotated[str | None, AfterValidator(_check_hours)] = None
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
        _once([r.name for r in rules], "rule name")
        return rules


class SlaPolicy(Section):
    """Response deadlines for the conversations it applies to (by priority and
    channel, or named by a routing rule's ``sla``)."""

    name: str = Field(min_length=1)
    priorities: list[Priority] = []
    channels: list[ChannelName] = []
    first_response_minutes: float | None = Field(default=None, gt=0)
    next_response_minutes: float | None = Field(default=None, gt=0)
    resolution_hours: float | None = Field(default=None, gt=0)
    calendar: Literal["working", "calendar"] = "working"
    hours: Annotated[str | None, AfterValidator(_check_hours)] = None
    remind_at: float = Field(default=0.8, gt=0, lt=1)
    reassign_after_minutes: float | None = Field(default=30.0, gt=0)
    supervisors: list[str] = []


class SlaSection(Section):
    policies: list[SlaPolicy] = []

    @field_validator("policies")
    @classmethod
    def _unique(cls, policies: list[SlaPolicy]) -> list[SlaPolicy]:
        _once([p.name for p in policies], "policy name")
        return policies


class StageContactSection(Section):
    stage: str
    every_days: float = Field(gt=0)

    @field_validator("stage")
    @classmethod
    def _known_stage(cls, value: str) -> str:
        if value not in STAGES:
            raise ValueError(f"unknown stage {value!r}; stages: {', '.join(STAGES)}")
        return value


class StagesSection(Section):
    """Relationship stage rules."""

    lapse_after_days: int = Field(default=0, ge=0, le=3650)


class RemindersSection(Section):
    follow_up_days: float = Field(default=0, ge=0)
    stages: list[StageContactSection] = []
    scan_every_s: float = Field(default=300.0, gt=0)
    max_sleep_s: float = Field(default=1.0, gt=0, le=60)
    batch: int = Field(default=500, ge=1, le=10_000)

    @field_validator("stages")
    @classmethod
    def _unique_stages(cls, stages: list[StageContactSection]) -> list[StageContactSection]:
        _once([s.stage for s in stages], "stage")
        return stages


def _check_quiet(value: str) -> str:
    try:
        parse_window(value)
    except HoursError as exc:
        raise ValueError(f"{exc} (or empty for none)") from None
    return value.strip()


QuietHours = Annotated[str, AfterValidator(_check_quiet)]


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


class Config(Section):
    hub: HubSection = HubSection()
    storage: StorageSection = StorageSection()
    admin: AdminSection
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


class _MissingKeys(ValueError):
    def __init__(self, keys: list[str]) -> None:
        super().__init__(", ".join(keys))
        self.keys = keys


def _expand(value: Any, path: str, problems: list[str]) -> Any:
    """Replace ``${NAME}`` in every string with the environment's value."""
    if isinstance(value, dict):
        return {k: _expand(v, f"{path}.{k}" if path else k, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def sub(match: re.Match[str]) -> str:
            name, default = match.group("name"), match.group("default")
            found = os.environ.get(name)
            if found is None:
                if default is None:
                    problems.append(f"{path}: environment variable {name} is not set")
                    return ""
                return default
            return found

        return _ENV.sub(sub, value)
    return value


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_SECRET_WORDS = ("token", "password", "secret")


def _required_fields(loc: tuple[int | str, ...]) -> list[str]:
    """The required keys of a missing section (``admin`` -> ``token``)."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int) or model is None:
            return []
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    if model is None:
        return []
    return [name for name, f in model.model_fields.items() if f.is_required()]


def _problems(exc: ValidationError, skip: set[str]) -> list[str]:
    lines: list[str] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = _path(loc)
        if path in skip:
            continue  # already reported: its environment variable is not set
        ctx_error = err.get("ctx", {}).get("error")
        if isinstance(ctx_error, _MissingKeys):
            lines.extend(f"{path}.{key}: missing" for key in ctx_error.keys)
            continue
        if err["type"] == "missing":
            required = _required_fields(loc)
            if required:
                lines.extend(f"{path}.{key}: missing" for key in required)
                continue
            message = "missing"
        elif err["type"] == "extra_forbidden":
            message = "unknown key"
        else:
            message = err["msg"].removeprefix("Value error, ")
            secret = any(word in str(part) for part in loc for word in _SECRET_WORDS)
            if err["type"] not in ("value_error", "assertion_error") and not secret:
                message += f" (got {err.get('input')!r})"
        lines.append(f"{path}: {message}")
    return lines


def parse(data: dict[str, Any]) -> Config:
    """Validate a config mapping (as read from TOML); raise :class:`ConfigError`."""
    problems: list[str] = []
    expanded = _expand(data, "", problems)
    unset = {line.split(": ", 1)[0] for line in problems}
    try:
        config = Config.model_validate(expanded)
    except ValidationError as exc:
        problems.extend(_problems(exc, unset))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML config file; raise :class:`ConfigError` naming each problem."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"{file}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{file}: invalid TOML: {exc}"]) from None
    return parse(data)


def resolve_path(explicit: str | None) -> str:
    """``--config`` if given, else ``./config.toml`` if it exists, else ``HUB_CONFIG``."""
    if explicit:
        return explicit
    if Path("config.toml").exists():
        return "config.toml"
    return os.environ.get("HUB_CONFIG", "config.toml")
