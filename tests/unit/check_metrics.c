#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "metrics.h"

static krib_metrics_snapshot_t s;

static void setup(void) {
        memset(&s, 0, sizeof(s));
        s.pipeline.consumed = 12;
        s.pipeline.applied = 9;
        s.pipeline.stale = 2;
        s.pipeline.rejected = 1;
        s.pipeline.keys_done = 20;
        s.pipeline.fence_stale = 3;
        s.pipeline.fence_invalidated = 1;
        s.writer.round_trips = 4;
        s.writer.moved = 2;
        s.redis_ok = 1;
        s.joined = 1;
        s.assigned_partitions = 6;
        s.loop_at_ms = 1000000;
}

START_TEST(renders_families_and_values) {
        size_t n = 0;
        char *buf = krib_metrics_render(&s, &n);
        ck_assert_ptr_nonnull(buf);
        ck_assert_uint_eq(strlen(buf), n);
        ck_assert_ptr_nonnull(strstr(buf, "# TYPE krib_events_total counter\n"));
        ck_assert_ptr_nonnull(strstr(buf, "krib_events_total{outcome=\"consumed\"} 12\n"));
        ck_assert_ptr_nonnull(strstr(buf, "krib_events_total{outcome=\"stale\"} 2\n"));
        ck_assert_ptr_nonnull(strstr(buf, "krib_key_operations_total{outcome=\"applied\"} 16\n"));
        ck_assert_ptr_nonnull(strstr(buf, "krib_redis_redirects_total{kind=\"moved\"} 2\n"));
        ck_assert_ptr_nonnull(strstr(buf, "krib_assigned_partitions 6\n"));
        ck_assert_ptr_nonnull(strstr(buf, "krib_redis_up 1\n"));
        ck_assert_ptr_nonnull(
                strstr(buf, "krib_end_to_end_latency_seconds_bucket{le=\"+Inf\"} 0\n"));
        ck_assert_ptr_nonnull(strstr(buf, "krib_build_info{role=\"bridge\",version=\""));
        ck_assert_ptr_nonnull(strstr(buf, "# TYPE process_resident_memory_bytes gauge\n"));
        /* Every line is a comment or "name[{labels}] value". */
        for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
                ck_assert_msg(line[0] == '#' || !strncmp(line, "krib_", 5) ||
                                      !strncmp(line, "process_", 8),
                              "bad line %s", line);
        free(buf);
}
END_TEST

/* The case: 64+ partitions and 20 nodes with long Kubernetes
 * names needed more than the old fixed 64 KiB (HTTP 500) and were cut to
 * 64 and 16 before that. Every series must be there. */
START_TEST(large_clusters_and_assignments_render_whole) {
        static krib_writer_node_t nodes[20];
        static krib_partition_lag_t lag[200];
        memset(nodes, 0, sizeof(nodes));
        for (int i = 0; i < 20; i++)
                snprintf(nodes[i].addr, sizeof(nodes[i].addr),
                         "redis-cluster-%d.redis-cluster-headless.platform-cache-production."
                         "svc.cluster.local:6379",
                         i);
        for (int i = 0; i < 200; i++) {
                snprintf(lag[i].topic, sizeof(lag[i].topic),
                         "dbserver1.inventory.customer_addresses_and_preferences");
                lag[i].partition = i;
                lag[i].lag = i;
                lag[i].committed = 1000 + i;
        }
        static krib_health_master_t masters[20];
        memset(masters, 0, sizeof(masters));
        for (int i = 0; i < 20; i++) {
                memcpy(masters[i].addr, nodes[i].addr, sizeof(masters[i].addr));
                masters[i].up = i != 7;
                masters[i].polled_ms = 1;
                masters[i].slots = 16384 / 20;
                masters[i].used_memory = i == 3 ? 2000 : 1000;
                snprintf(masters[i].policy, sizeof(masters[i].policy), "allkeys-lru");
        }
        nodes[2].err_class[2] = 9; /* redirects */
        static krib_metrics_reject_t rejects[70];
        for (int i = 0; i < 70; i++) {
                snprintf(rejects[i].topic, sizeof(rejects[i].topic), "dbserver1.inventory.t%d", i);
                snprintf(rejects[i].route, sizeof(rejects[i].route), "route-%d", i);
                snprintf(rejects[i].cls, sizeof(rejects[i].cls), "krib.DecodeError");
                rejects[i].dlq = i % 2;
                rejects[i].n = (uint64_t)i + 1;
        }
        s.nodes = nodes;
        s.nnodes = 20;
        s.lag = lag;
        s.nlag = 200;
        s.masters = masters;
        s.nmasters = 20;
        s.rejects = rejects;
        s.nrejects = 70;
        s.dlq_failures = 3;
        size_t n = 0;
        char *buf = krib_metrics_render(&s, &n);
        ck_assert_ptr_nonnull(buf);
        ck_assert_uint_gt(n, 65536);
        ck_assert_ptr_nonnull(strstr(buf, "redis-cluster-19.redis-cluster-headless"));
        ck_assert_ptr_nonnull(
                strstr(buf, "krib_consumer_lag{topic=\"dbserver1.inventory.customer_addresses_"
                            "and_preferences\",partition=\"199\"} 199\n"));
        ck_assert_ptr_nonnull(strstr(buf, "partition=\"199\"} 1199\n"));
        ck_assert_ptr_nonnull(
                strstr(buf, "krib_redis_master_up{node=\"redis-cluster-7.redis-cluster-headless."
                            "platform-cache-production.svc.cluster.local:6379\"} 0\n"));
        ck_assert_ptr_nonnull(
                strstr(buf, "krib_redis_used_memory_bytes{node=\"redis-cluster-19.redis-cluster-"
                            "headless.platform-cache-production.svc.cluster.local:6379\"} 1000\n"));
        /* 19 answering masters, one at 2000 bytes: mean 1052.63, max/mean - 1. */
        ck_assert_ptr_nonnull(strstr(buf, "krib_redis_skew_ratio{resource=\"memory\"} 0.9000\n"));
        ck_assert_ptr_nonnull(strstr(buf, "krib_redis_skew_ratio{resource=\"slots\"} 0.0000\n"));
        ck_assert_ptr_nonnull(strstr(buf, "svc.cluster.local:6379\",class=\"redirect\"} 9\n"));
        ck_assert_ptr_nonnull(
                strstr(buf, "krib_dead_letters_total{topic=\"dbserver1.inventory.t69\",route="
                            "\"route-69\",class=\"krib.DecodeError\",to=\"dlq\"} 70\n"));
        ck_assert_ptr_nonnull(strstr(buf, "to=\"log\"} 69\n"));
        ck_assert_ptr_nonnull(strstr(buf, "krib_dead_letter_produce_failures_total 3\n"));
        free(buf);
}
END_TEST

