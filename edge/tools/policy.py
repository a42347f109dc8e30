"""The local policy: which tools may run and which directories file tools may touch.

The cloud approves tools; the policy is the user's own word on this machine. A
tool runs only when both say yes. File tools touch only what lies beneath one
of the roots (the workspace is always one): ``root_for`` names the root that
lexically holds a path, and ``edge.tools.beneath`` opens the rest beneath that
root's directory descriptor, so a symlink or a rename cannot lead out.
``resolve`` (every symlink followed, then checked) is for paths handed on to
others, such as a command's working directory.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import PolicyError


@dataclass(frozen=True, slots=True)
class Policy:
    """What the user allows on this machine.

    Attributes:
        workspace: where relative paths start and commands run by default.
        roots: every directory file tools may touch (workspace included), resolved.
        allowed_tools: tool names the user allows (globs such as ``time__*`` too);
            ``None`` allows every registered tool.
        portable_walk: resolve paths beneath a root with the portable walk
            (one component at a time) even where openat2 exists; tests use it,
            and it is what runs where openat2 does not.
    """

    workspace: Path
    roots: tuple[Path, ...]
    allowed_tools: frozenset[str] | None = None
    portable_walk: bool = False

    @classmethod
    def create(
        cls,
        workspace: str | os.PathLike[str],
        extra_roots: Iterable[str | os.PathLike[str]] = (),
        allowed_tools: Iterable[str] | None = None,
        *,
        portable_walk: bool = False,
    ) -> Policy:
        ws = Path(os.path.realpath(Path(workspace).expanduser()))
        roots = [ws]
        for root in extra_roots:
            real = Path(os.path.realpath(Path(root).expanduser()))
            if real not in roots:
                roots.append(real)
        allowed = None if allowed_tools is None else frozenset(allowed_tools)
        return cls(ws, tuple(roots), allowed, portable_walk)

    def allows_tool(self, name: str) -> bool:
        """Whether ``name`` is allowed: listed, or matched by a listed glob (``time__*``)."""
        if self.allowed_tools is None or name in self.allowed_tools:
            return True
        return any(
            fnmatch.fnmatchcase(name, pattern)
            for pattern in self.allowed_tools
            if any(c in pattern for c in "*?[")
        )

    def root_for(self, path: str) -> tuple[Path, str]:
        """The root that lexically holds ``path``, and the rest of ``path`` beneath it.

        ``path`` is relative to the workspace or absolute (``~`` expanded). It is
        normalised lexically (``a/../b`` is ``b``), never by following a link:
        the caller resolves the rest beneath the root's descriptor. Of nested
        roots the innermost wins. The rest is ``""`` for the root itself, else
        its components joined by ``/``.

        Raises:
            PolicyError: the path is empty, holds a NUL, or is lexically outside
                every root (``..`` climbing out of them included).
        """
        normal = os.path.normpath(self._absolute(path))
        found: tuple[Path, str] | None = None
        for root in self.roots:
            top = str(root).rstrip(os.sep)
            if normal == top or (not top and normal == os.sep):
                rel = ""
            elif normal.startswith(top + os.sep):
                rel = normal[len(top) + 1 :]
            else:
                continue
            if found is None or len(str(root)) > len(str(found[0])):
                found = (root, rel if os.sep == "/" else rel.replace(os.sep, "/"))
        if found is None:
            raise self._outside(path)
        return found

    def resolve(self, path: str) -> Path:
        """Resolve ``path`` (relative to the workspace) and check it stays inside a root.

        Every symlink is followed, including one in the last component, so a
        link that points out of the roots is refused like the path it points to.

        Raises:
            PolicyError: the path is empty, holds a NUL, or lands outside every root.
        """
        real = Path(os.path.realpath(self._absolute(path)))
        if not any(real == root or real.is_relative_to(root) for root in self.roots):
            raise self._outside(path)
        return real

    def _outside(self, path: str) -> PolicyError:
        """The refusal of ``path``, naming the roots it may be in (the workspace first)."""
        roots = ", ".join(str(root) for root in self.roots)
        return PolicyError(f"path {path!r} is outside the allowed roots ({roots})")

    def _absolute(self, path: str) -> str:
        """``path`` made absolute against the workspace (``~`` expanded), unresolved."""
        if not path:
            raise PolicyError("path is empty")
        if "\x00" in path:
            raise PolicyError("path contains a NUL character")
        if path.startswith("~"):
            path = os.path.expanduser(path)
        return path if os.path.isabs(path) else os.path.join(self.workspace, path)

    def is_root(self, path: Path) -> bool:
        return path in self.roots

    def describe(self) -> dict[str, object]:
        return {
            "workspace": str(self.workspace),
            "roots": [str(r) for r in self.roots],
            "allowedTools": None if self.allowed_tools is None else sorted(self.allowed_tools),
        }
