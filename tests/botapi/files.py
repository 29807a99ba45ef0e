"""Files as Telegram keeps them: identifiers, paths for download, message fields.

A file sent by a user or uploaded by a bot gets a ``file_id`` (to send it again),
a ``file_unique_id`` and a ``file_path`` for ``getFile`` and the download URL
(https://core.telegram.org/bots/api#file). Bytes are kept as they came: real
Telegram recompresses photos, this stand-in does not.
"""

from __future__ import annotations

import hashlib
import itertools
import mimetypes
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]


@dataclass(eq=False)
class StoredFile:
    """A file Telegram holds: uploaded by a bot or sent by a user; bytes are kept."""

    file_id: str
    file_unique_id: str
    kind: str  # photo, document, voice, video, sticker, audio, animation
    data: bytes
    file_path: str
    file_name: str | None = None
    mime_type: str | None = None
    uploaded_by: str | None = None  # the bot's token, None when a user sent it
    width: int = 0
    height: int = 0

    @property
    def file_size(self) -> int:
        return len(self.data)

    def to_file(self) -> Json:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.file_size,
            "file_path": self.file_path,
        }


_FOLDERS = {
    "photo": ("photos", ".jpg"),
    "document": ("documents", ".bin"),
    "voice": ("voice", ".oga"),
    "video": ("videos", ".mp4"),
    "sticker": ("stickers", ".webp"),
    "audio": ("music", ".mp3"),
    "animation": ("animations", ".mp4"),
    "thumbnail": ("thumbnails", ".jpg"),
}
_MIME = {
    "voice": "audio/ogg",
    "video": "video/mp4",
    "audio": "audio/mpeg",
    "animation": "video/mp4",
}


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG or JPEG (a guess for anything else)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data) and data[i] == 0xFF:
            marker = data[i + 1]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height = int.from_bytes(data[i + 5 : i + 7], "big")
                width = int.from_bytes(data[i + 7 : i + 9], "big")
                return width, height
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return 512, 512


class FileStore:
    """Files by id and by path, with Telegram-like identifiers."""

    def __init__(self) -> None:
        self.by_id: dict[str, StoredFile] = {}
        self.by_path: dict[str, StoredFile] = {}
        self._ids = itertools.count(1)

    def add(
        self,
        kind: str,
        data: bytes,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        uploaded_by: str | None = None,
    ) -> StoredFile:
        n = next(self._ids)
        digest = hashlib.sha256(data + n.to_bytes(8, "big")).hexdigest()
        folder, default_ext = _FOLDERS.get(kind, ("documents", ".bin"))
        ext = default_ext
        if file_name and "." in file_name:
            ext = "." + file_name.rsplit(".", 1)[1].lower()
        if mime_type is None:
            mime_type = _MIME.get(kind)
            if mime_type is None and kind == "document" and file_name:
                mime_type = mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        stored = StoredFile(
            file_id=f"{kind[:2].upper()}AQAC{n:06d}{digest[:40]}",
            file_unique_id=f"AQAD{digest[40:52]}",
            kind=kind,
            data=data,
            file_path=f"{folder}/file_{n}{ext}",
            file_name=file_name,
            mime_type=mime_type,
            uploaded_by=uploaded_by,
        )
        if kind in ("photo", "thumbnail"):
            stored.width, stored.height = image_size(data)
        self.by_id[stored.file_id] = stored
        self.by_path[stored.file_path] = stored
        return stored


def media_fields(store: FileStore, stored: StoredFile, *, duration: int = 1) -> Json:
    """The message fields for a file: ``photo`` (sizes), ``document``, ``voice``…"""
    base: Json = {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": stored.file_size,
    }
    if stored.kind == "photo":
        # Telegram always offers several sizes, the largest last; a client that
        # takes ``photo[0]`` gets this stand-in thumbnail, not the picture.
        thumb = store.add(
            "thumbnail", b"THUMB" + hashlib.sha256(stored.data).digest()[:16], mime_type=None
        )
        scale = max(stored.width, stored.height, 1) / 90
        small = {
            "file_id": thumb.file_id,
            "file_unique_id": thumb.file_unique_id,
            "file_size": thumb.file_size,
            "width": max(1, round(stored.width / scale)),
            "height": max(1, round(stored.height / scale)),
        }
        return {"photo": [small, {**base, "width": stored.width, "height": stored.height}]}
    if stored.kind == "document":
        doc = dict(base)
        if stored.file_name:
            doc["file_name"] = stored.file_name
        if stored.mime_type:
            doc["mime_type"] = stored.mime_type
        return {"document": doc}
    if stored.kind == "voice":
        return {"voice": {**base, "duration": duration, "mime_type": stored.mime_type}}
    if stored.kind in ("video", "animation"):
        return {
            stored.kind: {
                **base,
                "width": 640,
                "height": 360,
                "duration": duration,
                "mime_type": stored.mime_type,
            }
        }
    if stored.kind == "audio":
        return {"audio": {**base, "duration": duration, "mime_type": stored.mime_type}}
    if stored.kind == "sticker":
        return {
            "sticker": {
                **base,
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
            }
        }
    raise ValueError(f"no message field for a {stored.kind}")
