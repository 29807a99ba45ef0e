"""User-facing texts in Russian and English (``hub.language``, or a manager's own)."""

from __future__ import annotations

from typing import Any

TEXTS: dict[str, dict[str, str]] = {
    "taken": {"ru": "Взято в работу: {manager}", "en": "Taken by {manager}"},
    "resolved": {"ru": "Обращение закрыто: {manager}", "en": "Resolved by {manager}"},
    "reopened": {"ru": "Обращение снова открыто: {manager}", "en": "Reopened by {manager}"},
    "transferred": {
        "ru": "Передано: {target} (передал {manager})",
        "en": "Transferred to {target} by {manager}",
    },
    "tagged": {"ru": "Теги: {tags}", "en": "Tags: {tags}"},
    "stage": {"ru": "Стадия: {stage} ({manager})", "en": "Stage: {stage} ({manager})"},
    "remind_set": {
        "ru": "Напоминание на {when}: {text}",
        "en": "Reminder set for {when}: {text}",
    },
    "reminder": {"ru": "⏰ Напоминание: {text}", "en": "⏰ Reminder: {text}"},
    "no_open": {"ru": "Нет открытых обращений", "en": "No open requests"},
    "unknown_manager": {
        "ru": "Менеджер «{name}» не найден",
        "en": "No manager named “{name}”",
    },
    "bad_when": {
        "ru": "Не понял время: «{text}». Примеры: 2h, 30m, завтра 10:00, 25.12 14:30",
        "en": "Cannot read the time “{text}”. E.g. 2h, 30m, tomorrow 10:00, 25.12 14:30",
    },
    "unknown_action": {"ru": "Неизвестная команда: {action}", "en": "Unknown command: {action}"},
    "need_argument": {"ru": "Укажите, что именно: {usage}", "en": "Say what exactly: {usage}"},
    "bad_stage": {
        "ru": "Нет такой стадии: {stage}. Стадии: {stages}",
        "en": "No such stage: {stage}. Stages: {stages}",
    },
    "delivery_failed": {
        "ru": "Не доставлено ({channel}): {reason}",
        "en": "Not delivered ({channel}): {reason}",
    },
    # The staff chat (channels/telegram/staff.py, render.py)
    "card_stage": {"ru": "Стадия", "en": "Stage"},
    "card_owner": {"ru": "Владелец", "en": "Owner"},
    "card_assignee": {"ru": "Ответственный", "en": "Assignee"},
    "card_open": {"ru": "Открытых обращений", "en": "Open requests"},
    "card_tags": {"ru": "Теги", "en": "Tags"},
    "card_source": {"ru": "Источник", "en": "Source"},
    "card_recent": {"ru": "Последние контакты", "en": "Last contacts"},
    "button_take": {"ru": "Взять", "en": "Take"},
    "button_resolve": {"ru": "Закрыть", "en": "Resolve"},
    "button_reopen": {"ru": "Открыть снова", "en": "Reopen"},
    "button_card": {"ru": "Карточка", "en": "Card"},
    "open_topic": {"ru": "Открыть тему", "en": "Open the topic"},
    "assigned_to_you": {"ru": "🆕 Вам назначено: {client}", "en": "🆕 Assigned to you: {client}"},
    "assigned_to": {"ru": "Назначено: {manager}", "en": "Assigned to {manager}"},
    "staff_notice": {"ru": "Клиент: {client}", "en": "Client: {client}"},
    "inbox_title": {
        "ru": "Ваши открытые обращения ({count}):",
        "en": "Your open requests ({count}):",
    },
    "inbox_empty": {
        "ru": "На вас нет открытых обращений",
        "en": "No open requests are assigned to you",
    },
    "inbox_more": {"ru": "…и ещё {count}", "en": "…and {count} more"},
    "waiting": {"ru": "ждёт {age}", "en": "waiting {age}"},
    "find_title": {"ru": "Найдено ({count}):", "en": "Found ({count}):"},
    "find_none": {"ru": "Ничего не найдено: «{query}»", "en": "Nothing found for “{query}”"},
    "no_topic": {"ru": "нет темы", "en": "no topic"},
    "cannot_answer": {
        "ru": "Не отправлено клиенту: {reason}",
        "en": "Not sent to the client: {reason}",
    },
    "file_failed": {
        "ru": "Не удалось получить файл, ничего не отправлено: {reason}",
        "en": "Could not fetch the file, nothing was sent: {reason}",
    },
    "file_too_big": {
        "ru": "📎 {name} ({size}) — слишком большой файл для Telegram",
        "en": "📎 {name} ({size}) — too big for Telegram",
    },
    "topic_help": {
        "ru": (
            "Сообщение в теме уходит клиенту; «!» или /note — заметка для своих.\n"
            "/take, /resolve, /reopen, /transfer ИМЯ, /tag СЛОВА, /stage СТАДИЯ, "
            "/remind 2h ТЕКСТ, /card"
        ),
        "en": (
            "A message in the topic goes to the client; “!” or /note makes an internal note.\n"
            "/take, /resolve, /reopen, /transfer NAME, /tag WORDS, /stage NAME, "
            "/remind 2h TEXT, /card"
        ),
    },
    "private_help": {
        "ru": "/inbox — ваши открытые обращения\n/find ТЕКСТ — найти клиента",
        "en": "/inbox — your open requests\n/find TEXT — find a client",
    },
}


def text(key: str, language: str | None, **values: Any) -> str:
    variants = TEXTS[key]
    return variants.get(language or "ru", variants["en"]).format(**values)