/* What /proc says about this very process. */
START_TEST(process_figures_are_read) {
        krib_metrics_process_t p;
        krib_metrics_process(&p);
        ck_assert_uint_gt(p.rss_bytes, 0);
        ck_assert_uint_ge(p.virtual_bytes, p.rss_bytes);
        ck_assert_int_ge(p.open_fds, 3); /* stdin, stdout, stderr */
        ck_assert(p.cpu_s >= 0);
}
END_TEST

START_TEST(latency_buckets_are_cumulative) {
        static krib_hist_t h;
        krib_hist_reset(&h);
        krib_hist_add(&h, 0);   /* <= 1 ms */
        krib_hist_add(&h, 7);   /* <= 10 ms */
        krib_hist_add(&h, 400); /* <= 500 ms */
        krib_hist_add(&h, 90000);
        krib_metrics_latency(&s, &h);
        ck_assert_uint_eq(s.latency_count, 4);
        ck_assert_uint_eq(s.latency_le[0], 1);  /* 1 ms */
        ck_assert_uint_eq(s.latency_le[3], 2);  /* 10 ms */
        ck_assert_uint_eq(s.latency_le[8], 3);  /* 500 ms */
        ck_assert_uint_eq(s.latency_le[14], 3); /* 60 s: the 90 s sample is above */
        ck_assert(s.latency_sum_s > 60.0);
}
END_TEST

/* Stage and loop-turn histograms: sub-millisecond and past-a-minute
 * samples land where they belong, and the exposition carries them. */
START_TEST(stage_and_loop_histograms) {
        krib_metrics_snapshot_t t;
        memset(&t, 0, sizeof(t));
        krib_metrics_hist_observe(&t.loop_turn, 0.0004, 1); /* <= 1 ms */
        krib_metrics_hist_observe(&t.loop_turn, 0.003, 2);  /* <= 5 ms */
        krib_metrics_hist_observe(&t.loop_turn, 5.1, 1);    /* <= 10 s */
        krib_metrics_hist_observe(&t.loop_turn, 90, 1);     /* +Inf only */
        ck_assert_uint_eq(t.loop_turn.count, 5);
        ck_assert_uint_eq(t.loop_turn.le[0], 1);
        ck_assert_uint_eq(t.loop_turn.le[1], 1);  /* 2.5 ms */
        ck_assert_uint_eq(t.loop_turn.le[2], 3);  /* 5 ms */
        ck_assert_uint_eq(t.loop_turn.le[11], 3); /* 5 s */
        ck_assert_uint_eq(t.loop_turn.le[12], 4); /* 10 s */
        ck_assert_uint_eq(t.loop_turn.le[14], 4); /* 60 s */
        ck_assert(t.loop_turn.sum_s > 95.1 && t.loop_turn.sum_s < 95.2);
        static krib_hist_t h;
        krib_hist_reset(&h);
        krib_hist_add(&h, 1);
        krib_hist_add(&h, 30);
        krib_metrics_hist_fill(&t.stage[KRIB_STAGE_KAFKA], &h, 1e-3);
        ck_assert_uint_eq(t.stage[KRIB_STAGE_KAFKA].le[0], 1); /* 1 ms */
        ck_assert_uint_eq(t.stage[KRIB_STAGE_KAFKA].le[4], 1); /* 25 ms */
        ck_assert_uint_eq(t.stage[KRIB_STAGE_KAFKA].le[5], 2); /* 50 ms */
        size_t n = 0;
        char *buf = krib_metrics_render(&t, &n);
        ck_assert_ptr_nonnull(buf);
        ck_assert_ptr_nonnull(strstr(buf, "# TYPE krib_latency_stage_seconds histogram\n"));
        ck_assert_ptr_nonnull(
                strstr(buf, "krib_latency_stage_seconds_bucket{stage=\"kafka\",le=\"0.05\"} 2\n"));
        ck_assert_ptr_nonnull(strstr(buf, "krib_latency_stage_seconds_count{stage=\"redis\"} 0\n"));
        ck_assert_ptr_nonnull(strstr(buf, "krib_loop_turn_seconds_bucket{le=\"0.005\"} 3\n"));
        ck_assert_ptr_nonnull(strstr(buf, "krib_loop_turn_seconds_bucket{le=\"+Inf\"} 5\n"));
        free(buf);
}
END_TEST

