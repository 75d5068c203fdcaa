#include "cluster.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "topo.h"

typedef enum { JOB_CONNECT, JOB_REFRESH } job_kind_t;

/* One piece of blocking work on a helper thread. The thread writes only
 * its result fields and then links the job into the done list under the
 * lock; everything else is the loop's. */
typedef struct job {
        struct job *next_done; /* under the lock */
        struct job *next_all;  /* the loop's: every job not joined yet */
        pthread_t thread;
        job_kind_t kind;
        struct krib_cluster *owner;
        uint64_t epoch; /* the map it was started for */
        int master;
        krib_addr_t addr; /* announced (the address map is applied on the thread) */
        krib_conn_t *conn;
        krib_topo_t topo;
        int ok;
        char err[KRIB_TOPO_HOST_MAX + 512];
} job_t;

typedef struct {
        krib_conn_t *conn;
        int connecting;
        int failures;
        int64_t retry_at_us;
        char name[KRIB_TOPO_HOST_MAX + 8];
} node_t;

struct krib_cluster {
        const krib_conf_t *conf;
        krib_tls_t *tls;
        const char *what;
        int wake[2];
        pthread_mutex_t lock;
        job_t *done; /* under the lock */
        job_t *all;
        krib_topo_t topo;
        int has_map;
        uint64_t epoch;
        node_t *nodes;
        size_t nnodes;
        int refreshing, refresh_wanted;
        int64_t refresh_at_us;
};

krib_conn_t *krib_cluster_dial(const krib_conf_t *conf, krib_tls_t *tls,
                               const krib_addr_t *announced, char *err, size_t size) {
        krib_addr_t a;
        krib_addr_map_apply(conf->redis_address_map.v, conf->redis_address_map.n, announced->host,
                            announced->port, &a);
        char sub[200];
        krib_conn_t *c = krib_conn_connect(a.host, a.port, conf->redis_connect_timeout_ms,
                                           conf->redis_command_timeout_ms, tls, sub, sizeof(sub));
        if (!c) {
                snprintf(err, size, "%s:%d: %s", a.host, a.port, sub);
                return NULL;
        }
        if (krib_conn_auth(c, conf->redis_username, conf->redis_password, sub, sizeof(sub))) {
                snprintf(err, size, "%s:%d: AUTH: %s", a.host, a.port, sub);
                krib_conn_free(c);
                return NULL;
        }
        return c;
}

int krib_cluster_fetch_slots(krib_conn_t *c, const char *name, const char *host, krib_topo_t *t,
                             char *err, size_t size) {
        redisReply *r = krib_conn_command(c, "CLUSTER SLOTS");
        char sub[200] = "";
        int rc = r && r->type != REDIS_REPLY_ERROR &&
                                 !krib_topo_load_slots(t, r, host, sub, sizeof(sub))
                         ? 0
                         : -1;
        if (rc == 0 && t->master_count == 0) {
                snprintf(sub, sizeof(sub), "serves no slots");
                rc = -1;
        }
        if (rc)
                snprintf(err, size, "%s: CLUSTER SLOTS: %s", name,
                         !r                             ? krib_conn_errstr(c)
                         : r->type == REDIS_REPLY_ERROR ? r->str
                                                        : sub);
        if (r)
                freeReplyObject(r);
        return rc;
}

static void refresh_from_seeds(job_t *j) {
        const krib_conf_t *conf = j->owner->conf;
        for (size_t i = 0; i < conf->redis_nodes.n && !j->ok; i++) {
                krib_addr_t seed;
                if (krib_addr_parse(conf->redis_nodes.v[i], &seed))
                        continue;
                krib_conn_t *c =
                        krib_cluster_dial(conf, j->owner->tls, &seed, j->err, sizeof(j->err));
                if (!c)
                        continue;
                j->ok = krib_cluster_fetch_slots(c, conf->redis_nodes.v[i], seed.host, &j->topo,
                                                 j->err, sizeof(j->err)) == 0;
                krib_conn_free(c);
        }
}

static void *run_job(void *arg) {
        job_t *j = arg;
        if (j->kind == JOB_CONNECT)
                j->ok = (j->conn = krib_cluster_dial(j->owner->conf, j->owner->tls, &j->addr,
                                                     j->err, sizeof(j->err))) != NULL;
        else
                refresh_from_seeds(j);
        krib_cluster_t *c = j->owner;
        pthread_mutex_lock(&c->lock);
        j->next_done = c->done;
        c->done = j;
        pthread_mutex_unlock(&c->lock);
        char b = 1;
        ssize_t w = write(c->wake[1], &b, 1);
        (void)w; /* a full pipe wakes the loop already */
        return NULL;
}

