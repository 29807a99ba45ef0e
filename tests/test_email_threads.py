"""Replies as the popular mail programs write them stay in their conversation.

Each test: a client writes over a real SMTP session, a manager answers through
the outbox and a real relay, the conversation is resolved, and the client
answers the way Gmail, Outlook or Apple Mail would. The answer must join the
first conversation (and reopen it), show only the new text with the quoted
history kept apart, and never join another client's conversation.
"""

from __future__ import annotations

import asyncio
from email import policy
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select, update

from hub.desk.replies import reply
from storage import Database
from storage.models import Conversation, Interaction
from tests.test_email_channel import Desk2, _deliver_all, _send, email_desk

FIRST = (
    "From: Анна Петрова <anna@example.com>\r\nTo: help@support.example\r\n"
    "Subject: Заказ 42\r\nMessage-ID: <q1@mail.example.com>\r\n"
    "Date: Mon, 05 Jan 2026 09:55:00 +0300\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\nГде мой заказ?\r\n"
).encode()


async def _answered(db: Database, d: Desk2) -> tuple[int, EmailMessage]:
    """The first mail in, a manager's answer out, the conversation resolved."""
    assert d.channel.server is not None
    await asyncio.to_thread(_send, d.channel.server.port, FIRST)
    async with db.read() as conn:
        conversation = (
            await conn.execute(select(Interaction.conversation_id).where(Interaction.id == 1))
        ).scalar_one()
    assert conversation is not None
    await reply(db, d.clock, conversation, "Заказ в пути.\nТрек: RU123.", author="Мария")
    await _deliver_all(d.dispatcher)
    [sent] = [
        c.message
        for c in d.capture.envelopes
        if c.rcpt_tos == ["anna@example.com"] and c.message["Auto-Submitted"] is None
    ]
    async with db.write() as conn:
        await conn.execute(
            update(Conversation)
            .where(Conversation.id == conversation)
            .values(status="resolved", resolved_at=d.clock.now())
        )
    return conversation, sent


async def _logged(db: Database, message_id: str) -> tuple[int | None, str, dict[str, object]]:
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(Interaction.conversation_id, Interaction.text, Interaction.extras).where(
                    Interaction.external_id == message_id
                )
            )
        ).one()
    return row[0], row[1], row[2] or {}


async def _status(db: Database, conversation: int) -> str:
    async with db.read() as conn:
        return str(
            (
                await conn.execute(
                    select(Conversation.status).where(Conversation.id == conversation)
                )
            ).scalar_one()
        )


def _gmail(ours: EmailMessage) -> bytes:
    """Gmail: In-Reply-To and the whole References chain, multipart/alternative,
    an "On …, … wrote:" attribution over "> " quoting, base64 HTML."""
    return (
        "MIME-Version: 1.0\r\n"
        f"References: <q1@mail.example.com> {ours['Message-ID']}\r\n"
        f"In-Reply-To: {ours['Message-ID']}\r\n"
        "From: =?UTF-8?B?0JDQvdC90LAg0J/QtdGC0YDQvtCy0LA=?= <anna@example.com>\r\n"
        "Date: Mon, 5 Jan 2026 10:20:11 +0300\r\n"
        "Message-ID: <CAGmail+reply=1@mail.gmail.com>\r\n"
        f"Subject: Re: {ours['Subject']}\r\n"
        "To: =?UTF-8?B?0J/QvtC00LTQtdGA0LbQutCw?= <help@support.example>\r\n"
        'Content-Type: multipart/alternative; boundary="000000000000a1b2c3"\r\n\r\n'
        "--000000000000a1b2c3\r\n"
        'Content-Type: text/plain; charset="UTF-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        "=D0=A1=D0=BF=D0=B0=D1=81=D0=B8=D0=B1=D0=BE, =D0=BF=D0=BE=D0=BB=D1=83=D1=87=\r\n"
        "=D0=B8=D0=BB=D0=B0!\r\n\r\n"
        "On Mon, 5 Jan 2026 at 10:00, =D0=9F=D0=BE=D0=B4=D0=B4=D0=B5=D1=80=D0=B6=D0=BA=\r\n"
        "=D0=B0 <help@support.example> wrote:\r\n\r\n"
        "> =D0=97=D0=B0=D0=BA=D0=B0=D0=B7 =D0=B2 =D0=BF=D1=83=D1=82=D0=B8.\r\n"
        "> =D0=A2=D1=80=D0=B5=D0=BA: RU123.\r\n"
        ">\r\n\r\n"
        "--000000000000a1b2c3\r\n"
        'Content-Type: text/html; charset="UTF-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        '<div dir=3D"ltr">=D0=A1=D0=BF=D0=B0=D1=81=D0=B8=D0=B1=D0=BE, =D0=BF=D0=BE=\r\n'
        '=D0=BB=D1=83=D1=87=D0=B8=D0=BB=D0=B0!</div><br><div class=3D"gmail_quote">=\r\n'
        "On Mon, 5 Jan 2026 at 10:00 wrote:<blockquote>=D0=97=D0=B0=D0=BA=D0=B0=D0=\r\n"
        "=B7 =D0=B2 =D0=BF=D1=83=D1=82=D0=B8.</blockquote></div>\r\n\r\n"
        "--000000000000a1b2c3--\r\n"
    ).encode()


