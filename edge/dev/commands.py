"""What ``edge dev-cloud`` reads on stdin: the command table, and the help written from it.

``edge dev-cloud --help`` (its epilog) and the ``help`` command both list
``COMMANDS``, and the console (``edge.dev.console``) runs exactly the names in it
(a test checks both ways), so the listing cannot drift from what runs.

Plain code without trio: the command line's parser imports it, and ``edge --help``
must stay fast.
"""

from __future__ import annotations

import textwrap
from typing import Final, NamedTuple


class Command(NamedTuple):
    """One line of the listing: the first word typed, how it is typed, what it does.

    (A named tuple, not a dataclass: importing ``dataclasses`` would slow ``edge --help``.)
    """

    name: str
    usage: str
    help: str


#: Every stdin command, in the order the listing shows them.
COMMANDS: Final = (
    Command(
        "call",
        "call TOOL [JSON]",
        "send a tool call, its arguments a JSON object (default {}); the result is printed "
        "when it comes, and other commands run meanwhile",
    ),
    Command("tools", "tools", "the tools the connected edge offers, and which are approved"),
    Command(
        "approve",
        "approve NAME[,NAME...]",
        "approve exactly these tools: the new set replaces the previous one",
    ),
    Command("approve", "approve all", "approve every tool the edge offers (the start-up default)"),
    Command("approve", "approve none", "approve no tool (as revoke)"),
    Command("approve", "approve", "show the approved tools and how to change them"),
    Command("revoke", "revoke", "approve no tool: every call is refused"),
    Command("ping", "ping", "a tunnel ping; prints the round trip"),
    Command("drop", "drop", "cut the connection without a close frame (the edge reconnects)"),
    Command("status", "status", "connection, attempts, results and approvals, as JSON"),
    Command("gw", "gw say TEXT", "the model gateway's next answer is TEXT"),
    Command("gw", "gw slow SECONDS TEXT", "... streamed a word every SECONDS (0 or more)"),
    Command(
        "gw",
        "gw call [SHAPE] NAME {JSON}",
        "the next answer asks for a call of tool NAME (streamed in SHAPE: see gw shapes)",
    ),
    Command("gw", "gw error STATUS", "the next answer is an HTTP error STATUS"),
    Command("gw", "gw shapes", "the tool-call shapes gw call can stream"),
    Command("help", "help", "this list"),
    Command("quit", "quit", "stop the fake cloud (so do exit, Ctrl-D on a terminal and Ctrl-C)"),
)

#: Other words for a command: the word typed → the command's name.
ALIASES: Final = {"exit": "quit"}

#: The distinct command names, in listing order.
NAMES: Final = tuple(dict.fromkeys(c.name for c in COMMANDS))

#: The ``gw`` commands in one line (what a ``gw`` command it cannot read answers).
GATEWAY_HELP: Final = " | ".join(c.usage for c in COMMANDS if c.name == "gw")


def usage_of(typed: str) -> str:
    """How the command that starts with the words ``typed`` is typed (``gw call`` →
    ``gw call [SHAPE] NAME {JSON}``), from ``COMMANDS``."""
    for command in COMMANDS:
        if command.usage == typed or command.usage.startswith(typed + " "):
            return command.usage
    raise KeyError(typed)


#: What ``edge dev-cloud`` prompts with, on a terminal only.
PROMPT: Final = "cloud> "


def listing(width: int = 80, indent: int = 2) -> str:
    """Every command with what it does, two columns, wrapped to ``width``."""
    column = max(len(c.usage) for c in COMMANDS) + 2
    room = width - indent - column
    lines = []
    for command in COMMANDS:
        if room < 24:  # too narrow for two columns: the help under the usage
            lines.append(" " * indent + command.usage)
            lines += textwrap.wrap(
                command.help, max(width - indent - 4, 20), initial_indent=" " * (indent + 4),
                subsequent_indent=" " * (indent + 4),
            )  # fmt: skip
            continue
        first, *rest = textwrap.wrap(command.help, room)
        lines.append(" " * indent + command.usage.ljust(column) + first)
        lines += [" " * (indent + column) + line for line in rest]
    return "\n".join(lines)


def epilog(width: int = 80) -> str:
    """The epilog of ``edge dev-cloud --help``: the commands, then how input and stop work.

    The listing's lines are indented, so ``ParagraphFormatter`` keeps them as written
    here (wrapped to ``width``); the prose around them it wraps itself.
    """
    return (
        "commands, typed on stdin while it runs (call and ping run beside the others, so a "
        "slow call holds up nothing):\n"
        f"{listing(width)}\n"
        "\n"
        f"On a terminal it prompts {PROMPT.strip()!r} and says when an edge connects or "
        "disconnects; Ctrl-D (end of input), quit or Ctrl-C stops it (exit 0). When stdin "
        "is not a terminal (a pipe, a file, /dev/null) it runs the commands it reads, "
        "then serves on until Ctrl-C or SIGTERM.\n"
        "\n"
        "example (a second terminal runs the edge):\n"
        "  edge dev-cloud\n"
        "  EDGE_TOKEN=dev-token edge run --cloud ws://127.0.0.1:8765/tunnel\n"
    )


def count(n: int, word: str) -> str:
    """``n`` and ``word``, plural unless ``n`` is 1 (the dev package cannot import the CLI's)."""
    return f"{n} {word if n == 1 else word + 's'}"
