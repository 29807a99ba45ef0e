"""Settings set over the config file, kept in the database: each key's value and
where it comes from, a change checked as ``hub check-config`` checks the file and
stored (audited) only when good, and ``GET/PUT/DELETE /api/settings/{key}``.

The running hub (``hub.app.overrides``) gives :class:`Settings` the file it runs
on and a way to follow a change at once; every other instance follows within a
second by polling the settings' version.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from aiohttp import web

from hub.admin.access import actor
from hub.admin.bodies import BadBody, json_object
from hub.config.overrides import (
    ABSENT,
    EDITABLE,
    FileLayer,
    editable,
    from_toml,
    layered,
    plain,
    to_toml,
    value_at,
)
from hub.kernel.clock import Clock
from hub.kernel.errors import ConfigError, HubError
from hub.kernel.http import error_response, json_response
from storage import Database
from storage import desk as desk_q
from storage import overrides as store

Source = Literal["file", "console", "default"]


class Outcome(Protocol):
    """What following a change did on this hub (a reload's result)."""

    @property
    def ok(self) -> bool: ...

    def as_json(self) -> dict[str, Any]: ...


class NotSet(HubError):
    """The key has no setting: the file's value is in force already."""


@dataclass(frozen=True, slots=True)
class View:
    """A key as the hub runs it: its value (TOML as the file writes it), where it
    comes from, the file's own value, and who set it when."""

    key: str
    source: Source
    value: object  # ABSENT: neither set here nor written in the file
    file_value: object
    changed_by: str | None = None
    changed_at: datetime | None = None

    @property
    def toml(self) -> str:
        return to_toml(self.key, self.value)

    @property
    def file_toml(self) -> str:
        return to_toml(self.key, self.file_value)

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "source": self.source,
            "value": None if self.value is ABSENT else plain(self.value),
            "file": None if self.file_value is ABSENT else plain(self.file_value),
            "toml": self.toml,
            "changed_by": self.changed_by,
            "changed_at": self.changed_at,
        }


class Settings:
    """The settings over the file: read, changed (checked first), and followed."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        file: Callable[[], FileLayer],
        follow: Callable[[str], Awaitable[Outcome]],
    ) -> None:
        self.db = db
        self.clock = clock
        self.file = file  # the file as this hub runs it (a reload may read it anew)
        self.follow = follow

    async def snapshot(self) -> store.Snapshot:
        async with self.db.read() as conn:
            return await store.snapshot(conn)

    async def views(self) -> list[View]:
        """Every key that may be set."""
        snap, data = await self.snapshot(), self.file().data
        return [_view(key, snap, data) for key in EDITABLE]

    async def view(self, key: str) -> View:
        return _view(editable(key), await self.snapshot(), self.file().data)

    async def set(self, key: str, value: object, by: str) -> Outcome:
        """Set ``key`` over the file when the whole config then passes its checks
        (else ConfigError naming each problem, and nothing is stored); this hub
        follows at once."""
        editable(key)
        value = plain(value)
        try:  # what the database's JSON takes (no NaN, no infinity)
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise ConfigError([f"{key}: NaN and infinity are no values here"]) from None

        def change(values: dict[str, object]) -> dict[str, object]:
            return {**values, key: value}

        checked = await self._check(change)
        async with self.db.write() as conn:
            snap = await store.begin_change(conn)
            if snap.version != checked + 1:  # another change came in between: again
                layered(self.file(), change(snap.values()))
            at = self.clock.now()
            await store.put(conn, key, value, at, by)
            await _audit(conn, at, by, "settings.set", {"key": key, "value": value})
        return await self.follow(by)

    async def _check(self, change: Callable[[dict[str, object]], dict[str, object]]) -> int:
        """Check ``change`` of the settings as they stand (ConfigError when the config
        would fail), in a thread and before the writer is taken: a whole config is
        parsed and its paths looked at. The version it was checked at."""
        async with self.db.read() as conn:
            before = await store.snapshot(conn)
        await asyncio.to_thread(layered, self.file(), change(before.values()))
        return before.version

    async def unset(self, key: str, by: str) -> Outcome:
        """Back to the file's value for ``key`` (NotSet when it has no setting;
        ConfigError when the config would then fail its checks)."""
        editable(key)

        def change(values: dict[str, object]) -> dict[str, object]:
            return {k: v for k, v in values.items() if k != key}

        checked = await self._check(change)
        async with self.db.write() as conn:
            snap = await store.begin_change(conn)
            if key not in snap.items:
                raise NotSet(f"{key}: not set here; the config file's value is in force")
            if snap.version != checked + 1:  # another change came in between: again
                layered(self.file(), change(snap.values()))
            at = self.clock.now()
            await store.remove(conn, key)
            await _audit(conn, at, by, "settings.unset", {"key": key})
        return await self.follow(by)


def _view(key: str, snap: store.Snapshot, data: Any) -> View:
    file_value = value_at(data, key)
    found = snap.items.get(key)
    if found is not None:
        return View(key, "console", found.value, file_value, found.changed_by, found.changed_at)
    return View(key, "default" if file_value is ABSENT else "file", file_value, file_value)


async def _audit(conn: Any, at: datetime, by: str, action: str, details: dict[str, Any]) -> None:
    await desk_q.audit(
        conn,
        {
            "at": at,
            "actor": by,
            "action": action,
            "object_type": "settings",
            "object_id": None,
            "details": details,
        },
    )


# The admin API ----------------------------------------------------------------------


def _value(body: dict[str, Any], key: str) -> object:
    """The new value from a PUT's body: ``{"value": …}`` or ``{"toml": "…"}``."""
    if "toml" in body:
        text = body["toml"]
        if not isinstance(text, str):
            raise BadBody("toml: expected a string")
        return from_toml(key, text)
    if "value" not in body:
        raise BadBody('body: expected {"value": …} or {"toml": "…"}')
    return body["value"]


def _unknown(key: str) -> web.Response:
    return error_response(404, f"{key[:100]}: not a key set here; these are: {', '.join(EDITABLE)}")


def add_routes(app: web.Application, settings: Settings) -> None:
    """``GET /api/settings`` (every key), ``GET/PUT/DELETE /api/settings/{key}``:
    422 with the problems when a change is refused (nothing stored)."""

    async def listed(request: web.Request) -> web.Response:
        return json_response([view.as_json() for view in await settings.views()])

    async def one(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if key not in EDITABLE:
            return _unknown(key)
        return json_response((await settings.view(key)).as_json())

    async def change(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if key not in EDITABLE:
            return _unknown(key)
        try:
            if request.method == "PUT":
                value = _value(json_object(await request.read()), key)
                outcome = await settings.set(key, value, actor(request))
            else:
                outcome = await settings.unset(key, actor(request))
        except BadBody as exc:
            return error_response(400, str(exc))
        except NotSet as exc:
            return error_response(404, str(exc))
        except ConfigError as exc:
            return json_response({"error": "refused", "problems": exc.problems}, 422)
        return json_response({"key": key, "reload": outcome.as_json()})

    app.router.add_get("/api/settings", listed)
    app.router.add_get("/api/settings/{key}", one)
    app.router.add_put("/api/settings/{key}", change)
    app.router.add_delete("/api/settings/{key}", change)
