/* writer against scripted fake nodes: what each Redis reply does to a key. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "clock.h"
#include "conf.h"
#include "conn.h"
#include "fake_redis.h"
#include "slot.h"
#include "writer.h"

enum {
        S_OK,
        S_WRONGTYPE,
        S_TRYAGAIN_ONCE,
        S_MOVED,
        S_ASK,
        S_DROP_ONCE,
        S_TRYAGAIN_ALWAYS,
        S_OOM,
        S_DROP_ALWAYS,
        S_SCRIPT_LOADING, /* SCRIPT LOAD answers -LOADING a few times */
        S_BAD_KEY,        /* EVALSHA fails while its keys include u:{1}:bad */
        S_PROBE_MIX       /* UNLINK answers TRYAGAIN for a while, EVALSHA OOM while full */
};
static int script_loads, loading_left, waits_seen, waits_short;
static int64_t tryagain_until_us;

static int scenario;
static int unlinks_seen;
static fake_redis_t A, B;
static int slots_owner; /* port CLUSTER SLOTS names as owner of every slot */
static char reply[4096];
static volatile int full; /* S_OOM: fenced writes refused while set */
static int evals_seen, unlinks_while_full, infos_seen;

static const char *handle(fake_redis_t *f, int argc, char **argv, size_t *lens) {
        (void)lens;
        int is_b = f == &B;
        if (!strcasecmp(argv[0], "SCRIPT")) {
                script_loads++;
                if (scenario == S_SCRIPT_LOADING && loading_left > 0) {
                        loading_left--;
                        return "-LOADING Redis is loading the dataset in memory\r\n";
                }
                return "$40\r\n0123456789012345678901234567890123456789\r\n";
        }
        if (!strcasecmp(argv[0], "CLUSTER")) {
                snprintf(reply, sizeof(reply),
                         "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:%d\r\n",
                         slots_owner);
                return reply;
        }
        if (!strcasecmp(argv[0], "ASKING"))
                return "+OK\r\n";
        if (!strcasecmp(argv[0], "WAIT")) {
                waits_seen++;
                return waits_seen <= waits_short ? ":0\r\n" : ":1\r\n";
        }
        if (scenario == S_DROP_ALWAYS)
                return NULL;
        if (!strcasecmp(argv[0], "PING"))
                return "+PONG\r\n";
        if (!strcasecmp(argv[0], "INFO")) {
                infos_seen++;
                const char *body = full ? "# Memory\r\nused_memory:2000000\r\nmaxmemory:1048576\r\n"
                                          "maxmemory_policy:noeviction\r\n"
                                        : "# Memory\r\nused_memory:900000\r\nmaxmemory:0\r\n"
                                          "maxmemory_policy:noeviction\r\n";
                snprintf(reply, sizeof(reply), "$%zu\r\n%s\r\n", strlen(body), body);
                return reply;
        }
        if (!strcasecmp(argv[0], "EVALSHA")) {
                evals_seen++;
                if (scenario == S_BAD_KEY)
                        for (int i = 0; i < atoi(argv[2]) / 2; i++)
                                if (!strcmp(argv[3 + i], "u:{1}:bad"))
                                        return "-ERR user_script:120: Script attempted to access "
                                               "a non local key\r\n";
                if ((scenario == S_OOM || scenario == S_PROBE_MIX) && full)
                        return "-OOM command not allowed when used memory > 'maxmemory'. script: "
                               "0123, on @user_script:88.\r\n";
                /* Fenced ops answer 1, 0, 2, 1, 0, 2, ... per key. */
                int n = atoi(argv[2]) / 2;
                int w = snprintf(reply, sizeof(reply), "*%d\r\n", n);
                for (int i = 0; i < n; i++)
                        w += snprintf(reply + w, sizeof(reply) - (size_t)w, ":%d\r\n",
                                      (int[]){1, 0, 2}[i % 3]);
                return reply;
        }
        if (strcasecmp(argv[0], "UNLINK"))
                return "-ERR unexpected command\r\n";
        unlinks_seen++;
        unlinks_while_full += full;
        unsigned slot = krib_slot_of(argv[1], strlen(argv[1]));
        switch (scenario) {
        case S_WRONGTYPE:
                return "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
        case S_TRYAGAIN_ONCE:
                if (unlinks_seen == 1)
                        return "-TRYAGAIN Multiple keys request during rehashing of slot\r\n";
                break;
        case S_TRYAGAIN_ALWAYS:
                return "-TRYAGAIN Multiple keys request during rehashing of slot\r\n";
        case S_MOVED:
        case S_ASK:
                if (!is_b) {
                        if (scenario == S_MOVED)
                                slots_owner = B.port; /* the refresh will say so */
                        snprintf(reply, sizeof(reply), "-%s %u 127.0.0.1:%d\r\n",
                                 scenario == S_MOVED ? "MOVED" : "ASK", slot, B.port);
                        return reply;
                }
                break;
        case S_DROP_ONCE:
                if (unlinks_seen == 1)
                        return NULL;
                break;
        case S_PROBE_MIX:
                if (krib_clock_mono_us() < tryagain_until_us)
                        return "-TRYAGAIN Multiple keys request during rehashing of slot\r\n";
                break;
        }
        snprintf(reply, sizeof(reply), ":%d\r\n", argc - 1);
        return reply;
}

