/* Linux backend: PulseAudio's asynchronous API, loaded with dlopen at run time.
 *
 * Installing edge needs no audio development package, and a machine without
 * libpulse still imports edge: opening a capture then fails with a message.
 * PipeWire's pulse server speaks the same protocol, so this covers it too.
 *   mic     -> the default source, or the named source
 *   system  -> the default sink's monitor (@DEFAULT_MONITOR@), or SINK.monitor
 *
 * Each capture has its own connection and its own threaded main loop (thread
 * name "edge-audio"). The stream's read callback runs on that thread and pushes
 * whole frames straight into the ring: one thread and one wake-up per fragment,
 * nothing else in between.
 */
#include "edge_audio_internal.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The few PulseAudio types and constants used here. Their layout and values are
 * part of PulseAudio's stable ABI (pulse/sample.h, pulse/def.h, pulse/context.h). */
typedef struct pa_threaded_mainloop pa_threaded_mainloop;
typedef struct pa_mainloop_api pa_mainloop_api;
typedef struct pa_context pa_context;
typedef struct pa_stream pa_stream;
typedef struct {
    int format; /* pa_sample_format_t */
    uint32_t rate;
    uint8_t channels;
} pa_sample_spec;
typedef struct {
    uint32_t maxlength, tlength, prebuf, minreq, fragsize;
} pa_buffer_attr;
#define PA_SAMPLE_S16LE 3
#define PA_CONTEXT_NOAUTOSPAWN 1
#define PA_CONTEXT_READY 4
#define PA_CONTEXT_FAILED 5
#define PA_CONTEXT_TERMINATED 6
#define PA_STREAM_READY 2
#define PA_STREAM_FAILED 3
#define PA_STREAM_TERMINATED 4
#define PA_STREAM_ADJUST_LATENCY 0x2000

typedef void (*context_cb)(pa_context *c, void *userdata);
typedef void (*stream_cb)(pa_stream *s, void *userdata);
typedef void (*read_cb)(pa_stream *s, size_t nbytes, void *userdata);

/* Every function this backend calls, resolved from libpulse.so.0. */
#define PULSE_FUNCTIONS(X)                                                                   \
    X(pa_threaded_mainloop *, pa_threaded_mainloop_new, (void))                              \
    X(int, pa_threaded_mainloop_start, (pa_threaded_mainloop *))                             \
    X(void, pa_threaded_mainloop_stop, (pa_threaded_mainloop *))                             \
    X(void, pa_threaded_mainloop_free, (pa_threaded_mainloop *))                             \
    X(void, pa_threaded_mainloop_lock, (pa_threaded_mainloop *))                             \
    X(void, pa_threaded_mainloop_unlock, (pa_threaded_mainloop *))                           \
    X(void, pa_threaded_mainloop_wait, (pa_threaded_mainloop *))                             \
    X(void, pa_threaded_mainloop_signal, (pa_threaded_mainloop *, int))                      \
    X(pa_mainloop_api *, pa_threaded_mainloop_get_api, (pa_threaded_mainloop *))             \
    X(pa_context *, pa_context_new, (pa_mainloop_api *, const char *))                       \
    X(void, pa_context_set_state_callback, (pa_context *, context_cb, void *))               \
    X(int, pa_context_connect, (pa_context *, const char *, int, const void *))              \
    X(int, pa_context_get_state, (pa_context *))                                             \
    X(int, pa_context_errno, (pa_context *))                                                 \
    X(void, pa_context_disconnect, (pa_context *))                                           \
    X(void, pa_context_unref, (pa_context *))                                                \
    X(pa_stream *, pa_stream_new, (pa_context *, const char *, const pa_sample_spec *,       \
                                   const void *))                                            \
    X(void, pa_stream_set_state_callback, (pa_stream *, stream_cb, void *))                  \
    X(void, pa_stream_set_read_callback, (pa_stream *, read_cb, void *))                     \
    X(int, pa_stream_connect_record, (pa_stream *, const char *, const pa_buffer_attr *,     \
                                      int))                                                  \
    X(int, pa_stream_get_state, (pa_stream *))                                               \
    X(int, pa_stream_peek, (pa_stream *, const void **, size_t *))                           \
    X(int, pa_stream_drop, (pa_stream *))                                                    \
    X(int, pa_stream_disconnect, (pa_stream *))                                              \
    X(void, pa_stream_unref, (pa_stream *))                                                  \
    X(const char *, pa_strerror, (int))

