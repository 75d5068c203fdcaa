#include "inspect.h"

#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "cluster.h"
#include "conn.h"
#include "consistency.h"
#include "consumer.h"
#include "event.h"
#include "fence.h"
#include "log.h"
#include "metrics.h"
#include "offsets.h"
#include "registry.h"
#include "reorder.h"
#include "route.h"
#include "schemas.h"
#include "slot.h"
#include "topo.h"
#include "util.h"

#define MAX_DELAYS 8
#define ROUND_KEYS 4096  /* keys taken from the due heap per turn, at most */
#define FLY_MAX    256   /* checks awaiting replies per master, at most */
#define FKEY_MAX   65600 /* the longest fence key name (keys are at most 65519 bytes) */

/* One event waiting for its checks. */
typedef struct {
        char *topic;
        int32_t partition;
        int64_t offset;
        int64_t ts_ms;
        krib_action_t action;
        krib_vv_entry_t *vv;
        size_t nvv;
        char **keys;
        size_t *key_lens;
        size_t nkeys;
        uint32_t open[MAX_DELAYS]; /* keys not judged yet, per delay */
        int left;                  /* delays not finished */
        int refs;    /* 1 while checks remain, +1 per key whose highest version it is */
        int dropped; /* its partition was revoked: checks skipped */
} item_t;

/* Keys [from, nkeys) of an event, due at one delay: the heap's entries. */
typedef struct {
        int64_t due_ms;
        item_t *it;
        uint32_t from;
        int delay;
} due_t;

/* One key's check, from its due time until judged. */
typedef struct {
        item_t *it;
        uint32_t key;
        int delay;
        int64_t due_ms, not_before_ms;
} kcheck_t;

typedef struct {
        kcheck_t *v;
        size_t head, n, cap;
} kq_t;

/* The inspector's side of one master: checks waiting to be sent, and sent
 * ones whose replies come in order (EXISTS, then GET of the fence). A
 * frozen master's checks wait here; the other masters' go on. */
typedef struct {
        kq_t wait, fly;
        redisReply *first; /* the EXISTS reply of fly's head */
        int64_t progress_us;
} mnode_t;

/* A key with pending events, and the event with its highest version. */
typedef struct knode {
        struct knode *next;
        uint64_t hash;
        int refs; /* pending events naming the key */
        item_t *hi;
        size_t len;
        char key[];
} knode_t;

typedef struct {
        uint64_t checked, stale, unverifiable, superseded, late;
        krib_nines_t nines;
} per_delay_t;

typedef struct {
        const krib_conf_t *conf;
        krib_inspect_opts_t opts;
        krib_consumer_t *consumer;
        krib_schemas_t *schemas;
        krib_registry_t *registry;
        krib_offsets_t *offsets;
        krib_metrics_t *metrics;
        krib_event_t ev;
        char *group;
        krib_conf_t cc; /* conf with the inspector's group */

        int64_t delays[MAX_DELAYS];
        int ndelays;
        per_delay_t pd[MAX_DELAYS];

        due_t *heap;
        size_t nheap, heap_cap;
        knode_t **buckets;
        size_t nbuckets, nkeys;

        /* Redis */
        krib_tls_t *tls;
        krib_cluster_t *cluster;
        mnode_t *nodes; /* per master of the cluster's map */
        size_t nnodes;
        kq_t retry; /* checks to route again (a redirection, a lost connection) */
        struct pollfd *pfds;
        size_t pfds_cap;
        double tokens;
        int64_t tokens_at_us;

        char **topics; /* interned topic names */
        size_t ntopics, topics_cap;

        /* until-end */
        rd_kafka_topic_partition_list_t *ends; /* offset = end to reach */
        int end_wanted;

        uint64_t consumed, skipped_sampled, skipped_tag, skipped_undecodable, skipped_past_end,
                commands, pending_items, round_trips;
        int64_t worst_late_ms;
        int64_t published_at_ms;
        char fkey[FKEY_MAX];
} insp_t;

/* ---- small helpers -------------------------------------------------------- */

static uint64_t fnv(const void *p, size_t n, uint64_t h) {
        const unsigned char *b = p;
        for (size_t i = 0; i < n; i++)
                h = (h ^ b[i]) * 1099511628211ULL;
        return h;
}

/* Whether the event at (topic, partition, offset) is in the sample: a hash,
 * so that a rerun checks the same events. */
static int sampled(double ratio, const char *topic, int32_t partition, int64_t offset) {
        if (ratio >= 1.0)
                return 1;
        uint64_t h = fnv(topic, strlen(topic), 14695981039346656037ULL);
        h = fnv(&partition, sizeof(partition), h);
        h = fnv(&offset, sizeof(offset), h);
        h ^= h >> 29;
        h *= 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 32;
        return (double)(h >> 11) * 0x1.0p-53 < ratio;
}

static void delay_label(int64_t ms, char *out, size_t size) {
        if (ms % 1000 == 0)
                snprintf(out, size, "%llds", (long long)(ms / 1000));
        else
                snprintf(out, size, "%lldms", (long long)ms);
}

/* ---- the key table (highest version per key) ------------------------------ */

static knode_t **kfind(insp_t *s, const char *key, size_t len, uint64_t h) {
        knode_t **p = &s->buckets[h & (s->nbuckets - 1)];
        while (*p && !((*p)->hash == h && (*p)->len == len && !memcmp((*p)->key, key, len)))
                p = &(*p)->next;
        return p;
}

static int kgrow(insp_t *s) {
        size_t nb = s->nbuckets * 2;
        knode_t **b = calloc(nb, sizeof(*b));
        if (!b)
                return -1;
        for (size_t i = 0; i < s->nbuckets; i++)
                for (knode_t *n = s->buckets[i], *next; n; n = next) {
                        next = n->next;
                        n->next = b[n->hash & (nb - 1)];
                        b[n->hash & (nb - 1)] = n;
                }
        free(s->buckets);
        s->buckets = b;
        s->nbuckets = nb;
        return 0;
}

static void item_unref(item_t *it) {
        if (--it->refs == 0)
                free(it); /* one allocation: arrays and strings after the struct */
}

/* a's version dominates b's (version-vector order, docs/CONSISTENCY.md). */
static int newer(const item_t *a, const item_t *b) {
        return krib_vv_compare(a->vv, a->nvv, b->vv, b->nvv) == KRIB_VV_NEWER;
}