static krib_conf_t conf;
static krib_writer_t *w;

static char *extra_env;
static char *fence_env; /* NULL: redis.fence=all, the script's own tests */

static void start(const char *mode) {
        scenario = S_OK;
        unlinks_seen = evals_seen = unlinks_while_full = infos_seen = 0;
        script_loads = loading_left = waits_seen = waits_short = 0;
        full = 0;
        fake_start(&A, handle, NULL);
        fake_start(&B, handle, NULL);
        slots_owner = A.port;
        ck_assert_int_eq(krib_conf_init(&conf), 0);
        char nodes[64], m[64], err[256];
        snprintf(nodes, sizeof(nodes), "KRIB_REDIS_NODES=127.0.0.1:%d", A.port);
        snprintf(m, sizeof(m), "KRIB_REDIS_MODE=%s", mode);
        char *env[] = {nodes,
                       m,
                       fence_env ? fence_env : "KRIB_REDIS_FENCE=all",
                       "KRIB_REDIS_COMMAND_TIMEOUT_MS=2000",
                       "KRIB_REDIS_BREAKER_OPEN_MS=100",
                       "KRIB_REDIS_BREAKER_OPEN_MAX_MS=400",
                       extra_env,
                       extra_env ? "KRIB_REDIS_WAIT_TIMEOUT_MS=100" : NULL,
                       NULL};
        ck_assert_int_eq(krib_conf_load_env(&conf, env, NULL, 0, err, sizeof(err)), 0);
        w = krib_writer_new(&conf, err, sizeof(err));
        ck_assert_msg(w != NULL, "%s", err);
}

static void start_standalone(void) {
        extra_env = NULL;
        start("standalone");
}

static void start_small_commands(void) {
        static char bytes_env[] = "KRIB_REDIS_MAX_COMMAND_BYTES=1024";
        extra_env = bytes_env;
        start("standalone");
        extra_env = NULL;
}

static void start_waiting(void) {
        static char wait_env[] = "KRIB_REDIS_WAIT_REPLICAS=1";
        extra_env = wait_env;
        start("standalone");
        extra_env = NULL;
}

static void start_cluster(void) {
        extra_env = NULL;
        start("cluster");
}

static void stop(void) {
        krib_writer_destroy(w);
        fake_stop(&A);
        fake_stop(&B);
        krib_conf_destroy(&conf);
}

static krib_wop_t K(const char *key) {
        krib_wop_t op = {key, strlen(key), KRIB_WOP_UNLINK, NULL};
        return op;
}

START_TEST(acknowledged_keys_are_ok) {
        krib_wop_t ops[] = {K("a"), K("b"), K("user:{1}:x"), K("user:{1}:y")};
        uint8_t st[4];
        ck_assert_int_eq(krib_writer_apply(w, ops, 4, st), 0);
        for (int i = 0; i < 4; i++)
                ck_assert_int_eq(st[i], KRIB_WOP_OK);
        /* One slot, one command: the two tagged keys travel together. */
        ck_assert_int_eq(fake_seen(&A, "UNLINK user:{1}:x user:{1}:y"), 1);
        ck_assert_uint_eq(krib_writer_stats(w)->keys, 4);
        ck_assert_uint_eq(krib_writer_stats(w)->round_trips, 1);
}
END_TEST

START_TEST(refused_key_fails_for_good) {
        scenario = S_WRONGTYPE;
        krib_wop_t ops[] = {K("a")};
        uint8_t st[1];
        ck_assert_int_eq(krib_writer_apply(w, ops, 1, st), 0);
        ck_assert_int_eq(st[0], KRIB_WOP_FAILED);
        ck_assert_uint_eq(krib_writer_stats(w)->errors, 1);
        ck_assert_int_eq(unlinks_seen, 1); /* not retried */
}
END_TEST

START_TEST(tryagain_is_retried) {
        scenario = S_TRYAGAIN_ONCE;
        krib_wop_t ops[] = {K("a")};
        uint8_t st[1];
        ck_assert_int_eq(krib_writer_apply(w, ops, 1, st), 0);
        ck_assert_int_eq(st[0], KRIB_WOP_OK);
        ck_assert_uint_eq(krib_writer_stats(w)->retries, 1);
        ck_assert_int_eq(unlinks_seen, 2);
}
END_TEST

