/* writer: applies key work to Redis (cluster or standalone) and reports, per
 * key, whether Redis acknowledged it.
 *
 * Keys are grouped by hash slot into multi-key UNLINKs (at most
 * redis.max_keys_per_command each); every master's commands are written
 * before any reply is read, so all masters work in parallel and one batch
 * costs one round trip per master. MOVED patches the slot map and schedules a
 * CLUSTER SLOTS refresh; ASK resends through ASKING to the importing node;
 * TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN and connection loss are retried
 * with capped, jittered backoff. Other error replies are final for their keys.
 *
 * Blocking I/O on hiredis contexts, driven by the one pipeline thread.
 */
#ifndef KRIB_WRITER_H
#define KRIB_WRITER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

typedef struct krib_writer krib_writer_t;

typedef struct {
        const char *key; /* borrowed until krib_writer_unlink() returns */
        size_t len;
} krib_wkey_t;

enum {
        KRIB_WKEY_PENDING = 0, /* not acknowledged (call was interrupted) */
        KRIB_WKEY_OK = 1,      /* Redis acknowledged the UNLINK */
        KRIB_WKEY_FAILED = 2,  /* Redis refused it for good (error logged) */
};

typedef struct {
        uint64_t round_trips; /* one per master per pipeline flush */
        uint64_t commands;
        uint64_t keys;
        uint64_t moved, ask, retries, reconnects, refreshes, errors;
} krib_writer_stats_t;

/* Connects lazily; conf is borrowed for the writer's lifetime. Returns NULL
 * with errstr only for invalid settings: an unreachable Redis is retried. */
krib_writer_t *krib_writer_new(const krib_conf_t *conf, char *errstr, size_t errstr_size);

/* While *stop is zero, retriable failures are retried without end (the
 * caller's offsets wait). Once *stop is set, retries continue for drain_ms,
 * then krib_writer_unlink() returns -1. stop is borrowed for the writer's
 * lifetime. */
void krib_writer_set_stop(krib_writer_t *w, volatile sig_atomic_t *stop, int64_t drain_ms);

/* UNLINKs keys[0..n). status[i] receives KRIB_WKEY_*. Returns 0 when every key
 * has a final status (OK or FAILED), -1 when interrupted by stop. */
int krib_writer_unlink(krib_writer_t *w, const krib_wkey_t *keys, size_t n, uint8_t *status);

/* Fetches the topology now (used at start-up to fail fast on bad seeds). */
int krib_writer_refresh(krib_writer_t *w, char *errstr, size_t errstr_size);

const krib_writer_stats_t *krib_writer_stats(const krib_writer_t *w);

void krib_writer_destroy(krib_writer_t *w);

#endif