/* it names key k: the key's highest version is it's when it dominates the
 * one held, whatever order the events came in. */
static void knote(insp_t *s, item_t *it, size_t k) {
        const char *key = it->keys[k];
        size_t len = it->key_lens[k];
        uint64_t h = fnv(key, len, 14695981039346656037ULL);
        knode_t **p = kfind(s, key, len, h);
        if (!*p) {
                if (s->nkeys >= s->nbuckets * 2 && kgrow(s) == 0)
                        p = kfind(s, key, len, h);
                knode_t *n = calloc(1, sizeof(*n) + len);
                if (!n)
                        return; /* the key is then judged by each event on its own */
                n->hash = h;
                n->len = len;
                memcpy(n->key, key, len);
                *p = n;
                s->nkeys++;
        }
        knode_t *n = *p;
        n->refs++;
        if (!n->hi || newer(it, n->hi)) {
                if (n->hi)
                        item_unref(n->hi);
                n->hi = it;
                it->refs++;
        }
}

static const knode_t *klook(insp_t *s, const char *key, size_t len) {
        return *kfind(s, key, len, fnv(key, len, 14695981039346656037ULL));
}

/* it no longer names key k: the key is forgotten with its last event. */
static void kdrop(insp_t *s, item_t *it, size_t k) {
        knode_t **p = kfind(s, it->keys[k], it->key_lens[k],
                            fnv(it->keys[k], it->key_lens[k], 14695981039346656037ULL));
        if (!*p || --(*p)->refs > 0)
                return;
        knode_t *n = *p;
        *p = n->next;
        if (n->hi)
                item_unref(n->hi);
        free(n);
        s->nkeys--;
}

/* The check of key k after delay d is left to an event with a higher
 * version of the key that is due at d too (its own check judges the key
 * against more): an older or concurrent event never supersedes. */
static int superseded(insp_t *s, const item_t *it, size_t k, int d, int64_t now_ms) {
        const knode_t *n = klook(s, it->keys[k], it->key_lens[k]);
        return n && n->hi && n->hi != it && !n->hi->dropped && newer(n->hi, it) &&
               n->hi->ts_ms + s->delays[d] <= now_ms;
}

/* ---- check queues ------------------------------------------------------------ */

static int kq_push(kq_t *q, const kcheck_t *c) {
        if (q->head && q->head + q->n == q->cap) {
                memmove(q->v, q->v + q->head, q->n * sizeof(*q->v));
                q->head = 0;
        }
        if (q->head + q->n == q->cap &&
            krib_util_grow(&q->v, &q->cap, q->head + q->n + 1, sizeof(*q->v)))
                return -1;
        q->v[q->head + q->n++] = *c;
        return 0;
}

static kcheck_t *kq_front(kq_t *q) {
        return q->n ? &q->v[q->head] : NULL;
}

static kcheck_t kq_pop(kq_t *q) {
        kcheck_t c = q->v[q->head++];
        if (--q->n == 0)
                q->head = 0;
        return c;
}

/* ---- the due heap ---------------------------------------------------------- */

static int heap_push(insp_t *s, int64_t due, item_t *it, uint32_t from, int d) {
        if (s->nheap == s->heap_cap &&
            krib_util_grow(&s->heap, &s->heap_cap, s->nheap + 1, sizeof(*s->heap)))
                return -1;
        size_t i = s->nheap++;
        while (i) {
                size_t up = (i - 1) / 2;
                if (s->heap[up].due_ms <= due)
                        break;
                s->heap[i] = s->heap[up];
                i = up;
        }
        s->heap[i] = (due_t){due, it, from, d};
        return 0;
}

static due_t heap_pop(insp_t *s) {
        due_t top = s->heap[0], last = s->heap[--s->nheap];
        size_t i = 0;
        for (;;) {
                size_t c = 2 * i + 1;
                if (c >= s->nheap)
                        break;
                if (c + 1 < s->nheap && s->heap[c + 1].due_ms < s->heap[c].due_ms)
                        c++;
                if (s->heap[c].due_ms >= last.due_ms)
                        break;
                s->heap[i] = s->heap[c];
                i = c;
        }
        if (s->nheap)
                s->heap[i] = last;
        return top;
}

/* ---- items ---------------------------------------------------------------- */

/* Topic names are few: one copy each, shared by the items. */
static const char *topic_intern(insp_t *s, const char *topic) {
        for (size_t i = 0; i < s->ntopics; i++)
                if (!strcmp(s->topics[i], topic))
                        return s->topics[i];
        char *copy = strdup(topic);
        if (!copy || krib_util_grow(&s->topics, &s->topics_cap, s->ntopics + 1, sizeof(char *))) {
                free(copy);
                return NULL;
        }
        s->topics[s->ntopics++] = copy;
        return copy;
}

static void store_offsets(insp_t *s) {
        krib_consumer_store_finished(s->consumer, s->offsets);
}

/* An event is done with once checked at every delay (or given up). */
static void item_done(insp_t *s, item_t *it) {
        if (!it->dropped)
                krib_offsets_finish(s->offsets, it->topic, it->partition, it->offset);
        for (size_t k = 0; k < it->nkeys; k++)
                kdrop(s, it, k);
        s->pending_items--;
        item_unref(it);
}

/* One key's check at one delay is over (judged, superseded or dropped). */
static void check_done(insp_t *s, const kcheck_t *c) {
        if (--c->it->open[c->delay] == 0 && --c->it->left == 0)
                item_done(s, c->it);
}

