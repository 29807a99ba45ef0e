"""The hub's error hierarchy: one root, a few subclasses per layer."""


class HubError(Exception):
    """Root of every error the hub raises on purpose."""


class ConfigError(HubError):
    """The configuration is invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class StorageUnavailable(HubError):
    """The database could not take the write; the sender should retry later."""


class MessageRejected(HubError):
    """This inbound message can never be stored as it is; retrying will not help."""


class DeliveryError(HubError):
    """A channel could not deliver an outbound message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TemporaryDeliveryError(DeliveryError):
    """Worth retrying later; ``retry_after`` (seconds) when the peer said how long to wait."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Retrying will not help (blocked bot, SMTP 5xx, unknown recipient)."""
