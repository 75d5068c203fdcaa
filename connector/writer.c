#include "writer.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "conn.h"
#include "fence.h"
#include "bg.h"
#include "breaker.h"
#include "cluster.h"
#include "log.h"
#include "retry.h"
#include "slot.h"
#include "topo.h"
#include "util.h"

#define REFRESH_PERIOD_US 30000000 /* topology re-read even without MOVED */
#define JOB_MAX           KRIB_WRITER_JOBS
#define IDX_BITS          22 /* 4M ops a job; 10 bits of job: JOB_MAX < 1024 */
#define IDX_MAX           ((1u << IDX_BITS) - 1)
#define NONE              UINT32_MAX
#define REF(j, i)         ((uint32_t)(j) << IDX_BITS | (uint32_t)(i))
#define REF_JOB(r)        ((r) >> IDX_BITS)
#define REF_IDX(r)        ((r)&IDX_MAX)
_Static_assert(JOB_MAX < (1 << (32 - IDX_BITS)) - 1, "a job id must fit its bits, NONE apart");

const double krib_writer_rt_bounds_s[KRIB_WRITER_RT_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                                0.025,  0.05,  0.1,    0.5,   2};

enum {
        MODE_PLAIN = 0,
        MODE_FENCED = 1,
        MODE_FANOUT = 2,
        MODE_ASKING = 3,
        MODE_WAIT = 4,
        MODE_SCRIPT = 5 /* SCRIPT LOAD, pipelined ahead of the fenced work */
};

/* Where an op is: waiting to be sent (queued), on the wire (sent), answered
 * but waiting for its round's WAIT (acked), or done (final). */
enum { R_QUEUED = 0, R_SENT = 1, R_ACKED = 2, R_FINAL = 3 };

typedef struct {
        krib_wop_t op;
        uint64_t hash;
        int64_t due_us;
        uint32_t succ;  /* the op (a later job's, same key) waiting for this one */
        uint32_t hnext; /* next op in the same key-table bucket */
        int32_t ask_conn;
        uint32_t fkey_off;
        uint16_t fkey_len, slot;
        uint16_t attempt, redirects;
        uint8_t after; /* an earlier job's op on this key is not final yet */
        uint8_t solo;  /* sent in a command of its own (its chunk failed) */
        /* A fenced op Redis refused for good, now a plain UNLINK of its key
         * (fail safe: the key goes, the op still ends FAILED). */
        uint8_t fallback;
        uint8_t cancelled; /* this op alone was given up (krib_writer_op_cancel) */
        uint8_t held;      /* waiting for an open breaker: released when it closes */
        uint8_t state, result, in_table;
} rec_t;

typedef struct {
        uint8_t used, cancelled;
        rec_t *recs;
        size_t n, cap;
        uint8_t *status; /* the caller's; NULL once cancelled */
        size_t left;     /* ops not final */
        char *fkeys;     /* fence key names, at recs[i].fkey_off */
        size_t fkeys_cap;
        /* Keys of a cancelled job's ops not final yet: they stay in the key
         * table (later ops on their keys keep waiting) after the caller's
         * memory is gone. */
        char *kcopy;
        size_t kcopy_cap;
} job_t;

typedef struct {
        uint32_t nrefs; /* refs taken from the connection's ref queue */
        uint32_t flush_keys;
        int64_t sent_us;
        uint8_t mode;
        uint8_t last; /* last command of its flush: the reply ends a round trip */
} cmd_t;

typedef struct {
        krib_addr_t addr;
        krib_conn_t *c;           /* pipelined commands */
        krib_conn_t *ctl;         /* SCAN pages, on a helper thread while scanning */
        int setup;                /* a connect or a probe runs in the background */
        int scanning;             /* a SCAN job holds ctl */
        struct wjob *scan_result; /* a finished SCAN, for krib_writer_scan */
        int scan_result_age;      /* steps it has waited to be claimed */
        krib_writer_node_t m;
        int64_t retry_at_us;
        unsigned failures;
        krib_breaker_t br;
        int script; /* fence script: 1 loaded here, 0 not yet, -1 refused */
        unsigned script_warned;
        /* Commands on the wire, oldest first, and the refs they carry. */
        cmd_t *cq;
        size_t cq_head, cq_tail, cq_cap;
        uint32_t *rq;
        size_t rq_head, rq_tail, rq_cap;
        /* Answered ops waiting for the WAIT that ends their round. */
        uint32_t *acked;
        size_t nacked, acked_cap;
        /* This step's appends. */
        uint32_t step_keys, step_cmds;
        uint8_t step_script_counted;
} conn_t;

struct krib_writer {
        const krib_conf_t *conf;
        krib_topo_t topo;
        int32_t *master_conn; /* topo master index -> conn index */
        size_t master_conn_cap;
        conn_t *conns;
        size_t conn_count, conn_cap;
        int need_refresh, refreshing;
        int64_t refreshed_at_us;
        krib_bg_t *bg; /* control work (connects, probes, refreshes, SCAN) */
        char refresh_err[KRIB_TOPO_HOST_MAX + 300]; /* the last refresh's failure */

        krib_writer_tick_cb *tick;
        void *tick_opaque;
        volatile sig_atomic_t *stop;
        int64_t drain_us;

        uint64_t rng;
        krib_retry_policies_t pol;
        krib_tls_t *tls;           /* NULL: plain TCP */
        krib_breaker_t cluster_br; /* cluster_state, slot map, every node unreachable */
        krib_writer_stats_t stats;
        unsigned refresh_failures;
        int64_t refresh_at_us; /* next refresh attempt after a failed one */

        job_t jobs[JOB_MAX];
        size_t jobs_live;
        /* Ops submitted or requeued since the last step (sent first), and
         * ops waiting for a time, a breaker or an earlier op on their key. */
        uint32_t *fresh, *queue;
        size_t nfresh, fresh_cap, nqueue, queue_cap;
        int64_t queue_due_us; /* earliest moment a queued op may be eligible */
        size_t inflight_ops;  /* sent or acked, not final */

        /* Ops not final, by key: a later job's op on the same key waits. */
        uint32_t *ktab;
        size_t ktab_cap, ktab_n;

        /* Step scratch. */
        uint32_t *send, *order, *tmp;
        size_t send_cap, nsend;
        uint32_t *slot_count; /* KRIB_SLOT_COUNT + 1 */
        const char **argv;
        size_t *argvlen;
        size_t argv_cap;
        char sha[41];
        char *nums; /* decimal strings of one script command */
        size_t nums_cap;
        int trouble;         /* this step met connection or transient trouble */
        int logged;          /* transient errors logged this step */
        struct pollfd *pfds; /* krib_writer_apply's poll set */
        size_t pfds_cap;
};

static inline rec_t *rec_of(krib_writer_t *w, uint32_t ref) {
        return &w->jobs[REF_JOB(ref)].recs[REF_IDX(ref)];
}

static int is_fenced(const krib_wop_t *op) {
        return op->kind == KRIB_WOP_DELETE || op->kind == KRIB_WOP_UPSERT ||
               op->kind == KRIB_WOP_INVALIDATE;
}

/* Given up: its job cancelled, or itself (krib_writer_op_cancel). */
static inline int op_cancelled(krib_writer_t *w, uint32_t ref) {
        return w->jobs[REF_JOB(ref)].cancelled || rec_of(w, ref)->cancelled;
}

/* Connection to the node announced as host:port (redis.address_map applied). */
static int conn_get(krib_writer_t *w, const char *announced, int announced_port) {
        krib_addr_t a;
        krib_addr_map_apply(w->conf->redis_address_map.v, w->conf->redis_address_map.n, announced,
                            announced_port, &a);
        const char *host = a.host;
        int port = a.port;
        for (size_t i = 0; i < w->conn_count; i++)
                if (w->conns[i].addr.port == port && !strcmp(w->conns[i].addr.host, host))
                        return (int)i;
        if (w->conn_count == w->conn_cap) {
                size_t cap = w->conn_cap ? w->conn_cap * 2 : 8;
                conn_t *c = realloc(w->conns, cap * sizeof(*c));
                if (!c)
                        return -1;
                w->conns = c;
                w->conn_cap = cap;
        }
        conn_t *c = &w->conns[w->conn_count];
        memset(c, 0, sizeof(*c));
        snprintf(c->addr.host, sizeof(c->addr.host), "%s", host);
        c->addr.port = port;
        snprintf(c->m.addr, sizeof(c->m.addr), "%.260s:%d", host, port);
        krib_breaker_init(&c->br);
        return (int)w->conn_count++;
}

/* Rebuilds master -> conn after the slot map changed. */
static int map_masters(krib_writer_t *w) {
        if (w->topo.master_count > w->master_conn_cap) {
                int32_t *m = realloc(w->master_conn, w->topo.master_count * sizeof(*m));
                if (!m)
                        return -1;
                w->master_conn = m;
                w->master_conn_cap = w->topo.master_count;
        }
        for (size_t i = 0; i < w->topo.master_count; i++) {
                int c = conn_get(w, w->topo.masters[i].host, w->topo.masters[i].port);
                if (c < 0)
                        return -1;
                w->master_conn[i] = c;
        }
        return 0;
}

/* Logs a breaker's transition (changed != 0) and keeps /readyz honest. */
static void breaker_note(krib_writer_t *w, const char *who, const krib_breaker_t *b, int changed) {
        if (!changed)
                return;
        if (b->state == KRIB_BREAKER_OPEN) {
                w->stats.healthy = 0;
                krib_log_warn("writer",
                              "msg=\"circuit breaker open\" node=%s reason=%s probe_in_ms=%" PRId64,
                              who, krib_retry_class_name((krib_err_class_t)b->reason),
                              (b->probe_at_us - krib_clock_mono_us()) / 1000);
        } else {
                krib_log_info("writer", "msg=\"circuit breaker %s\" node=%s",
                              b->state == KRIB_BREAKER_HALF_OPEN ? "half-open" : "closed", who);
                /* Ops held back by a breaker may go now (those still held
                 * by another are held again at once). */
                for (size_t i = 0; i < w->nqueue; i++) {
                        rec_t *r = rec_of(w, w->queue[i]);
                        if (r->held) {
                                r->held = 0;
                                r->due_us = 0;
                        }
                }
                w->queue_due_us = 0;
        }
}

static void queue_push(krib_writer_t *w, uint32_t ref, int64_t due_us);
static void complete(krib_writer_t *w, uint32_t ref, uint8_t result);

/* Back to the queue at due_us (a cancelled job's op ends instead). */
static void requeue_at(krib_writer_t *w, uint32_t ref, int64_t due_us, int failed) {
        rec_t *r = rec_of(w, ref);
        if (r->state == R_SENT || r->state == R_ACKED)
                w->inflight_ops--;
        if (op_cancelled(w, ref)) {
                complete(w, ref, KRIB_WOP_PENDING);
                return;
        }
        if (failed && r->attempt < UINT16_MAX)
                r->attempt++;
        r->state = R_QUEUED;
        queue_push(w, ref, due_us);
}

/* Back to the queue after a failure of class cls, or at once (cls < 0).
 * Ops that failed together go back together (one delay, by the most tried
 * among them), so they are sent again in one round. */
static void requeue_refs(krib_writer_t *w, const uint32_t *refs, size_t n, int cls) {
        unsigned attempt = 0;
        for (size_t i = 0; i < n; i++)
                if (rec_of(w, refs[i])->attempt > attempt)
                        attempt = rec_of(w, refs[i])->attempt;
        int64_t due = krib_clock_mono_us() +
                      (cls < 0 ? 0
                               : krib_retry_delay_us(&w->pol, (krib_err_class_t)cls, attempt,
                                                     krib_retry_rand(&w->rng)));
        for (size_t i = 0; i < n; i++)
                requeue_at(w, refs[i], due, cls >= 0);
}

static void requeue(krib_writer_t *w, uint32_t ref, int cls) {
        requeue_refs(w, &ref, 1, cls);
}

/* Everything on c's wire (and answered but not yet confirmed by WAIT) goes
 * back to the queue: its outcome is unknown, so it is sent again. */
static void conn_drop_inflight(krib_writer_t *w, conn_t *c) {
        requeue_refs(w, c->rq + c->rq_head, c->rq_tail - c->rq_head, KRIB_ERR_CONN);
        requeue_refs(w, c->acked, c->nacked, KRIB_ERR_CONN);
        c->rq_head = c->rq_tail = c->cq_head = c->cq_tail = c->nacked = 0;
        c->step_keys = c->step_cmds = 0;
}

