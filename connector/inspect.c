#include "inspect.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "conn.h"
#include "consistency.h"
#include "consumer.h"
#include "event.h"
#include "fence.h"
#include "log.h"
#include "metrics.h"
#include "offsets.h"
#include "registry.h"
#include "route.h"
#include "schemas.h"
#include "slot.h"
#include "topo.h"
#include "util.h"

#define MAX_DELAYS 8
#define ROUND_KEYS 512   /* keys checked per round trip, at most */
#define FKEY_MAX   65600 /* the longest fence key name (keys are at most 65519 bytes) */

/* One event waiting for its checks. */
typedef struct {
        char *topic;
        int32_t partition;
        int64_t offset;
        int64_t ts_ms;
        uint64_t seq; /* consumption order: "later" for the superseded rule */
        krib_action_t action;
        krib_vv_entry_t *vv;
        size_t nvv;
        char **keys;
        size_t *key_lens;
        size_t nkeys;
        int left;    /* delays still to check */
        int dropped; /* its partition was revoked: checks skipped */
} item_t;

typedef struct {
        int64_t due_ms;
        item_t *it;
        int delay; /* index into the delays */
} due_t;

/* The newest event naming a key, while one is pending. */
typedef struct knode {
        struct knode *next;
        uint64_t hash, seq;
        int64_t ts_ms;
        size_t len;
        char key[];
} knode_t;

