"""Canned answers: the config's ``[[desk.templates]]`` rendered for one client.

The texts were compiled and checked at load (``hub.config.desk``); here they are
rendered in the same read-only sandbox over the client's fields, every field
present (empty when the client has none), in the client's language.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from jinja2 import Template, TemplateError

from hub.config import TEMPLATE_FIELDS, TemplateSection
from hub.config.desk import SANDBOX
from hub.kernel.errors import HubError
from hub.kernel.types import ClientCard, ManagerRef

__all__ = ["CannedAnswers", "TemplateFailed", "fields"]


class TemplateFailed(HubError):
    """A canned answer that did not render (the sandbox refused it): nothing is sent."""


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> Template:
    return SANDBOX.from_string(source)


def fields(card: ClientCard, manager: ManagerRef) -> dict[str, str]:
    """What a template may say: the client's fields and the answering manager's name."""
    kinds = dict(reversed(card.identities))  # the first address of a kind wins
    name = (card.name or "").strip()
    found = {
        "name": name,
        "first_name": name.split()[0] if name else "",
        "id": str(card.id),
        "stage": card.stage,
        "email": kinds.get("email", ""),
        "phone": kinds.get("phone", ""),
        "manager": manager.name,
    }
    assert set(found) == set(TEMPLATE_FIELDS)
    return found


class CannedAnswers:
    """The configured templates, found by name regardless of case."""

    def __init__(self, templates: Sequence[TemplateSection] = ()) -> None:
        self._by_name = {t.name.casefold(): t for t in templates}
        self.names = [t.name for t in templates]

    def find(self, name: str) -> TemplateSection | None:
        return self._by_name.get(name.strip().casefold())

    @staticmethod
    def render(template: TemplateSection, language: str, values: dict[str, str]) -> str:
        try:
            return _compiled(template.source(language)).render(values).strip()
        except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
            # The sandbox's SecurityError, or arithmetic over the fields' text.
            raise TemplateFailed(f"template {template.name!r}: {exc}") from None
