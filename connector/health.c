#include "health.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "conn.h"
#include "log.h"
#include "util.h"

/* ---- pure ---------------------------------------------------------------- */

/* The value of "name:" at the start of a line of info, or NULL; *vlen its
 * length up to the line end. */
static const char *field(const char *info, size_t len, const char *name, size_t *vlen) {
        size_t nl = strlen(name);
        for (const char *p = info, *end = info + len; p < end;) {
                const char *eol = memchr(p, '\n', (size_t)(end - p));
                const char *le = eol ? eol : end;
                if ((size_t)(le - p) > nl && !memcmp(p, name, nl) && p[nl] == ':') {
                        const char *v = p + nl + 1;
                        *vlen = (size_t)(le - v);
                        if (*vlen && v[*vlen - 1] == '\r')
                                (*vlen)--;
                        return v;
                }
                p = eol ? eol + 1 : end;
        }
        return NULL;
}

static int num(const char *info, size_t len, const char *name, uint64_t *out) {
        size_t vl;
        const char *v = field(info, len, name, &vl);
        if (!v || !vl || vl > 20)
                return -1;
        uint64_t x = 0;
        for (size_t i = 0; i < vl; i++) {
                if (v[i] < '0' || v[i] > '9')
                        return -1;
                x = x * 10 + (uint64_t)(v[i] - '0');
        }
        *out = x;
        return 0;
}

int krib_health_parse_info(const char *info, size_t len, krib_health_master_t *out) {
        if (num(info, len, "used_memory", &out->used_memory))
                return -1;
        static const struct {
                const char *name;
                size_t off;
        } f[] = {
                {"maxmemory", offsetof(krib_health_master_t, maxmemory)},
                {"evicted_keys", offsetof(krib_health_master_t, evicted_keys)},
                {"expired_keys", offsetof(krib_health_master_t, expired_keys)},
                {"rejected_connections", offsetof(krib_health_master_t, rejected_connections)},
                {"instantaneous_ops_per_sec", offsetof(krib_health_master_t, ops_per_sec)},
                {"connected_clients", offsetof(krib_health_master_t, connected_clients)},
                {"blocked_clients", offsetof(krib_health_master_t, blocked_clients)},
                {"tracking_clients", offsetof(krib_health_master_t, tracking_clients)},
                {"tracking_total_keys", offsetof(krib_health_master_t, tracking_total_keys)},
                {"pubsub_channels", offsetof(krib_health_master_t, pubsub_channels)},
        };
        for (size_t i = 0; i < sizeof(f) / sizeof(*f); i++) {
                uint64_t *dst = (uint64_t *)((char *)out + f[i].off);
                if (num(info, len, f[i].name, dst))
                        *dst = 0; /* absent in this server's version: reported as 0 */
        }
        size_t vl;
        const char *v = field(info, len, "maxmemory_policy", &vl);
        snprintf(out->policy, sizeof(out->policy), "%.*s", v ? (int)vl : 0, v ? v : "");
        /* # Keyspace: "db0:keys=12,expires=0,avg_ttl=0", one line per db. */
        out->keys = 0;
        for (int db = 0; db < 16; db++) {
                char name[8];
                snprintf(name, sizeof(name), "db%d", db);
                v = field(info, len, name, &vl);
                if (v && vl > 5 && !memcmp(v, "keys=", 5))
                        out->keys += strtoull(v + 5, NULL, 10);
        }
        return 0;
}

static double skew_of(const krib_health_master_t *m, size_t n,
                      double (*get)(const krib_health_master_t *)) {
        double sum = 0, max = 0;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                if (!m[i].up)
                        continue;
                double x = get(&m[i]);
                sum += x;
                max = x > max ? x : max;
                k++;
        }
        if (k < 2 || sum <= 0)
                return 0;
        return max / (sum / (double)k) - 1;
}

static double get_memory(const krib_health_master_t *m) {
        return (double)m->used_memory;
}
static double get_ops(const krib_health_master_t *m) {
        return (double)m->ops_per_sec;
}
static double get_keys(const krib_health_master_t *m) {
        return (double)m->keys;
}
static double get_slots(const krib_health_master_t *m) {
        return (double)m->slots;
}

void krib_health_skew(const krib_health_master_t *m, size_t n, krib_health_skew_t *out) {
        out->memory = skew_of(m, n, get_memory);
        out->ops = skew_of(m, n, get_ops);
        out->keys = skew_of(m, n, get_keys);
        out->slots = skew_of(m, n, get_slots);
}

