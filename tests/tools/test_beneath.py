"""Paths opened beneath a root's descriptor: openat2 and the portable walk, side by side."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from edge.errors import PolicyError, ToolError
from edge.tools import walk
from edge.tools.beneath import DIR_FLAGS, READ_FLAGS, Confined, open_readable, walk_open
from edge.tools.execute import Executor
from edge.tools.policy import Policy

from ..conftest import open_fds


def _openat2_works() -> bool:
    try:
        from edge.tools import _beneath  # type: ignore[attr-defined]
    except ImportError:
        return False
    fd = os.open("/", DIR_FLAGS)
    try:
        new = _beneath.lib.edge_open_beneath(fd, b".", DIR_FLAGS, 0)
    finally:
        os.close(fd)
    if new >= 0:
        os.close(new)
    return bool(new >= 0)


OPENAT2 = _openat2_works()


@pytest.fixture(params=["openat2", "walk"])
def resolver(request: pytest.FixtureRequest) -> str:
    if request.param == "openat2" and not OPENAT2:
        pytest.skip("openat2 is not available here (not Linux >= 5.6, or filtered)")
    return str(request.param)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret.txt").write_text("TOP SECRET\n")
    return out


def make_policy(workspace: Path, resolver: str, extra: tuple[str | Path, ...] = ()) -> Policy:
    return Policy.create(workspace, extra, portable_walk=resolver == "walk")


@pytest.fixture
def policy(workspace: Path, resolver: str) -> Policy:
    return make_policy(workspace, resolver)


@pytest.fixture
def roots(policy: Policy, resolver: str) -> Iterator[Confined]:
    with Confined(policy) as confined:
        assert confined.uses_openat2 == (resolver == "openat2")
        yield confined


def read(roots: Confined, path: str) -> bytes:
    fd, _ = open_readable(roots, path, directory=False)
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


def test_links_that_stay_beneath_the_root_work(workspace: Path, roots: Confined) -> None:
    (workspace / "d" / "e").mkdir(parents=True)
    (workspace / "d" / "e" / "f.txt").write_text("inside\n")
    os.symlink("d/e", workspace / "rel")
    os.symlink(workspace / "d", workspace / "abs")  # absolute, but into the workspace
    os.symlink("../d/e/f.txt", workspace / "d" / "up")  # climbs, but not out
    os.symlink("rel/f.txt", workspace / "chain")  # a link to a path through a link
    os.symlink(".", workspace / "d" / "here")
    for path in ("rel/f.txt", "abs/e/f.txt", "d/up", "chain", "d/here/here/e/f.txt"):
        assert read(roots, path) == b"inside\n", path


def test_links_out_of_the_roots_are_refused(
    workspace: Path, outside: Path, roots: Confined
) -> None:
    os.symlink(outside / "secret.txt", workspace / "abs")
    os.symlink("../outside/secret.txt", workspace / "rel")
    os.symlink(outside, workspace / "door")
    os.symlink("abs", workspace / "via")
    os.symlink("..", workspace / "up")
    for path in ("abs", "rel", "door/secret.txt", "via", "up/outside/secret.txt"):
        with pytest.raises(ToolError, match="resolves outside the allowed roots"):
            read(roots, path)


def test_lexical_escapes_are_refused(workspace: Path, outside: Path, roots: Confined) -> None:
    (workspace / "d").mkdir()
    for path in ("..", "../outside/secret.txt", "d/../../outside/secret.txt", str(outside)):
        with pytest.raises(PolicyError, match="outside the allowed roots"):
            roots.open(path, READ_FLAGS)


def test_absolute_paths_in_other_roots(
    workspace: Path, tmp_path: Path, resolver: str
) -> None:
    extra = tmp_path / "projects"
    (extra / "p").mkdir(parents=True)
    (extra / "p" / "x.txt").write_text("extra\n")
    os.symlink(extra / "p", workspace / "proj")  # from one root into another
    with Confined(make_policy(workspace, resolver, (extra,))) as roots:
        assert read(roots, str(extra / "p" / "x.txt")) == b"extra\n"
        assert read(roots, "proj/x.txt") == b"extra\n"
        assert roots.shown("proj/x.txt") == str(workspace / "proj" / "x.txt")
    with Confined(make_policy(workspace, resolver)) as roots, pytest.raises(
        ToolError, match="resolves outside"
    ):
        read(roots, "proj/x.txt")


def test_magic_links_are_refused(workspace: Path, resolver: str) -> None:
    etc = os.open("/etc", DIR_FLAGS)
    try:
        os.symlink("/proc/self/root/etc/hostname", workspace / "magic")
        os.symlink(f"/proc/self/fd/{etc}", workspace / "fdlink")
        with Confined(make_policy(workspace, resolver, ("/proc",))) as roots:
            paths = ("magic", "fdlink/hostname", "/proc/self/root/etc/hostname", "/proc/self/cwd")
            for path in paths:
                with pytest.raises(ToolError, match="resolves outside the allowed roots"):
                    read(roots, path)
    finally:
        os.close(etc)


def test_openat2_itself_refuses_magic_links_and_escapes() -> None:
    if not OPENAT2:
        pytest.skip("openat2 is not available here")
    from edge.tools import _beneath  # type: ignore[attr-defined]

    proc = os.open("/proc", DIR_FLAGS)
    try:
        assert _beneath.lib.edge_open_beneath(proc, b"self/root", DIR_FLAGS, 0) == -errno.ELOOP
        assert _beneath.lib.edge_open_beneath(proc, b"../etc", DIR_FLAGS, 0) == -errno.EXDEV
        fd = _beneath.lib.edge_open_beneath(proc, b"self/status", READ_FLAGS, 0)
        assert fd >= 0
        os.close(fd)
    finally:
        os.close(proc)


def test_the_walk_refuses_magic_links_and_escapes() -> None:
    proc = os.open("/proc", DIR_FLAGS)
    try:
        for rel in ("self/root/etc/hostname", "../etc/hostname", "self/cwd"):
            with pytest.raises(OSError, match="Invalid cross-device link") as caught:
                walk_open(proc, "/proc", rel, READ_FLAGS)
            assert caught.value.errno == errno.EXDEV
        os.close(walk_open(proc, "/proc", "self/status", READ_FLAGS))
    finally:
        os.close(proc)


def test_a_symlink_loop_is_an_error_not_a_hang(workspace: Path, roots: Confined) -> None:
    os.symlink("b", workspace / "a")
    os.symlink("a", workspace / "b")
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        read(roots, "a")


def test_names_that_are_not_utf8_round_trip(
    workspace: Path, roots: Confined, policy: Policy
) -> None:
    raw = os.fsencode(workspace) + b"/caf\xe9"
    with open(raw, "wb") as f:
        f.write(b"latin-1 name\n")
    name = os.fsdecode(b"caf\xe9")
    assert name == "caf\udce9"
    assert read(roots, name) == b"latin-1 name\n"
    fd = roots.open(".", DIR_FLAGS)
    try:
        assert [n for n, _ in walk.entries(fd)] == [name]
    finally:
        os.close(fd)

    async def through_the_tools() -> None:
        from edge.daemon import build_registry

        executor = Executor(build_registry(), policy, {})
        listing = await executor.call("file_ops", {"op": "list", "path": "."}, approved=None)
        assert listing["output"] == name
        assert os.fsencode(listing["entries"][0]["name"]) == b"caf\xe9"
        assert (await executor.call("file_read", {"path": name}, approved=None))["output"] == (
            "latin-1 name\n"
        )
        found = await executor.call("grep", {"pattern": "latin"}, approved=None)
        assert found["output"] == f"{name}:1:latin-1 name"
        there = {"op": "move", "path": name, "dest": "x"}
        assert "error" not in await executor.call("file_ops", there, approved=None)
        back = {"op": "move", "path": "x", "dest": name}
        back = await executor.call("file_ops", back, approved=None)
        assert back["dest"] == os.fsdecode(raw)

    trio.run(through_the_tools)
    assert os.path.exists(raw)


def test_fifo_socket_and_device_are_refused_with_their_kind(
    workspace: Path, resolver: str
) -> None:
    os.mkfifo(workspace / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(workspace / "sock"))
    try:
        with Confined(make_policy(workspace, resolver, ("/dev",))) as roots:
            kinds = [("fifo", "a FIFO"), ("sock", "a socket"), ("/dev/null", "a character device")]
            for path, kind in kinds:
                with pytest.raises(ToolError, match=f"is {kind}, not a regular file"):
                    read(roots, path)
            with pytest.raises(ToolError, match=r"is a directory \(use file_ops list\)"):
                read(roots, ".")
    finally:
        sock.close()


async def test_a_fifo_read_is_refused_at_once(workspace: Path, resolver: str) -> None:
    from edge.daemon import build_registry

    os.mkfifo(workspace / "fifo")
    os.mkdir(workspace / "d")
    os.mkfifo(workspace / "d" / "pipe")
    (workspace / "d" / "x.txt").write_text("needle\n")
    executor = Executor(build_registry(), make_policy(workspace, resolver), {}, default_timeout=30)
    start = trio.current_time()
    with trio.fail_after(5):  # opening the FIFO for reading would block for ever
        result = await executor.call("file_read", {"path": "fifo"}, approved=None)
        assert result == {"error": f"{workspace}/fifo is a FIFO, not a regular file"}
        result = await executor.call("grep", {"pattern": "x", "path": "fifo"}, approved=None)
        assert "is a FIFO" in result["error"]
        result = await executor.call("grep", {"pattern": "needle", "path": "d"}, approved=None)
        assert result["output"] == "d/x.txt:1:needle"  # the FIFO in it passed over
        result = await executor.call("file_write", {"path": "fifo", "content": "x"}, approved=None)
        assert "not a regular file" in result["error"]
    assert trio.current_time() - start < 2


def test_descriptors_are_closed(workspace: Path, policy: Policy) -> None:
    (workspace / "f").write_text("x")
    before = open_fds()
    for _ in range(50):
        with Confined(policy) as roots:
            read(roots, "f")
            with pytest.raises(FileNotFoundError):
                read(roots, "missing")
            os.close(roots.makedirs("a/b/c"))
            fd, name = roots.parent("a/b/c")
            os.close(fd)
            assert name == "c"
    assert open_fds() == before


def test_parent_is_for_acting_on_the_name_itself(
    workspace: Path, outside: Path, roots: Confined
) -> None:
    os.symlink(outside / "secret.txt", workspace / "link")
    fd, name = roots.parent("link")
    try:
        assert name == "link"
        assert os.readlink(name, dir_fd=fd) == str(outside / "secret.txt")
    finally:
        os.close(fd)
    fd, name = roots.parent(".")
    os.close(fd)
    assert name == ""


def test_makedirs_goes_through_links_beneath_only(
    workspace: Path, outside: Path, roots: Confined
) -> None:
    (workspace / "real").mkdir()
    os.symlink("real", workspace / "alias")
    os.symlink(outside, workspace / "door")
    os.close(roots.makedirs("alias/x/y"))
    assert (workspace / "real" / "x" / "y").is_dir()
    with pytest.raises(ToolError, match="resolves outside"):
        roots.makedirs("door/new")
    assert sorted(os.listdir(outside)) == ["secret.txt"]


def test_a_hidden_openat2_falls_back_to_the_walk(workspace: Path) -> None:
    if not OPENAT2:
        pytest.skip("openat2 is not available here")
    (workspace / "f").write_text("walked\n")
    with Confined(Policy.create(workspace)) as roots:
        # What a seccomp filter that hides openat2 answers: ENOSYS.
        roots._openat2 = lambda fd, path, flags, mode: -errno.ENOSYS
        assert read(roots, "f") == b"walked\n"
        assert not roots.uses_openat2


def test_an_interrupted_copy_leaves_nothing(workspace: Path, roots: Confined) -> None:
    tree = workspace / "tree"
    for i in range(20):
        (tree / f"d{i}").mkdir(parents=True)
        (tree / f"d{i}" / "f").write_text(str(i))
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1
        if calls == 15:
            raise trio.Cancelled._create()

    with pytest.raises(trio.Cancelled):
        walk.copy(roots, "tree", "copy", check)
    assert not (workspace / "copy").exists()
    shown, target, skipped = walk.copy(roots, "tree", "copy", lambda: None)
    assert (shown, target, skipped) == (str(tree), str(workspace / "copy"), 0)
    assert sorted(os.listdir(workspace / "copy")) == sorted(os.listdir(tree))


def test_copying_a_tree_into_itself_stops(workspace: Path, roots: Confined) -> None:
    (workspace / "t" / "in").mkdir(parents=True)
    (workspace / "t" / "f").write_text("f")
    walk.copy(roots, "t", "t/in/copy", lambda: None)
    assert sorted(os.listdir(workspace / "t" / "in" / "copy")) == ["f", "in"]
    assert os.listdir(workspace / "t" / "in" / "copy" / "in") == []
