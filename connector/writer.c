#include "writer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "conn.h"
#include "fence.h"
#include "breaker.h"
#include "log.h"
#include "retry.h"
#include "slot.h"
#include "topo.h"
#include "util.h"

#define REFRESH_PERIOD_US 30000000 /* topology re-read even without MOVED */

const double krib_writer_rt_bounds_s[KRIB_WRITER_RT_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                                0.025,  0.05,  0.1,    0.5,   2};

typedef struct {
        krib_addr_t addr;
        krib_conn_t *c;
        krib_writer_node_t m;
        uint32_t rt_keys; /* keys in this round's commands */
        int64_t retry_at_us;
        unsigned failures;
        krib_breaker_t br;
        int script; /* fence script: 1 loaded here, 0 not yet, -1 refused */
        unsigned script_warned;
        uint8_t script_counted; /* this round already counted a script refusal */
        uint8_t wait_sent;      /* this round ends with WAIT redis.wait_replicas */
        /* This round's commands, in the order they were appended. */
        int32_t cmd_head, cmd_tail;
} conn_t;

typedef struct {
        int32_t conn;
        int32_t next;   /* next command of the same conn */
        uint32_t first; /* range of w->order */
        uint32_t count;
        uint8_t asking;
        uint8_t mode; /* MODE_PLAIN, MODE_FENCED or MODE_FANOUT */
} cmd_t;

struct krib_writer {
        const krib_conf_t *conf;
        krib_topo_t topo;
        int32_t *master_conn; /* topo master index -> conn index */
        size_t master_conn_cap;
        conn_t *conns;
        size_t conn_count, conn_cap;
        int need_refresh;
        int64_t refreshed_at_us;

        krib_writer_tick_cb *tick;
        void *tick_opaque;
        volatile sig_atomic_t *stop;
        int64_t drain_us;
        int64_t stop_seen_us;

        uint64_t rng;
        krib_retry_policies_t pol;
        krib_tls_t *tls;           /* NULL: plain TCP */
        krib_breaker_t cluster_br; /* cluster_state, slot map, every node unreachable */
        krib_writer_stats_t stats;

        /* Scratch, grown to the largest batch seen. */
        size_t cap;
        uint16_t *slot_of;
        int32_t *ask_conn; /* -1, or the conn an ASK pointed this key at */
        uint8_t *solo;     /* sent in a command of its own (its chunk failed) */
        uint32_t *pend, *pend_next, *order, *tmp;
        uint32_t *slot_count; /* KRIB_SLOT_COUNT + 1 */
        cmd_t *cmds;
        size_t cmd_cap;
        const char **argv;
        size_t *argvlen;
        size_t argv_cap;
        char sha[41];
        char *fkeys; /* fence key names, at fkey_off[i] (fkey_len[i]) */
        size_t fkeys_cap;
        uint32_t *fkey_off;
        uint16_t *fkey_len;
        char *nums; /* decimal strings of one script command */
        size_t nums_cap;
};

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
        snprintf(c->m.addr, sizeof(c->m.addr), "%.64s:%d", host, port);
        c->cmd_head = c->cmd_tail = -1;
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
        }
}

static void conn_fail(krib_writer_t *w, conn_t *c, const char *why) {
        c->m.conn_failures++;
        if (c->c) {
                krib_log_warn("writer", "msg=\"redis connection lost\" node=%s:%d error=\"%s\"",
                              c->addr.host, c->addr.port, why);
                krib_conn_free(c->c);
                c->c = NULL;
        }
        int64_t now = krib_clock_mono_us();
        c->retry_at_us = now + krib_retry_delay_us(&w->pol, KRIB_ERR_CONN, c->failures,
                                                   krib_retry_rand(&w->rng));
        c->failures++;
        breaker_note(w, c->m.addr, &c->br,
                     krib_breaker_failure(&c->br, &w->pol, KRIB_ERR_CONN, now,
                                          krib_retry_rand(&w->rng)));
        /* A node that went away may have failed over: ask for the map again. */
        if (w->conf->redis_mode == KRIB_REDIS_CLUSTER)
                w->need_refresh = 1;
}

/* SCRIPT LOAD on c (no pipelined commands pending). 1 loaded; 0 a transient
 * refusal (LOADING while a restarted master reads its data, BUSY, ...): the
 * fenced work waits and tries again like any retriable error; -1 a final
 * refusal (scripting disabled, NOPERM): fenced work fails, plain UNLINKs go
 * on, and the next connection tries again; -2 the connection was lost. */
static int load_script(krib_writer_t *w, conn_t *c) {
        redisReply *r = krib_conn_command(c->c, "SCRIPT LOAD %s", krib_fence_script);
        if (!r) {
                c->script = 0;
                conn_fail(w, c, krib_conn_errstr(c->c));
                return -2;
        }
        if (r->type == REDIS_REPLY_STRING && r->len == 40) {
                memcpy(w->sha, r->str, 41);
                c->script = 1;
        } else {
                const char *why = r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply";
                krib_err_class_t cls = r->type == REDIS_REPLY_ERROR
                                               ? krib_retry_classify(r->str, r->len)
                                               : KRIB_ERR_FINAL;
                c->script = cls == KRIB_ERR_FINAL ? -1 : 0;
                if (c->script < 0 || c->script_warned++ % 20 == 0)
                        krib_log_warn("writer",
                                      "msg=\"cannot load the fence script%s\" node=%s "
                                      "error=\"%s\"",
                                      c->script < 0 ? "" : ", retrying", c->m.addr, why);
        }
        freeReplyObject(r);
        if (c->script == 1)
                c->script_warned = 0;
        return c->script;
}

