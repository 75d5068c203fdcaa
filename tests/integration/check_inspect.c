/* krib inspect against the real broker and cluster (docs/CONSISTENCY.md):
 * staleness that is real must be caught, and a fill without the guard must
 * never count as fresh. Every fault scenario of check_resilience.c runs the
 * inspector too (nothing stale at 60 s). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "itest.h"

static itest_names_t nm;

static void set(const char *key, const char *value) {
        ck_assert_int_eq(itest_cluster_cmd("SET", key, value, NULL, 0), 1);
}

static int has(const char *key) {
        char got[128];
        return itest_cluster_get(key, got, sizeof(got));
}

/* krib stopped for 30 s while events flow: the inspector reports stale keys
 * at 1 s, and none at 60 s once krib is back. */
START_TEST(krib_stopped_30s_is_caught_at_1s_and_healed_by_60s) {
        itest_names(&nm, "inspstop");
        const char *create[] = {"create", "--topic", nm.topic, "--partitions", "3", NULL};
        itest_loadgen(create);
        const char *populate[] = {"populate", "--redis", itest_redis_seed(),
                                  "--prefix", nm.prefix, "--count",
                                  "900",      NULL};
        itest_loadgen(populate);
        char ilog[300], iout[300], klog2[300];
        snprintf(ilog, sizeof(ilog), "%s.inspect", nm.log);
        snprintf(iout, sizeof(iout), "%s.report", nm.log);
        snprintf(klog2, sizeof(klog2), "%s.2", nm.log);
        const char *ienv[] = {nm.env_topic,
                              nm.env_group,
                              nm.env_brokers,
                              nm.env_nodes,
                              "KRIB_INSPECT_DELAYS_MS=1000,60000",
                              "KRIB_INSPECT_FILLS=guarded",
                              "KRIB_LOG_STATS_INTERVAL_MS=5000",
                              NULL};
        pid_t inspector = itest_inspect_start(NULL, ienv, ilog, iout);
        const char *env[] = {nm.env_topic, nm.env_group, nm.env_brokers, nm.env_nodes, NULL};
        pid_t krib = itest_krib_start(env, nm.log);
        /* 900 events at 20/s: 45 s, krib away from the 5th to the 35th. */
        char *producer_argv[] = {KRIB_LOADGEN_BIN,
                                 "produce",
                                 "--topic",
                                 nm.topic,
                                 "--prefix",
                                 nm.prefix,
                                 "--count",
                                 "900",
                                 "--rate",
                                 "20",
                                 "--linger-ms",
                                 "5",
                                 "--schema",
                                 KRIB_SOURCE_DIR "/schemas/invalidation.avsc",
                                 NULL};
        pid_t producer = itest_spawn(producer_argv);
        sleep(5);
        ck_assert_int_eq(itest_krib_stop(krib, SIGTERM, 30), 0);
        sleep(30);
        krib = itest_krib_start(env, klog2);
        ck_assert_int_eq(itest_wait(producer, 60), 0);
        ck_assert_msg(itest_wait_caught_up(nm.group, nm.topic, 3, 60) == 0,
                      "krib did not catch up");
        itest_inspect_t d[2];
        int rc = itest_inspect_finish(inspector, iout, 150, d, 2);
        ck_assert_int_eq(itest_krib_stop(krib, SIGTERM, 30), 0);
        fprintf(stderr,
                "inspect, krib stopped 30 s: at %s %ld checked, %ld stale; at %s %ld checked, "
                "%ld stale\n",
                d[0].delay, d[0].checked, d[0].stale, d[1].delay, d[1].checked, d[1].stale);
        ck_assert_msg(rc == 0, "inspector exit %d (log %s)", rc, ilog);
        ck_assert_str_eq(d[0].delay, "1s");
        ck_assert_int_eq(d[0].checked, 900);
        ck_assert_int_eq(d[1].checked, 900);
        /* 30 s of 45 without krib: about two thirds stale at 1 s. */
        ck_assert_msg(d[0].stale >= 400, "only %ld stale at 1 s", d[0].stale);
        ck_assert_int_eq(d[1].stale, 0);
        const char *line[] = {"msg=\"stale key\" delay=1s", "action=DELETE",
                              "redis=\"present, no known version\"", NULL};
        ck_assert_int_eq(itest_log_count(ilog, line), d[0].stale);
        unlink(ilog);
        unlink(iout);
        unlink(nm.log);
        unlink(klog2);
}
END_TEST

