"""A client's comment on their rating, found and written by the batch.

The client's next message within ``csat.comment_minutes`` of rating a resolved
request is that rating's comment: logged on the rated request as the client's
message, stored as ``ratings.comment``, and posted in the client's staff topic
(to the active supervisors too after a score at or under ``csat.alert_at``), but
it opens no request, reopens none, is routed to nobody and gets no auto-reply.

Finding them costs the batch one constant SELECT over the ``rated_at`` index,
which reads only the ratings given within the window and not commented on yet
(:func:`storage.ratings.recent`); with ``[csat] ask`` off, nothing at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from hub.config import Config
from hub.delivery.outbox import Outgoing
from hub.ingest.records import Entry
from hub.ingest.rows import clip
from hub.kernel.texts import text
from storage import ratings as q

OutboxRow = tuple[object, ...]  # in ``storage.ingest.OUTBOX_COLUMNS`` order


@dataclass(frozen=True, slots=True)
class CommentWindow:
    """``[csat]`` as the batch reads it: how long after a rating the client's message
    is its comment, and the score at or under which the supervisors hear it."""

    minutes: float
    alert_at: int


def find(
    conn: Connection,
    window: CommentWindow | None,
    fresh: list[Entry],
    blocked: set[int],
    now: datetime,
) -> int:
    """Mark each message that is a comment (``Entry.rated``): the first one of the
    batch from each client with a rating in the window. How many."""
    if window is None or window.minutes <= 0 or not fresh:
        return 0
    recent = q.recent(conn, now - timedelta(minutes=window.minutes))
    if not recent:
        return 0
    found = 0
    for e in fresh:
        extras = e.message.extras
        if e.client_id in blocked or (extras and (extras.get("service") or extras.get("auto"))):
            continue
        rating = recent.pop(e.client_id, None)
        if rating is not None:
            e.rated = rating
            found += 1
    return found


def write(
    conn: Connection,
    window: CommentWindow | None,
    fresh: list[Entry],
    staff: str | None,
    language: str,
    now: datetime,
) -> list[OutboxRow]:
    """The comments stored on their ratings; the staff's notices about them."""
    comments = [e for e in fresh if e.rated is not None]
    if not comments or window is None:
        return []
    q.comment(conn, [(e.rated.id, e.message.text, now) for e in comments if e.rated])
    if staff is None:
        return []
    supervisors: list[int] | None = None
    rows: list[OutboxRow] = []
    for e in comments:
        assert e.rated is not None
        said = text(
            "csat_comment", language, score=e.rated.score, comment=clip(e.message.text, 3000)
        )
        told = ["staff"]
        if e.rated.score <= window.alert_at:
            supervisors = q.supervisors(conn) if supervisors is None else supervisors
            told += [str(t) for t in supervisors]
        rows.extend(_notice(staff, recipient, e, said, now) for recipient in told)
    return rows


def _notice(staff: str, recipient: str, e: Entry, said: str, now: datetime) -> OutboxRow:
    assert e.rated is not None
    return Outgoing(
        idempotency_key=f"csat_comment:{e.interaction_id}:{recipient}",
        channel=staff,
        account="staff",
        recipient=recipient,
        kind="alert",
        text=said,
        at=now,
        client_id=e.client_id,
        conversation_id=e.rated.conversation_id,
        interaction_id=e.interaction_id,
    ).batch_row()


def window(config: Config) -> CommentWindow | None:
    """The comment window as ``[csat]`` sets it; None when no rating is asked."""
    csat = config.csat
    return CommentWindow(csat.comment_minutes, csat.alert_at) if csat.ask else None
