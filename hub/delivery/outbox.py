"""One message for the outbox, built the same way by every producer of one.

:class:`Outgoing` names what a producer decides (key, channel, recipient, kind,
text, links); :meth:`Outgoing.row` adds what every new row starts with (pending,
never tried, due at once) and gives the mapping ``storage`` inserts. The batch
writer, which inserts tuples, takes :meth:`Outgoing.values` in its column order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from operator import attrgetter
from typing import Any, ClassVar

from storage.ingest import OUTBOX_COLUMNS


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """A message to queue. ``idempotency_key`` is unique per message and stable
    across retries (a second row with the same key is refused by the table), so it
    names what caused the message: ``reply:…``, ``reminder:ID:FIRING`` and so on.
    ``at`` is when it is written, and it is due at once."""

    idempotency_key: str
    channel: str
    account: str
    recipient: str
    kind: str
    text: str
    at: datetime
    subject: str | None = None
    extras: dict[str, Any] | None = None
    client_id: int | None = None
    conversation_id: int | None = None
    interaction_id: int | None = None

    status: ClassVar[str] = "pending"
    attempts: ClassVar[int] = 0

    @property
    def next_attempt_at(self) -> datetime:
        return self.at

    @property
    def created_at(self) -> datetime:
        return self.at

    def row(self) -> dict[str, Any]:
        """The outbox row to insert (every column a producer sets)."""
        return dict(zip(ROW_COLUMNS, self.values(ROW_COLUMNS), strict=True))

    def values(self, columns: Sequence[str]) -> tuple[Any, ...]:
        """The row's values in ``columns`` order (two or more outbox column names)."""
        return _getter(tuple(columns))(self)


# The batch writer's columns (which leave ``extras`` to the table's default), and ``extras``.
ROW_COLUMNS = (*OUTBOX_COLUMNS, "extras")


@cache
def _getter(columns: tuple[str, ...]) -> Callable[[Outgoing], tuple[Any, ...]]:
    if len(columns) < 2:  # attrgetter of one name answers the value, not a tuple
        raise ValueError("an outbox row has more than one column")
    return attrgetter(*columns)