static int conn_ensure(krib_writer_t *w, conn_t *c) {
        if (c->c)
                return 0;
        if (krib_clock_mono_us() < c->retry_at_us)
                return -1;
        char err[200];
        krib_conn_t *rc =
                krib_conn_connect(c->addr.host, c->addr.port, w->conf->redis_connect_timeout_ms,
                                  w->conf->redis_command_timeout_ms, w->tls, err, sizeof(err));
        if (!rc) {
                if (c->failures == 0 || c->failures % 20 == 0)
                        krib_log_warn("writer",
                                      "msg=\"cannot connect to redis\" node=%s:%d error=\"%s\" "
                                      "attempt=%u",
                                      c->addr.host, c->addr.port, err, c->failures + 1);
                c->c = NULL;
                conn_fail(w, c, "connect");
                return -1;
        }
        if (*w->conf->redis_password) {
                redisReply *r =
                        *w->conf->redis_username
                                ? krib_conn_command(rc, "AUTH %s %s", w->conf->redis_username,
                                                    w->conf->redis_password)
                                : krib_conn_command(rc, "AUTH %s", w->conf->redis_password);
                int ok = r && r->type == REDIS_REPLY_STATUS;
                if (!ok)
                        krib_log_error(
                                "writer", "msg=\"redis AUTH failed\" node=%s:%d error=\"%s\"",
                                c->addr.host, c->addr.port,
                                r && r->type == REDIS_REPLY_ERROR ? r->str : krib_conn_errstr(rc));
                if (r)
                        freeReplyObject(r);
                if (!ok) {
                        krib_conn_free(rc);
                        conn_fail(w, c, "auth");
                        return -1;
                }
        }
        c->c = rc;
        c->script = 0;
        if (load_script(w, c) < -1)
                return -1; /* connection lost again */
        if (c->failures)
                w->stats.reconnects++;
        c->failures = 0;
        return 0;
}

static int refresh_from(krib_writer_t *w, int ci, char *errstr, size_t size) {
        conn_t *c = &w->conns[ci];
        if (conn_ensure(w, c)) {
                snprintf(errstr, size, "%s:%d unreachable", c->addr.host, c->addr.port);
                return -1;
        }
        redisReply *r = krib_conn_command(c->c, "CLUSTER SLOTS");
        if (!r) {
                snprintf(errstr, size, "%s:%d: %s", c->addr.host, c->addr.port,
                         krib_conn_errstr(c->c));
                conn_fail(w, c, krib_conn_errstr(c->c));
                return -1;
        }
        char host[KRIB_TOPO_HOST_MAX];
        snprintf(host, sizeof(host), "%s", c->addr.host);
        krib_topo_t fresh;
        krib_topo_init(&fresh);
        int rc = krib_topo_load_slots(&fresh, r, host, errstr, size);
        freeReplyObject(r);
        if (rc == 0 && fresh.master_count == 0) {
                snprintf(errstr, size, "%s:%d serves no slots", host, c->addr.port);
                rc = -1;
        }
        if (rc) {
                krib_topo_destroy(&fresh);
                return -1;
        }
        krib_topo_destroy(&w->topo);
        w->topo = fresh;
        return map_masters(w);
}

