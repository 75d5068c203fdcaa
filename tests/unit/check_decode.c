#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "decode.h"
#include "encode.h"
#include "util.h"
#include "validate.h"

#ifndef KRIB_SOURCE_DIR
#error KRIB_SOURCE_DIR must name the source tree
#endif
#define SCHEMA KRIB_SOURCE_DIR "/schemas/invalidation.avsc"

static krib_encode_t *enc;
static krib_decode_t *dec;
static krib_event_t in, out;
static char err[512];
static char buf[4096];

static void setup(void) {
        enc = krib_encode_new_file(SCHEMA, err, sizeof(err));
        ck_assert_msg(enc != NULL, "%s", err);
        dec = krib_decode_new_file(SCHEMA, err, sizeof(err));
        ck_assert_msg(dec != NULL, "%s", err);
        memset(&in, 0, sizeof(in));
        memset(&out, 0, sizeof(out));
        krib_event_reset(&in);
        krib_event_reset(&out);
}

static void teardown(void) {
        krib_encode_destroy(enc);
        krib_decode_destroy(dec);
        krib_event_destroy(&in);
        krib_event_destroy(&out);
}

static void S(krib_event_t *ev, krib_str_t *dst, const char *s) {
        ck_assert_int_eq(krib_event_strdup(ev, dst, s, strlen(s)), 0);
}

static void make_delete(const char *entity, int nkeys) {
        krib_event_reset(&in);
        S(&in, &in.entity, entity);
        in.keys = krib_event_alloc(&in, (size_t)nkeys * sizeof(krib_str_t));
        for (int i = 0; i < nkeys; i++) {
                char k[64];
                snprintf(k, sizeof(k), "%s:{x}:k%d", entity, i);
                S(&in, &in.keys[i], k);
        }
        in.key_count = (size_t)nkeys;
        in.version = krib_event_alloc(&in, 2 * sizeof(krib_vv_entry_t));
        S(&in, &in.version[0].origin, "eu");
        in.version[0].counter = 41;
        S(&in, &in.version[1].origin, "us");
        in.version[1].counter = 7;
        in.version_count = 2;
        in.ts_ms = 1764000000123;
}

static size_t encode(void) {
        size_t len = 0;
        ck_assert_int_eq(krib_encode_event(enc, &in, buf, sizeof(buf), &len), 0);
        return len;
}

START_TEST(round_trip_delete) {
        make_delete("user:1042", 3);
        size_t len = encode();
        ck_assert_int_eq(krib_decode_event(dec, buf, len, &out, err, sizeof(err)), 0);
        ck_assert_str_eq(out.entity.s, "user:1042");
        ck_assert_uint_eq(out.key_count, 3);
        ck_assert_str_eq(out.keys[2].s, "user:1042:{x}:k2");
        ck_assert_uint_eq(out.version_count, 2);
        int64_t eu = -1, us = -1;
        for (size_t i = 0; i < out.version_count; i++) {
                if (!strcmp(out.version[i].origin.s, "eu"))
                        eu = out.version[i].counter;
                if (!strcmp(out.version[i].origin.s, "us"))
                        us = out.version[i].counter;
        }
        ck_assert_int_eq(eu, 41);
        ck_assert_int_eq(us, 7);
        ck_assert_int_eq(out.action, KRIB_ACTION_DELETE);
        ck_assert_int_eq(out.ts_ms, 1764000000123);
        ck_assert_ptr_null(out.origin.s);
        ck_assert_ptr_null(out.value.s);
        ck_assert_int_eq(out.ttl_ms, -1);
}
END_TEST

START_TEST(round_trip_upsert_with_binary_value) {
        make_delete("item:9", 1);
        in.action = KRIB_ACTION_UPSERT;
        static const char val[] = {'a', 0, 'b', (char)0xff};
        in.value.s = val;
        in.value.len = sizeof(val);
        in.ttl_ms = 60000;
        S(&in, &in.origin, "orders-db");
        size_t len = encode();
        ck_assert_int_eq(krib_decode_event(dec, buf, len, &out, err, sizeof(err)), 0);
        ck_assert_int_eq(out.action, KRIB_ACTION_UPSERT);
        ck_assert_uint_eq(out.value.len, sizeof(val));
        ck_assert_int_eq(memcmp(out.value.s, val, sizeof(val)), 0);
        ck_assert_int_eq(out.ttl_ms, 60000);
        ck_assert_str_eq(out.origin.s, "orders-db");
}
END_TEST

