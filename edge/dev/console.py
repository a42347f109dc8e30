"""``edge dev-cloud`` at the terminal: the fake cloud and its gateway, driven from stdin.

``call`` and ``ping`` wait on the edge, so each runs as its own task: a ping typed
during a slow call is answered at once. The other commands finish without waiting
on anyone and run in the order typed (two ``gw say`` lines script two answers in
that order). Whatever a command prints is written in one piece, so concurrent
output never interleaves within a block; an edge connecting, disconnecting or
being refused is printed as it happens (``FakeCloud.announce``).

On a terminal (stdin and stdout both) it prompts ``cloud> `` and redraws the
prompt under whatever it prints. It stops on ``quit``, Ctrl-C or SIGTERM, and on
the end of input (Ctrl-D) when stdin is a terminal, with exit 0: stopping is how a
foreground server ends, as for ``edge run``. When stdin is not a terminal (a
pipe, a file, ``/dev/null``) the end of input only ends the reading: it serves on
until a signal, so a script of commands piped in, or ``< /dev/null &``, leaves the
cloud running. Started in the background of a shell (``&`` with stdin the
terminal), it reads nothing, since reading would stop it (SIGTTIN).

The commands and their help are ``edge.dev.commands``; ``Console`` runs exactly
those names.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, Final, TextIO

import trio
import trio_websocket

from .cloud import FakeCloud
from .commands import ALIASES, GATEWAY_HELP, NAMES, PROMPT, count, listing, usage_of
from .gateway import SHAPES, FakeGateway, Step

#: Commands that wait on the edge: each runs as its own task.
CONCURRENT: Final = frozenset({"call", "ping"})
#: Erases the line the cursor is on (the prompt and what was typed after it).
ERASE_LINE: Final = "\r\x1b[K"


def gateway_step(rest: str) -> Step | str:
    """A ``gw`` command's step for the gateway's script, or the text to print (its usage,
    when it cannot be read: a bare ``gw call``, seconds that are not a finite number)."""
    verb, _, rest = rest.strip().partition(" ")
    if verb == "say" and rest:
        return Step(text=rest)
    if verb == "slow":
        seconds, _, text = rest.partition(" ")
        try:
            delay = float(seconds)
        except ValueError:
            delay = math.nan
        if not math.isfinite(delay) or delay < 0:
            given = f"; not {seconds!r}" if seconds else ""
            return f"usage: {usage_of('gw slow')} (SECONDS: a number, 0 or more{given})"
        return Step(text=text or "a slow answer, one word at a time", chunk_delay=delay)
    if verb == "error":
        if not rest.strip():
            return f"usage: {usage_of('gw error')}"
        return Step(status=int(rest))
    if verb == "call":
        first, _, more = rest.partition(" ")
        shape = "standard"
        if first in SHAPES:
            shape, (first, _, more) = first, more.partition(" ")
        if not first:
            return f"usage: {usage_of('gw call')}"
        args = json.loads(more) if more.strip() else {}
        return Step(calls=((first, args),), shape=shape)
    if verb == "shapes":
        return "tool-call shapes: " + ", ".join(SHAPES)
    return f"usage: {GATEWAY_HELP}"


class Console:
    """What is typed, run against ``cloud`` and ``gateway``; what they say, printed to ``out``.

    Args:
        prompt: show ``cloud> `` (stdin and stdout are a terminal).
    """

    def __init__(
        self, cloud: FakeCloud, gateway: FakeGateway, out: TextIO, *, prompt: bool
    ) -> None:
        self.cloud = cloud
        self.gateway = gateway
        self.out = out
        self.prompt = prompt
        #: Set when the fake cloud is to stop (``quit``, end of input on a terminal, a signal).
        self.stopped = trio.Event()
        #: The command names → what runs them (the part of the line after the name in).
        self.handlers: dict[str, Callable[[str], Awaitable[None]]] = {
            "call": self._call,
            "tools": self._tools,
            "approve": self._approve,
            "revoke": self._revoke,
            "ping": self._ping,
            "drop": self._drop,
            "status": self._status,
            "gw": self._gateway,
            "help": self._help,
            "quit": self._quit,
        }

    # -- output ----------------------------------------------------------------------

    def say(self, text: str, *, then_prompt: bool = True) -> None:
        """Print ``text`` whole; on a terminal over the prompt line, the prompt redrawn under it."""
        if self.prompt:
            self.out.write(ERASE_LINE + text + "\n" + (PROMPT if then_prompt else ""))
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def show_prompt(self) -> None:
        if self.prompt:
            self.out.write(PROMPT)
            self.out.flush()

    def banner(self, token: str) -> None:
        url = self.cloud.url
        self.say(
            f"fake cloud on {url}  (token: {token})\n"
            f"fake model gateway on {self.cloud.gateway_url}  (echoes; '/call NAME {{JSON}}' "
            "asks for a tool call)\n"
            f"  connect an edge:  EDGE_TOKEN={token} edge run --cloud {url}\n"
            "  or hand a running edge the token:\n"
            "    curl -X POST http://127.0.0.1:8660/tunnel/activate -H 'content-type: "
            f'application/json\' -d \'{{"jwt":"{token}","tunnelUrl":"{url}"}}\'\n'
            f"commands: {', '.join(NAMES)} (help says what they do)"
        )

    # -- input -----------------------------------------------------------------------

    async def read(self, fd: int, nursery: trio.Nursery, *, terminal: bool) -> None:
        """Run the lines read from ``fd`` until ``quit`` or the end of input."""
        async for line in _lines(fd):
            word, _, rest = line.partition(" ")
            word = ALIASES.get(word, word)
            if word in CONCURRENT:
                nursery.start_soon(self.run, word, rest)
                self.show_prompt()
            elif word:
                await self.run(word, rest)
            else:
                self.show_prompt()
            if self.stopped.is_set():
                return
        if terminal:
            self.say("end of input: stopping the fake cloud", then_prompt=False)
            self.stopped.set()
        else:
            self.say("end of input: serving on until Ctrl-C or SIGTERM")

    async def run(self, word: str, rest: str) -> None:
        """Run one command; its errors are printed, never raised (the console goes on)."""
        handler = self.handlers.get(word)
        try:
            if handler is None:
                self.say(f"unknown command {word!r} (help lists the commands)")
            else:
                await handler(rest.strip())
        except ValueError as exc:  # bad JSON, a bad number
            self.say(f"error: {exc}")
        except trio_websocket.ConnectionClosed:
            self.say(f"error: the connection closed before {word} was done")

    # -- the commands ----------------------------------------------------------------

    def _connected(self) -> bool:
        if not self.cloud.connected:
            self.say("no edge connected yet")
        return self.cloud.connected

    async def _call(self, rest: str) -> None:
        tool, _, text = rest.partition(" ")
        if not tool:
            self.say('usage: call TOOL [JSON]   e.g. call terminal {"command": "uname -a"}')
            return
        args = json.loads(text) if text.strip() else {}
        if not isinstance(args, dict):
            self.say('error: the arguments must be a JSON object, e.g. {"command": "ls"}')
            return
        if not self._connected():
            return
        start = trio.current_time()
        call_id = await self.cloud.start_call(tool, args)
        self.say(f"call {call_id} ({tool}) sent")
        result = await self.cloud.result(call_id)
        seconds = trio.current_time() - start
        self.say(
            f"call {call_id} ({tool}) answered in {seconds:.2f} s:\n{json.dumps(result, indent=2)}"
        )

    def _offered(self) -> list[str] | None:
        report = self.cloud.report if self.cloud.connected else None
        if report is None:
            return None
        return [t["name"] for t in report.get("tools", []) if isinstance(t, dict) and "name" in t]

    def _approved_text(self) -> str:
        approved = self.cloud.approved
        if approved is None:
            wanted = self.cloud.approve
            if wanted is None:
                return "every tool an edge offers (once one connects)"
            return ", ".join(sorted(wanted)) or "none"
        return ", ".join(approved) or "none"

    async def _tools(self, rest: str) -> None:
        offered = self._offered()
        if offered is None:
            self.say("no edge connected yet")
            return
        approved = set(self.cloud.approved or ())
        lines = [f"the edge offers {count(len(offered), 'tool')}:"]
        lines += [f"  {name}{'' if name in approved else '  (not approved)'}" for name in offered]
        self.say("\n".join(lines))

    async def _approve(self, rest: str) -> None:
        names = [n for n in rest.replace(",", " ").split() if n]
        if not names:
            self.say(
                f"approved: {self._approved_text()}\n"
                "  change with: approve NAME[,NAME...] (replaces the set), approve all, "
                "approve none (or revoke)"
            )
            return
        if names == ["all"]:
            self.cloud.approve = None
            offered = self._offered()
            if offered is None:
                self.say("approved: every tool an edge offers (sent when one connects)")
                return
            await self.cloud.approve_tools(offered)
            self.say(f"approved: every offered tool, {', '.join(offered) or 'none'} "
                     "(replaces the previous set)")  # fmt: skip
            return
        if names == ["none"]:
            await self._revoke("")
            return
        chosen = sorted(set(names))
        self.cloud.approve = set(chosen)
        offered = self._offered()
        if offered is None:
            self.say(f"approved: {', '.join(chosen)} (replaces the previous set; sent when an "
                     "edge connects)")  # fmt: skip
            return
        await self.cloud.approve_tools(chosen)
        unknown = [n for n in chosen if n not in offered]
        note = f"; not offered by the edge: {', '.join(unknown)}" if unknown else ""
        self.say(f"approved: {', '.join(chosen)} (replaces the previous set){note}")

    async def _revoke(self, rest: str) -> None:
        self.cloud.approve = set()
        if self._offered() is not None:
            await self.cloud.approve_tools([])
        self.say("approved: none (replaces the previous set): every call is refused; "
                 "approve all undoes it")  # fmt: skip

    async def _ping(self, rest: str) -> None:
        if self._connected():
            self.say(f"pong in {await self.cloud.ping() * 1000:.2f} ms")

    async def _drop(self, rest: str) -> None:
        if self._connected():
            await self.cloud.drop()
            self.say("dropped the connection (no close frame); the edge will reconnect")

    async def _status(self, rest: str) -> None:
        cloud = self.cloud
        status: dict[str, Any] = {
            "connected": cloud.connected,
            "attempts": cloud.attempts,
            "rejected": cloud.rejected,
            "results": len(cloud.results),
            "approved": cloud.approved if cloud.connected else None,
        }
        self.say(json.dumps(status))

    async def _gateway(self, rest: str) -> None:
        step = gateway_step(rest)
        if isinstance(step, str):
            self.say(step)
        else:
            self.gateway.script(step)
            self.say(f"the gateway's next answer: {step}")

    async def _help(self, rest: str) -> None:
        self.say(listing())

    async def _quit(self, rest: str) -> None:
        self.say("stopping the fake cloud", then_prompt=False)
        self.stopped.set()


def _stdin_fd() -> int | None:
    """Standard input's descriptor, or ``None`` when there is none to read."""
    if sys.stdin is None or sys.stdin.closed:
        return None
    try:
        return sys.stdin.fileno()
    except (OSError, ValueError):
        return None


