"""``edge ask`` and ``edge chat``: the model, with this machine's tools.

Connected, a question goes to the running daemon (``POST /ask`` on the control
API), which asks the cloud's model gateway under the tunnel's token and runs
the model's tool calls on the tunnel's path: the token never reaches this
process. With ``--offline`` the same loop runs here, against a model server on
this machine (``[offline] url``), with the tools the local policy allows; the
ones that change the machine ask first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .common import (
    ParagraphFormatter,
    add_control_option,
    add_policy_options,
    colour_enabled,
    fail,
)

if TYPE_CHECKING:
    from ..config import Config
    from ..tools.execute import Executor

#: The tools that change the machine: ``--offline`` asks before each call of one.
CHANGING_TOOLS: Final = frozenset({"terminal", "code", "file_write", "file_ops"})
#: Seconds to wait for the daemon to answer before the stream starts (the gateway's
#: own timeouts run inside the daemon).
DAEMON_CONNECT: Final = 10.0

ASK_EPILOG: Final = """\
Connected to the cloud, the question goes through the running daemon to the
cloud's model gateway (billed there, under your token); the model's tool calls
run here, under the cloud's approval and your local policy. With --offline it
goes to a model server on this machine ([offline] url in the config, default
Ollama's http://127.0.0.1:11434/v1; llama.cpp's server and vLLM work too), no
daemon or cloud needed; terminal, code, file_write and file_ops calls then ask
for a y/N first unless --yes.

The answer streams to stdout; each tool call is one line on stderr (name, short
args, duration, ok/error). Ctrl-C stops the answer and cancels running calls.
Exit status: 0 answered, 1 failed (no daemon, no token, a gateway error),
2 bad usage, 130 stopped by Ctrl-C.

examples:
  edge ask "which files in ~/notes mention invoices?"
  git diff | edge ask - --system "review this patch"
  edge ask --offline --yes "how big is my workspace?"
  edge ask --format json "summarise README.md" | jq -r .answer
