"""A running hub follows the settings set over its config file: at start, on every
change (its own at once, another instance's or the command line's within a round
of the scheduler's "settings" job, which reads the settings' version), and on a
reload of the file (the settings over the file read anew), each through the reload's own path
(:meth:`hub.app.run.Hub.reload`): the same checks, the same parts swapped in, the
mail worker retuned. And ``hub settings show|set|unset``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub import config as config_module
from hub.admin.settings import NotSet, Settings
from hub.app import reload
from hub.app.reload import ReloadResult
from hub.app.schedule import SETTINGS_POLL_S
from hub.config.overrides import EDITABLE, FileLayer, editable, from_toml, layered
from hub.kernel import loggers
from hub.kernel.clock import SystemClock
from hub.kernel.errors import ConfigError, HubError
from storage import Database
from storage import overrides as store
from storage.migrate import upgrade

if TYPE_CHECKING:
    from hub.app.run import Hub


log = loggers.core


class Follower:
    """One hub's settings: the file it runs on, the settings' version it has taken,
    and the round polling for the next."""

    def __init__(self, hub: Hub, file: FileLayer) -> None:
        assert hub.db is not None
        self.hub = hub
        self.file = file
        self.seen: int | None = None
        self.started = False  # the first snapshot taken, before the channels listen
        self._lock = asyncio.Lock()  # one snapshot taken at a time, in order
        self.settings = Settings(hub.db, hub.clock, lambda: self.file, self.follow)

    async def follow(self, by: str = "settings") -> ReloadResult:
        """Take the settings as they stand now, if they changed since last taken."""
        db = self.hub.db
        assert db is not None
        async with self._lock:
            async with db.read() as conn:
                if self.seen is not None and await store.version(conn) == self.seen:
                    return ReloadResult()
                snap = await store.snapshot(conn)
            if self.seen is None and not snap.items:  # the file alone: as the hub runs
                self.seen = snap.version
                return ReloadResult()
            result = await self._take(self.file, snap, by)
            if result.ok or self.hub.ready:  # refused for good: said once, not every round
                self.seen = snap.version
            return result

    async def _take(self, file: FileLayer, snap: store.Snapshot, by: str) -> ReloadResult:
        try:
            config = layered(file, snap.values())
        except ConfigError as exc:
            refused = ReloadResult(problems=tuple(exc.problems))
            reload.said(refused, by)
            return refused
        if self.hub.ready or self.started:  # Hub.reload refuses while stopping
            return await self.hub.reload(config, by=by)
        # At start, before the channels listen: nothing else reloads yet.
        result = await reload.apply(self.hub, config, by=by)
        reload.said(result, by)
        return result

    async def reload_file(self, by: str) -> ReloadResult:
        """The config file read again, the settings put over it, and reloaded."""
        path = self.hub.config_path
        if path is None:
            result = ReloadResult(problems=("the hub was not started from a config file",))
            reload.said(result, by)
            return result
        try:
            file = await asyncio.to_thread(FileLayer.read, path)
        except ConfigError as exc:
            result = ReloadResult(problems=tuple(exc.problems))
            reload.said(result, by)
            return result
        db = self.hub.db
        assert db is not None
        async with self._lock:
            async with db.read() as conn:
                snap = await store.snapshot(conn)
            result = await self._take(file, snap, by)
            if result.ok:
                self.file, self.seen = file, snap.version
            return result


async def open_settings(hub: Hub) -> Follower:
    """The settings taken before the channels listen, then followed by a round."""
    path = hub.config_path
    file = (
        await asyncio.to_thread(FileLayer.read, path)
        if path is not None
        else FileLayer.of(hub.config)
    )
    follower = Follower(hub, file)
    await follower.follow("start")
    follower.started = True  # then followed by the scheduler's "settings" round
    return follower


# The command line --------------------------------------------------------------------


class _Stored:
    """What the command line answers in place of a hub following the change."""

    ok = True

    def as_json(self) -> dict[str, Any]:
        return {}


async def _stored(by: str) -> _Stored:
    return _Stored()


def _settings_at(path: str, db: Database) -> Settings:
    file = FileLayer.read(path)
    return Settings(db, SystemClock(), lambda: file, _stored)


def _run(args: argparse.Namespace) -> int:
    path = config_module.resolve_path(args.config)
    config = config_module.load(path)

    async def work() -> int:
        db = Database(config.storage.url)
        try:
            await upgrade(db)
            return await _act(args, _settings_at(path, db))
        finally:
            await db.dispose()

    return asyncio.run(work())


async def _act(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "show":
        return await _show(settings, args.key)
    key = editable(args.key)
    if args.action == "set":
        await settings.set(key, from_toml(key, _text(args.file)), "cli")
        print(f"{key}: set; running hubs follow within {SETTINGS_POLL_S:g} s")
        return 0
    try:
        await settings.unset(key, "cli")
    except NotSet as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{key}: unset, the config file's value is in force; running hubs follow")
    return 0


def _text(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        return Path(name).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HubError(f"cannot read {name}: {exc}") from None


async def _show(settings: Settings, key: str | None) -> int:
    if key is None:
        for view in await settings.views():
            whence: str = view.source
            if view.changed_at is not None:
                whence += f" ({view.changed_by}, {view.changed_at:%Y-%m-%d %H:%M}Z)"
            print(f"{view.key:<26} {whence}")
        return 0
    view = await settings.view(editable(key))
    print(f"# {view.key}: {view.source}")
    print(view.toml, end="")
    return 0


def add_parser(sub: Any) -> None:
    """``hub settings show [KEY] | set KEY FILE | unset KEY``."""
    help_text = (
        "the settings set over the config file (in the console or here): show them, "
        "set a key from TOML as the file writes it, or unset it (back to the file's value)"
    )
    cmd = sub.add_parser("settings", help=help_text, description=help_text)
    actions = cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    keys = ", ".join(EDITABLE)
    for name, text in (
        ("show", "each key and where its value comes from; with KEY, its value as TOML"),
        ("set", "set KEY from FILE (TOML holding that key alone; - reads standard input)"),
        ("unset", "remove KEY's setting: the config file's value is in force again"),
    ):
        action = actions.add_parser(name, help=text, description=f"{text}. Keys: {keys}")
        action.add_argument("--config", metavar="FILE", help="config file")
        if name == "show":
            action.add_argument("key", metavar="KEY", nargs="?")
        else:
            action.add_argument("key", metavar="KEY")
        if name == "set":
            action.add_argument("file", metavar="FILE")
        action.set_defaults(handler=_run)
