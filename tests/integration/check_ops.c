/* Operating krib: a least-privilege Redis ACL user, a password from a file,
 * JSON logs, and secrets kept out of logs and /metrics. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "itest.h"

/* The rule docs/OPERATIONS.md gives operators (standalone: no CLUSTER). */
#define ACL_RULE                                                                                   \
        "on resetkeys ~* resetchannels -@all +unlink +evalsha +script|load +get +set "             \
        "+cluster|slots +asking +wait +scan +exists +ping +info +cluster|info"

static itest_names_t nm;

static void acl(redisContext *r, const char *user, const char *pw) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "ACL SETUSER %s reset %s >%s", user, ACL_RULE, pw);
        redisReply *rep = redisCommand(r, cmd);
        ck_assert_msg(rep && rep->type == REDIS_REPLY_STATUS, "ACL SETUSER: %s",
                      rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
        freeReplyObject(rep);
}

START_TEST(least_privilege_user_with_password_file_and_json_logs) {
        const long n = 3000;
        itest_names(&nm, "acl");
        char redis[64], user[64], pw[64], pwfile[128];
        snprintf(redis, sizeof(redis), "127.0.0.1:%d", itest_standalone_port());
        snprintf(user, sizeof(user), "krib%d", (int)getpid());
        snprintf(pw, sizeof(pw), "S3cret-%d-pw", (int)getpid());
        snprintf(pwfile, sizeof(pwfile), "/tmp/krib-pw-%d", (int)getpid());
        FILE *fp = fopen(pwfile, "w");
        fprintf(fp, "%s\n", pw);
        fclose(fp);
        redisContext *r = itest_redis(itest_standalone_port());
        acl(r, user, pw);
        itest_create_and_fill(&nm, redis, 3, n, 1, 0);

        char e_nodes[96], e_user[96], e_pwf[160], e_port[64];
        snprintf(e_nodes, sizeof(e_nodes), "KRIB_REDIS_NODES=%s", redis);
        snprintf(e_user, sizeof(e_user), "KRIB_REDIS_USERNAME=%s", user);
        snprintf(e_pwf, sizeof(e_pwf), "KRIB_REDIS_PASSWORD_FILE=%s", pwfile);
        snprintf(e_port, sizeof(e_port), "KRIB_METRICS_PORT=%d", itest_metrics_port());
        const char *env[] = {nm.env_topic,
                             nm.env_group,
                             nm.env_brokers,
                             e_nodes,
                             "KRIB_REDIS_MODE=standalone",
                             e_user,
                             e_pwf,
                             e_port,
                             "KRIB_LOG_FORMAT=json",
                             "KRIB_LOG_LEVEL=debug",
                             NULL};
        pid_t pid = itest_krib_start(env, nm.log);
        int caught_up = itest_wait_caught_up(nm.group, nm.topic, 3, 60);
        char body[300];
        snprintf(body, sizeof(body), "%s.metrics", nm.log);
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/metrics", body), 200);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        ck_assert_msg(caught_up == 0, "did not catch up as ACL user (see %s)", nm.log);
        /* Versioned events went through the fence script under the ACL. */
        ck_assert_int_eq(itest_count_keys(&nm, redis, n, 1), 0);

        const char *secret[] = {pw, NULL};
        ck_assert_int_eq(itest_log_count(nm.log, secret), 0);
        ck_assert_int_eq(itest_log_count(body, secret), 0);
        /* Every line is JSON, with the fields of the logfmt form. */
        const char *json_start[] = {"{\"ts\":\"", NULL};
        const char *any[] = {"", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, json_start), itest_log_count(nm.log, any));
        const char *stopped[] = {"\"msg\":\"stopped\"", "\"drained\":\"yes\"", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, stopped), 1);
        const char *errors[] = {"\"level\":\"error\"", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, errors), 0);

        /* A wrong password is an error in the log, without the password. */
        FILE *bad = fopen(pwfile, "w");
        fprintf(bad, "wrong-%s\n", pw);
        fclose(bad);
        char log2[300];
        snprintf(log2, sizeof(log2), "%s.2", nm.log);
        pid = itest_krib_start(env, log2);
        const char *authfail[] = {"redis AUTH failed", NULL};
        for (int i = 0; i < 100 && itest_log_count(log2, authfail) < 1; i++)
                usleep(100000);
        ck_assert_int_ge(itest_log_count(log2, authfail), 1);
        ck_assert_int_eq(itest_log_count(log2, secret), 0);
        ck_assert_int_eq(itest_krib_stop(pid, SIGKILL, 10), 128 + SIGKILL);

        redisReply *rep = redisCommand(r, "ACL DELUSER %s", user);
        freeReplyObject(rep);
        redisFree(r);
        unlink(pwfile);
        unlink(body);
        unlink(log2);
        unlink(nm.log);
}
END_TEST

