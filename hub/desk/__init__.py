"""The managers' desk: answers, notes and actions on a client, whatever surface a manager works
from.
"""
