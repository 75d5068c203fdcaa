/* schemas: the writer schemas krib accepts, and which one a message uses.
 *
 * Every *.avsc in decode.schema_dir is loaded and fingerprinted
 * (CRC-64-AVRO of its Parsing Canonical Form, as the Avro specification
 * defines). A message in Avro single-object encoding (0xC3 0x01, the 8-byte
 * little-endian fingerprint, then the Avro body) is decoded with the schema
 * its fingerprint names; a raw Avro message with decode.schema_file.
 *
 * Each writer schema gets its own decoder, which reads fields by name
 * (decode.h): fields a producer added are skipped, fields it lacks take the
 * defaults of schemas/README.md. (avro-c 1.11's resolving reader cannot fill
 * reader defaults, so resolution is done by name here.)
 */
#ifndef KRIB_SCHEMAS_H
#define KRIB_SCHEMAS_H

#include <stddef.h>
#include <stdint.h>

#include "decode.h"
#include "event.h"

typedef struct krib_schemas krib_schemas_t;

typedef enum {
        KRIB_WIRE_AUTO = 0,          /* single-object when the magic is there, else raw */
        KRIB_WIRE_RAW = 1,           /* raw Avro in the raw schema only */
        KRIB_WIRE_SINGLE_OBJECT = 2, /* single-object encoding only */
} krib_wire_t;

/* raw_schema_path: schema of raw messages (may be NULL for single-object
 * only); dir: directory of accepted writer schemas (may be NULL). Caller
 * frees with krib_schemas_destroy(). NULL + errstr naming the file. */
krib_schemas_t *krib_schemas_new(krib_wire_t wire, const char *raw_schema_path, const char *dir,
                                 char *errstr, size_t errstr_size);

/* Decodes one message value into ev. -1 + errstr (unknown fingerprint,
 * wrong framing, or the decoder's own errors). */
int krib_schemas_decode(krib_schemas_t *s, const void *buf, size_t len, krib_event_t *ev,
                        char *errstr, size_t errstr_size);

size_t krib_schemas_count(const krib_schemas_t *s);

void krib_schemas_destroy(krib_schemas_t *s);

/* Parsing Canonical Form of schema JSON into out (NUL-terminated). Returns
 * its length, or -1 (invalid schema, or out too small). */
int krib_schemas_canonical(const char *json, size_t len, char *out, size_t cap);

/* CRC-64-AVRO (Rabin) fingerprint of buf. */
uint64_t krib_schemas_fingerprint(const void *buf, size_t len);

#endif
