"""Satisfaction (``[csat]``): on a request's resolution a short note to the client and
a 1–5 rating asked over their own channel; the client's score recorded, logged,
told to integrations and the stage rules, and a low one to the supervisors at once.

The ask is written in the resolving transaction (:meth:`Csat.on_resolved`): a
``ratings`` row, the ``out`` interaction of the note, and its outbox row over the
conversation's reply route (a form's client by email, when they gave an address).
Over Telegram it is one message with five buttons, whose press comes back through
:class:`hub.kernel.ports.ClientRatings` and counts only from the rating's own
client's Telegram account. By email it carries five signed links
(:mod:`hub.desk.rating_links`) to a page that asks for one click more before it
records (mail scanners open links; they do not press buttons). With no
``campaigns.public_url`` the links could lead nowhere a client reaches: the email
ask is skipped, and the log says so at start.

One score an ask; the last click wins (each change logged and told again). A
score at or under ``alert_at`` tells the active supervisors in private and the
client's topic, once as it falls there. The client's next message within
``comment_minutes`` of rating is its comment (:mod:`hub.ingest.comments`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.clients import stage_rules
from hub.config import Config
from hub.config.sections import CsatSection
from hub.delivery.outbox import Outgoing
from hub.desk.rating_links import RatingLinks
from hub.desk.replies import REPLY_ROUTE
from hub.kernel import loggers
from hub.kernel.clock import Clock
from hub.kernel.texts import text
from hub.kernel.types import Delivery, Direction
from storage import Database, webhooks
from storage import desk as desk_q
from storage import ratings as q
from storage import replies as replies_q
from storage import sla as sla_q

log = loggers.core

SCORES = (1, 2, 3, 4, 5)


def spoken(language: str | None, default: str) -> str:
    """``ru`` or ``en`` from a client's language tag, else ``default``."""
    short = (language or "")[:2].lower()
    return short if short in ("ru", "en") else default


class LinkPage(NamedTuple):
    """What the rating page shows: the score of the link, in the client's language."""

    score: int
    language: str


@dataclass(frozen=True, slots=True)
class _Ask:
    """An ask in hand: whom, where, and what it says."""

    found: q.Asked
    route: str
    recipient: str
    language: str
    manager_id: int | None
    now: datetime


