"""Outbound delivery: the outbox rows every sender writes, and the dispatcher that delivers them
once, within limits.
"""
