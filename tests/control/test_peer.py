"""Only this user's processes may use the control API: the peer's uid, found by the kernel.

Real loopback connections (IPv4, IPv6 and an IPv6 socket to an IPv4-mapped
address), looked up both ways (netlink socket diagnostics and /proc/net/tcp);
fixtures of /proc/net/tcp text for the parser; the guard in front of a real
daemon, called by a process of another uid (``setpriv`` to uid 65534, which
needs root: it skips otherwise, saying so, and under ``CI`` fails when
``setpriv`` or an interpreter that uid may run is missing).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, NoReturn

import httpx
import pytest
import trio

from edge.control.guard import (
    PEER_CHECKS_UNAVAILABLE,
    PEER_CLOSED,
    PEER_REFUSED,
    BrowserGuard,
    Message,
    Scope,
)
from edge.control.peer import (
    diag_lookup,
    endpoint_hex,
    find_owner,
    proc_lookup,
    working_lookup,
)
from edge.daemon import Daemon
from edge.nurseries.tunnel import TunnelStatus

from ..conftest import fast_tunnel, make_config

#: Seconds for a request or a short subprocess, on a busy machine (a bound on failure).
SOON: Final = 30.0
NOBODY: Final = 65534
LINUX: Final = sys.platform.startswith("linux")
LITTLE_ENDIAN: Final = sys.byteorder == "little"
LOOKUPS: Final = (diag_lookup, proc_lookup)

linux_only = pytest.mark.skipif(not LINUX, reason="peer lookups need Linux")


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


#: (listener family and host, client family and host to connect to).
FAMILIES: Final = [
    pytest.param((socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "127.0.0.1"), id="ipv4"),
    pytest.param(
        (socket.AF_INET6, "::1"), (socket.AF_INET6, "::1"), id="ipv6",
        marks=pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback here"),
    ),
    pytest.param(
        (socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::ffff:127.0.0.1"), id="v4-mapped",
        marks=pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 here"),
    ),
]  # fmt: skip


@contextlib.contextmanager
def connection(
    listen: tuple[int, str], connect: tuple[int, str]
) -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    """A real loopback connection: (listener, client, accepted), all closed on exit."""
    with socket.socket(listen[0]) as listener:
        listener.bind((listen[1], 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        with socket.socket(connect[0]) as client:
            client.connect((connect[1], port))
            accepted, _ = listener.accept()
            with accepted:
                yield listener, client, accepted


# -- the kernel's notation and the parser ----------------------------------------------


@pytest.mark.skipif(not LITTLE_ENDIAN, reason="the fixtures are a little-endian kernel's")
def test_addresses_as_the_kernel_prints_them() -> None:
    assert endpoint_hex("127.0.0.1", 8080, 4) == "0100007F:1F90"
    assert endpoint_hex("10.1.2.3", 1, 4) == "0302010A:0001"
    assert endpoint_hex("::ffff:127.0.0.1", 8080, 4) == "0100007F:1F90"
    assert endpoint_hex("::1", 8080, 4) is None
    assert endpoint_hex("::1", 8660, 6) == "00000000000000000000000001000000:21D4"
    mapped = "0000000000000000FFFF00000100007F:21D4"
    assert endpoint_hex("127.0.0.1", 8660, 6) == mapped
    assert endpoint_hex("::ffff:127.0.0.1", 8660, 6) == mapped
    assert endpoint_hex("2001:db8::1", 443, 6) == "B80D0120000000000000000001000000:01BB"


HEADER_4: Final = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode\n"
)
#: Lines as a kernel printed them: a listener on 127.0.0.1:8660, a connection to it from
#: port 41000 (its two ends: the client's of uid 1000, the server's of uid 0), and a client
#: at port 41001 its owner closed (FIN_WAIT2 as a time-wait entry: uid 0, inode 0).
TCP4: Final = HEADER_4 + (
    "   0: 0100007F:21D4 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0"
    "        0 630 1 000000002e657a71 100 0 0 10 0\n"
    "   1: 0100007F:A028 0100007F:21D4 01 00000000:00000000 00:00000000 00000000  1000"
    "        0 970518 1 0000000059e7e13f 20 4 30 10 -1\n"
    "   2: 0100007F:21D4 0100007F:A028 01 00000000:00000000 00:00000000 00000000     0"
    "        0 970519 1 00000000ab12cd34 20 4 30 10 -1\n"
    "   3: 0100007F:A029 0100007F:21D4 05 00000000:00000000 03:000008CE 00000000     0"
    "        0 0 3 0000000059e7e13f\n"
)
#: An IPv6 socket of uid 1001 connected from port 41002 to the IPv4-mapped 127.0.0.1:8660.
TCP6: Final = (
    "  sl  local_address                         remote_address                        st "
    "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 0000000000000000FFFF00000100007F:A02A 0000000000000000FFFF00000100007F:21D4 01 "
    "00000000:00000000 00:00000000 00000000  1001        0 973556 2 000000004c6bdcad 20 0 0 10 -1\n"
)


def test_the_parser_finds_the_open_entry_and_skips_closed_ones() -> None:
    table = TCP4.encode()
    assert find_owner(table, "0100007F:A028", "0100007F:21D4") == 1000
    assert find_owner(table, "0100007F:21D4", "0100007F:A028") == 0  # the server's end
    assert find_owner(table, "0100007F:A029", "0100007F:21D4") is None  # closed: uid 0 shown
    assert find_owner(table, "0100007F:A02A", "0100007F:21D4") is None  # not there
    assert find_owner(table, "0100007F:21D4", "00000000:0000") == 0  # a listener, if asked
    # A closed entry and a live one for the same addresses: the live one counts.
    reused = TCP4.replace("0100007F:A028 0100007F:21D4 01", "0100007F:A029 0100007F:21D4 01")
    assert find_owner(reused.encode(), "0100007F:A029", "0100007F:21D4") == 1000
    assert find_owner(b"", "0100007F:A028", "0100007F:21D4") is None
    assert find_owner(b"   1: 0100007F:A028 0100007F:21D4 01 x\n", "0100007F:A028",
                      "0100007F:21D4") is None  # fmt: skip


@pytest.mark.skipif(not LITTLE_ENDIAN, reason="the fixtures are a little-endian kernel's")
def test_proc_lookup_reads_the_server_family_first_then_the_mapped_one(tmp_path: Path) -> None:
    (tmp_path / "tcp").write_text(TCP4)
    (tmp_path / "tcp6").write_text(TCP6)
    tables = {4: str(tmp_path / "tcp"), 6: str(tmp_path / "tcp6")}
    server = ("127.0.0.1", 8660)
    assert proc_lookup(("127.0.0.1", 41000), server, tables) == 1000
    assert proc_lookup(("127.0.0.1", 41002), server, tables) == 1001  # in tcp6, mapped
    assert proc_lookup(("127.0.0.1", 41001), server, tables) is None
    # A dual-stack server sees a mapped client address; an IPv4 client is in tcp.
    assert proc_lookup(("::ffff:127.0.0.1", 41000), ("::ffff:127.0.0.1", 8660), tables) == 1000
    # Without the server's table there is no answer at all; without the other, the one read.
    with pytest.raises(OSError):
        proc_lookup(("127.0.0.1", 41000), server, {4: str(tmp_path / "nope"), 6: tables[6]})
    only4 = {4: tables[4], 6: str(tmp_path / "nope")}
    assert proc_lookup(("127.0.0.1", 41002), server, only4) is None


# -- real connections -------------------------------------------------------------------


@linux_only
@pytest.mark.parametrize(("listen", "connect"), FAMILIES)
def test_a_real_connection_is_ours_until_closed(
    listen: tuple[int, str], connect: tuple[int, str]
) -> None:
    with connection(listen, connect) as (_, client, accepted):
        peer = accepted.getpeername()[:2]  # what the ASGI scope's "client" is
        server = accepted.getsockname()[:2]
        for lookup in LOOKUPS:
            assert lookup(peer, server) == os.geteuid(), lookup.__name__
            assert lookup(server, peer) == os.geteuid(), lookup.__name__  # our end
            assert lookup(peer, (server[0], 1)) is None, lookup.__name__
        client.shutdown(socket.SHUT_WR)  # half-closed but open: still its owner's
        for lookup in LOOKUPS:
            assert lookup(peer, server) == os.geteuid(), lookup.__name__
        client.close()  # the kernel now lists it as uid 0, inode 0
        for lookup in LOOKUPS:
            assert lookup(peer, server) is None, lookup.__name__


@linux_only
def test_the_working_lookup_here_is_netlink() -> None:
    assert working_lookup() is diag_lookup
    assert working_lookup(("::1", "127.0.0.1")) is diag_lookup
    assert working_lookup(("192.0.2.1",)) is None  # nothing to connect to: no answer


# -- another user's process -------------------------------------------------------------


@pytest.fixture(scope="module")
def as_nobody() -> list[str]:
    """The command prefix that runs a Python as uid 65534 (skips when that is impossible)."""

    def unavailable(reason: str) -> NoReturn:
        if os.environ.get("CI"):
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)

    if not LINUX:
        unavailable("peer checks are Linux's")
    if os.geteuid() != 0:
        unavailable("running as another uid needs root (setpriv)")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        unavailable("setpriv is missing (util-linux)")
    prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    for python in ("/usr/bin/python3", sys.executable):
        command = [*prefix, python, "-I", "-c"]
        check = subprocess.run(
            [*command, "import os, sys; sys.exit(os.getuid() != 65534)"],
            cwd="/", env={"PATH": os.defpath}, capture_output=True, timeout=SOON, check=False,
        )  # fmt: skip
        if check.returncode == 0:
            return command
    unavailable(f"no Python that uid {NOBODY} may run (tried /usr/bin/python3, {sys.executable})")


#: Connects to each (host, port) of argv[1] (a JSON list), prints its own addresses, then
#: waits for stdin to close.
HOLD_CONNECTIONS: Final = """
import json, socket, sys
held = [socket.create_connection((h, p)) for h, p in json.loads(sys.argv[1])]
print(json.dumps([s.getsockname()[:2] for s in held]), flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize(("listen", "connect"), FAMILIES)
def test_another_users_connection_is_found_as_theirs(
    as_nobody: list[str], listen: tuple[int, str], connect: tuple[int, str]
) -> None:
    with socket.socket(listen[0]) as listener:
        listener.bind((listen[1], 0))
        listener.listen(4)
        target = json.dumps([[connect[1], listener.getsockname()[1]]])
        with subprocess.Popen(
            [*as_nobody, HOLD_CONNECTIONS, target], cwd="/", env={"PATH": os.defpath},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        ) as holder:  # fmt: skip
            try:
                assert holder.stdout is not None
                assert json.loads(holder.stdout.readline())
                accepted, peer = listener.accept()
                with accepted:
                    server = accepted.getsockname()[:2]
                    for lookup in LOOKUPS:
                        assert lookup(peer[:2], server) == NOBODY, lookup.__name__
            finally:
                holder.kill()


# -- the guard --------------------------------------------------------------------------


async def _through(guard: BrowserGuard, scope: Scope) -> list[Message]:
    """What ``guard`` sends for one request with ``scope``."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await guard(scope, receive, send)
    return sent


def _scope(client: Any, server: Any, kind: str = "http") -> Scope:
    return {
        "type": kind, "method": "POST", "path": "/tools/batch",
        "headers": [(b"host", b"127.0.0.1:8660")],
        "client": client, "server": server,
    }  # fmt: skip


async def _reached(scope: Scope, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@linux_only
async def test_the_guard_serves_an_open_connection_and_refuses_a_closed_one() -> None:
    guard = BrowserGuard(_reached, allowed_origins=())
    with connection((socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "127.0.0.1")) as (
        _, client, accepted,
    ):  # fmt: skip
        scope = _scope(accepted.getpeername(), accepted.getsockname())
        assert (await _through(guard, scope))[0]["status"] == 204
        # Sent, then closed at once (or reset): the kernel lists the socket as root's, or not
        # at all; either way the request is refused, never run.
        client.close()
        sent = await _through(guard, scope)
        assert sent[0]["status"] == 403
        assert json.loads(sent[1]["body"]) == {"error": PEER_CLOSED.format(ours=os.geteuid())}
        assert await _through(guard, _scope(accepted.getpeername(), accepted.getsockname(),
                                            "websocket")) == [
            {"type": "websocket.close", "code": 1008}
        ]  # fmt: skip
    # A peer that is not on this machine (a forced non-loopback bind) is not looked for; one
    # at the server's own address is.
    remote = _scope(("192.0.2.7", 5555), ("192.0.2.1", 8660))
    assert (await _through(guard, remote))[0]["status"] == 204
    local = _scope(("192.0.2.1", 5555), ("192.0.2.1", 8660))
    assert (await _through(guard, local))[0]["status"] == 403
    # No TCP peer (a unix socket, an in-process client): nothing to look up.
    assert (await _through(guard, _scope(None, None)))[0]["status"] == 204
    assert (await _through(guard, _scope(("testclient", 1), ("testserver", 80))))[0][
        "status"
    ] == 204


async def test_without_peer_checks_requests_pass_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.control.guard")
    guard = BrowserGuard(_reached, allowed_origins=(), probe=lambda: None)
    for port in (1, 2, 3):
        sent = await _through(guard, _scope(("127.0.0.1", port), ("127.0.0.1", 8660)))
        assert sent[0]["status"] == 204
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [PEER_CHECKS_UNAVAILABLE]


#: Makes each request of argv[2] (a JSON list of [method, path, body]) to port argv[1], over
#: IPv4 and over an IPv6 socket to the IPv4-mapped address; prints [[via, status, body]].
CLIENT: Final = """
import http.client, json, sys
port, requests = int(sys.argv[1]), json.loads(sys.argv[2])
out = []
for via in ("127.0.0.1", "::ffff:127.0.0.1"):
    for method, path, body in requests:
        c = http.client.HTTPConnection(via, port, timeout=30)
        try:
            c.request(method, path, body=body, headers={
                "Host": f"127.0.0.1:{port}", "Content-Type": "application/json"})
            r = c.getresponse()
            out.append([via, r.status, r.read().decode()])
        except OSError as exc:
            out.append([via, None, str(exc)])
        finally:
            c.close()
print(json.dumps(out))
"""
BATCH: Final = {
    "toolCalls": [
        {"id": "c1", "type": "function",
         "function": {"name": "terminal", "arguments": json.dumps({"command": "id"})}},
    ]
}  # fmt: skip
REQUESTS: Final = [
    ["GET", "/health", None],
    ["POST", "/tools/batch", json.dumps(BATCH)],
    ["POST", "/tunnel/activate", json.dumps({"jwt": "t", "tunnelUrl": "ws://127.0.0.1:1/"})],
]


async def test_the_daemon_answers_another_user_403_and_its_own_user(
    as_nobody: list[str], nursery: trio.Nursery, workspace: Path
) -> None:
    cfg = make_config(workspace, control=("127.0.0.1", 0))
    daemon: Daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    assert daemon.control_url is not None
    port = daemon.control_url.rstrip("/").rsplit(":", 1)[1]
    with trio.fail_after(SOON):
        done = await trio.run_process(
            [*as_nobody, CLIENT, port, json.dumps(REQUESTS)],
            cwd="/", env={"PATH": os.defpath}, capture_stdout=True, capture_stderr=True,
        )  # fmt: skip
    answers = json.loads(done.stdout)
    refused = {"error": PEER_REFUSED.format(ours=os.geteuid(), theirs=NOBODY)}
    v4 = [a for a in answers if a[0] == "127.0.0.1"]
    assert [(status, json.loads(body)) for _, status, body in v4] == [(403, refused)] * 3
    mapped = [a for a in answers if a[0] != "127.0.0.1" and (a[1] is not None or _has_ipv6())]
    expected = [(403, refused)] * 3 if _has_ipv6() else []
    assert [(status, json.loads(body)) for _, status, body in mapped] == expected
    assert "uid 65534" in refused["error"]
    assert daemon.tunnel.status is TunnelStatus.DISCONNECTED  # the activation never ran
    # This process is of the user edge runs as: the same requests reach their routes.
    async with httpx.AsyncClient(base_url=daemon.control_url, timeout=SOON) as client:
        assert (await client.get("/health")).status_code == 200
        batch = await client.post("/tools/batch", json=BATCH)
        assert batch.status_code == 200
        assert len(batch.json()["results"]) == 1
        activate = await client.post(
            "/tunnel/activate", json={"jwt": "t", "tunnelUrl": "ws://127.0.0.1:1/"}
        )
        assert activate.status_code == 202
