"""Kill -9 in the middle of ingest loses nothing acknowledged and duplicates nothing.

A child process (tests/crash_child.py) ingests 2,000 messages from 20 concurrent
senders through the real Ingestor and prints ``ACK`` for each after its commit.
The parent kills it with SIGKILL once about half are acknowledged, then runs a
second child with every message not acknowledged (the upstream's redelivery).
In the end every message is in the log exactly once, and every acknowledged one
with the interaction id the first child was given.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from storage import Database
from storage.models import Client, Conversation, Identity, Interaction, Manager, Outbox
from tests.crash_child import CLIENTS

CHILD = Path(__file__).with_name("crash_child.py")
ROOT = CHILD.parent.parent
MESSAGES = 2000
KILL_AFTER = 1000
REPEATED = 50
TIMEOUT_S = 120.0

pytestmark = pytest.mark.slow


class Child:
    """One child run: its acknowledgements as they arrive."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.acks: dict[str, tuple[int, bool]] = {}
        self.done = False

    @classmethod
    async def start(cls, url: str, ids: list[str], tmp_path: Path, name: str) -> Child:
        ids_file = tmp_path / f"{name}.ids"
        ids_file.write_text("\n".join(ids))
        with open(tmp_path / f"{name}.stderr", "wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(CHILD),
                "--url",
                url,
                "--ids-file",
                str(ids_file),
                "--senders",
                "20",
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        return cls(proc)

    async def read_until(self, acks: int | None) -> None:
        """Read lines until ``acks`` acknowledgements (None: until the end of output)."""
        assert self.proc.stdout is not None
        while acks is None or len(self.acks) < acks:
            line = (await self.proc.stdout.readline()).decode()
            if not line:
                return
            if line == "DONE\n":
                self.done = True
                continue
            tag, external_id, interaction_id, duplicate = line.split()
            assert tag == "ACK"
            assert external_id not in self.acks, f"acknowledged twice: {external_id}"
            self.acks[external_id] = (int(interaction_id), duplicate == "1")

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


async def _add_manager(url: str) -> None:
    db = Database(url)
    try:
        async with db.write() as conn:
            await conn.execute(
                insert(Manager).values(name="Olga", telegram_id=1001, created_at=datetime.now(UTC))
            )
    finally:
        await db.dispose()


async def _logged(url: str) -> Counter[str]:
    """How many inbound interactions each external id has."""
    db = Database(url)
    try:
        async with db.read() as conn:
            found = await conn.execute(
                select(Interaction.external_id).where(Interaction.direction == "in")
            )
            return Counter(str(e) for e in found.scalars())
    finally:
        await db.dispose()


async def test_sigkill_midway_loses_no_acknowledged_message_and_duplicates_none(
    db_url: str, tmp_path: Path
) -> None:
    await _add_manager(db_url)
    ids = [f"crash-{n:05d}" for n in range(MESSAGES)]
    children: list[Child] = []
    try:
        async with asyncio.timeout(TIMEOUT_S):
            first = await Child.start(db_url, ids, tmp_path, "first")
            children.append(first)
            await first.read_until(KILL_AFTER)
            first.proc.send_signal(signal.SIGKILL)
            await first.proc.wait()
            # what it printed before dying was acknowledged upstream too
            await first.read_until(None)
            assert first.proc.returncode == -signal.SIGKILL
            assert KILL_AFTER <= len(first.acks) < MESSAGES, (
                f"not killed midway: {(tmp_path / 'first.stderr').read_text()}"
            )
            assert not first.done

            # acknowledged means committed: all there before any redelivery
            after_crash = await _logged(db_url)
            unsaved = [i for i in first.acks if after_crash[i] != 1]
            assert unsaved == [], f"acknowledged but not in the log once: {unsaved[:10]}"

            redelivered = [i for i in ids if i not in first.acks]
            # upstreams also redeliver some acknowledged messages (a lost 200, a timeout)
            again = sorted(first.acks)[:REPEATED]
            second = await Child.start(db_url, redelivered + again, tmp_path, "second")
            children.append(second)
            await second.read_until(None)
            assert await second.proc.wait() == 0, (tmp_path / "second.stderr").read_text()
            assert second.done
    finally:
        for child in children:
            await child.kill()

    logged = await _logged(db_url)
    db = Database(db_url)
    try:
        async with db.read() as conn:
            interaction_of = dict(
                (
                    await conn.execute(
                        select(Interaction.external_id, Interaction.id).where(
                            Interaction.direction == "in"
                        )
                    )
                ).all()
            )
            mirrors = Counter(
                (
                    await conn.execute(select(Outbox.interaction_id).where(Outbox.kind == "mirror"))
                ).scalars()
            )
            clients = (await conn.execute(select(func.count()).select_from(Client))).scalar_one()
            identities = (
                await conn.execute(select(func.count()).select_from(Identity))
            ).scalar_one()
            conversations = (
                await conn.execute(select(func.count()).select_from(Conversation))
            ).scalar_one()
    finally:
        await db.dispose()

    duplicates = sum(n - 1 for n in logged.values())
    lost = [i for i in ids if i not in logged]
    committed_unacked = sum(1 for i in redelivered if second.acks[i][1])
    print(
        f"\ncrash test: sent={MESSAGES} acknowledged_before_kill={len(first.acks)} "
        f"redelivered={len(redelivered)} (committed unacknowledged={committed_unacked}, "
        f"plus {len(again)} acknowledged) "
        f"logged={sum(logged.values())} duplicates={duplicates} lost={len(lost)}"
    )

    assert [i for i in first.acks if logged[i] != 1] == []
    assert lost == []
    assert duplicates == 0
    assert set(logged) == set(ids)
    # an acknowledgement names the interaction that is in the log, before and after the crash
    for external_id, (interaction_id, _) in (first.acks | second.acks).items():
        assert interaction_of[external_id] == interaction_id
    assert set(second.acks) == set(redelivered) | set(again)
    # a redelivery of a committed message is recognized, not stored again
    assert all(not dup for _, dup in first.acks.values())
    assert all(second.acks[i] == (first.acks[i][0], True) for i in again)
    # the side effects of each message were committed with it, once
    assert set(mirrors) == set(interaction_of.values())
    assert max(mirrors.values()) == 1
    assert (clients, identities, conversations) == (CLIENTS, CLIENTS, CLIENTS)
