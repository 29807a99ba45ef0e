"""Campaigns: scripted outreach to a segment, as messages or as call lists.

A campaign file (TOML or YAML, :class:`CampaignSpec`) names a segment, a script
(one text, or A/B variants) and a mode. ``start`` turns the segment into
targets once (one per client: the UNIQUE (campaign, client) key), then the
runner (:meth:`Campaigns.run_once`, a scheduler job) writes them into the
outbox in chunks, each chunk one transaction that claims its targets (``SKIP
LOCKED`` on PostgreSQL), logs an ``out`` interaction per client and writes its
outbox row keyed ``campaign:{campaign}:{client}``. The dispatcher sends at the
channel's limits. At most ``campaigns.window`` campaign messages wait in the
outbox at a time, so ``pause`` takes effect at once: it stops the runner and
holds what is waiting; ``start`` again releases it. A crash or a restart
leaves every target either pending (queued again) or queued with exactly one
outbox row: nobody gets the campaign twice, nobody is skipped.

``message`` mode: each client over the first reachable channel of the
campaign's ``channels`` (Telegram, then email); opted-out clients are skipped;
in the client's quiet hours a message waits until they end. Email carries a
signed unsubscribe link and ``List-Unsubscribe`` (RFC 8058).

``calls`` mode: a call task per client, given to the client's owner when the
owner takes calls, else to the manager with the fewest open tasks; delivered to
the manager's private chat with outcome buttons. Every outcome is logged on the
client; "call back later" sets a reminder.

Results come from the log: :func:`storage.campaigns.stats`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.campaigns import scripts
from hub.campaigns.spec import CampaignError, CampaignSpec, SegmentSpec, quiet_until
from hub.campaigns.status import OUTCOMES, PreviewItem, Status, render_status
from hub.campaigns.unsubscribe import Unsubscribe
from hub.config import CampaignsSection, Config
from hub.delivery.outbox import Outgoing
from hub.kernel import loggers
from hub.kernel.texts import text
from hub.kernel.types import MARKETERS, OVERSEERS, Delivery, Direction, ManagerRef
from storage import Database
from storage import campaigns as q
from storage import desk as desk_q
from storage import managers as managers_q
from storage import read as read_q
from storage.segments import Segment

log = logging.getLogger("hub.campaigns")


# What a chunk writes per target: (target id, the interaction to log, its outbox row).
_Send = tuple[int, dict[str, Any], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _CallStaff:
    """Whom call tasks go to: each manager's Telegram id and name, by manager id."""

    telegram_ids: dict[int, int]
    names: dict[int, str]


# -- the service ------------------------------------------------------------------------


