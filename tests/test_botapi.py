"""The local Bot API server (tests/botapi) against the real aiogram 3 client.

What the Telegram channel's tests rely on: envelopes and errors as aiogram reads
them, getUpdates confirmation, webhooks with the secret header, forum topics,
file upload and download, flood control with ``retry_after``.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import zlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.methods import SendMessage
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from tests.botapi import BotApiServer, Limits
from tests.botapi.entities import ParseError, format_text
from tests.botapi.server import SECRET_HEADER


class FakeMonotonic:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def png(width: int = 3, height: int = 2) -> bytes:
    """A real PNG, so that the photo sizes Telegram reports can be checked."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Run ``app`` on a free loopback port; answers the runner and the base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    return runner, f"http://127.0.0.1:{sock.getsockname()[1]}"


def client(server: BotApiServer, token: str | None = None) -> Bot:
    api = TelegramAPIServer.from_base(server.base_url)
    return Bot(token or server.token, session=AiohttpSession(api=api))


@pytest.fixture
async def server() -> AsyncIterator[BotApiServer]:
    # Flood control has its own test, on a fake clock; here it would only make the
    # tests wait a second between two messages to one chat.
    async with BotApiServer(limits=Limits.off()) as running:
        yield running


@pytest.fixture
async def bot(server: BotApiServer) -> AsyncIterator[Bot]:
    bot = client(server)
    try:
        yield bot
    finally:
        await bot.session.close()


async def test_get_me_and_the_envelope_errors(server: BotApiServer, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.is_bot and me.username == "hub_test_bot"
    assert me.id == int(server.token.split(":")[0])

    stranger = client(server, "123:wrong")
    try:
        with pytest.raises(TelegramUnauthorizedError, match="Unauthorized"):
            await stranger.get_me()
    finally:
        await stranger.session.close()

    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.base_url}/bot{server.token}/noSuchMethod") as response:
            assert response.status == 404
            assert await response.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found",
            }
        # Method names are case-insensitive; parameters may come in the query string.
        async with http.get(f"{server.base_url}/bot{server.token}/getme?x=1") as response:
            body = await response.json()
            assert response.status == 200 and body["ok"] and body["result"]["is_bot"]


async def test_get_updates_confirms_only_with_a_later_offset(
    server: BotApiServer, bot: Bot
) -> None:
    anna = server.add_user("Anna", username="anna_k", language_code="ru")
    sent = await server.start_bot(anna, "campaign42")

    first = await bot.get_updates()
    assert [u.update_id for u in first] == [sent["update_id"]]
    message = first[0].message
    assert message is not None and message.from_user is not None
    assert message.text == "/start campaign42"
    assert message.from_user.id == anna.id and message.from_user.language_code == "ru"
    assert message.chat.id == anna.id and message.chat.type == "private"
    assert message.entities is not None
    assert (message.entities[0].type, message.entities[0].offset, message.entities[0].length) == (
        "bot_command",
        0,
        6,
    )

    # Not confirmed: asked again without an offset, Telegram repeats it.
    again = await bot.get_updates()
    assert [u.update_id for u in again] == [sent["update_id"]]
    # An offset equal to the id still returns it; only a higher one drops it.
    assert [u.update_id for u in await bot.get_updates(offset=sent["update_id"])] == [
        sent["update_id"]
    ]
    assert await bot.get_updates(offset=sent["update_id"] + 1) == []
    assert server.pending_updates() == []

    second = await server.user_sends(anna, "second")
    assert second["update_id"] == sent["update_id"] + 1
    assert second["message"]["message_id"] == sent["message"]["message_id"] + 1


async def test_long_poll_returns_as_soon_as_an_update_arrives(
    server: BotApiServer, bot: Bot
) -> None:
    anna = server.add_user("Anna")
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await server.wait_for(lambda: server.is_polling() or poll.done())
    await server.user_sends(anna, "are you there?")
    updates = await asyncio.wait_for(poll, 5)
    assert [u.message.text for u in updates if u.message] == ["are you there?"]


async def test_a_second_poller_ends_the_first_with_409(server: BotApiServer, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=30))
    await server.wait_for(lambda: server.is_polling() or first.done())
    assert await bot.get_updates(timeout=0) == []
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await asyncio.wait_for(first, 5)