int krib_health_policy_can_oom(const char *policy) {
        return !strcmp(policy, "noeviction") || !strncmp(policy, "volatile-", 9);
}

int krib_health_guard(const krib_health_master_t *m, size_t n, int64_t percent) {
        if (percent <= 0)
                return -1;
        for (size_t i = 0; i < n; i++)
                if (m[i].up && m[i].maxmemory && krib_health_policy_can_oom(m[i].policy) &&
                    (double)m[i].used_memory * 100.0 > (double)m[i].maxmemory * (double)percent)
                        return (int)i;
        return -1;
}

/* ---- the poller ---------------------------------------------------------- */

struct krib_health {
        const krib_conf_t *conf;
        krib_tls_t *tls;
        pthread_t thread;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        int stop;
        /* Under mu: what the pipeline asked for and what was learnt. */
        krib_health_master_t *m;
        size_t n, cap;
        /* The thread's own: one connection per polled address. */
        krib_conn_t **conns;
        char (*conn_addr)[KRIB_ADDR_MAX];
        size_t nconns;
};

static krib_conn_t *connect_to(krib_health_t *h, const char *addr) {
        char host[KRIB_ADDR_MAX], err[256];
        const char *colon = strrchr(addr, ':');
        if (!colon)
                return NULL;
        snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
        int64_t io =
                h->conf->redis_command_timeout_ms < 2000 ? h->conf->redis_command_timeout_ms : 2000;
        krib_conn_t *c = krib_conn_connect(host, atoi(colon + 1), h->conf->redis_connect_timeout_ms,
                                           io, h->tls, err, sizeof(err));
        if (!c) {
                krib_log_debug("health", "msg=\"cannot connect\" node=%s error=\"%s\"", addr, err);
                return NULL;
        }
        if (krib_conn_auth(c, h->conf->redis_username, h->conf->redis_password, err, sizeof(err))) {
                krib_log_debug("health", "msg=\"redis AUTH failed\" node=%s error=\"%s\"", addr,
                               err);
                krib_conn_free(c);
                return NULL;
        }
        return c;
}

/* The connection for addr, opened when missing; NULL when it cannot be. */
static krib_conn_t **conn_slot(krib_health_t *h, const char *addr) {
        for (size_t i = 0; i < h->nconns; i++)
                if (!strcmp(h->conn_addr[i], addr))
                        return &h->conns[i];
        krib_conn_t **c = realloc(h->conns, (h->nconns + 1) * sizeof(*c));
        if (!c)
                return NULL;
        h->conns = c;
        char(*a)[KRIB_ADDR_MAX] = realloc(h->conn_addr, (h->nconns + 1) * sizeof(*a));
        if (!a)
                return NULL;
        h->conn_addr = a;
        snprintf(a[h->nconns], KRIB_ADDR_MAX, "%s", addr);
        h->conns[h->nconns] = NULL;
        return &h->conns[h->nconns++];
}

static void poll_once(krib_health_t *h) {
        pthread_mutex_lock(&h->mu);
        size_t n = h->n;
        char(*addrs)[KRIB_ADDR_MAX] = n ? malloc(n * sizeof(*addrs)) : NULL;
        for (size_t i = 0; addrs && i < n; i++)
                memcpy(addrs[i], h->m[i].addr, KRIB_ADDR_MAX);
        pthread_mutex_unlock(&h->mu);
        for (size_t i = 0; addrs && i < n; i++) {
                krib_conn_t **c = conn_slot(h, addrs[i]);
                if (c && !*c)
                        *c = connect_to(h, addrs[i]);
                redisReply *r = c && *c ? krib_conn_command(*c, "INFO") : NULL;
                krib_health_master_t got;
                memset(&got, 0, sizeof(got));
                int ok = r && r->type == REDIS_REPLY_STRING &&
                         !krib_health_parse_info(r->str, r->len, &got);
                if (r)
                        freeReplyObject(r);
                if (!ok && c && *c) {
                        krib_conn_free(*c); /* reconnect at the next poll */
                        *c = NULL;
                }
                pthread_mutex_lock(&h->mu);
                for (size_t j = 0; j < h->n; j++) {
                        if (strcmp(h->m[j].addr, addrs[i]))
                                continue;
                        if (ok) {
                                got.up = 1;
                                got.polled_ms = krib_clock_wall_ms();
                                got.slots = h->m[j].slots;
                                memcpy(got.addr, h->m[j].addr, KRIB_ADDR_MAX);
                                h->m[j] = got;
                        } else {
                                h->m[j].up = 0;
                        }
                }
                pthread_mutex_unlock(&h->mu);
        }
        free(addrs);
}

