"""A local stand-in for Telegram's Bot API servers, for tests that run the real aiogram.

Speaks https://core.telegram.org/bots/api over HTTP on 127.0.0.1:
``/bot<token>/<method>`` answering ``{"ok": true, "result": …}`` or
``{"ok": false, "error_code": …, "description": …, "parameters": …}``, file
downloads at ``/file/bot<token>/<file_path>``, ``getUpdates`` long polling with
Telegram's confirmation rule, webhooks with the secret header and retries, and
flood control (429 with ``retry_after``).

Tests drive the other side of the world through plain async methods: users write
to the bot (``user_sends``), managers post in forum topics
(``manager_sends_in_topic``), press buttons (``callback``), block the bot, delete
topics; and they read what the bot did (``sent_to``, ``topics``, ``uploads``,
``throttled``, ``calls``), waiting with ``wait_for`` — never by sleeping::

    async with BotApiServer() as server:
        bot = Bot(server.token, session=AiohttpSession(
            api=TelegramAPIServer.from_base(server.base_url)))
        anna = server.add_user("Anna")
        await server.user_sends(anna, "hello")
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from tests.botapi.entities import detect_entities
from tests.botapi.files import StoredFile, media_fields
from tests.botapi.limits import FloodControl, Limits, Throttled
from tests.botapi.methods import Described, Methods, chat_member, delete_topic
from tests.botapi.params import (
    ApiError,
    Params,
    Upload,
    bad_request,
    read_multipart,
    read_request,
)
from tests.botapi.world import (
    MEDIA_KEYS,
    TOPIC_COLORS,
    BotAccount,
    Group,
    Json,
    Topic,
    User,
    Webhook,
    WebhookAttempt,
    World,
)

T = TypeVar("T")
logger = logging.getLogger("tests.botapi")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPLOAD = 50 * 1024 * 1024
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
CONFLICT_POLL = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
_TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]+")
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_UPDATE_METHODS = frozenset({"getupdates", "setwebhook", "deletewebhook", "getwebhookinfo"})

ChatRef = int | User | Group


@dataclass(frozen=True, slots=True)
class Call:
    """One Bot API request and the answer it got."""

    token: str
    method: str
    params: dict[str, Any]
    status: int
    response: Json

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def result(self) -> Any:
        return self.response.get("result")


@dataclass(slots=True)
class _Injected:
    method: str
    error: ApiError
    times: int


def _update_chat(update: Json) -> int | None:
    """The chat an update belongs to: webhooks keep each chat's updates in order."""
    for key, value in update.items():
        if not isinstance(value, dict):
            continue
        chat = value.get("chat") or (value.get("message") or {}).get("chat")
        if chat:
            return int(chat["id"])
        if key == "callback_query":
            return int(value["from"]["id"])
    return None


