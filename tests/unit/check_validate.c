/* validate: the rules and limits every event meets, from any source. */
#include <stdint.h>
#include <string.h>

#include "check_main.h"
#include "validate.h"

static krib_str_t S(const char *s) {
        krib_str_t x = {s, strlen(s)};
        return x;
}

static krib_event_t ev;
static krib_str_t keys[4];
static krib_vv_entry_t vv[4];
static char err[512];

static void setup(void) {
        memset(&ev, 0, sizeof(ev));
        ev.entity = S("user:1");
        keys[0] = S("user:{1}:a");
        keys[1] = S("user:{1}:b");
        ev.keys = keys;
        ev.key_count = 2;
        vv[0] = (krib_vv_entry_t){S("db"), 5};
        vv[1] = (krib_vv_entry_t){S("eu"), 0};
        ev.version = vv;
        ev.version_count = 2;
        ev.action = KRIB_ACTION_DELETE;
        ev.ttl_ms = -1;
}

static void refused(const char *why) {
        ck_assert_int_eq(krib_validate_event(&ev, err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, why) != NULL, "wanted '%s', got '%s'", why, err);
}

START_TEST(a_good_event_passes) {
        ck_assert_int_eq(krib_validate_event(&ev, err, sizeof(err)), 0);
        ev.action = KRIB_ACTION_UPSERT;
        ev.value = S("v");
        ev.ttl_ms = 60000;
        ck_assert_int_eq(krib_validate_event(&ev, err, sizeof(err)), 0);
        ev.ttl_ms = KRIB_TTL_MAX_MS;
        ck_assert_int_eq(krib_validate_event(&ev, err, sizeof(err)), 0);
}
END_TEST

START_TEST(fence_namespace_is_reserved) {
        keys[1] = S("krib:f:user:{1}:a");
        refused("fence namespace");
        keys[1] = S("krib:f:");
        refused("fence namespace");
        keys[1] = S("krib:fx"); /* only the exact prefix is reserved */
        ck_assert_int_eq(krib_validate_event(&ev, err, sizeof(err)), 0);
}
END_TEST

START_TEST(origins_cannot_inject_fence_lines) {
        vv[1].origin = S("a=9");
        refused("origin");
        vv[1].origin = S("pg\nx");
        refused("origin");
        vv[1].origin = S("");
        refused("origin");
        char longname[300];
        memset(longname, 'o', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        vv[1].origin = S(longname);
        refused("origin");
        /* The log text of a hostile origin stays one line. */
        ck_assert_ptr_null(strchr(err, '\n'));
}
END_TEST

START_TEST(counters_and_ttl_are_bounded) {
        vv[0].counter = -5;
        refused("negative");
        vv[0].counter = 5;
        ev.action = KRIB_ACTION_UPSERT;
        ev.value = S("v");
        ev.ttl_ms = 0;
        refused("ttl_ms");
        ev.ttl_ms = -2;
        refused("ttl_ms");
        ev.ttl_ms = INT64_MAX - 5;
        refused("ttl_ms");
        ev.ttl_ms = -1; /* absent */
        ck_assert_int_eq(krib_validate_event(&ev, err, sizeof(err)), 0);
        ev.version_count = 0;
        refused("UPSERT needs");
}
END_TEST

START_TEST(empty_things_are_refused) {
        keys[1] = S("");
        refused("key 1 is empty");
        keys[1] = S("b");
        ev.entity = S("");
        refused("empty entity");
        ev.entity = S("e");
        ev.key_count = 0;
        refused("DELETE without keys");
        ev.action = KRIB_ACTION_TAG;
        refused("TAG without tags");
}
END_TEST

START_TEST(limits_reject_what_is_too_big) {
        krib_limits_t lim = {16, 2, 2};
        ck_assert_int_eq(krib_validate_limits(&ev, &lim, err, sizeof(err)), 0);
        keys[2] = S("x");
        ev.key_count = 3;
        ck_assert_int_eq(krib_validate_limits(&ev, &lim, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "limits.max_keys_per_event"));
        ev.key_count = 2;
        keys[1] = S("user:{1}:0123456789");
        ck_assert_int_eq(krib_validate_limits(&ev, &lim, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "limits.max_key_bytes"));
        keys[1] = S("b");
        vv[2] = (krib_vv_entry_t){S("us"), 1};
        ev.version_count = 3;
        ck_assert_int_eq(krib_validate_limits(&ev, &lim, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "limits.max_origins"));
        /* Duplicate origins (an Avro map may carry them) are refused. */
        lim.max_origins = 8;
        vv[2].origin = S("db");
        ck_assert_int_eq(krib_validate_limits(&ev, &lim, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "appears twice"));
        /* Never beyond what a fence name can hold, whatever the config. */
        lim.max_key_bytes = SIZE_MAX;
        ev.version_count = 2;
        static char huge[KRIB_KEY_MAX_BYTES + 2];
        memset(huge, 'k', sizeof(huge) - 1);
        keys[1] = S(huge);
        ck_assert_int_eq(krib_validate_limits(&ev, &lim, err, sizeof(err)), -1);
}
END_TEST

START_TEST(counters_parse_exactly) {
        int64_t v;
        ck_assert_int_eq(krib_validate_counter("9223372036854775807", 19, &v), 0);
        ck_assert_int_eq(v, INT64_MAX);
        ck_assert_int_eq(krib_validate_counter("9223372036854775808", 19, &v), -1);
        ck_assert_int_eq(krib_validate_counter("99999999999999999999", 20, &v), -1);
        ck_assert_int_eq(krib_validate_counter("-1", 2, &v), -1);
        ck_assert_int_eq(krib_validate_counter("+1", 2, &v), -1);
        ck_assert_int_eq(krib_validate_counter("", 0, &v), -1);
        ck_assert_int_eq(krib_validate_counter("0007", 4, &v), 0);
        ck_assert_int_eq(v, 7);
        ck_assert(krib_validate_canonical("0", 1));
        ck_assert(krib_validate_canonical("9223372036854775807", 19));
        ck_assert(!krib_validate_canonical("9223372036854775808", 19));
        ck_assert(!krib_validate_canonical("0001", 4));
        ck_assert(!krib_validate_canonical("-5", 2));
        ck_assert(!krib_validate_canonical("", 0));
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("validate");
        TCase *tc = tcase_create("rules");
        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_add_test(tc, a_good_event_passes);
        tcase_add_test(tc, fence_namespace_is_reserved);
        tcase_add_test(tc, origins_cannot_inject_fence_lines);
        tcase_add_test(tc, counters_and_ttl_are_bounded);
        tcase_add_test(tc, empty_things_are_refused);
        tcase_add_test(tc, limits_reject_what_is_too_big);
        tcase_add_test(tc, counters_parse_exactly);
        suite_add_tcase(s, tc);
        return s;
}
