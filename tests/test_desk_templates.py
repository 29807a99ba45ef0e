"""Canned answers (issue 15): ``[[desk.templates]]`` checked at load, each problem
named with its key, and rendered in the sandbox over the client's fields."""

from __future__ import annotations

from typing import Any

import pytest

from hub.config import ConfigError, TemplateSection, parse
from hub.desk.canned import CannedAnswers, fields
from hub.kernel.types import ClientCard, ManagerRef, Role


def problems(*templates: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse({"admin": {"token": "t" * 20}, "desk": {"templates": list(templates)}})
    return list(caught.value.problems)


def test_templates_load() -> None:
    config = parse(
        {
            "admin": {"token": "t" * 20},
            "desk": {"templates": [{"name": "hello", "ru": "Привет, {{ name or 'друг' }}!"}]},
        }
    )
    [hello] = config.desk.templates
    assert hello.source("en") == hello.source("ru") == "Привет, {{ name or 'друг' }}!"


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        (
            {"name": "hi", "ru": "Привет, {name}"},
            "desk.templates[0].ru: write {{ name }} for the client's name, with two braces",
        ),
        (
            {"name": "hi", "en": "Hi {{ nmae }}"},
            "desk.templates[0].en: unknown field 'nmae'; fields: name, first_name, id, stage, "
            "email, phone, manager",
        ),
        (
            {"name": "hi", "en": "{% if name %}Hi"},
            "desk.templates[0].en: line 1: Unexpected end of template.",
        ),
        ({"name": "hi"}, "desk.templates[0]: a template needs ru or en text (or both)"),
        (
            {"name": "x" * 33, "en": "a"},
            "desk.templates[0].name: at most 32 bytes (it names a button)",
        ),
        ({"name": "two words", "en": "a"}, "desk.templates[0].name: String should match"),
        ({"name": "hi", "en": "a", "de": "b"}, "desk.templates[0].de: unknown key"),
    ],
)
def test_each_problem_names_its_key(template: dict[str, Any], problem: str) -> None:
    [found] = problems(template)
    assert found.startswith(problem)


def test_names_are_unique_regardless_of_case() -> None:
    assert problems({"name": "hello", "en": "a"}, {"name": "Hello", "en": "b"}) == [
        "desk.templates: template name 'hello' is used twice"
    ]


CARD = ClientCard(
    id=7,
    name="Anna Petrova",
    stage="client",
    owner=None,
    identities=(("telegram", "4242"), ("email", "anna@example.org"), ("email", "old@x.org")),
    open_requests=1,
    assignee=None,
    language="en",
    source=None,
    tags=(),
    last_contacts=(),
)
MARIA = ManagerRef(1, "Maria", 100, Role.MANAGER)


def test_a_template_renders_the_clients_fields_in_their_language() -> None:
    canned = CannedAnswers(
        [
            TemplateSection(
                name="hello",
                ru="{{ first_name }}, это {{ manager }} (#{{ id }}, {{ stage }})",
                en="{{ first_name }}: {{ email }} {{ phone or 'no phone' }}",
            ),
            TemplateSection(name="only_en", en="Hello {{ name }}"),
        ]
    )
    values = fields(CARD, MARIA)
    hello, only_en = canned.find("HELLO"), canned.find("only_en")
    assert hello is not None and only_en is not None and canned.find("nope") is None
    assert canned.render(hello, "ru", values) == "Anna, это Maria (#7, client)"
    assert canned.render(hello, "en", values) == "Anna: anna@example.org no phone"
    assert canned.render(only_en, "ru", values) == "Hello Anna Petrova"
    assert canned.names == ["hello", "only_en"]


def test_the_sandbox_shows_nothing_past_the_fields() -> None:
    reaching = TemplateSection(name="x", en="[{{ name.__class__ }}][{{ name.upper() }}]")
    assert CannedAnswers([reaching]).render(reaching, "en", fields(CARD, MARIA)) == (
        "[][ANNA PETROVA]"
    )
