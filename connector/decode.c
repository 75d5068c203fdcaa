#include "decode.h"

#include <avro.h>
#include <errno.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "validate.h"

enum { F_ENTITY, F_KEYS, F_VERSION, F_ACTION, F_TS, F_ORIGIN, F_VALUE, F_TTL, F_TAGS, F__N };

static const char *const field_names[F__N] = {"entity", "keys",  "version", "action", "ts_ms",
                                              "origin", "value", "ttl_ms",  "tags"};

struct krib_decode {
        avro_schema_t schema;
        avro_value_iface_t *iface;
        avro_value_t value;
        avro_reader_t reader;
        int field_index[F__N]; /* -1: absent from the writer schema */
        avro_schema_t action_schema;
};

static void errf(char *errstr, size_t size, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, size, fmt, ap);
        va_end(ap);
}

void krib_decode_destroy(krib_decode_t *dec) {
        if (!dec)
                return;
        if (dec->reader)
                avro_reader_free(dec->reader);
        if (dec->iface) {
                avro_value_decref(&dec->value);
                avro_value_iface_decref(dec->iface);
        }
        if (dec->schema)
                avro_schema_decref(dec->schema);
        free(dec);
}

/* Strips a ["null", T] union down to T, for type checks. */
static avro_schema_t unnull(avro_schema_t s) {
        if (!is_avro_union(s) || avro_schema_union_size(s) != 2)
                return s;
        avro_schema_t a = avro_schema_union_branch(s, 0), b = avro_schema_union_branch(s, 1);
        return is_avro_null(a) ? b : is_avro_null(b) ? a : s;
}

static int check_field(krib_decode_t *dec, int f, char *errstr, size_t size) {
        avro_schema_t s = avro_schema_record_field_get_by_index(dec->schema, dec->field_index[f]);
        avro_schema_t t = unnull(s);
        int ok = 0;
        switch (f) {
        case F_ENTITY:
        case F_ORIGIN:
                ok = is_avro_string(t);
                break;
        case F_KEYS:
        case F_TAGS:
                ok = is_avro_array(t) && is_avro_string(avro_schema_array_items(t));
                break;
        case F_VERSION:
                ok = is_avro_map(t) && (is_avro_int64(avro_schema_map_values(t)) ||
                                        is_avro_int32(avro_schema_map_values(t)));
                break;
        case F_ACTION:
                ok = is_avro_enum(t) || is_avro_string(t);
                break;
        case F_TS:
        case F_TTL:
                ok = is_avro_int64(t) || is_avro_int32(t);
                break;
        case F_VALUE:
                ok = is_avro_bytes(t) || is_avro_string(t);
                break;
        }
        if (!ok)
                errf(errstr, size, "schema field '%s' has type %s, which krib cannot read",
                     field_names[f], avro_schema_type_name(s));
        return ok ? 0 : -1;
}

