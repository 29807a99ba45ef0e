"""Composition roots (``hub run`` and the mail worker process), the ``hub`` CLI and the table of
scheduled jobs: the only place that wires channels in.
"""
