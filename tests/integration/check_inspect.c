/* krib inspect against the real broker and cluster (docs/CONSISTENCY.md):
 * staleness that is real must be caught, and a fill without the guard must
 * never count as fresh. Every fault scenario of check_resilience.c runs the
 * inspector too (nothing stale at 60 s). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "fence.h"
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

/* The event (keys, one version "db=<v>") as a producer would send it, its
 * timestamp ts_ms. */
static void produce_at(int partition, const char *entity, const char *const *keys, size_t nk,
                       krib_action_t action, long v, int64_t ts_ms) {
        krib_event_t ev;
        memset(&ev, 0, sizeof(ev));
        krib_event_reset(&ev);
        krib_event_strdup(&ev, &ev.entity, entity, strlen(entity));
        ev.keys = krib_event_alloc(&ev, nk * sizeof(krib_str_t));
        for (size_t i = 0; i < nk; i++)
                krib_event_strdup(&ev, &ev.keys[i], keys[i], strlen(keys[i]));
        ev.key_count = nk;
        ev.version = krib_event_alloc(&ev, sizeof(krib_vv_entry_t));
        krib_event_strdup(&ev, &ev.version[0].origin, "db", 2);
        ev.version[0].counter = v;
        ev.version_count = 1;
        ev.action = action;
        char value[32];
        snprintf(value, sizeof(value), "v%ld", v);
        if (action == KRIB_ACTION_UPSERT)
                krib_event_strdup(&ev, &ev.value, value, strlen(value));
        ev.ts_ms = ts_ms;
        itest_produce_ev(nm.topic, partition, &ev);
        krib_event_destroy(&ev);
}

/* What Redis holds for key: nothing (v < -1), a value without a version
 * (v == -1), or a value with its fence at db=v (as write-through and
 * guarded fills leave it). */
static void hold(const char *key, long v) {
        if (v < -1)
                return;
        char fkey[300], val[32], fence[32];
        int fl = krib_fence_key(key, strlen(key), fkey, sizeof(fkey) - 1);
        fkey[fl] = '\0';
        snprintf(val, sizeof(val), "v%ld", v);
        set(key, val);
        if (v >= 0) {
                snprintf(fence, sizeof(fence), "db=%ld\n", v);
                set(fkey, fence);
        }
}

static int64_t wall_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Recall (issue 26): known staleness, injected while the stream replays
 * and reorders events, is flagged at 60 s, each key named; nothing else is.
 * Events carry their changes' timestamps, 55 s in the past (a replay or a
 * late arrival keeps its own), so their 60 s checks are due 5 s after they
 * are produced (their 1 s checks come late: counted late unless stale). */
