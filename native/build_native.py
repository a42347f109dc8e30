"""cffi (API mode) build of edge's audio shim into ``edge.capture._native``.

Run by setuptools at install time (``cffi_modules`` in setup.py). Linux builds
the PulseAudio backend (dlopen'd at run time, no -dev package needed); macOS
builds CoreAudio (microphone) and ScreenCaptureKit (system audio).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

def header_cdef(header: Path) -> str:
    """The ABI declarations of ``header`` as cffi's cdef wants them.

    Comments, include guards and includes go; the integer ``#define``s stay.
    """
    text = re.sub(r"/\*.*?\*/", "", header.read_text(), flags=re.S)
    lines = [
        line
        for line in text.splitlines()
        if not line.lstrip().startswith("#") or re.match(r"#define EDGE_\w+ \d+$", line.strip())
    ]
    return "\n".join(lines)


CDEF = header_cdef(HERE / "edge_audio.h")

ffibuilder = FFI()
ffibuilder.cdef(CDEF)

if sys.platform == "darwin":
    sources = ["edge_audio.c", "backend_macos.m"]
    extra = {
        "extra_compile_args": ["-fobjc-arc", "-mmacosx-version-min=13.0"],
        "extra_link_args": [
            "-framework", "AudioToolbox", "-framework", "CoreAudio",
            "-framework", "CoreMedia", "-framework", "ScreenCaptureKit",
            "-framework", "Foundation", "-framework", "AVFoundation",
            "-framework", "CoreGraphics",
        ],
    }
else:
    sources = ["edge_audio.c", "backend_pulse.c"]
    extra = {"libraries": ["dl", "pthread"], "extra_compile_args": ["-std=c11", "-O2"]}

ffibuilder.set_source(
    "edge.capture._native",
    '#include "edge_audio.h"',
    sources=[os.path.relpath(HERE / s) for s in sources],
    include_dirs=[str(HERE)],
    define_macros=[("_GNU_SOURCE", "1")],
    **extra,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
