/* The first vertical slice against the real broker and Redis servers:
 * events in Kafka -> keys gone from Redis -> offsets committed only for
 * what Redis acknowledged. */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "itest.h"

#define NPARTS 6

static itest_names_t nm;

START_TEST(cluster_end_to_end_with_malformed_events) {
        const long n = 5000, k = 2, bad = 5;
        itest_names(&nm, "slice");
        itest_create_and_fill(&nm, itest_redis_seed(), NPARTS, n, k, bad);

        char mport[64];
        snprintf(mport, sizeof(mport), "KRIB_METRICS_PORT=%d", itest_metrics_port());
        const char *env[] = {nm.env_topic,
                             nm.env_group,
                             nm.env_brokers,
                             nm.env_nodes,
                             "KRIB_REDIS_MODE=cluster",
                             "KRIB_LOG_STATS_INTERVAL_MS=500",
                             mport,
                             NULL};
        pid_t pid = itest_krib_start(env, nm.log);
        int caught_up = itest_wait_caught_up(nm.group, nm.topic, NPARTS, 90);

        /* What an operator's Prometheus would see, checked by promtool. */
        char body[300];
        snprintf(body, sizeof(body), "%s.metrics", nm.log);
        usleep(600000); /* one publish period after the last commit */
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/metrics", body), 200);
        char *check[] = {"/bin/sh", "-c", NULL, NULL};
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "promtool check metrics < %s >&2", body);
        check[2] = cmd;
        ck_assert_msg(itest_run(check, 30, NULL, 0) == 0, "promtool rejected %s", body);
        const char *applied[] = {"krib_events_total{outcome=\"applied\"} 5000", NULL};
        const char *rejected_m[] = {"krib_events_total{outcome=\"rejected\"} 5", NULL};
        const char *keys_m[] = {"krib_redis_keys_total 10000", NULL};
        const char *up[] = {"krib_redis_up 1", NULL};
        /* Statistics arrive every 5 s: lag and committed offsets per partition. */
        char cm[200], lm[200];
        snprintf(cm, sizeof(cm), "krib_committed_offset{topic=\"%s\"", nm.topic);
        const char *committed_m[] = {cm, NULL};
        for (int i = 0; i < 30 && itest_log_count(body, committed_m) < NPARTS; i++) {
                usleep(500000);
                itest_http_get(itest_metrics_port(), "/metrics", body);
        }
        ck_assert_int_eq(itest_log_count(body, committed_m), NPARTS);
        snprintf(lm, sizeof(lm), "krib_consumer_lag{topic=\"%s\"", nm.topic);
        const char *lag0[] = {lm, "} 0", NULL};
        ck_assert_int_eq(itest_log_count(body, lag0), NPARTS);
        ck_assert_int_eq(itest_log_count(body, applied), 1);
        ck_assert_int_eq(itest_log_count(body, rejected_m), 1);
        ck_assert_int_eq(itest_log_count(body, keys_m), 1);
        ck_assert_int_eq(itest_log_count(body, up), 1);
        /* Per master: round trips and their times; keys per round trip. */
        /* Seeds that turned out to be replicas (after a failover test) are
         * listed too, with no round trips: the three masters have some. */
        const char *nodes_m[] = {"krib_redis_node_round_trips_total{node=\"", NULL};
        const char *idle_m[] = {"krib_redis_node_round_trips_total{node=\"", "} 0", NULL};
        ck_assert_int_eq(itest_log_count(body, nodes_m) - itest_log_count(body, idle_m), 3);
        const char *sent_m[] = {"krib_redis_keys_per_round_trip_sum 10000", NULL};
        ck_assert_int_eq(itest_log_count(body, sent_m), 1);
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/healthz", body), 200);
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/readyz", body), 200);
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/nope", body), 404);
        unlink(body);
        int rc = itest_krib_stop(pid, SIGTERM, 30);
        ck_assert_msg(caught_up == 0, "committed offsets never reached log end (see %s)", nm.log);
        ck_assert_msg(rc == 0, "krib exited %d after SIGTERM (see %s)", rc, nm.log);

        /* Every key named by a good event is gone, malformed ones or not. */
        ck_assert_int_eq(itest_count_keys(&nm, itest_redis_seed(), n, k), 0);

        /* Each malformed event got one error line naming where it was. */
        char t[160];
        snprintf(t, sizeof(t), "topic=%s ", nm.topic);
        const char *rejected[] = {
                "level=error", "rejected event", "stage=decode", t, "offset=", "malformed Avro",
                NULL};
        ck_assert_int_eq(itest_log_count(nm.log, rejected), bad);
        const char *final[] = {"module=stats", "consumed=5005", "applied=5000",    "rejected=5",
                               "failed=0",     "in_flight=0",   "keys_done=10000", NULL};
        ck_assert_msg(itest_log_count(nm.log, final) >= 1, "no final stats line as expected in %s",
                      nm.log);
        const char *stopped[] = {"msg=\"stopped\"", "drained=yes", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, stopped), 1);

        /* The final commit left the group exactly at the log end. */
        int64_t end[NPARTS], com[NPARTS];
        ck_assert_int_eq(itest_log_end(nm.topic, NPARTS, end), 0);
        ck_assert_int_eq(itest_committed(nm.group, nm.topic, NPARTS, com), 0);
        int64_t total = 0;
        for (int p = 0; p < NPARTS; p++) {
                ck_assert_int_eq(com[p], end[p]);
                total += end[p];
        }
        ck_assert_int_eq(total, n + bad);
}
END_TEST

