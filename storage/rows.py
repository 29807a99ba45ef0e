"""A record's few child rows gathered into its one statement as a JSON array (SQLite
``json_group_array``, PostgreSQL ``json_agg``), and their values read back: one
statement for a card instead of one per kind of row (one round trip on PostgreSQL,
one pass through SQLAlchemy's execution on either)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import JSON, ScalarSelect, Select, func, select


def gathered(dialect: str, query: Select[Any]) -> ScalarSelect[Any]:
    """The rows of ``query`` as one JSON array of arrays (read back as lists; empty
    or None when there are none). JSON arrays keep no order that both databases
    promise: put the ordering columns in the rows and sort them in Python."""
    rows = query.subquery()
    if dialect == "sqlite":
        every = func.json_group_array(func.json_array(*rows.c), type_=JSON)
    else:
        every = func.json_agg(func.json_build_array(*rows.c), type_=JSON)
    return select(every).select_from(rows).scalar_subquery()


@overload
def moment(value: str) -> datetime: ...


@overload
def moment(value: str | None) -> datetime | None: ...


def moment(value: str | None) -> datetime | None:
    """A time as a JSON array holds it (SQLite's stored naive UTC text, PostgreSQL's
    ISO form with its offset), as the aware UTC datetime the hub's columns give."""
    if value is None:
        return None
    found = datetime.fromisoformat(value)
    return found.replace(tzinfo=UTC) if found.tzinfo is None else found.astimezone(UTC)
