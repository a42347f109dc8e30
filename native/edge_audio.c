/* The portable core: ring, notification pipe, handle lifecycle, test pattern. */
#include "edge_audio_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- ring -------------------------------------------------------------------- */

struct edge_ring {
    int frame_bytes, capacity;
    atomic_uint_fast64_t head; /* frames written, only the producer stores it */
    atomic_uint_fast64_t tail; /* frames read, only the consumer stores it */
    int64_t *stamps;
    unsigned char *data;
};

edge_ring *edge_ring_new(int frame_bytes, int capacity) {
    if (frame_bytes <= 0 || capacity <= 0) return NULL;
    edge_ring *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->frame_bytes = frame_bytes;
    r->capacity = capacity;
    r->stamps = calloc((size_t)capacity, sizeof *r->stamps);
    r->data = malloc((size_t)frame_bytes * (size_t)capacity);
    if (!r->stamps || !r->data) {
        edge_ring_free(r);
        return NULL;
    }
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    return r;
}

void edge_ring_free(edge_ring *r) {
    if (!r) return;
    free(r->stamps);
    free(r->data);
    free(r);
}

int edge_ring_push(edge_ring *r, const void *frame, int64_t t_ns) {
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (head - tail >= (uint64_t)r->capacity) return 0;
    size_t slot = (size_t)(head % (uint64_t)r->capacity);
    memcpy(r->data + slot * (size_t)r->frame_bytes, frame, (size_t)r->frame_bytes);
    r->stamps[slot] = t_ns;
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
    return 1;
}

int edge_ring_pop(edge_ring *r, void *buf, int max_frames, int64_t *t_first_ns) {
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t ready = head - tail;
    int n = max_frames < 0 ? 0 : (ready < (uint64_t)max_frames ? (int)ready : max_frames);
    unsigned char *out = buf;
    for (int i = 0; i < n; i++) {
        size_t slot = (size_t)((tail + (uint64_t)i) % (uint64_t)r->capacity);
        if (i == 0 && t_first_ns) *t_first_ns = r->stamps[slot];
        memcpy(out + (size_t)i * (size_t)r->frame_bytes, r->data + slot * (size_t)r->frame_bytes,
               (size_t)r->frame_bytes);
    }
    atomic_store_explicit(&r->tail, tail + (uint64_t)n, memory_order_release);
    return n;
}

int edge_ring_count(edge_ring *r) {
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    return (int)(head - tail);
}

/* ---- helpers for backends ------------------------------------------------------ */

