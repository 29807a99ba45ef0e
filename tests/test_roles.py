"""Roles: a manager sees and answers the clients that are theirs, their team's
or nobody's yet; supervisors see all and reassign; marketers do not handle
clients; every refusal and every read of a card is in the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import insert, select, update

from hub.clients.attachments import AttachmentStore
from hub.config import ManagerSection
from hub.desk.desk import Desk, NotAllowed
from hub.ingest.ingestor import Ingestor
from hub.kernel.clock import FrozenClock
from hub.kernel.identities import identity
from hub.kernel.types import MARKETERS, OVERSEERS, Channel, InboundMessage, ManagerRef, Role
from storage import Database
from storage import campaigns as campaigns_q
from storage import sla as sla_q
from storage.models import Audit, Conversation, Manager, Outbox
from tests.test_ingest import T0, rows

ANNA = identity("telegram", 4242, "Anna Client")
BORIS = identity("telegram", 4343, "Boris Client")
CLARA = identity("telegram", 4444, "Clara Client")


@dataclass
class Team:
    desk: Desk
    ingestor: Ingestor
    sales: ManagerRef  # Sasha, team "sales"
    sales2: ManagerRef  # Semyon, team "sales"
    support: ManagerRef  # Polina, team "support"
    boss: ManagerRef  # Vera, supervisor
    marketer: ManagerRef  # Mark


async def _add(db: Database, name: str, tg: int, role: str, team: str | None) -> ManagerRef:
    async with db.write() as conn:
        mid = (
            await conn.execute(
                insert(Manager)
                .values(
                    name=name,
                    telegram_id=tg,
                    role=role,
                    created_at=T0,
                    away=True,
                    attrs={"team": team, "language": "en"},
                )
                .returning(Manager.id)
            )
        ).scalar_one()
    return ManagerRef(int(mid), name, tg, role, "en", team)


@pytest.fixture
async def team(db: Database, tmp_path: Path) -> AsyncIterator[Team]:
    files = AttachmentStore(tmp_path / "files", 10**6)
    clock = FrozenClock(T0)
    people = Team(
        Desk(db, clock, files, language="en", timezone="UTC", region="RU"),
        Ingestor(db, clock, files, staff_channel="telegram"),
        await _add(db, "Sasha", 1, "manager", "sales"),
        await _add(db, "Semyon", 2, "manager", "sales"),
        await _add(db, "Polina", 3, "manager", "support"),
        await _add(db, "Vera", 4, "supervisor", None),
        await _add(db, "Mark", 5, "marketer", None),
    )
    await people.ingestor.start()
    try:
        yield people
    finally:
        await people.ingestor.stop()


async def _write(t: Team, who: object, n: int) -> int:
    result = await t.ingestor(
        InboundMessage(Channel.TELEGRAM, "bot", f"m{n}", (who,), T0, text="hello")  # type: ignore[arg-type]
    )
    return result.client_id


async def test_a_manager_acts_on_their_teams_clients_only(db: Database, team: Team) -> None:
    t = team
    anna = await _write(t, ANNA, 1)
    # Nobody's yet: anyone may take it. Sasha of sales does.
    assert await t.desk.act(anna, t.sales, "take") == "Taken by Sasha"
    # Another team's manager can neither answer nor act nor read the card.
    with pytest.raises(NotAllowed, match="another team"):
        await t.desk.answer(anna, "hi", manager=t.support, key="k1")
    refused = await t.desk.act(anna, t.support, "resolve")
    assert refused.startswith("This client belongs to another team")
    assert await t.desk.card_for(t.support, anna) is None
    # Sasha's teammate may; so may the supervisor, who also reassigns.
    await t.desk.answer(anna, "Здравствуйте", manager=t.sales2, key="k2")
    assert (await t.desk.card_for(t.boss, anna)) is not None
    assert await t.desk.act(anna, t.boss, "transfer", "Polina") == "Transferred to Polina by Vera"
    # Now it is support's: Polina may answer.
    await t.desk.answer(anna, "Я помогу", manager=t.support, key="k3")
    # Marketers do not handle client conversations.
    assert (await t.desk.act(anna, t.marketer, "take")).startswith("This client belongs")
    replies = await rows(db, select(Outbox.text).where(Outbox.kind == "reply").order_by(Outbox.id))
    assert [r.text for r in replies] == ["Здравствуйте", "Я помогу"]
    [conv] = await rows(db, select(Conversation.assignee_id))
    assert conv.assignee_id == t.support.id


async def test_find_shows_only_what_the_manager_may_see_and_reads_are_audited(
    db: Database, team: Team
) -> None:
    t = team
    anna = await _write(t, ANNA, 1)
    boris = await _write(t, BORIS, 2)
    await t.desk.act(anna, t.sales, "take")
    await t.desk.act(boris, t.support, "take")
    clara = await _write(t, CLARA, 3)  # nobody's yet: every manager may see her
    seen = [c.id for c in await t.desk.find(t.sales, "Client")]
    assert sorted(seen) == sorted([anna, clara])
    assert sorted(c.id for c in await t.desk.find(t.support, "Client")) == sorted([boris, clara])
    everyone = sorted([anna, boris, clara])
    assert sorted(c.id for c in await t.desk.find(t.boss, "Client")) == everyone
    assert await t.desk.find(t.marketer, "Client") == []
    assert await t.desk.card_for(t.sales, boris) is None
    audit = await rows(
        db,
        select(Audit.actor, Audit.action, Audit.object_id)
        .where(Audit.action.in_(("read", "refused", "search")))
        .order_by(Audit.id),
    )
    assert [tuple(a) for a in audit] == [
        ("telegram:1", "search", None),
        ("telegram:3", "search", None),
        ("telegram:4", "search", None),
        ("telegram:5", "search", None),
        ("telegram:1", "refused", boris),
    ]


async def test_without_teams_everybody_is_one_team(db: Database, team: Team) -> None:
    t = team
    async with db.write() as conn:
        await conn.execute(update(Manager).values(attrs={"language": "en"}))
    sales = ManagerRef(t.sales.id, "Sasha", 1, "manager", "en", None)
    support = ManagerRef(t.support.id, "Polina", 3, "manager", "en", None)
    anna = await _write(t, ANNA, 1)
    await t.desk.act(anna, sales, "take")
    await t.desk.answer(anna, "hi", manager=support, key="k1")  # allowed: one team


def test_the_roles_are_one_vocabulary() -> None:
    """The config, the desk and campaigns speak of hub.kernel.types.Role; storage,
    which imports nothing of the hub, spells the two roles it reads the same way."""
    people = [r for r in Role if r is not Role.INTEGRATION]
    assert [ManagerSection(name="M", telegram_id=1, role=r).role for r in people] == people
    with pytest.raises(ValidationError, match="not a person's role"):
        ManagerSection(name="M", telegram_id=1, role=Role.INTEGRATION)
    assert (sla_q.SUPERVISOR, campaigns_q.MANAGER) == (Role.SUPERVISOR, Role.MANAGER)
    assert {"supervisor", "admin"} == OVERSEERS
    assert {"marketer", "admin"} == MARKETERS
