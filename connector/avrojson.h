/* avrojson: a decoded Avro value (avro-c generic value) as JSON, the form
 * routes read. Unions are unwrapped (Debezium's optional rows), and the
 * logical types Kafka Connect and Debezium put on bytes are honoured:
 *
 *   - decimal (logicalType "decimal", or connect.name
 *     org.apache.kafka.connect.data.Decimal: Debezium's default
 *     decimal.handling.mode=precise for NUMERIC/DECIMAL columns) becomes its
 *     plain decimal text ("42", "-0.05"), so key templates over NUMERIC ids
 *     work;
 *   - any other bytes or fixed (bytea columns) become standard base64, the
 *     encoding Debezium's JSON output uses by default.
 *
 * avro-c 1.11 keeps no logical types, so the decimal fields are found in the
 * writer schema's JSON once (krib_avrojson_scan) and looked up by record and
 * field name while converting. Pure: no I/O.
 */
#ifndef KRIB_AVROJSON_H
#define KRIB_AVROJSON_H

#include <avro.h>
#include <jansson.h>
#include <stddef.h>

typedef struct krib_avrojson_decimals krib_avrojson_decimals_t;

/* The decimal fields of a schema (its JSON text). NULL when the text is not
 * JSON or memory ran out; a schema without decimals gives an empty list. */
krib_avrojson_decimals_t *krib_avrojson_scan(const char *schema_json);
size_t krib_avrojson_count(const krib_avrojson_decimals_t *d);
void krib_avrojson_free(krib_avrojson_decimals_t *d);

/* v as JSON (new reference), or NULL when it has none (nesting deeper than
 * 64, an unknown type, a decimal longer than 64 bytes). d may be NULL. */
json_t *krib_avrojson_value(avro_value_t *v, const krib_avrojson_decimals_t *d);

/* The plain decimal text of a big-endian two's-complement unscaled value of
 * n bytes with scale digits after the point. Returns its length, or -1 when
 * n > 64, scale is out of 0..1000, or cap is too small. */
int krib_avrojson_decimal(const unsigned char *b, size_t n, int scale, char *out, size_t cap);

#endif