/* Kafka over SASL_SSL with SCRAM-SHA-512 through the librdkafka pass-through
 * (the broker's SASL_SSL listener of ci/services, its SCRAM user created at
 * format time); the password comes from a file and never shows. */
START_TEST(kafka_sasl_ssl_scram) {
        const long n = 2000;
        itest_names(&nm, "scram");
        char redis[64];
        snprintf(redis, sizeof(redis), "127.0.0.1:%d", itest_standalone_port());
        itest_create_and_fill(&nm, redis, 3, n, 1, 0);
        const char *b = getenv("KRIB_PORT_BASE");
        const char *tls =
                getenv("KRIB_TLS_DIR") ? getenv("KRIB_TLS_DIR") : KRIB_SOURCE_DIR "/.run/tls";
        const char *user = getenv("KAFKA_SCRAM_USER") ? getenv("KAFKA_SCRAM_USER") : "krib";
        const char *pw = getenv("KAFKA_SCRAM_PASSWORD") ? getenv("KAFKA_SCRAM_PASSWORD")
                                                        : "krib-scram-test-pw";
        char pwfile[128], e_brokers[96], e_props[600], e_pwf[160], e_nodes[96];
        snprintf(pwfile, sizeof(pwfile), "/tmp/krib-scram-%d", (int)getpid());
        FILE *fp = fopen(pwfile, "w");
        fprintf(fp, "%s\n", pw);
        fclose(fp);
        snprintf(e_brokers, sizeof(e_brokers), "KRIB_KAFKA_BROKERS=127.0.0.1:%d",
                 (b ? atoi(b) : 19000) + 96);
        snprintf(e_props, sizeof(e_props),
                 "KRIB_KAFKA_PROPERTIES=security.protocol=SASL_SSL,sasl.mechanisms=SCRAM-SHA-512,"
                 "sasl.username=%s,ssl.ca.location=%s/ca.crt",
                 user, tls);
        snprintf(e_pwf, sizeof(e_pwf), "KRIB_KAFKA_SASL_PASSWORD_FILE=%s", pwfile);
        snprintf(e_nodes, sizeof(e_nodes), "KRIB_REDIS_NODES=%s", redis);
        const char *env[] = {nm.env_topic,
                             nm.env_group,
                             e_brokers,
                             e_props,
                             e_pwf,
                             e_nodes,
                             "KRIB_REDIS_MODE=standalone",
                             NULL};
        pid_t pid = itest_krib_start(env, nm.log);
        int caught_up = itest_wait_caught_up(nm.group, nm.topic, 3, 60);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        ck_assert_msg(caught_up == 0, "did not catch up over SASL_SSL (see %s)", nm.log);
        ck_assert_int_eq(itest_count_keys(&nm, redis, n, 1), 0);
        const char *secret[] = {pw, NULL};
        ck_assert_int_eq(itest_log_count(nm.log, secret), 0);

        /* A wrong password: librdkafka's authentication error in the log,
         * nothing consumed, the password nowhere. */
        fp = fopen(pwfile, "w");
        fprintf(fp, "not-%s\n", pw);
        fclose(fp);
        itest_names(&nm, "scram-bad");
        itest_create_and_fill(&nm, redis, 1, 10, 1, 0);
        const char *env2[] = {nm.env_topic,
                              nm.env_group,
                              e_brokers,
                              e_props,
                              e_pwf,
                              e_nodes,
                              "KRIB_REDIS_MODE=standalone",
                              NULL};
        pid = itest_krib_start(env2, nm.log);
        const char *authfail[] = {"Authentication failed", NULL};
        for (int i = 0; i < 150 && itest_log_count(nm.log, authfail) < 1; i++)
                usleep(100000);
        itest_krib_stop(pid, SIGKILL, 10);
        ck_assert_msg(itest_log_count(nm.log, authfail) >= 1, "no authentication error in %s",
                      nm.log);
        ck_assert_int_eq(itest_log_count(nm.log, secret), 0);
        ck_assert_int_eq(itest_count_keys(&nm, redis, 10, 1), 10);
        unlink(pwfile);
        unlink(nm.log);
}
END_TEST