/* A connection failure of c: the next connect waits, the breaker counts it. */
static void conn_backoff(krib_writer_t *w, conn_t *c) {
        int64_t now = krib_clock_mono_us();
        w->trouble = 1;
        c->retry_at_us = now + krib_retry_delay_us(&w->pol, KRIB_ERR_CONN, c->failures,
                                                   krib_retry_rand(&w->rng));
        c->failures++;
        breaker_note(w, c->m.addr, &c->br,
                     krib_breaker_failure(&c->br, &w->pol, KRIB_ERR_CONN, now,
                                          krib_retry_rand(&w->rng)));
}

static void conn_fail(krib_writer_t *w, conn_t *c, const char *why) {
        c->m.conn_failures++;
        c->m.err_class[KRIB_ERR_CONN]++;
        if (c->c) {
                krib_log_warn("writer", "msg=\"redis connection lost\" node=%s:%d error=\"%s\"",
                              c->addr.host, c->addr.port, why);
                krib_conn_free(c->c);
                c->c = NULL;
        }
        if (c->ctl) {
                krib_conn_free(c->ctl);
                c->ctl = NULL;
        }
        conn_drop_inflight(w, c);
        conn_backoff(w, c);
        /* A node that went away may have failed over: ask for the map again. */
        if (w->conf->redis_mode == KRIB_REDIS_CLUSTER)
                w->need_refresh = 1;
}

/* How long c's oldest pipelined command has waited for its reply; 0 when
 * none waits. */
static int64_t oldest_reply_wait_us(const conn_t *c) {
        if (!c->c || c->cq_head == c->cq_tail)
                return 0;
        return krib_clock_mono_us() - c->cq[c->cq_head].sent_us;
}

/* ---- control work, off the loop ----
 *
 * Everything that can wait on a node runs as a job on a helper thread
 * (bg.h): opening a connection (connect, TLS, AUTH, SCRIPT LOAD), breaker
 * probes (on a connection of their own), slot-map refreshes and SCAN pages
 * (on the node's control connection, handed to the job while it runs).
 * The loop starts them, polls krib_bg_wake_fd and applies their results in
 * krib_writer_step: a node that is slow to connect or answer never holds up
 * another node's traffic, and a frozen node costs the loop nothing. */

/* The fence script's load, judged from its reply (any thread). */
typedef enum {
        SCRIPT_LOADED,
        SCRIPT_NOT_YET, /* refused for now (LOADING, BUSY): fenced work waits */
        SCRIPT_REFUSED  /* refused for good (scripting off, NOPERM): fenced work fails */
} script_load_t;