static item_t *item_from(insp_t *s, const rd_kafka_message_t *m, const krib_event_t *ev,
                         int64_t ts) {
        const char *topic = topic_intern(s, rd_kafka_topic_name(m->rkt));
        size_t nk = ev->key_count, nv = ev->version_count, bytes = 0;
        for (size_t k = 0; k < nk; k++)
                bytes += ev->keys[k].len + 1;
        for (size_t v = 0; v < nv; v++)
                bytes += ev->version[v].origin.len + 1;
        size_t size = sizeof(item_t) + nk * (sizeof(char *) + sizeof(size_t)) +
                      nv * sizeof(krib_vv_entry_t) + bytes;
        item_t *it = topic ? malloc(size) : NULL;
        if (!it)
                return NULL;
        memset(it, 0, sizeof(*it));
        it->keys = (char **)(it + 1);
        it->key_lens = (size_t *)(it->keys + nk);
        it->vv = (krib_vv_entry_t *)(it->key_lens + nk);
        char *b = (char *)(it->vv + nv);
        it->topic = (char *)topic;
        it->partition = m->partition;
        it->offset = m->offset;
        it->ts_ms = ts;
        it->action = ev->action;
        it->nkeys = nk;
        it->nvv = nv;
        for (size_t k = 0; k < nk; k++) {
                it->key_lens[k] = ev->keys[k].len;
                it->keys[k] = b;
                memcpy(b, ev->keys[k].s, ev->keys[k].len);
                b[ev->keys[k].len] = '\0';
                b += ev->keys[k].len + 1;
        }
        for (size_t v = 0; v < nv; v++) {
                memcpy(b, ev->version[v].origin.s, ev->version[v].origin.len);
                b[ev->version[v].origin.len] = '\0';
                it->vv[v].origin.s = b;
                it->vv[v].origin.len = ev->version[v].origin.len;
                it->vv[v].counter = ev->version[v].counter;
                b += ev->version[v].origin.len + 1;
        }
        it->left = s->ndelays;
        it->refs = 1;
        for (int d = 0; d < s->ndelays; d++)
                it->open[d] = (uint32_t)nk;
        return it;
}

/* ---- Redis ---------------------------------------------------------------- */

/* A check made later than this after its due time is late: it can still
 * find the key stale, but a fresh reading then says nothing about the due
 * time (docs/CONSISTENCY.md). */
static int64_t late_allowed_ms(const insp_t *s, int d) {
        return s->delays[d] / 10 > 1000 ? s->delays[d] / 10 : 1000;
}

static void judge_one(insp_t *s, const kcheck_t *c, int present, const redisReply *fence,
                      int64_t now_ms) {
        item_t *it = c->it;
        per_delay_t *pd = &s->pd[c->delay];
        krib_check_state_t st = {
                present, fence && fence->type == REDIS_REPLY_STRING ? fence->str : NULL,
                fence && fence->type == REDIS_REPLY_STRING ? (size_t)fence->len : 0};
        char why[300];
        krib_check_verdict_t v = krib_consistency_judge(
                it->action, it->vv, it->nvv, &st, (int)s->conf->inspect_fills, why, sizeof(why));
        int64_t late = now_ms - c->due_ms;
        if (late > s->worst_late_ms)
                s->worst_late_ms = late;
        if (v != KRIB_CHECK_STALE && late > late_allowed_ms(s, c->delay)) {
                pd->late++; /* neither fresh nor stale: too late to tell */
                return;
        }
        pd->checked++;
        if (v == KRIB_CHECK_UNVERIFIABLE) {
                pd->unverifiable++;
                return;
        }
        krib_nines_add(&pd->nines, now_ms / 1000, v == KRIB_CHECK_STALE);
        if (v != KRIB_CHECK_STALE)
                return;
        pd->stale++;
        char label[32], expect[300];
        size_t k = 0;
        expect[0] = '\0';
        for (size_t i = 0; i < it->nvv && k < sizeof(expect); i++) {
                int w = snprintf(expect + k, sizeof(expect) - k, "%s%s=%lld", i ? "," : "",
                                 it->vv[i].origin.s, (long long)it->vv[i].counter);
                k += w > 0 ? (size_t)w : 0;
        }
        delay_label(s->delays[c->delay], label, sizeof(label));
        krib_log_warn(
                "inspect",
                "msg=\"stale key\" delay=%s key=\"%s\" topic=%s partition=%" PRId32
                " offset=%" PRId64 " action=%s expected=\"%s%s\" redis=\"%s\" late_ms=%" PRId64,
                label, krib_log_esc(it->keys[c->key], it->key_lens[c->key]), it->topic,
                it->partition, it->offset, krib_action_name(it->action),
                it->action == KRIB_ACTION_DELETE ? "absent, or present at >= " : "at >= ", expect,
                why, late > 0 ? late : 0);
}

/* Checked again later: the map or the node is in flux. */
static void retry_later(insp_t *s, kcheck_t c, int64_t now_ms, int64_t after_ms) {
        c.not_before_ms = now_ms + after_ms;
        if (kq_push(&s->retry, &c))
                check_done(s, &c); /* out of memory: given up, never counted fresh */
}

/* A due key check goes to its master's queue, unless a higher version of
 * the key due at the same delay judges it, or its partition was revoked. */
static void route(insp_t *s, kcheck_t c, int64_t now_ms) {
        if (c.it->dropped)
                return check_done(s, &c);
        if (superseded(s, c.it, c.key, c.delay, now_ms)) {
                s->pd[c.delay].superseded++;
                return check_done(s, &c);
        }
        int m = krib_cluster_owner(s->cluster,
                                   krib_slot_of(c.it->keys[c.key], c.it->key_lens[c.key]));
        if (m < 0 || (size_t)m >= s->nnodes)
                return retry_later(s, c, now_ms, 200); /* after the refresh */
        if (kq_push(&s->nodes[m].wait, &c))
                retry_later(s, c, now_ms, 200);
}

/* Every check of a node goes back to be routed again. */
static void node_requeue(insp_t *s, mnode_t *n, int64_t now_ms, int64_t after_ms) {
        while (n->fly.n)
                retry_later(s, kq_pop(&n->fly), now_ms, after_ms);
        while (n->wait.n)
                retry_later(s, kq_pop(&n->wait), now_ms, after_ms);
        if (n->first)
                freeReplyObject(n->first);
        n->first = NULL;
}

static void node_failed(insp_t *s, int m, const char *why, int64_t now_ms) {
        krib_log_warn("inspect",
                      "msg=\"redis connection lost; its checks wait\" node=%s error=\"%s\"",
                      krib_cluster_name(s->cluster, m), why);
        node_requeue(s, &s->nodes[m], now_ms, 200);
        krib_cluster_fail(s->cluster, m, krib_clock_mono_us());
}