krib_decode_t *krib_decode_new_json(const char *json, size_t len, char *errstr,
                                    size_t errstr_size) {
        krib_decode_t *dec = calloc(1, sizeof(*dec));
        if (!dec) {
                errf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        if (avro_schema_from_json_length(json, len, &dec->schema)) {
                errf(errstr, errstr_size, "invalid Avro schema: %s", avro_strerror());
                goto fail;
        }
        if (!is_avro_record(dec->schema)) {
                errf(errstr, errstr_size, "schema must be a record, not %s",
                     avro_schema_type_name(dec->schema));
                goto fail;
        }
        for (int f = 0; f < F__N; f++) {
                dec->field_index[f] =
                        avro_schema_record_field_get(dec->schema, field_names[f])
                                ? avro_schema_record_field_get_index(dec->schema, field_names[f])
                                : -1;
                if (dec->field_index[f] >= 0 && check_field(dec, f, errstr, errstr_size))
                        goto fail;
        }
        if (dec->field_index[F_ENTITY] < 0 || dec->field_index[F_TS] < 0) {
                errf(errstr, errstr_size, "schema lacks the required fields 'entity' and 'ts_ms'");
                goto fail;
        }
        if (dec->field_index[F_ACTION] >= 0)
                dec->action_schema = unnull(avro_schema_record_field_get_by_index(
                        dec->schema, dec->field_index[F_ACTION]));
        if (!(dec->iface = avro_generic_class_from_schema(dec->schema)) ||
            avro_generic_value_new(dec->iface, &dec->value)) {
                errf(errstr, errstr_size, "cannot build Avro value: %s", avro_strerror());
                if (dec->iface) {
                        avro_value_iface_decref(dec->iface);
                        dec->iface = NULL;
                }
                goto fail;
        }
        if (!(dec->reader = avro_reader_memory("", 0))) {
                errf(errstr, errstr_size, "out of memory");
                goto fail;
        }
        return dec;
fail:
        krib_decode_destroy(dec);
        return NULL;
}

krib_decode_t *krib_decode_new_file(const char *path, char *errstr, size_t errstr_size) {
        size_t len;
        char *json = krib_util_slurp(path, &len, errstr, errstr_size);
        if (!json)
                return NULL;
        char sub[256];
        krib_decode_t *dec = krib_decode_new_json(json, len, sub, sizeof(sub));
        if (!dec)
                snprintf(errstr, errstr_size, "%s: %s", path, sub);
        free(json);
        return dec;
}

/* Walks Avro binary against the writer schema without allocating, so a
 * hostile length or block count is refused before avro-c sizes a buffer by
 * it. Returns bytes consumed, or -1 (reason in *why). */
typedef struct {
        const uint8_t *p;
        size_t left;
        const char *why;
} cursor_t;

#define MAX_DEPTH           32
#define MAX_ZERO_SIZE_ITEMS 100000

static int read_varint(cursor_t *c, int64_t *out) {
        uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
                if (!c->left) {
                        c->why = "truncated";
                        return -1;
                }
                uint8_t b = *c->p++;
                c->left--;
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
                        return 0;
                }
        }
        c->why = "varint longer than 10 bytes";
        return -1;
}

static int take(cursor_t *c, int64_t n) {
        if (n < 0 || (uint64_t)n > c->left) {
                c->why = n < 0 ? "negative length" : "length past the end of the message";
                return -1;
        }
        c->p += n;
        c->left -= (size_t)n;
        return 0;
}

static int skip(cursor_t *c, avro_schema_t s, int depth);

/* Arrays and maps: blocks of items until a zero count. */
static int skip_blocks(cursor_t *c, avro_schema_t item, int is_map, int depth) {
        size_t zero_size_items = 0;
        for (;;) {
                int64_t n;
                if (read_varint(c, &n))
                        return -1;
                if (!n)
                        return 0;
                if (n < 0) { /* negative count: a byte size follows */
                        int64_t bytes;
                        if (read_varint(c, &bytes))
                                return -1;
                        if (n == INT64_MIN) {
                                c->why = "bad block count";
                                return -1;
                        }
                        n = -n;
                }
                for (int64_t i = 0; i < n; i++) {
                        size_t before = c->left;
                        if (is_map) {
                                int64_t klen;
                                if (read_varint(c, &klen) || take(c, klen))
                                        return -1;
                        }
                        if (skip(c, item, depth + 1))
                                return -1;
                        /* Items that occupy no bytes (null) could make a tiny
                         * message claim billions of them. */
                        if (c->left == before && ++zero_size_items > MAX_ZERO_SIZE_ITEMS) {
                                c->why = "too many empty items";
                                return -1;
                        }
                }
        }
}

static int skip(cursor_t *c, avro_schema_t s, int depth) {
        int64_t v;
        if (depth > MAX_DEPTH) {
                c->why = "nesting too deep";
                return -1;
        }
        switch (avro_typeof(s)) {
        case AVRO_NULL:
                return 0;
        case AVRO_BOOLEAN:
                return take(c, 1);
        case AVRO_INT32:
        case AVRO_INT64:
                return read_varint(c, &v);
        case AVRO_FLOAT:
                return take(c, 4);
        case AVRO_DOUBLE:
                return take(c, 8);
        case AVRO_STRING:
        case AVRO_BYTES:
                return read_varint(c, &v) || take(c, v) ? -1 : 0;
        case AVRO_FIXED:
                return take(c, avro_schema_fixed_size(s));
        case AVRO_ENUM:
                if (read_varint(c, &v))
                        return -1;
                if (v < 0 || v >= avro_schema_enum_number_of_symbols(s)) {
                        c->why = "enum index out of range";
                        return -1;
                }
                return 0;
        case AVRO_ARRAY:
                return skip_blocks(c, avro_schema_array_items(s), 0, depth);
        case AVRO_MAP:
                return skip_blocks(c, avro_schema_map_values(s), 1, depth);
        case AVRO_UNION:
                if (read_varint(c, &v))
                        return -1;
                if (v < 0 || (uint64_t)v >= avro_schema_union_size(s)) {
                        c->why = "union branch out of range";
                        return -1;
                }
                return skip(c, avro_schema_union_branch(s, (int)v), depth + 1);
        case AVRO_RECORD:
                for (size_t i = 0; i < avro_schema_record_size(s); i++)
                        if (skip(c, avro_schema_record_field_get_by_index(s, (int)i), depth + 1))
                                return -1;
                return 0;
        case AVRO_LINK:
                return skip(c, avro_schema_link_target(s), depth + 1);
        default:
                c->why = "unsupported schema type";
                return -1;
        }
}

