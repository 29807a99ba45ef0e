"""Web forms: a hosted page, an embeddable script and a plain POST endpoint."""

from channels.webform.channel import WebformChannel

__all__ = ["WebformChannel"]