/* A new slot map: the per-master queues follow it. */
static int nodes_resize(insp_t *s, int64_t now_ms) {
        for (size_t m = 0; m < s->nnodes; m++) {
                node_requeue(s, &s->nodes[m], now_ms, 0);
                free(s->nodes[m].wait.v);
                free(s->nodes[m].fly.v);
        }
        free(s->nodes);
        s->nnodes = krib_cluster_masters(s->cluster);
        s->nodes = calloc(s->nnodes ? s->nnodes : 1, sizeof(*s->nodes));
        if (!s->nodes)
                s->nnodes = 0;
        return s->nodes ? 0 : -1;
}

/* Sends what master m may take: at most FLY_MAX checks unanswered (so a
 * frozen master's socket never fills and a write never waits), within the
 * command budget. */
static void node_send(insp_t *s, int m, int64_t now_ms, int64_t now_us) {
        mnode_t *n = &s->nodes[m];
        if (!n->wait.n || n->fly.n >= FLY_MAX || s->tokens < 2.0)
                return;
        krib_conn_t *c = krib_cluster_conn(s->cluster, m, now_us);
        if (!c)
                return; /* connecting in the background */
        if (!n->fly.n)
                n->progress_us = now_us;
        size_t sent = 0;
        while (n->wait.n && n->fly.n < FLY_MAX && s->tokens >= 2.0) {
                kcheck_t k = kq_pop(&n->wait);
                if (k.it->dropped) {
                        check_done(s, &k);
                        continue;
                }
                const char *key = k.it->keys[k.key];
                size_t len = k.it->key_lens[k.key];
                int fl = krib_fence_key(key, len, s->fkey, FKEY_MAX);
                const char *a1[] = {"EXISTS", key};
                size_t l1[] = {6, len};
                const char *a2[] = {"GET", s->fkey};
                size_t l2[] = {3, fl > 0 ? (size_t)fl : 0};
                if (krib_conn_append(c, 2, a1, l1) || krib_conn_append(c, 2, a2, l2) ||
                    kq_push(&n->fly, &k)) {
                        retry_later(s, k, now_ms, 200);
                        return node_failed(s, m, "out of memory", now_ms);
                }
                s->tokens -= 2.0;
                s->commands += 2;
                sent++;
        }
        if (!sent)
                return;
        s->round_trips++;
        if (krib_conn_send(c) < 0) /* the rest goes on POLLOUT */
                node_failed(s, m, krib_conn_errstr(c), now_ms);
}

