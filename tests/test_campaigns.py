"""Campaigns over the database (issue 7): segments, scripts and their sandbox, quiet
hours, sending once per client through pauses and restarts, opt-outs, call lists
and their outcomes, reply attribution and A/B results."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select, update

from hub.campaigns.campaigns import Campaigns
from hub.campaigns.scripts import ScriptError, Variant, check, context, pick, render
from hub.campaigns.spec import CampaignError, load_spec, parse_spec, quiet_until
from hub.campaigns.unsubscribe import Unsubscribe
from hub.config import CampaignsSection
from hub.kernel.clock import FrozenClock
from hub.kernel.types import ManagerRef
from storage import Database
from storage import campaigns as q
from storage.models import (
    CampaignTarget,
    Client,
    Identity,
    Interaction,
    Manager,
    Outbox,
    Reminder,
)
from storage.segments import Segment

# 10:00 UTC on a Monday: 13:00 in Moscow, 02:00 in Los Angeles
NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


async def add_client(
    db: Database,
    name: str | None = "Anna Petrova",
    *,
    telegram: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    tags: list[str] | None = None,
    stage: str = "prospect",
    owner: int | None = None,
    source: str | None = None,
    custom: dict[str, Any] | None = None,
    opted_out: bool = False,
    language: str | None = "en",
) -> int:
    async with db.write() as conn:
        client_id = int(
            (
                await conn.execute(
                    insert(Client).returning(Client.id),
                    {
                        "name": name,
                        "stage": stage,
                        "owner_id": owner,
                        "language": language,
                        "source": source,
                        "tags": tags,
                        "custom": custom,
                        "opted_out": opted_out,
                        "created_at": NOW,
                        "updated_at": NOW,
                    },
                )
            ).scalar_one()
        )
        for kind, value in (("telegram", telegram), ("email", email), ("phone", phone)):
            if value is not None:
                await conn.execute(
                    insert(Identity),
                    {"client_id": client_id, "kind": kind, "value": value, "created_at": NOW},
                )
    return client_id


async def add_manager(db: Database, name: str, telegram_id: int, role: str = "manager") -> int:
    async with db.write() as conn:
        return int(
            (
                await conn.execute(
                    insert(Manager).returning(Manager.id),
                    {
                        "name": name,
                        "telegram_id": telegram_id,
                        "role": role,
                        "capacity": 20,
                        "active": True,
                        "away": False,
                        "created_at": NOW,
                    },
                )
            ).scalar_one()
        )


async def log_message(db: Database, client_id: int, direction: str, at: datetime) -> None:
    async with db.write() as conn:
        await conn.execute(
            insert(Interaction),
            {"client_id": client_id, "direction": direction, "text": "hi", "at": at},
        )


def service(db: Database, clock: FrozenClock, **settings: Any) -> Campaigns:
    return Campaigns(
        db,
        clock,
        CampaignsSection.model_validate({"quiet_hours": "", **settings}),
        timezone="Europe/Moscow",
        language="en",
        staff_channel="telegram",
        unsubscribe=Unsubscribe(b"test-key", "https://hub.example.com"),
    )


async def ids(db: Database, segment: Segment) -> list[int]:
    async with db.read() as conn:
        return await q.segment_clients(conn, segment)


# -- segments --------------------------------------------------------------------------


async def test_segment_filters(db: Database) -> None:
    maria = await add_manager(db, "Maria", 1001)
    a = await add_client(db, "A", telegram="1", tags=["vip", "b2b"], stage="client", owner=maria)
    b = await add_client(db, "B", email="b@example.com", tags=["vip"], source="webform:contact")
    c = await add_client(db, "C", phone="+7900", custom={"city": "Kazan", "visits": 3})
    d = await add_client(db, "D", telegram="4", email="d@example.com", stage="lapsed")
    await log_message(db, a, "in", NOW - timedelta(days=40))
    await log_message(db, b, "out", NOW - timedelta(days=2))
    await log_message(db, d, "note", NOW - timedelta(days=1))  # a note is no contact

    assert await ids(db, Segment()) == [a, b, c, d]
    assert await ids(db, Segment(tags=["vip"])) == [a, b]
    assert await ids(db, Segment(tags_all=["vip", "b2b"])) == [a]
    assert await ids(db, Segment(not_tags=["vip"])) == [c, d]
    assert await ids(db, Segment(stages=["client", "lapsed"])) == [a, d]
    assert await ids(db, Segment(owners=[maria])) == [a]
    assert await ids(db, Segment(unowned=True)) == [b, c, d]
    assert await ids(db, Segment(reachable=["telegram"])) == [a, d]
    assert await ids(db, Segment(reachable=["email", "phone"])) == [b, c, d]
    month_ago = NOW - timedelta(days=30)
    assert await ids(db, Segment(last_contact_before=month_ago)) == [a, c, d]
    assert await ids(db, Segment(last_contact_after=month_ago)) == [b]
    assert await ids(db, Segment(sources=["webform:contact"])) == [b]
    assert await ids(db, Segment(custom={"city": ["Kazan", "Omsk"]})) == [c]
    assert await ids(db, Segment(custom={"visits": ["3"]})) == [c]
    assert await ids(db, Segment(tags=["vip"], reachable=["telegram"])) == [a]


# -- scripts ---------------------------------------------------------------------------


def test_scripts_render_fall_back_and_refuse_escapes() -> None:
    ctx = context(
        client_id=7,
        name="Anna Petrova",
        stage="client",
        source=None,
        language="en",
        tags=["vip"],
        custom={"city": "Kazan", "empty": ""},
        owner="Maria",
        identities={"email": "a@example.com"},
    )
    hello = Variant("A", "Hello, {{ client.first_name }} from {{ client.city }}! — {{ manager }}")
    assert render(hello, ctx).text == "Hello, Anna from Kazan! — Maria"
    # A missing field: the plain-text fallback, or empty without one.
    missing = Variant("A", "Hi {{ client.company }}", fallback="Hello!")
    assert render(missing, ctx).text == "Hello!"
    assert render(missing, ctx).fell_back
    assert render(Variant("A", "Hi {{ client.company }}!"), ctx).text == "Hi !"
    # however deep a missing field is reached, it renders empty (never an error)
    assert render(Variant("A", "Hi {{ client.city.name }}!"), ctx).text == "Hi !"
    assert render(Variant("A", "{{ client.nick | default('friend') }}"), ctx).text == "friend"
    for escape in (
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ client.__class__ }}",
        "{{ client['__class__'] }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ '{0.__class__}'.format(client) }}",
    ):
        with pytest.raises(ScriptError, match="not allowed"):
            check(Variant("A", escape))
    # Past the static check, the sandbox itself refuses at render time.
    with pytest.raises(ScriptError, match="sandbox"):
        render(Variant("A", "{{ (client|attr('_' ~ '_class_' ~ '_')).mro() }}"), ctx)
    with pytest.raises(ScriptError, match="line 1"):
        check(Variant("A", "{{ client.name "))


def test_campaign_file_errors_name_the_key(tmp_path: Any) -> None:
    with pytest.raises(CampaignError, match="text"):
        parse_spec({"name": "x"})
    with pytest.raises(CampaignError, match="not allowed"):
        parse_spec({"name": "x", "text": "{{ client.__class__ }}"})
    with pytest.raises(CampaignError, match="mode"):
        parse_spec({"name": "x", "text": "hi", "mode": "fax"})
    with pytest.raises(CampaignError, match="quiet_hours"):
        parse_spec({"name": "x", "text": "hi", "quiet_hours": "late"})
    path = tmp_path / "spring.toml"
    path.write_text(
        'name = "Spring"\nmode = "message"\n[segment]\ntags = ["vip"]\n'
        'last_contact_before = 2026-01-01\n[[variants]]\nname = "A"\n'
        'text = "Hi {{ client.name }}"\n'
        '[[variants]]\nname = "B"\ntext = "Hello"\nweight = 2\n'
    )
    spec = load_spec(path)
    assert [v.name for v in spec.script()] == ["A", "B"]
    assert spec.segment.last_contact_before == date(2026, 1, 1)


def test_variants_are_stable_per_client_and_follow_the_weights() -> None:
    variants = [Variant("A", "a", weight=1), Variant("B", "b", weight=3)]
    picks = [pick(variants, 5, client).name for client in range(4000)]
    assert picks == [pick(variants, 5, client).name for client in range(4000)]
    assert 0.2 < picks.count("A") / 4000 < 0.3


def test_quiet_hours_in_the_clients_zone() -> None:
    moscow, la = ZoneInfo("Europe/Moscow"), ZoneInfo("America/Los_Angeles")
    assert quiet_until(NOW, moscow, "21:00-09:00") is None  # 13:00 there
    # 02:00 in Los Angeles: waits until 09:00 there, 17:00 UTC.
    assert quiet_until(NOW, la, "21:00-09:00") == datetime(2026, 1, 5, 17, 0, tzinfo=UTC)
    # 22:00 the evening before: until 09:00 the next morning.
    evening = datetime(2026, 1, 5, 19, 0, tzinfo=UTC)  # 22:00 Moscow
    assert quiet_until(evening, moscow, "21:00-09:00") == datetime(2026, 1, 6, 6, 0, tzinfo=UTC)
    assert quiet_until(NOW, moscow, "12:00-14:00") == datetime(2026, 1, 5, 11, 0, tzinfo=UTC)
    assert quiet_until(NOW, moscow, "") is None


@pytest.mark.parametrize("window", ["21:75-09:00", "09:60-10:00", "25:00-09:00", "9-18"])
def test_quiet_hours_that_cannot_be_read_are_refused_with_the_config(window: str) -> None:
    """Refused when the config (or a campaign file) is read, never at send time."""
    with pytest.raises(ValueError, match="quiet_hours"):
        CampaignsSection(quiet_hours=window)


# -- sending ---------------------------------------------------------------------------


async def outbox_rows(db: Database) -> list[tuple[str, str, str]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(Outbox.idempotency_key, Outbox.channel, Outbox.status).order_by(Outbox.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def targets(db: Database, campaign_id: int) -> dict[int, tuple[str, str | None]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(CampaignTarget.client_id, CampaignTarget.status, CampaignTarget.reason).where(
                CampaignTarget.campaign_id == campaign_id
            )
        )
        return {int(c): (s, r) for c, s, r in rows}


async def test_a_message_campaign_goes_once_to_each_reachable_client(db: Database) -> None:
    clock = FrozenClock(NOW)
    tg = await add_client(db, "Tg", telegram="501", email="tg@example.com")
    mail = await add_client(db, "Mail", email="mail@example.com")
    nobody = await add_client(db, "Phone only", phone="+7900")
    stopped = await add_client(db, "Stopped", telegram="502", opted_out=True)
    night = await add_client(db, "LA", telegram="503", custom={"timezone": "America/Los_Angeles"})
    campaigns = service(db, clock, quiet_hours="21:00-09:00", batch=2, window=100)
    spec = parse_spec({"name": "Spring", "text": "Hi {{ client.first_name }}", "subject": "News"})
    campaign_id = await campaigns.create(spec, actor="test")

    count, preview = await campaigns.preview(campaign_id, limit=5)
    assert count == 5
    assert [(p.client_id, p.channel, p.skip) for p in preview] == [
        (tg, "telegram", None),
        (mail, "email", None),
        (nobody, None, "unreachable"),
        (stopped, None, "opted_out"),
        (night, "telegram", None),
    ]
    assert "/stop" in preview[0].text
    assert "https://hub.example.com/u?t=" in preview[1].text

    await campaigns.start(campaign_id, actor="test")
    await campaigns.run_once()
    assert await targets(db, campaign_id) == {
        tg: ("queued", None),
        mail: ("queued", None),
        nobody: ("skipped", "unreachable"),
        stopped: ("skipped", "opted_out"),
        night: ("pending", None),  # 02:00 in Los Angeles: deferred, not skipped
    }
    assert await outbox_rows(db) == [
        (f"campaign:{campaign_id}:{tg}", "telegram", "pending"),
        (f"campaign:{campaign_id}:{mail}", "email", "pending"),
    ]
    async with db.read() as conn:
        extras = (
            await conn.execute(select(Outbox.extras).where(Outbox.channel == "email"))
        ).scalar_one()
        logged = (
            await conn.execute(select(func.count()).where(Interaction.direction == "out"))
        ).scalar_one()
    assert extras["unsubscribe_url"].startswith("https://hub.example.com/u?t=")
    assert logged == 2
    # Rounds again, restarts: nothing twice.
    await campaigns.run_once()
    again = service(db, clock, quiet_hours="21:00-09:00")
    await again.run_once()
    assert len(await outbox_rows(db)) == 2
    assert (await campaigns.campaign(campaign_id))[0].status == "running"

    clock.set(datetime(2026, 1, 5, 17, 0, tzinfo=UTC))  # 09:00 in Los Angeles
    await campaigns.run_once()
    assert (await targets(db, campaign_id))[night] == ("queued", None)
    assert len(await outbox_rows(db)) == 3
    assert (await campaigns.campaign(campaign_id))[0].status == "done"


async def test_pause_holds_what_waits_and_start_releases_it(db: Database) -> None:
    clock = FrozenClock(NOW)
    clients = [await add_client(db, f"C{i}", telegram=str(600 + i)) for i in range(10)]
    campaigns = service(db, clock, batch=3, window=4)
    campaign_id = await campaigns.create(parse_spec({"name": "P", "text": "x"}), actor="t")
    await campaigns.start(campaign_id, actor="t")
    await campaigns.run_once()
    assert len(await outbox_rows(db)) == 4  # the window
    await campaigns.pause(campaign_id, actor="t")
    assert {s for _, _, s in await outbox_rows(db)} == {"held"}
    async with db.write() as conn:  # what the dispatcher would do: nothing is due
        await conn.execute(update(Outbox).where(Outbox.status == "pending").values(status="sent"))
    await campaigns.run_once()
    assert len(await outbox_rows(db)) == 4
    await campaigns.start(campaign_id, actor="t")
    assert {s for _, _, s in await outbox_rows(db)} == {"pending"}
    for _ in range(5):
        async with db.write() as conn:
            await conn.execute(
                update(Outbox).where(Outbox.status == "pending").values(status="sent", sent_at=NOW)
            )
        await campaigns.run_once()
    keys = [k for k, _, _ in await outbox_rows(db)]
    assert sorted(keys) == sorted(f"campaign:{campaign_id}:{c}" for c in clients)
    assert (await campaigns.status(campaign_id)).done == 10


async def test_results_per_variant_with_replies_in_the_window(db: Database) -> None:
    clock = FrozenClock(NOW)
    clients = [await add_client(db, f"C{i}", telegram=str(700 + i)) for i in range(40)]
    campaigns = service(db, clock, reply_window_days=3)
    spec = parse_spec(
        {"name": "AB", "variants": [{"name": "A", "text": "a"}, {"name": "B", "text": "b"}]}
    )
    campaign_id = await campaigns.create(spec, actor="t")
    await campaigns.start(campaign_id, actor="t")
    await campaigns.run_once()
    async with db.write() as conn:
        await conn.execute(update(Outbox).values(status="sent", sent_at=NOW))
        await conn.execute(
            update(Outbox)
            .where(Outbox.idempotency_key == f"campaign:{campaign_id}:{clients[0]}")
            .values(status="failed", sent_at=None)
        )
    async with db.read() as conn:
        variant_of = dict(
            (
                await conn.execute(
                    select(CampaignTarget.client_id, CampaignTarget.variant).where(
                        CampaignTarget.campaign_id == campaign_id
                    )
                )
            ).all()
        )
    assert set(variant_of.values()) == {"A", "B"}
    await log_message(db, clients[1], "in", NOW + timedelta(days=1))  # a reply
    await log_message(db, clients[2], "in", NOW + timedelta(days=4))  # too late
    await log_message(db, clients[3], "in", NOW - timedelta(days=1))  # before it
    async with db.write() as conn:
        await conn.execute(update(Client).where(Client.id == clients[4]).values(opted_out=True))
    status = await campaigns.status(campaign_id)
    by = {v.variant: v for v in status.variants}
    expected: dict[str, dict[str, int]] = {
        "A": {"failed": 0, "replied": 0, "opted_out": 0},
        "B": {"failed": 0, "replied": 0, "opted_out": 0},
    }
    expected[variant_of[clients[0]]]["failed"] += 1
    expected[variant_of[clients[1]]]["replied"] += 1
    expected[variant_of[clients[4]]]["opted_out"] += 1
    for name, want in expected.items():
        v = by[name]
        assert (v.failed, v.replied, v.opted_out) == (
            want["failed"],
            want["replied"],
            want["opted_out"],
        )
        share = sum(1 for c in clients if variant_of[c] == name)
        assert v.targeted == share
        assert v.sent == share - want["failed"]
        assert v.delivered == v.sent
    assert status.as_json()["targeted"] == 40


# -- call lists ------------------------------------------------------------------------


async def test_calls_go_to_the_owner_else_evenly_and_outcomes_are_logged(db: Database) -> None:
    clock = FrozenClock(NOW)
    maria = await add_manager(db, "Maria", 2001)
    ivan = await add_manager(db, "Ivan", 2002)
    await add_manager(db, "Mark", 2003, role="marketer")
    owned = [await add_client(db, f"O{i}", phone=f"+7{i}", owner=maria) for i in range(3)]
    free = [await add_client(db, f"F{i}", phone=f"+8{i}") for i in range(5)]
    stopped = await add_client(db, "S", phone="+79", opted_out=True)
    campaigns = service(db, clock)
    spec = parse_spec(
        {"name": "Calls", "mode": "calls", "text": "Offer {{ client.name }} a discount"}
    )
    campaign_id = await campaigns.create(spec, actor="t")
    await campaigns.start(campaign_id, actor="t")
    await campaigns.run_once()
    async with db.read() as conn:
        given = dict(
            (
                await conn.execute(
                    select(CampaignTarget.client_id, CampaignTarget.manager_id).where(
                        CampaignTarget.campaign_id == campaign_id
                    )
                )
            ).all()
        )
        notices = (
            await conn.execute(
                select(Outbox.recipient, Outbox.kind, Outbox.text, Outbox.extras).order_by(
                    Outbox.id
                )
            )
        ).all()
    assert all(given[c] == maria for c in owned)
    # Maria has 3 already: the 5 others go 4 to Ivan, 1 to Maria (8 = 4 + 4).
    assert sorted(given[c] for c in free).count(ivan) == 4
    assert len(notices) == 8  # not the opted-out one
    assert {n[1] for n in notices} == {"call_task"}
    assert "Offer O0 a discount" in notices[0][2] and "+70" in notices[0][2]
    assert (await targets(db, campaign_id))[stopped] == ("skipped", "opted_out")

    task = notices[0][3]["call_task"]
    ivan_ref = ManagerRef(ivan, "Ivan", 2002, "manager")
    maria_ref = ManagerRef(maria, "Maria", 2001, "manager")
    assert "another manager" in await campaigns.record_outcome(task, ivan_ref, "reached", key="k0")
    reply = await campaigns.record_outcome(task, maria_ref, "call_back", key="k1")
    assert "call back later" in reply
    assert await campaigns.record_outcome(task, maria_ref, "call_back", key="k1") == reply
    second = notices[1][3]["call_task"]
    await campaigns.record_outcome(second, maria_ref, "interested", key="k2")
    async with db.read() as conn:
        reminder = (
            await conn.execute(select(Reminder.client_id, Reminder.manager_id, Reminder.due_at))
        ).one()
        events = (
            await conn.execute(
                select(func.count()).where(
                    Interaction.direction == "event", Interaction.external_id.is_not(None)
                )
            )
        ).scalar_one()
    assert tuple(reminder) == (owned[0], maria, NOW + timedelta(hours=24))
    assert events == 2  # one per press, the repeat not again
    status = await campaigns.status(campaign_id)
    counts = {(m, o): n for m, o, n in status.outcomes}
    assert counts[("Maria", "call_back")] == 1
    assert counts[("Maria", "interested")] == 1
    assert counts[("Ivan", "open")] == 4


async def test_marketer_commands_are_for_marketers(db: Database) -> None:
    clock = FrozenClock(NOW)
    await add_client(db, "A", telegram="801")
    campaigns = service(db, clock)
    campaign_id = await campaigns.create(parse_spec({"name": "M", "text": "x"}), actor="t")
    mark = ManagerRef(1, "Mark", 3001, "marketer")
    maria = ManagerRef(2, "Maria", 3002, "manager")
    assert "marketers" in (await campaigns.command(maria, "campaign_start", str(campaign_id)) or "")
    assert (await campaigns.campaign(campaign_id))[0].status == "draft"
    assert await campaigns.command(mark, "inbox", "") is None
    said = await campaigns.command(mark, "campaign_start", str(campaign_id))
    assert said is not None and "running" in said
    assert f"#{campaign_id} M" in (await campaigns.command(mark, "campaigns", "") or "")
    said = await campaigns.command(mark, "campaign_pause", str(campaign_id))
    assert said is not None and "paused" in said


# -- opting out by the link ------------------------------------------------------------


async def test_unsubscribe_link_opts_out_once_and_forgeries_fail(db: Database) -> None:
    clock = FrozenClock(NOW)
    client = await add_client(db, "A", email="a@example.com")
    campaigns = service(db, clock)
    assert campaigns.unsubscribe is not None
    token = campaigns.unsubscribe.token(client, 3)
    other = await add_client(db, "B", email="b@example.com")
    forged = token.replace(f"{client}.", f"{other}.", 1)
    assert await campaigns.opt_out(forged) is None
    assert await campaigns.opt_out("garbage") is None
    assert await campaigns.opt_out(token) is True
    assert await campaigns.opt_out(token) is False
    async with db.read() as conn:
        flags = dict((await conn.execute(select(Client.id, Client.opted_out))).all())
        events = (
            await conn.execute(select(func.count()).where(Interaction.client_id == client))
        ).scalar_one()
    assert flags == {client: True, other: False}
    assert events == 1


# -- the command line ------------------------------------------------------------------


def test_cli_creates_previews_starts_and_reports(
    db_url: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from hub.app import cli

    config = tmp_path / "hub.toml"
    config.write_text(
        f'[storage]\nurl = "{db_url}"\n[admin]\ntoken = "cli-admin-token-0123456789"\n'
        '[campaigns]\nquiet_hours = ""\n'
    )
    spec = tmp_path / "spring.toml"
    spec.write_text('name = "Spring"\ntext = "Hi {{ client.first_name }}"\n')

    def run(*args: str) -> str:
        with pytest.raises(SystemExit) as exit_:
            cli.main(["campaign", "--config", str(config), *args])
        assert exit_.value.code == 0
        return capsys.readouterr().out

    assert run("list").startswith("no campaigns")  # issue 17: said, not silence
    campaign_id = int(run("create", str(spec)).strip())
    assert "segment: 0 clients" in run("preview", str(campaign_id))
    assert "running" in run("start", str(campaign_id), "--lang", "en")
    status = run("status", str(campaign_id), "--json")
    assert '"name": "Spring"' in status and '"targeted": 0' in status
    assert f"{campaign_id}\trunning\tmessage\tSpring" in run("list")
    assert "paused" in run("pause", str(campaign_id), "--lang", "en")


# -- the admin API ---------------------------------------------------------------------


async def test_admin_api_creates_starts_pauses_and_reports(db: Database) -> None:
    import aiohttp

    from hub.admin.api import AdminServer, create_app

    clock = FrozenClock(NOW)
    await add_client(db, "A", telegram="901")
    campaigns = service(db, clock)
    server = AdminServer(create_app(db, "api-token-0123456789", lambda: True, campaigns=campaigns))
    await server.start("127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.port}/api/campaigns"
    auth = {"Authorization": "Bearer api-token-0123456789"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(base, json={"name": "X", "text": "hi"}) as response:
                assert response.status == 401
            async with http.post(base, json={"name": "X"}, headers=auth) as response:
                assert response.status == 400
                assert "text" in (await response.json())["error"]
            async with http.post(
                base,
                data='name = "X"\ntext = "Hi {{ client.name }}"\n',
                headers={**auth, "Content-Type": "application/toml"},
            ) as response:
                assert response.status == 201
                campaign_id = (await response.json())["id"]
            async with http.get(f"{base}/{campaign_id}/preview", headers=auth) as response:
                preview = await response.json()
            assert preview["segment"] == 1
            assert preview["messages"][0]["text"].startswith("Hi A")
            async with http.post(f"{base}/{campaign_id}/start", headers=auth) as response:
                assert (await response.json())["status"] == "running"
            async with http.post(f"{base}/{campaign_id}/pause", headers=auth) as response:
                assert (await response.json())["status"] == "paused"
            async with http.get(f"{base}/{campaign_id}", headers=auth) as response:
                status = await response.json()
            assert status["targeted"] == 1 and status["variants"][0]["variant"] == "A"
            async with http.get(f"{base}/999", headers=auth) as response:
                assert response.status == 404
    finally:
        await server.stop()


def test_signed_links_naming_an_id_beyond_the_columns_range_are_no_links() -> None:
    """A token the hub never made (an id no row can have) is refused before the
    database is asked: PostgreSQL refuses to compare an integer column with it."""
    from hub.desk.rating_links import RatingLinks

    unsubscribe = Unsubscribe(b"test-key", "https://hub.example.com")
    assert unsubscribe.verify(unsubscribe.token(7, 3)) == (7, 3)
    assert unsubscribe.verify(unsubscribe.token(2**31, 3)) is None
    assert unsubscribe.verify(unsubscribe.token(7, 0)) is None
    links = RatingLinks(b"test-key", "https://hub.example.com")
    assert links.verify(links.token(7, 5)) == (7, 5)
    assert links.verify(links.token(2**31, 5)) is None