async def test_webhook_with_secret_is_retried_in_order_until_2xx(
    server: BotApiServer, bot: Bot
) -> None:
    received: list[tuple[int, str | None]] = []
    accept = False

    async def hook(request: web.Request) -> web.Response:
        update = await request.json()
        received.append((update["update_id"], request.headers.get(SECRET_HEADER)))
        return web.json_response({}, status=200 if accept else 500)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner, url = await serve(app)
    try:
        assert await bot.set_webhook(f"{url}/hook", secret_token="s3cr3t-Token")
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates()

        anna = server.add_user("Anna")
        updates = [await server.user_sends(anna, f"message {n}") for n in range(3)]
        ids = [u["update_id"] for u in updates]

        await server.wait_for(lambda: len(received) >= 3)
        # The hook keeps failing: the first update is retried, nothing overtakes it,
        # and it stays unconfirmed.
        assert {update_id for update_id, _ in received} == {ids[0]}
        assert all(secret == "s3cr3t-Token" for _, secret in received)
        info = await bot.get_webhook_info()
        assert info.pending_update_count == 3
        assert (
            info.last_error_message == "Wrong response from the webhook: 500 Internal Server Error"
        )

        accept = True
        await server.wait_for(lambda: not server.pending_updates())
        delivered = [update_id for update_id, _ in received]
        assert delivered[-3:] == ids
        assert [a.status for a in server.webhook_attempts()][-3:] == [200, 200, 200]

        assert await bot.delete_webhook()
        assert await bot.get_updates() == []
    finally:
        await runner.cleanup()


async def test_aiogram_dispatcher_polls_and_answers(server: BotApiServer, bot: Bot) -> None:
    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> None:
        await message.answer(f"echo: {message.text}")

    polling = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, close_bot_session=False, polling_timeout=5)
    )
    try:
        anna = server.add_user("Anna")
        await server.user_sends(anna, "one")
        await server.user_sends(anna, "two")
        answers = await server.wait_sent(anna, 2)
        assert sorted(m["text"] for m in answers) == ["echo: one", "echo: two"]
    finally:
        await dp.stop_polling()
        await polling


async def test_aiogram_webhook_handler_may_answer_with_a_method(
    server: BotApiServer, bot: Bot
) -> None:
    """aiogram's own webhook handler: secret checked, reply executed from the response."""
    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> SendMessage:
        return message.answer(f"echo: {message.text}")

    app = web.Application()
    SimpleRequestHandler(dp, bot, handle_in_background=False, secret_token="hook-secret").register(
        app, path="/wh"
    )
    runner, url = await serve(app)
    try:
        await bot.set_webhook(f"{url}/wh", secret_token="hook-secret")
        anna = server.add_user("Anna")
        await server.user_sends(anna, "ping")
        [answer] = await server.wait_sent(anna)
        assert answer["text"] == "echo: ping"
        assert [a.status for a in server.webhook_attempts()] == [200]

        # A wrong secret is refused by aiogram (401); the update is retried, kept.
        await bot.set_webhook(f"{url}/wh", secret_token="other-secret")
        await server.user_sends(anna, "lost?")
        await server.wait_for(lambda: len(server.webhook_attempts()) >= 3)
        assert server.webhook_attempts()[-1].status == 401
        assert [u["message"]["text"] for u in server.pending_updates()] == ["lost?"]
    finally:
        await bot.delete_webhook()
        await runner.cleanup()


async def test_send_message_into_a_forum_topic_with_buttons(server: BotApiServer, bot: Bot) -> None:
    topic = await bot.create_forum_topic(server.forum.id, "Anna Karenina")
    assert server.topic_named("Anna Karenina") is not None
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Take", callback_data="take:1")]]
    )
    sent = await bot.send_message(
        server.forum.id,
        "<b>Anna</b> &lt;anna@example.com&gt;",
        parse_mode="HTML",
        message_thread_id=topic.message_thread_id,
        reply_markup=markup,
    )
    assert sent.message_thread_id == topic.message_thread_id and sent.is_topic_message
    assert sent.text == "Anna <anna@example.com>"
    assert sent.entities is not None and sent.entities[0].type == "bold"
    assert sent.entities[0].length == 4

    in_topic = server.sent_to(server.forum, topic.message_thread_id)
    assert [m["text"] for m in in_topic] == ["Anna <anna@example.com>"]
    assert server.sent_to(server.forum, topic.message_thread_id + 1000) == []

    manager = server.add_manager("Maria")
    pressed = await server.callback(manager, in_topic[0], "take:1")
    [update] = await bot.get_updates()
    assert update.callback_query is not None
    assert update.callback_query.id == pressed["callback_query"]["id"]
    assert await bot.answer_callback_query(update.callback_query.id, text="Taken")
    assert server.callback_answers[update.callback_query.id]["text"] == "Taken"
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(update.callback_query.id)

    reply = await server.manager_sends_in_topic(manager, topic.message_thread_id, "on it")
    [update] = await bot.get_updates(offset=update.update_id + 1)
    assert update.update_id == reply["update_id"]
    assert update.message is not None and update.message.text == "on it"
    assert update.message.message_thread_id == topic.message_thread_id


