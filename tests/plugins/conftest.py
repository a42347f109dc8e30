"""Plugin test fixtures: plugin directories written into tmp_path, and a minimal host.

``write_plugin`` writes a plugin directory (an entry module and any other files).
``open_runner`` starts the real runner (``python -m edge.plugins.runner``) in a
subprocess against ``TestHost``: a Unix listener and one ``Channel``, which
answers ``hello`` (checking the token), ``register`` and ``ready`` and the
runner's own requests, and records everything else the runner sends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from edge.plugins.ipc import Channel
from edge.protocol.rpc import Envelope, RpcError, event, request, response

#: Seconds a runner may take to start and register (a bound on failure, not a speed).
STARTUP: Final = 60.0
#: Seconds a test waits for one answer or event that should come at once.
PROMPT: Final = 10.0
#: The session token the test host expects.
TOKEN: Final = "one-time-token-for-tests"


def write_plugin(
    parent: Path, name: str, code: str, *, entry: str = "main", files: dict[str, str] | None = None
) -> Path:
    """A plugin directory ``parent/name`` with ``code`` as its entry module and ``files``."""
    directory = parent / name
    directory.mkdir(parents=True)
    module = directory / (entry.replace(".", "/") + ".py")
    module.parent.mkdir(parents=True, exist_ok=True)
    module.write_text(textwrap.dedent(code), encoding="utf-8")
    for rel, text in (files or {}).items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


def plugin_spec(directory: Path, entry: str = "main", config: dict[str, Any] | None = None,
                capabilities: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """What the hello answer says about one plugin."""
    return {
        "path": str(directory),
        "entry": entry,
        "config": config or {},
        "capabilities": capabilities if capabilities is not None else ["log", "config"],
    }


Responder = Callable[[Envelope], Any]


class TestHost:
    """The host end of one runner connection, as small as the tests need."""

    __test__ = False

    def __init__(self, channel: Channel, proc: trio.Process, plugins: dict[str, Any]) -> None:
        self.channel = channel
        self.proc = proc
        self.plugins = plugins
        self.stderr = ""
        self.hello: dict[str, Any] | None = None
        self.registered: dict[str, dict[str, Any]] = {}
        self.failed: dict[str, str] = {}
        self.events: list[Envelope] = []
        self.requests: list[Envelope] = []
        self.ready = trio.Event()
        self.closed = trio.Event()
        #: Answers to the runner's requests by method: a payload, or an ``RpcError``.
        self.answers: dict[str, Responder] = {}
        self.refuse_hello: str | None = None
        self._next_id = 1000
        self._pending: dict[int, trio.MemorySendChannel[Envelope]] = {}
        self._receivers: dict[int, trio.MemoryReceiveChannel[Envelope]] = {}
        self._changed = trio.Event()
        self._send_lock = trio.StrictFIFOLock()

    async def send(self, envelope: Envelope) -> None:
        async with self._send_lock:
            await self.channel.send(envelope)

    async def read(self) -> None:
        try:
            while True:
                envelope = await self.channel.receive()
                await self._handle(envelope)
                self._changed.set()
                self._changed = trio.Event()
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.closed.set()
            self._changed.set()

    async def _handle(self, envelope: Envelope) -> None:
        if envelope.kind == "response":
            waiter = self._pending.pop(envelope.id, None)
            if waiter is not None:
                waiter.send_nowait(envelope)
        elif envelope.kind == "event":
            self.events.append(envelope)
            if envelope.method == "failed":
                self.failed[envelope.plugin or ""] = envelope.payload["message"]
        elif envelope.method == "hello":
            self.hello = envelope.payload
            if self.refuse_hello is not None:
                refusal = RpcError("bad_request", self.refuse_hello)
                await self.send(response(envelope, error=refusal))
            elif envelope.payload.get("token") != TOKEN:
                await self.send(response(envelope, error=RpcError("bad_request", "wrong token")))
            else:
                answer = {"protocol": 1, "host": "test", "plugins": self.plugins}
                await self.send(response(envelope, answer))
        elif envelope.method == "register":
            self.registered[envelope.plugin or ""] = envelope.payload
            await self.send(response(envelope, {}))
        elif envelope.method == "ready":
            await self.send(response(envelope, {}))
            self.ready.set()
        else:
            self.requests.append(envelope)
            answer = self.answers.get(envelope.method)
            result = answer(envelope) if answer is not None else RpcError("unknown_method", "?")
            if isinstance(result, RpcError):
                await self.send(response(envelope, error=result))
            else:
                await self.send(response(envelope, result))

    async def wait_for(self, predicate: Callable[[], Any], within: float = PROMPT) -> Any:
        """Wait until ``predicate()`` is true (re-checked after each envelope)."""
        with trio.fail_after(within):
            while not (value := predicate()):
                if self.closed.is_set():
                    raise AssertionError(f"the runner hung up; stderr:\n{self.stderr}")
                await self._changed.wait()
        return value

    async def request(
        self, method: str, payload: Any = None, *, plugin: str | None = None,
        deadline: float | None = None,
    ) -> Envelope:  # fmt: skip
        """Send a request and return the runner's response (within PROMPT)."""
        request_id = await self.start_request(method, payload, plugin=plugin, deadline=deadline)
        return await self.response(request_id)

    async def start_request(
        self, method: str, payload: Any = None, *, plugin: str | None = None,
        deadline: float | None = None,
    ) -> int:  # fmt: skip
        """Send a request; its id, for ``response``."""
        self._next_id += 1
        send, receive = trio.open_memory_channel[Envelope](1)
        self._pending[self._next_id] = send
        self._receivers[self._next_id] = receive
        envelope = request(self._next_id, method, payload, plugin=plugin, deadline=deadline)
        await self.send(envelope)
        return self._next_id

    async def response(self, request_id: int, within: float = PROMPT) -> Envelope:
        with trio.fail_after(within):
            return await self._receivers.pop(request_id).receive()

    async def call(
        self, plugin: str, tool: str, args: dict[str, Any] | None = None, **kw: Any
    ) -> Envelope:
        return await self.request(
            "call", {"tool": tool, "args": args or {}, "call_id": f"c-{tool}"}, plugin=plugin, **kw
        )

    async def start_call(self, plugin: str, tool: str, args: dict[str, Any] | None = None) -> int:
        payload = {"tool": tool, "args": args or {}, "call_id": f"c-{tool}"}
        return await self.start_request("call", payload, plugin=plugin)

    async def event(self, method: str, payload: Any, plugin: str | None = None) -> None:
        await self.send(event(method, payload, plugin=plugin))

    async def wait_exit(self, within: float = PROMPT) -> int:
        with trio.fail_after(within):
            return await self.proc.wait()