def _in_background(fd: int) -> bool:
    """Whether ``fd`` is a terminal whose foreground is another process group."""
    try:
        return os.tcgetpgrp(fd) != os.getpgrp()
    except OSError:  # not our controlling terminal: nothing stops us reading it
        return False


async def _lines(fd: int) -> AsyncIterator[str]:
    """The lines read from ``fd``, stripped, until the end of input.

    Read in a thread, abandoned on cancel: a blocking read works for every kind of
    stdin (a terminal, a pipe, a regular file, which cannot be polled), and it
    leaves the descriptor's mode alone (the terminal is the shell's, too).
    """
    buffer = b""
    while True:
        try:
            chunk = await trio.to_thread.run_sync(os.read, fd, 4096, abandon_on_cancel=True)
        except BlockingIOError:  # someone made it non-blocking
            await trio.lowlevel.wait_readable(fd)
            continue
        except OSError:  # the terminal hung up
            chunk = b""
        if not chunk:
            if buffer.strip():
                yield buffer.decode(errors="replace").strip()
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode(errors="replace").strip()


async def _stop_on_signal(signals: AsyncIterator[int], console: Console) -> None:
    async for signum in signals:
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        console.say(f"stopping the fake cloud ({name})", then_prompt=False)
        console.stopped.set()
        return


async def run_interactive(host: str, port: int, token: str, gateway_port: int = 0) -> None:
    """``edge dev-cloud``: serve, print how to connect, and run the commands typed on stdin.

    A fake model gateway (``edge.dev.gateway``) runs beside it on ``gateway_port``
    (0: any free port), accepting the same token, and is named in ``connected``.
    Returns once told to stop (see the module docstring).

    Raises:
        ConfigError: an address cannot be bound.
    """
    fd = _stdin_fd()
    terminal = fd is not None and os.isatty(fd)
    cloud = FakeCloud([token])
    gateway = FakeGateway([token])
    console = Console(cloud, gateway, sys.stdout, prompt=terminal and sys.stdout.isatty())
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, signals, console)
            cloud.gateway_url = await nursery.start(gateway.serve, host, gateway_port)
            await nursery.start(cloud.serve, host, port)
            cloud.announce = console.say
            console.banner(token)
            if fd is None:
                pass
            elif terminal and _in_background(fd):
                console.say("in the background: commands are not read (stop it with SIGTERM)")
            else:
                nursery.start_soon(partial(console.read, fd, nursery, terminal=terminal))
            await console.stopped.wait()
            nursery.cancel_scope.cancel()