START_TEST(print_config_redacts_secrets) {
        char out[8192];
        char *argv[] = {KRIB_BIN, "--print-config", "-c", KRIB_SOURCE_DIR "/config/krib.conf",
                        NULL};
        setenv("KRIB_REDIS_PASSWORD", "hunter2-visible?", 1);
        setenv("KRIB_KAFKA_SASL_PASSWORD", "hunter3-visible?", 1);
        setenv("KRIB_KAFKA_PROPERTIES",
               "sasl.username=u,sasl.password=hunter4,ssl.key.password=hunter5", 1);
        int rc = itest_run(argv, 10, out, sizeof(out));
        unsetenv("KRIB_REDIS_PASSWORD");
        unsetenv("KRIB_KAFKA_SASL_PASSWORD");
        unsetenv("KRIB_KAFKA_PROPERTIES");
        ck_assert_int_eq(rc, 0);
        ck_assert_ptr_null(strstr(out, "hunter"));
        ck_assert_ptr_nonnull(strstr(out, "\"sasl.username=u\""));
        ck_assert_ptr_nonnull(strstr(out, "\"sasl.password=<redacted>\""));
        ck_assert_ptr_nonnull(strstr(out, "redis.password = \"<redacted>\";"));
}
END_TEST

/* ---- Redis health and the memory guard, on the real cluster ------------- */

/* Every node of the 6-node cluster (ci/services: consecutive ports from the
 * first seed); after the failover scenarios any of them may be a master. */
static int master_ports[6];

static void masters_init(void) {
        const char *c = strchr(itest_redis_seed(), ':');
        ck_assert_ptr_nonnull(c);
        for (int i = 0; i < 6; i++)
                master_ports[i] = atoi(c + 1) + i;
}

/* The master that owns key (answers it without MOVED). */
static int owner_port(const char *key) {
        for (int i = 0; i < 6; i++) {
                redisContext *c = itest_redis(master_ports[i]);
                redisReply *r = redisCommand(c, "EXISTS %s", key);
                int mine = r && r->type == REDIS_REPLY_INTEGER;
                freeReplyObject(r);
                redisFree(c);
                if (mine)
                        return master_ports[i];
        }
        ck_abort_msg("no master owns %s", key);
        return -1;
}

static long long info_field(redisContext *c, const char *name) {
        redisReply *r = redisCommand(c, "INFO memory");
        ck_assert_ptr_nonnull(r);
        char want[64];
        snprintf(want, sizeof(want), "\n%s:", name);
        const char *p = strstr(r->str, want);
        long long v = p ? atoll(p + strlen(want)) : -1;
        freeReplyObject(r);
        return v;
}

/* Never leave a master with a maxmemory behind, even after a failure: the
 * unchecked teardown runs in the test runner itself. */
static void guard_cleanup(void) {
        masters_init();
        for (int i = 0; i < 6; i++) {
                redisContext *c = itest_redis(master_ports[i]);
                freeReplyObject(redisCommand(c, "CONFIG SET maxmemory 0"));
                for (int k = 0; k < 64; k++)
                        freeReplyObject(redisCommand(c, "UNLINK {krib-guard-fill}:%d", k));
                redisFree(c);
        }
}

static double metric_now(const char *body, const char *n1, const char *n2) {
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/metrics", body), 200);
        return itest_metric(body, n1, n2);
}

static int wait_metric(const char *body, const char *n1, const char *n2, double want, int ms) {
        for (int t = 0; t <= ms; t += 100) {
                if (metric_now(body, n1, n2) == want)
                        return 1;
                usleep(100000);
        }
        return 0;
}

static int cluster_has(const char *key) {
        char got[64];
        return itest_cluster_get(key, got, sizeof(got));
}

/* INFO figures per master reach /metrics; filling one master past
 * redis.memory_guard_percent of its maxmemory (noeviction) pauses
 * consumption before Redis would answer OOM, and emptying it resumes. */
