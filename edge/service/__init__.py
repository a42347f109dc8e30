"""edge as a user service: a systemd user unit on Linux, a launchd agent on macOS.

Modules:
    systemd   -- the unit's text (``edge.service``), restart and journal settings (plain code)
    launchd   -- the agent's property list (``local.edge.plist``), KeepAlive and logs (plain code)
    backends  -- the two managers driven by their programs: systemctl/journalctl, launchctl
    manage    -- install, uninstall, status, logs: this edge's command, the checks, the files
"""

__all__ = ["backends", "launchd", "manage", "systemd"]
