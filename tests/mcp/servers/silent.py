"""A process that reads its stdin and never answers: an MCP server stuck before initialize."""

import sys

for _ in sys.stdin:
    pass