/* Reads what master m answered, without waiting, and judges those checks. */
static void node_read(insp_t *s, int m, int64_t now_ms, int64_t now_us) {
        mnode_t *n = &s->nodes[m];
        if (!n->fly.n)
                return;
        krib_conn_t *c = krib_cluster_conn(s->cluster, m, now_us);
        if (c && krib_conn_unsent(c) && krib_conn_send(c) < 0)
                return node_failed(s, m, krib_conn_errstr(c), now_ms);
        if (!c || krib_conn_recv(c) < 0)
                return node_failed(s, m, c ? krib_conn_errstr(c) : "closed", now_ms);
        redisReply *r;
        int got;
        while (n->fly.n && (got = krib_conn_reply(c, &r)) == 1) {
                n->progress_us = now_us;
                if (!n->first) {
                        n->first = r;
                        continue;
                }
                kcheck_t k = kq_pop(&n->fly);
                redisReply *r1 = n->first;
                n->first = NULL;
                if (r1->type != REDIS_REPLY_INTEGER ||
                    (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
                        /* MOVED, ASK, LOADING, ...: checked again after a refresh. */
                        krib_cluster_refresh(s->cluster);
                        retry_later(s, k, now_ms, 200);
                } else {
                        if (!k.it->dropped)
                                judge_one(s, &k, r1->integer > 0, r, now_ms);
                        check_done(s, &k);
                }
                freeReplyObject(r1);
                freeReplyObject(r);
        }
        if (n->fly.n && got < 0)
                return node_failed(s, m, "protocol error", now_ms);
        if (n->fly.n && now_us - n->progress_us > s->conf->redis_command_timeout_ms * 1000)
                node_failed(s, m, "no reply within redis.command_timeout_ms", now_ms);
}

/* One turn of checking: new map, retries, due checks (budget), sends and
 * the replies that arrived. Never waits on a node. */
static void check_turn(insp_t *s, int64_t now_ms) {
        int64_t now_us = krib_clock_mono_us();
        double budget = (double)s->conf->inspect_budget_per_s;
        s->tokens += budget * (double)(now_us - s->tokens_at_us) / 1e6;
        if (s->tokens > budget)
                s->tokens = budget;
        s->tokens_at_us = now_us;
        /* A new map, or the first (standalone mode has it from the start). */
        if ((krib_cluster_step(s->cluster, now_us) == KRIB_CLUSTER_NEW_MAP ||
             s->nnodes != krib_cluster_masters(s->cluster)) &&
            nodes_resize(s, now_ms))
                krib_log_error("inspect", "msg=\"out of memory\"");
        for (size_t i = s->retry.n; i > 0 && s->retry.n; i--) {
                kcheck_t *f = kq_front(&s->retry);
                if (f->not_before_ms > now_ms || !krib_cluster_has_map(s->cluster))
                        break;
                route(s, kq_pop(&s->retry), now_ms);
        }
        /* Due keys move from the heap to their masters' queues, as many as
         * a turn allows; the rest of a large event stays due, from where it
         * stopped. */
        size_t taken = 0;
        while (krib_cluster_has_map(s->cluster) && s->nheap && s->heap[0].due_ms <= now_ms &&
               taken < ROUND_KEYS) {
                due_t d = heap_pop(s);
                uint32_t to = (uint32_t)d.it->nkeys;
                if (to - d.from > ROUND_KEYS - taken) {
                        to = d.from + (uint32_t)(ROUND_KEYS - taken);
                        if (heap_push(s, d.due_ms, d.it, to, d.delay)) {
                                to = (uint32_t)d.it->nkeys; /* no room: all of it now */
                        }
                }
                for (uint32_t k = d.from; k < to; k++)
                        route(s, (kcheck_t){d.it, k, d.delay, d.due_ms, 0}, now_ms);
                taken += to - d.from;
        }
        for (size_t m = 0; m < s->nnodes; m++) {
                node_read(s, (int)m, now_ms, now_us);
                node_send(s, (int)m, now_ms, now_us);
        }
}

/* The poll set: the consumer's wake-up, the cluster's, and every master
 * with replies due (grown to any number of masters). Returns its size. */
static int check_pollfds(insp_t *s) {
        size_t need = 2 + s->nnodes;
        if (need > s->pfds_cap && krib_util_grow(&s->pfds, &s->pfds_cap, need, sizeof(*s->pfds)))
                need = s->pfds_cap >= 2 ? s->pfds_cap : 0; /* out of memory: the rest waits */
        if (need < 2)
                return 0;
        struct pollfd *fds = s->pfds;
        int n = 0;
        fds[n++] = (struct pollfd){krib_consumer_wakeup_fd(s->consumer), POLLIN, 0};
        fds[n++] = (struct pollfd){krib_cluster_wake_fd(s->cluster), POLLIN, 0};
        for (size_t m = 0; m < s->nnodes && (size_t)n < need; m++) {
                krib_conn_t *c =
                        s->nodes[m].fly.n ? krib_cluster_conn(s->cluster, (int)m, 0) : NULL;
                short ev = (short)(POLLIN | (c && krib_conn_unsent(c) ? POLLOUT : 0));
                if (c)
                        fds[n++] = (struct pollfd){krib_conn_fd(c), ev, 0};
        }
        return n;
}

/* How long the most overdue check has waited (heap, queues, retries). */
static int64_t behind_ms(insp_t *s, int64_t now_ms) {
        int64_t oldest = s->nheap ? s->heap[0].due_ms : now_ms;
        const kq_t *qs[2];
        for (size_t m = 0; m < s->nnodes; m++) {
                qs[0] = &s->nodes[m].wait;
                qs[1] = &s->nodes[m].fly;
                for (int q = 0; q < 2; q++)
                        if (qs[q]->n && qs[q]->v[qs[q]->head].due_ms < oldest)
                                oldest = qs[q]->v[qs[q]->head].due_ms;
        }
        if (s->retry.n && s->retry.v[s->retry.head].due_ms < oldest)
                oldest = s->retry.v[s->retry.head].due_ms;
        return oldest < now_ms ? now_ms - oldest : 0;
}

/* ---- Kafka ---------------------------------------------------------------- */

static void on_revoke(void *opaque, const rd_kafka_topic_partition_list_t *parts, int lost) {
        (void)opaque;
        (void)parts;
        (void)lost; /* handled in the loop (krib_consumer_revoking) */
}

static void on_assign(void *opaque, const rd_kafka_topic_partition_list_t *parts) {
        insp_t *s = opaque;
        (void)parts;
        if (s->opts.until_end && !s->ends)
                s->end_wanted = 1; /* the end as of the first assignment */
}

/* Partitions revoked: their pending checks are dropped (the next owner
 * checks them again from the committed offset). */
static void act_on_revoke(insp_t *s) {
        int lost;
        const rd_kafka_topic_partition_list_t *parts = krib_consumer_revoking(s->consumer, &lost);
        if (!parts)
                return;
        for (int p = 0; p < parts->cnt; p++) {
                const char *t = parts->elems[p].topic;
                int32_t part = parts->elems[p].partition;
                for (size_t i = 0; i < s->nheap; i++)
                        if (s->heap[i].it->partition == part && !strcmp(s->heap[i].it->topic, t))
                                s->heap[i].it->dropped = 1;
                kq_t *qs[2 * s->nnodes + 1];
                size_t nq = 0;
                qs[nq++] = &s->retry;
                for (size_t m = 0; m < s->nnodes; m++) {
                        qs[nq++] = &s->nodes[m].wait;
                        qs[nq++] = &s->nodes[m].fly;
                }
                for (size_t q = 0; q < nq; q++)
                        for (size_t i = 0; i < qs[q]->n; i++) {
                                item_t *it = qs[q]->v[qs[q]->head + i].it;
                                if (it->partition == part && !strcmp(it->topic, t))
                                        it->dropped = 1;
                        }
        }
        for (int p = 0; p < parts->cnt; p++)
                krib_offsets_forget(s->offsets, parts->elems[p].topic, parts->elems[p].partition);
        if (!lost) {
                store_offsets(s);
                krib_consumer_commit(s->consumer);
        }
        krib_consumer_revoke_done(s->consumer);
}

/* The log end of every assigned partition, now: what --until-end reads to. */
static void take_ends(insp_t *s) {
        rd_kafka_t *rk = krib_consumer_handle(s->consumer);
        rd_kafka_topic_partition_list_t *a = NULL;
        if (rd_kafka_assignment(rk, &a) || !a)
                return;
        if (!a->cnt) {
                rd_kafka_topic_partition_list_destroy(a);
                return; /* not assigned yet: asked again at the next assignment */
        }
        /* Where reading stands: the next offset to hand out (what this
         * process already read), else the committed one, else the start. */
        rd_kafka_topic_partition_list_t *pos = rd_kafka_topic_partition_list_copy(a);
        rd_kafka_position(rk, pos);
        rd_kafka_committed(rk, a, 5000);
        for (int i = 0; i < a->cnt; i++)
                if (pos->elems[i].offset >= 0)
                        a->elems[i].offset = pos->elems[i].offset;
        rd_kafka_topic_partition_list_destroy(pos);
        for (int i = 0; i < a->cnt; i++) {
                int64_t lo = 0, hi = 0;
                if (rd_kafka_query_watermark_offsets(rk, a->elems[i].topic, a->elems[i].partition,
                                                     &lo, &hi, 5000)) {
                        rd_kafka_topic_partition_list_destroy(a);
                        return; /* broker unreachable: tried again next turn */
                }
                /* Nothing left when the committed offset is at the end already. */
                int64_t from = a->elems[i].offset >= 0 ? a->elems[i].offset : lo;
                a->elems[i].offset = hi > from ? hi : -1;
        }
        if (s->ends)
                rd_kafka_topic_partition_list_destroy(s->ends);
        s->ends = a;
        s->end_wanted = 0;
        krib_log_info("inspect", "msg=\"reading to the end as of now\" partitions=%d", a->cnt);
}

/* Whether (topic, partition, offset) is at or past its end; -1 marks
 * partitions with nothing left. */
static int past_end(insp_t *s, const char *topic, int32_t partition, int64_t offset) {
        if (!s->ends)
                return 0;
        for (int i = 0; i < s->ends->cnt; i++)
                if (s->ends->elems[i].partition == partition &&
                    !strcmp(s->ends->elems[i].topic, topic))
                        return s->ends->elems[i].offset < 0 || offset >= s->ends->elems[i].offset;
        return 1; /* assigned after the end was taken: beyond it */
}

/* Every partition read to its end (its last message before the end seen). */
static int reached_end(insp_t *s) {
        if (!s->ends)
                return 0;
        for (int i = 0; i < s->ends->cnt; i++)
                if (s->ends->elems[i].offset >= 0)
                        return 0;
        return 1;
}

static void note_consumed(insp_t *s, const char *topic, int32_t partition, int64_t offset) {
        for (int i = 0; s->ends && i < s->ends->cnt; i++)
                if (s->ends->elems[i].partition == partition &&
                    !strcmp(s->ends->elems[i].topic, topic) && s->ends->elems[i].offset >= 0 &&
                    offset + 1 >= s->ends->elems[i].offset)
                        s->ends->elems[i].offset = -1;
}

static void take(insp_t *s, rd_kafka_message_t *m) {
        const char *topic = rd_kafka_topic_name(m->rkt);
        s->consumed++;
        if (s->ends && past_end(s, topic, m->partition, m->offset)) {
                s->skipped_past_end++;
                return; /* not tracked: its offset is the next run's */
        }
        krib_offsets_track(s->offsets, topic, m->partition, m->offset);
        note_consumed(s, topic, m->partition, m->offset);
        if (!sampled(s->conf->inspect_sample_ratio, topic, m->partition, m->offset)) {
                s->skipped_sampled++;
                krib_offsets_finish(s->offsets, topic, m->partition, m->offset);
                return;
        }
        krib_event_reset(&s->ev);
        char err[512];
        int ok;
        const krib_route_t *r = krib_routes_match(s->conf->routes, topic);
        if (r) {
                krib_route_info_t info;
                krib_route_result_t rr;
                for (int tries = 0;; tries++) {
                        rr = krib_route_decode(r, s->registry, topic, m->key, m->key_len,
                                               m->payload, m->len, &s->ev, &info, err, sizeof(err));
                        if (rr != KRIB_ROUTE_UNAVAILABLE || tries >= 30)
                                break;
                        struct timespec ts = {1, 0};
                        nanosleep(&ts, NULL); /* the registry is down: so is krib's route */
                }
                ok = rr == KRIB_ROUTE_OK;
        } else {
                ok = m->payload &&
                     !krib_schemas_decode(s->schemas, m->payload, m->len, &s->ev, err, sizeof(err));
        }
        if (!ok || s->ev.action == KRIB_ACTION_TAG || !s->ev.key_count) {
                /* Nothing krib keys to check: dead letters, tombstones, tag
                 * sweeps (patterns, not keys). */
                if (ok)
                        s->skipped_tag++;
                else
                        s->skipped_undecodable++;
                krib_offsets_finish(s->offsets, topic, m->partition, m->offset);
                return;
        }
        int64_t ts = s->ev.ts_ms;
        if (ts <= 0)
                ts = rd_kafka_message_timestamp(m, NULL);
        item_t *it = item_from(s, m, &s->ev, ts);
        if (!it) {
                krib_log_error("inspect", "msg=\"out of memory\"");
                krib_offsets_finish(s->offsets, topic, m->partition, m->offset);
                return;
        }
        for (size_t k = 0; k < it->nkeys; k++)
                knote(s, it, k);
        s->pending_items++;
        for (int d = 0; d < s->ndelays; d++)
                if (heap_push(s, ts + s->delays[d], it, 0, d)) {
                        /* Out of memory: this delay is given up, never counted fresh. */
                        krib_log_error("inspect", "msg=\"out of memory\"");
                        it->open[d] = 0;
                        if (--it->left == 0)
                                item_done(s, it);
                }
}

/* ---- metrics and the report ----------------------------------------------- */

static void render(insp_t *s, int64_t now_ms, char **out, size_t *len) {
        char *buf = NULL;
        size_t size = 0;
        FILE *fp = open_memstream(&buf, &size);
        if (!fp)
                return;
        static const char *const fam[][3] = {
                {"krib_inspect_checked_total", "counter",
                 "Keys checked after each delay (fresh, stale or unverifiable)."},
                {"krib_inspect_stale_total", "counter",
                 "Keys found stale after each delay (docs/CONSISTENCY.md)."},
                {"krib_inspect_unverifiable_total", "counter",
                 "Keys present without a known version where fills are unguarded: neither fresh "
                 "nor stale."},
                {"krib_inspect_superseded_total", "counter",
                 "Key checks left to an event with a higher version of the key, itself due."},
                {"krib_inspect_late_total", "counter",
                 "Key checks made too late to count (more than max(1 s, delay/10) after due) "
                 "that did not find the key stale: neither fresh nor stale."},
        };
        for (int f = 0; f < 5; f++) {
                fprintf(fp, "# HELP %s %s\n# TYPE %s %s\n", fam[f][0], fam[f][2], fam[f][0],
                        fam[f][1]);
                for (int d = 0; d < s->ndelays; d++) {
                        char label[32];
                        delay_label(s->delays[d], label, sizeof(label));
                        uint64_t v = f == 0   ? s->pd[d].checked
                                     : f == 1 ? s->pd[d].stale
                                     : f == 2 ? s->pd[d].unverifiable
                                     : f == 3 ? s->pd[d].superseded
                                              : s->pd[d].late;
                        fprintf(fp, "%s{delay=\"%s\"} %" PRIu64 "\n", fam[f][0], label, v);
                }
        }
        fprintf(fp, "# HELP krib_inspect_nines Consistency over inspect.window_s in nines: "
                    "-log10(stale/checked); +Inf with none stale; NaN without checks.\n"
                    "# TYPE krib_inspect_nines gauge\n");
        for (int d = 0; d < s->ndelays; d++) {
                char label[32];
                delay_label(s->delays[d], label, sizeof(label));
                double v = krib_nines_value(&s->pd[d].nines, now_ms / 1000, NULL, NULL);
                char num[32];
                snprintf(num, sizeof(num), "%.4f", v);
                fprintf(fp, "krib_inspect_nines{delay=\"%s\"} %s\n", label,
                        isnan(v)   ? "NaN"
                        : isinf(v) ? "+Inf"
                                   : num);
        }
        fprintf(fp,
                "# HELP krib_inspect_events_total Events the inspector read, by what became of "
                "them.\n# TYPE krib_inspect_events_total counter\n"
                "krib_inspect_events_total{outcome=\"consumed\"} %" PRIu64 "\n"
                "krib_inspect_events_total{outcome=\"sampled_out\"} %" PRIu64 "\n"
                "krib_inspect_events_total{outcome=\"no_keys\"} %" PRIu64 "\n"
                "krib_inspect_events_total{outcome=\"undecodable\"} %" PRIu64 "\n"
                "krib_inspect_events_total{outcome=\"past_end\"} %" PRIu64 "\n",
                s->consumed, s->skipped_sampled, s->skipped_tag, s->skipped_undecodable,
                s->skipped_past_end);
        fprintf(fp,
                "# HELP krib_inspect_redis_commands_total Redis commands the inspector sent "
                "(within inspect.budget_per_s).\n# TYPE krib_inspect_redis_commands_total "
                "counter\nkrib_inspect_redis_commands_total %" PRIu64 "\n",
                s->commands);
        fprintf(fp,
                "# HELP krib_inspect_pending_events Events waiting for a check.\n# TYPE "
                "krib_inspect_pending_events gauge\nkrib_inspect_pending_events %" PRIu64 "\n",
                s->pending_items);
        int64_t late = behind_ms(s, now_ms);
        fprintf(fp,
                "# HELP krib_inspect_behind_seconds How long the most overdue check has been "
                "due (the budget, or a slow or unreachable master holding it).\n# TYPE "
                "krib_inspect_behind_seconds gauge\n"
                "krib_inspect_behind_seconds %.3f\n",
                (double)late / 1000.0);
        fclose(fp);
        *out = buf;
        *len = size;
}

static void report(insp_t *s, int64_t now_ms) {
        printf("krib inspect report:");
        for (int d = 0; d < s->ndelays; d++) {
                char label[32];
                delay_label(s->delays[d], label, sizeof(label));
                uint64_t c = s->pd[d].checked - s->pd[d].unverifiable;
                double nines = c == 0 ? NAN
                               : s->pd[d].stale == 0
                                       ? INFINITY
                                       : 0.0 - log10((double)s->pd[d].stale / (double)c);
                (void)now_ms;
                char num[32];
                snprintf(num, sizeof(num), "%.2f", nines);
                printf(" delay=%s checked=%" PRIu64 " stale=%" PRIu64 " unverifiable=%" PRIu64
                       " superseded=%" PRIu64 " late=%" PRIu64 " nines=%s%s",
                       label, s->pd[d].checked, s->pd[d].stale, s->pd[d].unverifiable,
                       s->pd[d].superseded, s->pd[d].late,
                       isnan(nines)   ? "nan"
                       : isinf(nines) ? "inf"
                                      : num,
                       d + 1 < s->ndelays ? ";" : "");
        }
        printf(" events=%" PRIu64 " sampled_out=%" PRIu64 " commands=%" PRIu64 "\n", s->consumed,
               s->skipped_sampled, s->commands);
        fflush(stdout);
}

/* ---- the loop ------------------------------------------------------------- */

int krib_inspect_run(const krib_conf_t *conf, const krib_inspect_opts_t *o,
                     volatile sig_atomic_t *stop, volatile sig_atomic_t *mark_end) {
        insp_t *s = calloc(1, sizeof(*s));
        int rc = 2;
        char err[512];
        if (!s)
                return 2;
        s->conf = conf;
        s->opts = *o;
        s->tokens_at_us = krib_clock_mono_us();
        s->tokens = (double)conf->inspect_budget_per_s;
        s->nbuckets = 1024;
        s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
        s->offsets = krib_offsets_new();
        for (size_t i = 0; i < conf->inspect_delays_ms.n && i < MAX_DELAYS; i++) {
                s->delays[s->ndelays] = strtoll(conf->inspect_delays_ms.v[i], NULL, 10);
                if (krib_nines_init(&s->pd[s->ndelays].nines, (size_t)conf->inspect_window_s))
                        goto out;
                s->ndelays++;
        }
        size_t glen = strlen(conf->kafka_group_id) + sizeof(".inspect");
        if (!s->buckets || !s->offsets || !(s->group = malloc(glen)))
                goto out;
        snprintf(s->group, glen, "%s.inspect", conf->kafka_group_id);
        /* A shallow copy with the inspector's own group: everything else is
         * krib's configuration, borrowed. */
        s->cc = *conf;
        s->cc.kafka_group_id = s->group;
        if (!(s->schemas =
                      krib_schemas_new((krib_wire_t)conf->decode_format, conf->decode_schema_file,
                                       conf->decode_schema_dir, err, sizeof(err)))) {
                krib_log_error("inspect", "msg=\"cannot start\" error=\"%s\"", err);
                goto out;
        }
        if (krib_routes_need_registry(conf->routes) &&
            !(s->registry = krib_registry_new(conf->registry_url, conf->registry_timeout_ms, err,
                                              sizeof(err)))) {
                krib_log_error("inspect", "msg=\"cannot start\" error=\"%s\"", err);
                goto out;
        }
        if (conf->redis_tls) {
                krib_tls_opts_t to = {conf->redis_tls_ca_file, conf->redis_tls_cert_file,
                                      conf->redis_tls_key_file, conf->redis_tls_server_name,
                                      (int)conf->redis_tls_verify};
                if (!(s->tls = krib_tls_new(&to, err, sizeof(err)))) {
                        krib_log_error("inspect", "msg=\"cannot start\" error=\"redis.tls: %s\"",
                                       err);
                        goto out;
                }
        }
        if (!(s->metrics = krib_metrics_new_text(
                      conf->metrics_address, (int)conf->inspect_metrics_port, err, sizeof(err)))) {
                krib_log_error("inspect", "msg=\"cannot start\" error=\"%s\"", err);
                goto out;
        }
        krib_consumer_hooks_t hooks = {.on_revoke = on_revoke, .on_assign = on_assign, .opaque = s};
        if (!(s->consumer = krib_consumer_new(&s->cc, &hooks, err, sizeof(err)))) {
                krib_log_error("inspect", "msg=\"cannot start\" error=\"%s\"", err);
                goto out;
        }
        krib_log_info(
                "inspect",
                "msg=\"inspecting\" group=%s delays_ms=%zu sample_ratio=%g budget_per_s=%" PRId64
                " fills=%s",
                s->group, (size_t)s->ndelays, conf->inspect_sample_ratio,
                conf->inspect_budget_per_s, conf->inspect_fills ? "guarded" : "unguarded");
        if (!(s->cluster = krib_cluster_new(conf, s->tls, "inspect", err, sizeof(err)))) {
                krib_log_error("inspect", "msg=\"cannot start\" error=\"%s\"", err);
                goto out;
        }
        int64_t stats_at = 0;
        int more = 1; /* the consumer may hold messages the wake-up pipe will not announce */
        while (!*stop) {
                act_on_revoke(s);
                if (*mark_end) {
                        *mark_end = 0;
                        s->opts.until_end = 1;
                        s->end_wanted = 1;
                }
                if (s->end_wanted)
                        take_ends(s);
                int64_t now_ms = krib_clock_wall_ms();
                check_turn(s, now_ms);
                /* Wait for Kafka, a reply, a helper thread, or the next due
                 * check (a retry, the budget), 100 ms at most. */
                int64_t wait = 100;
                if (s->nheap)
                        wait = s->heap[0].due_ms - now_ms;
                if (s->retry.n && kq_front(&s->retry)->not_before_ms - now_ms < wait)
                        wait = kq_front(&s->retry)->not_before_ms - now_ms;
                for (size_t m = 0; m < s->nnodes && wait > 10; m++)
                        if (s->nodes[m].wait.n && s->nodes[m].fly.n < FLY_MAX)
                                wait = 10; /* the budget refills, or a connection comes */
                if (more || wait < 0)
                        wait = 0;
                if (wait > 100)
                        wait = 100;
                int nfds = check_pollfds(s);
                if (nfds)
                        poll(s->pfds, (nfds_t)nfds, (int)wait);
                else
                        poll(NULL, 0, wait > 10 ? 10 : (int)wait);
                krib_consumer_wakeup_clear(s->consumer);
                more = 0;
                for (int i = 0;; i++) {
                        if (i >= 10000 || s->pending_items >= 2000000) {
                                more = 1;
                                break;
                        }
                        rd_kafka_message_t *m = krib_consumer_poll(s->consumer, 0);
                        if (!m)
                                break;
                        if (!m->err)
                                take(s, m);
                        else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                krib_log_debug("inspect", "msg=\"consume error\" error=\"%s\"",
                                               rd_kafka_message_errstr(m));
                        rd_kafka_message_destroy(m);
                }
                now_ms = krib_clock_wall_ms();
                check_turn(s, now_ms);
                store_offsets(s);
                if (now_ms - s->published_at_ms >= 1000) {
                        s->published_at_ms = now_ms;
                        char *text = NULL;
                        size_t len = 0;
                        render(s, now_ms, &text, &len);
                        if (text)
                                krib_metrics_publish_text(s->metrics, text, len,
                                                          krib_cluster_has_map(s->cluster));
                        free(text);
                }
                if (conf->log_stats_interval_ms &&
                    now_ms - stats_at >= conf->log_stats_interval_ms) {
                        stats_at = now_ms;
                        krib_log_info("inspect",
                                      "msg=\"stats\" events=%" PRIu64 " pending=%" PRIu64
                                      " checked_first=%" PRIu64 " stale_first=%" PRIu64
                                      " late_first=%" PRIu64 " checked_last=%" PRIu64
                                      " stale_last=%" PRIu64 " late_last=%" PRIu64
                                      " commands=%" PRIu64 " behind_ms=%" PRId64,
                                      s->consumed, s->pending_items, s->pd[0].checked,
                                      s->pd[0].stale, s->pd[0].late, s->pd[s->ndelays - 1].checked,
                                      s->pd[s->ndelays - 1].stale, s->pd[s->ndelays - 1].late,
                                      s->commands, behind_ms(s, now_ms));
                }
                if (s->opts.until_end && reached_end(s) && !s->pending_items)
                        break;
        }
        store_offsets(s);
        krib_consumer_commit(s->consumer);
        if (s->opts.report)
                report(s, krib_clock_wall_ms());
        rc = s->pd[s->ndelays - 1].stale ? 1 : 0;
out:
        /* Before the consumer goes: a list from rd_kafka_assignment() can
         * hold partition references that rd_kafka_destroy() waits for. */
        if (s->ends)
                rd_kafka_topic_partition_list_destroy(s->ends);
        s->ends = NULL;
        if (s->consumer)
                krib_consumer_close(s->consumer);
        /* Every check still open is given up; the items go with their last. */
        for (size_t i = 0; i < s->nheap; i++)
                s->heap[i].it->dropped = 1;
        for (size_t m = 0; m < s->nnodes; m++)
                node_requeue(s, &s->nodes[m], 0, 0);
        for (size_t i = 0; i < s->retry.n; i++)
                s->retry.v[s->retry.head + i].it->dropped = 1;
        while (s->retry.n) {
                kcheck_t c = kq_pop(&s->retry);
                check_done(s, &c);
        }
        while (s->nheap) {
                due_t d = heap_pop(s);
                for (uint32_t k = d.from; k < d.it->nkeys; k++)
                        check_done(s, &(kcheck_t){d.it, k, d.delay, d.due_ms, 0});
        }
        for (size_t i = 0; s->buckets && i < s->nbuckets; i++)
                for (knode_t *n = s->buckets[i], *next; n; n = next) {
                        next = n->next;
                        if (n->hi)
                                item_unref(n->hi);
                        free(n);
                }
        free(s->buckets);
        free(s->heap);
        for (size_t m = 0; m < s->nnodes; m++) {
                free(s->nodes[m].wait.v);
                free(s->nodes[m].fly.v);
        }
        free(s->nodes);
        free(s->retry.v);
        free(s->pfds);
        krib_cluster_destroy(s->cluster);
        krib_tls_destroy(s->tls);
        krib_metrics_destroy(s->metrics);
        krib_registry_destroy(s->registry);
        krib_schemas_destroy(s->schemas);
        krib_offsets_destroy(s->offsets);
        krib_event_destroy(&s->ev);
        for (int d = 0; d < s->ndelays; d++)
                krib_nines_free(&s->pd[d].nines);
        for (size_t i = 0; i < s->ntopics; i++)
                free(s->topics[i]);
        free(s->topics);
        free(s->group);
        free(s);
        return rc;
}
