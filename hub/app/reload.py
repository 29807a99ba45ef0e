"""Reload without restart: a new config checked, what changed sorted into what the
running hub takes at once and what waits for a restart, the new parts swapped in
(:meth:`hub.app.run.Hub.reload`), and the answer (a log line, ``POST /api/reload``,
``hub reload``).

What a reload takes is :data:`RELOADABLE`: managers (synced as at start: added,
changed, deactivated; who is away untouched), routing rules, SLA policies, stages,
auto-replies, canned answers, the forms, the webhooks, waiting requests' closing,
and the rounds those run. The running parts are given small new objects they read
afresh each time (the ingestor's rules and policies, the desk's templates, the form
server's forms, the webhook channel's targets, the mail worker's ingestor through
its socket). Any other key that changed keeps its old value until a restart, and the
answer names it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError

from hub import config as config_module
from hub.admin.access import actor
from hub.app import schedule
from hub.app.wiring import WorkerSetup, auto_replies
from hub.clients.stage_rules import compile_stage_rules
from hub.config import Config, FormSection, split_listen
from hub.config.overrides import EDITABLE
from hub.delivery import webhooks as outgoing
from hub.desk.canned import CannedAnswers
from hub.ingest.ingestor import Tuning
from hub.ingest.rules import compile_policies, compile_rules
from hub.jobs.deadlines import Escalator
from hub.kernel import loggers
from hub.kernel.errors import ConfigError, HubError
from hub.kernel.http import json_response
from storage import desk as desk_q
from storage import managers as managers_q

if TYPE_CHECKING:
    from hub.app.run import Hub
    from hub.app.schedule import Scheduler

log = loggers.core

# Keys (and the sections under them) a running hub takes on reload: those a setting
# may replace, and the webhooks (whose secrets stay in the file).
RELOADABLE: tuple[str, ...] = (*EDITABLE, "webhooks")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """``changed``: keys taken now; ``restart``: keys changed in the file that wait
    for a restart; ``problems``: why the file was refused (then nothing changed)."""

    changed: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        if self.problems:
            return ["not reloaded, nothing changed:", *(f"  {p}" for p in self.problems)]
        said = ", ".join(self.changed) if self.changed else "nothing changed"
        lines = [f"reloaded: {said}"]
        if self.restart:
            lines.append(f"changed, takes effect after a restart: {', '.join(self.restart)}")
        return lines

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "changed": list(self.changed),
            "restart": list(self.restart),
            "problems": list(self.problems),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReloadResult:
        return cls(
            tuple(map(str, data.get("changed", ()))),
            tuple(map(str, data.get("restart", ()))),
            tuple(map(str, data.get("problems", ()))),
        )


@runtime_checkable
class FormServer(Protocol):
    """The web form channel: its forms replaced."""

    def set_forms(self, forms: Sequence[FormSection]) -> None: ...


@runtime_checkable
class Reconfigurable(Protocol):
    """The mail worker: ``setup`` for its next start, ``change`` for the running one."""

    def reconfigure(self, setup: object, change: object) -> None: ...


# What changed --------------------------------------------------------------------


def _leaves(value: object, path: str, out: dict[str, object]) -> None:
    """Every key of a section (as the file spells it) with its value; a list is one value."""
    if isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            key = field.alias or name
            _leaves(getattr(value, name), f"{path}.{key}" if path else key, out)
    else:
        out[path] = value


_ABSENT = object()


def changed_keys(old: Config, new: Config) -> list[str]:
    """The keys whose values differ (secrets compared by value, never shown); a
    section set or unset (``email.outbound``) is named once."""
    before: dict[str, object] = {}
    after: dict[str, object] = {}
    _leaves(old, "", before)
    _leaves(new, "", after)
    differ = [
        key for key in {**after, **before} if before.get(key, _ABSENT) != after.get(key, _ABSENT)
    ]
    named = set(differ)
    return [key for key in differ if not any(key.startswith(f"{k}.") for k in named)]


def reloadable(key: str) -> bool:
    return any(key == r or key.startswith(f"{r}.") for r in RELOADABLE)


def _with(model: BaseModel, path: list[str], value: object) -> BaseModel:
    head, *rest = path
    inner = getattr(model, head)
    return model.model_copy(update={head: _with(inner, rest, value) if rest else value})


def effective(old: Config, new: Config) -> Config:
    """The config the hub runs with after the reload: ``old`` with the reloadable
    keys of ``new``, checked again as a whole (a form against the honeypot kept)."""
    merged: BaseModel = old
    for key in RELOADABLE:
        value: object = new
        for part in key.split("."):
            value = getattr(value, part)
        merged = _with(merged, key.split("."), value)
    try:
        return Config.model_validate(merged.model_dump(by_alias=True))
    except ValidationError as exc:
        problems = [
            f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise ConfigError(problems) from None


# What the running parts are given -------------------------------------------------


def manager_rows(config: Config) -> list[dict[str, Any]]:
    """``[[managers]]`` as the managers table keeps them."""
    return [
        {
            "name": m.name,
            "telegram_id": m.telegram_id,
            "email": m.email,
            "role": m.role,
            "hours": m.hours,
            "timezone": m.timezone,
            "capacity": m.capacity,
            "attrs": {
                "skills": m.skills,
                "team": m.team,
                "language": m.language,
                "holidays": [d.isoformat() for d in m.holidays],
            },
        }
        for m in config.managers
    ]


def tuning(config: Config, manager_ids: dict[str, int]) -> Tuning:
    """The ingestor's rules, policies and replies (the hub's and the mail worker's)."""
    return Tuning(
        rules=compile_rules(config, manager_ids),
        policies=compile_policies(config, manager_ids),
        auto_replies=auto_replies(config),
        holidays=frozenset(config.routing.holidays),
        flood_per_minute=config.desk.flood_per_minute,
        stage_rules=compile_stage_rules(config),
    )


