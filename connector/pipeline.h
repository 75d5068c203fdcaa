/* pipeline: poll -> decode -> reorder -> coalesce -> write -> finish offsets
 * -> store, on one thread.
 *
 * Events are gathered into a batch (pipeline.batch_max_events,
 * pipeline.batch_max_bytes or pipeline.linger_ms, whichever comes first).
 * Stale events (reorder.h) are finished at once. Within a batch, the keys of
 * one partition are coalesced: the newest event's operation is sent, and its
 * acknowledgement also finishes the events it superseded. An event is
 * finished when every key operation it needed was acknowledged, or when it
 * was rejected with a logged error naming topic, partition and offset
 * (undecodable, invalid, refused by Redis for good). Only finished offsets
 * reach the offset store; see offsets.h for the watermark rule.
 *
 * Backpressure: at the in-flight bound (pipeline.max_in_flight_events and
 * _bytes, offsets held behind an unfinished one included), while Redis makes
 * no progress, or while the memory guard holds, the loop pauses every
 * assigned partition (so librdkafka stops fetching) and keeps serving the
 * consumer (so the member stays in the group and rebalances proceed). The
 * writer never calls back into the pipeline: the loop reads its progress.
 * Partitions resume when none of the three holds.
 */
#ifndef KRIB_PIPELINE_H
#define KRIB_PIPELINE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

typedef struct krib_pipeline krib_pipeline_t;

typedef struct {
        uint64_t consumed; /* messages read from Kafka */
        uint64_t applied;  /* events whose Redis work was acknowledged */
        uint64_t stale;    /* older than their entity's newest: keys unlinked, nothing written */
        uint64_t rejected; /* undecodable or invalid events (logged) */
        uint64_t skipped;  /* nothing to apply: tombstones, truncates, messages */
        uint64_t dead_lettered; /* copied to the dead-letter topic, acknowledged */
        uint64_t fanned_out;    /* PUBLISH/XADD notifications acknowledged */
        uint64_t sweep_keys;    /* keys unlinked by tag sweeps */
        uint64_t sweeps_active; /* tag sweeps in progress */
        uint64_t sweep_keys_failed, sweeps_incomplete; /* what sweeps could not do */
        /* Schema registry: fetches answered, served from the cache, failed
         * (unreachable/5xx, retried), unknown ids. */
        uint64_t registry_fetched, registry_cached, registry_unavailable, registry_unknown;
        uint64_t failed;            /* events Redis refused for good (logged) */
        uint64_t keys_done;         /* key operations acknowledged */
        uint64_t coalesced;         /* key operations superseded inside a batch */
        uint64_t coalesced_older;   /* of those, by an event not newer for that key */
        uint64_t fence_stale;       /* key operations the Redis fence refused as stale */
        uint64_t invalidated;       /* concurrent UPSERTs turned into invalidations */
        uint64_t fence_invalidated; /* the same, decided by the Redis fence */
        uint64_t abandoned;         /* events of revoked partitions dropped unfinished */
        uint64_t pauses;            /* times consumption was paused for Redis */
        uint64_t batches;
        uint64_t poll_us;      /* in poll() for Kafka or Redis, and reading the consumer */
        uint64_t write_us;     /* time spent in Redis writes (incl. retries) */
        uint64_t guard_pauses; /* times the memory guard paused consumption */
} krib_pipeline_stats_t;

/* conf and stop are borrowed for the pipeline's lifetime. Setting *stop makes
 * krib_pipeline_run() return after draining (pipeline.shutdown_timeout_ms). */
krib_pipeline_t *krib_pipeline_new(const krib_conf_t *conf, volatile sig_atomic_t *stop,
                                   char *errstr, size_t errstr_size);

/* How a run ended. */
typedef enum {
        KRIB_PIPELINE_DRAINED = 0,      /* everything polled was finished */
        KRIB_PIPELINE_LEFT_WORK,        /* the drain deadline (or an internal
                                           error) left work unacknowledged; its
                                           offsets were not stored */
        KRIB_PIPELINE_STOPPED_ON_RECORD /* errors.tolerance=none met a record it
                                           cannot apply (the rest drained; that
                                           record's offset is not stored) */
} krib_pipeline_end_t;

/* Runs until *stop (or a halt). */
krib_pipeline_end_t krib_pipeline_run(krib_pipeline_t *p);

/* The loop's parts, for a caller that owns the waiting (tests/sim drives
 * the pipeline on a simulated clock; krib_pipeline_run() is a loop of
 * them): one turn without waiting, returning when the next one is due
 * (monotonic µs, krib_clock_mono_us()); wake: the consumer has messages
 * (what its wake-up fd says to the run loop). */
int64_t krib_pipeline_step(krib_pipeline_t *p, int draining);
void krib_pipeline_wake(krib_pipeline_t *p);
/* Whether a record or a failure stopped it (krib_pipeline_run returns). */
int krib_pipeline_halted(const krib_pipeline_t *p);

const krib_pipeline_stats_t *krib_pipeline_stats(const krib_pipeline_t *p);

/* Commits, leaves the group and frees. Accepts NULL. */
void krib_pipeline_destroy(krib_pipeline_t *p);

#ifdef KRIB_SIM
/* For the simulation (tests/sim): where a pipeline stands, and its writer. */
#include <stdio.h>
struct krib_writer;
void krib_pipeline_sim_describe(const krib_pipeline_t *p, FILE *out);
const struct krib_writer *krib_pipeline_sim_writer(const krib_pipeline_t *p);
#endif

#endif
