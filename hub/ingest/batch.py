"""The batch writer: one batch of messages written in one transaction, as a pipeline.

deduplicate -> resolve clients -> thread and route -> write the conversations ->
count the requests (flood control) -> write the log -> outgoing events
(:mod:`hub.ingest.events`) -> stage rules (:mod:`hub.ingest.stages`) -> results.
Each step is set-based (a few statements for the whole batch, never one per
message) and hands the next what it found: the per-message part on each
:class:`~hub.ingest.records.Entry`, the rest as a small typed value.

A blocked client's message is logged on the client like a service message: no
conversation, so no routing, no deadline, no staff notice and no auto-reply.
A message without any identity (mail with no readable sender) is logged on a
new client of its own, which a person merges into the right one. A Telegram
user nobody knows yet, whose @username an import gave as a hint, joins the
hint's client, and the hint is dropped (proven now by the user id).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from sqlalchemy.engine import Connection

from hub.clients.stage_rules import StageRules
from hub.ingest import comments, events, rows, stages
from hub.ingest.auto_replies import AutoReplies, auto_replies
from hub.ingest.deadlines import open_deadlines
from hub.ingest.flood import Burst, split
from hub.ingest.notices import staff_notices
from hub.ingest.records import Conv, Entry, Pending, Routed
from hub.ingest.resumed import resume_waiting
from hub.ingest.router import Router, RoutingSettings
from hub.kernel.identities import TELEGRAM_HINT
from hub.kernel.types import IngestResult
from routing import Decision
from routing.sla import Policy
from storage import ingest as q

Pair = tuple[str, str]  # an identity: (kind, value)
_NOBODY = ""  # the kind of the pair a message without identities is claimed by
MINUTE = timedelta(minutes=1)  # flood control's window


class Settings(RoutingSettings, Protocol):
    """What the batch writer reads of the ingestor, at each batch."""

    policies: tuple[Policy, ...]
    staff_channel: str | None
    auto_replies: AutoReplies | None
    flood_per_minute: int  # 0: no flood control
    language: str  # the staff's, for the notices the hub writes
    csat: comments.CommentWindow | None  # a rating's comment: no request of its own
    stage_rules: StageRules


@dataclass(slots=True)
class Seen:
    """The batch split by deduplication."""

    fresh: list[Entry]  # the messages to log, in batch order
    results: list[IngestResult | None]  # by place in the batch; a redelivery's already
    repeats: list[tuple[int, Entry]]  # (place, the same message earlier in the batch)


class Known(NamedTuple):
    """What the database holds of the batch's senders."""

    identities: dict[Pair, q.KnownIdentity]
    open_convs: dict[tuple[str, int], Conv]  # (channel, client id) -> its open conversation


class Claims(NamedTuple):
    """Whom the batch's messages are from, before their clients are linked."""

    held_by: list[Pair]  # per fresh message: the identity its client is found by
    created: dict[Pair, int]  # that identity -> the client created for it
    hints: list[Pair]  # username hints a new Telegram sender was found by: to drop


@dataclass(slots=True)
class Senders:
    """The batch's clients; each message's own is on its entry."""

    owner_of: dict[int, int | None]  # client id -> its owner (a manager), None yet
    new: set[int]  # clients this batch created
    open_convs: dict[tuple[str, int], Conv]
    blocked: set[int] = field(default_factory=set)
    flood: dict[int, int] = field(default_factory=dict)  # client -> requests this minute
    lapsed: set[int] = field(default_factory=set)  # clients whose stage is lapsed


class Hints(NamedTuple):
    """Where the batch's thread hints lead."""

    threads: dict[tuple[str, str], q.Thread]  # (channel, hint) -> the earlier message's
    conversations: dict[int, q.OpenConversation]


@dataclass(slots=True)
class Threads:
    """The conversations the batch's messages go to, and what routing decided."""

    new: list[Conv] = field(default_factory=list)  # opened by this batch, in order
    joined: dict[int, Conv] = field(default_factory=dict)  # existing ones, by id
    routed: list[Routed] = field(default_factory=list)  # decisions to log and announce
    owners: dict[int, int] = field(default_factory=dict)  # client -> first assignee
    tags: dict[int, tuple[str, ...]] = field(default_factory=dict)  # client -> rule tags
    rule_replies: dict[Entry, Decision] = field(default_factory=dict)  # a rule's reply
    resumed: list[Conv] = field(default_factory=list)  # waiting on the client until now


