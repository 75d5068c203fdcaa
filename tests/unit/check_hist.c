#include <stdint.h>

#include "check_main.h"
#include "hist.h"

static krib_hist_t h;

START_TEST(quantiles_of_known_samples) {
        krib_hist_reset(&h);
        ck_assert_int_eq(krib_hist_quantile(&h, 0.5), -1);
        for (int v = 1; v <= 100; v++)
                krib_hist_add(&h, v);
        ck_assert_int_eq(krib_hist_quantile(&h, 0.5), 50);
        ck_assert_int_eq(krib_hist_quantile(&h, 0.99), 99);
        ck_assert_int_eq(krib_hist_quantile(&h, 1.0), 100);
        ck_assert_int_eq(krib_hist_quantile(&h, 0.001), 1);
        ck_assert_int_eq(h.max, 100);
        ck_assert_uint_eq(h.count, 100);
}
END_TEST

START_TEST(out_of_range_values) {
        krib_hist_reset(&h);
        krib_hist_add(&h, -5);
        krib_hist_add(&h, 10 * KRIB_HIST_MAX_MS);
        ck_assert_int_eq(krib_hist_quantile(&h, 0.5), 0);
        ck_assert_int_eq(krib_hist_quantile(&h, 1.0), KRIB_HIST_MAX_MS);
        ck_assert_int_eq(h.max, 10 * KRIB_HIST_MAX_MS);
}
END_TEST

/* A producer's ts_ms is untrusted: no overflow (UBSan aborts on one). */
START_TEST(hostile_timestamps_do_not_overflow) {
        static krib_hist_t h;
        krib_hist_reset(&h);
        krib_hist_add_since(&h, 1700000000000, INT64_MIN);
        krib_hist_add_since(&h, 1700000000000, INT64_MAX);
        krib_hist_add_since(&h, INT64_MAX, -1);
        krib_hist_add_since(&h, 1700000000000, 1699999999990);
        ck_assert_uint_eq(h.count, 4);
        ck_assert_int_eq(h.max, INT64_MAX);
        ck_assert_int_eq(h.sum, INT64_MAX); /* saturated, not wrapped */
        ck_assert_int_eq(krib_hist_quantile(&h, 0.25), 0);
        ck_assert_int_eq(krib_hist_quantile(&h, 0.5), 10);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("hist");
        TCase *tc = tcase_create("quantiles");
        tcase_add_test(tc, quantiles_of_known_samples);
        tcase_add_test(tc, out_of_range_values);
        tcase_add_test(tc, hostile_timestamps_do_not_overflow);
        suite_add_tcase(s, tc);
        return s;
}
