"""Bot commands parsed once (channels/telegram/commands.py), for clients and staff;
a command named for another bot (``/take@otherbot``) is not ours."""

from __future__ import annotations

import pytest
from aiogram.types import Message

from channels.telegram.commands import Command, parse
from channels.telegram.inbound import normalize

BOT = "hub_test_bot"


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("/take", Command("take", "")),
        ("/TAKE", Command("take", "")),
        ("/remind 2h call back ", Command("remind", "2h call back")),
        ("/remind\n2h call back", Command("remind", "2h call back")),
        ("/remind@hub_test_bot 2h", Command("remind", "2h")),
        ("/remind@Hub_Test_BOT 2h", Command("remind", "2h")),
        ("/start@hub_test_bot", Command("start", "")),
        ("/", Command("", "")),
        ("/ hello", Command("", "hello")),
    ],
)
def test_a_command_for_this_bot(text: str, command: Command) -> None:
    assert parse(text, BOT) == command


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        "hello /take",
        " /take",
        "",
        "/take@otherbot",
        "/take@OtherBot now",
        "/take@hub_test_bot_2",
        "/take@",
    ],
)
def test_no_command_for_this_bot(text: str) -> None:
    assert parse(text, BOT) is None


def test_a_client_command_for_another_bot_is_plain_text() -> None:
    def normalized(text: str) -> dict[str, object]:
        message = Message.model_validate(
            {
                "message_id": 1,
                "date": 1_767_607_200,
                "chat": {"id": 42, "type": "private", "first_name": "Anna"},
                "from": {"id": 42, "is_bot": False, "first_name": "Anna"},
                "text": text,
            }
        )
        draft = normalize(message, bot_id=9, account=BOT, max_attachment_bytes=10)
        assert draft is not None
        return dict(draft.message.extras)

    assert normalized("/stop@HUB_TEST_BOT")["opt_out"] is True
    assert "command" not in normalized("/stop@otherbot")
    assert normalized("/start@hub_test_bot promo")["source"] == "promo"
    assert "command" not in normalized("/start@otherbot promo")


def test_a_forged_button_with_a_non_ascii_digit_is_no_button() -> None:
    """``str.isdigit`` takes "²" and "١" (which ``int`` refuses): a forged callback
    naming one is not ours, never a crash."""
    from channels.telegram import render

    for digit in ("²", "١"):
        assert render.parse_callback(f"hub:take:{digit}") is None
        assert render.parse_current_callback(render.current_callback(1).replace("1", digit)) is None
        assert render.parse_reminder_callback(f"hub:rem:done:{digit}:1") is None
        assert render.parse_call_callback(f"hub:call:reached:{digit}") is None
    assert render.parse_callback("hub:take:12") == ("take", 12)
