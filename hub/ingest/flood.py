"""Flood control: which of a batch's requests the staff see one by one.

A client's requests are counted per minute (a minute begins with the first
request after the previous minute ended; the count is kept on the client's row,
so it holds across batches and instances). The first ``desk.flood_per_minute``
of a minute are mirrored and notified one by one; the next one is shown once,
with a notice saying that the rest of the minute's are logged but not shown;
the rest produce no staff rows at all. Every request is logged in full either
way: only the managers' Telegram budget is spared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.ingest.records import Entry
from hub.kernel.texts import text


@dataclass(slots=True)
class Burst:
    """What flood control decided for a batch."""

    quiet: set[Entry] = field(default_factory=set)  # logged, shown to no one
    notice: dict[Entry, str] = field(default_factory=dict)  # shown once, with this notice
    counts: dict[int, int] = field(default_factory=dict)  # client id -> requests in the batch


def split(fresh: list[Entry], before: dict[int, int], limit: int, language: str) -> Burst:
    """The batch's requests (messages with a conversation: not a service message,
    not a blocked client's) against ``limit`` a minute; ``before``: each client's
    requests in their current minute before this batch; the notice in the staff's
    ``language``. ``limit`` 0: no limit (and nothing counted)."""
    burst = Burst()
    if limit <= 0:
        return burst
    nth: dict[int, int] = {}  # client -> the place of their latest request in their minute
    for entry in fresh:
        if entry.conv is None:
            continue
        client_id = entry.client_id
        place = nth.get(client_id)
        place = nth[client_id] = (before.get(client_id, 0) if place is None else place) + 1
        if place > limit:
            if place == limit + 1:
                burst.notice[entry] = text("flood_notice", language, limit=limit)
            else:
                burst.quiet.add(entry)
    burst.counts = {client_id: n - before.get(client_id, 0) for client_id, n in nth.items()}
    return burst
