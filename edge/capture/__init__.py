"""Audio capture."""
