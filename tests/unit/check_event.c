/* event: the decoded event's arena and the fail-safe degrade. */
#include <check.h>
#include <string.h>

#include "check_main.h"
#include "event.h"

START_TEST(degrade_keeps_only_the_keys) {
        krib_event_t ev;
        memset(&ev, 0, sizeof(ev));
        krib_event_reset(&ev);
        krib_event_strdup(&ev, &ev.entity, "users/1", 7);
        ev.keys = krib_event_alloc(&ev, 2 * sizeof(krib_str_t));
        krib_event_strdup(&ev, &ev.keys[0], "user:1", 6);
        krib_event_strdup(&ev, &ev.keys[1], "user:1:profile", 14);
        ev.key_count = 2;
        ev.version = krib_event_alloc(&ev, sizeof(krib_vv_entry_t));
        krib_event_strdup(&ev, &ev.version[0].origin, "db", 2);
        ev.version[0].counter = 9;
        ev.version_count = 1;
        ev.action = KRIB_ACTION_UPSERT;
        krib_event_strdup(&ev, &ev.value, "{\"v\":1}", 7);
        ev.value_hash = 1;
        ev.ttl_ms = 5000;
        krib_event_strdup(&ev, &ev.channel, "changes", 7);
        krib_event_strdup(&ev, &ev.note, "{}", 2);
        char why[] = "version v: 9223372036854775807 leaves no room";
        ck_assert_int_eq(krib_event_degrade(&ev, why, "krib.LimitExceeded"), 0);
        why[0] = 'X'; /* the reason was copied */
        ck_assert_str_eq(ev.defect.s, "version v: 9223372036854775807 leaves no room");
        ck_assert_str_eq(ev.defect_class, "krib.LimitExceeded");
        ck_assert_int_eq(ev.action, KRIB_ACTION_DELETE);
        ck_assert_uint_eq(ev.key_count, 2);
        ck_assert_str_eq(ev.keys[1].s, "user:1:profile");
        ck_assert_uint_eq(ev.version_count, 0);
        ck_assert_ptr_null(ev.value.s);
        ck_assert_int_eq(ev.value_hash, 0);
        ck_assert_int_eq(ev.ttl_ms, -1);
        ck_assert_ptr_null(ev.channel.s);
        ck_assert_ptr_null(ev.note.s);
        ck_assert_str_eq(ev.entity.s, "users/1");
        /* A reset forgets it: the slot's next record starts clean. */
        krib_event_reset(&ev);
        ck_assert_ptr_null(ev.defect.s);
        ck_assert_ptr_null(ev.defect_class);
        ck_assert_int_eq(ev.older, 0);
        krib_event_destroy(&ev);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("event");
        TCase *tc = tcase_create("degrade");
        tcase_add_test(tc, degrade_keeps_only_the_keys);
        suite_add_tcase(s, tc);
        return s;
}
