"""The console's campaigns (issue 20): the editor's form is the campaign file (the same
checks, each problem at its field); in Chromium a marketer builds a campaign with the
segment's live count and a preview for sample clients, starts it and watches it run
to the end with the messages delivered over the local Bot API, pauses and resumes
one, reads the results per variant beside their chart and a call list's outcomes; a
manager reads campaigns but is refused every change, and so is a form without its CSRF token;
axe on every page."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from multidict import MultiDict
from sqlalchemy import select

from hub.campaigns.spec import parse_spec
from hub.console import campaign_work as work
from hub.kernel.types import ManagerRef
from storage import Database
from storage import campaigns as campaigns_q
from storage.models import Audit, Client
from tests.console_kit import axe, browser, console_hub

__all__ = ["browser"]  # the fixture, imported for pytest

T = TypeVar("T")
CONFIG = {"campaigns": {"scan_every_s": 0.2, "quiet_hours": ""}}


async def until(predicate: Callable[[], Awaitable[T | None]], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


# -- the form is the campaign file ----------------------------------------------------


def _post(**values: str | list[str]) -> MultiDict[str]:
    post: MultiDict[str] = MultiDict()
    for key, value in values.items():
        for one in value if isinstance(value, list) else [value]:
            post.add(key.replace("__", "."), one)
    return post


def test_the_form_makes_what_the_campaign_file_makes_and_back() -> None:
    form = work.form_of_post(
        _post(
            name="Spring",
            mode="message",
            channels=["telegram", "email"],
            quiet_hours="21:00-09:00",
            segment__tags="vip, new",
            segment__stages="client",
            segment__reachable=["telegram"],
            segment__last_contact_after="2026-01-01",
            segment__custom="city = Moscow, Kazan\nplan = gold",
            segment__clients="1, 2",
            variants__0__name="A",
            variants__0__weight="3",
            variants__0__text="Hi {{ client.first_name }}",
            variants__1__name="B",
            variants__1__weight="1",
            variants__1__text="Hello",
            variants__1__subject="Spring",
        )
    )
    spec = work.check(form)
    assert spec is not None, form.errors
    assert spec == parse_spec(
        {
            "name": "Spring",
            "segment": {
                "tags": ["vip", "new"],
                "stages": ["client"],
                "reachable": ["telegram"],
                "last_contact_after": "2026-01-01",
                "custom": {"city": ["Moscow", "Kazan"], "plan": "gold"},
                "clients": [1, 2],
            },
            "variants": [
                {"name": "A", "text": "Hi {{ client.first_name }}", "weight": 3},
                {"name": "B", "text": "Hello", "subject": "Spring"},
            ],
            "quiet_hours": "21:00-09:00",
        }
    )
    again = work.form_of_spec(spec, quiet_hours="")
    assert work.check(again) == spec  # saved and edited again, nothing is lost
    one = work.check(work.form_of_post(_post(name="x", channels="email", variants__0__text="Hi")))
    assert one is not None and one.text == "Hi" and not one.variants  # one text: the file's text


def test_each_problem_is_said_at_its_field() -> None:
    form = work.form_of_post(
        _post(
            name="",
            channels=[],
            quiet_hours="25:00-09:00",
            segment__stages="nope",
            segment__clients="1, x",
            segment__custom="no equals sign",
            variants__0__name="A",
            variants__0__text="Hi",
            variants__0__weight="-1",
            variants__1__name="A",
            variants__1__text="Hello",
        )
    )
    assert work.check(form) is None
    errors = form.errors
    assert set(errors) >= {
        "name",
        "channels",
        "quiet_hours",
        "segment.stages",
        "segment.clients",
        "segment.custom",
        "variants.0.weight",
    }
    assert "unknown stage 'nope'" in errors["segment.stages"]
    assert errors["segment.custom"] == "line 1: write key = value"
    bad = work.form_of_post(
        _post(
            name="x",
            channels="telegram",
            variants__0__name="A",
            variants__0__text="ok",
            variants__1__name="B",
            variants__1__text="Hi {{ client.name ",
        )
    )
    assert work.check(bad) is None
    assert bad.errors["variants.1.text"].startswith("variant B text: line 1")
    sandbox = work.form_of_post(
        _post(name="x", channels="email", variants__0__text="{{ x.__class__ }}")
    )
    assert work.check(sandbox) is None
    assert "not allowed" in sandbox.errors["variants.0.text"]
    twice = work.form_of_post(
        _post(
            name="x",
            channels="email",
            variants__0__name="A",
            variants__0__text="a",
            variants__1__name="A",
            variants__1__text="b",
        )
    )
    assert work.check(twice) is None and "differ" in twice.errors["variants.1.name"]
    nothing = work.form_of_post(_post(name="x", channels="email"))
    assert work.check(nothing) is None and "missing" in nothing.errors["variants.0.text"]


# -- in the browser -----------------------------------------------------------------------


async def _clients(kit: Any, db: Database, names: tuple[str, ...]) -> list[Any]:
    users = [kit.server.add_user(name, language_code="en") for name in names]
    for user in users:
        await kit.server.user_sends(user, "/start")

    async def there() -> bool:
        async with db.read() as conn:
            return len((await conn.execute(select(Client.id))).all()) >= len(names)

    await until(there)
    return users


async def _fill_campaign(page: Any, name: str, quiet: str) -> None:
    await page.fill("#f-name", name)
    await page.fill("#f-quiet_hours", quiet)
    await page.check("#f-segment-reachable input[value='telegram']")


async def test_a_marketer_builds_runs_and_reads_a_campaign(
    browser: Any, db: Database, db_url: str, tmp_path: Path
) -> None:
    async with console_hub(db_url, tmp_path, config=CONFIG) as kit:
        users = await _clients(kit, db, ("Anna", "Boris"))
        page = await kit.signed_in(browser, "marketer")  # Марк, in Russian
        await page.goto(kit.url("/campaigns"))
        assert "Кампаний пока нет" in await page.inner_text("main")
        await axe(page)
        await page.click("#new")
        await page.wait_for_url("**/campaigns/new")
        count = page.locator("#segment-count")
        await count.filter(has_text="Подходит клиентов: 2").wait_for()  # everyone, at first
        await axe(page)

        # the segment's count follows the segment as it is typed
        await page.fill("#f-segment-tags", "nobody-has-this")
        await count.filter(has_text="Подходит клиентов: 0").wait_for()
        await page.fill("#f-segment-tags", "")
        await _fill_campaign(page, "Весна", "")
        await count.filter(has_text="Подходит клиентов: 2").wait_for()
        await page.fill("#f-variants-0-text", "Hi {{ client.first_name }}, spring A!")
        await page.fill("#f-variants-1-text", "Hello {{ client.first_name }}, spring B!")

        # the preview: the script as the runner renders it, for a sample client
        await page.fill("#f-preview-client", "")
        await page.click("#preview-go")
        samples = page.locator("#preview article.sample")
        await samples.first.wait_for()
        shown = await page.inner_text("#preview")
        assert "Подходит клиентов: 2" in shown and "spring" in shown
        assert "Hi Anna, spring A!" in shown or "Hello Anna, spring B!" in shown
        await axe(page)

        await page.click("#save")
        await page.wait_for_url(lambda url: url.rstrip("/").split("/")[-1].isdigit())
        campaign_id = int(page.url.rstrip("/").split("/")[-1])
        assert "черновик" in await page.inner_text("#campaign-status")
        assert len(await page.locator("article.sample").all()) == 2  # the draft's preview
        await axe(page)

        # start: it runs to the end, each client gets their variant over Telegram
        await page.click("#start")
        status = page.locator("#campaign-status")
        await status.filter(has_text="завершена").wait_for(timeout=20_000)

        def spring(user: Any) -> list[str]:
            said = [m.get("text") or "" for m in kit.server.sent_to(user)]
            return [text for text in said if "spring" in text]

        for user in users:
            got = await kit.server.wait_for(functools.partial(spring, user), timeout=15)
            assert f"{user.first_name}, spring" in got[0]

        async def delivered() -> bool:  # the page follows the deliveries by itself
            cells = await page.locator("#results tbody tr td:nth-child(6)").all_inner_texts()
            return sum(int(c) for c in cells) == 2

        await until(delivered)
        assert await page.locator("figure svg rect").count() >= 2  # the chart beside the table
        assert "2 из 2" in await page.inner_text("#progress-count")
        await axe(page)

        async with db.read() as conn:
            audit = (
                await conn.execute(
                    select(Audit.action).where(
                        Audit.actor == "console:Марк", Audit.object_id == campaign_id
                    )
                )
            ).scalars()
            assert set(audit) == {"campaign.create", "campaign.start"}

        # a campaign held by its quiet hours: pause and resume it
        await page.goto(kit.url("/campaigns/new"))
        await _fill_campaign(page, "Ночь", "00:00-23:59")
        await page.fill("#f-variants-0-text", "Good night")
        await page.click("#save")
        await page.wait_for_url(lambda url: url.rstrip("/").split("/")[-1].isdigit())
        await page.click("#start")
        await status.filter(has_text="идёт").wait_for()
        await page.click("#pause")
        await status.filter(has_text="на паузе").wait_for()
        await page.click("#resume")
        await status.filter(has_text="идёт").wait_for()
        pending = await page.locator("#results tbody tr td:nth-child(3)").inner_text()
        assert pending == "2"  # waiting for the quiet hours to end

        await page.goto(kit.url("/campaigns"))
        rows = await page.inner_text("#campaigns")
        assert "Весна" in rows and "завершена" in rows and "Ночь" in rows and "идёт" in rows
        await axe(page)


async def test_bad_input_at_its_field_roles_and_csrf(
    browser: Any, db: Database, db_url: str, tmp_path: Path
) -> None:
    async with console_hub(db_url, tmp_path, config=CONFIG) as kit:
        page = await kit.signed_in(browser, "admin")  # in English
        await page.goto(kit.url("/campaigns/new"))
        await page.fill("#f-name", "Broken")
        await page.fill("#f-segment-stages", "nope")
        await page.fill("#f-variants-0-text", "Hi {{ client.name ")
        await page.click("#save")
        await page.wait_for_selector("#problems")
        assert "unknown stage 'nope'" in await page.inner_text("#f-segment-stages-error")
        assert "line 1" in await page.inner_text("#f-variants-0-text-error")
        assert await page.get_attribute("#f-variants-0-text", "aria-invalid") == "true"
        assert await page.input_value("#f-variants-0-text") == "Hi {{ client.name"  # kept
        # the segment's count says what is wrong with it
        await page.locator("#segment-count").filter(has_text="segment.stages").wait_for()
        await axe(page)

        # an owner no manager has: the database's check, at its field too
        await page.fill("#f-segment-stages", "")
        await page.fill("#f-segment-owners", "Nobody")
        await page.fill("#f-variants-0-text", "Hi")
        await page.click("#save")
        await page.wait_for_selector("#f-segment-owners-error")
        assert "Nobody" in await page.inner_text("#f-segment-owners-error")
        async with db.read() as conn:
            assert await campaigns_q.listing(conn) == []

        # A manager reads campaigns (as the admin API lets them), changes none.
        manager = await kit.signed_in(browser, "manager")
        answer = await manager.goto(kit.url("/campaigns/new"))
        assert answer is not None and answer.status == 403
        await axe(manager)
        assert kit.hub.campaigns is not None
        spec = parse_spec({"name": "Draft", "text": "Hi", "channels": ["email"]})
        campaign_id = await kit.hub.campaigns.create(spec, actor="test")
        answer = await manager.goto(kit.url("/campaigns"))
        assert answer is not None and answer.status == 200
        assert await manager.locator("#new").count() == 0
        answer = await manager.goto(kit.url(f"/campaigns/{campaign_id}"))
        assert answer is not None and answer.status == 200
        assert await manager.locator("#start").count() == 0
        assert await manager.locator("#edit").count() == 0
        await axe(manager)
        await manager.goto(kit.url("/inbox"))
        token = await manager.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))")
        refused = await manager.request.post(
            kit.url(f"/campaigns/{campaign_id}/start"), headers=token
        )
        assert refused.status == 403
        assert "маркетолог" in await refused.text()  # refused for the role, not the token
        forged = await page.request.post(kit.url(f"/campaigns/{campaign_id}/start"), form={})
        assert forged.status == 403
        async with db.read() as conn:
            row = await campaigns_q.get(conn, campaign_id)
        assert row is not None and row.status == "draft"

        # a draft is edited in place; a started one no longer
        await page.goto(kit.url(f"/campaigns/{campaign_id}/edit"))
        await page.fill("#f-name", "Draft two")
        await page.click("#save")
        await page.wait_for_url(f"**/campaigns/{campaign_id}")
        assert "Draft two" in await page.inner_text("h1")
        await page.click("#start")
        await page.locator("#campaign-status").filter(has_text="done").wait_for()
        answer = await page.goto(kit.url(f"/campaigns/{campaign_id}/edit"))
        assert answer is not None and answer.status == 409


async def test_a_call_list_with_each_outcome(
    browser: Any, db: Database, db_url: str, tmp_path: Path
) -> None:
    async with console_hub(db_url, tmp_path, config=CONFIG) as kit:
        await _clients(kit, db, ("Anna", "Boris"))
        assert kit.hub.campaigns is not None
        spec = parse_spec(
            {
                "name": "Ring",
                "mode": "calls",
                "segment": {"reachable": ["telegram"]},
                "variants": [{"name": "A", "text": "Offer A"}, {"name": "B", "text": "Offer B"}],
            }
        )
        campaign_id = await kit.hub.campaigns.create(spec, actor="test")
        page = await kit.signed_in(browser, "marketer")
        await page.goto(kit.url(f"/campaigns/{campaign_id}/calls"))
        assert "Звонков пока нет" in await page.inner_text("main")
        await page.goto(kit.url(f"/campaigns/{campaign_id}"))
        await page.click("#start")
        await page.locator("#campaign-status").filter(has_text="завершена").wait_for()

        async with db.read() as conn:
            calls = await campaigns_q.call_list(conn, campaign_id)
        assert len(calls) == 2 and {c.manager for c in calls} == {"Мария"}
        olga = ManagerRef(0, "Olga", 0, role="supervisor")
        await kit.hub.campaigns.record_outcome(
            calls[0].target_id, olga, "interested", key="console-test-1"
        )

        await page.goto(kit.url("/campaigns?mode=calls"))
        assert "Ring" in await page.inner_text("#campaigns")
        await axe(page)
        await page.goto(kit.url(f"/campaigns/{campaign_id}"))
        results = await page.inner_text("#results")
        assert "интересно" in results
        first_variant = calls[0].variant
        row = await page.locator(
            f"#results tbody tr:has(th:text-is('{first_variant}'))"
        ).inner_text()
        assert row.split("\t")[3] == "1"  # interested
        assert "Мария" in await page.inner_text("#by-manager")
        await axe(page)
        await page.click("#calls")
        await page.wait_for_url("**/calls")
        table = await page.inner_text("#calls")
        assert "интересно" in table and "Мария" in table and "не сделан" in table
        await axe(page)