START_TEST(offsets_wait_for_redis_ack) {
        /* Standalone Redis, paused for writes: krib must not commit anything
         * until the UNLINKs are acknowledged, then catch up. */
        const long n = 2000;
        itest_names(&nm, "ackgate");
        char redis[64], env_node[96];
        snprintf(redis, sizeof(redis), "127.0.0.1:%d", itest_standalone_port());
        snprintf(env_node, sizeof(env_node), "KRIB_REDIS_NODES=%s", redis);
        itest_create_and_fill(&nm, redis, 3, n, 1, 0);

        redisContext *c = itest_redis(itest_standalone_port());
        redisReply *r = redisCommand(c, "CLIENT PAUSE 8000 WRITE");
        ck_assert_msg(r && r->type == REDIS_REPLY_STATUS, "CLIENT PAUSE failed");
        freeReplyObject(r);
        time_t paused_at = time(NULL);

        char mport[64];
        snprintf(mport, sizeof(mport), "KRIB_METRICS_PORT=%d", itest_metrics_port());
        const char *env[] = {nm.env_topic,
                             nm.env_group,
                             nm.env_brokers,
                             env_node,
                             "KRIB_REDIS_MODE=standalone",
                             "KRIB_LOG_STATS_INTERVAL_MS=500",
                             "KRIB_REDIS_COMMAND_TIMEOUT_MS=1000",
                             mport,
                             NULL};
        pid_t pid = itest_krib_start(env, nm.log);
        int64_t com[3];
        int samples = 0;
        while (time(NULL) - paused_at < 6) {
                ck_assert_int_eq(itest_committed(nm.group, nm.topic, 3, com), 0);
                for (int p = 0; p < 3; p++)
                        ck_assert_msg(com[p] == -1,
                                      "partition %d committed %lld while Redis was paused", p,
                                      (long long)com[p]);
                samples++;
                usleep(300000);
        }
        ck_assert_int_ge(samples, 3);
        /* Alive but not ready while Redis refuses writes. */
        char body[300];
        snprintf(body, sizeof(body), "%s.http", nm.log);
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/healthz", body), 200);
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/readyz", body), 503);
        const char *why[] = {"redis_up=0", NULL};
        ck_assert_int_eq(itest_log_count(body, why), 1);
        unlink(body);
        /* Reads still work during a WRITE pause: nothing was removed yet. */
        ck_assert_int_eq(itest_count_keys(&nm, redis, n, 1), n);

        int caught_up = itest_wait_caught_up(nm.group, nm.topic, 3, 60);
        int rc = itest_krib_stop(pid, SIGTERM, 30);
        ck_assert_msg(caught_up == 0, "never caught up after the pause (see %s)", nm.log);
        ck_assert_int_eq(rc, 0);
        ck_assert_int_eq(itest_count_keys(&nm, redis, n, 1), 0);
        redisFree(c);
        unlink(nm.log);
}
END_TEST

