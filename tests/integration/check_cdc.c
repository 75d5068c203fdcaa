/* CDC (issue 5): PostgreSQL -> Debezium 3.6 (Kafka Connect standalone) ->
 * Kafka -> krib -> Redis Cluster, for real (`ci/services cdc-up`), with the
 * routes of config/krib-cdc.conf; and poison records -> the dead-letter
 * topic with Kafka Connect's error headers, counts adding up. */
#include <check.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "clock.h"
#include "itest.h"

#define CDC_CONF KRIB_SOURCE_DIR "/config/krib-cdc.conf"

static int pg_port(void) {
        const char *p = getenv("PG_PORT");
        const char *b = getenv("KRIB_PORT_BASE");
        return p ? atoi(p) : (b ? atoi(b) : 19000) + 54;
}

static void sql(const char *stmt) {
        char port[16], out[2048];
        snprintf(port, sizeof(port), "%d", pg_port());
        char *argv[] = {"/usr/bin/psql",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        port,
                        "-U",
                        "postgres",
                        "-d",
                        "krib",
                        "-qAt",
                        "-v",
                        "ON_ERROR_STOP=1",
                        "-c",
                        (char *)stmt,
                        NULL};
        int rc = itest_run(argv, 60, out, sizeof(out));
        ck_assert_msg(rc == 0, "psql failed (%d): %s", rc, stmt);
}

static int64_t log_end_sum(const char *topic, int nparts) {
        int64_t end[8], sum = 0;
        ck_assert_int_eq(itest_log_end(topic, nparts, end), 0);
        for (int p = 0; p < nparts; p++)
                sum += end[p];
        return sum;
}

/* Waits until Debezium published at least want more records than before. */
static void wait_published(const char *topic, int64_t before, int64_t want) {
        for (int i = 0; i < 600; i++) {
                if (log_end_sum(topic, 3) - before >= want)
                        return;
                usleep(100000);
        }
        ck_abort_msg("Debezium did not publish %lld records to %s in 60 s", (long long)want, topic);
}

static void wait_both_caught_up(const char *group) {
        ck_assert_int_eq(itest_wait_caught_up(group, "pgjson.public.users", 3, 60), 0);
        ck_assert_int_eq(itest_wait_caught_up(group, "pgschema.public.users", 3, 60), 0);
}

static int cmp_i64(const void *a, const void *b) {
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return (x > y) - (x < y);
}

/* Commit-to-invalidation latency over ids from..from+n-1: one UPDATE at a
 * time, the clock starting when the database client returns (the commit is
 * done) and stopping when the key (key_fmt over the id) is gone from Redis.
 * Printed, and appended to $KRIB_CDC_OUT for docs/CDC.md. */
static void commit_to_invalidation(const char *db, void (*run_sql)(const char *),
                                   const char *key_fmt, long from, int n) {
        enum { SAMPLES = 50 };
        int64_t lat_us[SAMPLES];
        char key[96], stmt[160];
        for (int s = 0; s < SAMPLES; s++) {
                long id = from + s % n;
                snprintf(key, sizeof(key), key_fmt, id);
                itest_cluster_cmd("SET", key, "cached", NULL, 0);
                snprintf(stmt, sizeof(stmt),
                         "UPDATE users SET version = version + 1 WHERE id = %ld", id);
                run_sql(stmt);
                int64_t t0 = krib_clock_mono_us();
                while (itest_cluster_cmd("EXISTS", key, NULL, NULL, 0)) {
                        ck_assert_msg(krib_clock_mono_us() - t0 < 20000000,
                                      "%s not invalidated within 20 s", key);
                        usleep(500);
                }
                lat_us[s] = krib_clock_mono_us() - t0;
        }
        qsort(lat_us, SAMPLES, sizeof(*lat_us), cmp_i64);
        double p50 = (double)lat_us[SAMPLES / 2] / 1000.0,
               p99 = (double)lat_us[SAMPLES - 1 - SAMPLES / 100] / 1000.0,
               max = (double)lat_us[SAMPLES - 1] / 1000.0;
        fprintf(stderr,
                "%s CDC commit-to-invalidation latency over %d updates: p50 %.1f ms, p99 %.1f "
                "ms, max %.1f ms\n",
                db, SAMPLES, p50, p99, max);
        const char *out = getenv("KRIB_CDC_OUT");
        FILE *fp = out ? fopen(out, "a") : NULL;
        if (fp) {
                fprintf(fp, "database=%s latency_updates=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f\n",
                        db, SAMPLES, p50, p99, max);
                fclose(fp);
        }
}

