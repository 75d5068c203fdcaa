/* registry: Confluent Schema Registry client (libcurl) and the decoding of
 * Confluent-framed Avro (0x00, 4-byte big-endian schema id, Avro binary)
 * into a JSON tree, so Debezium's Avro envelopes go through the same routes
 * as its JSON ones.
 *
 * Writer schemas are fetched with GET <url>/schemas/ids/<id> and cached by
 * id for the process' life (ids are immutable). A fetch runs on a helper
 * thread (bg.h), one at a time: meanwhile a decode of that id answers
 * "unavailable" with krib_registry_fetching() true, and the fetch's end
 * makes krib_registry_wake_fd() readable; the caller asks again then. While
 * the registry cannot be reached (connect error, timeout, 5xx) a decode
 * answers "unavailable" and the next fetch is tried after a capped backoff
 * (krib_registry_due_us()); the caller holds the event and pauses
 * consumption: a registry outage never dead-letters good data. One fetch
 * is bounded by the registry timeout. An id the registry does not know
 * (404) is a dead letter. Owned by the pipeline thread.
 */
#ifndef KRIB_REGISTRY_H
#define KRIB_REGISTRY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct krib_registry krib_registry_t;

typedef enum {
        KRIB_REG_OK = 0,
        KRIB_REG_BAD = 1, /* not Confluent framing, unknown id, malformed Avro: dead letter */
        KRIB_REG_UNAVAILABLE = 2, /* registry down: try again at krib_registry_due_us() */
} krib_reg_result_t;

krib_registry_t *krib_registry_new(const char *url, int64_t timeout_ms, char *errstr,
                                   size_t errstr_size);

/* While the registry is unavailable: when the next fetch may be tried
 * (monotonic, krib_clock_mono_us); while a fetch runs: 0 once it has
 * finished, INT64_MAX before (its end wakes krib_registry_wake_fd); 0
 * otherwise. */
int64_t krib_registry_due_us(const krib_registry_t *r);

/* Readable when the fetch in flight finished; -1 when none runs. */
int krib_registry_wake_fd(const krib_registry_t *r);

/* Whether a fetch runs (an "unavailable" answer then means "not yet"). */
int krib_registry_fetching(const krib_registry_t *r);

/* Decodes a Confluent-framed Avro value into *out (a JSON tree; unions are
 * unwrapped to their branch's value, bytes and fixed become strings). */
krib_reg_result_t krib_registry_decode(krib_registry_t *r, const void *buf, size_t len,
                                       json_t **out, char *errstr, size_t errstr_size);

/* Fetches, lookups and failures, for /metrics. */
typedef struct {
        uint64_t fetches, cached, unavailable, unknown;
} krib_registry_stats_t;
const krib_registry_stats_t *krib_registry_stats(const krib_registry_t *r);

void krib_registry_destroy(krib_registry_t *r);

#endif
