#include <string.h>

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

START_TEST(errors_are_classified) {
        static const struct {
                const char *err;
                krib_err_class_t c;
        } cases[] = {
                {"TRYAGAIN Multiple keys request during rehashing of slot", KRIB_ERR_BUSY},
                {"CLUSTERDOWN The cluster is down", KRIB_ERR_BUSY},
                {"LOADING Redis is loading the dataset in memory", KRIB_ERR_BUSY},
                {"READONLY You can't write against a read only replica.", KRIB_ERR_BUSY},
                {"NOSCRIPT No matching script.", KRIB_ERR_BUSY},
                {"MOVED 3999 127.0.0.1:6381", KRIB_ERR_REDIRECT},
                {"ASK 3999 127.0.0.1:6381", KRIB_ERR_REDIRECT},
                {"OOM command not allowed when used memory > 'maxmemory'.", KRIB_ERR_OOM},
                {"OOM command not allowed when used memory > 'maxmemory'. script: ab66, on "
                 "@user_script:88.",
                 KRIB_ERR_OOM},
                {"NOAUTH Authentication required.", KRIB_ERR_AUTH},
                {"WRONGPASS invalid username-password pair", KRIB_ERR_AUTH},
                {"WRONGTYPE Operation against a key holding the wrong kind of value",
                 KRIB_ERR_FINAL},
                {"NOPERM this user has no permissions to run the 'unlink' command", KRIB_ERR_FINAL},
                {"ERR unknown command", KRIB_ERR_FINAL},
                {"BUSYKEY Target key name already exists.", KRIB_ERR_FINAL},
                {"ASKING", KRIB_ERR_FINAL},
                {"", KRIB_ERR_FINAL},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
                ck_assert_msg(krib_retry_classify(cases[i].err, strlen(cases[i].err)) == cases[i].c,
                              "%s", cases[i].err);
        ck_assert_str_eq(krib_retry_class_name(KRIB_ERR_OOM), "oom");
        ck_assert_str_eq(krib_retry_class_name(KRIB_ERR_FINAL), "final");
}
END_TEST

START_TEST(delay_follows_the_class_policy) {
        krib_retry_policies_t p;
        krib_retry_policies_default(&p);
        uint64_t st = 5;
        unsigned free = p.cls[KRIB_ERR_REDIRECT].free;
        ck_assert_uint_gt(free, 0);
        for (unsigned a = 0; a < free; a++)
                ck_assert_int_eq(
                        krib_retry_delay_us(&p, KRIB_ERR_REDIRECT, a, krib_retry_rand(&st)), 0);
        for (unsigned a = 0; a < 50; a++)
                for (int c = 0; c < KRIB_ERR_CLASSES; c++) {
                        int64_t d = krib_retry_delay_us(&p, (krib_err_class_t)c, a,
                                                        krib_retry_rand(&st));
                        ck_assert_int_ge(d, 0);
                        ck_assert_int_le(d, p.cls[c].cap_us);
                }
        ck_assert_int_eq(krib_retry_delay_us(&p, KRIB_ERR_FINAL, 3, 99), 0);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("retry");
        TCase *tc = tcase_create("backoff");
        tcase_add_test(tc, backoff_is_bounded_and_grows);
        tcase_add_test(tc, zero_base_means_no_wait);
        tcase_add_test(tc, errors_are_classified);
        tcase_add_test(tc, delay_follows_the_class_policy);
        suite_add_tcase(s, tc);
        return s;
}
