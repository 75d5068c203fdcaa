/* Guarded fills (redis/krib.lua): applications filling the cache with
 * versions read from the database race with krib's invalidations. With
 * krib_fill no stale value survives; with a plain SET, the same race leaves
 * stale values behind (the control run, so that this test can fail). With
 * redis.fence=versioned, fills take a lease that an invalidation voids. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "clock.h"
#include "fence.h"
#include "itest.h"
#include "slot.h"
#include "topo.h"

#define N      2000 /* entities */
#define PASSES 10   /* versions per entity */

/* One connection per master, routed by slot (no resharding meanwhile). */
typedef struct {
        krib_topo_t topo;
        redisContext *ctx[16];
} cluster_t;

static void cluster_open(cluster_t *c) {
        krib_addr_t a;
        ck_assert_int_eq(krib_addr_parse(itest_redis_seed(), &a), 0);
        redisContext *s = redisConnect(a.host, a.port);
        ck_assert(s && !s->err);
        redisReply *r = redisCommand(s, "CLUSTER SLOTS");
        char err[256];
        krib_topo_init(&c->topo);
        ck_assert_int_eq(krib_topo_load_slots(&c->topo, r, a.host, err, sizeof(err)), 0);
        freeReplyObject(r);
        redisFree(s);
        ck_assert_uint_le(c->topo.master_count, 16);
        for (size_t m = 0; m < c->topo.master_count; m++) {
                c->ctx[m] = redisConnect(c->topo.masters[m].host, c->topo.masters[m].port);
                ck_assert(c->ctx[m] && !c->ctx[m]->err);
        }
}

static void cluster_close(cluster_t *c) {
        for (size_t m = 0; m < c->topo.master_count; m++)
                redisFree(c->ctx[m]);
        krib_topo_destroy(&c->topo);
}

static redisContext *node_of(cluster_t *c, const char *key) {
        return c->ctx[c->topo.slot_owner[krib_slot_of(key, strlen(key))]];
}

static const char *prefix_of_run;
static int guarded;
static volatile int running;
static long long version_base;

static long long version_of(long i, int pass) {
        return version_base + (long long)pass * N + i + 1; /* as krib-loadgen --passes */
}

typedef struct {
        unsigned seed;
        long fills, refused, errors;
} reader_t;

/* An application: reads some version of entity i from "the database" (any
 * version, old ones too: a slow read), then fills the cache with it. */
static void *reader(void *arg) {
        reader_t *rd = arg;
        cluster_t c;
        cluster_open(&c);
        while (running) {
                long i = rand_r(&rd->seed) % N;
                int pass = rand_r(&rd->seed) % PASSES;
                char key[200], fkey[240], ver[32], val[40];
                snprintf(key, sizeof(key), "%s:{%ld}:k0", prefix_of_run, i);
                int fl = krib_fence_key(key, strlen(key), fkey, sizeof(fkey) - 1);
                fkey[fl] = '\0';
                snprintf(ver, sizeof(ver), "%lld", version_of(i, pass));
                snprintf(val, sizeof(val), "v%lld", version_of(i, pass));
                redisReply *r;
                if (guarded) {
                        const char *argv[] = {"FCALL", "krib_fill", "2",  key, fkey,
                                              "0",     val,         "db", ver};
                        r = redisCommandArgv(node_of(&c, key), 9, argv, NULL);
                } else {
                        r = redisCommand(node_of(&c, key), "SET %s %s", key, val);
                }
                if (!r || r->type == REDIS_REPLY_ERROR)
                        rd->errors++;
                else if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
                        rd->refused++;
                else
                        rd->fills++;
                if (r)
                        freeReplyObject(r);
        }
        cluster_close(&c);
        return NULL;
}

/* Runs the race; returns how many present keys hold an older version than
 * the newest one the database reached. */
