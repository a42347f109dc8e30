"""edge: a trio daemon that is the cloud brain's pair of hands on this machine.

Subpackages:
    protocol   -- the tunnel's wire protocol as plain functions and dataclasses (no I/O)
    tools      -- the tool registry, the local policy and the built-in tools
    nurseries  -- the long-lived handles the daemon supervises (tunnel, tool-call
                  workers, control API)

Modules:
    daemon     -- the root nursery: owns all state and wires the children together
    devcloud   -- a real WebSocket server that plays the cloud, for tests and demos
    config     -- configuration from TOML and flags
    cli        -- the ``edge`` command
"""

from __future__ import annotations

from typing import Final

__version__: Final = "0.1.0"