class Csat:
    """The ``[csat]`` service of a running hub; ``sending``: the channels the hub
    sends on (set once they are built): an ask over another would never go out."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: CsatSection,
        *,
        language: str = "ru",
        staff_channel: str | None = None,
        links: RatingLinks | None = None,
        rules: stage_rules.StageRules | None = None,
    ) -> None:
        self.db = db
        self.rules = rules  # [[stages.rules]]: a ``rating`` rule moves the client
        self.clock = clock
        self.settings = settings
        self.language = language
        self.staff_channel = staff_channel
        self.links = links
        self.sending: frozenset[str] | None = None

    # -- the ask ---------------------------------------------------------------------

    async def on_resolved(
        self,
        conn: AsyncConnection,
        conversation_id: int,
        manager_id: int | None,
        now: datetime,
        *,
        notify: bool = True,
    ) -> int | None:
        """In the resolving transaction: the note (unless ``notify`` is False: the
        caller told the client itself) and the ask, as configured; the rating's id
        when one was asked."""
        note = self.settings.notify and notify
        if not note and not self.settings.ask:
            return None
        found = await q.asked(conn, conversation_id)
        if found is None or found.blocked:
            return None
        route, kind = REPLY_ROUTE.get(found.channel, (found.channel, found.channel))
        recipient = await replies_q.address(conn, found.client_id, kind)
        if recipient is None or (self.sending is not None and route not in self.sending):
            loggers.event(log, "csat.unreachable", conversation=conversation_id, route=route)
            return None
        language = spoken(found.language, self.language)
        ask = _Ask(found, route, recipient, language, manager_id, now)
        asking = self.settings.ask and (route != "email" or self.links is not None)
        if not asking and not note:
            return None
        rating_id = await self._rating(conn, ask) if asking else None
        await self._queue(conn, ask, self._said(ask, note, rating_id), rating_id)
        loggers.event(log, "csat.asked", conversation=conversation_id, rating=rating_id or "-")
        return rating_id

    async def _rating(self, conn: AsyncConnection, ask: _Ask) -> int:
        return await q.create(
            conn,
            {
                "conversation_id": ask.found.conversation_id,
                "client_id": ask.found.client_id,
                "manager_id": ask.manager_id,
                "channel": ask.found.channel,
                "asked_at": ask.now,
            },
        )

    def _said(self, ask: _Ask, note: bool, rating_id: int | None) -> str:
        language = ask.language
        parts = [text("csat_note", language)] if note else []
        if rating_id is not None:
            parts.append(text("csat_ask", language))
            if ask.route == "email" and self.links is not None:
                lines = "\n".join(f"{s} — {self.links.url(rating_id, s)}" for s in SCORES)
                parts.append(text("csat_ask_links", language, links=lines))
        return "\n\n".join(parts)

    async def _queue(
        self, conn: AsyncConnection, ask: _Ask, said: str, rating_id: int | None
    ) -> None:
        """The ``out`` interaction and its outbox row, in the thread of the client's
        last message (an email reply to it then threads into the request)."""
        found = ask.found
        in_reply_to = await replies_q.last_inbound_external_id(conn, found.conversation_id)
        extras: dict[str, Any] = {}
        if rating_id is not None:
            extras["rating"] = rating_id
        if in_reply_to:
            extras["in_reply_to"] = in_reply_to
        await replies_q.append(
            conn,
            {
                "client_id": found.client_id,
                "conversation_id": found.conversation_id,
                "direction": Direction.OUT.value,
                "channel": ask.route,
                "account": found.account,
                "author": "hub",
                "text": said,
                "extras": {"csat": rating_id} if rating_id is not None else {"csat": None},
                "delivery": Delivery.PENDING.value,
                "at": ask.now,
            },
            Outgoing(
                idempotency_key=f"csat:{found.conversation_id}:{uuid.uuid4().hex}",
                channel=ask.route,
                account=found.account,
                recipient=ask.recipient,
                kind="reply",
                text=said,
                at=ask.now,
                subject=found.subject or text("csat_subject", ask.language),
                extras=extras or None,
                client_id=found.client_id,
                conversation_id=found.conversation_id,
            ).row(),
        )

    # -- the score ----------------------------------------------------------------------

    async def rate(self, channel: str, address: str, rating_id: int, score: int) -> str | None:
        """:class:`hub.kernel.ports.ClientRatings`: a score given by the holder of the
        identity (``channel``, ``address``); recorded only when the rating is that
        client's. The thanks to show, in the client's language; None: refused."""
        if score not in SCORES:
            return None
        async with self.db.write() as conn:
            rating = await q.for_update(conn, rating_id)
            if rating is None or not await q.holds(conn, rating.client_id, channel, address):
                loggers.event(log, "csat.refused", 30, rating=rating_id, channel=channel)
                return None
            return await self._record(conn, rating, score, channel)

    async def link(self, token: str) -> LinkPage | None:
        """The page of an email link (GET: shown, nothing recorded); None: not genuine."""
        rated = self.links.verify(token) if self.links is not None else None
        if rated is None:
            return None
        async with self.db.read() as conn:
            rating = await q.get(conn, rated.rating_id)
            if rating is None:
                return None
            _, language, _ = await q.names(conn, rating.client_id, None)
        return LinkPage(rated.score, spoken(language, self.language))

    async def rate_by_link(self, token: str) -> LinkPage | None:
        """The button of the link's page (POST): the score recorded; None: not genuine."""
        rated = self.links.verify(token) if self.links is not None else None
        if rated is None:
            return None
        async with self.db.write() as conn:
            rating = await q.for_update(conn, rated.rating_id)
            if rating is None:
                return None
            await self._record(conn, rating, rated.score, "email")
            _, language, _ = await q.names(conn, rating.client_id, None)
        return LinkPage(rated.score, spoken(language, self.language))

    async def _record(
        self, conn: AsyncConnection, rating: q.RatingRow, score: int, via: str
    ) -> str:
        """The score (the last click wins): logged, told, and alerted when low."""
        client_name, language, manager = await q.names(conn, rating.client_id, rating.manager_id)
        thanks = text("csat_thanks", spoken(language, self.language), score=score)
        if rating.score == score:
            return thanks  # the same click again (or a redelivered press): nothing new
        now = self.clock.now()
        await q.set_score(conn, rating.id, score, now)
        data = {
            "id": rating.id,
            "client_id": rating.client_id,
            "score": score,
            "previous": rating.score,
            "conversation_id": rating.conversation_id,
            "manager_id": rating.manager_id,
            "manager": manager,
            "channel": rating.channel,
            "via": via,
        }
        said = text("csat_event", self.language, score=score)
        if rating.score is not None:
            said = text("csat_event_changed", self.language, old=rating.score, score=score)
        await desk_q.event(
            conn,
            {
                "client_id": rating.client_id,
                "conversation_id": rating.conversation_id,
                "direction": Direction.EVENT.value,
                "author": client_name or "hub",
                "text": said,
                "extras": {"rating": data},
                "at": now,
            },
        )
        emitted = webhooks.Emitted("rating.received", rating.client_id, now, data)
        await webhooks.emit(conn, [emitted], now)
        if self.rules is not None:
            await stage_rules.after_rating(conn, self.rules, rating.client_id, score, now)
        alert_at = self.settings.alert_at
        if score <= alert_at and (rating.score is None or rating.score > alert_at):
            await self._alert(conn, rating, score, (client_name, manager), now)
        loggers.event(log, "csat.rated", rating=rating.id, score=score, via=via)
        return thanks

    async def _alert(
        self,
        conn: AsyncConnection,
        rating: q.RatingRow,
        score: int,
        names: tuple[str | None, str | None],
        now: datetime,
    ) -> None:
        """A low score: each active supervisor in private, and the client's topic."""
        if self.staff_channel is None:
            return
        client, manager = names
        said = text(
            "csat_alert",
            self.language,
            score=score,
            client=client or f"#{rating.client_id}",
            id=rating.client_id,
            manager=manager or "—",
        )
        staff = await sla_q.staff(conn)
        told = [str(staff.telegram_ids[m]) for m in staff.supervisors if m in staff.telegram_ids]
        for recipient in [*told, "staff"]:
            await desk_q.enqueue(conn, self._notice(rating, recipient, said, now).row())

    def _notice(self, rating: q.RatingRow, recipient: str, said: str, now: datetime) -> Outgoing:
        assert self.staff_channel is not None
        return Outgoing(
            idempotency_key=f"csat:{rating.id}:alert:{recipient}:{uuid.uuid4().hex[:12]}",
            channel=self.staff_channel,
            account="staff",
            recipient=recipient,
            kind="alert",
            text=said,
            at=now,
            extras={"rating": rating.id},
            client_id=rating.client_id,
            conversation_id=rating.conversation_id,
        )