START_TEST(dropped_connection_is_retried) {
        scenario = S_DROP_ONCE;
        krib_wop_t ops[] = {K("a")};
        uint8_t st[1];
        ck_assert_int_eq(krib_writer_apply(w, ops, 1, st), 0);
        ck_assert_int_eq(st[0], KRIB_WOP_OK);
        ck_assert_int_eq(unlinks_seen, 2);
        ck_assert_uint_ge(krib_writer_stats(w)->reconnects, 1);
}
END_TEST

START_TEST(fenced_replies_map_per_key) {
        krib_vv_entry_t v = {{"db", 2}, 7};
        krib_event_t ev;
        memset(&ev, 0, sizeof(ev));
        ev.version = &v;
        ev.version_count = 1;
        krib_wop_t ops[] = {{"u:{1}:a", 7, KRIB_WOP_DELETE, &ev},
                            {"u:{1}:b", 7, KRIB_WOP_DELETE, &ev},
                            {"u:{1}:c", 7, KRIB_WOP_DELETE, &ev}};
        uint8_t st[3];
        ck_assert_int_eq(krib_writer_apply(w, ops, 3, st), 0);
        ck_assert_int_eq(st[0], KRIB_WOP_OK);
        ck_assert_int_eq(st[1], KRIB_WOP_STALE);
        ck_assert_int_eq(st[2], KRIB_WOP_INVALIDATED);
        /* Keys, then their fences, in one call; the vector as pairs. */
        ck_assert_int_eq(fake_seen(&A, "EVALSHA 0123456789012345678901234567890123456789 6 "
                                       "u:{1}:a u:{1}:b u:{1}:c krib:f:u:{1}:a"),
                         1);
        ck_assert_int_eq(fake_seen(&A, "D  0 1 db 7"), 3);
}
END_TEST

START_TEST(shutdown_window_ends_retries) {
        scenario = S_TRYAGAIN_ALWAYS;
        static volatile sig_atomic_t stop_flag = 1;
        krib_writer_set_stop(w, &stop_flag, 300);
        krib_wop_t ops[] = {K("a")};
        uint8_t st[1];
        int64_t t0 = krib_clock_mono_us();
        ck_assert_int_eq(krib_writer_apply(w, ops, 1, st), -1);
        ck_assert_int_eq(st[0], KRIB_WOP_PENDING);
        ck_assert_int_lt(krib_clock_mono_us() - t0, 2000000);
}
END_TEST

START_TEST(moved_follows_and_refreshes) {
        scenario = S_MOVED;
        krib_wop_t ops[] = {K("a"), K("b")};
        uint8_t st[2];
        ck_assert_int_eq(krib_writer_apply(w, ops, 2, st), 0);
        ck_assert_int_eq(st[0], KRIB_WOP_OK);
        ck_assert_int_eq(st[1], KRIB_WOP_OK);
        ck_assert_uint_ge(krib_writer_stats(w)->moved, 1);
        ck_assert_int_ge(fake_seen(&B, "UNLINK"), 1);
        /* The new map came from CLUSTER SLOTS again: later keys go to B first. */
        ck_assert_int_ge(fake_seen(&A, "CLUSTER SLOTS"), 2);
        int before = fake_seen(&A, "UNLINK");
        krib_wop_t more[] = {K("c")};
        ck_assert_int_eq(krib_writer_apply(w, more, 1, st), 0);
        ck_assert_int_eq(fake_seen(&A, "UNLINK"), before);
}
END_TEST

START_TEST(ask_goes_through_asking_without_remapping) {
        scenario = S_ASK;
        krib_wop_t ops[] = {K("a")};
        uint8_t st[1];
        ck_assert_int_eq(krib_writer_apply(w, ops, 1, st), 0);
        ck_assert_int_eq(st[0], KRIB_WOP_OK);
        ck_assert_uint_eq(krib_writer_stats(w)->ask, 1);
        ck_assert_int_eq(fake_seen(&B, "ASKING\nUNLINK a"), 1);
        ck_assert_uint_eq(krib_writer_stats(w)->moved, 0);
        ck_assert_int_eq(fake_seen(&A, "CLUSTER SLOTS"), 1); /* no refresh for ASK */
}
END_TEST

/* Tick callback: "memory is raised" once the writer has waited long enough. */
static int64_t free_at_us;
static int ticks;
static void free_memory_later(void *opaque) {
        (void)opaque;
        ticks++;
        if (krib_clock_mono_us() >= free_at_us)
                full = 0;
}

static void raise_stop_later(void *opaque) {
        if (krib_clock_mono_us() >= free_at_us)
                *(volatile sig_atomic_t *)opaque = 1;
}

