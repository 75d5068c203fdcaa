/* dlq: the dead-letter topic. Records krib cannot apply (undecodable
 * payloads, template failures, keys Redis refuses for good) are copied there
 * with their original key, value and headers, plus Kafka Connect's
 * `__connect.errors.*` headers naming topic, partition, offset, stage, error
 * class and message, so existing DLQ tooling reads them.
 *
 * The caller finishes (stores the offset of) a dead-lettered record only
 * once krib_dlq_poll() reports the broker acknowledged it: no record is lost
 * between the source topic and the DLQ. Nothing here waits: copies are
 * produced at once, failed ones again after a backoff (too large ones
 * truncated first), and the caller's loop polls. Owned by the pipeline
 * thread.
 */
#ifndef KRIB_DLQ_H
#define KRIB_DLQ_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

typedef struct krib_dlq krib_dlq_t;

/* NULL with errstr on bad settings; conf->dlq_topic must be set. */
krib_dlq_t *krib_dlq_new(const krib_conf_t *conf, char *errstr, size_t errstr_size);

/* Produces a copy of m. stage: decode, route or write; error_class: a short
 * class name (krib.DecodeError, ...); tag: the caller's, handed back when
 * the broker acknowledged the copy. Returns 0, or -1 if it cannot queue. */
int krib_dlq_add(krib_dlq_t *d, const rd_kafka_message_t *m, const char *stage,
                 const char *error_class, const char *message, uint64_t tag);

/* Serves delivery reports without waiting and re-produces failed copies
 * whose backoff passed; acked(opaque, tag) for each copy the broker took.
 * Returns the copies still outstanding. */
typedef void(krib_dlq_acked_cb)(void *opaque, uint64_t tag);
size_t krib_dlq_poll(krib_dlq_t *d, krib_dlq_acked_cb *acked, void *opaque);

/* When krib_dlq_poll() should run again (INT64_MAX: nothing outstanding). */
int64_t krib_dlq_due_us(const krib_dlq_t *d);

/* Outstanding copies are still produced, but their tags are no longer
 * handed back (UINT64_MAX): the caller gave their records up. */
void krib_dlq_forget(krib_dlq_t *d);

/* Records acknowledged by the broker, ever. */
unsigned long krib_dlq_acked(const krib_dlq_t *d);

/* Produce attempts that failed (each is produced again), ever. */
unsigned long krib_dlq_failures(const krib_dlq_t *d);

void krib_dlq_destroy(krib_dlq_t *d);

#endif
