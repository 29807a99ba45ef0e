"""Who may do what in the admin API: the rights of each role, and the right each call needs.

One table each, read top to bottom:

==========  ==========================================================
role        rights
==========  ==========================================================
admin       every call (so has ``admin.token`` of the config)
supervisor  read, conversations, clients, events, audit
marketer    read, campaigns
manager     read, conversations
integration events (a business system's token: nothing to read)
==========  ==========================================================

A call needs the right of the first rule whose method and route start as the
rule's; any other ``GET`` needs ``read``, any other call ``admin`` (a call
added later is closed to all but admins until it is given a rule here).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from hub.kernel.types import Role


class Right(enum.StrEnum):
    READ = "read"  # clients, cards, reports, campaigns: look only
    CONVERSATIONS = "conversations"  # what clients wrote: timelines, conversations
    CLIENTS = "clients"  # change or export client records: merge, stage, import, events
    EVENTS = "events"  # record business events (which may add a client)
    CAMPAIGNS = "campaigns"  # create, start and pause campaigns
    AUDIT = "audit"  # read the audit log
    ADMIN = "admin"  # any other change


RIGHTS: Mapping[Role, frozenset[Right]] = {
    Role.ADMIN: frozenset(Right),
    Role.SUPERVISOR: frozenset(
        {Right.READ, Right.CONVERSATIONS, Right.CLIENTS, Right.EVENTS, Right.AUDIT}
    ),
    Role.MARKETER: frozenset({Right.READ, Right.CAMPAIGNS}),
    Role.MANAGER: frozenset({Right.READ, Right.CONVERSATIONS}),
    Role.INTEGRATION: frozenset({Right.EVENTS}),
}

# (method, route prefix, right): routes as registered, ``{id}`` and all
RULES: tuple[tuple[str, str, Right], ...] = (
    ("GET", "/api/audit", Right.AUDIT),
    ("GET", "/api/conversations", Right.CONVERSATIONS),
    ("GET", "/api/clients/{id}/timeline", Right.CONVERSATIONS),
    ("GET", "/api/clients.csv", Right.CLIENTS),
    ("POST", "/api/clients", Right.CLIENTS),
    ("POST", "/api/merges", Right.CLIENTS),
    ("POST", "/api/events", Right.EVENTS),
    ("POST", "/api/campaigns", Right.CAMPAIGNS),
    ("GET", "/api/webhooks", Right.ADMIN),  # what integrations were sent, and their errors
    ("GET", "/api/settings", Right.ADMIN),  # the settings over the config file
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made an API call: a token's holder and their role."""

    name: str
    role: Role

    @property
    def actor(self) -> str:
        """How the audit log names them."""
        return f"api:{self.name}"


CALLER = web.RequestKey("caller", Caller)


def needed(method: str, route: str) -> Right:
    """The right a call needs; ``route`` as registered (``/api/clients/{id}``)."""
    method = "GET" if method == "HEAD" else method
    for rule_method, prefix, right in RULES:
        if method == rule_method and route.startswith(prefix):
            return right
    return Right.READ if method == "GET" else Right.ADMIN


def route_of(request: web.Request) -> str:
    """The request's route as registered, or its path when no route matched."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def refusal(caller: Caller, request: web.Request) -> str | None:
    """Why ``caller`` may not make this call, or None when they may."""
    right = needed(request.method, route_of(request))
    if right in RIGHTS[caller.role]:
        return None
    return (
        f"forbidden: the {caller.role.value} role has no {right.value!r} right, "
        f"which {request.method} {route_of(request)} needs"
    )


def actor(request: web.Request) -> str:
    """The audit log's name for who made this ``/api/`` call."""
    caller: Caller = request[CALLER]
    return caller.actor
