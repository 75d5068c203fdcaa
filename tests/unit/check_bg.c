/* bg: jobs run off the caller's thread, wake it when done, and are handed
 * back whole; inline mode runs them at once; destroy waits for stragglers. */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "bg.h"
#include "check_main.h"
#include "clock.h"

typedef struct {
        krib_bg_job_t bg; /* first */
        int sleep_ms;
        pthread_t ran_on;
        int result;
        atomic_int *gate; /* non-NULL: waits until it is non-zero (at most 5 s) */
} tjob_t;

static void run(krib_bg_job_t *b) {
        tjob_t *j = (tjob_t *)b;
        j->ran_on = pthread_self();
        for (int i = 0; j->gate && !atomic_load(j->gate) && i < 500; i++)
                usleep(10000);
        if (j->sleep_ms)
                usleep((useconds_t)j->sleep_ms * 1000);
        j->result = 42;
}

static int readable(int fd, int ms) {
        struct pollfd p = {fd, POLLIN, 0};
        return poll(&p, 1, ms) == 1;
}

START_TEST(threaded_job_wakes_the_loop) {
        krib_bg_t *b = krib_bg_new(0);
        ck_assert_ptr_nonnull(b);
        atomic_int gate = 0;
        tjob_t j = {.bg.run = run, .gate = &gate};
        int64_t t0 = krib_clock_mono_us();
        ck_assert_int_eq(krib_bg_start(b, &j.bg), 0);
        /* Started without waiting for it; nothing to take yet. */
        ck_assert_int_lt(krib_clock_mono_us() - t0, 100000);
        ck_assert_uint_eq(krib_bg_pending(b), 1);
        ck_assert_ptr_null(krib_bg_take(b));
        ck_assert(!readable(krib_bg_wake_fd(b), 50));
        atomic_store(&gate, 1);
        ck_assert(readable(krib_bg_wake_fd(b), 5000));
        ck_assert(krib_bg_ready(b));
        krib_bg_job_t *got = krib_bg_take(b);
        ck_assert_ptr_eq(got, &j.bg);
        ck_assert_int_eq(j.result, 42);
        ck_assert(!pthread_equal(j.ran_on, pthread_self()));
        ck_assert_uint_eq(krib_bg_pending(b), 0);
        ck_assert_ptr_null(krib_bg_take(b));
        ck_assert(!readable(krib_bg_wake_fd(b), 0)); /* drained */
        krib_bg_destroy(b);
}
END_TEST

START_TEST(many_jobs_all_come_back) {
        enum { N = 64 };
        krib_bg_t *b = krib_bg_new(0);
        static tjob_t jobs[N];
        for (int i = 0; i < N; i++) {
                jobs[i] = (tjob_t){.bg.run = run, .sleep_ms = i % 7};
                ck_assert_int_eq(krib_bg_start(b, &jobs[i].bg), 0);
        }
        int seen[N] = {0}, taken = 0;
        int64_t deadline = krib_clock_mono_us() + 10000000;
        while (taken < N && krib_clock_mono_us() < deadline) {
                readable(krib_bg_wake_fd(b), 100);
                krib_bg_job_t *g;
                while ((g = krib_bg_take(b))) {
                        tjob_t *t = (tjob_t *)g;
                        ck_assert_int_eq(t->result, 42);
                        seen[t - jobs]++;
                        taken++;
                }
        }
        ck_assert_int_eq(taken, N);
        for (int i = 0; i < N; i++)
                ck_assert_int_eq(seen[i], 1);
        krib_bg_destroy(b);
}
END_TEST

START_TEST(inline_mode_runs_at_once) {
        krib_bg_t *b = krib_bg_new(1);
        tjob_t j = {.bg.run = run};
        ck_assert_int_eq(krib_bg_start(b, &j.bg), 0);
        ck_assert_int_eq(j.result, 42);
        ck_assert(pthread_equal(j.ran_on, pthread_self()));
        ck_assert(krib_bg_ready(b));
        ck_assert(readable(krib_bg_wake_fd(b), 0));
        ck_assert_ptr_eq(krib_bg_take(b), &j.bg);
        ck_assert_uint_eq(krib_bg_pending(b), 0);
        krib_bg_destroy(b);
}
END_TEST

START_TEST(wait_all_then_destroy) {
        krib_bg_t *b = krib_bg_new(0);
        tjob_t j = {.bg.run = run, .sleep_ms = 200};
        ck_assert_int_eq(krib_bg_start(b, &j.bg), 0);
        int64_t t0 = krib_clock_mono_us();
        krib_bg_wait_all(b);
        ck_assert_int_ge(krib_clock_mono_us() - t0, 150000);
        ck_assert_int_eq(j.result, 42);
        ck_assert_ptr_eq(krib_bg_take(b), &j.bg);
        /* A straggler at destroy: joined, its record left to its owner. */
        tjob_t k = {.bg.run = run, .sleep_ms = 100};
        ck_assert_int_eq(krib_bg_start(b, &k.bg), 0);
        krib_bg_destroy(b);
        ck_assert_int_eq(k.result, 42);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("bg");
        TCase *tc = tcase_create("bg");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, threaded_job_wakes_the_loop);
        tcase_add_test(tc, many_jobs_all_come_back);
        tcase_add_test(tc, inline_mode_runs_at_once);
        tcase_add_test(tc, wait_all_then_destroy);
        suite_add_tcase(s, tc);
        return s;
}