def reschedule(scheduler: Scheduler, hub: Hub, config: Config, dialect: str, now: datetime) -> None:
    """The scheduled rounds as ``config`` runs them: added, removed, or their interval changed."""
    for job in schedule.SCHEDULE:
        found = scheduler.get_job(job.id)
        seconds = job.seconds(config)
        if not job.when(config, dialect):
            if found is not None:
                found.remove()
        elif found is None:
            scheduler.add_round(job, hub, config, now)
        elif found.trigger.interval != timedelta(seconds=seconds):
            found.reschedule("interval", seconds=seconds)


def _swap(hub: Hub, config: Config, tuned: Tuning) -> None:
    """Give the running parts their new objects (nothing here awaits: all at once)."""
    if hub.ingestor is not None:
        hub.ingestor.retune(tuned)
    assigner = hub.assigner
    if assigner is not None:
        assigner.rules = tuned.rules
        assigner.holidays = tuned.holidays
        assigner.accept_timeout = timedelta(minutes=config.routing.accept_timeout_minutes)
        if hub.escalator is not None:
            hub.escalator.policies = {p.name: p for p in tuned.policies}
        elif tuned.policies and hub.db is not None:
            hub.escalator = Escalator(
                hub.db,
                hub.clock,
                tuned.policies,
                assigner,
                staff_channel=hub.desk.staff_channel if hub.desk else None,
                language=config.hub.language,
                timezone=config.hub.timezone,
            )
    if hub.desk is not None:
        hub.desk.canned = CannedAnswers(config.desk.templates)
        hub.desk.hours = config.hub.hours
        hub.desk.stage_rules = tuned.stage_rules
        if hub.desk.csat is not None:  # a ``rating`` rule moves the client
            hub.desk.csat.rules = tuned.stage_rules
    if hub.webhooks is not None:
        hub.webhooks.configure(config.webhooks)
        if config.webhooks and hub.dispatcher is not None:
            hub.dispatcher.channels.setdefault(outgoing.CHANNEL, hub.webhooks)
    forms = hub.channels.get("webform")
    if isinstance(forms, FormServer):
        forms.set_forms(config.webform.forms)
    offload = getattr(hub.channels.get("email"), "offload", None)
    if isinstance(offload, Reconfigurable):
        staff = hub.desk.staff_channel if hub.desk else None
        offload.reconfigure(WorkerSetup(config, staff), tuned)


