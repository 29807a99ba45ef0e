"""The admin API for client records: duplicates, merge and undo, stage moves,
CSV import and export; every call needs the token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from hub.admin.api import AdminServer, create_app
from hub.kernel.identities import identity
from hub.kernel.types import Channel
from storage import Database
from storage.models import Audit, Client
from tests.test_ingest import message, rows, running

TOKEN = "admin-secret-token"


@pytest.fixture
async def base(db: Database) -> AsyncIterator[str]:
    server = AdminServer(create_app(db, TOKEN, lambda: True, default_region="RU"))
    await server.start("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


async def call(
    method: str, url: str, *, token: str | None = TOKEN, **kwargs: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, **kwargs) as resp,
    ):
        kind = resp.headers.get("Content-Type", "")
        body = await resp.json() if "json" in kind else await resp.text()
        return resp.status, body


async def test_duplicates_merge_undo_and_stage(db: Database, tmp_path: Path, base: str) -> None:
    async with running(db, tmp_path) as ingest:
        a = await ingest(
            message(Channel.EMAIL, "<1@x>", identity("email", "a@x.org", "Анна Петрова"))
        )
        b = await ingest(message(Channel.TELEGRAM, "t", identity("telegram", 7, "Петрова Анна")))
    assert (await call("GET", f"{base}/api/duplicates", token=None))[0] == 401
    status, found = await call("GET", f"{base}/api/duplicates")
    assert status == 200
    assert found == [
        {"a": a.client_id, "b": b.client_id, "score": 100.0, "reason": "similar names"}
    ]

    url = f"{base}/api/clients/{a.client_id}/merge"
    assert (await call("POST", url, json={"other": "x"}))[0] == 400
    assert (await call("POST", url, json={"other": 999}))[0] == 404
    status, merged = await call("POST", url, json={"other": b.client_id})
    assert status == 201
    assert (await call("POST", url, json={"other": b.client_id}))[0] == 409
    status, card = await call("GET", f"{base}/api/clients/{b.client_id}")
    assert card["merged_into"] == a.client_id
    status, listed = await call("GET", f"{base}/api/clients")
    assert [c["id"] for c in listed] == [a.client_id]  # the merged record is not listed
    undo = f"{base}/api/merges/{merged['merge']}/undo"
    assert (await call("POST", undo))[0] == 200
    assert (await call("POST", undo))[0] == 409

    stage = f"{base}/api/clients/{a.client_id}/stage"
    assert (await call("POST", stage, json={"stage": "wizard"}))[0] == 400
    status, body = await call("POST", stage, json={"stage": "client", "why": "signed"})
    assert (status, body) == (200, {"id": a.client_id, "stage": "client"})
    [record] = await rows(db, select(Client.stage).where(Client.id == a.client_id))
    assert record.stage == "client"
    actions = [r.action for r in await rows(db, select(Audit.action).order_by(Audit.id))]
    assert actions == ["merge", "read", "unmerge", "stage"]  # the card read in between


async def test_import_and_export_csv(db: Database, base: str) -> None:
    csv = "name,email,phone\nАнна,anna@example.com,\nBad,nope,\n".encode()
    status, report = await call("POST", f"{base}/api/clients.csv", data=csv)
    assert status == 422
    assert report["added"] == 1 and [e["row"] for e in report["errors"]] == [3]
    status, text = await call("GET", f"{base}/api/clients.csv")
    assert status == 200
    assert text.splitlines()[1].startswith("1,Анна,anna@example.com,")
    assert (await call("GET", f"{base}/api/clients.csv", token="wrong"))[0] == 401
    # a lone CR inside a field (found by the hostile-input suite: it was a 500)
    status, report = await call(
        "POST", f"{base}/api/clients.csv", data=b"name,email\nA\rB,b@x.org\n"
    )
    assert status in (200, 422), report
    status, report = await call(
        "POST", f"{base}/api/clients.csv", data=b'name,email\n"A,b@x.org\n\x00'
    )
    assert status in (200, 422), report
