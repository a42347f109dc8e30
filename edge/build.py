"""Which edge this is: the package version and, run from a git checkout, its commit.

The commit is read from the checkout's ``.git`` files (``HEAD``, the ref it
names, ``packed-refs``; a worktree's ``gitdir:`` pointer and ``commondir``
followed), not by running git: it is cheap enough for the start-up path and
works where git is not installed. An installed wheel has no checkout and
reports no commit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from . import __version__

#: A commit id: SHA-1 (40 hex digits) or SHA-256 (64).
_COMMIT: Final = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


def _git_dir(root: Path) -> Path | None:
    """The git directory of the checkout at ``root``, if ``root`` is one."""
    dot_git = root / ".git"
    if dot_git.is_dir():
        return dot_git
    if dot_git.is_file():  # a worktree or a submodule: "gitdir: PATH"
        text = dot_git.read_text(encoding="utf-8").strip()
        if text.startswith("gitdir:"):
            path = Path(text.removeprefix("gitdir:").strip())
            return path if path.is_absolute() else (root / path).resolve()
    return None


def _resolve(git_dir: Path, ref: str) -> str | None:
    """The commit ``ref`` (``refs/heads/main``) names, loose or packed."""
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        common = (git_dir / commondir.read_text(encoding="utf-8").strip()).resolve()
    for base in dict.fromkeys((git_dir, common)):
        loose = base / ref
        if loose.is_file():
            return loose.read_text(encoding="utf-8").strip()
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            commit, _, name = line.partition(" ")
            if name == ref:
                return commit
    return None


def source_commit(package_dir: Path | None = None) -> str | None:
    """The commit of the git checkout edge runs from (``package_dir``'s parent), else ``None``.

    Anything unreadable or unexpected is ``None``, never an error: the commit is
    information, not something edge needs to run.
    """
    root = (package_dir or Path(__file__).resolve().parent).parent
    try:
        git_dir = _git_dir(root)
        if git_dir is None:
            return None
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        commit = _resolve(git_dir, head.removeprefix("ref:").strip()) if head.startswith(
            "ref:"
        ) else head
    except (OSError, UnicodeDecodeError):
        return None
    return commit if commit is not None and _COMMIT.fullmatch(commit) else None


def build_info(package_dir: Path | None = None) -> dict[str, str | None]:
    """``{"version": ..., "commit": ...}`` for the capability report and ``/health``."""
    return {"version": __version__, "commit": source_commit(package_dir)}