class BatchWriter:
    """One batch inside one transaction (see the module's docstring for the steps)."""

    def __init__(self, settings: Settings, conn: Connection, now: datetime) -> None:
        self.settings = settings
        self.conn = conn
        self.now = now
        self.router = Router(settings, conn, now)
        self.tagged: dict[int, set[str]] = {}  # client -> the tags routing rules added

    def run(self, batch: list[Pending]) -> list[IngestResult]:
        seen = self.deduplicate(batch)
        senders = self.resolve_clients(seen.fresh)
        comments.find(self.conn, self.settings.csat, seen.fresh, senders.blocked, self.now)
        threads = self.thread_and_route(seen.fresh, senders)
        self.write_conversations(seen.fresh, threads)
        burst = self.count_requests(seen.fresh, senders)
        self.write_log(seen.fresh, threads, senders, burst)
        self.write_comments(seen.fresh)
        events.emit(self.conn, seen.fresh, threads.routed, senders.new, self.router, self.now)
        lapsed = senders.lapsed - senders.blocked
        stages.follow(
            self.conn, self.settings.stage_rules, seen.fresh, lapsed, self.tagged, self.now
        )
        return self.results(seen, senders)

    # 1. Deduplicate

    def deduplicate(self, batch: list[Pending]) -> Seen:
        """Redeliveries: already stored (answered with the stored interaction), or
        twice in this batch (answered with the first one's)."""
        by_channel: dict[str, list[str]] = defaultdict(list)
        for p in batch:
            by_channel[p.message.channel].append(p.message.external_id)
        received: dict[tuple[str, str], q.Received] = {}
        for channel, external_ids in by_channel.items():
            for ext, stored in q.find_received(self.conn, channel, external_ids).items():
                received[(channel, ext)] = stored
        seen = Seen([], [None] * len(batch), [])
        first_of: dict[tuple[str, str], Entry] = {}
        for index, p in enumerate(batch):
            key = (p.message.channel, p.message.external_id)
            rec = received.get(key)
            if rec is not None:
                seen.results[index] = IngestResult(
                    rec.interaction_id, rec.client_id, rec.conversation_id, duplicate=True
                )
            elif key in first_of:
                seen.repeats.append((index, first_of[key]))
            else:
                first_of[key] = entry = Entry(index, p, p.message)
                seen.fresh.append(entry)
        return seen

    # 2. Resolve clients

    def resolve_clients(self, fresh: list[Entry]) -> Senders:
        """Each message's client, by identity. A message joins the client of its
        first identity somebody holds (in the database, or proven by an earlier
        message of the batch); when nobody holds any, its sender becomes a new
        client."""
        known = self._find_clients(fresh)
        claims = self._create_clients(fresh, known.identities)
        return self._link_identities(fresh, known, claims)

    def _find_clients(self, fresh: list[Entry]) -> Known:
        """The clients holding the messages' identities, with their open conversation
        on the message's channel: one query per channel and identity kind."""
        pairs_by_channel: dict[str, set[Pair]] = defaultdict(set)
        for e in fresh:
            channel_pairs = pairs_by_channel[e.message.channel]
            for ident in e.message.identities:
                channel_pairs.add((ident.kind, ident.value))
            hint = _hint(e)
            if hint is not None:
                channel_pairs.add(hint)
        known = Known({}, {})
        for channel, pairs in pairs_by_channel.items():
            found, found_open = q.find_clients(self.conn, channel, list(pairs), self.now - MINUTE)
            known.identities.update(found)
            for client_id, row in found_open.items():
                known.open_convs[(channel, client_id)] = Conv(
                    row.id, client_id, row.status, row.assignee_id
                )
        return known

    def _create_clients(self, fresh: list[Entry], known: dict[Pair, q.KnownIdentity]) -> Claims:
        """The identity each message's client is found by, and the clients created
        for senders nobody holds (by that identity)."""
        held_by: list[Pair] = []
        new_keys: list[Pair] = []
        new_rows: list[dict[str, Any]] = []
        claimed: set[Pair] = set()
        hints: list[Pair] = []
        for e in fresh:
            identities = e.message.identities
            if not identities:
                held = (_NOBODY, str(e.index))  # nobody else's: a client of its own
                new_keys.append(held)
                new_rows.append(rows.new_client(e.message, self.now, self.settings.language))
                held_by.append(held)
                continue
            first = identities[0]
            held = (first.kind, first.value)
            if held not in known and held not in claimed:
                held = next(
                    (
                        p
                        for p in ((i.kind, i.value) for i in identities[1:])
                        if p in known or p in claimed
                    ),
                    held,
                )
            hint = _hint(e)
            if held not in known and held not in claimed and hint in known:
                held = hint  # an imported @username, first heard from: theirs
                hints.append(hint)
            if held not in known and held not in claimed:
                new_keys.append(held)
                new_rows.append(rows.new_client(e.message, self.now, self.settings.language))
            held_by.append(held)
            for ident in identities:
                claimed.add((ident.kind, ident.value))
        created = dict(zip(new_keys, q.insert_clients(self.conn, new_rows), strict=True))
        q.drop_identities(self.conn, hints)
        return Claims(held_by, created, hints)

    def _link_identities(self, fresh: list[Entry], known: Known, claims: Claims) -> Senders:
        """Each message's client on its entry; its identities nobody holds yet join
        that client. One held by another client is a probable duplicate, for a
        person to merge, never moved silently."""
        identities, created, now = known.identities, claims.created, self.now
        senders = Senders({}, set(created.values()), known.open_convs)
        identity_rows: list[dict[str, Any]] = []
        for e, held in zip(fresh, claims.held_by, strict=True):
            # ``identities`` grows as the loop goes: a later message finds the
            # client an earlier one created
            sender = identities.get(held) or q.KnownIdentity(created[held], None)
            e.client_id = sender.client_id
            senders.owner_of.setdefault(sender.client_id, sender.owner_id)
            if sender.blocked:
                senders.blocked.add(sender.client_id)
            if sender.flood:
                senders.flood[sender.client_id] = sender.flood
            if sender.lapsed:
                senders.lapsed.add(sender.client_id)
            for ident in e.message.identities:
                pair = (ident.kind, ident.value)
                if pair not in identities:
                    identities[pair] = sender
                    identity_rows.append(
                        {
                            "client_id": sender.client_id,
                            "kind": ident.kind.value,
                            "value": ident.value,
                            "display_name": ident.display_name,
                            "created_at": now,
                        }
                    )
        q.add_identities(self.conn, identity_rows)
        return senders

    # 3. Thread and route

    def thread_and_route(self, fresh: list[Entry], senders: Senders) -> Threads:
        """Each request's conversation on its entry: the one a thread hint names,
        else the client's open one on the channel, else a new one. A conversation
        nobody holds is routed, once however many messages of the batch join it."""
        self.router.clients = list({e.client_id for e in fresh})
        hints = self._find_hints(fresh)
        threads = Threads()
        hinted: dict[int, Conv] = {}  # one Conv per conversation a hint leads to
        queued: set[Conv] = set()  # routed to nobody already in this batch
        blocked = senders.blocked
        for e in fresh:
            extras = e.message.extras
            if (
                (extras and (extras.get("service") or extras.get("auto")))
                or (blocked and e.client_id in blocked)
                or e.rated is not None
            ):
                # A bare /start or /stop, an auto-reply, a bounce of mail the hub did
                # not send, a blocked client's message, a comment on a rating (logged
                # on the rated request, hub.ingest.comments): logged on the client, but no
                # request to route.
                continue
            conv = self._conversation(e, hints, senders.open_convs, hinted)
            if conv.opener is e:
                threads.new.append(conv)
            if conv.assignee_id is None:
                self._route(e, conv, senders, threads, queued)
            if conv.row is None:
                threads.joined[conv.id] = conv
                if conv.status != "open":  # pending, waiting, resolved: the client wrote again
                    if conv.status == "waiting":
                        threads.resumed.append(conv)
                    conv.status = "open"
                    conv.changed = True
            e.conv = conv
        return threads

    def _find_hints(self, fresh: list[Entry]) -> Hints:
        """The earlier messages the batch's thread hints name, and their conversations."""
        hints_by_channel: dict[str, list[str]] = defaultdict(list)
        for e in fresh:
            hints_by_channel[e.message.channel].extend(e.message.thread_hints)
        threads: dict[tuple[str, str], q.Thread] = {}
        for channel, hints in hints_by_channel.items():
            if hints:
                for ext, hit in q.find_threads(self.conn, channel, hints).items():
                    threads[(channel, ext)] = hit
        ids = list({t.conversation_id for t in threads.values()})
        return Hints(threads, q.get_conversations(self.conn, ids))

    def _conversation(
        self,
        e: Entry,
        hints: Hints,
        open_convs: dict[tuple[str, int], Conv],
        hinted: dict[int, Conv],
    ) -> Conv:
        """The conversation a message goes to; a new one joins ``open_convs``, so
        the client's next message of the batch finds it."""
        m, client_id = e.message, e.client_id
        channel = m.channel
        for hint in m.thread_hints:
            thread = hints.threads.get((channel, hint))
            # a thread never crosses to another client's conversation
            if thread is not None and thread.client_id == client_id:
                row = hints.conversations[thread.conversation_id]
                conv = open_convs.get((channel, client_id))
                if conv is None or conv.id != row.id:
                    conv = hinted.setdefault(
                        row.id, Conv(row.id, client_id, row.status, row.assignee_id)
                    )
                return conv
        conv = open_convs.get((channel, client_id))
        if conv is None:
            values = rows.new_conversation(m, client_id, self.now)
            conv = open_convs[(channel, client_id)] = Conv(0, client_id, "open", None, values, e)
        return conv

    def _route(
        self, e: Entry, conv: Conv, senders: Senders, threads: Threads, queued: set[Conv]
    ) -> None:
        """Ask routing about a conversation nobody holds, and note what it decided:
        a decision to log when it assigns, or the first time it leaves a new one
        waiting; the client's owner when it has none; a matched rule's actions."""
        client_id = e.client_id
        owner = senders.owner_of[client_id]
        decision = self.router.decide(e.message, client_id, owner, client_id in senders.new)
        self._rule_actions(e, conv, decision, threads)
        assignee = decision.assignee_id
        if assignee is not None or (conv.row is not None and conv not in queued):
            threads.routed.append(Routed(e, conv, decision))
            if assignee is None:
                queued.add(conv)
        if assignee is not None:
            conv.assignee_id = assignee
            conv.changed = True
            if owner is None:
                threads.owners[client_id] = senders.owner_of[client_id] = assignee

    @staticmethod
    def _rule_actions(e: Entry, conv: Conv, decision: Decision, threads: Threads) -> None:
        """A matched rule's priority (for a new request), tags and auto-reply."""
        if decision.priority and conv.row is not None:
            conv.row["priority"] = decision.priority
        if decision.tags:
            tags = threads.tags
            tags[e.client_id] = (*tags.get(e.client_id, ()), *decision.tags)
        if decision.reply and conv.row is not None:
            threads.rule_replies[e] = decision

    # 4. Write the conversations

    def write_conversations(self, fresh: list[Entry], threads: Threads) -> None:
        """The new conversations (their ids onto their Conv), the existing ones
        reopened or assigned, clients' first owners and rule tags, SLA deadlines,
        and the clients who asked for no more campaigns."""
        conn, now = self.conn, self.now
        for conv in threads.new:
            assert conv.row is not None
            conv.row["assignee_id"] = conv.assignee_id
        conv_ids = q.insert_conversations(conn, [c.row for c in threads.new if c.row])
        for conv, conv_id in zip(threads.new, conv_ids, strict=True):
            conv.id = conv_id
        changed = [(c.id, c.assignee_id) for c in threads.joined.values() if c.changed]
        resume_waiting(conn, threads.resumed, now, self.settings.language)
        q.reopen_or_assign(conn, changed, now)
        q.set_owners(conn, threads.owners)
        self.tagged = self.router.add_tags(threads.tags)
        policies = self.settings.policies
        if policies:
            open_deadlines(conn, policies, threads.new, threads.joined, threads.routed, now)
        q.opt_out(conn, [e.client_id for e in fresh if e.message.extras.get("opt_out")])

    # 5. Count the requests (flood control)

    def count_requests(self, fresh: list[Entry], senders: Senders) -> Burst:
        """Which requests the staff see one by one (:mod:`hub.ingest.flood`), and
        each client's requests of the batch added to their minute."""
        limit = self.settings.flood_per_minute
        if limit <= 0:
            return Burst()
        burst = split(fresh, senders.flood, limit, self.settings.language)
        q.count_requests(self.conn, burst.counts, self.now, self.now - MINUTE)
        return burst

    # 6. Write the log

    def write_log(
        self, fresh: list[Entry], threads: Threads, senders: Senders, burst: Burst
    ) -> None:
        """The interactions (each message, each routing decision as an event, each
        auto-reply), the attachments, and the outbox: staff notices, auto-replies."""
        conn, now = self.conn, self.now
        blocked = senders.blocked
        answered = [e for e in fresh if e.client_id not in blocked] if blocked else fresh
        replies = auto_replies(answered, threads.rule_replies, self.settings.auto_replies, now)
        language = self.settings.language
        log = [rows.inbound(e, language) for e in fresh]
        log.extend(rows.routing_event(r, now) for r in threads.routed)
        log.extend(reply.interaction(now) for reply in replies)
        ids = q.insert_interactions(conn, log)
        for e, interaction_id in zip(fresh, ids, strict=False):  # the messages' come first
            e.interaction_id = interaction_id
        reply_ids = ids[len(ids) - len(replies) :] if replies else []
        q.insert_attachments(
            conn,
            [
                {
                    "interaction_id": e.interaction_id,
                    "filename": f.filename,
                    "content_type": f.content_type,
                    "sha256": f.sha256,
                    "size": f.size,
                }
                for e in fresh
                for f in e.pending.files
            ],
        )
        staff = self.settings.staff_channel
        if staff is not None:
            telegram_id = self.router.telegram_id
            notices = staff_notices(staff, fresh, threads.routed, telegram_id, now, burst, language)
            q.insert_notifications(conn, notices)
        q.insert_notifications(
            conn,
            [r.outbox_row(iid, now) for r, iid in zip(replies, reply_ids, strict=True)],
        )

    # 6b. A rating's comment

    def write_comments(self, fresh: list[Entry]) -> None:
        """The comments on ratings, stored, and the staff's notices about them."""
        settings = self.settings
        notices = comments.write(
            self.conn, settings.csat, fresh, settings.staff_channel, settings.language, self.now
        )
        q.insert_notifications(self.conn, notices)

    # 7. Results

    def results(self, seen: Seen, senders: Senders) -> list[IngestResult]:
        """Each message's answer, in batch order; a repeat gets its original's."""
        results, new_clients = seen.results, senders.new
        for e in seen.fresh:
            conv = e.conv
            results[e.index] = IngestResult(
                e.interaction_id,
                e.client_id,
                conv.id if conv is not None else None,
                duplicate=False,
                new_client=e.client_id in new_clients,
                new_conversation=conv is not None and conv.opener is e,
            )
        for index, original in seen.repeats:
            conv = original.conv
            results[index] = IngestResult(
                original.interaction_id,
                original.client_id,
                conv.id if conv is not None else None,
                duplicate=True,
            )
        return [r for r in results if r is not None]


def _hint(e: Entry) -> Pair | None:
    """The username hint a Telegram sender may be known by (``@Name`` imported)."""
    extras = e.message.extras
    name = extras.get("username") if extras and e.message.channel == "telegram" else None
    return (TELEGRAM_HINT, name.lower()) if isinstance(name, str) and name else None
