"""Who is at the other end of a loopback TCP connection: the owner uid of the peer's socket.

Any local process can connect to 127.0.0.1, other users' included, and Host,
Origin and CSRF rules only bind browsers. On Linux the kernel knows each
socket's owner (the uid that created it), for the peer's end of a loopback
connection as for ours. Given the ASGI scope's ``client`` and ``server``
addresses, both lookups find the one socket whose local address is the
client's and whose remote address is the server's:

- ``diag_lookup`` asks the kernel over ``NETLINK_SOCK_DIAG`` (as ``ss`` does):
  an exact hash lookup, tens of microseconds whatever the number of sockets;
- ``proc_lookup`` reads ``/proc/net/tcp`` (IPv4) or ``/proc/net/tcp6`` (IPv6,
  and IPv6 sockets connected to IPv4-mapped addresses), for systems without
  the netlink family: milliseconds, since the kernel walks its whole
  connection hash table to print the file, however few sockets there are.

Both give the uid of a socket still held open by a process (its inode is not
0). A socket its owner has already closed (FIN_WAIT2 or TIME_WAIT after
``close``, gone after a reset) is listed with uid 0 and inode 0, which would
read as root; both give ``None`` for it, as for an entry not found.

``working_lookup`` finds out once which of the two works here by looking up a
loopback connection of its own: ``None`` when neither sees it (not Linux,
``/proc`` not mounted, a sandbox that does not list sockets). Plain code, no
trio: the control API's guard decides what the answer means
(``edge.control.guard``).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

#: An address as the ASGI scope gives it: (host, port).
Address = Sequence[Any]
#: A lookup: the owner uid of the open socket at ``client`` connected to ``server``, or
#: ``None``; ``OSError`` when this system cannot tell at all.
Lookup = Callable[[Address, Address], "int | None"]
IP = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The kernel's TCP tables, by IP version.
PROC_TABLES: Final[Mapping[int, str]] = {4: "/proc/net/tcp", 6: "/proc/net/tcp6"}

#: Netlink protocol and message type of socket diagnostics (linux/sock_diag.h).
NETLINK_SOCK_DIAG: Final = 4
SOCK_DIAG_BY_FAMILY: Final = 20
NLMSG_ERROR: Final = 2
NLM_F_REQUEST: Final = 1
#: struct nlmsghdr: length, type, flags, sequence, port id.
_NLMSG: Final = struct.Struct("=IHHII")
#: struct inet_diag_req_v2 up to its sockid: family, protocol, extensions, pad, states.
_REQ_HEAD: Final = struct.Struct("=BBBBI")
#: struct inet_diag_sockid's ports, in network order (its 16 + 16 address bytes follow).
_PORTS: Final = struct.Struct("!HH")
#: struct inet_diag_sockid's tail: interface, and a cookie of "none".
_REQ_TAIL: Final = struct.Struct("=III")
_NO_COOKIE: Final = 0xFFFFFFFF
#: Every TCP state: the lookup is by address whatever the state.
_ALL_STATES: Final = 0xFFFFFFFF
#: struct inet_diag_msg: family, state, timer, retrans, sockid (48 bytes), expires,
#: rqueue, wqueue, uid, inode.
_DIAG_MSG: Final = struct.Struct("=BBBB48xIIIII")
#: Seconds a netlink answer may take before the system counts as not answering.
_NETLINK_TIMEOUT: Final = 1.0
#: Columns of a /proc/net/tcp line after "sl:": local, remote, state, queues, timer,
#: retransmits, uid, timeout, inode.
_UID_COLUMN: Final = 6
_INODE_COLUMN: Final = 8


def diag_lookup(client: Address, server: Address) -> int | None:
    """The owner uid of the open socket at ``client`` connected to ``server``, via netlink.

    One exact lookup by both addresses and ports. An IPv4 question also finds
    an IPv6 socket connected to the IPv4-mapped address: the kernel keeps both
    in one hash table.

    Raises:
        OSError: netlink socket diagnostics are not available (not Linux, a
            sandbox without them), or answered with an error other than "no such socket".
    """
    netlink = getattr(socket, "AF_NETLINK", None)
    if netlink is None:
        raise OSError("netlink is not available on this system")
    local, remote = _ip(client[0]), _ip(server[0])
    v6 = _needs_v6(local) or _needs_v6(remote)
    family = socket.AF_INET6 if v6 else socket.AF_INET
    request = (
        _REQ_HEAD.pack(family, socket.IPPROTO_TCP, 0, 0, _ALL_STATES)
        + _PORTS.pack(int(client[1]), int(server[1]))
        + _diag_address(local, v6)
        + _diag_address(remote, v6)
        + _REQ_TAIL.pack(0, _NO_COOKIE, _NO_COOKIE)
    )
    header = _NLMSG.pack(_NLMSG.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    with socket.socket(netlink, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(_NETLINK_TIMEOUT)
        nl.sendto(header + request, (0, 0))
        answer = nl.recv(4096)
    if len(answer) < _NLMSG.size + 4:
        raise OSError("a short answer from netlink socket diagnostics")
    kind = _NLMSG.unpack_from(answer)[1]
    if kind == NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", answer, _NLMSG.size)
        if -error == errno.ENOENT:
            return None
        raise OSError(-error, f"netlink socket diagnostics: {os.strerror(-error)}")
    if kind != SOCK_DIAG_BY_FAMILY or len(answer) < _NLMSG.size + _DIAG_MSG.size:
        raise OSError("an unexpected answer from netlink socket diagnostics")
    *_, uid, inode = _DIAG_MSG.unpack_from(answer, _NLMSG.size)
    return int(uid) if inode else None


def proc_lookup(
    client: Address, server: Address, tables: Mapping[int, str] = PROC_TABLES
) -> int | None:
    """The owner uid of the open socket at ``client`` connected to ``server``, from /proc.

    Reads the table of the server's address family first; a client at an IPv4
    address may be an IPv6 socket connected to the IPv4-mapped address, listed
    in the other table, which is read only then. ``tables`` maps IP version to
    file (tests give fixtures).

    Raises:
        OSError: the server's table cannot be read (not Linux, no /proc).
    """
    local, remote = _ip(client[0]), _ip(server[0])
    first = 6 if _is_v6_socket(server[0]) else 4
    versions = [first] + [v for v in (4, 6) if v != first and _maybe_other_family(local, v)]
    for i, version in enumerate(versions):
        key_local = endpoint_hex(local, int(client[1]), version)
        key_remote = endpoint_hex(remote, int(server[1]), version)
        if key_local is None or key_remote is None:
            continue
        try:
            with open(tables[version], "rb", buffering=0) as table:
                text = table.read()
        except OSError:
            if i == 0:
                raise
            continue
        uid = find_owner(text, key_local, key_remote)
        if uid is not None:
            return uid
    return None


def find_owner(table: bytes, local: str, remote: str) -> int | None:
    """In a /proc/net/tcp(6) table's text, the uid of the open socket ``local`` -> ``remote``.

    ``local`` and ``remote`` are as the kernel prints them (``endpoint_hex``).
    Entries whose inode is 0 (closed by their owner, TIME_WAIT) do not count: the
    kernel shows uid 0 for them.
    """
    key = f": {local} {remote} ".encode("ascii")
    start = table.find(key)
    while start >= 0:
        end = table.find(b"\n", start)
        fields = table[start + 2 : end if end >= 0 else len(table)].split()
        try:
            uid, inode = int(fields[_UID_COLUMN]), int(fields[_INODE_COLUMN])
        except (IndexError, ValueError):
            return None
        if inode:
            return uid
        start = table.find(key, start + len(key))
    return None


def endpoint_hex(host: IP | str, port: int, version: int) -> str | None:
    """``host:port`` as /proc/net/tcp (``version`` 4) or tcp6 (6) prints it; ``None`` if it
    cannot appear there (an IPv6 address in the IPv4 table).

    The kernel prints each 32-bit word of the address as a number in the
    machine's byte order (``0100007F`` for 127.0.0.1 on little-endian), then the
    port in hexadecimal; an IPv4 address in the IPv6 table is IPv4-mapped.
    """
    address = _ip(host) if isinstance(host, str) else host
    if version == 4:
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is None:
                return None
            address = address.ipv4_mapped
        (word,) = struct.unpack("=I", address.packed)
        return f"{word:08X}:{port:04X}"
    if isinstance(address, ipaddress.IPv4Address):
        address = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed)
    words = struct.unpack("=4I", address.packed)
    return "".join(f"{w:08X}" for w in words) + f":{port:04X}"


def working_lookup(hosts: Sequence[str] = ("127.0.0.1", "::1")) -> Lookup | None:
    """The fastest lookup that finds a fresh loopback connection of this process as ours.

    Connects to a listener of its own on the first of ``hosts`` that can be
    served, and asks ``diag_lookup``, then ``proc_lookup``, for the client's end.
    ``None``: neither finds it (peer checks are not available here). Blocks for
    at most a few milliseconds.
    """
    for host in hosts:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            with socket.socket(family) as listener:
                listener.bind((host, 0))
                listener.listen(1)
                server = listener.getsockname()[:2]
                with socket.socket(family) as client:
                    client.connect(server)
                    accepted, _ = listener.accept()
                    with accepted:
                        return _first_that_sees(client.getsockname()[:2], server)
        except OSError:
            continue
    return None


def _first_that_sees(client: Address, server: Address) -> Lookup | None:
    """The first lookup that answers this process's uid for ``client`` -> ``server``."""
    for lookup in (diag_lookup, proc_lookup):
        try:
            if lookup(client, server) == os.geteuid():
                return lookup
        except OSError:
            continue
    return None


