"""Python plugins, run outside the daemon in supervised runner processes.

Modules:
    manifest -- plugin.toml: what a plugin is and needs; its config (defaults + config.toml)
    ipc      -- envelopes over a trio stream (edge.protocol.rpc frames), both sides
    host     -- the daemon's side of one runner: spawn, handshake, RPC, health, the spare
    runner   -- the runner process itself (``python -m edge.plugins.runner``)
    skeleton -- the files ``edge plugins new`` writes

The SDK plugin authors import is ``edge.plugin``. This package imports nothing
at the top: a runner starts by importing it.
"""

__all__ = ["host", "ipc", "manifest", "runner", "skeleton"]