static long race(int with_guard, long *fills, long *refused) {
        itest_names_t nm;
        itest_names(&nm, with_guard ? "fill-guarded" : "fill-plain");
        prefix_of_run = nm.prefix;
        guarded = with_guard;
        version_base = (long long)krib_clock_wall_ms() * 1000;
        char ns[16], ps[16], vb[32];
        snprintf(ns, sizeof(ns), "%d", N);
        snprintf(ps, sizeof(ps), "%d", PASSES);
        snprintf(vb, sizeof(vb), "%lld", version_base);
        const char *create[] = {"create", "--topic", nm.topic, "--partitions", "6", NULL};
        itest_loadgen(create);
        /* krib_fill compares with the fence a DELETE leaves: redis.fence=all
         * (the versioned mode's leased fills are checked below). */
        const char *env[] = {nm.env_topic, nm.env_group,           nm.env_brokers,
                             nm.env_nodes, "KRIB_REDIS_FENCE=all", NULL};
        pid_t pid = itest_krib_start(env, nm.log);

        running = 1;
        pthread_t th[4];
        reader_t rd[4];
        for (int t = 0; t < 4; t++) {
                rd[t] = (reader_t){(unsigned)(t * 7919 + getpid()), 0, 0, 0};
                pthread_create(&th[t], NULL, reader, &rd[t]);
        }
        /* The database moves through PASSES versions per entity; krib
         * invalidates each (fenced deletes, redis.fence = all). */
        char *produce[] = {KRIB_LOADGEN_BIN,
                           "produce",
                           "--topic",
                           nm.topic,
                           "--prefix",
                           nm.prefix,
                           "--count",
                           ns,
                           "--passes",
                           ps,
                           "--version-base",
                           vb,
                           "--rate",
                           "20000",
                           "--schema",
                           KRIB_SOURCE_DIR "/schemas/invalidation.avsc",
                           NULL};
        pid_t producer = itest_spawn(produce);
        ck_assert_int_eq(itest_wait(producer, 60), 0);
        int caught_up = itest_wait_caught_up(nm.group, nm.topic, 6, 60);
        usleep(1000000); /* readers keep filling old versions after the last event */
        running = 0;
        for (int t = 0; t < 4; t++)
                pthread_join(th[t], NULL);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        ck_assert_int_eq(caught_up, 0);

        *fills = *refused = 0;
        for (int t = 0; t < 4; t++) {
                ck_assert_int_eq(rd[t].errors, 0);
                *fills += rd[t].fills;
                *refused += rd[t].refused;
        }
        cluster_t c;
        cluster_open(&c);
        long stale = 0;
        for (long i = 0; i < N; i++) {
                char key[200];
                snprintf(key, sizeof(key), "%s:{%ld}:k0", nm.prefix, i);
                redisReply *r = redisCommand(node_of(&c, key), "GET %s", key);
                ck_assert_ptr_nonnull(r);
                if (r->type == REDIS_REPLY_STRING && atoll(r->str + 1) < version_of(i, PASSES - 1))
                        stale++;
                freeReplyObject(r);
        }
        cluster_close(&c);
        unlink(nm.log);
        return stale;
}

START_TEST(guarded_fills_leave_no_stale_value) {
        itest_load_fill_library();
        long fills, refused;
        long stale = race(1, &fills, &refused);
        fprintf(stderr, "guarded: %ld fills written, %ld refused, %ld stale keys\n", fills, refused,
                stale);
        ck_assert_int_gt(fills, 1000);
        ck_assert_int_gt(refused, 1000); /* the guard did work */
        ck_assert_int_eq(stale, 0);
}
END_TEST

START_TEST(plain_fills_leave_stale_values) {
        long fills, refused;
        long stale = race(0, &fills, &refused);
        fprintf(stderr, "plain SET: %ld fills, %ld stale keys\n", fills, stale);
        ck_assert_int_eq(refused, 0);
        ck_assert_int_gt(stale, 100);
}
END_TEST

/* ---- redis.fence = "versioned" (issue 11, item 5) ---- */

