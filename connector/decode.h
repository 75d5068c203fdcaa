/* decode: Kafka message value -> krib_event_t (Avro binary).
 *
 * avro-c parses the writer schema; from it a decode plan is compiled once
 * (krib's fields matched by name, the rest skipped), and each message is
 * then read in one bounds-checked pass straight into the event's arena,
 * without avro-c's generic values (which allocate per string and walk the
 * message a second time). tests/unit/check_decode.c holds avro-c's generic
 * decoder as the reference the plan is compared with.
 *
 * A decoder is bound to one writer schema. It requires the fields `entity`
 * (string) and `ts_ms` (long); every other field of schemas/invalidation.avsc
 * is optional in the writer schema and takes its documented default when
 * absent, so producers on an older schema still decode.
 *
 * Not thread-safe: one decoder per pipeline thread.
 */
#ifndef KRIB_DECODE_H
#define KRIB_DECODE_H

#include <stddef.h>

#include "event.h"

typedef struct krib_decode krib_decode_t;

/* Reads the schema from a .avsc file. Returns NULL and fills errstr on error.
 * Caller frees with krib_decode_destroy(). */
krib_decode_t *krib_decode_new_file(const char *path, char *errstr, size_t errstr_size);

/* Same, from schema JSON (json is borrowed until return). */
krib_decode_t *krib_decode_new_json(const char *json, size_t len, char *errstr, size_t errstr_size);

/* Decodes one value into ev (which is reset first; its strings live in ev's
 * arena). buf is borrowed until return. Returns 0, or -1 with a message in
 * errstr: malformed Avro, trailing bytes, or an event that breaks the rules
 * of schemas/README.md (empty entity, DELETE without keys, ...). */
int krib_decode_event(krib_decode_t *dec, const void *buf, size_t len, krib_event_t *ev,
                      char *errstr, size_t errstr_size);

void krib_decode_destroy(krib_decode_t *dec);

/* Whether buf holds exactly one datum of schema, walked without allocating:
 * hostile lengths and counts are refused before avro-c reads them. */
#include <avro.h>
int krib_avro_check(avro_schema_t schema, const void *buf, size_t len, char *errstr,
                    size_t errstr_size);

#endif
