/* cluster against scripted fake nodes: connecting, AUTH and slot-map
 * refreshes never hold the caller's loop, whatever a node does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "check_main.h"
#include "clock.h"
#include "cluster.h"
#include "conf.h"
#include "fake_redis.h"
#include "slot.h"

static fake_redis_t A, B;
static krib_conf_t conf;
static volatile int auth_stall_ms, auth_refuse;
static volatile int owner_port; /* CLUSTER SLOTS gives every slot to it */
static char reply[256];

static const char *handle(fake_redis_t *f, int argc, char **argv, size_t *lens) {
        (void)f;
        (void)argc;
        (void)lens;
        if (!strcasecmp(argv[0], "AUTH")) {
                if (auth_stall_ms)
                        usleep((useconds_t)auth_stall_ms * 1000);
                return auth_refuse ? "-WRONGPASS invalid username-password pair\r\n" : "+OK\r\n";
        }
        if (!strcasecmp(argv[0], "CLUSTER")) {
                snprintf(reply, sizeof(reply),
                         "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:%d\r\n",
                         owner_port);
                return reply;
        }
        return "+PONG\r\n";
}

static void start(const char *mode) {
        auth_stall_ms = auth_refuse = 0;
        fake_start(&A, handle, NULL);
        fake_start(&B, handle, NULL);
        owner_port = A.port;
        ck_assert_int_eq(krib_conf_init(&conf), 0);
        char nodes[64], m[64], err[256];
        snprintf(nodes, sizeof(nodes), "KRIB_REDIS_NODES=127.0.0.1:%d", A.port);
        snprintf(m, sizeof(m), "KRIB_REDIS_MODE=%s", mode);
        char *env[] = {nodes,
                       m,
                       "KRIB_REDIS_PASSWORD=pw",
                       "KRIB_REDIS_COMMAND_TIMEOUT_MS=3000",
                       "KRIB_REDIS_RETRY_BASE_MS=100",
                       "KRIB_REDIS_RETRY_CAP_MS=400",
                       NULL};
        ck_assert_int_eq(krib_conf_load_env(&conf, env, NULL, 0, err, sizeof(err)), 0);
}

static void stop(void) {
        fake_stop(&A);
        fake_stop(&B);
        krib_conf_destroy(&conf);
}

/* Steps the cluster like a loop would, until master 0 has a connection or
 * limit_ms passes; *longest gets the longest call. Returns ms waited, -1 on
 * timeout. */
static int64_t until_ready(krib_cluster_t *c, int64_t limit_ms, int64_t *longest) {
        int64_t t0 = krib_clock_mono_us();
        *longest = 0;
        while (krib_clock_mono_us() - t0 < limit_ms * 1000) {
                int64_t a = krib_clock_mono_us();
                krib_cluster_step(c, a);
                krib_conn_t *conn = krib_cluster_has_map(c) ? krib_cluster_conn(c, 0, a) : NULL;
                int64_t took = krib_clock_mono_us() - a;
                if (took > *longest)
                        *longest = took;
                if (conn)
                        return (krib_clock_mono_us() - t0) / 1000;
                usleep(5000);
        }
        return -1;
}

/* AUTH answered 1.5 s late, during the refresh and the connect: the loop's
 * calls stay short, the connection comes once AUTH answers. */
START_TEST(slow_auth_never_holds_the_loop) {
        start("cluster");
        auth_stall_ms = 1500;
        char err[256];
        krib_cluster_t *c = krib_cluster_new(&conf, NULL, "test", err, sizeof(err));
        ck_assert_msg(c != NULL, "%s", err);
        int64_t longest;
        int64_t ms = until_ready(c, 10000, &longest);
        ck_assert_int_ge(ms, 2 * 1500 - 200); /* refresh, then the master's connect */
        ck_assert_msg(longest < 50000, "a call took %lld us", (long long)longest);
        ck_assert_int_eq(krib_cluster_owner(c, 0), 0);
        ck_assert_int_eq(fake_seen(&A, "CLUSTER SLOTS"), 1);
        krib_cluster_destroy(c);
        stop();
}
END_TEST

/* A refused AUTH: no map, no connection, and refreshes retried at most once
 * per redis.retry_base_ms, never in a tight loop. */