static int start(krib_cluster_t *c, job_kind_t kind, int master) {
        job_t *j = calloc(1, sizeof(*j));
        if (!j)
                return -1;
        j->kind = kind;
        j->owner = c;
        j->epoch = c->epoch;
        j->master = master;
        krib_topo_init(&j->topo);
        if (kind == JOB_CONNECT)
                j->addr = c->topo.masters[master];
        if (pthread_create(&j->thread, NULL, run_job, j)) {
                krib_topo_destroy(&j->topo);
                free(j);
                return -1;
        }
        j->next_all = c->all;
        c->all = j;
        return 0;
}

static void reap(krib_cluster_t *c, job_t *j) {
        pthread_join(j->thread, NULL);
        for (job_t **p = &c->all; *p; p = &(*p)->next_all)
                if (*p == j) {
                        *p = j->next_all;
                        break;
                }
        krib_conn_free(j->conn);
        krib_topo_destroy(&j->topo);
        free(j);
}

static void close_nodes(krib_cluster_t *c) {
        for (size_t i = 0; i < c->nnodes; i++)
                krib_conn_free(c->nodes[i].conn);
        free(c->nodes);
        c->nodes = NULL;
        c->nnodes = 0;
}

/* Takes the new map (swapping topologies with the job) and opens a fresh
 * node table: -1 on allocation failure (the old map stays). */
/* Whether b gives every slot to the same address as a (master order aside:
 * a map from another seed lists them in its own order). */
static int same_map(const krib_topo_t *a, const krib_topo_t *b) {
        if (a->master_count != b->master_count)
                return 0;
        for (size_t i = 0; i < KRIB_SLOT_COUNT; i++) {
                int x = a->slot_owner[i], y = b->slot_owner[i];
                if ((x < 0) != (y < 0))
                        return 0;
                if (x >= 0 && (a->masters[x].port != b->masters[y].port ||
                               strcmp(a->masters[x].host, b->masters[y].host)))
                        return 0;
        }
        return 1;
}

static int adopt(krib_cluster_t *c, job_t *j) {
        node_t *nodes = calloc(j->topo.master_count ? j->topo.master_count : 1, sizeof(*nodes));
        if (!nodes)
                return -1;
        close_nodes(c);
        krib_topo_t t = c->topo;
        c->topo = j->topo;
        j->topo = t;
        c->nodes = nodes;
        c->nnodes = c->topo.master_count;
        for (size_t i = 0; i < c->nnodes; i++)
                snprintf(c->nodes[i].name, sizeof(c->nodes[i].name), "%s:%d",
                         c->topo.masters[i].host, c->topo.masters[i].port);
        c->has_map = 1;
        c->epoch++;
        return 0;
}

static int64_t backoff_us(const krib_conf_t *conf, int failures) {
        int64_t us = conf->redis_retry_base_ms * 1000;
        for (int i = 1; i < failures && us < conf->redis_retry_cap_ms * 1000; i++)
                us *= 2;
        return us < conf->redis_retry_cap_ms * 1000 ? us : conf->redis_retry_cap_ms * 1000;
}

krib_cluster_t *krib_cluster_new(const krib_conf_t *conf, krib_tls_t *tls, const char *what,
                                 char *errstr, size_t errstr_size) {
        krib_cluster_t *c = calloc(1, sizeof(*c));
        if (!c) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        c->conf = conf;
        c->tls = tls;
        c->what = what;
        c->wake[0] = c->wake[1] = -1;
        krib_topo_init(&c->topo);
        if (pipe2(c->wake, O_NONBLOCK | O_CLOEXEC) || pthread_mutex_init(&c->lock, NULL)) {
                snprintf(errstr, errstr_size, "cannot create the wake-up pipe");
                if (c->wake[0] >= 0) {
                        close(c->wake[0]);
                        close(c->wake[1]);
                }
                free(c);
                return NULL;
        }
        if (conf->redis_mode == KRIB_REDIS_STANDALONE) {
                job_t j = {0};
                krib_topo_init(&j.topo);
                krib_addr_t a;
                if (krib_addr_parse(conf->redis_nodes.v[0], &a) ||
                    krib_topo_load_standalone(&j.topo, &a) || adopt(c, &j)) {
                        snprintf(errstr, errstr_size, "redis.nodes: '%s' is not host:port",
                                 conf->redis_nodes.v[0]);
                        krib_topo_destroy(&j.topo);
                        krib_cluster_destroy(c);
                        return NULL;
                }
                krib_topo_destroy(&j.topo);
        } else {
                c->refresh_wanted = 1;
        }
        return c;
}

