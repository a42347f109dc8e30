/* edge_audio: the C ABI every capture backend sits behind.
 *
 * A capture is an opaque handle. The backend's own thread writes whole frames
 * (frame_samples * channels interleaved signed 16-bit little-endian samples)
 * into a single-producer/single-consumer ring. The consumer calls
 * edge_audio_read, which copies whole frames out; when it finds the ring
 * empty it arms the handle and returns 0, and the consumer waits for the
 * pipe's read end to become readable: the next frame pushed (or the end)
 * writes one byte. While frames keep coming, reading costs no system call.
 * Nothing here polls, and nothing calls back into Python.
 *
 * Backends: PulseAudio's asynchronous API on Linux (loaded with dlopen at run time,
 * so it also works against PipeWire's pulse server), CoreAudio for the
 * microphone and ScreenCaptureKit for system audio on macOS, and a portable
 * test pattern (a running sample counter) for checking the pipeline itself.
 */
#ifndef EDGE_AUDIO_H
#define EDGE_AUDIO_H

#include <stddef.h>
#include <stdint.h>

#define EDGE_SOURCE_MIC 0
#define EDGE_SOURCE_SYSTEM 1
#define EDGE_SOURCE_PATTERN 2

typedef struct edge_audio edge_audio;
typedef struct edge_ring edge_ring;

typedef struct {
    uint64_t frames_delivered; /* frames the consumer has read */
    uint64_t frames_dropped;   /* frames the backend produced while the ring was full */
    uint64_t frames_captured;  /* frames the backend produced in all */
    int ended;                 /* the backend stopped on its own (error or end of stream) */
} edge_audio_counters;

/* Open a capture. device may be NULL (the default for that source). On failure
 * returns NULL and writes a message into err (errlen bytes, NUL-terminated). */
edge_audio *edge_audio_open(int source, const char *device, int sample_rate, int channels,
                            int frame_samples, int ring_frames, char *err, size_t errlen);

/* Another handle on the capture behind a (a handle edge_audio_open or this
 * returned, still open): its own ring, descriptor and counters, filled with
 * every frame the capture produces from now on, without a second connection to
 * the sound server. The capture runs until its last handle is closed; when it
 * ends, every handle on it ends. On failure returns NULL and writes a message
 * into err. */
edge_audio *edge_audio_open_tap(edge_audio *a, int ring_frames, char *err, size_t errlen);

/* The descriptor that becomes readable when frames (or the end) are ready. */
int edge_audio_fd(edge_audio *a);

/* Copy up to max_frames whole frames into buf (max_frames * frame bytes) without
 * blocking. Returns the number copied, 0 when none is ready, or -1 when the ring
 * is empty and the backend has ended (edge_audio_last_error says why). Fewer
 * than max_frames means the ring was left empty and the handle armed: wait for
 * the descriptor, readable when the next frame (or the end) comes, before
 * reading again.
 * *t_ready_ns receives the monotonic time (what Python's time.monotonic reads) the first copied frame entered
 * the ring. */
int edge_audio_read(edge_audio *a, void *buf, int max_frames, int64_t *t_ready_ns);

void edge_audio_counters_get(edge_audio *a, edge_audio_counters *out);

/* The backend's last error as text ("" when there is none). */
const char *edge_audio_last_error(edge_audio *a);

/* Close a handle, exactly once: on any handle edge_audio_open or edge_audio_open_tap
 * returned. Closing the last handle on a capture stops its backend, joins its
 * thread and frees everything. */
void edge_audio_close(edge_audio *a);

/* Whether a capture of source/device could be opened now (the sound server is
 * there, the device exists, permission is granted), without starting one:
 * 0 if so, else -1 with a message in err. */
int edge_audio_probe(int source, const char *device, int sample_rate, int channels, char *err,
                     size_t errlen);

/* The name of the backend compiled in for EDGE_SOURCE_MIC / EDGE_SOURCE_SYSTEM. */
const char *edge_audio_backend(void);

/* The ring on its own, for tests: frames of frame_bytes bytes, capacity frames. */
edge_ring *edge_ring_new(int frame_bytes, int capacity);
int edge_ring_push(edge_ring *r, const void *frame, int64_t t_ns); /* 1 stored, 0 full */
int edge_ring_pop(edge_ring *r, void *buf, int max_frames, int64_t *t_first_ns);
int edge_ring_count(edge_ring *r);
void edge_ring_free(edge_ring *r);

#endif
