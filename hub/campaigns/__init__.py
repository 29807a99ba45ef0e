"""Campaigns: segments, scripts, sending and call lists, opt-outs and results."""
