"""Routing: who gets a request. Pure code over a snapshot, no I/O."""

from routing.engine import (
    STRATEGIES,
    Decision,
    ManagerInfo,
    Request,
    Rule,
    Rules,
    Snapshot,
    Strategy,
    decide,
)

__all__ = [
    "STRATEGIES",
    "Decision",
    "ManagerInfo",
    "Request",
    "Rule",
    "Rules",
    "Snapshot",
    "Strategy",
    "decide",
]
