#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "decode.h"
#include "encode.h"

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
        return s;
}
