"""Campaign scripts: sandboxed Jinja2 templates over a client's fields.

A script is rendered in :class:`jinja2.sandbox.SandboxedEnvironment`: no
attribute starting with ``_``, no calls of unsafe methods, ranges bounded.
Such attempts are refused when the script is checked (at creation, statically)
and again when it renders (the sandbox's :class:`SecurityError`), each as a
:class:`ScriptError` naming what was refused. A field the client lacks makes the
variant's plain-text ``fallback`` go out instead; without a fallback it renders
empty. A/B variants are assigned per client by a hash of campaign and client:
the same client always gets the same variant.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import (
    ChainableUndefined,
    StrictUndefined,
    Template,
    TemplateSyntaxError,
    UndefinedError,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from hub.kernel.errors import HubError

MAX_OUTPUT = 4000


class ScriptError(HubError):
    """A script that does not compile, or tries to leave the sandbox."""


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    text: str
    subject: str | None = None
    fallback: str | None = None
    weight: int = 1


@dataclass(frozen=True, slots=True)
class Rendered:
    variant: str
    text: str
    subject: str | None
    fell_back: bool


class _Environment(SandboxedEnvironment):
    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # Beyond the sandbox's own rules: nothing private, nothing formatted.
        if attr.startswith("_") or attr in ("format", "format_map", "mro"):
            return False
        return super().is_safe_attribute(obj, attr, value)


_strict = _Environment(undefined=StrictUndefined, autoescape=False)
# Without a fallback a missing field renders empty, however deep it is reached.
_lenient = _Environment(undefined=ChainableUndefined, autoescape=False)


def _refused_names(tree: nodes.Template) -> list[str]:
    refused: list[str] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        name: Any = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        elif isinstance(node, nodes.Name):
            name = node.name
        if isinstance(name, str) and (name.startswith("_") or name in ("format", "mro")):
            refused.append(name)
    return refused


def check(variant: Variant) -> None:
    """Compile the variant's text and subject; raise ScriptError for a syntax error
    or an attempt to reach past the client's fields."""
    for part, source in (("text", variant.text), ("subject", variant.subject)):
        if source is None:
            continue
        try:
            tree = _strict.parse(source)
        except TemplateSyntaxError as exc:
            raise ScriptError(
                f"variant {variant.name} {part}: line {exc.lineno}: {exc.message}"
            ) from None
        refused = _refused_names(tree)
        if refused:
            raise ScriptError(
                f"variant {variant.name} {part}: access to {refused[0]!r} is not allowed "
                "(scripts see the client's fields only)"
            )


@functools.lru_cache(maxsize=256)
def _template(source: str, strict: bool) -> Template:
    """A script compiled once (``from_string`` compiles on every call)."""
    return (_strict if strict else _lenient).from_string(source)


def _render(source: str, context: Mapping[str, Any], *, strict: bool = True) -> str:
    try:
        out = _template(source, strict).render(context)
    except SecurityError as exc:
        raise ScriptError(f"refused by the sandbox: {exc}") from None
    return out.strip()[:MAX_OUTPUT]


def render(variant: Variant, context: Mapping[str, Any]) -> Rendered:
    """The variant for this client; the fallback when a field it uses is missing."""
    try:
        text = _render(variant.text, context)
        subject = _render(variant.subject, context) if variant.subject else None
        return Rendered(variant.name, text, subject, False)
    except UndefinedError:
        pass
    except (TypeError, ValueError, ArithmeticError) as exc:
        # A field of an unexpected type: the client gets the plain text.
        if variant.fallback is None:
            raise ScriptError(f"variant {variant.name}: {exc}") from None
    if variant.fallback is not None:
        subject = variant.subject
        if subject is not None:
            try:
                subject = _render(subject, context)
            except UndefinedError:
                subject = None
        return Rendered(variant.name, variant.fallback, subject, True)
    try:
        text = _render(variant.text, context, strict=False)
        subject = _render(variant.subject, context, strict=False) if variant.subject else None
    except (UndefinedError, TypeError, ValueError, ArithmeticError) as exc:
        raise ScriptError(f"variant {variant.name}: {exc}") from None
    return Rendered(variant.name, text, subject, True)


def pick(variants: Sequence[Variant], campaign_id: int, client_id: int) -> Variant:
    """The client's variant: a stable hash of (campaign, client) over the weights."""
    total = sum(max(v.weight, 0) for v in variants)
    if len(variants) == 1 or total <= 0:
        return variants[0]
    digest = hashlib.sha256(f"{campaign_id}:{client_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % total
    for variant in variants:
        point -= max(variant.weight, 0)
        if point < 0:
            return variant
    return variants[-1]  # pragma: no cover


def context(
    *,
    client_id: int,
    name: str | None,
    stage: str,
    source: str | None,
    language: str | None,
    tags: Sequence[str] | None,
    custom: Mapping[str, Any] | None,
    owner: str | None,
    identities: Mapping[str, str],
) -> dict[str, Any]:
    """What a script sees: ``client`` (its fields; missing ones are left out, so a
    template using them falls back) and ``manager`` (the owner's name)."""
    fields: dict[str, Any] = {"id": client_id, "stage": stage, "tags": list(tags or [])}
    if name:
        fields["name"] = name
        fields["first_name"] = name.split()[0]
    for key, value in (("source", source), ("language", language)):
        if value:
            fields[key] = value
    for kind in ("email", "phone"):
        if kind in identities:
            fields[kind] = identities[kind]
    extra = {str(k): v for k, v in (custom or {}).items() if v not in (None, "")}
    fields["custom"] = extra
    for key, value in extra.items():
        fields.setdefault(key, value)
    result: dict[str, Any] = {"client": fields}
    if owner:
        result["manager"] = owner
    return result
