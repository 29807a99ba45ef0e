"""Routing: who gets a request. Pure code over a snapshot, no I/O."""

from routing.engine import Decision, ManagerInfo, Request, Snapshot, decide

__all__ = ["Decision", "ManagerInfo", "Request", "Snapshot", "decide"]
