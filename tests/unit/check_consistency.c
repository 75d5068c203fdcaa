#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"
#include "consistency.h"

static krib_vv_entry_t vv(const char *origin, int64_t c) {
        krib_vv_entry_t e = {{origin, strlen(origin)}, c};
        return e;
}

START_TEST(fence_text_parses) {
        krib_vv_entry_t out[4];
        const char *t = "db=5\npg=17\n";
        ck_assert_int_eq(krib_consistency_parse_fence(t, strlen(t), out, 4), 2);
        ck_assert_int_eq(out[0].origin.len, 2);
        ck_assert_int_eq(out[1].counter, 17);
        ck_assert_int_eq(krib_consistency_parse_fence("L:abc", 5, out, 4), 0);
        ck_assert_int_eq(krib_consistency_parse_fence("db=x", 4, out, 4), -1);
        ck_assert_int_eq(krib_consistency_parse_fence("=5", 2, out, 4), -1);
        ck_assert_int_eq(krib_consistency_parse_fence("db=", 3, out, 4), -1);
        ck_assert_int_eq(krib_consistency_parse_fence("db=99999999999999999999", 23, out, 4), -1);
        ck_assert_int_eq(krib_consistency_parse_fence("a=1\nb=2\nc=3", 11, out, 2), -1);
}
END_TEST

/* The table of docs/CONSISTENCY.md, case by case. */
START_TEST(verdicts_follow_the_rules) {
        krib_vv_entry_t v5[] = {vv("db", 5)};
        static const struct {
                krib_action_t action;
                int versioned, present;
                const char *fence;
                int guarded;
                krib_check_verdict_t want;
        } cases[] = {
                /* DELETE of db=5 */
                {KRIB_ACTION_DELETE, 1, 0, NULL, 0, KRIB_CHECK_FRESH},
                {KRIB_ACTION_DELETE, 1, 0, "db=9\n", 1, KRIB_CHECK_FRESH}, /* fence "all" */
                {KRIB_ACTION_DELETE, 1, 1, "db=5\n", 1, KRIB_CHECK_FRESH},
                {KRIB_ACTION_DELETE, 1, 1, "db=6\n", 1, KRIB_CHECK_FRESH}, /* refilled newer */
                {KRIB_ACTION_DELETE, 1, 1, "db=4\n", 0, KRIB_CHECK_STALE},
                {KRIB_ACTION_DELETE, 1, 1, "other=9\n", 1, KRIB_CHECK_STALE}, /* concurrent */
                {KRIB_ACTION_DELETE, 1, 1, NULL, 1, KRIB_CHECK_STALE},
                {KRIB_ACTION_DELETE, 1, 1, NULL, 0, KRIB_CHECK_UNVERIFIABLE},
                {KRIB_ACTION_DELETE, 1, 1, "L:tok", 1, KRIB_CHECK_STALE},
                {KRIB_ACTION_DELETE, 1, 1, "L:tok", 0, KRIB_CHECK_UNVERIFIABLE},
                {KRIB_ACTION_DELETE, 1, 1, "garbage", 0, KRIB_CHECK_UNVERIFIABLE},
                /* UPSERT of db=5 */
                {KRIB_ACTION_UPSERT, 1, 1, "db=5\n", 1, KRIB_CHECK_FRESH},
                {KRIB_ACTION_UPSERT, 1, 1, "db=7\n", 0, KRIB_CHECK_FRESH},
                {KRIB_ACTION_UPSERT, 1, 0, NULL, 1, KRIB_CHECK_FRESH},
                {KRIB_ACTION_UPSERT, 1, 1, "db=3\n", 0, KRIB_CHECK_STALE},
                {KRIB_ACTION_UPSERT, 1, 1, NULL, 1, KRIB_CHECK_STALE},
                {KRIB_ACTION_UPSERT, 1, 1, NULL, 0, KRIB_CHECK_UNVERIFIABLE},
                /* no version in the event: a present key proves nothing */
                {KRIB_ACTION_DELETE, 0, 0, NULL, 1, KRIB_CHECK_FRESH},
                {KRIB_ACTION_DELETE, 0, 1, NULL, 1, KRIB_CHECK_UNVERIFIABLE},
                {KRIB_ACTION_DELETE, 0, 1, "db=1\n", 1, KRIB_CHECK_UNVERIFIABLE},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
                krib_check_state_t st = {cases[i].present, cases[i].fence,
                                         cases[i].fence ? strlen(cases[i].fence) : 0};
                char why[128];
                krib_check_verdict_t got =
                        krib_consistency_judge(cases[i].action, v5, cases[i].versioned ? 1 : 0, &st,
                                               cases[i].guarded, why, sizeof(why));
                ck_assert_msg(got == cases[i].want, "case %zu: got %d want %d (%s)", i, (int)got,
                              (int)cases[i].want, why);
        }
        /* A vector: newer in one origin and equal in the other is fresh. */
        krib_vv_entry_t v2[] = {vv("a", 3), vv("b", 4)};
        krib_check_state_t st = {1, "a=3\nb=5\n", 8};
        char why[128];
        ck_assert_int_eq(
                krib_consistency_judge(KRIB_ACTION_DELETE, v2, 2, &st, 1, why, sizeof(why)),
                KRIB_CHECK_FRESH);
        krib_check_state_t st2 = {1, "a=3\n", 4}; /* b missing counts as 0 */
        ck_assert_int_eq(
                krib_consistency_judge(KRIB_ACTION_DELETE, v2, 2, &st2, 1, why, sizeof(why)),
                KRIB_CHECK_STALE);
        ck_assert_str_eq(why, "present at a=3");
}
END_TEST

START_TEST(nines_over_a_sliding_window) {
        krib_nines_t n;
        ck_assert_int_eq(krib_nines_init(&n, 10), 0);
        ck_assert(isnan(krib_nines_value(&n, 100, NULL, NULL)));
        for (int i = 0; i < 9999; i++)
                krib_nines_add(&n, 100, 0);
        ck_assert(isinf(krib_nines_value(&n, 100, NULL, NULL)));
        krib_nines_add(&n, 101, 1);
        uint64_t c, s;
        ck_assert_double_eq_tol(krib_nines_value(&n, 101, &c, &s), 4.0, 1e-9);
        ck_assert_uint_eq(c, 10000);
        ck_assert_uint_eq(s, 1);
        /* 10 s later the 9999 fresh checks have left the window. */
        ck_assert_double_eq_tol(krib_nines_value(&n, 110, &c, &s), 0.0, 1e-9);
        ck_assert_uint_eq(c, 1);
        ck_assert(isnan(krib_nines_value(&n, 111, NULL, NULL)));
        /* A slot reused for a later second starts from zero. */
        krib_nines_add(&n, 120, 0);
        ck_assert(isinf(krib_nines_value(&n, 120, &c, &s)));
        ck_assert_uint_eq(c, 1);
        krib_nines_free(&n);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("consistency");
        TCase *tc = tcase_create("pure");
        tcase_add_test(tc, fence_text_parses);
        tcase_add_test(tc, verdicts_follow_the_rules);
        tcase_add_test(tc, nines_over_a_sliding_window);
        suite_add_tcase(s, tc);
        return s;
}