START_TEST(oom_opens_the_breaker_without_a_busy_loop) {
        scenario = S_OOM;
        full = 1;
        free_at_us = krib_clock_mono_us() + 1500000;
        krib_writer_set_tick(w, free_memory_later, NULL);
        krib_vv_entry_t v = {{"db", 2}, 7};
        krib_event_t ev;
        memset(&ev, 0, sizeof(ev));
        ev.version = &v;
        ev.version_count = 1;
        ev.value.s = "v7";
        ev.value.len = 2;
        krib_wop_t ops[] = {{"u:{1}:a", 7, KRIB_WOP_UPSERT, &ev}, K("gone")};
        uint8_t st[2];
        ck_assert_int_eq(krib_writer_apply(w, ops, 2, st), 0);
        ck_assert_int_eq(st[0], KRIB_WOP_OK);
        ck_assert_int_eq(st[1], KRIB_WOP_OK);
        /* The UNLINK went through while Redis was full: it frees memory. */
        ck_assert_int_eq(unlinks_while_full, 1);
        /* 1.5 s of OOM with probes 100..400 ms apart: a handful of scripts
         * and probes, not a retry loop. */
        ck_assert_int_le(evals_seen, 8);
        ck_assert_int_ge(infos_seen, 2);
        ck_assert_int_le(infos_seen, 12);
        ck_assert_int_gt(ticks, 0); /* the consumer was served meanwhile */
        krib_writer_node_t *n = NULL;
        size_t ncap = 0;
        ck_assert_int_eq(krib_writer_nodes(w, &n, &ncap), 1);
        ck_assert_int_eq(n[0].breaker, 0);
        ck_assert_uint_eq(n[0].breaker_entered[1], 1); /* opened once */
        ck_assert_uint_ge(n[0].breaker_entered[2], 1); /* half-open after a good probe */
        ck_assert_uint_eq(n[0].breaker_entered[0], 1); /* closed by the good reply */
        free(n);
}
END_TEST

START_TEST(dead_node_opens_the_breaker) {
        scenario = S_DROP_ALWAYS;
        static volatile sig_atomic_t stop_flag;
        stop_flag = 0;
        krib_writer_set_stop(w, &stop_flag, 0);
        free_at_us = krib_clock_mono_us() + 1200000;
        krib_wop_t ops[] = {K("a")};
        uint8_t st[1];
        /* Stop from a tick once the window is over. */
        krib_writer_set_tick(w, raise_stop_later, (void *)&stop_flag);
        ck_assert_int_eq(krib_writer_apply(w, ops, 1, st), -1);
        ck_assert_int_eq(st[0], KRIB_WOP_PENDING);
        krib_writer_node_t *n = NULL;
        size_t ncap = 0;
        ck_assert_int_eq(krib_writer_nodes(w, &n, &ncap), 1);
        ck_assert_int_eq(n[0].breaker, 1);
        ck_assert_uint_eq(n[0].breaker_entered[1], 1);
        /* Probes 100..400 ms apart over 1.2 s, each one connection. */
        ck_assert_uint_le(n[0].conn_failures, 12);
        ck_assert_int_eq(krib_writer_stats(w)->healthy, 0);
        free(n);
}
END_TEST

static krib_event_t versioned(krib_vv_entry_t *v) {
        krib_event_t ev;
        memset(&ev, 0, sizeof(ev));
        ev.version = v;
        ev.version_count = 1;
        return ev;
}

/* A restarting master answers -LOADING to SCRIPT LOAD: the fenced work
 * waits and is retried, never finished as failed (issue 10, item 1). */
START_TEST(script_loading_is_retried) {
        scenario = S_SCRIPT_LOADING;
        loading_left = 4;
        krib_vv_entry_t v = {{"db", 2}, 7};
        krib_event_t ev = versioned(&v);
        krib_wop_t ops[] = {{"u:{1}:a", 7, KRIB_WOP_DELETE, &ev}, K("plain")};
        uint8_t st[2];
        ck_assert_int_eq(krib_writer_apply(w, ops, 2, st), 0);
        ck_assert_int_eq(st[0], KRIB_WOP_OK);
        ck_assert_int_eq(st[1], KRIB_WOP_OK);
        ck_assert_int_eq(script_loads, 5);
        ck_assert_int_eq(evals_seen, 1);
        ck_assert_uint_eq(krib_writer_stats(w)->errors, 0);
        ck_assert_uint_ge(krib_writer_stats(w)->retries, 1);
}
END_TEST

/* A script error fails one key, not its slot-mates (issue 10, item 2). */
START_TEST(script_error_fails_only_the_offender) {
        scenario = S_BAD_KEY;
        krib_vv_entry_t v = {{"db", 2}, 7};
        krib_event_t ev = versioned(&v);
        krib_wop_t ops[] = {{"u:{1}:a", 7, KRIB_WOP_DELETE, &ev},
                            {"u:{1}:bad", 9, KRIB_WOP_DELETE, &ev},
                            {"u:{1}:c", 7, KRIB_WOP_DELETE, &ev},
                            {"u:{1}:d", 7, KRIB_WOP_DELETE, &ev}};
        uint8_t st[4];
        ck_assert_int_eq(krib_writer_apply(w, ops, 4, st), 0);
        ck_assert_int_eq(st[1], KRIB_WOP_FAILED);
        /* Replies of the one-key calls: 1 each (the fake's first answer). */
        ck_assert_int_eq(st[0], KRIB_WOP_OK);
        ck_assert_int_eq(st[2], KRIB_WOP_OK);
        ck_assert_int_eq(st[3], KRIB_WOP_OK);
        ck_assert_uint_eq(krib_writer_stats(w)->splits, 1);
        ck_assert_uint_eq(krib_writer_stats(w)->errors, 1);
        ck_assert_int_eq(evals_seen, 5); /* the chunk, then one per key */
}
END_TEST

