"""The campaign editor's form: its fields turned into the campaign file's keys (the
same ``CampaignSpec`` that ``hub campaign create`` reads, checked by the same
checks) and back, each problem said at the field it belongs to.

A field's name is the key path of the campaign file (``segment.tags``,
``variants.1.text``); lists are typed comma-separated, custom fields one
``key = value, value`` a line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from multidict import MultiMapping
from pydantic import ValidationError

from hub.campaigns import scripts
from hub.campaigns.scripts import ScriptError
from hub.campaigns.spec import CampaignSpec, SegmentSpec

# The segment's fields as the campaign file has them: (key, how the form types it).
SEGMENT_LISTS = ("tags", "tags_all", "not_tags", "stages", "owners", "sources", "languages")
SEGMENT_DATES = ("last_contact_after", "last_contact_before")
CHANNELS = ("telegram", "email")
VARIANT_KEYS = ("name", "weight", "subject", "text", "fallback")
NUMBERS = ("reply_window_days", "call_back_hours")
MAX_VARIANTS = 6
MAX_FIELD = 20_000  # a script's text at most; longer is cut, the check then sees it


@dataclass
class Form:
    """The editor's values as typed, and the problems found, by field."""

    values: dict[str, str] = field(default_factory=dict)
    checked: dict[str, list[str]] = field(default_factory=dict)  # checkboxes: name → values
    variants: list[dict[str, str]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def value(self, name: str) -> str:
        return self.values.get(name, "")

    def rows(self) -> list[tuple[int, dict[str, str]]]:
        """The variants' rows shown: those given and an empty row to add another (two
        rows at least: A and B)."""
        shown = list(self.variants)
        while len(shown) < min(max(2, len(self.variants) + 1), MAX_VARIANTS):
            shown.append({"name": _next_name(shown), "weight": "1"})
        return list(enumerate(shown))


def _next_name(rows: Sequence[Mapping[str, str]]) -> str:
    taken = {r.get("name", "") for r in rows}
    return next(chr(c) for c in range(ord("A"), ord("Z") + 1) if chr(c) not in taken)


def _items(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return "" if value is None else str(value)


# -- from the browser ------------------------------------------------------------------


def form_of_post(post: MultiMapping[Any]) -> Form:
    """The form as the browser sent it (a POST body or an htmx GET's query)."""

    def one(name: str) -> str:
        raw = post.get(name, "")
        return raw.strip()[:MAX_FIELD] if isinstance(raw, str) else ""

    form = Form()
    for name in ("name", "mode", "quiet_hours", "managers", *NUMBERS, "segment.custom"):
        form.values[name] = one(name)
    for key in (*SEGMENT_LISTS, *SEGMENT_DATES, "clients"):
        form.values[f"segment.{key}"] = one(f"segment.{key}")
    for name in ("channels", "segment.reachable"):
        form.checked[name] = [v for v in post.getall(name, []) if isinstance(v, str)]
    for index in range(MAX_VARIANTS):
        row = {key: one(f"variants.{index}.{key}") for key in VARIANT_KEYS}
        if any(row[k] for k in ("text", "subject", "fallback")):
            form.variants.append(row)
    return form


def _custom(raw: str, errors: dict[str, str]) -> dict[str, Any]:
    custom: dict[str, Any] = {}
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, values = line.partition("=")
        if not sep or not key.strip():
            errors["segment.custom"] = f"line {number}: write key = value"
            continue
        listed = _items(values)
        custom[key.strip()] = listed[0] if len(listed) == 1 else listed
    return custom


def segment_data(form: Form, errors: dict[str, str]) -> dict[str, Any]:
    """The ``[segment]`` table of the campaign file, as the form gives it."""
    data: dict[str, Any] = {}
    for key in SEGMENT_LISTS:
        if listed := _items(form.value(f"segment.{key}")):
            data[key] = listed
    if listed := _items(form.value("segment.clients")):
        data["clients"] = listed
    for key in SEGMENT_DATES:
        if raw := form.value(f"segment.{key}"):
            data[key] = raw
    if reachable := form.checked.get("segment.reachable"):
        data["reachable"] = reachable
    if custom := _custom(form.value("segment.custom"), errors):
        data["custom"] = custom
    return data


def _script(form: Form) -> dict[str, Any]:
    """One text (the file's ``text``) or ``[[variants]]`` when there are several."""
    rows = form.variants
    if not rows:
        return {"text": None}
    if len(rows) == 1 and rows[0]["name"] in ("", "A") and rows[0]["weight"] in ("", "1"):
        row = rows[0]
        return {k: row[k] for k in ("text", "subject", "fallback") if row[k] or k == "text"}
    variants = []
    for row in rows:
        variant: dict[str, Any] = {k: row[k] for k in ("name", "text") if row[k] or k == "text"}
        variant.update({k: row[k] for k in ("subject", "fallback") if row[k]})
        if row["weight"]:
            variant["weight"] = row["weight"]
        variants.append(variant)
    return {"variants": variants}


def spec_data(form: Form, errors: dict[str, str]) -> dict[str, Any]:
    """The campaign file's keys, as the form gives them."""
    data: dict[str, Any] = {"name": form.value("name"), "mode": form.value("mode") or "message"}
    data["segment"] = segment_data(form, errors)
    data.update(_script(form))
    data["channels"] = form.checked.get("channels", [])
    data["quiet_hours"] = form.value("quiet_hours")
    for key in NUMBERS:
        if raw := form.value(key):
            data[key] = raw
    if managers := _items(form.value("managers")):
        data["managers"] = managers
    return data


# -- the checks, said by field --------------------------------------------------------


def _field(loc: Sequence[int | str], form: Form) -> str:
    """The form's field a pydantic error's location names."""
    path = [str(p) for p in loc]
    if not path:
        return "campaign"
    if path[0] == "segment":
        return ".".join(path[:2]) if len(path) > 1 else "segment"
    if path[0] == "variants" and len(path) > 2:
        return f"variants.{path[1]}.{path[2]}"
    if path[0] in ("text", "subject", "fallback"):
        return f"variants.0.{path[0]}"
    return path[0]


def _model_error(message: str, form: Form) -> str:
    """Where a check of the whole campaign belongs."""
    if "variant names" in message:
        names = [r["name"] for r in form.variants]
        twice = next((i for i, n in enumerate(names) if names.index(n) != i), 0)
        return f"variants.{twice}.name"
    if "text (or variants)" in message:
        return "variants.0.text"
    return "campaign"


_SCRIPT = re.compile(r"^variant (?P<name>.*?) (?P<part>text|subject)\b")


def _script_error(message: str, form: Form) -> str:
    found = _SCRIPT.match(message)
    if found is None:
        return "variants.0.text"
    for index, row in enumerate(form.variants):
        if row["name"] in (found["name"], "") or (found["name"] == "A" and len(form.variants) == 1):
            return f"variants.{index}.{found['part']}"
    return "variants.0.text"


def _said(errors: dict[str, str], where: str, message: str) -> None:
    errors.setdefault(where, message)


def check(form: Form) -> CampaignSpec | None:
    """The campaign the form describes, or None with ``form.errors`` filled."""
    errors: dict[str, str] = {}
    data = spec_data(form, errors)
    spec: CampaignSpec | None = None
    try:
        spec = CampaignSpec.model_validate(data)
    except ScriptError as exc:
        _said(errors, _script_error(str(exc), form), str(exc))
    except ValidationError as exc:
        for error in exc.errors():
            cause = error.get("ctx", {}).get("error")
            message = str(cause) if isinstance(cause, Exception) else error["msg"]
            where = _field(error["loc"], form)
            if where == "campaign":
                where = _model_error(message, form)
            _said(errors, where, message)
        _scripts(form, errors)  # the model checks them only once its fields are right
    form.errors.update(errors)
    return spec if not errors else None


def _scripts(form: Form, errors: dict[str, str]) -> None:
    """Each variant's script checked on its own, as the campaign's check does."""
    for index, row in enumerate(form.variants):
        variant = scripts.Variant(row["name"] or "A", row["text"], row["subject"] or None)
        try:
            scripts.check(variant)
        except scripts.ScriptError as exc:
            part = _SCRIPT.match(str(exc))
            _said(errors, f"variants.{index}.{part['part'] if part else 'text'}", str(exc))


def check_segment(form: Form) -> SegmentSpec | None:
    """The segment alone (the live count), or None with ``form.errors`` filled."""
    errors: dict[str, str] = {}
    data = segment_data(form, errors)
    try:
        segment = SegmentSpec.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            where = _field(("segment", *error["loc"]), form)
            _said(errors, where, error["msg"])
        segment = None
    form.errors.update(errors)
    return segment if not errors else None


def owner_error(message: str, form: Form) -> bool:
    """A check made against the database (a segment's owners that no manager has):
    said at its field when it names one."""
    where, sep, said = message.partition(": ")
    if sep and where.startswith("segment."):
        form.errors[where] = said
        return True
    return False


# -- from a saved campaign --------------------------------------------------------------


def form_of_spec(spec: CampaignSpec | None, *, quiet_hours: str) -> Form:
    """The editor filled from a campaign (a new one: the hub's defaults)."""
    form = Form()
    if spec is None:
        form.values.update({"mode": "message", "quiet_hours": quiet_hours})
        form.checked["channels"] = list(CHANNELS)
        return form
    data = spec.model_dump(mode="json")
    form.values.update({"name": spec.name, "mode": spec.mode})
    form.values["quiet_hours"] = quiet_hours if spec.quiet_hours is None else spec.quiet_hours
    form.values.update({k: _shown(data.get(k)) for k in NUMBERS})
    form.values["managers"] = _shown(spec.managers)
    segment = data["segment"]
    for key in (*SEGMENT_LISTS, *SEGMENT_DATES, "clients"):
        form.values[f"segment.{key}"] = _shown(segment.get(key))
    form.values["segment.custom"] = "\n".join(
        f"{k} = {_shown(v)}" for k, v in segment.get("custom", {}).items()
    )
    form.checked["segment.reachable"] = list(segment.get("reachable", []))
    form.checked["channels"] = list(spec.channels)
    form.variants = [
        {
            "name": v.name,
            "weight": str(v.weight),
            "subject": v.subject or "",
            "text": v.text,
            "fallback": v.fallback or "",
        }
        for v in spec.script()
    ]
    return form