async def test_photo_upload_and_download(server: BotApiServer, bot: Bot) -> None:
    anna = server.add_user("Anna")
    await server.user_sends(anna, "hi")
    picture = png(3, 2)

    sent = await bot.send_photo(
        anna.id, BufferedInputFile(picture, "p.png"), caption="<i>for you</i>", parse_mode="HTML"
    )
    assert sent.photo is not None and sent.caption == "for you"
    largest = sent.photo[-1]
    assert (largest.width, largest.height) == (3, 2)
    assert [u.data for u in server.uploads] == [picture]

    file = await bot.get_file(largest.file_id)
    assert file.file_path is not None and file.file_size == len(picture)
    downloaded = await bot.download_file(file.file_path)
    assert downloaded is not None and downloaded.read() == picture
    # The smaller size is a different file: a client must take the last one.
    assert server.file_bytes(sent.photo[0].file_id) != picture

    # The same file again by file_id, no upload.
    again = await bot.send_photo(anna.id, largest.file_id)
    assert again.photo is not None and again.photo[-1].file_id == largest.file_id
    assert len(server.uploads) == 1
    with pytest.raises(TelegramBadRequest, match="can't use file of type Photo as Document"):
        await bot.send_document(anna.id, largest.file_id)

    # A document from the user comes back byte for byte.
    await server.user_sends(anna, document=("price.pdf", b"%PDF-1.4 price list"))
    updates = await bot.get_updates()
    document = updates[-1].message.document if updates[-1].message else None
    assert document is not None and document.file_name == "price.pdf"
    assert document.mime_type == "application/pdf"
    downloaded = await bot.download(document.file_id)
    assert downloaded is not None and downloaded.read() == b"%PDF-1.4 price list"


async def test_flood_control_answers_429_with_retry_after() -> None:
    clock = FakeMonotonic()
    async with BotApiServer(clock=clock) as server:
        bot = client(server)
        try:
            anna = server.add_user("Anna")
            await server.user_sends(anna, "hi")
            await bot.send_message(anna.id, "one")
            with pytest.raises(TelegramRetryAfter) as caught:
                await bot.send_message(anna.id, "two")
            assert caught.value.retry_after == 1
            assert "Too Many Requests: retry after 1" in caught.value.message
            assert [(t.method, t.chat_id, t.scope) for t in server.throttled] == [
                ("sendmessage", anna.id, "chat")
            ]
            clock.advance(1.0)
            await bot.send_message(anna.id, "two")

            # A group takes 20 messages a minute, however spaced.
            for n in range(20):
                await bot.send_message(server.forum.id, f"mirror {n}")
                clock.advance(1.0)
            with pytest.raises(TelegramRetryAfter) as caught:
                await bot.send_message(server.forum.id, "one too many")
            assert caught.value.retry_after == 40
            assert server.throttled[-1].scope == "group"
            assert len(server.sent_to(server.forum)) == 20

            server.limits = Limits.off()
            await bot.send_message(server.forum.id, "limits switched off")
            assert len(server.throttled) == 2

            # A storm on demand, whatever the limits: recorded like any other 429.
            server.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
            with pytest.raises(TelegramRetryAfter) as caught:
                await bot.send_message(anna.id, "storm")
            assert caught.value.retry_after == 7
            assert server.throttled[-1].scope == "injected"
            await bot.send_message(anna.id, "after the storm")
        finally:
            await bot.session.close()


