/* encode: krib_event_t -> Avro binary. Used by the load generator, the demo
 * producer and the tests; the daemon itself only decodes.
 *
 * The encoder is bound to a schema with every field of
 * schemas/invalidation.avsc (the canonical event schema).
 */
#ifndef KRIB_ENCODE_H
#define KRIB_ENCODE_H

#include <stddef.h>

#include "event.h"

typedef struct krib_encode krib_encode_t;

/* Caller frees with krib_encode_destroy(). NULL + errstr on error. */
krib_encode_t *krib_encode_new_file(const char *path, char *errstr, size_t errstr_size);
krib_encode_t *krib_encode_new_json(const char *json, size_t len, char *errstr, size_t errstr_size);

/* Writes ev into buf (borrowed). Returns 0 and sets *len, or -1 when buf is
 * too small or ev cannot be represented. */
int krib_encode_event(krib_encode_t *enc, const krib_event_t *ev, void *buf, size_t cap,
                      size_t *len);

void krib_encode_destroy(krib_encode_t *enc);

#endif
