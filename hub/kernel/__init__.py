"""The hub's vocabulary: types, ports, errors, clock, logging, texts, identities, time phrases,
rate limits. Imports nothing of ours above it; with ``hub.config``, the only part of the hub
that channels see.
"""
