"""The hub's core: normalized messages, ingest, outbox, config, app assembly, CLI, admin API."""