int krib_writer_refresh(krib_writer_t *w, char *errstr, size_t errstr_size) {
        w->stats.refreshes++;
        if (w->conf->redis_mode == KRIB_REDIS_STANDALONE) {
                /* Nothing to discover; connecting now surfaces a wrong
                 * address or password at start-up instead of first write. */
                w->need_refresh = 0;
                conn_t *c = &w->conns[w->master_conn[0]];
                if (conn_ensure(w, c)) {
                        w->stats.healthy = 0;
                        snprintf(errstr, errstr_size, "%s:%d unreachable", c->addr.host,
                                 c->addr.port);
                        return -1;
                }
                w->stats.healthy = 1;
                return 0;
        }
        /* Known masters first (the map we have), then the configured seeds;
         * each node once, none whose breaker is open and not yet due: a
         * blackholed node costs a full command timeout per attempt. */
        size_t tries = w->topo.master_count + w->conf->redis_nodes.n, asked = 0;
        int tried[64];
        size_t ntried = 0;
        snprintf(errstr, errstr_size, "every node's circuit breaker is open");
        for (size_t i = 0; i < tries; i++) {
                int ci;
                if (i < w->topo.master_count)
                        ci = w->master_conn[i];
                else {
                        krib_addr_t a;
                        krib_addr_parse(w->conf->redis_nodes.v[i - w->topo.master_count], &a);
                        ci = conn_get(w, a.host, a.port);
                }
                int seen = ci < 0;
                for (size_t k = 0; k < ntried && !seen; k++)
                        seen = tried[k] == ci;
                if (seen)
                        continue;
                if (ntried < sizeof(tried) / sizeof(*tried))
                        tried[ntried++] = ci;
                const krib_breaker_t *b = &w->conns[ci].br;
                if (b->state == KRIB_BREAKER_OPEN &&
                    !krib_breaker_probe_due(b, krib_clock_mono_us()))
                        continue;
                if (asked++ && w->tick)
                        w->tick(w->tick_opaque); /* keep the consumer served between nodes */
                if (refresh_from(w, ci, errstr, errstr_size) == 0) {
                        w->need_refresh = 0;
                        w->refreshed_at_us = krib_clock_mono_us();
                        w->stats.healthy = 1;
                        size_t holes = krib_topo_unassigned(&w->topo);
                        krib_log_debug("writer",
                                       "msg=\"topology refreshed\" masters=%zu "
                                       "unassigned_slots=%zu",
                                       w->topo.master_count, holes);
                        return 0;
                }
        }
        return -1;
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
        w->slot_count = calloc(KRIB_SLOT_COUNT + 1, sizeof(*w->slot_count));
        if (!w->slot_count)
                goto oom;
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

int krib_writer_masters(krib_writer_t *w, int slot, char (*addrs)[80], int max) {
        if (w->conf->redis_mode == KRIB_REDIS_CLUSTER &&
            (w->need_refresh || !w->topo.master_count)) {
                char err[256];
                krib_writer_refresh(w, err, sizeof(err));
        }
        if (!w->topo.master_count)
                return -1;
        int n = 0;
        for (size_t m = 0; m < w->topo.master_count && n < max; m++) {
                if (slot >= 0 && w->topo.slot_owner[slot] != (int32_t)m)
                        continue;
                const conn_t *c = &w->conns[w->master_conn[m]];
                snprintf(addrs[n++], 80, "%s", c->m.addr);
        }
        return n;
}

int krib_writer_scan(krib_writer_t *w, const char *addr, const char *cursor, const char *pattern,
                     long count, char *next, size_t next_size, redisReply **keys) {
        krib_addr_t a;
        if (krib_addr_parse(addr, &a))
                return -1;
        int ci = -1;
        for (size_t i = 0; i < w->conn_count && ci < 0; i++)
                if (!strcmp(w->conns[i].m.addr, addr))
                        ci = (int)i;
        if (ci < 0 && (ci = conn_get(w, a.host, a.port)) < 0)
                return -1;
        conn_t *c = &w->conns[ci];
        if (!krib_breaker_allows(&c->br, 0) || conn_ensure(w, c))
                return -1;
        char cnt[24];
        snprintf(cnt, sizeof(cnt), "%ld", count);
        redisReply *r = krib_conn_command(c->c, "SCAN %s MATCH %s COUNT %s", cursor, pattern, cnt);
        if (!r) {
                conn_fail(w, c, krib_conn_errstr(c->c));
                return -1;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
                int final = r->type != REDIS_REPLY_ERROR ||
                            krib_retry_classify(r->str, r->len) == KRIB_ERR_FINAL;
                krib_log_warn("writer", "msg=\"SCAN failed\" node=%s error=\"%s\" final=%s", addr,
                              r->type == REDIS_REPLY_ERROR ? krib_log_esc(r->str, r->len)
                                                           : "unexpected reply",
                              final ? "yes" : "no");
                freeReplyObject(r);
                return final ? -2 : -1;
        }
        snprintf(next, next_size, "%s", r->element[0]->str);
        *keys = r->element[1];
        r->element[1] = NULL; /* detached: the caller frees it */
        r->elements = 1;
        freeReplyObject(r);
        return 0;
}

int krib_writer_nodes(const krib_writer_t *w, krib_writer_node_t *out, int max) {
        int n = 0;
        for (size_t i = 0; i < w->conn_count && n < max; i++) {
                out[n] = w->conns[i].m;
                out[n].breaker = w->conns[i].br.state;
                memcpy(out[n].breaker_entered, w->conns[i].br.entered,
                       sizeof(out[n].breaker_entered));
                n++;
        }
        return n;
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
        return &w->stats;
}

void krib_writer_destroy(krib_writer_t *w) {
        if (!w)
                return;
        for (size_t i = 0; i < w->conn_count; i++)
                if (w->conns[i].c)
                        krib_conn_free(w->conns[i].c);
        free(w->conns);
        free(w->master_conn);
        krib_topo_destroy(&w->topo);
        free(w->slot_of);
        free(w->ask_conn);
        free(w->solo);
        free(w->pend);
        free(w->pend_next);
        free(w->order);
        free(w->tmp);
        free(w->slot_count);
        free(w->cmds);
        free(w->argv);
        free(w->argvlen);
        free(w->fkeys);
        free(w->fkey_off);
        free(w->fkey_len);
        free(w->nums);
        krib_tls_destroy(w->tls);
        free(w);
}

static int grow(krib_writer_t *w, size_t n) {
        if (n <= w->cap)
                return 0;
        size_t cap = n > w->cap * 2 ? n : w->cap * 2;
#define GROW(f)                                                                                    \
        do {                                                                                       \
                void *p = realloc(w->f, cap * sizeof(*w->f));                                      \
                if (!p)                                                                            \
                        return -1;                                                                 \
                w->f = p;                                                                          \
        } while (0)
        GROW(slot_of);
        GROW(ask_conn);
        GROW(solo);
        GROW(pend);
        GROW(pend_next);
        GROW(order);
        GROW(tmp);
        GROW(fkey_off);
        GROW(fkey_len);
#undef GROW
        w->cap = cap;
        return 0;
}

static int add_cmd(krib_writer_t *w, size_t *ncmd, int conn, uint32_t first, uint32_t count,
                   int asking, int mode) {
        if (*ncmd == w->cmd_cap) {
                size_t cap = w->cmd_cap ? w->cmd_cap * 2 : 256;
                cmd_t *c = realloc(w->cmds, cap * sizeof(*c));
                if (!c)
                        return -1;
                w->cmds = c;
                w->cmd_cap = cap;
        }
        cmd_t *cmd = &w->cmds[*ncmd];
        cmd->conn = conn;
        cmd->next = -1;
        cmd->first = first;
        cmd->count = count;
        cmd->asking = (uint8_t)asking;
        cmd->mode = (uint8_t)mode;
        conn_t *c = &w->conns[conn];
        c->rt_keys += count;
        if (c->cmd_tail >= 0)
                w->cmds[c->cmd_tail].next = (int32_t)*ncmd;
        else
                c->cmd_head = (int32_t)*ncmd;
        c->cmd_tail = (int32_t)*ncmd;
        (*ncmd)++;
        return 0;
}

/* Sleeps up to us, in slices, returning early when stop is raised. */
static void nap(krib_writer_t *w, int64_t us) {
        int64_t end = krib_clock_mono_us() + us;
        for (;;) {
                int64_t left = end - krib_clock_mono_us();
                if (left <= 0 || (w->stop && *w->stop && w->stop_seen_us == 0))
                        return;
                if (left > 50000)
                        left = 50000;
                struct timespec ts = {0, left * 1000};
                nanosleep(&ts, NULL);
                if (w->tick)
                        w->tick(w->tick_opaque);
        }
}

enum { MODE_PLAIN = 0, MODE_FENCED = 1, MODE_FANOUT = 2 };

static int is_fenced(const krib_wop_t *op) {
        return op->kind == KRIB_WOP_DELETE || op->kind == KRIB_WOP_UPSERT;
}

static int mode_of(const krib_wop_t *op) {
        return op->kind == KRIB_WOP_UNLINK ? MODE_PLAIN : is_fenced(op) ? MODE_FENCED : MODE_FANOUT;
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

/* Whether order[i..j) holds work that needs memory (anything but UNLINK). */
static int has_fenced(const krib_wop_t *ops, const uint32_t *order, size_t i, size_t j) {
        for (size_t x = i; x < j; x++)
                if (ops[order[x]].kind != KRIB_WOP_UNLINK)
                        return 1;
        return 0;
}

/* Appends one UNLINK (plain), EVALSHA (fenced) or PUBLISH/XADD (fan-out,
 * one op) for order[i..j). */
static int append(krib_writer_t *w, krib_conn_t *c, const krib_wop_t *ops, size_t i, size_t j,
                  int mode, int asking) {
        if (asking && krib_conn_append_fmt(c, "ASKING"))
                return -1;
        if (mode == MODE_FANOUT) {
                const krib_wop_t *op = &ops[w->order[i]];
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
        size_t nops = j - i, argc = 0, need = 2 + nops;
        if (fenced) {
                need = 4 + 2 * nops + 1;
                size_t nums = 0;
                for (size_t x = i; x < j; x++) {
                        const krib_event_t *ev = ops[w->order[x]].ev;
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
                for (size_t x = i; x < j; x++)
                        ARG(ops[w->order[x]].key, ops[w->order[x]].len);
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
                NUM(2 * nops);
                for (size_t x = i; x < j; x++)
                        ARG(ops[w->order[x]].key, ops[w->order[x]].len);
                for (size_t x = i; x < j; x++)
                        ARG(w->fkeys + w->fkey_off[w->order[x]], w->fkey_len[w->order[x]]);
                NUM(w->conf->redis_fence_ttl_ms);
                for (size_t x = i; x < j; x++) {
                        const krib_wop_t *op = &ops[w->order[x]];
                        const krib_event_t *ev = op->ev;
                        ARG(op->kind != KRIB_WOP_UPSERT ? "D" : ev->value_hash ? "H" : "U", 1);
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

/* Names every fenced op's fence key up front; ops whose key cannot carry a
 * fence fail here, before anything is sent. */
static int name_fences(krib_writer_t *w, const krib_wop_t *ops, size_t n, uint8_t *status) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
                if (is_fenced(&ops[i]))
                        total += ops[i].len + 16;
        if (krib_util_grow(&w->fkeys, &w->fkeys_cap, total ? total : 1, 1))
                return -1;
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
                w->fkey_off[i] = (uint32_t)at;
                w->fkey_len[i] = 0;
                if (!is_fenced(&ops[i]))
                        continue;
                int l = ops[i].len <= UINT16_MAX - 16
                                ? krib_fence_key(ops[i].key, ops[i].len, w->fkeys + at,
                                                 w->fkeys_cap - at)
                                : -1;
                if (l < 0) {
                        krib_log_error("writer",
                                       "msg=\"key cannot carry a version fence (%s)\" "
                                       "key=\"%s\" bytes=%zu",
                                       ops[i].len > UINT16_MAX - 16
                                               ? "longer than 65519 bytes"
                                               : "no hash tag and contains '}'",
                                       krib_log_esc(ops[i].key, ops[i].len), ops[i].len);
                        status[i] = KRIB_WOP_FAILED;
                        w->stats.errors++;
                        continue;
                }
                w->fkey_len[i] = (uint16_t)l;
                at += (size_t)l;
        }
        return 0;
}

typedef struct {
        size_t nnext;
        int trouble, redirected;
        int blocked;         /* keys held back by an open breaker */
        int logged;          /* transient errors logged this round */
        unsigned class_mask; /* retry classes met this round */
} round_t;

static void requeue(krib_writer_t *w, round_t *rd, const uint32_t *ks, uint32_t count,
                    int32_t ask) {
        for (uint32_t y = 0; y < count; y++) {
                w->ask_conn[ks[y]] = ask;
                w->pend_next[rd->nnext++] = ks[y];
        }
}

static void fail_cmd(krib_writer_t *w, conn_t *c, const krib_wop_t *ops, const uint32_t *ks,
                     uint32_t count, uint8_t *status, const char *what) {
        w->stats.errors++;
        c->m.errors++;
        krib_log_error("writer",
                       "msg=\"redis refused %s\" node=%s:%d key=\"%s\" keys=%u error=\"%s\"",
                       is_fenced(&ops[ks[0]])               ? "fenced write"
                       : ops[ks[0]].kind == KRIB_WOP_UNLINK ? "UNLINK"
                                                            : "fan-out",
                       c->addr.host, c->addr.port, krib_log_esc(ops[ks[0]].key, ops[ks[0]].len),
                       count, krib_log_esc(what, strlen(what)));
        for (uint32_t y = 0; y < count; y++)
                status[ks[y]] = KRIB_WOP_FAILED;
}

/* Fenced work for a node whose script is not loaded yet: back to the queue
 * as a transient failure of class busy (at most one breaker failure per
 * node and round). */
static void script_wait(krib_writer_t *w, round_t *rd, conn_t *c, const uint32_t *ks,
                        uint32_t count) {
        if (!c->script_counted) {
                int64_t now = krib_clock_mono_us();
                breaker_note(w, c->m.addr, &c->br,
                             krib_breaker_failure(&c->br, &w->pol, KRIB_ERR_BUSY, now,
                                                  krib_retry_rand(&w->rng)));
                c->script_counted = 1;
                w->stats.retries++;
        }
        rd->trouble = 1;
        rd->class_mask |= 1u << KRIB_ERR_BUSY;
        requeue(w, rd, ks, count, -1);
}

/* Applies one reply to the ops of its command. */
static void on_reply(krib_writer_t *w, size_t ci, const cmd_t *cmd, redisReply *r,
                     const krib_wop_t *ops, uint8_t *status, round_t *rd, unsigned attempt) {
        const uint32_t *ks = &w->order[cmd->first];
        conn_t *c = &w->conns[ci];
        w->stats.commands++;
        if (r->type != REDIS_REPLY_ERROR)
                breaker_note(w, c->m.addr, &c->br, krib_breaker_success(&c->br));
        if (cmd->mode == MODE_FANOUT &&
            (r->type == REDIS_REPLY_INTEGER || r->type == REDIS_REPLY_STRING)) {
                for (uint32_t y = 0; y < cmd->count; y++)
                        status[ks[y]] = KRIB_WOP_OK;
                w->stats.keys += cmd->count;
                return;
        }
        if (r->type == REDIS_REPLY_INTEGER && cmd->mode == MODE_PLAIN) {
                for (uint32_t y = 0; y < cmd->count; y++)
                        status[ks[y]] = KRIB_WOP_OK;
                w->stats.keys += cmd->count;
                return;
        }
        if (r->type == REDIS_REPLY_ARRAY && cmd->mode == MODE_FENCED && r->elements == cmd->count) {
                w->stats.scripts++;
                for (uint32_t y = 0; y < cmd->count; y++) {
                        long long v = r->element[y]->type == REDIS_REPLY_INTEGER
                                              ? r->element[y]->integer
                                              : -1;
                        status[ks[y]] = v == 1   ? KRIB_WOP_OK
                                        : v == 0 ? KRIB_WOP_STALE
                                        : v == 2 ? KRIB_WOP_INVALIDATED
                                                 : KRIB_WOP_FAILED;
                        w->stats.fence_stale += v == 0;
                        w->stats.fence_concurrent += v == 2;
                }
                w->stats.keys += cmd->count;
                return;
        }
        if (r->type != REDIS_REPLY_ERROR) {
                fail_cmd(w, c, ops, ks, cmd->count, status, "unexpected reply type");
                return;
        }
        int slot;
        krib_err_class_t cls;
        krib_addr_t to;
        krib_redirect_t red = krib_topo_parse_redirect(r->str, r->len, &slot, &to);
        if (red != KRIB_REDIRECT_NONE && !to.host[0])
                snprintf(to.host, sizeof(to.host), "%s", c->addr.host);
        if (red == KRIB_REDIRECT_MOVED) {
                w->stats.moved++;
                int m = krib_topo_master(&w->topo, to.host, to.port);
                if (m >= 0) {
                        w->topo.slot_owner[slot] = m;
                        map_masters(w); /* may move w->conns */
                }
                w->need_refresh = 1;
                rd->redirected = 1;
                requeue(w, rd, ks, cmd->count, -1);
        } else if (red == KRIB_REDIRECT_ASK) {
                w->stats.ask++;
                rd->redirected = 1;
                requeue(w, rd, ks, cmd->count, conn_get(w, to.host, to.port));
        } else if ((cls = krib_retry_classify(r->str, r->len)) != KRIB_ERR_FINAL) {
                w->stats.retries++;
                c->m.errors++;
                rd->trouble = 1;
                rd->class_mask |= 1u << cls;
                int64_t now = krib_clock_mono_us();
                if (!strncmp(r->str, "READONLY", 8) || !strncmp(r->str, "CLUSTERDOWN", 11))
                        w->need_refresh = 1;
                if (!strncmp(r->str, "CLUSTERDOWN", 11))
                        breaker_note(w, "cluster", &w->cluster_br,
                                     krib_breaker_failure(&w->cluster_br, &w->pol, KRIB_ERR_BUSY,
                                                          now, krib_retry_rand(&w->rng)));
                if (!strncmp(r->str, "NOSCRIPT", 8))
                        c->script = 0; /* reload before the next use */
                breaker_note(
                        w, c->m.addr, &c->br,
                        krib_breaker_failure(&c->br, &w->pol, cls, now, krib_retry_rand(&w->rng)));
                if (attempt % 20 == 0 && !rd->logged++)
                        krib_log_warn("writer",
                                      "msg=\"transient redis error, retrying\" "
                                      "node=%s:%d class=%s error=\"%s\"",
                                      c->addr.host, c->addr.port, krib_retry_class_name(cls),
                                      r->str);
                requeue(w, rd, ks, cmd->count, -1);
        } else if (cmd->mode == MODE_FENCED && cmd->count > 1) {
                /* A script error (one key's bad value, say) aborts the whole
                 * call: resend its keys one per call so only the offender
                 * fails. The script is atomic per call, so a key it had
                 * already handled is only compared again. */
                krib_log_warn("writer",
                              "msg=\"fence script failed for a chunk: retrying its keys one by "
                              "one\" node=%s keys=%u error=\"%s\"",
                              c->m.addr, cmd->count, krib_log_esc(r->str, r->len));
                w->stats.splits++;
                for (uint32_t y = 0; y < cmd->count; y++)
                        w->solo[ks[y]] = 1;
                requeue(w, rd, ks, cmd->count, -1);
        } else {
                fail_cmd(w, c, ops, ks, cmd->count, status, r->str);
        }
}

/* The WAIT that ends a round on c when redis.wait_replicas is set. What the
 * master acknowledged this round counts only once enough replicas have it:
 * on a shortfall, a timeout or a lost connection, those ops go back to the
 * queue (resending is safe: UNLINK is idempotent, the fence compares) and
 * the node takes a transient failure of class busy. */
static void read_wait(krib_writer_t *w, conn_t *c, const krib_wop_t *ops, uint8_t *status,
                      round_t *rd) {
        long long acked = -1;
        const char *why = "connection lost";
        redisReply *r = NULL;
        if (c->c && krib_conn_read(c->c, &r) == 0) {
                if (r->type == REDIS_REPLY_INTEGER)
                        acked = r->integer;
                why = r->type == REDIS_REPLY_ERROR ? r->str : "replicas short";
        } else if (c->c) {
                conn_fail(w, c, krib_conn_errstr(c->c));
        }
        if (acked >= w->conf->redis_wait_replicas) {
                freeReplyObject(r);
                return;
        }
        uint32_t reverted = 0;
        for (int32_t x = c->cmd_head; x >= 0; x = w->cmds[x].next) {
                const cmd_t *cmd = &w->cmds[x];
                for (uint32_t y = 0; y < cmd->count; y++) {
                        uint32_t k = w->order[cmd->first + y];
                        if (status[k] == KRIB_WOP_PENDING || status[k] == KRIB_WOP_FAILED)
                                continue;
                        status[k] = KRIB_WOP_PENDING;
                        requeue(w, rd, &k, 1, -1);
                        reverted++;
                }
        }
        (void)ops;
        w->stats.keys -= reverted < w->stats.keys ? reverted : w->stats.keys;
        w->stats.wait_short++;
        rd->trouble = 1;
        rd->class_mask |= 1u << KRIB_ERR_BUSY;
        breaker_note(w, c->m.addr, &c->br,
                     krib_breaker_failure(&c->br, &w->pol, KRIB_ERR_BUSY, krib_clock_mono_us(),
                                          krib_retry_rand(&w->rng)));
        if (w->stats.wait_short % 20 == 1)
                krib_log_warn("writer",
                              "msg=\"WAIT: writes not yet on enough replicas, resending\" "
                              "node=%s acked=%lld wanted=%lld keys=%u error=\"%s\"",
                              c->m.addr, acked, (long long)w->conf->redis_wait_replicas, reverted,
                              krib_log_esc(why, strlen(why)));
        if (r)
                freeReplyObject(r);
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

/* One command of a probe: 1 good, 0 bad, -1 not permitted (an ACL without
 * that command; the probe then does without it). */
static int probe_cmd(krib_writer_t *w, conn_t *c, const char *cmd) {
        redisReply *r = krib_conn_command(c->c, cmd);
        if (!r) {
                conn_fail(w, c, krib_conn_errstr(c->c));
                return 0;
        }
        int ok;
        if (r->type == REDIS_REPLY_ERROR)
                ok = !strncmp(r->str, "NOPERM", 6) ? -1 : 0;
        else if (!strcmp(cmd, "CLUSTER INFO"))
                ok = r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok") != NULL;
        else if (!strcmp(cmd, "INFO memory")) {
                long long used =
                        r->type == REDIS_REPLY_STRING ? info_field(r->str, "used_memory") : -1;
                long long max =
                        r->type == REDIS_REPLY_STRING ? info_field(r->str, "maxmemory") : -1;
                /* Full means writes still fail; eviction policies make room. */
                int noevict = r->type == REDIS_REPLY_STRING &&
                              strstr(r->str, "maxmemory_policy:noeviction") != NULL;
                ok = !(noevict && max > 0 && used >= max);
                if (!ok)
                        krib_log_info("writer",
                                      "msg=\"probe: redis is full\" node=%s used_memory=%lld "
                                      "maxmemory=%lld",
                                      c->m.addr, used, max);
        } else
                ok = r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        return ok;
}

/* Probes a node whose breaker is open: reachable, serving, not full. */
static int probe_node(krib_writer_t *w, conn_t *c) {
        c->retry_at_us = 0; /* the breaker already spaced this attempt */
        if (conn_ensure(w, c))
                return 0;
        static const char *const cluster_cmds[] = {"PING", "CLUSTER INFO", "INFO memory", NULL};
        static const char *const plain_cmds[] = {"PING", "INFO memory", NULL};
        const char *const *cmds =
                w->conf->redis_mode == KRIB_REDIS_CLUSTER ? cluster_cmds : plain_cmds;
        for (int i = 0; cmds[i]; i++)
                if (!c->c || probe_cmd(w, c, cmds[i]) == 0)
                        return 0;
        return 1;
}

/* Whether the node may take this command now, probing it when due. */
static int breaker_pass(krib_writer_t *w, conn_t *c, int fenced) {
        int64_t now = krib_clock_mono_us();
        /* A probe is a synchronous command: never on a connection that holds
         * this round's pipelined commands (their replies would shift by
         * one); it waits for the next round. */
        if (krib_breaker_probe_due(&c->br, now) && c->cmd_head < 0 &&
            (!c->c || krib_conn_inflight(c->c) == 0)) {
                int ok = probe_node(w, c);
                breaker_note(w, c->m.addr, &c->br,
                             krib_breaker_probed(&c->br, &w->pol, ok, krib_clock_mono_us(),
                                                 krib_retry_rand(&w->rng)));
        }
        return krib_breaker_allows(&c->br, fenced);
}

/* The cluster breaker's probe: a fresh slot map and cluster_state:ok. */
static void probe_cluster(krib_writer_t *w) {
        if (!krib_breaker_probe_due(&w->cluster_br, krib_clock_mono_us()))
                return;
        char err[256];
        int ok = krib_writer_refresh(w, err, sizeof(err)) == 0;
        for (size_t i = 0; ok && i < w->topo.master_count; i++) {
                conn_t *c = &w->conns[w->master_conn[i]];
                if (conn_ensure(w, c) == 0 && c->c) {
                        ok = probe_cmd(w, c, "CLUSTER INFO") != 0;
                        break;
                }
        }
        breaker_note(w, "cluster", &w->cluster_br,
                     krib_breaker_probed(&w->cluster_br, &w->pol, ok, krib_clock_mono_us(),
                                         krib_retry_rand(&w->rng)));
}

/* Earliest probe among open breakers (now when none is open). */
static int64_t breaker_next_probe_us(const krib_writer_t *w) {
        int64_t next = INT64_MAX;
        if (w->cluster_br.state == KRIB_BREAKER_OPEN)
                next = w->cluster_br.probe_at_us;
        for (size_t i = 0; i < w->conn_count; i++)
                if (w->conns[i].br.state == KRIB_BREAKER_OPEN && w->conns[i].br.probe_at_us < next)
                        next = w->conns[i].br.probe_at_us;
        return next == INT64_MAX ? krib_clock_mono_us() : next;
}

/* (Re)loads the fence script where a NOSCRIPT or a transient refusal left
 * it unloaded; only before this round appended anything to c. */
static void ensure_script(krib_writer_t *w, conn_t *c) {
        if (c->script != 0 || !c->c || c->cmd_head >= 0)
                return;
        load_script(w, c);
}

int krib_writer_apply(krib_writer_t *w, const krib_wop_t *ops, size_t n, uint8_t *status) {
        if (grow(w, n) || name_fences(w, ops, n, memset(status, KRIB_WOP_PENDING, n))) {
                krib_log_error("writer", "msg=\"out of memory\" ops=%zu", n);
                return -1;
        }
        size_t npend = 0;
        for (size_t i = 0; i < n; i++) {
                w->slot_of[i] = (uint16_t)krib_slot_of(ops[i].key, ops[i].len);
                w->ask_conn[i] = -1;
                w->solo[i] = 0;
                if (status[i] == KRIB_WOP_PENDING)
                        w->pend[npend++] = (uint32_t)i;
        }
        unsigned attempt = 0, redirect_rounds = 0;
        const size_t max_keys = (size_t)w->conf->redis_max_keys_per_command;
        const size_t max_bytes = (size_t)w->conf->redis_max_command_bytes;

        while (npend) {
                int64_t now = krib_clock_mono_us();
                if (w->stop && *w->stop) {
                        if (!w->stop_seen_us)
                                w->stop_seen_us = now;
                        if (now - w->stop_seen_us >= w->drain_us)
                                return -1;
                }
                if (w->conf->redis_mode == KRIB_REDIS_CLUSTER &&
                    (w->need_refresh || now - w->refreshed_at_us > REFRESH_PERIOD_US)) {
                        char err[256];
                        if (krib_writer_refresh(w, err, sizeof(err))) {
                                if (attempt % 20 == 0)
                                        krib_log_warn("writer",
                                                      "msg=\"topology refresh failed\" "
                                                      "error=\"%s\"",
                                                      err);
                                breaker_note(w, "cluster", &w->cluster_br,
                                             krib_breaker_failure(&w->cluster_br, &w->pol,
                                                                  KRIB_ERR_CONN, now,
                                                                  krib_retry_rand(&w->rng)));
                        }
                }
                if (w->conf->redis_mode == KRIB_REDIS_CLUSTER)
                        probe_cluster(w);
                for (size_t i = 0; i < w->conn_count; i++) {
                        w->conns[i].cmd_head = w->conns[i].cmd_tail = -1;
                        w->conns[i].rt_keys = 0;
                        w->conns[i].script_counted = 0;
                        w->conns[i].wait_sent = 0;
                }
                /* Masters' probes run here, between rounds, on connections
                 * with nothing in flight. */
                for (size_t m = 0; m < w->topo.master_count; m++) {
                        conn_t *c = &w->conns[w->master_conn[m]];
                        if (c->br.state == KRIB_BREAKER_OPEN)
                                breaker_pass(w, c, 1);
                }
                int cluster_open = !krib_breaker_allows(&w->cluster_br, 1);

                /* Counting sort of the pending ops by slot. */
                memset(w->slot_count, 0, (KRIB_SLOT_COUNT + 1) * sizeof(*w->slot_count));
                for (size_t i = 0; i < npend; i++)
                        w->slot_count[w->slot_of[w->pend[i]] + 1]++;
                for (size_t s = 0; s < KRIB_SLOT_COUNT; s++)
                        w->slot_count[s + 1] += w->slot_count[s];
                for (size_t i = 0; i < npend; i++)
                        w->order[w->slot_count[w->slot_of[w->pend[i]]]++] = w->pend[i];

                int64_t flush_at = krib_clock_mono_us();
                size_t ncmd = 0;
                round_t rd = {0};

                /* Runs of one slot and one target; within a run, plain and
                 * fenced ops are stably separated, then cut into commands. */
                for (size_t i = 0; i < npend;) {
                        unsigned slot = w->slot_of[w->order[i]];
                        int32_t ask = w->ask_conn[w->order[i]];
                        size_t j = i + 1;
                        while (j < npend && w->slot_of[w->order[j]] == slot &&
                               w->ask_conn[w->order[j]] == ask)
                                j++;
                        int conn = ask;
                        if (conn < 0) {
                                int32_t m = w->topo.slot_owner[slot];
                                conn = m >= 0 ? w->master_conn[m] : -1;
                        }
                        if (conn >= 0 &&
                            (cluster_open ||
                             !breaker_pass(w, &w->conns[conn], has_fenced(ops, w->order, i, j)))) {
                                rd.blocked = 1;
                                requeue(w, &rd, &w->order[i], (uint32_t)(j - i), ask);
                                i = j;
                                continue;
                        }
                        if (conn >= 0 && conn_ensure(w, &w->conns[conn]) == 0)
                                ensure_script(w, &w->conns[conn]);
                        if (conn < 0 || !w->conns[conn].c) {
                                if (conn < 0)
                                        w->need_refresh = 1;
                                rd.trouble = 1;
                                requeue(w, &rd, &w->order[i], (uint32_t)(j - i), ask);
                                i = j;
                                continue;
                        }
                        /* Stable partition: plain, then fenced, then fan-out. */
                        size_t t = 0, bound[3];
                        for (int md = 0; md < 3; md++) {
                                for (size_t x = i; x < j; x++)
                                        if (mode_of(&ops[w->order[x]]) == md)
                                                w->tmp[t++] = w->order[x];
                                bound[md] = i + t;
                        }
                        memcpy(&w->order[i], w->tmp, (j - i) * sizeof(*w->order));
                        for (size_t a = i; a < j;) {
                                int mode = a < bound[0]   ? MODE_PLAIN
                                           : a < bound[1] ? MODE_FENCED
                                                          : MODE_FANOUT;
                                int fenced = mode == MODE_FENCED;
                                size_t end = bound[mode];
                                size_t b = a + 1;
                                if (mode != MODE_FANOUT && !w->solo[w->order[a]]) {
                                        /* Cut by keys and by bytes: one huge command
                                         * holds the node (and its replica link). */
                                        size_t bytes = op_bytes(&ops[w->order[a]]);
                                        while (b < end && b - a < max_keys &&
                                               !w->solo[w->order[b]] &&
                                               (bytes += op_bytes(&ops[w->order[b]])) <= max_bytes)
                                                b++;
                                }
                                if (fenced && w->conns[conn].script < 0) {
                                        fail_cmd(w, &w->conns[conn], ops, &w->order[a],
                                                 (uint32_t)(b - a), status,
                                                 "fence script not loaded");
                                } else if (fenced && w->conns[conn].script == 0) {
                                        /* Refused for now (LOADING, BUSY): retried with
                                         * backoff; the node's busy budget applies. */
                                        script_wait(w, &rd, &w->conns[conn], &w->order[a],
                                                    (uint32_t)(b - a));
                                } else if (append(w, w->conns[conn].c, ops, a, b, mode, ask >= 0) ||
                                           add_cmd(w, &ncmd, conn, (uint32_t)a, (uint32_t)(b - a),
                                                   ask >= 0, mode)) {
                                        return -1;
                                }
                                a = b;
                        }
                        i = j;
                }

                /* Write every master's pipeline before reading any reply. */
                for (size_t ci = 0; ci < w->conn_count; ci++) {
                        conn_t *c = &w->conns[ci];
                        if (c->cmd_head < 0)
                                continue;
                        if (w->conf->redis_wait_replicas > 0) {
                                if (krib_conn_append_fmt(c->c, "WAIT %lld %lld",
                                                         (long long)w->conf->redis_wait_replicas,
                                                         (long long)w->conf->redis_wait_timeout_ms))
                                        return -1;
                                c->wait_sent = 1;
                        }
                        if (krib_conn_flush(c->c)) {
                                rd.trouble = 1;
                                for (int32_t x = c->cmd_head; x >= 0; x = w->cmds[x].next)
                                        requeue(w, &rd, &w->order[w->cmds[x].first],
                                                w->cmds[x].count, -1);
                                conn_fail(w, c, krib_conn_errstr(c->c));
                                c->cmd_head = -1;
                        }
                }

                for (size_t ci = 0; ci < w->conn_count; ci++) {
                        if (w->conns[ci].cmd_head < 0)
                                continue;
                        w->stats.round_trips++;
                        unsigned b = 0;
                        while (b < 14 && w->conns[ci].rt_keys > (1u << b))
                                b++;
                        w->stats.keys_per_rt[b]++;
                        w->stats.rt_keys_sum += w->conns[ci].rt_keys;
                        for (int32_t x = w->conns[ci].cmd_head; x >= 0; x = w->cmds[x].next) {
                                conn_t *c = &w->conns[ci];
                                cmd_t *cmd = &w->cmds[x];
                                redisReply *r = NULL;
                                if (c->c && cmd->asking) {
                                        if (krib_conn_read(c->c, &r) == 0)
                                                freeReplyObject(r);
                                        else
                                                conn_fail(w, c, krib_conn_errstr(c->c));
                                        r = NULL;
                                }
                                if (c->c && krib_conn_read(c->c, &r) != 0) {
                                        conn_fail(w, c, krib_conn_errstr(c->c));
                                        r = NULL;
                                }
                                if (!r) { /* lost with the connection: unknown, so again */
                                        rd.trouble = 1;
                                        requeue(w, &rd, &w->order[cmd->first], cmd->count, -1);
                                        continue;
                                }
                                on_reply(w, ci, cmd, r, ops, status, &rd, attempt);
                                freeReplyObject(r);
                        }
                        if (w->conns[ci].wait_sent)
                                read_wait(w, &w->conns[ci], ops, status, &rd);
                        krib_writer_node_t *m = &w->conns[ci].m;
                        double rt = (double)(krib_clock_mono_us() - flush_at) / 1e6;
                        m->round_trips++;
                        m->rt_sum_s += rt;
                        for (int k = 0; k < KRIB_WRITER_RT_BUCKETS; k++)
                                m->rt_le[k] += rt <= krib_writer_rt_bounds_s[k];
                }

                if (!rd.trouble && !rd.blocked && !rd.redirected)
                        breaker_note(w, "cluster", &w->cluster_br,
                                     krib_breaker_success(&w->cluster_br));
                uint32_t *t = w->pend;
                w->pend = w->pend_next;
                w->pend_next = t;
                npend = rd.nnext;
                if (!npend)
                        break;
                w->stats.healthy = !rd.trouble && !rd.blocked;
                int64_t wait = 0;
                if (rd.redirected) {
                        /* A redirect loop (slots mid-migration): slow down after a few. */
                        wait = krib_retry_delay_us(&w->pol, KRIB_ERR_REDIRECT, redirect_rounds++,
                                                   krib_retry_rand(&w->rng));
                        breaker_note(w, "cluster", &w->cluster_br,
                                     krib_breaker_failure(&w->cluster_br, &w->pol,
                                                          KRIB_ERR_REDIRECT, krib_clock_mono_us(),
                                                          krib_retry_rand(&w->rng)));
                }
                if (rd.trouble) {
                        if (!rd.class_mask)
                                rd.class_mask = 1u << KRIB_ERR_CONN;
                        for (int c = 0; c < KRIB_ERR_CLASSES; c++) {
                                int64_t d = rd.class_mask & (1u << c)
                                                    ? krib_retry_delay_us(
                                                              &w->pol, (krib_err_class_t)c, attempt,
                                                              krib_retry_rand(&w->rng))
                                                    : 0;
                                if (d > wait)
                                        wait = d;
                        }
                        attempt++;
                }
                if (rd.blocked) {
                        /* Held back by open breakers: sleep to the next probe. */
                        int64_t next = breaker_next_probe_us(w) - krib_clock_mono_us();
                        if (next > wait)
                                wait = next < 1000 ? 1000 : next;
                }
                if (wait > 0)
                        nap(w, wait);
        }
        return 0;
}
