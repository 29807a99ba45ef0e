"""Prometheus metrics of one hub instance (text exposition format, ``GET /metrics``).

Counters are this process's since it started (Prometheus' ``rate()`` copes with
restarts); gauges are read from the database at each scrape, so every instance
reports the same queue. Built on prometheus_client: it writes the exposition
format (escaping, ``# HELP``/``# TYPE``, content type) so the hub does not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from hub.kernel import loggers
from hub.kernel.clock import Clock
from storage import Database
from storage import metrics as q
from storage import webhooks as webhooks_q

log = loggers.admin

CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass
class Sources:
    """Where the counters live; each is read at scrape time."""

    ingested: Callable[[], Mapping[str, int]]  # new messages logged, by channel
    sent: Callable[[], int]
    failed: Callable[[], int]
    ready: Callable[[], bool]
    # the mail spool: (waiting to be logged, set aside); None without one
    spool: Callable[[], Awaitable[tuple[int, int]]] | None = None


class Metrics:
    def __init__(self, db: Database, clock: Clock, sources: Sources) -> None:
        self.db = db
        self.clock = clock
        self.sources = sources
        self._gauges: q.Gauges | None = None
        self._webhooks: dict[str, webhooks_q.Queued] = {}
        self._spool: tuple[int, int] | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    async def exposition(self) -> bytes:
        """The metrics as text; the database gauges are left out while it is down."""
        try:
            async with self.db.read() as conn:
                self._gauges = await q.gauges(conn)
                self._webhooks = await webhooks_q.counts(conn)
        except Exception as exc:
            loggers.event(log, "metrics.database_down", 30, error=type(exc).__name__)
            self._gauges = None
        self._spool = None
        if self.sources.spool is not None:
            try:
                self._spool = await self.sources.spool()
            except Exception as exc:
                loggers.event(log, "metrics.spool_unreadable", 30, error=type(exc).__name__)
        return generate_latest(self.registry)

    def collect(self) -> Iterable[Metric]:
        s = self.sources
        ingested = CounterMetricFamily(
            "hub_ingested", "New inbound messages committed to the log", labels=["channel"]
        )
        for channel, count in sorted(s.ingested().items()):
            ingested.add_metric([channel], count)
        yield ingested
        yield CounterMetricFamily(
            "hub_outbound_sent", "Outbound messages delivered", value=s.sent()
        )
        yield CounterMetricFamily(
            "hub_outbound_failed", "Outbound messages failed for good", value=s.failed()
        )
        yield GaugeMetricFamily("hub_ready", "1 once every channel listens", value=s.ready())
        if self._spool is not None:
            waiting, aside = self._spool
            yield GaugeMetricFamily(
                "hub_mail_spool_waiting", "Received mail kept, not yet logged", value=waiting
            )
            yield GaugeMetricFamily(
                "hub_mail_spool_set_aside",
                "Received mail that could not be logged, kept in the spool with the reason",
                value=aside,
            )
        g = self._gauges
        yield GaugeMetricFamily(
            "hub_database_up", "1 when the last scrape could read the database", value=g is not None
        )
        if g is None:
            return
        oldest = (
            max(0.0, (self.clock.now() - g.oldest_pending).total_seconds())
            if g.oldest_pending is not None
            else 0.0
        )
        yield GaugeMetricFamily(
            "hub_outbox_pending", "Outbound messages waiting for delivery", value=g.pending
        )
        yield GaugeMetricFamily(
            "hub_outbox_oldest_pending_seconds",
            "Age of the oldest undelivered outbound message (0: none)",
            value=oldest,
        )
        yield GaugeMetricFamily(
            "hub_deadlines_breached", "Open response deadlines already missed", value=g.breached
        )
        yield GaugeMetricFamily(
            "hub_reminders_pending", "Reminders not fired yet", value=g.reminders_pending
        )
        yield from self._webhook_gauges()

    def _webhook_gauges(self) -> Iterable[Metric]:
        pending = GaugeMetricFamily(
            "hub_webhook_pending", "Outgoing events waiting for delivery", labels=["webhook"]
        )
        parked = GaugeMetricFamily(
            "hub_webhook_parked",
            "Outgoing events that failed past their retries, kept for a replay",
            labels=["webhook"],
        )
        for name, queued in sorted(self._webhooks.items()):
            pending.add_metric([name], queued.pending)
            parked.add_metric([name], queued.parked)
        yield pending
        yield parked
