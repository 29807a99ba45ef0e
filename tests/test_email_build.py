"""The outbound message as written (channels/email/sender.py), read back by the
stdlib's modern parser: whatever names, subjects, texts and files go in come out
the same, in 7-bit lines no longer than RFC 5322 allows. Property-based: a few
hundred examples, so the suite stays fast."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formataddr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.email.channel import _html
from channels.email.sender import SmtpSender
from hub.config import OutboundSmtpSection
from hub.kernel.types import OutboundMessage

WORDS = st.characters(categories=("L", "N", "Zs"), include_characters=".,-«»!()")
NAMES = st.text(WORDS, max_size=60).map(str.strip)
SUBJECTS = st.text(st.characters(categories=("L", "N", "P", "Zs", "So")), max_size=300)
TEXTS = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r"))
FILES = st.lists(
    st.tuples(
        st.text(st.characters(categories=("L", "N", "P", "Zs")), min_size=1, max_size=80),
        st.sampled_from(
            [
                "application/pdf",
                "text/plain",
                "Image/PNG",
                "text/plain; charset=utf-8",
                "bad",
                "multipart/x",
                'text/"x"',
                "a b/c",
            ]
        ),
        st.binary(max_size=3000),
    ),
    max_size=3,
)


def sender(name: str) -> SmtpSender:
    settings_ = OutboundSmtpSection.model_validate(
        {
            "host": "127.0.0.1",
            "port": 25,
            "from": formataddr((name, "shop@example.com"), charset="utf-8"),
            "subject_tag": False,
        }
    )
    return SmtpSender(settings_, domain="hub.example")


def read(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _type(given: str) -> str:
    """What a stored content type is sent as: its type/subtype, else octet-stream."""
    plain = given.split(";")[0].strip().lower()
    good = plain in ("application/pdf", "text/plain", "image/png")
    return plain if good else "application/octet-stream"


def words(value: str) -> str:
    return " ".join(value.split())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shop=NAMES,
    client=NAMES,
    subject=SUBJECTS,
    text=TEXTS,
    html=st.booleans(),
    files=FILES,
    kind=st.sampled_from(["reply", "campaign", "auto_reply"]),
)
def test_what_goes_in_comes_out(
    shop: str,
    client: str,
    subject: str,
    text: str,
    html: bool,
    files: list[tuple[str, str, bytes]],
    kind: str,
) -> None:
    message = OutboundMessage(
        outbox_id=1,
        channel="email",
        account="shop",
        recipient=formataddr((client, "anna@client.example"), charset="utf-8"),
        kind=kind,
        text=text,
        idempotency_key="key-1",
        subject=subject or None,
        conversation_id=7,
        extras={"unsubscribe_url": "https://shop.example/u?t=1"},
    )
    data, msg_id = sender(shop).build(
        message,
        in_reply_to="<parent@client.example>",
        references=[],
        html=_html(text) if html else None,
        attachments=files,
    )
    assert data.isascii()
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert b"\n" not in data.replace(b"\r\n", b"")  # every line ends in CRLF

    back = read(data)
    assert back["Message-ID"] == msg_id
    assert back["From"].addresses[0].display_name == shop
    assert back["From"].addresses[0].addr_spec == "shop@example.com"
    assert back["To"].addresses[0].display_name == client
    assert back["In-Reply-To"] == "<parent@client.example>"
    if subject:
        expected = subject if subject.lower().startswith("re:") else f"Re: {subject}"
        assert words(back["Subject"]) == words(expected)
    body = back.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == text
    assert (back.get_body(("html",)) is not None) == html
    found = [
        (a.get_filename(), a.get_content_type(), a.get_payload(decode=True))
        for a in back.iter_attachments()
    ]
    assert found == [(n.strip() or "attachment", _type(t), b) for n, t, b in files]
    if kind == "campaign":
        assert back["List-Unsubscribe"] == "<https://shop.example/u?t=1>"
    if kind == "auto_reply":
        assert back["Auto-Submitted"] == "auto-replied"


@pytest.mark.parametrize(
    "field",
    [
        {"recipient": "anna@client.example\r\nBcc: all@victims.example"},
        {"subject": "Offer\nBcc: all@victims.example"},
        {"recipient": "not an address"},
        {"recipient": "анна@клиент.example"},  # would need SMTPUTF8
    ],
)
def test_what_cannot_go_into_a_header_is_refused(field: dict[str, str]) -> None:
    base: dict[str, object] = {
        "outbox_id": 1,
        "channel": "email",
        "account": "shop",
        "recipient": "anna@client.example",
        "kind": "reply",
        "text": "hello",
        "idempotency_key": "key-1",
    }
    message = OutboundMessage(**{**base, **field})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sender("Shop").build(message, in_reply_to=None, references=[])
