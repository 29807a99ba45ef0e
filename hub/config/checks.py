"""The config's shared pieces: the section base, and the value types and checks
that several sections use (addresses, working hours, time zones, names once)."""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from hub.kernel.types import STAGES
from routing.hours import HoursError, parse_hours, parse_window


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MissingKeys(ValueError):
    """Keys a section needs in its state (``telegram.token`` when enabled): each
    reported as ``KEY: missing``."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(", ".join(keys))
        self.keys = keys


def once(names: list[str], what: str) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{what} {twice[0]!r} is used twice")


def known_stage(value: str) -> str:
    """A stage of the ladder (or lapsed); else the error names the stages there are."""
    if value not in STAGES:
        raise ValueError(f"unknown stage {value!r}; stages: {', '.join(STAGES)}")
    return value


# A stage name anywhere in the config (and campaign files): a typo is refused
# with its key path, never a rule that silently matches nobody.
KnownStage = Annotated[str, AfterValidator(known_stage)]


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    if not (port.isascii() and port.isdigit()):
        raise ValueError(f"port {port!r} is not a number")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port} out of range 1-65535")
    return value


def _check_hours(value: str) -> str:
    try:
        parse_hours(value)
    except HoursError as exc:
        raise ValueError(str(exc)) from exc
    return value


def check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from exc
    return value


def _check_quiet(value: str) -> str:
    try:
        parse_window(value)
    except HoursError as exc:
        raise ValueError(f"{exc} (or empty for none)") from None
    return value.strip()


Listen = Annotated[str, AfterValidator(_check_listen)]
"""``HOST:PORT`` to listen on."""
Hours = Annotated[str, AfterValidator(_check_hours)]
"""Working hours, kept as written: ``"Mon-Fri 09:00-18:00; Sat 10:00-14:00"``."""
TimeZone = Annotated[str, AfterValidator(check_timezone)]
"""An IANA time zone name."""
Regex = Annotated[str, AfterValidator(_check_regex)]
QuietHours = Annotated[str, AfterValidator(_check_quiet)]
"""A daily window (``"21:00-09:00"``), or empty for none."""