/* An application refills a key after krib's invalidation, without the
 * guard: reported as unverifiable (fills unguarded) or stale (fills
 * guarded), never as fresh; a refill that carries a newer version (as
 * krib_fill writes it) is fresh. */
START_TEST(unguarded_fill_is_never_fresh) {
        itest_names(&nm, "inspfill");
        const char *create[] = {"create", "--topic", nm.topic, "--partitions", "1", NULL};
        itest_loadgen(create);
        char k1[160], k2[160], f2[200];
        snprintf(k1, sizeof(k1), "%s:{1}", nm.prefix);
        snprintf(k2, sizeof(k2), "%s:{2}", nm.prefix);
        snprintf(f2, sizeof(f2), "krib:f:%s", k2);
        set(k1, "cached");
        set(k2, "cached");
        const char *env[] = {nm.env_topic, nm.env_group, nm.env_brokers, nm.env_nodes, NULL};
        pid_t krib = itest_krib_start(env, nm.log);
        const char *keys1[] = {k1, NULL}, *keys2[] = {k2, NULL};
        itest_produce_event(nm.topic, 0, "user:1", keys1, KRIB_ACTION_DELETE, "db=5", NULL);
        itest_produce_event(nm.topic, 0, "user:2", keys2, KRIB_ACTION_DELETE, "db=5", NULL);
        for (int i = 0; i < 200 && (has(k1) || has(k2)); i++)
                usleep(50000);
        ck_assert_msg(!has(k1) && !has(k2), "krib did not invalidate (log %s)", nm.log);
        /* The refills, within the first second after the events. */
        set(k1, "stale copy");
        set(k2, "newer copy");
        set(f2, "db=6\n");
        ck_assert_int_eq(itest_krib_stop(krib, SIGTERM, 30), 0);
        for (int guarded = 0; guarded < 2; guarded++) {
                char group[200], ilog[300], iout[300];
                snprintf(group, sizeof(group), "KRIB_KAFKA_GROUP_ID=%s-%d", nm.group, guarded);
                snprintf(ilog, sizeof(ilog), "%s.inspect%d", nm.log, guarded);
                snprintf(iout, sizeof(iout), "%s.report%d", nm.log, guarded);
                const char *ienv[] = {nm.env_topic,
                                      group,
                                      nm.env_brokers,
                                      nm.env_nodes,
                                      "KRIB_INSPECT_DELAYS_MS=2000",
                                      guarded ? "KRIB_INSPECT_FILLS=guarded"
                                              : "KRIB_INSPECT_FILLS=unguarded",
                                      NULL};
                pid_t inspector = itest_inspect_start(NULL, ienv, ilog, iout);
                sleep(1); /* the group joins, then the end is taken */
                itest_inspect_t d[1];
                int rc = itest_inspect_finish(inspector, iout, 60, d, 1);
                ck_assert_int_eq(d[0].checked, 2);
                if (guarded) {
                        ck_assert_int_eq(rc, 1); /* stale at the longest delay */
                        ck_assert_int_eq(d[0].stale, 1);
                        ck_assert_int_eq(d[0].unverifiable, 0);
                        const char *line[] = {"msg=\"stale key\"", k1, NULL};
                        ck_assert_int_eq(itest_log_count(ilog, line), 1);
                } else {
                        ck_assert_int_eq(rc, 0);
                        ck_assert_int_eq(d[0].stale, 0);
                        ck_assert_int_eq(d[0].unverifiable, 1);
                }
                unlink(ilog);
                unlink(iout);
        }
        unlink(nm.log);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("inspect");
        TCase *tc = tcase_create("inspect");
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, unguarded_fill_is_never_fresh);
        tcase_add_test(tc, krib_stopped_30s_is_caught_at_1s_and_healed_by_60s);
        suite_add_tcase(s, tc);
        return s;
}