def _outlook(ours: EmailMessage) -> bytes:
    """Outlook (Microsoft 365 on the web, through a forwarding rule): no
    In-Reply-To, no References (the forwarder dropped them), Thread-Index,
    an "RE:" subject that kept the tag, HTML only, windows-1251, and the
    "From: / Sent:" header block under a rule instead of "> " quoting."""
    subject = "RE: " + str(ours["Subject"]).removeprefix("Re: ")
    html = (
        "<html><head><meta http-equiv='Content-Type' content='text/html; charset=windows-1251'>"
        "<style>p.MsoNormal{margin:0}</style></head><body lang=RU>"
        "<div class=WordSection1><p class=MsoNormal>Спасибо, получила!<o:p></o:p></p>"
        "<p class=MsoNormal><o:p>&nbsp;</o:p></p>"
        "<div style='border:none;border-top:solid #E1E1E1 1.0pt'>"
        "<p class=MsoNormal>_____________________________________________<br>"
        "<b>From:</b> Поддержка &lt;help@support.example&gt;<br>"
        "<b>Sent:</b> Monday, January 5, 2026 10:00 AM<br>"
        "<b>To:</b> Анна Петрова &lt;anna@example.com&gt;<br>"
        f"<b>Subject:</b> {ours['Subject']}</p></div>"
        "<p class=MsoNormal>Заказ в пути.<br>Трек: RU123.</p></div></body></html>"
    )
    msg = EmailMessage()
    msg["From"] = "Анна Петрова <anna@example.com>"
    msg["To"] = "Поддержка <help@support.example>"
    msg["Subject"] = subject
    msg["Thread-Topic"] = "Заказ 42"
    msg["Thread-Index"] = "AQHcfV2k3Jb5Nq0aR0mWg2p1kX8h7A=="
    msg["Message-ID"] = "<DB9PR01MB1234ABCD@DB9PR01MB1234.eurprd01.prod.outlook.com>"
    msg["Date"] = "Mon, 5 Jan 2026 07:25:40 +0000"
    msg["X-MS-Has-Attach"] = ""
    msg["Content-Language"] = "ru-RU"
    msg.set_content(html, subtype="html", charset="windows-1251", cte="quoted-printable")
    return msg.as_bytes(policy=policy.SMTP)