"""

CHAT_EPILOG: Final = """\
Type a message and Enter. Commands: /tools (the tools the model may call),
/model [NAME] (show or change the model), /clear (forget the conversation),
/exit (or Ctrl-D). Ctrl-C stops an answer; at the prompt it leaves.
The conversation lives in memory only, unless --save FILE (written after each
answer, 0600). Line editing and history (this session's) as in a shell.
"""


def add_parser(subparsers: Any) -> None:
    ask = subparsers.add_parser(
        "ask",
        help="ask the model a question; it may use this machine's tools",
        allow_abbrev=False,
        description="Ask the model one question and print its answer.",
        epilog=ASK_EPILOG,
        formatter_class=ParagraphFormatter,
    )
    ask.add_argument("question", help='the question; "-" reads it from stdin')
    ask.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="text: stream the answer (default); json: one JSON object at the end",
    )
    _common(ask)
    ask.set_defaults(handler=handle_ask)

    chat = subparsers.add_parser(
        "chat",
        help="talk with the model interactively; it may use this machine's tools",
        allow_abbrev=False,
        description="An interactive conversation with the model.",
        epilog=CHAT_EPILOG,
        formatter_class=ParagraphFormatter,
    )
    chat.add_argument(
        "--save", type=Path, metavar="FILE", help="keep the conversation in FILE (JSON, 0600)"
    )
    _common(chat)
    chat.set_defaults(handler=handle_chat)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="M", help="the model to ask (default: the configured)")
    parser.add_argument("--system", metavar="TEXT", help="a system message to start with")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="ask a model server on this machine ([offline] url), not the cloud",
    )
    parser.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="--offline: run tools that change the machine without asking",
    )
    add_control_option(parser)
    add_policy_options(parser)


# --- where a question goes ------------------------------------------------------------

#: Receives the loop's events (``edge.gateway.loop``).
Emit = Callable[[dict[str, Any]], Awaitable[None]]


class Failed(Exception):
    """A question that failed; the message is what to print."""


class DaemonAsker:
    """Questions through the running daemon's ``POST /ask``."""

    def __init__(self, control: str) -> None:
        from .common import control_url

        self.control = control
        self.base = control_url(control)

    async def tools(self) -> list[dict[str, Any]]:
        import httpx

        try:
            async with httpx.AsyncClient(
                base_url=self.base, timeout=DAEMON_CONNECT, trust_env=False
            ) as client:
                reply = await client.get("/tools/openai")
                tools: list[dict[str, Any]] = reply.json().get("tools", [])
                return tools
        except (httpx.HTTPError, ValueError) as exc:
            raise Failed(self._unreachable(exc)) from None

    async def ask(
        self, messages: list[dict[str, Any]], model: str | None, emit: Emit
    ) -> list[dict[str, Any]]:
        """Ask; the messages the question added (the answer, tool calls and results)."""
        import httpx

        body: dict[str, Any] = {"messages": messages}
        if model:
            body["model"] = model
        timeout = httpx.Timeout(None, connect=DAEMON_CONNECT)
        try:
            async with (
                httpx.AsyncClient(base_url=self.base, timeout=timeout, trust_env=False) as client,
                client.stream("POST", "/ask", json=body) as reply,
            ):
                if reply.status_code != 200:
                    text = (await reply.aread()).decode("utf-8", "replace")
                    raise Failed(_error_of(text) or f"the daemon answered HTTP {reply.status_code}")
                added: list[dict[str, Any]] | None = None
                failure: str | None = None
                # Read to its end (the daemon ends it after "done"): leaving httpx's
                # iterator half-way would leave its inner generators to the collector.
                async for line in reply.aiter_lines():
                    if not line.strip() or added is not None or failure is not None:
                        continue
                    event = json.loads(line)
                    if event.get("type") == "error":
                        failure = str(event.get("message"))
                        continue
                    await emit(event)
                    if event.get("type") == "done":
                        added = list(event.get("messages", []))
                if failure is not None:
                    raise Failed(failure)
                if added is not None:
                    return added
        except httpx.HTTPError as exc:
            raise Failed(self._unreachable(exc)) from None
        except ValueError as exc:
            raise Failed(f"the daemon's answer is not an event stream: {exc}") from None
        raise Failed("the daemon's answer stopped before it was done")

    def _unreachable(self, exc: Exception) -> str:
        import httpx

        if isinstance(exc, httpx.ConnectError):
            return (
                f"no edge daemon answers on {self.control}: start it with `edge run` (connected "
                "to the cloud), or use --offline to ask a model server on this machine"
            )
        return f"the edge daemon on {self.control} failed: {exc.__class__.__name__}: {exc}"


class OfflineAsker:
    """Questions to a model server on this machine, the tools run here by ``executor``."""

    def __init__(
        self,
        config: Config,
        executor: Executor,
        confirm: Callable[[str, dict[str, Any]], Awaitable[str | None]],
    ) -> None:
        self.config = config
        self.executor = executor
        self.confirm = confirm

    async def tools(self) -> list[dict[str, Any]]:
        from ..protocol.openai import to_openai_tool

        policy = self.executor.policy
        return [
            to_openai_tool(s.name, s.description, s.input_schema)
            for s in self.executor.registry
            if policy.allows_tool(s.name)
        ]

    async def run_tool(self, name: str, args: dict[str, Any]) -> Mapping[str, Any]:
        from ..protocol import error_result

        if name in CHANGING_TOOLS:
            refusal = await self.confirm(name, args)
            if refusal is not None:
                return error_result(refusal)
        return await self.executor.call(name, args, approved=None)

    async def model(self, client: Any, asked: str | None) -> str | None:
        """The model to ask: ``asked``, the config's, else the server's first."""
        from ..errors import GatewayError

        if asked or self.config.offline_model:
            return asked or self.config.offline_model
        try:
            models: list[str] = await client.models()
        except GatewayError:
            return None  # a server without /models picks its own
        return models[0] if models else None

    async def ask(
        self, messages: list[dict[str, Any]], model: str | None, emit: Emit
    ) -> list[dict[str, Any]]:
        from ..errors import GatewayError
        from ..gateway import GatewayClient, converse
        from ..secret import Secret

        key_env = self.config.offline_key_env
        key = os.environ.get(key_env) if key_env else None
        url = self.config.offline_url
        tools = await self.tools()
        try:
            async with GatewayClient(
                url, token=Secret(key) if key else None, name="the model server"
            ) as client:
                chosen = await self.model(client, model)
                answer = await converse(
                    client, list(messages), run_tool=self.run_tool, emit=emit, tools=tools,
                    model=chosen,
                )  # fmt: skip
        except GatewayError as exc:
            hint = ""
            if "cannot reach" in str(exc):
                hint = " (is it running? set [offline] url in the config to where it listens)"
            raise Failed(f"{exc}{hint}") from None
        return answer.added


# --- what the terminal shows ----------------------------------------------------------

#: Control characters a model could use to drive the terminal (C0 but tab and newline, DEL,
#: C1): shown as "?" on a terminal.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str, *, keep_lines: bool = True) -> str:
    """``text`` with the terminal's control characters replaced (newlines kept, or not)."""
    text = _CONTROL.sub("?", text)
    return text if keep_lines else text.replace("\n", " ").replace("\t", " ")


class Printer:
    """The answer to stdout as it streams; one line per tool call to stderr."""

    def __init__(self, *, stream: bool = True) -> None:
        self.stream = stream
        self.calls: list[dict[str, Any]] = []
        self.content = ""
        self.model: str | None = None
        self.rounds = 0
        self._open_line = False
        self._args: dict[str, str] = {}
        self._color = colour_enabled(sys.stderr)
        self._raw = not sys.stdout.isatty()  # a pipe gets the answer as it is

    async def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "text":
            if self.stream:
                text = str(event["text"])
                sys.stdout.write(text if self._raw else printable(text))
                sys.stdout.flush()
                self._open_line = not text.endswith("\n")
        elif kind == "tool":
            self._args[str(event["id"])] = str(event.get("args", ""))
        elif kind == "tool_done":
            args = self._args.pop(str(event["id"]), "")
            self.calls.append({**event, "args": args})
            if self.stream:
                self._tool_line(event, args)
        elif kind == "done":
            self.content = str(event.get("content") or "")
            self.model = event.get("model")
            self.rounds = int(event.get("rounds") or 0)
            if self.stream:
                self._end_line()

    def _end_line(self) -> None:
        """End the answer's line, if text left one open."""
        if self._open_line:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self._open_line = False

    def _tool_line(self, event: Mapping[str, Any], args: str) -> None:
        self._end_line()
        outcome = "ok" if event.get("ok") else f"error: {event.get('error', '')}"
        line = f"  [{event['name']}] {args}  {float(event.get('seconds', 0)):.2f} s  {outcome}"
        line = printable(line, keep_lines=False)
        if self._color:
            line = f"\x1b[2m{line}\x1b[0m"
        print(line, file=sys.stderr, flush=True)

    def summary(self) -> dict[str, Any]:
        calls = [
            {k: c[k] for k in ("name", "args", "ok", "seconds", "error") if k in c}
            for c in self.calls
        ]
        return {"answer": self.content, "model": self.model, "rounds": self.rounds,
                "toolCalls": calls}  # fmt: skip


# --- the commands ---------------------------------------------------------------------


def handle_ask(args: argparse.Namespace) -> int:
    question = args.question
    if question == "-":
        question = sys.stdin.read()
    if not question.strip():
        return fail("the question is empty")
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": question})
    printer = Printer(stream=args.format == "text")

    async def body(asker: Any) -> int:
        await _interruptible(asker.ask(messages, args.model, printer))
        if args.format == "json":
            print(json.dumps(printer.summary(), ensure_ascii=False))
        return 0

    return _run(args, body, interactive=_has_tty())


def handle_chat(args: argparse.Namespace) -> int:
    if not sys.stdin.isatty():
        return fail("edge chat needs a terminal; use `edge ask -` to ask from a pipe")
    try:
        import readline  # noqa: F401  (line editing and this session's history for input())
    except ImportError:
        pass

    async def body(asker: Any) -> int:
        return await _chat(args, asker)

    import termios

    try:
        saved = termios.tcgetattr(sys.stdin.fileno())
    except termios.error:
        saved = None
    try:
        return _run(args, body, interactive=True)
    finally:
        # readline may be reading in a thread Ctrl-C left behind: its terminal modes
        # (no echo, no line editing) must not outlive edge.
        if saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)