START_TEST(recall_with_replays_and_reordering) {
        itest_names(&nm, "insprecall");
        const char *create[] = {"create", "--topic", nm.topic, "--partitions", "2", NULL};
        itest_loadgen(create);
        enum { N = 8, UP = KRIB_ACTION_UPSERT, DEL = KRIB_ACTION_DELETE };
        /* Per case: what Redis holds, the events (partition, action,
         * version) in the order they arrive, and whether the key is stale.
         * One partition: the inspector reads them in that order. */
        static const struct {
                const char *name;
                long holds;
                int nev;
                int ev[3][3];
                int stale;
                int arrival_ts; /* timestamps by arrival (a re-read, a re-publish) */
        } cases[] = {
                {"replayed-older-upsert", 1, 3, {{0, UP, 1}, {0, DEL, 2}, {0, UP, 1}}, 1, 0},
                {"reordered-older-upsert", 1, 2, {{0, UP, 2}, {0, UP, 1}}, 1, 0},
                {"lost-delete-old-value-restored", 2, 1, {{0, DEL, 3}}, 1, 0},
                {"write-through-one-behind", 4, 2, {{0, UP, 4}, {0, UP, 5}}, 1, 0},
                {"plain-set-after-delete", -1, 1, {{0, DEL, 2}}, 1, 0},
                {"write-through-reset-to-v0", 0, 1, {{0, UP, 3}}, 1, 0},
                {"newer-delete-then-late-older-upsert", 1, 2, {{0, DEL, 2}, {0, UP, 1}}, 1, 0},
                {"replayed-older-upsert-applied",
                 -2,
                 3,
                 {{0, UP, 1}, {0, DEL, 2}, {0, UP, 1}},
                 0,
                 0},
                {"reordered-older-upsert-applied", 2, 2, {{0, UP, 2}, {0, UP, 1}}, 0, 0},
                {"delete-under-newer-fill", 4, 1, {{0, DEL, 3}}, 0, 0},
                {"write-through-current", 5, 2, {{0, UP, 4}, {0, UP, 5}}, 0, 0},
                {"upsert-of-uncached", -2, 1, {{0, UP, 3}}, 0, 0},
                {"replayed-older-upsert-new-ts", 1, 3, {{0, UP, 1}, {0, DEL, 2}, {0, UP, 1}}, 1, 1},
                {"reordered-older-upsert-new-ts", 1, 2, {{0, UP, 2}, {0, UP, 1}}, 1, 1},
                {"late-older-upsert-new-ts", 1, 2, {{0, DEL, 2}, {0, UP, 1}}, 1, 1},
                {"replayed-applied-new-ts", -2, 3, {{0, UP, 1}, {0, DEL, 2}, {0, UP, 1}}, 0, 1},
        };
        size_t nc = sizeof(cases) / sizeof(cases[0]);
        long want_stale = 0;
        char key[256];
        for (size_t c = 0; c < nc; c++)
                for (int i = 0; i < N; i++) {
                        snprintf(key, sizeof(key), "%s:{c%zu-%d}", nm.prefix, c, i);
                        hold(key, cases[c].holds);
                        want_stale += cases[c].stale;
                }
        /* One event of limits.max_keys_per_event keys: the first and the
         * last hold an older version. */
        enum { BIG = 1000 };
        static char big[BIG][200];
        const char *bigk[BIG];
        for (int i = 0; i < BIG; i++) {
                snprintf(big[i], sizeof(big[i]), "%s:big:{%d}", nm.prefix, i);
                bigk[i] = big[i];
        }
        hold(big[0], 1);
        hold(big[BIG - 1], 1);
        want_stale += 2;

        char ilog[300], iout[300];
        snprintf(ilog, sizeof(ilog), "%s.inspect", nm.log);
        snprintf(iout, sizeof(iout), "%s.report", nm.log);
        const char *ienv[] = {nm.env_topic,
                              nm.env_group,
                              nm.env_brokers,
                              nm.env_nodes,
                              "KRIB_INSPECT_DELAYS_MS=1000,60000",
                              "KRIB_INSPECT_FILLS=guarded",
                              "KRIB_LIMITS_MAX_KEYS_PER_EVENT=1000",
                              NULL};
        pid_t inspector = itest_inspect_start(NULL, ienv, ilog, iout);
        sleep(3); /* joined before the first event is due */
        /* An event's timestamp is its change's: version v at base + v ms,
         * replays and late arrivals included; or, for the arrival_ts cases,
         * the time it was (re)published. */
        int64_t base = wall_ms() - 55000;
        for (size_t c = 0; c < nc; c++)
                for (int e = 0; e < cases[c].nev; e++)
                        for (int i = 0; i < N; i++) {
                                char ent[256];
                                snprintf(key, sizeof(key), "%s:{c%zu-%d}", nm.prefix, c, i);
                                snprintf(ent, sizeof(ent), "%s-c%zu-%d", nm.prefix, c, i);
                                const char *keys[] = {key};
                                produce_at(
                                        cases[c].ev[e][0], ent, keys, 1,
                                        (krib_action_t)cases[c].ev[e][1], cases[c].ev[e][2],
                                        base + (cases[c].arrival_ts ? 10 + e : cases[c].ev[e][2]));
                        }
        produce_at(0, "big", bigk, BIG, KRIB_ACTION_DELETE, 2, base + 2);
        sleep(7); /* the last 60 s checks are due */
        itest_inspect_t d[2];
        int rc = itest_inspect_finish(inspector, iout, 120, d, 2);
        fprintf(stderr, "recall: at %s %ld stale, %ld checked; want %ld stale\n", d[1].delay,
                d[1].stale, d[1].checked, want_stale);
        ck_assert_int_eq(rc, 1);
        ck_assert_msg(d[1].stale == want_stale, "%ld stale at 60 s, want %ld (see %s)", d[1].stale,
                      want_stale, ilog);
        /* Every stale key named at 60 s, and only those. */
        for (size_t c = 0; c < nc; c++)
                for (int i = 0; i < N; i++) {
                        snprintf(key, sizeof(key), "%s:{c%zu-%d}\"", nm.prefix, c, i);
                        const char *line[] = {"msg=\"stale key\" delay=60s", key, NULL};
                        ck_assert_msg(itest_log_count(ilog, line) == cases[c].stale,
                                      "%s: key %s flagged %d times at 60 s, want %d (see %s)",
                                      cases[c].name, key, itest_log_count(ilog, line),
                                      cases[c].stale, ilog);
                }
        for (int i = 0; i < BIG; i++) {
                snprintf(key, sizeof(key), "%.200s\"", big[i]);
                const char *line[] = {"msg=\"stale key\" delay=60s", key, NULL};
                ck_assert_int_eq(itest_log_count(ilog, line), i == 0 || i == BIG - 1);
        }
        unlink(ilog);
        unlink(iout);
}
END_TEST

