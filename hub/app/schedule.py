"""The table of the hub's scheduled jobs: what runs, how often, and which configs run it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from hub.config import Config


class Rounds(Protocol):
    """The jobs themselves: one round each (:class:`hub.app.run.Hub` has them)."""

    async def report_queue(self) -> None: ...

    async def scan_reminders(self) -> None: ...

    async def give_out(self) -> None: ...

    async def lapse(self) -> None: ...

    async def run_campaigns(self) -> None: ...

    async def index_log(self) -> None: ...

    async def escalate(self) -> None: ...

    async def forget_private(self) -> None: ...

    async def retain(self) -> None: ...

    async def close_silent(self) -> None: ...

    async def follow_settings(self) -> None: ...


def _always(config: Config, dialect: str) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Every:
    """One scheduled job: its id, its round (a coroutine function: APScheduler
    runs anything else in a thread), its interval in seconds, whether
    a config (and the database's dialect) runs it, and whether its first round
    runs at start rather than one interval later."""

    id: str
    run: Callable[[Rounds], Callable[[], Awaitable[None]]]
    seconds: Callable[[Config], float]
    when: Callable[[Config, str], bool] = _always
    at_start: bool = False


SETTINGS_POLL_S = 1.0  # how often an instance reads the settings' version (one row)

SCHEDULE: tuple[Every, ...] = (
    # Settings changed in the console or on another instance: one row read a round.
    Every("settings", lambda r: r.follow_settings, lambda _: SETTINGS_POLL_S),
    Every("queue-stats", lambda r: r.report_queue, lambda _: 60),
    Every(
        "follow-ups",
        lambda r: r.scan_reminders,
        lambda c: c.reminders.scan_every_s,
        when=lambda c, _: c.reminders.follow_up_days > 0 or bool(c.reminders.stages),
        at_start=True,
    ),
    # Waiting requests go out as soon as somebody can take them.
    Every("give-out", lambda r: r.give_out, lambda _: 5),
    Every(
        "lapse",
        lambda r: r.lapse,
        lambda _: 3600,
        when=lambda c, _: bool(c.stages.lapse_after_days),
        at_start=True,
    ),
    Every("campaigns", lambda r: r.run_campaigns, lambda c: c.campaigns.scan_every_s),
    # The search indexes fed behind ingest: SQLite's FTS5 tables; on PostgreSQL, which
    # keeps its other indexes itself, the table of Telegram usernames.
    Every("search-index", lambda r: r.index_log, lambda _: 2),
    Every("sla", lambda r: r.escalate, lambda _: 5, when=lambda c, _: bool(c.sla.policies)),
    Every("forget-private", lambda r: r.forget_private, lambda _: 3600, at_start=True),
    Every(
        "retention",
        lambda r: r.retain,
        lambda c: c.privacy.check_every_s,
        when=lambda c, _: c.privacy.keep_days is not None,
        at_start=True,
    ),
    # Requests waiting on the client close themselves after days of silence.
    Every(
        "waiting",
        lambda r: r.close_silent,
        lambda c: c.waiting.check_every_s,
        when=lambda c, _: c.waiting.close_after_days > 0,
        at_start=True,
    ),
)


class Scheduler(AsyncIOScheduler):  # type: ignore[misc]  # APScheduler 3 has no types
    """APScheduler's, which also knows the rounds under way and stops only once
    they have: a round cut off mid-statement and left behind keeps its database
    connection's thread alive, and the process never exits."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.under_way: set[asyncio.Task[Any]] = set()

    def add_round(self, job: Every, rounds: Rounds, config: Config, now: datetime) -> None:
        """Schedule ``job``'s round, its first run now when it runs at start."""
        run = job.run(rounds)
        under_way = self.under_way

        async def round_() -> None:
            task = asyncio.current_task()
            assert task is not None
            under_way.add(task)
            try:
                await run()
            finally:
                under_way.discard(task)

        first: dict[str, Any] = {"next_run_time": now} if job.at_start else {}
        self.add_job(
            round_, "interval", seconds=job.seconds(config), id=job.id, name=job.id, **first
        )

    async def stop(self, grace: float = 10.0) -> None:
        """No more rounds; those under way cancelled and waited for (``grace`` seconds at most)."""
        self.shutdown(wait=False)  # cancels the rounds under way
        if self.under_way:
            await asyncio.wait(set(self.under_way), timeout=grace)


def scheduler(rounds: Rounds, config: Config, *, dialect: str, now: datetime) -> Scheduler:
    """A scheduler (not started) with every job of :data:`SCHEDULE` this config runs."""
    scheduler = Scheduler(timezone=config.hub.timezone)
    for job in SCHEDULE:
        if job.when(config, dialect):
            scheduler.add_round(job, rounds, config, now)
    return scheduler
