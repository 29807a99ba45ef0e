"""What ingest keeps of a message while it waits for its batch and while the batch is written."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, NamedTuple

from hub.kernel.types import InboundMessage, IngestResult
from routing import Decision
from storage.ratings import Recent


class AttachedFile(NamedTuple):
    """An attachment stored by content, to be listed with its interaction."""

    filename: str
    content_type: str
    sha256: str
    size: int


class Pending:
    """A message waiting for its batch, with its stored attachment files."""

    __slots__ = ("files", "future", "message", "skipped")

    def __init__(self, message: InboundMessage, future: asyncio.Future[IngestResult]) -> None:
        self.message = message
        self.future = future
        self.files: list[AttachedFile] = []
        self.skipped: list[str] = []


@dataclass(slots=True, eq=False)
class Entry:
    """A message of the batch to log (not a redelivery), filled in as the steps
    go: its client, its conversation (None for a service message), its interaction.
    Compared by identity, so that a set or dict can hold it."""

    index: int  # its place in the batch: where its result goes
    pending: Pending
    message: InboundMessage
    client_id: int = 0
    conv: Conv | None = None
    interaction_id: int = 0
    rated: Recent | None = None  # a comment on this rating: no request of its own


@dataclass(slots=True, eq=False)
class Conv:
    """A conversation as the batch sees it; ``id`` is 0 until a new one is inserted,
    ``row`` holds a new one's values (None for one that exists)."""

    id: int
    client_id: int
    status: str
    assignee_id: int | None
    row: dict[str, Any] | None = None
    opener: Entry | None = None  # the message that opened a new conversation
    changed: bool = False  # an existing conversation reopened or assigned in this batch


class Routed(NamedTuple):
    """A routing decision taken for a message's conversation, to log and announce."""

    entry: Entry
    conv: Conv
    decision: Decision
