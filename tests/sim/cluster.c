/* cluster: a simulated Redis Cluster of SIM_NODES masters.
 *
 * Keys live on the node owning their slot; the real fence.lua runs in an
 * embedded Lua 5.1 (as in Redis) with redis.call bound to the node's keys.
 * A slot migrates one key per step (MIGRATING/IMPORTING), so MOVED, ASK and
 * TRYAGAIN come out exactly as Redis gives them; other error replies are
 * injected at sim_faults.err_ppm. Each master has one replica that applies
 * the master's writes after a lag (each write command's keys, in order);
 * WAIT blocks the connection until the replica has everything the master
 * ran so far, or until its timeout; a failover promotes the replica in the
 * master's place (same address): writes it had not received are lost. */
#include <stdarg.h>
#include <strings.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"
#include "slot.h"

typedef struct {
        char *k, *v;
        size_t kl, vl;
        int64_t exp_us; /* 0: none */
        int hash;       /* written by HSET */
} ent_t;

typedef struct {
        ent_t *e;
        size_t n, cap;
        int script; /* the fence script is in this node's cache */
} node_t;

sim_faults_t sim_faults;
sim_node_state_t sim_node[SIM_NODES];
sim_exec_hook_t *sim_on_exec;

static node_t nodes[SIM_NODES];
int64_t sim_cluster_reply_at_us;
int64_t sim_repl_lag_max_us = 20000;
static uint8_t owner[16384];
static int mig_slot = -1, mig_from, mig_to;
static lua_State *L;
static char *script_src;
static char sha[41];
static int cur; /* the node a script runs on */

/* ---- keys ---- */

static ent_t *find(node_t *nd, const char *k, size_t kl) {
        for (size_t i = 0; i < nd->n; i++) {
                ent_t *e = &nd->e[i];
                if (e->kl == kl && !memcmp(e->k, k, kl)) {
                        if (e->exp_us && e->exp_us <= krib_sim_now_us) {
                                free(e->k);
                                free(e->v);
                                *e = nd->e[--nd->n];
                                return NULL;
                        }
                        return e;
                }
        }
        return NULL;
}

static int del(node_t *nd, const char *k, size_t kl) {
        ent_t *e = find(nd, k, kl);
        if (!e)
                return 0;
        free(e->k);
        free(e->v);
        *e = nd->e[--nd->n];
        return 1;
}

static ent_t *put(node_t *nd, const char *k, size_t kl, const char *v, size_t vl) {
        ent_t *e = find(nd, k, kl);
        if (!e) {
                if (nd->n == nd->cap) {
                        nd->cap = nd->cap ? 2 * nd->cap : 64;
                        nd->e = realloc(nd->e, nd->cap * sizeof(*nd->e));
                        if (!nd->e)
                                abort();
                }
                e = &nd->e[nd->n++];
                e->k = malloc(kl + 1);
                memcpy(e->k, k, kl);
                e->k[kl] = 0;
                e->kl = kl;
        } else {
                free(e->v);
        }
        e->v = malloc(vl + 1);
        memcpy(e->v, v, vl);
        e->v[vl] = 0;
        e->vl = vl;
        e->exp_us = 0;
        e->hash = 0;
        return e;
}

const char *sim_cluster_get(const char *key, size_t len, size_t *vlen) {
        for (int n = 0; n < SIM_NODES; n++) {
                ent_t *e = find(&nodes[n], key, len);
                if (e) {
                        *vlen = e->vl;
                        return e->v;
                }
        }
        return NULL;
}

void sim_cluster_script_flush(int n) {
        nodes[n].script = 0;
}

int sim_cluster_slot_owner(unsigned slot) {
        return owner[slot & 16383];
}

/* ---- Lua: redis.call over the current node ---- */

