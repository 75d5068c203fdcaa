/* dlq: the dead-letter topic. Records krib cannot apply (undecodable
 * payloads, template failures, keys Redis refuses for good) are copied there
 * with their original key, value and headers, plus Kafka Connect's
 * `__connect.errors.*` headers naming topic, partition, offset, stage, error
 * class and message, so existing DLQ tooling reads them.
 *
 * The caller finishes (stores the offset of) a dead-lettered record only
 * after krib_dlq_flush() reports the broker acknowledged it: no record is
 * lost between the source topic and the DLQ. Owned by the pipeline thread.
 */
#ifndef KRIB_DLQ_H
#define KRIB_DLQ_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stddef.h>

#include "conf.h"

typedef struct krib_dlq krib_dlq_t;

/* NULL with errstr on bad settings; conf->dlq_topic must be set. */
krib_dlq_t *krib_dlq_new(const krib_conf_t *conf, char *errstr, size_t errstr_size);

/* Queues a copy of m. stage: decode, route or write; error_class: a short
 * class name (krib.DecodeError, ...). Returns 0, or -1 if it cannot queue. */
int krib_dlq_add(krib_dlq_t *d, const rd_kafka_message_t *m, const char *stage,
                 const char *error_class, const char *message);

/* Waits until every queued record is acknowledged, re-producing failed ones
 * with backoff; tick(opaque) is called about every 100 ms meanwhile. Returns
 * 0 when all are acknowledged, -1 when *stop cut it short (then none of the
 * records queued since the last successful flush may be finished). */
int krib_dlq_flush(krib_dlq_t *d, volatile sig_atomic_t *stop, void (*tick)(void *), void *opaque);

/* Records acknowledged by the broker, ever. */
unsigned long krib_dlq_acked(const krib_dlq_t *d);

void krib_dlq_destroy(krib_dlq_t *d);

#endif
