"""One message for the outbox, built the same way by every producer of one.

:class:`Outgoing` names what a producer decides (key, channel, recipient, kind,
text, links); :meth:`Outgoing.row` adds what every new row starts with (pending,
never tried, due at once) and gives the mapping ``storage`` inserts. The batch
writer, which inserts tuples, takes :meth:`Outgoing.batch_row` in its column order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.ingest import OUTBOX_COLUMNS


@dataclass(slots=True, kw_only=True)
class Outgoing:
    """A message to queue. ``idempotency_key`` is unique per message and stable
    across retries (a second row with the same key is refused by the table), so it
    names what caused the message: ``reply:…``, ``reminder:ID:FIRING`` and so on.
    ``at`` is when it is written, and it is due at once. Not frozen only because
    a frozen dataclass costs three times as much to build, and the batch writer
    builds one for each staff notice."""

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

    def row(self) -> dict[str, Any]:
        """The outbox row to insert (every column a producer sets)."""
        row = dict(zip(OUTBOX_COLUMNS, self.batch_row(), strict=True))
        row["extras"] = self.extras
        return row

    def batch_row(self) -> tuple[Any, ...]:
        """The row as the batch writer inserts it: in ``storage.ingest.OUTBOX_COLUMNS``
        order (no ``extras``), pending, never tried, due at once."""
        return (
            self.idempotency_key,
            self.channel,
            self.account,
            self.recipient,
            self.kind,
            self.subject,
            self.text,
            self.client_id,
            self.conversation_id,
            self.interaction_id,
            "pending",
            0,
            self.at,
            self.at,
        )
