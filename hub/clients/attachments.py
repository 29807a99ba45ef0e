"""Attachment files, stored by content (sha256) under ``storage.attachments_dir``.

A file is written and fsynced before the transaction that records it commits,
so a committed attachment row always has its bytes; an orphan file left by a
failed transaction is harmless (the same content reuses it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class StoredFile:
    sha256: str
    size: int


class AttachmentStore:
    def __init__(self, root: str | os.PathLike[str], max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    async def put(self, data: bytes) -> StoredFile:
        return await asyncio.to_thread(self._put, data)

    def _put(self, data: bytes) -> StoredFile:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            # A temporary name of its own: the same content may be stored by two
            # messages at once (the same invoice sent twice), in two threads.
            fd, temp = tempfile.mkstemp(prefix=f".{digest}.", suffix=".tmp", dir=target.parent)
            try:
                with open(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(temp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
        return StoredFile(digest, len(data))

    async def get(self, sha256: str) -> bytes:
        return await asyncio.to_thread(self.path(sha256).read_bytes)
