"""``edge service``: (being written)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("service", help="(being written)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    return 2
