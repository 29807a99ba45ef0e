"""Requests waiting on the client that a batch's messages reopen: the wait ends,
the paused resolution clock goes on (shifted by the pause), and the client's
timeline says so. Nothing at all for a batch that reopens none."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from hub.ingest.records import Conv
from hub.ingest.rows import EVENT
from hub.kernel.texts import text
from storage import ingest as q
from storage import waiting as waiting_q
from storage.ingest import InteractionRow


def resume_waiting(conn: Connection, convs: list[Conv], now: datetime, language: str) -> None:
    """Before the batch makes ``convs`` (waiting until now) open again."""
    if not convs:
        return
    waiting_q.resume(conn, [c.id for c in convs], now)
    said = text("waiting_resumed", language)
    q.insert_interactions(
        conn,
        [
            InteractionRow(
                c.client_id, c.id, EVENT, None, None, None, "hub", None, said, None, None, now, None
            )
            for c in convs
        ],
    )
