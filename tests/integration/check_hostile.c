/* Hostile and awkward records against the real broker and Redis Cluster
 * (issue 10): valid events that used to lose an invalidation, records that
 * must be rejected (dead-lettered) without holding the partition, and the
 * fence script's own rules on a real master. */
#include <check.h>
#include <hiredis.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "clock.h"
#include "itest.h"

static itest_names_t nm;
static char conf[300], dlq[200], body[320];

static void expect(const char *key, const char *want) {
        char got[256] = "";
        int found = itest_cluster_get(key, got, sizeof(got));
        if (want)
                ck_assert_msg(found && !strcmp(got, want), "%s = '%s' (found=%d), want '%s'", key,
                              got, found, want);
        else
                ck_assert_msg(!found, "%s = '%s', want it gone (log %s)", key, got, nm.log);
}

static void set(const char *key, const char *value) {
        ck_assert_int_eq(itest_cluster_cmd("SET", key, value, NULL, 0), 1);
}

static void caught_up(void) {
        ck_assert_msg(itest_wait_caught_up(nm.group, nm.topic, 1, 60) == 0,
                      "krib did not catch up (log %s)", nm.log);
}

/* One topic (one partition, so order is the producer's), a dead-letter
 * topic, metrics on the test port. */
static pid_t start(const char *what) {
        itest_names(&nm, what);
        itest_topic_with_dlq(&nm, 1, dlq, sizeof(dlq), conf, sizeof(conf));
        itest_write_conf(conf, nm.group, nm.topic, "dlq = { topic = \"%s\"; };\n", dlq);
        snprintf(body, sizeof(body), "%s.metrics", nm.log);
        return 0;
}

static pid_t run_krib(void) {
        static char e_metrics[64];
        snprintf(e_metrics, sizeof(e_metrics), "KRIB_METRICS_PORT=%d", itest_metrics_port());
        /* The fence script's decisions are what these records attack. */
        const char *env[] = {e_metrics, "KRIB_LOG_STATS_INTERVAL_MS=500", "KRIB_REDIS_FENCE=all",
                             NULL};
        return itest_krib_start_conf(conf, env, nm.log);
}

static double metric(const char *name, const char *label) {
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/metrics", body), 200);
        return itest_metric(body, name, label);
}

/* The metrics snapshot trails the committed offsets by up to a publish
 * interval: wait (bounded) for the value, then assert it. */
static void expect_metric(const char *name, const char *label, double want) {
        double got = metric(name, label);
        for (int i = 0; i < 50 && got != want; i++) {
                usleep(100000);
                got = metric(name, label);
        }
        ck_assert_msg(got == want, "%s{%s} = %g, want %g (log %s)", name, label, got, want, nm.log);
}

static void name(char *out, size_t size, const char *what) {
        snprintf(out, size, "%s:{%s}", nm.prefix, what);
}

/* Valid events that lost an invalidation before (issue 10, items 8, 9 and
 * the independent producer's two findings). */
