#include "breaker.h"
#include "check_main.h"

static krib_retry_policies_t pol;

static void setup(void) {
        krib_retry_policies_default(&pol);
        pol.open_base_us = 1000;
        pol.open_cap_us = 8000;
}

START_TEST(opens_when_a_class_budget_is_spent) {
        krib_breaker_t b;
        krib_breaker_init(&b);
        unsigned budget = pol.cls[KRIB_ERR_CONN].budget;
        for (unsigned i = 1; i < budget; i++) {
                ck_assert_int_eq(krib_breaker_failure(&b, &pol, KRIB_ERR_CONN, 0, 7), 0);
                ck_assert(krib_breaker_allows(&b, 1));
        }
        ck_assert_int_eq(krib_breaker_failure(&b, &pol, KRIB_ERR_CONN, 0, 7), 1);
        ck_assert_int_eq(b.state, KRIB_BREAKER_OPEN);
        ck_assert_int_eq(b.reason, KRIB_ERR_CONN);
        ck_assert(!krib_breaker_allows(&b, 1));
        ck_assert(!krib_breaker_allows(&b, 0));
        ck_assert_uint_eq(b.entered[KRIB_BREAKER_OPEN], 1);
}
END_TEST

START_TEST(budgets_are_per_class_and_reset_by_success) {
        krib_breaker_t b;
        krib_breaker_init(&b);
        /* Alternating classes never reach either budget on the other's count. */
        for (int i = 0; i < 2; i++) {
                krib_breaker_failure(&b, &pol, KRIB_ERR_CONN, 0, 1);
                krib_breaker_failure(&b, &pol, KRIB_ERR_BUSY, 0, 1);
        }
        ck_assert_int_eq(b.state, KRIB_BREAKER_CLOSED);
        krib_breaker_success(&b);
        for (unsigned i = 1; i < pol.cls[KRIB_ERR_CONN].budget; i++)
                krib_breaker_failure(&b, &pol, KRIB_ERR_CONN, 0, 1);
        ck_assert_int_eq(b.state, KRIB_BREAKER_CLOSED);
        /* Busy errors take their own, larger budget. */
        for (unsigned i = 1; i < pol.cls[KRIB_ERR_BUSY].budget; i++)
                krib_breaker_failure(&b, &pol, KRIB_ERR_BUSY, 0, 1);
        ck_assert_int_eq(b.state, KRIB_BREAKER_CLOSED);
        krib_breaker_failure(&b, &pol, KRIB_ERR_BUSY, 0, 1);
        ck_assert_int_eq(b.state, KRIB_BREAKER_OPEN);
        ck_assert_int_eq(b.reason, KRIB_ERR_BUSY);
}
END_TEST

START_TEST(oom_opens_at_once_but_lets_unlinks_through) {
        krib_breaker_t b;
        krib_breaker_init(&b);
        ck_assert_int_eq(krib_breaker_failure(&b, &pol, KRIB_ERR_OOM, 0, 1), 1);
        ck_assert(!krib_breaker_allows(&b, 1));
        ck_assert(krib_breaker_allows(&b, 0));
}
END_TEST

START_TEST(probe_half_open_then_close_or_reopen_longer) {
        krib_breaker_t b;
        krib_breaker_init(&b);
        krib_breaker_failure(&b, &pol, KRIB_ERR_OOM, 0, 0);
        int64_t first = b.probe_at_us;
        ck_assert_int_ge(first, 500); /* at least half the base period */
        ck_assert_int_le(first, 1000);
        ck_assert(!krib_breaker_probe_due(&b, first - 1));
        ck_assert(krib_breaker_probe_due(&b, first));
        /* A failed probe waits longer, without counting a new opening. */
        ck_assert_int_eq(krib_breaker_probed(&b, &pol, 0, first, 0), 0);
        ck_assert_int_eq(b.probe_at_us - first, 1000); /* 2000 / 2, zero jitter */
        ck_assert_uint_eq(b.entered[KRIB_BREAKER_OPEN], 1);
        int64_t now = b.probe_at_us;
        for (int i = 0; i < 10; i++) { /* capped */
                krib_breaker_probed(&b, &pol, 0, now, ~0ull);
                ck_assert_int_le(b.probe_at_us - now, pol.open_cap_us);
                now = b.probe_at_us;
        }
        ck_assert_int_eq(krib_breaker_probed(&b, &pol, 1, now, 0), 1);
        ck_assert_int_eq(b.state, KRIB_BREAKER_HALF_OPEN);
        ck_assert(krib_breaker_allows(&b, 1));
        /* Any real failure while half open reopens. */
        ck_assert_int_eq(krib_breaker_failure(&b, &pol, KRIB_ERR_BUSY, now, 0), 1);
        ck_assert_int_eq(b.state, KRIB_BREAKER_OPEN);
        ck_assert_uint_eq(b.entered[KRIB_BREAKER_OPEN], 2);
        krib_breaker_probed(&b, &pol, 1, b.probe_at_us, 0);
        ck_assert_int_eq(krib_breaker_success(&b), 1);
        ck_assert_int_eq(b.state, KRIB_BREAKER_CLOSED);
        ck_assert_uint_eq(b.entered[KRIB_BREAKER_CLOSED], 1);
        ck_assert_uint_eq(b.entered[KRIB_BREAKER_HALF_OPEN], 2);
        /* Closed again: the period starts from the base. */
        krib_breaker_failure(&b, &pol, KRIB_ERR_OOM, 0, 0);
        ck_assert_int_eq(b.probe_at_us, 500);
}
END_TEST

START_TEST(redirects_do_not_reopen_a_half_open_breaker) {
        krib_breaker_t b;
        krib_breaker_init(&b);
        krib_breaker_failure(&b, &pol, KRIB_ERR_OOM, 0, 0);
        krib_breaker_probed(&b, &pol, 1, b.probe_at_us, 0);
        ck_assert_int_eq(krib_breaker_failure(&b, &pol, KRIB_ERR_REDIRECT, 0, 0), 0);
        ck_assert_int_eq(b.state, KRIB_BREAKER_HALF_OPEN);
}
END_TEST

START_TEST(unknown_class_is_ignored) {
        krib_breaker_t b;
        krib_breaker_init(&b);
        for (int i = 0; i < 100; i++)
                ck_assert_int_eq(krib_breaker_failure(&b, &pol, KRIB_ERR_FINAL, 0, 0), 0);
        ck_assert_int_eq(b.state, KRIB_BREAKER_CLOSED);
        ck_assert_str_eq(krib_breaker_state_name(KRIB_BREAKER_HALF_OPEN), "half_open");
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("breaker");
        TCase *tc = tcase_create("states");
        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_add_test(tc, opens_when_a_class_budget_is_spent);
        tcase_add_test(tc, budgets_are_per_class_and_reset_by_success);
        tcase_add_test(tc, oom_opens_at_once_but_lets_unlinks_through);
        tcase_add_test(tc, probe_half_open_then_close_or_reopen_longer);
        tcase_add_test(tc, redirects_do_not_reopen_a_half_open_breaker);
        tcase_add_test(tc, unknown_class_is_ignored);
        suite_add_tcase(s, tc);
        return s;
}