START_TEST(memory_guard_pauses_before_oom) {
        masters_init();
        itest_names(&nm, "guard");
        char body[300];
        snprintf(body, sizeof(body), "%s.metrics", nm.log);
        char dlq[200], conf[300];
        itest_topic_with_dlq(&nm, 1, dlq, sizeof(dlq), conf, sizeof(conf));
        int port = owner_port("{krib-guard-fill}:0");
        redisContext *m = itest_redis(port);
        long long used = info_field(m, "used_memory");
        ck_assert_int_gt(used, 0);
        long long max = used + 8 * 1024 * 1024;
        freeReplyObject(redisCommand(m, "CONFIG SET maxmemory %lld", max));
        freeReplyObject(redisCommand(m, "CONFIG SET maxmemory-policy noeviction"));

        char e_port[64];
        snprintf(e_port, sizeof(e_port), "KRIB_METRICS_PORT=%d", itest_metrics_port());
        const char *env[] = {nm.env_topic,
                             nm.env_group,
                             nm.env_brokers,
                             e_port,
                             "KRIB_REDIS_HEALTH_INTERVAL_MS=200",
                             "KRIB_REDIS_MEMORY_GUARD_PERCENT=80",
                             NULL};
        pid_t pid = itest_krib_start(env, nm.log);
        char k1[160], k2[160], node[64];
        snprintf(k1, sizeof(k1), "%s:{1}", nm.prefix);
        snprintf(k2, sizeof(k2), "%s:{2}", nm.prefix);
        snprintf(node, sizeof(node), "node=\"127.0.0.1:%d\"", port);
        ck_assert_int_eq(itest_cluster_cmd("SET", k1, "cached", NULL, 0), 1);
        const char *keys1[] = {k1, NULL};
        itest_produce_event(nm.topic, 0, "guard:1", keys1, KRIB_ACTION_DELETE, "db=1", NULL);
        for (int i = 0; i < 200 && cluster_has(k1); i++)
                usleep(100000);
        ck_assert_msg(!cluster_has(k1), "first event not applied (log %s)", nm.log);
        ck_assert_msg(wait_metric(body, "krib_redis_master_up", node, 1, 5000), "log %s", nm.log);
        ck_assert_msg(wait_metric(body, "krib_redis_maxmemory_bytes", node, (double)max, 5000),
                      "maxmemory not reported");
        ck_assert_int_eq(metric_now(body, "krib_redis_memory_guard_paused", NULL), 0);

        /* Fill toward maxmemory: 256 KiB values on one slot of that master. */
        static char big[256 * 1024];
        memset(big, 'x', sizeof(big) - 1);
        int filled = 0;
        for (int k = 0; k < 64 && info_field(m, "used_memory") < max * 85 / 100; k++) {
                redisReply *r = redisCommand(m, "SET {krib-guard-fill}:%d %s", k, big);
                ck_assert_msg(r && r->type == REDIS_REPLY_STATUS, "fill: %s",
                              r && r->type == REDIS_REPLY_ERROR ? r->str : "?");
                freeReplyObject(r);
                filled++;
        }
        ck_assert_int_ge(info_field(m, "used_memory"), max * 80 / 100);
        ck_assert_msg(wait_metric(body, "krib_redis_memory_guard_paused", NULL, 1, 5000),
                      "guard did not trip (log %s)", nm.log);
        double used_seen = metric_now(body, "krib_redis_used_memory_bytes", node);
        ck_assert_msg(used_seen >= (double)max * 0.8, "gauge %g", used_seen);
        ck_assert_int_eq(metric_now(body, "krib_paused", NULL), 1);
        /* While it holds, new work waits. */
        ck_assert_int_eq(itest_cluster_cmd("SET", k2, "cached", NULL, 0), 1);
        const char *keys2[] = {k2, NULL};
        itest_produce_event(nm.topic, 0, "guard:2", keys2, KRIB_ACTION_DELETE, "db=1", NULL);
        sleep(2);
        ck_assert_msg(cluster_has(k2), "applied while the guard held (log %s)", nm.log);
        /* Memory freed: the guard lets go and the event is applied. */
        for (int k = 0; k < filled; k++)
                freeReplyObject(redisCommand(m, "UNLINK {krib-guard-fill}:%d", k));
        ck_assert_msg(wait_metric(body, "krib_redis_memory_guard_paused", NULL, 0, 5000),
                      "guard did not release");
        for (int i = 0; i < 100 && cluster_has(k2); i++)
                usleep(100000);
        ck_assert_msg(!cluster_has(k2), "not applied after the guard released (log %s)", nm.log);
        ck_assert_int_eq(metric_now(body, "krib_redis_memory_guard_pauses_total", NULL), 1);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        char node_log[64];
        snprintf(node_log, sizeof(node_log), "node=127.0.0.1:%d ", port);
        const char *tripped[] = {"memory guard: a master is above", node_log, NULL};
        ck_assert_int_eq(itest_log_count(nm.log, tripped), 1);
        freeReplyObject(redisCommand(m, "CONFIG SET maxmemory 0"));
        redisFree(m);
        unlink(body);
        unlink(nm.log);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("ops");
        TCase *tc = tcase_create("acl");
        tcase_set_timeout(tc, 180);
        tcase_add_test(tc, least_privilege_user_with_password_file_and_json_logs);
        suite_add_tcase(s, tc);
        tc = tcase_create("sasl");
        tcase_set_timeout(tc, 180);
        tcase_add_test(tc, kafka_sasl_ssl_scram);
        suite_add_tcase(s, tc);
        tc = tcase_create("guard");
        tcase_set_timeout(tc, 120);
        tcase_add_unchecked_fixture(tc, NULL, guard_cleanup);
        tcase_add_test(tc, memory_guard_pauses_before_oom);
        suite_add_tcase(s, tc);
        tc = tcase_create("cli");
        tcase_add_test(tc, print_config_redacts_secrets);
        suite_add_tcase(s, tc);
        return s;
}