START_TEST(valid_events_never_lose_an_invalidation) {
        start("valid");
        char ka[160], ku[160], td1[160], td2[160], s1[160], s2[160], sh[160];
        name(ka, sizeof(ka), "a");
        name(ku, sizeof(ku), "u");
        name(td1, sizeof(td1), "td1");
        name(td2, sizeof(td2), "td2");
        name(s1, sizeof(s1), "s1");
        name(s2, sizeof(s2), "s2");
        name(sh, sizeof(sh), "sh");
        char p1[160], p2[160];
        name(p1, sizeof(p1), "p1");
        name(p2, sizeof(p2), "p2");
        set(p2, "cached");
        set(ka, "cached");
        set(td1, "cached");
        set(td2, "cached");
        set(s2, "cached");
        char ea[200], eu[200], etd[200], eA[200], eB[200];
        snprintf(ea, sizeof(ea), "%s-a", nm.prefix);
        snprintf(eu, sizeof(eu), "%s-u", nm.prefix);
        snprintf(etd, sizeof(etd), "%s-td", nm.prefix);
        snprintf(eA, sizeof(eA), "%s-A", nm.prefix);
        snprintf(eB, sizeof(eB), "%s-B", nm.prefix);
        const char *k_a[] = {ka, NULL}, *k_u[] = {ku, NULL}, *k_td1[] = {td1, NULL},
                   *k_td2[] = {td2, NULL}, *k_s1[] = {s1, NULL}, *k_s2[] = {s2, NULL},
                   *k_sh[] = {sh, NULL};
        /* Produced before krib starts, so they meet in one batch. */
        /* (a) a first event at counter 0 (JPA @Version starts there) */
        itest_produce_event(nm.topic, 0, ea, k_a, KRIB_ACTION_DELETE, "v=0", NULL);
        itest_produce_event(nm.topic, 0, eu, k_u, KRIB_ACTION_UPSERT, "v=0", "u0");
        /* (b) an older DELETE naming a key the newer one did not */
        itest_produce_event(nm.topic, 0, etd, k_td1, KRIB_ACTION_DELETE, "v=2", NULL);
        itest_produce_event(nm.topic, 0, etd, k_td2, KRIB_ACTION_DELETE, "v=1", NULL);
        /* (8) two entities name one key in one batch: A v5 then B v3 */
        itest_produce_event(nm.topic, 0, eA, k_s1, KRIB_ACTION_UPSERT, "v=5", "A5");
        itest_produce_event(nm.topic, 0, eB, k_s1, KRIB_ACTION_UPSERT, "v=3", "B3");
        itest_produce_event(nm.topic, 0, eA, k_s2, KRIB_ACTION_UPSERT, "v=5", "A5");
        itest_produce_event(nm.topic, 0, eB, k_s2, KRIB_ACTION_DELETE, "v=3", NULL);
        /* (issue 23, finding 9) an older UPSERT naming a key the newer one
         * did not: its value is dropped, its key still invalidated */
        char ep[200];
        snprintf(ep, sizeof(ep), "%s-p", nm.prefix);
        const char *k_p1[] = {p1, NULL}, *k_p2[] = {p2, NULL};
        itest_produce_event(nm.topic, 0, ep, k_p1, KRIB_ACTION_UPSERT, "v=2", "P2");
        itest_produce_event(nm.topic, 0, ep, k_p2, KRIB_ACTION_UPSERT, "v=1", "P1");
        /* (the pipeline simulation's finding) two older UPSERTs of one key
         * in one batch, the key cached at a version between theirs: the
         * newer one's invalidation must not be coalesced into the older
         * one's, which the fence lets the cached value survive */
        char q1[160], q2[160], fq1[200], eq[200];
        name(q1, sizeof(q1), "q1");
        name(q2, sizeof(q2), "q2");
        snprintf(fq1, sizeof(fq1), "krib:f:%s", q1);
        snprintf(eq, sizeof(eq), "%s-q", nm.prefix);
        set(q1, "Q24");
        set(fq1, "v=24\n");
        const char *k_q1[] = {q1, NULL}, *k_q2[] = {q2, NULL};
        itest_produce_event(nm.topic, 0, eq, k_q2, KRIB_ACTION_DELETE, "v=29", NULL);
        itest_produce_event(nm.topic, 0, eq, k_q1, KRIB_ACTION_UPSERT, "v=20", "Q20");
        itest_produce_event(nm.topic, 0, eq, k_q1, KRIB_ACTION_UPSERT, "v=28", "Q28");
        pid_t pid = run_krib();
        caught_up();
        expect(q1, NULL);
        expect(ka, NULL);
        expect(ku, "u0");
        expect(td1, NULL);
        expect(td2, NULL);
        expect(s1, "A5");
        expect(s2, NULL);
        expect(p1, "P2");
        expect(p2, NULL);

        /* (9) a key shared by two entities, in separate batches: B's DELETE
         * at a counter below A's is still an invalidation. */
        itest_produce_event(nm.topic, 0, eA, k_sh, KRIB_ACTION_UPSERT, "v=9", "A9");
        caught_up();
        expect(sh, "A9");
        itest_produce_event(nm.topic, 0, eB, k_sh, KRIB_ACTION_DELETE, "v=1", NULL);
        caught_up();
        expect(sh, NULL);
        /* ... and the fence kept A's version: B's older write-through is
         * refused, an application fill from the database would refill. */
        itest_produce_event(nm.topic, 0, eB, k_sh, KRIB_ACTION_UPSERT, "v=2", "B2");
        caught_up();
        expect(sh, NULL);

        expect_metric("krib_events_total", "consumed", 16); /* the snapshot is current */
        /* Older or equal to their entity's newest, so keys unlinked and
         * values dropped: td2 v1, A's second v5 (s2), B's v3 DELETE after
         * its v3 UPSERT, p2 v1, B's v1 and v2 after its v3, and q's v20
         * and v28 after its v29. */
        expect_metric("krib_events_total", "stale", 8);
        expect_metric("krib_events_total", "dead_lettered", 0);
        expect_metric("krib_events_total", "failed", 0);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        unlink(nm.log);
        unlink(body);
}
END_TEST