async def apply(hub: Hub, new: Config, *, by: str) -> ReloadResult:
    """Check ``new`` against the running config and take what may be taken now."""
    keys = changed_keys(hub.config, new)
    now_keys = tuple(k for k in keys if reloadable(k))
    restart = tuple(k for k in keys if not reloadable(k))
    try:
        config = effective(hub.config, new)
    except ConfigError as exc:
        return ReloadResult(problems=tuple(exc.problems))
    db = hub.db
    if now_keys and db is not None:
        at = hub.clock.now()
        try:
            async with db.write() as conn:
                await managers_q.sync(conn, manager_rows(config), at)
                tuned = tuning(config, await managers_q.ids_by_name(conn))
                await outgoing.sync(conn, config.webhooks)
                await desk_q.audit(
                    conn,
                    {
                        "at": at,
                        "actor": by,
                        "action": "reload",
                        "object_type": "config",
                        "object_id": None,
                        "details": {"changed": list(now_keys), "restart": list(restart)},
                    },
                )
        except (DBAPIError, OSError) as exc:
            reason = loggers.redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return ReloadResult(problems=(f"the database: {reason[:200]}",))
        _swap(hub, config, tuned)
        if hub.scheduler is not None:
            reschedule(hub.scheduler, hub, config, db.engine.dialect.name, at)
    hub.config = config
    return ReloadResult(now_keys, restart)


def said(result: ReloadResult, by: str) -> None:
    """The reload's one log line."""
    if result.ok:
        loggers.event(
            log,
            "hub.reloaded",
            by=by,
            changed=",".join(result.changed) or "-",
            restart=",".join(result.restart) or "-",
        )
    else:
        loggers.event(
            log, "hub.reload_refused", logging.WARNING, by=by, why="; ".join(result.problems)
        )


async def read_file(path: str | None) -> Config | ReloadResult:
    """The config file read and checked, or the answer saying why not."""
    if path is None:
        return ReloadResult(problems=("the hub was not started from a config file",))
    try:
        return await asyncio.to_thread(config_module.load, path)
    except ConfigError as exc:
        return ReloadResult(problems=tuple(exc.problems))


# The admin API's route and the command line ------------------------------------------


def add_route(app: web.Application, reload: Callable[[str], Awaitable[ReloadResult]]) -> None:
    """``POST /api/reload``: the hub reads its config file again; 200 with what
    changed, or 422 with why the file was refused."""

    async def handler(request: web.Request) -> web.Response:
        result = await reload(actor(request))
        return json_response(result.as_json(), status=200 if result.ok else 422)

    app.router.add_post("/api/reload", handler)


def _address(listen: str) -> str:
    """Where this host reaches an admin API listening on ``listen``."""
    host, port = split_listen(listen)
    if host in ("", "0.0.0.0"):  # noqa: S104 - every address: this host's loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ask(config: Config, timeout: float = 60.0) -> ReloadResult:
    """Ask the hub at ``admin.listen`` to reload its config file; HubError when it
    cannot be reached."""
    url = f"http://{_address(config.admin.listen)}/api/reload"
    request = urllib.request.Request(
        url,
        method="POST",
        headers={"Authorization": f"Bearer {config.admin.token.get_secret_value()}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code != 422:
            raise HubError(f"the hub at {url} answered {exc.code} {exc.reason}") from None
        body = exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HubError(
            f"no hub answers at {url} ({reason}); is it running with this config? "
            "(kill -HUP its process reloads it too)"
        ) from None
    try:
        return ReloadResult.from_json(json.loads(body))
    except (ValueError, AttributeError):
        raise HubError(f"the hub at {url} answered something else than a reload") from None


def _command(args: argparse.Namespace) -> int:
    config = config_module.load(config_module.resolve_path(args.config))
    result = ask(config)
    for line in result.lines():
        print(line)
    return 0 if result.ok else 2


def add_parser(sub: Any) -> None:
    """``hub reload [--config FILE]``."""
    help_text = (
        "make the running hub read its config file again: managers, rules, SLA policies, "
        "stages, texts and forms change at once; the keys that need a restart are named"
    )
    cmd = sub.add_parser("reload", help=help_text, description=help_text)
    cmd.add_argument(
        "--config",
        metavar="FILE",
        help="the config that names the hub's admin API (default ./config.toml, then $HUB_CONFIG)",
    )
    cmd.set_defaults(handler=_command)
