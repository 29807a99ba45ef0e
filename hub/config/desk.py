"""The ``[desk]`` section: the managers' canned answers (``[[desk.templates]]``)
and flood control (``flood_per_minute``).

A template's text is a Jinja2 template rendered in the sandbox
(:data:`SANDBOX`, read-only: no attribute starting with ``_``, no unsafe
calls) over the client's fields, :data:`TEMPLATE_FIELDS`: ``{{ name }}``,
``{{ name or "there" }}``. Each text is compiled here, once, at load; a syntax
error, an unknown field or a field written with one pair of braces is reported
with its key.
"""

# Pydantic copies a field's default for each instance; ruff cannot see that
# Section (checks.py) is a pydantic model and takes the lists for shared state.
# ruff: noqa: RUF012

from __future__ import annotations

import re

from jinja2 import TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import Field, field_validator, model_validator

from hub.config.checks import Section, once

# What a canned answer may say of the client (and who answers): always present
# when it renders, empty when the client has none.
TEMPLATE_FIELDS = ("name", "first_name", "id", "stage", "email", "phone", "manager")
# A name goes into a button's callback data (64 bytes with the client's id).
TEMPLATE_NAME_BYTES = 32

SANDBOX = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=False)

_ONE_BRACE = re.compile(r"(?<!\{)\{\s*(" + "|".join(TEMPLATE_FIELDS) + r")\s*\}(?!\})")


def check_template(source: str) -> str:
    """``source`` if it compiles and names only known fields; else ValueError saying why."""
    try:
        tree = SANDBOX.parse(source)
    except TemplateSyntaxError as exc:
        raise ValueError(f"line {exc.lineno}: {exc.message}") from None
    unknown = sorted(meta.find_undeclared_variables(tree) - set(TEMPLATE_FIELDS))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; fields: {', '.join(TEMPLATE_FIELDS)}")
    single = _ONE_BRACE.search(source)
    if single is not None:
        field = single.group(1)
        raise ValueError(f"write {{{{ {field} }}}} for the client's {field}, with two braces")
    return source


class TemplateSection(Section):
    """A canned answer: ``/t NAME`` sends it in the client's language."""

    name: str = Field(min_length=1, pattern=r"^[\w-]+$")
    ru: str | None = Field(default=None, min_length=1)
    en: str | None = Field(default=None, min_length=1)

    @field_validator("name")
    @classmethod
    def _short(cls, value: str) -> str:
        if len(value.encode()) > TEMPLATE_NAME_BYTES:
            raise ValueError(f"at most {TEMPLATE_NAME_BYTES} bytes (it names a button)")
        return value

    @field_validator("ru", "en")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value)

    @model_validator(mode="after")
    def _some_text(self) -> TemplateSection:
        if self.ru is None and self.en is None:
            raise ValueError("a template needs ru or en text (or both)")
        return self

    def source(self, language: str | None) -> str:
        """The text in ``language``, else in the other one."""
        first, second = (self.en, self.ru) if language == "en" else (self.ru, self.en)
        found = first or second
        assert found is not None  # checked at load
        return found


class DeskSection(Section):
    """The managers' desk. ``flood_per_minute``: a client's requests in a minute
    shown to the staff one by one; past it, one notice, then none until the
    minute is over (every message is logged all the same); 0: no limit."""

    templates: list[TemplateSection] = []
    flood_per_minute: int = Field(default=10, ge=0)

    @field_validator("templates")
    @classmethod
    def _unique_names(cls, templates: list[TemplateSection]) -> list[TemplateSection]:
        once([t.name.casefold() for t in templates], "template name")
        return templates