static krib_event_t *ev_new(const char *entity, krib_action_t action) {
        static krib_event_t ev;
        krib_event_destroy(&ev);
        memset(&ev, 0, sizeof(ev));
        krib_event_reset(&ev);
        krib_event_strdup(&ev, &ev.entity, entity, strlen(entity));
        ev.action = action;
        return &ev;
}

static void ev_keys(krib_event_t *ev, size_t n, const char *fmt, const char *prefix) {
        ev->keys = krib_event_alloc(ev, n * sizeof(krib_str_t));
        for (size_t i = 0; i < n; i++) {
                char k[256];
                int l = snprintf(k, sizeof(k), fmt, prefix, i);
                krib_event_strdup(ev, &ev->keys[i], k, (size_t)l);
        }
        ev->key_count = n;
}

static void ev_version(krib_event_t *ev, size_t n, int64_t counter) {
        ev->version = krib_event_alloc(ev, n * sizeof(krib_vv_entry_t));
        for (size_t i = 0; i < n; i++) {
                char o[32];
                int l = snprintf(o, sizeof(o), "o%zu", i);
                krib_event_strdup(ev, &ev->version[i].origin, o, (size_t)l);
                ev->version[i].counter = counter;
        }
        ev->version_count = n;
}

/* Records krib must refuse up front (issue 10, items 8, 11, 12): each is
 * dead-lettered with a reason, the partition moves past it at once, and
 * the valid event behind them is applied. */
