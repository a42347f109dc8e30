"""Which edge this is: the commit read from a real git checkout's files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import edge
from edge.build import build_info, source_commit
from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e", "HOME": str(cwd), "PATH": "/usr/bin:/bin"}  # fmt: skip
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "edge").mkdir(parents=True)
    (root / "edge" / "x.py").write_text("")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "one")
    return root


def test_a_branch_checkout_loose_then_packed(checkout: Path) -> None:
    head = _git(checkout, "rev-parse", "HEAD")
    assert source_commit(checkout / "edge") == head
    _git(checkout, "pack-refs", "--all")
    assert not (checkout / ".git" / "refs" / "heads" / "main").exists()
    assert source_commit(checkout / "edge") == head


def test_a_detached_head_and_a_worktree(checkout: Path, tmp_path: Path) -> None:
    first = _git(checkout, "rev-parse", "HEAD")
    _git(checkout, "commit", "-q", "--allow-empty", "-m", "two")
    second = _git(checkout, "rev-parse", "HEAD")
    _git(checkout, "worktree", "add", "-q", "--detach", str(tmp_path / "wt"), first)
    assert (tmp_path / "wt" / ".git").is_file()
    assert source_commit(tmp_path / "wt" / "edge") == first
    _git(checkout, "checkout", "-q", "--detach", first)
    assert source_commit(checkout / "edge") == first != second


def test_no_checkout_or_a_broken_one_is_no_commit(tmp_path: Path) -> None:
    (tmp_path / "edge").mkdir()
    assert source_commit(tmp_path / "edge") is None
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/nowhere\n")
    assert source_commit(tmp_path / "edge") is None
    (tmp_path / ".git" / "HEAD").write_text("not a commit\n")
    assert source_commit(tmp_path / "edge") is None


def test_this_edge_reports_its_own_commit() -> None:
    package = Path(edge.__file__).resolve().parent
    if not (package.parent / ".git").exists():
        pytest.skip("edge is not running from a git checkout here")
    info = build_info()
    assert info["version"] == edge.__version__
    assert info["commit"] == _git(package.parent, "rev-parse", "HEAD")


async def test_the_report_and_health_carry_version_and_commit(
    edge: Daemon, cloud: FakeCloud
) -> None:
    report = cloud.report
    assert report is not None
    assert report["edgeVersion"] == edge.build["version"]
    assert report["edgeCommit"] == edge.build["commit"] == source_commit()
    health = edge.health()
    assert (health["version"], health["commit"]) == (edge.build["version"], edge.build["commit"])