async def test_every_post_to_a_chat_spends_its_budget() -> None:
    """Issue 15: edits, deletions, pins and a topic's creation, edit, close and
    reopen count in the chat's budget as sends do (Telegram counts them all); a
    21st post in a group within a minute, whatever its kind, is answered 429."""
    clock = FakeMonotonic()
    async with BotApiServer(clock=clock) as server:
        bot = client(server)
        try:
            forum = server.forum.id
            first = await bot.send_message(forum, "first")
            buttons = InlineKeyboardMarkup(
                inline_keyboard=[[InlineKeyboardButton(text="ok", callback_data="ok")]]
            )
            # An edit one second after a send: the chat's 1 a second counts it.
            with pytest.raises(TelegramRetryAfter):
                await bot.edit_message_text(
                    "first, edited", chat_id=forum, message_id=first.message_id
                )
            assert [(t.method, t.scope) for t in server.throttled] == [("editmessagetext", "chat")]
            clock.advance(1.0)
            topic = await bot.create_forum_topic(forum, "Anna")
            thread = topic.message_thread_id
            photo = BufferedInputFile(png(), filename="p.png")
            kinds = [
                lambda: bot.edit_message_text(
                    "first, edited", chat_id=forum, message_id=first.message_id
                ),
                lambda: bot.edit_message_reply_markup(
                    chat_id=forum, message_id=first.message_id, reply_markup=buttons
                ),
                lambda: bot.edit_forum_topic(forum, thread, name="Anna P."),
                lambda: bot.close_forum_topic(forum, thread),
                lambda: bot.reopen_forum_topic(forum, thread),
                lambda: bot.pin_chat_message(forum, first.message_id, disable_notification=True),
                lambda: bot.unpin_chat_message(forum, message_id=first.message_id),
                lambda: bot.send_photo(forum, photo, caption="a", message_thread_id=thread),
                lambda: bot.send_media_group(
                    forum,
                    [
                        InputMediaPhoto(media=BufferedInputFile(png(2, 2), filename="a.png")),
                        InputMediaPhoto(media=BufferedInputFile(png(4, 4), filename="b.png")),
                    ],
                    message_thread_id=thread,
                ),
            ]
            for post in kinds:
                clock.advance(1.0)
                await post()
            spent = 2 + len(kinds) + 1  # the first, the topic, the kinds (the album is two)
            while spent < 20:
                clock.advance(1.0)
                extra = await bot.send_message(forum, f"n{spent}", message_thread_id=thread)
                spent += 1
            clock.advance(1.0)
            for late in (
                lambda: bot.edit_message_text("late", chat_id=forum, message_id=extra.message_id),
                lambda: bot.create_forum_topic(forum, "Boris"),
                lambda: bot.delete_message(forum, extra.message_id),
                lambda: bot.delete_messages(forum, [extra.message_id]),
            ):
                with pytest.raises(TelegramRetryAfter):
                    await late()
            assert [(t.method, t.scope) for t in server.throttled[1:]] == [
                ("editmessagetext", "group"),
                ("createforumtopic", "group"),
                ("deletemessage", "group"),
                ("deletemessages", "group"),
            ]
            clock.advance(60.0)  # a minute later the group takes posts again
            await bot.delete_messages(forum, [extra.message_id])
            # An album of ten spends ten of the twenty at once.
            album = [
                InputMediaPhoto(media=BufferedInputFile(png(n, 1), filename=f"{n}.png"))
                for n in range(1, 11)
            ]
            clock.advance(1.0)
            await bot.send_media_group(forum, album)  # 11 of the 20
            clock.advance(1.0)
            with pytest.raises(TelegramRetryAfter):
                await bot.send_media_group(forum, album)  # 21
            assert server.throttled[-1].method == "sendmediagroup"
        finally:
            await bot.session.close()


async def test_blocked_user_and_never_started_user_are_403(server: BotApiServer, bot: Bot) -> None:
    anna = server.add_user("Anna")
    with pytest.raises(TelegramForbiddenError, match="bot can't initiate conversation"):
        await bot.send_message(anna.id, "cold call")
    await server.user_sends(anna, "hi")
    await bot.send_message(anna.id, "hello")
    await server.block(anna)
    with pytest.raises(TelegramForbiddenError, match="Forbidden: bot was blocked by the user"):
        await bot.send_message(anna.id, "still there?")
    updates = await bot.get_updates(allowed_updates=["message", "my_chat_member"])
    member = updates[-1].my_chat_member
    assert member is not None and member.new_chat_member.status == "kicked"
    assert [m["text"] for m in server.sent_to(anna)] == ["hello"]