class _Stopped(Exception):
    """Ctrl-C stopped what was running."""


async def _interruptible(work: Awaitable[Any]) -> Any:
    """``work``, cancelled by Ctrl-C (``_Stopped``)."""
    import signal

    import trio

    result: list[Any] = []
    failed: list[Exception] = []
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

            async def run() -> None:
                try:
                    result.append(await work)
                except Exception as exc:  # raised below, outside the nursery's group
                    failed.append(exc)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            nursery.start_soon(run)
    if failed:
        raise failed[0]
    if not result:
        raise _Stopped
    return result[0]


def _run(args: argparse.Namespace, body: Callable[[Any], Awaitable[int]], *,
         interactive: bool) -> int:  # fmt: skip
    """Run ``body`` with the asker for ``args`` (the daemon's, or ``--offline``'s)."""
    import trio

    from .. import exitcodes as exitcode

    async def guarded(asker: Any) -> int:
        try:
            return await body(asker)
        except _Stopped:
            print("\n(stopped)", file=sys.stderr)
            return exitcode.INTERRUPTED
        except Failed as exc:
            return fail(str(exc), exitcode.FAILURE)
        except BaseException as exc:
            if not _broken_pipe(exc):
                raise
            # stdout's reader went away (`edge ask ... | head`): stop quietly, as a
            # filter does; the rest of the answer goes nowhere.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return BROKEN_PIPE

    if not args.offline:
        asker = DaemonAsker(args.control)
        return trio.run(guarded, asker)

    from .common import load
    from .tools import _executor, _with_plugins

    config = load(args, no_control=True)
    executor = _executor(config)
    confirm = _confirmer(args.yes, interactive)
    offline = OfflineAsker(config, executor, confirm)
    code, _ = _with_plugins(config, executor, lambda: guarded(offline))
    return code


