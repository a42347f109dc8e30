"""The built-in tools.

Modules:
    shell  -- ``terminal`` (a shell command) and ``code`` (python, node or bash source)
    files  -- ``file_read``, ``file_write``, ``file_ops``
    search -- ``grep``
"""

from __future__ import annotations

from typing import Final

from ..registry import ToolSpec
from .files import FILE_OPS, FILE_READ, FILE_WRITE
from .search import GREP
from .shell import CODE, TERMINAL

BUILTIN_TOOLS: Final[tuple[ToolSpec, ...]] = (TERMINAL, CODE, FILE_READ, FILE_WRITE, FILE_OPS, GREP)

__all__ = ["BUILTIN_TOOLS"]
