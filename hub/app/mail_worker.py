"""The mail worker process's composition root: ``python -m hub.app.mail_worker FD``.

``hub run`` starts it (``channels.email.worker`` holds both sides of the
protocol) and sends it a :class:`~hub.app.wiring.WorkerSetup`; this opens the
hub's database and an ingest writer with the same rules, auto-replies and SLA
policies as the hub's own, and hands it to the worker as its sink. A reload of
the hub's config comes as the ingestor's new :class:`~hub.ingest.ingestor.Tuning`,
compiled by the hub (its managers' ids included).
"""

from __future__ import annotations

import sys

from channels.email import worker
from hub.app.wiring import WorkerSetup, build_ingestor
from hub.clients.attachments import AttachmentStore
from hub.ingest.ingestor import Tuning
from hub.kernel import loggers
from hub.kernel.clock import SystemClock
from storage import Database
from storage import managers as managers_q

_LOG_WINDOW = 0.02  # seconds the worker's log writer waits to gather a batch


async def open_ingest(setup: WorkerSetup) -> worker.WorkerIngest:
    """The hub's database and an ingest writer on it, as the setup says."""
    config = setup.config
    loggers.setup(config.hub.log_level, config.hub.log_format)
    storage = config.storage
    db = Database(storage.url)
    try:
        async with db.read() as conn:
            manager_ids = await managers_q.ids_by_name(conn)
        ingestor = build_ingestor(
            config,
            db,
            SystemClock(),
            AttachmentStore(storage.attachments_dir, storage.max_attachment_bytes),
            manager_ids,
            staff_channel=setup.staff_channel,
        )
        # Nobody waits on the log here (the sender had its 250 at the spool), so
        # the writer gathers bigger batches: fewer, cheaper transactions.
        ingestor.window = max(ingestor.window, _LOG_WINDOW)
        await ingestor.start()
    except BaseException:
        await db.dispose()
        raise

    async def close() -> None:
        await ingestor.stop()
        await db.dispose()

    async def reload(change: object) -> None:
        if not isinstance(change, Tuning):
            raise TypeError(f"a reload sends a Tuning, not {type(change).__name__}")
        ingestor.retune(change)

    return worker.WorkerIngest(ingestor, storage.max_attachment_bytes, close, reload)


def main() -> None:
    worker.run(int(sys.argv[1]), open_ingest)


if __name__ == "__main__":
    main()