async def on_resolved(
    conn: AsyncConnection,
    csat: Csat | None,
    conversation_ids: Sequence[int],
    manager_id: int | None,
    now: datetime,
    *,
    notify: bool = True,
) -> None:
    """For callers that resolve requests (the desk, the close of a silent waiting
    request): the note and ask of the first of ``conversation_ids`` (the latest
    one: one message to the client however many of their requests closed)."""
    if csat is not None and conversation_ids:
        await csat.on_resolved(conn, conversation_ids[0], manager_id, now, notify=notify)


def build(config: Config, db: Database, clock: Clock, *, staff_channel: str | None) -> Csat | None:
    """The service as configured; None when it neither notifies nor asks."""
    settings = config.csat
    if not (settings.notify or settings.ask):
        return None
    links = None
    if config.campaigns.public_url:
        secret = config.campaigns.unsubscribe_secret or config.admin.token
        links = RatingLinks(secret.get_secret_value().encode(), config.campaigns.public_url)
    elif settings.ask and config.email.outbound is not None:
        loggers.event(
            log,
            "csat.email_ask_off",
            30,
            why="campaigns.public_url is not set: rating links would lead nowhere",
        )
    return Csat(
        db,
        clock,
        settings,
        language=config.hub.language,
        staff_channel=staff_channel,
        links=links,
        rules=stage_rules.compile_stage_rules(config),
    )