START_TEST(refused_auth_retries_with_backoff) {
        start("cluster");
        auth_refuse = 1;
        char err[256];
        krib_cluster_t *c = krib_cluster_new(&conf, NULL, "test", err, sizeof(err));
        ck_assert_ptr_nonnull(c);
        int64_t longest;
        ck_assert_int_eq(until_ready(c, 1000, &longest), -1);
        ck_assert(!krib_cluster_has_map(c));
        ck_assert_int_eq(krib_cluster_owner(c, 5), -1);
        int auths = fake_seen(&A, "AUTH");
        ck_assert_msg(auths >= 3 && auths <= 12, "%d AUTH attempts in 1 s", auths);
        ck_assert_int_eq(fake_seen(&A, "CLUSTER SLOTS"), 0);
        auth_refuse = 0;
        ck_assert_int_ge(until_ready(c, 5000, &longest), 0);
        krib_cluster_destroy(c);
        stop();
}
END_TEST

/* A failed connection is reconnected after the backoff; a refresh naming
 * another owner gives a new map. */
START_TEST(fail_reconnects_and_new_map_moves_slots) {
        start("cluster");
        char err[256];
        krib_cluster_t *c = krib_cluster_new(&conf, NULL, "test", err, sizeof(err));
        ck_assert_ptr_nonnull(c);
        int64_t longest;
        ck_assert_int_ge(until_ready(c, 5000, &longest), 0);
        ck_assert_str_eq(krib_cluster_name(c, 0), conf.redis_nodes.v[0]);
        owner_port = B.port;
        int64_t now = krib_clock_mono_us();
        krib_cluster_fail(c, 0, now);
        ck_assert_ptr_null(krib_cluster_conn(c, 0, now)); /* backoff first */
        krib_cluster_change_t ch = KRIB_CLUSTER_SAME;
        for (int i = 0; i < 400 && ch == KRIB_CLUSTER_SAME; i++) {
                usleep(5000);
                ch = krib_cluster_step(c, krib_clock_mono_us());
        }
        ck_assert_int_eq(ch, KRIB_CLUSTER_NEW_MAP);
        char want[32];
        snprintf(want, sizeof(want), "127.0.0.1:%d", B.port);
        ck_assert_str_eq(krib_cluster_name(c, krib_cluster_owner(c, 1234)), want);
        ck_assert_int_ge(until_ready(c, 5000, &longest), 0);
        ck_assert_int_ge(fake_seen(&B, "AUTH"), 1);
        krib_cluster_destroy(c);
        stop();
}
END_TEST

/* Standalone: the map is there at once, every slot on the one server. */
START_TEST(standalone_has_its_map_at_once) {
        start("standalone");
        char err[256];
        krib_cluster_t *c = krib_cluster_new(&conf, NULL, "test", err, sizeof(err));
        ck_assert_ptr_nonnull(c);
        ck_assert(krib_cluster_has_map(c));
        ck_assert_int_eq(krib_cluster_owner(c, KRIB_SLOT_COUNT - 1), 0);
        int64_t longest;
        ck_assert_int_ge(until_ready(c, 5000, &longest), 0);
        ck_assert_int_eq(fake_seen(&A, "CLUSTER SLOTS"), 0);
        krib_cluster_destroy(c);
        stop();
}
END_TEST

/* Destroyed while a connect is stalled in AUTH: it waits for the helper
 * thread (bounded by the timeouts), leaks nothing. */
START_TEST(destroy_joins_a_stalled_connect) {
        start("standalone");
        auth_stall_ms = 300;
        char err[256];
        krib_cluster_t *c = krib_cluster_new(&conf, NULL, "test", err, sizeof(err));
        ck_assert_ptr_nonnull(c);
        ck_assert_ptr_null(krib_cluster_conn(c, 0, krib_clock_mono_us()));
        usleep(50000);
        krib_cluster_destroy(c);
        stop();
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("cluster");
        TCase *tc = tcase_create("cluster");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, slow_auth_never_holds_the_loop);
        tcase_add_test(tc, refused_auth_retries_with_backoff);
        tcase_add_test(tc, fail_reconnects_and_new_map_moves_slots);
        tcase_add_test(tc, standalone_has_its_map_at_once);
        tcase_add_test(tc, destroy_joins_a_stalled_connect);
        suite_add_tcase(s, tc);
        return s;
}