typedef struct {
        uint64_t checked, stale, unverifiable, superseded;
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
        uint64_t seq;

        /* Redis */
        krib_topo_t topo;
        krib_conn_t **conns; /* per topo master */
        size_t nconns;
        krib_tls_t *tls;
        int need_refresh;
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

/* ---- the key table (newest pending event per key) ------------------------ */

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

static void knote(insp_t *s, const char *key, size_t len, uint64_t seq, int64_t ts) {
        uint64_t h = fnv(key, len, 14695981039346656037ULL);
        knode_t **p = kfind(s, key, len, h);
        if (*p) {
                (*p)->seq = seq;
                (*p)->ts_ms = ts;
                return;
        }
        if (s->nkeys >= s->nbuckets * 2 && kgrow(s) == 0)
                p = kfind(s, key, len, h);
        knode_t *n = malloc(sizeof(*n) + len);
        if (!n)
                return; /* the superseded rule then falls back to judging this event */
        n->next = NULL;
        n->hash = h;
        n->seq = seq;
        n->ts_ms = ts;
        n->len = len;
        memcpy(n->key, key, len);
        *p = n;
        s->nkeys++;
}

static const knode_t *klook(insp_t *s, const char *key, size_t len) {
        return *kfind(s, key, len, fnv(key, len, 14695981039346656037ULL));
}

/* Forgets key when seq was its newest event. */
static void kdrop(insp_t *s, const char *key, size_t len, uint64_t seq) {
        knode_t **p = kfind(s, key, len, fnv(key, len, 14695981039346656037ULL));
        if (*p && (*p)->seq == seq) {
                knode_t *n = *p;
                *p = n->next;
                free(n);
                s->nkeys--;
        }
}

/* ---- the due heap ---------------------------------------------------------- */

static int heap_push(insp_t *s, int64_t due, item_t *it, int d) {
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
        s->heap[i] = (due_t){due, it, d};
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

/* An item is one allocation (arrays and strings after the struct). */
static void item_free(item_t *it) {
        free(it);
}

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
                kdrop(s, it->keys[k], it->key_lens[k], it->seq);
        s->pending_items--;
        item_free(it);
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
        it->seq = ++s->seq;
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
        return it;
}

/* ---- Redis ---------------------------------------------------------------- */

static krib_conn_t *open_node(insp_t *s, const krib_addr_t *announced) {
        krib_addr_t a;
        krib_addr_map_apply(s->conf->redis_address_map.v, s->conf->redis_address_map.n,
                            announced->host, announced->port, &a);
        char err[256];
        krib_conn_t *c =
                krib_conn_connect(a.host, a.port, s->conf->redis_connect_timeout_ms,
                                  s->conf->redis_command_timeout_ms, s->tls, err, sizeof(err));
        if (!c) {
                krib_log_warn("inspect", "msg=\"cannot connect to redis\" node=%s:%d error=\"%s\"",
                              a.host, a.port, err);
                return NULL;
        }
        if (krib_conn_auth(c, s->conf->redis_username, s->conf->redis_password, err, sizeof(err))) {
                krib_log_error("inspect", "msg=\"redis AUTH failed\" node=%s:%d error=\"%s\"",
                               a.host, a.port, err);
                krib_conn_free(c);
                return NULL;
        }
        return c;
}

static void drop_conns(insp_t *s) {
        for (size_t i = 0; i < s->nconns; i++)
                if (s->conns[i])
                        krib_conn_free(s->conns[i]);
        free(s->conns);
        s->conns = NULL;
        s->nconns = 0;
}

static int refresh(insp_t *s) {
        drop_conns(s);
        krib_topo_reset(&s->topo);
        if (s->conf->redis_mode == KRIB_REDIS_STANDALONE) {
                krib_addr_t a;
                if (krib_addr_parse(s->conf->redis_nodes.v[0], &a) ||
                    krib_topo_load_standalone(&s->topo, &a))
                        return -1;
        } else {
                int ok = 0;
                for (size_t i = 0; i < s->conf->redis_nodes.n && !ok; i++) {
                        krib_addr_t a;
                        if (krib_addr_parse(s->conf->redis_nodes.v[i], &a))
                                continue;
                        krib_conn_t *c = open_node(s, &a);
                        redisReply *r = c ? krib_conn_command(c, "CLUSTER SLOTS") : NULL;
                        char err[256];
                        ok = r && !krib_topo_load_slots(&s->topo, r, a.host, err, sizeof(err));
                        if (r)
                                freeReplyObject(r);
                        if (c)
                                krib_conn_free(c);
                }
                if (!ok)
                        return -1;
        }
        s->nconns = s->topo.master_count;
        s->conns = calloc(s->nconns ? s->nconns : 1, sizeof(*s->conns));
        if (!s->conns)
                return -1;
        s->need_refresh = 0;
        return 0;
}

/* One key check in flight: which item, key, delay. */
typedef struct {
        due_t d;
        size_t key;
        int master;
        int present, failed;
        redisReply *fence;
} check_t;

static void judge_one(insp_t *s, check_t *c, int64_t now_ms) {
        item_t *it = c->d.it;
        per_delay_t *pd = &s->pd[c->d.delay];
        krib_check_state_t st = {
                c->present, c->fence && c->fence->type == REDIS_REPLY_STRING ? c->fence->str : NULL,
                c->fence && c->fence->type == REDIS_REPLY_STRING ? (size_t)c->fence->len : 0};
        char why[300];
        krib_check_verdict_t v = krib_consistency_judge(
                it->action, it->vv, it->nvv, &st, (int)s->conf->inspect_fills, why, sizeof(why));
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
        delay_label(s->delays[c->d.delay], label, sizeof(label));
        krib_log_warn("inspect",
                      "msg=\"stale key\" delay=%s key=\"%s\" topic=%s partition=%" PRId32
                      " offset=%" PRId64 " action=%s expected=\"%s%s\" redis=\"%s\"",
                      label, krib_log_esc(it->keys[c->key], it->key_lens[c->key]), it->topic,
                      it->partition, it->offset, krib_action_name(it->action),
                      it->action == KRIB_ACTION_DELETE ? "absent, or present at >= " : "at >= ",
                      expect, why);
}

/* Takes the due checks the budget allows, reads their keys (EXISTS, GET of
 * the fence key) pipelined per master, judges them. */
static void check_round(insp_t *s, int64_t now_ms) {
        int64_t now_us = krib_clock_mono_us();
        double budget = (double)s->conf->inspect_budget_per_s;
        s->tokens += budget * (double)(now_us - s->tokens_at_us) / 1e6;
        if (s->tokens > budget)
                s->tokens = budget;
        s->tokens_at_us = now_us;
        if (!s->nheap || s->heap[0].due_ms > now_ms)
                return;
        if ((s->need_refresh || !s->conns) && refresh(s)) {
                s->need_refresh = 1;
                return; /* checks wait; Redis is counted as late, never as fresh */
        }
        check_t *cs = calloc(ROUND_KEYS, sizeof(*cs));
        if (!cs)
                return;
        size_t n = 0;
        due_t held[ROUND_KEYS];
        size_t nheld = 0;
        while (s->nheap && s->heap[0].due_ms <= now_ms && nheld < ROUND_KEYS) {
                item_t *it = s->heap[0].it;
                size_t need = it->nkeys ? it->nkeys : 1;
                if (n + need > ROUND_KEYS && n)
                        break;
                /* The budget refills; an event larger than a second's budget
                 * goes alone once the bucket is full. */
                if (s->tokens < 2.0 * (double)need && (n || s->tokens < budget))
                        break;
                due_t d = heap_pop(s);
                held[nheld++] = d;
                if (d.it->dropped)
                        continue;
                int64_t late = now_ms - d.due_ms;
                if (late > s->worst_late_ms)
                        s->worst_late_ms = late;
                for (size_t k = 0; k < d.it->nkeys && n < ROUND_KEYS; k++) {
                        const knode_t *kn = klook(s, d.it->keys[k], d.it->key_lens[k]);
                        if (kn && kn->seq > d.it->seq && kn->ts_ms + s->delays[d.delay] <= now_ms) {
                                s->pd[d.delay].superseded++;
                                continue; /* a later event, due too, judges this key */
                        }
                        unsigned slot = krib_slot_of(d.it->keys[k], d.it->key_lens[k]);
                        cs[n].d = d;
                        cs[n].key = k;
                        cs[n].master = s->topo.slot_owner[slot];
                        /* A slot without an owner: checked again after a
                         * refresh, never taken for absent. */
                        if (cs[n].master < 0 || (size_t)cs[n].master >= s->nconns) {
                                cs[n].failed = 1;
                                s->need_refresh = 1;
                        }
                        n++;
                }
                s->tokens -= 2.0 * (double)need;
        }
        /* Per master: every command first, then every reply. */
        for (size_t m = 0; m < s->nconns; m++) {
                size_t mine = 0;
                for (size_t i = 0; i < n; i++)
                        mine += cs[i].master == (int)m;
                if (!mine)
                        continue;
                if (!s->conns[m] && !(s->conns[m] = open_node(s, &s->topo.masters[m]))) {
                        for (size_t i = 0; i < n; i++)
                                cs[i].failed |= cs[i].master == (int)m;
                        s->need_refresh = 1;
                        continue;
                }
                krib_conn_t *c = s->conns[m];
                for (size_t i = 0; i < n; i++) {
                        if (cs[i].master != (int)m)
                                continue;
                        item_t *it = cs[i].d.it;
                        char *fkey = s->fkey;
                        int fl = krib_fence_key(it->keys[cs[i].key], it->key_lens[cs[i].key], fkey,
                                                FKEY_MAX);
                        const char *a1[] = {"EXISTS", it->keys[cs[i].key]};
                        size_t l1[] = {6, it->key_lens[cs[i].key]};
                        const char *a2[] = {"GET", fkey};
                        size_t l2[] = {3, fl > 0 ? (size_t)fl : 0};
                        krib_conn_append(c, 2, a1, l1);
                        krib_conn_append(c, 2, a2, l2);
                        s->commands += 2;
                }
                int io = krib_conn_flush(c);
                s->round_trips++;
                for (size_t i = 0; i < n; i++) {
                        if (cs[i].master != (int)m)
                                continue;
                        redisReply *r1 = NULL, *r2 = NULL;
                        if (io || krib_conn_read(c, &r1) || krib_conn_read(c, &r2)) {
                                io = -1;
                                cs[i].failed = 1;
                        } else if (r1->type != REDIS_REPLY_INTEGER ||
                                   (r2->type != REDIS_REPLY_STRING &&
                                    r2->type != REDIS_REPLY_NIL)) {
                                /* MOVED, ASK, LOADING, ...: the map or the node is
                                 * in flux; this event is checked again shortly. */
                                cs[i].failed = 1;
                                s->need_refresh = 1;
                        } else {
                                cs[i].present = r1->integer > 0;
                                cs[i].fence = r2;
                                r2 = NULL;
                        }
                        if (r1)
                                freeReplyObject(r1);
                        if (r2)
                                freeReplyObject(r2);
                }
                if (io) {
                        krib_conn_free(c);
                        s->conns[m] = NULL;
                        s->need_refresh = 1;
                }
        }
        /* An event with a failed key is checked again (all keys) later. */
        for (size_t h = 0; h < nheld; h++) {
                due_t d = held[h];
                int failed = 0;
                for (size_t i = 0; i < n; i++)
                        if (cs[i].d.it == d.it && cs[i].d.delay == d.delay && cs[i].failed)
                                failed = 1;
                if (failed && !d.it->dropped) {
                        heap_push(s, now_ms + 200, d.it, d.delay);
                        continue;
                }
                for (size_t i = 0; i < n; i++)
                        if (cs[i].d.it == d.it && cs[i].d.delay == d.delay)
                                judge_one(s, &cs[i], now_ms);
                if (--d.it->left == 0)
                        item_done(s, d.it);
        }
        for (size_t i = 0; i < n; i++)
                if (cs[i].fence)
                        freeReplyObject(cs[i].fence);
        free(cs);
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
        for (size_t i = 0; i < s->nheap; i++)
                for (int p = 0; p < parts->cnt; p++)
                        if (s->heap[i].it->partition == parts->elems[p].partition &&
                            !strcmp(s->heap[i].it->topic, parts->elems[p].topic))
                                s->heap[i].it->dropped = 1;
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
                knote(s, it->keys[k], it->key_lens[k], it->seq, ts);
        for (int d = 0; d < s->ndelays; d++)
                heap_push(s, ts + s->delays[d], it, d);
        s->pending_items++;
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
                 "Key checks left to a later event of the key, itself due."},
        };
        for (int f = 0; f < 4; f++) {
                fprintf(fp, "# HELP %s %s\n# TYPE %s %s\n", fam[f][0], fam[f][2], fam[f][0],
                        fam[f][1]);
                for (int d = 0; d < s->ndelays; d++) {
                        char label[32];
                        delay_label(s->delays[d], label, sizeof(label));
                        uint64_t v = f == 0   ? s->pd[d].checked
                                     : f == 1 ? s->pd[d].stale
                                     : f == 2 ? s->pd[d].unverifiable
                                              : s->pd[d].superseded;
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
        int64_t late = s->nheap && s->heap[0].due_ms < now_ms ? now_ms - s->heap[0].due_ms : 0;
        fprintf(fp,
                "# HELP krib_inspect_behind_seconds How long the most overdue check has been "
                "due (budget or Redis holding it).\n# TYPE krib_inspect_behind_seconds gauge\n"
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
                       " superseded=%" PRIu64 " nines=%s%s",
                       label, s->pd[d].checked, s->pd[d].stale, s->pd[d].unverifiable,
                       s->pd[d].superseded,
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
        krib_topo_init(&s->topo);
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
        if (refresh(s))
                krib_log_warn("inspect", "msg=\"redis not reachable yet, will retry\"");
        int64_t stats_at = 0;
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
                /* Read while the heap holds a bounded backlog. */
                int wait = s->nheap && s->heap[0].due_ms > now_ms
                                   ? (int)(s->heap[0].due_ms - now_ms < 100
                                                   ? s->heap[0].due_ms - now_ms
                                                   : 100)
                           : s->nheap ? 0
                                      : 100;
                for (int i = 0; i < 10000 && s->pending_items < 2000000; i++) {
                        rd_kafka_message_t *m = krib_consumer_poll(s->consumer, i ? 0 : wait);
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
                check_round(s, now_ms);
                store_offsets(s);
                if (now_ms - s->published_at_ms >= 1000) {
                        s->published_at_ms = now_ms;
                        char *text = NULL;
                        size_t len = 0;
                        render(s, now_ms, &text, &len);
                        if (text)
                                krib_metrics_publish_text(s->metrics, text, len, s->conns != NULL);
                        free(text);
                }
                if (conf->log_stats_interval_ms &&
                    now_ms - stats_at >= conf->log_stats_interval_ms) {
                        stats_at = now_ms;
                        krib_log_info("inspect",
                                      "msg=\"stats\" events=%" PRIu64 " pending=%" PRIu64
                                      " checked_first=%" PRIu64 " stale_first=%" PRIu64
                                      " checked_last=%" PRIu64 " stale_last=%" PRIu64
                                      " commands=%" PRIu64,
                                      s->consumed, s->pending_items, s->pd[0].checked,
                                      s->pd[0].stale, s->pd[s->ndelays - 1].checked,
                                      s->pd[s->ndelays - 1].stale, s->commands);
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
        while (s->nheap) {
                due_t d = heap_pop(s);
                if (--d.it->left == 0) {
                        d.it->dropped = 1;
                        item_done(s, d.it);
                }
        }
        for (size_t i = 0; s->buckets && i < s->nbuckets; i++)
                for (knode_t *n = s->buckets[i], *next; n; n = next) {
                        next = n->next;
                        free(n);
                }
        free(s->buckets);
        free(s->heap);
        drop_conns(s);
        krib_topo_destroy(&s->topo);
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
