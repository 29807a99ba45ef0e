"""The one ingest path: every inbound message logged once, threaded, routed and answered in one
transaction (group commit).
"""
