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
}


def text(key: str, language: str | None, **values: Any) -> str:
    variants = TEXTS[key]
    return variants.get(language or "ru", variants["en"]).format(**values)
