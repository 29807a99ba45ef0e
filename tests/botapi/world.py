"""The simulated Telegram: users, bots, forum supergroups, messages, files, updates.

Plain state and the objects of https://core.telegram.org/bots/api#available-types
built from it (``to_api`` gives the JSON Telegram would send). No I/O and no
waiting here: the server drives this state and announces its changes.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.botapi.files import FileStore
from tests.botapi.params import bad_request, forbidden

Json = dict[str, Any]

# The update types a bot gets when it asked for none in particular.
DEFAULT_UPDATE_TYPES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "callback_query",
        "my_chat_member",
        "inline_query",
        "chosen_inline_result",
        "shipping_query",
        "pre_checkout_query",
        "poll",
        "poll_answer",
        "chat_join_request",
    }
)
# Forum topic icon colours Telegram accepts (createForumTopic).
TOPIC_COLORS = (0x6FB9F0, 0xFFD67E, 0xCB86DB, 0x8EEE98, 0xFF93B2, 0xFB6F5F)


def make_token(bot_id: int) -> str:
    """A token of Telegram's shape: ``<bot id>:<35 characters>``."""
    return f"{bot_id}:AA" + hashlib.sha256(str(bot_id).encode()).hexdigest()[:33]


@dataclass(eq=False)
class User:
    """A Telegram account: a client writing to the bot, a manager, or a bot itself."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = "en"
    phone_number: str | None = None
    is_bot: bool = False

    def to_api(self) -> Json:
        data: Json = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code and not self.is_bot:
            data["language_code"] = self.language_code
        return data

    def private_chat(self) -> Json:
        data: Json = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        return data


@dataclass(eq=False)
class Topic:
    """A forum topic; ``message_thread_id`` is the id of its creation message."""

    chat_id: int
    message_thread_id: int
    name: str
    icon_color: int
    created: Json
    icon_custom_emoji_id: str | None = None
    closed: bool = False
    deleted: bool = False

    def to_api(self) -> Json:
        data: Json = {
            "message_thread_id": self.message_thread_id,
            "name": self.name,
            "icon_color": self.icon_color,
        }
        if self.icon_custom_emoji_id:
            data["icon_custom_emoji_id"] = self.icon_custom_emoji_id
        return data


@dataclass(eq=False)
class Group:
    """A supergroup (a forum when ``is_forum``); ``members`` maps user id to status."""

    id: int
    title: str
    is_forum: bool = True
    username: str | None = None
    members: dict[int, str] = field(default_factory=dict)
    topics: dict[int, Topic] = field(default_factory=dict)
    next_message_id: int = 1

    def to_api(self) -> Json:
        data: Json = {"id": self.id, "type": "supergroup", "title": self.title}
        if self.username:
            data["username"] = self.username
        if self.is_forum:
            data["is_forum"] = True
        return data

    def take_message_id(self) -> int:
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id


@dataclass(eq=False)
class Webhook:
    """What ``setWebhook`` set; the error fields feed ``getWebhookInfo``."""

    url: str
    secret_token: str | None = None
    max_connections: int = 40
    allowed_updates: list[str] | None = None
    ip_address: str | None = None
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    """One POST of an update to a webhook, with its outcome."""

    update_id: int
    url: str
    secret_token: str | None
    status: int | None
    error: str | None


@dataclass(eq=False)
class BotAccount:
    """A bot: its token, its own user, its queue of unconfirmed updates."""

    token: str
    user: User
    updates: list[Json] = field(default_factory=list)
    next_update_id: int = 100_000_001
    allowed_updates: list[str] | None = None
    webhook: Webhook | None = None
    started: set[int] = field(default_factory=set)
    blocked_by: set[int] = field(default_factory=set)
    private_message_ids: dict[int, int] = field(default_factory=dict)
    poll_generation: int = 0
    webhook_attempts: list[WebhookAttempt] = field(default_factory=list)
    commands: list[Json] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.user.id

    def take_private_message_id(self, user_id: int) -> int:
        message_id = self.private_message_ids.get(user_id, 1)
        self.private_message_ids[user_id] = message_id + 1
        return message_id

    def wants(self, kind: str) -> bool:
        if self.allowed_updates:
            return kind in self.allowed_updates
        return kind in DEFAULT_UPDATE_TYPES

    def enqueue(self, kind: str, payload: Json) -> Json | None:
        """Queue an update (a snapshot of ``payload``); None when the bot filtered it out."""
        if not self.wants(kind):
            return None
        update = {"update_id": self.next_update_id, kind: copy.deepcopy(payload)}
        self.next_update_id += 1
        self.updates.append(update)
        return update

    def confirm_below(self, offset: int) -> None:
        self.updates = [u for u in self.updates if u["update_id"] >= offset]


MEDIA_KEYS = ("photo", "document", "voice", "video", "audio", "animation", "sticker")
CONTENT_KEYS = (
    "text",
    "entities",
    *MEDIA_KEYS,
    "caption",
    "caption_entities",
    "contact",
    "location",
)


def main_file_id(message: Json) -> str | None:
    """The file a message carries (the largest photo size), if any."""
    for key in MEDIA_KEYS:
        value = message.get(key)
        if isinstance(value, list) and value:
            return str(value[-1]["file_id"])
        if isinstance(value, dict):
            return str(value["file_id"])
    return None


def is_service(message: Json) -> bool:
    return not any(key in message for key in CONTENT_KEYS)


def quoted(message: Json) -> Json:
    """A message as it appears in ``reply_to_message``: one level, a snapshot."""
    snapshot = copy.deepcopy(message)
    snapshot.pop("reply_to_message", None)
    return snapshot


class World:
    """Everything the stand-in knows, and the rules of who may see and send what."""

    def __init__(self, wall_clock: Callable[[], float]) -> None:
        self.wall_clock = wall_clock
        self.users: dict[int, User] = {}
        self.groups: dict[int, Group] = {}
        self.bots: dict[str, BotAccount] = {}
        self.files = FileStore()
        # (scope, chat id, message id): scope is the bot's token for a private
        # chat (each bot has its own chat with a user) and "" for a group.
        self.messages: dict[tuple[str, int, int], Json] = {}
        self.sent: list[tuple[str, Json]] = []
        self.callbacks: dict[str, str] = {}
        self.callback_answers: dict[str, Json] = {}
        self.pinned: dict[tuple[str, int], list[int]] = {}  # (scope, chat): pinned ids
        self.album_ids = itertools.count(13_000_000_000_001)
        self._user_ids = itertools.count(10_000_001)
        self._group_ids = itertools.count(1)
        self._bot_ids = itertools.count(700_000_001)
        self._query_ids = itertools.count(4_000_000_001)

    def now(self) -> int:
        return int(self.wall_clock())

    # -- accounts and chats ---------------------------------------------------

    def add_user(
        self,
        first_name: str,
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        phone_number: str | None = None,
    ) -> User:
        user = User(
            next(self._user_ids), first_name, last_name, username, language_code, phone_number
        )
        self.users[user.id] = user
        return user

    def add_bot(
        self, username: str, first_name: str | None = None, token: str | None = None
    ) -> BotAccount:
        if token is None:
            token = make_token(next(self._bot_ids))
        bot_id = int(token.split(":", 1)[0])
        user = User(bot_id, first_name or username, username=username, is_bot=True)
        bot = BotAccount(token, user)
        self.bots[token] = bot
        return bot

    def add_group(self, title: str, *, is_forum: bool = True, username: str | None = None) -> Group:
        group = Group(-1_001_000_000_000 - next(self._group_ids), title, is_forum, username)
        self.groups[group.id] = group
        return group

    def bot_by_id(self, bot_id: int) -> BotAccount | None:
        return next((b for b in self.bots.values() if b.id == bot_id), None)

    def account(self, user_id: int) -> User | None:
        bot = self.bot_by_id(user_id)
        return bot.user if bot else self.users.get(user_id)

    def chat_api(self, bot: BotAccount, chat_id: int) -> Json:
        if chat_id < 0:
            return self.groups[chat_id].to_api()
        return self.users[chat_id].private_chat()

    def chat_id_of(self, value: int | str) -> int:
        if isinstance(value, str):
            name = value.removeprefix("@").lower()
            group = next(
                (g for g in self.groups.values() if (g.username or "").lower() == name), None
            )
            if group is None:
                raise bad_request("chat not found")
            return group.id
        return value

    def reach(self, bot: BotAccount, chat: int | str, *, sending: bool) -> int:
        """The chat's id if ``bot`` may see (``sending``: write to) it, else Telegram's error."""
        chat_id = self.chat_id_of(chat)
        if chat_id > 0:
            if chat_id not in self.users or chat_id not in bot.started:
                if sending and chat_id in self.users:
                    raise forbidden("bot can't initiate conversation with a user")
                raise bad_request("chat not found")
            if sending and chat_id in bot.blocked_by:
                raise forbidden("bot was blocked by the user")
            return chat_id
        group = self.groups.get(chat_id)
        if group is None:
            raise bad_request("chat not found")
        status = group.members.get(bot.id, "left")
        if status == "kicked":
            raise forbidden("bot was kicked from the supergroup chat")
        if status == "left":
            if sending:
                raise forbidden("bot is not a member of the supergroup chat")
            raise bad_request("chat not found")
        return chat_id

    def topic(self, chat_id: int, thread_id: int | None) -> Topic | None:
        """The open topic a message goes to; Telegram's error for a missing or closed one."""
        if thread_id is None or chat_id > 0:
            return None
        group = self.groups[chat_id]
        topic = group.topics.get(thread_id)
        if topic is None or topic.deleted or not group.is_forum:
            raise bad_request("message thread not found")
        if topic.closed:
            raise bad_request("TOPIC_CLOSED")
        return topic

    # -- messages -------------------------------------------------------------

    @staticmethod
    def scope(bot: BotAccount, chat_id: int) -> str:
        return bot.token if chat_id > 0 else ""

    def find(self, bot: BotAccount, chat_id: int, message_id: int) -> Json | None:
        return self.messages.get((self.scope(bot, chat_id), chat_id, message_id))

    def remove(self, bot: BotAccount, chat_id: int, message_id: int) -> Json | None:
        return self.messages.pop((self.scope(bot, chat_id), chat_id, message_id), None)

    def post(
        self,
        bot: BotAccount,
        chat_id: int,
        author: User,
        content: Json,
        *,
        topic: Topic | None = None,
        reply_to: Json | None = None,
    ) -> Json:
        """A new message in a chat (``bot`` names the private chat when it is one)."""
        if chat_id > 0:
            message_id = bot.take_private_message_id(chat_id)
        else:
            message_id = self.groups[chat_id].take_message_id()
        message: Json = {
            "message_id": message_id,
            "from": author.to_api(),
            "chat": self.chat_api(bot, chat_id),
            "date": self.now(),
        }
        if topic is not None:
            message["message_thread_id"] = topic.message_thread_id
            message["is_topic_message"] = True
            if reply_to is None:
                reply_to = topic.created
        if reply_to is not None:
            message["reply_to_message"] = quoted(reply_to)
        message.update(content)
        self.messages[(self.scope(bot, chat_id), chat_id, message_id)] = message
        return message

    def open_topic(
        self,
        bot: BotAccount,
        group: Group,
        author: User,
        name: str,
        icon_color: int,
        icon_custom_emoji_id: str | None = None,
    ) -> Topic:
        created: Json = {"name": name, "icon_color": icon_color}
        if icon_custom_emoji_id:
            created["icon_custom_emoji_id"] = icon_custom_emoji_id
        message = self.post(bot, group.id, author, {"forum_topic_created": created})
        message["message_thread_id"] = message["message_id"]
        message["is_topic_message"] = True
        topic = Topic(
            group.id, message["message_id"], name, icon_color, message, icon_custom_emoji_id
        )
        group.topics[topic.message_thread_id] = topic
        return topic

    def deliver(self, kind: str, message: Json, via: BotAccount) -> dict[str, Json]:
        """Queue ``message`` as a ``kind`` update for every bot that sees it, except its
        author. A private chat is seen by ``via``; a group by each bot that is a member.
        Answers the updates by token."""
        chat_id = message["chat"]["id"]
        author = message.get("from", {}).get("id")
        if chat_id > 0:
            receivers = [via]
        else:
            members = self.groups[chat_id].members
            receivers = [
                bot
                for bot in self.bots.values()
                if members.get(bot.id) in ("creator", "administrator", "member")
            ]
        updates: dict[str, Json] = {}
        for bot in receivers:
            if bot.id == author:
                continue
            update = bot.enqueue(kind, message)
            if update is not None:
                updates[bot.token] = update
        return updates

    def next_query_id(self) -> str:
        return str(next(self._query_ids))
