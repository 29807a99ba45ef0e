"""The campaign file: segment, script (one text or A/B variants), mode, quiet hours;
TOML or YAML, validated with errors that name the key."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hub.campaigns import scripts
from hub.config import KnownStage, QuietHours
from hub.kernel.errors import HubError
from hub.kernel.http import MAX_ID
from routing.hours import parse_window

_FIRST_DAY, _LAST_DAY = date(1, 1, 2), date(9999, 12, 30)


class CampaignError(HubError):
    """A campaign that cannot be created, found or moved as asked."""


# -- the campaign file ------------------------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentSpec(_Spec):
    tags: list[str] = []
    tags_all: list[str] = []
    not_tags: list[str] = []
    stages: list[KnownStage] = []
    owners: list[str] = []  # manager names; "none" for clients nobody owns
    reachable: list[Literal["telegram", "email", "phone"]] = []
    last_contact_before: datetime | date | None = None
    last_contact_after: datetime | date | None = None
    sources: list[str] = []
    languages: list[str] = []
    custom: dict[str, str | int | float | bool | list[str | int | float | bool]] = {}
    clients: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = []

    @field_validator("last_contact_before", "last_contact_after")
    @classmethod
    def _in_calendar(cls, value: datetime | date | None) -> datetime | date | None:
        """A day away from the calendar's ends, where the hub's timezone (or UTC, for
        the database) would move it out of range."""
        day = value.date() if isinstance(value, datetime) else value
        if day is not None and not _FIRST_DAY <= day <= _LAST_DAY:
            raise ValueError(f"must lie from {_FIRST_DAY} to {_LAST_DAY}")
        return value


class VariantSpec(_Spec):
    name: str = Field(default="A", min_length=1, max_length=32)
    text: str = Field(min_length=1)
    subject: str | None = None
    fallback: str | None = None
    weight: int = Field(default=1, ge=0)


class CampaignSpec(_Spec):
    name: str = Field(min_length=1, max_length=200)
    mode: Literal["message", "calls"] = "message"
    segment: SegmentSpec = SegmentSpec()
    # one script, or variants (A/B)
    text: str | None = None
    subject: str | None = None
    fallback: str | None = None
    variants: list[VariantSpec] = []
    channels: list[Literal["telegram", "email"]] = ["telegram", "email"]
    quiet_hours: QuietHours | None = None
    reply_window_days: float | None = Field(default=None, gt=0)
    managers: list[str] = []  # calls: who takes them (default: every manager)
    call_back_hours: float | None = Field(default=None, gt=0)

    @field_validator("channels")
    @classmethod
    def _some_channel(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one channel")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _script(self) -> CampaignSpec:
        if self.text is not None and self.variants:
            raise ValueError("give either text or variants, not both")
        if self.text is None and not self.variants:
            raise ValueError("text (or variants) is missing")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must differ")
        for variant in self.script():
            scripts.check(variant)
        return self

    def script(self) -> list[scripts.Variant]:
        if self.text is not None:
            return [scripts.Variant("A", self.text, self.subject, self.fallback)]
        return [
            scripts.Variant(v.name, v.text, v.subject, v.fallback, v.weight) for v in self.variants
        ]


def parse_spec(data: dict[str, Any]) -> CampaignSpec:
    """The campaign file's content, validated; errors name the key."""
    try:
        return CampaignSpec.model_validate(data)
    except scripts.ScriptError as exc:
        raise CampaignError(str(exc)) from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "campaign"
            cause = error.get("ctx", {}).get("error")
            message = str(cause) if isinstance(cause, Exception) else error["msg"]
            problems.append(f"{where}: {message}")
        raise CampaignError("; ".join(problems)) from None


def load_spec(path: str | Path) -> CampaignSpec:
    """A campaign file: TOML, or YAML when named ``.yaml``/``.yml`` (PyYAML needed)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CampaignError(f"{path}: {exc.strerror}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError:
            raise CampaignError("YAML campaign files need PyYAML; use TOML") from None
        data = yaml.safe_load(raw)
    else:
        try:
            data = tomllib.loads(raw.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CampaignError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise CampaignError(f"{path}: not a table of keys")
    return parse_spec(data)


# -- quiet hours ------------------------------------------------------------------------


def quiet_until(now: datetime, tz: ZoneInfo, window: str) -> datetime | None:
    """When the quiet hours around ``now`` (in ``tz``) end; None when not quiet."""
    parsed = parse_window(window)
    if parsed is None:
        return None
    start, end = parsed
    local = now.astimezone(tz)
    moment = local.time()
    if start < end:
        inside = start <= moment < end
        day = local.date()
    else:  # across midnight
        inside = moment >= start or moment < end
        day = local.date() + timedelta(days=1) if moment >= start else local.date()
    if not inside:
        return None
    return datetime.combine(day, end, tzinfo=tz).astimezone(UTC)
