/* registry: Confluent Schema Registry client (libcurl) and the decoding of
 * Confluent-framed Avro (0x00, 4-byte big-endian schema id, Avro binary)
 * into a JSON tree, so Debezium's Avro envelopes go through the same routes
 * as its JSON ones.
 *
 * Writer schemas are fetched with GET <url>/schemas/ids/<id> and cached by
 * id for the process' life (ids are immutable). While the registry cannot be
 * reached (connect error, timeout, 5xx) a decode answers "unavailable" and
 * the next fetch is tried after a capped backoff (krib_registry_due_us());
 * the caller holds the event and pauses consumption: a registry outage
 * never dead-letters good data. One fetch is bounded by the registry
 * timeout; nothing here waits longer. An id the registry does not know
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
 * (monotonic, krib_clock_mono_us); 0 otherwise. */
int64_t krib_registry_due_us(const krib_registry_t *r);

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
