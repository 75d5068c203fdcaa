/* route: config parsing (errors with file:line), topic matching, and
 * Debezium JSON envelopes (with and without schemas) to events. */
#include <libconfig.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "event.h"
#include "reorder.h"
#include "route.h"

static krib_routes_t *parse(const char *text, char *err, size_t size) {
        config_t cfg;
        config_init(&cfg);
        if (!config_read_string(&cfg, text)) {
                snprintf(err, size, "libconfig: %s line %d", config_error_text(&cfg),
                         config_error_line(&cfg));
                config_destroy(&cfg);
                return NULL;
        }
        krib_routes_t *rs =
                krib_routes_parse(config_lookup(&cfg, "routes"), "krib.conf", err, size);
        config_destroy(&cfg);
        return rs;
}

static const char *ROUTES =
        "routes = (\n"
        "  { name = \"users\"; topics = [ \"pg.public.users\" ];\n"
        "    keys = [ \"user:{${id}}:profile\", \"email:${email}\", "
        "\"t:${source.table}:${key.id}\" ];\n"
        "    version = \"source.lsn\"; },\n"
        "  { name = \"cards\"; topics = [ \"^pg[.]public[.]card_[0-9]+$\" ];\n"
        "    keys = [ \"card:${id}\" ]; action = \"write-through\"; columns = [ \"name\", "
        "\"email\" ];\n"
        "    version = \"column:version\"; ttl_ms = 60000; origin = \"db1\"; }\n"
        ");\n";

static const char *ROW = "{\"id\":7,\"name\":\"Ann\",\"email\":\"ann@example.com\",\"version\":12}";

static char *envelope(const char *op, const char *before, const char *after, int schemas) {
        static char buf[4096];
        char inner[3000];
        snprintf(inner, sizeof(inner),
                 "{\"before\":%s,\"after\":%s,\"source\":{\"version\":\"3.6.1.Final\","
                 "\"connector\":\"postgresql\",\"name\":\"pgjson\",\"ts_ms\":1700000000000,"
                 "\"snapshot\":\"false\",\"db\":\"krib\",\"schema\":\"public\",\"table\":\"users\","
                 "\"txId\":770,\"lsn\":24023128,\"xmin\":null},\"transaction\":null,\"op\":\"%s\","
                 "\"ts_ms\":1700000000100}",
                 before, after, op);
        if (schemas)
                snprintf(buf, sizeof(buf),
                         "{\"schema\":{\"type\":\"struct\",\"optional\":false,\"name\":"
                         "\"pg.public.users.Envelope\"},\"payload\":%s}",
                         inner);
        else
                snprintf(buf, sizeof(buf), "%s", inner);
        return buf;
}

static krib_routes_t *rs;
static krib_event_t ev;

static void setup(void) {
        char err[256];
        rs = parse(ROUTES, err, sizeof(err));
        ck_assert_msg(rs != NULL, "%s", err);
        memset(&ev, 0, sizeof(ev));
        krib_event_reset(&ev);
}

static void teardown(void) {
        krib_routes_destroy(rs);
        krib_event_destroy(&ev);
}

/* A record whose keys can be named but which cannot be versioned is
 * refused all the same, yet fail safe (issue 23, finding 10): it comes out
 * as a plain invalidation of its keys carrying the reason, to be
 * dead-lettered once they are unlinked. Seen here as the refusal it is. */
static krib_route_result_t refused_if_degraded(krib_route_result_t rc, char *err, size_t size) {
        if (rc != KRIB_ROUTE_OK || !ev.defect_class)
                return rc;
        ck_assert_uint_gt(ev.key_count, 0);
        ck_assert_int_eq(ev.action, KRIB_ACTION_DELETE);
        ck_assert_uint_eq(ev.version_count, 0);
        ck_assert_ptr_null(ev.value.s);
        ck_assert_ptr_null(ev.channel.s);
        snprintf(err, size, "%s", ev.defect.s);
        return KRIB_ROUTE_ERROR;
}

