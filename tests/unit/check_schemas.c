#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"
#include "encode.h"
#include "schemas.h"
#include "util.h"

#define SCHEMA KRIB_SOURCE_DIR "/schemas/invalidation.avsc"

/* Reference values computed independently with fastavro 1.x:
 * to_parsing_canonical_form(parse_schema(...)) and fingerprint(..., "CRC-64-AVRO"),
 * whose hex is the little-endian byte order written after 0xC3 0x01. */
static const char expected_pcf[] =
        "{\"name\":\"io.krib.Invalidation\",\"type\":\"record\",\"fields\":[{\"name\":\"entity\","
        "\"type\":\"string\"},{\"name\":\"keys\",\"type\":{\"type\":\"array\",\"items\":\"string\"}"
        "},"
        "{\"name\":\"version\",\"type\":{\"type\":\"map\",\"values\":\"long\"}},{\"name\":"
        "\"action\","
        "\"type\":{\"name\":\"io.krib.Action\",\"type\":\"enum\",\"symbols\":[\"DELETE\","
        "\"UPSERT\","
        "\"TAG\"]}},{\"name\":\"ts_ms\",\"type\":\"long\"},{\"name\":\"origin\",\"type\":[\"null\","
        "\"string\"]},{\"name\":\"value\",\"type\":[\"null\",\"bytes\"]},{\"name\":\"ttl_ms\","
        "\"type\":[\"null\",\"long\"]},{\"name\":\"tags\",\"type\":{\"type\":\"array\",\"items\":"
        "\"string\"}}]}";
static const unsigned char expected_header[10] = {0xC3, 0x01, 0x31, 0xa9, 0x95,
                                                  0xf9, 0xd7, 0x80, 0xfe, 0x5f};

static char err[512];

START_TEST(canonical_form_and_fingerprint_match_reference) {
        size_t len;
        char *json = krib_util_slurp(SCHEMA, &len, err, sizeof(err));
        ck_assert_ptr_nonnull(json);
        char out[4096];
        int n = krib_schemas_canonical(json, len, out, sizeof(out));
        free(json);
        ck_assert_int_gt(n, 0);
        ck_assert_str_eq(out, expected_pcf);
        uint64_t fp = krib_schemas_fingerprint(out, (size_t)n);
        for (int i = 0; i < 8; i++)
                ck_assert_uint_eq((fp >> (8 * i)) & 0xff, expected_header[2 + i]);
        /* The empty input's fingerprint is the algorithm's seed. */
        ck_assert_uint_eq(krib_schemas_fingerprint("", 0), 0xc15d213aa4d7a795ULL);
}
END_TEST

static size_t encode_event(char *buf, size_t cap, const char *entity) {
        krib_encode_t *enc = krib_encode_new_file(SCHEMA, err, sizeof(err));
        ck_assert_ptr_nonnull(enc);
        krib_event_t ev;
        memset(&ev, 0, sizeof(ev));
        krib_event_reset(&ev);
        krib_event_strdup(&ev, &ev.entity, entity, strlen(entity));
        ev.keys = krib_event_alloc(&ev, sizeof(krib_str_t));
        krib_event_strdup(&ev, &ev.keys[0], "k", 1);
        ev.key_count = 1;
        ev.ts_ms = 42;
        size_t len;
        ck_assert_int_eq(krib_encode_event(enc, &ev, buf, cap, &len), 0);
        krib_event_destroy(&ev);
        krib_encode_destroy(enc);
        return len;
}

START_TEST(decodes_single_object_and_raw) {
        krib_schemas_t *s = krib_schemas_new(KRIB_WIRE_AUTO, SCHEMA, NULL, err, sizeof(err));
        ck_assert_msg(s != NULL, "%s", err);
        char msg[1024];
        memcpy(msg, expected_header, 10);
        size_t len = encode_event(msg + 10, sizeof(msg) - 10, "user:1");
        krib_event_t ev;
        memset(&ev, 0, sizeof(ev));
        krib_event_reset(&ev);
        ck_assert_int_eq(krib_schemas_decode(s, msg, len + 10, &ev, err, sizeof(err)), 0);
        ck_assert_str_eq(ev.entity.s, "user:1");
        ck_assert_int_eq(krib_schemas_decode(s, msg + 10, len, &ev, err, sizeof(err)), 0);
        ck_assert_str_eq(ev.entity.s, "user:1");
        msg[9] ^= 1; /* another fingerprint */
        ck_assert_int_eq(krib_schemas_decode(s, msg, len + 10, &ev, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "unknown writer schema fingerprint"));
        ck_assert_int_eq(krib_schemas_decode(s, msg, 5, &ev, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "truncated"));
        krib_schemas_destroy(s);
        /* Single-object only: raw bodies are refused. */
        s = krib_schemas_new(KRIB_WIRE_SINGLE_OBJECT, SCHEMA, NULL, err, sizeof(err));
        ck_assert_int_eq(krib_schemas_decode(s, msg + 10, len, &ev, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "not Avro single-object"));
        krib_schemas_destroy(s);
        krib_event_destroy(&ev);
}
END_TEST

