/* Debezium envelopes in Avro with Confluent framing, produced by the official
 * Python client (confluent-kafka's SchemaRegistryClient + AvroSerializer)
 * against tests/registry/registry.py: krib fetches the writer schemas by id,
 * follows a schema evolution mid-stream, waits out a registry outage without
 * dead-lettering, and dead-letters unknown ids and bad framing. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "clock.h"
#include "itest.h"

#define REGISTRY KRIB_SOURCE_DIR "/tests/registry/registry.py"
#define PRODUCER KRIB_SOURCE_DIR "/tests/registry/produce_debezium_avro.py"

static int reg_port(void) {
        const char *b = getenv("KRIB_PORT_BASE");
        return (b ? atoi(b) : 19000) + 143;
}

static pid_t registry_start(const char *store) {
        char port[16];
        snprintf(port, sizeof(port), "%d", reg_port());
        char *argv[] = {"/usr/bin/env", "python3", REGISTRY,      "--port",
                        port,           "--store", (char *)store, NULL};
        pid_t pid = itest_spawn(argv);
        char url[64], out[64];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/subjects", reg_port());
        for (int i = 0; i < 100; i++) {
                char *curl[] = {"/usr/bin/curl", "-sf", url, NULL};
                if (itest_run(curl, 5, out, sizeof(out)) == 0)
                        return pid;
                usleep(100000);
        }
        ck_abort_msg("test registry did not start");
        return pid;
}

static void produce(const char *topic, long first, long count, long lsn, int evolve) {
        char url[64], f[32], c[32], l[32], out[2048];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d", reg_port());
        snprintf(f, sizeof(f), "%ld", first);
        snprintf(c, sizeof(c), "%ld", count);
        snprintf(l, sizeof(l), "%ld", lsn);
        char *argv[] = {"/usr/bin/env",
                        "python3",
                        PRODUCER,
                        "--brokers",
                        (char *)itest_brokers(),
                        "--registry",
                        url,
                        "--topic",
                        (char *)topic,
                        "--first",
                        f,
                        "--count",
                        c,
                        "--lsn",
                        l,
                        evolve == 1   ? "--evolve"
                        : evolve == 2 ? "--numeric"
                                      : NULL,
                        NULL};
        ck_assert_msg(itest_run(argv, 120, out, sizeof(out)) == 0, "producer failed: %s", out);
}

static long present(const char *prefix, long from, long to) {
        long n = 0;
        for (long i = from; i < to; i++) {
                char key[200];
                snprintf(key, sizeof(key), "%s:{%ld}", prefix, i);
                n += itest_cluster_cmd("EXISTS", key, NULL, NULL, 0);
        }
        return n;
}

START_TEST(confluent_avro_from_the_official_client) {
        itest_names_t nm;
        itest_names(&nm, "avro");
        char dlq[160], conf[300], store[300];
        snprintf(store, sizeof(store), "/tmp/%s-registry.json", nm.topic);
        unlink(store);
        itest_topic_with_dlq(&nm, 3, dlq, sizeof(dlq), conf, sizeof(conf));
        itest_write_conf(conf, nm.group, NULL,
                         "registry = { url = \"http://127.0.0.1:%d\"; timeout_ms = 1000; };\n"
                         "dlq = { topic = \"%s\"; };\n"
                         "routes = ( { name = \"users-avro\"; topics = [ \"%s\" ];\n"
                         "             format = \"debezium-avro\"; keys = [ \"%s:{${key.id}}\" ];\n"
                         "             version = \"source.lsn\"; } );\n",
                         reg_port(), dlq, nm.topic, nm.prefix);
        const long n = 3000;
        char key[200];
        for (long i = 0; i < 3 * n; i++) {
                snprintf(key, sizeof(key), "%s:{%ld}", nm.prefix, i);
                itest_cluster_cmd("SET", key, "cached", NULL, 0);
        }

        /* 1. Schema v1, then v2 (a column with a default) mid-stream. */
        pid_t reg = registry_start(store);
        char e_metrics[64];
        snprintf(e_metrics, sizeof(e_metrics), "KRIB_METRICS_PORT=%d", itest_metrics_port());
        const char *env[] = {e_metrics, NULL};
        pid_t pid = itest_krib_start_conf(conf, env, nm.log);
        produce(nm.topic, 0, n, 1000, 0);
        produce(nm.topic, n, n, 1000 + n, 1);
        ck_assert_int_eq(itest_wait_caught_up(nm.group, nm.topic, 3, 60), 0);
        ck_assert_int_eq(present(nm.prefix, 0, 2 * n), 0);
        const char *fetched[] = {"writer schema fetched", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, fetched), 3); /* key, value v1, value v2 */
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);

        /* 2. More events, then the registry goes away before a fresh krib
         * (empty schema cache) reads them: it must wait (paused, nothing
         * stored), not dead-letter, and go on once the registry is back. */
        produce(nm.topic, 2 * n, n, 1000 + 2 * n, 0);
        kill(reg, SIGKILL);
        itest_wait(reg, 10);
        char log2[300];
        snprintf(log2, sizeof(log2), "%s.2", nm.log);
        pid = itest_krib_start_conf(conf, env, log2);
        usleep(4000000);
        int64_t before = itest_committed_sum(nm.group, nm.topic, 3);
        const char *waits[] = {"schema registry unreachable", NULL};
        ck_assert_msg(itest_log_count(log2, waits) >= 1, "no registry wait in %s", log2);
        ck_assert_int_eq(present(nm.prefix, 2 * n, 3 * n), n); /* nothing applied yet */
        /* The outage is visible while it lasts: paused, lookups failing. */
        char mbody[300];
        snprintf(mbody, sizeof(mbody), "%s.outage", nm.log);
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/metrics", mbody), 200);
        const char *paused[] = {"krib_paused 1", NULL};
        const char *unavail[] = {"krib_registry_requests_total{result=\"unavailable\"} 0", NULL};
        const char *unavail_line[] = {"krib_registry_requests_total{result=\"unavailable\"}", NULL};
        ck_assert_msg(itest_log_count(mbody, paused) == 1, "not paused during the outage");
        ck_assert_int_eq(itest_log_count(mbody, unavail_line), 1);
        ck_assert_msg(itest_log_count(mbody, unavail) == 0, "no failed lookup counted");
        unlink(mbody);
        reg = registry_start(store);
        ck_assert_int_eq(itest_wait_caught_up(nm.group, nm.topic, 3, 60), 0);
        ck_assert_int_eq(present(nm.prefix, 2 * n, 3 * n), 0);
        ck_assert_int_lt(before, itest_committed_sum(nm.group, nm.topic, 3));

        /* 3. Poison: an id the registry never issued, and no framing at all. */
        char bad1[16] = {0, 0, 0, 0x7f, 0x7f, 2, 4, 6};
        itest_produce_raw(nm.topic, 0, "k1", 2, bad1, 8);
        itest_produce_raw(nm.topic, 0, "k2", 2, "{\"op\":\"u\"}", 10);
        ck_assert_int_eq(itest_wait_caught_up(nm.group, nm.topic, 3, 60), 0);
        char body[300];
        snprintf(body, sizeof(body), "%s.metrics", nm.log);
        /* The metrics snapshot trails the loop by up to 250 ms. */
        const char *dead2[] = {"krib_events_total{outcome=\"dead_lettered\"} 2", NULL};
        const char *dead_any[] = {"krib_events_total{outcome=\"dead_lettered\"}", NULL};
        for (int i = 0; i < 50; i++) {
                ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/metrics", body), 200);
                if (itest_log_count(body, dead2) == 1)
                        break;
                usleep(100000);
        }
        if (itest_log_count(body, dead2) != 1) {
                char line[256] = "";
                FILE *mf = fopen(body, "r");
                while (mf && fgets(line, sizeof(line), mf))
                        if (!strncmp(line, "krib_events_total{outcome=\"dead", 31))
                                break;
                if (mf)
                        fclose(mf);
                ck_abort_msg("expected exactly 2 dead letters: %s (%d lines)", line,
                             itest_log_count(body, dead_any));
        }
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        const char *unknown[] = {"is unknown to the registry", NULL};
        ck_assert_int_eq(itest_log_count(log2, unknown), 1);
        const char *framing[] = {"not Confluent framing", NULL};
        ck_assert_int_eq(itest_log_count(log2, framing), 1);
        kill(reg, SIGTERM);
        itest_wait(reg, 10);
        unlink(body);
        unlink(conf);
        unlink(store);
        unlink(log2);
        unlink(nm.log);
}
END_TEST