START_TEST(postgres_changes_reach_redis_through_debezium) {
        const int n = 200;
        long base = (long)(getpid() % 100000) * 1000 + 1;
        itest_names_t nm;
        itest_names(&nm, "cdc");
        char e_metrics[64], e_dlq[160];
        snprintf(e_metrics, sizeof(e_metrics), "KRIB_METRICS_PORT=%d", itest_metrics_port());
        snprintf(e_dlq, sizeof(e_dlq), "KRIB_DLQ_TOPIC=%s-dlq", nm.topic);
        const char *create[] = {"create",       "--topic", e_dlq + strlen("KRIB_DLQ_TOPIC="),
                                "--partitions", "1",       NULL};
        itest_loadgen(create);
        const char *env[] = {nm.env_group, nm.env_brokers, nm.env_nodes, e_metrics, e_dlq, NULL};
        pid_t pid = itest_krib_start_conf(CDC_CONF, env, nm.log);

        char stmt[512];
        int64_t j0 = log_end_sum("pgjson.public.users", 3);
        snprintf(stmt, sizeof(stmt),
                 "INSERT INTO users SELECT i, 'name' || i, 'user' || i || '@example.com', 1 "
                 "FROM generate_series(%ld, %ld) i",
                 base, base + n - 1);
        sql(stmt);
        wait_published("pgjson.public.users", j0, n);
        wait_both_caught_up(nm.group);

        /* The application fills its cache after the inserts were applied. */
        char key[128], val[512];
        for (long id = base; id < base + n; id++) {
                snprintf(key, sizeof(key), "user:{%ld}:profile", id);
                itest_cluster_cmd("SET", key, "cached", NULL, 0);
                snprintf(key, sizeof(key), "user:{%ld}:card", id);
                itest_cluster_cmd("SET", key, "cached", NULL, 0);
        }
        j0 = log_end_sum("pgjson.public.users", 3);
        snprintf(stmt, sizeof(stmt),
                 "UPDATE users SET name = name || '-v2', version = version + 1 "
                 "WHERE id BETWEEN %ld AND %ld",
                 base, base + 99);
        sql(stmt);
        snprintf(stmt, sizeof(stmt), "DELETE FROM users WHERE id BETWEEN %ld AND %ld", base + 100,
                 base + 149);
        sql(stmt);
        wait_published("pgjson.public.users", j0, 150 + 50); /* deletes add tombstones */
        wait_both_caught_up(nm.group);

        for (long id = base; id < base + n; id++) {
                int touched = id < base + 150;
                snprintf(key, sizeof(key), "user:{%ld}:profile", id);
                ck_assert_msg(itest_cluster_cmd("EXISTS", key, NULL, NULL, 0) == !touched, "%s %s",
                              key, touched ? "survived its row's change" : "vanished");
                snprintf(key, sizeof(key), "user:{%ld}:card", id);
                ck_assert_int_eq(itest_cluster_cmd("EXISTS", key, NULL, NULL, 0), !touched);
                /* Write-through copy (JSON with schemas route): newest version. */
                snprintf(key, sizeof(key), "userdoc:{%ld}", id);
                int present = itest_cluster_get(key, val, sizeof(val));
                if (id >= base + 100 && id < base + 150) {
                        ck_assert_msg(!present, "%s survived the row's delete: %s", key, val);
                } else {
                        char want[256];
                        snprintf(want, sizeof(want),
                                 "{\"id\":%ld,\"name\":\"name%ld%s\",\"email\":\"user%ld@example."
                                 "com\",\"version\":%d}",
                                 id, id, id < base + 100 ? "-v2" : "", id, id < base + 100 ? 2 : 1);
                        ck_assert_msg(present && !strcmp(val, want), "%s = '%s', want '%s'", key,
                                      present ? val : "(missing)", want);
                }
        }

        /* Commit-to-invalidation latency, one UPDATE at a time. */
        commit_to_invalidation("postgresql", sql, "user:{%ld}:profile", base + 150, 50);

        char body[300];
        snprintf(body, sizeof(body), "%s.metrics", nm.log);
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/metrics", body), 200);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        ck_assert_int_eq(itest_metric(body, "krib_events_total{outcome=\"dead_lettered\"}", NULL),
                         0);
        ck_assert_int_eq(itest_metric(body, "krib_events_total{outcome=\"rejected\"}", NULL), 0);
        ck_assert_int_gt(itest_metric(body, "krib_events_total{outcome=\"skipped\"}", NULL),
                         0); /* tombstones */
        unlink(body);
        unlink(nm.log);
}
END_TEST

