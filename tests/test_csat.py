"""Issue 18: satisfaction, in the assembled hub (``hub run``'s Hub) against the local
Bot API server, a capturing SMTP server and the hub's own SMTP server, on SQLite and
PostgreSQL.

Resolving a request tells the client and asks a 1-5 rating over their channel:
over Telegram five buttons whose press puts the score on the timeline (another
user's press is refused), over email five signed links whose page records on its
button (a GET records nothing; a forged link is refused). A low score tells the
supervisor at once; the client's next message is the rating's comment and opens no
request; a stage rule on ratings moves the client; the report shows the numbers.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aiosmtplib
from sqlalchemy import func, select

from hub import config as hub_config
from hub.app.run import Hub
from hub.kernel.clock import SystemClock
from hub.reports import charts
from hub.reports.reporter import Reporter
from hub.reports.reports import as_text
from storage import Database
from storage.models import Client, Conversation, Identity, Interaction, Rating
from tests.botapi import BotApiServer, Limits
from tests.botapi.world import Json, User
from tests.test_campaign_email import Sink, smtp_sink

T = TypeVar("T")
TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(
    db_url: str,
    tmp_path: Path,
    server: BotApiServer,
    staff: tuple[User, User],
    ports: dict[str, int],
) -> hub_config.Config:
    maria, olga = staff
    return hub_config.parse(
        {
            "hub": {"language": "en"},
            "storage": {"url": db_url, "attachments_dir": str(tmp_path / "files")},
            "admin": {"listen": f"127.0.0.1:{ports['admin']}", "token": "c" * 24},
            "dispatcher": {"idle_poll_s": 0.1},
            "telegram": {
                "enabled": True,
                "token": server.token,
                "api_base": server.base_url,
                "mode": "polling",
                "staff_chat_id": server.forum.id,
            },
            "managers": [
                {"name": "Maria", "telegram_id": maria.id, "language": "en"},
                {"name": "Olga", "telegram_id": olga.id, "role": "supervisor", "language": "en"},
            ],
            "email": {
                "worker": False,
                "smtp": {"listen": f"127.0.0.1:{ports['smtp']}", "domains": ["desk.example.com"]},
                "outbound": {
                    "host": "127.0.0.1",
                    "port": ports["sink"],
                    "from": "Desk <desk@desk.example.com>",
                    "starttls": False,
                },
            },
            "campaigns": {
                "public_url": f"http://127.0.0.1:{ports['admin']}",
                "unsubscribe_secret": "s" * 32,
            },
            "csat": {"notify": True, "ask": True, "alert_at": 2, "comment_minutes": 60},
            "stages": {
                "rules": [
                    {"name": "happy", "when": "rating", "score_at_least": 5, "to": "supporter"}
                ]
            },
        }
    )


@asynccontextmanager
async def assembled(
    db_url: str, tmp_path: Path, server: BotApiServer, staff: tuple[User, User]
) -> AsyncIterator[tuple[Sink, dict[str, int], Hub]]:
    async with smtp_sink() as (sink, sink_port):
        ports = {"admin": _free_port(), "smtp": _free_port(), "sink": sink_port}
        hub = Hub(_config(db_url, tmp_path, server, staff, ports))
        async with hub.lifespan():
            yield sink, ports, hub


async def _until(check: Callable[[], Awaitable[T | None]], timeout: float = TIMEOUT) -> T:
    """Poll the database for a condition, bounded."""

    async def loop() -> T:
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(loop(), timeout)


async def _seen(server: BotApiServer, find: Callable[[], T | None]) -> T:
    """Wait until ``find()`` finds something (at every change of the server)."""
    found = await server.wait_for(find, TIMEOUT)
    assert found is not None
    return found


def _text(message: Json) -> str:
    return str(message.get("text") or message.get("caption") or "")


def _buttons(message: Json) -> list[str]:
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    return [str(b.get("callback_data")) for row in rows for b in row]


async def _rating(db: Database, client_id: int) -> Any:
    async with db.read() as conn:
        return (
            await conn.execute(select(Rating).where(Rating.client_id == client_id))
        ).one_or_none()


async def _one(db: Database, statement: Any) -> Any:
    async with db.read() as conn:
        return (await conn.execute(statement)).scalar_one()


async def _client_of(db: Database, kind: str, value: str) -> int:
    statement = select(Identity.client_id).where(Identity.kind == kind, Identity.value == value)
    return int(await _until(lambda: _maybe(db, statement)))


async def _maybe(db: Database, statement: Any) -> Any:
    async with db.read() as conn:
        return (await conn.execute(statement)).scalar_one_or_none()


async def _private(server: BotApiServer, user: User, words: str) -> Json:
    def found() -> Json | None:
        return next((m for m in server.sent_to(user) if words in _text(m)), None)

    return await _seen(server, found)


async def test_telegram_rating_alert_comment_and_stage(db_url: str, tmp_path: Path) -> None:
    async with BotApiServer(limits=Limits.off()) as server:
        maria, olga = server.add_manager("Maria"), server.add_manager("Olga")
        peter, eve = server.add_user("Peter"), server.add_user("Eve")
        db = Database(db_url)
        try:
            async with assembled(db_url, tmp_path, server, (maria, olga)):
                await server.user_sends(olga, "/start")
                await server.user_sends(peter, "Where is my order?")
                topic = await _seen(server, lambda: next(iter(server.topics()), None))
                thread = topic.message_thread_id
                await server.wait_for(lambda: server.sent_to(server.forum, thread), TIMEOUT)
                await server.manager_sends_in_topic(maria, thread, "/resolve")

                # One message: the note, the question and five buttons.
                ask = await _seen(
                    server, lambda: next((m for m in server.sent_to(peter) if _buttons(m)), None)
                )
                assert "resolved" in _text(ask) and "1 (poor) to 5" in _text(ask)
                client_id = await _client_of(db, "telegram", str(peter.id))
                rating = await _rating(db, client_id)
                assert _buttons(ask) == [f"rate:{rating.id}:{s}" for s in range(1, 6)]

                pressed = await server.callback(peter, ask, f"rate:{rating.id}:5")
                query = pressed["callback_query"]["id"]
                answer = await _seen(server, lambda: server.callback_answers.get(query))
                assert answer["text"].startswith("Thank you for rating us 5 of 5")
                assert (await _rating(db, client_id)).score == 5

                # Another user's press of the same button is refused, and changes nothing.
                forged = await server.callback(eve, ask, f"rate:{rating.id}:1")
                query = forged["callback_query"]["id"]
                answer = await _seen(server, lambda: server.callback_answers.get(query))
                assert answer["text"] == "This rating cannot be given here"
                assert (await _rating(db, client_id)).score == 5

                # The client changes their mind: the last click wins, the supervisor hears.
                await server.callback(peter, ask, f"rate:{rating.id}:1")
                alert = await _private(server, olga, "Low rating 1 of 5")
                assert f"/c {client_id}" in _text(alert) and "Maria" in _text(alert)
                assert (await _rating(db, client_id)).score == 1

                # The next message is the rating's comment: no request of its own.
                await server.user_sends(peter, "You were slow")
                await _private(server, olga, "A comment on the rating 1 of 5: You were slow")
                row = await _rating(db, client_id)
                assert row.comment == "You were slow" and row.commented_at is not None
                conversations = select(Conversation.status).where(
                    Conversation.client_id == client_id
                )
                async with db.read() as conn:
                    assert (await conn.execute(conversations)).scalars().all() == ["resolved"]

                # The one after it is a request again.
                await server.user_sends(peter, "Another question")
                await _until(
                    lambda: _maybe(db, conversations.where(Conversation.status == "open").limit(1))
                )

            async with db.read() as conn:
                events = (
                    await conn.execute(
                        select(Interaction.text, Interaction.extras)
                        .where(Interaction.client_id == client_id, Interaction.direction == "event")
                        .order_by(Interaction.id)
                    )
                ).all()
                stage = await conn.scalar(select(Client.stage).where(Client.id == client_id))
                comment = await conn.scalar(
                    select(Interaction.conversation_id).where(Interaction.text == "You were slow")
                )
            scores = [e.extras["rating"]["score"] for e in events if (e.extras or {}).get("rating")]
            assert scores == [5, 1]
            assert any(e.text == "The client changed their rating: 5 → 1 of 5" for e in events)
            assert stage == "supporter"  # the rule on a 5 moved them; a 1 moves nobody back
            assert comment == rating.conversation_id  # logged on the rated request
        finally:
            await db.dispose()


async def test_email_rating_by_link_comment_and_report(db_url: str, tmp_path: Path) -> None:
    async with BotApiServer(limits=Limits.off()) as server:
        maria, olga = server.add_manager("Maria"), server.add_manager("Olga")
        db = Database(db_url)
        try:
            async with assembled(db_url, tmp_path, server, (maria, olga)) as (sink, ports, hub):
                await server.user_sends(olga, "/start")
                await _mail(
                    ports["smtp"], "Invoice 7", "Please send the invoice.", "<q-1@example.org>"
                )
                client_id = await _client_of(db, "email", "bob@example.org")
                assert hub.desk is not None
                manager = await hub.desk.manager(maria.id)
                assert manager is not None
                said = await hub.desk.act(client_id, manager, "resolve")
                assert said == "Resolved by Maria"

                def asked() -> EmailMessage | None:
                    return next((m for m in sink.messages if "/r?t=" in _body(m)), None)

                ask = await _seen(server, asked)
                assert ask["In-Reply-To"] == "<q-1@example.org>"  # threaded like a reply
                assert "Invoice 7" in str(ask["Subject"])
                links = dict(re.findall(r"^([1-5]) — (http\S+)$", _body(ask), re.MULTILINE))
                assert sorted(links) == ["1", "2", "3", "4", "5"]

                async with aiohttp.ClientSession() as http:
                    async with http.get(links["2"]) as page:  # a scanner's GET records nothing
                        assert page.status == 200
                        assert "Your rating: 2 of 5" in await page.text()
                    assert (await _rating(db, client_id)).score is None
                    forged = links["2"][:-3] + ("AAA" if not links["2"].endswith("AAA") else "BBB")
                    async with http.post(forged) as page:
                        assert page.status == 404
                    async with http.post(links["2"].replace(".2.", ".1.")) as page:
                        assert page.status == 404  # another score under this score's signature
                    async with http.post(links["2"]) as page:
                        assert page.status == 200
                        assert "Your rating 2 of 5 is saved" in await page.text()
                rating = await _rating(db, client_id)
                assert rating.score == 2
                await _private(server, olga, "Low rating 2 of 5")

                # A reply to the rating email is its comment, and reopens nothing.
                await _mail(
                    ports["smtp"],
                    "Re: Invoice 7",
                    "It took a week.",
                    "<q-2@example.org>",
                    in_reply_to=str(ask["Message-ID"]),
                )
                await _private(server, olga, "A comment on the rating 2 of 5: It took a week.")
                assert (await _rating(db, client_id)).comment.strip() == "It took a week."
                statuses = select(func.count()).where(
                    Conversation.client_id == client_id, Conversation.status != "resolved"
                )
                assert await _one(db, statuses) == 0

            reporter = Reporter(db, SystemClock(), language="en")
            report = await reporter.report(reporter.period("week"))
            assert report.summary.ratings == 1 and report.summary.rating_average == 2.0
            (row,) = report.table("satisfaction_by_manager").records()
            assert row == {
                "manager": "Maria",
                "ratings": 1,
                "average": 2.0,
                "s1": 0,
                "s2": 1,
                "s3": 0,
                "s4": 0,
                "s5": 0,
            }
            (by_channel,) = report.table("satisfaction_by_channel").records()
            assert by_channel["channel"] == "email" and by_channel["ratings"] == 1
            assert "== satisfaction by manager ==" in as_text(report)
            assert charts.has_data(report, "satisfaction")
            assert charts.render(report, "satisfaction", "ru").startswith(b"\x89PNG")
            assert "Client ratings: 1, average 2.0" in (await reporter.digest("week", "en")).summary
        finally:
            await db.dispose()


def _body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    return str(part.get_content()) if part is not None else ""


async def _mail(
    port: int, subject: str, body: str, message_id: str, *, in_reply_to: str | None = None
) -> None:
    message = EmailMessage()
    message["From"] = "Bob Stone <bob@example.org>"
    message["To"] = "desk@desk.example.com"
    message["Subject"] = subject
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message.set_content(body)
    await aiosmtplib.send(message, hostname="127.0.0.1", port=port, start_tls=False, timeout=20)
