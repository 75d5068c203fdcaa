/* The least-privilege ACL line of docs/OPERATIONS.md, read from the document
 * itself, is exactly enough (issue 25): krib runs as that user in the
 * cluster through a slot migration (ASK and MOVED), with
 * redis.wait_replicas = 1, write-through, a TAG sweep and a guarded fill,
 * and the inspector runs as the same user. Nothing is refused (NOPERM),
 * nothing is lost or stale, and the commands the line exists for (ASKING,
 * WAIT, SCAN, EXISTS) were really sent. */
#include <check.h>
#include <hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "clock.h"
#include "fence.h"
#include "itest.h"
#include "slot.h"

#define USER     "krib-acl-doc"
#define PASSWORD "acl-doc-pw"

/* The documented line as argv: "ACL SETUSER krib on >PASSWORD ..." with the
 * test's user and password. Returns argc. */
static int documented_acl(char *buf, size_t size, char **argv, int max) {
        FILE *fp = fopen(KRIB_SOURCE_DIR "/docs/OPERATIONS.md", "r");
        ck_assert_ptr_nonnull(fp);
        char line[512];
        size_t n = 0;
        int in = 0;
        buf[0] = '\0';
        while (fgets(line, sizeof(line), fp)) {
                if (!in && strncmp(line, "ACL SETUSER krib ", 17) == 0)
                        in = 1;
                if (!in)
                        continue;
                if (strncmp(line, "```", 3) == 0)
                        break;
                for (char *p = line; *p && n + 2 < size; p++)
                        buf[n++] = *p == '\\' || *p == '\n' ? ' ' : *p;
                buf[n] = '\0';
        }
        fclose(fp);
        ck_assert_msg(in, "no ACL SETUSER krib line in docs/OPERATIONS.md");
        int argc = 0;
        for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && argc < max;
             t = strtok_r(NULL, " ", &save)) {
                if (argc == 2 && !strcmp(t, "krib"))
                        t = USER;
                else if (!strcmp(t, ">PASSWORD"))
                        t = ">" PASSWORD;
                argv[argc++] = t;
        }
        ck_assert_int_gt(argc, 6);
        return argc;
}

/* Calls of one command on the six nodes, from INFO commandstats. */
static long calls(const char *cmd) {
        int base = getenv("KRIB_PORT_BASE") ? atoi(getenv("KRIB_PORT_BASE")) : 19000;
        char needle[64];
        snprintf(needle, sizeof(needle), "cmdstat_%s:calls=", cmd);
        long sum = 0;
        for (int i = 0; i < 6; i++) {
                redisContext *c = itest_redis(base + 100 + i);
                redisReply *r = redisCommand(c, "INFO commandstats");
                const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, needle) : NULL;
                if (p)
                        sum += atol(p + strlen(needle));
                freeReplyObject(r);
                redisFree(c);
        }
        return sum;
}

/* FCALL through redis-cli -c (follows MOVED), as an application would. */
static long fcall(const char *fn, const char *key, const char *fkey, const char *a1, const char *a2,
                  const char *a3, const char *a4, const char *a5) {
        const char *c = strrchr(itest_redis_seed(), ':');
        const char *args[] = {a1, a2, a3, a4, a5};
        char *argv[16] = {"/usr/bin/redis-cli", "-c", "-p",        (char *)c + 1, "FCALL",
                          (char *)fn,           "2",  (char *)key, (char *)fkey};
        int n = 9;
        for (int i = 0; i < 5 && args[i][0]; i++)
                argv[n++] = (char *)args[i];
        argv[n] = NULL;
        char out[256];
        ck_assert_int_eq(itest_run(argv, 10, out, sizeof(out)), 0);
        ck_assert_msg(!strstr(out, "ERR"), "FCALL %s: %s", fn, out);
        return atol(out);
}