START_TEST(hostile_records_are_dead_lettered_without_stalling) {
        start("hostile");
        char x[160], after[160], fence[200];
        name(x, sizeof(x), "x");
        name(after, sizeof(after), "after");
        snprintf(fence, sizeof(fence), "krib:f:%s", x);
        set(after, "cached");
        char ex[200];
        snprintf(ex, sizeof(ex), "%s-x", nm.prefix);
        const char *k_x[] = {x, NULL}, *k_fence[] = {fence, NULL}, *k_after[] = {after, NULL};
        char other_topic[160];
        snprintf(other_topic, sizeof(other_topic), "%s-other", nm.topic);
        const char *create_other[] = {"create", "--topic", other_topic, "--partitions", "1", NULL};
        itest_loadgen(create_other);
        pid_t pid = run_krib();
        itest_produce_event(nm.topic, 0, ex, k_x, KRIB_ACTION_UPSERT, "v=5", "x5");
        caught_up();
        expect(x, "x5");

        /* Stopped while the records arrive, so the timing below is krib's
         * alone: from its start to the valid events behind the hostile ones
         * applied, on this topic and on another one. */
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        /* 1. a DELETE of x's own fence, then an older UPSERT of x */
        itest_produce_event(nm.topic, 0, ex, k_fence, KRIB_ACTION_DELETE, "v=6", NULL);
        itest_produce_event(nm.topic, 0, ex, k_x, KRIB_ACTION_UPSERT, "v=4", "x4");
        /* 2. more keys than limits.max_keys_per_event (1000) */
        krib_event_t *ev = ev_new("many-keys", KRIB_ACTION_DELETE);
        ev_keys(ev, 1500, "%s:{many}:%zu", nm.prefix);
        char many0[160], many1499[160], orig0[160], orig63[160];
        snprintf(many0, sizeof(many0), "%s:{many}:0", nm.prefix);
        snprintf(many1499, sizeof(many1499), "%s:{many}:1499", nm.prefix);
        snprintf(orig0, sizeof(orig0), "%s:{origins}:0", nm.prefix);
        snprintf(orig63, sizeof(orig63), "%s:{origins}:63", nm.prefix);
        set(many0, "cached");
        set(many1499, "cached");
        set(orig0, "cached");
        set(orig63, "cached");
        ev_version(ev, 1, 1);
        itest_produce_ev(nm.topic, 0, ev);
        /* 3. a 200 KB key (limits.max_key_bytes 16384) */
        ev = ev_new("big-key", KRIB_ACTION_DELETE);
        size_t big = 200 * 1024;
        char *bk = malloc(big + 1);
        memset(bk, 'k', big);
        bk[big] = '\0';
        ev->keys = krib_event_alloc(ev, sizeof(krib_str_t));
        krib_event_strdup(ev, &ev->keys[0], bk, big);
        ev->key_count = 1;
        free(bk);
        itest_produce_ev(nm.topic, 0, ev);
        /* 4. a vector of 5000 origins (limits.max_origins 64) on 64 keys */
        ev = ev_new("many-origins", KRIB_ACTION_DELETE);
        ev_keys(ev, 64, "%s:{origins}:%zu", nm.prefix);
        ev_version(ev, 5000, 7);
        itest_produce_ev(nm.topic, 0, ev);
        /* 5. a TTL Redis would refuse inside the script */
        ev = ev_new("ttl", KRIB_ACTION_UPSERT);
        ev_keys(ev, 1, "%s:{ttl}:%zu", nm.prefix);
        ev_version(ev, 1, 1);
        ev->value.s = "v";
        ev->value.len = 1;
        ev->ttl_ms = INT64_MAX - 1000;
        itest_produce_ev(nm.topic, 0, ev);
        /* 6. a key with a newline that would forge a log line */
        char forged[200];
        snprintf(forged, sizeof(forged), "%s:{f}\nts=1 level=error msg=\"forged\"", nm.prefix);
        ev = ev_new("forged", KRIB_ACTION_DELETE);
        ev->keys = krib_event_alloc(ev, sizeof(krib_str_t));
        krib_event_strdup(ev, &ev->keys[0], "krib:f:", 7); /* rejected: its log names forged */
        krib_event_strdup(ev, &ev->entity, forged, strlen(forged));
        ev->key_count = 1;
        itest_produce_ev(nm.topic, 0, ev);
        krib_event_destroy(ev);
        /* 7. a record whose dead-letter copy (value + __connect.errors.*
         * headers) exceeds the producer's message.max.bytes (1,000,000) */
        size_t huge = 999700;
        char *junk = malloc(huge);
        memset(junk, 0x7f, huge);
        itest_produce_raw(nm.topic, 0, "huge", 4, junk, huge);
        free(junk);
        /* the valid event behind them, and one on another topic */
        itest_produce_event(nm.topic, 0, ex, k_after, KRIB_ACTION_DELETE, "v=7", NULL);
        char other[160];
        name(other, sizeof(other), "other");
        set(other, "cached");
        const char *k_other[] = {other, NULL};
        itest_produce_event(other_topic, 0, "other", k_other, KRIB_ACTION_DELETE, "v=1", NULL);
        static char e_topics[400];
        snprintf(e_topics, sizeof(e_topics), "KRIB_KAFKA_TOPICS=%s,%s", nm.topic, other_topic);
        static char e_metrics[64];
        snprintf(e_metrics, sizeof(e_metrics), "KRIB_METRICS_PORT=%d", itest_metrics_port());
        const char *env2[] = {e_metrics, e_topics, "KRIB_LOG_STATS_INTERVAL_MS=500",
                              "KRIB_REDIS_FENCE=all", NULL};
        int64_t t0 = krib_clock_mono_us();
        pid = itest_krib_start_conf(conf, env2, nm.log);
        double t_after = -1, t_other = -1;
        while (krib_clock_mono_us() - t0 < 60000000 && (t_after < 0 || t_other < 0)) {
                char got[64];
                double now = (double)(krib_clock_mono_us() - t0) / 1e6;
                if (t_after < 0 && !itest_cluster_get(after, got, sizeof(got)))
                        t_after = now;
                if (t_other < 0 && !itest_cluster_get(other, got, sizeof(got)))
                        t_other = now;
                usleep(10000);
        }
        caught_up();
        fprintf(stderr,
                "hostile records: from krib's start (group join included), the valid event "
                "behind 8 hostile records applied after %.2f s, another topic's after %.2f s\n",
                t_after, t_other);
        ck_assert_msg(t_after >= 0 && t_other >= 0, "valid events not applied within 60 s");
        expect(after, NULL);
        expect(other, NULL);
        /* Its fence survived the DELETE that named it: this krib instance
         * has not seen v5, the fence refused the older UPSERT. */
        expect(x, "x5");
        expect(fence, "v=5\n");
        /* Dead-lettered for a limit, yet their keys were unlinked first
         * (issue 23, finding 10: fail safe). */
        expect(many0, NULL);
        expect(many1499, NULL);
        expect(orig0, NULL);
        expect(orig63, NULL);
        expect_metric("krib_events_total", "consumed", 10); /* this instance's */
        expect_metric("krib_events_total", "dead_lettered", 7);
        expect_metric("krib_events_total", "failed", 0);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        const char *truncated[] = {"dead letter too large for the broker: truncated", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, truncated), 1);
        const char *limits[] = {"krib.LimitExceeded", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, limits), 3);
        const char *one_line[] = {"level=error module=pipeline", "forged", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, one_line), 1);
        /* The only line with msg="forged" at its start is none: the key's
         * newline was escaped inside the rejection's line. */
        FILE *fp = fopen(nm.log, "r");
        char line[8192];
        int starts = 0;
        while (fp && fgets(line, sizeof(line), fp))
                starts += !strncmp(line, "ts=1 ", 5);
        if (fp)
                fclose(fp);
        ck_assert_int_eq(starts, 0);
        unlink(nm.log);
        unlink(body);
        unlink(conf);
}
END_TEST