typedef struct {
    void *lib;
#define DECLARE(ret, name, args) ret(*name) args;
    PULSE_FUNCTIONS(DECLARE)
#undef DECLARE
    /* Named "edge-audio" when the library has it (PulseAudio 13 and later). */
    void (*pa_threaded_mainloop_set_name)(pa_threaded_mainloop *, const char *);

    edge_audio *a; /* NULL until open succeeds, while probing and once stopping */
    pa_threaded_mainloop *loop;
    pa_context *context;
    pa_stream *stream;
    int started; /* the loop's thread runs */
    unsigned char *partial;
    size_t partial_len, frame_bytes;
} pulse_state;

const char *edge_audio_backend(void) { return "pulseaudio"; }

static int pulse_load(pulse_state *s, char *err, size_t errlen) {
    s->lib = dlopen("libpulse.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!s->lib) {
        snprintf(err, errlen,
                 "libpulse.so.0 is not installed (install PulseAudio or PipeWire's pulse "
                 "client library, e.g. the libpulse0 package)");
        return -1;
    }
#define RESOLVE(ret, name, args)                                                             \
    *(void **)(&s->name) = dlsym(s->lib, #name);                                             \
    if (!s->name) {                                                                          \
        snprintf(err, errlen, "libpulse.so.0 lacks %s", #name);                              \
        dlclose(s->lib);                                                                     \
        s->lib = NULL;                                                                       \
        return -1;                                                                           \
    }
    PULSE_FUNCTIONS(RESOLVE)
#undef RESOLVE
    *(void **)(&s->pa_threaded_mainloop_set_name) =
        dlsym(s->lib, "pa_threaded_mainloop_set_name");
    return 0;
}

/* ---- callbacks: on the main loop's thread, with its lock held ------------------------ */

static void on_context_state(pa_context *c, void *userdata) {
    pulse_state *s = userdata;
    int state = s->pa_context_get_state(c);
    if ((state == PA_CONTEXT_FAILED || state == PA_CONTEXT_TERMINATED) && s->a)
        edge_audio_fail(s->a, "the sound server closed the connection: %s",
                        s->pa_strerror(s->pa_context_errno(c)));
    s->pa_threaded_mainloop_signal(s->loop, 0);
}

static void on_stream_state(pa_stream *st, void *userdata) {
    pulse_state *s = userdata;
    int state = s->pa_stream_get_state(st);
    if ((state == PA_STREAM_FAILED || state == PA_STREAM_TERMINATED) && s->a)
        edge_audio_fail(s->a, "the sound server stopped the stream: %s",
                        s->pa_strerror(s->pa_context_errno(s->context)));
    s->pa_threaded_mainloop_signal(s->loop, 0);
}

static void on_read(pa_stream *st, size_t nbytes, void *userdata) {
    pulse_state *s = userdata;
    (void)nbytes;
    for (;;) {
        const void *data = NULL;
        size_t len = 0;
        if (s->pa_stream_peek(st, &data, &len) < 0 || len == 0) return;
        /* data == NULL is a hole in the stream: nothing to copy, only to drop. */
        if (data && s->a && atomic_load(&s->a->running)) {
            const unsigned char *p = data;
            while (len > 0) {
                size_t take = s->frame_bytes - s->partial_len;
                if (take > len) take = len;
                memcpy(s->partial + s->partial_len, p, take);
                s->partial_len += take;
                p += take;
                len -= take;
                if (s->partial_len == s->frame_bytes) {
                    edge_audio_push(s->a, s->partial);
                    s->partial_len = 0;
                }
            }
        }
        s->pa_stream_drop(st);
    }
}

/* ---- open and close ------------------------------------------------------------------ */

static void pulse_free(pulse_state *s) {
    if (s->loop) {
        if (s->started) {
            s->pa_threaded_mainloop_lock(s->loop);
            if (s->stream) {
                s->pa_stream_set_read_callback(s->stream, NULL, NULL);
                s->pa_stream_set_state_callback(s->stream, NULL, NULL);
                s->pa_stream_disconnect(s->stream);
            }
            if (s->context) {
                s->pa_context_set_state_callback(s->context, NULL, NULL);
                s->pa_context_disconnect(s->context);
            }
            s->pa_threaded_mainloop_unlock(s->loop);
            s->pa_threaded_mainloop_stop(s->loop); /* joins the thread */
        }
        if (s->stream) s->pa_stream_unref(s->stream);
        if (s->context) s->pa_context_unref(s->context);
        s->pa_threaded_mainloop_free(s->loop);
    }
    if (s->lib) dlclose(s->lib);
    free(s->partial);
    free(s);
}

/* Connect a record stream (the main loop's thread runs when this returns 0). */
static pulse_state *pulse_open(edge_audio *a, int source, const char *device, int sample_rate,
                               int channels, int frame_bytes, char *err, size_t errlen) {
    if (source != EDGE_SOURCE_MIC && source != EDGE_SOURCE_SYSTEM) {
        snprintf(err, errlen, "unknown source %d", source);
        return NULL;
    }
    pulse_state *s = calloc(1, sizeof *s);
    if (!s || !(s->partial = malloc((size_t)frame_bytes))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->frame_bytes = (size_t)frame_bytes;
    if (pulse_load(s, err, errlen) != 0) {
        pulse_free(s);
        return NULL;
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
    const char *what = dev ? dev : "the default source";

    s->loop = s->pa_threaded_mainloop_new();
    if (!s->loop) {
        snprintf(err, errlen, "out of memory");
        pulse_free(s);
        return NULL;
    }
    if (s->pa_threaded_mainloop_set_name) s->pa_threaded_mainloop_set_name(s->loop, "edge-audio");
    s->context = s->pa_context_new(s->pa_threaded_mainloop_get_api(s->loop), "edge");
    if (!s->context) {
        snprintf(err, errlen, "out of memory");
        pulse_free(s);
        return NULL;
    }
    s->pa_context_set_state_callback(s->context, on_context_state, s);
    if (s->pa_context_connect(s->context, NULL, PA_CONTEXT_NOAUTOSPAWN, NULL) < 0) {
        snprintf(err, errlen, "cannot record from %s: %s", what,
                 s->pa_strerror(s->pa_context_errno(s->context)));
        pulse_free(s);
        return NULL;
    }
    s->pa_threaded_mainloop_lock(s->loop);
    if (s->pa_threaded_mainloop_start(s->loop) < 0) {
        s->pa_threaded_mainloop_unlock(s->loop);
        snprintf(err, errlen, "cannot start the sound server's event loop");
        pulse_free(s);
        return NULL;
    }
    s->started = 1;
    int failed = 0;
    for (;;) {
        int state = s->pa_context_get_state(s->context);
        if (state == PA_CONTEXT_READY) break;
        if (state == PA_CONTEXT_FAILED || state == PA_CONTEXT_TERMINATED) {
            failed = 1;
            break;
        }
        s->pa_threaded_mainloop_wait(s->loop);
    }
    if (!failed) {
        pa_sample_spec ss = {PA_SAMPLE_S16LE, (uint32_t)sample_rate, (uint8_t)channels};
        const char *name = source == EDGE_SOURCE_MIC ? "microphone" : "system audio";
        s->stream = s->pa_stream_new(s->context, name, &ss, NULL);
        failed = !s->stream;
    }
    if (!failed) {
        /* One frame per fragment: the server hands audio over as soon as a frame is ready. */
        pa_buffer_attr attr = {(uint32_t)-1, (uint32_t)-1, (uint32_t)-1, (uint32_t)-1,
                               (uint32_t)frame_bytes};
        s->pa_stream_set_state_callback(s->stream, on_stream_state, s);
        s->pa_stream_set_read_callback(s->stream, on_read, s);
        failed = s->pa_stream_connect_record(s->stream, dev, &attr, PA_STREAM_ADJUST_LATENCY) < 0;
    }
    while (!failed) {
        int state = s->pa_stream_get_state(s->stream);
        if (state == PA_STREAM_READY) break;
        if (state == PA_STREAM_FAILED || state == PA_STREAM_TERMINATED) failed = 1;
        else s->pa_threaded_mainloop_wait(s->loop);
    }
    if (failed) {
        snprintf(err, errlen, "cannot record from %s: %s", what,
                 s->pa_strerror(s->pa_context_errno(s->context)));
        s->pa_threaded_mainloop_unlock(s->loop);
        pulse_free(s);
        return NULL;
    }
    s->a = a; /* the callbacks report to the capture from here on */
    s->pa_threaded_mainloop_unlock(s->loop);
    return s;
}

static void pulse_stop(edge_audio *a) {
    pulse_state *s = a->backend;
    s->pa_threaded_mainloop_lock(s->loop);
    s->a = NULL; /* from here on, callbacks touch nothing of the capture */
    s->pa_threaded_mainloop_unlock(s->loop);
    pulse_free(s);
}

int edge_audio_probe(int source, const char *device, int sample_rate, int channels, char *err,
                     size_t errlen) {
    if (source == EDGE_SOURCE_PATTERN) return 0;
    pulse_state *s =
        pulse_open(NULL, source, device, sample_rate, channels, 2 * channels * sample_rate / 50,
                   err, errlen);
    if (!s) return -1;
    pulse_free(s);
    return 0;
}

int edge_backend_start(edge_audio *a, int source, const char *device, char *err, size_t errlen) {
    pulse_state *s =
        pulse_open(a, source, device, a->sample_rate, a->channels, a->frame_bytes, err, errlen);
    if (!s) return -1;
    a->backend = s;
    a->backend_stop = pulse_stop;
    return 0;
}
