"""Reading a Bot API request's parameters, and the error answer of a failed call.

https://core.telegram.org/bots/api#making-requests: parameters come in the query
string, as ``application/x-www-form-urlencoded``, ``application/json`` or
``multipart/form-data`` (the only way to upload). Values from forms are strings;
nested objects such as ``reply_markup`` arrive JSON-encoded inside them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web


class ApiError(Exception):
    """A call Telegram refuses: ``{"ok": false, "error_code": …, "description": …}``."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(what: str) -> ApiError:
    return ApiError(400, f"Bad Request: {what}")


def forbidden(what: str) -> ApiError:
    return ApiError(403, f"Forbidden: {what}")


@dataclass(frozen=True, slots=True)
class Upload:
    """A file part of a multipart request."""

    filename: str
    data: bytes
    content_type: str | None


class Params:
    """A request's parameters with Telegram's lenient typing (``"42"`` is 42)."""

    def __init__(self, values: Mapping[str, Any], files: Mapping[str, Upload] | None = None):
        self.values = dict(values)
        self.files = dict(files or {})

    def raw(self, name: str) -> Any:
        value = self.values.get(name)
        return None if value == "" else value

    def has(self, name: str) -> bool:
        return self.raw(name) is not None or name in self.files

    def string(self, name: str, *, required: bool = False) -> str | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise bad_request(f"{name} is empty")
            return None
        if isinstance(value, str):
            return value
        return json.dumps(value) if isinstance(value, dict | list) else str(value)

    def integer(self, name: str, *, required: bool = False) -> int | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise bad_request(f"{name} is empty")
            return None
        if isinstance(value, bool):
            return int(value)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def number(self, name: str, *, required: bool = False) -> float | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise bad_request(f"{name} is empty")
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def flag(self, name: str) -> bool:
        value = self.raw(name)
        if isinstance(value, str):
            return value.lower() in ("true", "1", "yes")
        return bool(value)

    def decoded(self, name: str, *, what: str | None = None) -> Any:
        """A nested object: as sent in a JSON body, or JSON-encoded in a form field."""
        value = self.raw(name)
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            raise bad_request(f"can't parse {what or name} JSON object") from None

    def chat_id(self, name: str = "chat_id") -> int | str:
        """An integer id or an ``@username``."""
        value = self.raw(name)
        if value is None:
            raise bad_request(f"{name} is empty")
        if isinstance(value, str) and value.startswith("@"):
            return value
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad_request("chat not found") from None

    def describe(self) -> dict[str, Any]:
        """The parameters as recorded in the call log (uploads by name and size)."""
        described = dict(self.values)
        for key, upload in self.files.items():
            described[key] = f"<upload {upload.filename} {len(upload.data)} bytes>"
        return described


async def read_multipart(
    reader: Any,
) -> tuple[dict[str, Any], dict[str, Upload]]:
    values: dict[str, Any] = {}
    files: dict[str, Upload] = {}
    async for part in reader:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.filename is not None:
            data = await part.read(decode=True)
            files[part.name] = Upload(part.filename, bytes(data), part.headers.get("Content-Type"))
        else:
            values[part.name] = await part.text()
    return values, files


async def read_request(request: web.Request) -> Params:
    values: dict[str, Any] = dict(request.query)
    files: dict[str, Upload] = {}
    if request.can_read_body:
        ctype = request.content_type
        if ctype == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON encoded request parameters") from None
            if not isinstance(body, dict):
                raise bad_request("can't parse JSON encoded request parameters")
            values.update(body)
        elif ctype == "multipart/form-data":
            form_values, files = await read_multipart(await request.multipart())
            values.update(form_values)
        else:
            form = await request.post()
            values.update({k: v for k, v in form.items() if isinstance(v, str)})
    return Params(values, files)