/* A write-through route whose value cannot be built (a selected column is
 * missing): the keys it rendered are still invalidated, then the record is
 * dead-lettered (issue 10, item 14). So are records whose version cannot
 * order them: a DELETE at 2^63-1, a version that is no integer (issue 23,
 * finding 10: fail safe). */
START_TEST(write_through_defect_invalidates_then_dead_letters) {
        itest_names(&nm, "wtdefect");
        itest_topic_with_dlq(&nm, 1, dlq, sizeof(dlq), conf, sizeof(conf));
        snprintf(body, sizeof(body), "%s.metrics", nm.log);
        itest_write_conf(conf, nm.group, NULL,
                         "dlq = { topic = \"%s\"; };\n"
                         "routes = ( { name = \"cards\"; topics = [ \"%s\" ];\n"
                         "             keys = [ \"%s:{${id}}\" ]; action = \"write-through\";\n"
                         "             columns = [ \"name\" ]; version = \"column:version\";\n"
                         "             origin = \"pg\"; } );\n",
                         dlq, nm.topic, nm.prefix);
        char k1[160], k2[160], k3[160], k4[160];
        snprintf(k1, sizeof(k1), "%s:{1}", nm.prefix);
        snprintf(k2, sizeof(k2), "%s:{2}", nm.prefix);
        snprintf(k3, sizeof(k3), "%s:{3}", nm.prefix);
        snprintf(k4, sizeof(k4), "%s:{4}", nm.prefix);
        set(k1, "cached");
        set(k2, "cached");
        set(k3, "cached");
        set(k4, "cached");
        const char *top = "{\"op\":\"d\",\"before\":{\"id\":3,\"version\":9223372036854775807},"
                          "\"source\":{}}";
        const char *nonint = "{\"op\":\"u\",\"after\":{\"id\":4,\"name\":\"Bo\",\"version\":\"x\"},"
                             "\"source\":{}}";
        itest_produce_raw(nm.topic, 0, "{\"id\":3}", 8, top, strlen(top));
        itest_produce_raw(nm.topic, 0, "{\"id\":4}", 8, nonint, strlen(nonint));
        const char *bad = "{\"op\":\"u\",\"after\":{\"id\":1,\"version\":3},\"source\":{}}";
        const char *good =
                "{\"op\":\"u\",\"after\":{\"id\":2,\"name\":\"Ann\",\"version\":3},\"source\":{}}";
        itest_produce_raw(nm.topic, 0, "{\"id\":1}", 8, bad, strlen(bad));
        itest_produce_raw(nm.topic, 0, "{\"id\":2}", 8, good, strlen(good));
        pid_t pid = run_krib();
        caught_up();
        expect(k1, NULL); /* invalidated though its value could not be built */
        expect(k2, "{\"name\":\"Ann\"}");
        expect(k3, NULL); /* dead-lettered, yet unlinked first */
        expect(k4, NULL); /* no value written without a version, key unlinked */
        expect_metric("krib_events_total", "dead_lettered", 3);
        expect_metric("krib_events_total", "applied", 1);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        const char *why[] = {"krib.RouteError", "column name is missing", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, why), 1);
        const char *no_room[] = {"krib.RouteError", "leaves no room", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, no_room), 1);
        const char *no_int[] = {"krib.RouteError", "no integer", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, no_int), 1);
        unlink(nm.log);
        unlink(body);
        unlink(conf);
}
END_TEST