class BotApiServer:
    """The Bot API on loopback plus the test-side controls of its world.

    ``clock`` (monotonic seconds) times the flood limits and ``wall_clock`` (Unix
    seconds) dates messages; pass fakes to control them. Webhook updates are sent
    one at a time by default (so in order); ``webhook_parallel`` > 1 sends up to
    that many at once (bounded by ``max_connections``), still one per chat at a time.
    """

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        token: str | None = None,
        bot_username: str = "hub_test_bot",
        host: str = "127.0.0.1",
        webhook_parallel: int = 1,
        webhook_timeout: float = 10.0,
        webhook_retry: tuple[float, float] = (0.05, 1.0),
    ) -> None:
        self.world = World(wall_clock)
        self.flood = FloodControl(limits or Limits(), clock)
        self.throttled: list[Throttled] = []
        self.calls: list[Call] = []
        self.internal_errors: list[Exception] = []
        self.methods = Methods(self.world, self.flood, self.throttled)
        self.host = host
        self.port = 0
        self.webhook_parallel = webhook_parallel
        self.webhook_timeout = webhook_timeout
        self.webhook_retry = webhook_retry
        self.bot = self.world.add_bot(bot_username, "Hub Test Bot", token)
        self.forum = self.world.add_group("Staff", is_forum=True)
        self.forum.members[self.bot.id] = "administrator"
        self._changed = asyncio.Condition()
        self._injected: list[_Injected] = []
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._webhook_tasks: dict[str, asyncio.Task[None]] = {}
        self._polls: dict[str, int] = {}

    # -- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> BotApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_UPLOAD + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        self._closing = False
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))  # a restart keeps the port
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._session = aiohttp.ClientSession()
        for bot in self.world.bots.values():
            if bot.webhook is not None:
                self._start_webhook(bot)

    async def stop(self) -> None:
        """Ends long polls, cancels webhook senders, closes the listener."""
        self._closing = True
        await self._notify()
        tasks = list(self._webhook_tasks.values())
        self._webhook_tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def base_url(self) -> str:
        """For ``TelegramAPIServer.from_base``."""
        return f"http://{self.host}:{self.port}"

    @property
    def token(self) -> str:
        return self.bot.token

    @property
    def users(self) -> dict[int, User]:
        return self.world.users

    @property
    def bots(self) -> dict[str, BotAccount]:
        return self.world.bots

    @property
    def limits(self) -> Limits:
        return self.flood.limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        self.flood.limits = limits

    # -- HTTP -------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        bot = self.world.bots.get(token)
        if bot is None:
            error = ApiError(401, "Unauthorized") if _TOKEN.fullmatch(token) else _not_found()
            return web.json_response(error.to_api(), status=error.code)
        try:
            params = await read_request(request)
        except ApiError as error:
            return web.json_response(error.to_api(), status=error.code)
        status, body = await self.call(bot, request.match_info["method"], params)
        return web.json_response(body, status=status)

    async def _handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] not in self.world.bots:
            error = ApiError(401, "Unauthorized")
            return web.json_response(error.to_api(), status=error.code)
        stored = self.world.files.by_path.get(request.match_info["path"])
        if stored is None:
            return web.json_response(_not_found().to_api(), status=404)
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        return web.json_response(_not_found().to_api(), status=404)

    async def call(self, bot: BotAccount, method: str, params: Params) -> tuple[int, Json]:
        """Run one method as if requested over HTTP; answers (status, body) and logs it."""
        name = method.lower()
        try:
            self._raise_injected(bot, name, params)
            if name in _UPDATE_METHODS:
                result = await self._update_method(bot, name, params)
            else:
                implementation = self.methods.table.get(name)
                if implementation is None:
                    raise _not_found()
                result = implementation(bot, params)
            body: Json = {"ok": True}
            if isinstance(result, Described):
                body["result"] = copy.deepcopy(result.result)
                body["description"] = result.description
            else:
                body["result"] = copy.deepcopy(result)
            status = 200
        except ApiError as error:
            status, body = error.code, error.to_api()
        except Exception as error:
            # A bug of the stand-in, not an answer Telegram would give: logged with
            # its traceback and kept, so the test that hit it can tell.
            logger.exception("%s failed inside the Bot API stand-in", method)
            self.internal_errors.append(error)
            status, body = 500, ApiError(500, "Internal Server Error").to_api()
        self.calls.append(Call(bot.token, method, params.describe(), status, body))
        await self._notify()
        return status, body

    def _raise_injected(self, bot: BotAccount, name: str, params: Params) -> None:
        for injected in self._injected:
            if injected.method != name:
                continue
            injected.times -= 1
            if injected.times <= 0:
                self._injected.remove(injected)
            error = injected.error
            if error.code == 429 and error.parameters:
                chat = params.raw("chat_id")
                self.throttled.append(
                    Throttled(
                        bot.token,
                        name,
                        int(chat) if str(chat).lstrip("-").isdigit() else 0,
                        "injected",
                        int(error.parameters.get("retry_after", 0)),
                        self.flood.clock(),
                    )
                )
            raise error

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- getUpdates and webhooks ------------------------------------------------

    async def _update_method(self, bot: BotAccount, name: str, params: Params) -> Any:
        if name == "getupdates":
            return await self._get_updates(bot, params)
        if name == "setwebhook":
            return await self._set_webhook(bot, params)
        if name == "deletewebhook":
            return await self._delete_webhook(bot, params)
        return self._webhook_info(bot)

    async def _get_updates(self, bot: BotAccount, params: Params) -> list[Json]:
        if bot.webhook is not None:
            raise ApiError(409, CONFLICT_WEBHOOK)
        offset = params.integer("offset") or 0
        limit = min(max(params.integer("limit") or 100, 1), 100)
        timeout = max(params.integer("timeout") or 0, 0)
        allowed = params.decoded("allowed_updates")
        if isinstance(allowed, list):
            bot.allowed_updates = [str(kind) for kind in allowed]
        bot.poll_generation += 1
        generation = bot.poll_generation
        if offset > 0:
            bot.confirm_below(offset)
        elif offset < 0:
            bot.updates = bot.updates[offset:]
        await self._notify()  # an older poll still waiting ends with 409

        def answered() -> bool:
            return (
                self._closing
                or bot.poll_generation != generation
                or bot.webhook is not None
                or bool(bot.updates)
            )

        if timeout and not answered():
            self._polls[bot.token] = self._polls.get(bot.token, 0) + 1
            await self._notify()
            try:
                async with asyncio.timeout(timeout):
                    async with self._changed:
                        await self._changed.wait_for(answered)
            except TimeoutError:
                pass
            finally:
                self._polls[bot.token] -= 1
        if bot.poll_generation != generation:
            raise ApiError(409, CONFLICT_POLL)
        if bot.webhook is not None:
            raise ApiError(409, CONFLICT_WEBHOOK)
        return bot.updates[:limit]

    async def _set_webhook(self, bot: BotAccount, params: Params) -> Described:
        url = params.string("url")
        if not url:
            return await self._delete_webhook(bot, params)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.string("secret_token")
        if secret is not None and not _SECRET.fullmatch(secret):
            raise bad_request("secret token contains unallowed characters")
        max_connections = params.integer("max_connections") or 40
        if not 1 <= max_connections <= 100:
            raise bad_request("bad webhook: max_connections must be between 1 and 100")
        allowed = params.decoded("allowed_updates")
        if isinstance(allowed, list):
            bot.allowed_updates = [str(kind) for kind in allowed]
        if params.flag("drop_pending_updates"):
            bot.updates.clear()
        hook = Webhook(
            url, secret, max_connections, bot.allowed_updates, params.string("ip_address")
        )
        old = bot.webhook
        if old is not None and (old.url, old.secret_token, old.max_connections) == (
            url,
            secret,
            max_connections,
        ):
            return Described(True, "Webhook is already set")
        await self._stop_webhook(bot)
        bot.webhook = hook
        if self._session is not None:
            self._start_webhook(bot)
        return Described(True, "Webhook was set")

    async def _delete_webhook(self, bot: BotAccount, params: Params) -> Described:
        if params.flag("drop_pending_updates"):
            bot.updates.clear()
        if bot.webhook is None:
            return Described(True, "Webhook is already deleted")
        await self._stop_webhook(bot)
        bot.webhook = None
        return Described(True, "Webhook was deleted")

    def _webhook_info(self, bot: BotAccount) -> Json:
        hook = bot.webhook
        info: Json = {
            "url": hook.url if hook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(bot.updates),
        }
        if hook is not None:
            info["max_connections"] = hook.max_connections
            info["ip_address"] = hook.ip_address or "127.0.0.1"
            if hook.allowed_updates:
                info["allowed_updates"] = hook.allowed_updates
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info

    def _start_webhook(self, bot: BotAccount) -> None:
        assert bot.webhook is not None
        self._webhook_tasks[bot.token] = asyncio.create_task(
            self._webhook_loop(bot, bot.webhook), name=f"webhook-{bot.id}"
        )

    async def _stop_webhook(self, bot: BotAccount) -> None:
        task = self._webhook_tasks.pop(bot.token, None)
        if task is None or task is asyncio.current_task():
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def _next_delivery(
        self, bot: BotAccount, hook: Webhook, in_flight: dict[int, Any]
    ) -> Json | None:
        if len(in_flight) >= min(hook.max_connections, self.webhook_parallel):
            return None
        busy = set(in_flight.values())
        for update in bot.updates:
            if update["update_id"] in in_flight:
                continue
            if _update_chat(update) in busy:
                continue  # that chat's earlier update is still on its way
            return update
        return None

    async def _webhook_loop(self, bot: BotAccount, hook: Webhook) -> None:
        in_flight: dict[int, int | None] = {}
        deliveries: set[asyncio.Task[None]] = set()
        try:
            while True:
                picked: Json | None = None

                def ready() -> bool:
                    nonlocal picked
                    picked = self._next_delivery(bot, hook, in_flight)
                    return self._closing or picked is not None

                async with self._changed:
                    await self._changed.wait_for(ready)
                if self._closing or picked is None:
                    return
                in_flight[picked["update_id"]] = _update_chat(picked)
                task = asyncio.create_task(self._deliver(bot, hook, picked, in_flight))
                deliveries.add(task)
                task.add_done_callback(deliveries.discard)
        finally:
            for task in deliveries:
                task.cancel()
            await asyncio.gather(*deliveries, return_exceptions=True)

    async def _deliver(
        self, bot: BotAccount, hook: Webhook, update: Json, in_flight: dict[int, int | None]
    ) -> None:
        """POST one update until the hook answers 2xx; only then is it confirmed."""
        update_id = update["update_id"]
        delay, max_delay = self.webhook_retry
        try:
            while True:
                status, error, reply = await self._post(hook, update)
                bot.webhook_attempts.append(
                    WebhookAttempt(update_id, hook.url, hook.secret_token, status, error)
                )
                if error is None:
                    bot.updates = [u for u in bot.updates if u["update_id"] != update_id]
                    in_flight.pop(update_id, None)
                    await self._notify()
                    if reply is not None:
                        await self.call(bot, *reply)
                    return
                hook.last_error_date = self.world.now()
                hook.last_error_message = error
                await self._notify()
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_delay)
        finally:
            in_flight.pop(update_id, None)

    async def _post(
        self, hook: Webhook, update: Json
    ) -> tuple[int | None, str | None, tuple[str, Params] | None]:
        assert self._session is not None
        headers = {"Content-Type": "application/json"}
        if hook.secret_token:
            headers[SECRET_HEADER] = hook.secret_token
        try:
            async with self._session.post(
                hook.url,
                data=json.dumps(update, ensure_ascii=False).encode(),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.webhook_timeout),
            ) as response:
                if not 200 <= response.status < 300:
                    return (
                        response.status,
                        f"Wrong response from the webhook: {response.status} {response.reason}",
                        None,
                    )
                return response.status, None, await _webhook_reply(response)
        except TimeoutError:
            return None, "Read timeout expired", None
        except aiohttp.ClientConnectorError:
            return None, "Connection refused", None
        except aiohttp.ClientError as error:
            return None, f"Connection error: {type(error).__name__}", None

    # -- the world, test side -----------------------------------------------------

    def add_user(
        self,
        first_name: str = "Anna",
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        phone_number: str | None = None,
    ) -> User:
        """A Telegram user; they have no chat with any bot until they write to it."""
        return self.world.add_user(
            first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
            phone_number=phone_number,
        )

    def add_manager(self, first_name: str = "Maria", *, chat: Group | None = None) -> User:
        """A user who is a member of the staff forum (or ``chat``)."""
        user = self.add_user(first_name, username=f"{first_name.lower()}_mgr")
        (chat or self.forum).members[user.id] = "member"
        return user

    def add_bot(self, username: str, *, token: str | None = None) -> BotAccount:
        """Another bot, administrator of the staff forum like the first."""
        bot = self.world.add_bot(username, token=token)
        self.forum.members[bot.id] = "administrator"
        return bot

    def add_group(
        self, title: str, *, is_forum: bool = True, bots: tuple[BotAccount, ...] | None = None
    ) -> Group:
        """Another supergroup; ``bots`` (default: the first bot) are its administrators."""
        group = self.world.add_group(title, is_forum=is_forum)
        for bot in bots if bots is not None else (self.bot,):
            group.members[bot.id] = "administrator"
        return group

    async def user_sends(
        self,
        user: User,
        text: str | None = None,
        *,
        caption: str | None = None,
        photo: bytes | None = None,
        document: tuple[str, bytes] | tuple[str, bytes, str] | None = None,
        voice: bytes | None = None,
        video: bytes | None = None,
        sticker: str | None = None,
        contact: str | Json | None = None,
        location: tuple[float, float] | None = None,
        duration: int = 1,
        edit_of: Json | None = None,
        reply_to: Json | None = None,
        chat: Group | None = None,
        thread_id: int | None = None,
        bot: BotAccount | None = None,
    ) -> Json:
        """``user`` writes to the bot (or in ``chat``, in topic ``thread_id``).

        ``document`` is ``(file name, bytes[, mime type])``; ``sticker`` an emoji;
        ``contact`` a phone (the user's own contact) or a Contact object;
        ``edit_of`` an earlier message (or its update) that this edits. Answers the
        update queued for ``bot`` (default: the first bot).
        """
        bot = bot or self.bot
        if edit_of is not None:
            return await self._user_edits(user, edit_of, text, caption, bot)
        content = self._content(
            user, text, caption, photo, document, voice, video, sticker, contact, location, duration
        )
        if chat is None:
            if user.id in bot.blocked_by:
                self._membership(bot, user, blocked=False)
            bot.started.add(user.id)
            message = self.world.post(bot, user.id, user, content, reply_to=reply_to)
        else:
            if chat.members.get(user.id) in ("left", "kicked"):
                raise ValueError(f"user {user.id} is not a member of {chat.title}")
            chat.members.setdefault(user.id, "member")
            topic = None
            if thread_id is not None:
                topic = chat.topics.get(thread_id)
                if topic is None or topic.deleted:
                    raise ValueError(f"no topic {thread_id} in {chat.title}")
            message = self.world.post(bot, chat.id, user, content, topic=topic, reply_to=reply_to)
        updates = self.world.deliver("message", message, bot)
        await self._notify()
        return updates.get(bot.token) or {"message": copy.deepcopy(message)}

    async def start_bot(
        self, user: User, payload: str | None = None, *, bot: BotAccount | None = None
    ) -> Json:
        """The user presses Start, through a deep link ``t.me/<bot>?start=<payload>``."""
        return await self.user_sends(user, "/start" + (f" {payload}" if payload else ""), bot=bot)

    async def manager_sends_in_topic(
        self, user: User, topic_id: int, text: str | None = None, **content: Any
    ) -> Json:
        """A member of the staff forum posts in a topic (text or, as keywords, media)."""
        chat = content.pop("chat", None) or self.forum
        return await self.user_sends(user, text, chat=chat, thread_id=topic_id, **content)

    async def callback(
        self, user: User, message: Json, data: str, *, bot: BotAccount | None = None
    ) -> Json:
        """``user`` presses the inline button with ``data`` under the bot's ``message``."""
        bot = bot or self.bot
        chat_id = message["chat"]["id"]
        current = self.world.find(bot, chat_id, message["message_id"])
        if current is None or current["from"]["id"] != bot.id:
            raise ValueError("no such message of the bot")
        rows = current.get("reply_markup", {}).get("inline_keyboard", [])
        if not any(button.get("callback_data") == data for row in rows for button in row):
            raise ValueError(f"no button with callback_data {data!r} under the message")
        query_id = self.world.next_query_id()
        self.world.callbacks[query_id] = bot.token
        query = {
            "id": query_id,
            "from": user.to_api(),
            "message": current,
            "chat_instance": str(abs(chat_id) * 31 + bot.id),
            "data": data,
        }
        update = bot.enqueue("callback_query", query)
        await self._notify()
        return update or {"callback_query": copy.deepcopy(query)}

    async def block(self, user: User, *, bot: BotAccount | None = None) -> None:
        """The user blocks the bot: sends to them now answer 403."""
        self._membership(bot or self.bot, user, blocked=True)
        await self._notify()

    async def unblock(self, user: User, *, bot: BotAccount | None = None) -> None:
        self._membership(bot or self.bot, user, blocked=False)
        await self._notify()

    async def create_topic(
        self, name: str, *, chat: Group | None = None, by: User | None = None
    ) -> Topic:
        """A manager opens a topic by hand (the bots see the service message)."""
        group = chat or self.forum
        author = by or self._owner(group)
        topic = self.world.open_topic(self.bot, group, author, name, TOPIC_COLORS[0])
        self.world.deliver("message", topic.created, self.bot)
        await self._notify()
        return topic

    async def delete_topic(self, topic: Topic | int, *, chat: Group | None = None) -> None:
        """A manager deletes a topic; bots are not told (Telegram sends no update)."""
        if isinstance(topic, int):
            topic = (chat or self.forum).topics[topic]
        delete_topic(self.world, topic)
        await self._notify()

    def _owner(self, group: Group) -> User:
        """The group's creator, made on first need."""
        for user_id, status in group.members.items():
            if status == "creator" and user_id in self.world.users:
                return self.world.users[user_id]
        owner = self.add_user("Owner", username=f"owner{-group.id}")
        group.members[owner.id] = "creator"
        return owner

    def fail_next(
        self,
        method: str,
        error_code: int,
        description: str,
        *,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` calls of ``method`` fail so (429s are recorded as throttled)."""
        parameters = {"retry_after": retry_after} if retry_after is not None else None
        self._injected.append(
            _Injected(method.lower(), ApiError(error_code, description, parameters), times)
        )

    def _membership(self, bot: BotAccount, user: User, *, blocked: bool) -> None:
        if blocked:
            bot.blocked_by.add(user.id)
        else:
            bot.blocked_by.discard(user.id)
        bot.started.add(user.id)
        old, new = ("member", "kicked") if blocked else ("kicked", "member")
        bot.enqueue(
            "my_chat_member",
            {
                "chat": user.private_chat(),
                "from": user.to_api(),
                "date": self.world.now(),
                "old_chat_member": chat_member(bot.user.to_api(), old),
                "new_chat_member": chat_member(bot.user.to_api(), new),
            },
        )

    def _content(
        self,
        user: User,
        text: str | None,
        caption: str | None,
        photo: bytes | None,
        document: tuple[str, bytes] | tuple[str, bytes, str] | None,
        voice: bytes | None,
        video: bytes | None,
        sticker: str | None,
        contact: str | Json | None,
        location: tuple[float, float] | None,
        duration: int,
    ) -> Json:
        files = self.world.files
        content: Json = {}
        stored: StoredFile | None = None
        if photo is not None:
            stored = files.add("photo", photo)
        elif document is not None:
            name, data, *mime = document
            stored = files.add(
                "document", data, file_name=name, mime_type=mime[0] if mime else None
            )
        elif voice is not None:
            stored = files.add("voice", voice)
        elif video is not None:
            stored = files.add("video", video)
        elif sticker is not None:
            stored = files.add("sticker", b"RIFF\x00\x00\x00\x00WEBPVP8 " + sticker.encode())
        if stored is not None:
            content.update(media_fields(files, stored, duration=duration))
            if sticker is not None:
                content["sticker"].update(emoji=sticker, set_name="HubTestStickers")
        if contact is not None:
            if isinstance(contact, str):
                contact = {
                    "phone_number": contact,
                    "first_name": user.first_name,
                    **({"last_name": user.last_name} if user.last_name else {}),
                    "user_id": user.id,
                }
            content["contact"] = contact
        if location is not None:
            content["location"] = {"latitude": location[0], "longitude": location[1]}
        if text is not None:
            if content:
                raise ValueError("a message has text or an attachment, not both")
            content["text"] = text
            if entities := detect_entities(text):
                content["entities"] = entities
        if caption is not None:
            if not any(key in content for key in MEDIA_KEYS):
                raise ValueError("a caption goes with a photo, document, voice or video")
            content["caption"] = caption
            if entities := detect_entities(caption):
                content["caption_entities"] = entities
        if not content:
            raise ValueError("nothing to send")
        return content

    async def _user_edits(
        self, user: User, edit_of: Json, text: str | None, caption: str | None, bot: BotAccount
    ) -> Json:
        original = edit_of.get("message") or edit_of.get("edited_message") or edit_of
        message = self.world.find(bot, original["chat"]["id"], original["message_id"])
        if message is None or message["from"]["id"] != user.id:
            raise ValueError("no such message of this user")
        for key, value in (("text", text), ("caption", caption)):
            if value is not None:
                message[key] = value
                entities = detect_entities(value)
                entities_key = "entities" if key == "text" else "caption_entities"
                if entities:
                    message[entities_key] = entities
                else:
                    message.pop(entities_key, None)
        message["edit_date"] = self.world.now()
        updates = self.world.deliver("edited_message", message, bot)
        await self._notify()
        return updates.get(bot.token) or {"edited_message": copy.deepcopy(message)}

    # -- what happened, test side ---------------------------------------------------

    def _chat_id(self, chat: ChatRef) -> int:
        return chat if isinstance(chat, int) else chat.id

    def messages_in(
        self, chat: ChatRef, thread_id: int | None = None, *, bot: BotAccount | None = None
    ) -> list[Json]:
        """Every message now in a chat (not deleted), oldest first, whoever wrote it.
        A private chat is the one with ``bot`` (default: the first bot)."""
        chat_id = self._chat_id(chat)
        scope = self.world.scope(bot or self.bot, chat_id)
        found = [
            message
            for (s, c, _), message in self.world.messages.items()
            if s == scope
            and c == chat_id
            and (thread_id is None or message.get("message_thread_id") == thread_id)
        ]
        return sorted(found, key=lambda m: int(m["message_id"]))

    def sent_to(
        self, chat: ChatRef, thread_id: int | None = None, *, bot: BotAccount | None = None
    ) -> list[Json]:
        """Messages a bot (``bot``, or any) sent to a chat, oldest first, as they are now
        (edits applied, deleted ones gone; service messages left out). ``thread_id``
        narrows a forum to one topic."""
        chat_id = self._chat_id(chat)
        found: list[Json] = []
        for token, message in self.world.sent:
            if bot is not None and token != bot.token:
                continue
            if message["chat"]["id"] != chat_id:
                continue
            if thread_id is not None and message.get("message_thread_id") != thread_id:
                continue
            key = (
                self.world.scope(self.world.bots[token], chat_id),
                chat_id,
                message["message_id"],
            )
            if self.world.messages.get(key) is message:
                found.append(message)
        return found

    def topics(self, chat: Group | None = None, *, include_deleted: bool = False) -> list[Topic]:
        """Topics of the staff forum (or ``chat``) in order of creation."""
        group = chat or self.forum
        return [t for t in group.topics.values() if include_deleted or not t.deleted]

    def topic_named(self, name: str, chat: Group | None = None) -> Topic | None:
        return next((t for t in self.topics(chat) if t.name == name), None)

    @property
    def uploads(self) -> list[StoredFile]:
        """Files bots uploaded (multipart), bytes kept, in order."""
        return [f for f in self.world.files.by_id.values() if f.uploaded_by is not None]

    def file_bytes(self, file_id: str) -> bytes:
        return self.world.files.by_id[file_id].data

    def pending_updates(self, bot: BotAccount | None = None) -> list[Json]:
        """Updates not yet confirmed (by a later offset, or a 2xx from the webhook)."""
        return list((bot or self.bot).updates)

    def is_polling(self, bot: BotAccount | None = None) -> bool:
        """Whether a long-polling getUpdates of the bot is being held open now."""
        return self._polls.get((bot or self.bot).token, 0) > 0

    def webhook_attempts(self, bot: BotAccount | None = None) -> list[WebhookAttempt]:
        return list((bot or self.bot).webhook_attempts)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method.lower() == method.lower()]

    @property
    def errors(self) -> list[Call]:
        """Calls that were answered with an error."""
        return [c for c in self.calls if not c.ok]

    @property
    def callback_answers(self) -> dict[str, Json]:
        """answerCallbackQuery by query id: text, show_alert, url."""
        return self.world.callback_answers

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Wait until ``predicate()`` is truthy (checked at every change); answer it."""
        value: T | None = None

        def check() -> bool:
            nonlocal value
            value = predicate()
            return bool(value)

        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(check)
        except TimeoutError:
            raise TimeoutError(f"condition not met within {timeout} s") from None
        return value  # type: ignore[return-value]

    async def wait_sent(
        self,
        chat: ChatRef,
        count: int = 1,
        *,
        thread_id: int | None = None,
        bot: BotAccount | None = None,
        timeout: float = 5.0,
    ) -> list[Json]:
        """Wait until at least ``count`` messages were sent to the chat; answer them all."""

        def enough() -> list[Json]:
            sent = self.sent_to(chat, thread_id, bot=bot)
            return sent if len(sent) >= count else []

        return await self.wait_for(enough, timeout)


def _not_found() -> ApiError:
    return ApiError(404, "Not Found")


async def _webhook_reply(response: aiohttp.ClientResponse) -> tuple[str, Params] | None:
    """A method the webhook answered with, to be executed (Bot API "reply to webhook")."""
    if response.content_type == "application/json":
        try:
            data = await response.json()
        except ValueError:
            return None
        values: dict[str, Any] = data if isinstance(data, dict) else {}
        files: dict[str, Upload] = {}
    elif response.content_type == "multipart/form-data":
        values, files = await read_multipart(
            aiohttp.MultipartReader(response.headers, response.content)
        )
    else:
        return None
    method = values.pop("method", None)
    if not isinstance(method, str) or not method:
        return None
    return method, Params(values, files)
