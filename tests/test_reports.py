"""Reports (issue 8): each figure against hand-computed values on a fixed data set put
in directly, on SQLite and PostgreSQL; the pure statistics; text, CSV, JSON; the
charts as PNG files; ``hub report``; the admin API; ``/report week`` in Telegram."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import insert, text

from channels.telegram.staff import StaffSide
from hub.admin.api import AdminServer, create_app
from hub.app import cli
from hub.clients import stages
from hub.clients.attachments import AttachmentStore
from hub.config import TelegramSection
from hub.desk.desk import Desk
from hub.kernel.clock import FrozenClock
from hub.reports import charts
from hub.reports.reporter import Reporter
from hub.reports.reports import (
    Period,
    Report,
    ReportError,
    as_csv,
    as_text,
    duration,
    median,
    percentile,
    period,
)
from storage import Database
from storage.models import (
    Campaign,
    CampaignTarget,
    Client,
    Conversation,
    Deadline,
    Interaction,
    Manager,
    Outbox,
)
from tests.botapi import BotApiServer, Limits
from tests.test_telegram_staff import make_bot, unpaced

MSK = ZoneInfo("Europe/Moscow")  # UTC+3: days and hours are Moscow's
NOW = datetime(2026, 1, 10, 18, 0, tzinfo=UTC)  # Saturday 21:00 in Moscow
TOKEN = "reports-token-5QeA0"
PNG = b"\x89PNG\r\n\x1a\n"


def at(day: int, hour: int, minute: int = 0, second: float = 0) -> datetime:
    """A UTC time in January 2026 (December 2025 for days < 1)."""
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
        days=day - 1, hours=hour, minutes=minute, seconds=second
    )


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


# -- the data set ------------------------------------------------------------------
#
# Conversations (UTC; Moscow is +3):
#   c1 telegram Anna   opened 05 10:00, answered +10 min, resolved +2 h
#   c2 telegram Anna   opened 05 11:00, answered +30 min, open
#   c3 email    Boris  opened 06 09:00, answered +60 min, resolved +1 day
#   c4 email    Anna   opened 06 22:00 (07 01:00 in Moscow), answered +20 min, pending
#   c5 webform  nobody opened 08 08:00, unanswered, open
#   c6 telegram Boris  opened Jan 2 (before the week), resolved 05 10:00 (+3 days)
#   c7 email    Boris  opened 03 20:00 (23:00 in Moscow: before the week), open
#   c8 telegram Anna   opened 03 21:30 (04 00:30 in Moscow), answered +40 min, resolved +4 h
# The week: Moscow days 04..10, from 03 21:00 UTC to NOW.

CONVERSATIONS = [
    # id, client, channel, manager, status, opened, answered after, resolved after
    (1, 1, "telegram", 1, "resolved", at(5, 10), 600, 7200),
    (2, 2, "telegram", 1, "open", at(5, 11), 1800, None),
    (3, 3, "email", 2, "resolved", at(6, 9), 3600, 86400),
    (4, 3, "email", 1, "pending", at(6, 22), 1200, None),
    (5, 4, "webform", None, "open", at(8, 8), None, None),
    (6, 1, "telegram", 2, "resolved", at(2, 10), 300, 259200),
    (7, 2, "email", 2, "open", at(3, 20), None, None),
    (8, 4, "telegram", 1, "resolved", at(3, 21, 30), 2400, 14400),
]

DEADLINES = [
    # conversation, kind, policy, due, step, status
    (1, "first_response", "standard", at(5, 10, 30), 0, "met"),
    (2, "first_response", "standard", at(5, 11, 15), 2, "met"),
    (3, "resolution", "vip", at(6, 17), 3, "met"),
    (5, "first_response", "standard", at(8, 8, 30), 2, "open"),
    (7, "first_response", "standard", at(3, 20, 30), 2, "open"),  # before the week
    (2, "next_response", "standard", at(11, 10), 0, "open"),  # not due yet
    (4, "next_response", "standard", at(7, 10), 1, "open"),
]

INTERACTIONS = [
    # client, conversation, direction, channel, at, text
    (1, 1, "in", "telegram", at(5, 10), "hi"),
    (1, 1, "out", "telegram", at(5, 10, 10), "hello"),
    (1, 1, "in", "telegram", at(5, 10, 14, 59.9), "still there?"),
    (2, 2, "in", "telegram", at(5, 11), "hi"),
    (2, 2, "out", "telegram", at(5, 11, 30), "hello"),
    (3, 3, "in", "email", at(6, 9), "order"),
    (3, 3, "out", "email", at(6, 10), "re: order"),
    (3, 4, "in", "email", at(6, 22), "another"),
    (4, 5, "in", "webform", at(8, 8), "form"),
    (4, 8, "in", "telegram", at(3, 21, 30), "night"),
    (4, 8, "out", "telegram", at(3, 22, 10), "morning"),
    (2, 7, "in", "email", at(3, 20), "before the week"),
    (1, 1, "note", "telegram", at(5, 10, 5), "a note"),
    (1, None, "event", None, at(5, 10, 1), "Taken by Anna"),
]

STAGE_MOVES = [
    # client, at, from, to, why (logged by hub.clients.stages.move, as the hub does)
    (1, at(5, 12), "prospect", "first_time_buyer", "bought"),
    (3, at(7, 9), "prospect", "first_time_buyer", "first order"),
    (2, at(8, 9), "first_time_buyer", "lapsed", "no contact 90 days"),
    (2, at(2, 9), "client", "supporter", "by hand"),  # before the week
]


async def populate(db: Database) -> None:
    async with db.write() as conn:
        for n, (name, active, capacity) in enumerate(
            (("Anna", True, 20), ("Boris", True, 10), ("Vera", False, 5)), start=1
        ):
            await conn.execute(
                insert(Manager).values(
                    id=n,
                    name=name,
                    telegram_id=1000 + n,
                    role="manager",
                    capacity=capacity,
                    active=active,
                    away=False,
                    created_at=at(1, 0),
                )
            )
        for n in range(1, 5):
            await conn.execute(
                insert(Client).values(
                    id=n,
                    name=f"Client {n}",
                    stage="prospect",
                    opted_out=False,
                    created_at=at(1, 0),
                    updated_at=at(1, 0),
                )
            )
        for cid, client, channel, manager, status, opened, answer, resolve in CONVERSATIONS:
            await conn.execute(
                insert(Conversation).values(
                    id=cid,
                    client_id=client,
                    channel=channel,
                    account="main",
                    status=status,
                    assignee_id=manager,
                    priority="normal",
                    created_at=opened,
                    updated_at=opened,
                    first_response_at=opened + timedelta(seconds=answer) if answer else None,
                    resolved_at=opened + timedelta(seconds=resolve) if resolve else None,
                )
            )
        for conversation, kind, policy, due, step, status in DEADLINES:
            client = next(c[1] for c in CONVERSATIONS if c[0] == conversation)
            await conn.execute(
                insert(Deadline).values(
                    conversation_id=conversation,
                    client_id=client,
                    policy=policy,
                    kind=kind,
                    started_at=due - timedelta(hours=1),
                    remind_at=due - timedelta(minutes=10),
                    due_at=due,
                    step=step,
                    status=status,
                    created_at=due - timedelta(hours=1),
                )
            )
        for client, conversation, direction, channel, moment, body in INTERACTIONS:
            await conn.execute(
                insert(Interaction).values(
                    client_id=client,
                    conversation_id=conversation,
                    direction=direction,
                    channel=channel,
                    text=body,
                    at=moment,
                )
            )
        for client, moment, old, new, why in STAGE_MOVES:
            await stages.move(conn, client, old, new, who="Anna", why=why, now=moment)


@pytest.fixture
async def reporter(db: Database) -> Reporter:
    await populate(db)
    return Reporter(db, FrozenClock(NOW), timezone="Europe/Moscow", language="en")


@pytest.fixture
async def week(reporter: Reporter) -> Report:
    return await reporter.report(reporter.period("week"))


def rows(report: Report, key: str) -> list[tuple[Any, ...]]:
    return list(report.table(key).rows)


# -- pure functions ----------------------------------------------------------------


def test_median_and_p90_interpolate_between_ranks() -> None:
    assert median([]) is None and percentile([], 0.9) is None
    assert median([5.0]) == 5.0 and percentile([5.0], 0.9) == 5.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert percentile([600, 1200, 1800, 2400, 3600], 0.9) == pytest.approx(3120)
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) == pytest.approx(9.1)
    assert percentile([3.0, 1.0], 0.0) == 1.0 and percentile([3.0, 1.0], 1.0) == 3.0
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)


def test_durations_read_at_a_glance() -> None:
    assert [duration(s) for s in (None, 0, 44.6, 60, 3599, 3600, 3900, 86400 * 2 + 7200)] == [
        "—",
        "0s",
        "45s",
        "1m",
        "59m",
        "1h 00m",
        "1h 05m",
        "2d 02h",
    ]


def test_periods_are_local_days() -> None:
    week = period("week", NOW, MSK)
    assert (week.first, week.last) == (date(2026, 1, 4), date(2026, 1, 10))
    assert week.start == at(3, 21) and week.end == NOW
    assert len(week.days()) == 7
    month = period("month", NOW, MSK)
    assert month.first == date(2025, 12, 12) and month.end == NOW
    assert period(None, NOW, MSK) == week
    given = period(None, NOW, MSK, first=date(2026, 1, 5), last=date(2026, 1, 6))
    assert (given.start, given.end) == (at(4, 21), at(6, 21))
    for bad in (
        lambda: period("year", NOW, MSK),
        lambda: period(None, NOW, MSK, first=date(2026, 1, 5)),
        lambda: period(None, NOW, MSK, first=date(2026, 1, 6), last=date(2026, 1, 5)),
        lambda: period("week", NOW, MSK, first=date(2026, 1, 5), last=date(2026, 1, 6)),
    ):
        with pytest.raises(ReportError):
            bad()


async def test_stage_moves_are_read_from_the_events_extras(
    reporter: Reporter, db: Database
) -> None:
    """A move is counted from what ``stages.move`` put in the event's extras; an
    event that only reads like a move (typed by hand) is not one."""
    async with db.write() as conn:
        await conn.execute(
            insert(Interaction).values(
                client_id=4, direction="event", text="stage: prospect → client", at=at(6, 12)
            )
        )
        await stages.move(conn, 4, "prospect", "client", who="Anna", why="bought", now=at(6, 13))
    report = await reporter.report(reporter.period("week"))
    assert rows(report, "stage_moves") == [
        ("prospect", "first_time_buyer", 2),
        ("first_time_buyer", "lapsed", 1),
        ("prospect", "client", 1),
    ]


# -- the figures -------------------------------------------------------------------


async def test_first_response_by_manager_channel_and_day(week: Report) -> None:
    # manager, requests, answered, median, p90
    assert rows(week, "first_response_by_manager") == [
        ("Anna", 4, 4, 1500, pytest.approx(2220)),
        ("Boris", 1, 1, 3600, 3600),
        (None, 1, 0, None, None),
    ]
    assert rows(week, "first_response_by_channel") == [
        ("email", 2, 2, 2400, pytest.approx(3360)),
        ("telegram", 3, 3, 1800, pytest.approx(2280)),
        ("webform", 1, 0, None, None),
    ]
    assert rows(week, "first_response_by_day") == [
        ("2026-01-04", 1, 1, 2400, 2400),
        ("2026-01-05", 2, 2, 1200, pytest.approx(1680)),
        ("2026-01-06", 1, 1, 3600, 3600),
        ("2026-01-07", 1, 1, 1200, 1200),
        ("2026-01-08", 1, 0, None, None),
        ("2026-01-09", 0, 0, None, None),
        ("2026-01-10", 0, 0, None, None),
    ]
    s = week.summary
    assert (s.requests, s.first_response.count) == (6, 5)
    assert s.first_response.median == 1800
    assert s.first_response.p90 == pytest.approx(3120)


async def test_resolution_by_manager_channel_and_day(week: Report) -> None:
    assert rows(week, "resolution_by_manager") == [
        ("Anna", 2, 10800, pytest.approx(13680)),
        ("Boris", 2, 172800, pytest.approx(241920)),
    ]
    assert rows(week, "resolution_by_channel") == [
        ("email", 1, 86400, 86400),
        ("telegram", 3, 14400, pytest.approx(210240)),
    ]
    by_day = {row[0]: row[1:] for row in rows(week, "resolution_by_day")}
    assert by_day["2026-01-04"] == (1, 14400, 14400)
    assert by_day["2026-01-05"] == (2, 133200, pytest.approx(234000))
    assert by_day["2026-01-06"] == (0, None, None)
    assert by_day["2026-01-07"] == (1, 86400, 86400)
    s = week.summary.resolution
    assert (s.count, s.median, s.p90) == (4, 50400, pytest.approx(207360))


async def test_deadline_breaches_by_kind_policy_and_manager(week: Report) -> None:
    assert rows(week, "breaches_by_kind") == [
        ("first_response", 3, 2, 66.7),
        ("next_response", 1, 0, 0.0),
        ("resolution", 1, 1, 100.0),
    ]
    assert rows(week, "breaches_by_policy") == [("standard", 4, 2, 50.0), ("vip", 1, 1, 100.0)]
    assert rows(week, "breaches_by_manager") == [
        ("Anna", 3, 1, 33.3),
        ("Boris", 1, 1, 100.0),
        (None, 1, 1, 100.0),
    ]
    assert (week.summary.deadlines_due, week.summary.deadlines_missed) == (5, 3)


async def test_volume_by_channel_and_local_hour(week: Report) -> None:
    # channel, inbound, outbound, requests opened
    assert rows(week, "volume_by_channel") == [
        ("telegram", 4, 3, 3),
        ("email", 2, 1, 2),
        ("webform", 1, 0, 1),
    ]
    by_hour = {row[0]: row[1:] for row in rows(week, "volume_by_hour")}
    assert len(by_hour) == 24
    # hour: telegram, email, webform, total (Moscow time)
    assert {h: v for h, v in by_hour.items() if v[-1]} == {
        0: (1, 0, 0, 1),
        1: (0, 1, 0, 1),
        11: (0, 0, 1, 1),
        12: (0, 1, 0, 1),
        13: (2, 0, 0, 2),
        14: (1, 0, 0, 1),
    }
    assert week.summary.inbound == {"telegram": 4, "email": 2, "webform": 1}
    assert week.summary.outbound == 4


async def test_open_load_per_manager_now(week: Report) -> None:
    # Vera is inactive with nothing open: not listed.
    assert rows(week, "open_load") == [("Anna", 2, 1, 20), ("Boris", 1, 1, 10), (None, 1, 1, None)]
    s = week.summary
    assert (s.open, s.overdue, s.unassigned) == (4, 3, 1)


async def test_stage_movement(week: Report) -> None:
    assert rows(week, "stage_moves") == [
        ("prospect", "first_time_buyer", 2),
        ("first_time_buyer", "lapsed", 1),
    ]
    assert week.summary.stage_moves == 3


async def test_a_period_of_given_days(reporter: Reporter) -> None:
    report = await reporter.report(reporter.period(first=date(2026, 1, 5), last=date(2026, 1, 5)))
    assert rows(report, "first_response_by_channel") == [("telegram", 2, 2, 1200, 1680)]
    assert rows(report, "resolution_by_manager") == [
        ("Anna", 1, 7200, 7200),
        ("Boris", 1, 259200, 259200),
    ]
    assert rows(report, "breaches_by_kind") == [("first_response", 2, 1, 50.0)]
    assert rows(report, "stage_moves") == [("prospect", "first_time_buyer", 1)]


async def test_campaign_results(reporter: Reporter, db: Database) -> None:
    async with db.write() as conn:
        for cid, name, mode, status, created, finished in (
            (1, "January promo", "message", "running", at(5, 0), None),
            (2, "Call round", "calls", "running", at(7, 0), None),
            (3, "Old one", "message", "done", at(-20, 0), at(-10, 0)),
        ):
            await conn.execute(
                insert(Campaign).values(
                    id=cid,
                    name=name,
                    mode=mode,
                    status=status,
                    spec={"reply_window_days": 0.5} if cid == 1 else {},
                    created_by="test",
                    created_at=created,
                    updated_at=created,
                    finished_at=finished,
                )
            )
        sent = {}
        for client, delivery in ((1, "sent"), (2, "failed")):
            result = await conn.execute(
                insert(Interaction)
                .values(
                    client_id=client,
                    direction="out",
                    channel="telegram",
                    text="promo",
                    at=at(9, 10),
                    delivery=delivery,
                )
                .returning(Interaction.id)
            )
            sent[client] = result.scalar_one()
            # As the dispatcher leaves it: handed to the channel, then delivered or
            # bounced (a bounce keeps it sent).
            await conn.execute(
                insert(Outbox).values(
                    idempotency_key=f"campaign:1:{client}",
                    channel="telegram",
                    account="bot",
                    recipient=str(client),
                    kind="campaign",
                    text="promo",
                    client_id=client,
                    interaction_id=sent[client],
                    status=delivery,
                    next_attempt_at=at(9, 10),
                    created_at=at(9, 10),
                    sent_at=at(9, 10),
                )
            )
        # Client 1 answers the campaign; client 2 wrote only before it, and again
        # after the campaign's reply window (its spec: half a day), no reply to it.
        for client, when in ((1, at(9, 11)), (2, at(4, 0)), (2, at(9, 23, 30))):
            await conn.execute(
                insert(Interaction).values(
                    client_id=client, direction="in", channel="telegram", text="hi", at=when
                )
            )
        for campaign, client, status, interaction, outcome in (
            (1, 1, "queued", sent[1], None),
            (1, 2, "queued", sent[2], None),
            (1, 3, "skipped", None, None),
            (2, 1, "done", None, "interested"),
            (2, 2, "done", None, "no_answer"),
            (2, 3, "pending", None, None),
            (3, 4, "queued", None, None),
        ):
            await conn.execute(
                insert(CampaignTarget).values(
                    campaign_id=campaign,
                    client_id=client,
                    variant="a",
                    status=status,
                    interaction_id=interaction,
                    outbox_key=f"campaign:{campaign}:{client}" if interaction else None,
                    outcome=outcome,
                    created_at=at(9, 0),
                    updated_at=at(9, 0),
                )
            )
    report = await reporter.report(reporter.period("week"))
    assert report.campaigns
    # campaign, mode, status, targets, sent, skipped, delivered, failed, replied, reply %, outcomes
    assert rows(report, "campaigns") == [
        ("January promo", "message", "running", 3, 2, 1, 1, 1, 1, 50.0, None),
        ("Call round", "calls", "running", 3, 0, 0, 0, 0, 0, None, "interested: 1, no_answer: 1"),
    ]


async def test_without_campaign_tables_the_section_is_left_out(
    reporter: Reporter, db: Database
) -> None:
    async with db.write() as conn:
        await conn.execute(text("DROP TABLE campaign_targets"))
        await conn.execute(text("DROP TABLE campaigns"))
    report = await reporter.report(reporter.period("week"))
    assert not report.campaigns
    assert "campaigns" not in [t.key for t in report.tables]
    assert report.as_json()["campaigns_available"] is False
    assert as_text(report).endswith("== campaigns ==\n(not available)\n")


# -- formats and charts ------------------------------------------------------------


async def test_text_csv_and_json(week: Report) -> None:
    plain = as_text(week)
    assert plain.startswith("Report 2026-01-04 – 2026-01-10 (Europe/Moscow)\n")
    lines = plain.splitlines()
    start = lines.index("== first response by manager ==")
    assert lines[start + 1 : start + 5] == [
        "manager  requests  answered  median     p90",
        "Anna            4         4     25m     37m",
        "Boris           1         1  1h 00m  1h 00m",
        "—               1         0       —       —",
    ]
    assert "== open requests now ==" in lines
    parsed = [line.split(",") for line in as_csv(week).splitlines() if line]
    assert ["table", "manager", "requests", "answered", "median_s", "p90_s"] in parsed
    assert ["first_response_by_manager", "Anna", "4", "4", "1500", "2220"] in parsed
    assert ["first_response_by_manager", "", "1", "0", "", ""] in parsed
    assert ["volume_by_channel", "telegram", "4", "3", "3"] in parsed
    data = week.as_json()
    assert data["period"] == {
        "from": "2026-01-03T21:00:00+00:00",
        "to": "2026-01-10T18:00:00+00:00",
        "first_day": "2026-01-04",
        "last_day": "2026-01-10",
        "timezone": "Europe/Moscow",
    }
    assert data["summary"]["first_response_median_s"] == 1800
    assert data["tables"]["open_load"][0] == {
        "manager": "Anna",
        "open": 2,
        "overdue": 1,
        "capacity": 20,
    }


async def test_every_chart_is_a_phone_sized_png(week: Report) -> None:
    for kind in charts.KINDS:
        for language in ("ru", "en"):
            image = charts.render(week, kind, language)
            assert png_size(image) == (1080, 1080), kind
            assert len(image) > 10_000, kind
    assert charts.has_data(week, "first_response")
    assert not charts.has_data(week, "campaigns")


def test_an_empty_report_still_draws() -> None:
    empty = Report(
        Period(NOW - timedelta(days=1), NOW, date(2026, 1, 9), date(2026, 1, 10)),
        "UTC",
        summary=None,  # type: ignore[arg-type]  # not read by the charts
        tables=(),
        campaigns=False,
    )
    for kind in charts.KINDS:
        assert png_size(charts.render(empty, kind, "en")) == (1080, 1080)
    with pytest.raises(ValueError):
        charts.render(empty, "pie", "en")


# -- hub report --------------------------------------------------------------------


async def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    def call() -> int:
        try:
            cli.main(argv)
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    code = await asyncio.to_thread(call)
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_command_line(
    reporter: Reporter, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[hub]\ntimezone = "Europe/Moscow"\nlanguage = "en"\n[storage]\nurl = "{db_url}"\n'
        f'attachments_dir = "{tmp_path}/files"\n[admin]\ntoken = "{TOKEN}"\n'
    )
    args = ["report", "--config", str(config), "--from", "2026-01-04", "--to", "2026-01-10"]
    code, out, _ = await run_cli(args, capsys)
    assert code == 0
    assert out.startswith("Report 2026-01-04 – 2026-01-10 (Europe/Moscow)\n")
    assert "Anna            4         4     25m     37m" in out

    code, out, err = await run_cli([*args, "--format", "csv", "--chart", str(tmp_path)], capsys)
    assert code == 0
    assert out.startswith("table,manager,requests,answered,median_s,p90_s\n")
    assert "first_response_by_manager,Anna,4,4,1500,2220\n" in out
    assert err.splitlines() == [f"chart: {tmp_path / kind}.png" for kind in charts.KINDS]
    assert png_size((tmp_path / "load.png").read_bytes()) == (1080, 1080)

    code, out, err = await run_cli(["report", "--config", str(config), "--from", "x"], capsys)
    assert code == 1 and "--from: not a date" in err
    code, _, err = await run_cli(
        ["report", "--config", str(config), "week", "--from", "2026-01-01", "--to", "2026-01-02"],
        capsys,
    )
    assert code == 1 and "not both" in err


# -- admin API ---------------------------------------------------------------------


@pytest.fixture
async def api(reporter: Reporter, db: Database) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    server = AdminServer(create_app(db, TOKEN, lambda: True, reporter=reporter))
    await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            yield f"http://127.0.0.1:{server.port}", session
    finally:
        await server.stop()


async def test_the_admin_api(api: tuple[str, aiohttp.ClientSession]) -> None:
    base, session = api
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/api/reports", "/api/reports/chart.png?kind=load"):
        async with session.get(base + path) as resp:
            assert resp.status == 401
    async with session.get(base + "/api/reports?period=week", headers=auth) as resp:
        assert resp.status == 200
        data = await resp.json()
    assert data["period"]["first_day"] == "2026-01-04"
    assert data["tables"]["first_response_by_manager"][0] == {
        "manager": "Anna",
        "requests": 4,
        "answered": 4,
        "median_s": 1500,
        "p90_s": pytest.approx(2220),
    }
    assert data["tables"]["breaches_by_kind"][0]["missed"] == 2
    async with session.get(
        base + "/api/reports?from=2026-01-05&to=2026-01-05", headers=auth
    ) as resp:
        assert (await resp.json())["summary"]["requests"] == 2
    async with session.get(
        base + "/api/reports/chart.png?kind=volume_hour&period=month&lang=ru", headers=auth
    ) as resp:
        assert resp.status == 200 and resp.content_type == "image/png"
        assert png_size(await resp.read()) == (1080, 1080)
    for query, error in (
        ("/api/reports?period=year", "period: must be week or month"),
        ("/api/reports?from=2026-13-01&to=2026-01-02", "from: not a date"),
        ("/api/reports/chart.png?kind=pie", "kind: must be one of"),
        ("/api/reports/chart.png?kind=load&lang=de", "lang: must be ru or en"),
    ):
        async with session.get(base + query, headers=auth) as resp:
            assert resp.status == 400, query
            assert (await resp.json())["error"].startswith(error)


# -- /report in the managers' private chat -----------------------------------------


async def test_report_week_in_telegram(reporter: Reporter, db: Database, tmp_path: Path) -> None:
    """A marketer asks the bot for the week's report: a summary, then the charts as
    photos; a wrong period gets the usage, a stranger nothing."""
    async with BotApiServer(limits=Limits.off()) as server:
        clock = FrozenClock(NOW)
        desk = Desk(db, clock, AttachmentStore(tmp_path / "files", 10**6), language="en")
        staff = StaffSide(
            desk,
            TelegramSection(staff_chat_id=server.forum.id),
            language="en",
            clock=clock,
            pacer=unpaced(),
            reports=reporter,
        )
        bot = make_bot(server)
        try:
            maria = server.add_manager("Maria")
            async with db.write() as conn:
                await conn.execute(
                    insert(Manager).values(
                        id=4,  # explicit ids do not move PostgreSQL's sequence
                        name="Maria",
                        telegram_id=maria.id,
                        role="marketer",
                        created_at=NOW,
                        attrs={"language": "ru"},
                    )
                )
            stranger = server.add_user("Stranger")
            await server.user_sends(maria, "/report week")
            await server.user_sends(maria, "/report year")
            await server.user_sends(stranger, "/report week")
            for update in await bot.get_updates(timeout=0):
                if await staff.handles(update):
                    await staff.handle(bot, update)
        finally:
            await bot.session.close()
        summary, *photos, usage = server.sent_to(maria.id)
        assert summary["text"].splitlines() == [
            "📊 Отчёт за 04.01–10.01",
            "Обращений: 6, с ответом: 5; первый ответ: медиана 30m, p90 52m",
            "Решено: 4; время решения: медиана 14h 00m, p90 2d 09h",
            "Сроки: пропущено 3 из 5",
            "Открыто сейчас: 4, просрочено: 3, без ответственного: 1",
            "Входящих сообщений: 7 (telegram 4, email 2, webform 1)",
            "Смен стадий: 3",
        ]
        assert [p["caption"] for p in photos] == [
            "Первый ответ по менеджерам",
            "Входящие по часам",
            "Открытые обращения",
            "Сроки (SLA)",
        ]
        assert all("photo" in p for p in photos)
        uploads = server.uploads
        assert [(f.kind, f.width, f.height) for f in uploads] == [("photo", 1080, 1080)] * 4
        assert all(f.data[:8] == PNG for f in uploads)
        assert usage["text"].startswith("Отчёт: /report week")
        assert server.sent_to(stranger.id) == []