static int l_call(lua_State *l) {
        int argc = lua_gettop(l);
        if (argc < 1)
                return luaL_error(l, "wrong number of arguments");
        size_t cl, kl = 0;
        const char *cmd = luaL_checklstring(l, 1, &cl);
        const char *k = argc >= 2 ? luaL_checklstring(l, 2, &kl) : NULL;
        node_t *nd = &nodes[cur];
        if (!strcasecmp(cmd, "GET") && argc == 2) {
                ent_t *e = find(nd, k, kl);
                if (!e)
                        lua_pushboolean(l, 0);
                else
                        lua_pushlstring(l, e->v, e->vl);
                return 1;
        }
        if (!strcasecmp(cmd, "SET") && (argc == 3 || argc == 5)) {
                size_t vl;
                const char *v = luaL_checklstring(l, 3, &vl);
                ent_t *e = put(nd, k, kl, v, vl);
                if (argc == 5)
                        e->exp_us = krib_sim_now_us + 1000 * atoll(luaL_checkstring(l, 5));
                lua_newtable(l);
                lua_pushstring(l, "OK");
                lua_setfield(l, -2, "ok");
                return 1;
        }
        if (!strcasecmp(cmd, "UNLINK") && argc >= 2) {
                int c = 0;
                for (int i = 2; i <= argc; i++) {
                        size_t xl;
                        const char *x = luaL_checklstring(l, i, &xl);
                        c += del(nd, x, xl);
                }
                lua_pushinteger(l, c);
                return 1;
        }
        if (!strcasecmp(cmd, "HSET") && argc >= 4) {
                ent_t *e = put(nd, k, kl, "(hash)", 6);
                e->hash = 1;
                lua_pushinteger(l, (argc - 2) / 2);
                return 1;
        }
        if (!strcasecmp(cmd, "PEXPIRE") && argc == 3) {
                ent_t *e = find(nd, k, kl);
                if (e)
                        e->exp_us = krib_sim_now_us + 1000 * atoll(luaL_checkstring(l, 3));
                lua_pushinteger(l, e != NULL);
                return 1;
        }
        return luaL_error(l, "Unknown Redis command called from script");
}

static int l_error_reply(lua_State *l) {
        const char *msg = luaL_checkstring(l, 1);
        lua_newtable(l);
        lua_pushstring(l, msg);
        lua_setfield(l, -2, "err");
        return 1;
}

int sim_cluster_init(const char *path) {
        FILE *f = fopen(path, "rb");
        if (!f)
                return -1;
        fseek(f, 0, SEEK_END);
        long sz = ftell(f);
        fseek(f, 0, SEEK_SET);
        script_src = malloc((size_t)sz + 1);
        if (fread(script_src, 1, (size_t)sz, f) != (size_t)sz) {
                fclose(f);
                return -1;
        }
        script_src[sz] = 0;
        fclose(f);
        uint64_t h = 1469598103934665603ULL;
        for (long i = 0; i < sz; i++)
                h = (h ^ (uint8_t)script_src[i]) * 1099511628211ULL;
        snprintf(sha, sizeof(sha), "%016llx%016llx%08x", (unsigned long long)h,
                 (unsigned long long)(h * 31), (unsigned)(h >> 7));
        L = luaL_newstate();
        luaL_openlibs(L);
        lua_newtable(L);
        lua_pushcfunction(L, l_call);
        lua_setfield(L, -2, "call");
        lua_pushcfunction(L, l_error_reply);
        lua_setfield(L, -2, "error_reply");
        lua_setglobal(L, "redis");
        memset(nodes, 0, sizeof(nodes));
        for (unsigned s = 0; s < 16384; s++)
                owner[s] = (uint8_t)(s * SIM_NODES / 16384);
        mig_slot = -1;
        memset(sim_node, 0, sizeof(sim_node));
        return 0;
}

/* ---- replicas ---- */

typedef struct {
        int64_t at_us; /* when the replica applies it */
        char *k, *v;
        size_t kl, vl;
        int present, hash;
        int64_t exp_us;
} repl_t;

static node_t replica[SIM_NODES];
static repl_t *rlog[SIM_NODES];
static size_t rlog_n[SIM_NODES], rlog_cap[SIM_NODES], rlog_head[SIM_NODES];
static int64_t rlog_last_us[SIM_NODES];

static void node_clear(node_t *nd) {
        for (size_t i = 0; i < nd->n; i++) {
                free(nd->e[i].k);
                free(nd->e[i].v);
        }
        free(nd->e);
        memset(nd, 0, sizeof(*nd));
}

static char *dup_bytes(const char *p, size_t n) {
        char *d = malloc(n + 1);
        if (!d)
                abort();
        memcpy(d, p, n);
        d[n] = 0;
        return d;
}

/* Key k of master n changed: its state goes down the replication stream. */
static void repl_note(int n, const char *k, size_t kl) {
        if (rlog_n[n] == rlog_cap[n]) {
                rlog_cap[n] = rlog_cap[n] ? 2 * rlog_cap[n] : 256;
                rlog[n] = realloc(rlog[n], rlog_cap[n] * sizeof(*rlog[n]));
                if (!rlog[n])
                        abort();
        }
        int64_t at = krib_sim_now_us + (int64_t)sim_below((uint64_t)sim_repl_lag_max_us + 1);
        if (at < rlog_last_us[n])
                at = rlog_last_us[n];
        rlog_last_us[n] = at;
        const ent_t *e = find(&nodes[n], k, kl);
        repl_t *r = &rlog[n][rlog_n[n]++];
        memset(r, 0, sizeof(*r));
        r->at_us = at;
        r->k = dup_bytes(k, kl);
        r->kl = kl;
        if (e) {
                r->present = 1;
                r->v = dup_bytes(e->v, e->vl);
                r->vl = e->vl;
                r->hash = e->hash;
                r->exp_us = e->exp_us;
        }
}

