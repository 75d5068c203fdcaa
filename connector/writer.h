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
 * Non-blocking: work is submitted as jobs (krib_writer_submit), written
 * to every master's connection at once and answered as replies arrive
 * (krib_writer_step, driven by the caller's loop, which polls the sockets
 * from krib_writer_pollfds). Several jobs may be in flight; a key's op
 * waits while an earlier job's op on the same key is unanswered, so order
 * per key holds. Retries are timed per op, so one failing master holds back
 * only the ops it owns. Control work never runs on the caller's thread:
 * connecting (with AUTH and the first SCRIPT LOAD), CLUSTER SLOTS, breaker
 * probes and SCAN pages run on helper threads (bg.h), whose completions
 * wake the loop through a descriptor in the poll set; a later SCRIPT LOAD
 * is pipelined like any command. Only krib_writer_refresh (start-up) and
 * krib_writer_destroy wait for them. Owned by the one pipeline thread.
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
        /* Through the version fence, every mode: UNLINK unless the fence
         * already holds this version or a newer one (an older event's keys:
         * what a newer event covered stays, what it did not name goes). */
        KRIB_WOP_INVALIDATE = 5,
} krib_wop_kind_t;

typedef struct {
        const char *key; /* borrowed until its job is released or cancelled */
        size_t len;
        uint8_t kind;           /* krib_wop_kind_t */
        const krib_event_t *ev; /* DELETE/UPSERT: version, value, ttl (borrowed) */
} krib_wop_t;

enum {
        KRIB_WOP_PENDING = 0,     /* not acknowledged (call was interrupted) */
        KRIB_WOP_OK = 1,          /* Redis acknowledged it */
        KRIB_WOP_FAILED = 2,      /* Redis refused it for good (error logged) */
        KRIB_WOP_STALE = 3,       /* the fence already held this or a newer version */
        KRIB_WOP_INVALIDATED = 4, /* concurrent UPSERT (or no known version): key unlinked */
        KRIB_WOP_UNCACHED = 5,    /* redis.fence=versioned: not cached, nothing written */
};

typedef struct {
        uint64_t round_trips; /* one per master per pipeline flush */
        uint64_t commands;
        uint64_t keys; /* key ops (UNLINK/DELETE/UPSERT) answered: any final outcome but FAILED */
        uint64_t fanouts; /* PUBLISH/XADD ops acknowledged */
        uint64_t scripts; /* fence script calls */
        uint64_t fence_stale, fence_concurrent, uncached;
        uint64_t moved, ask, retries, reconnects, refreshes, errors;
        uint64_t splits;     /* fenced chunks resent key by key after a script error */
        uint64_t wait_short; /* rounds whose WAIT saw too few replicas (keys resent) */
        int healthy;         /* last round (or refresh) had no connection/transient trouble */
        /* Keys per round trip: counts with <= 2^i keys (i < 14), then more. */
        uint64_t keys_per_rt[15];
        uint64_t rt_keys_sum;    /* keys sent, over all round trips */
        uint8_t cluster_breaker; /* krib_breaker_state_t of the cluster breaker */
        uint64_t inflight_ops;   /* ops on the wire (or awaiting WAIT) now */
        uint64_t queued_ops;     /* ops waiting to be sent (retry, breaker, key order) */
        uint64_t cluster_breaker_entered[3];
} krib_writer_stats_t;

#define KRIB_WRITER_RT_BUCKETS 10
extern const double krib_writer_rt_bounds_s[KRIB_WRITER_RT_BUCKETS];

/* A node's "host:port": a DNS name (up to 253) and a port, with room. */
#define KRIB_ADDR_MAX 272

/* Per Redis node: round trips, error replies and connection failures, and
 * round-trip time (flush start to last reply) as cumulative buckets. */
typedef struct {
        char addr[KRIB_ADDR_MAX];
        uint64_t round_trips, errors, conn_failures;
        uint64_t rt_le[KRIB_WRITER_RT_BUCKETS];
        double rt_sum_s;
        uint8_t breaker; /* krib_breaker_state_t */
        uint64_t breaker_entered[3];
        /* Error replies and connection failures by krib_err_class_t (retry.h;
         * redirect counts MOVED/ASK replies), [KRIB_ERR_CLASSES]: final. */
        uint64_t err_class[6];
} krib_writer_node_t;

/* Copies every node's counters into *out (grown as needed, *cap entries);
 * returns how many, or -1 out of memory. */
int krib_writer_nodes(const krib_writer_t *w, krib_writer_node_t **out, size_t *cap);

/* Connects lazily; conf is borrowed for the writer's lifetime. Returns NULL
 * with errstr only for invalid settings: an unreachable Redis is retried. */
krib_writer_t *krib_writer_new(const krib_conf_t *conf, char *errstr, size_t errstr_size);

/* Jobs in flight at most (the pipeline's batches, their fan-out, sweeps). */
#define KRIB_WRITER_JOBS 1000

/* Submits ops[0..n) as one job; at most one UNLINK/DELETE/UPSERT op per key
 * within a job (the caller coalesces); PUBLISH/XADD ops are sent one
 * command each, in order per slot. status[i] is set to KRIB_WOP_PENDING now
 * and to its final KRIB_WOP_* when Redis answered for good. ops' keys and
 * events and status are borrowed until the job is released or cancelled.
 * Nothing is sent before the next krib_writer_step(). Returns the job id, or
 * -1 when out of memory or KRIB_WRITER_JOBS are in flight. Retriable
 * failures are retried without end: the caller decides when to give up
 * (krib_writer_job_cancel). */