/* Follows a ["null", T] union to its value; *present = 0 for null. */
static int branch(avro_value_t *v, avro_value_t *out, int *present) {
        *present = 1;
        if (avro_value_get_type(v) != AVRO_UNION) {
                *out = *v;
                return 0;
        }
        if (avro_value_get_current_branch(v, out))
                return -1;
        *present = avro_value_get_type(out) != AVRO_NULL;
        return 0;
}

static int get_str(krib_event_t *ev, avro_value_t *field, krib_str_t *dst) {
        avro_value_t v;
        int present;
        const void *p;
        size_t size;
        if (branch(field, &v, &present))
                return -1;
        if (!present) {
                dst->s = NULL;
                dst->len = 0;
                return 0;
        }
        if (avro_value_get_type(&v) == AVRO_BYTES) {
                if (avro_value_get_bytes(&v, &p, &size))
                        return -1;
        } else {
                const char *s;
                if (avro_value_get_string(&v, &s, &size))
                        return -1;
                p = s;
                size = size ? size - 1 : 0; /* avro-c counts the NUL */
        }
        return krib_event_strdup(ev, dst, p ? p : "", size);
}

static int get_long(avro_value_t *field, int64_t *out, int *present) {
        avro_value_t v;
        if (branch(field, &v, present))
                return -1;
        if (!*present)
                return 0;
        if (avro_value_get_type(&v) == AVRO_INT32) {
                int32_t i;
                if (avro_value_get_int(&v, &i))
                        return -1;
                *out = i;
                return 0;
        }
        return avro_value_get_long(&v, out);
}

static int get_strs(krib_event_t *ev, avro_value_t *field, krib_str_t **out, size_t *count) {
        avro_value_t v, e;
        int present;
        size_t n;
        if (branch(field, &v, &present) || !present)
                return present ? -1 : 0;
        if (avro_value_get_size(&v, &n))
                return -1;
        if (!n)
                return 0;
        krib_str_t *a = krib_event_alloc(ev, n * sizeof(*a));
        if (!a)
                return -1;
        for (size_t i = 0; i < n; i++)
                if (avro_value_get_by_index(&v, i, &e, NULL) || get_str(ev, &e, &a[i]))
                        return -1;
        *out = a;
        *count = n;
        return 0;
}

static int get_version(krib_event_t *ev, avro_value_t *field) {
        avro_value_t v, e;
        int present;
        size_t n;
        if (branch(field, &v, &present) || !present)
                return present ? -1 : 0;
        if (avro_value_get_size(&v, &n))
                return -1;
        if (!n)
                return 0;
        krib_vv_entry_t *a = krib_event_alloc(ev, n * sizeof(*a));
        if (!a)
                return -1;
        for (size_t i = 0; i < n; i++) {
                const char *name;
                int p;
                if (avro_value_get_by_index(&v, i, &e, &name) ||
                    krib_event_strdup(ev, &a[i].origin, name, strlen(name)) ||
                    get_long(&e, &a[i].counter, &p))
                        return -1;
        }
        ev->version = a;
        ev->version_count = n;
        return 0;
}

