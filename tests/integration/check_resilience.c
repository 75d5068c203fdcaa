/* Topology changes under traffic on the real Redis Cluster (issue 4 starts
 * here): slots migrate key by key while events flow; krib must meet ASK and
 * MOVED, lose nothing, and end with every offset committed. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "itest.h"
#include "slot.h"

static itest_names_t nm;

START_TEST(slots_migrate_while_events_flow) {
        const long n = 90000;
        const int tags = 20, moved_slots = 4;
        itest_names(&nm, "reshard");
        char ns[32], tm[16];
        snprintf(ns, sizeof(ns), "%ld", n);
        snprintf(tm, sizeof(tm), "%d", tags);
        const char *create[] = {"create", "--topic", nm.topic, "--partitions", "6", NULL};
        itest_loadgen(create);
        const char *populate[] = {"populate", "--redis", itest_redis_seed(), "--prefix", nm.prefix,
                                  "--count",  ns,        "--tag-mod",        tm,         NULL};
        itest_loadgen(populate);

        char mport[64];
        snprintf(mport, sizeof(mport), "KRIB_METRICS_PORT=%d", itest_metrics_port());
        const char *env[] = {nm.env_topic, nm.env_group, nm.env_brokers, nm.env_nodes, mport, NULL};
        pid_t pid = itest_krib_start(env, nm.log);
        char *producer_argv[] = {KRIB_LOADGEN_BIN,
                                 "produce",
                                 "--topic",
                                 nm.topic,
                                 "--prefix",
                                 nm.prefix,
                                 "--count",
                                 ns,
                                 "--tag-mod",
                                 tm,
                                 "--rate",
                                 "6000",
                                 "--schema",
                                 KRIB_SOURCE_DIR "/schemas/invalidation.avsc",
                                 NULL};
        pid_t producer = itest_spawn(producer_argv);
        usleep(1500000);

        /* Move the slots of the first tags, each holding ~4500 keys. */
        char seed_port[16];
        snprintf(seed_port, sizeof(seed_port), "%s", strrchr(itest_redis_seed(), ':') + 1);
        char *mig[16] = {KRIB_SOURCE_DIR "/tests/integration/migrate_slots.sh", seed_port};
        char slots[8][16];
        for (int t = 0; t < moved_slots; t++) {
                char tag[16];
                int l = snprintf(tag, sizeof(tag), "t%d", t);
                snprintf(slots[t], sizeof(slots[t]), "%u", krib_slot_of(tag, (size_t)l));
                mig[2 + t] = slots[t];
        }
        mig[2 + moved_slots] = NULL;
        char out[1024];
        ck_assert_msg(itest_run(mig, 240, out, sizeof(out)) == 0, "migration failed: %s", out);
        ck_assert_int_eq(itest_wait(producer, 120), 0);
        int caught_up = itest_wait_caught_up(nm.group, nm.topic, 6, 90);
        char body[300];
        snprintf(body, sizeof(body), "%s.metrics", nm.log);
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/metrics", body), 200);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        ck_assert_msg(caught_up == 0, "did not catch up (see %s)", nm.log);
        char keys[32];
        snprintf(keys, sizeof(keys), "%ld", n);
        const char *count[] = {"count",   "--redis", itest_redis_seed(), "--prefix", nm.prefix,
                               "--count", keys,      "--tag-mod",        tm,         NULL};
        ck_assert_int_eq(atol(itest_loadgen(count)), 0);
        /* Both redirections were met and handled. */
        const char *moved_zero[] = {"krib_redis_redirects_total{kind=\"moved\"} 0", NULL};
        const char *ask_zero[] = {"krib_redis_redirects_total{kind=\"ask\"} 0", NULL};
        const char *moved_line[] = {"krib_redis_redirects_total{kind=\"moved\"}", NULL};
        ck_assert_int_eq(itest_log_count(body, moved_line), 1);
        ck_assert_msg(itest_log_count(body, moved_zero) == 0, "no MOVED seen (%s)", body);
        ck_assert_msg(itest_log_count(body, ask_zero) == 0, "no ASK seen (%s)", body);
        fprintf(stderr, "reshard: %s", out);
        FILE *fp = fopen(body, "r");
        char line[256];
        while (fp && fgets(line, sizeof(line), fp))
                if (!strncmp(line, "krib_redis_redirects_total{", 27) ||
                    !strncmp(line, "krib_redis_retries_total ", 25))
                        fputs(line, stderr);
        if (fp)
                fclose(fp);
        unlink(body);
        unlink(nm.log);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("resilience");
        TCase *tc = tcase_create("reshard");
        tcase_set_timeout(tc, 400);
        tcase_add_test(tc, slots_migrate_while_events_flow);
        suite_add_tcase(s, tc);
        return s;
}