/* Standalone mode: one server, every slot; the same checks. */
START_TEST(standalone_server_is_checked) {
        itest_names(&nm, "inspalone");
        const char *create[] = {"create", "--topic", nm.topic, "--partitions", "1", NULL};
        itest_loadgen(create);
        char stale[200], fresh[200], fkey[300];
        snprintf(stale, sizeof(stale), "%s:{1}", nm.prefix);
        snprintf(fresh, sizeof(fresh), "%s:{2}", nm.prefix);
        int fl = krib_fence_key(stale, strlen(stale), fkey, sizeof(fkey) - 1);
        fkey[fl] = '\0';
        redisContext *r = itest_redis(itest_standalone_port());
        freeReplyObject(redisCommand(r, "SET %s v1", stale));
        freeReplyObject(redisCommand(r, "SET %s db=1\n", fkey));
        redisFree(r);
        int64_t base = wall_ms() - 55000;
        const char *k1[] = {stale}, *k2[] = {fresh};
        produce_at(0, "e1", k1, 1, KRIB_ACTION_DELETE, 2, base);
        produce_at(0, "e2", k2, 1, KRIB_ACTION_DELETE, 2, base);
        char ilog[300], iout[300], nodes[64];
        snprintf(ilog, sizeof(ilog), "%s.inspect", nm.log);
        snprintf(iout, sizeof(iout), "%s.report", nm.log);
        snprintf(nodes, sizeof(nodes), "KRIB_REDIS_NODES=127.0.0.1:%d", itest_standalone_port());
        const char *ienv[] = {nm.env_topic,
                              nm.env_group,
                              nm.env_brokers,
                              nodes,
                              "KRIB_REDIS_MODE=standalone",
                              "KRIB_INSPECT_DELAYS_MS=60000",
                              "KRIB_INSPECT_FILLS=guarded",
                              NULL};
        pid_t inspector = itest_inspect_start(NULL, ienv, ilog, iout);
        sleep(8); /* joined, and the checks are due (5 s after the events) */
        itest_inspect_t d[1];
        int rc = itest_inspect_finish(inspector, iout, 60, d, 1);
        ck_assert_int_eq(rc, 1);
        ck_assert_int_eq(d[0].checked, 2);
        ck_assert_int_eq(d[0].stale, 1);
        const char *line[] = {"msg=\"stale key\"", stale, NULL};
        ck_assert_int_eq(itest_log_count(ilog, line), 1);
        unlink(ilog);
        unlink(iout);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("inspect");
        TCase *tc = tcase_create("inspect");
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, unguarded_fill_is_never_fresh);
        tcase_add_test(tc, krib_stopped_30s_is_caught_at_1s_and_healed_by_60s);
        suite_add_tcase(s, tc);
        tc = tcase_create("recall");
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, recall_with_replays_and_reordering);
        tcase_add_test(tc, standalone_server_is_checked);
        suite_add_tcase(s, tc);
        return s;
}
