"""``edge agents list|ask|token``: this edge as an A2A agent, the cloud's other agents, tasks.

``ask`` is an A2A client of the running daemon's own endpoint (``POST /a2a``,
``SendStreamingMessage``): it hands it a task that runs one tool, here or on a
remote agent the cloud knows, prints its progress lines as they come and then
its output. Ctrl-C cancels the task (``CancelTask``), as leaving does not.
The A2A bearer token it sends is the one in this user's state directory,
where the daemon keeps it, and only ever to a loopback address.

Only the standard library is used (``http.client``): the command starts fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any, Final

from .common import (
    ControlUnreachable,
    ParagraphFormatter,
    add_control_option,
    control_get,
    fail,
    plural,
    progress,
    seconds,
)

if TYPE_CHECKING:
    import http.client
    from pathlib import Path

#: Seconds to connect to the daemon and have its first answer.
CONNECT_TIMEOUT: Final = 10.0
#: Seconds ``ask`` waits past the task's deadline before it gives up on the daemon.
TIMEOUT_MARGIN: Final = 30.0
#: Seconds Ctrl-C waits for the task to be canceled.
CANCEL_WAIT: Final = 5.0
#: The A2A states a task ends in.
FINAL_STATES: Final = frozenset(
    {"TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED", "TASK_STATE_REJECTED"}
)
#: Finished tasks ``list`` shows.
RECENT: Final = 10

#: Shown after the options in this command's --help.
EPILOG: Final = """\
examples:
  edge agents list                                this edge, the cloud's agents, tasks
  edge agents ask local file_read --args '{"path": "README.md"}'
  edge agents ask build-box terminal --args '{"command": "make test"}' --timeout 600
  edge agents token                               the A2A bearer token (made if missing)

A local A2A client finds the agent card at
http://127.0.0.1:8660/.well-known/agent-card.json and sends
"Authorization: Bearer TOKEN" to the endpoint it names. A message runs one
tool: a data part {"tool": NAME, "args": {...}}, with "agent": ID to hand it
to a remote agent.
"""


def add_parser(subparsers: Any) -> None:
    agents = subparsers.add_parser(
        "agents",
        help="this edge as an A2A agent: tasks, the cloud's other agents, the token",
        description="This edge as an agent: its A2A endpoint on the control API, the other "
        "agents the cloud knows, and the tasks they hand each other.",
        epilog=EPILOG,
        formatter_class=ParagraphFormatter,
    )
    actions = agents.add_subparsers(dest="agents_command", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list", help="this edge, the remote agents, tasks in flight and the last finished"
    )
    listing.add_argument("--json", action="store_true", help="print the raw JSON")
    add_control_option(listing)
    listing.set_defaults(handler=handle_list)

    ask = actions.add_parser(
        "ask", help="run one tool as a task, here (local) or on a remote agent"
    )
    ask.add_argument("agent", metavar="AGENT", help='"local" (this edge), or an agent id or name')
    ask.add_argument("tool", metavar="TOOL", help="the tool to run")
    ask.add_argument(
        "--args", default="{}", metavar="JSON", help="the tool's arguments, a JSON object"
    )
    ask.add_argument(
        "--timeout",
        type=ask_timeout,
        metavar="S",
        help="the task's deadline, seconds from now (a remote agent's task: 60 unless given, "
        "at most 3600)",
    )
    ask.add_argument("--json", action="store_true", help="print the finished task as A2A JSON")
    add_control_option(ask)
    ask.set_defaults(handler=handle_ask)

    token = actions.add_parser("token", help="print the A2A bearer token (made if there is none)")
    token.add_argument("--path", action="store_true", help="print the token file's path instead")
    token.set_defaults(handler=handle_token)


def ask_timeout(text: str) -> float:
    """``type=`` for ``ask --timeout``: seconds above 0, at most what the daemon takes
    (``edge.agents.a2a.MAX_TIMEOUT``; a remote agent's bound is checked with the agent)."""
    from ..agents.a2a import MAX_TIMEOUT

    value = seconds(text)
    if value > MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_TIMEOUT:g} seconds, not {text}")
    return value


# --- token -------------------------------------------------------------------------------