/* Debezium's defaults for NUMERIC and bytea columns (decimal.handling.mode
 * = precise: Avro bytes with the decimal logical type) used to be
 * dead-lettered as "no JSON form": a NUMERIC(10,0) primary key now renders
 * as its digits in key templates, a NUMERIC(10,2) as "12.34", bytea as
 * base64 (issue 10, item 13). */
START_TEST(numeric_primary_keys_and_bytea) {
        itest_names_t nm;
        itest_names(&nm, "avronum");
        char dlq[160], conf[300], store[300];
        snprintf(store, sizeof(store), "/tmp/%s-registry.json", nm.topic);
        unlink(store);
        itest_topic_with_dlq(&nm, 1, dlq, sizeof(dlq), conf, sizeof(conf));
        itest_write_conf(
                conf, nm.group, NULL,
                "registry = { url = \"http://127.0.0.1:%d\"; timeout_ms = 1000; };\n"
                "dlq = { topic = \"%s\"; };\n"
                "routes = ( { name = \"items\"; topics = [ \"%s\" ];\n"
                "             format = \"debezium-avro\";\n"
                "             keys = [ \"%s:{${key.id}}\", \"%s:p:{${price}}:${photo}\" ];\n"
                "             version = \"source.lsn\"; } );\n",
                reg_port(), dlq, nm.topic, nm.prefix, nm.prefix);
        const long n = 50, first = 1000;
        char key[200];
        for (long i = first; i < first + n; i++) {
                snprintf(key, sizeof(key), "%s:{%ld}", nm.prefix, i);
                itest_cluster_cmd("SET", key, "cached", NULL, 0);
        }
        /* Row 1234: price 12.34, photo ff 00 d2 -> "/wDS". */
        snprintf(key, sizeof(key), "%s:p:{12.34}:/wDS", nm.prefix);
        itest_cluster_cmd("SET", key, "cached", NULL, 0);
        pid_t reg = registry_start(store);
        char e_metrics[64];
        snprintf(e_metrics, sizeof(e_metrics), "KRIB_METRICS_PORT=%d", itest_metrics_port());
        const char *env[] = {e_metrics, NULL};
        pid_t pid = itest_krib_start_conf(conf, env, nm.log);
        produce(nm.topic, first, n, 5000, 2);
        produce(nm.topic, 1234, 1, 6000, 2);
        ck_assert_int_eq(itest_wait_caught_up(nm.group, nm.topic, 1, 60), 0);
        char body[300];
        snprintf(body, sizeof(body), "%s.metrics", nm.log);
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/metrics", body), 200);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        kill(reg, SIGTERM);
        itest_wait(reg, 10);
        ck_assert_int_eq(itest_metric(body, "krib_events_total{outcome=\"dead_lettered\"}", NULL),
                         0);
        ck_assert_int_eq(present(nm.prefix, first, first + n), 0);
        ck_assert_int_eq(itest_cluster_cmd("EXISTS", key, NULL, NULL, 0), 0);
        unlink(body);
        unlink(store);
        unlink(conf);
        unlink(nm.log);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("avro");
        TCase *tc = tcase_create("registry");
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, confluent_avro_from_the_official_client);
        tcase_add_test(tc, numeric_primary_keys_and_bytea);
        suite_add_tcase(s, tc);
        return s;
}
