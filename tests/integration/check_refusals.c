/* Refusals for good, fail safe (issue 23, findings 6 and 8), on the real
 * cluster: what Redis refuses for one key fails that key's events alone,
 * and a write Redis will not take through the version fence still unlinks
 * its key before its record is dead-lettered. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "itest.h"

static itest_names_t nm;
static char conf[300], dlq[200], user[64];

static void key(char *out, size_t size, const char *kind, int i) {
        /* One hash tag: every key of the test lives in one slot, so permitted
         * and refused keys share commands. */
        snprintf(out, size, "{%s}:%s:%d", nm.prefix, kind, i);
}

static void setuser(const char *rules) {
        snprintf(user, sizeof(user), "krib-ref-%d", (int)getpid());
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "ACL SETUSER %s reset on >ref-pw %s", user, rules);
        const char *argv[32];
        int argc = 0;
        char *save = NULL;
        for (char *t = strtok_r(cmd, " ", &save); t && argc < 32; t = strtok_r(NULL, " ", &save))
                argv[argc++] = t;
        itest_acl_all_nodes(argv, argc);
}

static void deluser(void) {
        const char *argv[] = {"ACL", "DELUSER", user};
        itest_acl_all_nodes(argv, 3);
}

static pid_t run_krib(const char *fence) {
        static char e_user[96], e_fence[64];
        snprintf(e_user, sizeof(e_user), "KRIB_REDIS_USERNAME=%s", user);
        snprintf(e_fence, sizeof(e_fence), "KRIB_REDIS_FENCE=%s", fence);
        const char *env[] = {e_user, "KRIB_REDIS_PASSWORD=ref-pw", e_fence, NULL};
        return itest_krib_start_conf(conf, env, nm.log);
}

static long dead_lettered(void) {
        int64_t end[1] = {0};
        ck_assert_int_eq(itest_log_end(dlq, 1, end), 0);
        return (long)end[0];
}

static int exists(const char *k) {
        char got[64];
        return itest_cluster_get(k, got, sizeof(got));
}

/* Finding 8: an ACL user limited to the cache's key patterns (as
 * docs/OPERATIONS.md advises) is refused one key of a multi-key UNLINK:
 * only the events naming a refused key are dead-lettered, every permitted
 * key is gone, and the error names the key Redis refused. */