class Campaigns:
    """Create, preview, start, pause and report campaigns; send them in chunks.

    ``staff_channel`` delivers call tasks and test sends to managers;
    ``on_queued`` is called after a commit that wrote to the outbox (the
    dispatcher's wake).
    """

    def __init__(
        self,
        db: Database,
        clock: Any,
        settings: CampaignsSection,
        *,
        timezone: str = "UTC",
        language: str = "ru",
        staff_channel: str | None = None,
        unsubscribe: Unsubscribe | None = None,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.tz = ZoneInfo(timezone)
        self.language = language
        self.staff_channel = staff_channel
        self.unsubscribe = unsubscribe
        self.on_queued = on_queued

    # -- definition ---------------------------------------------------------------

    async def create(self, spec: CampaignSpec, *, actor: str) -> int:
        now = self.clock.now()
        async with self.db.write() as conn:
            await self._segment(conn, spec.segment)  # the owners it names exist
            campaign_id = await q.create(
                conn,
                {
                    "name": spec.name,
                    "mode": spec.mode,
                    "status": "draft",
                    "spec": spec.model_dump(mode="json"),
                    "created_by": actor,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            await desk_q.audit(conn, self._audit(actor, "campaign.create", campaign_id, now))
        loggers.event(log, "campaign.created", campaign=campaign_id, mode=spec.mode, actor=actor)
        return campaign_id

    async def campaign(self, campaign_id: int) -> tuple[q.CampaignRow, CampaignSpec]:
        async with self.db.read() as conn:
            row = await q.get(conn, campaign_id)
        if row is None:
            raise CampaignError(f"no campaign {campaign_id}")
        return row, CampaignSpec.model_validate(row.spec)

    async def listing(self, limit: int = 20) -> list[q.CampaignRow]:
        async with self.db.read() as conn:
            return await q.listing(conn, limit)

    async def update(self, campaign_id: int, spec: CampaignSpec, *, actor: str) -> None:
        """Replace a draft's definition (checked as ``create`` checks it)."""
        now = self.clock.now()
        async with self.db.write() as conn:
            await self._segment(conn, spec.segment)
            values = {"name": spec.name, "mode": spec.mode, "updated_at": now}
            if not await q.update_draft(
                conn, campaign_id, {**values, "spec": spec.model_dump(mode="json")}
            ):
                if await q.get(conn, campaign_id) is None:
                    raise CampaignError(f"no campaign {campaign_id}")
                raise CampaignError(f"campaign {campaign_id} is no longer a draft")
            await desk_q.audit(conn, self._audit(actor, "campaign.update", campaign_id, now))
        loggers.event(log, "campaign.updated", campaign=campaign_id, actor=actor)

    async def segment_size(self, segment: SegmentSpec) -> int:
        """How many clients the segment holds now."""
        async with self.db.read() as conn:
            return await q.segment_size(conn, await self._segment(conn, segment))

    async def _segment(self, conn: AsyncConnection, s: SegmentSpec) -> Segment:
        owners: list[int] = []
        names = [n for n in s.owners if n != "none"]
        if names:
            known = await managers_q.ids_by_name(conn)
            missing = [n for n in names if n not in known]
            if missing:
                raise CampaignError(f"segment.owners: no manager named {missing[0]!r}")
            owners = [known[n] for n in names]
        return Segment(
            tags=s.tags,
            tags_all=s.tags_all,
            not_tags=s.not_tags,
            stages=s.stages,
            owners=owners,
            unowned="none" in s.owners,
            reachable=s.reachable,
            last_contact_before=self._moment(s.last_contact_before),
            last_contact_after=self._moment(s.last_contact_after),
            sources=s.sources,
            languages=s.languages,
            custom={
                k: [str(x) for x in (v if isinstance(v, list) else [v])]
                for k, v in s.custom.items()
            },
            client_ids=s.clients,
        )

    def _moment(self, value: datetime | date | None) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=self.tz)
        return datetime.combine(value, time(0), tzinfo=self.tz)

    # -- preview and test ---------------------------------------------------------------

    async def preview(
        self, campaign_id: int, *, client_id: int | None = None, limit: int = 3
    ) -> tuple[int, list[PreviewItem]]:
        """How many clients the segment holds now, and the message of a few (or of one)."""
        _, spec = await self.campaign(campaign_id)
        return await self.preview_spec(spec, campaign_id, client_id=client_id, limit=limit)

    async def preview_spec(
        self,
        spec: CampaignSpec,
        campaign_id: int = 0,
        *,
        client_id: int | None = None,
        limit: int = 3,
    ) -> tuple[int, list[PreviewItem]]:
        """``preview`` of a definition not saved yet (or saved as ``campaign_id``)."""
        async with self.db.read() as conn:
            segment = await self._segment(conn, spec.segment)
            size = await q.segment_size(conn, segment)
            if client_id is not None:
                sample = [client_id]
            else:
                sample = await q.segment_clients(conn, segment, limit)
            if client_id is not None and not await read_q.client_exists(conn, client_id):
                raise CampaignError(f"no client {client_id}")
            targets = await q.preview_clients(conn, campaign_id, sample)
        items = []
        for target in targets:
            variant = scripts.pick(spec.script(), campaign_id, target.client_id)
            rendered = scripts.render(variant, self._context(target))
            channel, skip = self._route(spec, target)
            body = rendered.text
            if channel is not None:
                url = self._unsubscribe_url(channel, target, campaign_id)
                body = self._with_footer(body, channel, target, url)
            items.append(
                PreviewItem(target.client_id, variant.name, channel, skip, rendered.subject, body)
            )
        return size, items

    async def test_send(
        self,
        campaign_id: int,
        *,
        telegram_id: int | None = None,
        email: str | None = None,
        client_id: int | None = None,
    ) -> int:
        """Send the script, rendered for ``client_id`` (else the segment's first client),
        to the marketer's own Telegram chat or address; logged nowhere on clients."""
        if (telegram_id is None) == (email is None):
            raise CampaignError("a test goes to one Telegram id or one email address")
        _, items = await self.preview(campaign_id, client_id=client_id, limit=1)
        if not items:
            raise CampaignError("the segment is empty: name a client to render for")
        item = items[0]
        now = self.clock.now()
        channel = "telegram" if telegram_id is not None else "email"
        async with self.db.write() as conn:
            test = Outgoing(
                idempotency_key=f"campaign_test:{campaign_id}:{uuid.uuid4().hex}",
                channel=channel,
                account="campaign",
                recipient=str(telegram_id) if telegram_id is not None else str(email),
                kind="campaign_test",
                text=item.text,
                at=now,
                subject=item.subject,
                extras={"campaign": campaign_id},
            )
            row_id = await q.enqueue_one(conn, test.row())
        self._queued()
        return row_id

    # -- start and pause ----------------------------------------------------------------

    async def start(self, campaign_id: int, *, actor: str) -> q.CampaignRow:
        """Target the segment (the first time), then let the runner send; after a pause,
        release what it held."""
        row, spec = await self.campaign(campaign_id)
        if row.status == "running":
            return row
        if row.status == "done":
            raise CampaignError(f"campaign {campaign_id} is finished")
        now = self.clock.now()
        async with self.db.write() as conn:
            current = await q.get(conn, campaign_id)
            assert current is not None
            if current.targeted_at is None:
                targeted = await self._target(conn, campaign_id, spec, now)
                loggers.event(log, "campaign.targeted", campaign=campaign_id, clients=targeted)
            released = await q.release(conn, campaign_id, now)
            moved = await q.set_status(
                conn,
                campaign_id,
                "running",
                now=now,
                from_statuses=("draft", "paused"),
                started_at=current.started_at or now,
                targeted_at=current.targeted_at or now,
            )
            if moved:
                await desk_q.audit(conn, self._audit(actor, "campaign.start", campaign_id, now))
        if released:
            self._queued()
        loggers.event(log, "campaign.started", campaign=campaign_id, actor=actor)
        row, _ = await self.campaign(campaign_id)
        return row

    async def pause(self, campaign_id: int, *, actor: str) -> q.CampaignRow:
        now = self.clock.now()
        async with self.db.write() as conn:
            if await q.get(conn, campaign_id) is None:
                raise CampaignError(f"no campaign {campaign_id}")
            moved = await q.set_status(
                conn, campaign_id, "paused", now=now, from_statuses=("running", "draft")
            )
            held = await q.hold(conn, campaign_id) if moved else 0
            if moved:
                await desk_q.audit(conn, self._audit(actor, "campaign.pause", campaign_id, now))
        loggers.event(log, "campaign.paused", campaign=campaign_id, held=held, actor=actor)
        row, _ = await self.campaign(campaign_id)
        return row

    async def _target(
        self, conn: AsyncConnection, campaign_id: int, spec: CampaignSpec, now: datetime
    ) -> int:
        segment = await self._segment(conn, spec.segment)
        ids = await q.segment_clients(conn, segment)
        variants = spec.script()
        managers_of: dict[int, int | None] = {}
        if spec.mode == "calls":
            managers_of = await self._distribute(conn, spec, ids)
        rows = [
            {
                "campaign_id": campaign_id,
                "client_id": client_id,
                "variant": scripts.pick(variants, campaign_id, client_id).name,
                "status": "pending",
                "manager_id": managers_of.get(client_id),
                "created_at": now,
                "updated_at": now,
            }
            for client_id in ids
        ]
        added = 0
        for start in range(0, len(rows), 2000):
            added += await q.add_targets(conn, rows[start : start + 2000])
        return added

    async def _distribute(
        self, conn: AsyncConnection, spec: CampaignSpec, client_ids: Sequence[int]
    ) -> dict[int, int | None]:
        """Owner first (when the owner takes calls), else the least loaded manager."""
        takers = [m for m, _ in await q.managers_for_calls(conn, spec.managers)]
        if not takers:
            raise CampaignError("no active manager to give the calls to")
        load = {m: 0 for m in takers}
        load.update(await q.load_by_manager(conn, takers))
        owners = await q.client_owner(conn, client_ids)
        chosen: dict[int, int | None] = {}
        rest = []
        for client_id in client_ids:
            owner = owners.get(client_id)
            if owner is not None and owner in load:
                chosen[client_id] = owner
                load[owner] += 1
            else:
                rest.append(client_id)
        for client_id in rest:
            manager = min(takers, key=lambda m: (load[m], m))
            chosen[client_id] = manager
            load[manager] += 1
        return chosen

    # -- sending ---------------------------------------------------------------------

    async def run_once(self) -> int:
        """One round over the running campaigns; how many targets were settled."""
        async with self.db.read() as conn:
            running = await q.running(conn)
        total = 0
        for campaign_id in running:
            total += await self._round(campaign_id)
        return total

    async def _round(self, campaign_id: int) -> int:
        row, spec = await self.campaign(campaign_id)
        if row.status != "running":
            return 0
        settled = 0
        while True:
            limit = self.settings.batch
            if spec.mode == "message":
                async with self.db.read() as conn:
                    waiting = await q.outbox_waiting(conn, "campaign")
                limit = min(limit, self.settings.window - waiting)
                if limit <= 0:
                    return settled
            done = await self._chunk(campaign_id, spec, row.name, limit)
            settled += done
            if done:
                self._queued()
            if done < limit:
                break
        async with self.db.write() as conn:
            if await q.pending_count(conn, campaign_id) == 0:
                now = self.clock.now()
                if await q.set_status(
                    conn, campaign_id, "done", now=now, from_statuses=("running",), finished_at=now
                ):
                    loggers.event(log, "campaign.done", campaign=campaign_id)
        return settled

    async def _chunk(self, campaign_id: int, spec: CampaignSpec, name: str, limit: int) -> int:
        now = self.clock.now()
        async with self.db.write() as conn:
            current = await q.get(conn, campaign_id)
            if current is None or current.status != "running":
                return 0  # paused meanwhile
            targets = await q.claim(conn, campaign_id, now=now, limit=limit)
            if not targets:
                return 0
            if spec.mode == "calls":
                await self._call_tasks(conn, campaign_id, spec, name, targets, now)
            else:
                await self._messages(conn, campaign_id, spec, targets, now)
        return len(targets)

    async def _messages(
        self,
        conn: AsyncConnection,
        campaign_id: int,
        spec: CampaignSpec,
        targets: list[q.TargetClient],
        now: datetime,
    ) -> None:
        """Each target's message logged and queued over its channel, or deferred past
        the client's quiet hours, or skipped (with why)."""
        variants = {v.name: v for v in spec.script()}
        window = self.settings.quiet_hours if spec.quiet_hours is None else spec.quiet_hours
        accounts = await q.accounts(conn, [t.client_id for t in targets])
        skipped: dict[str, list[int]] = {}
        deferred: dict[int, datetime] = {}
        sends: list[_Send] = []
        for target in targets:
            channel, skip = self._route(spec, target)
            if channel is None:
                skipped.setdefault(skip or "unreachable", []).append(target.target_id)
                continue
            until = quiet_until(now, self._client_tz(target), window)
            if until is not None:
                deferred[target.target_id] = until
                continue
            variant = variants.get(target.variant) or next(iter(variants.values()))
            rendered = self._render(campaign_id, variant, target)
            if rendered is None:
                skipped.setdefault("script_error", []).append(target.target_id)
                continue
            account = accounts.get((target.client_id, channel)) or accounts.get(
                (0, channel), "campaign"
            )
            sends.append(
                self._message(campaign_id, spec, target, rendered, channel, account, now=now)
            )
        for reason, ids in skipped.items():
            await q.skip_targets(conn, ids, reason=reason, now=now)
        await q.defer_targets(conn, deferred, now=now)
        await q.write_sends(conn, sends, now=now)

    def _render(
        self, campaign_id: int, variant: scripts.Variant, target: q.TargetClient
    ) -> scripts.Rendered | None:
        """The script for this client; None (and a warning) when it cannot be had."""
        try:
            return scripts.render(variant, self._context(target))
        except scripts.ScriptError as exc:
            loggers.event(
                log,
                "campaign.render_failed",
                logging.WARNING,
                campaign=campaign_id,
                client=target.client_id,
                error=str(exc),
            )
            return None

    def _message(
        self,
        campaign_id: int,
        spec: CampaignSpec,
        target: q.TargetClient,
        rendered: scripts.Rendered,
        channel: str,
        account: str,
        *,
        now: datetime,
    ) -> _Send:
        """The ``out`` interaction of one client's message and its outbox row."""
        url = self._unsubscribe_url(channel, target, campaign_id)
        body = self._with_footer(rendered.text, channel, target, url)
        subject = rendered.subject or (spec.name if channel == "email" else None)
        logged = {"campaign": campaign_id, "variant": rendered.variant}
        interaction = {
            "client_id": target.client_id,
            "conversation_id": None,
            "direction": Direction.OUT.value,
            "channel": channel,
            "account": account,
            "author": f"campaign:{campaign_id}",
            "subject": subject,
            "text": body,
            "extras": logged,
            "at": now,
            "delivery": Delivery.PENDING.value,
        }
        message = Outgoing(
            idempotency_key=f"campaign:{campaign_id}:{target.client_id}",
            channel=channel,
            account=account,
            recipient=target.identities[channel],
            kind="campaign",
            text=body,
            at=now,
            subject=subject,
            extras=logged if url is None else {**logged, "unsubscribe_url": url},
            client_id=target.client_id,
        )
        return target.target_id, interaction, message.row()

    async def _call_tasks(
        self,
        conn: AsyncConnection,
        campaign_id: int,
        spec: CampaignSpec,
        name: str,
        targets: list[q.TargetClient],
        now: datetime,
    ) -> None:
        """A call task per target, to its manager's private chat; opted-out clients
        skipped."""
        variants = {v.name: v for v in spec.script()}
        staff = _CallStaff(await q.manager_telegram_ids(conn), await q.manager_names(conn))
        skipped: list[int] = []
        sends: list[_Send] = []
        for target in targets:
            if target.opted_out:
                skipped.append(target.target_id)
                continue
            variant = variants.get(target.variant) or next(iter(variants.values()))
            try:
                script = scripts.render(variant, self._context(target)).text
            except scripts.ScriptError as exc:
                script = f"[{exc}]"
            sends.append(self._call_task(campaign_id, name, target, script, staff, now=now))
        await q.skip_targets(conn, skipped, reason="opted_out", now=now)
        await q.write_sends(conn, sends, now=now)

    def _call_task(
        self,
        campaign_id: int,
        name: str,
        target: q.TargetClient,
        script: str,
        staff: _CallStaff,
        *,
        now: datetime,
    ) -> _Send:
        """The event that a task was given, and the task's message to the manager."""
        manager = target.manager_id or 0
        who = target.name or f"#{target.client_id}"
        contact = target.identities.get("phone") or text("call_no_phone", self.language)
        task = f"{text('call_task', self.language, campaign=name, client=who, phone=contact)}"
        task += f"\n\n{script}"
        given = text(
            "call_task_given",
            self.language,
            campaign=name,
            manager=staff.names.get(manager, "-"),
        )
        about = {"campaign": campaign_id, "call_task": target.target_id}
        event = {
            "client_id": target.client_id,
            "conversation_id": None,
            "direction": Direction.EVENT.value,
            "channel": None,
            "account": None,
            "author": "hub",
            "text": given,
            "extras": about,
            "at": now,
        }
        message = Outgoing(
            idempotency_key=f"call:{campaign_id}:{target.client_id}",
            channel=self.staff_channel or "telegram",
            account="staff",
            recipient=str(staff.telegram_ids.get(manager, "staff")),
            kind="call_task",
            text=task,
            at=now,
            extras=dict(about),
            client_id=target.client_id,
        )
        return target.target_id, event, message.row()

    def _route(self, spec: CampaignSpec, target: q.TargetClient) -> tuple[str | None, str | None]:
        """The channel a message goes over, or why it does not go."""
        if spec.mode == "calls":
            return ("call", None) if not target.opted_out else (None, "opted_out")
        if target.opted_out:
            return None, "opted_out"
        for channel in spec.channels:
            if channel in target.identities:
                return channel, None
        return None, "unreachable"

    def _client_tz(self, target: q.TargetClient) -> ZoneInfo:
        name = (target.custom or {}).get("timezone")
        if isinstance(name, str) and name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                pass
        return self.tz

    def _context(self, target: q.TargetClient) -> dict[str, Any]:
        return scripts.context(
            client_id=target.client_id,
            name=target.name,
            stage=target.stage,
            source=target.source,
            language=target.language,
            tags=target.tags,
            custom=target.custom,
            owner=target.owner,
            identities=target.identities,
        )

    def _unsubscribe_url(
        self, channel: str, target: q.TargetClient, campaign_id: int
    ) -> str | None:
        """The signed one-click link an email carries (footer and List-Unsubscribe)."""
        if channel != "email" or self.unsubscribe is None:
            return None
        return self.unsubscribe.url(target.client_id, campaign_id)

    def _with_footer(
        self, body: str, channel: str, target: q.TargetClient, unsubscribe_url: str | None
    ) -> str:
        language = target.language if target.language in ("ru", "en") else self.language
        if channel == "telegram":
            return f"{body}\n\n{text('campaign_stop_hint', language)}"
        if unsubscribe_url is not None:
            return f"{body}\n\n{text('campaign_unsubscribe', language, url=unsubscribe_url)}"
        return body

    def _queued(self) -> None:
        if self.on_queued is not None:
            self.on_queued()

    # -- results -----------------------------------------------------------------------

    async def status(self, campaign_id: int) -> Status:
        row, spec = await self.campaign(campaign_id)
        days = spec.reply_window_days or self.settings.reply_window_days
        async with self.db.read() as conn:
            variants = await q.stats(conn, campaign_id, reply_window=timedelta(days=days))
            outcomes = await q.outcomes(conn, campaign_id) if row.mode == "calls" else []
        return Status(row, variants, outcomes)

    # -- call outcomes -----------------------------------------------------------------

    async def record_outcome(
        self, target_id: int, manager: ManagerRef, outcome: str, *, key: str
    ) -> str:
        """An outcome button on a call task: only the task's manager (or a supervisor)
        may press it; logged on the client once per press; "call back later" sets a
        reminder for the manager. A later press replaces the outcome."""
        language = manager.language or self.language
        channel = self.staff_channel or "staff"
        now = self.clock.now()
        async with self.db.write() as conn:
            done = await desk_q.event_text(conn, key, channel)
            if done is not None:
                return done
            task = await q.call_task(conn, target_id)
            if task is None or outcome not in OUTCOMES:
                return text("call_task_gone", language)
            if task.manager_id != manager.id and manager.role not in OVERSEERS:
                await desk_q.refused(
                    conn,
                    at=now,
                    telegram_id=manager.telegram_id,
                    what=f"call outcome {outcome}",
                    object_type="call_task",
                    object_id=target_id,
                    manager_id=manager.id,
                )
                return text("call_task_not_yours", language)
            await q.record_outcome(conn, target_id, outcome, now=now)
            label = text(f"call_outcome_{outcome}", language)
            reply = text("call_outcome_logged", language, outcome=label, manager=manager.name)
            if outcome == "call_back":
                when = await self._call_back(conn, task, manager, language, now)
                reply = f"{reply}; {text('call_back_set', language, when=when)}"
            await desk_q.event(
                conn,
                {
                    "client_id": task.client_id,
                    "direction": Direction.EVENT.value,
                    "author": manager.name,
                    "text": reply,
                    "channel": channel,
                    "external_id": key,
                    "extras": {
                        "campaign": task.campaign_id,
                        "call_task": target_id,
                        "outcome": outcome,
                    },
                    "at": now,
                },
            )
        loggers.event(
            log, "campaign.call_outcome", task=target_id, outcome=outcome, manager=manager.id
        )
        return reply

    async def _call_back(
        self,
        conn: AsyncConnection,
        task: q.CallTask,
        manager: ManagerRef,
        language: str,
        now: datetime,
    ) -> str:
        """A reminder for the task's manager to call again (after the campaign's
        ``call_back_hours``); when it is due, as the manager reads it."""
        row = await q.get(conn, task.campaign_id)
        spec = CampaignSpec.model_validate(row.spec) if row else None
        hours = (spec.call_back_hours if spec else None) or self.settings.call_back_hours
        due = now + timedelta(hours=hours)
        await desk_q.add_reminder(
            conn,
            {
                "client_id": task.client_id,
                "manager_id": task.manager_id or manager.id,
                "due_at": due,
                "text": text("call_back_reminder", language, campaign=row.name if row else ""),
                "kind": "reminder",
                "status": "pending",
                "fired_count": 0,
                "created_at": now,
            },
        )
        return due.astimezone(self.tz).strftime("%d.%m %H:%M")

    # -- opting out --------------------------------------------------------------------

    async def opt_out(self, token: str) -> bool | None:
        """The unsubscribe link: None for a forged or unknown token; True when the
        client was opted out now, False when they already were."""
        if self.unsubscribe is None:
            return None
        found = self.unsubscribe.verify(token)
        if found is None:
            return None
        client_id, campaign_id = found
        now = self.clock.now()
        async with self.db.write() as conn:
            if not await read_q.client_exists(conn, client_id):
                return None
            fresh = await q.opt_out(
                conn,
                client_id,
                {
                    "client_id": client_id,
                    "direction": Direction.EVENT.value,
                    "channel": "email",
                    "external_id": f"unsubscribe:{client_id}",
                    "author": "client",
                    "text": text("campaign_opted_out", self.language, campaign=campaign_id),
                    "extras": {"campaign": campaign_id, "opt_out": True},
                    "at": now,
                },
            )
        loggers.event(log, "campaign.opt_out", client=client_id, campaign=campaign_id)
        return fresh

    # -- the staff surface (hub.ports.CampaignDesk) ----------------------------------

    async def call_outcome(
        self, task_id: int, manager: ManagerRef, outcome: str, *, key: str
    ) -> str:
        return await self.record_outcome(task_id, manager, outcome, key=key)

    async def campaign_command(
        self, manager: ManagerRef, command: str, argument: str
    ) -> str | None:
        return await self.command(manager, command, argument)

    # -- marketers in Telegram ----------------------------------------------------------

    async def command(self, manager: ManagerRef, command: str, argument: str) -> str | None:
        """/campaigns, /campaign N, /campaign_start N, /campaign_pause N from a
        marketer's private chat; None when ``command`` is none of these."""
        if command not in ("campaigns", "campaign", "campaign_start", "campaign_pause"):
            return None
        language = manager.language or self.language
        if manager.role not in MARKETERS:
            async with self.db.write() as conn:
                await desk_q.refused(
                    conn,
                    at=self.clock.now(),
                    telegram_id=manager.telegram_id,
                    what=f"/{command} {argument}".strip(),
                    object_type="campaign",
                )
            return text("campaign_marketers_only", language)
        actor = desk_q.staff_actor(manager.telegram_id)
        if command == "campaigns":
            rows = await self.listing(10)
            if not rows:
                return text("campaign_none", language)
            lines = [text("campaign_list_title", language)]
            for row in rows:
                status = await self.status(row.id)
                lines.append(
                    f"#{row.id} {row.name} — {text(f'campaign_status_{row.status}', language)}, "
                    f"{status.done}/{status.targeted}"
                )
            return "\n".join(lines)
        if not (argument.strip().isascii() and argument.strip().isdigit()):
            return text("need_argument", language, usage=f"/{command} N")
        campaign_id = int(argument.strip())
        try:
            if command == "campaign_start":
                await self.start(campaign_id, actor=actor)
            elif command == "campaign_pause":
                await self.pause(campaign_id, actor=actor)
            return render_status(await self.status(campaign_id), language)
        except CampaignError as exc:
            return str(exc)

    def _audit(self, actor: str, action: str, campaign_id: int, now: datetime) -> dict[str, Any]:
        return {
            "at": now,
            "actor": actor,
            "action": action,
            "object_type": "campaign",
            "object_id": campaign_id,
        }


def build(
    config: Config,
    db: Database,
    clock: Any,
    *,
    staff_channel: str | None,
    on_queued: Callable[[], None] | None = None,
) -> Campaigns:
    """The campaigns service of a configured hub: unsubscribe links signed with
    ``campaigns.unsubscribe_secret`` (else a key derived from ``admin.token``)
    and pointing at ``campaigns.public_url`` (else the admin listener)."""
    settings = config.campaigns
    secret = settings.unsubscribe_secret or config.admin.token
    base = settings.public_url or f"http://{config.admin.listen}"
    return Campaigns(
        db,
        clock,
        settings,
        timezone=config.hub.timezone,
        language=config.hub.language,
        staff_channel=staff_channel,
        unsubscribe=Unsubscribe(secret.get_secret_value().encode(), base),
        on_queued=on_queued,
    )
