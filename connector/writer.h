/* writer: applies key work to Redis (cluster or standalone) and reports, per
 * key, whether Redis acknowledged it.
 *
 * Plain invalidations become multi-key UNLINKs. Versioned work goes through
 * the fence script (fence.lua, one EVALSHA per slot chunk), which compares
 * the event's version vector with the key's fence and writes atomically.
 *
 * Keys are grouped by hash slot into multi-key UNLINKs (at most
 * redis.max_keys_per_command each); every master's commands are written
 * before any reply is read, so all masters work in parallel and one batch
 * costs one round trip per master. MOVED patches the slot map and schedules a
 * CLUSTER SLOTS refresh; ASK resends through ASKING to the importing node;
 * TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN, OOM and connection loss are
 * retried by the policy of their class (retry.h); a class that spends its
 * budget opens the node's circuit breaker (breaker.h), and refresh failures,
 * CLUSTERDOWN and redirect storms the cluster's. An open breaker holds its
 * keys back (the caller's partitions stay paused) until a probe passes.
 * Other error replies are final for their keys.
 *
 * Blocking I/O on hiredis contexts, driven by the one pipeline thread.
 */
#ifndef KRIB_WRITER_H
#define KRIB_WRITER_H

#include <hiredis.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "event.h"

typedef struct krib_writer krib_writer_t;

typedef enum {
        KRIB_WOP_UNLINK = 0,  /* plain UNLINK, batched per slot */
        KRIB_WOP_DELETE = 1,  /* UNLINK through the version fence */
        KRIB_WOP_UPSERT = 2,  /* SET through the version fence */
        KRIB_WOP_PUBLISH = 3, /* PUBLISH ev->note to channel `key` */
        KRIB_WOP_XADD = 4,    /* XADD ev->note to stream `key`, MAXLEN ~ ev->stream_maxlen */
} krib_wop_kind_t;

typedef struct {
        const char *key; /* borrowed until krib_writer_apply() returns */
        size_t len;
        uint8_t kind;           /* krib_wop_kind_t */
        const krib_event_t *ev; /* DELETE/UPSERT: version, value, ttl (borrowed) */
} krib_wop_t;

enum {
        KRIB_WOP_PENDING = 0,     /* not acknowledged (call was interrupted) */
        KRIB_WOP_OK = 1,          /* Redis acknowledged it */
        KRIB_WOP_FAILED = 2,      /* Redis refused it for good (error logged) */
        KRIB_WOP_STALE = 3,       /* the fence already held this or a newer version */
        KRIB_WOP_INVALIDATED = 4, /* concurrent UPSERT: key unlinked, fence merged */
};

typedef struct {
        uint64_t round_trips; /* one per master per pipeline flush */
        uint64_t commands;
        uint64_t keys;    /* keys acknowledged (any final outcome but FAILED) */
        uint64_t scripts; /* fence script calls */
        uint64_t fence_stale, fence_concurrent;
        uint64_t moved, ask, retries, reconnects, refreshes, errors;
        uint64_t splits;     /* fenced chunks resent key by key after a script error */
        uint64_t wait_short; /* rounds whose WAIT saw too few replicas (keys resent) */
        int healthy;         /* last round (or refresh) had no connection/transient trouble */
        /* Keys per round trip: counts with <= 2^i keys (i < 14), then more. */
        uint64_t keys_per_rt[15];
        uint64_t rt_keys_sum;    /* keys sent, over all round trips */
        uint8_t cluster_breaker; /* krib_breaker_state_t of the cluster breaker */
        uint64_t cluster_breaker_entered[3];
} krib_writer_stats_t;

#define KRIB_WRITER_RT_BUCKETS 10
extern const double krib_writer_rt_bounds_s[KRIB_WRITER_RT_BUCKETS];

/* Per Redis node: round trips, error replies and connection failures, and
 * round-trip time (flush start to last reply) as cumulative buckets. */
typedef struct {
        char addr[80];
        uint64_t round_trips, errors, conn_failures;
        uint64_t rt_le[KRIB_WRITER_RT_BUCKETS];
        double rt_sum_s;
        uint8_t breaker; /* krib_breaker_state_t */
        uint64_t breaker_entered[3];
} krib_writer_node_t;

/* Copies up to max nodes' counters; returns how many. */
int krib_writer_nodes(const krib_writer_t *w, krib_writer_node_t *out, int max);

/* Connects lazily; conf is borrowed for the writer's lifetime. Returns NULL
 * with errstr only for invalid settings: an unreachable Redis is retried. */
krib_writer_t *krib_writer_new(const krib_conf_t *conf, char *errstr, size_t errstr_size);

/* While *stop is zero, retriable failures are retried without end (the
 * caller's offsets wait). Once *stop is set, retries continue for drain_ms,
 * then krib_writer_apply() returns -1. stop is borrowed for the writer's
 * lifetime. */
void krib_writer_set_stop(krib_writer_t *w, volatile sig_atomic_t *stop, int64_t drain_ms);

/* Called from inside krib_writer_apply() while it waits to retry, about
 * every 50 ms, so the caller can keep its Kafka consumer served. It must not
 * call back into the writer. */
typedef void(krib_writer_tick_cb)(void *opaque);
void krib_writer_set_tick(krib_writer_t *w, krib_writer_tick_cb *cb, void *opaque);

/* Applies ops[0..n); at most one UNLINK/DELETE/UPSERT op per key (the caller
 * coalesces); PUBLISH/XADD ops are sent one command each, in order per slot.
 * status[i] receives KRIB_WOP_*. Returns 0 when every op has a final status,
 * -1 when interrupted by stop. */
int krib_writer_apply(krib_writer_t *w, const krib_wop_t *ops, size_t n, uint8_t *status);

/* Masters a key pattern can live on: the owner of its slot when slot >= 0,
 * else every master (standalone: the one node). Copies up to max
 * "host:port" names (as krib connects to them) into addrs; returns how many,
 * or -1 when no slot map is known yet. */
int krib_writer_masters(krib_writer_t *w, int slot, char (*addrs)[80], int max);

/* One SCAN step on node addr ("host:port" from krib_writer_masters()):
 * SCAN cursor MATCH pattern COUNT count. On success returns 0, writes the
 * next cursor ("0": done) and hands over the reply's key array (*keys, free
 * with freeReplyObject). -1 when the node failed or answered a transient
 * error (the caller retries later, perhaps on a new slot map), -2 when it
 * refused for good (NOPERM, an unknown command): retrying cannot help. No
 * retries happen here. */
int krib_writer_scan(krib_writer_t *w, const char *addr, const char *cursor, const char *pattern,
                     long count, char *next, size_t next_size, redisReply **keys);

/* Fetches the topology now (used at start-up to fail fast on bad seeds). */
int krib_writer_refresh(krib_writer_t *w, char *errstr, size_t errstr_size);

const krib_writer_stats_t *krib_writer_stats(const krib_writer_t *w);

void krib_writer_destroy(krib_writer_t *w);

#endif