/* Plain UNLINKs pass an OOM breaker, so they share rounds with the fenced
 * work the breaker holds back and with its probes: every reply still lands
 * on its own command (issue 10, item 3; the race itself is closed in conn,
 * see sync_command_refused_while_replies_pending). */
START_TEST(probes_never_shift_replies) {
        scenario = S_PROBE_MIX;
        full = 1;
        int64_t t0 = krib_clock_mono_us();
        tryagain_until_us = t0 + 700000;
        free_at_us = t0 + 900000;
        krib_writer_set_tick(w, free_memory_later, NULL);
        krib_vv_entry_t v = {{"db", 2}, 7};
        krib_event_t ev = versioned(&v);
        ev.value.s = "v7";
        ev.value.len = 2;
        /* The plain key's slot sorts before the fenced key's. */
        ck_assert_uint_lt(krib_slot_of("b", 1), krib_slot_of("u:{1}:y", 7));
        krib_wop_t ops[] = {K("b"), {"u:{1}:y", 7, KRIB_WOP_UPSERT, &ev}};
        uint8_t st[2];
        ck_assert_int_eq(krib_writer_apply(w, ops, 2, st), 0);
        ck_assert_int_eq(st[0], KRIB_WOP_OK);
        ck_assert_int_eq(st[1], KRIB_WOP_OK);
        ck_assert_uint_eq(krib_writer_stats(w)->errors, 0);
        krib_writer_node_t *n = NULL;
        size_t ncap = 0;
        ck_assert_int_eq(krib_writer_nodes(w, &n, &ncap), 1);
        ck_assert_uint_eq(n[0].conn_failures, 0);
        ck_assert_int_ge(fake_seen(&A, "PING"), 1);
        free(n);
}
END_TEST

/* The structural half of item 3: a synchronous command (a probe, SCRIPT
 * LOAD) on a connection with pipelined commands in flight would read their
 * reply as its own. conn refuses it without touching the connection. */
START_TEST(sync_command_refused_while_replies_pending) {
        char err[200];
        krib_conn_t *c = krib_conn_connect("127.0.0.1", A.port, 1000, 2000, NULL, err, sizeof(err));
        ck_assert_msg(c != NULL, "%s", err);
        const char *argv[] = {"UNLINK", "x", "y"};
        size_t lens[] = {6, 1, 1};
        ck_assert_int_eq(krib_conn_append(c, 3, argv, lens), 0);
        ck_assert_uint_eq(krib_conn_inflight(c), 1);
        ck_assert_ptr_null(krib_conn_command(c, "PING"));
        ck_assert_ptr_nonnull(strstr(krib_conn_errstr(c), "pending"));
        ck_assert_int_eq(krib_conn_flush(c), 0);
        redisReply *r = NULL;
        ck_assert_int_eq(krib_conn_read(c, &r), 0);
        ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
        ck_assert_int_eq(r->integer, 2);
        freeReplyObject(r);
        ck_assert_uint_eq(krib_conn_inflight(c), 0);
        r = krib_conn_command(c, "PING");
        ck_assert_ptr_nonnull(r);
        ck_assert_str_eq(r->str, "PONG");
        freeReplyObject(r);
        ck_assert_int_eq(fake_seen(&A, "PING"), 1); /* the refused one never left */
        krib_conn_free(c);
}
END_TEST

/* redis.wait_replicas: the master's OK is not enough; until WAIT sees the
 * replicas, the keys are resent and stay unacknowledged (issue 10, 16). */
START_TEST(wait_shortfall_resends_until_replicated) {
        waits_short = 2;
        krib_vv_entry_t v = {{"db", 2}, 7};
        krib_event_t ev = versioned(&v);
        krib_wop_t ops[] = {K("a"), {"u:{1}:a", 7, KRIB_WOP_DELETE, &ev}};
        uint8_t st[2];
        ck_assert_int_eq(krib_writer_apply(w, ops, 2, st), 0);
        ck_assert_int_eq(st[0], KRIB_WOP_OK);
        ck_assert_int_ne(st[1], KRIB_WOP_FAILED);
        ck_assert_int_ne(st[1], KRIB_WOP_PENDING);
        ck_assert_int_eq(waits_seen, 3);
        ck_assert_int_eq(unlinks_seen, 3); /* sent again after each shortfall */
        ck_assert_int_eq(fake_seen(&A, "WAIT 1 100"), 3);
        /* The WAIT closes each round, after its last command ("a" has the
         * higher slot, so its UNLINK comes last). */
        ck_assert_int_lt(krib_slot_of("u:{1}:a", 7), krib_slot_of("a", 1));
        ck_assert_int_eq(fake_seen(&A, "UNLINK a\nWAIT 1 100"), 3);
        ck_assert_uint_eq(krib_writer_stats(w)->wait_short, 2);
        ck_assert_uint_eq(krib_writer_stats(w)->keys, 2);
}
END_TEST