#: The exit status when stdout's reader went away (128 + SIGPIPE, as a shell reports it).
BROKEN_PIPE: Final = 141


def _broken_pipe(exc: BaseException) -> bool:
    """Whether ``exc`` is (or is a group of nothing but) a broken pipe."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_broken_pipe(e) for e in exc.exceptions)
    return isinstance(exc, BrokenPipeError)


def _confirmer(
    yes: bool, interactive: bool
) -> Callable[[str, dict[str, Any]], Awaitable[str | None]]:
    """How ``--offline`` asks before a tool that changes the machine runs: the confirmer
    gives ``None`` to run it, else why not (the error result the model reads)."""
    import trio

    from ..gateway import short_args

    lock = trio.Lock()  # one question on the terminal at a time

    async def confirm(name: str, args: dict[str, Any]) -> str | None:
        if yes:
            return None
        if not interactive:
            return (
                f"not run: {name} changes this machine and there is no terminal to confirm "
                "it on (edge ask --yes allows it)"
            )
        async with lock:
            answer = await _ask_tty(f"run {name} {short_args(args)}? [y/N] ")
        if answer.strip().lower() in ("y", "yes"):
            return None
        return f"not run: the user declined to run {name}"

    return confirm


async def _ask_tty(prompt: str) -> str:
    """A line from the terminal itself (stdin may be the question), read in trio so that
    Ctrl-C ends the read; "" when there is no terminal."""
    import trio

    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    line = b""
    async with trio.lowlevel.FdStream(fd) as tty:
        await tty.send_all(printable(prompt, keep_lines=False).encode())
        while b"\n" not in line and len(line) < 4096:
            data = await tty.receive_some(1024)
            if not data:
                break
            line += data
    return line.decode("utf-8", "replace")


def _has_tty() -> bool:
    """Whether this process has a terminal to ask on."""
    try:
        with open("/dev/tty", "rb"):
            return True
    except OSError:
        return False


async def _chat(args: argparse.Namespace, asker: Any) -> int:
    import trio

    from .. import exitcodes as exitcode

    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    model: str | None = args.model
    where = "offline" if args.offline else f"through the daemon on {args.control}"
    print(f"edge chat ({where}); /exit or Ctrl-D to leave, /help for commands", file=sys.stderr)
    while True:
        try:
            line = await _interruptible(
                trio.to_thread.run_sync(input, "you> ", abandon_on_cancel=True)
            )
        except (_Stopped, EOFError):
            print(file=sys.stderr)
            return exitcode.OK
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            command, _, rest = text.partition(" ")
            if command in ("/exit", "/quit"):
                return exitcode.OK
            if command == "/clear":
                del messages[1 if args.system else 0 :]
                print("(conversation cleared)", file=sys.stderr)
            elif command == "/model":
                if rest.strip():
                    model = rest.strip()
                print(f"model: {model or '(the default)'}", file=sys.stderr)
            elif command == "/tools":
                try:
                    tools = await asker.tools()
                except Failed as exc:
                    print(f"edge: error: {exc}", file=sys.stderr)
                    continue
                for tool in tools:
                    function = tool.get("function", {})
                    first = str(function.get("description", "")).split("\n")[0][:70]
                    print(printable(f"  {function.get('name')}  {first}"), file=sys.stderr)
            else:
                print("commands: /tools, /model [NAME], /clear, /exit", file=sys.stderr)
            continue
        asked = [*messages, {"role": "user", "content": text}]
        try:
            added = await _interruptible(asker.ask(asked, model, Printer()))
        except _Stopped:
            print("\n(stopped)", file=sys.stderr)
            continue
        except Failed as exc:
            print(f"edge: error: {exc}", file=sys.stderr)
            continue
        messages[:] = [*asked, *added]
        if args.save is not None:
            try:
                _save(args.save, messages)
            except OSError as exc:
                print(f"edge: error: cannot save to {args.save}: {exc.strerror}", file=sys.stderr)


def _save(path: Path, messages: list[dict[str, Any]]) -> None:
    from ..fs import write_private

    write_private(path, json.dumps({"messages": messages}, ensure_ascii=False, indent=1) + "\n")


def _error_of(text: str) -> str | None:
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:300] or None
    return str(data.get("error")) if isinstance(data, dict) and data.get("error") else None
