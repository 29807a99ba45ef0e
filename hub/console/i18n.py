"""The console's texts in Russian and English: each section registers its own
``TEXTS = {"key": ("по-русски", "in English")}``; pages call ``t("key")``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Texts = Mapping[str, tuple[str, str]]
Language = Literal["ru", "en"]

# The frame every page shares (base.html) and the answers of the middleware.
TEXTS: Texts = {
    "console": ("Консоль", "Console"),
    "skip": ("К содержимому", "Skip to content"),
    "nav": ("Разделы", "Sections"),
    "signed_in_as": ("Вы вошли как {name} ({role})", "Signed in as {name} ({role})"),
    "sign_out": ("Выйти", "Sign out"),
    "role.manager": ("менеджер", "manager"),
    "role.supervisor": ("руководитель", "supervisor"),
    "role.marketer": ("маркетолог", "marketer"),
    "role.admin": ("администратор", "admin"),
    "forbidden": ("Нет доступа", "Not allowed"),
    "forbidden_role": (
        "Эта страница открыта для ролей: {roles}. Ваша роль: {role}.",
        "This page is open to the roles: {roles}. Your role: {role}.",
    ),
    "csrf_refused": (
        "Форма устарела или пришла не с этой страницы. Откройте страницу заново и повторите.",
        "The form is out of date or came from elsewhere. Open the page again and retry.",
    ),
    "pager.page": ("Страница {n}", "Page {n}"),
    "pager.newer": ("← Новее", "← Newer"),
    "pager.older": ("Старее →", "Older →"),
    "not_found": ("Страница не найдена", "Page not found"),
    "bad_request": ("Неверный запрос", "Bad request"),
    "back_home": ("На главную", "Back to the start"),
    "unavailable": (
        "База данных сейчас недоступна. Повторите через минуту.",
        "The database is unavailable just now. Try again in a minute.",
    ),
}


class Catalog:
    """Every section's texts by key; a key registered twice is a mistake at start."""

    def __init__(self) -> None:
        self._texts: dict[str, tuple[str, str]] = {}
        self.add(TEXTS)

    def add(self, texts: Texts) -> None:
        twice = sorted(set(texts) & set(self._texts))
        if twice:
            raise ValueError(f"console text {twice[0]!r} is registered twice")
        self._texts.update(texts)

    def text(self, key: str, language: str, **values: object) -> str:
        """The text in ``language`` (``ru`` or ``en``), ``{name}`` filled from ``values``;
        an unknown key shows as itself, so a missing text is seen, not hidden."""
        pair = self._texts.get(key)
        if pair is None:
            return key
        said = pair[1] if language == "en" else pair[0]
        return said.format(**values) if values else said