START_TEST(refused_key_fails_alone) {
        enum { N = 96 };
        itest_names(&nm, "refkey");
        itest_topic_with_dlq(&nm, 1, dlq, sizeof(dlq), conf, sizeof(conf));
        itest_write_conf(conf, nm.group, nm.topic, "dlq = { topic = \"%s\"; };\n", dlq);
        char rules[512];
        snprintf(rules, sizeof(rules), "~{%s}:ok:* ~krib:f:{%s}:ok:* +@all", nm.prefix, nm.prefix);
        setuser(rules);
        /* Event i names ok:i (i % 4 >= 2), deny:i (i % 4 == 0), or both
         * (i % 4 == 1); DELETEs and versioned UPSERTs alternate. */
        long refused = 0;
        for (int i = 0; i < N; i++) {
                char ok[160], no[160], ent[200], vv[32];
                key(ok, sizeof(ok), "ok", i);
                key(no, sizeof(no), "deny", i);
                if (i % 4 != 0)
                        ck_assert_int_eq(itest_cluster_cmd("SET", ok, "old", NULL, 0), 1);
                if (i % 4 < 2)
                        ck_assert_int_eq(itest_cluster_cmd("SET", no, "old", NULL, 0), 1);
                const char *one_ok[] = {ok, NULL}, *one_no[] = {no, NULL}, *both[] = {ok, no, NULL};
                const char *const *keys = i % 4 == 0 ? one_no : i % 4 == 1 ? both : one_ok;
                refused += i % 4 < 2;
                snprintf(ent, sizeof(ent), "%s-%d", nm.prefix, i);
                snprintf(vv, sizeof(vv), "db=%d", i + 1);
                int upsert = (i / 4) % 2;
                itest_produce_event(nm.topic, 0, ent, keys,
                                    upsert ? KRIB_ACTION_UPSERT : KRIB_ACTION_DELETE, vv,
                                    upsert ? "new" : NULL);
        }
        /* All of it is waiting before krib starts: one batch, shared commands. */
        pid_t pid = run_krib("versioned");
        int caught = itest_wait_caught_up(nm.group, nm.topic, 1, 60);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        deluser();
        ck_assert_msg(caught == 0, "krib did not catch up (log %s)", nm.log);
        long ok_left = 0, no_left = 0;
        for (int i = 0; i < N; i++) {
                char ok[160], no[160];
                key(ok, sizeof(ok), "ok", i);
                key(no, sizeof(no), "deny", i);
                ok_left += exists(ok);
                no_left += exists(no);
                itest_cluster_cmd("DEL", no, NULL, NULL, 0);
        }
        ck_assert_msg(ok_left == 0, "%ld permitted keys stayed cached (log %s)", ok_left, nm.log);
        ck_assert_int_eq(no_left, refused); /* krib may not touch them */
        ck_assert_msg(dead_lettered() == refused, "%ld records dead-lettered, want %ld (log %s)",
                      dead_lettered(), refused, nm.log);
        char needle[200];
        snprintf(needle, sizeof(needle), "{%s}:ok:", nm.prefix);
        const char *blamed_ok[] = {"redis refused", needle, NULL};
        ck_assert_msg(itest_log_count(nm.log, blamed_ok) == 0,
                      "an error named a permitted key as refused (log %s)", nm.log);
        snprintf(needle, sizeof(needle), "{%s}:deny:", nm.prefix);
        const char *blamed_no[] = {"redis refused", needle, NULL};
        ck_assert_int_ge(itest_log_count(nm.log, blamed_no), 1);
        unlink(nm.log);
}
END_TEST

/* Finding 6: the fence script is refused for good (an ACL user without
 * EVALSHA): every fenced write unlinks its key instead, so no value older
 * than the change stays cached, and the record is still dead-lettered. */
START_TEST(refused_fence_unlinks_instead) {
        enum { N = 40 };
        itest_names(&nm, "refscript");
        itest_topic_with_dlq(&nm, 1, dlq, sizeof(dlq), conf, sizeof(conf));
        itest_write_conf(conf, nm.group, nm.topic, "dlq = { topic = \"%s\"; };\n", dlq);
        setuser("~* +@all -evalsha -eval -script");
        for (int i = 0; i < N; i++) {
                char k[160], ent[200];
                key(k, sizeof(k), "k", i);
                ck_assert_int_eq(itest_cluster_cmd("SET", k, "old", NULL, 0), 1);
                const char *keys[] = {k, NULL};
                snprintf(ent, sizeof(ent), "%s-%d", nm.prefix, i);
                int upsert = i % 2;
                itest_produce_event(nm.topic, 0, ent, keys,
                                    upsert ? KRIB_ACTION_UPSERT : KRIB_ACTION_DELETE, "db=5",
                                    upsert ? "new" : NULL);
        }
        pid_t pid = run_krib("all");
        int caught = itest_wait_caught_up(nm.group, nm.topic, 1, 60);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        deluser();
        ck_assert_msg(caught == 0, "krib did not catch up (log %s)", nm.log);
        long left = 0;
        for (int i = 0; i < N; i++) {
                char k[160];
                key(k, sizeof(k), "k", i);
                left += exists(k);
        }
        ck_assert_msg(left == 0, "%ld keys kept their old value (log %s)", left, nm.log);
        ck_assert_int_eq(dead_lettered(), N);
        const char *fallback[] = {"unlinking the key instead", NULL};
        ck_assert_int_ge(itest_log_count(nm.log, fallback), 1);
        unlink(nm.log);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("refusals");
        TCase *tc = tcase_create("refusals");
        tcase_set_timeout(tc, 180);
        tcase_add_test(tc, refused_key_fails_alone);
        tcase_add_test(tc, refused_fence_unlinks_instead);
        suite_add_tcase(s, tc);
        return s;
}
