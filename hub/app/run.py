"""The composition root of ``hub run``: the :class:`Hub`, whose one lifespan opens
storage, the scheduler, ingest, the dispatcher, reminders, the admin API and the
channels (their listening servers sharing one connection table), and closes them
in reverse; and the scheduled jobs' rounds."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, NamedTuple

from hub.admin.api import AdminServer, create_app
from hub.admin.metrics import Metrics, Sources
from hub.admin.settings import add_routes as add_settings_routes
from hub.admin.webhooks import Parking
from hub.admin.webhooks import add_routes as add_webhook_routes
from hub.app import datalock, overrides, reload, schedule
from hub.app.reload import ReloadResult
from hub.app.wiring import build_channels, build_ingestor, console_mail, edge_limits, reporter
from hub.campaigns.campaigns import Campaigns
from hub.campaigns.campaigns import build as build_campaigns
from hub.clients.attachments import AttachmentStore
from hub.clients.book import ClientBook
from hub.clients.privacy import Privacy
from hub.clients.stage_rules import compile_stage_rules
from hub.config import Config, split_listen
from hub.console.app import ConsoleContext, ConsoleServer
from hub.console.app import create_app as create_console
from hub.console.auth import Links
from hub.console.live import Live
from hub.delivery import webhooks as outgoing
from hub.delivery.dispatcher import Dispatcher
from hub.desk import csat
from hub.desk.desk import Desk
from hub.ingest.ingestor import Ingestor
from hub.jobs.deadlines import Escalator
from hub.jobs.reminders import ReminderLoop, scan
from hub.jobs.silence import Silence, close_silent
from hub.jobs.waiting import Assigner
from hub.kernel import loggers
from hub.kernel.clock import Clock, SystemClock
from hub.kernel.edges import Edges, raise_fd_limit
from hub.kernel.ports import ChannelPort
from storage import Database, terms
from storage import desk as desk_q
from storage import managers as managers_q
from storage import search as full_text
from storage.migrate import upgrade

if TYPE_CHECKING:
    from hub.app.schedule import Scheduler

# A reply to the bot's private message about a client answers them this long.
PRIVATE_KEPT = timedelta(days=90)

log = loggers.core


class _Parts(NamedTuple):
    db: Database
    files: AttachmentStore
    staff_channel: str | None


class Hub:
    """The running hub; ``ready`` turns true once every enabled channel listens."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        channels: dict[str, ChannelPort] | None = None,
        config_path: str | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path  # read again by a reload
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
        self.edges: Edges | None = None
        self.desk: Desk | None = None
        self.webhooks: outgoing.WebhookChannel | None = None
        self.scheduler: Scheduler | None = None
        self.console_ctx: ConsoleContext | None = None
        self.console: ConsoleServer | None = None
        self.settings: overrides.Follower | None = None  # set over the file in the console
        self._reloading = asyncio.Lock()
        self._reloads: set[asyncio.Task[ReloadResult]] = set()

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[Hub]:
        """Open storage, the scheduler, ingest, the dispatcher, reminders, the
        admin API and the channels, in this order; close them in reverse."""
        async with AsyncExitStack() as stack:
            stack.enter_context(datalock.hold(self.config))  # a restore refuses meanwhile
            self._open_edges(stack)
            parts = self._build(stack)
            manager_ids = await self._open_storage(parts.db)
            self._open_scheduler(stack, parts.db)
            ingestor = await self._open_ingest(stack, parts, manager_ids)
            await self._open_dispatcher(stack)
            await self._open_reminders(stack, parts)
            self.settings = await overrides.open_settings(self)
            if self.console_ctx is not None:
                self.console_ctx.settings = self.settings.settings
            await self._open_admin(stack, parts.db, ingestor)
            await self._open_console(stack)
            await self._open_channels(stack, ingestor)
            self.ready = True
            loggers.event(log, "hub.ready", channels=",".join(self.channels) or "none")
            try:
                yield self
            finally:
                async with self._reloading:  # a reload under way finishes first
                    self.ready = False
                loggers.event(log, "hub.stopping")

    def _build(self, stack: AsyncExitStack) -> _Parts:
        """The database (disposed last), the desk, campaigns and the channels, not started."""
        config = self.config
        db = self.db = Database(config.storage.url)
        stack.push_async_callback(db.dispose)
        files = AttachmentStore(config.storage.attachments_dir, config.storage.max_attachment_bytes)
        telegram = config.telegram.enabled or "telegram" in (self._given_channels or {})
        staff_channel = "telegram" if telegram else None
        desk = self.desk = Desk(
            db,
            self.clock,
            files,
            language=config.hub.language,
            timezone=config.hub.timezone,
            hours=config.hub.hours,
            region=config.hub.default_region,
            staff_channel=staff_channel,
            templates=config.desk.templates,
        )
        desk.csat = csat.build(config, db, self.clock, staff_channel=staff_channel)
        desk.stage_rules = compile_stage_rules(config)
        campaigns = self.campaigns = build_campaigns(
            config, db, self.clock, staff_channel=staff_channel, on_queued=self._wake
        )
        console = self.console_ctx = ConsoleContext(
            db,
            lambda: self.config,
            self.clock,
            desk=desk,
            campaigns=campaigns,
            send_mail=console_mail(config, self.clock),
            reload=self.reload_file,
        )
        links = Links(console) if config.console.listen else None
        self.channels = (
            build_channels(
                config, desk, self.clock, campaigns=campaigns, edges=self.edges, console=links
            )
            if self._given_channels is None
            else self._given_channels
        )
        desk.sending = frozenset(self.channels)
        if desk.csat is not None:
            desk.csat.sending = desk.sending
        return _Parts(db, files, staff_channel)

    def _open_edges(self, stack: AsyncExitStack) -> None:
        """The one connection table of every listening server, below the fd limit
        (raised first toward the hard limit) less the reserve."""
        soft = raise_fd_limit()
        limits = edge_limits(self.config)
        edges = self.edges = Edges(limits, soft_limit=soft)
        stack.callback(edges.close)
        stack.callback(edges.watch(asyncio.get_running_loop()))
        level = logging.WARNING if limits.connections > edges.capacity else logging.INFO
        loggers.event(
            log,
            "edges.ready",
            level,
            fd_limit=soft,
            connections=edges.capacity,
            asked=limits.connections or "-",
            per_address=limits.per_address,
            header_timeout_s=limits.header_timeout,
            body_timeout_s=limits.body_timeout,
        )

    async def _open_storage(self, db: Database) -> dict[str, int]:
        """The schema migrated and the managers synced from the config: their ids by name."""
        applied = await upgrade(db)
        loggers.event(
            log,
            "storage.ready",
            url=loggers.redact(self.config.storage.url),
            migrations=",".join(applied) or "none",
        )
        async with db.write() as conn:
            await managers_q.sync(conn, reload.manager_rows(self.config), self.clock.now())
            await outgoing.sync(conn, self.config.webhooks)
            return await managers_q.ids_by_name(conn)

    def _open_scheduler(self, stack: AsyncExitStack, db: Database) -> None:
        scheduler = schedule.scheduler(
            self, self.config, dialect=db.engine.dialect.name, now=self.clock.now()
        )
        scheduler.start()
        stack.push_async_callback(scheduler.stop)
        self.scheduler = scheduler

    async def _open_ingest(
        self, stack: AsyncExitStack, parts: _Parts, manager_ids: dict[str, int]
    ) -> Ingestor:
        """The ingest writer, started; the dispatcher it wakes and the assigner
        and escalator that follow its rules and policies, built."""
        config, db = self.config, parts.db
        dispatcher = self.dispatcher = Dispatcher(
            db,
            self.clock,
            self._sending(stack),
            config.dispatcher,
            staff_channel=parts.staff_channel,
        )
        ingestor = self.ingestor = build_ingestor(
            config,
            db,
            self.clock,
            parts.files,
            manager_ids,
            staff_channel=parts.staff_channel,
            on_commit=dispatcher.wake,
        )
        await ingestor.start()
        stack.push_async_callback(ingestor.stop)
        assigner = self.assigner = Assigner(
            db,
            self.clock,
            ingestor.rules,
            staff_channel=parts.staff_channel,
            accept_timeout=timedelta(minutes=config.routing.accept_timeout_minutes),
            timezone=config.hub.timezone,
            holidays=frozenset(config.routing.holidays),
            last_given=ingestor.last_given,
        )
        if ingestor.policies:
            self.escalator = Escalator(
                db,
                self.clock,
                ingestor.policies,
                assigner,
                staff_channel=parts.staff_channel,
                language=config.hub.language,
                timezone=config.hub.timezone,
            )
        return ingestor

    def _sending(self, stack: AsyncExitStack) -> dict[str, ChannelPort]:
        """What the dispatcher sends through: the channels, and the webhooks when the
        config has any (a reload may add them); their connections closed last."""
        webhooks = self.webhooks = outgoing.WebhookChannel(self.config.webhooks, self.clock)
        stack.push_async_callback(webhooks.stop)
        sending = dict(self.channels)
        if self.config.webhooks:
            sending[outgoing.CHANNEL] = webhooks
        return sending

    async def _open_dispatcher(self, stack: AsyncExitStack) -> None:
        assert self.dispatcher is not None
        await self.dispatcher.start()
        stack.push_async_callback(self.dispatcher.stop)

    async def _open_reminders(self, stack: AsyncExitStack, parts: _Parts) -> None:
        """Fires what fell due while the hub was down at once, then each on time."""
        settings = self.config.reminders
        reminders = self.reminders = ReminderLoop(
            parts.db,
            self.clock,
            staff_channel=parts.staff_channel,
            language=self.config.hub.language,
            max_sleep=settings.max_sleep_s,
            batch=settings.batch,
            on_fired=lambda _: self._wake(),
        )
        await reminders.start()
        stack.push_async_callback(reminders.stop)

    async def _open_admin(self, stack: AsyncExitStack, db: Database, ingestor: Ingestor) -> None:
        """The admin API before the channels: /healthz answers 503 until every channel listens."""
        config, dispatcher = self.config, self.dispatcher
        assert dispatcher is not None
        metrics = Metrics(
            db,
            self.clock,
            Sources(
                ingested=lambda: ingestor.ingested,
                sent=lambda: dispatcher.sent,
                failed=lambda: dispatcher.failed,
                ready=lambda: self.ready,
                spool=self._spool_counts(),
            ),
        )
        app = create_app(
            db,
            config.admin.token.get_secret_value(),
            lambda: self.ready,
            default_region=config.hub.default_region,
            reporter=reporter(config, db, self.clock),
            campaigns=self.campaigns,
            metrics=metrics,
            csat=self.desk.csat if self.desk is not None else None,
            stage_rules=lambda: ingestor.stage_rules,
        )
        reload.add_route(app, self.reload_file)
        if self.settings is not None:
            add_settings_routes(app, self.settings.settings)
        add_webhook_routes(app, Parking(db, self.clock, wake=self._wake))
        host, port = split_listen(config.admin.listen)
        admin = self.admin = AdminServer(app, edges=self.edges)
        await admin.start(host, port)
        stack.push_async_callback(admin.stop)
        loggers.event(log, "admin.listening", address=f"{host}:{admin.port}")

    async def _open_console(self, stack: AsyncExitStack) -> None:
        """The web console at ``console.listen``, when set; its live feed's streams
        end before its server stops."""
        ctx, listen = self.console_ctx, self.config.console.listen
        if ctx is None or listen is None:
            return
        await ctx.load_key()
        live = ctx.live = Live(ctx.db, self.config.console.live_poll_s)
        server = self.console = ConsoleServer(create_console(ctx))
        await server.start(listen, edges=self.edges)
        stack.push_async_callback(server.stop)
        await live.start()
        stack.push_async_callback(live.stop)
        loggers.event(log, "console.listening", address=f"{split_listen(listen)[0]}:{server.port}")

    async def _open_channels(self, stack: AsyncExitStack, ingestor: Ingestor) -> None:
        for name, channel in self.channels.items():
            await channel.start(ingestor)
            stack.push_async_callback(channel.stop)
            loggers.event(log, "channel.started", channel=name)

    def _spool_counts(self) -> Callable[[], Awaitable[tuple[int, int]]] | None:
        """The mail spool's counts for the metrics, when received mail is spooled."""
        offload = getattr(self.channels.get("email"), "offload", None)
        spool = getattr(offload, "spool", None)
        return spool.counts if spool is not None else None

    async def reload(self, new: Config, *, by: str = "cli") -> ReloadResult:
        """Take what may change of ``new`` now (managers, rules, SLA policies, stages,
        texts, forms); name the keys that wait for a restart. One at a time."""
        async with self._reloading:
            if not self.ready:
                result = ReloadResult(problems=("the hub is starting or stopping",))
            else:
                result = await reload.apply(self, new, by=by)
        reload.said(result, by)
        return result

    async def reload_file(self, by: str = "signal") -> ReloadResult:
        """The config file the hub started from, read again (the settings over it)
        and reloaded."""
        if self.settings is not None:
            return await self.settings.reload_file(by)
        new = await reload.read_file(self.config_path)
        if isinstance(new, ReloadResult):
            reload.said(new, by)
            return new
        return await self.reload(new, by=by)

    def reload_soon(self) -> None:
        """SIGHUP: reload the config file in the background."""
        task = asyncio.get_running_loop().create_task(self.reload_file(), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def scan_reminders(self) -> None:
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

    async def follow_settings(self) -> None:
        """Take the settings changed since the last round (the console, another
        instance, ``hub settings``)."""
        follower = self.settings
        if follower is not None:

            async def follow() -> None:
                await follower.follow()

            await self._job("settings", follow)

    async def escalate(self) -> None:
        if self.escalator is not None:
            await self._job("sla", self.escalator.run, wake=True)

    async def index_log(self) -> None:
        """Index behind ingest: on SQLite (FTS5) the log's words, and the clients'
        addresses, phones, names and usernames for substring search; on PostgreSQL
        the usernames (its GIN indexes keep the rest)."""
        db = self.db
        if db is None:
            return

        async def index() -> int:
            async with db.read() as conn:
                log_behind, terms_behind = await full_text.behind(conn), await terms.behind(conn)
            done = 0
            if log_behind:
                async with db.write() as conn:
                    done += await full_text.index_new(conn)
            if terms_behind:  # a transaction of its own: the write lock held briefly
                async with db.write() as conn:
                    done += await terms.index_new(conn)
            return done

        await self._job("search_index", index)

    def _wake(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def run_campaigns(self) -> None:
        if self.campaigns is not None:
            await self._job("campaigns", self.campaigns.run_once)

    async def lapse(self) -> None:
        """The stage rule: no contact for ``stages.lapse_after_days`` days → lapsed."""
        days = self.config.stages.lapse_after_days
        if self.db is not None:
            book = ClientBook(self.db, self.clock)
            zone = self.config.hub.timezone
            await self._job("lapse", lambda: book.lapse(days, timezone=zone))

    async def forget_private(self) -> None:
        """The map of the bot's private messages to clients keeps ``PRIVATE_KEPT``."""
        db = self.db
        if db is None:
            return

        async def forget() -> int:
            async with db.write() as conn:
                return await desk_q.forget_private(conn, self.clock.now() - PRIVATE_KEPT)

        await self._job("forget_private", forget)

    async def retain(self) -> None:
        """Retention: message bodies and files older than ``privacy.keep_days`` erased."""
        days, db = self.config.privacy.keep_days, self.db
        if days is not None and db is not None:
            storage = self.config.storage
            files = AttachmentStore(storage.attachments_dir, storage.max_attachment_bytes)
            await self._job("retention", lambda: Privacy(db, self.clock, files).retain(days))

    async def close_silent(self) -> None:
        """Requests waiting on the client closed after ``waiting.close_after_days``."""
        db, waiting = self.db, self.config.waiting
        if db is not None:
            staff = self.desk.staff_channel if self.desk is not None else None
            language = self.config.hub.language
            silence = Silence(waiting.close_after_days, waiting.note, staff, language)
            await self._job("waiting", lambda: close_silent(db, self.clock, silence), wake=True)

    async def give_out(self) -> None:
        if self.assigner is not None:
            await self._job("give_out", self.assigner.give_out, wake=True)

    async def report_queue(self) -> None:
        if self.db is None:
            return
        async with self.db.read() as conn:
            stats = await managers_q.queue_stats(conn)
        oldest = (
            f"{(self.clock.now() - stats.oldest_pending).total_seconds():.0f}s"
            if stats.oldest_pending
            else "-"
        )
        # An empty queue is a routine round: worth a line only when debugging.
        level = logging.INFO if stats.pending or stats.failed else logging.DEBUG
        loggers.event(
            log, "outbox.queue", level, pending=stats.pending, oldest=oldest, failed=stats.failed
        )


async def run_forever(
    config: Config, on_ready: Callable[[Hub], None] | None = None, path: str | None = None
) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly; ``on_ready`` once ready;
    SIGHUP reloads the config file at ``path``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    hub = Hub(config, config_path=path)
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, hub.reload_soon)
    token = config.admin.token.get_secret_value()
    if token.startswith("change-me") or len(token) < 16:
        loggers.event(
            log, "admin.weak_token", level=30, hint="set HUB_ADMIN_TOKEN to a long random value"
        )
    async with hub.lifespan():
        if on_ready is not None:
            on_ready(hub)
        # What start-up built lives as long as the process: spare it the
        # collector's full passes, which otherwise grow with every object kept.
        gc.collect()
        gc.freeze()
        await stop.wait()
    loggers.event(log, "hub.stopped")
