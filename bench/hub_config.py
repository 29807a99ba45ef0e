"""The configuration the benchmarks run a hub's parts with: SQLite in a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub.config import Config


def in_folder(folder: Path, email: dict[str, Any] | None = None) -> Config:
    """SQLite, attachments and the mail spool in ``folder``; the hub's own logs
    at WARNING (a line per message would time the logging)."""
    return Config.model_validate(
        {
            "admin": {"token": "bench"},
            "hub": {"log_level": "WARNING"},
            "storage": {
                "url": f"sqlite+aiosqlite:///{folder}/hub.db",
                "attachments_dir": str(folder / "files"),
                "max_attachment_bytes": 10**7,
            },
            "email": {**(email or {}), "spool": str(folder / "mail-spool.db")},
        }
    )