static int get_action(krib_decode_t *dec, avro_value_t *field, krib_action_t *out, char *errstr,
                      size_t size) {
        avro_value_t v;
        int present;
        const char *sym = NULL;
        if (branch(field, &v, &present))
                return -1;
        if (!present)
                return 0;
        if (avro_value_get_type(&v) == AVRO_ENUM) {
                int i;
                if (avro_value_get_enum(&v, &i))
                        return -1;
                sym = avro_schema_enum_get(dec->action_schema, i);
        } else {
                size_t n;
                if (avro_value_get_string(&v, &sym, &n))
                        return -1;
        }
        static const char *const names[] = {"DELETE", "UPSERT", "TAG"};
        for (int i = 0; sym && i < 3; i++)
                if (!strcmp(sym, names[i])) {
                        *out = (krib_action_t)i;
                        return 0;
                }
        errf(errstr, size, "unknown action '%s'", sym ? sym : "?");
        return -2;
}

int krib_avro_check(avro_schema_t schema, const void *buf, size_t len, char *errstr,
                    size_t errstr_size) {
        cursor_t cur = {buf, len, NULL};
        if (skip(&cur, schema, 0)) {
                errf(errstr, errstr_size, "malformed Avro: %s", cur.why);
                return -1;
        }
        if (cur.left) {
                errf(errstr, errstr_size, "malformed Avro: %zu trailing bytes after the record",
                     cur.left);
                return -1;
        }
        return 0;
}

int krib_decode_event(krib_decode_t *dec, const void *buf, size_t len, krib_event_t *ev,
                      char *errstr, size_t errstr_size) {
        krib_event_reset(ev);
        avro_value_reset(&dec->value);
        avro_reader_memory_set_source(dec->reader, buf, (int64_t)len);
        if (!buf || !len) {
                errf(errstr, errstr_size, "empty message value (tombstone)");
                return -1;
        }
        cursor_t cur = {buf, len, NULL};
        if (skip(&cur, dec->schema, 0)) {
                errf(errstr, errstr_size, "malformed Avro: %s", cur.why);
                return -1;
        }
        if (cur.left) {
                errf(errstr, errstr_size, "malformed Avro: %zu trailing bytes after the record",
                     cur.left);
                return -1;
        }
        if (avro_value_read(dec->reader, &dec->value)) {
                errf(errstr, errstr_size, "malformed Avro: %s", avro_strerror());
                return -1;
        }
        avro_value_t f[F__N];
        for (int i = 0; i < F__N; i++)
                if (dec->field_index[i] >= 0 &&
                    avro_value_get_by_index(&dec->value, (size_t)dec->field_index[i], &f[i], NULL))
                        goto oops;
        int present;
        if (get_str(ev, &f[F_ENTITY], &ev->entity) || get_long(&f[F_TS], &ev->ts_ms, &present))
                goto oops;
        if (dec->field_index[F_KEYS] >= 0 && get_strs(ev, &f[F_KEYS], &ev->keys, &ev->key_count))
                goto oops;
        if (dec->field_index[F_TAGS] >= 0 && get_strs(ev, &f[F_TAGS], &ev->tags, &ev->tag_count))
                goto oops;
        if (dec->field_index[F_VERSION] >= 0 && get_version(ev, &f[F_VERSION]))
                goto oops;
        if (dec->field_index[F_ORIGIN] >= 0 && get_str(ev, &f[F_ORIGIN], &ev->origin))
                goto oops;
        if (dec->field_index[F_VALUE] >= 0 && get_str(ev, &f[F_VALUE], &ev->value))
                goto oops;
        if (dec->field_index[F_TTL] >= 0) {
                if (get_long(&f[F_TTL], &ev->ttl_ms, &present))
                        goto oops;
                if (!present)
                        ev->ttl_ms = -1;
                else if (ev->ttl_ms <= 0) { /* -1 is "absent" only inside krib */
                        errf(errstr, errstr_size, "invalid event: ttl_ms %lld must be positive",
                             (long long)ev->ttl_ms);
                        return -1;
                }
        }
        if (dec->field_index[F_ACTION] >= 0) {
                int rc = get_action(dec, &f[F_ACTION], &ev->action, errstr, errstr_size);
                if (rc == -2)
                        return -1;
                if (rc)
                        goto oops;
        }

        /* The rules of schemas/README.md that Avro cannot express. */
        return krib_validate_event(ev, errstr, errstr_size);
oops:
        errf(errstr, errstr_size, "cannot read decoded Avro value: %s", avro_strerror());
        return -1;
}