int64_t edge_audio_now_ns(void) {
    /* The clock Python's time.monotonic() reads on each platform. */
    struct timespec ts;
#if defined(__APPLE__)
    clock_gettime(CLOCK_UPTIME_RAW, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void edge_audio_name_thread(const char *name) {
#if defined(__APPLE__)
    pthread_setname_np(name);
#elif defined(__linux__)
    pthread_setname_np(pthread_self(), name);
#else
    (void)name;
#endif
}

static void notify(edge_audio *a) {
    /* EAGAIN means the pipe is full: the consumer already has a wake-up pending. */
    ssize_t ignored = write(a->notify_wr, "x", 1);
    (void)ignored;
}

static void push_one(edge_audio *a, const void *frame, int64_t t_ns) {
    atomic_fetch_add(&a->captured, 1);
    if (edge_ring_push(a->ring, frame, t_ns)) {
        /* Only a consumer that found the ring empty and is about to wait needs a byte. */
        if (atomic_exchange(&a->armed, 0)) notify(a);
    } else {
        atomic_fetch_add(&a->dropped, 1);
    }
}

void edge_audio_push(edge_audio *a, const void *frame) {
    pthread_mutex_lock(&a->taps_lock);
    if (!a->own_closed) push_one(a, frame, edge_audio_now_ns());
    /* Each ring's own stamp: the time the frame entered that ring. */
    for (int i = 0; i < a->ntaps; i++) push_one(a->taps[i], frame, edge_audio_now_ns());
    pthread_mutex_unlock(&a->taps_lock);
}

static void end_one(edge_audio *a, const char *error) {
    if (!atomic_load(&a->ended)) snprintf(a->error, sizeof a->error, "%s", error);
    atomic_store(&a->ended, 1);
    notify(a);
}

void edge_audio_fail(edge_audio *a, const char *fmt, ...) {
    char error[sizeof a->error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, sizeof error, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&a->taps_lock);
    end_one(a, error);
    for (int i = 0; i < a->ntaps; i++) end_one(a->taps[i], error);
    pthread_mutex_unlock(&a->taps_lock);
}

/* ---- the handle ---------------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *msg) {
    if (err && errlen) snprintf(err, errlen, "%s", msg);
}

/* A handle with its ring and notification pipe, not yet attached to a backend. */
static edge_audio *handle_new(int sample_rate, int channels, int frame_samples, int ring_frames,
                              char *err, size_t errlen) {
    edge_audio *a = calloc(1, sizeof *a);
    if (!a) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    a->sample_rate = sample_rate;
    a->channels = channels;
    a->frame_samples = frame_samples;
    a->frame_bytes = frame_samples * channels * 2;
    a->notify_rd = a->notify_wr = -1;
    atomic_init(&a->running, 1);
    atomic_init(&a->ended, 0);
    atomic_init(&a->armed, 1);
    atomic_init(&a->delivered, 0);
    atomic_init(&a->dropped, 0);
    atomic_init(&a->captured, 0);
    a->users = 1;
    a->ring = edge_ring_new(a->frame_bytes, ring_frames);
    int fds[2];
    if (!a->ring || pthread_mutex_init(&a->taps_lock, NULL) != 0) {
        set_err(err, errlen, "out of memory");
        edge_ring_free(a->ring);
        free(a);
        return NULL;
    }
    if (pipe(fds) != 0) {
        set_err(err, errlen, strerror(errno));
        pthread_mutex_destroy(&a->taps_lock);
        edge_ring_free(a->ring);
        free(a);
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    a->notify_rd = fds[0];
    a->notify_wr = fds[1];
    return a;
}

static void handle_free(edge_audio *a) {
    close(a->notify_rd);
    close(a->notify_wr);
    pthread_mutex_destroy(&a->taps_lock);
    edge_ring_free(a->ring);
    free(a->taps);
    free(a);
}

edge_audio *edge_audio_open(int source, const char *device, int sample_rate, int channels,
                            int frame_samples, int ring_frames, char *err, size_t errlen) {
    if (sample_rate < 8000 || sample_rate > 192000) {
        set_err(err, errlen, "unsupported sample rate");
        return NULL;
    }
    if (channels < 1 || channels > 2) {
        set_err(err, errlen, "unsupported channel count (1 or 2)");
        return NULL;
    }
    if (frame_samples <= 0 || ring_frames <= 0) {
        set_err(err, errlen, "frame length and ring size must be positive");
        return NULL;
    }
    edge_audio *a = handle_new(sample_rate, channels, frame_samples, ring_frames, err, errlen);
    if (!a) return NULL;
    int rc = source == EDGE_SOURCE_PATTERN ? edge_pattern_start(a, err, errlen)
                                           : edge_backend_start(a, source, device, err, errlen);
    if (rc != 0) {
        handle_free(a);
        return NULL;
    }
    return a;
}

edge_audio *edge_audio_open_tap(edge_audio *of, int ring_frames, char *err, size_t errlen) {
    if (ring_frames <= 0) {
        set_err(err, errlen, "the ring size must be positive");
        return NULL;
    }
    edge_audio *feed = of->feed ? of->feed : of;
    edge_audio *t = handle_new(feed->sample_rate, feed->channels, feed->frame_samples,
                               ring_frames, err, errlen);
    if (!t) return NULL;
    t->feed = feed;
    pthread_mutex_lock(&feed->taps_lock);
    if (feed->ntaps == feed->taps_cap) {
        int cap = feed->taps_cap ? 2 * feed->taps_cap : 8;
        edge_audio **taps = realloc(feed->taps, (size_t)cap * sizeof *taps);
        if (!taps) {
            pthread_mutex_unlock(&feed->taps_lock);
            set_err(err, errlen, "out of memory");
            handle_free(t);
            return NULL;
        }
        feed->taps = taps;
        feed->taps_cap = cap;
    }
    feed->taps[feed->ntaps++] = t;
    feed->users++;
    /* A capture that has already ended ends its new handle at once. */
    if (atomic_load(&feed->ended)) end_one(t, feed->error);
    pthread_mutex_unlock(&feed->taps_lock);
    return t;
}

int edge_audio_fd(edge_audio *a) { return a->notify_rd; }

int edge_audio_read(edge_audio *a, void *buf, int max_frames, int64_t *t_ready_ns) {
    int n = edge_ring_pop(a->ring, buf, max_frames, t_ready_ns);
    if (n < max_frames) {
        /* The ring is empty, and the caller will wait on the pipe: empty it, arm, and
         * look once more, so a frame pushed between the first look and the arming is
         * not left unsignalled. Arming in the same call as the read that empties the
         * ring saves the consumer a second call per wake-up; while frames keep coming
         * faster than they are read, reading costs no system call at all. */
        char sink[512];
        while (read(a->notify_rd, sink, sizeof sink) == (ssize_t)sizeof sink) {
        }
        atomic_store(&a->armed, 1);
        atomic_thread_fence(memory_order_seq_cst);
        n += edge_ring_pop(a->ring, (unsigned char *)buf + (size_t)n * (size_t)a->frame_bytes,
                           max_frames - n, n ? NULL : t_ready_ns);
        /* The end's byte may have gone with the others: keep the end signalled, for
         * the caller waits before its next read (which reports it). */
        if (n > 0 && atomic_load(&a->ended)) notify(a);
    }
    if (n == 0 && atomic_load(&a->ended)) {
        /* The backend may have pushed its last frames just before it ended. */
        n = edge_ring_pop(a->ring, buf, max_frames, t_ready_ns);
        if (n == 0) return -1;
    }
    atomic_fetch_add(&a->delivered, (uint64_t)n);
    return n;
}

void edge_audio_counters_get(edge_audio *a, edge_audio_counters *out) {
    out->frames_delivered = atomic_load(&a->delivered);
    out->frames_dropped = atomic_load(&a->dropped);
    out->frames_captured = atomic_load(&a->captured);
    out->ended = atomic_load(&a->ended);
}

const char *edge_audio_last_error(edge_audio *a) {
    return atomic_load(&a->ended) ? a->error : "";
}

void edge_audio_close(edge_audio *a) {
    if (!a) return;
    edge_audio *feed = a->feed ? a->feed : a;
    pthread_mutex_lock(&feed->taps_lock);
    if (a == feed) {
        feed->own_closed = 1;
    } else {
        for (int i = 0; i < feed->ntaps; i++) {
            if (feed->taps[i] == a) {
                feed->taps[i] = feed->taps[--feed->ntaps];
                break;
            }
        }
    }
    int last = --feed->users == 0;
    pthread_mutex_unlock(&feed->taps_lock);
    /* Not in the lock: the backend pushes with it held, and stopping waits for the backend. */
    if (a != feed) handle_free(a); /* no longer among the taps: nothing pushes into it */
    if (last) {
        atomic_store(&feed->running, 0);
        if (feed->backend_stop) feed->backend_stop(feed);
        handle_free(feed);
    }
}

/* ---- the test pattern: a running sample counter, paced in real time -------------- */

typedef struct {
    pthread_t thread;
} pattern_state;

static void sleep_until(int64_t deadline_ns) {
    for (;;) {
        int64_t left = deadline_ns - edge_audio_now_ns();
        if (left <= 0) return;
        struct timespec ts = {(time_t)(left / 1000000000), (long)(left % 1000000000)};
        if (nanosleep(&ts, NULL) == 0) return;
    }
}

static void *pattern_main(void *arg) {
    edge_audio *a = arg;
    edge_audio_name_thread("edge-audio");
    int samples = a->frame_samples * a->channels;
    int16_t *frame = malloc((size_t)a->frame_bytes);
    if (!frame) {
        edge_audio_fail(a, "out of memory");
        return NULL;
    }
    uint16_t counter = 0;
    int64_t period = (int64_t)a->frame_samples * 1000000000 / a->sample_rate;
    int64_t deadline = edge_audio_now_ns();
    while (atomic_load(&a->running)) {
        for (int i = 0; i < samples; i++) frame[i] = (int16_t)counter++;
        deadline += period;
        sleep_until(deadline);
        if (!atomic_load(&a->running)) break;
        edge_audio_push(a, frame);
    }
    free(frame);
    return NULL;
}

static void pattern_stop(edge_audio *a) {
    pattern_state *s = a->backend;
    pthread_join(s->thread, NULL);
    free(s);
}

int edge_pattern_start(edge_audio *a, char *err, size_t errlen) {
    pattern_state *s = calloc(1, sizeof *s);
    if (!s) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    a->backend = s;
    a->backend_stop = pattern_stop;
    int rc = pthread_create(&s->thread, NULL, pattern_main, a);
    if (rc != 0) {
        set_err(err, errlen, strerror(rc));
        free(s);
        return -1;
    }
#if defined(__linux__)
    /* Named before this returns (the thread also names itself, which on a busy
     * machine may come later), so the thread is "edge-audio" from the start. */
    pthread_setname_np(s->thread, "edge-audio");
#endif
    return 0;
}