START_TEST(documented_acl_user_through_migration) {
        static char aclbuf[1024];
        char *acl[64];
        int argc = documented_acl(aclbuf, sizeof(aclbuf), acl, 64);
        itest_acl_all_nodes((const char *const *)acl, argc);
        itest_load_fill_library();

        itest_names_t nm;
        itest_names(&nm, "acl-doc");
        const char *create[] = {"create", "--topic", nm.topic, "--partitions", "3", NULL};
        itest_loadgen(create);
        /* Keys for the TAG sweep: "<p>-sweep:{i}:k0", on every master. */
        char sweep_prefix[160], pattern[200];
        snprintf(sweep_prefix, sizeof(sweep_prefix), "%s-sweep", nm.prefix);
        snprintf(pattern, sizeof(pattern), "%s:{*", sweep_prefix);
        const char *pop[] = {"populate", "--redis",    itest_redis_seed(),
                             "--prefix", sweep_prefix, "--count",
                             "2000",     NULL};
        itest_loadgen(pop);

        /* The entities cached before their events (write-through refreshes
         * what is cached). */
        const char *pop2[] = {"populate", "--redis", itest_redis_seed(), "--prefix", nm.prefix,
                              "--count",  "20000",   "--tag-mod",        "20",       "--upsert-mod",
                              "5",        NULL};
        itest_loadgen(pop2);
        long asking0 = calls("asking"), wait0 = calls("wait"), scan0 = calls("scan"),
             exists0 = calls("exists");
        char e_metrics[64];
        snprintf(e_metrics, sizeof(e_metrics), "KRIB_METRICS_PORT=%d", itest_metrics_port());
        const char *env[] = {nm.env_topic,
                             nm.env_group,
                             nm.env_brokers,
                             nm.env_nodes,
                             e_metrics,
                             "KRIB_REDIS_USERNAME=" USER,
                             "KRIB_REDIS_PASSWORD=" PASSWORD,
                             "KRIB_REDIS_WAIT_REPLICAS=1",
                             "KRIB_REDIS_SWEEP_COUNT=200",
                             NULL};
        pid_t pid = itest_krib_start(env, nm.log);
        char ilog[300], iout[300];
        snprintf(ilog, sizeof(ilog), "%s.inspect", nm.log);
        snprintf(iout, sizeof(iout), "%s.report", nm.log);
        const char *ienv[] = {nm.env_topic,
                              nm.env_group,
                              nm.env_brokers,
                              nm.env_nodes,
                              "KRIB_REDIS_USERNAME=" USER,
                              "KRIB_REDIS_PASSWORD=" PASSWORD,
                              "KRIB_INSPECT_DELAYS_MS=1000,10000",
                              "KRIB_INSPECT_FILLS=guarded",
                              "KRIB_INSPECT_BUDGET_PER_S=50000",
                              "KRIB_INSPECT_SAMPLE_RATIO=0.5",
                              NULL};
        pid_t inspector = itest_inspect_start(NULL, ienv, ilog, iout);

        /* A guarded fill raced by an invalidation: the lease is voided. */
        char key[200], fkey[240], ent[200];
        snprintf(key, sizeof(key), "%s:{fill}:k", nm.prefix);
        snprintf(ent, sizeof(ent), "%s-fill", nm.prefix);
        int fl = krib_fence_key(key, strlen(key), fkey, sizeof(fkey) - 1);
        fkey[fl] = '\0';
        ck_assert_int_eq(fcall("krib_lease", key, fkey, "30000", "t1", "", "", ""), 1);
        const char *keys[] = {key, NULL};
        itest_produce_event(nm.topic, 0, ent, keys, KRIB_ACTION_DELETE, "db=6", NULL);

        /* 60k events (a fifth write-through) packed into 20 slots, four of
         * which move key by key while they flow. */
        char *producer[] = {KRIB_LOADGEN_BIN,
                            "produce",
                            "--topic",
                            nm.topic,
                            "--prefix",
                            nm.prefix,
                            "--count",
                            "20000",
                            "--passes",
                            "3",
                            "--upsert-mod",
                            "5",
                            "--tag-mod",
                            "20",
                            "--rate",
                            "8000",
                            "--schema",
                            KRIB_SOURCE_DIR "/schemas/invalidation.avsc",
                            NULL};
        pid_t prod = itest_spawn(producer);
        usleep(1000000);
        itest_produce_tag(nm.topic, 1, "sweep", pattern);
        itest_migrate_tag_slots(4);
        ck_assert_int_eq(itest_wait(prod, 120), 0);
        int caught = itest_wait_caught_up(nm.group, nm.topic, 3, 120);
        ck_assert_int_eq(fcall("krib_fill_leased", key, fkey, "t1", "0", "v5", "db", "5"), 0);
        /* A write-through over a guarded fill nothing raced. */
        ck_assert_int_eq(fcall("krib_lease", key, fkey, "30000", "t2", "", "", ""), 1);
        ck_assert_int_eq(fcall("krib_fill_leased", key, fkey, "t2", "0", "v6", "db", "6"), 1);
        itest_produce_event(nm.topic, 0, ent, keys, KRIB_ACTION_UPSERT, "db=7", "v7");
        ck_assert_int_eq(itest_wait_caught_up(nm.group, nm.topic, 3, 60), 0);
        char got[64] = "";
        ck_assert_int_eq(itest_cluster_get(key, got, sizeof(got)), 1);
        ck_assert_str_eq(got, "v7");

        char body[300];
        snprintf(body, sizeof(body), "%s.metrics", nm.log);
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/metrics", body), 200);
        double ask = itest_metric(body, "krib_redis_redirects_total{kind=\"ask\"}", NULL);
        double short_waits = itest_metric(body, "krib_redis_wait_short_total", NULL);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        itest_inspect_t d[2];
        int irc = itest_inspect_finish(inspector, iout, 150, d, 2);
        long asking = calls("asking") - asking0, waits = calls("wait") - wait0,
             scans = calls("scan") - scan0, exists = calls("exists") - exists0;
        fprintf(stderr,
                "acl: ASK %.0f (ASKING %ld), WAIT %ld (short %.0f), SCAN %ld, EXISTS %ld; "
                "inspector at %s %ld of %ld stale\n",
                ask, asking, waits, short_waits, scans, exists, d[1].delay, d[1].stale,
                d[1].checked);
        const char *acldel[] = {"ACL", "DELUSER", USER};
        itest_acl_all_nodes(acldel, 3);

        ck_assert_msg(caught == 0, "krib as the documented user did not catch up (%s)", nm.log);
        const char *noperm[] = {"NOPERM", NULL};
        ck_assert_msg(itest_log_count(nm.log, noperm) == 0, "refused commands in %s", nm.log);
        ck_assert_msg(itest_log_count(ilog, noperm) == 0, "refused commands in %s", ilog);
        ck_assert_msg(ask > 0 && asking > 0, "no ASK met (ASK %g, ASKING %ld)", ask, asking);
        ck_assert_int_gt(waits, 0);
        ck_assert_int_gt(scans, 0);
        ck_assert_int_gt(exists, 0);
        const char *done[] = {"tag sweep done", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, done), 1);
        const char *cnt[] = {"count",    "--redis",    itest_redis_seed(),
                             "--prefix", sweep_prefix, "--count",
                             "2000",     NULL};
        ck_assert_int_eq(atol(itest_loadgen(cnt)), 0);
        const char *verify[] = {"verify",       "--redis",  itest_redis_seed(),
                                "--prefix",     nm.prefix,  "--count",
                                "20000",        "--passes", "3",
                                "--upsert-mod", "5",        "--tag-mod",
                                "20",           NULL};
        const char *v = itest_loadgen(verify);
        long k = -1, lost = -1, regressions = -1;
        ck_assert_int_eq(sscanf(v, "keys=%ld lost=%ld regressions=%ld", &k, &lost, &regressions),
                         3);
        ck_assert_int_eq(lost, 0);
        ck_assert_int_eq(regressions, 0);
        ck_assert_msg(irc == 0 && d[1].checked > 0 && d[1].stale == 0,
                      "the inspector found %ld of %ld keys stale at %s (exit %d; see %s)",
                      d[1].stale, d[1].checked, d[1].delay, irc, ilog);
        unlink(body);
        unlink(nm.log);
        unlink(ilog);
        unlink(iout);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("acl");
        TCase *tc = tcase_create("documented");
        tcase_set_timeout(tc, 400);
        tcase_add_test(tc, documented_acl_user_through_migration);
        suite_add_tcase(s, tc);
        return s;
}