START_TEST(round_trip_tag) {
        make_delete("product:1", 0);
        in.action = KRIB_ACTION_TAG;
        in.tags = krib_event_alloc(&in, sizeof(krib_str_t));
        S(&in, &in.tags[0], "catalog");
        in.tag_count = 1;
        size_t len = encode();
        ck_assert_int_eq(krib_decode_event(dec, buf, len, &out, err, sizeof(err)), 0);
        ck_assert_int_eq(out.action, KRIB_ACTION_TAG);
        ck_assert_uint_eq(out.tag_count, 1);
        ck_assert_str_eq(out.tags[0].s, "catalog");
}
END_TEST

START_TEST(decoder_reuse_keeps_events_apart) {
        for (int i = 1; i <= 200; i++) {
                char e[32];
                snprintf(e, sizeof(e), "e:%d", i);
                make_delete(e, i % 5 + 1);
                size_t len = encode();
                ck_assert_int_eq(krib_decode_event(dec, buf, len, &out, err, sizeof(err)), 0);
                ck_assert_str_eq(out.entity.s, e);
                ck_assert_uint_eq(out.key_count, (size_t)(i % 5 + 1));
        }
}
END_TEST

START_TEST(rejects_malformed) {
        ck_assert_int_eq(krib_decode_event(dec, NULL, 0, &out, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "tombstone"));
        const char *json = "{\"entity\":\"x\"}";
        ck_assert_int_eq(krib_decode_event(dec, json, strlen(json), &out, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "malformed Avro"));
        make_delete("user:1", 2);
        size_t len = encode();
        /* Truncated at every length, and one byte too many. */
        for (size_t cut = 0; cut < len; cut++)
                ck_assert_int_eq(krib_decode_event(dec, buf, cut, &out, err, sizeof(err)), -1);
        buf[len] = 0;
        ck_assert_int_eq(krib_decode_event(dec, buf, len + 1, &out, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "trailing bytes"));
}
END_TEST

START_TEST(random_bytes_never_crash) {
        unsigned seed = 1;
        for (int i = 0; i < 20000; i++) {
                size_t len = 1 + (size_t)(i % 200);
                for (size_t j = 0; j < len; j++) {
                        seed = seed * 1103515245u + 12345u;
                        buf[j] = (char)(seed >> 16);
                }
                /* Either a valid event or a clean error, never a crash. */
                int rc = krib_decode_event(dec, buf, len, &out, err, sizeof(err));
                ck_assert(rc == 0 || (rc == -1 && err[0]));
        }
}
END_TEST

START_TEST(hostile_lengths_refused_before_allocation) {
        /* entity length 2^40, then a block count of 2^62 for keys: both must
         * be refused by the pre-check, not handed to malloc. */
        static const unsigned char huge_str[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 'a'};
        ck_assert_int_eq(krib_decode_event(dec, huge_str, sizeof(huge_str), &out, err, sizeof(err)),
                         -1);
        ck_assert_ptr_nonnull(strstr(err, "length past the end"));
        static const unsigned char neg_str[] = {0x03, 'a'}; /* length -2 */
        ck_assert_int_eq(krib_decode_event(dec, neg_str, sizeof(neg_str), &out, err, sizeof(err)),
                         -1);
        ck_assert_ptr_nonnull(strstr(err, "negative length"));
        static const unsigned char many_keys[] = {2,    'e',  0xfe, 0xff, 0xff, 0xff, 0xff,
                                                  0xff, 0xff, 0xff, 0x7f, 2,    'k'};
        ck_assert_int_eq(
                krib_decode_event(dec, many_keys, sizeof(many_keys), &out, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "malformed Avro"));
        static const unsigned char bad_enum[] = {2, 'e', 2, 2, 'k', 0, 0, 20, 0};
        ck_assert_int_eq(krib_decode_event(dec, bad_enum, sizeof(bad_enum), &out, err, sizeof(err)),
                         -1);
        ck_assert_ptr_nonnull(strstr(err, "enum index out of range"));
}
END_TEST

