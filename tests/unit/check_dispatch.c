#include <stdint.h>

#include "check_main.h"
#include "dispatch.h"

#define SLOTS 512

START_TEST(plenty_of_slots_linger_as_configured) {
        ck_assert_int_eq(krib_dispatch_linger_due_us(1000000, 5, SLOTS, SLOTS), 1005000);
        ck_assert_int_eq(krib_dispatch_linger_due_us(1000000, 5, SLOTS / 2, SLOTS), 1005000);
        /* linger_ms = 0 sends at once while slots are plenty. */
        ck_assert_int_eq(krib_dispatch_linger_due_us(1000000, 0, 300, SLOTS), 1000000);
}
END_TEST

START_TEST(scarce_slots_double_the_linger_per_halving) {
        ck_assert_int_eq(krib_dispatch_linger_due_us(0, 5, 255, SLOTS), 10000);
        ck_assert_int_eq(krib_dispatch_linger_due_us(0, 5, 128, SLOTS), 10000);
        ck_assert_int_eq(krib_dispatch_linger_due_us(0, 5, 127, SLOTS), 20000);
        ck_assert_int_eq(krib_dispatch_linger_due_us(0, 5, 64, SLOTS), 20000);
        ck_assert_int_eq(krib_dispatch_linger_due_us(0, 5, 32, SLOTS), 40000);
        ck_assert_int_eq(krib_dispatch_linger_due_us(0, 5, 16, SLOTS), 80000);
        /* Capped: the healthy masters' events still go within 100 ms. */
        ck_assert_int_eq(krib_dispatch_linger_due_us(0, 5, 8, SLOTS), KRIB_DISPATCH_SCARCE_MAX_US);
        ck_assert_int_eq(krib_dispatch_linger_due_us(0, 5, 1, SLOTS), KRIB_DISPATCH_SCARCE_MAX_US);
        /* A zero linger doubles from 1 ms. */
        ck_assert_int_eq(krib_dispatch_linger_due_us(0, 0, 255, SLOTS), 2000);
}
END_TEST

START_TEST(a_long_configured_linger_is_kept) {
        ck_assert_int_eq(krib_dispatch_linger_due_us(0, 500, 1, SLOTS), 500000);
        ck_assert_int_eq(krib_dispatch_linger_due_us(0, 500, 300, SLOTS), 500000);
}
END_TEST

START_TEST(no_free_slot_never_lingers_out) {
        ck_assert_int_eq(krib_dispatch_linger_due_us(0, 5, 0, SLOTS), INT64_MAX);
        ck_assert_int_eq(krib_dispatch_linger_due_us(0, 0, 0, SLOTS), INT64_MAX);
}
END_TEST

/* The deadline only moves later as slots fill: the loop never waits for a
 * moment that comes sooner than one it was already given for fewer slots. */
START_TEST(monotonic_in_free_slots) {
        for (int64_t linger = 0; linger <= 200; linger += 5) {
                int64_t prev = INT64_MAX;
                for (size_t f = 0; f <= SLOTS; f++) {
                        int64_t due = krib_dispatch_linger_due_us(0, linger, f, SLOTS);
                        ck_assert_int_le(due, prev);
                        ck_assert_int_ge(due, linger * 1000);
                        prev = due;
                }
        }
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("dispatch");
        TCase *tc = tcase_create("linger");
        tcase_add_test(tc, plenty_of_slots_linger_as_configured);
        tcase_add_test(tc, scarce_slots_double_the_linger_per_halving);
        tcase_add_test(tc, a_long_configured_linger_is_kept);
        tcase_add_test(tc, no_free_slot_never_lingers_out);
        tcase_add_test(tc, monotonic_in_free_slots);
        suite_add_tcase(s, tc);
        return s;
}