/* ---- MySQL/MariaDB -------------------------------------------------------- */

static void mdb_sql(const char *stmt) {
        char port[16], out[2048];
        const char *p = getenv("MARIADB_PORT");
        const char *b = getenv("KRIB_PORT_BASE");
        snprintf(port, sizeof(port), "%d", p ? atoi(p) : (b ? atoi(b) : 19000) + 33);
        char *argv[] = {"/usr/bin/mariadb",
                        "--no-defaults",
                        "-h",
                        "127.0.0.1",
                        "-P",
                        port,
                        "-u",
                        "root",
                        "-D",
                        "krib",
                        "-e",
                        (char *)stmt,
                        NULL};
        int rc = itest_run(argv, 60, out, sizeof(out));
        ck_assert_msg(rc == 0, "mariadb failed (%d): %s: %s", rc, stmt, out);
}

#define MDB_TOPIC "mdb.krib.users"

static void mdb_fill_cache(long from, long to) {
        char key[96];
        for (long id = from; id <= to; id++) {
                snprintf(key, sizeof(key), "muser:{%ld}:profile", id);
                itest_cluster_cmd("SET", key, "cached", NULL, 0);
        }
}

static long mdb_cached(long from, long to) {
        char key[96];
        long n = 0;
        for (long id = from; id <= to; id++) {
                snprintf(key, sizeof(key), "muser:{%ld}:profile", id);
                n += itest_cluster_cmd("EXISTS", key, NULL, NULL, 0) == 1;
        }
        return n;
}

static pid_t mdb_krib(itest_names_t *nm, char *e_metrics, size_t size) {
        snprintf(e_metrics, size, "KRIB_METRICS_PORT=%d", itest_metrics_port());
        const char *env[] = {nm->env_group, nm->env_brokers, nm->env_nodes, e_metrics, NULL};
        return itest_krib_start_conf(CDC_CONF, env, nm->log);
}

static void mdb_caught_up(const itest_names_t *nm) {
        ck_assert_msg(itest_wait_caught_up(nm->group, MDB_TOPIC, 3, 60) == 0,
                      "krib did not catch up on " MDB_TOPIC " (log %s)", nm->log);
}

/* MariaDB 10.11 -> Debezium's MariaDB connector 3.5.0 -> krib with the
 * route's default version (auto: the binlog position): inserts, updates,
 * deletes, a multi-statement transaction, a rollback (nothing invalidated),
 * ALTER TABLE ADD COLUMN mid-stream, and commit-to-invalidation latency. */