def _apple(ours: EmailMessage) -> bytes:
    """Apple Mail: In-Reply-To and References, text/plain format=flowed in
    quoted-printable, a "…, at …, … wrote:" attribution, and a blank line
    inside the quote."""
    return (
        "From: =?utf-8?B?0JDQvdC90LAg0J/QtdGC0YDQvtCy0LA=?= <anna@example.com>\r\n"
        "Content-Type: text/plain;\r\n\tcharset=utf-8;\r\n\tformat=flowed\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3774.600.62\\))\r\n"
        f"Subject: Re: {ours['Subject']}\r\n"
        "Date: Mon, 5 Jan 2026 10:31:02 +0300\r\n"
        f"References: <q1@mail.example.com>\r\n {ours['Message-ID']}\r\n"
        "To: =?utf-8?B?0J/QvtC00LTQtdGA0LbQutCw?= <help@support.example>\r\n"
        f"In-Reply-To: {ours['Message-ID']}\r\n"
        "Message-Id: <5E0F8C2A-1B7D-4F1E-9C51-0A9D2A4C7B11@example.com>\r\n"
        "X-Mailer: Apple Mail (2.3774.600.62)\r\n\r\n"
        "=D0=A1=D0=BF=D0=B0=D1=81=D0=B8=D0=B1=D0=BE, =D0=BF=D0=BE=D0=BB=D1=83=D1=87=\r\n"
        "=D0=B8=D0=BB=D0=B0!\r\n\r\n"
        "> On 5 Jan 2026, at 10:00, =D0=9F=D0=BE=D0=B4=D0=B4=D0=B5=D1=80=D0=B6=D0=BA=\r\n"
        "=D0=B0 <help@support.example> wrote:\r\n"
        ">=20\r\n"
        "> =D0=97=D0=B0=D0=BA=D0=B0=D0=B7 =D0=B2 =D0=BF=D1=83=D1=82=D0=B8.\r\n"
        ">=20\r\n"
        "> =D0=A2=D1=80=D0=B5=D0=BA: RU123.\r\n"
    ).encode()


async def _client_answers(
    db: Database, tmp_path: Path, write: object, message_id: str
) -> tuple[int, int | None, str, dict[str, object], str]:
    async with email_desk(db, tmp_path) as d:
        conversation, ours = await _answered(db, d)
        assert d.channel.server is not None
        raw = write(ours)  # type: ignore[operator]
        await asyncio.to_thread(_send, d.channel.server.port, raw)
        joined, text, extras = await _logged(db, message_id)
        return conversation, joined, text, extras, await _status(db, conversation)


async def test_a_gmail_reply_joins_and_reopens_the_conversation(
    db: Database, tmp_path: Path
) -> None:
    conversation, joined, text, extras, status = await _client_answers(
        db, tmp_path, _gmail, "<CAGmail+reply=1@mail.gmail.com>"
    )
    assert joined == conversation
    assert status == "open"
    assert text == "Спасибо, получила!"
    assert "Заказ в пути." in str(extras["quoted"])


async def test_an_outlook_reply_without_threading_headers_finds_it_by_the_subject_tag(
    db: Database, tmp_path: Path
) -> None:
    conversation, joined, text, extras, status = await _client_answers(
        db, tmp_path, _outlook, "<DB9PR01MB1234ABCD@DB9PR01MB1234.eurprd01.prod.outlook.com>"
    )
    assert joined == conversation
    assert status == "open"
    assert text == "Спасибо, получила!"
    assert "Заказ в пути." in str(extras["quoted"])


async def test_an_apple_mail_reply_joins_the_conversation(db: Database, tmp_path: Path) -> None:
    conversation, joined, text, extras, status = await _client_answers(
        db, tmp_path, _apple, "<5E0F8C2A-1B7D-4F1E-9C51-0A9D2A4C7B11@example.com>"
    )
    assert joined == conversation
    assert status == "open"
    assert text == "Спасибо, получила!"
    assert "RU123" in str(extras["quoted"])


async def test_another_clients_reply_never_joins_the_conversation(
    db: Database, tmp_path: Path
) -> None:
    """Anna forwarded our answer to Boris; he answers it, keeping every header
    and the tag. He gets a conversation of his own."""
    async with email_desk(db, tmp_path) as d:
        conversation, ours = await _answered(db, d)
        assert d.channel.server is not None
        raw = (
            _gmail(ours)
            .replace(b"anna@example.com", b"boris@example.net")
            .replace(b"CAGmail+reply=1", b"CAGmail+boris=1")
        )
        await asyncio.to_thread(_send, d.channel.server.port, raw, "boris@example.net")
        joined, _, _ = await _logged(db, "<CAGmail+boris=1@mail.gmail.com>")
        assert await _status(db, conversation) == "resolved"
    assert joined is not None and joined != conversation
