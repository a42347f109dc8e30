"""Every error edge raises on purpose, in one tree.

::

    EdgeError
    ├── ConfigError          a configuration file or flag is not usable
    ├── PolicyError          the local policy refuses a tool or a path
    ├── ToolError            a tool call failed; its message is what the caller reads
    │   ├── ToolTimeout      the call ran past its timeout (not a trio.TooSlowError)
    │   ├── McpCallError     an MCP server gave no proper answer (disabled, parked, busy, gone)
    │   └── PluginCallError  a plugin gave no proper answer (down, crashed, refused the call)
    ├── RunnerFailed         a plugin runner did not start, broke the protocol, hung or exited
    ├── TunnelError          the tunnel could not be used
    │   ├── HandshakeFailed  the cloud did not complete the handshake in time, or broke it
    │   ├── Unauthorized     the cloud refused the token
    │   └── ConnectionLost   the connection broke after the handshake
    ├── CaptureError         a capture could not start, or stopped on its own
    │   ├── CaptureConflict  the chat id already names a live capture
    │   ├── NoSuchCapture    no live capture has that chat id
    │   └── SourceEnded      a finite source reached its end (a normal finish)
    ├── GatewayError         the model gateway (cloud or offline) did not answer a chat turn
    ├── UpdateError          an update was refused (hash, signature, downgrade, install) or failed
    ├── ServiceError         the user service could not be installed, removed or queried
    └── BadRequest           a control-API request that is answered with 400 and this message

Modules raise these and translate foreign errors at their boundary (``raise
ToolError(...) from exc``); ``Cancelled`` and other ``BaseException``s are never
caught as errors. Every class passes all its arguments to ``super().__init__``,
so copies and pickles keep them.
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "CaptureConflict",
    "CaptureError",
    "ConfigError",
    "ConnectionLost",
    "EdgeError",
    "GatewayError",
    "HandshakeFailed",
    "McpCallError",
    "NoSuchCapture",
    "PluginCallError",
    "PolicyError",
    "RunnerFailed",
    "ServiceError",
    "SourceEnded",
    "ToolError",
    "ToolTimeout",
    "TunnelError",
    "Unauthorized",
    "UpdateError",
    "first_leaf",
]


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
    """A tool call ran past its timeout of ``seconds``."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message, seconds)
        self.seconds = seconds

    def __str__(self) -> str:
        return str(self.args[0])


class McpCallError(ToolError):
    """A call that got no proper answer from an MCP server (the message says why)."""


class PluginCallError(ToolError):
    """A plugin call that got no proper answer (the message says why)."""


class RunnerFailed(EdgeError):
    """A plugin runner did not start, broke the protocol, stopped answering or exited."""


class TunnelError(EdgeError):
    """The tunnel could not be used."""


class HandshakeFailed(TunnelError):
    """The cloud did not complete the handshake in time, or broke it."""


class Unauthorized(TunnelError):
    """The cloud refused the token (HTTP 401/403, close code 4401 or 1008)."""


class ConnectionLost(TunnelError):
    """The connection broke after the handshake; ``code`` is the close code if any."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message, code)
        self.code = code

    def __str__(self) -> str:
        return str(self.args[0])


class CaptureError(EdgeError):
    """A capture could not start or stopped on its own; the message says why."""


class CaptureConflict(CaptureError):
    """The chat id already names a live capture."""


class NoSuchCapture(CaptureError):
    """No live capture has that chat id."""


class SourceEnded(CaptureError):
    """A finite source (a file) reached its end: the capture finishes normally."""


class GatewayError(EdgeError):
    """A chat turn got no proper answer from the model gateway (the message says why)."""


class UpdateError(EdgeError):
    """An update was refused (bad hash or signature, a downgrade, an install edge cannot
    update) or its installer failed; nothing was changed unless the message says so."""


class ServiceError(EdgeError):
    """The user service (systemd unit, launchd agent) could not be installed, removed or read."""


class BadRequest(EdgeError):
    """A control-API request answered with 400 and this message."""