void krib_cluster_destroy(krib_cluster_t *c) {
        if (!c)
                return;
        while (c->all)
                reap(c, c->all);
        close_nodes(c);
        krib_topo_destroy(&c->topo);
        close(c->wake[0]);
        close(c->wake[1]);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

int krib_cluster_wake_fd(const krib_cluster_t *c) {
        return c->wake[0];
}

krib_cluster_change_t krib_cluster_step(krib_cluster_t *c, int64_t now_us) {
        char buf[64];
        while (read(c->wake[0], buf, sizeof(buf)) > 0)
                ;
        pthread_mutex_lock(&c->lock);
        job_t *done = c->done;
        c->done = NULL;
        pthread_mutex_unlock(&c->lock);
        krib_cluster_change_t change = KRIB_CLUSTER_SAME;
        while (done) {
                job_t *j = done;
                done = j->next_done;
                if (j->kind == JOB_REFRESH) {
                        c->refreshing = 0;
                        if (j->ok && c->has_map && same_map(&c->topo, &j->topo)) {
                                /* Nothing moved: connections and indexes stay. */
                        } else if (j->ok && adopt(c, j) == 0) {
                                change = KRIB_CLUSTER_NEW_MAP;
                                krib_log_info(c->what,
                                              "msg=\"slot map loaded\" masters=%zu unassigned=%zu",
                                              c->nnodes, krib_topo_unassigned(&c->topo));
                        } else {
                                c->refresh_wanted = 1;
                                krib_log_warn(c->what,
                                              "msg=\"slot map refresh failed\" error=\"%s\"",
                                              j->err[0] ? j->err : "out of memory");
                        }
                } else if (j->epoch == c->epoch && (size_t)j->master < c->nnodes) {
                        node_t *n = &c->nodes[j->master];
                        n->connecting = 0;
                        if (j->ok) {
                                n->conn = j->conn;
                                j->conn = NULL;
                                n->failures = 0;
                        } else {
                                n->failures++;
                                n->retry_at_us = now_us + backoff_us(c->conf, n->failures);
                                krib_log_warn(
                                        c->what,
                                        "msg=\"cannot connect to redis\" node=%s error=\"%s\"",
                                        n->name, j->err);
                                c->refresh_wanted = 1;
                        }
                }
                reap(c, j);
        }
        if (c->refresh_wanted && !c->refreshing && c->conf->redis_mode != KRIB_REDIS_STANDALONE &&
            now_us >= c->refresh_at_us && start(c, JOB_REFRESH, -1) == 0) {
                c->refreshing = 1;
                c->refresh_wanted = 0;
                c->refresh_at_us = now_us + c->conf->redis_retry_base_ms * 1000;
        }
        return change;
}

int krib_cluster_has_map(const krib_cluster_t *c) {
        return c->has_map;
}

int krib_cluster_owner(krib_cluster_t *c, unsigned slot) {
        int m = c->has_map && slot < KRIB_SLOT_COUNT ? c->topo.slot_owner[slot] : -1;
        if (m < 0 || (size_t)m >= c->nnodes) {
                c->refresh_wanted = 1;
                return -1;
        }
        return m;
}

size_t krib_cluster_masters(const krib_cluster_t *c) {
        return c->nnodes;
}

const char *krib_cluster_name(const krib_cluster_t *c, int m) {
        return m >= 0 && (size_t)m < c->nnodes ? c->nodes[m].name : "?";
}

krib_conn_t *krib_cluster_conn(krib_cluster_t *c, int m, int64_t now_us) {
        if (m < 0 || (size_t)m >= c->nnodes)
                return NULL;
        node_t *n = &c->nodes[m];
        if (n->conn)
                return n->conn;
        if (!n->connecting && now_us >= n->retry_at_us && start(c, JOB_CONNECT, m) == 0)
                n->connecting = 1;
        return NULL;
}

void krib_cluster_fail(krib_cluster_t *c, int m, int64_t now_us) {
        if (m < 0 || (size_t)m >= c->nnodes)
                return;
        node_t *n = &c->nodes[m];
        krib_conn_free(n->conn);
        n->conn = NULL;
        n->failures++;
        n->retry_at_us = now_us + backoff_us(c->conf, n->failures);
        c->refresh_wanted = 1;
}

void krib_cluster_refresh(krib_cluster_t *c) {
        c->refresh_wanted = 1;
}
