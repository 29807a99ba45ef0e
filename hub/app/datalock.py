"""The data folder's lock: ``hub run`` holds ``hub.lock`` shared while it runs,
``hub restore`` takes it exclusive, so neither starts while the other works.

The lock (``flock``) sits in the data folder: the SQLite database's folder, or,
on PostgreSQL, the folder holding ``storage.attachments_dir``. Shared, because
more than one hub may run on the same data; the kernel drops it when the
process ends, however it ends, so a crashed hub never leaves it behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from hub.config import Config
from hub.kernel.errors import HubError
from storage.db import in_memory

LOCK_NAME = "hub.lock"


class DataInUse(HubError):
    """Another process holds the data folder's lock."""


def lock_path(config: Config) -> Path | None:
    """Where the lock of this config's data lives; None for an in-memory database."""
    url = config.storage.url
    if in_memory(url):
        return None
    url_parsed = make_url(url)
    if url_parsed.get_backend_name() == "sqlite":
        return Path(url_parsed.database or "").absolute().parent / LOCK_NAME
    return Path(config.storage.attachments_dir).absolute().parent / LOCK_NAME


@contextmanager
def hold(config: Config, *, exclusive: bool = False) -> Iterator[Path | None]:
    """Hold the lock (shared for ``hub run``, exclusive for a restore) or raise
    :class:`DataInUse` at once: nobody waits on it."""
    path = lock_path(config)
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataInUse(_busy(path, exclusive)) from None
        yield path
    finally:
        os.close(fd)


def _busy(path: Path, exclusive: bool) -> str:
    if exclusive:
        return f"a hub is running on this data (it holds {path}): stop it first"
    return f"a restore is running on this data (it holds {path}): start the hub once it is done"
