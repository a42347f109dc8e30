/* Linux backend: PulseAudio's simple API, loaded with dlopen at run time.
 *
 * Installing edge needs no audio development package, and a machine without
 * libpulse still imports edge: opening a capture then fails with a message.
 * PipeWire's pulse server speaks the same protocol, so this covers it too.
 *   mic     -> the default source, or the named source
 *   system  -> the default sink's monitor (@DEFAULT_MONITOR@), or SINK.monitor
 */
#include "edge_audio_internal.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The few PulseAudio types the simple API needs; their layout is part of
 * PulseAudio's stable ABI (pulse/sample.h, pulse/def.h). */
typedef struct pa_simple pa_simple;
typedef struct {
    int format; /* pa_sample_format_t */
    uint32_t rate;
    uint8_t channels;
} pa_sample_spec;
typedef struct {
    uint32_t maxlength, tlength, prebuf, minreq, fragsize;
} pa_buffer_attr;
#define PA_SAMPLE_S16LE 3
#define PA_STREAM_RECORD 2

typedef pa_simple *(*simple_new_fn)(const char *server, const char *name, int dir,
                                    const char *dev, const char *stream_name,
                                    const pa_sample_spec *ss, const void *map,
                                    const pa_buffer_attr *attr, int *error);
typedef int (*simple_read_fn)(pa_simple *s, void *data, size_t bytes, int *error);
typedef void (*simple_free_fn)(pa_simple *s);
typedef const char *(*strerror_fn)(int error);

typedef struct {
    void *lib;
    simple_new_fn simple_new;
    simple_read_fn simple_read;
    simple_free_fn simple_free;
    strerror_fn pa_strerror;
    pa_simple *stream;
    pthread_t thread;
} pulse_state;

const char *edge_audio_backend(void) { return "pulseaudio"; }

static void *pulse_main(void *arg) {
    edge_audio *a = arg;
    pulse_state *s = a->backend;
    edge_audio_name_thread("edge-audio");
    unsigned char *frame = malloc((size_t)a->frame_bytes);
    if (!frame) {
        edge_audio_fail(a, "out of memory");
        return NULL;
    }
    /* pa_simple_read returns after one frame of audio: close waits at most that long. */
    while (atomic_load(&a->running)) {
        int error = 0;
        if (s->simple_read(s->stream, frame, (size_t)a->frame_bytes, &error) < 0) {
            edge_audio_fail(a, "the sound server stopped the stream: %s", s->pa_strerror(error));
            break;
        }
        if (!atomic_load(&a->running)) break;
        edge_audio_push(a, frame);
    }
    free(frame);
    return NULL;
}

static void pulse_stop(edge_audio *a) {
    pulse_state *s = a->backend;
    pthread_join(s->thread, NULL);
    s->simple_free(s->stream);
    dlclose(s->lib);
    free(s);
}

/* Load the library and connect a record stream into s (no thread yet). */
static int pulse_connect(pulse_state *s, int source, const char *device, int sample_rate,
                         int channels, int frame_bytes, char *err, size_t errlen) {
    if (source != EDGE_SOURCE_MIC && source != EDGE_SOURCE_SYSTEM) {
        snprintf(err, errlen, "unknown source %d", source);
        return -1;
    }
    s->lib = dlopen("libpulse-simple.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!s->lib) {
        snprintf(err, errlen,
                 "libpulse-simple.so.0 is not installed (install PulseAudio or PipeWire's "
                 "pulse client library, e.g. the libpulse0 package)");
        return -1;
    }
    s->simple_new = (simple_new_fn)dlsym(s->lib, "pa_simple_new");
    s->simple_read = (simple_read_fn)dlsym(s->lib, "pa_simple_read");
    s->simple_free = (simple_free_fn)dlsym(s->lib, "pa_simple_free");
    s->pa_strerror = (strerror_fn)dlsym(s->lib, "pa_strerror");
    if (!s->simple_new || !s->simple_read || !s->simple_free || !s->pa_strerror) {
        snprintf(err, errlen, "libpulse-simple.so.0 lacks the simple API");
        dlclose(s->lib);
        return -1;
    }
    char monitor[256];
    const char *dev = device && *device ? device : NULL;
    if (source == EDGE_SOURCE_SYSTEM) {
        if (dev) {
            snprintf(monitor, sizeof monitor, "%s.monitor", dev);
            dev = monitor;
        } else {
            dev = "@DEFAULT_MONITOR@";
        }
    }
    pa_sample_spec ss = {PA_SAMPLE_S16LE, (uint32_t)sample_rate, (uint8_t)channels};
    /* One frame per fragment: the server hands audio over as soon as a frame is ready. */
    pa_buffer_attr attr = {(uint32_t)-1, (uint32_t)-1, (uint32_t)-1, (uint32_t)-1,
                           (uint32_t)frame_bytes};
    int error = 0;
    const char *stream_name = source == EDGE_SOURCE_MIC ? "microphone" : "system audio";
    s->stream = s->simple_new(NULL, "edge", PA_STREAM_RECORD, dev, stream_name, &ss, NULL,
                              &attr, &error);
    if (!s->stream) {
        snprintf(err, errlen, "cannot record from %s: %s", dev ? dev : "the default source",
                 s->pa_strerror(error));
        dlclose(s->lib);
        return -1;
    }
    return 0;
}

int edge_audio_probe(int source, const char *device, int sample_rate, int channels, char *err,
                     size_t errlen) {
    if (source == EDGE_SOURCE_PATTERN) return 0;
    pulse_state s = {0};
    if (pulse_connect(&s, source, device, sample_rate, channels, 2 * channels * sample_rate / 50,
                      err, errlen) != 0)
        return -1;
    s.simple_free(s.stream);
    dlclose(s.lib);
    return 0;
}

int edge_backend_start(edge_audio *a, int source, const char *device, char *err, size_t errlen) {
    pulse_state *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (pulse_connect(s, source, device, a->sample_rate, a->channels, a->frame_bytes, err,
                      errlen) != 0) {
        free(s);
        return -1;
    }
    a->backend = s;
    a->backend_stop = pulse_stop;
    int rc = pthread_create(&s->thread, NULL, pulse_main, a);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the capture thread: %s", strerror(rc));
        s->simple_free(s->stream);
        dlclose(s->lib);
        free(s);
        a->backend = NULL;
        a->backend_stop = NULL;
        return -1;
    }
    return 0;
}