START_TEST(mariadb_changes_reach_redis_through_debezium) {
        long base = 500000000L + (long)(getpid() % 100000) * 1000;
        itest_names_t nm;
        itest_names(&nm, "mdb");
        char e_metrics[64], stmt[512];
        pid_t pid = mdb_krib(&nm, e_metrics, sizeof(e_metrics));
        int64_t j0 = log_end_sum(MDB_TOPIC, 3);
        snprintf(stmt, sizeof(stmt),
                 "INSERT INTO users (id, name, email) SELECT seq, CONCAT('name', seq), "
                 "CONCAT('u', seq, '@example.com') FROM seq_%ld_to_%ld",
                 base, base + 199);
        mdb_sql(stmt);
        wait_published(MDB_TOPIC, j0, 200);
        mdb_caught_up(&nm);
        mdb_fill_cache(base, base + 199);
        j0 = log_end_sum(MDB_TOPIC, 3);
        /* 0..49 updated, 50..99 deleted, 100..119 changed twice in one
         * transaction, 120..139 changed in a transaction rolled back. */
        snprintf(stmt, sizeof(stmt),
                 "UPDATE users SET version = version + 1 WHERE id BETWEEN %ld AND %ld", base,
                 base + 49);
        mdb_sql(stmt);
        snprintf(stmt, sizeof(stmt), "DELETE FROM users WHERE id BETWEEN %ld AND %ld", base + 50,
                 base + 99);
        mdb_sql(stmt);
        snprintf(stmt, sizeof(stmt),
                 "BEGIN; UPDATE users SET name = 'x' WHERE id BETWEEN %ld AND %ld; "
                 "UPDATE users SET name = 'y' WHERE id BETWEEN %ld AND %ld; COMMIT",
                 base + 100, base + 119, base + 100, base + 119);
        mdb_sql(stmt);
        snprintf(stmt, sizeof(stmt),
                 "BEGIN; UPDATE users SET name = 'z' WHERE id BETWEEN %ld AND %ld; ROLLBACK",
                 base + 120, base + 139);
        mdb_sql(stmt);
        /* The table changes shape mid-stream; later changes still count. */
        snprintf(stmt, sizeof(stmt),
                 "ALTER TABLE users ADD COLUMN IF NOT EXISTS nick_%d varchar(20)",
                 (int)(getpid() % 100000));
        mdb_sql(stmt);
        snprintf(stmt, sizeof(stmt), "UPDATE users SET nick_%d = 'n' WHERE id BETWEEN %ld AND %ld",
                 (int)(getpid() % 100000), base + 140, base + 159);
        mdb_sql(stmt);
        wait_published(MDB_TOPIC, j0, 50 + 2 * 50 + 40 + 20); /* deletes add tombstones */
        mdb_caught_up(&nm);
        ck_assert_int_eq(mdb_cached(base, base + 119), 0);
        ck_assert_int_eq(mdb_cached(base + 140, base + 159), 0);
        ck_assert_msg(mdb_cached(base + 120, base + 139) == 20,
                      "a rolled-back transaction invalidated %ld keys",
                      20 - mdb_cached(base + 120, base + 139));
        ck_assert_int_eq(mdb_cached(base + 160, base + 199), 40);

        /* Commit-to-invalidation latency, one UPDATE at a time. */
        commit_to_invalidation("mariadb", mdb_sql, "muser:{%ld}:profile", base + 160, 40);

        char body[300];
        snprintf(body, sizeof(body), "%s.metrics", nm.log);
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/metrics", body), 200);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        ck_assert_int_eq(itest_metric(body, "krib_events_total{outcome=\"dead_lettered\"}", NULL),
                         0);
        ck_assert_int_eq(itest_metric(body, "krib_events_total{outcome=\"rejected\"}", NULL), 0);
        unlink(body);
        unlink(nm.log);
}
END_TEST

/* Two changes of one row within the same second, the application refilling
 * the key in between: MariaDB stamps both with the same whole-second ts_ms,
 * and the second invalidation must still win (an equal timestamp dropped it
 * for 39 of 40 keys before). Then a kill -9 of krib mid-stream loses none. */
