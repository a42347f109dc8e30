"""The local policy: which tools may run and which directories file tools may touch.

The cloud approves tools; the policy is the user's own word on this machine. A
tool runs only when both say yes. Paths are resolved with every symlink
followed and must land inside one of the roots (the workspace is always one).
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
    """

    workspace: Path
    roots: tuple[Path, ...]
    allowed_tools: frozenset[str] | None = None

    @classmethod
    def create(
        cls,
        workspace: str | os.PathLike[str],
        extra_roots: Iterable[str | os.PathLike[str]] = (),
        allowed_tools: Iterable[str] | None = None,
    ) -> Policy:
        ws = Path(os.path.realpath(Path(workspace).expanduser()))
        roots = [ws]
        for root in extra_roots:
            real = Path(os.path.realpath(Path(root).expanduser()))
            if real not in roots:
                roots.append(real)
        allowed = None if allowed_tools is None else frozenset(allowed_tools)
        return cls(ws, tuple(roots), allowed)

    def allows_tool(self, name: str) -> bool:
        """Whether ``name`` is allowed: listed, or matched by a listed glob (``time__*``)."""
        if self.allowed_tools is None or name in self.allowed_tools:
            return True
        return any(
            fnmatch.fnmatchcase(name, pattern)
            for pattern in self.allowed_tools
            if any(c in pattern for c in "*?[")
        )

    def resolve(self, path: str) -> Path:
        """Resolve ``path`` (relative to the workspace) and check it stays inside a root.

        Every symlink is followed, including one in the last component, so a
        link that points out of the roots is refused like the path it points to.

        Raises:
            PolicyError: the path is empty, holds a NUL, or lands outside every root.
        """
        if not path:
            raise PolicyError("path is empty")
        if "\x00" in path:
            raise PolicyError("path contains a NUL character")
        candidate = Path(path).expanduser()
        if not candidate.is_absolute():
            candidate = self.workspace / candidate
        real = Path(os.path.realpath(candidate))
        if not any(real == root or real.is_relative_to(root) for root in self.roots):
            raise PolicyError(f"path {path!r} is outside the allowed roots")
        return real

    def is_root(self, path: Path) -> bool:
        return path in self.roots

    def describe(self) -> dict[str, object]:
        return {
            "workspace": str(self.workspace),
            "roots": [str(r) for r in self.roots],
            "allowedTools": None if self.allowed_tools is None else sorted(self.allowed_tools),
        }