START_TEST(rejects_invalid_events) {
        make_delete("user:1", 0);
        size_t len = encode();
        ck_assert_int_eq(krib_decode_event(dec, buf, len, &out, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "DELETE without keys"));

        make_delete("", 1);
        len = encode();
        ck_assert_int_eq(krib_decode_event(dec, buf, len, &out, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "empty entity"));

        make_delete("user:1", 1);
        in.action = KRIB_ACTION_UPSERT; /* no value */
        len = encode();
        ck_assert_int_eq(krib_decode_event(dec, buf, len, &out, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "UPSERT needs keys, a value and a version"));

        make_delete("user:1", 1);
        in.version[0].counter = -5;
        len = encode();
        ck_assert_int_eq(krib_decode_event(dec, buf, len, &out, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "negative"));
}
END_TEST

/* ttl_ms -1 means "absent" inside krib only: on the wire it is refused
 * like any non-positive TTL (issue 10, item 8). */
START_TEST(explicit_negative_ttl_is_refused) {
        make_delete("item:9", 1);
        in.action = KRIB_ACTION_UPSERT;
        in.value.s = "v";
        in.value.len = 1;
        in.ttl_ms = 1;
        size_t len = encode();
        /* ... ttl_ms: branch 1 (0x02), value 1 (0x02); tags: empty (0x00). */
        ck_assert_int_eq(buf[len - 3], 0x02);
        ck_assert_int_eq(buf[len - 2], 0x02);
        ck_assert_int_eq(krib_decode_event(dec, buf, len, &out, err, sizeof(err)), 0);
        buf[len - 2] = 0x01; /* zigzag -1 */
        ck_assert_int_eq(krib_decode_event(dec, buf, len, &out, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "ttl_ms"));
        /* Keys in krib's fence namespace are refused on this path too. */
        make_delete("item:9", 1);
        S(&in, &in.keys[0], "krib:f:{item:9}");
        len = encode();
        ck_assert_int_eq(krib_decode_event(dec, buf, len, &out, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "fence namespace"));
}
END_TEST

START_TEST(older_writer_schema_decodes) {
        /* A producer on a minimal schema: entity, keys, ts_ms only. */
        static const char old[] =
                "{\"type\":\"record\",\"name\":\"Invalidation\",\"namespace\":\"io.krib\","
                "\"fields\":[{\"name\":\"entity\",\"type\":\"string\"},"
                "{\"name\":\"keys\",\"type\":{\"type\":\"array\",\"items\":\"string\"}},"
                "{\"name\":\"ts_ms\",\"type\":\"long\"}]}";
        krib_decode_t *d = krib_decode_new_json(old, sizeof(old) - 1, err, sizeof(err));
        ck_assert_msg(d != NULL, "%s", err);
        /* entity "ab" (len 2 -> zigzag 4), keys [ "k" ], ts_ms 5 */
        static const char bin[] = {4, 'a', 'b', 2, 2, 'k', 0, 10};
        ck_assert_int_eq(krib_decode_event(d, bin, sizeof(bin), &out, err, sizeof(err)), 0);
        ck_assert_str_eq(out.entity.s, "ab");
        ck_assert_uint_eq(out.key_count, 1);
        ck_assert_str_eq(out.keys[0].s, "k");
        ck_assert_int_eq(out.ts_ms, 5);
        ck_assert_int_eq(out.action, KRIB_ACTION_DELETE);
        ck_assert_uint_eq(out.version_count, 0);
        krib_decode_destroy(d);
}
END_TEST

START_TEST(bad_schemas_are_refused) {
        ck_assert_ptr_null(krib_decode_new_json("{", 1, err, sizeof(err)));
        ck_assert_ptr_nonnull(strstr(err, "invalid Avro schema"));
        static const char no_entity[] = "{\"type\":\"record\",\"name\":\"R\",\"fields\":"
                                        "[{\"name\":\"ts_ms\",\"type\":\"long\"}]}";
        ck_assert_ptr_null(
                krib_decode_new_json(no_entity, sizeof(no_entity) - 1, err, sizeof(err)));
        ck_assert_ptr_nonnull(strstr(err, "required fields"));
        static const char bad_type[] = "{\"type\":\"record\",\"name\":\"R\",\"fields\":"
                                       "[{\"name\":\"entity\",\"type\":\"long\"},"
                                       "{\"name\":\"ts_ms\",\"type\":\"long\"}]}";
        ck_assert_ptr_null(krib_decode_new_json(bad_type, sizeof(bad_type) - 1, err, sizeof(err)));
        ck_assert_ptr_nonnull(strstr(err, "'entity' has type long"));
        ck_assert_ptr_null(krib_decode_new_file("/nonexistent.avsc", err, sizeof(err)));
        ck_assert_ptr_nonnull(strstr(err, "/nonexistent.avsc"));
}
END_TEST