def _state_dir(args: argparse.Namespace) -> Path | None:
    """The state directory the daemon keeps its A2A token in: this user's, as ``edge run``
    has it (read without the rest of the config, whose loading costs half a second)."""
    from ..config import default_paths

    return default_paths()[2]


def handle_token(args: argparse.Namespace) -> int:
    from ..agents.token import load_token, read_token, token_file

    state_dir = _state_dir(args)
    if state_dir is None:
        return fail("no state directory is configured: edge keeps no A2A token", code=1)
    path = token_file(state_dir)
    if args.path:
        print(path)
        return 0
    made = read_token(state_dir) is None
    try:
        token = load_token(state_dir)
    except OSError as exc:
        return fail(f"cannot keep the A2A token in {path}: {exc.strerror or exc}", code=1)
    print(token)
    if made:
        progress(
            f"a new A2A token, kept in {path} (mode 0600); a running daemon takes it "
            "at its next start"
        )
    return 0


# --- list --------------------------------------------------------------------------------


def _no_daemon(exc: ControlUnreachable) -> int:
    return fail(f"{exc}; start one with: edge run", code=1)


def _age(seconds_ago: float) -> str:
    from .tunnel import for_how_long

    return for_how_long(seconds_ago)


def list_lines(info: dict[str, Any], now: float) -> list[str]:
    """What ``edge agents list`` prints for a ``GET /agents`` answer."""
    lines = [f"this edge: {info.get('name')} (agent {info.get('agentId')}), as AGENT: local"]
    peers = info.get("peers") or []
    if peers:
        lines.append(f"remote agents the cloud named ({len(peers)}):")
        for peer in peers:
            host = f" on {peer['hostname']}" if peer.get("hostname") else ""
            skills = peer.get("skills") or []
            shown = ", ".join(skills[:6]) + (", ..." if len(skills) > 6 else "")
            lines.append(
                f"  {peer.get('id')}  {peer.get('name')}{host}: "
                f"{plural(len(skills), 'skill')}{': ' + shown if skills else ''}"
            )
    else:
        lines.append("remote agents: none named by the cloud (is the tunnel connected?)")
    tasks = info.get("tasks") or []
    running = [t for t in tasks if t.get("state") in ("submitted", "working")]
    finished = [t for t in tasks if t.get("state") not in ("submitted", "working")][:RECENT]
    lines.append(f"tasks in flight: {len(running) or 'none'}")
    lines.extend(_task_line(t, now) for t in running)
    if finished:
        lines.append("recent tasks:")
        lines.extend(_task_line(t, now) for t in finished)
    return lines


def _task_line(task: dict[str, Any], now: float) -> str:
    age = _age(now - float(task.get("createdAt") or now))
    where = f" on {task['agent']}" if task.get("agent") else ""
    why = f": {task['reason']}" if task.get("reason") else ""
    return (
        f"  {task.get('id')}  {task.get('skill')}{where}  {task.get('state')}  {age} ago  "
        f"(from {task.get('origin')}){why}"
    )


def handle_list(args: argparse.Namespace) -> int:
    try:
        (info,) = control_get(args.control, "/agents", timeout=5.0)
    except ControlUnreachable as exc:
        return _no_daemon(exc)
    except ValueError:
        info = None
    if not isinstance(info, dict) or "agentId" not in info:
        return fail(f"what answers on {args.control} is not an edge daemon with agents", code=1)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("\n".join(list_lines(info, time.time())))
    return 0


# --- ask ---------------------------------------------------------------------------------


class _Failed(Exception):
    """The task could not be asked for or followed; the message says why (exit 1)."""


