"""Segments: filters over clients, built into one query of client ids.

Every filter given narrows the set (AND); a list filter matches any of its
values (OR). Tags and custom fields live in JSON columns: tags are matched
through the backend's JSON array expansion (``json_each`` on SQLite,
``json_array_elements_text`` on PostgreSQL), custom fields by their text value.
"Last contact" is the latest message from or to the client (``in`` or ``out``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Select,
    String,
    and_,
    case,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    type_coerce,
)
from sqlalchemy import cast as sql_cast

from storage.tables import clients, identities, interactions


@dataclass(frozen=True, slots=True)
class Segment:
    """What a campaign targets. Empty: every client.

    ``tags``: has any of them; ``tags_all``: has all; ``not_tags``: has none.
    ``owners``: owned by one of these managers (ids); ``unowned``: owned by nobody.
    ``reachable``: has an identity of one of these kinds (``telegram``, ``email``,
    ``phone``). ``custom``: each key's text value is one of the values given.
    """

    tags: Sequence[str] = ()
    tags_all: Sequence[str] = ()
    not_tags: Sequence[str] = ()
    stages: Sequence[str] = ()
    owners: Sequence[int] = ()
    unowned: bool = False
    reachable: Sequence[str] = ()
    last_contact_before: datetime | None = None
    last_contact_after: datetime | None = None
    sources: Sequence[str] = ()
    languages: Sequence[str] = ()
    custom: Mapping[str, Sequence[str]] = field(default_factory=dict)
    client_ids: Sequence[int] = ()


def _has_tag(dialect: str, tag: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        # a client without tags may hold JSON null, which the function refuses
        tags = case(
            (func.json_typeof(clients.c.tags) == "array", clients.c.tags),
            else_=sql_cast(literal("[]"), JSON),
        )
        elements = (
            func.json_array_elements_text(tags)
            .table_valued("value")
            .render_derived(with_types=False)
        )
    else:
        elements = func.json_each(clients.c.tags).table_valued("value")
    return exists(select(literal(1)).select_from(elements).where(elements.c.value == tag))


def _custom_text(key: str) -> ColumnElement[Any]:
    return sql_cast(type_coerce(clients.c.custom, JSON)[key].as_string(), String)


def last_contact() -> Any:
    """The latest ``in`` or ``out`` interaction of the client (a correlated subquery)."""
    i = interactions.c
    return (
        select(func.max(i.at))
        .where(i.client_id == clients.c.id, i.direction.in_(("in", "out")))
        .scalar_subquery()
    )


def conditions(segment: Segment, dialect: str) -> list[ColumnElement[bool]]:
    c = clients.c
    where: list[ColumnElement[bool]] = []
    if segment.tags:
        where.append(or_(*(_has_tag(dialect, t) for t in segment.tags)))
    for tag in segment.tags_all:
        where.append(_has_tag(dialect, tag))
    for tag in segment.not_tags:
        where.append(not_(_has_tag(dialect, tag)))
    if segment.stages:
        where.append(c.stage.in_(list(segment.stages)))
    owned: list[ColumnElement[bool]] = []
    if segment.owners:
        owned.append(c.owner_id.in_(list(segment.owners)))
    if segment.unowned:
        owned.append(c.owner_id.is_(None))
    if owned:
        where.append(or_(*owned))
    if segment.reachable:
        ident = identities.c
        where.append(
            exists(
                select(literal(1)).where(
                    ident.client_id == c.id, ident.kind.in_(list(segment.reachable))
                )
            )
        )
    if segment.last_contact_before is not None:
        # Never contacted counts as "before" any date.
        contact = last_contact()
        where.append(or_(contact.is_(None), contact < segment.last_contact_before))
    if segment.last_contact_after is not None:
        where.append(last_contact() >= segment.last_contact_after)
    if segment.sources:
        where.append(c.source.in_(list(segment.sources)))
    if segment.languages:
        where.append(c.language.in_(list(segment.languages)))
    for key, values in segment.custom.items():
        text = _custom_text(key)
        where.append(text.in_([str(v) for v in values]) if values else text.is_not(None))
    if segment.client_ids:
        where.append(c.id.in_(list(segment.client_ids)))
    return where


def client_ids(segment: Segment, dialect: str) -> Select[Any]:
    """The ids of the segment's clients, ascending."""
    return (
        select(clients.c.id).where(and_(True, *conditions(segment, dialect))).order_by(clients.c.id)
    )


def count(segment: Segment, dialect: str) -> Select[Any]:
    return (
        select(func.count()).select_from(clients).where(and_(True, *conditions(segment, dialect)))
    )
