"""The kit's exception hierarchy: one base, one subclass per kind of failure."""

from __future__ import annotations

__all__ = ["ConfigError", "DevstackError", "ObskitError", "ServerAPIError"]


class ObskitError(Exception):
    """Base of every error the kit raises on purpose."""


class ConfigError(ObskitError, ValueError):
    """A setting is missing or malformed; the message names the variable, the value and the expected form."""

    def __init__(self, variable: str, value: object, expected: str) -> None:
        self.variable = variable
        self.value = value
        self.expected = expected
        super().__init__(f"{variable}={value!r} is invalid: expected {expected}")


class DevstackError(ObskitError):
    """A devstack service could not be installed, started or reached; the message says what to do."""


class ServerAPIError(ObskitError):
    """The Sentry-compatible server's web API refused or could not be reached."""