static redisReply *on_node(cluster_t *c, const char *key, int argc, const char **argv) {
        redisReply *r = redisCommandArgv(node_of(c, key), argc, argv, NULL);
        ck_assert_ptr_nonnull(r);
        return r;
}

static long long fcall(cluster_t *c, const char *key, const char *fkey, const char *fn,
                       const char *a1, const char *a2, const char *a3, const char *a4,
                       const char *a5) {
        const char *argv[] = {"FCALL", fn, "2", key, fkey, a1, a2, a3, a4, a5};
        int argc = 5;
        while (argc < 10 && argv[argc])
                argc++;
        redisReply *r = on_node(c, key, argc, argv);
        ck_assert_msg(r->type == REDIS_REPLY_INTEGER, "%s: %s", fn,
                      r->type == REDIS_REPLY_ERROR ? r->str : "not an integer");
        long long v = r->integer;
        freeReplyObject(r);
        return v;
}

/* The key's value ("" when absent) and whether its fence exists. */
static void state(cluster_t *c, const char *key, const char *fkey, char *val, size_t size,
                  int *fence) {
        const char *get[] = {"GET", key};
        redisReply *r = on_node(c, key, 2, get);
        snprintf(val, size, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
        freeReplyObject(r);
        const char *ex[] = {"EXISTS", fkey};
        r = on_node(c, key, 2, ex);
        *fence = (int)r->integer;
        freeReplyObject(r);
}

static void applied(const itest_names_t *nm, int64_t want) {
        for (int i = 0; i < 300 && itest_committed_sum(nm->group, nm->topic, 2) < want; i++)
                usleep(100000);
        ck_assert_int_ge(itest_committed_sum(nm->group, nm->topic, 2), want);
}

/* The library loaded, a 2-partition topic, krib running in fence mode
 * `mode` ("KRIB_REDIS_FENCE=..."), a connection to every master. */
static pid_t fence_test_start(itest_names_t *nm, const char *what, const char *mode, cluster_t *c) {
        itest_load_fill_library();
        itest_names(nm, what);
        const char *create[] = {"create", "--topic", nm->topic, "--partitions", "2", NULL};
        itest_loadgen(create);
        const char *env[] = {nm->env_topic, nm->env_group, nm->env_brokers,
                             nm->env_nodes, mode,          NULL};
        pid_t pid = itest_krib_start(env, nm->log);
        cluster_open(c);
        return pid;
}

/* Guarantees of the versioned mode against the real cluster, step by step:
 * (b) a leased fill that an invalidation raced is refused; (a) a stale
 * write-through never overwrites a newer value, from another partition and
 * after a krib restart; (c) a value whose fence is gone (evicted) is not
 * written over but unlinked, and an uncached key is not written; and a
 * DELETE leaves no fence behind (memory does not grow with invalidations). */
START_TEST(versioned_mode_keeps_its_guarantees) {
        itest_names_t nm;
        cluster_t c;
        pid_t pid = fence_test_start(&nm, "fence-versioned", "KRIB_REDIS_FENCE=versioned", &c);
        char key[200], fkey[240], val[64], ent[200];
        snprintf(key, sizeof(key), "%s:{1}:k", nm.prefix);
        snprintf(ent, sizeof(ent), "%s-1", nm.prefix);
        int fl = krib_fence_key(key, strlen(key), fkey, sizeof(fkey) - 1);
        fkey[fl] = '\0';
        const char *keys[] = {key, NULL};
        int fence;
        int64_t events = 0;

        /* (b) lease, "read the database" (v5), an invalidation (v6), fill: refused. */
        ck_assert_int_eq(fcall(&c, key, fkey, "krib_lease", "30000", "t1", NULL, NULL, NULL), 1);
        ck_assert_int_eq(fcall(&c, key, fkey, "krib_lease", "30000", "t2", NULL, NULL, NULL), 0);
        itest_produce_event(nm.topic, 0, ent, keys, KRIB_ACTION_DELETE, "db=6", NULL);
        applied(&nm, ++events);
        ck_assert_int_eq(fcall(&c, key, fkey, "krib_fill_leased", "t1", "0", "v5", "db", "5"), 0);
        state(&c, key, fkey, val, sizeof(val), &fence);
        ck_assert_str_eq(val, "");
        ck_assert_int_eq(fence, 0); /* the DELETE left nothing behind */

        /* A fill nothing raced is written, with its version as the fence. */
        ck_assert_int_eq(fcall(&c, key, fkey, "krib_lease", "30000", "t3", NULL, NULL, NULL), 1);
        ck_assert_int_eq(fcall(&c, key, fkey, "krib_fill_leased", "t3", "0", "v6", "db", "6"), 1);
        state(&c, key, fkey, val, sizeof(val), &fence);
        ck_assert_str_eq(val, "v6");
        ck_assert_int_eq(fence, 1);

        /* (a) write-through v7 over the cached v6; then v6 again from the
         * other partition, and after a restart: never written. */
        itest_produce_event(nm.topic, 0, ent, keys, KRIB_ACTION_UPSERT, "db=7", "v7");
        applied(&nm, ++events);
        state(&c, key, fkey, val, sizeof(val), &fence);
        ck_assert_str_eq(val, "v7");
        itest_produce_event(nm.topic, 1, ent, keys, KRIB_ACTION_UPSERT, "db=6", "v6-late");
        applied(&nm, ++events);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        const char *env[] = {nm.env_topic,
                             nm.env_group,
                             nm.env_brokers,
                             nm.env_nodes,
                             "KRIB_REDIS_FENCE=versioned",
                             NULL};
        pid = itest_krib_start(env, nm.log);
        itest_produce_event(nm.topic, 1, ent, keys, KRIB_ACTION_UPSERT, "db=6", "v6-restart");
        applied(&nm, ++events);
        state(&c, key, fkey, val, sizeof(val), &fence);
        ck_assert_str_eq(val, "v7");

        /* (c) the fence is evicted (gone while the value stays): the next
         * write-through cannot know what it would overwrite, so it unlinks. */
        const char *del[] = {"DEL", fkey};
        freeReplyObject(on_node(&c, key, 2, del));
        itest_produce_event(nm.topic, 0, ent, keys, KRIB_ACTION_UPSERT, "db=8", "v8");
        applied(&nm, ++events);
        state(&c, key, fkey, val, sizeof(val), &fence);
        ck_assert_str_eq(val, "");
        ck_assert_int_eq(fence, 0);
        /* Not cached: a write-through leaves it to the read path. */
        itest_produce_event(nm.topic, 0, ent, keys, KRIB_ACTION_UPSERT, "db=9", "v9");
        applied(&nm, ++events);
        state(&c, key, fkey, val, sizeof(val), &fence);
        ck_assert_str_eq(val, "");
        ck_assert_int_eq(fence, 0);

        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        cluster_close(&c);
        unlink(nm.log);
}
END_TEST

/* (c) with a real eviction: a private standalone Redis (a small keyspace,
 * so that LRU sampling finds the fence) under maxmemory with allkeys-lru,
 * a value kept hot while junk pushes its (cold) fence out.
 * redis.fence=versioned then refuses to write over the value whose version
 * it no longer knows (it unlinks it); redis.fence=all, the control, writes
 * it: a gone fence fails open there. */
static long long sa_int(redisContext *r, const char *fmt, const char *a) {
        redisReply *rep = redisCommand(r, fmt, a);
        ck_assert_ptr_nonnull(rep);
        long long v = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
        freeReplyObject(rep);
        return v;
}

/* Fills key (leased, version 5), then writes junk under allkeys-lru,
 * touching key often, until its fence is evicted. 1 when the fence is gone
 * and the value is still there (LRU is sampled: the caller tries again). */
static int fill_then_evict_fence(redisContext *r, const char *prefix, const char *key,
                                 const char *fkey, int attempt) {
        freeReplyObject(redisCommand(r, "CONFIG SET maxmemory 0"));
        redisReply *rep = redisCommand(r, "FCALL krib_lease 2 %s %s 30000 t%d", key, fkey, attempt);
        int ok = rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
        freeReplyObject(rep);
        rep = redisCommand(r, "FCALL krib_fill_leased 2 %s %s t%d 0 v5 db 5", key, fkey, attempt);
        ok = ok && rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
        freeReplyObject(rep);
        ck_assert_msg(ok, "leased fill failed");
        /* Redis' LRU clock ticks once a second: let the fence get older than
         * everything written from now on (the value is touched throughout). */
        sleep(2);
        freeReplyObject(redisCommand(r, "CONFIG SET maxmemory-policy allkeys-lru"));
        rep = redisCommand(r, "INFO memory");
        ck_assert_ptr_nonnull(rep);
        long long used = atoll(strstr(rep->str, "used_memory:") + 12);
        freeReplyObject(rep);
        freeReplyObject(redisCommand(r, "CONFIG SET maxmemory %lld", used + 2 * 1024 * 1024));
        static char junk[1024];
        memset(junk, 'j', sizeof(junk) - 1);
        int gone = 0;
        for (int round = 0; round < 2000 && !gone; round++) {
                for (int i = 0; i < 50; i++)
                        redisAppendCommand(r, "SET %s:junk:%d:%d:%d %s", prefix, attempt, round, i,
                                           junk);
                redisAppendCommand(r, "GET %s", key); /* stays hot */
                for (int i = 0; i < 51; i++) {
                        void *x;
                        ck_assert_int_eq(redisGetReply(r, &x), REDIS_OK);
                        freeReplyObject(x);
                }
                gone = sa_int(r, "EXISTS %s", fkey) == 0;
        }
        freeReplyObject(redisCommand(r, "CONFIG SET maxmemory 0"));
        return gone && sa_int(r, "EXISTS %s", key) == 1;
}

/* The port the LOADING scenario also uses (base + 106): tests run one at a
 * time, and unit_ports keeps it out of every other service's way. */
static int evict_port(void) {
        return itest_standalone_port() - 4;
}

static void evicted_run(const char *mode, const char *want) {
        itest_names_t nm;
        itest_names(&nm, "evict");
        char redis[64], port[16], dir[] = "/tmp/krib-evict-XXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(port, sizeof(port), "%d", evict_port());
        char *start[] = {"/usr/bin/redis-server",
                         "--port",
                         port,
                         "--bind",
                         "127.0.0.1",
                         "--dir",
                         dir,
                         "--save",
                         "",
                         "--appendonly",
                         "no",
                         "--daemonize",
                         "yes",
                         "--maxmemory-samples",
                         "10",
                         NULL};
        char out[512];
        ck_assert_msg(itest_run(start, 30, out, sizeof(out)) == 0, "redis-server: %s", out);
        redisContext *r = NULL;
        for (int i = 0; i < 50 && !r; i++) {
                r = redisConnect("127.0.0.1", evict_port());
                if (r && r->err) {
                        redisFree(r);
                        r = NULL;
                        usleep(100000);
                }
        }
        ck_assert_ptr_nonnull(r);
        snprintf(redis, sizeof(redis), "127.0.0.1:%d", evict_port());
        snprintf(nm.env_nodes, sizeof(nm.env_nodes), "KRIB_REDIS_NODES=%s", redis);
        static char lib[16384];
        FILE *fp = fopen(KRIB_SOURCE_DIR "/redis/krib.lua", "r");
        ck_assert_ptr_nonnull(fp);
        size_t n = fread(lib, 1, sizeof(lib) - 1, fp);
        fclose(fp);
        lib[n] = '\0';
        redisReply *rep = redisCommand(r, "FUNCTION LOAD REPLACE %s", lib);
        ck_assert_msg(rep && rep->type == REDIS_REPLY_STRING, "FUNCTION LOAD failed");
        freeReplyObject(rep);
        char key[200], fkey[240], ent[200];
        snprintf(key, sizeof(key), "%s:{e}:v", nm.prefix);
        snprintf(ent, sizeof(ent), "%s-e", nm.prefix);
        int fl = krib_fence_key(key, strlen(key), fkey, sizeof(fkey) - 1);
        fkey[fl] = '\0';
        int evicted = 0;
        for (int attempt = 0; attempt < 5 && !evicted; attempt++) {
                freeReplyObject(redisCommand(r, "UNLINK %s %s", key, fkey));
                evicted = fill_then_evict_fence(r, nm.prefix, key, fkey, attempt);
        }
        ck_assert_msg(evicted, "never got the fence evicted with the value kept");

        const char *create[] = {"create", "--topic", nm.topic, "--partitions", "1", NULL};
        itest_loadgen(create);
        const char *env[] = {nm.env_topic,
                             nm.env_group,
                             nm.env_brokers,
                             nm.env_nodes,
                             "KRIB_REDIS_MODE=standalone",
                             mode,
                             NULL};
        pid_t pid = itest_krib_start(env, nm.log);
        const char *keys[] = {key, NULL};
        itest_produce_event(nm.topic, 0, ent, keys, KRIB_ACTION_UPSERT, "db=6", "v6");
        ck_assert_int_eq(itest_wait_caught_up(nm.group, nm.topic, 1, 60), 0);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        rep = redisCommand(r, "GET %s", key);
        const char *got = rep->type == REDIS_REPLY_STRING ? rep->str : "";
        fprintf(stderr, "evicted fence, %s: key holds '%s'\n", mode, got);
        ck_assert_str_eq(got, want);
        freeReplyObject(rep);
        freeReplyObject(redisCommand(r, "SHUTDOWN NOSAVE"));
        redisFree(r);
        char *rm[] = {"/bin/rm", "-rf", dir, NULL};
        itest_run(rm, 30, NULL, 0);
        unlink(nm.log);
}

/* A fence left without its value (the value evicted: UNLINKed here behind
 * krib's back) no longer makes the key uncachable for good (issue 23,
 * finding 11): krib_lease takes the fence's place and keeps its version as
 * a floor; a fill older than the floor is refused, one that covers it is
 * written, and a second fill cannot take the lease meanwhile. */
START_TEST(orphaned_fence_is_leased_with_its_floor) {
        itest_names_t nm;
        cluster_t c;
        pid_t pid = fence_test_start(&nm, "fence-orphan", "KRIB_REDIS_FENCE=all", &c);
        char key[200], fkey[240], val[64], ent[200];
        snprintf(key, sizeof(key), "%s:{1}:k", nm.prefix);
        snprintf(ent, sizeof(ent), "%s-1", nm.prefix);
        int fl = krib_fence_key(key, strlen(key), fkey, sizeof(fkey) - 1);
        fkey[fl] = '\0';
        const char *keys[] = {key, NULL};
        int fence;
        itest_produce_event(nm.topic, 0, ent, keys, KRIB_ACTION_UPSERT, "db=5", "v5");
        applied(&nm, 1);
        const char *evict[] = {"UNLINK", key};
        freeReplyObject(on_node(&c, key, 2, evict));
        state(&c, key, fkey, val, sizeof(val), &fence);
        ck_assert_str_eq(val, "");
        ck_assert_int_eq(fence, 1); /* the orphan */

        ck_assert_int_eq(fcall(&c, key, fkey, "krib_lease", "30000", "t1", NULL, NULL, NULL), 1);
        ck_assert_int_eq(fcall(&c, key, fkey, "krib_lease", "30000", "t2", NULL, NULL, NULL), 0);
        /* An older write-through behind it is refused by the floor. */
        itest_produce_event(nm.topic, 0, ent, keys, KRIB_ACTION_UPSERT, "db=4", "v4");
        applied(&nm, 2);
        state(&c, key, fkey, val, sizeof(val), &fence);
        ck_assert_str_eq(val, "");
        ck_assert_int_eq(fcall(&c, key, fkey, "krib_fill_leased", "t1", "0", "v4", "db", "4"), 0);
        ck_assert_int_eq(fcall(&c, key, fkey, "krib_fill_leased", "t1", "0", "v5", "db", "5"), 1);
        state(&c, key, fkey, val, sizeof(val), &fence);
        ck_assert_str_eq(val, "v5");
        const char *fget[] = {"GET", fkey};
        redisReply *r = on_node(&c, key, 2, fget);
        ck_assert_str_eq(r->str, "db=5\n");
        freeReplyObject(r);
        /* A lease whose fill never came is taken over after its ttl. */
        freeReplyObject(on_node(&c, key, 2, evict));
        ck_assert_int_eq(fcall(&c, key, fkey, "krib_lease", "100", "t3", NULL, NULL, NULL), 1);
        usleep(150000);
        ck_assert_int_eq(fcall(&c, key, fkey, "krib_lease", "30000", "t4", NULL, NULL, NULL), 1);
        ck_assert_int_eq(fcall(&c, key, fkey, "krib_fill_leased", "t3", "0", "v5", "db", "5"), 0);
        ck_assert_int_eq(fcall(&c, key, fkey, "krib_fill_leased", "t4", "0", "v5", "db", "5"), 1);
        cluster_close(&c);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        unlink(nm.log);
}
END_TEST

/* A TAG sweep voids a fill's lease as an invalidation's UNLINK does (issue
 * 23, finding 7): the lease lives in the fence key of a key that is not
 * cached, which a SCAN of the keys never finds. Lease taken, sweep passes,
 * the fill (read before the change) is refused; a cached key's value and
 * fence go too. */
START_TEST(tag_sweep_voids_leases) {
        itest_names_t nm;
        cluster_t c;
        pid_t pid = fence_test_start(&nm, "fence-sweep", "KRIB_REDIS_FENCE=versioned", &c);
        char k1[200], f1[240], k2[200], f2[240], pattern[200], val[64];
        int fence;
        snprintf(k1, sizeof(k1), "%s:{7}:leased", nm.prefix);
        snprintf(k2, sizeof(k2), "%s:{7}:cached", nm.prefix);
        snprintf(pattern, sizeof(pattern), "%s:{7}:*", nm.prefix);
        int fl = krib_fence_key(k1, strlen(k1), f1, sizeof(f1) - 1);
        f1[fl] = '\0';
        fl = krib_fence_key(k2, strlen(k2), f2, sizeof(f2) - 1);
        f2[fl] = '\0';
        ck_assert_int_eq(fcall(&c, k2, f2, "krib_lease", "30000", "c1", NULL, NULL, NULL), 1);
        ck_assert_int_eq(fcall(&c, k2, f2, "krib_fill_leased", "c1", "0", "v1", "db", "1"), 1);
        ck_assert_int_eq(fcall(&c, k1, f1, "krib_lease", "30000", "t1", NULL, NULL, NULL), 1);
        itest_produce_tag(nm.topic, 0, "tag", pattern);
        applied(&nm, 1);
        ck_assert_int_eq(fcall(&c, k1, f1, "krib_fill_leased", "t1", "0", "v1", "db", "1"), 0);
        state(&c, k1, f1, val, sizeof(val), &fence);
        ck_assert_str_eq(val, "");
        state(&c, k2, f2, val, sizeof(val), &fence);
        ck_assert_str_eq(val, "");
        ck_assert_int_eq(fence, 0);
        cluster_close(&c);
        ck_assert_int_eq(itest_krib_stop(pid, SIGTERM, 30), 0);
        unlink(nm.log);
}
END_TEST

/* The fence script's "I" (an older event's key, issue 23 finding 9) on a
 * real Redis, both fence modes: unlinked unless the fence holds its version
 * or a newer one; the newer event's value stays. */
static long long inval(redisContext *r, const char *sha, const char *key, const char *mode,
                       const char *counter) {
        char fkey[256];
        int fl = krib_fence_key(key, strlen(key), fkey, sizeof(fkey) - 1);
        fkey[fl] = '\0';
        redisReply *rep = redisCommand(r, "EVALSHA %s 2 %s %s %s 0 I %s 0 1 db %s", sha, key, fkey,
                                       mode, "", counter);
        ck_assert_msg(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1, "EVALSHA: %s",
                      rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
        long long v = rep->element[0]->integer;
        freeReplyObject(rep);
        return v;
}

START_TEST(older_event_invalidates_what_the_newer_did_not_cover) {
        static char src[16384];
        FILE *fp = fopen(KRIB_SOURCE_DIR "/connector/fence.lua", "r");
        ck_assert_ptr_nonnull(fp);
        src[fread(src, 1, sizeof(src) - 1, fp)] = '\0';
        fclose(fp);
        redisContext *r = itest_redis(itest_standalone_port());
        redisReply *rep = redisCommand(r, "SCRIPT LOAD %s", src);
        ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
        char sha[41];
        snprintf(sha, sizeof(sha), "%s", rep->str);
        freeReplyObject(rep);
        char k[64], fk[80];
        snprintf(k, sizeof(k), "inv-%d:{1}", (int)getpid());
        snprintf(fk, sizeof(fk), "krib:f:%s", k);
        const char *modes[] = {"V", "A"};
        for (int i = 0; i < 2; i++) {
                /* cached at db=5 by the newer event */
                freeReplyObject(redisCommand(r, "SET %s v5", k));
                freeReplyObject(redisCommand(r, "SET %s db=5\n", fk));
                ck_assert_int_eq(inval(r, sha, k, modes[i], "4"), 0); /* covered */
                rep = redisCommand(r, "GET %s", k);
                ck_assert_str_eq(rep->str, "v5");
                freeReplyObject(rep);
                ck_assert_int_eq(inval(r, sha, k, modes[i], "6"), 1); /* not covered */
                rep = redisCommand(r, "EXISTS %s", k);
                ck_assert_int_eq(rep->integer, 0);
                freeReplyObject(rep);
                /* cached without a known version (no fence): unlinked */
                freeReplyObject(redisCommand(r, "UNLINK %s", fk));
                freeReplyObject(redisCommand(r, "SET %s old", k));
                ck_assert_int_eq(inval(r, sha, k, modes[i], "1"), 1);
                rep = redisCommand(r, "EXISTS %s", k);
                ck_assert_int_eq(rep->integer, 0);
                freeReplyObject(rep);
                freeReplyObject(redisCommand(r, "UNLINK %s %s", k, fk));
        }
        redisFree(r);
}
END_TEST

START_TEST(evicted_fence_fails_closed) {
        evicted_run("KRIB_REDIS_FENCE=versioned", "");
        evicted_run("KRIB_REDIS_FENCE=all", "v6"); /* the control: fails open */
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("fill");
        TCase *tc = tcase_create("race");
        tcase_set_timeout(tc, 240);
        tcase_add_test(tc, guarded_fills_leave_no_stale_value);
        tcase_add_test(tc, plain_fills_leave_stale_values);
        suite_add_tcase(s, tc);
        tc = tcase_create("versioned");
        tcase_set_timeout(tc, 240);
        tcase_add_test(tc, versioned_mode_keeps_its_guarantees);
        tcase_add_test(tc, evicted_fence_fails_closed);
        tcase_add_test(tc, orphaned_fence_is_leased_with_its_floor);
        tcase_add_test(tc, tag_sweep_voids_leases);
        tcase_add_test(tc, older_event_invalidates_what_the_newer_did_not_cover);
        suite_add_tcase(s, tc);
        return s;
}