START_TEST(wait_never_satisfied_keeps_keys_pending) {
        waits_short = 1000000;
        static volatile sig_atomic_t stop_flag = 1;
        krib_writer_set_stop(w, &stop_flag, 300);
        krib_wop_t ops[] = {K("a")};
        uint8_t st[1];
        ck_assert_int_eq(krib_writer_apply(w, ops, 1, st), -1);
        ck_assert_int_eq(st[0], KRIB_WOP_PENDING); /* never acknowledged */
        ck_assert_int_ge(unlinks_seen, 1);
}
END_TEST

/* Chunks are cut by bytes too (issue 10, item 12): ten 200-byte keys of
 * one slot, at most 1024 bytes per command, go two per UNLINK. */
START_TEST(commands_are_cut_by_bytes) {
        static char keys[10][256];
        krib_wop_t ops[10];
        for (int i = 0; i < 10; i++) {
                int l = snprintf(keys[i], sizeof(keys[i]), "{t}%0197d", i);
                ops[i] = (krib_wop_t){keys[i], (size_t)l, KRIB_WOP_UNLINK, NULL};
        }
        uint8_t st[10];
        ck_assert_int_eq(krib_writer_apply(w, ops, 10, st), 0);
        for (int i = 0; i < 10; i++)
                ck_assert_int_eq(st[i], KRIB_WOP_OK);
        ck_assert_int_eq(unlinks_seen, 5);
        ck_assert_uint_eq(krib_writer_stats(w)->round_trips, 1); /* still one flush */
}
END_TEST

/* Steps w (polling its sockets) until every job in jobs[0..n) is final. */
static void step_until_done(const int *jobs, int n) {
        for (int round = 0; round < 2000; round++) {
                ck_assert_int_eq(krib_writer_step(w), 0);
                int left = 0;
                for (int i = 0; i < n; i++)
                        left += krib_writer_job_left(w, jobs[i]) > 0;
                if (!left)
                        return;
                struct pollfd fds[16];
                int nfds = krib_writer_pollfds(w, fds, 16);
                poll(fds, (nfds_t)nfds, 5);
        }
        ck_abort_msg("jobs did not finish");
}

/* Position of the n-th (1-based) occurrence of needle in A's request log. */
static long nth_in_log(const char *needle, int n) {
        pthread_mutex_lock(&A.lock);
        const char *p = A.log;
        long at = -1;
        for (int i = 0; i < n && p; i++) {
                p = strstr(p, needle);
                if (p) {
                        at = p - A.log;
                        p++;
                }
        }
        pthread_mutex_unlock(&A.lock);
        return p ? at : -1;
}

/* Several jobs in flight (issue 11): a later job's op on a key waits until
 * the earlier job's op on that key is answered, even when that one has to
 * be retried; its other keys do not wait. */
START_TEST(later_job_waits_for_the_same_key) {
        scenario = S_TRYAGAIN_ONCE;
        krib_wop_t first[] = {K("k")};
        uint8_t st1[1], st2[2];
        int j1 = krib_writer_submit(w, first, 1, st1);
        ck_assert_int_ge(j1, 0);
        ck_assert_int_eq(krib_writer_step(w), 0); /* sent; TRYAGAIN comes back */
        krib_vv_entry_t v = {{"db", 2}, 9};
        krib_event_t ev = versioned(&v);
        krib_wop_t second[] = {{"k", 1, KRIB_WOP_DELETE, &ev}, K("other")};
        int j2 = krib_writer_submit(w, second, 2, st2);
        ck_assert_int_ge(j2, 0);
        ck_assert_int_ne(j1, j2);
        int jobs[] = {j1, j2};
        step_until_done(jobs, 2);
        ck_assert_int_eq(st1[0], KRIB_WOP_OK);
        ck_assert_int_eq(st2[0], KRIB_WOP_OK);
        ck_assert_int_eq(st2[1], KRIB_WOP_OK);
        long retry = nth_in_log("UNLINK k\n", 2);
        long fenced = nth_in_log("\nEVALSHA 0123456789", 1);
        ck_assert_int_ge(retry, 0);
        ck_assert_int_gt(fenced, retry); /* the later op went after the retry */
        krib_writer_job_release(w, j1);
        krib_writer_job_release(w, j2);
        ck_assert_uint_eq(krib_writer_jobs_live(w), 0);
}
END_TEST

