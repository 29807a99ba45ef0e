"""Stage rules (issue 18): each kind of rule moving a client, with its rule and
reason on the timeline and ``stage.moved`` queued for a webhook; a lapsed client
back up the ladder when they write or buy again (the lapse round keeping the
stage they had); a person's move the same day left alone; unknown stage names
refused in the config's routing rules and in campaign files."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from hub.campaigns.spec import CampaignError, load_spec
from hub.clients import stage_rules
from hub.clients.book import ClientBook
from hub.clients.event_writer import EventRecorder
from hub.clients.events import parse
from hub.clients.stage_rules import StageRules, compile_stage_rules
from hub.clients.stages import move
from hub.config import ConfigError
from hub.config import parse as parse_config
from hub.ingest.ingestor import Ingestor
from hub.ingest.rules import compile_rules
from hub.kernel.clock import FrozenClock
from hub.kernel.identities import identity
from hub.kernel.types import Channel
from storage import Database, webhooks
from storage.models import Client, Interaction, Outbox
from tests.test_desk import World, world
from tests.test_ingest import T0, message, rows

__all__ = ["world"]  # the desk's fixture, used here

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "admin-secret-token-for-tests"

LADDER_RULES: list[dict[str, Any]] = [
    {"name": "first purchase", "when": "purchase", "to": "first_time_buyer"},
    {"name": "second purchase", "when": "purchase", "count": 2, "to": "repeat_buyer"},
    {
        "name": "big spender",
        "when": "total",
        "kinds": ["purchase", "payment"],
        "amount_at_least": 1000,
        "currency": "RUB",
        "within_days": 30,
        "to": "client",
    },
    {"name": "happy", "when": "rating", "score_at_least": 5, "to": "supporter"},
    {
        "name": "unhappy",
        "when": "rating",
        "score_at_most": 2,
        "to": "client",
        "from": ["supporter"],
    },
    {"name": "referral", "when": "tag", "tag": "referral", "to": "advocate"},
]


def config(rules: list[dict[str, Any]], **more: Any) -> Any:
    return parse_config(
        {
            "admin": {"token": TOKEN},
            "hub": {"timezone": "Europe/Moscow"},
            "stages": {"rules": rules},
        }
        | more
    )


def ladder(rules: list[dict[str, Any]] = LADDER_RULES) -> StageRules:
    return compile_stage_rules(config(rules))


async def stage_of(db: Database, client_id: int) -> str:
    [row] = await rows(db, select(Client.stage).where(Client.id == client_id))
    return str(row.stage)


async def moves(db: Database, client_id: int) -> list[str]:
    """The stage moves on the client's timeline, oldest first."""
    found = await rows(
        db,
        select(Interaction.text, Interaction.extras)
        .where(Interaction.client_id == client_id, Interaction.direction == "event")
        .order_by(Interaction.id),
    )
    return [r.text for r in found if (r.extras or {}).get("stage_move")]


class Events:
    """Business events recorded at a moment of the test's clock."""

    def __init__(self, db: Database, rules: StageRules, clock: FrozenClock) -> None:
        self.recorder = EventRecorder(db, clock, lambda: rules)
        self.n = 0

    async def __call__(self, client: dict[str, Any], kind: str = "purchase", **more: Any) -> int:
        self.n += 1
        event = parse({"id": f"e{self.n}", "kind": kind, "client": client, **more})
        return (await self.recorder.record(event, actor="test")).client_id


@asynccontextmanager
async def ingesting(
    db: Database, tmp_path: Path, rules: StageRules, clock: FrozenClock, routing: Any = None
) -> AsyncIterator[Ingestor]:
    from hub.clients.attachments import AttachmentStore

    files = AttachmentStore(tmp_path / "files", 10**6)
    ingestor = Ingestor(db, clock, files, stage_rules=rules, rules=routing)
    await ingestor.start()
    try:
        yield ingestor
    finally:
        await ingestor.stop()


async def test_purchases_move_a_client_up_with_the_rule_and_reason_on_the_timeline(
    db: Database,
) -> None:
    async with db.write() as conn:
        await webhooks.sync(conn, [("crm", ["stage.moved"])])
    record = Events(db, ladder(), FrozenClock(T0))
    client = await record({"email": "buyer@x.org"}, amount=100, currency="RUB")
    assert await stage_of(db, client) == "first_time_buyer"
    await record({"email": "buyer@x.org"}, kind="order")  # not a purchase: counts for nothing
    assert await stage_of(db, client) == "first_time_buyer"
    await record({"id": client}, amount=100, currency="RUB")
    assert await stage_of(db, client) == "repeat_buyer"
    await record({"id": client}, amount=100, currency="RUB")  # the third: no rule
    assert await moves(db, client) == [
        "stage: prospect → first_time_buyer (rule first purchase: purchase #1)",
        "stage: first_time_buyer → repeat_buyer (rule second purchase: purchase #2)",
    ]
    queued = await rows(db, select(Outbox.text).where(Outbox.recipient == "crm"))
    assert len(queued) == 2 and all('"type":"stage.moved"' in r.text for r in queued)
    assert '"to":"repeat_buyer"' in queued[1].text