START_TEST(mariadb_same_second_refill_and_kill_9) {
        long base = 600000000L + (long)(getpid() % 100000) * 10000;
        itest_names_t nm;
        itest_names(&nm, "mdbk");
        char e_metrics[64], stmt[512], key[96];
        pid_t pid = mdb_krib(&nm, e_metrics, sizeof(e_metrics));
        const int pairs = 40;
        int64_t j0 = log_end_sum(MDB_TOPIC, 3);
        snprintf(stmt, sizeof(stmt),
                 "INSERT INTO users (id, name) SELECT seq, 'n' FROM seq_%ld_to_%ld", base,
                 base + pairs - 1);
        mdb_sql(stmt);
        wait_published(MDB_TOPIC, j0, pairs);
        j0 = log_end_sum(MDB_TOPIC, 3);
        int same_second = 0;
        for (int i = 0; i < pairs; i++) {
                long id = base + i;
                snprintf(key, sizeof(key), "muser:{%ld}:profile", id);
                itest_cluster_cmd("SET", key, "v0", NULL, 0);
                time_t s0 = time(NULL);
                snprintf(stmt, sizeof(stmt), "UPDATE users SET name = 'a' WHERE id = %ld", id);
                mdb_sql(stmt);
                int64_t t0 = krib_clock_mono_us();
                while (itest_cluster_cmd("EXISTS", key, NULL, NULL, 0)) {
                        ck_assert_msg(krib_clock_mono_us() - t0 < 20000000,
                                      "%s: first change not invalidated within 20 s", key);
                        usleep(500);
                }
                itest_cluster_cmd("SET", key, "v1-refilled", NULL, 0);
                snprintf(stmt, sizeof(stmt), "UPDATE users SET name = 'b' WHERE id = %ld", id);
                mdb_sql(stmt);
                same_second += time(NULL) == s0;
        }
        wait_published(MDB_TOPIC, j0, 2 * pairs);
        mdb_caught_up(&nm);
        ck_assert_msg(mdb_cached(base, base + pairs - 1) == 0,
                      "%ld of %d refilled keys stayed stale (%d pairs within one second)",
                      mdb_cached(base, base + pairs - 1), pairs, same_second);
        fprintf(stderr, "same-second refill: %d of %d pairs within one second, none stale\n",
                same_second, pairs);
        ck_assert_int_ge(same_second, pairs / 2);

        /* kill -9 while Debezium publishes 6000 updates in 30 statements. */
        const long n = 6000;
        long kb = base + 1000;
        j0 = log_end_sum(MDB_TOPIC, 3);
        snprintf(stmt, sizeof(stmt),
                 "INSERT INTO users (id, name) SELECT seq, 'k' FROM seq_%ld_to_%ld", kb,
                 kb + n - 1);
        mdb_sql(stmt);
        wait_published(MDB_TOPIC, j0, n);
        mdb_caught_up(&nm);
        mdb_fill_cache(kb, kb + n - 1);
        j0 = log_end_sum(MDB_TOPIC, 3);
        int killed = 0;
        for (int b = 0; b < 30; b++) {
                snprintf(stmt, sizeof(stmt),
                         "UPDATE users SET name = 'u' WHERE id BETWEEN %ld AND %ld", kb + b * 200,
                         kb + b * 200 + 199);
                mdb_sql(stmt);
                if (b == 10) {
                        ck_assert_int_eq(itest_krib_stop(pid, SIGKILL, 10), 128 + SIGKILL);
                        killed = 1;
                        pid = mdb_krib(&nm, e_metrics, sizeof(e_metrics));
                }
        }
        ck_assert(killed);
        wait_published(MDB_TOPIC, j0, n);
        mdb_caught_up(&nm);
        ck_assert_msg(mdb_cached(kb, kb + n - 1) == 0,
                      "%ld of %ld keys survived their change across a kill -9",
                      mdb_cached(kb, kb + n - 1), n);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        unlink(nm.log);
}
END_TEST

/* ---- dead letters -------------------------------------------------------- */

static const char *header(const rd_kafka_message_t *m, const char *name, char *buf, size_t size) {
        rd_kafka_headers_t *h = NULL;
        const void *v;
        size_t len;
        if (rd_kafka_message_headers(m, &h) || !h || rd_kafka_header_get_last(h, name, &v, &len))
                return NULL;
        snprintf(buf, size, "%.*s", (int)len, (const char *)v);
        return buf;
}

typedef struct {
        const char *topic;
        const char *value;
        size_t len;
        const char *stage, *class_name, *why;
} poison_t;

