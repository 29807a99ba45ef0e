"""channels.email.parse over the shared real-world corpus and hand-built messages."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from channels.email.parse import ParsedEmail, html_to_text, parse, split_quoted
from tests.corpus import email_corpus

CORPUS = email_corpus()
FILES = sorted(CORPUS.glob("*.eml"))
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
LIMIT = 10_000_000


def _tags() -> dict[str, set[str]]:
    rows = (CORPUS / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return {r.split("\t")[0]: set(r.split("\t")[4].split(",")) for r in rows if r.strip()}


TAGS = _tags()


def tagged(tag: str) -> list[Path]:
    return [p for p in FILES if tag in TAGS.get(p.name, set())]


def run(raw: bytes, limit: int = LIMIT) -> ParsedEmail:
    return parse(raw, account="support", received_at=NOW, max_attachment_bytes=limit)


def run_file(path: Path, limit: int = LIMIT) -> ParsedEmail:
    with open(path, "rb") as f:
        return run(f.read(), limit)


def all_text(result: ParsedEmail) -> str:
    m = result.message
    assert m is not None
    return " ".join(
        [m.subject or "", m.text, str(m.extras.get("quoted", "")), m.sender.display_name or ""]
    )


def test_corpus_is_there() -> None:
    assert len(FILES) == 114
    assert set(TAGS) == {p.name for p in FILES}


# --- every file -------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_corpus_file_gives_a_message_or_a_problem(path: Path) -> None:
    result = run_file(path)
    assert result.kind in ("message", "auto_reply", "bounce")
    if result.message is None:
        assert any("sender" in p for p in result.problems)
        return
    m = result.message
    assert m.external_id.startswith(("<", "sha256:"))
    assert m.external_id == (result.message_id or m.external_id)
    assert "@" in m.sender.value
    assert m.extras["problems"] is result.problems
    assert isinstance(m.extras["defects"], int)
    for value in (m.text, m.subject or "", str(m.extras.get("quoted", ""))):
        assert not re.search("[\ud800-\udfff]", value), "unrepaired surrogate"
    for hint in m.thread_hints:
        assert hint.startswith("<") and hint.endswith(">")


def test_no_sender_yields_no_message_but_a_problem() -> None:
    result = run_file(CORPUS / "mikel-mail-error_emails-bad_encoded_subject.eml")
    assert result.message is None
    assert "no valid sender address" in result.problems[-1]


def test_corpus_counts_per_kind() -> None:
    kinds = [run_file(p).kind for p in FILES]
    print({k: kinds.count(k) for k in set(kinds)})
    assert kinds.count("bounce") >= 20
    assert kinds.count("auto_reply") >= 8


# Files without any valid sender address: From "bob@extern" (no top-level domain), no
# From at all, an auto-reply with no address header.
NO_SENDER = {
    "enmime-malformed-multiple-address-header-values.eml",
    "mikel-mail-error_emails-bad_encoded_subject.eml",
    "php-mime-mail-parser-issue212.eml",
}


def test_no_sender_files_are_the_known_ones() -> None:
    assert {p.name for p in FILES if run_file(p).message is None} == NO_SENDER


# --- attachments ------------------------------------------------------------------


@pytest.mark.parametrize("path", tagged("attachment"), ids=lambda p: p.name)
def test_attachments_are_kept_with_their_bytes(path: Path) -> None:
    result = run_file(path)
    if path.name in NO_SENDER:
        # No message to hang them on: the caller logs the raw bytes with the problem.
        assert result.message is None and result.problems
        return
    assert result.message is not None
    kept = {hashlib.sha256(a.data).hexdigest() for a in result.message.attachments}
    assert kept, "an attachment-tagged file kept no attachment"
    assert all(a.filename and "/" not in a.filename for a in result.message.attachments)
    # Cross-check with the standard library: every part it calls an attachment is kept.
    msg = message_from_bytes(path.read_bytes(), policy=policy.default)
    for part in msg.walk():
        if part.is_multipart() or part.get_content_disposition() != "attachment":
            continue
        data = part.get_payload(decode=True)
        # m0018.eml's base64 is corrupt (upper-cased); the stdlib hands back raw text there.
        if isinstance(data, bytes) and data and not part.defects:
            assert hashlib.sha256(data).hexdigest() in kept, part.get_filename()


@pytest.mark.parametrize(
    ("name", "filename", "size"),
    [
        ("enmime-attachment.eml", "test.html", 7),
        ("mikel-mail-attachment_emails-attachment_nonascii_filename.eml", "ciële.txt", 11),
        (
            "mikel-mail-multi_charset-japanese_attachment_long_name.eml",
            "かきくけこかきくけこかきくけこかきくけこかきくけこ.txt",
            18,
        ),
        ("enmime-mime-bad-8bit-filename.eml", "管理.doc", 7),
        ("enmime-html-only-inline.eml", "favicon.png", 687),
    ],
)
def test_attachment_filenames_are_decoded(name: str, filename: str, size: int) -> None:
    result = run_file(CORPUS / name)
    assert result.message is not None
    found = {a.filename: len(a.data) for a in result.message.attachments}
    assert found.get(filename) == size, found


def test_text_attachment_is_an_attachment_not_body() -> None:
    result = run_file(CORPUS / "enmime-attachment.eml")
    assert result.message is not None
    assert result.message.text == "A text section"
    assert result.message.attachments[0].content_type == "text/html"


# --- bounces and auto-replies ---------------------------------------------------------

# Tagged "bounce" in the manifest but not a failed delivery, on reading the files:
NOT_FAILURES = {
    # a DSN with Action: delayed ("still being retried"): nothing failed yet
    "flanker-bounce-no-mx.eml",
    # "THIS IS A WARNING MESSAGE ONLY": a delay warning (Auto-Submitted warning-timeout)
    "mikel-mail-mime_emails-raw_email_with_mimepart_without_content_type.eml",
    # an ARF abuse complaint (report-type=feedback-report), not a delivery report
    "flanker-complaints-yahoo.eml",
}


@pytest.mark.parametrize("path", tagged("bounce"), ids=lambda p: p.name)
def test_bounces_classify(path: Path) -> None:
    result = run_file(path)
    if path.name in NOT_FAILURES:
        print(f"{path.name}: tagged bounce, classified {result.kind}")
        assert result.kind == "auto_reply"
        return
    assert result.kind == "bounce"
    assert result.message is not None
    assert result.message.extras["auto"] == "bounce"


@pytest.mark.parametrize(
    ("name", "original", "reason"),
    [
        (
            "zammad-mail033-undelivered-mail-returned-to-sender-notification.eml",
            "<notification.20150830145600.1.4.5f4fd063-f69b-4e64-a92d-5e7128bd6682@127.0.0.1:3000>",
            "5.1.1",
        ),
        ("flanker-bounce-zed.eml", "<20090708054735.GC7578@example.com>", "5.1.1"),
        ("flanker-bounce-mailbox-full.eml", "<4E326A95.3010907@example.com>", "5.2.2"),
        ("sisimai-bsd-lhost-x3-01.eml", "<fffffffffffffffffffffffffffffff@xample.org>", "553"),
        (
            "sisimai-bsd-lhost-gmail-01.eml",
            "<D992C2C3-F175-4C4D-97E2-53A90E4E5BF5@gmail.com>",
            "5.1.1",
        ),
    ],
)
def test_bounce_names_the_original_and_the_reason(name: str, original: str, reason: str) -> None:
    result = run_file(CORPUS / name)
    assert result.kind == "bounce"
    assert result.bounced_message_id == original
    assert result.bounce_reason is not None and reason in result.bounce_reason


def test_not_a_bounce_stays_a_message() -> None:
    assert run_file(CORPUS / "sisimai-not-is-not-bounce-01.eml").kind == "message"


@pytest.mark.parametrize("path", tagged("auto-reply"), ids=lambda p: p.name)
def test_auto_replies_classify(path: Path) -> None:
    result = run_file(path)
    assert result.kind == "auto_reply"
    if result.message is not None:
        assert result.message.extras["auto"] == "auto_reply"


def test_plain_client_mail_is_a_message() -> None:
    result = run_file(CORPUS / "mikel-mail-plain_emails-raw_email_reply.eml")
    assert result.kind == "message"
    assert result.message is not None and "auto" not in result.message.extras


# --- charsets ---------------------------------------------------------------------

READABLE = {
    "thunderbird-sample04.eml": "Вопрос",  # koi8-r
    "flanker-bilingual-simple.eml": "по-русски",
    "mikel-mail-plain_emails-raw_email_bad_time.eml": "Атиков",  # windows-1251 From name
    "sisimai-bsd-lhost-mailru-01.eml": "автоматически",
    "sisimai-bsd-lhost-yandex-01.eml": "почтовым сервером",
    "flanker-charset-gb2312.eml": "管理员",
    "spamscope-mailparser-mail_test_12.eml": "发票",
    "mikel-mail-rfc2822-example14.eml": "テスト",  # iso-2022-jp subject
    "sisimai-bsd-lhost-kddi-01.eml": "メールボックス",  # iso-2022-jp body
    "php-mime-mail-parser-issue230.eml": "ACADEMIC NEWSLETTER",  # x-mac-cyrillic label
    "zbateson-mmp-m0010.eml": "Frösche",  # windows-1252
    "django-helpdesk-quoted_printable.eml": "českých",
}


@pytest.mark.parametrize(("name", "word"), READABLE.items())
def test_charsets_give_readable_text(name: str, word: str) -> None:
    result = run_file(CORPUS / name)
    assert word in all_text(result)
    assert "\ufffd" not in all_text(result)


@pytest.mark.parametrize("path", tagged("russian"), ids=lambda p: p.name)
def test_russian_files_have_cyrillic(path: Path) -> None:
    result = run_file(path)
    assert result.message is not None
    text = all_text(result) + (result.message.html or "")
    assert re.search("[а-яА-ЯёЁіІїЇ]{3,}", text), text[:200]


def test_unknown_charset_is_a_problem_not_a_crash() -> None:
    result = run_file(CORPUS / "zbateson-mmp-invalid-charset.eml")
    assert result.message is not None
    assert "The Hare and the Tortoise" in result.message.text
    assert any("unknown charset" in p for p in result.problems)


# --- HTML -------------------------------------------------------------------------

# HTML-only files whose HTML holds no text at all: an image only, or a body lost in headers.
EMPTY_HTML = {
    "mikel-mail-attachment_emails-attachment_message_rfc822_inline_image.eml",
    "mikel-mail-error_emails-bad_date_header.eml",
}


@pytest.mark.parametrize("path", tagged("html-only"), ids=lambda p: p.name)
def test_html_only_gives_text_without_tags(path: Path) -> None:
    result = run_file(path)
    assert result.message is not None
    text = result.message.text
    assert not re.search(r"<(?:/?[a-zA-Z][a-zA-Z0-9]*)(?:\s[^>]*)?>", text), text[:200]
    if path.name not in EMPTY_HTML:
        assert text.strip()


def test_html_to_text_blocks_links_scripts_entities() -> None:
    markup = (
        "<html><head><style>p{color:red}</style><title>T</title></head><body>"
        "<p>Hello&nbsp;&amp; welcome</p><div>Line two<br>Line three</div>"
        "<script>alert(1)</script><a href='https://example.com/x'>our site</a>"
        "<ul><li>one</li><li>two</li></ul></body></html>"
    )
    text = html_to_text(markup)
    assert text.splitlines()[0] == "Hello & welcome"
    assert "Line two\nLine three" in text
    assert "our site (https://example.com/x)" in text
    assert "- one\n- two" in text
    assert "alert" not in text and "color" not in text and "T\n" not in text


def test_broken_base64_html_is_repaired() -> None:
    result = run_file(CORPUS / "flanker-spam-broken-base64.eml")
    assert result.message is not None
    assert result.message.text.startswith("Here goes some text")


# --- threading and quoting ------------------------------------------------------------


@pytest.mark.parametrize("path", tagged("reply-thread"), ids=lambda p: p.name)
def test_reply_thread_files_give_thread_hints(path: Path) -> None:
    result = run_file(path)
    assert result.message is not None
    msg = message_from_bytes(path.read_bytes(), policy=policy.compat32)
    linked = " ".join(str(msg.get(h, "")) for h in ("In-Reply-To", "References"))
    if re.search(r"<[^<>\s]+>", linked):
        assert result.message.thread_hints
    else:
        # bad_date_header.eml: "In-Reply-To: someone@yahoo.com" is an address, not an id.
        print(f"{path.name}: tagged reply-thread but names no message id")
        assert not result.message.thread_hints


def test_thread_hints_order_in_reply_to_then_references_reversed() -> None:
    raw = (
        b"From: Anna <anna@example.com>\r\nTo: support@hub.example\r\n"
        b"Message-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\nReferences: <a@x> <b@x>\r\n"
        b"Subject: Re: hi\r\n\r\nthanks\r\n"
    )
    result = run(raw)
    assert result.message is not None
    assert result.message.thread_hints == ("<b@x>", "<a@x>")
    assert result.message.external_id == "<c@x>"


REPLY = "Спасибо!\n\nOn Mon, 5 Jan 2026, Anna wrote:\n> старый текст"


def test_quoted_history_is_separated() -> None:
    raw = (
        "From: Anna <anna@example.com>\nSubject: Re: заказ\nMessage-ID: <r1@example.com>\n"
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" + REPLY
    ).encode("utf-8")
    result = run(raw)
    assert result.message is not None
    assert result.message.text == "Спасибо!"
    assert result.message.extras["quoted"].endswith("> старый текст")


@pytest.mark.parametrize(
    ("text", "new"),
    [
        ("Ok\n\nАнна писал(а):\n> вопрос", "Ok"),
        ("Done.\n\n-----Original Message-----\nFrom: a\nold", "Done."),
        (
            "Yes\n\n________________________________\nFrom: Anna <a@x.org>\n"
            "Sent: Monday, 5 January 2026 10:00\nTo: b\nSubject: q\n\nold",
            "Yes",
        ),
        ("Yes\n\nOn Mon, Jan 5, 2026 at 10:00 AM Anna <a@x.org>\nwrote:\n> q", "Yes"),
        ("Top\n> quoted\n> more\n", "Top"),
    ],
)
def test_split_quoted_styles(text: str, new: str) -> None:
    got_new, quoted = split_quoted(text)
    assert got_new == new
    assert quoted


def test_interleaved_reply_is_kept_whole() -> None:
    text = "> question one\nanswer one\n> question two\nanswer two"
    assert split_quoted(text) == (text, "")


# --- hand-built cases -------------------------------------------------------------------


def test_rfc2231_filename() -> None:
    raw = (
        b"From: a@example.com\r\nMessage-ID: <f@x>\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment;\r\n"
        b" filename*0*=utf-8''%D0%9E%D1%82%D1%87%D1%91%D1%82;\r\n filename*1=.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n"
    )
    result = run(raw)
    assert result.message is not None
    (att,) = result.message.attachments
    assert (att.filename, att.content_type, att.data) == ("Отчёт.pdf", "application/pdf", b"hello")
    assert result.message.text == "see attached"


def test_rfc2047_subject_in_koi8r() -> None:
    encoded = "=?koi8-r?B?" + __import__("base64").b64encode("Привет".encode("koi8-r")).decode()
    raw = f"From: a@example.com\r\nSubject: {encoded}?=\r\n\r\nbody\r\n".encode("ascii")
    result = run(raw)
    assert result.message is not None
    assert result.message.subject == "Привет"


def test_missing_message_id_gives_a_stable_content_hash() -> None:
    raw = b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n"
    first, second = run(raw), run(raw)
    assert first.message is not None and second.message is not None
    assert first.message.external_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert first.message.external_id == second.message.external_id
    assert run(raw + b"more").message.external_id != first.message.external_id  # type: ignore[union-attr]


def test_oversized_attachment_is_skipped_and_listed() -> None:
    raw = (
        b"From: a@example.com\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
        b"--b\r\nContent-Type: application/zip\r\n"
        b'Content-Disposition: attachment; filename="big.zip"\r\n\r\n' + b"x" * 2000 + b"\r\n"
        b"--b\r\nContent-Type: text/csv\r\n"
        b'Content-Disposition: attachment; filename="small.csv"\r\n\r\na,b\r\n'
        b"--b--\r\n"
    )
    result = run(raw, limit=1000)
    assert result.message is not None
    assert [a.filename for a in result.message.attachments] == ["small.csv"]
    (skipped,) = result.message.extras["attachments_skipped"]
    assert skipped["filename"] == "big.zip" and skipped["size"] >= 2000


def test_sender_falls_back_to_reply_to() -> None:
    raw = b"From: undisclosed\r\nReply-To: Bob <Bob@Example.COM>\r\n\r\nhi\r\n"
    result = run(raw)
    assert result.message is not None
    assert result.message.sender.value == "bob@example.com"
    assert result.message.sender.display_name == "Bob"


def test_header_with_encoded_newline_does_not_raise() -> None:
    result = run_file(CORPUS / "enmime-qp-utf8-header-recursed.eml")
    assert result.message is not None
    assert "\n" not in (result.message.sender.display_name or "")


def test_auto_submitted_and_out_of_office() -> None:
    base = b"From: a@example.com\r\nSubject: %s\r\n%s\r\nhi\r\n"
    assert run(base % (b"hello", b"Auto-Submitted: auto-replied\r\n")).kind == "auto_reply"
    assert run(base % (b"hello", b"Auto-Submitted: no\r\n")).kind == "message"
    assert run(base % (b"Out of Office: back Monday", b"")).kind == "auto_reply"
    assert run(base % (b"hello", b"Precedence: bulk\r\n")).kind == "auto_reply"
    assert run(base % (b"hello", b"")).kind == "message"


def test_dsn_with_headers_part() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.org\r\nMessage-ID: <dsn@mx>\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.org\r\n\r\n"
        b"Final-Recipient: rfc822; gone@example.net\r\nAction: failed\r\n"
        b"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n"
        b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        b"From: support@hub.example\r\nMessage-ID: <out-42@hub.example>\r\n"
        b"--b--\r\n"
    )
    result = run(raw)
    assert result.kind == "bounce"
    assert result.bounced_message_id == "<out-42@hub.example>"
    assert result.bounce_reason == "5.1.1 smtp; 550 5.1.1 no such user"
    assert result.message is not None
    assert result.message.extras["failed_recipients"] == ["gone@example.net"]


def test_garbage_never_raises() -> None:
    for raw in (
        b"",
        b"\x00\xff\xfe",
        b"From: \r\n\r\n",
        b"Content-Type: multipart/mixed\r\n\r\n--",
    ):
        result = run(raw)
        assert result.message is None
        assert result.problems
