#include "check_main.h"
#include "retry.h"

START_TEST(backoff_is_bounded_and_grows) {
        uint64_t st = 99;
        for (unsigned a = 0; a < 40; a++) {
                int64_t ceil = 10000;
                for (unsigned i = 0; i < a && ceil < 1000000; i++)
                        ceil *= 2;
                if (ceil > 1000000)
                        ceil = 1000000;
                int64_t max_seen = 0;
                for (int k = 0; k < 2000; k++) {
                        int64_t d = krib_retry_backoff_us(a, 10000, 1000000, krib_retry_rand(&st));
                        ck_assert_int_ge(d, 0);
                        ck_assert_int_le(d, ceil);
                        if (d > max_seen)
                                max_seen = d;
                }
                /* Full jitter still reaches most of the window. */
                ck_assert_int_gt(max_seen, ceil / 2);
        }
}
END_TEST

START_TEST(zero_base_means_no_wait) {
        ck_assert_int_eq(krib_retry_backoff_us(5, 0, 1000, 12345), 0);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("retry");
        TCase *tc = tcase_create("backoff");
        tcase_add_test(tc, backoff_is_bounded_and_grows);
        tcase_add_test(tc, zero_base_means_no_wait);
        suite_add_tcase(s, tc);
        return s;
}