/* A cancelled job's ops are never sent and its caller's memory is not
 * touched again; its slot comes back. */
START_TEST(cancelled_job_is_forgotten) {
        scenario = S_TRYAGAIN_ALWAYS;
        krib_wop_t ops[] = {K("x")};
        uint8_t st[1];
        int j = krib_writer_submit(w, ops, 1, st);
        ck_assert_int_ge(j, 0);
        for (int i = 0; i < 5; i++) {
                krib_writer_step(w);
                usleep(20000);
        }
        krib_writer_job_cancel(w, j);
        st[0] = 99;
        for (int i = 0; i < 20 && krib_writer_jobs_live(w); i++) {
                krib_writer_step(w);
                usleep(20000);
        }
        ck_assert_uint_eq(krib_writer_jobs_live(w), 0);
        ck_assert_int_eq(st[0], 99);
        int seen = unlinks_seen;
        usleep(200000);
        krib_writer_step(w);
        ck_assert_int_eq(unlinks_seen, seen);
}
END_TEST

/* redis.fence=versioned (issue 11): an invalidation is a plain UNLINK of the
 * key and its fence, a DELETE too (no script); write-through still goes
 * through the script, told the mode. */
START_TEST(versioned_invalidations_unlink_the_fence_too) {
        krib_vv_entry_t v = {{"db", 2}, 7};
        krib_event_t ev = versioned(&v);
        krib_wop_t ops[] = {K("user:{1}:x"),
                            {"user:{1}:y", 10, KRIB_WOP_DELETE, &ev},
                            {"user:{1}:z", 10, KRIB_WOP_UPSERT, &ev}};
        uint8_t st[3];
        ck_assert_int_eq(krib_writer_apply(w, ops, 3, st), 0);
        ck_assert_int_eq(fake_seen(&A, "UNLINK user:{1}:x krib:f:user:{1}:x user:{1}:y "
                                       "krib:f:user:{1}:y"),
                         1);
        ck_assert_int_eq(fake_seen(&A, "krib:f:user:{1}:z V 86400000 U"), 1);
        ck_assert_int_eq(st[0], KRIB_WOP_OK);
        ck_assert_int_eq(st[1], KRIB_WOP_OK);
        ck_assert_int_eq(st[2], KRIB_WOP_OK);
}
END_TEST

static void start_versioned(void) {
        static char v[] = "KRIB_REDIS_FENCE=versioned";
        fence_env = v;
        start("standalone");
        fence_env = NULL;
}

/* ---- a cluster of many masters: no cap on the sockets watched ---------- */

enum { MANY = 72 };
static fake_redis_t many[MANY];
static char many_slots[MANY * 64 + 64];

static volatile int many_release;

/* CLUSTER SLOTS: slots split evenly among the fakes; UNLINK answered once
 * the test saw every master with a reply due (at most 5 s). */
static const char *many_handle(fake_redis_t *f, int argc, char **argv, size_t *lens) {
        (void)f;
        (void)lens;
        if (!strcasecmp(argv[0], "CLUSTER"))
                return many_slots;
        if (!strcasecmp(argv[0], "SCRIPT"))
                return "$40\r\n0123456789012345678901234567890123456789\r\n";
        if (!strcasecmp(argv[0], "UNLINK")) {
                for (int i = 0; i < 500 && !many_release; i++)
                        usleep(10000);
                static __thread char r[32];
                snprintf(r, sizeof(r), ":%d\r\n", argc - 1);
                return r;
        }
        return "+OK\r\n";
}

static int many_owner(unsigned slot) {
        return (int)(slot * MANY / KRIB_SLOT_COUNT);
}

