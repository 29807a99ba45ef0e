"""The Bot API methods that act on the simulated world (all but updates and webhooks).

Each method follows https://core.telegram.org/bots/api: the checks Telegram makes,
in its order (chat and rights, then the content, then flood control), and its
error descriptions. Methods are synchronous; the server times and announces them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.botapi.entities import ParseError, format_text, utf16_len
from tests.botapi.files import StoredFile, media_fields
from tests.botapi.limits import FloodControl, Throttled
from tests.botapi.params import ApiError, Params, bad_request
from tests.botapi.world import (
    CONTENT_KEYS,
    TOPIC_COLORS,
    BotAccount,
    Json,
    Topic,
    World,
    is_service,
    quoted,
)

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
MAX_DOWNLOAD = 20 * 1024 * 1024
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
_FILE_KINDS = {
    "photo": "Photo",
    "document": "Document",
    "voice": "Voice",
    "video": "Video",
    "audio": "Audio",
    "animation": "Animation",
    "sticker": "Sticker",
}
_PAST = {"copy": "copied", "forward": "forwarded"}
_BUTTON_FIELDS = frozenset({"text", "style", "icon_custom_emoji_id"})


@dataclass(frozen=True, slots=True)
class Described:
    """A result that comes with a ``description`` (``setWebhook``: "Webhook was set")."""

    result: Any
    description: str


Method = Callable[[BotAccount, Params], Any]


class Methods:
    """Method name (lower case, as Telegram matches them) to implementation."""

    def __init__(self, world: World, flood: FloodControl, throttled: list[Throttled]) -> None:
        self.world = world
        self.flood = flood
        self.throttled = throttled
        self.table: dict[str, Method] = {
            "getme": self.get_me,
            "logout": lambda bot, params: True,
            "close": lambda bot, params: True,
            "sendmessage": self.send_message,
            "editmessagetext": self.edit_message_text,
            "editmessagecaption": self.edit_message_caption,
            "editmessagereplymarkup": self.edit_message_reply_markup,
            "deletemessage": self.delete_message,
            "deletemessages": self.delete_messages,
            "pinchatmessage": self.pin_chat_message,
            "unpinchatmessage": self.unpin_chat_message,
            "unpinallchatmessages": self.unpin_all_chat_messages,
            "sendmediagroup": self.send_media_group,
            "sendphoto": self._media_sender("photo"),
            "senddocument": self._media_sender("document"),
            "sendvoice": self._media_sender("voice"),
            "sendvideo": self._media_sender("video"),
            "sendaudio": self._media_sender("audio"),
            "sendanimation": self._media_sender("animation"),
            "sendsticker": self._media_sender("sticker"),
            "sendcontact": self.send_contact,
            "sendlocation": self.send_location,
            "sendchataction": self.send_chat_action,
            "copymessage": self.copy_message,
            "forwardmessage": self.forward_message,
            "getfile": self.get_file,
            "createforumtopic": self.create_forum_topic,
            "editforumtopic": self.edit_forum_topic,
            "closeforumtopic": self._topic_closer(closed=True),
            "reopenforumtopic": self._topic_closer(closed=False),
            "deleteforumtopic": self.delete_forum_topic,
            "answercallbackquery": self.answer_callback_query,
            "getchat": self.get_chat,
            "getchatmember": self.get_chat_member,
            "setmycommands": self.set_my_commands,
            "getmycommands": lambda bot, params: bot.commands,
            "deletemycommands": self.delete_my_commands,
        }

    # -- shared checks ----------------------------------------------------------

    def _target(self, bot: BotAccount, params: Params) -> tuple[int, Topic | None]:
        chat_id = self.world.reach(bot, params.chat_id(), sending=True)
        topic = self.world.topic(chat_id, params.integer("message_thread_id"))
        return chat_id, topic

    def _spend(self, bot: BotAccount, method: str, chat_id: int, cost: int = 1) -> None:
        """Flood control: raises 429 (and records it) when the request exceeds a limit."""
        limits = self.flood.limits
        if not limits.enabled or method not in limits.methods:
            return
        verdict = self.flood.check(bot.token, chat_id, chat_id < 0, cost)
        if verdict is None:
            return
        scope, retry_after = verdict
        self.throttled.append(
            Throttled(bot.token, method, chat_id, scope, retry_after, self.flood.clock())
        )
        raise ApiError(
            429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
        )

    @staticmethod
    def _formatted(
        params: Params, field: str, entities_field: str, limit: int, too_long: str
    ) -> tuple[str, list[Json]]:
        raw = params.string(field) or ""
        mode = params.string("parse_mode")
        try:
            text, entities = format_text(raw, mode)
        except ParseError as error:
            raise bad_request(f"can't parse entities: {error}") from None
        except LookupError:
            raise bad_request("unsupported parse_mode") from None
        given = params.decoded(entities_field)
        if not mode and isinstance(given, list):
            entities = given
        if utf16_len(text) > limit:
            raise bad_request(too_long)
        return text, entities

    def _text(self, params: Params) -> Json:
        if not params.has("text"):
            raise bad_request("message text is empty")
        text, entities = self._formatted(
            params, "text", "entities", MAX_TEXT, "message is too long"
        )
        if not text:
            raise bad_request("message text is empty")
        content: Json = {"text": text}
        if entities:
            content["entities"] = entities
        return content

    def _caption(self, params: Params) -> Json:
        if not params.has("caption"):
            return {}
        caption, entities = self._formatted(
            params, "caption", "caption_entities", MAX_CAPTION, "message caption is too long"
        )
        content: Json = {}
        if caption:
            content["caption"] = caption
        if entities:
            content["caption_entities"] = entities
        return content

    @staticmethod
    def _markup(params: Params) -> Json | None:
        markup = params.decoded("reply_markup", what="reply keyboard markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        rows = markup.get("inline_keyboard")
        if rows is None:
            return None  # reply keyboards and force_reply do not show on the message
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request('field "inline_keyboard" must be an Array of Arrays')
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise bad_request("can't parse inline keyboard button: Text is not specified")
                if not set(button) - _BUTTON_FIELDS:
                    raise bad_request(
                        "can't parse inline keyboard button: "
                        "Text buttons are unallowed in the inline keyboard"
                    )
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
                    raise bad_request("BUTTON_DATA_INVALID")
        return {"inline_keyboard": rows}

    def _reply_to(self, bot: BotAccount, chat_id: int, params: Params) -> Json | None:
        message_id = params.integer("reply_to_message_id")
        allow = params.flag("allow_sending_without_reply")
        reply_chat = chat_id
        parameters = params.decoded("reply_parameters")
        if isinstance(parameters, dict):
            message_id = parameters.get("message_id")
            allow = bool(parameters.get("allow_sending_without_reply"))
            if parameters.get("chat_id") is not None:
                reply_chat = self.world.reach(
                    bot, self.world.chat_id_of(parameters["chat_id"]), sending=False
                )
        if message_id is None:
            return None
        found = self.world.find(bot, reply_chat, int(message_id))
        if found is None and not allow:
            raise bad_request("message to be replied not found")
        return found

    def _send(
        self,
        bot: BotAccount,
        method: str,
        params: Params,
        content: Json,
        chat_id: int,
        topic: Topic | None,
    ) -> Json:
        reply_to = self._reply_to(bot, chat_id, params)
        markup = self._markup(params)
        self._spend(bot, method, chat_id)
        if markup is not None:
            content["reply_markup"] = markup
        message = self.world.post(bot, chat_id, bot.user, content, topic=topic, reply_to=reply_to)
        self.world.sent.append((bot.token, message))
        return message

    def _own_message(self, bot: BotAccount, params: Params) -> tuple[int, Json]:
        if params.has("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")
        chat_id = self.world.reach(bot, params.chat_id(), sending=True)
        message = self.world.find(bot, chat_id, params.integer("message_id", required=True) or 0)
        if message is None:
            raise bad_request("message to edit not found")
        if message["from"]["id"] != bot.id:
            raise bad_request("message can't be edited")
        return chat_id, message

    def _edited(self, bot: BotAccount, method: str, chat_id: int, message: Json, new: Json) -> Json:
        current = {k: message.get(k) for k in new}
        if current == new:
            raise bad_request(NOT_MODIFIED)
        self._spend(bot, method, chat_id)
        for key, value in new.items():
            if value:
                message[key] = value
            else:
                message.pop(key, None)
        message["edit_date"] = self.world.now()
        return message

    def _input_file(self, bot: BotAccount, params: Params, field: str, kind: str) -> StoredFile:
        upload = params.files.get(field)
        value = params.string(field)
        if upload is None and value is not None and value.startswith("attach://"):
            upload = params.files.get(value.removeprefix("attach://"))
            if upload is None:
                raise bad_request(f"there is no {field} in the request")
        if upload is not None:
            # Telegram detects a document's type; a generic part type tells nothing.
            mime = upload.content_type
            if kind != "document" or mime in (None, "application/octet-stream"):
                mime = None
            return self.world.files.add(
                kind,
                upload.data,
                file_name=upload.filename if kind == "document" else None,
                mime_type=mime,
                uploaded_by=bot.token,
            )
        if value is None:
            raise bad_request(f"there is no {field} in the request")
        if value.startswith(("http://", "https://")):
            raise bad_request("failed to get HTTP URL content")
        stored = self.world.files.by_id.get(value)
        if stored is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if stored.kind != kind and not (stored.kind == "thumbnail" and kind == "photo"):
            raise bad_request(
                f"can't use file of type {_FILE_KINDS.get(stored.kind, stored.kind)} "
                f"as {_FILE_KINDS[kind]}"
            )
        return stored

    # -- methods ----------------------------------------------------------------

    def get_me(self, bot: BotAccount, params: Params) -> Json:
        return {
            **bot.user.to_api(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def send_message(self, bot: BotAccount, params: Params) -> Json:
        chat_id, topic = self._target(bot, params)
        return self._send(bot, "sendmessage", params, self._text(params), chat_id, topic)

    def edit_message_text(self, bot: BotAccount, params: Params) -> Json:
        chat_id, message = self._own_message(bot, params)
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        content = self._text(params)
        new = {
            "text": content["text"],
            "entities": content.get("entities"),
            "reply_markup": self._markup(params),
        }
        return self._edited(bot, "editmessagetext", chat_id, message, new)

    def edit_message_caption(self, bot: BotAccount, params: Params) -> Json:
        chat_id, message = self._own_message(bot, params)
        if "text" in message or is_service(message):
            raise bad_request("there is no caption in the message to edit")
        content = self._caption(params)
        new = {
            "caption": content.get("caption"),
            "caption_entities": content.get("caption_entities"),
            "reply_markup": self._markup(params),
        }
        return self._edited(bot, "editmessagecaption", chat_id, message, new)

    def edit_message_reply_markup(self, bot: BotAccount, params: Params) -> Json:
        chat_id, message = self._own_message(bot, params)
        new = {"reply_markup": self._markup(params)}
        return self._edited(bot, "editmessagereplymarkup", chat_id, message, new)

    def delete_message(self, bot: BotAccount, params: Params) -> bool:
        chat_id = self.world.reach(bot, params.chat_id(), sending=False)
        message_id = params.integer("message_id", required=True) or 0
        if self.world.find(bot, chat_id, message_id) is None:
            raise bad_request("message to delete not found")
        self._spend(bot, "deletemessage", chat_id)
        self.world.remove(bot, chat_id, message_id)
        return True

    def delete_messages(self, bot: BotAccount, params: Params) -> bool:
        chat_id = self.world.reach(bot, params.chat_id(), sending=False)
        ids = params.decoded("message_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise bad_request("message_ids must be an array of 1-100 message identifiers")
        found = [int(i) for i in ids if self.world.find(bot, chat_id, int(i)) is not None]
        if not found:
            raise bad_request("message to delete not found")
        self._spend(bot, "deletemessages", chat_id)
        for message_id in found:
            self.world.remove(bot, chat_id, message_id)
        return True

    def pin_chat_message(self, bot: BotAccount, params: Params) -> bool:
        chat_id = self.world.reach(bot, params.chat_id(), sending=True)
        message = self.world.find(bot, chat_id, params.integer("message_id", required=True) or 0)
        if message is None:
            raise bad_request("message to pin not found")
        self._spend(bot, "pinchatmessage", chat_id)
        pinned = self.world.pinned.setdefault((self.world.scope(bot, chat_id), chat_id), [])
        pinned.append(message["message_id"])
        if chat_id < 0 and not params.flag("disable_notification"):
            # A group shows the pin as a service message.
            self.world.post(bot, chat_id, bot.user, {"pinned_message": quoted(message)})
        return True

    def unpin_chat_message(self, bot: BotAccount, params: Params) -> bool:
        chat_id = self.world.reach(bot, params.chat_id(), sending=True)
        pinned = self.world.pinned.get((self.world.scope(bot, chat_id), chat_id), [])
        message_id = params.integer("message_id") or (pinned[-1] if pinned else None)
        if message_id is None or message_id not in pinned:
            raise bad_request("message to unpin not found")
        self._spend(bot, "unpinchatmessage", chat_id)
        pinned.remove(message_id)
        return True

    def unpin_all_chat_messages(self, bot: BotAccount, params: Params) -> bool:
        chat_id = self.world.reach(bot, params.chat_id(), sending=True)
        self._spend(bot, "unpinallchatmessages", chat_id)
        self.world.pinned.pop((self.world.scope(bot, chat_id), chat_id), None)
        return True

    def send_media_group(self, bot: BotAccount, params: Params) -> list[Json]:
        """An album: 2 to 10 items, each a message of its own, each counted in the budgets."""
        chat_id, topic = self._target(bot, params)
        items = params.decoded("media")
        if not isinstance(items, list) or not 2 <= len(items) <= 10:
            raise bad_request("wrong number of media in the album: 2-10 are allowed")
        contents = [self._album_item(bot, params, item) for item in items]
        reply_to = self._reply_to(bot, chat_id, params)
        self._spend(bot, "sendmediagroup", chat_id, cost=len(contents))
        group_id = str(next(self.world.album_ids))
        sent = []
        for content in contents:
            content["media_group_id"] = group_id
            message = self.world.post(
                bot, chat_id, bot.user, content, topic=topic, reply_to=reply_to
            )
            self.world.sent.append((bot.token, message))
            sent.append(message)
        return sent

    def _album_item(self, bot: BotAccount, params: Params, item: Any) -> Json:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind not in ("photo", "video", "document", "audio"):
            raise bad_request("unsupported media type in the album")
        own = Params({kind: item.get("media"), **_caption_fields(item)}, params.files)
        content = media_fields(self.world.files, self._input_file(bot, own, kind, kind))
        content.update(self._caption(own))
        return content

    def _media_sender(self, kind: str) -> Method:
        method = f"send{kind}"

        def send(bot: BotAccount, params: Params) -> Json:
            chat_id, topic = self._target(bot, params)
            stored = self._input_file(bot, params, kind, kind)
            content = media_fields(
                self.world.files, stored, duration=params.integer("duration") or 1
            )
            if kind == "sticker":
                content["sticker"]["emoji"] = params.string("emoji") or "🙂"
            else:
                content.update(self._caption(params))
            for key in ("width", "height"):
                if kind == "video" and params.integer(key):
                    content["video"][key] = params.integer(key)
            return self._send(bot, method, params, content, chat_id, topic)

        return send

    def send_contact(self, bot: BotAccount, params: Params) -> Json:
        chat_id, topic = self._target(bot, params)
        contact: Json = {
            "phone_number": params.string("phone_number", required=True),
            "first_name": params.string("first_name", required=True),
        }
        if params.string("last_name"):
            contact["last_name"] = params.string("last_name")
        return self._send(bot, "sendcontact", params, {"contact": contact}, chat_id, topic)

    def send_location(self, bot: BotAccount, params: Params) -> Json:
        chat_id, topic = self._target(bot, params)
        location = {
            "latitude": params.number("latitude", required=True),
            "longitude": params.number("longitude", required=True),
        }
        return self._send(bot, "sendlocation", params, {"location": location}, chat_id, topic)

    def send_chat_action(self, bot: BotAccount, params: Params) -> bool:
        self._target(bot, params)
        params.string("action", required=True)
        return True

    def _source(self, bot: BotAccount, params: Params, verb: str) -> Json:
        from_chat = self.world.reach(bot, params.chat_id("from_chat_id"), sending=False)
        message = self.world.find(bot, from_chat, params.integer("message_id", required=True) or 0)
        if message is None:
            raise bad_request(f"message to {verb} not found")
        if is_service(message):
            raise bad_request(f"message can't be {_PAST[verb]}")
        return message

    def copy_message(self, bot: BotAccount, params: Params) -> Json:
        chat_id, topic = self._target(bot, params)
        source = self._source(bot, params, "copy")
        content = {k: copy.deepcopy(source[k]) for k in CONTENT_KEYS if k in source}
        if params.has("caption") and "text" not in content:
            content.pop("caption", None)
            content.pop("caption_entities", None)
            content.update(self._caption(params))
        message = self._send(bot, "copymessage", params, content, chat_id, topic)
        return {"message_id": message["message_id"]}

    def forward_message(self, bot: BotAccount, params: Params) -> Json:
        chat_id, topic = self._target(bot, params)
        source = self._source(bot, params, "forward")
        content = {k: copy.deepcopy(source[k]) for k in CONTENT_KEYS if k in source}
        content["forward_origin"] = copy.deepcopy(source.get("forward_origin")) or {
            "type": "user",
            "sender_user": source["from"],
            "date": source["date"],
        }
        return self._send(bot, "forwardmessage", params, content, chat_id, topic)

    def get_file(self, bot: BotAccount, params: Params) -> Json:
        stored = self.world.files.by_id.get(params.string("file_id", required=True) or "")
        if stored is None:
            raise bad_request("invalid file_id")
        if stored.file_size > MAX_DOWNLOAD:
            raise bad_request("file is too big")
        return stored.to_file()

    def _forum(self, bot: BotAccount, params: Params) -> int:
        chat_id = self.world.reach(bot, params.chat_id(), sending=True)
        if chat_id > 0 or not self.world.groups[chat_id].is_forum:
            raise bad_request("the chat is not a forum")
        if self.world.groups[chat_id].members.get(bot.id) not in ("administrator", "creator"):
            raise bad_request("not enough rights to manage topics")
        return chat_id

    def _existing_topic(self, chat_id: int, params: Params) -> Topic:
        thread_id = params.integer("message_thread_id", required=True)
        topic = self.world.groups[chat_id].topics.get(thread_id or 0)
        if topic is None or topic.deleted:
            raise bad_request("TOPIC_ID_INVALID")
        return topic

    def create_forum_topic(self, bot: BotAccount, params: Params) -> Json:
        chat_id = self._forum(bot, params)
        name = params.string("name", required=True) or ""
        if len(name) > 128:
            raise bad_request("TOPIC_TITLE_EMPTY")
        icon_color = params.integer("icon_color") or TOPIC_COLORS[0]
        if icon_color not in TOPIC_COLORS:
            raise bad_request("TOPIC_ICON_COLOR_INVALID")
        self._spend(bot, "createforumtopic", chat_id)
        topic = self.world.open_topic(
            bot,
            self.world.groups[chat_id],
            bot.user,
            name,
            icon_color,
            params.string("icon_custom_emoji_id"),
        )
        self.world.deliver("message", topic.created, bot)
        return topic.to_api()

    def edit_forum_topic(self, bot: BotAccount, params: Params) -> bool:
        topic = self._existing_topic(self._forum(bot, params), params)
        name = params.string("name")
        emoji = params.string("icon_custom_emoji_id")
        if (name is None or name == topic.name) and emoji in (None, topic.icon_custom_emoji_id):
            raise bad_request("TOPIC_NOT_MODIFIED")
        self._spend(bot, "editforumtopic", topic.chat_id)
        topic.name = name or topic.name
        topic.icon_custom_emoji_id = emoji or topic.icon_custom_emoji_id
        return True

    def _topic_closer(self, *, closed: bool) -> Method:
        def set_closed(bot: BotAccount, params: Params) -> bool:
            topic = self._existing_topic(self._forum(bot, params), params)
            if topic.closed == closed:
                raise bad_request("TOPIC_NOT_MODIFIED")
            self._spend(bot, "closeforumtopic" if closed else "reopenforumtopic", topic.chat_id)
            topic.closed = closed
            return True

        return set_closed

    def delete_forum_topic(self, bot: BotAccount, params: Params) -> bool:
        chat_id = self._forum(bot, params)
        topic = self._existing_topic(chat_id, params)
        self._spend(bot, "deleteforumtopic", chat_id)
        delete_topic(self.world, topic)
        return True

    def answer_callback_query(self, bot: BotAccount, params: Params) -> bool:
        query_id = params.string("callback_query_id", required=True) or ""
        if self.world.callbacks.get(query_id) != bot.token or query_id in (
            self.world.callback_answers
        ):
            raise bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        text = params.string("text")
        if text is not None and len(text) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        self.world.callback_answers[query_id] = {
            "text": text,
            "show_alert": params.flag("show_alert"),
            "url": params.string("url"),
        }
        return True

    def get_chat(self, bot: BotAccount, params: Params) -> Json:
        chat_id = self.world.reach(bot, params.chat_id(), sending=False)
        info = {
            **self.world.chat_api(bot, chat_id),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": True,
                "limited_gifts": True,
                "unique_gifts": True,
                "premium_subscription": True,
                "gifts_from_channels": True,
            },
        }
        if chat_id < 0:
            info["permissions"] = {"can_send_messages": True, "can_manage_topics": False}
        return info

    def get_chat_member(self, bot: BotAccount, params: Params) -> Json:
        chat_id = self.world.reach(bot, params.chat_id(), sending=False)
        user_id = params.integer("user_id", required=True) or 0
        account = self.world.account(user_id)
        if account is None:
            raise bad_request("user not found")
        if chat_id > 0:
            status = "member" if user_id in (chat_id, bot.id) else "left"
        else:
            status = self.world.groups[chat_id].members.get(user_id, "left")
        return chat_member(account.to_api(), status)

    def set_my_commands(self, bot: BotAccount, params: Params) -> bool:
        commands = params.decoded("commands")
        if not isinstance(commands, list):
            raise bad_request("commands is empty")
        bot.commands = commands
        return True

    def delete_my_commands(self, bot: BotAccount, params: Params) -> bool:
        bot.commands = []
        return True


def _caption_fields(item: Json) -> Json:
    """An album item's caption, as the fields a single media message takes."""
    keys = ("caption", "parse_mode", "caption_entities")
    return {key: item[key] for key in keys if item.get(key) is not None}


def delete_topic(world: World, topic: Topic) -> None:
    """A topic and its messages vanish; posting into it fails from now on."""
    topic.deleted = True
    for key in [
        key
        for key, message in world.messages.items()
        if key[1] == topic.chat_id and message.get("message_thread_id") == topic.message_thread_id
    ]:
        del world.messages[key]


def chat_member(user: Json, status: str) -> Json:
    """A ChatMember object of the given status."""
    if status == "administrator":
        rights = (
            "can_manage_chat",
            "can_delete_messages",
            "can_manage_video_chats",
            "can_restrict_members",
            "can_change_info",
            "can_invite_users",
            "can_post_stories",
            "can_edit_stories",
            "can_delete_stories",
            "can_pin_messages",
            "can_manage_topics",
            "can_send_welcome_messages",
        )
        return {
            "user": user,
            "status": status,
            "can_be_edited": False,
            "is_anonymous": False,
            "can_promote_members": False,
            **dict.fromkeys(rights, True),
        }
    if status == "creator":
        return {"user": user, "status": status, "is_anonymous": False}
    if status == "kicked":
        return {"user": user, "status": status, "until_date": 0}
    return {"user": user, "status": status if status in ("member", "left") else "member"}
