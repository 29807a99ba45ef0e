"""Timers over the log: reminders, response deadlines (SLA) and waiting requests given out when
someone can take them.
"""