def _ip(host: str) -> IP:
    """``host`` (an address as ``getpeername`` gives it, maybe with a ``%zone``) parsed."""
    return ipaddress.ip_address(host.split("%", 1)[0].strip("[]"))


def _needs_v6(address: IP) -> bool:
    """Whether ``address`` is IPv6 proper (an IPv4-mapped one is looked up as IPv4)."""
    return isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None


def _diag_address(address: IP, v6: bool) -> bytes:
    """``address`` as the 16 bytes of an inet_diag_sockid address (IPv4: 4, then zeros)."""
    if not v6:
        v4 = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else address
        assert v4 is not None
        return v4.packed + b"\0" * 12
    if isinstance(address, ipaddress.IPv4Address):
        return b"\0" * 10 + b"\xff\xff" + address.packed
    return address.packed


def _is_v6_socket(host: str) -> bool:
    """Whether the server's socket, at ``host``, is an IPv6 one (its table is tcp6)."""
    return isinstance(_ip(host), ipaddress.IPv6Address)


def _maybe_other_family(client: IP, version: int) -> bool:
    """Whether a client at ``client`` may be listed in the ``version`` table too: an IPv4
    address (or IPv4-mapped) may be an IPv4 socket or an IPv6 one connected to it."""
    if isinstance(client, ipaddress.IPv4Address):
        return True
    return client.ipv4_mapped is not None
