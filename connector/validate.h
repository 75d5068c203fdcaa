/* validate: the rules every event obeys before krib acts on it, whatever
 * produced it (krib's Avro decoder, a Debezium route, a registry-framed
 * record). Pure: no I/O, no allocation.
 *
 * Two layers: the rules of schemas/README.md (krib_validate_event), which
 * the decoders apply, and the operator's size limits (krib_validate_limits),
 * which the pipeline applies to every event, so one hostile record can
 * neither crash the bridge nor hold Redis or the consumer for long.
 */
#ifndef KRIB_VALIDATE_H
#define KRIB_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

/* Keys in this namespace are krib's version fences: no event may name them
 * (a DELETE of a fence would let an older UPSERT back in). */
#define KRIB_FENCE_PREFIX     "krib:f:"
#define KRIB_FENCE_PREFIX_LEN 7

/* Longest key a fence can be named for ("krib:f:{" + key + "}" in 16 bits). */
#define KRIB_KEY_MAX_BYTES 65519

/* Longest origin name (fence lines are "origin=counter"). */
#define KRIB_ORIGIN_MAX_BYTES 255

/* Largest ttl_ms: about 100 years; Redis refuses expiry times that overflow
 * its clock arithmetic, and such a TTL means "no TTL" in practice. */
#define KRIB_TTL_MAX_MS INT64_C(3153600000000)

typedef struct {
        size_t max_key_bytes; /* per key (and per tag pattern) */
        size_t max_keys;      /* keys (or tags) per event */
        size_t max_origins;   /* entries of the version vector */
} krib_limits_t;

/* The rules of schemas/README.md: non-empty entity and keys, no key in the
 * fence namespace, origins non-empty, at most KRIB_ORIGIN_MAX_BYTES,
 * without '=' or control characters, counters >= 0, a DELETE with keys, an
 * UPSERT with keys, a value and a version and a ttl_ms of -1 (none) or 1 ..
 * KRIB_TTL_MAX_MS, a TAG with tags. 0, or -1 with the reason in errstr. */
int krib_validate_event(const krib_event_t *ev, char *errstr, size_t errstr_size);

/* The operator's limits (config limits.*), then what costs more than linear
 * time and so waits for them: unique origins. 0, or -1 with errstr. */
int krib_validate_limits(const krib_event_t *ev, const krib_limits_t *lim, char *errstr,
                         size_t errstr_size);

/* Parses a version counter written as decimal digits (no sign, no spaces,
 * leading zeros allowed) that fits in int64. 0, or -1 when it is not one. */
int krib_validate_counter(const char *s, size_t len, int64_t *out);

/* Whether s[0..len) is a counter in canonical form, as the fence script
 * compares them: "0" or [1-9][0-9]*, at most 19 digits, <= INT64_MAX. */
int krib_validate_canonical(const char *s, size_t len);

#endif