int krib_writer_submit(krib_writer_t *w, const krib_wop_t *ops, size_t n, uint8_t *status);

/* Ops of the job without a final status yet. */
size_t krib_writer_job_left(const krib_writer_t *w, int job);

/* Frees a finished job's slot (cancels it if it is not finished). */
void krib_writer_job_release(krib_writer_t *w, int job);

/* Gives up a job: unsent ops are dropped, replies for sent ones are
 * ignored; the caller's memory is not touched again. */
void krib_writer_job_cancel(krib_writer_t *w, int job);

/* Gives up op i of a live job (its partition was revoked, say): not sent
 * if it was not yet, not retried if it was; it stays in its key's order
 * until the ops before it are final, so no later op overtakes them. Its
 * status stays KRIB_WOP_PENDING unless Redis already answered it. */
void krib_writer_op_cancel(krib_writer_t *w, int job, size_t i);

/* Jobs submitted and not yet released (cancelled ones until answered). */
size_t krib_writer_jobs_live(const krib_writer_t *w);

/* One pass without waiting: reads the replies that arrived, applies them,
 * refreshes the slot map or probes breakers when due, and sends every op
 * that may go now. Returns -1 when out of memory. */
int krib_writer_step(krib_writer_t *w);

/* Whether no master could take work now: every one's breaker is open or
 * its connection is down (or no slot map is known). */
int krib_writer_failing(const krib_writer_t *w);

/* The sockets to watch (POLLIN for replies due, POLLOUT for output the
 * socket has not taken yet) until the next step: fills up to max and
 * returns how many there are, which may be more than max (call again with
 * room for all; fds may be NULL with max 0 to count). No cap: one per
 * connection with replies due. */
struct pollfd;
int krib_writer_pollfds(const krib_writer_t *w, struct pollfd *fds, int max);

/* Monotonic time (krib_clock_mono_us) at which the writer needs a step even
 * without socket activity (a retry, a probe, a reply overdue); 0 for now,
 * INT64_MAX for never. */
int64_t krib_writer_due_us(const krib_writer_t *w);

/* Synchronous use (tests, tools): submits ops and steps until all are
 * final. While *stop (krib_writer_set_stop) is zero, retriable failures are
 * retried without end; once it is set, for drain_ms more, then the job is
 * cancelled and -1 returned. tick(opaque) runs between steps. */
void krib_writer_set_stop(krib_writer_t *w, volatile sig_atomic_t *stop, int64_t drain_ms);
typedef void(krib_writer_tick_cb)(void *opaque);
void krib_writer_set_tick(krib_writer_t *w, krib_writer_tick_cb *cb, void *opaque);
int krib_writer_apply(krib_writer_t *w, const krib_wop_t *ops, size_t n, uint8_t *status);

/* Masters a key pattern can live on: the owner of its slot when slot >= 0,
 * else every master (standalone: the one node). Copies up to max
 * "host:port" names (as krib connects to them) into addrs; returns how many,
 * or -1 when no slot map is known yet. addrs NULL: only counts them. */
int krib_writer_masters(krib_writer_t *w, int slot, char (*addrs)[KRIB_ADDR_MAX], int max);

/* Every master of the slot map as it is (no refresh), with the number of
 * hash slots it owns in slots[]; addrs NULL: only counts them. */
int krib_writer_master_slots(krib_writer_t *w, char (*addrs)[KRIB_ADDR_MAX], int *slots, int max);

/* One SCAN step on node addr ("host:port" from krib_writer_masters()):
 * SCAN cursor MATCH pattern COUNT count, run in the background on the
 * node's control connection. The first call starts it and returns
 * KRIB_SCAN_PENDING; call again with the same cursor and pattern after the
 * next krib_writer_step (the writer's poll set wakes the loop when it is
 * done) for its result, which waits one more step and is then dropped. On
 * KRIB_SCAN_OK writes the next cursor ("0": done) and hands over the
 * reply's key array (*keys, free with freeReplyObject). No retries happen
 * here. */
typedef enum {
        KRIB_SCAN_OK = 0,
        KRIB_SCAN_RETRY,   /* the node failed or answered a transient error: later,
                              perhaps on a new slot map */
        KRIB_SCAN_REFUSED, /* refused for good (NOPERM, an unknown command) */
        KRIB_SCAN_PENDING  /* running: ask again next turn */
} krib_scan_result_t;
krib_scan_result_t krib_writer_scan(krib_writer_t *w, const char *addr, const char *cursor,
                                    const char *pattern, long count, char *next, size_t next_size,
                                    redisReply **keys);

/* Fetches the topology now, waiting for it (start-up only: fails fast on
 * bad seeds; standalone: opens the connection). */
int krib_writer_refresh(krib_writer_t *w, char *errstr, size_t errstr_size);

const krib_writer_stats_t *krib_writer_stats(const krib_writer_t *w);

void krib_writer_destroy(krib_writer_t *w);

#ifdef KRIB_SIM
/* The simulation's check of the writer's own bookkeeping (tests/sim): 0,
 * or -1 with what is wrong in why. */
int krib_writer_sim_check(const krib_writer_t *w, char *why, size_t size);
#endif

#endif
