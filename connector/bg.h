/* bg: blocking work off the loop's thread.
 *
 * A caller embeds a krib_bg_job_t in its own job record, sets run, and
 * starts it: run() executes on a short-lived helper thread, touching only
 * its own record (and whatever read-only state the caller promises not to
 * change meanwhile). The loop polls krib_bg_wake_fd() and takes finished
 * jobs with krib_bg_take(), on its own thread, in whatever order they
 * finished. Inline mode (the deterministic simulator) runs each job at
 * once on the caller's thread; it is taken like any other.
 *
 * Owned by one loop. krib_bg_destroy joins every job still running (each
 * bounded by the timeouts its run() uses) and hands none back: the caller
 * frees its records after (krib_bg_take until NULL first, then destroy).
 */
#ifndef KRIB_BG_H
#define KRIB_BG_H

#include <pthread.h>
#include <stddef.h>

typedef struct krib_bg krib_bg_t;

typedef struct krib_bg_job {
        void (*run)(struct krib_bg_job *j); /* on the helper thread */
        /* krib_bg's own. */
        struct krib_bg_job *next_done, *next_all;
        pthread_t thread;
        int threaded;
} krib_bg_job_t;

krib_bg_t *krib_bg_new(int inline_mode);
/* Joins what still runs; jobs not taken are the caller's to free (their
 * pointers come from krib_bg_take before destroy: call it until NULL after
 * krib_bg_wait_all). */
void krib_bg_destroy(krib_bg_t *b);

/* 0 started (or, inline, done), -1 no thread (nothing ran). */
int krib_bg_start(krib_bg_t *b, krib_bg_job_t *j);

/* A finished job (joined), or NULL. */
krib_bg_job_t *krib_bg_take(krib_bg_t *b);

/* Jobs started and not taken yet. */
size_t krib_bg_pending(const krib_bg_t *b);
/* Whether a finished job waits to be taken (no system call). */
int krib_bg_ready(krib_bg_t *b);

/* Readable when a job finished. */
int krib_bg_wake_fd(const krib_bg_t *b);

/* Blocks until every started job has finished (shutdown only). */
void krib_bg_wait_all(krib_bg_t *b);

#endif