async def test_a_total_per_currency_within_its_days(db: Database) -> None:
    clock = FrozenClock(T0)
    record = Events(db, ladder(LADDER_RULES[2:3]), clock)
    client = await record({"email": "t@x.org"}, kind="payment", amount=600, currency="RUB")
    await record({"id": client}, amount=900, currency="USD")  # another currency
    at = (T0 - timedelta(days=40)).isoformat()
    await record({"id": client}, amount=900, currency="RUB", at=at)  # before the 30 days
    assert await stage_of(db, client) == "prospect"
    await record({"id": client}, amount="400.00", currency="RUB")
    assert await stage_of(db, client) == "client"
    assert (await moves(db, client))[-1] == (
        "stage: prospect → client (rule big spender: total 1000.00 RUB in 30 days)"
    )


async def test_ratings_move_up_and_down(db: Database) -> None:
    rules = ladder()
    record = Events(db, rules, FrozenClock(T0))
    client = await record({"email": "r@x.org"}, kind="meeting")
    async with db.write() as conn:
        done = await stage_rules.after_rating(conn, rules, client, 5, T0)
    assert [(m.old, m.new) for m in done] == [("prospect", "supporter")]
    async with db.write() as conn:
        assert await stage_rules.after_rating(conn, rules, client, 3, T0) == []
        await stage_rules.after_rating(conn, rules, client, 1, T0)
    assert await stage_of(db, client) == "client"
    assert (await moves(db, client))[-1] == "stage: supporter → client (rule unhappy: rating 1)"


async def test_a_tag_added_by_a_routing_rule_and_by_an_import(db: Database, tmp_path: Path) -> None:
    routed = config(
        LADDER_RULES[-1:],
        routing={"rules": [{"name": "friends", "keywords": ["friend"], "add_tags": ["referral"]}]},
    )
    rules, clock = compile_stage_rules(routed), FrozenClock(T0)
    async with ingesting(db, tmp_path, rules, clock, compile_rules(routed, {})) as ingest:
        plain = await ingest(message(Channel.EMAIL, "<1@x>", identity("email", "a@x.org")))
        told = await ingest(
            message(Channel.EMAIL, "<2@x>", identity("email", "b@x.org"), text="a friend said")
        )
    assert await stage_of(db, plain.client_id) == "prospect"
    assert await stage_of(db, told.client_id) == "advocate"
    assert await moves(db, told.client_id) == [
        "stage: prospect → advocate (rule referral: tag referral)"
    ]

    book = ClientBook(db, clock, stage_rules=lambda: rules)
    await book.import_csv(io.StringIO("email,tags\na@x.org,referral;vip\nc@x.org,vip\n"))
    assert await stage_of(db, plain.client_id) == "advocate"
    [vip] = await rows(db, select(Client.stage).where(Client.source == "import"))
    assert vip.stage == "prospect"


async def test_a_tag_at_the_desk_and_a_stage_set_there_by_hand(world: World) -> None:
    world.desk.stage_rules = ladder()
    first = await world.write(identity("telegram", 501))
    second = await world.write(identity("telegram", 502))
    assert await world.desk.act(first.client_id, world.maria, "tag", "referral") == (
        "Tags: referral"
    )
    assert await stage_of(world.db, first.client_id) == "advocate"
    await world.desk.act(second.client_id, world.maria, "stage", "partner")
    await world.desk.act(second.client_id, world.maria, "tag", "referral")
    assert await stage_of(world.db, second.client_id) == "partner"  # hers, today


