"""cffi (API mode) build of ``edge.tools._beneath``: openat2(2) for the file tools.

Run by setuptools at install time (``cffi_modules`` in setup.py). On Linux
``edge_open_beneath`` calls openat2 with ``RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS``;
elsewhere it returns ``-ENOSYS`` and ``edge.tools.beneath`` walks the path itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

#: The one function: a descriptor for ``path`` beneath ``dirfd``, or ``-errno``.
CDEF = "int edge_open_beneath(int dirfd, const char *path, int flags, int mode);"

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "edge.tools._beneath",
    CDEF,
    sources=[os.path.relpath(HERE / "edge_beneath.c")],
    define_macros=[("_GNU_SOURCE", "1")],
    extra_compile_args=["-O2"] if os.name == "posix" else [],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