START_TEST(poison_records_go_to_the_dead_letter_topic) {
        itest_names_t nm;
        itest_names(&nm, "poison");
        char routed[160], avro[160], dlq[160], conf[300];
        snprintf(routed, sizeof(routed), "%s-json", nm.topic);
        snprintf(avro, sizeof(avro), "%s-avro", nm.topic);
        snprintf(dlq, sizeof(dlq), "%s-dlq", nm.topic);
        const char *topics[] = {routed, avro, dlq};
        for (int i = 0; i < 3; i++) {
                const char *create[] = {"create", "--topic", topics[i], "--partitions", "1", NULL};
                itest_loadgen(create);
        }
        snprintf(conf, sizeof(conf), "/tmp/%s.conf", nm.topic);
        itest_write_conf(conf, nm.group, avro,
                         "dlq = { topic = \"%s\"; };\n"
                         "routes = ( { name = \"poison\"; topics = [ \"%s\" ];\n"
                         "             keys = [ \"%s:{${id}}\" ]; version = \"source.lsn\"; } );\n",
                         dlq, routed, nm.prefix);

        /* Good records around the poison: their keys must still go. */
        const int good = 20;
        char key[256], value[8192];
        for (int i = 0; i < good; i++) {
                snprintf(key, sizeof(key), "%s:{%d}", nm.prefix, i);
                itest_cluster_cmd("SET", key, "cached", NULL, 0);
        }
        static char huge[6000];
        memset(huge, 'x', 5000);
        char big[7000];
        snprintf(big, sizeof(big),
                 "{\"op\":\"c\",\"after\":{\"id\":\"%s\"},\"source\":{\"lsn\":9}}", huge);
        /* A valid krib Avro event, cut short. */
        const poison_t poison[] = {
                {routed, "not json{", 9, "route", "krib.RouteError", "value is not JSON"},
                {routed, "{\"hello\":1}", 11, "route", "krib.RouteError", "no op"},
                {routed, "{\"op\":\"c\",\"after\":{\"name\":\"x\"},\"source\":{\"lsn\":5}}", 0,
                 "route", "krib.RouteError", "field id is missing"},
                {routed, big, 0, "route", "krib.RouteError", "longer than"},
                {avro, "\xC3\x01\x01\x02\x03\x04\x05\x06\x07\x08\x02", 11, "decode",
                 "krib.DecodeError", "fingerprint"},
                {avro, "\x02\x04", 2, "decode", "krib.DecodeError", ""},
        };
        const int npoison = (int)(sizeof(poison) / sizeof(*poison));
        int64_t routed_off = 0, avro_off = 0;
        int64_t offsets[8];
        for (int i = 0; i < good; i++) {
                int l = snprintf(value, sizeof(value),
                                 "{\"op\":\"u\",\"after\":{\"id\":%d},\"source\":{\"lsn\":%d}}", i,
                                 100 + i);
                char k[32];
                int kl = snprintf(k, sizeof(k), "{\"id\":%d}", i);
                itest_produce_raw(routed, 0, k, (size_t)kl, value, (size_t)l);
                routed_off++;
                if (i % 3 == 0 && i / 3 < npoison) {
                        const poison_t *p = &poison[i / 3];
                        size_t len = p->len ? p->len : strlen(p->value);
                        itest_produce_raw(p->topic, 0, "bad", 3, p->value, len);
                        offsets[i / 3] = p->topic == routed ? routed_off++ : avro_off++;
                }
        }
        itest_produce_raw(routed, 0, "{\"id\":1}", 8, NULL, 0); /* tombstone: skipped */
        routed_off++;

        char e_metrics[64];
        snprintf(e_metrics, sizeof(e_metrics), "KRIB_METRICS_PORT=%d", itest_metrics_port());
        const char *env[] = {e_metrics, NULL};
        pid_t pid = itest_krib_start_conf(conf, env, nm.log);
        ck_assert_int_eq(itest_wait_caught_up(nm.group, routed, 1, 60), 0);
        ck_assert_int_eq(itest_wait_caught_up(nm.group, avro, 1, 60), 0);
        for (int i = 0; i < good; i++) {
                snprintf(key, sizeof(key), "%s:{%d}", nm.prefix, i);
                ck_assert_msg(!itest_cluster_cmd("EXISTS", key, NULL, NULL, 0), "%s survived", key);
        }

        /* The dead-letter topic holds each poison record once, with headers. */
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", itest_brokers(), err, sizeof(err));
        rd_kafka_conf_set(c, "group.id", "dlq-reader", err, sizeof(err));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
        ck_assert_ptr_nonnull(rk);
        rd_kafka_topic_partition_list_t *as = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(as, dlq, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
        ck_assert_int_eq(rd_kafka_assign(rk, as), 0);
        rd_kafka_topic_partition_list_destroy(as);
        /* Two source topics: their dead letters may interleave either way. */
        int seen = 0, matched[8] = {0};
        int64_t end = krib_clock_mono_us() + 30000000;
        while (seen < npoison && krib_clock_mono_us() < end) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
                if (!m)
                        continue;
                if (m->err) {
                        rd_kafka_message_destroy(m);
                        continue;
                }
                int which = -1;
                for (int k = 0; k < npoison && which < 0; k++) {
                        size_t l = poison[k].len ? poison[k].len : strlen(poison[k].value);
                        if (m->len == l && !memcmp(m->payload, poison[k].value, l))
                                which = k;
                }
                ck_assert_msg(which >= 0, "unexpected dead letter: %.*s", (int)m->len,
                              (const char *)m->payload);
                ck_assert_msg(!matched[which]++, "poison %d dead-lettered twice", which);
                const poison_t *p = &poison[which];
                char b[4096], want[32];
                ck_assert_uint_eq(m->key_len, 3);
                ck_assert_str_eq(header(m, "__connect.errors.topic", b, sizeof(b)), p->topic);
                ck_assert_str_eq(header(m, "__connect.errors.partition", b, sizeof(b)), "0");
                snprintf(want, sizeof(want), "%lld", (long long)offsets[which]);
                ck_assert_str_eq(header(m, "__connect.errors.offset", b, sizeof(b)), want);
                ck_assert_str_eq(header(m, "__connect.errors.stage", b, sizeof(b)), p->stage);
                ck_assert_str_eq(header(m, "__connect.errors.class.name", b, sizeof(b)),
                                 p->class_name);
                const char *msg = header(m, "__connect.errors.exception.message", b, sizeof(b));
                ck_assert_msg(msg && *msg && strstr(msg, p->why), "message '%s' lacks '%s'",
                              msg ? msg : "(none)", p->why);
                rd_kafka_message_destroy(m);
                seen++;
        }
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        ck_assert_int_eq(seen, npoison);

        /* Alive, and every record is accounted for. */
        char body[300];
        snprintf(body, sizeof(body), "%s.metrics", nm.log);
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/healthz", body), 200);
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/metrics", body), 200);
        double consumed = itest_metric(body, "krib_events_total{outcome=\"consumed\"}", NULL);
        double applied = itest_metric(body, "krib_events_total{outcome=\"applied\"}", NULL);
        double stale = itest_metric(body, "krib_events_total{outcome=\"stale\"}", NULL);
        double skipped = itest_metric(body, "krib_events_total{outcome=\"skipped\"}", NULL);
        double dead = itest_metric(body, "krib_events_total{outcome=\"dead_lettered\"}", NULL);
        ck_assert_int_eq((int)consumed, good + npoison + 1);
        ck_assert_int_eq((int)dead, npoison);
        ck_assert_int_eq((int)skipped, 1);
        ck_assert_int_eq((int)(applied + stale + skipped + dead), (int)consumed);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        const char *lines[] = {"rejected event", "dead_letter=yes", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, lines), npoison);
        unlink(body);
        unlink(conf);
        unlink(nm.log);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("cdc");
        TCase *tc = tcase_create("debezium");
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, postgres_changes_reach_redis_through_debezium);
        suite_add_tcase(s, tc);
        tc = tcase_create("mariadb");
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, mariadb_changes_reach_redis_through_debezium);
        tcase_add_test(tc, mariadb_same_second_refill_and_kill_9);
        suite_add_tcase(s, tc);
        tc = tcase_create("dead_letters");
        tcase_set_timeout(tc, 180);
        tcase_add_test(tc, poison_records_go_to_the_dead_letter_topic);
        suite_add_tcase(s, tc);
        return s;
}