START_TEST(single_object_encoded_events) {
        /* Avro single-object encoding, fingerprint looked up in schemas/. */
        const long n = 2000;
        itest_names(&nm, "sobj");
        char ns[32];
        snprintf(ns, sizeof(ns), "%ld", n);
        const char *create[] = {"create", "--topic", nm.topic, "--partitions", "3", NULL};
        itest_loadgen(create);
        const char *populate[] = {"populate", "--redis", itest_redis_seed(),
                                  "--prefix", nm.prefix, "--count",
                                  ns,         NULL};
        itest_loadgen(populate);
        const char *produce[] = {"produce", "--topic", nm.topic,          "--prefix", nm.prefix,
                                 "--count", ns,        "--single-object", NULL};
        itest_loadgen(produce);
        /* Subscribed by pattern, as an operator with many topics would. */
        char regex[200];
        snprintf(regex, sizeof(regex), "KRIB_KAFKA_TOPICS=^%s$", nm.topic);
        const char *env[] = {regex, nm.env_group, nm.env_brokers, nm.env_nodes, NULL};
        pid_t pid = itest_krib_start(env, nm.log);
        int caught_up = itest_wait_caught_up(nm.group, nm.topic, 3, 60);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        ck_assert_msg(caught_up == 0, "did not catch up (see %s)", nm.log);
        ck_assert_int_eq(itest_count_keys(&nm, itest_redis_seed(), n, 1), 0);
        const char *errors[] = {"level=error", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, errors), 0);
        unlink(nm.log);
}
END_TEST

START_TEST(bad_config_names_file_and_line) {
        char path[] = "/tmp/krib-bad-conf-XXXXXX";
        int fd = mkstemp(path);
        const char text[] = "kafka = {\n  topics = [\"t\"];\n  group = \"x\";\n};\n";
        ck_assert_int_eq(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
        close(fd);
        char out[2048];
        char *argv[] = {KRIB_BIN, "--check-config", "-c", path, NULL};
        char logp[64];
        snprintf(logp, sizeof(logp), "%s.err", path);
        /* stderr carries the message: capture it through a shell-free dup. */
        int efd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int saved = dup(2);
        dup2(efd, 2);
        int rc = itest_run(argv, 10, out, sizeof(out));
        dup2(saved, 2);
        close(saved);
        close(efd);
        ck_assert_int_eq(rc, 2);
        char want[128];
        snprintf(want, sizeof(want), "%s:3: unknown key 'kafka.group'", path);
        const char *needles[] = {want, NULL};
        ck_assert_int_eq(itest_log_count(logp, needles), 1);
        unlink(path);
        unlink(logp);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("slice");
        TCase *tc = tcase_create("cluster");
        tcase_set_timeout(tc, 240);
        tcase_add_test(tc, cluster_end_to_end_with_malformed_events);
        suite_add_tcase(s, tc);
        tc = tcase_create("ack_gating");
        tcase_set_timeout(tc, 180);
        tcase_add_test(tc, offsets_wait_for_redis_ack);
        suite_add_tcase(s, tc);
        tc = tcase_create("single_object");
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, single_object_encoded_events);
        suite_add_tcase(s, tc);
        tc = tcase_create("cli");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, bad_config_names_file_and_line);
        suite_add_tcase(s, tc);
        return s;
}
