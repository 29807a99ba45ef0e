"""The channels' sections of the config: ``[telegram]``, ``[email]`` (the SMTP
server, IMAP mailboxes, the outbound relay) and ``[webform]`` with its forms."""

# Pydantic copies a field's default for each instance; ruff cannot see that
# Section (checks.py) is a pydantic model and takes the lists for shared state.
# ruff: noqa: RUF012

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from hub.config.checks import Listen, MissingKeys, Section, once


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
            raise MissingKeys(missing)
        return self


class SmtpUser(Section):
    user: str = Field(min_length=1)
    password: SecretStr


class SmtpServerSection(Section):
    listen: Listen | None = None
    domains: list[str] = []
    max_message_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    # Longest line of a message (without its CRLF). RFC 5321 sets 998, but real
    # mail (bounces, HTML on one line) has longer ones, which Postfix accepts.
    max_line_length: int = Field(default=65536, ge=998, le=16 * 1024 * 1024)
    tls_cert: str | None = None
    tls_key: str | None = None
    require_tls: bool = False
    users: list[SmtpUser] = []
    require_auth: bool = False
    # A session closes after this long without a command (RFC 5321 4.5.3.2.7: at
    # least 5 minutes), and after this long in all, however busy.
    idle_timeout_s: float = Field(default=300.0, gt=0, le=3600)
    session_timeout_s: float = Field(default=1800.0, gt=0, le=86400)

    @model_validator(mode="after")
    def _consistent(self) -> SmtpServerSection:
        if self.listen is not None and not self.domains:
            raise MissingKeys(["domains"])  # it takes mail only for listed domains
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
    # (channels.email.worker); false: both in the hub's process, 250 after the log.
    worker: bool = True
    spool: str = "data/mail-spool.db"


STANDARD_FIELDS = ("name", "email", "phone", "message", "consent")
# Field names the hub's own form machinery posts alongside the visitor's fields
# (a form's own field names cannot start with "_").
RESERVED_FIELDS = frozenset({"_ts", "_key", "_page", "_referrer"})
# What a submission carries besides the form's fields: those above, the honeypot
# and five UTM tags.
HUB_FORM_FIELDS = len(RESERVED_FIELDS) + 1 + 5
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
        once([f.name for f in fields], "field name")
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
    max_fields: int = Field(default=100, ge=1, le=10_000)
    trust_forwarded: bool = False
    trusted_proxies: list[str] = []
    forms: list[FormSection] = []

    @field_validator("forms")
    @classmethod
    def _unique_ids(cls, forms: list[FormSection]) -> list[FormSection]:
        once([form.id for form in forms], "form id")
        return forms

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, entries: list[str]) -> list[str]:
        networks = []
        for entry in entries:
            try:
                networks.append(str(ipaddress.ip_network(entry.strip())))
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an address or a network: {exc}") from None
        return networks

    @model_validator(mode="after")
    def _names_free(self) -> WebformSection:
        for form in self.forms:
            for field in form.fields:
                if field.name == self.honeypot:
                    raise ValueError(
                        f"form {form.id!r}: field name {field.name!r} is taken by the hub"
                    )
            carried = len(form.fields) + HUB_FORM_FIELDS
            if carried > self.max_fields:
                raise ValueError(
                    f"form {form.id!r}: its {len(form.fields)} fields and the hub's own "
                    f"{HUB_FORM_FIELDS} make {carried}, over max_fields = {self.max_fields}"
                )
        if self.trusted_proxies and not self.trust_forwarded:
            raise ValueError("trusted_proxies needs trust_forwarded = true")
        return self
