"""``edge ask`` and ``edge chat``: (being written)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    for name in ("ask", "chat"):
        parser = subparsers.add_parser(name, help="(being written)")
        parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    return 2