START_TEST(seventy_two_masters_are_all_watched) {
        for (int i = 0; i < MANY; i++)
                fake_start(&many[i], many_handle, NULL);
        size_t n = (size_t)snprintf(many_slots, sizeof(many_slots), "*%d\r\n", MANY);
        for (int i = 0; i < MANY; i++) {
                unsigned lo = (unsigned)((i * KRIB_SLOT_COUNT + MANY - 1) / MANY);
                unsigned hi = (unsigned)(((i + 1) * KRIB_SLOT_COUNT + MANY - 1) / MANY) - 1;
                n += (size_t)snprintf(many_slots + n, sizeof(many_slots) - n,
                                      "*3\r\n:%u\r\n:%u\r\n*2\r\n$9\r\n127.0.0.1\r\n:%d\r\n", lo,
                                      hi, many[i].port);
        }
        ck_assert_int_eq(krib_conf_init(&conf), 0);
        char nodes[64], err[256];
        snprintf(nodes, sizeof(nodes), "KRIB_REDIS_NODES=127.0.0.1:%d", many[0].port);
        char *env[] = {nodes, "KRIB_REDIS_FENCE=upserts", NULL};
        ck_assert_int_eq(krib_conf_load_env(&conf, env, NULL, 0, err, sizeof(err)), 0);
        w = krib_writer_new(&conf, err, sizeof(err));
        ck_assert_msg(w != NULL, "%s", err);
        /* One key per master. */
        static char keys[MANY][32];
        krib_wop_t ops[MANY];
        uint8_t st[MANY];
        int found = 0;
        for (int k = 0; found < MANY && k < 1000000; k++) {
                char key[32];
                int l = snprintf(key, sizeof(key), "k%d", k);
                int m = many_owner(krib_slot_of(key, (size_t)l));
                if (keys[m][0])
                        continue;
                memcpy(keys[m], key, (size_t)l + 1);
                ops[m] = K(keys[m]);
                found++;
        }
        ck_assert_int_eq(found, MANY);
        many_release = 0;
        ck_assert_int_eq(krib_writer_refresh(w, err, sizeof(err)), 0);
        int job = krib_writer_submit(w, ops, MANY, st);
        ck_assert_int_ge(job, 0);
        /* The 72 connections open in the background, each master's UNLINK
         * goes as its connection is ready, and no reply comes yet. */
        struct pollfd fds[MANY + 8];
        for (int round = 0; round < 500 && krib_writer_pollfds(w, NULL, 0) != MANY; round++) {
                ck_assert_int_eq(krib_writer_step(w), 0);
                int nfds = krib_writer_pollfds(w, fds, MANY + 8);
                poll(fds, (nfds_t)nfds, 10);
        }
        /* Every master has a reply due: all are counted, past any small max. */
        ck_assert_int_eq(krib_writer_pollfds(w, fds, 16), MANY);
        ck_assert_int_eq(krib_writer_pollfds(w, fds, MANY + 8), MANY);
        for (int i = 0; i < MANY; i++)
                for (int j = 0; j < i; j++)
                        ck_assert_int_ne(fds[i].fd, fds[j].fd);
        many_release = 1;
        for (int round = 0; round < 400 && krib_writer_job_left(w, job); round++) {
                int nfds = krib_writer_pollfds(w, fds, MANY + 8);
                poll(fds, (nfds_t)nfds, 50);
                ck_assert_int_eq(krib_writer_step(w), 0);
        }
        ck_assert_int_eq(krib_writer_job_left(w, job), 0);
        for (int i = 0; i < MANY; i++)
                ck_assert_int_eq(st[i], KRIB_WOP_OK);
        krib_writer_job_release(w, job);
        krib_writer_destroy(w);
        for (int i = 0; i < MANY; i++)
                fake_stop(&many[i]);
        krib_conf_destroy(&conf);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("writer");
        TCase *tc = tcase_create("standalone");
        tcase_add_checked_fixture(tc, start_standalone, stop);
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, acknowledged_keys_are_ok);
        tcase_add_test(tc, refused_key_fails_for_good);
        tcase_add_test(tc, tryagain_is_retried);
        tcase_add_test(tc, dropped_connection_is_retried);
        tcase_add_test(tc, fenced_replies_map_per_key);
        tcase_add_test(tc, shutdown_window_ends_retries);
        tcase_add_test(tc, oom_opens_the_breaker_without_a_busy_loop);
        tcase_add_test(tc, dead_node_opens_the_breaker);
        tcase_add_test(tc, script_loading_is_retried);
        tcase_add_test(tc, script_error_fails_only_the_offender);
        tcase_add_test(tc, probes_never_shift_replies);
        tcase_add_test(tc, sync_command_refused_while_replies_pending);
        tcase_add_test(tc, later_job_waits_for_the_same_key);
        tcase_add_test(tc, cancelled_job_is_forgotten);
        suite_add_tcase(s, tc);
        tc = tcase_create("many");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, seventy_two_masters_are_all_watched);
        suite_add_tcase(s, tc);
        tc = tcase_create("versioned");
        tcase_add_checked_fixture(tc, start_versioned, stop);
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, versioned_invalidations_unlink_the_fence_too);
        suite_add_tcase(s, tc);
        tc = tcase_create("command_bytes");
        tcase_add_checked_fixture(tc, start_small_commands, stop);
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, commands_are_cut_by_bytes);
        suite_add_tcase(s, tc);
        tc = tcase_create("wait_replicas");
        tcase_add_checked_fixture(tc, start_waiting, stop);
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, wait_shortfall_resends_until_replicated);
        tcase_add_test(tc, wait_never_satisfied_keeps_keys_pending);
        suite_add_tcase(s, tc);
        tc = tcase_create("cluster_redirects");
        tcase_add_checked_fixture(tc, start_cluster, stop);
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, moved_follows_and_refreshes);
        tcase_add_test(tc, ask_goes_through_asking_without_remapping);
        suite_add_tcase(s, tc);
        return s;
}
