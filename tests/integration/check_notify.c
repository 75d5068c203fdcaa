/* Telling others about invalidations: krib's fan-out (PUBLISH to a channel
 * and XADD to a capped stream, per route, after the keys are acknowledged),
 * and Redis' own client-side caching (CLIENT TRACKING ... BCAST PREFIX, RESP2
 * redirect mode) seeing krib's UNLINKs, per master. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "check_main.h"
#include "clock.h"
#include "itest.h"
#include "slot.h"
#include "topo.h"

/* Replies wait at most timeout_ms; after a timeout the context is spent. */
static redisContext *connect_ms(const char *host, int port, int timeout_ms) {
        redisContext *c = redisConnect(host, port);
        ck_assert_msg(c && !c->err, "cannot connect to %s:%d", host, port);
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        redisSetTimeout(c, tv);
        return c;
}

static redisContext *connect_to(const char *host, int port) {
        return connect_ms(host, port, 500);
}

/* The masters of the cluster, from the seed. */
static void masters(krib_topo_t *t) {
        krib_addr_t a;
        ck_assert_int_eq(krib_addr_parse(itest_redis_seed(), &a), 0);
        redisContext *s = connect_to(a.host, a.port);
        redisReply *r = redisCommand(s, "CLUSTER SLOTS");
        char err[256];
        krib_topo_init(t);
        ck_assert_int_eq(krib_topo_load_slots(t, r, a.host, err, sizeof(err)), 0);
        freeReplyObject(r);
        redisFree(s);
}

START_TEST(fan_out_publishes_and_streams_after_the_keys_are_gone) {
        const int n = 50;
        itest_names_t nm;
        itest_names(&nm, "fanout");
        char topic[160], conf[300], channel[160], stream[160];
        snprintf(topic, sizeof(topic), "%s-json", nm.topic);
        snprintf(channel, sizeof(channel), "inval.%s.users", nm.topic);
        snprintf(stream, sizeof(stream), "krib:changes:{%s}", nm.topic);
        const char *create[] = {"create", "--topic", topic, "--partitions", "1", NULL};
        itest_loadgen(create);
        snprintf(conf, sizeof(conf), "/tmp/%s.conf", nm.topic);
        itest_write_conf(
                conf, nm.group, NULL,
                "routes = ( { name = \"users\"; topics = [ \"%s\" ];\n"
                "             keys = [ \"%s:{${id}}\" ]; version = \"source.lsn\";\n"
                "             publish = \"%s\"; stream = \"%s\"; stream_maxlen = 1000; } );\n",
                topic, nm.prefix, channel, stream);
        char key[200], value[512];
        for (int i = 0; i < n; i++) {
                snprintf(key, sizeof(key), "%s:{%d}", nm.prefix, i);
                itest_cluster_cmd("SET", key, "cached", NULL, 0);
        }
        /* In a cluster a PUBLISH reaches subscribers on every node. */
        krib_addr_t a;
        krib_addr_parse(itest_redis_seed(), &a);
        redisContext *sub = connect_ms(a.host, a.port, 20000);
        redisReply *r = redisCommand(sub, "SUBSCRIBE %s", channel);
        ck_assert_ptr_nonnull(r);
        freeReplyObject(r);

        char e_metrics[64];
        snprintf(e_metrics, sizeof(e_metrics), "KRIB_METRICS_PORT=%d", itest_metrics_port());
        const char *env[] = {e_metrics, "KRIB_REDIS_FENCE=all", NULL};
        pid_t pid = itest_krib_start_conf(conf, env, nm.log);
        for (int i = 0; i < n; i++) {
                int l = snprintf(value, sizeof(value),
                                 "{\"op\":\"u\",\"after\":{\"id\":%d},\"source\":{\"name\":\"pg\","
                                 "\"lsn\":%d}}",
                                 i, 1000 + i);
                char k[32];
                int kl = snprintf(k, sizeof(k), "{\"id\":%d}", i);
                itest_produce_raw(topic, 0, k, (size_t)kl, value, (size_t)l);
        }
        int got = 0, gone_first = 0;
        int64_t end = krib_clock_mono_us() + 30000000;
        while (got < n && krib_clock_mono_us() < end) {
                void *reply = NULL;
                if (redisGetReply(sub, &reply) != REDIS_OK)
                        ck_abort_msg("no notification within 20 s after %d of %d", got, n);
                r = reply;
                ck_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 3);
                const char *payload = r->element[2]->str;
                int id = -1, lsn = -1;
                const char *pk = strstr(payload, "\"keys\":[\"");
                ck_assert_ptr_nonnull(strstr(payload, "\"op\":\"u\""));
                ck_assert_ptr_nonnull(pk);
                const char *vp = strstr(payload, "\"version\":{\"pg\":");
                ck_assert_ptr_nonnull(vp);
                lsn = atoi(vp + strlen("\"version\":{\"pg\":"));
                id = lsn - 1000;
                snprintf(key, sizeof(key), "%s:{%d}", nm.prefix, id);
                ck_assert_ptr_nonnull(strstr(payload, key));
                /* The notification comes after Redis acknowledged the UNLINK. */
                gone_first += !itest_cluster_cmd("EXISTS", key, NULL, NULL, 0);
                freeReplyObject(r);
                got++;
        }
        ck_assert_int_eq(got, n);
        ck_assert_int_eq(gone_first, n);
        redisFree(sub);
        ck_assert_int_eq(itest_wait_caught_up(nm.group, topic, 1, 30), 0);
        redisContext *x = NULL;
        krib_topo_t t;
        masters(&t);
        int m = t.slot_owner[krib_slot_of(stream, strlen(stream))];
        x = connect_to(t.masters[m].host, t.masters[m].port);
        r = redisCommand(x, "XLEN %s", stream);
        ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
        ck_assert_int_eq(r->integer, n);
        freeReplyObject(r);
        r = redisCommand(x, "XRANGE %s - + COUNT 1", stream);
        ck_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 1);
        redisReply *fields = r->element[0]->element[1];
        ck_assert_str_eq(fields->element[0]->str, "event");
        ck_assert_ptr_nonnull(strstr(fields->element[1]->str, "\"version\":{\"pg\":1000}"));
        freeReplyObject(r);
        redisFree(x);
        krib_topo_destroy(&t);
        char body[300];
        snprintf(body, sizeof(body), "%s.metrics", nm.log);
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/metrics", body), 200);
        const char *fan[] = {"krib_fanout_total 100", NULL};
        ck_assert_int_eq(itest_log_count(body, fan), 1);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        unlink(body);
        unlink(conf);
        unlink(nm.log);
}
END_TEST

