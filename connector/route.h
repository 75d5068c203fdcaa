/* route: CDC records to cache work, by configuration (the `routes` list).
 *
 * A route names topics (names or ^regex), the record format, key templates
 * over the row (`user:{${id}}:profile`), where the version comes from, and
 * the action. Debezium's JSON envelope (with or without `schemas.enable`) is
 * turned into a krib_event_t the rest of the pipeline already understands:
 *
 *   op c/u/r  row = after       invalidate: DELETE of the keys
 *                               write-through: UPSERT, value = JSON of columns
 *   op d      row = before      DELETE of the keys (either action)
 *   tombstone (null value)      nothing to do (compaction marker)
 *   op t (truncate), op m       nothing krib can key: reported, not applied
 *
 * Formats: debezium-json (JsonConverter, with or without schemas.enable) and
 * debezium-avro (AvroConverter: Confluent framing, writer schemas from the
 * schema registry, see registry.h; keys may be framed Avro or JSON).
 *
 * Versions: source.lsn (commit order; the default), source.ts_ms, ts_ms, or
 * column:<name> (the row's own counter; a delete counts as that counter + 1,
 * since it follows the last write without changing the column).
 *
 * Templates: `${col}` a column of the row, `${key.col}` a field of the Kafka
 * key (Debezium's primary-key record), `${source.x}` a field of the
 * envelope's source block, `$$` a dollar sign. They are compiled at start-up;
 * errors name the config file and line. Pure (no I/O) apart from reading its
 * configuration.
 */
#ifndef KRIB_ROUTE_H
#define KRIB_ROUTE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "event.h"

struct config_setting_t;

typedef struct krib_routes krib_routes_t;
typedef struct krib_route krib_route_t;

typedef enum {
        KRIB_ROUTE_OK = 0,
        KRIB_ROUTE_SKIP = 1,        /* nothing to apply (tombstone, truncate, message) */
        KRIB_ROUTE_ERROR = 2,       /* dead letter: errstr says why */
        KRIB_ROUTE_UNAVAILABLE = 3, /* the schema registry is down: try the event again later */
} krib_route_result_t;

struct krib_registry;

/* Parses the `routes` list of a libconfig file (setting may be NULL: no
 * routes). Returns NULL with "file:line: ..." in errstr. */
krib_routes_t *krib_routes_parse(const struct config_setting_t *list, const char *file,
                                 char *errstr, size_t errstr_size);

/* No routes at all. */
krib_routes_t *krib_routes_empty(void);

size_t krib_routes_count(const krib_routes_t *rs);

/* "route <name>: version <source> (<what it means>)" for route i, as
 * --check-config prints it and start-up logs it. */
const char *krib_routes_version_text(const krib_routes_t *rs, size_t i, char *buf, size_t size);

/* Adds every route's topic patterns to out (strdup'ed strings, *n grown);
 * the consumer subscribes to them besides kafka.topics. */
int krib_routes_topics(const krib_routes_t *rs, char ***out, size_t *n);

/* The route for a topic, or NULL (krib's own Avro event format). */
const krib_route_t *krib_routes_match(const krib_routes_t *rs, const char *topic);

const char *krib_route_name(const krib_route_t *r);

/* What happened to a record, besides the event: the Debezium op. */
typedef struct {
        char op; /* 'c' 'u' 'd' 'r' 't' 'm', 0 for a tombstone */
} krib_route_info_t;

/* Whether any route reads Avro (needs a schema registry); the first such. */
int krib_routes_need_registry(const krib_routes_t *rs);
const char *krib_routes_need_registry_name(const krib_routes_t *rs);

/* The routes as a libconfig `routes` list (--print-config). */
void krib_routes_print(const krib_routes_t *rs, FILE *fp);

/* Every key a route takes, with its meaning (--help-config). */
void krib_routes_print_help(FILE *fp);

/* Decodes one record (key/value may be NULL) into ev via route r; reg
 * decodes Confluent-framed Avro (format debezium-avro). */
krib_route_result_t krib_route_decode(const krib_route_t *r, struct krib_registry *reg,
                                      const char *topic, const void *key, size_t key_len,
                                      const void *value, size_t value_len, krib_event_t *ev,
                                      krib_route_info_t *info, char *errstr, size_t errstr_size);

void krib_routes_destroy(krib_routes_t *rs);

#endif
