"""Updating edge itself: a signed versions manifest, a hash-checked wheel, the right installer.

Modules:
    manifest -- the manifest: strict parse, Ed25519 signature, the target and wheel chosen
                (plain code, no I/O)
    fetch    -- https only: the manifest and its signature, the wheel hashed as it streams
    install  -- how edge was installed (pipx, uv, a venv; editable or system: refused),
                the installer's argument list, running it
    steps    -- check, prepare, install: the steps ``edge update`` and the daemon share

``edge update`` (``edge.cli.update``) runs them itself, or asks a running daemon
(``POST /update``, ``edge.nurseries.updates``), which drains, installs and exits
with ``edge.exitcodes.UPDATED``. See docs/update.md.
"""

__all__ = ["fetch", "install", "manifest", "steps"]