async def test_too_long_text_is_400(server: BotApiServer, bot: Bot) -> None:
    anna = server.add_user("Anna")
    await server.user_sends(anna, "hi")
    with pytest.raises(TelegramBadRequest, match="Bad Request: message is too long"):
        await bot.send_message(anna.id, "x" * 4097)
    # The limit counts UTF-16 code units, as Telegram does: an emoji is two.
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(anna.id, "x" * 4095 + "🙂")
    await bot.send_message(anna.id, "x" * 4096)
    # Markup does not count, only the text it leaves.
    await bot.send_message(anna.id, "<b>" + "x" * 4096 + "</b>", parse_mode="HTML")
    assert len(server.sent_to(anna)) == 2


@pytest.mark.parametrize(
    ("text", "parse_mode", "error"),
    [
        ("<b>unclosed", "HTML", 'Can\'t find end tag corresponding to start tag "b"'),
        ("1 < 2", "HTML", 'Unsupported start tag "" at byte offset 2'),
        ("<b>a</i>", "HTML", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("<font>x</font>", "HTML", 'Unsupported start tag "font" at byte offset 0'),
        (
            "Total: 5.",
            "MarkdownV2",
            "Character '.' is reserved and must be escaped with the preceding '\\'",
        ),
        ("*bold", "MarkdownV2", "Can't find end of Bold entity at byte offset 0"),
    ],
)
async def test_malformed_markup_is_400(
    server: BotApiServer, bot: Bot, text: str, parse_mode: str, error: str
) -> None:
    anna = server.add_user("Anna")
    await server.user_sends(anna, "hi")
    with pytest.raises(TelegramBadRequest) as caught:
        await bot.send_message(anna.id, text, parse_mode=parse_mode)
    assert caught.value.message == f"Bad Request: can't parse entities: {error}"
    assert server.sent_to(anna) == []


async def test_escaped_markup_is_accepted(server: BotApiServer, bot: Bot) -> None:
    anna = server.add_user("Anna")
    await server.user_sends(anna, "hi")
    html = await bot.send_message(anna.id, "1 &lt; 2 &amp; <b>3</b>", parse_mode="HTML")
    assert html.text == "1 < 2 & 3"
    md = await bot.send_message(anna.id, r"Total: 5\. *Paid* \(card\)", parse_mode="MarkdownV2")
    assert md.text == "Total: 5. Paid (card)"
    assert md.entities is not None and md.entities[0].type == "bold"


async def test_posting_into_a_deleted_topic_is_400(server: BotApiServer, bot: Bot) -> None:
    topic = await bot.create_forum_topic(server.forum.id, "Boris")
    await bot.send_message(server.forum.id, "card", message_thread_id=topic.message_thread_id)
    await server.delete_topic(topic.message_thread_id)
    with pytest.raises(TelegramBadRequest, match="Bad Request: message thread not found"):
        await bot.send_message(server.forum.id, "again", message_thread_id=topic.message_thread_id)
    assert server.topics() == []
    assert server.sent_to(server.forum, topic.message_thread_id) == []


def test_entity_offsets_are_utf16() -> None:
    text, entities = format_text("🙂 <b>Привет</b>", "HTML")
    assert text == "🙂 Привет"
    assert entities == [{"type": "bold", "offset": 3, "length": 6}]
    with pytest.raises(ParseError, match="byte offset 5"):
        format_text("🙂 <x>", "HTML")


async def test_stop_ends_long_polls_and_webhook_senders() -> None:
    before = asyncio.all_tasks()
    refusing = socket.socket()  # bound, never listening: connections are refused
    refusing.bind(("127.0.0.1", 0))
    try:
        async with BotApiServer() as server:
            bot = client(server)
            helper = client(server, server.add_bot("second_bot").token)
            try:
                poll = asyncio.create_task(helper.get_updates(timeout=30))
                await server.wait_for(
                    lambda: poll.done() or server.is_polling(server.bots[helper.token])
                )
                port = refusing.getsockname()[1]
                await bot.set_webhook(f"http://127.0.0.1:{port}/hook")
                await server.user_sends(server.add_user("Anna"), "hi")
                await server.wait_for(lambda: len(server.webhook_attempts()) >= 2)
                assert server.webhook_attempts()[-1].error == "Connection refused"
                assert len(server.pending_updates()) == 1
                await server.stop()
                assert await asyncio.wait_for(poll, 5) == []
            finally:
                await bot.session.close()
                await helper.session.close()
    finally:
        refusing.close()
    assert asyncio.all_tasks() - before == set()
