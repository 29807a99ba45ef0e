"""The admin HTTP API, the public unsubscribe page and the metrics endpoint."""