async def test_the_lapse_round_keeps_the_stage_and_a_return_brings_it_back(
    db: Database, tmp_path: Path
) -> None:
    rules, clock = ladder(), FrozenClock(T0)
    async with ingesting(db, tmp_path, rules, clock) as ingest:
        writer = await ingest(message(Channel.EMAIL, "<1@x>", identity("email", "w@x.org")))
        buyer = await ingest(message(Channel.TELEGRAM, "t1", identity("telegram", 77)))
    record = Events(db, rules, clock)
    await record({"id": writer.client_id}, amount=1, currency="RUB")
    await record({"id": writer.client_id}, amount=1, currency="RUB")
    assert await stage_of(db, writer.client_id) == "repeat_buyer"

    clock.advance(timedelta(days=200))
    assert await ClientBook(db, clock).lapse(180, timezone="Europe/Moscow") == 2
    lapsed = await rows(db, select(Client.stage, Client.stage_before_lapse).order_by(Client.id))
    assert [(r.stage, r.stage_before_lapse) for r in lapsed] == [
        ("lapsed", "repeat_buyer"),
        ("lapsed", "prospect"),
    ]

    async with ingesting(db, tmp_path, rules, clock) as ingest:
        await ingest(message(Channel.EMAIL, "<2@x>", identity("email", "w@x.org"), at=clock.now()))
    assert await stage_of(db, writer.client_id) == "repeat_buyer"
    assert (await moves(db, writer.client_id))[-1] == (
        "stage: lapsed → repeat_buyer (rule return: wrote again)"
    )
    await record({"telegram_id": 77}, amount=5, currency="RUB")  # buys again
    assert await moves(db, buyer.client_id) == [
        "stage: prospect → lapsed (no contact for 180 days)",
        "stage: lapsed → prospect (rule return: purchase again)",
        "stage: prospect → first_time_buyer (rule first purchase: purchase #1)",
    ]


async def test_a_return_rule_takes_the_client_to_its_stage_when_none_was_kept(
    db: Database, tmp_path: Path
) -> None:
    rules, clock = (
        ladder([{"name": "came back", "when": "return", "to": "client"}]),
        FrozenClock(T0),
    )
    record = Events(db, rules, clock)
    client = await record({"email": "old@x.org"}, kind="call")
    async with db.write() as conn:  # lapsed before the hub kept the stage
        await conn.execute(update(Client).values(stage="lapsed"))
    await record({"id": client}, kind="call")  # not a kind the rule counts
    assert await stage_of(db, client) == "lapsed"
    await record({"id": client})
    assert (await moves(db, client)) == ["stage: lapsed → client (rule came back: purchase again)"]


async def test_a_move_by_hand_stands_for_the_rest_of_its_day(db: Database) -> None:
    clock = FrozenClock(T0)  # 13:00 in Moscow
    record = Events(db, ladder(), clock)
    client = await record({"email": "h@x.org"}, kind="call")
    async with db.write() as conn:
        await move(conn, client, "prospect", "partner", who="Anna", why="by hand", now=T0)
    clock.advance(timedelta(hours=10))  # 23:00 in Moscow: the same day
    await record({"id": client}, amount=1, currency="RUB")
    assert await stage_of(db, client) == "partner"
    clock.advance(timedelta(hours=2))  # the next day
    await record({"id": client}, amount=1, currency="RUB")
    assert await stage_of(db, client) == "repeat_buyer"  # the rule moves down, as told
    [row] = await rows(db, select(Client.stage_by_hand_at).where(Client.id == client))
    assert row.stage_by_hand_at == T0


# --- the config ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"when": "total", "to": "client"}, "when = 'total' needs amount_at_least and currency"),
        ({"when": "purchase", "to": "client", "tag": "x"}, "when = 'purchase' takes no tag"),
        (
            {"when": "rating", "to": "client"},
            "when = 'rating' needs score_at_least or score_at_most",
        ),
        ({"when": "tag", "tag": "x"}, "when = 'tag' needs to"),
        ({"when": "return", "from": ["prospect"]}, "when = 'return' takes no from"),
        (
            {"when": "rating", "to": "client", "score_at_least": 4, "score_at_most": 2},
            "score_at_least (4) is over score_at_most (2)",
        ),
    ],
)
def test_a_stage_rule_takes_the_keys_of_its_kind(rule: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config([rule])
    assert caught.value.problems == [f"stages.rules[0]: {problem}"]


def test_unknown_stages_are_refused_with_their_key_path(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[admin]\ntoken = "{TOKEN}"\n'
        '[[routing.rules]]\nname = "buyers"\nstages = ["client", "customer"]\n'
        '[[stages.rules]]\nwhen = "tag"\ntag = "x"\nto = "vip"\n',
        "utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "hub", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 2
    stages = "stages: prospect, first_time_buyer, repeat_buyer, client, supporter, advocate"
    assert done.stdout.splitlines() == [
        f"routing.rules[0].stages[1]: unknown stage 'customer'; {stages}, partner, lapsed",
        f"stages.rules[0].to: unknown stage 'vip'; {stages}, partner, lapsed",
    ]


def test_a_campaign_segment_with_an_unknown_stage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spring.toml"
    path.write_text(
        'name = "spring"\nchannel = "telegram"\ntext = "Hello"\n'
        '[segment]\nstages = ["client", "customers"]\n',
        "utf-8",
    )
    with pytest.raises(CampaignError, match=r"segment\.stages\.1: unknown stage 'customers'"):
        load_spec(path)