START_TEST(health_rules) {
        ck_assert(krib_metrics_live(&s, 1000500, 30000));
        ck_assert(krib_metrics_ready(&s, 1000500, 30000));
        ck_assert(!krib_metrics_live(&s, 1000000 + 30001, 30000)); /* loop stuck */
        s.redis_ok = 0;
        ck_assert(krib_metrics_live(&s, 1000500, 30000));
        ck_assert(!krib_metrics_ready(&s, 1000500, 30000));
        s.redis_ok = 1;
        s.joined = 0;
        ck_assert(!krib_metrics_ready(&s, 1000500, 30000));
        s.loop_at_ms = 0; /* never published */
        ck_assert(!krib_metrics_live(&s, 1000500, 30000));
}
END_TEST

/* The endpoints listen on IPv6 too; "::" serves IPv4 clients as well. */
START_TEST(listens_on_ipv6) {
        char err[256];
        int port = 0;
        krib_metrics_t *m = NULL;
        for (int p = 29471; p < 29491 && !m; p++) /* below the ephemeral range */
                if ((m = krib_metrics_new("::", p, err, sizeof(err))))
                        port = p;
        ck_assert_msg(m != NULL, "%s", err);
        char cmd[160], out[64] = "";
        snprintf(cmd, sizeof(cmd),
                 "curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/healthz", port);
        FILE *fp = popen(cmd, "r");
        ck_assert_ptr_nonnull(fp);
        ck_assert_ptr_nonnull(fgets(out, sizeof(out), fp));
        pclose(fp);
        ck_assert_msg(strcmp(out, "000"), "nothing answered on 127.0.0.1 for '::'");
        krib_metrics_destroy(m);
        ck_assert_ptr_null(krib_metrics_new("not-an-ip", port, err, sizeof(err)));
        ck_assert_ptr_nonnull(strstr(err, "IPv4 or IPv6"));
}
END_TEST

/* krib inspect serves krib_build_info too, as role "inspect": a dashboard
 * listing krib's instances filters on role="bridge". */
START_TEST(inspector_page_says_its_role) {
        char err[256];
        int port = 0;
        krib_metrics_t *m = NULL;
        for (int p = 29491; p < 29511 && !m; p++) /* below the ephemeral range */
                if ((m = krib_metrics_new_text("127.0.0.1", p, err, sizeof(err))))
                        port = p;
        ck_assert_msg(m != NULL, "%s", err);
        const char page[] = "# TYPE krib_inspect_checked_total counter\n"
                            "krib_inspect_checked_total 3\n";
        krib_metrics_publish_text(m, page, sizeof(page) - 1, 1);
        char cmd[160], out[8192] = "";
        snprintf(cmd, sizeof(cmd), "curl -s http://127.0.0.1:%d/metrics", port);
        FILE *fp = popen(cmd, "r");
        ck_assert_ptr_nonnull(fp);
        size_t n = fread(out, 1, sizeof(out) - 1, fp);
        out[n] = '\0';
        pclose(fp);
        krib_metrics_destroy(m);
        ck_assert_msg(strstr(out, "krib_inspect_checked_total 3\n"), "%s", out);
        ck_assert_msg(strstr(out, "krib_build_info{role=\"inspect\",version=\""), "%s", out);
}
END_TEST

Suite *make_suite(void) {
        Suite *su = suite_create("metrics");
        TCase *tc = tcase_create("render");
        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_add_test(tc, renders_families_and_values);
        tcase_add_test(tc, large_clusters_and_assignments_render_whole);
        tcase_add_test(tc, process_figures_are_read);
        tcase_add_test(tc, latency_buckets_are_cumulative);
        tcase_add_test(tc, stage_and_loop_histograms);
        tcase_add_test(tc, health_rules);
        tcase_add_test(tc, listens_on_ipv6);
        tcase_add_test(tc, inspector_page_says_its_role);
        suite_add_tcase(su, tc);
        return su;
}