/* errors.tolerance=none (Kafka Connect's name): the poison record stops
 * krib with status 3, everything before it is applied and committed, its
 * own offset is not, and nothing is dead-lettered. With all, the same record
 * is dead-lettered and the rest flows. */
START_TEST(tolerance_none_stops_on_a_poison_record) {
        start("tolnone");
        char k[5][160];
        for (int i = 0; i < 5; i++) {
                snprintf(k[i], sizeof(k[i]), "%s:{%d}", nm.prefix, i);
                set(k[i], "cached");
        }
        for (int i = 0; i < 5; i++) {
                if (i == 3) {
                        itest_produce_raw(nm.topic, 0, "poison", 6, "\x02not avro", 9);
                        continue;
                }
                char ent[64];
                snprintf(ent, sizeof(ent), "user:%d", i);
                const char *keys[] = {k[i], NULL};
                itest_produce_event(nm.topic, 0, ent, keys, KRIB_ACTION_DELETE, "db=1", NULL);
        }
        static char e_metrics[64];
        snprintf(e_metrics, sizeof(e_metrics), "KRIB_METRICS_PORT=%d", itest_metrics_port());
        const char *env[] = {e_metrics, "KRIB_ERRORS_TOLERANCE=none", NULL};
        pid_t pid = itest_krib_start_conf(conf, env, nm.log);
        int rc = itest_wait(pid, 60);
        ck_assert_msg(rc == 3, "krib exited with %d, want 3 (log %s)", rc, nm.log);
        for (int i = 0; i < 3; i++)
                expect(k[i], NULL);
        /* k[4], after the poison, may have been applied with its batch;
         * what matters is that the commit stops at the poison. */
        int64_t com[1];
        ck_assert_int_eq(itest_committed(nm.group, nm.topic, 1, com), 0);
        ck_assert_msg(com[0] == 3, "committed %lld, want 3: the poison record's offset",
                      (long long)com[0]);
        const char *why[] = {"errors.tolerance=none", "offset=3", "krib.DecodeError", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, why), 1);
        const char *exit3[] = {"exit 3", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, exit3), 1);
        int64_t dl[1];
        ck_assert_int_eq(itest_log_end(dlq, 1, dl), 0);
        ck_assert_int_eq(dl[0], 0);
        /* The operator decides to let it through: all dead-letters it. */
        set(k[4], "cached");
        pid = run_krib();
        caught_up();
        expect(k[4], NULL); /* re-read from the poison on: applied again */
        ck_assert_int_eq(itest_log_end(dlq, 1, dl), 0);
        ck_assert_int_eq(dl[0], 1);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        unlink(nm.log);
        unlink(body);
        unlink(conf);
}
END_TEST

/* ---- the fence script on a real master ---------------------------------- */

static redisContext *master_of(const char *key) {
        char host[256];
        snprintf(host, sizeof(host), "%s", itest_redis_seed());
        char *colon = strrchr(host, ':');
        *colon = '\0';
        redisContext *c = itest_redis(atoi(colon + 1));
        redisReply *r = redisCommand(c, "CLUSTER KEYSLOT %s", key);
        long long slot = r->integer;
        freeReplyObject(r);
        r = redisCommand(c, "CLUSTER SLOTS");
        int port = -1;
        for (size_t i = 0; i < r->elements && port < 0; i++) {
                redisReply *e = r->element[i];
                if (slot >= e->element[0]->integer && slot <= e->element[1]->integer)
                        port = (int)e->element[2]->element[1]->integer;
        }
        freeReplyObject(r);
        redisFree(c);
        ck_assert_int_gt(port, 0);
        return itest_redis(port);
}

static char sha[41];

static redisReply *fence(redisContext *c, const char *key, const char *kind, const char *counter) {
        char fkey[300];
        snprintf(fkey, sizeof(fkey), "krib:f:%s", key);
        const char *argv[] = {"EVALSHA", sha,   "2", key, fkey, "A",    "0",
                              kind,      "val", "0", "1", "db", counter};
        redisReply *r = redisCommandArgv(c, 13, argv, NULL);
        ck_assert_ptr_nonnull(r);
        return r;
}

static long long fence_int(redisContext *c, const char *key, const char *kind,
                           const char *counter) {
        redisReply *r = fence(c, key, kind, counter);
        ck_assert_msg(r->type == REDIS_REPLY_ARRAY && r->elements == 1, "%s %s: reply type %d (%s)",
                      kind, counter, r->type, r->type == REDIS_REPLY_ERROR ? r->str : "");
        long long v = r->element[0]->integer;
        freeReplyObject(r);
        return v;
}

