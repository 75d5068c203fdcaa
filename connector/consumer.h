/* consumer: the librdkafka high-level consumer krib reads from.
 *
 * Offsets are never stored automatically (enable.auto.offset.store=false):
 * the pipeline stores an offset only once the event is finished, and the
 * background auto-commit sends what was stored. The assignment strategy is
 * cooperative-sticky unless kafka.properties says otherwise.
 *
 * Rebalance callbacks run inside krib_consumer_poll() on the pipeline
 * thread and only record: an assignment is taken at once (hooks.on_assign
 * counts it), a revoke waits in krib_consumer_revoking() until the pipeline
 * loop has finished or given up those partitions' work between its steps;
 * krib_consumer_revoke_done() then commits the stored offsets synchronously
 * (unless the assignment was lost) and releases the partitions. Only while
 * closing does the revoke run hooks.on_revoke() from inside the callback.
 */
#ifndef KRIB_CONSUMER_H
#define KRIB_CONSUMER_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

typedef struct {
        /* parts is borrowed until return. lost: another member may already
         * own them, so committing is pointless. */
        void (*on_revoke)(void *opaque, const rd_kafka_topic_partition_list_t *parts, int lost);
        /* Called after the partitions were assigned. */
        void (*on_assign)(void *opaque, const rd_kafka_topic_partition_list_t *parts);
        void *opaque;
} krib_consumer_hooks_t;

typedef struct krib_consumer krib_consumer_t;

/* Creates the consumer and subscribes. conf and hooks are borrowed for the
 * consumer's lifetime. NULL + errstr (librdkafka's own text for a bad
 * kafka.properties entry). */
krib_consumer_t *krib_consumer_new(const krib_conf_t *conf, const krib_consumer_hooks_t *hooks,
                                   char *errstr, size_t errstr_size);

/* Next message or NULL on timeout; the caller destroys it with
 * rd_kafka_message_destroy(). May run the rebalance hooks. */
rd_kafka_message_t *krib_consumer_poll(krib_consumer_t *c, int timeout_ms);

/* A pipe librdkafka writes to when the consumer queue gets work: poll() it
 * for POLLIN, then krib_consumer_wakeup_clear() and krib_consumer_poll(0)
 * until it returns NULL. */
int krib_consumer_wakeup_fd(const krib_consumer_t *c);
void krib_consumer_wakeup_clear(krib_consumer_t *c);

/* Partitions revoked and not yet released (NULL: none); *lost as in
 * on_revoke. Borrowed until krib_consumer_revoke_done(). */
const rd_kafka_topic_partition_list_t *krib_consumer_revoking(const krib_consumer_t *c, int *lost);

/* Commits (unless lost) and releases the recorded revoke. */
void krib_consumer_revoke_done(krib_consumer_t *c);

/* Stores offsets (list borrowed) for the background commit. */
int krib_consumer_store(krib_consumer_t *c, rd_kafka_topic_partition_list_t *offsets);

/* Stores the committable offset of every partition whose finished prefix
 * moved (krib_offsets_take_dirty()). */
struct krib_offsets;
void krib_consumer_store_finished(krib_consumer_t *c, struct krib_offsets *o);

/* Commits stored offsets synchronously. 0, or -1 after logging. */
int krib_consumer_commit(krib_consumer_t *c);

/* Commits, leaves the group (running the revoke hook) and frees everything.
 * Accepts NULL. */
void krib_consumer_close(krib_consumer_t *c);

/* Pauses (pause=1) or resumes fetching of only, or of the whole
 * assignment when only is NULL; a failure is logged. */
void krib_consumer_pause(krib_consumer_t *c, const rd_kafka_topic_partition_list_t *only,
                         int pause);

rd_kafka_t *krib_consumer_handle(krib_consumer_t *c);

typedef struct {
        char topic[256]; /* Kafka allows 249 */
        int32_t partition;
        int64_t lag;       /* consumer_lag from librdkafka statistics; -1 unknown */
        int64_t committed; /* committed_offset; -1 none */
        int64_t log_end;   /* hi_offset */
} krib_partition_lag_t;

/* Parses a librdkafka statistics JSON document into *out (assigned
 * partitions only, i.e. those with a fetch state other than "none"),
 * growing it (*cap entries) as needed: no partition is left out. Returns
 * the number of entries, or -1 for a document it cannot read (or out of
 * memory). Pure. */
int krib_consumer_parse_stats(const char *json, size_t len, krib_partition_lag_t **out,
                              size_t *cap);

/* The last statistics seen (statistics.interval.ms, default 5 s here):
 * *out points at them until the next consumer poll; returns how many. */
int krib_consumer_lag(const krib_consumer_t *c, const krib_partition_lag_t **out);

/* Count of rebalance callbacks served (assign + revoke). */
unsigned long krib_consumer_rebalances(const krib_consumer_t *c);

#endif