static script_load_t script_reply(const redisReply *r, char *sha, char *why, size_t size) {
        if (r->type == REDIS_REPLY_STRING && r->len == 40) {
                memcpy(sha, r->str, 41);
                return SCRIPT_LOADED;
        }
        snprintf(why, size, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        return r->type == REDIS_REPLY_ERROR && krib_retry_classify(r->str, r->len) != KRIB_ERR_FINAL
                       ? SCRIPT_NOT_YET
                       : SCRIPT_REFUSED;
}

/* Applies a load's outcome to c (loop). */
static void script_loaded(krib_writer_t *w, conn_t *c, script_load_t s, const char *sha,
                          const char *why) {
        if (s == SCRIPT_LOADED) {
                memcpy(w->sha, sha, 41);
                c->script = 1;
                c->script_warned = 0;
                return;
        }
        c->script = s == SCRIPT_REFUSED ? -1 : 0;
        if (c->script < 0 || c->script_warned++ % 20 == 0)
                krib_log_warn("writer",
                              "msg=\"cannot load the fence script%s\" node=%s error=\"%s\"",
                              c->script < 0 ? "" : ", retrying", c->m.addr,
                              krib_log_esc(why, strlen(why)));
}

typedef enum { WJ_OPEN, WJ_PROBE, WJ_REFRESH, WJ_SCAN } wjob_kind_t;

typedef struct wjob {
        krib_bg_job_t bg; /* first: a taken job is cast back */
        const krib_conf_t *conf;
        krib_tls_t *tls;
        wjob_kind_t kind;
        int ci;         /* OPEN, PROBE, SCAN: the node's conn index (stable) */
        krib_addr_t at; /* OPEN, PROBE, SCAN: the address (mapped) */
        /* REFRESH: where to ask, in order (announced addresses), and
         * whether CLUSTER INFO must say ok too (the cluster breaker's probe). */
        krib_addr_t *cands;
        size_t ncands;
        int cluster_probe;
        /* SCAN. */
        char cursor[32], *pattern, next[32];
        long count;
        /* Results. */
        int ok;
        int stage; /* how far OPEN/PROBE got: 0 connect, 1 AUTH, 2 script, 3 probe */
        krib_conn_t *conn;
        script_load_t script;
        char sha[41];
        krib_topo_t topo;
        krib_scan_result_t scan;
        redisReply *keys;
        char err[KRIB_TOPO_HOST_MAX + 300];
} wjob_t;

/* connect + AUTH + SCRIPT LOAD (thread). */
static int job_open(wjob_t *j) {
        char sub[200];
        j->stage = 0;
        j->conn = krib_conn_connect(j->at.host, j->at.port, j->conf->redis_connect_timeout_ms,
                                    j->conf->redis_command_timeout_ms, j->tls, sub, sizeof(sub));
        if (!j->conn) {
                snprintf(j->err, sizeof(j->err), "%s", sub);
                return -1;
        }
        j->stage = 1;
        if (krib_conn_auth(j->conn, j->conf->redis_username, j->conf->redis_password, sub,
                           sizeof(sub))) {
                snprintf(j->err, sizeof(j->err), "%s", sub);
                return -1;
        }
        j->stage = 2;
        redisReply *r = krib_conn_command(j->conn, "SCRIPT LOAD %s", krib_fence_script);
        if (!r) {
                snprintf(j->err, sizeof(j->err), "%s", krib_conn_errstr(j->conn));
                return -1;
        }
        j->script = script_reply(r, j->sha, j->err, sizeof(j->err));
        freeReplyObject(r);
        return 0;
}

/* Value of "name:" in an INFO reply, or -1. */
static long long info_field(const char *info, const char *name) {
        size_t n = strlen(name);
        for (const char *p = info; p && *p; p = strchr(p, '\n')) {
                if (*p == '\n')
                        p++;
                if (!strncmp(p, name, n) && p[n] == ':')
                        return strtoll(p + n + 1, NULL, 10);
        }
        return -1;
}

/* One probe command (thread): 1 good, 0 bad, -1 not permitted (an ACL
 * without it: the probe does without). */
static int probe_cmd(wjob_t *j, const char *cmd) {
        redisReply *r = krib_conn_command(j->conn, cmd);
        if (!r) {
                snprintf(j->err, sizeof(j->err), "%s: %s", cmd, krib_conn_errstr(j->conn));
                return 0;
        }
        int ok;
        if (r->type == REDIS_REPLY_ERROR) {
                ok = !strncmp(r->str, "NOPERM", 6) ? -1 : 0;
                if (!ok)
                        snprintf(j->err, sizeof(j->err), "%s: %s", cmd, r->str);
        } else if (!strcmp(cmd, "CLUSTER INFO")) {
                ok = r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok") != NULL;
                if (!ok)
                        snprintf(j->err, sizeof(j->err), "CLUSTER INFO: cluster_state not ok");
        } else if (!strcmp(cmd, "INFO memory")) {
                long long used =
                        r->type == REDIS_REPLY_STRING ? info_field(r->str, "used_memory") : -1;
                long long max =
                        r->type == REDIS_REPLY_STRING ? info_field(r->str, "maxmemory") : -1;
                /* Full means writes still fail; eviction policies make room. */
                int noevict = r->type == REDIS_REPLY_STRING &&
                              strstr(r->str, "maxmemory_policy:noeviction") != NULL;
                ok = !(noevict && max > 0 && used >= max);
                if (!ok)
                        snprintf(j->err, sizeof(j->err),
                                 "redis is full: used_memory=%lld maxmemory=%lld", used, max);
        } else
                ok = r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        return ok;
}

static void job_probe(wjob_t *j) {
        if (job_open(j))
                return;
        j->stage = 3;
        static const char *const cluster_cmds[] = {"PING", "CLUSTER INFO", "INFO memory", NULL};
        static const char *const plain_cmds[] = {"PING", "INFO memory", NULL};
        const char *const *cmds =
                j->conf->redis_mode == KRIB_REDIS_CLUSTER ? cluster_cmds : plain_cmds;
        for (int i = 0; cmds[i]; i++)
                if (probe_cmd(j, cmds[i]) == 0)
                        return;
        j->ok = 1;
}

static void job_refresh(wjob_t *j) {
        for (size_t i = 0; i < j->ncands && !j->ok; i++) {
                char name[KRIB_TOPO_HOST_MAX + 8];
                snprintf(name, sizeof(name), "%s:%d", j->cands[i].host, j->cands[i].port);
                krib_conn_t *c =
                        krib_cluster_dial(j->conf, j->tls, &j->cands[i], j->err, sizeof(j->err));
                if (!c)
                        continue;
                krib_addr_t a;
                krib_addr_map_apply(j->conf->redis_address_map.v, j->conf->redis_address_map.n,
                                    j->cands[i].host, j->cands[i].port, &a);
                krib_topo_destroy(&j->topo);
                krib_topo_init(&j->topo);
                int got = krib_cluster_fetch_slots(c, name, a.host, &j->topo, j->err,
                                                   sizeof(j->err)) == 0;
                if (got) {
                        j->conn = c;
                        j->ok = !j->cluster_probe || probe_cmd(j, "CLUSTER INFO") != 0;
                        j->conn = NULL;
                }
                krib_conn_free(c);
                /* The cluster's state is the same wherever it is asked: one
                 * node that answered is the probe's verdict (the next one
                 * may be the frozen node that costs a command timeout). */
                if (got)
                        break;
        }
}

static void job_scan(wjob_t *j) {
        if (!j->conn) {
                krib_addr_t a = j->at; /* already mapped: dial maps again, a no-op */
                if (!(j->conn = krib_cluster_dial(j->conf, j->tls, &a, j->err, sizeof(j->err)))) {
                        j->scan = KRIB_SCAN_RETRY;
                        return;
                }
        }
        char cnt[24];
        snprintf(cnt, sizeof(cnt), "%ld", j->count);
        redisReply *r =
                krib_conn_command(j->conn, "SCAN %s MATCH %s COUNT %s", j->cursor, j->pattern, cnt);
        if (!r) {
                snprintf(j->err, sizeof(j->err), "%s", krib_conn_errstr(j->conn));
                krib_conn_free(j->conn);
                j->conn = NULL;
                j->scan = KRIB_SCAN_RETRY;
                return;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
                int final = r->type != REDIS_REPLY_ERROR ||
                            krib_retry_classify(r->str, r->len) == KRIB_ERR_FINAL;
                snprintf(j->err, sizeof(j->err), "%s",
                         r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
                freeReplyObject(r);
                j->scan = final ? KRIB_SCAN_REFUSED : KRIB_SCAN_RETRY;
                return;
        }
        snprintf(j->next, sizeof(j->next), "%s", r->element[0]->str);
        j->keys = r->element[1];
        r->element[1] = NULL; /* detached: the caller frees it */
        r->elements = 1;
        freeReplyObject(r);
        j->scan = KRIB_SCAN_OK;
}

static void job_run(krib_bg_job_t *b) {
        wjob_t *j = (wjob_t *)b;
        switch (j->kind) {
        case WJ_OPEN:
                j->ok = job_open(j) == 0;
                break;
        case WJ_PROBE:
                job_probe(j);
                break;
        case WJ_REFRESH:
                job_refresh(j);
                break;
        case WJ_SCAN:
                job_scan(j);
                break;
        }
}

static void job_free(wjob_t *j) {
        krib_conn_free(j->conn);
        krib_topo_destroy(&j->topo);
        if (j->keys)
                freeReplyObject(j->keys);
        free(j->cands);
        free(j->pattern);
        free(j);
}

static wjob_t *job_new(krib_writer_t *w, wjob_kind_t kind, int ci) {
        wjob_t *j = calloc(1, sizeof(*j));
        if (!j)
                return NULL;
        j->bg.run = job_run;
        j->conf = w->conf;
        j->tls = w->tls;
        j->kind = kind;
        j->ci = ci;
        if (ci >= 0)
                j->at = w->conns[ci].addr;
        krib_topo_init(&j->topo);
        return j;
}

static int job_start(krib_writer_t *w, wjob_t *j) {
        if (krib_bg_start(w->bg, &j->bg)) {
                job_free(j);
                return -1;
        }
        return 0;
}

/* The node's data connection: 0 ready; -1 not now (a connect runs in the
 * background, or the backoff waits; a connect is started when due). */
static int conn_ensure(krib_writer_t *w, conn_t *c) {
        if (c->c)
                return 0;
        if (c->setup || krib_clock_mono_us() < c->retry_at_us)
                return -1;
        wjob_t *j = job_new(w, WJ_OPEN, (int)(c - w->conns));
        if (j && job_start(w, j) == 0)
                c->setup = 1;
        return -1;
}

/* Ops held for c's connect go now: sent on it, or retried as failed. */
static void release_held(krib_writer_t *w, const conn_t *c) {
        int32_t ci = (int32_t)(c - w->conns);
        for (size_t i = 0; i < w->nqueue; i++) {
                rec_t *r = rec_of(w, w->queue[i]);
                int32_t m = r->ask_conn >= 0 ? -1 : w->topo.slot_owner[r->slot];
                int32_t to = r->ask_conn >= 0 ? r->ask_conn : m >= 0 ? w->master_conn[m] : -1;
                if (to == ci && !r->after)
                        r->due_us = 0;
        }
        w->queue_due_us = 0;
}

/* A data connection a job opened becomes c's. */
static void conn_adopt(krib_writer_t *w, conn_t *c, wjob_t *j) {
        c->c = j->conn;
        j->conn = NULL;
        script_loaded(w, c, j->script, j->sha, j->err);
        if (c->failures)
                w->stats.reconnects++;
        c->failures = 0;
        release_held(w, c);
}

static void open_failed(krib_writer_t *w, conn_t *c, wjob_t *j) {
        if (j->stage == 1)
                krib_log_error("writer", "msg=\"redis AUTH failed\" node=%s error=\"%s\"",
                               c->m.addr, j->err);
        else if (c->failures == 0 || c->failures % 20 == 0)
                krib_log_warn("writer", "msg=\"cannot %s redis\" node=%s error=\"%s\" attempt=%u",
                              j->stage == 0 ? "connect to" : "load the fence script on", c->m.addr,
                              j->err, c->failures + 1);
        conn_fail(w, c, j->err);
}

/* Known masters first (the map we have), then the configured seeds, each
 * once, none whose breaker is open and not yet due; masters whose
 * pipelined replies are overdue (frozen: they accept and never answer)
 * last. */
#define OVERDUE_US 250000
static size_t refresh_candidates(krib_writer_t *w, krib_addr_t *out, size_t max) {
        size_t n = 0, tries = w->topo.master_count + w->conf->redis_nodes.n;
        int64_t now = krib_clock_mono_us();
        for (int round = 0; round < 2; round++)
                for (size_t at = 0; at < tries && n < max; at++) {
                        krib_addr_t a;
                        int ci = -1;
                        if (at < w->topo.master_count) {
                                a = w->topo.masters[at];
                                ci = w->master_conn[at];
                        } else if (krib_addr_parse(
                                           w->conf->redis_nodes.v[at - w->topo.master_count], &a))
                                continue;
                        if (ci >= 0) {
                                const conn_t *c = &w->conns[ci];
                                int overdue = c->c && c->cq_head != c->cq_tail &&
                                              now - c->cq[c->cq_head].sent_us > OVERDUE_US;
                                if (overdue != round)
                                        continue;
                                if (c->br.state == KRIB_BREAKER_OPEN &&
                                    !krib_breaker_probe_due(&c->br, now))
                                        continue;
                        } else if (round)
                                continue;
                        int seen = 0;
                        for (size_t k = 0; k < n && !seen; k++)
                                seen = out[k].port == a.port && !strcmp(out[k].host, a.host);
                        if (!seen)
                                out[n++] = a;
                }
        return n;
}

static int refresh_start(krib_writer_t *w, int cluster_probe) {
        wjob_t *j = job_new(w, WJ_REFRESH, -1);
        size_t max = w->topo.master_count + w->conf->redis_nodes.n;
        if (!j || !(j->cands = calloc(max ? max : 1, sizeof(*j->cands)))) {
                if (j)
                        job_free(j);
                return -1;
        }
        j->ncands = refresh_candidates(w, j->cands, max);
        j->cluster_probe = cluster_probe;
        w->stats.refreshes++;
        if (job_start(w, j))
                return -1;
        w->refreshing = 1;
        return 0;
}

static void refresh_done(krib_writer_t *w, wjob_t *j) {
        w->refreshing = 0;
        int64_t now = krib_clock_mono_us();
        if (j->ok) {
                krib_topo_t t = w->topo;
                w->topo = j->topo;
                j->topo = t;
                w->queue_due_us = 0; /* ops held for a slot without owner may go */
                if (map_masters(w) == 0) {
                        w->need_refresh = 0;
                        w->refreshed_at_us = now;
                        w->refresh_failures = 0;
                        w->stats.healthy = 1;
                        krib_log_debug("writer",
                                       "msg=\"topology refreshed\" masters=%zu "
                                       "unassigned_slots=%zu",
                                       w->topo.master_count, krib_topo_unassigned(&w->topo));
                }
        } else {
                snprintf(w->refresh_err, sizeof(w->refresh_err), "%s",
                         j->ncands ? j->err : "every node's circuit breaker is open");
        }
        if (!j->ok && !j->cluster_probe) {
                w->refresh_at_us =
                        now + krib_retry_delay_us(&w->pol, KRIB_ERR_CONN, w->refresh_failures,
                                                  krib_retry_rand(&w->rng));
                if (w->refresh_failures++ % 20 == 0)
                        krib_log_warn("writer", "msg=\"topology refresh failed\" error=\"%s\"",
                                      w->refresh_err);
                breaker_note(w, "cluster", &w->cluster_br,
                             krib_breaker_failure(&w->cluster_br, &w->pol, KRIB_ERR_CONN, now,
                                                  krib_retry_rand(&w->rng)));
                w->trouble = 1;
        }
        if (j->cluster_probe)
                breaker_note(w, "cluster", &w->cluster_br,
                             krib_breaker_probed(&w->cluster_br, &w->pol, j->ok, now,
                                                 krib_retry_rand(&w->rng)));
}

static void probe_done(krib_writer_t *w, conn_t *c, wjob_t *j) {
        if (!j->ok && j->stage < 2) {
                c->m.conn_failures++;
                c->m.err_class[KRIB_ERR_CONN]++;
        }
        if (!j->ok && j->stage == 3 && strstr(j->err, "redis is full"))
                krib_log_info("writer", "msg=\"probe: %s\" node=%s", j->err, c->m.addr);
        if (j->ok && !c->c)
                conn_adopt(w, c, j);
        breaker_note(w, c->m.addr, &c->br,
                     krib_breaker_probed(&c->br, &w->pol, j->ok, krib_clock_mono_us(),
                                         krib_retry_rand(&w->rng)));
}

/* Applies what the helper threads finished. */
static void jobs_take(krib_writer_t *w) {
        krib_bg_job_t *b;
        while ((b = krib_bg_take(w->bg))) {
                wjob_t *j = (wjob_t *)b;
                conn_t *c = j->ci >= 0 ? &w->conns[j->ci] : NULL;
                switch (j->kind) {
                case WJ_OPEN:
                        c->setup = 0;
                        if (j->ok && !c->c)
                                conn_adopt(w, c, j);
                        else if (!j->ok) {
                                open_failed(w, c, j);
                                release_held(w, c);
                        }
                        break;
                case WJ_PROBE:
                        c->setup = 0;
                        probe_done(w, c, j);
                        break;
                case WJ_REFRESH:
                        refresh_done(w, j);
                        break;
                case WJ_SCAN:
                        c->scanning = 0;
                        if (!c->ctl) {
                                c->ctl = j->conn;
                                j->conn = NULL;
                        }
                        if (j->scan != KRIB_SCAN_OK)
                                krib_log_warn("writer",
                                              "msg=\"SCAN failed\" node=%s error=\"%s\" final=%s",
                                              c->m.addr, krib_log_esc(j->err, strlen(j->err)),
                                              j->scan == KRIB_SCAN_REFUSED ? "yes" : "no");
                        if (j->scan == KRIB_SCAN_RETRY && !c->ctl) {
                                c->m.conn_failures++;
                                c->m.err_class[KRIB_ERR_CONN]++;
                        }
                        if (c->scan_result)
                                job_free(c->scan_result);
                        c->scan_result = j; /* krib_writer_scan hands it over */
                        c->scan_result_age = 0;
                        continue;
                }
                job_free(j);
        }
}

/* Blocking (start-up): waits for every job and applies it. */
static void jobs_settle(krib_writer_t *w) {
        krib_bg_wait_all(w->bg);
        jobs_take(w);
}

int krib_writer_refresh(krib_writer_t *w, char *errstr, size_t errstr_size) {
        if (w->conf->redis_mode == KRIB_REDIS_STANDALONE) {
                /* Nothing to discover; connecting now surfaces a wrong
                 * address or password at start-up instead of first write. */
                w->need_refresh = 0;
                w->stats.refreshes++;
                conn_t *c = &w->conns[w->master_conn[0]];
                conn_ensure(w, c);
                jobs_settle(w);
                c = &w->conns[w->master_conn[0]];
                w->stats.healthy = c->c != NULL;
                if (!c->c) {
                        snprintf(errstr, errstr_size, "%s unreachable", c->m.addr);
                        return -1;
                }
                return 0;
        }
        snprintf(errstr, errstr_size, "every node's circuit breaker is open");
        if (!w->refreshing && refresh_start(w, 0)) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        unsigned failures = w->refresh_failures;
        jobs_settle(w);
        if (w->need_refresh || w->refresh_failures != failures) {
                snprintf(errstr, errstr_size, "%s", w->refresh_err);
                return -1;
        }
        return 0;
}

krib_writer_t *krib_writer_new(const krib_conf_t *conf, char *errstr, size_t errstr_size) {
        krib_writer_t *w = calloc(1, sizeof(*w));
        if (!w) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        w->conf = conf;
        krib_topo_init(&w->topo);
        krib_retry_policies_default(&w->pol);
        for (int c = 0; c < KRIB_ERR_CLASSES; c++)
                if (c != KRIB_ERR_REDIRECT) {
                        w->pol.cls[c].base_us = conf->redis_retry_base_ms * 1000;
                        w->pol.cls[c].cap_us = conf->redis_retry_cap_ms * 1000;
                }
        w->pol.cls[KRIB_ERR_CONN].budget = (unsigned)conf->redis_budget_conn;
        w->pol.cls[KRIB_ERR_BUSY].budget = (unsigned)conf->redis_budget_busy;
        w->pol.cls[KRIB_ERR_REDIRECT].budget = (unsigned)conf->redis_budget_redirect;
        w->pol.open_base_us = conf->redis_breaker_open_ms * 1000;
        w->pol.open_cap_us = conf->redis_breaker_open_max_ms * 1000;
        krib_breaker_init(&w->cluster_br);
        if (conf->redis_tls) {
                krib_tls_opts_t o = {conf->redis_tls_ca_file, conf->redis_tls_cert_file,
                                     conf->redis_tls_key_file, conf->redis_tls_server_name,
                                     (int)conf->redis_tls_verify};
                char sub[256];
                if (!(w->tls = krib_tls_new(&o, sub, sizeof(sub)))) {
                        snprintf(errstr, errstr_size, "redis.tls: %s", sub);
                        goto fail;
                }
        }
        w->rng = (uint64_t)krib_clock_mono_us() * 2654435761u + 1;
#ifdef KRIB_SIM
        w->bg = krib_bg_new(1); /* deterministic: control work runs inline */
#else
        w->bg = krib_bg_new(0);
#endif
        w->slot_count = calloc(KRIB_SLOT_COUNT + 1, sizeof(*w->slot_count));
        w->ktab_cap = 1024;
        w->ktab = malloc(w->ktab_cap * sizeof(*w->ktab));
        if (!w->slot_count || !w->ktab || !w->bg)
                goto oom;
        memset(w->ktab, 0xff, w->ktab_cap * sizeof(*w->ktab));
        for (size_t i = 0; i < conf->redis_nodes.n; i++) {
                krib_addr_t a;
                if (krib_addr_parse(conf->redis_nodes.v[i], &a)) {
                        snprintf(errstr, errstr_size, "redis.nodes: '%s' is not host:port",
                                 conf->redis_nodes.v[i]);
                        goto fail;
                }
                if (conn_get(w, a.host, a.port) < 0)
                        goto oom;
                if (conf->redis_mode == KRIB_REDIS_STANDALONE) {
                        if (krib_topo_load_standalone(&w->topo, &a) || map_masters(w))
                                goto oom;
                }
        }
        w->need_refresh = conf->redis_mode == KRIB_REDIS_CLUSTER;
        return w;
oom:
        snprintf(errstr, errstr_size, "out of memory");
fail:
        krib_writer_destroy(w);
        return NULL;
}

void krib_writer_set_stop(krib_writer_t *w, volatile sig_atomic_t *stop, int64_t drain_ms) {
        w->stop = stop;
        w->drain_us = drain_ms * 1000;
}

int krib_writer_masters(krib_writer_t *w, int slot, char (*addrs)[KRIB_ADDR_MAX], int max) {
        /* The map as it is: a refresh runs in the background when one is
         * wanted (krib_writer_step). */
        if (!w->topo.master_count) {
                w->need_refresh = w->conf->redis_mode == KRIB_REDIS_CLUSTER;
                return -1;
        }
        int n = 0;
        for (size_t m = 0; m < w->topo.master_count && (!addrs || n < max); m++) {
                if (slot >= 0 && w->topo.slot_owner[slot] != (int32_t)m)
                        continue;
                if (addrs)
                        snprintf(addrs[n], KRIB_ADDR_MAX, "%s", w->conns[w->master_conn[m]].m.addr);
                n++;
        }
        return n;
}

int krib_writer_master_slots(krib_writer_t *w, char (*addrs)[KRIB_ADDR_MAX], int *slots, int max) {
        /* The map as it is: never a refresh from here (the health poller asks
         * every few seconds, and a refresh blocks on an unreachable seed). */
        int n = 0;
        for (size_t m = 0; m < w->topo.master_count && (!addrs || n < max); m++, n++) {
                if (addrs)
                        snprintf(addrs[n], KRIB_ADDR_MAX, "%s", w->conns[w->master_conn[m]].m.addr);
                if (slots)
                        slots[n] = 0;
        }
        for (int s = 0; slots && n > 0 && s < KRIB_SLOT_COUNT; s++) {
                int32_t o = w->topo.slot_owner[s];
                if (o >= 0 && o < n)
                        slots[o]++;
        }
        return n;
}

krib_scan_result_t krib_writer_scan(krib_writer_t *w, const char *addr, const char *cursor,
                                    const char *pattern, long count, char *next, size_t next_size,
                                    redisReply **keys) {
        krib_addr_t a;
        if (krib_addr_parse(addr, &a))
                return KRIB_SCAN_RETRY;
        int ci = -1;
        for (size_t i = 0; i < w->conn_count && ci < 0; i++)
                if (!strcmp(w->conns[i].m.addr, addr))
                        ci = (int)i;
        if (ci < 0 && (ci = conn_get(w, a.host, a.port)) < 0)
                return KRIB_SCAN_RETRY;
        conn_t *c = &w->conns[ci];
        wjob_t *j = c->scan_result;
        if (j) {
                c->scan_result = NULL;
                krib_scan_result_t res = KRIB_SCAN_PENDING;
                if (!strcmp(j->cursor, cursor) && !strcmp(j->pattern, pattern)) {
                        res = j->scan;
                        if (res == KRIB_SCAN_OK) {
                                snprintf(next, next_size, "%s", j->next);
                                *keys = j->keys;
                                j->keys = NULL;
                        }
                }
                job_free(j);
                if (res != KRIB_SCAN_PENDING)
                        return res;
        }
        if (c->scanning)
                return KRIB_SCAN_PENDING;
        if (!krib_breaker_allows(&c->br, 0))
                return KRIB_SCAN_RETRY;
        if (!(j = job_new(w, WJ_SCAN, ci)) || !(j->pattern = strdup(pattern))) {
                if (j)
                        job_free(j);
                return KRIB_SCAN_RETRY;
        }
        snprintf(j->cursor, sizeof(j->cursor), "%s", cursor);
        j->count = count;
        j->conn = c->ctl;
        c->ctl = NULL;
        if (job_start(w, j))
                return KRIB_SCAN_RETRY;
        c->scanning = 1;
        return KRIB_SCAN_PENDING;
}

int krib_writer_nodes(const krib_writer_t *w, krib_writer_node_t **out, size_t *cap) {
        if (krib_util_grow(out, cap, w->conn_count ? w->conn_count : 1, sizeof(**out)))
                return -1;
        for (size_t i = 0; i < w->conn_count; i++) {
                krib_writer_node_t *o = &(*out)[i];
                *o = w->conns[i].m;
                o->breaker = w->conns[i].br.state;
                memcpy(o->breaker_entered, w->conns[i].br.entered, sizeof(o->breaker_entered));
        }
        return (int)w->conn_count;
}

void krib_writer_set_tick(krib_writer_t *w, krib_writer_tick_cb *cb, void *opaque) {
        w->tick = cb;
        w->tick_opaque = opaque;
}

const krib_writer_stats_t *krib_writer_stats(const krib_writer_t *w) {
        krib_writer_stats_t *s = (krib_writer_stats_t *)&w->stats;
        s->cluster_breaker = w->cluster_br.state;
        memcpy(s->cluster_breaker_entered, w->cluster_br.entered,
               sizeof(s->cluster_breaker_entered));
        s->inflight_ops = w->inflight_ops;
        s->queued_ops = w->nqueue + w->nfresh;
        return &w->stats;
}

void krib_writer_destroy(krib_writer_t *w) {
        if (!w)
                return;
        free(w->pfds);
        if (w->bg) {
                krib_bg_wait_all(w->bg);
                krib_bg_job_t *b;
                while ((b = krib_bg_take(w->bg)))
                        job_free((wjob_t *)b);
                krib_bg_destroy(w->bg);
        }
        for (size_t i = 0; i < w->conn_count; i++) {
                conn_t *c = &w->conns[i];
                if (c->scan_result)
                        job_free(c->scan_result);
                krib_conn_free(c->c);
                krib_conn_free(c->ctl);
                free(c->cq);
                free(c->rq);
                free(c->acked);
        }
        free(w->conns);
        free(w->master_conn);
        krib_topo_destroy(&w->topo);
        for (int j = 0; j < JOB_MAX; j++) {
                free(w->jobs[j].recs);
                free(w->jobs[j].fkeys);
                free(w->jobs[j].kcopy);
        }
        free(w->fresh);
        free(w->queue);
        free(w->ktab);
        free(w->send);
        free(w->order);
        free(w->tmp);
        free(w->slot_count);
        free(w->argv);
        free(w->argvlen);
        free(w->nums);
        krib_tls_destroy(w->tls);
        free(w);
}

/* ---- jobs, the key table and completions ---- */

static uint64_t key_hash(const char *s, size_t len) {
        uint64_t h = 1469598103934665603ULL;
        for (size_t i = 0; i < len; i++) {
                h ^= (uint8_t)s[i];
                h *= 1099511628211ULL;
        }
        return h;
}

static void ktab_insert(krib_writer_t *w, uint32_t ref) {
        rec_t *r = rec_of(w, ref);
        size_t b = r->hash & (w->ktab_cap - 1);
        r->hnext = w->ktab[b];
        w->ktab[b] = ref;
        r->in_table = 1;
        w->ktab_n++;
}

static void ktab_remove(krib_writer_t *w, uint32_t ref) {
        rec_t *r = rec_of(w, ref);
        if (!r->in_table)
                return;
        uint32_t *at = &w->ktab[r->hash & (w->ktab_cap - 1)];
        while (*at != NONE && *at != ref)
                at = &rec_of(w, *at)->hnext;
        if (*at == ref)
                *at = r->hnext;
        r->in_table = 0;
        w->ktab_n--;
}

/* Keeps the table at most half full; rehashes every live entry. */
static int ktab_reserve(krib_writer_t *w, size_t more) {
        if (2 * (w->ktab_n + more) <= w->ktab_cap)
                return 0;
        size_t cap = w->ktab_cap;
        while (2 * (w->ktab_n + more) > cap)
                cap *= 2;
        uint32_t *t = malloc(cap * sizeof(*t));
        if (!t)
                return -1;
        memset(t, 0xff, cap * sizeof(*t));
        uint32_t *old = w->ktab;
        size_t old_cap = w->ktab_cap;
        w->ktab = t;
        w->ktab_cap = cap;
        w->ktab_n = 0;
        for (size_t b = 0; b < old_cap; b++)
                for (uint32_t ref = old[b], next; ref != NONE; ref = next) {
                        next = rec_of(w, ref)->hnext;
                        ktab_insert(w, ref);
                }
        free(old);
        return 0;
}

/* The newest op not final on this key, or NONE. */
static uint32_t ktab_find(krib_writer_t *w, uint64_t hash, const char *key, size_t len) {
        for (uint32_t ref = w->ktab[hash & (w->ktab_cap - 1)]; ref != NONE;
             ref = rec_of(w, ref)->hnext) {
                const rec_t *r = rec_of(w, ref);
                if (r->hash == hash && r->op.len == len && !memcmp(r->op.key, key, len))
                        return ref;
        }
        return NONE;
}

static int push_ref(uint32_t **v, size_t *n, size_t *cap, uint32_t ref) {
        if (*n == *cap) {
                size_t c = *cap ? *cap * 2 : 1024;
                uint32_t *p = realloc(*v, c * sizeof(*p));
                if (!p)
                        return -1;
                *v = p;
                *cap = c;
        }
        (*v)[(*n)++] = ref;
        return 0;
}

/* Space is reserved at submit for every op of every live job, so these
 * pushes cannot fail. */
static void queue_push(krib_writer_t *w, uint32_t ref, int64_t due_us) {
        rec_of(w, ref)->due_us = due_us;
        if (due_us <= krib_clock_mono_us()) {
                w->fresh[w->nfresh++] = ref;
                return;
        }
        w->queue[w->nqueue++] = ref;
        if (due_us < w->queue_due_us)
                w->queue_due_us = due_us;
}

static void complete(krib_writer_t *w, uint32_t ref, uint8_t result) {
        job_t *j = &w->jobs[REF_JOB(ref)];
        rec_t *r = rec_of(w, ref);
        if (r->state == R_FINAL)
                return;
        r->state = R_FINAL;
        if (r->fallback && result != KRIB_WOP_PENDING)
                result = KRIB_WOP_FAILED; /* its key was unlinked, its own work refused */
        r->result = result;
        if (j->status)
                j->status[REF_IDX(ref)] = result;
        if (result != KRIB_WOP_PENDING && result != KRIB_WOP_FAILED) {
                int key_op = r->op.kind == KRIB_WOP_UNLINK || is_fenced(&r->op);
                w->stats.keys += key_op;
                w->stats.fanouts += !key_op;
                w->stats.fence_stale += result == KRIB_WOP_STALE;
                w->stats.fence_concurrent += result == KRIB_WOP_INVALIDATED;
                w->stats.uncached += result == KRIB_WOP_UNCACHED;
        }
        ktab_remove(w, ref);
        if (r->succ != NONE) {
                rec_of(w, r->succ)->after = 0;
                w->queue_due_us = 0;
                r->succ = NONE;
        }
        j->left--;
        if (j->cancelled && !j->left) {
                j->used = 0;
                w->jobs_live--;
        }
}

/* Turns a fenced op into a plain UNLINK of its key, sent alone: with
 * redis.fence=versioned its fence key goes too (a fill's lease must not
 * survive), otherwise the fence stays (it still orders older writes). */
static void to_fallback(krib_writer_t *w, rec_t *r) {
        r->fallback = 1;
        r->solo = 1;
        r->op.kind = KRIB_WOP_UNLINK;
        if (w->conf->redis_fence != KRIB_FENCE_VERSIONED)
                r->fkey_len = 0;
}

static int name_fence(krib_writer_t *w, job_t *j, rec_t *r, size_t *at) {
        r->fkey_off = (uint32_t)*at;
        r->fkey_len = 0;
        if (r->op.kind == KRIB_WOP_UNLINK && w->conf->redis_fence == KRIB_FENCE_VERSIONED) {
                /* Its fence goes with it; a key that cannot have one (no hash
                 * tag and a '}') is unlinked alone. */
                int l = r->op.len <= UINT16_MAX - 16
                                ? krib_fence_key(r->op.key, r->op.len, j->fkeys + *at,
                                                 j->fkeys_cap - *at)
                                : -1;
                if (l > 0) {
                        r->fkey_len = (uint16_t)l;
                        *at += (size_t)l;
                }
                return 0;
        }
        if (!is_fenced(&r->op))
                return 0;
        int l = r->op.len <= UINT16_MAX - 16
                        ? krib_fence_key(r->op.key, r->op.len, j->fkeys + *at, j->fkeys_cap - *at)
                        : -1;
        if (l < 0) {
                krib_log_error("writer",
                               "msg=\"key cannot carry a version fence (%s)\" "
                               "key=\"%s\" bytes=%zu",
                               r->op.len > UINT16_MAX - 16 ? "longer than 65519 bytes"
                                                           : "no hash tag and contains '}'",
                               krib_log_esc(r->op.key, r->op.len), r->op.len);
                w->stats.errors++;
                return -1;
        }
        r->fkey_len = (uint16_t)l;
        *at += (size_t)l;
        return 0;
}

static int is_fanout(const krib_wop_t *op) {
        return op->kind == KRIB_WOP_PUBLISH || op->kind == KRIB_WOP_XADD;
}

int krib_writer_submit(krib_writer_t *w, const krib_wop_t *ops, size_t n, uint8_t *status) {
        if (n > IDX_MAX)
                return -1;
        int id = -1;
        for (int i = 0; i < JOB_MAX && id < 0; i++)
                if (!w->jobs[i].used)
                        id = i;
        if (id < 0)
                return -1;
        job_t *j = &w->jobs[id];
        size_t total = 0;
        int versioned = w->conf->redis_fence == KRIB_FENCE_VERSIONED;
        for (size_t i = 0; i < n; i++)
                if (is_fenced(&ops[i]) || (versioned && ops[i].kind == KRIB_WOP_UNLINK))
                        total += ops[i].len + 16;
        size_t live = w->inflight_ops + w->nqueue + w->nfresh + n;
        size_t qc = w->queue_cap, fc = w->fresh_cap;
        if (krib_util_grow(&j->recs, &j->cap, n ? n : 1, sizeof(*j->recs)) ||
            krib_util_grow(&j->fkeys, &j->fkeys_cap, total ? total : 1, 1) ||
            krib_util_grow(&w->queue, &qc, live, sizeof(*w->queue)) ||
            krib_util_grow(&w->fresh, &fc, live, sizeof(*w->fresh)) || ktab_reserve(w, n))
                return -1;
        w->queue_cap = qc;
        w->fresh_cap = fc;
        memset(status, KRIB_WOP_PENDING, n);
        j->used = 1;
        j->cancelled = 0;
        j->status = status;
        j->n = n;
        j->left = n;
        w->jobs_live++;
        size_t at = 0;
        int64_t now = krib_clock_mono_us();
        for (size_t i = 0; i < n; i++) {
                rec_t *r = &j->recs[i];
                uint32_t ref = REF(id, i);
                memset(r, 0, sizeof(*r));
                r->op = ops[i];
                r->succ = r->hnext = NONE;
                r->ask_conn = -1;
                r->slot = (uint16_t)krib_slot_of(ops[i].key, ops[i].len);
                r->hash = key_hash(ops[i].key, ops[i].len);
                r->state = R_QUEUED;
                if (name_fence(w, j, r, &at))
                        to_fallback(w, r);
                /* Order per key: an op waits until the op before it on its
                 * key is final, in submission order, within a job too (the
                 * pipeline coalesces per partition, so two partitions'
                 * events name one key in one job). Fan-out ops of one job
                 * are not chained: they keep their order inside a command
                 * run, and a chain would cost a round trip each. */
                uint32_t prev = ktab_find(w, r->hash, ops[i].key, ops[i].len);
                int chain = prev != NONE && (REF_JOB(prev) != (uint32_t)id || !is_fanout(&ops[i]));
                if (chain) {
                        rec_t *pr = rec_of(w, prev);
                        pr->succ = ref;
                        r->after = 1;
                        ktab_remove(w, prev);
                }
                if (prev == NONE || chain)
                        ktab_insert(w, ref);
                if (r->after) {
                        w->queue[w->nqueue++] = ref;
                        r->due_us = now;
                } else {
                        w->fresh[w->nfresh++] = ref;
                }
        }
        if (!j->left) {
                /* Nothing to send: the caller still releases it. */
        }
        return id;
}

size_t krib_writer_job_left(const krib_writer_t *w, int job) {
        return job >= 0 && job < JOB_MAX ? w->jobs[job].left : 0;
}

void krib_writer_job_release(krib_writer_t *w, int job) {
        if (job < 0 || job >= JOB_MAX || !w->jobs[job].used)
                return;
        if (w->jobs[job].left) {
                krib_writer_job_cancel(w, job);
                return;
        }
        w->jobs[job].used = 0;
        w->jobs[job].status = NULL;
        w->jobs_live--;
}

void krib_writer_job_cancel(krib_writer_t *w, int job) {
        if (job < 0 || job >= JOB_MAX || !w->jobs[job].used || w->jobs[job].cancelled)
                return;
        job_t *j = &w->jobs[job];
        j->cancelled = 1;
        j->status = NULL;
        /* Ops that stay (see below) keep their keys in the key table: copy
         * them, the caller's memory is not read again. Without the memory,
         * they leave the table as before (order then rests on the fence). */
        size_t need = 0, at = 0;
        for (size_t i = 0; i < j->n; i++)
                if (j->recs[i].state != R_FINAL)
                        need += j->recs[i].op.len;
        int copied = krib_util_grow(&j->kcopy, &j->kcopy_cap, need ? need : 1, 1) == 0;
        /* Ops on the wire end with their reply; queued ops waiting for an
         * earlier op on their key stay as placeholders until it is final
         * (release_queue ends them then), so the chain of ops on that key
         * is never cut and no later op overtakes the earlier one; other
         * queued ops end now. The slot is reused only when all have ended. */
        for (size_t i = 0; i < j->n; i++) {
                rec_t *r = &j->recs[i];
                if (r->state == R_FINAL)
                        continue;
                if (r->state == R_QUEUED && !r->after) {
                        complete(w, REF(job, i), KRIB_WOP_PENDING);
                        continue;
                }
                if (!copied) {
                        ktab_remove(w, REF(job, i));
                        if (r->state == R_QUEUED)
                                complete(w, REF(job, i), KRIB_WOP_PENDING);
                        continue;
                }
                memcpy(j->kcopy + at, r->op.key, r->op.len);
                r->op.key = j->kcopy + at;
                r->op.ev = NULL;
                at += r->op.len;
        }
        /* Its ended refs leave the send lists now; placeholders stay queued. */
        size_t keep = 0;
        for (size_t i = 0; i < w->nqueue; i++)
                if (REF_JOB(w->queue[i]) != (uint32_t)job ||
                    rec_of(w, w->queue[i])->state != R_FINAL)
                        w->queue[keep++] = w->queue[i];
        w->nqueue = keep;
        keep = 0;
        for (size_t i = 0; i < w->nfresh; i++)
                if (REF_JOB(w->fresh[i]) != (uint32_t)job)
                        w->fresh[keep++] = w->fresh[i];
        w->nfresh = keep;
        /* complete() already freed the slot when it ended the last op. */
        if (j->used && !j->left) {
                j->used = 0;
                w->jobs_live--;
        }
}

void krib_writer_op_cancel(krib_writer_t *w, int job, size_t i) {
        if (job < 0 || job >= JOB_MAX || !w->jobs[job].used || w->jobs[job].cancelled ||
            i >= w->jobs[job].n)
                return;
        rec_t *r = &w->jobs[job].recs[i];
        if (r->state == R_FINAL || r->cancelled)
                return;
        r->cancelled = 1;
        /* As a job's cancel does, op by op: queued and free to go, it ends
         * now; waiting for an earlier op on its key, it stays a placeholder
         * until that one is final; on the wire, it ends with its reply and
         * is not retried. Its key stays the caller's until the job is
         * released, so nothing is copied. */
        if (r->state == R_QUEUED && !r->after) {
                uint32_t ref = REF(job, i);
                complete(w, ref, KRIB_WOP_PENDING);
                /* Out of the send lists now: left there, it would name a
                 * new op once the job's slot is reused (sent twice, and
                 * counted in flight for good). */
                size_t keep = 0;
                for (size_t x = 0; x < w->nqueue; x++)
                        if (w->queue[x] != ref)
                                w->queue[keep++] = w->queue[x];
                w->nqueue = keep;
                keep = 0;
                for (size_t x = 0; x < w->nfresh; x++)
                        if (w->fresh[x] != ref)
                                w->fresh[keep++] = w->fresh[x];
                w->nfresh = keep;
        }
}

size_t krib_writer_jobs_live(const krib_writer_t *w) {
        return w->jobs_live;
}

/* ---- commands ---- */

/* redis.fence=versioned: every invalidation is a plain UNLINK of the key
 * and its fence (a value's version, or a fill's lease): nothing is left
 * behind and no script runs. */
static int mode_of(const krib_writer_t *w, const krib_wop_t *op) {
        if (op->kind == KRIB_WOP_UNLINK ||
            (op->kind == KRIB_WOP_DELETE && w->conf->redis_fence == KRIB_FENCE_VERSIONED))
                return MODE_PLAIN;
        return is_fenced(op) ? MODE_FENCED : MODE_FANOUT;
}

/* About what an op adds to its command: key, fence key, value, vector. */
static size_t op_bytes(const krib_wop_t *op) {
        size_t n = 2 * op->len + 48;
        if (op->ev && op->kind != KRIB_WOP_UNLINK) {
                n += op->kind == KRIB_WOP_UPSERT ? op->ev->value.len : 0;
                for (size_t v = 0; v < op->ev->version_count; v++)
                        n += op->ev->version[v].origin.len + 32;
        }
        return n;
}

/* Whether refs[i..j) holds work that needs memory (anything but UNLINK). */
static int has_fenced(krib_writer_t *w, const uint32_t *refs, size_t i, size_t j) {
        for (size_t x = i; x < j; x++)
                if (mode_of(w, &rec_of(w, refs[x])->op) != MODE_PLAIN)
                        return 1;
        return 0;
}

/* Appends one UNLINK (plain), EVALSHA (fenced) or PUBLISH/XADD (fan-out,
 * one op) for refs[0..n). */
static int append(krib_writer_t *w, krib_conn_t *c, const uint32_t *refs, size_t n, int mode) {
        if (mode == MODE_FANOUT) {
                const krib_wop_t *op = &rec_of(w, refs[0])->op;
                const krib_str_t *note = &op->ev->note;
                if (op->kind == KRIB_WOP_PUBLISH) {
                        const char *argv[] = {"PUBLISH", op->key, note->s};
                        size_t lens[] = {7, op->len, note->len};
                        return krib_conn_append(c, 3, argv, lens);
                }
                char maxlen[24];
                int ml = snprintf(maxlen, sizeof(maxlen), "%" PRId64, op->ev->stream_maxlen);
                const char *argv[] = {"XADD", op->key, "MAXLEN", "~",
                                      maxlen, "*",     "event",  note->s};
                size_t lens[] = {4, op->len, 6, 1, (size_t)ml, 1, 5, note->len};
                return krib_conn_append(c, 8, argv, lens);
        }
        int fenced = mode == MODE_FENCED;
        size_t argc = 0, need = 2 + 2 * n;
        if (fenced) {
                need = 4 + 2 * n + 2;
                size_t nums = 0;
                for (size_t x = 0; x < n; x++) {
                        const krib_event_t *ev = rec_of(w, refs[x])->op.ev;
                        need += 4 + 2 * ev->version_count;
                        nums += 48 + 21 * ev->version_count;
                }
                if (krib_util_grow(&w->nums, &w->nums_cap, nums, 1))
                        return -1;
        }
        size_t cap = w->argv_cap;
        if (krib_util_grow(&w->argv, &cap, need, sizeof(*w->argv)) ||
            krib_util_grow(&w->argvlen, &w->argv_cap, need, sizeof(*w->argvlen)))
                return -1;
#define ARG(p, l)                                                                                  \
        do {                                                                                       \
                w->argv[argc] = (p);                                                               \
                w->argvlen[argc++] = (l);                                                          \
        } while (0)
        if (!fenced) {
                ARG("UNLINK", 6);
                for (size_t x = 0; x < n; x++) {
                        const rec_t *r = rec_of(w, refs[x]);
                        ARG(r->op.key, r->op.len);
                        if (r->fkey_len)
                                ARG(w->jobs[REF_JOB(refs[x])].fkeys + r->fkey_off, r->fkey_len);
                }
        } else {
                char *num = w->nums;
#define NUM(v)                                                                                     \
        do {                                                                                       \
                int l_ = sprintf(num, "%" PRId64, (int64_t)(v));                                   \
                ARG(num, (size_t)l_);                                                              \
                num += l_ + 1;                                                                     \
        } while (0)
                ARG("EVALSHA", 7);
                ARG(w->sha, 40);
                NUM(2 * n);
                for (size_t x = 0; x < n; x++) {
                        const rec_t *r = rec_of(w, refs[x]);
                        ARG(r->op.key, r->op.len);
                }
                for (size_t x = 0; x < n; x++) {
                        const rec_t *r = rec_of(w, refs[x]);
                        ARG(w->jobs[REF_JOB(refs[x])].fkeys + r->fkey_off, r->fkey_len);
                }
                ARG(w->conf->redis_fence == KRIB_FENCE_VERSIONED ? "V" : "A", 1);
                NUM(w->conf->redis_fence_ttl_ms);
                for (size_t x = 0; x < n; x++) {
                        const krib_wop_t *op = &rec_of(w, refs[x])->op;
                        const krib_event_t *ev = op->ev;
                        ARG(op->kind == KRIB_WOP_INVALIDATE ? "I"
                            : op->kind != KRIB_WOP_UPSERT   ? "D"
                            : ev->value_hash                ? "H"
                                                            : "U",
                            1);
                        if (op->kind == KRIB_WOP_UPSERT && ev->value.s)
                                ARG(ev->value.s, ev->value.len);
                        else
                                ARG("", 0);
                        NUM(op->kind == KRIB_WOP_UPSERT && ev->ttl_ms > 0 ? ev->ttl_ms : 0);
                        NUM(ev->version_count);
                        for (size_t v = 0; v < ev->version_count; v++) {
                                ARG(ev->version[v].origin.s, ev->version[v].origin.len);
                                NUM(ev->version[v].counter);
                        }
                }
#undef NUM
        }
#undef ARG
        return krib_conn_append(c, (int)argc, w->argv, w->argvlen);
}

static int grow_ring(void **v, size_t *head, size_t *tail, size_t *cap, size_t more, size_t elem) {
        if (*tail + more <= *cap)
                return 0;
        if (*head) { /* consumed prefix: slide down first */
                memmove(*v, (char *)*v + *head * elem, (*tail - *head) * elem);
                *tail -= *head;
                *head = 0;
                if (*tail + more <= *cap)
                        return 0;
        }
        size_t c = *cap ? *cap : 64;
        while (c < *tail + more)
                c *= 2;
        void *p = realloc(*v, c * elem);
        if (!p)
                return -1;
        *v = p;
        *cap = c;
        return 0;
}

/* Records a command appended to c carrying refs[0..n). */
static int push_cmd(krib_writer_t *w, conn_t *c, const uint32_t *refs, size_t n, int mode) {
        void *cq = c->cq, *rq = c->rq;
        if (grow_ring(&cq, &c->cq_head, &c->cq_tail, &c->cq_cap, 1, sizeof(cmd_t)))
                return -1;
        c->cq = cq;
        if (grow_ring(&rq, &c->rq_head, &c->rq_tail, &c->rq_cap, n, sizeof(uint32_t)))
                return -1;
        c->rq = rq;
        cmd_t *cmd = &c->cq[c->cq_tail++];
        memset(cmd, 0, sizeof(*cmd));
        cmd->nrefs = (uint32_t)n;
        cmd->mode = (uint8_t)mode;
        for (size_t i = 0; i < n; i++) {
                c->rq[c->rq_tail++] = refs[i];
                rec_t *r = rec_of(w, refs[i]);
                r->state = R_SENT;
                w->inflight_ops++;
        }
        c->step_keys += (uint32_t)n;
        c->step_cmds++;
        return 0;
}

static void fail_refs(krib_writer_t *w, conn_t *c, const uint32_t *refs, size_t n,
                      const char *what) {
        w->stats.errors++;
        c->m.errors++;
        c->m.err_class[KRIB_ERR_CLASSES]++;
        const krib_wop_t *op = &rec_of(w, refs[0])->op;
        krib_log_error("writer",
                       "msg=\"redis refused %s\" node=%s:%d key=\"%s\" keys=%zu error=\"%s\"",
                       is_fenced(op)                 ? "fenced write"
                       : op->kind == KRIB_WOP_UNLINK ? "UNLINK"
                                                     : "fan-out",
                       c->addr.host, c->addr.port,
                       w->jobs[REF_JOB(refs[0])].cancelled ? "(cancelled)"
                                                           : krib_log_esc(op->key, op->len),
                       n, krib_log_esc(what, strlen(what)));
        for (size_t y = 0; y < n; y++) {
                rec_t *r = rec_of(w, refs[y]);
                if (is_fenced(&r->op) && !op_cancelled(w, refs[y])) {
                        /* Fail safe: the key is unlinked before the op is
                         * reported FAILED, so no older value stays cached. */
                        krib_log_warn("writer",
                                      "msg=\"fenced write refused for good: unlinking the key "
                                      "instead\" key=\"%s\"",
                                      krib_log_esc(r->op.key, r->op.len));
                        to_fallback(w, r);
                        requeue(w, refs[y], -1);
                        continue;
                }
                if (r->state == R_SENT || r->state == R_ACKED)
                        w->inflight_ops--;
                complete(w, refs[y], KRIB_WOP_FAILED);
        }
}

/* A reply's outcome for one op: final now, or once the round's WAIT saw
 * enough replicas. */
static void answered(krib_writer_t *w, conn_t *c, uint32_t ref, uint8_t result) {
        rec_t *r = rec_of(w, ref);
        if (w->conf->redis_wait_replicas > 0 && result != KRIB_WOP_FAILED &&
            !op_cancelled(w, ref)) {
                r->state = R_ACKED;
                r->result = result;
                if (push_ref(&c->acked, &c->nacked, &c->acked_cap, ref) == 0)
                        return;
                /* No memory to wait: send it again later, it is idempotent. */
                requeue(w, ref, KRIB_ERR_BUSY);
                return;
        }
        w->inflight_ops--;
        complete(w, ref, result);
}

/* Fenced work for a node whose script is not loaded yet: back to the queue
 * as a transient failure of class busy (at most one breaker failure per
 * node and step). */
static void script_wait(krib_writer_t *w, conn_t *c, const uint32_t *refs, size_t n) {
        if (!c->step_script_counted) {
                int64_t now = krib_clock_mono_us();
                breaker_note(w, c->m.addr, &c->br,
                             krib_breaker_failure(&c->br, &w->pol, KRIB_ERR_BUSY, now,
                                                  krib_retry_rand(&w->rng)));
                c->step_script_counted = 1;
                w->stats.retries++;
        }
        w->trouble = 1;
        requeue_refs(w, refs, n, KRIB_ERR_BUSY);
}

/* Applies one reply to the ops of its command (refs[0..n)). */
static void on_reply(krib_writer_t *w, size_t ci, const cmd_t *cmd, const uint32_t *refs,
                     redisReply *r) {
        conn_t *c = &w->conns[ci];
        size_t n = cmd->nrefs;
        w->stats.commands++;
        if (r->type != REDIS_REPLY_ERROR)
                breaker_note(w, c->m.addr, &c->br, krib_breaker_success(&c->br));
        if ((cmd->mode == MODE_FANOUT &&
             (r->type == REDIS_REPLY_INTEGER || r->type == REDIS_REPLY_STRING)) ||
            (cmd->mode == MODE_PLAIN && r->type == REDIS_REPLY_INTEGER)) {
                for (size_t y = 0; y < n; y++)
                        answered(w, c, refs[y], KRIB_WOP_OK);
                return;
        }
        if (r->type == REDIS_REPLY_ARRAY && cmd->mode == MODE_FENCED && r->elements == n) {
                w->stats.scripts++;
                for (size_t y = 0; y < n; y++) {
                        long long v = r->element[y]->type == REDIS_REPLY_INTEGER
                                              ? r->element[y]->integer
                                              : -1;
                        answered(w, c, refs[y],
                                 v == 1   ? KRIB_WOP_OK
                                 : v == 0 ? KRIB_WOP_STALE
                                 : v == 2 ? KRIB_WOP_INVALIDATED
                                 : v == 3 ? KRIB_WOP_UNCACHED
                                          : KRIB_WOP_FAILED);
                }
                return;
        }
        if (r->type != REDIS_REPLY_ERROR) {
                fail_refs(w, c, refs, n, "unexpected reply type");
                return;
        }
        int slot;
        krib_err_class_t cls;
        krib_addr_t to;
        krib_redirect_t red = krib_topo_parse_redirect(r->str, r->len, &slot, &to);
        if (red != KRIB_REDIRECT_NONE && !to.host[0])
                snprintf(to.host, sizeof(to.host), "%s", c->addr.host);
        if (red == KRIB_REDIRECT_MOVED || red == KRIB_REDIRECT_ASK) {
                c->m.err_class[KRIB_ERR_REDIRECT]++;
                krib_log_debug("writer",
                               "msg=\"redirected\" kind=%s slot=%d from=%s to=%s:%d keys=%zu",
                               red == KRIB_REDIRECT_MOVED ? "moved" : "ask", slot, c->m.addr,
                               to.host, to.port, n);
                int32_t ask = -1;
                if (red == KRIB_REDIRECT_MOVED) {
                        w->stats.moved++;
                        int m = krib_topo_master(&w->topo, to.host, to.port);
                        if (m >= 0) {
                                w->topo.slot_owner[slot] = m;
                                map_masters(w); /* may move w->conns */
                                c = &w->conns[ci];
                        }
                        w->need_refresh = 1;
                } else {
                        w->stats.ask++;
                        ask = conn_get(w, to.host, to.port);
                        c = &w->conns[ci];
                }
                /* A redirect loop (slots mid-migration): slow down after a few. */
                for (size_t y = 0; y < n; y++) {
                        rec_t *rr = rec_of(w, refs[y]);
                        rr->ask_conn = ask;
                        int slow = rr->redirects++ >= 2;
                        if (slow) {
                                breaker_note(w, "cluster", &w->cluster_br,
                                             krib_breaker_failure(&w->cluster_br, &w->pol,
                                                                  KRIB_ERR_REDIRECT,
                                                                  krib_clock_mono_us(),
                                                                  krib_retry_rand(&w->rng)));
                        }
                        requeue(w, refs[y], slow ? KRIB_ERR_REDIRECT : -1);
                }
        } else if ((cls = krib_retry_classify(r->str, r->len)) != KRIB_ERR_FINAL) {
                w->stats.retries++;
                c->m.errors++;
                c->m.err_class[cls]++;
                w->trouble = 1;
                int64_t now = krib_clock_mono_us();
                if (!strncmp(r->str, "READONLY", 8) || !strncmp(r->str, "CLUSTERDOWN", 11))
                        w->need_refresh = 1;
                if (!strncmp(r->str, "CLUSTERDOWN", 11))
                        breaker_note(w, "cluster", &w->cluster_br,
                                     krib_breaker_failure(&w->cluster_br, &w->pol, KRIB_ERR_BUSY,
                                                          now, krib_retry_rand(&w->rng)));
                if (!strncmp(r->str, "NOSCRIPT", 8) && c->script > 0)
                        c->script = 0; /* reload before the next use (not if refused for good) */
                breaker_note(
                        w, c->m.addr, &c->br,
                        krib_breaker_failure(&c->br, &w->pol, cls, now, krib_retry_rand(&w->rng)));
                unsigned attempt = rec_of(w, refs[0])->attempt;
                if (attempt % 20 == 0 && !w->logged++)
                        krib_log_warn("writer",
                                      "msg=\"transient redis error, retrying\" "
                                      "node=%s:%d class=%s error=\"%s\"",
                                      c->addr.host, c->addr.port, krib_retry_class_name(cls),
                                      r->str);
                requeue_refs(w, refs, n, (int)cls);
        } else if ((cmd->mode == MODE_FENCED || cmd->mode == MODE_PLAIN) && n > 1) {
                /* A script error (one key's bad value, say) aborts the whole
                 * call, and a refusal for good (NOPERM for one key of an
                 * ACL'd user) the whole UNLINK: resend the keys one per
                 * command so only the offender fails and its error names
                 * it. The script is atomic per call, so a key it had already
                 * handled is only compared again; UNLINK is idempotent. */
                krib_log_warn("writer",
                              "msg=\"%s refused for a chunk: retrying its keys one by "
                              "one\" node=%s keys=%zu error=\"%s\"",
                              cmd->mode == MODE_FENCED ? "fence script" : "UNLINK", c->m.addr, n,
                              krib_log_esc(r->str, r->len));
                w->stats.splits++;
                for (size_t y = 0; y < n; y++) {
                        rec_of(w, refs[y])->solo = 1;
                        requeue(w, refs[y], -1);
                }
        } else {
                fail_refs(w, c, refs, n, r->str);
        }
}

/* The WAIT that ends a round on c when redis.wait_replicas is set. What the
 * master acknowledged in the round counts only once enough replicas have
 * it: on a shortfall or an error those ops go back to the queue (resending
 * is safe: UNLINK is idempotent, the fence compares) and the node takes a
 * transient failure of class busy. */
static void on_wait(krib_writer_t *w, conn_t *c, redisReply *r) {
        long long acked = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
        if (acked >= w->conf->redis_wait_replicas) {
                for (size_t i = 0; i < c->nacked; i++) {
                        rec_t *rr = rec_of(w, c->acked[i]);
                        w->inflight_ops--;
                        complete(w, c->acked[i], rr->result);
                }
                c->nacked = 0;
                return;
        }
        size_t reverted = c->nacked;
        requeue_refs(w, c->acked, c->nacked, KRIB_ERR_BUSY);
        c->nacked = 0;
        w->stats.wait_short++;
        w->trouble = 1;
        breaker_note(w, c->m.addr, &c->br,
                     krib_breaker_failure(&c->br, &w->pol, KRIB_ERR_BUSY, krib_clock_mono_us(),
                                          krib_retry_rand(&w->rng)));
        const char *why = r->type == REDIS_REPLY_ERROR ? r->str : "replicas short";
        if (w->stats.wait_short % 20 == 1)
                krib_log_warn("writer",
                              "msg=\"WAIT: writes not yet on enough replicas, resending\" "
                              "node=%s acked=%lld wanted=%lld keys=%zu error=\"%s\"",
                              c->m.addr, acked, (long long)w->conf->redis_wait_replicas, reverted,
                              krib_log_esc(why, strlen(why)));
}

/* ---- probes ---- */

/* A node whose breaker is open is probed when due, in the background, on
 * a connection of its own (reachable, serving, not full); a probe that
 * passes leaves its connection as the node's data connection if it has
 * none. */
static void maybe_probe(krib_writer_t *w, conn_t *c) {
        if (c->br.state != KRIB_BREAKER_OPEN || c->setup ||
            !krib_breaker_probe_due(&c->br, krib_clock_mono_us()))
                return;
        c->retry_at_us = 0; /* the breaker already spaced this attempt */
        wjob_t *j = job_new(w, WJ_PROBE, (int)(c - w->conns));
        if (j && job_start(w, j) == 0)
                c->setup = 1;
}

/* ---- the step ---- */

/* Reads every reply that has arrived on c and applies it. */
static void drain_conn(krib_writer_t *w, size_t ci) {
        conn_t *c = &w->conns[ci];
        if (!c->c || c->cq_head == c->cq_tail)
                return;
        if (krib_conn_recv(c->c) < 0) {
                conn_fail(w, c, krib_conn_errstr(c->c));
                return;
        }
        for (;;) {
                c = &w->conns[ci];
                if (!c->c || c->cq_head == c->cq_tail)
                        return;
                redisReply *r = NULL;
                int got = krib_conn_reply(c->c, &r);
                if (got < 0) {
                        conn_fail(w, c, krib_conn_errstr(c->c));
                        return;
                }
                if (!got)
                        break;
                cmd_t cmd = c->cq[c->cq_head++];
                const uint32_t *refs = &c->rq[c->rq_head];
                c->rq_head += cmd.nrefs;
                if (cmd.last) {
                        double rt = (double)(krib_clock_mono_us() - cmd.sent_us) / 1e6;
                        krib_writer_node_t *m = &c->m;
                        m->round_trips++;
                        m->rt_sum_s += rt;
                        for (int k = 0; k < KRIB_WRITER_RT_BUCKETS; k++)
                                m->rt_le[k] += rt <= krib_writer_rt_bounds_s[k];
                }
                if (cmd.mode == MODE_ASKING)
                        ; /* +OK, or an error the next reply repeats */
                else if (cmd.mode == MODE_SCRIPT) {
                        char sha[41], why[200] = "";
                        script_load_t sl = script_reply(r, sha, why, sizeof(why));
                        script_loaded(w, c, sl, sha, why);
                } else if (cmd.mode == MODE_WAIT)
                        on_wait(w, c, r);
                else
                        on_reply(w, ci, &cmd, refs, r);
                freeReplyObject(r);
                c = &w->conns[ci];
                if (c->cq_head == c->cq_tail)
                        c->cq_head = c->cq_tail = c->rq_head = c->rq_tail = 0;
        }
        /* A node that stopped answering: its oldest command is overdue. */
        c = &w->conns[ci];
        if (oldest_reply_wait_us(c) > w->conf->redis_command_timeout_ms * 1000)
                conn_fail(w, c, "read timed out");
}

/* Moves queued ops whose time came (and whose key is free) to fresh. */
static void release_queue(krib_writer_t *w, int64_t now) {
        if (now < w->queue_due_us)
                return;
        int64_t next = INT64_MAX;
        size_t keep = 0;
        for (size_t i = 0; i < w->nqueue; i++) {
                uint32_t ref = w->queue[i];
                rec_t *r = rec_of(w, ref);
                if (r->state == R_FINAL)
                        continue; /* cancel already completed it */
                if (op_cancelled(w, ref) && !r->after) {
                        /* A placeholder whose predecessor is final. */
                        complete(w, ref, KRIB_WOP_PENDING);
                        continue;
                }
                if (r->after || r->due_us > now) {
                        if (!r->after && r->due_us < next)
                                next = r->due_us;
                        w->queue[keep++] = ref;
                } else {
                        r->held = 0;
                        w->fresh[w->nfresh++] = ref;
                }
        }
        w->nqueue = keep;
        /* Ops waiting on a key are released by complete(), which resets the
         * due time; held ones by a breaker closing or a new slot map. */
        w->queue_due_us = next;
}

/* Earliest probe among open breakers (INT64_MAX when none is open). */
static int64_t breaker_next_probe_us(const krib_writer_t *w) {
        int64_t next = INT64_MAX;
        if (w->cluster_br.state == KRIB_BREAKER_OPEN && !w->refreshing)
                next = w->cluster_br.probe_at_us;
        for (size_t i = 0; i < w->conn_count; i++)
                if (w->conns[i].br.state == KRIB_BREAKER_OPEN && !w->conns[i].setup &&
                    w->conns[i].br.probe_at_us < next)
                        next = w->conns[i].br.probe_at_us;
        return next;
}

/* Sends every op in fresh that may go now; the others wait in the queue. */
static int send_fresh(krib_writer_t *w) {
        size_t n = w->nfresh;
        if (!n)
                return 0;
        size_t sc = w->send_cap;
        if (krib_util_grow(&w->order, &sc, n, sizeof(*w->order)))
                return -1;
        sc = w->send_cap;
        if (krib_util_grow(&w->tmp, &sc, n, sizeof(*w->tmp)))
                return -1;
        w->send_cap = sc;
        /* Counting sort by slot (stable: submission order kept per slot). */
        memset(w->slot_count, 0, (KRIB_SLOT_COUNT + 1) * sizeof(*w->slot_count));
        for (size_t i = 0; i < n; i++)
                w->slot_count[rec_of(w, w->fresh[i])->slot + 1]++;
        for (size_t s = 0; s < KRIB_SLOT_COUNT; s++)
                w->slot_count[s + 1] += w->slot_count[s];
        for (size_t i = 0; i < n; i++)
                w->order[w->slot_count[rec_of(w, w->fresh[i])->slot]++] = w->fresh[i];
        w->nfresh = 0;

        const size_t max_keys = (size_t)w->conf->redis_max_keys_per_command;
        const size_t max_bytes = (size_t)w->conf->redis_max_command_bytes;
        int cluster_open = !krib_breaker_allows(&w->cluster_br, 1);
        int64_t now = krib_clock_mono_us();
        /* Until the next probe is due; one that runs ends by closing its
         * breaker (which releases the queue) or by scheduling the next. */
        int64_t held_until = breaker_next_probe_us(w);
        if (held_until == INT64_MAX)
                held_until = now + 100000;
        else if (held_until < now + 1000)
                held_until = now + 1000;
        for (size_t i = 0; i < n;) {
                rec_t *first = rec_of(w, w->order[i]);
                if (op_cancelled(w, w->order[i]) || first->state == R_FINAL) {
                        i++;
                        continue;
                }
                unsigned slot = first->slot;
                int32_t ask = first->ask_conn;
                size_t j = i + 1;
                while (j < n && rec_of(w, w->order[j])->slot == slot &&
                       rec_of(w, w->order[j])->ask_conn == ask)
                        j++;
                int conn = ask;
                if (conn < 0) {
                        int32_t m = w->topo.slot_owner[slot];
                        conn = m >= 0 ? w->master_conn[m] : -1;
                }
                if (conn >= 0 &&
                    (cluster_open ||
                     !krib_breaker_allows(&w->conns[conn].br, has_fenced(w, w->order, i, j)))) {
                        /* Held back by an open breaker until its probe. */
                        for (size_t x = i; x < j; x++)
                                if (!op_cancelled(w, w->order[x])) {
                                        rec_of(w, w->order[x])->held = 1;
                                        queue_push(w, w->order[x], held_until);
                                }
                        i = j;
                        continue;
                }
                if (conn >= 0 && conn_ensure(w, &w->conns[conn]) && w->conns[conn].setup) {
                        /* Connecting in the background: the ops wait for it
                         * (its end releases the queue), no attempt spent. */
                        for (size_t x = i; x < j; x++)
                                if (!op_cancelled(w, w->order[x]))
                                        requeue_at(w, w->order[x],
                                                   now + w->conf->redis_connect_timeout_ms * 1000,
                                                   0);
                        i = j;
                        continue;
                }
                if (conn >= 0 && w->conns[conn].c && w->conns[conn].script == 0 &&
                    has_fenced(w, w->order, i, j)) {
                        /* Loaded again (NOSCRIPT after a failover, LOADING
                         * earlier): pipelined, so the fenced work behind it
                         * on this connection finds it. */
                        conn_t *c = &w->conns[conn];
                        if (krib_conn_append_fmt(c->c, "SCRIPT LOAD %s", krib_fence_script) ||
                            push_cmd(w, c, NULL, 0, MODE_SCRIPT))
                                return -1;
                        c->script = 2;
                }
                if (conn < 0 || !w->conns[conn].c) {
                        if (conn < 0)
                                w->need_refresh = 1;
                        w->trouble = 1;
                        requeue_refs(w, &w->order[i], j - i, KRIB_ERR_CONN);
                        i = j;
                        continue;
                }
                conn_t *c = &w->conns[conn];
                /* Stable partition: plain, then fenced, then fan-out. */
                size_t t = 0, bound[3];
                for (int md = 0; md < 3; md++) {
                        for (size_t x = i; x < j; x++)
                                if (!op_cancelled(w, w->order[x]) &&
                                    rec_of(w, w->order[x])->state != R_FINAL &&
                                    mode_of(w, &rec_of(w, w->order[x])->op) == md)
                                        w->tmp[t++] = w->order[x];
                        bound[md] = i + t;
                }
                memcpy(&w->order[i], w->tmp, t * sizeof(*w->order));
                for (size_t a = i; a < i + t;) {
                        int mode = a < bound[0]   ? MODE_PLAIN
                                   : a < bound[1] ? MODE_FENCED
                                                  : MODE_FANOUT;
                        int fenced = mode == MODE_FENCED;
                        size_t end = bound[mode];
                        size_t b = a + 1;
                        if (mode != MODE_FANOUT && !rec_of(w, w->order[a])->solo) {
                                /* Cut by keys and by bytes: one huge command
                                 * holds the node (and its replica link). */
                                size_t bytes = op_bytes(&rec_of(w, w->order[a])->op);
                                while (b < end && b - a < max_keys &&
                                       !rec_of(w, w->order[b])->solo &&
                                       (bytes += op_bytes(&rec_of(w, w->order[b])->op)) <=
                                               max_bytes)
                                        b++;
                        }
                        if (fenced && c->script < 0) {
                                fail_refs(w, c, &w->order[a], b - a, "fence script not loaded");
                        } else if (fenced && (c->script == 0 || !w->sha[0])) {
                                /* Refused for now (LOADING, BUSY): retried with
                                 * backoff; the node's busy budget applies. */
                                script_wait(w, c, &w->order[a], b - a);
                        } else {
                                if (ask >= 0 && (krib_conn_append_fmt(c->c, "ASKING") ||
                                                 push_cmd(w, c, NULL, 0, MODE_ASKING)))
                                        return -1;
                                if (append(w, c->c, &w->order[a], b - a, mode) ||
                                    push_cmd(w, c, &w->order[a], b - a, mode))
                                        return -1;
                        }
                        a = b;
                }
                i = j;
        }
        return 0;
}

/* Writes what this step appended, one flush per connection. */
static void flush_all(krib_writer_t *w) {
        int64_t now = krib_clock_mono_us();
        for (size_t ci = 0; ci < w->conn_count; ci++) {
                conn_t *c = &w->conns[ci];
                if (!c->step_cmds)
                        continue;
                if (!c->c) {
                        c->step_keys = c->step_cmds = 0;
                        continue;
                }
                size_t first = c->cq_tail - c->step_cmds;
                if (w->conf->redis_wait_replicas > 0) {
                        if (krib_conn_append_fmt(c->c, "WAIT %lld %lld",
                                                 (long long)w->conf->redis_wait_replicas,
                                                 (long long)w->conf->redis_wait_timeout_ms) ||
                            push_cmd(w, c, NULL, 0, MODE_WAIT)) {
                                conn_fail(w, c, "out of memory");
                                continue;
                        }
                }
                /* Mark this flush's commands: the last reply ends its round trip. */
                for (size_t x = first; x < c->cq_tail; x++)
                        c->cq[x].sent_us = now;
                c->cq[c->cq_tail - 1].last = 1;
                w->stats.round_trips++;
                unsigned b = 0;
                while (b < 14 && c->step_keys > (1u << b))
                        b++;
                w->stats.keys_per_rt[b]++;
                w->stats.rt_keys_sum += c->step_keys;
                c->step_keys = c->step_cmds = 0;
                /* What the socket does not take now goes on POLLOUT
                 * (krib_writer_pollfds); the loop never waits to write. */
                if (krib_conn_send(c->c) < 0)
                        conn_fail(w, c, krib_conn_errstr(c->c));
        }
}

int krib_writer_step(krib_writer_t *w) {
        int64_t now = krib_clock_mono_us();
        w->trouble = 0;
        w->logged = 0;
        uint64_t keys_before = w->stats.keys;
        /* A SCAN result its sweep did not claim within a step is stale. */
        for (size_t ci = 0; ci < w->conn_count; ci++) {
                conn_t *c = &w->conns[ci];
                if (c->scan_result && c->scan_result_age++ >= 1) {
                        job_free(c->scan_result);
                        c->scan_result = NULL;
                }
        }
        jobs_take(w);
        for (size_t ci = 0; ci < w->conn_count; ci++) {
                conn_t *c = &w->conns[ci];
                if (c->c && krib_conn_unsent(c->c) && krib_conn_send(c->c) < 0)
                        conn_fail(w, c, krib_conn_errstr(c->c));
                drain_conn(w, ci);
        }
        if (w->conf->redis_mode == KRIB_REDIS_CLUSTER && !w->refreshing) {
                if (w->cluster_br.state == KRIB_BREAKER_OPEN) {
                        /* The cluster breaker's probe: a fresh slot map and
                         * cluster_state:ok. */
                        if (krib_breaker_probe_due(&w->cluster_br, now))
                                refresh_start(w, 1);
                } else if ((w->need_refresh ||
                            (w->jobs_live && now - w->refreshed_at_us > REFRESH_PERIOD_US)) &&
                           now >= w->refresh_at_us && krib_breaker_allows(&w->cluster_br, 1)) {
                        refresh_start(w, 0);
                }
        }
        for (size_t m = 0; m < w->topo.master_count; m++)
                maybe_probe(w, &w->conns[w->master_conn[m]]);
        for (size_t ci = 0; ci < w->conn_count; ci++)
                w->conns[ci].step_script_counted = 0;
        release_queue(w, krib_clock_mono_us());
        int rc = send_fresh(w);
        flush_all(w);
        if (rc)
                krib_log_error("writer", "msg=\"out of memory\"");
        if (w->stats.keys != keys_before && !w->trouble) {
                breaker_note(w, "cluster", &w->cluster_br, krib_breaker_success(&w->cluster_br));
                w->stats.healthy = 1;
        } else if (w->trouble) {
                w->stats.healthy = 0;
        }
        return rc;
}

int krib_writer_failing(const krib_writer_t *w) {
        if (!w->topo.master_count)
                return 1;
        for (size_t m = 0; m < w->topo.master_count; m++) {
                const conn_t *c = &w->conns[w->master_conn[m]];
                if (c->br.state != KRIB_BREAKER_OPEN && c->c)
                        return 0;
        }
        return 1;
}

int krib_writer_pollfds(const krib_writer_t *w, struct pollfd *fds, int max) {
        int n = 0;
        if (krib_bg_pending(w->bg)) { /* control work finishing wakes the loop */
                if (n < max)
                        fds[n] = (struct pollfd){krib_bg_wake_fd(w->bg), POLLIN, 0};
                n++;
        }
        for (size_t ci = 0; ci < w->conn_count; ci++) {
                const conn_t *c = &w->conns[ci];
                short ev = c->c && c->cq_head != c->cq_tail ? POLLIN : 0;
                if (c->c && krib_conn_unsent(c->c))
                        ev |= POLLOUT;
                if (ev) {
                        if (n < max)
                                fds[n] = (struct pollfd){krib_conn_fd(c->c), ev, 0};
                        n++;
                }
        }
        return n;
}

int64_t krib_writer_due_us(const krib_writer_t *w) {
        int64_t due = INT64_MAX;
        if (w->nfresh || krib_bg_ready(w->bg))
                return 0;
        if (w->nqueue && w->queue_due_us < due)
                due = w->queue_due_us;
        for (size_t ci = 0; ci < w->conn_count; ci++) {
                const conn_t *c = &w->conns[ci];
                if (c->c && c->cq_head != c->cq_tail) {
                        int64_t t = c->cq[c->cq_head].sent_us +
                                    w->conf->redis_command_timeout_ms * 1000;
                        if (t < due)
                                due = t;
                }
        }
        if (w->jobs_live) {
                int64_t p = breaker_next_probe_us(w);
                if (p < due)
                        due = p;
                if (w->need_refresh && !w->refreshing && krib_breaker_allows(&w->cluster_br, 1)) {
                        int64_t r = w->refresh_at_us;
                        if (r < due)
                                due = r;
                }
        }
        return due;
}

/* ---- synchronous use (tests, tools) ---- */

int krib_writer_apply(krib_writer_t *w, const krib_wop_t *ops, size_t n, uint8_t *status) {
        int job = krib_writer_submit(w, ops, n, status);
        if (job < 0) {
                krib_log_error("writer", "msg=\"out of memory\" ops=%zu", n);
                return -1;
        }
        int64_t stop_seen = 0;
        while (krib_writer_job_left(w, job)) {
                int64_t now = krib_clock_mono_us();
                if (w->stop && *w->stop) {
                        if (!stop_seen)
                                stop_seen = now;
                        if (now - stop_seen >= w->drain_us) {
                                krib_writer_job_cancel(w, job);
                                /* Drain what is on the wire so the slot is free. */
                                return -1;
                        }
                }
                if (krib_writer_step(w)) {
                        krib_writer_job_cancel(w, job);
                        return -1;
                }
                if (!krib_writer_job_left(w, job))
                        break;
                int nfds = krib_writer_pollfds(w, NULL, 0);
                if ((size_t)nfds > w->pfds_cap &&
                    krib_util_grow(&w->pfds, &w->pfds_cap, (size_t)nfds, sizeof(*w->pfds)))
                        nfds = (int)w->pfds_cap; /* out of memory: the rest waits a turn */
                struct pollfd *fds = w->pfds;
                nfds = nfds ? krib_writer_pollfds(w, fds, nfds) : 0;
                int64_t due = krib_writer_due_us(w);
                int64_t wait = due == INT64_MAX ? 50000 : due - krib_clock_mono_us();
                if (wait > 50000)
                        wait = 50000;
                if (wait > 0) {
                        if (nfds)
                                poll(fds, (nfds_t)nfds, (int)((wait + 999) / 1000));
                        else {
                                struct timespec ts = {0, wait * 1000};
                                nanosleep(&ts, NULL);
                        }
                }
                if (w->tick)
                        w->tick(w->tick_opaque);
        }
        krib_writer_job_release(w, job);
        return 0;
}

#ifdef KRIB_SIM
static int cmp_ref(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
        return x < y ? -1 : x > y;
}

/* For the simulation (tests/sim): the bookkeeping agrees with itself. Every
 * op is listed once at most (queue, fresh, a connection's wire), and the
 * in-flight count is the ops on the wire. */
int krib_writer_sim_check(const krib_writer_t *w, char *why, size_t size) {
        static uint32_t *refs;
        static size_t cap;
        size_t n = w->nqueue + w->nfresh, sent = 0, onwire = 0;
        for (size_t ci = 0; ci < w->conn_count; ci++)
                n += w->conns[ci].rq_tail - w->conns[ci].rq_head + w->conns[ci].nacked;
        if (krib_util_grow(&refs, &cap, n ? n : 1, sizeof(*refs)))
                abort();
        n = 0;
        for (size_t i = 0; i < w->nqueue; i++)
                refs[n++] = w->queue[i];
        for (size_t i = 0; i < w->nfresh; i++)
                refs[n++] = w->fresh[i];
        for (size_t ci = 0; ci < w->conn_count; ci++) {
                const conn_t *c = &w->conns[ci];
                for (size_t i = c->rq_head; i < c->rq_tail; i++, onwire++)
                        refs[n++] = c->rq[i];
                for (size_t i = 0; i < c->nacked; i++, onwire++)
                        refs[n++] = c->acked[i];
        }
        qsort(refs, n, sizeof(*refs), cmp_ref);
        for (size_t i = 1; i < n; i++)
                if (refs[i] == refs[i - 1]) {
                        const rec_t *r = &w->jobs[REF_JOB(refs[i])].recs[REF_IDX(refs[i])];
                        snprintf(why, size,
                                 "op job=%u idx=%u key=%.*s is listed twice (queue, fresh, wire)",
                                 REF_JOB(refs[i]), REF_IDX(refs[i]), (int)r->op.len, r->op.key);
                        return -1;
                }
        for (int j = 0; j < JOB_MAX; j++)
                for (size_t x = 0; w->jobs[j].used && x < w->jobs[j].n; x++)
                        sent += w->jobs[j].recs[x].state == R_SENT ||
                                w->jobs[j].recs[x].state == R_ACKED;
        if (sent != w->inflight_ops || onwire != w->inflight_ops) {
                snprintf(why, size, "in-flight count %zu, but %zu ops are sent and %zu on the wire",
                         w->inflight_ops, sent, onwire);
                return -1;
        }
        return 0;
}
#endif