static void fence_err(redisContext *c, const char *key, const char *kind, const char *counter) {
        redisReply *r = fence(c, key, kind, counter);
        ck_assert_msg(r->type == REDIS_REPLY_ERROR, "%s %s accepted", kind, counter);
        freeReplyObject(r);
}

START_TEST(fence_script_rules_on_a_real_master) {
        itest_names(&nm, "fence");
        char key[160];
        snprintf(key, sizeof(key), "%s:{f}", nm.prefix);
        redisContext *c = master_of(key);
        size_t len;
        FILE *fp = fopen(KRIB_SOURCE_DIR "/connector/fence.lua", "r");
        ck_assert_ptr_nonnull(fp);
        static char lua[32768];
        len = fread(lua, 1, sizeof(lua) - 1, fp);
        fclose(fp);
        lua[len] = '\0';
        redisReply *r = redisCommand(c, "SCRIPT LOAD %s", lua);
        ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
        snprintf(sha, sizeof(sha), "%s", r->str);
        freeReplyObject(r);

        /* No fence yet: counter 0 is accepted (DELETE and UPSERT). */
        freeReplyObject(redisCommand(c, "SET %s cached", key));
        ck_assert_int_eq(fence_int(c, key, "D", "0"), 1);
        r = redisCommand(c, "EXISTS %s", key);
        ck_assert_int_eq(r->integer, 0);
        freeReplyObject(r);
        char fkey[300];
        snprintf(fkey, sizeof(fkey), "krib:f:%s", key);
        freeReplyObject(redisCommand(c, "DEL %s", fkey));
        ck_assert_int_eq(fence_int(c, key, "U", "0"), 1);
        /* Non-canonical counters are refused: "0001" would beat "999". */
        ck_assert_int_eq(fence_int(c, key, "U", "999"), 1);
        fence_err(c, key, "U", "0001");
        fence_err(c, key, "U", "-5");
        fence_err(c, key, "U", "+1000");
        fence_err(c, key, "U", "99999999999999999999");
        fence_err(c, key, "U", "9223372036854775808");
        ck_assert_int_eq(fence_int(c, key, "U", "9223372036854775807"), 1);
        /* A stale DELETE still unlinks the key; the fence keeps its version. */
        freeReplyObject(redisCommand(c, "SET %s refilled", key));
        ck_assert_int_eq(fence_int(c, key, "D", "5"), 0);
        r = redisCommand(c, "EXISTS %s", key);
        ck_assert_int_eq(r->integer, 0);
        freeReplyObject(r);
        r = redisCommand(c, "GET %s", fkey);
        ck_assert_str_eq(r->str, "db=9223372036854775807\n");
        freeReplyObject(r);
        /* A bad entry anywhere refuses the call before anything is written. */
        char k2[200];
        snprintf(k2, sizeof(k2), "%s:{f}:2", nm.prefix);
        char f2[300];
        snprintf(f2, sizeof(f2), "krib:f:%s", k2);
        freeReplyObject(redisCommand(c, "SET %s cached", k2));
        const char *argv[] = {"EVALSHA", sha, "4",  k2,  key, f2, fkey, "0", "D",  "",
                              "0",       "1", "db", "1", "D", "", "0",  "1", "db", "01"};
        r = redisCommandArgv(c, 20, argv, NULL);
        ck_assert_int_eq(r->type, REDIS_REPLY_ERROR);
        freeReplyObject(r);
        r = redisCommand(c, "EXISTS %s", k2);
        ck_assert_int_eq(r->integer, 1);
        freeReplyObject(r);
        freeReplyObject(redisCommand(c, "DEL %s %s %s %s", key, fkey, k2, f2));
        redisFree(c);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("hostile");
        TCase *tc = tcase_create("hostile");
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, valid_events_never_lose_an_invalidation);
        tcase_add_test(tc, hostile_records_are_dead_lettered_without_stalling);
        tcase_add_test(tc, fence_script_rules_on_a_real_master);
        tcase_add_test(tc, write_through_defect_invalidates_then_dead_letters);
        tcase_add_test(tc, tolerance_none_stops_on_a_poison_record);
        suite_add_tcase(s, tc);
        return s;
}
