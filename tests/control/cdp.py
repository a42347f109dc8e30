"""A small Chrome DevTools Protocol client: a headless Chromium with one page, driven over trio.

``open_chromium(profile_dir)`` starts Debian's ``chromium`` headless in a process
group of its own with ``--remote-debugging-port=0``, reads the port it chose
from ``DevToolsActivePort``, finds the page target (``GET /json``) and connects
to its WebSocket (trio-websocket). On the way out, whatever happened, the whole
process group is killed, the processes reaped and the profile directory removed.

``Page`` sends commands (``send``), waits for events (``wait_event``), evaluates
JavaScript (``evaluate``, ``wait_for``), navigates and takes screenshots.
Protocol reference: https://chromedevtools.github.io/devtools-protocol/
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO, Final

import httpx
import trio
import trio_websocket

from ..conftest import processes_in_group

#: Where Debian (and others) install Chromium.
CANDIDATES: Final = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Seconds Chromium may take to start and open its DevTools port (a bound on failure).
START_WITHIN: Final = 60.0
#: Seconds for one protocol command's answer (a bound on failure).
COMMAND_WITHIN: Final = 30.0
#: The largest protocol message taken (a screenshot in base64).
MAX_MESSAGE: Final = 64 * 1024 * 1024


class CdpError(Exception):
    """A protocol command failed, or a page's script threw."""


def find_chromium() -> str | None:
    """The path of a Chromium or Chrome on PATH, or ``None``."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_command(binary: str, profile_dir: Path) -> list[str]:
    """The command line: headless, no sandbox (root in CI), nothing from the network."""
    return [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--mute-audio",
        "--hide-scrollbars",
        "--window-size=1280,1000",
        f"--user-data-dir={profile_dir}",
        "--remote-debugging-port=0",
        "about:blank",
    ]


class Page:
    """One page target over its DevTools WebSocket."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._answers: dict[int, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._changed = trio.Event()

    async def read(self) -> None:
        """Take every message off the socket until it closes (run as a task)."""
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            while True:
                message = json.loads(await self._ws.get_message())
                if "id" in message:
                    self._answers[message["id"]] = message
                else:
                    self._events.append(message)
                self._changed.set()
                self._changed = trio.Event()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result.

        Raises:
            CdpError: the browser answered with an error.
        """
        command_id = next(self._ids)
        message = {"id": command_id, "method": method, "params": params}
        await self._ws.send_message(json.dumps(message))
        with trio.fail_after(COMMAND_WITHIN):
            while command_id not in self._answers:
                await self._changed.wait()
        answer = self._answers.pop(command_id)
        if "error" in answer:
            raise CdpError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def wait_event(self, method: str, after: int = 0) -> dict[str, Any]:
        """The first event ``method`` among those received from index ``after`` on."""
        while True:
            for event in self._events[after:]:
                if event.get("method") == method:
                    return event
            await self._changed.wait()

    def mark(self) -> int:
        """An index for ``wait_event(after=...)``: events from now on."""
        return len(self._events)

    async def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` in the page (promises awaited).

        Raises:
            CdpError: the expression threw.
        """
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CdpError(f"{expression!r} threw: {text}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, poll: float = 0.05) -> Any:
        """Evaluate ``expression`` until it is truthy; its value (bound it with fail_after)."""
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            await trio.sleep(poll)

    async def navigate(self, url: str) -> None:
        """Go to ``url`` and wait for its load event."""
        await self.send("Page.enable")
        mark = self.mark()
        answer = await self.send("Page.navigate", url=url)
        if answer.get("errorText"):
            raise CdpError(f"navigating to {url}: {answer['errorText']}")
        with trio.fail_after(COMMAND_WITHIN):  # a bound on failure: a page that never loads
            await self.wait_event("Page.loadEventFired", after=mark)

    async def screenshot(self, path: Path) -> int:
        """Save a PNG of the whole page to ``path``; its size in bytes."""
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
        shot = await self.send(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={
                "x": 0,
                "y": 0,
                "width": max(1, size.get("width", 1280)),
                "height": max(1, size.get("height", 1000)),
                "scale": 1,
            },
        )
        data = base64.b64decode(shot["data"])
        await trio.Path(path.parent).mkdir(parents=True, exist_ok=True)
        await trio.Path(path).write_bytes(data)
        return len(data)


def _open_log(path: Path | None) -> BinaryIO:
    """Where Chromium's output goes: ``path`` (appended), or nowhere."""
    return open(path or os.devnull, "ab")  # the caller closes it


async def _devtools_port(profile_dir: Path, proc: trio.Process) -> int:
    """The port Chromium wrote into ``DevToolsActivePort``; fails if Chromium exits first."""
    port_file = profile_dir / "DevToolsActivePort"
    with trio.fail_after(START_WITHIN):
        while True:
            if proc.returncode is not None:
                raise CdpError(f"chromium exited with {proc.returncode} before opening DevTools")
            try:
                lines = port_file.read_text().split()
            except FileNotFoundError:
                lines = []
            if lines and lines[0].isdigit():
                return int(lines[0])
            await trio.sleep(0.05)


async def _page_socket_url(port: int) -> str:
    """The WebSocket URL of the first page target (``GET /json`` on the DevTools port)."""
    async with httpx.AsyncClient(timeout=COMMAND_WITHIN) as client:
        with trio.fail_after(START_WITHIN):
            while True:
                targets = (await client.get(f"http://127.0.0.1:{port}/json")).json()
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    url: str = pages[0]["webSocketDebuggerUrl"]
                    return url
                await trio.sleep(0.05)


def _reap_group(pgid: int, leader: int) -> None:
    """Reap the group's processes re-parented to this process (a child subreaper), by pid.

    Never ``waitpid(-1)``: trio waits on the leader itself.
    """
    for pid in processes_in_group(pgid) + _zombies_in_group(pgid):
        if pid != leader:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)


def _zombies_in_group(pgid: int) -> list[int]:
    """Pids of this process's zombie children in process group ``pgid``."""
    zombies = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] == "Z" and int(fields[1]) == me and int(fields[2]) == pgid:
            zombies.append(int(entry))
    return zombies


async def _stop(proc: trio.Process) -> None:
    """Kill Chromium's whole process group and wait until none of it is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with trio.fail_after(START_WITHIN):
        await proc.wait()
        while True:
            _reap_group(proc.pid, proc.pid)
            if not processes_in_group(proc.pid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await trio.sleep(0.05)


@asynccontextmanager
async def open_chromium(
    profile_dir: Path, *, binary: str | None = None, log_file: Path | None = None
) -> AsyncIterator[Page]:
    """A headless Chromium showing ``about:blank``, as a ``Page``; killed and its profile
    removed when the block ends, however it ends.

    Raises:
        CdpError: no Chromium, or it did not start.
    """
    binary = binary or find_chromium()
    if binary is None:
        raise CdpError("no chromium on PATH")
    await trio.Path(profile_dir).mkdir(parents=True, exist_ok=True)
    log = _open_log(log_file)
    proc = await trio.lowlevel.open_process(
        chromium_command(binary, profile_dir),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        port = await _devtools_port(profile_dir, proc)
        url = await _page_socket_url(port)
        async with trio_websocket.open_websocket_url(url, max_message_size=MAX_MESSAGE) as ws:
            page = Page(ws)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(page.read)
                yield page
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await _stop(proc)
        log.close()
        shutil.rmtree(profile_dir, ignore_errors=True)
