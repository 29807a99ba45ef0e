"""The web console's reports page: the report set of a period with its numbers,
each chart beside its table, CSV downloads, satisfaction, a bad period said by its
field; who may read them is who may through the admin API."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from hub.console.reports import asked
from hub.reports.reports import Column, Table, table_csv
from storage import Database
from tests.console_kit import axe, browser, console_hub
from tests.test_console_clients import seed_client

__all__ = ["browser"]  # the fixture, imported for pytest

DAY = "from=2026-01-05&to=2026-01-05"  # the seeded day (tests.test_ingest.T0)


def test_the_period_asked_for_and_every_problem_by_field() -> None:
    assert asked({}).query == "period=week"
    assert asked({"period": "month"}).preset == "month"
    day = asked({"from": "2026-01-05", "to": "2026-01-06"})
    assert not day.errors and day.query == "from=2026-01-05&to=2026-01-06"
    assert asked({"from": "2026-01-05"}).errors == {"to": "reports.err.both"}
    assert asked({"from": "5.1.2026", "to": "x"}).errors == {
        "from": "reports.err.date",
        "to": "reports.err.date",
    }
    assert asked({"from": "2026-01-06", "to": "2026-01-05"}).errors == {"to": "reports.err.order"}
    assert asked({"from": "2025-01-01", "to": "2026-12-31"}).errors == {"to": "reports.err.long"}
    assert asked({"period": "year"}).errors == {"period": "reports.err.period"}


def test_one_report_as_csv_keeps_whole_seconds_and_empty_cells() -> None:
    table = Table(
        "first_response_by_manager",
        "first response by manager",
        (Column("manager", "manager", "text"), Column("median_s", "median", "seconds")),
        (("olga", 61.6), (None, None)),
    )
    assert list(csv.reader(io.StringIO(table_csv(table)))) == [
        ["manager", "median_s"],
        ["olga", "62"],
        ["", ""],
    ]


async def test_a_period_s_report_with_charts_tables_and_csv(
    browser: Any, db: Database, db_url: str, tmp_path: Path
) -> None:
    await seed_client(db, tmp_path)  # two requests and a rating of 4 on the day
    async with console_hub(db_url, tmp_path) as kit:
        page = await kit.signed_in(browser, "supervisor")  # Olga, in English
        await page.goto(kit.url("/reports"))
        assert "time zone UTC" in await page.inner_text("#shown")  # the last 7 days
        await page.fill("#p-from", "2026-01-05")
        await page.fill("#p-to", "2026-01-05")
        await page.click("button:has-text('Show')")
        await page.wait_for_url(f"**/reports?{DAY}")
        assert "2026-01-05 – 2026-01-05" in await page.inner_text("#shown")
        summary = await page.inner_text("dl.facts")
        assert "Requests\n2" in summary and "Client ratings (average)\n1 (4.00)" in summary
        by_channel = await page.inner_text("#table-satisfaction_by_channel")
        assert "email\t1\t4.0\t0\t0\t0\t1\t0" in by_channel
        # the chart beside its table, drawn
        chart = page.locator("section[aria-labelledby='t-satisfaction_by_manager'] img")
        await chart.scroll_into_view_if_needed()
        await page.wait_for_function(
            "(img) => img.complete && img.naturalWidth > 0", arg=await chart.element_handle()
        )
        assert "Ratings by manager" in (await chart.get_attribute("alt") or "")
        await axe(page)

        async with page.expect_download() as waiting:
            await page.click(f"a[href='/reports/satisfaction_by_channel.csv?{DAY}']")
        download = await waiting.value
        assert download.suggested_filename == "satisfaction_by_channel_2026-01-05_2026-01-05.csv"
        rows = list(csv.DictReader(io.StringIO(Path(await download.path()).read_text())))
        assert [(r["channel"], r["ratings"], r["average"], r["s4"]) for r in rows] == [
            ("email", "1", "4.0", "1")
        ]
        every = await page.request.get(kit.url(f"/reports.csv?{DAY}"))
        assert every.status == 200 and "satisfaction_by_day,2026-01-05,1,4.0" in await every.text()

        # a bad period: the page again, said by the field
        response = await page.goto(kit.url("/reports?from=2026-01-06&to=2026-01-05"))
        assert response is not None and response.status == 400
        assert "before the first" in await page.inner_text("#p-to-error")
        await axe(page)
        assert (await page.request.get(kit.url("/reports/chart/nothing.png"))).status == 404

        marketer = await kit.signed_in(browser, "marketer")  # reports are theirs too
        response = await marketer.goto(kit.url(f"/reports?{DAY}"))
        assert response is not None and response.status == 200
        assert "Итоги" in await marketer.inner_text("main")
