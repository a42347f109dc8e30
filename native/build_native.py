"""cffi (API mode) build of edge's audio shim into ``edge.capture._native``.

Run by setuptools at install time (``cffi_modules`` in setup.py). Linux builds
the PulseAudio backend (dlopen'd at run time, no -dev package needed); macOS
builds CoreAudio (microphone) and ScreenCaptureKit (system audio).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

CDEF = """
#define EDGE_SOURCE_MIC 0
#define EDGE_SOURCE_SYSTEM 1
#define EDGE_SOURCE_PATTERN 2
typedef struct edge_audio edge_audio;
typedef struct edge_ring edge_ring;
typedef struct {
    uint64_t frames_delivered;
    uint64_t frames_dropped;
    uint64_t frames_captured;
    int ended;
} edge_audio_counters;
edge_audio *edge_audio_open(int source, const char *device, int sample_rate, int channels,
                            int frame_samples, int ring_frames, char *err, size_t errlen);
int edge_audio_fd(edge_audio *a);
int edge_audio_read(edge_audio *a, void *buf, int max_frames, int64_t *t_ready_ns);
void edge_audio_counters_get(edge_audio *a, edge_audio_counters *out);
const char *edge_audio_last_error(edge_audio *a);
void edge_audio_close(edge_audio *a);
const char *edge_audio_backend(void);
int edge_audio_probe(int source, const char *device, int sample_rate, int channels, char *err,
                     size_t errlen);
edge_ring *edge_ring_new(int frame_bytes, int capacity);
int edge_ring_push(edge_ring *r, const void *frame, int64_t t_ns);
int edge_ring_pop(edge_ring *r, void *buf, int max_frames, int64_t *t_first_ns);
int edge_ring_count(edge_ring *r);
void edge_ring_free(edge_ring *r);
"""

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
