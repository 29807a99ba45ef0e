"""The hub's parts built from the config: the channels, the mail worker, the
ingest sink and the reporter, for both composition roots (``hub run`` and the
mail worker process)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NamedTuple

from hub.campaigns.campaigns import Campaigns
from hub.clients.attachments import AttachmentStore
from hub.clients.stage_rules import compile_stage_rules
from hub.config import Config
from hub.desk.desk import Desk
from hub.ingest import comments
from hub.ingest.cursors import DbCursorStore, DbMailboxLocks
from hub.ingest.ingestor import AutoReplies, Ingestor
from hub.ingest.rules import compile_policies, compile_rules
from hub.kernel.clock import Clock
from hub.kernel.edges import EdgeLimits, Edges
from hub.kernel.ports import ChannelPort, ConsoleLinks
from hub.kernel.types import OutboundMessage
from hub.reports.reporter import Reporter
from routing.hours import parse_hours
from storage import Database
from storage.db import in_memory

if TYPE_CHECKING:
    from channels.email.channel import Offload

MAIL_WORKER_MODULE = "hub.app.mail_worker"  # run as ``python -m`` by the email channel


class WorkerSetup(NamedTuple):
    """What the mail worker process is given first: the config, and the staff
    channel the desk has."""

    config: Config
    staff_channel: str | None


def edge_limits(config: Config) -> EdgeLimits:
    """``[edges]`` as the process's connection table takes it."""
    edges = config.edges
    return EdgeLimits(
        header_timeout=edges.header_timeout_s,
        body_timeout=edges.body_timeout_s,
        body_min_rate=edges.body_min_bytes_per_s,
        keepalive_timeout=edges.keepalive_timeout_s,
        connections=edges.connections,
        per_address=edges.connections_per_address,
        fd_reserve=edges.fd_reserve,
        exempt=tuple(edges.exempt_addresses),
    )


def build_channels(
    config: Config,
    desk: Desk,
    clock: Clock,
    *,
    campaigns: Campaigns | None = None,
    edges: Edges | None = None,
    console: ConsoleLinks | None = None,
) -> dict[str, ChannelPort]:
    """The enabled channels, their listening servers in ``edges`` (the process's
    connection table). The composition root is the one place in ``hub`` that
    knows the channel packages."""
    channels: dict[str, ChannelPort] = {}
    if config.telegram.enabled:
        channels["telegram"] = _telegram(config, desk, clock, campaigns, edges, console)
    if config.email.smtp.listen or config.email.outbound or config.email.imap:
        from channels.email.channel import EmailChannel

        channels["email"] = EmailChannel(
            config.email,
            max_attachment_bytes=config.storage.max_attachment_bytes,
            files=desk,
            clock=clock,
            cursors=DbCursorStore(desk.db, clock),
            locks=DbMailboxLocks(desk.db),
            offload=mail_worker(config, staff_channel=desk.staff_channel),
            edges=edges,
        )
    if config.webform.listen:
        from channels.webform import WebformChannel

        channels["webform"] = WebformChannel(
            config.webform,
            language=config.hub.language,
            default_region=config.hub.default_region,
            # a form's confirmation goes by email, so only when email can go out
            confirm_by_email=config.email.outbound is not None,
            clock=clock,
            edges=edges,
        )
    return channels


def _telegram(
    config: Config,
    desk: Desk,
    clock: Clock,
    campaigns: Campaigns | None,
    edges: Edges | None,
    console: ConsoleLinks | None,
) -> ChannelPort:
    """The Telegram channel with its staff side, one budget for both."""
    from channels.telegram import TelegramChannel
    from channels.telegram.staff import Pacer, StaffSide

    pacer = Pacer()  # one budget for the bot: staff chats and clients' chats
    staff = StaffSide(
        desk,
        config.telegram,
        language=config.hub.language,
        timezone=config.hub.timezone,
        clock=clock,
        reports=reporter(config, desk.db, clock),
        campaigns=campaigns,
        pacer=pacer,
        console=console,
    )
    return TelegramChannel(
        config.telegram,
        staff=staff,
        budget=pacer,
        files=desk,
        max_attachment_bytes=config.storage.max_attachment_bytes,
        default_region=config.hub.default_region,
        edges=edges,
        ratings=desk.csat,
    )


def mail_worker(config: Config, *, staff_channel: str | None = None) -> Offload | None:
    """The mail worker for received mail, when there is any to receive and the
    database is one a second process can open (not SQLite in memory)."""
    email = config.email
    if not email.worker or (email.smtp.listen is None and not email.imap):
        return None
    if in_memory(config.storage.url):
        return None
    from channels.email.worker import MailWorker

    return MailWorker(
        email.spool, module=MAIL_WORKER_MODULE, setup=WorkerSetup(config, staff_channel)
    )


def reporter(config: Config, db: Database, clock: Clock) -> Reporter:
    return Reporter(
        db,
        clock,
        timezone=config.hub.timezone,
        language=config.hub.language,
        reply_window_days=config.campaigns.reply_window_days,
    )


def build_ingestor(
    config: Config,
    db: Database,
    clock: Clock,
    files: AttachmentStore,
    manager_ids: dict[str, int],
    *,
    staff_channel: str | None,
    on_commit: Callable[[], None] | None = None,
) -> Ingestor:
    """The ingest sink as the config sets it up (the hub's and the mail worker's)."""
    return Ingestor(
        db,
        clock,
        files,
        staff_channel=staff_channel,
        timezone=config.hub.timezone,
        window_ms=config.storage.group_commit_ms,
        max_batch=config.storage.group_commit_max,
        on_commit=on_commit,
        auto_replies=auto_replies(config),
        rules=compile_rules(config, manager_ids),
        holidays=config.routing.holidays,
        policies=compile_policies(config, manager_ids),
        flood_per_minute=config.desk.flood_per_minute,
        language=config.hub.language,
        csat=comments.window(config),
        stage_rules=compile_stage_rules(config),
    )


def auto_replies(config: Config) -> AutoReplies:
    r = config.replies

    def texts(ru: str | None, en: str | None) -> dict[str, str]:
        return {lang: t for lang, t in (("ru", ru), ("en", en)) if t}

    return AutoReplies(
        greeting=texts(r.greeting_ru, r.greeting_en),
        out_of_hours=texts(r.out_of_hours_ru, r.out_of_hours_en),
        default_language=config.hub.language,
        hours=parse_hours(config.hub.hours) if config.hub.hours else None,
        timezone=config.hub.timezone,
    )


def console_mail(config: Config, clock: Clock) -> Callable[[str, str, str], Awaitable[None]] | None:
    """The console's sign-in links by email (to, subject, text), when email can go out."""
    outbound = config.email.outbound
    if outbound is None:
        return None
    from channels.email.sender import SmtpSender

    domain = outbound.from_.rpartition("@")[2].strip(">").strip() or "localhost"
    sender = SmtpSender(outbound, domain=domain, clock=clock, connections=1)

    async def send(to: str, subject: str, text: str) -> None:
        key = f"console-signin:{secrets.token_hex(8)}"
        message = OutboundMessage(0, "email", "console", to, "console.signin", text, key, subject)
        await sender.send(message, in_reply_to=None, references=[])

    return send