def _listen(path: str) -> trio.SocketListener:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        sock._sock.bind(path)  # a blocking bind of a path is instantaneous
        sock.listen(1)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


@asynccontextmanager
async def open_runner(
    workdir: Path, plugins: dict[str, Any], *, token: str = TOKEN, wait_ready: bool = True,
    refuse_hello: str | None = None, answers: dict[str, Responder] | None = None,
) -> AsyncIterator[TestHost]:  # fmt: skip
    """The real runner in a subprocess, connected to a ``TestHost`` serving ``plugins``.

    The runner is killed on the way out if it is still running.
    """
    # A short directory: a Unix socket path must stay under 108 bytes.
    sockdir = tempfile.mkdtemp(prefix="edge-rt-")
    path = os.path.join(sockdir, "runner.sock")
    listener = _listen(path)
    env = {
        **os.environ,
        "EDGE_RUNNER_SOCKET": path,
        "EDGE_RUNNER_TOKEN": token,
        "EDGE_RUNNER_NAME": "test-runner",
    }
    proc: trio.Process | None = None
    try:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "edge.plugins.runner"], env=env, cwd=str(workdir),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        async with trio.open_nursery() as nursery:
            with trio.fail_after(STARTUP):
                stream = await listener.accept()
            host = TestHost(Channel(stream), proc, plugins)
            host.refuse_hello = refuse_hello
            host.answers = answers or {}
            nursery.start_soon(_collect, host)
            nursery.start_soon(host.read)
            if wait_ready:
                await host.wait_for(host.ready.is_set, within=STARTUP)
            try:
                yield host
            finally:
                await stream.aclose()
                nursery.cancel_scope.cancel()
    finally:
        await listener.aclose()
        shutil.rmtree(sockdir, ignore_errors=True)
        if proc is not None:
            with trio.CancelScope(shield=True):
                if proc.returncode is None:
                    with trio.move_on_after(PROMPT):
                        # Give a runner that was told to go a moment, then make sure.
                        await proc.wait()
                if proc.returncode is None:
                    os.killpg(proc.pid, 9)
                    await proc.wait()


async def _collect(host: TestHost) -> None:
    assert host.proc.stderr is not None
    async for chunk in host.proc.stderr:
        host.stderr += chunk.decode(errors="replace")


@pytest.fixture
def plugins_dir(tmp_path: Path) -> Path:
    """Where a test writes its plugin directories."""
    directory = tmp_path / "plugins"
    directory.mkdir()
    return directory