START_TEST(client_tracking_sees_krib_unlinks_on_every_master) {
        const int n = 60;
        itest_names_t nm;
        itest_names(&nm, "track");
        krib_topo_t t;
        masters(&t);
        /* Per master: a connection listening on __redis__:invalidate, and a
         * tracking connection (BCAST on the prefix) redirecting to it. */
        redisContext *listen[16], *track[16];
        ck_assert_uint_le(t.master_count, 16);
        for (size_t m = 0; m < t.master_count; m++) {
                listen[m] = connect_to(t.masters[m].host, t.masters[m].port);
                redisReply *r = redisCommand(listen[m], "CLIENT ID");
                long long id = r->integer;
                freeReplyObject(r);
                r = redisCommand(listen[m], "SUBSCRIBE __redis__:invalidate");
                freeReplyObject(r);
                track[m] = connect_to(t.masters[m].host, t.masters[m].port);
                r = redisCommand(track[m], "CLIENT TRACKING on REDIRECT %lld BCAST PREFIX %s:", id,
                                 nm.prefix);
                ck_assert_msg(r && r->type == REDIS_REPLY_STATUS, "CLIENT TRACKING: %s",
                              r && r->type == REDIS_REPLY_ERROR ? r->str : "?");
                freeReplyObject(r);
        }
        itest_create_and_fill(&nm, itest_redis_seed(), 3, n, 1, 0);
        /* Filling the keys was a change too: drain those notifications. */
        int expect[16] = {0}, seen[16] = {0};
        for (int i = 0; i < n; i++) {
                char key[200];
                snprintf(key, sizeof(key), "%s:{%d}:k0", nm.prefix, i);
                expect[t.slot_owner[krib_slot_of(key, strlen(key))]]++;
        }
        for (size_t m = 0; m < t.master_count; m++) {
                void *reply;
                while (redisGetReply(listen[m], &reply) == REDIS_OK)
                        freeReplyObject(reply);
                redisFree(listen[m]); /* timed out: reconnect clean */
                listen[m] = connect_to(t.masters[m].host, t.masters[m].port);
                redisReply *r = redisCommand(listen[m], "CLIENT ID");
                long long id = r->integer;
                freeReplyObject(r);
                r = redisCommand(listen[m], "SUBSCRIBE __redis__:invalidate");
                freeReplyObject(r);
                r = redisCommand(track[m], "CLIENT TRACKING off");
                freeReplyObject(r);
                r = redisCommand(track[m], "CLIENT TRACKING on REDIRECT %lld BCAST PREFIX %s:", id,
                                 nm.prefix);
                ck_assert(r && r->type == REDIS_REPLY_STATUS);
                freeReplyObject(r);
        }
        const char *env[] = {nm.env_topic, nm.env_group, nm.env_brokers, nm.env_nodes, NULL};
        pid_t pid = itest_krib_start(env, nm.log);
        ck_assert_int_eq(itest_wait_caught_up(nm.group, nm.topic, 3, 60), 0);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        for (size_t m = 0; m < t.master_count; m++) {
                void *reply;
                while (redisGetReply(listen[m], &reply) == REDIS_OK) {
                        redisReply *r = reply;
                        /* ["message", "__redis__:invalidate", [key, ...]] */
                        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                            r->element[2]->type == REDIS_REPLY_ARRAY)
                                for (size_t k = 0; k < r->element[2]->elements; k++) {
                                        const char *key = r->element[2]->element[k]->str;
                                        ck_assert_int_eq(strncmp(key, nm.prefix, strlen(nm.prefix)),
                                                         0);
                                        ck_assert_int_eq(
                                                t.slot_owner[krib_slot_of(key, strlen(key))],
                                                (int)m);
                                        seen[m]++;
                                }
                        freeReplyObject(r);
                }
                fprintf(stderr, "master %s:%d: %d invalidation messages for %d keys\n",
                        t.masters[m].host, t.masters[m].port, seen[m], expect[m]);
                ck_assert_int_eq(seen[m], expect[m]);
                redisFree(listen[m]);
                redisFree(track[m]);
        }
        krib_topo_destroy(&t);
        unlink(nm.log);
}
END_TEST

