"""The batch's stage rules (:mod:`hub.clients.stage_rules`): a lapsed client who
wrote goes back up the ladder (``return``), and the tags routing rules added may
move a client (``tag``).

Set-based and nearly free: the batch's client lookup says already which senders
are lapsed, so a batch with none of them and no tag rule costs nothing here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from sqlalchemy.engine import Connection

from hub.clients.stage_rules import StageRules, on_contact, on_tags
from hub.ingest.records import Entry


def wrote(e: Entry) -> bool:
    """Whether the message is the client writing (not a bare /start, an
    auto-reply, a bounce)."""
    extras = e.message.extras
    return not (extras and (extras.get("service") or extras.get("auto")))


def follow(
    conn: Connection,
    rules: StageRules,
    fresh: Sequence[Entry],
    lapsed: Collection[int],
    tagged: Mapping[int, Collection[str]],
    now: datetime,
) -> None:
    """``lapsed``: the batch's senders who were lapsed; ``tagged``: the tags the
    batch added to clients."""
    if lapsed:
        back = {e.client_id for e in fresh if e.client_id in lapsed and wrote(e)}
        on_contact(conn, rules, back, now)
    if tagged and rules.on_tags:
        on_tags(conn, rules, tagged, now)