static void repl_apply(int n, int64_t upto) {
        while (rlog_head[n] < rlog_n[n] && rlog[n][rlog_head[n]].at_us <= upto) {
                repl_t *r = &rlog[n][rlog_head[n]++];
                if (r->present) {
                        ent_t *d = put(&replica[n], r->k, r->kl, r->v, r->vl);
                        d->exp_us = r->exp_us;
                        d->hash = r->hash;
                } else {
                        del(&replica[n], r->k, r->kl);
                }
                free(r->k);
                free(r->v);
        }
        if (rlog_head[n] == rlog_n[n])
                rlog_head[n] = rlog_n[n] = 0;
}

static void repl_drop(int n) {
        for (size_t i = rlog_head[n]; i < rlog_n[n]; i++) {
                free(rlog[n][i].k);
                free(rlog[n][i].v);
        }
        rlog_head[n] = rlog_n[n] = 0;
}

void sim_cluster_replicate(void) {
        for (int n = 0; n < SIM_NODES; n++)
                repl_apply(n, krib_sim_now_us);
}

void sim_cluster_failover(int n) {
        repl_apply(n, krib_sim_now_us);
        repl_drop(n);
        node_clear(&nodes[n]);
        for (size_t i = 0; i < replica[n].n; i++) {
                const ent_t *e = &replica[n].e[i];
                ent_t *d = put(&nodes[n], e->k, e->kl, e->v, e->vl);
                d->exp_us = e->exp_us;
                d->hash = e->hash;
        }
        nodes[n].script = 0; /* a promoted replica's script cache is its own */
}

void sim_cluster_free(void) {
        for (int n = 0; n < SIM_NODES; n++) {
                repl_drop(n);
                free(rlog[n]);
                rlog[n] = NULL;
                rlog_cap[n] = 0;
                rlog_last_us[n] = 0;
                node_clear(&replica[n]);
        }
        for (int n = 0; n < SIM_NODES; n++) {
                for (size_t i = 0; i < nodes[n].n; i++) {
                        free(nodes[n].e[i].k);
                        free(nodes[n].e[i].v);
                }
                free(nodes[n].e);
        }
        memset(nodes, 0, sizeof(nodes));
        if (L)
                lua_close(L);
        L = NULL;
        free(script_src);
        script_src = NULL;
}

/* ---- replies ---- */

