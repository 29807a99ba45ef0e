"""The process the crash test kills: ingests messages through the real Ingestor.

Run as ``python tests/crash_child.py --url URL --ids-file FILE [--senders N]``.
Each line of FILE is one external id; message ``crash-N`` comes from Telegram
user ``100000 + N % 200``. Concurrent sender coroutines take ids from one queue
and, like a channel adapter acknowledging upstream, print
``ACK <external_id> <interaction_id> <duplicate 0|1>`` (flushed) only after
ingest returned, i.e. after the commit. ``DONE`` ends a complete run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from hub.clients.attachments import AttachmentStore
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import SystemClock
from hub.kernel.errors import StorageUnavailable
from hub.kernel.identities import identity
from hub.kernel.types import Channel, InboundMessage
from storage import Database

CLIENTS = 200


def sender_of(external_id: str) -> int:
    return 100_000 + int(external_id.rsplit("-", 1)[1]) % CLIENTS


async def main(url: str, ids: list[str], senders: int) -> None:
    db = Database(url)
    clock = SystemClock()
    with tempfile.TemporaryDirectory() as files:
        ingestor = Ingestor(
            db, clock, AttachmentStore(files, 10**6), staff_channel="telegram", window_ms=2.0
        )
        await ingestor.start()
        queue: asyncio.Queue[str] = asyncio.Queue()
        for external_id in ids:
            queue.put_nowait(external_id)

        async def sender() -> None:
            while not queue.empty():
                external_id = queue.get_nowait()
                message = InboundMessage(
                    Channel.TELEGRAM,
                    "bot",
                    external_id,
                    (identity("telegram", sender_of(external_id)),),
                    clock.now(),
                    text=f"message {external_id}",
                )
                for attempt in range(5):
                    try:
                        result = await ingestor(message)
                        break
                    except StorageUnavailable:
                        # what an upstream does: deliver again later
                        if attempt == 4:
                            raise
                        await asyncio.sleep(0.1 * (attempt + 1))
                sys.stdout.write(
                    f"ACK {external_id} {result.interaction_id} {int(result.duplicate)}\n"
                )
                sys.stdout.flush()

        try:
            await asyncio.gather(*(sender() for _ in range(senders)))
        finally:
            await ingestor.stop()
            await db.dispose()
    sys.stdout.write("DONE\n")
    sys.stdout.flush()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--ids-file", required=True, type=Path)
    parser.add_argument("--senders", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.ids_file.read_text().split(), args.senders))