/* Write-through as a hash, through the fence script (HSET + PEXPIRE). */
START_TEST(write_through_as_a_hash) {
        itest_names_t nm;
        itest_names(&nm, "hash");
        char topic[160], conf[300];
        snprintf(topic, sizeof(topic), "%s-json", nm.topic);
        const char *create[] = {"create", "--topic", topic, "--partitions", "1", NULL};
        itest_loadgen(create);
        snprintf(conf, sizeof(conf), "/tmp/%s.conf", nm.topic);
        itest_write_conf(conf, nm.group, NULL,
                         "routes = ( { topics = [ \"%s\" ]; keys = [ \"%s:{${id}}\" ];\n"
                         "             action = \"write-through\"; write_as = \"hash\";\n"
                         "             columns = [ \"name\", \"visits\" ]; ttl_ms = 600000; } );\n",
                         topic, nm.prefix);

        const char *rows[] = {
                "{\"op\":\"c\",\"after\":{\"id\":1,\"name\":\"Ann\",\"visits\":1},\"source\":{"
                "\"name\":\"pg\",\"lsn\":10}}",
                "{\"op\":\"u\",\"after\":{\"id\":1,\"name\":\"Ann B\",\"visits\":2},"
                "\"source\":{\"name\":\"pg\",\"lsn\":11}}",
                /* an older version arriving late must not win */
                "{\"op\":\"u\",\"after\":{\"id\":1,\"name\":\"stale\",\"visits\":0},"
                "\"source\":{\"name\":\"pg\",\"lsn\":9}}",
        };
        for (int i = 0; i < 3; i++)
                itest_produce_raw(topic, 0, "{\"id\":1}", 8, rows[i], strlen(rows[i]));
        const char *env[] = {"KRIB_REDIS_FENCE=all", NULL};
        pid_t pid = itest_krib_start_conf(conf, env, nm.log);
        ck_assert_int_eq(itest_wait_caught_up(nm.group, topic, 1, 60), 0);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        char key[200], out[256];
        snprintf(key, sizeof(key), "%s:{1}", nm.prefix);
        ck_assert(itest_cluster_cmd("HGET", key, "name", out, sizeof(out)));
        ck_assert_str_eq(out, "Ann B");
        ck_assert(itest_cluster_cmd("HGET", key, "visits", out, sizeof(out)));
        ck_assert_str_eq(out, "2");
        ck_assert(itest_cluster_cmd("PTTL", key, NULL, NULL, 0)); /* TTL set */
        unlink(conf);
        unlink(nm.log);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("notify");
        TCase *tc = tcase_create("notify");
        tcase_set_timeout(tc, 180);
        tcase_add_test(tc, fan_out_publishes_and_streams_after_the_keys_are_gone);
        tcase_add_test(tc, client_tracking_sees_krib_unlinks_on_every_master);
        tcase_add_test(tc, write_through_as_a_hash);
        suite_add_tcase(s, tc);
        return s;
}