static void *run(void *arg) {
        krib_health_t *h = arg;
        pthread_mutex_lock(&h->mu);
        while (!h->stop) {
                pthread_mutex_unlock(&h->mu);
                poll_once(h);
                pthread_mutex_lock(&h->mu);
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                int64_t ns = until.tv_nsec + (h->conf->redis_health_interval_ms % 1000) * 1000000;
                until.tv_sec += h->conf->redis_health_interval_ms / 1000 + ns / 1000000000;
                until.tv_nsec = ns % 1000000000;
                while (!h->stop && pthread_cond_timedwait(&h->cv, &h->mu, &until) != ETIMEDOUT)
                        ;
        }
        pthread_mutex_unlock(&h->mu);
        return NULL;
}

krib_health_t *krib_health_new(const krib_conf_t *conf, char *errstr, size_t errstr_size) {
        if (!conf->redis_health_interval_ms)
                return NULL;
        krib_health_t *h = calloc(1, sizeof(*h));
        if (!h) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        h->conf = conf;
        if (conf->redis_tls) {
                krib_tls_opts_t o = {conf->redis_tls_ca_file, conf->redis_tls_cert_file,
                                     conf->redis_tls_key_file, conf->redis_tls_server_name,
                                     (int)conf->redis_tls_verify};
                char sub[256];
                if (!(h->tls = krib_tls_new(&o, sub, sizeof(sub)))) {
                        snprintf(errstr, errstr_size, "redis.tls: %s", sub);
                        free(h);
                        return NULL;
                }
        }
        pthread_mutex_init(&h->mu, NULL);
        pthread_cond_init(&h->cv, NULL);
        if (pthread_create(&h->thread, NULL, run, h)) {
                snprintf(errstr, errstr_size, "cannot start the redis health thread");
                pthread_mutex_destroy(&h->mu);
                pthread_cond_destroy(&h->cv);
                krib_tls_destroy(h->tls);
                free(h);
                return NULL;
        }
        return h;
}

void krib_health_set_masters(krib_health_t *h, const char (*addrs)[KRIB_ADDR_MAX], const int *slots,
                             size_t n) {
        if (!h)
                return;
        pthread_mutex_lock(&h->mu);
        /* Figures of masters that stay are kept; new ones start down. */
        krib_health_master_t *m = n ? calloc(n, sizeof(*m)) : NULL;
        if (n && !m) {
                pthread_mutex_unlock(&h->mu);
                return; /* the old list stays: figures go stale, nothing breaks */
        }
        for (size_t i = 0; i < n; i++) {
                size_t j = 0;
                while (j < h->n && strcmp(h->m[j].addr, addrs[i]))
                        j++;
                if (j < h->n)
                        m[i] = h->m[j];
                else
                        snprintf(m[i].addr, KRIB_ADDR_MAX, "%s", addrs[i]);
                m[i].slots = slots[i];
        }
        free(h->m);
        h->m = m;
        h->n = h->cap = n;
        pthread_mutex_unlock(&h->mu);
}

int krib_health_snapshot(krib_health_t *h, krib_health_master_t **out, size_t *cap) {
        if (!h)
                return 0;
        pthread_mutex_lock(&h->mu);
        int n = (int)h->n;
        if (h->n > *cap && krib_util_grow(out, cap, h->n, sizeof(**out)))
                n = -1;
        else if (h->n)
                memcpy(*out, h->m, h->n * sizeof(**out));
        pthread_mutex_unlock(&h->mu);
        return n;
}

void krib_health_destroy(krib_health_t *h) {
        if (!h)
                return;
        pthread_mutex_lock(&h->mu);
        h->stop = 1;
        pthread_cond_signal(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->thread, NULL);
        for (size_t i = 0; i < h->nconns; i++)
                if (h->conns[i])
                        krib_conn_free(h->conns[i]);
        free(h->conns);
        free(h->conn_addr);
        free(h->m);
        krib_tls_destroy(h->tls);
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        free(h);
}
