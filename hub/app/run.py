"""The composition root: one lifespan that opens storage, scheduler, ingest,
dispatcher, channels and the admin API, and closes them in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from hub.admin.api import AdminServer, create_app
from hub.admin.metrics import Metrics, Sources
from hub.app.wiring import build_channels, build_ingestor, reporter
from hub.campaigns.campaigns import Campaigns
from hub.campaigns.campaigns import build as build_campaigns
from hub.clients.attachments import AttachmentStore
from hub.clients.book import ClientBook
from hub.config import Config, split_listen
from hub.delivery.dispatcher import Dispatcher
from hub.desk.desk import Desk
from hub.ingest.ingestor import Ingestor
from hub.jobs.deadlines import Escalator
from hub.jobs.reminders import ReminderLoop, scan
from hub.jobs.waiting import Assigner
from hub.kernel import loggers
from hub.kernel.clock import Clock, SystemClock
from hub.kernel.ports import ChannelPort
from storage import Database
from storage import managers as managers_q
from storage import search as full_text
from storage.migrate import upgrade

log = loggers.core


class Hub:
    """The running hub; ``ready`` turns true once every enabled channel listens."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        channels: dict[str, ChannelPort] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self._given_channels = channels
        self.channels: dict[str, ChannelPort] = {}
        self.ready = False
        self.db: Database | None = None
        self.ingestor: Ingestor | None = None
        self.dispatcher: Dispatcher | None = None
        self.reminders: ReminderLoop | None = None
        self.assigner: Assigner | None = None
        self.escalator: Escalator | None = None
        self.admin: AdminServer | None = None
        self.campaigns: Campaigns | None = None

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[Hub]:
        config = self.config
        async with AsyncExitStack() as stack:
            db = self.db = Database(config.storage.url)
            stack.push_async_callback(db.dispose)
            files = AttachmentStore(
                config.storage.attachments_dir, config.storage.max_attachment_bytes
            )
            telegram = config.telegram.enabled or "telegram" in (self._given_channels or {})
            staff_channel = "telegram" if telegram else None
            desk = Desk(
                db,
                self.clock,
                files,
                language=config.hub.language,
                timezone=config.hub.timezone,
                region=config.hub.default_region,
                staff_channel=staff_channel,
            )
            campaigns = self.campaigns = build_campaigns(
                config, db, self.clock, staff_channel=staff_channel, on_queued=self._wake
            )
            self.channels = (
                build_channels(config, desk, self.clock, campaigns=campaigns)
                if self._given_channels is None
                else self._given_channels
            )
            applied = await upgrade(db)
            loggers.event(
                log,
                "storage.ready",
                url=loggers.redact(config.storage.url),
                migrations=",".join(applied) or "none",
            )
            async with db.write() as conn:
                await managers_q.sync(
                    conn,
                    [
                        {
                            "name": m.name,
                            "telegram_id": m.telegram_id,
                            "email": m.email,
                            "role": m.role,
                            "hours": m.hours,
                            "timezone": m.timezone,
                            "capacity": m.capacity,
                            "attrs": {
                                "skills": m.skills,
                                "team": m.team,
                                "language": m.language,
                                "holidays": [d.isoformat() for d in m.holidays],
                            },
                        }
                        for m in config.managers
                    ],
                    self.clock.now(),
                )
                manager_ids = await managers_q.ids_by_name(conn)

            scheduler = AsyncIOScheduler(timezone=config.hub.timezone)
            scheduler.add_job(self._report_queue, "interval", seconds=60, id="queue-stats")
            if config.reminders.follow_up_days > 0 or config.reminders.stages:
                scheduler.add_job(
                    self._scan_reminders,
                    "interval",
                    seconds=config.reminders.scan_every_s,
                    id="follow-ups",
                    next_run_time=self.clock.now(),
                )
            scheduler.start()
            stack.callback(scheduler.shutdown, wait=False)

            desk.sending = frozenset(self.channels)
            dispatcher = self.dispatcher = Dispatcher(
                db, self.clock, self.channels, config.dispatcher, staff_channel=staff_channel
            )
            ingestor = self.ingestor = build_ingestor(
                config,
                db,
                self.clock,
                files,
                manager_ids,
                staff_channel=staff_channel,
                on_commit=dispatcher.wake,
            )
            await ingestor.start()
            stack.push_async_callback(ingestor.stop)
            # Waiting requests go out as soon as somebody can take them.
            self.assigner = Assigner(
                db,
                self.clock,
                ingestor.rules,
                staff_channel=staff_channel,
                accept_timeout=timedelta(minutes=config.routing.accept_timeout_minutes),
                timezone=config.hub.timezone,
                holidays=frozenset(config.routing.holidays),
                last_given=ingestor.last_given,
            )
            scheduler.add_job(self._give_out, "interval", seconds=5, id="give-out")
            if config.stages.lapse_after_days:
                scheduler.add_job(
                    self._lapse,
                    "interval",
                    hours=1,
                    id="lapse",
                    args=[config.stages.lapse_after_days],
                    next_run_time=self.clock.now(),
                )
            scheduler.add_job(
                self._run_campaigns,
                "interval",
                seconds=config.campaigns.scan_every_s,
                id="campaigns",
            )
            if db.engine.dialect.name == "sqlite":  # PostgreSQL's index keeps itself
                scheduler.add_job(self._index_log, "interval", seconds=2, id="search-index")
            if ingestor.policies:
                self.escalator = Escalator(
                    db,
                    self.clock,
                    ingestor.policies,
                    self.assigner,
                    staff_channel=staff_channel,
                    language=config.hub.language,
                    timezone=config.hub.timezone,
                )
                scheduler.add_job(self._escalate, "interval", seconds=5, id="sla")
            await dispatcher.start()
            stack.push_async_callback(dispatcher.stop)
            # Fires what fell due while the hub was down at once, then each on time.
            reminders = self.reminders = ReminderLoop(
                db,
                self.clock,
                staff_channel=staff_channel,
                language=config.hub.language,
                max_sleep=config.reminders.max_sleep_s,
                batch=config.reminders.batch,
                on_fired=lambda _: dispatcher.wake(),
            )
            await reminders.start()
            stack.push_async_callback(reminders.stop)

            # The admin API first: /healthz answers 503 until every channel listens.
            host, port = split_listen(config.admin.listen)
            admin = self.admin = AdminServer(
                create_app(
                    db,
                    config.admin.token.get_secret_value(),
                    lambda: self.ready,
                    default_region=config.hub.default_region,
                    reporter=reporter(config, db, self.clock),
                    campaigns=campaigns,
                    metrics=Metrics(
                        db,
                        self.clock,
                        Sources(
                            ingested=lambda: ingestor.ingested,
                            sent=lambda: dispatcher.sent,
                            failed=lambda: dispatcher.failed,
                            ready=lambda: self.ready,
                            spool=self._spool_counts(),
                        ),
                    ),
                )
            )
            await admin.start(host, port)
            stack.push_async_callback(admin.stop)
            loggers.event(log, "admin.listening", address=f"{host}:{admin.port}")

            for name, channel in self.channels.items():
                await channel.start(ingestor)
                stack.push_async_callback(channel.stop)
                loggers.event(log, "channel.started", channel=name)

            self.ready = True
            loggers.event(log, "hub.ready", channels=",".join(self.channels) or "none")
            try:
                yield self
            finally:
                self.ready = False
                loggers.event(log, "hub.stopping")

    def _spool_counts(self) -> Callable[[], Awaitable[tuple[int, int]]] | None:
        """The mail spool's counts for the metrics, when received mail is spooled."""
        offload = getattr(self.channels.get("email"), "offload", None)
        spool = getattr(offload, "spool", None)
        return spool.counts if spool is not None else None

    async def _scan_reminders(self) -> None:
        if self.db is None:
            return
        settings = self.config.reminders
        try:
            created = await scan(
                self.db,
                self.clock,
                follow_up_days=settings.follow_up_days,
                stages=[(s.stage, s.every_days) for s in settings.stages],
            )
        except Exception as exc:  # the database may be down: the next run retries
            loggers.event(log, "follow_ups.failed", 30, error=loggers.redact(str(exc)[:200]))
            return
        if created and self.reminders is not None:
            self.reminders.wake()

    async def _job(
        self, name: str, work: Callable[[], Awaitable[int | None]], *, wake: bool = False
    ) -> None:
        """One run of a periodic job. A failure (the database down) is logged and
        the next run tries again; ``wake``: what it queued goes out at once."""
        try:
            done = await work()
        except Exception as exc:
            loggers.event(log, f"{name}.failed", 30, error=loggers.redact(str(exc)[:200]))
            return
        if wake and done and self.dispatcher is not None:
            self.dispatcher.wake()

    async def _escalate(self) -> None:
        if self.escalator is not None:
            await self._job("sla", self.escalator.run, wake=True)

    async def _index_log(self) -> None:
        """Full-text index the log behind ingest (SQLite's FTS5)."""
        db = self.db
        if db is None:
            return

        async def index() -> int:
            async with db.read() as conn:
                if not await full_text.behind(conn):
                    return 0
            async with db.write() as conn:
                return await full_text.index_new(conn)

        await self._job("search_index", index)

    def _wake(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def _run_campaigns(self) -> None:
        if self.campaigns is not None:
            await self._job("campaigns", self.campaigns.run_once)

    async def _lapse(self, days: int) -> None:
        """The stage rule: no contact for ``days`` days → lapsed."""
        if self.db is not None:
            book = ClientBook(self.db, self.clock)
            await self._job("lapse", lambda: book.lapse(days))

    async def _give_out(self) -> None:
        if self.assigner is not None:
            await self._job("give_out", self.assigner.give_out, wake=True)

    async def _report_queue(self) -> None:
        if self.db is None:
            return
        async with self.db.read() as conn:
            stats = await managers_q.queue_stats(conn)
        oldest = (
            f"{(self.clock.now() - stats.oldest_pending).total_seconds():.0f}s"
            if stats.oldest_pending
            else "-"
        )
        loggers.event(
            log, "outbox.queue", pending=stats.pending, oldest=oldest, failed=stats.failed
        )


async def run_forever(config: Config) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    token = config.admin.token.get_secret_value()
    if token.startswith("change-me") or len(token) < 16:
        loggers.event(
            log, "admin.weak_token", level=30, hint="set HUB_ADMIN_TOKEN to a long random value"
        )
    async with Hub(config).lifespan():
        # What start-up built lives as long as the process: spare it the
        # collector's full passes, which otherwise grow with every object kept.
        gc.collect()
        gc.freeze()
        await stop.wait()
    loggers.event(log, "hub.stopped")
