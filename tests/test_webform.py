"""The web form channel over HTTP on loopback (issue 5), in the assembled hub on
SQLite and PostgreSQL: the hosted page, POST in its three encodings, every
validation error, the abuse guards (honeypot, fill time, rate, body size,
origins), double submits, the client's identities, the confirmation email, and
a script payload shown escaped on the page and in the admin API."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from markupsafe import escape
from sqlalchemy import func, select

from hub import config as hub_config
from hub.app.run import Hub
from hub.kernel.clock import FrozenClock
from hub.kernel.errors import ConfigError
from hub.kernel.identities import identity
from hub.kernel.types import Channel, InboundMessage
from storage import Database
from storage.models import Attachment, Client, Identity, Interaction, Outbox

TOKEN = "webform-admin-token-0123456789"
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
PDF = b"%PDF-1.4\n" + b"0" * 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


FORMS: list[dict[str, Any]] = [
    {"id": "contact", "language": "en", "min_fill_seconds": 0},
    {
        "id": "quote",
        "title": "Quote",
        "language": "en",
        "min_fill_seconds": 0,
        "allowed_origins": ["http://shop.example:8000"],
        "confirm_email": True,
        "fields": [
            {"name": "name"},
            {"name": "email", "type": "email", "required": True},
            {"name": "phone", "type": "tel"},
            {"name": "details", "type": "textarea", "maps_to": "message", "max_length": 50},
            {"name": "company", "label": "Company"},
            {"name": "brief", "type": "file", "max_bytes": 1000, "accept": ["application/pdf"]},
            {"name": "agree", "type": "checkbox", "required": True, "maps_to": "consent"},
        ],
    },
    {"id": "ru", "language": "ru", "min_fill_seconds": 0},
    {"id": "slow", "language": "en", "min_fill_seconds": 30},
]


@dataclass
class Site:
    hub: Hub
    base: str
    http: aiohttp.ClientSession
    db_url: str
    clock: FrozenClock
    admin: str

    async def post(
        self, form: str, *, json_body: Any = None, data: Any = None, **kw: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {"Accept": "application/json", **kw.pop("headers", {})}
        async with self.http.post(
            f"{self.base}/f/{form}", json=json_body, data=data, headers=headers, **kw
        ) as response:
            body = await response.text()
            try:
                return response.status, json.loads(body), response
            except ValueError:
                return response.status, body, response

    async def count(self, model: Any, *where: Any) -> int:
        db = Database(self.db_url)
        try:
            async with db.read() as conn:
                statement = select(func.count()).select_from(model).where(*where)
                return int((await conn.execute(statement)).scalar_one())
        finally:
            await db.dispose()

    async def rows(self, statement: Any) -> list[Any]:
        db = Database(self.db_url)
        try:
            async with db.read() as conn:
                return list((await conn.execute(statement)).all())
        finally:
            await db.dispose()


@asynccontextmanager
async def site(
    db_url: str, tmp_path: Path, *, email_out: bool = False, **webform: Any
) -> AsyncIterator[Site]:
    port, admin = _free_port(), _free_port()
    data: dict[str, Any] = {
        "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
        "admin": {"listen": f"127.0.0.1:{admin}", "token": TOKEN},
        "hub": {"language": "en"},
        "webform": {"listen": f"127.0.0.1:{port}", "forms": FORMS, **webform},
    }
    if email_out:  # nothing listens there: the confirmation stays queued, for the test to see
        data["email"] = {"outbound": {"host": "127.0.0.1", "port": 9, "from": "hub@example.com"}}
    clock = FrozenClock()
    hub = Hub(hub_config.parse(data), clock=clock)
    async with hub.lifespan(), aiohttp.ClientSession() as http:
        yield Site(
            hub, f"http://127.0.0.1:{port}", http, db_url, clock, f"http://127.0.0.1:{admin}"
        )


CONTACT = {"name": "Anna", "email": "Anna@Example.com", "message": "Hello"}


# --- the page -------------------------------------------------------------------


async def test_hosted_page_has_the_fields_the_signed_time_and_the_honeypot(
    db_url: str, tmp_path: Path
) -> None:
    async with site(db_url, tmp_path) as s:
        async with s.http.get(f"{s.base}/f/contact?utm_source=ads") as response:
            page = await response.text()
            assert response.status == 200
            assert "script-src" not in response.headers["Content-Security-Policy"]
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        for name in ("name", "email", "phone", "message", "hp_website", "_ts", "_key"):
            assert f'name="{name}"' in page
        assert 'name="utm_source" value="ads"' in page
        async with s.http.get(f"{s.base}/f/nope") as response:
            assert response.status == 404
        async with s.http.get(f"{s.base}/f/contact.js") as response:
            script = await response.text()
            assert response.content_type == "application/javascript"
            assert '"id": "contact"' in script


# --- the three encodings ---------------------------------------------------------


async def test_json_submission_is_committed_before_201(db_url: str, tmp_path: Path) -> None:
    async with site(db_url, tmp_path) as s:
        status, body, _ = await s.post(
            "contact",
            json_body={
                **CONTACT,
                "phone": "8 (912) 345-67-89",
                "utm_source": "newsletter",
                "_page": "https://www.example.com/contacts?utm_campaign=spring",
                "_referrer": "https://search.example/",
            },
            headers={"Origin": s.base},
        )
        assert status == 201, body
        [row] = await s.rows(select(Interaction).where(Interaction.id == body["id"]))
        assert row.channel == "webform" and row.direction == "in" and row.account == "contact"
        assert row.text == "Hello\n\nYour name: Anna\nEmail: anna@example.com\nPhone: +79123456789"
        assert row.extras["utm"] == {"utm_source": "newsletter", "utm_campaign": "spring"}
        assert row.extras["page"] == "https://www.example.com/contacts?utm_campaign=spring"
        assert row.extras["referrer"] == "https://search.example/"
        idents = await s.rows(select(Identity.kind, Identity.value))
        assert sorted(idents) == [("email", "anna@example.com"), ("phone", "+79123456789")]
        [client] = await s.rows(select(Client.name, Client.source))
        assert client == ("Anna", "webform:contact")


async def test_urlencoded_gets_the_thank_you_page_and_json_when_asked(
    db_url: str, tmp_path: Path
) -> None:
    async with site(db_url, tmp_path) as s:
        async with s.http.post(f"{s.base}/f/contact", data=CONTACT) as response:
            assert response.status == 200
            assert "Thank you!" in await response.text()
        status, body, _ = await s.post("ru", data={"phone": "+7 912 000-00-01", "message": "Да"})
        assert status == 201 and isinstance(body["id"], int)
        assert await s.count(Interaction, Interaction.direction == "in") == 2


async def test_multipart_with_a_file_custom_field_and_consent(db_url: str, tmp_path: Path) -> None:
    async with site(db_url, tmp_path) as s:
        form = aiohttp.FormData()
        for key, value in {
            "email": "boris@example.org",
            "details": "A quote please",
            "company": "ACME",
            "agree": "on",
        }.items():
            form.add_field(key, value)
        form.add_field("brief", PDF, filename="brief.pdf", content_type="application/pdf")
        status, body, _ = await s.post("quote", data=form)
        assert status == 201, body
        [row] = await s.rows(select(Interaction).where(Interaction.id == body["id"]))
        assert row.extras["fields"] == {"company": "ACME"}
        assert row.extras["consent"] is True
        assert "📎 brief.pdf" in row.text and row.subject == "Quote"
        [att] = await s.rows(select(Attachment.filename, Attachment.size))
        assert att == ("brief.pdf", len(PDF))


# --- validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "values", "field", "message"),
    [
        ("contact", {"email": "a@example.com"}, "message", "Please fill in this field"),
        ("contact", {"email": "not-an-address", "message": "x"}, "email", "email address"),
        ("contact", {"phone": "12", "message": "x"}, "phone", "phone number"),
        ("contact", {"message": "x"}, "email", "Leave an email or a phone"),
        ("contact", {**CONTACT, "name": "n" * 201}, "name", "200 characters at most"),
        ("quote", {"email": "a@example.com", "details": "x"}, "agree", "Please fill in"),
        ("ru", {"message": "x"}, "email", "Оставьте эл. почту или телефон"),
    ],
)
async def test_each_validation_error_is_named_per_field(
    db_url: str, tmp_path: Path, form: str, values: dict[str, str], field: str, message: str
) -> None:
    async with site(db_url, tmp_path) as s:
        status, body, _ = await s.post(form, json_body=values)
        assert status == 422
        assert message in body["errors"][field]
        assert await s.count(Interaction) == 0


@pytest.mark.parametrize(
    ("filename", "ctype", "data", "message"),
    [
        ("big.pdf", "application/pdf", b"%PDF" + b"0" * 2000, "too big: 1000 B at most"),
        ("page.html", "text/html", b"<p>hi</p>", "not accepted (application/pdf)"),
    ],
)
async def test_file_limits(
    db_url: str, tmp_path: Path, filename: str, ctype: str, data: bytes, message: str
) -> None:
    async with site(db_url, tmp_path) as s:
        form = aiohttp.FormData()
        form.add_field("email", "a@example.com")
        form.add_field("agree", "on")
        form.add_field("brief", data, filename=filename, content_type=ctype)
        status, body, _ = await s.post("quote", data=form)
        assert status == 422
        assert message in body["errors"]["brief"]
        assert await s.count(Interaction) == 0


async def test_html_errors_keep_the_typed_values_escaped(db_url: str, tmp_path: Path) -> None:
    async with site(db_url, tmp_path) as s:
        async with s.http.post(
            f"{s.base}/f/contact", data={"name": XSS, "email": "bad", "message": XSS}
        ) as response:
            page = await response.text()
            assert response.status == 422
        assert XSS not in page and "<script>alert" not in page
        assert f'value="{escape(XSS)}"' in page
        assert f">{escape(XSS)}</textarea>" in page
        assert 'id="error-email"' in page


# --- abuse ----------------------------------------------------------------------


async def test_honeypot_filled_is_refused_and_nothing_stored(db_url: str, tmp_path: Path) -> None:
    async with site(db_url, tmp_path) as s:
        status, body, _ = await s.post("contact", json_body={**CONTACT, "hp_website": "spam.biz"})
        assert status == 422 and "meant to stay empty" in body["errors"]["_form"]
        assert await s.count(Interaction) == 0


async def test_a_hub_rendered_form_sent_too_soon_is_refused(db_url: str, tmp_path: Path) -> None:
    async with site(db_url, tmp_path) as s:
        async with s.http.get(f"{s.base}/f/slow") as response:
            page = await response.text()
        match = re.search(r'name="_ts" value="([^"]+)"', page)
        assert match is not None
        values = {**CONTACT, "_ts": match.group(1)}
        status, body, _ = await s.post("slow", json_body=values)
        assert status == 422 and "too quickly" in body["errors"]["_form"]
        s.clock.advance(timedelta(seconds=31))
        status, body, _ = await s.post("slow", json_body=values)
        assert status == 201
        # a forged stamp proves nothing: such a post is held to the other guards only
        forged = await s.post("slow", json_body={**CONTACT, "message": "2", "_ts": "1.00"})
        assert forged[0] == 201


async def test_rate_limit_per_address(db_url: str, tmp_path: Path) -> None:
    async with site(db_url, tmp_path, rate_limit_per_minute=3) as s:
        statuses = []
        for n in range(4):
            status, body, response = await s.post(
                "contact", json_body={**CONTACT, "message": f"m{n}"}
            )
            statuses.append(status)
        assert statuses == [201, 201, 201, 429]
        assert int(response.headers["Retry-After"]) >= 1
        assert "Too many" in body["errors"]["_form"]
        assert await s.count(Interaction, Interaction.direction == "in") == 3


async def test_oversize_body_is_413(db_url: str, tmp_path: Path) -> None:
    async with site(db_url, tmp_path, max_body_bytes=10_000) as s:
        status, body, _ = await s.post("contact", json_body={**CONTACT, "message": "x" * 20_000})
        assert status == 413 and "Too much data" in body["errors"]["_form"]

        # chunked, with no Content-Length to refuse it up front
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield b"message=" + b"y" * 1000 + b"&"

        status, body, _ = await s.post(
            "contact",
            data=chunks(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 413
        assert await s.count(Interaction) == 0


async def test_bad_body_is_a_clear_400(db_url: str, tmp_path: Path) -> None:
    async with site(db_url, tmp_path) as s:
        status, body, _ = await s.post(
            "contact", data=b"[1, 2", headers={"Content-Type": "application/json"}
        )
        assert status == 400 and "could not be read" in body["errors"]["_form"]


# --- cross-origin ---------------------------------------------------------------


async def test_cors_only_for_the_forms_allowed_origins(db_url: str, tmp_path: Path) -> None:
    async with site(db_url, tmp_path) as s:
        allowed = {"Origin": "http://shop.example:8000"}
        async with s.http.options(
            f"{s.base}/f/quote",
            headers={
                **allowed,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,idempotency-key",
            },
        ) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == "http://shop.example:8000"
            assert "POST" in response.headers["Access-Control-Allow-Methods"]
            assert "Idempotency-Key" in response.headers["Access-Control-Allow-Headers"]
        async with s.http.options(
            f"{s.base}/f/quote",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        ) as response:
            assert response.status == 403
            assert "Access-Control-Allow-Origin" not in response.headers
        quote = {"email": "a@example.com", "details": "x", "agree": True}
        status, _, response = await s.post("quote", json_body=quote, headers=allowed)
        assert status == 201
        assert response.headers["Access-Control-Allow-Origin"] == "http://shop.example:8000"
        status, body, response = await s.post(
            "quote", json_body=quote, headers={"Origin": "http://evil.example"}
        )
        assert status == 403
        assert "does not take submissions from http://evil.example" in body["errors"]["_form"]
        assert "Access-Control-Allow-Origin" not in response.headers
        # the contact form allows no other site at all
        status, _, _ = await s.post("contact", json_body=CONTACT, headers=allowed)
        assert status == 403
        assert await s.count(Interaction, Interaction.direction == "in") == 1


# --- double submits ---------------------------------------------------------------


async def test_double_submit_is_one_interaction(db_url: str, tmp_path: Path) -> None:
    async with site(db_url, tmp_path) as s:
        key = {"Idempotency-Key": "k-1"}
        first = await s.post("contact", json_body=CONTACT, headers=key)
        again = await s.post("contact", json_body=CONTACT, headers=key)
        assert first[0] == again[0] == 201
        assert first[1]["id"] == again[1]["id"] and again[1]["duplicate"] is True
        # the same content within a minute, with no key (or another one)
        plain = {**CONTACT, "message": "Second"}
        a = await s.post("contact", json_body=plain)
        b = await s.post("contact", json_body=plain, headers={"Idempotency-Key": "k-2"})
        assert a[1]["id"] == b[1]["id"]
        # the same key with other content is another request: nothing is lost
        other = await s.post("contact", json_body={**CONTACT, "message": "Third"}, headers=key)
        assert other[1]["id"] not in (first[1]["id"], a[1]["id"])
        assert await s.count(Interaction, Interaction.direction == "in") == 3


# --- the client -----------------------------------------------------------------


async def test_the_submitter_joins_the_client_known_by_email(db_url: str, tmp_path: Path) -> None:
    async with site(db_url, tmp_path) as s:
        assert s.hub.ingestor is not None
        by_mail = await s.hub.ingestor(
            InboundMessage(
                Channel.EMAIL,
                "support@example.com",
                "<1@example.com>",
                (identity("email", "anna@example.com", "Anna"),),
                s.clock.now(),
                text="earlier mail",
            )
        )
        status, body, _ = await s.post("contact", json_body={**CONTACT, "phone": "+79123456789"})
        assert status == 201
        [(client_id,)] = await s.rows(
            select(Interaction.client_id).where(Interaction.id == body["id"])
        )
        assert client_id == by_mail.client_id
        assert await s.count(Client) == 1
        # the phone the form proved now belongs to that client too
        assert await s.count(Identity, Identity.kind == "phone", Identity.client_id == client_id)


async def test_confirmation_email_queued_once_and_only_with_email_out(
    db_url: str, tmp_path: Path
) -> None:
    quote = {"name": "Anna", "email": "anna@example.com", "details": "x", "agree": True}
    async with site(db_url, tmp_path, email_out=True) as s:
        for _ in range(2):  # a double submit confirms once
            status, _, _ = await s.post("quote", json_body=quote, headers={"Idempotency-Key": "q"})
            assert status == 201
        rows = await s.rows(
            select(Outbox.channel, Outbox.recipient, Outbox.kind, Outbox.subject, Outbox.text)
        )
        confirmations = [r for r in rows if r.kind == "auto_reply"]
        assert len(confirmations) == 1
        [c] = confirmations
        assert (c.channel, c.recipient) == ("email", "anna@example.com")
        assert c.subject == "We have received your request: Quote"
        assert c.text.startswith("Hello, Anna,") and "x" in c.text
        # the form said confirm_email; the contact form did not
        await s.post("contact", json_body=CONTACT)
        assert await s.count(Outbox, Outbox.kind == "auto_reply") == 1
    async with site(db_url, tmp_path) as s:
        await s.post("quote", json_body={**quote, "details": "y"})
        assert await s.count(Outbox, Outbox.kind == "auto_reply") == 1  # none without email out


# --- escaping everywhere ----------------------------------------------------------


async def test_script_payload_is_data_in_the_admin_api(db_url: str, tmp_path: Path) -> None:
    async with site(db_url, tmp_path) as s:
        status, _, _ = await s.post("contact", json_body={**CONTACT, "name": XSS, "message": XSS})
        assert status == 201
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with s.http.get(f"{s.admin}/api/clients", headers=headers) as response:
            assert response.content_type == "application/json"
            [client] = await response.json()
            assert client["name"] == XSS  # a JSON string, never markup
        async with s.http.get(
            f"{s.admin}/api/clients/{client['id']}/timeline", headers=headers
        ) as response:
            assert response.content_type == "application/json"
            timeline = await response.json()
            assert timeline[0]["text"].startswith(XSS)
            assert timeline[0]["channel"] == "webform"


# --- config -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "problem"),
    [
        ({"fields": [{"name": "message"}]}, "needs an email or a phone field"),
        ({"fields": [{"name": "email"}, {"name": "email"}]}, "used twice"),
        ({"fields": [{"name": "phone"}], "confirm_email": True}, "needs an email field"),
        ({"allowed_origins": ["example.com"]}, "scheme://host"),
        ({"fields": [{"name": "email"}, {"name": "_ts"}]}, "taken by the hub"),
        ({"fields": [{"name": "email"}, {"name": "hp_website"}]}, "taken by the hub"),
    ],
)
def test_form_config_problems_are_named(form: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        hub_config.parse({"admin": {"token": "t"}, "webform": {"forms": [{"id": "f", **form}]}})
    [line] = info.value.problems
    assert line.startswith("webform") and problem in line


async def test_storage_down_is_a_clear_503_and_the_retry_is_free(
    db_url: str, tmp_path: Path
) -> None:
    async with site(db_url, tmp_path) as s:
        assert s.hub.ingestor is not None
        await s.hub.ingestor.stop()  # the hub takes nothing more: the form must say so
        status, body, _ = await s.post("contact", json_body=CONTACT)
        assert status == 503 and "try again" in body["errors"]["_form"]
        await s.hub.ingestor.start()
        status, body, _ = await s.post("contact", json_body=CONTACT)
        assert status == 201 and body["duplicate"] is False
