"""People's admin API tokens and the audit log read back (issue 17): ``hub token``
and ``hub audit`` as a user types them, the API over real HTTP against the
assembled admin server; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import insert, select, text

from hub.admin.access import RIGHTS, Right, needed
from hub.admin.api import AdminServer, create_app
from hub.admin.tokens import Tokens
from hub.app.cli import main
from hub.kernel.clock import FrozenClock
from hub.kernel.identities import identity
from hub.kernel.types import Channel, Role
from storage import Database
from storage.models import ApiToken, Audit
from tests.test_campaigns import service
from tests.test_ingest import message, rows, running

CONFIG_TOKEN = "config-admin-token-0123456789"
SECRET = re.compile(r"hub_[A-Za-z0-9_-]{43}")


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> str:
    path = tmp_path / "hub.toml"
    path.write_text(f'[admin]\ntoken = "{CONFIG_TOKEN}"\n[storage]\nurl = "{db_url}"\n')
    return str(path)


async def hub(*args: str) -> int:
    """``hub ARGS`` through the command line's entry, off the event loop (it runs its own)."""

    def call() -> int:
        with pytest.raises(SystemExit) as done:
            main(list(args))
        return int(done.value.code or 0)

    return await asyncio.to_thread(call)


async def test_token_add_list_revoke_from_the_command_line(
    db: Database, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A real process: the secret alone on standard output, the words on standard error.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.app.cli", "token", "add", "anna", "supervisor",
        "--config", config,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err
    secret = out.decode().strip()
    assert SECRET.fullmatch(secret)
    assert "shown this once" in err.decode() and secret not in err.decode()

    assert await hub("token", "add", "anna", "admin", "--config", config) == 1
    assert "'anna' already has a token (revoke it first)" in capsys.readouterr().err
    assert await hub("token", "add", "mia", "boss", "--config", config) == 2
    assert "invalid choice: 'boss'" in capsys.readouterr().err
    assert await hub("token", "add", "a b", "manager", "--config", config) == 1
    assert "name: 1 to 100 letters" in capsys.readouterr().err
    assert await hub("token", "add", "config", "manager", "--config", config) == 1
    assert "admin.token" in capsys.readouterr().err
    assert await hub("token", "add", "mia", "marketer", "--config", config) == 0
    mia = capsys.readouterr().out.strip()
    assert SECRET.fullmatch(mia) and mia != secret

    assert await hub("token", "list", "--config", config) == 0
    listed = capsys.readouterr().out
    assert listed.splitlines()[0].startswith("anna\tsupervisor\tcreated ")
    assert listed.splitlines()[0].endswith("\tlast used never\tlive")
    assert listed.splitlines()[1].startswith("mia\tmarketer\t")
    assert secret not in listed and mia not in listed

    assert await hub("token", "revoke", "anna", "--config", config) == 0
    assert await hub("token", "revoke", "anna", "--config", config) == 1
    assert "no live token named 'anna'" in capsys.readouterr().err
    assert await hub("token", "list", "--config", config) == 0
    assert re.search(
        r"^anna\t.*\trevoked \d{4}-\d\d-\d\d \d\d:\d\dZ$", capsys.readouterr().out, re.M
    )
    # A revoked name may be given a new token (the same person, a new secret).
    assert await hub("token", "add", "anna", "manager", "--config", config) == 0
    again = capsys.readouterr().out.strip()
    assert SECRET.fullmatch(again) and again != secret

    audit = await rows(db, select(Audit.actor, Audit.action, Audit.details).order_by(Audit.id))
    assert [(a.actor, a.action, a.details["name"]) for a in audit] == [
        ("cli", "token_added", "anna"),
        ("cli", "token_added", "mia"),
        ("cli", "token_revoked", "anna"),
        ("cli", "token_added", "anna"),
    ]
    await _never_in_clear(db, [secret, mia, again])


async def _never_in_clear(db: Database, secrets: list[str]) -> None:
    """No column of the token table or the audit log holds a secret; the table
    holds each live one's SHA-256."""
    async with db.read() as conn:
        tokens = [tuple(r) for r in (await conn.execute(text("SELECT * FROM api_tokens"))).all()]
        audit = [tuple(r) for r in (await conn.execute(text("SELECT * FROM audit"))).all()]
    stored = repr(tokens + audit)
    for secret in secrets:
        assert secret not in stored
        assert secret[4:20] not in stored  # not even a part of it
    hashes = {r.secret_hash for r in await rows(db, select(ApiToken.secret_hash))}
    assert hashlib.sha256(secrets[-1].encode()).hexdigest() in hashes


@dataclass
class Api:
    base: str
    session: aiohttp.ClientSession
    tokens: dict[str, str]  # name: secret
    clients: list[int]

    async def call(
        self, method: str, path: str, who: str | None, **kwargs: Any
    ) -> tuple[int, Any, str]:
        """``who``: a token's name, ``"config"``, or a raw bearer value."""
        secret = CONFIG_TOKEN if who == "config" else self.tokens.get(who or "", who)
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        async with self.session.request(
            method, self.base + path, headers=headers, **kwargs
        ) as resp:
            return resp.status, await resp.json(), resp.headers.get("WWW-Authenticate", "")


@pytest.fixture
async def api(db: Database, tmp_path: Path) -> AsyncIterator[Api]:
    async with running(db, tmp_path) as ingest:
        anna = await ingest(message(Channel.EMAIL, "<1@x>", identity("email", "a@x.org", "Анна")))
        ivan = await ingest(message(Channel.TELEGRAM, "t1", identity("telegram", 7, "Иван")))
    tokens = Tokens(db)
    names = {"sue": "supervisor", "mia": "marketer", "max": "manager", "ada": "admin"}
    secrets = {name: await tokens.add(name, role) for name, role in names.items()}
    campaigns = service(db, FrozenClock())
    server = AdminServer(
        create_app(db, CONFIG_TOKEN, lambda: True, default_region="RU", campaigns=campaigns)
    )
    await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{server.port}"
            yield Api(base, session, secrets, [anna.client_id, ivan.client_id])
    finally:
        await server.stop()


async def test_each_person_reads_under_their_own_name(db: Database, api: Api) -> None:
    anna = api.clients[0]
    for who in ("sue", "max", "config"):
        status, card, _ = await api.call("GET", f"/api/clients/{anna}", who)
        assert (status, card["id"]) == (200, anna)
    status, _, _ = await api.call("GET", f"/api/clients/{anna}/timeline", "sue")
    assert status == 200
    reads = await rows(
        db, select(Audit.actor, Audit.details).where(Audit.action == "read").order_by(Audit.id)
    )
    assert [(r.actor, r.details["what"]) for r in reads] == [
        ("api:sue", "card"),
        ("api:max", "card"),
        ("api:config", "card"),
        ("api:sue", "timeline"),
    ]
    used = {r.name: r.last_used_at for r in await rows(db, select(ApiToken))}
    assert used["sue"] is not None and used["max"] is not None
    assert used["mia"] is None and used["ada"] is None


async def test_a_change_names_the_person_who_made_it(db: Database, api: Api) -> None:
    anna, ivan = api.clients
    path = f"/api/clients/{anna}"
    status, _, _ = await api.call("POST", f"{path}/stage", "sue", json={"stage": "client"})
    assert status == 200
    status, _, _ = await api.call("POST", f"{path}/merge", "ada", json={"other": ivan})
    assert status == 201
    status, _, _ = await api.call("POST", "/api/campaigns", "mia", json={"name": "X", "text": "hi"})
    assert status == 201
    changes = await rows(
        db,
        select(Audit.actor, Audit.action)
        .where(Audit.action.in_(("stage", "merge", "campaign.create")))
        .order_by(Audit.id),
    )
    assert [tuple(c) for c in changes] == [
        ("api:sue", "stage"),
        ("api:ada", "merge"),
        ("api:mia", "campaign.create"),
    ]


async def test_unknown_and_revoked_tokens_are_401(db: Database, api: Api) -> None:
    path = "/api/clients"
    status, body, challenge = await api.call("GET", path, None)
    assert (status, body, challenge) == (
        401,
        {"error": "missing bearer token"},
        'Bearer realm="hub"',
    )
    for bad in ("hub_" + "x" * 43, "not-a-hub-token", api.tokens["sue"] + "x", CONFIG_TOKEN[:-1]):
        status, body, challenge = await api.call("GET", path, bad)
        assert (status, body) == (401, {"error": "invalid bearer token"})
        assert challenge == 'Bearer realm="hub", error="invalid_token"'
    assert (await api.call("GET", path, "sue"))[0] == 200
    await Tokens(db).revoke("sue")
    status, body, challenge = await api.call("GET", path, "sue")
    assert (status, body) == (401, {"error": "bearer token revoked"})
    assert 'error="invalid_token"' in challenge
    # A query-string token is no token.
    secret = api.tokens["max"]
    status, _, _ = await api.call("GET", f"{path}?access_token={secret}", None)
    assert status == 401


@pytest.mark.parametrize(
    ("who", "method", "path", "right"),
    [
        ("mia", "GET", "/api/clients/{anna}/timeline", "conversations"),
        ("mia", "GET", "/api/conversations", "conversations"),
        ("mia", "POST", "/api/clients/{anna}/stage", "clients"),
        ("max", "POST", "/api/clients/{anna}/merge", "clients"),
        ("max", "GET", "/api/audit", "audit"),
        ("sue", "POST", "/api/campaigns", "campaigns"),
    ],
)
async def test_a_role_without_the_right_is_403_and_audited(
    db: Database, api: Api, who: str, method: str, path: str, right: str
) -> None:
    path = path.format(anna=api.clients[0])
    status, body, challenge = await api.call(method, path, who, json={"stage": "client"})
    assert status == 403
    assert f"has no {right!r} right" in body["error"]
    assert challenge == 'Bearer realm="hub", error="insufficient_scope"'
    [refused] = await rows(db, select(Audit.actor, Audit.details).where(Audit.action == "refused"))
    assert (refused.actor, refused.details) == (f"api:{who}", {"what": f"{method} {path}"})
    status, body, _ = await api.call(method, path, "ada", json={"stage": "client"})
    assert status != 403  # an admin may (the call itself may still fail: 404, 400)


async def test_what_each_role_may_do_is_one_table() -> None:
    assert set(RIGHTS) == set(Role)
    assert RIGHTS[Role.ADMIN] == frozenset(Right)
    assert needed("GET", "/api/clients/{id}") == Right.READ
    assert needed("HEAD", "/api/clients/{id}/timeline") == Right.CONVERSATIONS
    assert needed("POST", "/api/clients.csv") == Right.CLIENTS
    assert needed("POST", "/api/campaigns/{id}/start") == Right.CAMPAIGNS
    assert needed("DELETE", "/api/clients/{id}") == Right.ADMIN


AT = [
    datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
    datetime(2026, 1, 6, 12, 0, tzinfo=UTC),
    datetime(2026, 1, 7, 8, 0, tzinfo=UTC),
    datetime(2026, 1, 7, 8, 0, tzinfo=UTC),
]


async def _history(db: Database, anna: int, ivan: int) -> None:
    entries = [
        ("api:sue", "read", anna, {"what": "card"}),
        ("api:ada", "merge", anna, {"other": ivan}),
        ("telegram:5001", "read", ivan, {"what": "card\nsecond line"}),
        ("api:sue", "stage", ivan, None),
    ]
    async with db.write() as conn:
        for at, (actor, action, client, details) in zip(AT, entries, strict=True):
            await conn.execute(
                insert(Audit).values(
                    at=at,
                    actor=actor,
                    action=action,
                    object_type="client",
                    object_id=client,
                    details=details,
                )
            )


async def test_the_audit_log_over_the_api(db: Database, api: Api) -> None:
    anna, ivan = api.clients
    await _history(db, anna, ivan)

    async def audit(**query: str) -> list[tuple[str, str, int]]:
        status, body, _ = await api.call(
            "GET", "/api/audit", "sue", params={"until": "2026-01-31", **query}
        )
        assert status == 200, body
        return [(e["actor"], e["action"], e["object_id"]) for e in body]

    # Newest first; the two of the same moment by the order they were written.
    assert await audit() == [
        ("api:sue", "stage", ivan),
        ("telegram:5001", "read", ivan),
        ("api:ada", "merge", anna),
        ("api:sue", "read", anna),
    ]
    assert await audit(actor="api:sue") == [("api:sue", "stage", ivan), ("api:sue", "read", anna)]
    assert await audit(action="read") == [
        ("telegram:5001", "read", ivan),
        ("api:sue", "read", anna),
    ]
    assert await audit(client=str(anna)) == [("api:ada", "merge", anna), ("api:sue", "read", anna)]
    assert await audit(since="2026-01-06", until="2026-01-06") == [("api:ada", "merge", anna)]
    assert await audit(since="2026-01-06T12:00+03:00", actor="api:sue") == [
        ("api:sue", "stage", ivan)
    ]
    assert await audit(limit="1", offset="1") == [("telegram:5001", "read", ivan)]
    status, [entry], _ = await api.call("GET", "/api/audit", "config", params={"action": "merge"})
    assert entry == {
        "id": entry["id"],
        "at": "2026-01-06T12:00:00+00:00",
        "actor": "api:ada",
        "action": "merge",
        "object_type": "client",
        "object_id": anna,
        "details": {"other": ivan},
    }
    for query, error in [
        ({"since": "yesterday"}, "since: an ISO 8601 date or time"),
        ({"limit": "0"}, "limit: must be a whole number from 1 to 1000"),
        ({"offset": "-1"}, "offset: must be a whole number"),
        ({"client": "²"}, "client: must be a whole number"),
        ({"since": "2026-01-07", "until": "2026-01-06"}, "since: must come before until"),
        ({"actor": "x" * 201}, "actor: longer than 200 characters"),
        ({"actor": "api:\x00"}, "actor: control characters"),  # PostgreSQL's text refuses NUL
        ({"action": "read\n"}, "action: control characters"),
    ]:
        status, body, _ = await api.call("GET", "/api/audit", "sue", params=query)
        assert status == 400 and body["error"].startswith(error), (query, body)


async def test_hub_audit_prints_one_line_an_entry(
    db: Database, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(db, Path(config).parent) as ingest:
        anna = (
            await ingest(message(Channel.EMAIL, "<1@x>", identity("email", "a@x.org")))
        ).client_id
        ivan = (await ingest(message(Channel.TELEGRAM, "t", identity("telegram", 7)))).client_id
    await _history(db, anna, ivan)
    args = ("audit", "--config", config, "--until", "2026-01-31")
    assert await hub(*args) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"2026-01-07 08:00:00Z  api:sue  stage  client #{ivan}",
        f"2026-01-07 08:00:00Z  telegram:5001  read  client #{ivan}  "
        '{"what": "card\\nsecond line"}',
        f'2026-01-06 12:00:00Z  api:ada  merge  client #{anna}  {{"other": {ivan}}}',
        f'2026-01-05 09:00:00Z  api:sue  read  client #{anna}  {{"what": "card"}}',
    ]
    assert await hub(*args, "--actor", "api:sue", "--client", str(anna)) == 0
    assert (
        capsys.readouterr().out
        == f'2026-01-05 09:00:00Z  api:sue  read  client #{anna}  {{"what": "card"}}\n'
    )
    assert await hub(*args, "--since", "2026-01-07", "--action", "read", "--limit", "5") == 0
    assert capsys.readouterr().out.count("\n") == 1
    assert await hub(*args, "--actor", "nobody") == 0
    assert capsys.readouterr().err == "no audit entries match\n"
    assert await hub(*args, "--since", "last week") == 2
    assert capsys.readouterr().err.startswith("hub audit: since: an ISO 8601 date or time")
    assert await hub(*args, "--limit", "1001") == 2
    assert "limit: must be a whole number from 1 to 1000" in capsys.readouterr().err
