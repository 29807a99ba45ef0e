"""Hostile form input (issue 9), property-based: whatever a site or a robot
posts to ``POST /f/{id}`` — any text, any size, missing or extra fields, JSON
or urlencoded — gets a clear answer (201, 400, 413, 422 or 429, never a 5xx)
and every 201 is exactly one interaction in the log."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from storage import Database
from storage.models import Interaction
from tests.test_webform import site

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
FIELD = st.one_of(
    TEXT,
    st.integers(5000, 7000).map(lambda n: "я\u0000<script>"[: 1 + n % 9] * (n // 8)),
    st.emails().map(str),
    st.from_regex(r"\+?[0-9 ()\-]{5,20}", fullmatch=True),
)
PAYLOAD = st.dictionaries(
    st.sampled_from(["name", "email", "phone", "message", "hp_website", "city", "_key", "x" * 80]),
    FIELD,
    max_size=6,
)
ALLOWED = {201, 400, 413, 422, 429}


async def _logged(db_url: str) -> int:
    db = Database(db_url)
    try:
        async with db.read() as conn:
            query = (
                select(func.count())
                .select_from(Interaction)
                .where(Interaction.channel == "webform", Interaction.direction == "in")
            )
            return int((await conn.execute(query)).scalar_one())
    finally:
        await db.dispose()


async def _post_all(
    db_url: str, tmp_path: Path, bodies: list[dict[str, Any]], as_json: bool
) -> None:
    before = await _logged(db_url)
    accepted: set[int] = set()
    statuses: list[int] = []
    valid = {
        "name": "Анна <b>",
        "email": "anna@example.com",
        "message": f"'; DROP TABLE x; -- {uuid.uuid4()}",
    }
    async with site(db_url, tmp_path, rate_limit_per_minute=10_000) as s:
        for body in [*bodies, valid]:
            if as_json:
                status, answer, _ = await s.post("contact", json_body=body)
            else:
                status, answer, _ = await s.post("contact", data=body)
            statuses.append(status)
            if status == 201:
                assert isinstance(answer, dict) and isinstance(answer["id"], int)
                if not answer.get("duplicate"):  # the same content again is the same request
                    accepted.add(answer["id"])
            else:
                assert isinstance(answer, dict) and answer, (status, answer)  # a stated reason
    assert set(statuses) <= ALLOWED, statuses
    assert statuses[-1] == 201  # the well-formed one among them went in
    assert await _logged(db_url) - before == len(accepted)  # each 201 logged, once


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(bodies=st.lists(PAYLOAD, min_size=12, max_size=12), as_json=st.booleans())
def test_random_posts_get_clear_answers_and_nothing_accepted_is_lost(
    db_url: str, tmp_path: Path, bodies: list[dict[str, Any]], as_json: bool
) -> None:
    asyncio.run(_post_all(db_url, tmp_path, bodies, as_json))


def test_json_that_is_not_an_object_is_a_clear_400(db_url: str, tmp_path: Path) -> None:
    async def run() -> None:
        async with site(db_url, tmp_path) as s:
            for body in ([1, 2], "text", 7, None, {"message": {"nested": [1]}}):
                status, answer, _ = await s.post("contact", json_body=body)
                assert status in (400, 422) and isinstance(answer, dict), (body, status, answer)

    asyncio.run(run())