class _A2A:
    """JSON-RPC requests to the daemon's A2A endpoint, the bearer token with each."""

    def __init__(self, control: str, token: str) -> None:
        from .common import parse_hostport

        self.control = control
        self.host, self.port = parse_hostport(control)
        self._token = token
        self._ids = 0

    def __repr__(self) -> str:
        return f"_A2A({self.control!r}, token='***')"

    def _headers(self, accept: str) -> dict[str, str]:
        return {
            "authorization": f"Bearer {self._token}",
            "a2a-version": "1.0",
            "accept": accept,
            "content-type": "application/json",
        }

    def _body(self, method: str, params: dict[str, Any]) -> bytes:
        self._ids += 1
        call = {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params}
        return json.dumps(call).encode()

    def open(
        self, method: str, params: dict[str, Any], *, stream: bool = False
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send one call; the connection and the response (its body not read yet)."""
        import http.client

        from ..agents.a2a import A2A_PATH

        conn = http.client.HTTPConnection(self.host, self.port, timeout=CONNECT_TIMEOUT)
        accept = "text/event-stream" if stream else "application/json"
        try:
            conn.request("POST", A2A_PATH, self._body(method, params), self._headers(accept))
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ControlUnreachable(
                f"no edge daemon answers on {self.control} ({exc.__class__.__name__})"
            ) from exc
        if response.status == 401:
            conn.close()
            raise _Failed(
                "the daemon refused the A2A token: is it run by another user, or with another "
                "state directory? edge agents token --path shows where this one is"
            )
        if response.status == 404:
            conn.close()
            raise _Failed(f"the daemon on {self.control} has no A2A endpoint")
        return conn, response

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """One call's result (``_Failed`` with the daemon's message for an error)."""
        import http.client

        conn, response = self.open(method, params)
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ControlUnreachable(f"the daemon on {self.control} went away") from exc
        finally:
            conn.close()
        return _result(_decode(raw))


def _decode(raw: bytes | str) -> dict[str, Any]:
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise _Failed("the daemon's answer is not JSON-RPC")
    return answer


def _result(answer: dict[str, Any]) -> Any:
    error = answer.get("error")
    if isinstance(error, dict):
        raise _Failed(str(error.get("message") or error))
    return answer.get("result")


def _epoch(text: Any) -> float | None:
    """An RFC 3339 time (the task's ``metadata.deadline``) as epoch seconds, if it is one."""
    from datetime import UTC, datetime

    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _text(message: Any) -> str | None:
    """The text of an A2A message's text parts."""
    if not isinstance(message, dict):
        return None
    texts = [p["text"] for p in message.get("parts") or [] if isinstance(p, dict) and "text" in p]
    return "\n".join(texts) if texts else None


class _Follow:
    """What the stream told of the task so far."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.task_id: str | None = None
        #: The context the task is asked in (a new one per ``ask``): how Ctrl-C finds the
        #: task when its id has not come yet.
        self.context_id = ""
        self.state = "TASK_STATE_SUBMITTED"
        self.reason: str | None = None
        self.output: list[str] = []
        #: The task's deadline (epoch seconds), once the task has told it.
        self.deadline: float | None = None

    def wait_left(self, now: float) -> float | None:
        """Seconds to wait for the next event: until the deadline and a margin (at least
        the margin; ``None``: the task has none, and its tool's own timeout ends it)."""
        if self.deadline is None:
            return None
        return max(self.deadline - now, 0.0) + TIMEOUT_MARGIN

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def take(self, result: dict[str, Any]) -> None:
        """One ``StreamResponse``: remember it, print a progress line for a status."""
        if "task" in result:
            task = result["task"]
            self.task_id = task.get("id")
            self.deadline = _epoch((task.get("metadata") or {}).get("deadline"))
            self._status(task.get("status") or {}, first=True)
            for artifact in task.get("artifacts") or []:
                self._artifact(artifact)
        elif "statusUpdate" in result:
            self._status(result["statusUpdate"].get("status") or {})
        elif "artifactUpdate" in result:
            self._artifact(result["artifactUpdate"].get("artifact") or {})

    def _status(self, status: dict[str, Any], first: bool = False) -> None:
        state = status.get("state") or self.state
        text = _text(status.get("message"))
        changed = state != self.state
        self.state = state
        if self.final:
            self.reason = text
            return
        label = state.removeprefix("TASK_STATE_").lower()
        if first:
            progress(f"task {self.task_id}: {self.tool} {label}")
        if text:
            progress(f"  {text}")
        elif changed and not first:
            progress(f"  {label}")

    def _artifact(self, artifact: dict[str, Any]) -> None:
        text = _text(artifact)
        if text is not None:
            self.output.append(text)


def handle_ask(args: argparse.Namespace) -> int:
    from ..agents.token import read_token
    from ..config import is_loopback
    from .common import parse_hostport

    try:
        tool_args = json.loads(args.args)
    except ValueError as exc:
        return fail(f"--args is not JSON: {exc}")
    if not isinstance(tool_args, dict):
        return fail('--args must be a JSON object, such as {"path": "README.md"}')
    from ..agents.a2a import MAX_REMOTE_TIMEOUT

    if args.agent != "local" and args.timeout is not None and args.timeout > MAX_REMOTE_TIMEOUT:
        return fail(
            f"argument --timeout: a remote agent's task takes at most {MAX_REMOTE_TIMEOUT:g} "
            f"seconds, not {args.timeout:g}"
        )
    if not is_loopback(parse_hostport(args.control)[0]):
        return fail("edge agents ask talks to this machine's daemon only (a loopback --control)")
    token = read_token(_state_dir(args)) or ""
    client = _A2A(args.control, token)
    follow = _Follow(args.tool)
    try:
        return _ask(client, follow, args, tool_args)
    except ControlUnreachable as exc:
        return _no_daemon(exc)
    except _Failed as exc:
        return fail(str(exc), code=1)
    except KeyboardInterrupt:
        return _cancel(client, follow)


def _ask(client: _A2A, follow: _Follow, args: argparse.Namespace, tool_args: dict[str, Any]) -> int:
    import http.client
    import secrets

    from ..protocol.sse import SseDecoder, SseError

    named: dict[str, Any] = {"tool": args.tool, "args": tool_args}
    if args.agent != "local":
        named["agent"] = args.agent
    if args.timeout is not None:
        named["timeout"] = args.timeout
    follow.context_id = f"cli-{secrets.token_hex(8)}"
    message = {
        "messageId": f"cli-{secrets.token_hex(8)}",
        "contextId": follow.context_id,
        "role": "ROLE_USER",
        "parts": [{"data": named}],
    }
    conn, response = client.open("SendStreamingMessage", {"message": message}, stream=True)
    try:
        if "text/event-stream" not in response.getheader("content-type", ""):
            _result(_decode(response.read()))  # an error answer: raises
            raise _Failed("the daemon answered without a stream")
        decoder = SseDecoder()
        while not follow.final:
            if conn.sock is not None:  # the events come as the task goes: until its deadline
                conn.sock.settimeout(follow.wait_left(time.time()))
            line = response.readline()
            if not line:
                break
            for event in decoder.feed(line):
                answer = _decode(event.data)
                follow.take(_result(answer))
    except TimeoutError:
        raise _Failed(
            f"the task {follow.task_id} did not end by its deadline (and "
            f"{TIMEOUT_MARGIN:g} s more): the daemon stopped telling"
        ) from None
    except (OSError, http.client.HTTPException, SseError) as exc:
        raise _Failed(f"the daemon's stream broke: {exc}") from None
    finally:
        conn.close()
    if not follow.final:
        raise _Failed("the daemon's stream ended before the task did")
    return _finish(client, follow, args.json)


def _finish(client: _A2A, follow: _Follow, as_json: bool) -> int:
    if as_json and follow.task_id is not None:
        print(json.dumps(client.call("GetTask", {"id": follow.task_id}), indent=2))
        return 0 if follow.state == "TASK_STATE_COMPLETED" else 1
    if follow.state == "TASK_STATE_COMPLETED":
        output = "\n".join(follow.output)
        print(output, end="" if output.endswith("\n") else "\n")
        return 0
    what = follow.state.removeprefix("TASK_STATE_").lower()
    return fail(f"the task {what}: {follow.reason or 'no reason given'}", code=1)


def _cancel(client: _A2A, follow: _Follow) -> int:
    """Ctrl-C: cancel the task (found by its context when its id has not come yet), wait
    briefly for its canceled state; exit 130."""
    ids = [follow.task_id] if follow.task_id else []
    try:
        if not ids and follow.context_id:
            page = client.call("ListTasks", {"contextId": follow.context_id})
            ids = [t["id"] for t in page.get("tasks") or [] if isinstance(t, dict)]
        deadline = time.monotonic() + CANCEL_WAIT
        for task_id in ids:
            try:
                task = client.call("CancelTask", {"id": task_id})
            except _Failed:  # ended meanwhile
                task = client.call("GetTask", {"id": task_id})
            while (task.get("status") or {}).get("state") not in FINAL_STATES:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
                task = client.call("GetTask", {"id": task_id})
    except (ControlUnreachable, _Failed) as exc:
        print(f"edge: could not cancel the task: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    print("canceled", file=sys.stderr)
    return 130