static void write_file(const char *path, const char *text) {
        FILE *fp = fopen(path, "w");
        ck_assert_ptr_nonnull(fp);
        fputs(text, fp);
        fclose(fp);
}

START_TEST(older_and_newer_writer_schemas_from_the_directory) {
        char dir[] = "/tmp/krib-schemas-XXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(dir));
        char p1[128], p2[128];
        snprintf(p1, sizeof(p1), "%s/v0.avsc", dir);
        snprintf(p2, sizeof(p2), "%s/v2.avsc", dir);
        /* v0: no version, no action. v2: an extra field krib does not know. */
        static const char v0[] =
                "{\"type\":\"record\",\"name\":\"Invalidation\",\"namespace\":\"io.krib\","
                "\"fields\":[{\"name\":\"entity\",\"type\":\"string\"},"
                "{\"name\":\"keys\",\"type\":{\"type\":\"array\",\"items\":\"string\"}},"
                "{\"name\":\"ts_ms\",\"type\":\"long\"}]}";
        static const char v2[] =
                "{\"type\":\"record\",\"name\":\"Invalidation\",\"namespace\":\"io.krib\","
                "\"fields\":[{\"name\":\"tenant\",\"type\":\"string\"},"
                "{\"name\":\"entity\",\"type\":\"string\"},"
                "{\"name\":\"keys\",\"type\":{\"type\":\"array\",\"items\":\"string\"}},"
                "{\"name\":\"ts_ms\",\"type\":\"int\"}]}";
        write_file(p1, v0);
        write_file(p2, v2);
        krib_schemas_t *s = krib_schemas_new(KRIB_WIRE_AUTO, SCHEMA, dir, err, sizeof(err));
        ck_assert_msg(s != NULL, "%s", err);
        ck_assert_uint_eq(krib_schemas_count(s), 3);

        char canon[2048];
        unsigned char msg[256];
        krib_event_t ev;
        memset(&ev, 0, sizeof(ev));
        krib_event_reset(&ev);
        struct {
                const char *schema;
                const unsigned char *body;
                size_t len;
        } cases[] = {
                /* entity "ab", keys ["k"], ts 5 */
                {v0,
                 (const unsigned char *)"\x04"
                                        "ab\x02\x02k\x00\x0a",
                 8},
                /* tenant "t", entity "ab", keys ["k"], ts 5 (int) */
                {v2,
                 (const unsigned char *)"\x02t\x04"
                                        "ab\x02\x02k\x00\x0a",
                 10},
        };
        for (size_t c = 0; c < 2; c++) {
                int n = krib_schemas_canonical(cases[c].schema, strlen(cases[c].schema), canon,
                                               sizeof(canon));
                ck_assert_int_gt(n, 0);
                uint64_t fp = krib_schemas_fingerprint(canon, (size_t)n);
                msg[0] = 0xC3;
                msg[1] = 0x01;
                for (int i = 0; i < 8; i++)
                        msg[2 + i] = (unsigned char)(fp >> (8 * i));
                memcpy(msg + 10, cases[c].body, cases[c].len);
                ck_assert_msg(
                        krib_schemas_decode(s, msg, 10 + cases[c].len, &ev, err, sizeof(err)) == 0,
                        "case %zu: %s", c, err);
                ck_assert_str_eq(ev.entity.s, "ab");
                ck_assert_str_eq(ev.keys[0].s, "k");
                ck_assert_int_eq(ev.ts_ms, 5);
                ck_assert_int_eq(ev.action, KRIB_ACTION_DELETE);
        }
        krib_event_destroy(&ev);
        krib_schemas_destroy(s);
        /* A broken file names itself. */
        write_file(p1, "{\"type\":");
        ck_assert_ptr_null(krib_schemas_new(KRIB_WIRE_AUTO, SCHEMA, dir, err, sizeof(err)));
        ck_assert_ptr_nonnull(strstr(err, "v0.avsc"));
        unlink(p1);
        unlink(p2);
        rmdir(dir);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("schemas");
        TCase *tc = tcase_create("fingerprint");
        tcase_add_test(tc, canonical_form_and_fingerprint_match_reference);
        suite_add_tcase(s, tc);
        tc = tcase_create("single_object");
        tcase_add_test(tc, decodes_single_object_and_raw);
        tcase_add_test(tc, older_and_newer_writer_schemas_from_the_directory);
        suite_add_tcase(s, tc);
        return s;
}
