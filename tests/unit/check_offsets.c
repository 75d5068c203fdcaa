#include "check_main.h"
#include "offsets.h"

static krib_offsets_t *o;

static void setup(void) {
        o = krib_offsets_new();
        ck_assert_ptr_nonnull(o);
}

static void teardown(void) {
        krib_offsets_destroy(o);
}

START_TEST(in_order) {
        for (int64_t i = 10; i < 15; i++)
                ck_assert_int_eq(krib_offsets_track(o, "t", 0, i), 0);
        ck_assert_int_eq(krib_offsets_committable(o, "t", 0), -1);
        ck_assert_uint_eq(krib_offsets_in_flight(o), 5);
        for (int64_t i = 10; i < 15; i++) {
                ck_assert_int_eq(krib_offsets_finish(o, "t", 0, i), 0);
                ck_assert_int_eq(krib_offsets_committable(o, "t", 0), i + 1);
        }
        ck_assert_uint_eq(krib_offsets_in_flight(o), 0);
}
END_TEST

START_TEST(held_counts_finished_behind_unfinished) {
        for (int64_t i = 0; i < 6; i++)
                krib_offsets_track(o, "t", 1, i);
        krib_offsets_track(o, "u", 0, 7);
        for (int64_t i = 1; i < 6; i++)
                krib_offsets_finish(o, "t", 1, i);
        /* 0 is open: 1-5 are finished but cannot be committed yet */
        ck_assert_uint_eq(krib_offsets_in_flight(o), 2);
        ck_assert_uint_eq(krib_offsets_held(o), 7);
        krib_offsets_finish(o, "t", 1, 0);
        ck_assert_uint_eq(krib_offsets_held(o), 1);
        krib_offsets_forget(o, "u", 0);
        ck_assert_uint_eq(krib_offsets_held(o), 0);
}
END_TEST

START_TEST(never_passes_unfinished) {
        for (int64_t i = 0; i < 5; i++)
                krib_offsets_track(o, "t", 3, i);
        krib_offsets_finish(o, "t", 3, 4);
        krib_offsets_finish(o, "t", 3, 2);
        krib_offsets_finish(o, "t", 3, 1);
        ck_assert_int_eq(krib_offsets_committable(o, "t", 3), -1); /* 0 still open */
        krib_offsets_finish(o, "t", 3, 0);
        ck_assert_int_eq(krib_offsets_committable(o, "t", 3), 3); /* 3 still open */
        krib_offsets_finish(o, "t", 3, 3);
        ck_assert_int_eq(krib_offsets_committable(o, "t", 3), 5);
}
END_TEST

START_TEST(gaps_in_offsets) {
        /* Compacted topics and transaction markers leave holes. */
        krib_offsets_track(o, "t", 0, 5);
        krib_offsets_track(o, "t", 0, 9);
        krib_offsets_finish(o, "t", 0, 9);
        ck_assert_int_eq(krib_offsets_committable(o, "t", 0), -1);
        krib_offsets_finish(o, "t", 0, 5);
        ck_assert_int_eq(krib_offsets_committable(o, "t", 0), 10);
}
END_TEST

START_TEST(refuses_rewind_and_double_finish) {
        krib_offsets_track(o, "t", 0, 7);
        ck_assert_int_eq(krib_offsets_track(o, "t", 0, 7), -2);
        ck_assert_int_eq(krib_offsets_track(o, "t", 0, 6), -2);
        ck_assert_int_eq(krib_offsets_finish(o, "t", 0, 8), -1);
        ck_assert_int_eq(krib_offsets_finish(o, "t", 0, 7), 0);
        ck_assert_int_eq(krib_offsets_finish(o, "t", 0, 7), -1);
        ck_assert_int_eq(krib_offsets_finish(o, "other", 0, 7), -1);
}
END_TEST

START_TEST(partitions_are_independent) {
        krib_offsets_track(o, "a", 0, 1);
        krib_offsets_track(o, "a", 1, 1);
        krib_offsets_track(o, "b", 0, 1);
        krib_offsets_finish(o, "a", 1, 1);
        ck_assert_int_eq(krib_offsets_committable(o, "a", 0), -1);
        ck_assert_int_eq(krib_offsets_committable(o, "a", 1), 2);
        ck_assert_int_eq(krib_offsets_committable(o, "b", 0), -1);
}
END_TEST

START_TEST(forget_resets_partition) {
        krib_offsets_track(o, "t", 0, 100);
        krib_offsets_track(o, "t", 0, 101);
        krib_offsets_finish(o, "t", 0, 100);
        ck_assert_uint_eq(krib_offsets_in_flight(o), 1);
        krib_offsets_forget(o, "t", 0);
        ck_assert_uint_eq(krib_offsets_in_flight(o), 0);
        ck_assert_int_eq(krib_offsets_committable(o, "t", 0), -1);
        /* After re-assignment the partition may start lower again. */
        ck_assert_int_eq(krib_offsets_track(o, "t", 0, 50), 0);
}
END_TEST

START_TEST(dirty_reports_each_change_once) {
        krib_offsets_track(o, "t", 0, 0);
        krib_offsets_track(o, "t", 1, 0);
        krib_offsets_finish(o, "t", 1, 0);
        size_t cur = 0;
        const char *topic;
        int32_t part;
        int64_t off;
        ck_assert_int_eq(krib_offsets_take_dirty(o, &cur, &topic, &part, &off), 1);
        ck_assert_str_eq(topic, "t");
        ck_assert_int_eq(part, 1);
        ck_assert_int_eq(off, 1);
        ck_assert_int_eq(krib_offsets_take_dirty(o, &cur, &topic, &part, &off), 0);
        cur = 0;
        ck_assert_int_eq(krib_offsets_take_dirty(o, &cur, &topic, &part, &off), 0);
}
END_TEST

START_TEST(random_finish_order_matches_model) {
        /* Against a direct model: watermark = first unfinished offset. */
        enum { N = 2000 };
        static uint8_t done[N];
        unsigned seed = 42;
        for (int i = 0; i < N; i++)
                krib_offsets_track(o, "t", 0, i);
        int64_t prev = -1;
        for (int k = 0; k < 5 * N; k++) {
                seed = seed * 1103515245u + 12345u;
                int i = (int)((seed >> 8) % N);
                int rc = krib_offsets_finish(o, "t", 0, i);
                ck_assert_int_eq(rc, done[i] ? -1 : 0);
                done[i] = 1;
                int first = 0;
                while (first < N && done[first])
                        first++;
                int64_t want = first ? first : -1;
                int64_t got = krib_offsets_committable(o, "t", 0);
                ck_assert_int_eq(got, want);
                ck_assert_int_ge(got, prev);
                prev = got;
        }
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("offsets");
        TCase *tc = tcase_create("watermark");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, in_order);
        tcase_add_test(tc, held_counts_finished_behind_unfinished);
        tcase_add_test(tc, never_passes_unfinished);
        tcase_add_test(tc, gaps_in_offsets);
        tcase_add_test(tc, refuses_rewind_and_double_finish);
        tcase_add_test(tc, partitions_are_independent);
        tcase_add_test(tc, forget_resets_partition);
        tcase_add_test(tc, dirty_reports_each_change_once);
        tcase_add_test(tc, random_finish_order_matches_model);
        suite_add_tcase(s, tc);
        return s;
}