static void err(sim_buf_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void err(sim_buf_t *o, const char *fmt, ...) {
        char m[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m, sizeof(m), fmt, ap);
        va_end(ap);
        sim_buf_printf(o, "-%s\r\n", m);
}

static void bulk(sim_buf_t *o, const char *s, size_t n) {
        sim_buf_printf(o, "$%zu\r\n", n);
        sim_buf_put(o, s, n);
        sim_buf_put(o, "\r\n", 2);
}

static void run_script(int n, int argc, char **argv, size_t *lens, sim_buf_t *o) {
        long nk = atol(argv[2]);
        if (nk < 0 || 3 + nk > argc) {
                err(o, "ERR Number of keys can't be greater than number of args");
                return;
        }
        cur = n;
        lua_newtable(L);
        for (long i = 0; i < nk; i++) {
                lua_pushlstring(L, argv[3 + i], lens[3 + i]);
                lua_rawseti(L, -2, (int)i + 1);
        }
        lua_setglobal(L, "KEYS");
        lua_newtable(L);
        for (int i = 3 + (int)nk; i < argc; i++) {
                lua_pushlstring(L, argv[i], lens[i]);
                lua_rawseti(L, -2, i - 2 - (int)nk);
        }
        lua_setglobal(L, "ARGV");
        if (luaL_loadbuffer(L, script_src, strlen(script_src), "@fence") || lua_pcall(L, 0, 1, 0)) {
                err(o, "ERR Error running script: %s", lua_tostring(L, -1));
                lua_pop(L, 1);
                return;
        }
        if (lua_istable(L, -1)) {
                lua_getfield(L, -1, "err");
                if (lua_isstring(L, -1)) {
                        err(o, "%s", lua_tostring(L, -1));
                        lua_pop(L, 2);
                        return;
                }
                lua_pop(L, 1);
                size_t k = lua_objlen(L, -1);
                sim_buf_printf(o, "*%zu\r\n", k);
                for (size_t i = 1; i <= k; i++) {
                        lua_rawgeti(L, -1, (int)i);
                        sim_buf_printf(o, ":%lld\r\n", (long long)lua_tointeger(L, -1));
                        lua_pop(L, 1);
                }
        } else {
                err(o, "ERR sim: script returned no table");
        }
        lua_pop(L, 1);
}

static void cluster_slots(sim_buf_t *o) {
        /* Ranges of equal owner, in slot order. */
        int ranges = 0;
        for (unsigned s = 0; s < 16384; s++)
                ranges += s == 0 || owner[s] != owner[s - 1];
        sim_buf_printf(o, "*%d\r\n", ranges);
        for (unsigned s = 0; s < 16384;) {
                unsigned e = s;
                while (e + 1 < 16384 && owner[e + 1] == owner[s])
                        e++;
                char id[41];
                snprintf(id, sizeof(id), "%040d", owner[s]);
                sim_buf_printf(o, "*3\r\n:%u\r\n:%u\r\n*3\r\n", s, e);
                bulk(o, "127.0.0.1", 9);
                sim_buf_printf(o, ":%d\r\n", SIM_BASE_PORT + owner[s]);
                bulk(o, id, 40);
                s = e + 1;
        }
}

/* Key positions of a data command: [first, end). */
static int key_range(const char *cmd, int argc, char **argv, int *first, int *end) {
        if (!strcasecmp(cmd, "UNLINK")) {
                *first = 1;
                *end = argc;
                return argc > 1;
        }
        if (!strcasecmp(cmd, "EVALSHA")) {
                *first = 3;
                *end = 3 + (argc > 2 ? atoi(argv[2]) : 0);
                return *end <= argc && *end > 3;
        }
        if (!strcasecmp(cmd, "PUBLISH") || !strcasecmp(cmd, "XADD")) {
                *first = 1;
                *end = 2;
                return argc > 2;
        }
        return 0;
}

int sim_cluster_exec(int n, int asking, int argc, char **argv, size_t *lens, sim_buf_t *o) {
        const char *cmd = argv[0];
        if (!strcasecmp(cmd, "ASKING")) {
                sim_buf_printf(o, "+OK\r\n");
                return 1;
        }
        if (sim_on_exec)
                sim_on_exec(n, argc, argv, lens);
        if (!strcasecmp(cmd, "PING")) {
                sim_buf_printf(o, "+PONG\r\n");
                return 0;
        }
        if (!strcasecmp(cmd, "CLUSTER") && argc == 2 && !strcasecmp(argv[1], "SLOTS")) {
                cluster_slots(o);
                return 0;
        }
        if (!strcasecmp(cmd, "CLUSTER") && argc == 2 && !strcasecmp(argv[1], "INFO")) {
                bulk(o, "cluster_state:ok\r\n", 18);
                return 0;
        }
        if (!strcasecmp(cmd, "SCRIPT") && argc == 3 && !strcasecmp(argv[1], "LOAD") &&
            sim_faults.script_refused_node == n) {
                err(o, "NOPERM User krib has no permissions to run the 'script|load' command");
                return 0;
        }
        if (!strcasecmp(cmd, "SCRIPT") && argc == 3 && !strcasecmp(argv[1], "LOAD")) {
                nodes[n].script = 1;
                bulk(o, sha, 40);
                return 0;
        }
        if (!strcasecmp(cmd, "INFO")) {
                static const char info[] = "# Memory\r\nused_memory:1048576\r\nmaxmemory:0\r\n"
                                           "maxmemory_policy:noeviction\r\n";
                bulk(o, info, sizeof(info) - 1);
                return 0;
        }
        if (!strcasecmp(cmd, "WAIT")) {
                /* Blocks until the replica has every write so far, or the
                 * timeout; then says how many replicas have them. */
                repl_apply(n, krib_sim_now_us);
                int64_t done = rlog_head[n] < rlog_n[n] ? rlog_last_us[n] : krib_sim_now_us;
                int64_t timeout = argc > 2 ? atoll(argv[2]) * 1000 : 0;
                int ok = !timeout || done <= krib_sim_now_us + timeout;
                sim_cluster_reply_at_us = ok ? done : krib_sim_now_us + timeout;
                sim_buf_printf(o, ":%d\r\n", ok);
                return 0;
        }
        int first, end;
        if (!key_range(cmd, argc, argv, &first, &end)) {
                err(o, "ERR unknown command or arguments '%s'", cmd);
                return 0;
        }
        unsigned slot = krib_slot_of(argv[first], lens[first]);
        for (int i = first + 1; i < end; i++)
                if (krib_slot_of(argv[i], lens[i]) != slot) {
                        err(o, "CROSSSLOT Keys in request don't hash to the same slot");
                        return 0;
                }
        for (int i = first; sim_faults.acl_refused_key && i < end; i++)
                if (!strcmp(argv[i], sim_faults.acl_refused_key)) {
                        err(o, "NOPERM No permissions to access a key");
                        return 0;
                }
        if (sim_faults.err_ppm && sim_chance(sim_faults.err_ppm)) {
                static const char *const errs[] = {
                        "TRYAGAIN Multiple keys request during rehashing of slot",
                        "LOADING Redis is loading the dataset in memory",
                        "BUSY Redis is busy running a script.",
                        "OOM command not allowed when used memory > 'maxmemory'.",
                        "MASTERDOWN Link with MASTER is down",
                        "NOSCRIPT No matching script. Please use EVAL."};
                unsigned e = (unsigned)sim_below(6);
                if (e == 5) {
                        if (strcasecmp(cmd, "EVALSHA"))
                                e = 0;
                        else
                                nodes[n].script = 0; /* as after SCRIPT FLUSH */
                }
                err(o, "%s", errs[e]);
                return 0;
        }
        int here = 0;
        for (int i = first; i < end; i++)
                here += find(&nodes[n], argv[i], lens[i]) != NULL;
        int keys = end - first;
        if (owner[slot] != n) {
                if (!(asking && mig_slot == (int)slot && mig_to == n)) {
                        err(o, "MOVED %u 127.0.0.1:%d", slot, SIM_BASE_PORT + owner[slot]);
                        return 0;
                }
                if (here < keys && keys > 1) {
                        err(o, "TRYAGAIN Multiple keys request during rehashing of slot");
                        return 0;
                }
        } else if (mig_slot == (int)slot && mig_from == n && here < keys) {
                if (here == 0)
                        err(o, "ASK %u 127.0.0.1:%d", slot, SIM_BASE_PORT + mig_to);
                else
                        err(o, "TRYAGAIN Multiple keys request during rehashing of slot");
                return 0;
        }
        if (!strcasecmp(cmd, "UNLINK")) {
                int c = 0;
                for (int i = first; i < end; i++)
                        c += del(&nodes[n], argv[i], lens[i]);
                sim_buf_printf(o, ":%d\r\n", c);
        } else if (!strcasecmp(cmd, "EVALSHA")) {
                if (!nodes[n].script || strcmp(argv[1], sha))
                        err(o, "NOSCRIPT No matching script. Please use EVAL.");
                else
                        run_script(n, argc, argv, lens, o);
        } else if (!strcasecmp(cmd, "PUBLISH")) {
                sim_buf_printf(o, ":0\r\n");
        } else {
                bulk(o, "1-0", 3);
        }
        for (int i = first; i < end; i++)
                repl_note(n, argv[i], lens[i]);
        return 0;
}

/* ---- migration ---- */

int sim_cluster_migrating(void) {
        return mig_slot >= 0;
}

void sim_cluster_migrate_step(void) {
        if (mig_slot < 0) {
                /* A slot with keys when there are any, so ASK and TRYAGAIN occur. */
                int n = (int)sim_below(SIM_NODES);
                if (nodes[n].n) {
                        ent_t *e = &nodes[n].e[sim_below(nodes[n].n)];
                        mig_slot = (int)krib_slot_of(e->k, e->kl);
                } else {
                        mig_slot = (int)sim_below(16384);
                }
                mig_from = owner[mig_slot];
                mig_to = (mig_from + 1 + (int)sim_below(SIM_NODES - 1)) % SIM_NODES;
                return;
        }
        node_t *src = &nodes[mig_from];
        for (size_t i = 0; i < src->n; i++) {
                ent_t *e = &src->e[i];
                if ((int)krib_slot_of(e->k, e->kl) != mig_slot)
                        continue;
                ent_t *d = put(&nodes[mig_to], e->k, e->kl, e->v, e->vl);
                d->exp_us = e->exp_us;
                d->hash = e->hash;
                char *k = e->k;
                size_t kl = e->kl;
                free(e->v);
                *e = src->e[--src->n];
                repl_note(mig_from, k, kl);
                repl_note(mig_to, k, kl);
                free(k);
                return;
        }
        owner[mig_slot] = (uint8_t)mig_to; /* CLUSTER SETSLOT NODE on both */
        mig_slot = -1;
}