/* ---- The differential test (issue 11, item 3) ----------------------------
 *
 * The reference is avro-c's generic decoder, as krib used it before the
 * plan: the same pre-walk, avro_value_read(), fields taken by name, the
 * same validation. Random datums are written for every writer schema of
 * writer_schemas[]
 * (krib's, older and newer ones, unknown fields of every Avro type, nullable
 * fields in either branch order, int where krib reads long, the action as a
 * string or as an enum with symbols krib does not know), some cut short,
 * some with a byte changed or bytes appended; both decoders must agree field
 * by field or both refuse. */

typedef struct {
        avro_schema_t schema;
        avro_value_iface_t *iface;
        avro_value_t value;
        avro_reader_t reader;
} oracle_t;

static int o_branch(avro_value_t *v, avro_value_t *out, int *present) {
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

static int o_str(krib_event_t *ev, avro_value_t *f, krib_str_t *dst) {
        avro_value_t v;
        int present;
        const void *p;
        size_t size;
        if (o_branch(f, &v, &present) || !present)
                return present ? -1 : 0;
        if (avro_value_get_type(&v) == AVRO_BYTES) {
                if (avro_value_get_bytes(&v, &p, &size))
                        return -1;
        } else {
                const char *cs;
                if (avro_value_get_string(&v, &cs, &size))
                        return -1;
                p = cs;
                size = size ? size - 1 : 0; /* avro-c counts the NUL */
        }
        return krib_event_strdup(ev, dst, p ? p : "", size);
}

static int o_long(avro_value_t *f, int64_t *out, int *present) {
        avro_value_t v;
        if (o_branch(f, &v, present) || !*present)
                return *present ? -1 : 0;
        if (avro_value_get_type(&v) == AVRO_INT32) {
                int32_t i;
                if (avro_value_get_int(&v, &i))
                        return -1;
                *out = i;
                return 0;
        }
        return avro_value_get_long(&v, out);
}

/* An array or map field: its value and item count (0 for null). */
static int o_items(avro_value_t *f, avro_value_t *v, size_t *n) {
        int present;
        *n = 0;
        if (o_branch(f, v, &present))
                return -1;
        return present && avro_value_get_size(v, n) ? -1 : 0;
}

static int o_strs(krib_event_t *ev, avro_value_t *f, krib_str_t **out, size_t *count) {
        avro_value_t v, e;
        size_t n;
        int rc = o_items(f, &v, &n);
        if (rc || !n)
                return rc;
        krib_str_t *a = krib_event_alloc(ev, n * sizeof(*a));
        for (size_t i = 0; i < n; i++)
                if (avro_value_get_by_index(&v, i, &e, NULL) || o_str(ev, &e, &a[i]))
                        return -1;
        *out = a;
        *count = n;
        return 0;
}

static int o_version(krib_event_t *ev, avro_value_t *f) {
        avro_value_t v, e;
        size_t n;
        int present;
        int rc = o_items(f, &v, &n);
        if (rc || !n)
                return rc;
        krib_vv_entry_t *a = krib_event_alloc(ev, n * sizeof(*a));
        for (size_t i = 0; i < n; i++) {
                const char *name;
                if (avro_value_get_by_index(&v, i, &e, &name) ||
                    krib_event_strdup(ev, &a[i].origin, name, strlen(name)) ||
                    o_long(&e, &a[i].counter, &present))
                        return -1;
        }
        ev->version = a;
        ev->version_count = n;
        return 0;
}

static int o_action(avro_value_t *f, krib_action_t *out) {
        avro_value_t v;
        int present;
        const char *sym = NULL;
        if (o_branch(f, &v, &present) || !present)
                return present ? -1 : 0;
        if (avro_value_get_type(&v) == AVRO_ENUM) {
                int i;
                if (avro_value_get_enum(&v, &i))
                        return -1;
                sym = avro_schema_enum_get(avro_value_get_schema(&v), i);
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
        return -1;
}

static int o_decode(oracle_t *o, const void *b, size_t len, krib_event_t *ev) {
        krib_event_reset(ev);
        if (!len || krib_avro_check(o->schema, b, len, err, sizeof(err)))
                return -1;
        avro_value_reset(&o->value);
        avro_reader_memory_set_source(o->reader, b, (int64_t)len);
        if (avro_value_read(o->reader, &o->value))
                return -1;
        static const char *const names[] = {"entity", "keys",  "version", "action", "ts_ms",
                                            "origin", "value", "ttl_ms",  "tags"};
        avro_value_t f[9];
        int have[9], present;
        for (int i = 0; i < 9; i++)
                have[i] = !avro_value_get_by_name(&o->value, names[i], &f[i], NULL);
        if (o_str(ev, &f[0], &ev->entity) || o_long(&f[4], &ev->ts_ms, &present) ||
            (have[1] && o_strs(ev, &f[1], &ev->keys, &ev->key_count)) ||
            (have[8] && o_strs(ev, &f[8], &ev->tags, &ev->tag_count)) ||
            (have[2] && o_version(ev, &f[2])) || (have[5] && o_str(ev, &f[5], &ev->origin)) ||
            (have[6] && o_str(ev, &f[6], &ev->value)) || (have[3] && o_action(&f[3], &ev->action)))
                return -1;
        if (have[7]) {
                if (o_long(&f[7], &ev->ttl_ms, &present))
                        return -1;
                if (!present)
                        ev->ttl_ms = -1;
                else if (ev->ttl_ms <= 0)
                        return -1;
        }
        return krib_validate_event(ev, err, sizeof(err));
}

/* A random datum of schema s, written as Avro binary. Top-level fields
 * krib reads get values that are mostly valid, so most datums survive
 * validation and are compared field by field. */
typedef struct {
        unsigned char *p;
        size_t len, cap;
        unsigned seed;
} wbuf_t;

static unsigned rnd(wbuf_t *w, unsigned n) {
        w->seed = w->seed * 1103515245u + 12345u;
        return (w->seed >> 8) % n;
}

static void put(wbuf_t *w, const void *b, size_t n) {
        if (w->len + n > w->cap) {
                w->cap = (w->len + n) * 2;
                w->p = realloc(w->p, w->cap);
                ck_assert_ptr_nonnull(w->p);
        }
        memcpy(w->p + w->len, b, n);
        w->len += n;
}

static void put_long(wbuf_t *w, int64_t v) {
        uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
        unsigned char b[10];
        size_t n = 0;
        do {
                b[n] = (unsigned char)(z & 0x7f);
                z >>= 7;
                if (z)
                        b[n] |= 0x80;
                n++;
        } while (z);
        put(w, b, n);
}

static void put_str(wbuf_t *w, const char *s, size_t n) {
        put_long(w, (int64_t)n);
        put(w, s, n);
}

static void put_random_str(wbuf_t *w, int tame) {
        static const char plain[] = "abcdefghijklmnopqrstuvwxyz0123456789:{}-_";
        char s[24];
        size_t n = rnd(w, tame ? 12 : 6) + (tame ? 1 : 0);
        for (size_t i = 0; i < n; i++)
                s[i] = tame || rnd(w, 4) ? plain[rnd(w, sizeof(plain) - 1)] : (char)rnd(w, 256);
        put_str(w, s, n);
}

static int64_t random_long(wbuf_t *w, int int32) {
        switch (rnd(w, 7)) {
        case 0:
                return -(int64_t)rnd(w, 1000);
        case 3:
                return (int64_t)rnd(w, 3) - 1; /* -1, 0, 1: the edges of ttl_ms */
        case 1:
                return int32 ? INT32_MAX : INT64_MAX;
        case 2:
                return int32 ? INT32_MIN : INT64_MIN;
        default:
                return (int64_t)rnd(w, 1u << 30);
        }
}

static void put_datum(wbuf_t *w, avro_schema_t s, const char *hint, int depth);

/* Arrays and maps: up to three blocks, sometimes with a negative count and
 * a byte size, as Avro allows. */
static void put_blocks(wbuf_t *w, avro_schema_t item, int is_map, const char *hint, int depth) {
        int tame = hint && strcmp(hint, "other") && rnd(w, 8);
        int blocks = depth > 3 ? 0 : tame ? 1 + (int)rnd(w, 3) : (int)rnd(w, 4);
        /* Duplicate origins too: a map keeps a key's first place and last
         * value. One origin in twenty is invalid. */
        static const char *const origins[] = {"eu", "us", "db1", "ap", "eu", "a=b", ""};
        for (int b = 0; b < blocks; b++) {
                wbuf_t items = {NULL, 0, 0, w->seed};
                int n = 1 + (int)rnd(w, 3);
                for (int i = 0; i < n; i++) {
                        if (is_map) {
                                const char *k = origins[rnd(&items, 20) ? rnd(&items, 5)
                                                                        : 5 + rnd(&items, 2)];
                                put_str(&items, k, strlen(k));
                        }
                        put_datum(&items, item, hint, depth + 1);
                }
                w->seed = items.seed;
                if (rnd(w, 4)) {
                        put_long(w, n);
                } else {
                        put_long(w, -n);
                        put_long(w, (int64_t)items.len);
                }
                put(w, items.p, items.len);
                free(items.p);
        }
        put_long(w, 0);
}

static void put_datum(wbuf_t *w, avro_schema_t s, const char *hint, int depth) {
        int tame = hint && strcmp(hint, "other");
        switch (avro_typeof(s)) {
        case AVRO_NULL:
                return;
        case AVRO_BOOLEAN: {
                unsigned char b = (unsigned char)rnd(w, 2);
                put(w, &b, 1);
                return;
        }
        case AVRO_INT32:
        case AVRO_INT64: {
                int int32 = avro_typeof(s) == AVRO_INT32;
                if (tame && !strcmp(hint, "version") && rnd(w, 8))
                        put_long(w, (int64_t)rnd(w, 100000));
                else if (tame && !strcmp(hint, "ts_ms") && rnd(w, 8))
                        put_long(w, int32 ? (int64_t)rnd(w, 1u << 30) : INT64_C(1764000000000));
                else if (tame && !strcmp(hint, "ttl_ms") && rnd(w, 4))
                        put_long(w, 1 + (int64_t)rnd(w, 100000));
                else
                        put_long(w, random_long(w, int32));
                return;
        }
        case AVRO_FLOAT:
        case AVRO_DOUBLE: {
                unsigned char b[8];
                for (int i = 0; i < 8; i++)
                        b[i] = (unsigned char)rnd(w, 256);
                put(w, b, avro_typeof(s) == AVRO_FLOAT ? 4 : 8);
                return;
        }
        case AVRO_STRING:
        case AVRO_BYTES:
                if (tame && !strcmp(hint, "action")) {
                        static const char *const acts[] = {"DELETE", "UPSERT",   "TAG",
                                                           "delete", "TRUNCATE", ""};
                        const char *a = acts[rnd(w, 10) ? rnd(w, 3) : 3 + rnd(w, 3)];
                        put_str(w, a, strlen(a));
                } else if (tame && !strcmp(hint, "keys") && !rnd(w, 40)) {
                        put_str(w, "krib:f:{x}", 10);
                } else {
                        put_random_str(w, tame && rnd(w, 20));
                }
                return;
        case AVRO_FIXED: {
                for (int64_t i = 0; i < avro_schema_fixed_size(s); i++) {
                        unsigned char b = (unsigned char)rnd(w, 256);
                        put(w, &b, 1);
                }
                return;
        }
        case AVRO_ENUM: {
                int n = avro_schema_enum_number_of_symbols(s);
                put_long(w, tame && rnd(w, 2) ? 0 : (int64_t)rnd(w, (unsigned)n));
                return;
        }
        case AVRO_ARRAY:
                put_blocks(w, avro_schema_array_items(s), 0, hint, depth);
                return;
        case AVRO_MAP:
                put_blocks(w, avro_schema_map_values(s), 1, hint, depth);
                return;
        case AVRO_UNION: {
                size_t n = avro_schema_union_size(s);
                /* krib's nullable fields: mostly the value. */
                size_t br = rnd(w, (unsigned)n);
                if (tame && n == 2 && rnd(w, 4))
                        br = is_avro_null(avro_schema_union_branch(s, 0)) ? 1 : 0;
                put_long(w, (int64_t)br);
                put_datum(w, avro_schema_union_branch(s, (int)br), hint, depth + 1);
                return;
        }
        case AVRO_RECORD:
                for (size_t i = 0; i < avro_schema_record_size(s); i++) {
                        const char *name = avro_schema_record_field_name(s, (int)i);
                        put_datum(w, avro_schema_record_field_get_by_index(s, (int)i),
                                  depth ? hint : name, depth + 1);
                }
                return;
        case AVRO_LINK:
                put_datum(w, avro_schema_link_target(s), hint, depth + 1);
                return;
        default:
                ck_abort_msg("schema type %d not generated", avro_typeof(s));
        }
}

static int str_eq(krib_str_t a, krib_str_t b) {
        return a.len == b.len && (a.s == NULL) == (b.s == NULL) &&
               (!a.len || !memcmp(a.s, b.s, a.len));
}

static void same_event(const krib_event_t *a, const krib_event_t *b, const char *where) {
        ck_assert_msg(str_eq(a->entity, b->entity), "%s: entity", where);
        ck_assert_msg(a->action == b->action, "%s: action", where);
        ck_assert_msg(a->ts_ms == b->ts_ms, "%s: ts_ms", where);
        ck_assert_msg(a->ttl_ms == b->ttl_ms, "%s: ttl_ms", where);
        ck_assert_msg(str_eq(a->origin, b->origin), "%s: origin", where);
        ck_assert_msg(str_eq(a->value, b->value), "%s: value", where);
        ck_assert_msg(a->key_count == b->key_count, "%s: key count", where);
        for (size_t i = 0; i < a->key_count; i++)
                ck_assert_msg(str_eq(a->keys[i], b->keys[i]), "%s: key %zu", where, i);
        ck_assert_msg(a->tag_count == b->tag_count, "%s: tag count", where);
        for (size_t i = 0; i < a->tag_count; i++)
                ck_assert_msg(str_eq(a->tags[i], b->tags[i]), "%s: tag %zu", where, i);
        ck_assert_msg(a->version_count == b->version_count, "%s: version count %zu vs %zu", where,
                      a->version_count, b->version_count);
        for (size_t i = 0; i < a->version_count; i++) {
                ck_assert_msg(str_eq(a->version[i].origin, b->version[i].origin), "%s: origin %zu",
                              where, i);
                ck_assert_msg(a->version[i].counter == b->version[i].counter, "%s: counter %zu",
                              where, i);
        }
}

/* Every writer schema of the test: krib's own and tests/unit/schemas/. */
static const char *const writer_schemas[] = {
        SCHEMA,
        KRIB_SOURCE_DIR "/tests/unit/schemas/writer-oldest.avsc",
        KRIB_SOURCE_DIR "/tests/unit/schemas/writer-before-actions.avsc",
        KRIB_SOURCE_DIR "/tests/unit/schemas/writer-newer.avsc",
        KRIB_SOURCE_DIR "/tests/unit/schemas/writer-enum-reordered.avsc",
};

START_TEST(plan_agrees_with_avro_c) {
        const size_t nschemas = sizeof(writer_schemas) / sizeof(writer_schemas[0]);
        const int per_schema = 25000; /* 100k+ datums in all */
        size_t accepted = 0, refused = 0, mutated_accepted = 0, nul_origins = 0;
        krib_event_t a, b;
        memset(&a, 0, sizeof(a));
        memset(&b, 0, sizeof(b));
        krib_event_reset(&a);
        krib_event_reset(&b);
        for (size_t si = 0; si < nschemas; si++) {
                size_t jlen;
                char *json = krib_util_slurp(writer_schemas[si], &jlen, err, sizeof(err));
                ck_assert_msg(json != NULL, "%s", err);
                krib_decode_t *plan = krib_decode_new_json(json, strlen(json), err, sizeof(err));
                ck_assert_msg(plan != NULL, "schema %zu: %s", si, err);
                oracle_t o;
                ck_assert_int_eq(avro_schema_from_json_length(json, strlen(json), &o.schema), 0);
                o.iface = avro_generic_class_from_schema(o.schema);
                ck_assert_int_eq(avro_generic_value_new(o.iface, &o.value), 0);
                o.reader = avro_reader_memory("", 0);
                wbuf_t w = {NULL, 0, 0, (unsigned)(1 + si * 7919)};
                for (int i = 0; i < per_schema; i++) {
                        w.len = 0;
                        put_datum(&w, o.schema, NULL, 0);
                        size_t len = w.len;
                        int mutation = (int)rnd(&w, 4);
                        if (mutation == 1 && len) {
                                len = rnd(&w, (unsigned)len); /* cut short */
                        } else if (mutation == 2 && len) {
                                w.p[rnd(&w, (unsigned)len)] = (unsigned char)rnd(&w, 256);
                        } else if (mutation == 3) {
                                unsigned char extra[3] = {(unsigned char)rnd(&w, 256), 0, 2};
                                put(&w, extra, 1 + rnd(&w, 3));
                                len = w.len;
                        }
                        int rp = krib_decode_event(plan, w.p, len, &a, err, sizeof(err));
                        int ro = o_decode(&o, w.p, len, &b);
                        char where[64];
                        snprintf(where, sizeof(where), "schema %zu datum %d (mutation %d)", si, i,
                                 mutation);
                        /* avro-c cuts map keys at a NUL byte (they are C
                         * strings there), so it reads origin "u\0" as "u";
                         * the plan keeps the byte and validation refuses
                         * the origin. The one disagreement allowed. */
                        if (rp && !ro && strstr(err, "version origin '") && strstr(err, "\\x00")) {
                                nul_origins++;
                                continue;
                        }
                        if (rp != ro) {
                                char hex[512] = "";
                                for (size_t k = 0; k < len && k < 120; k++)
                                        snprintf(hex + strlen(hex), sizeof(hex) - strlen(hex),
                                                 "%02x", w.p[k]);
                                ck_abort_msg("%s: plan %d, avro-c %d (plan says: %s) %s", where, rp,
                                             ro, rp ? err : "ok", hex);
                        }
                        if (rp) {
                                refused++;
                                continue;
                        }
                        same_event(&a, &b, where);
                        accepted++;
                        mutated_accepted += mutation != 0;
                }
                free(w.p);
                avro_reader_free(o.reader);
                avro_value_decref(&o.value);
                avro_value_iface_decref(o.iface);
                avro_schema_decref(o.schema);
                krib_decode_destroy(plan);
                free(json);
        }
        krib_event_destroy(&a);
        krib_event_destroy(&b);
        fprintf(stderr,
                "differential: %zu datums, %zu accepted by both (%zu mutated), %zu refused by "
                "both, %zu origins with a NUL refused by the plan only\n",
                accepted + refused + nul_origins, accepted, mutated_accepted, refused, nul_origins);
        /* Both paths must be exercised, or agreement proves nothing. */
        ck_assert_uint_ge(accepted + refused, 100000);
        ck_assert_uint_ge(accepted, 20000);
        ck_assert_uint_ge(refused, 20000);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("decode");
        TCase *tc = tcase_create("round_trip");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, round_trip_delete);
        tcase_add_test(tc, round_trip_upsert_with_binary_value);
        tcase_add_test(tc, round_trip_tag);
        tcase_add_test(tc, decoder_reuse_keeps_events_apart);
        suite_add_tcase(s, tc);
        tc = tcase_create("errors");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, rejects_malformed);
        tcase_add_test(tc, random_bytes_never_crash);
        tcase_add_test(tc, rejects_invalid_events);
        tcase_add_test(tc, explicit_negative_ttl_is_refused);
        tcase_add_test(tc, hostile_lengths_refused_before_allocation);
        tcase_add_test(tc, older_writer_schema_decodes);
        tcase_add_test(tc, bad_schemas_are_refused);
        suite_add_tcase(s, tc);
        tc = tcase_create("differential");
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, plan_agrees_with_avro_c);
        suite_add_tcase(s, tc);
        return s;
}
