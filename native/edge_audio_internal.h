/* Shared between the portable core (edge_audio.c) and the backends. */
#ifndef EDGE_AUDIO_INTERNAL_H
#define EDGE_AUDIO_INTERNAL_H

#include "edge_audio.h"

#include <pthread.h>
#include <stdatomic.h>

struct edge_audio {
    edge_ring *ring;
    int notify_rd, notify_wr;  /* pipe: a byte when the consumer waits and a frame comes, and at the end */
    atomic_int armed;          /* set by the consumer before it waits on notify_rd */
    int frame_bytes;
    int sample_rate, channels, frame_samples;
    atomic_int running;        /* cleared by close: the backend stops producing */
    atomic_int ended;          /* set by the backend when it stops on its own */
    atomic_uint_fast64_t delivered, dropped, captured;
    char error[256];           /* written once by the backend before it sets ended */
    void *backend;             /* the backend's own state */
    void (*backend_stop)(edge_audio *a); /* stops and joins the backend, frees its state */
    /* Sharing one backend (edge_audio_open_tap): the backend fills the rings of the
     * handle it was started for (the feed) and of every tap opened on it. */
    edge_audio *feed;          /* a tap: the handle whose backend fills its ring; NULL otherwise */
    pthread_mutex_t taps_lock; /* a feed: guards what follows (the backend holds it to push) */
    edge_audio **taps;
    int ntaps, taps_cap;
    int users;                 /* a feed: open handles on its backend, itself included */
    int own_closed;            /* a feed: its own handle is closed; the backend runs on for taps */
};

/* Called by backends from their audio thread, with the handle they were started for:
 * push and fail reach its taps too. */
void edge_audio_push(edge_audio *a, const void *frame);
void edge_audio_fail(edge_audio *a, const char *fmt, ...);
int64_t edge_audio_now_ns(void);
void edge_audio_name_thread(const char *name);

/* Each backend: start producing into a, or write err and return -1. */
int edge_backend_start(edge_audio *a, int source, const char *device, char *err, size_t errlen);
int edge_pattern_start(edge_audio *a, char *err, size_t errlen);

#endif