static krib_route_result_t decode(const char *topic, const char *key, const char *value,
                                  krib_route_info_t *info, char *err, size_t size) {
        krib_event_reset(&ev);
        const krib_route_t *r = krib_routes_match(rs, topic);
        ck_assert_ptr_nonnull(r);
        return refused_if_degraded(krib_route_decode(r, NULL, topic, key, key ? strlen(key) : 0,
                                                     value, value ? strlen(value) : 0, &ev, info,
                                                     err, size),
                                   err, size);
}

START_TEST(topics_match_by_name_and_regex) {
        ck_assert_str_eq(krib_route_name(krib_routes_match(rs, "pg.public.users")), "users");
        ck_assert_str_eq(krib_route_name(krib_routes_match(rs, "pg.public.card_12")), "cards");
        ck_assert_ptr_null(krib_routes_match(rs, "pg.public.card_x"));
        ck_assert_ptr_null(krib_routes_match(rs, "pg.public.users2"));
        char **t = NULL;
        size_t n = 0;
        ck_assert_int_eq(krib_routes_topics(rs, &t, &n), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_str_eq(t[1], "^pg[.]public[.]card_[0-9]+$");
        for (size_t i = 0; i < n; i++)
                free(t[i]);
        free(t);
}
END_TEST

START_TEST(insert_becomes_an_invalidation_of_every_template) {
        char err[256];
        krib_route_info_t info;
        for (int schemas = 0; schemas < 2; schemas++) {
                const char *key =
                        schemas ? "{\"schema\":{\"type\":\"struct\"},\"payload\":{\"id\":7}}"
                                : "{\"id\":7}";
                ck_assert_int_eq(decode("pg.public.users", key, envelope("c", "null", ROW, schemas),
                                        &info, err, sizeof(err)),
                                 KRIB_ROUTE_OK);
                ck_assert_int_eq(info.op, 'c');
                ck_assert_int_eq(ev.action, KRIB_ACTION_DELETE);
                ck_assert_uint_eq(ev.key_count, 3);
                ck_assert_str_eq(ev.keys[0].s, "user:{7}:profile");
                ck_assert_str_eq(ev.keys[1].s, "email:ann@example.com");
                ck_assert_str_eq(ev.keys[2].s, "t:users:7");
                ck_assert_str_eq(ev.entity.s, "public.users/{\"id\":7}");
                ck_assert_uint_eq(ev.version_count, 1);
                ck_assert_str_eq(ev.version[0].origin.s, "pgjson");
                ck_assert_int_eq(ev.version[0].counter, 24023128);
                ck_assert_int_eq(ev.ts_ms, 1700000000000); /* commit time */
        }
}
END_TEST

START_TEST(delete_takes_fields_from_before) {
        char err[256];
        krib_route_info_t info;
        ck_assert_int_eq(decode("pg.public.users", "{\"id\":7}", envelope("d", ROW, "null", 0),
                                &info, err, sizeof(err)),
                         KRIB_ROUTE_OK);
        ck_assert_int_eq(info.op, 'd');
        ck_assert_str_eq(ev.keys[0].s, "user:{7}:profile");
        ck_assert_int_eq(ev.action, KRIB_ACTION_DELETE);
}
END_TEST

START_TEST(write_through_selects_columns_and_ttl) {
        char err[256];
        krib_route_info_t info;
        ck_assert_int_eq(decode("pg.public.card_1", "{\"id\":7}", envelope("u", ROW, ROW, 0), &info,
                                err, sizeof(err)),
                         KRIB_ROUTE_OK);
        ck_assert_int_eq(ev.action, KRIB_ACTION_UPSERT);
        ck_assert_str_eq(ev.value.s, "{\"name\":\"Ann\",\"email\":\"ann@example.com\"}");
        ck_assert_int_eq(ev.ttl_ms, 60000);
        ck_assert_str_eq(ev.version[0].origin.s, "db1");
        ck_assert_int_eq(ev.version[0].counter, 12); /* column:version */
        /* A delete on a write-through route removes the key. */
        ck_assert_int_eq(decode("pg.public.card_1", "{\"id\":7}", envelope("d", ROW, "null", 0),
                                &info, err, sizeof(err)),
                         KRIB_ROUTE_OK);
        ck_assert_int_eq(ev.action, KRIB_ACTION_DELETE);
        ck_assert_ptr_null(ev.value.s);
        /* It follows the last write (version 12) without changing the column. */
        ck_assert_int_eq(ev.version[0].counter, 13);
}
END_TEST

START_TEST(write_through_as_hash_flattens_to_strings) {
        char err[256];
        krib_routes_t *r = parse("routes = ( { topics = [\"t\"]; keys = [\"h:${id}\"];\n"
                                 "  action = \"write-through\"; write_as = \"hash\"; } );",
                                 err, sizeof(err));
        ck_assert_msg(r != NULL, "%s", err);
        krib_route_info_t info;
        krib_event_reset(&ev);
        const char *v = "{\"op\":\"c\",\"after\":{\"id\":3,\"name\":\"Ann\",\"score\":1.5,"
                        "\"vip\":true,\"note\":null},\"source\":{\"lsn\":7}}";
        ck_assert_int_eq(krib_route_decode(krib_routes_match(r, "t"), NULL, "t", NULL, 0, v,
                                           strlen(v), &ev, &info, err, sizeof(err)),
                         KRIB_ROUTE_OK);
        ck_assert_int_eq(ev.value_hash, 1);
        ck_assert_str_eq(ev.value.s,
                         "{\"id\":\"3\",\"name\":\"Ann\",\"score\":\"1.5\",\"vip\":\"true\"}");
        krib_routes_destroy(r);
        char err2[256];
        ck_assert_ptr_null(parse("routes = ( { topics = [\"t\"]; keys = [\"h:${id}\"]; write_as = "
                                 "\"xml\"; } );",
                                 err2, sizeof(err2)));
        ck_assert_ptr_nonnull(strstr(err2, "write_as 'xml'"));
}
END_TEST

START_TEST(tombstones_and_truncates_are_skipped) {
        char err[256];
        krib_route_info_t info;
        ck_assert_int_eq(decode("pg.public.users", "{\"id\":7}", NULL, &info, err, sizeof(err)),
                         KRIB_ROUTE_SKIP);
        ck_assert_int_eq(info.op, 0);
        ck_assert_int_eq(decode("pg.public.users", NULL, envelope("t", "null", "null", 0), &info,
                                err, sizeof(err)),
                         KRIB_ROUTE_SKIP);
        ck_assert_int_eq(info.op, 't');
}
END_TEST

START_TEST(bad_records_say_why) {
        char err[256];
        krib_route_info_t info;
        static const struct {
                const char *value, *why;
        } cases[] = {
                {"not json", "value is not JSON"},
                {"{\"after\":{}}", "not a Debezium change event"},
                {"{\"op\":\"x\",\"after\":{}}", "unknown Debezium op"},
                {"{\"op\":\"c\",\"after\":null}", "without an after row"},
                {"{\"op\":\"c\",\"after\":{\"id\":1},\"source\":{\"lsn\":5}}",
                 "field email is missing"},
                {"{\"op\":\"c\",\"after\":{\"id\":1,\"email\":null},\"source\":{\"lsn\":5}}",
                 "field email is null"},
                {"{\"op\":\"c\",\"after\":{\"id\":{\"a\":1},\"email\":\"e\"}}", "not a scalar"},
                {"{\"op\":\"c\",\"after\":{\"id\":1,\"email\":\"e\"},\"source\":{\"table\":\"u\"}}",
                 "version source.lsn: no integer"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
                ck_assert_int_eq(decode("pg.public.users", "{\"id\":1}", cases[i].value, &info, err,
                                        sizeof(err)),
                                 KRIB_ROUTE_ERROR);
                ck_assert_msg(strstr(err, cases[i].why) != NULL, "%s: got '%s'", cases[i].value,
                              err);
        }
        /* A key longer than the 4 KiB limit is refused, not cut. */
        char *big = malloc(6000), *row = malloc(6200);
        memset(big, 'x', 5000);
        big[5000] = '\0';
        snprintf(row, 6200,
                 "{\"op\":\"c\",\"after\":{\"id\":\"%s\",\"email\":\"e\"},\"source\":{\"lsn\":1}}",
                 big);
        ck_assert_int_eq(decode("pg.public.users", NULL, row, &info, err, sizeof(err)),
                         KRIB_ROUTE_ERROR);
        ck_assert_ptr_nonnull(strstr(err, "longer than"));
        free(big);
        free(row);
}
END_TEST

/* A write-through whose value cannot be built still invalidates the keys it
 * rendered; the reason rides along for the dead letter (issue 10, 14). */
START_TEST(write_through_without_a_value_still_invalidates) {
        char err[256];
        krib_route_info_t info;
        ck_assert_int_eq(decode("pg.public.card_1", "{\"id\":7}",
                                "{\"op\":\"u\",\"after\":{\"id\":7,\"email\":\"e\","
                                "\"version\":12},\"source\":{\"name\":\"pg\"}}",
                                &info, err, sizeof(err)),
                         KRIB_ROUTE_OK);
        ck_assert_int_eq(ev.action, KRIB_ACTION_DELETE);
        ck_assert_uint_eq(ev.key_count, 1);
        ck_assert_str_eq(ev.keys[0].s, "card:7");
        ck_assert_uint_eq(ev.version_count, 1);
        ck_assert_ptr_nonnull(ev.defect.s);
        ck_assert_ptr_nonnull(strstr(ev.defect.s, "column name is missing"));
        ck_assert_ptr_null(ev.value.s);
        /* A whole row builds: no defect. */
        ck_assert_int_eq(decode("pg.public.card_1", "{\"id\":7}",
                                "{\"op\":\"u\",\"after\":{\"id\":7,\"name\":\"n\",\"email\":\"e\","
                                "\"version\":12},\"source\":{\"name\":\"pg\"}}",
                                &info, err, sizeof(err)),
                         KRIB_ROUTE_OK);
        ck_assert_int_eq(ev.action, KRIB_ACTION_UPSERT);
        ck_assert_ptr_null(ev.defect.s);
        /* The pipeline decodes into a reused slot without resetting it:
         * the earlier record's defect must not come along. */
        const krib_route_t *r = krib_routes_match(rs, "pg.public.card_1");
        const char *bad = "{\"op\":\"u\",\"after\":{\"id\":7,\"email\":\"e\",\"version\":12},"
                          "\"source\":{\"name\":\"pg\"}}",
                   *good = "{\"op\":\"u\",\"after\":{\"id\":7,\"name\":\"n\",\"email\":\"e\","
                           "\"version\":13},\"source\":{\"name\":\"pg\"}}";
        ck_assert_int_eq(krib_route_decode(r, NULL, "pg.public.card_1", "{\"id\":7}", 8, bad,
                                           strlen(bad), &ev, &info, err, sizeof(err)),
                         KRIB_ROUTE_OK);
        ck_assert_ptr_nonnull(ev.defect.s);
        ck_assert_int_eq(krib_route_decode(r, NULL, "pg.public.card_1", "{\"id\":7}", 8, good,
                                           strlen(good), &ev, &info, err, sizeof(err)),
                         KRIB_ROUTE_OK);
        ck_assert_ptr_null(ev.defect.s);
        ck_assert_uint_eq(ev.version_count, 1);
        ck_assert_int_eq(ev.version[0].counter, 13);
}
END_TEST

/* Versions mean the same on every path (issue 10, item 5): what the Avro
 * decoder refuses, a Debezium route refuses too, instead of clamping,
 * wrapping or injecting fence lines. */
START_TEST(hostile_versions_are_refused) {
        char err[256];
        krib_route_info_t info;
        static const struct {
                const char *source, *why;
        } cases[] = {
                {"{\"lsn\":\"99999999999999999999\",\"name\":\"pg\",\"table\":\"users\"}",
                 "no integer"},
                {"{\"lsn\":-5,\"name\":\"pg\",\"table\":\"users\"}", "no integer"},
                {"{\"lsn\":\"-5\",\"name\":\"pg\",\"table\":\"users\"}", "no integer"},
                {"{\"lsn\":\" 5\",\"name\":\"pg\",\"table\":\"users\"}", "no integer"},
                {"{\"lsn\":5,\"name\":\"a=9\\nb\",\"table\":\"users\"}", "origin"},
                {"{\"lsn\":5,\"name\":\"pg\\nx=1\",\"table\":\"users\"}", "origin"},
                {"{\"lsn\":5,\"name\":\"\",\"table\":\"users\"}", "origin"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
                char value[512];
                snprintf(value, sizeof(value),
                         "{\"op\":\"c\",\"after\":{\"id\":1,\"email\":\"e\"},\"source\":%s}",
                         cases[i].source);
                ck_assert_int_eq(
                        decode("pg.public.users", "{\"id\":1}", value, &info, err, sizeof(err)),
                        KRIB_ROUTE_ERROR);
                ck_assert_msg(strstr(err, cases[i].why) != NULL, "%s: got '%s'", value, err);
        }
        /* The largest LSN still works; a decimal string is exact. */
        ck_assert_int_eq(decode("pg.public.users", "{\"id\":1}",
                                "{\"op\":\"c\",\"after\":{\"id\":1,\"email\":\"e\"},"
                                "\"source\":{\"lsn\":\"9223372036854775807\",\"name\":\"pg\","
                                "\"table\":\"users\"}}",
                                &info, err, sizeof(err)),
                         KRIB_ROUTE_OK);
        ck_assert_int_eq(ev.version[0].counter, INT64_MAX);
        /* A delete at the largest column version cannot be ordered after
         * it: refused (UBSan aborted here before), not wrapped. */
        ck_assert_int_eq(decode("pg.public.card_1", "{\"id\":1}",
                                "{\"op\":\"d\",\"before\":{\"id\":1,\"name\":\"n\","
                                "\"email\":\"e\",\"version\":9223372036854775807},"
                                "\"source\":{\"name\":\"pg\",\"table\":\"users\"}}",
                                &info, err, sizeof(err)),
                         KRIB_ROUTE_ERROR);
        ck_assert_ptr_nonnull(strstr(err, "no room"));
        ck_assert_int_eq(decode("pg.public.card_1", "{\"id\":1}",
                                "{\"op\":\"d\",\"before\":{\"id\":1,\"name\":\"n\","
                                "\"email\":\"e\",\"version\":41},\"source\":{\"name\":\"pg\","
                                "\"table\":\"users\"}}",
                                &info, err, sizeof(err)),
                         KRIB_ROUTE_OK);
        ck_assert_int_eq(ev.version[0].counter, 42);
}
END_TEST

START_TEST(config_errors_name_file_and_line) {
        static const struct {
                const char *text, *want;
        } cases[] = {
                {"routes = ( { topics = [\"t\"]; keys = [\"k:${id\"]; } );", "krib.conf:1: "
                                                                             "routes[0]: keys[0] "
                                                                             "'k:${id': "
                                                                             "unterminated ${"},
                {"routes = (\n { topics = [\"t\"];\n keys = [\"constant\"]; } );",
                 "krib.conf:3: routes[0]: keys[0] 'constant': names no field"},
                {"routes = ( { topics = [\"t\"]; keys = [\"a$b${id}\"]; } );", "starts neither"},
                {"routes = ( { topics = [\"t\"]; keys = [\"${}\"]; } );", "bad field name"},
                {"routes = (\n { name = \"x\"; topics = [\"t\"]; keys = [\"${id}\"];\n  colour = "
                 "1; } );",
                 "krib.conf:3: routes[0]: unknown key 'colour'"},
                {"routes = ( { topics = [\"t\"]; keys = [\"${id}\"]; version = \"lsn\"; } );",
                 "version 'lsn' is not"},
                {"routes = ( { topics = [\"t\"]; keys = [\"${id}\"]; action = \"drop\"; } );",
                 "action 'drop'"},
                {"routes = ( { topics = [\"^(\"]; keys = [\"${id}\"]; } );", "bad topic regex"},
                {"routes = ( { keys = [\"${id}\"]; } );", "topics is required"},
                {"routes = ( { topics = [\"t\"]; } );", "keys (templates) is required"},
                {"routes = ( { topics = [\"t\"]; keys = [\"${id}\"]; format = \"xml\"; } );",
                 "format 'xml' is not supported (debezium-json, debezium-avro)"},
                {"routes = \"users\";", "routes must be a list"},
                /* A topic an earlier route already takes (by name or regex). */
                {"routes = ( { name = \"a\"; topics = [\"t\"]; keys = [\"${id}\"]; },\n"
                 "  { name = \"b\"; topics = [\"u\", \"t\"]; keys = [\"${id}\"]; } );",
                 "krib.conf:2: b: topic t is already claimed by route a"},
                {"routes = ( { name = \"a\"; topics = [\"^pg[.].*\"]; keys = [\"${id}\"]; },\n"
                 "  { name = \"b\"; topics = [\"pg.users\"]; keys = [\"${id}\"]; } );",
                 "topic pg.users is already claimed by route a"},
                {"routes = ( { topics = [\"t\"]; keys = [\"${id}\"]; action = \"write-through\";\n"
                 "  version = \"none\"; } );",
                 "krib.conf:2: routes[0]: write-through needs a version"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
                char err[512] = "";
                krib_routes_t *r = parse(cases[i].text, err, sizeof(err));
                ck_assert_msg(r == NULL, "accepted: %s", cases[i].text);
                ck_assert_msg(strstr(err, cases[i].want) != NULL, "%s: got '%s'", cases[i].text,
                              err);
        }
}
END_TEST

/* --print-config shows the routes as a `routes` list that parses back to
 * the same routes. */
START_TEST(printed_routes_parse_back) {
        char *a = NULL, *b = NULL, err[256];
        size_t na = 0, nb = 0;
        FILE *fp = open_memstream(&a, &na);
        krib_routes_print(rs, fp);
        fclose(fp);
        ck_assert_msg(strstr(a, "version = \"column:version\";") &&
                              strstr(a, "origin = \"db1\";") && strstr(a, "ttl_ms = 60000;"),
                      "%s", a);
        krib_routes_t *again = parse(a, err, sizeof(err));
        ck_assert_msg(again != NULL, "%s\n%s", err, a);
        fp = open_memstream(&b, &nb);
        krib_routes_print(again, fp);
        fclose(fp);
        ck_assert_str_eq(a, b);
        krib_routes_destroy(again);
        free(a);
        free(b);
}
END_TEST

START_TEST(dollars_escape) {
        char err[256];
        krib_routes_t *r = parse("routes = ( { topics = [\"t\"]; keys = [\"$$${id}$$\"]; "
                                 "version = \"none\"; } );",
                                 err, sizeof(err));
        ck_assert_msg(r != NULL, "%s", err);
        krib_route_info_t info;
        krib_event_reset(&ev);
        const char *v = "{\"op\":\"c\",\"after\":{\"id\":3}}";
        ck_assert_int_eq(krib_route_decode(krib_routes_match(r, "t"), NULL, "t", NULL, 0, v,
                                           strlen(v), &ev, &info, err, sizeof(err)),
                         KRIB_ROUTE_OK);
        ck_assert_str_eq(ev.keys[0].s, "$3$");
        ck_assert_uint_eq(ev.version_count, 0);
        ck_assert_str_eq(ev.entity.s, "$3$"); /* no Kafka key: the first key */
        krib_routes_destroy(r);
}
END_TEST

/* A change as Debezium's MariaDB connector 3.5.0 writes it (a real record's
 * source block: whole-second ts_ms, the transaction's GTID, the row event's
 * binlog position). */
static const char *mariadb(const char *op, const char *gtid, long pos, int row, long ts_s,
                           long env_ms) {
        static char buf[2][2048];
        static int k;
        k ^= 1;
        snprintf(buf[k], sizeof(buf[k]),
                 "{\"before\":%s,\"after\":%s,\"source\":{\"version\":\"3.5.0.Final\","
                 "\"connector\":\"mariadb\",\"name\":\"mdb\",\"ts_ms\":%ld000,\"snapshot\":"
                 "\"false\",\"db\":\"krib\",\"sequence\":null,\"ts_us\":%ld000000,\"ts_ns\":"
                 "%ld000000000,\"table\":\"users\",\"server_id\":1,\"gtid\":%s%s%s,\"file\":"
                 "\"binlog.000001\",\"pos\":%ld,\"row\":%d,\"thread\":null,\"query\":null},"
                 "\"transaction\":null,\"op\":\"%s\",\"ts_ms\":%ld}",
                 op[0] == 'd' ? ROW : "null", op[0] == 'd' ? "null" : ROW, ts_s, ts_s, ts_s,
                 gtid ? "\"" : "", gtid ? gtid : "null", gtid ? "\"" : "", pos, row, op, env_ms);
        return buf[k];
}

/* Decodes value under a one-route config with this version ("" = none
 * given) into *out (its vector copied into vv). */
static krib_route_result_t mdb_decode(const char *version, const char *value, krib_vv_entry_t *vv,
                                      size_t *nvv, char *err, size_t size) {
        char conf[512];
        snprintf(conf, sizeof(conf),
                 "routes = ( { name = \"m\"; topics = [ \"mdb.krib.users\" ]; keys = [ "
                 "\"user:${id}\" ]; %s%s%s } );\n",
                 *version ? "version = \"" : "", version, *version ? "\";" : "");
        krib_routes_t *one = parse(conf, err, size);
        ck_assert_msg(one != NULL, "%s", err);
        krib_event_reset(&ev);
        krib_route_info_t info;
        krib_route_result_t rc = refused_if_degraded(
                krib_route_decode(krib_routes_match(one, "mdb.krib.users"), NULL, "mdb.krib.users",
                                  "{\"id\":7}", 8, value, strlen(value), &ev, &info, err, size),
                err, size);
        *nvv = ev.version_count;
        for (size_t i = 0; i < ev.version_count && i < 2; i++) {
                vv[i] = ev.version[i];
                static char origins[4][128];
                static int o;
                o = (o + 1) % 4;
                snprintf(origins[o], sizeof(origins[o]), "%s", ev.version[i].origin.s);
                vv[i].origin.s = origins[o];
        }
        krib_routes_destroy(one);
        return rc;
}

/* MySQL/MariaDB: the default version is the binlog position per server,
 * the entity is named by source.db, and neither a GTID shared by one
 * transaction nor a whole-second timestamp makes a later change stale. */
START_TEST(mariadb_changes_are_ordered_by_the_binlog) {
        char err[256];
        krib_vv_entry_t a[2], b[2];
        size_t na, nb;
        /* Default (auto): one entry, origin per server. */
        ck_assert_int_eq(mdb_decode("", mariadb("u", "0-1-6", 1588, 0, 1796059958, 1796059958353),
                                    a, &na, err, sizeof(err)),
                         KRIB_ROUTE_OK);
        ck_assert_str_eq(ev.entity.s, "krib.users/{\"id\":7}");
        ck_assert_uint_eq(na, 1);
        ck_assert_str_eq(a[0].origin.s, "mdb/server-1");
        /* Latency from Debezium's read time: the source clock has whole seconds. */
        ck_assert_int_eq(ev.ts_ms, 1796059958353);
        /* The second update of the row in the same transaction (same GTID,
         * same second): newer under every version source. */
        static const char *const versions[] = {
                "", "auto", "source.binlog", "source.gtid", "source.ts_ms", "ts_ms"};
        for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
                ck_assert_int_eq(
                        mdb_decode(versions[i],
                                   mariadb("u", "0-1-6", 1588, 0, 1796059958, 1796059958353), a,
                                   &na, err, sizeof(err)),
                        KRIB_ROUTE_OK);
                ck_assert_int_eq(
                        mdb_decode(versions[i],
                                   mariadb("u", "0-1-6", 1789, 0, 1796059958, 1796059958353), b,
                                   &nb, err, sizeof(err)),
                        KRIB_ROUTE_OK);
                ck_assert_msg(krib_vv_compare(b, nb, a, na) == KRIB_VV_NEWER,
                              "version '%s': the later change is not newer", versions[i]);
                ck_assert_msg(krib_vv_compare(a, na, a, na) == KRIB_VV_EQUAL, "%s", versions[i]);
                /* The next transaction, a second later. */
                ck_assert_int_eq(
                        mdb_decode(versions[i],
                                   mariadb("d", "0-1-7", 2055, 0, 1796059959, 1796059959001), a,
                                   &na, err, sizeof(err)),
                        KRIB_ROUTE_OK);
                ck_assert_msg(krib_vv_compare(a, na, b, nb) == KRIB_VV_NEWER, "%s", versions[i]);
        }
        /* source.gtid: the domain, then the binlog tie-breaker. */
        ck_assert_int_eq(mdb_decode("source.gtid",
                                    mariadb("u", "0-1-6", 1588, 0, 1796059958, 1796059958353), a,
                                    &na, err, sizeof(err)),
                         KRIB_ROUTE_OK);
        ck_assert_uint_eq(na, 2);
        ck_assert_str_eq(a[0].origin.s, "mdb/gtid-0");
        ck_assert_int_eq(a[0].counter, 6);
        ck_assert_str_eq(a[1].origin.s, "mdb/server-1");
        /* What cannot be versioned says why. */
        ck_assert_int_eq(mdb_decode("source.gtid",
                                    mariadb("r", NULL, 1588, 0, 1796059958, 1796059958353), a, &na,
                                    err, sizeof(err)),
                         KRIB_ROUTE_ERROR);
        ck_assert_msg(strstr(err, "no GTID"), "%s", err);
        ck_assert_int_eq(mdb_decode("source.lsn",
                                    mariadb("u", "0-1-6", 1588, 0, 1796059958, 1796059958353), a,
                                    &na, err, sizeof(err)),
                         KRIB_ROUTE_ERROR);
        ck_assert_msg(strstr(err, "use version auto or source.binlog"), "%s", err);
        ck_assert_int_eq(mdb_decode("", mariadb("u", "0-1-6", 5000000000L, 0, 1796059958, 0), a,
                                    &na, err, sizeof(err)),
                         KRIB_ROUTE_ERROR);
        ck_assert_msg(strstr(err, "position 5000000000 in binlog.000001 is outside"), "%s", err);
        const char *other = "{\"after\":{\"id\":7},\"source\":{\"connector\":\"sqlserver\","
                            "\"name\":\"s\",\"ts_ms\":1},\"op\":\"c\",\"ts_ms\":2}";
        ck_assert_int_eq(mdb_decode("", other, a, &na, err, sizeof(err)), KRIB_ROUTE_ERROR);
        ck_assert_msg(strstr(err, "connector 'sqlserver' gives no lsn or binlog position"), "%s",
                      err);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("route");
        TCase *tc = tcase_create("debezium");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, topics_match_by_name_and_regex);
        tcase_add_test(tc, insert_becomes_an_invalidation_of_every_template);
        tcase_add_test(tc, delete_takes_fields_from_before);
        tcase_add_test(tc, write_through_selects_columns_and_ttl);
        tcase_add_test(tc, tombstones_and_truncates_are_skipped);
        tcase_add_test(tc, write_through_as_hash_flattens_to_strings);
        tcase_add_test(tc, bad_records_say_why);
        tcase_add_test(tc, hostile_versions_are_refused);
        tcase_add_test(tc, write_through_without_a_value_still_invalidates);
        tcase_add_test(tc, config_errors_name_file_and_line);
        tcase_add_test(tc, dollars_escape);
        tcase_add_test(tc, printed_routes_parse_back);
        tcase_add_test(tc, mariadb_changes_are_ordered_by_the_binlog);
        suite_add_tcase(s, tc);
        return s;
}
