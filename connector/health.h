/* health: Redis as its operators see it — INFO of every master, polled at
 * redis.health_interval_ms on connections of its own by a thread of its
 * own, so a slow or blackholed master never holds the pipeline loop.
 *
 * The pipeline tells it which masters exist (krib_health_set_masters, from
 * the writer's slot map) and reads back copies (krib_health_snapshot) for
 * /metrics and the memory guard. Parsing INFO, the skew figures and the
 * guard's verdict are pure functions, tested without a server.
 *
 * Owns its thread, its connections and its TLS context.
 */
#ifndef KRIB_HEALTH_H
#define KRIB_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "writer.h"

typedef struct {
        char addr[KRIB_ADDR_MAX];
        int up;            /* the last INFO was answered */
        int64_t polled_ms; /* wall clock of the last answer */
        int slots;         /* hash slots owned (from the writer's map) */
        uint64_t used_memory, maxmemory;
        char policy[24]; /* maxmemory_policy */
        uint64_t evicted_keys, expired_keys, rejected_connections;
        uint64_t ops_per_sec, connected_clients, blocked_clients;
        uint64_t tracking_clients, tracking_total_keys, pubsub_channels;
        uint64_t keys; /* over every dbN */
} krib_health_master_t;

/* How far the busiest master is above the mean of the masters that
 * answered: max/mean - 1 (0 with fewer than two, or a zero mean). */
typedef struct {
        double memory, ops, keys, slots;
} krib_health_skew_t;

/* Fills the INFO fields of out from an INFO reply (other fields kept).
 * Returns 0, or -1 when the text has no used_memory (not an INFO reply). */
int krib_health_parse_info(const char *info, size_t len, krib_health_master_t *out);

void krib_health_skew(const krib_health_master_t *m, size_t n, krib_health_skew_t *out);

/* Whether a master's maxmemory-policy can answer OOM to a write (noeviction,
 * volatile-*: with no volatile key left to evict) rather than evict. */
int krib_health_policy_can_oom(const char *policy);

/* The guard's verdict: the index of the first answering master whose
 * used_memory is above percent of its maxmemory under a policy that can
 * answer OOM, or -1 (percent 0: never). */
int krib_health_guard(const krib_health_master_t *m, size_t n, int64_t percent);

typedef struct krib_health krib_health_t;

/* Starts the poller (interval 0: NULL without error, nothing polled). NULL
 * with errstr on failure. conf is borrowed for the poller's lifetime. */
krib_health_t *krib_health_new(const krib_conf_t *conf, char *errstr, size_t errstr_size);

/* The masters to poll, with their slot counts (copied). */
void krib_health_set_masters(krib_health_t *h, const char (*addrs)[KRIB_ADDR_MAX], const int *slots,
                             size_t n);

/* Copies the last figures into *out (grown, *cap entries); returns how
 * many, or -1 out of memory. h NULL: 0. */
int krib_health_snapshot(krib_health_t *h, krib_health_master_t **out, size_t *cap);

/* Stops the thread (waits for a poll in progress, bounded by the
 * timeouts) and frees. Accepts NULL. */
void krib_health_destroy(krib_health_t *h);

#endif
