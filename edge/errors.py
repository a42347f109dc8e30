"""Exceptions raised by edge.

The tree::

    EdgeError
    ├── ConfigError          -- a configuration file or flag is not usable
    ├── PolicyError          -- the local policy refuses a tool or a path
    ├── ToolError            -- a tool call failed in a way its caller should read
    │   └── ToolTimeout      -- the call ran past its timeout (not a trio.TooSlowError)
    └── TunnelError          -- the tunnel could not be used
        ├── HandshakeFailed  -- the cloud did not complete the handshake in time
        └── Unauthorized     -- the cloud refused the token
"""

from __future__ import annotations


def first_leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups, or ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


class EdgeError(Exception):
    """Root of every error edge raises on purpose."""


class ConfigError(EdgeError):
    """A configuration file or flag is not usable."""


class PolicyError(EdgeError):
    """The local policy refuses a tool or a path."""


class ToolError(EdgeError):
    """A tool call failed; the message is what the caller sees."""


class ToolTimeout(ToolError):
    """A tool call ran past its timeout."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message, seconds)
        self.seconds = seconds

    def __str__(self) -> str:
        return str(self.args[0])


class TunnelError(EdgeError):
    """The tunnel could not be used."""


class HandshakeFailed(TunnelError):
    """The cloud did not complete the handshake in time, or broke it."""


class Unauthorized(TunnelError):
    """The cloud refused the token (HTTP 401/403, close code 4401 or 1008)."""
