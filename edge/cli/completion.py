"""``edge completion SHELL``: the shell's completion script for every command and option.

Generated from the same argparse tree ``edge --help`` shows, by shtab (a maintained
generator of completion scripts from argparse parsers), so it never falls behind a
new command or flag.
"""

from __future__ import annotations

import argparse
from typing import Any, Final

from .common import ParagraphFormatter

#: The shells a script is made for.
SHELLS: Final = ("bash", "zsh", "fish")

EPILOG: Final = """\
install:
  bash   echo 'eval "$(edge completion bash)"' >> ~/.bashrc
  zsh    edge completion zsh > "${fpath[1]}/_edge"   (then start a new shell)
  fish   edge completion fish > ~/.config/fish/completions/edge.fish
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "completion",
        help="print the shell completion script (bash, zsh, fish)",
        allow_abbrev=False,
        description="Print the completion script of edge's commands and options for SHELL.",
        epilog=EPILOG,
        formatter_class=ParagraphFormatter,
    )
    parser.add_argument("shell", choices=SHELLS, metavar="SHELL", help=", ".join(SHELLS))
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import shtab

    root: argparse.ArgumentParser = args.root_parser
    print(shtab.complete(root, shell=args.shell), end="")
    return 0
