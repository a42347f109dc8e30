"""The control API on loopback."""
