#include "pipeline.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "consumer.h"
#include "decode.h"
#include "schemas.h"
#include "event.h"
#include "hist.h"
#include "log.h"
#include "metrics.h"
#include "offsets.h"
#include "dlq.h"
#include "registry.h"
#include "sweep.h"
#include "reorder.h"
#include "route.h"
#include "util.h"
#include "validate.h"
#include "writer.h"

typedef struct {
        uint32_t event;
        int32_t next;
} link_t;

enum { EV_DONE = 0, EV_LIVE = 1, EV_FAILED = 2, EV_PENDING = 3, EV_DLQ = 4, EV_SWEEP = 5 };

struct krib_pipeline {
        const krib_conf_t *conf;
        volatile sig_atomic_t *stop;
        krib_consumer_t *consumer;
        krib_schemas_t *decode;
        krib_dlq_t *dlq; /* NULL: rejected events are logged and skipped */
        krib_sweeps_t *sweeps;
        krib_registry_t *registry; /* debezium-avro routes */
        int64_t dlq_wait_from_us;
        /* Route of each topic seen (rd_kafka_topic_t pointers are stable). */
        struct {
                const rd_kafka_topic_t *rkt;
                const krib_route_t *route;
        } route_cache[64];
        size_t nroute_cache;
        krib_writer_t *writer;
        krib_offsets_t *offsets;
        krib_reorder_t *reorder;

        size_t cap, n, bytes;
        rd_kafka_message_t **msgs;
        krib_event_t *events;
        uint8_t *ev_state;

        /* Messages polled while a batch was being written (consumer served
         * during Redis retries); they open the next batch. */
        rd_kafka_message_t **stash;
        size_t nstash, stash_cap;

        /* One op per (partition, key) in a batch; every event that named the
         * key hangs off it, so the newest op's acknowledgement also finishes
         * the events it superseded. */
        krib_wop_t *ops;
        int32_t *op_part;
        int32_t *op_links;
        uint8_t *op_status;
        size_t op_cap;
        link_t *links;
        size_t link_cap;
        int32_t *table; /* open addressing over ops by (partition, key); -1 empty */
        size_t table_cap;

        krib_hist_t latency; /* event ts_ms -> Redis acknowledgement, ms */
        krib_metrics_t *metrics;
        int64_t published_at_ms;
        int assigned, joined;

        int in_write;     /* inside krib_writer_apply() */
        int in_rebalance; /* inside a rebalance callback: no nested polls */
        int paused;
        int interrupted;
        krib_pipeline_stats_t stats;
        int64_t stats_at_us;
};

static int process_batch(krib_pipeline_t *p);

#define MSG_FMT     "topic=%s partition=%" PRId32 " offset=%" PRId64
#define MSG_ARGS(m) rd_kafka_topic_name((m)->rkt), (m)->partition, (m)->offset

static void forget_partitions(krib_pipeline_t *p, const rd_kafka_topic_partition_list_t *parts) {
        for (int i = 0; i < parts->cnt; i++) {
                krib_offsets_forget(p->offsets, parts->elems[i].topic, parts->elems[i].partition);
                krib_reorder_forget(p->reorder, parts->elems[i].topic, parts->elems[i].partition);
        }
}

static int in_parts(const rd_kafka_message_t *m, const rd_kafka_topic_partition_list_t *parts) {
        for (int i = 0; i < parts->cnt; i++)
                if (parts->elems[i].partition == m->partition &&
                    !strcmp(parts->elems[i].topic, rd_kafka_topic_name(m->rkt)))
                        return 1;
        return 0;
}

/* Hands the metrics thread a fresh snapshot, at most every 250 ms. */
static void publish(krib_pipeline_t *p, int force) {
        /* Also from the registry's wait loop, so an outage shows while it lasts. */
        if (p->registry) {
                const krib_registry_stats_t *rs = krib_registry_stats(p->registry);
                p->stats.registry_fetched = rs->fetches - rs->unavailable;
                p->stats.registry_cached = rs->cached;
                p->stats.registry_unavailable = rs->unavailable;
                p->stats.registry_unknown = rs->unknown;
        }
        int64_t now = krib_clock_wall_ms();
        if (!p->metrics || (!force && now - p->published_at_ms < 250))
                return;
        p->published_at_ms = now;
        krib_metrics_snapshot_t s;
        memset(&s, 0, sizeof(s));
        s.pipeline = p->stats;
        s.writer = *krib_writer_stats(p->writer);
        s.reorder = *krib_reorder_stats(p->reorder);
        s.in_flight = krib_offsets_in_flight(p->offsets) + p->n;
        s.assigned_partitions = p->assigned;
        s.paused = p->paused;
        s.joined = p->joined;
        s.redis_ok = s.writer.healthy;
        s.rebalances = p->consumer ? krib_consumer_rebalances(p->consumer) : 0;
        krib_metrics_latency(&s, &p->latency);
        if (p->consumer)
                s.nlag = krib_consumer_lag(p->consumer, s.lag, 64);
        s.nnodes = krib_writer_nodes(p->writer, s.nodes, 16);
        s.loop_at_ms = now;
        krib_metrics_publish(p->metrics, &s);
}

static void on_revoke(void *opaque, const rd_kafka_topic_partition_list_t *parts, int lost) {
        krib_pipeline_t *p = opaque;
        (void)lost;
        if (p->in_write) {
                /* Revoked while Redis is failing: the batch cannot finish
                 * now, so its events of these partitions are abandoned
                 * without storing their offsets; the next owner re-reads
                 * them (at-least-once). */
                for (size_t i = 0; i < p->n; i++)
                        if (in_parts(p->msgs[i], parts))
                                p->stats.abandoned++;
        } else if (p->n) {
                /* Finish what was read from these partitions while they are
                 * still ours, so their offsets are committed before another
                 * member starts from them. */
                p->in_rebalance = 1;
                if (process_batch(p))
                        p->interrupted = 1;
                p->in_rebalance = 0;
        }
        /* Stashed messages of revoked partitions belong to the next owner. */
        size_t keep = 0;
        for (size_t i = 0; i < p->nstash; i++) {
                if (in_parts(p->stash[i], parts))
                        rd_kafka_message_destroy(p->stash[i]);
                else
                        p->stash[keep++] = p->stash[i];
        }
        p->nstash = keep;
        for (int i = 0; i < parts->cnt; i++)
                krib_sweeps_drop(p->sweeps, parts->elems[i].topic, parts->elems[i].partition);
        forget_partitions(p, parts);
        p->assigned -= parts->cnt;
        if (p->assigned < 0)
                p->assigned = 0;
        publish(p, 1);
}

static void set_paused(krib_pipeline_t *p, const rd_kafka_topic_partition_list_t *only, int pause) {
        rd_kafka_t *rk = krib_consumer_handle(p->consumer);
        rd_kafka_topic_partition_list_t *list = NULL;
        if (!only && rd_kafka_assignment(rk, &list))
                return;
        rd_kafka_topic_partition_list_t *l = only ? (rd_kafka_topic_partition_list_t *)only : list;
        if (l->cnt) {
                rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(rk, l)
                                                : rd_kafka_resume_partitions(rk, l);
                if (err)
                        krib_log_warn("pipeline", "msg=\"%s failed\" error=\"%s\"",
                                      pause ? "pause" : "resume", rd_kafka_err2str(err));
        }
        if (list)
                rd_kafka_topic_partition_list_destroy(list);
}

static void on_assign(void *opaque, const rd_kafka_topic_partition_list_t *parts) {
        krib_pipeline_t *p = opaque;
        p->assigned += parts->cnt;
        p->joined = 1;
        publish(p, 1);
        /* New partitions join a paused consumer paused. */
        if (p->paused)
                set_paused(p, parts, 1);
}

/* Writer callback while Redis retries: stop fetching, keep the member alive. */
static void on_writer_tick(void *opaque) {
        krib_pipeline_t *p = opaque;
        if (!p->consumer)
                return; /* start-up: the first topology fetch, before Kafka */
        publish(p, 0);  /* alive while retrying: /healthz stays green, /readyz red */
        if (!p->paused) {
                p->paused = 1;
                p->stats.pauses++;
                set_paused(p, NULL, 1);
                krib_log_warn("pipeline",
                              "msg=\"redis is failing: partitions paused\" "
                              "batch_events=%zu",
                              p->n);
        }
        /* librdkafka is already inside a poll when a rebalance callback
         * writes: polling again from there would nest callbacks. */
        for (int i = 0; i < 100 && !p->in_rebalance; i++) {
                rd_kafka_message_t *m = krib_consumer_poll(p->consumer, 0);
                if (!m)
                        break;
                if (m->err || p->nstash == p->stash_cap) {
                        /* stash_cap >= batch size; a full stash only happens
                         * if pausing failed, and then re-reading is safe. */
                        rd_kafka_message_destroy(m);
                        continue;
                }
                p->stash[p->nstash++] = m;
        }
}

krib_pipeline_t *krib_pipeline_new(const krib_conf_t *conf, volatile sig_atomic_t *stop,
                                   char *errstr, size_t errstr_size) {
        krib_pipeline_t *p = calloc(1, sizeof(*p)); /* latency histogram zeroed too */
        if (!p) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        p->conf = conf;
        p->stop = stop;
        p->cap = (size_t)conf->pipeline_batch_max_events;
        p->stash_cap = p->cap;
        p->msgs = calloc(p->cap, sizeof(*p->msgs));
        p->stash = calloc(p->stash_cap, sizeof(*p->stash));
        p->events = calloc(p->cap, sizeof(*p->events));
        p->ev_state = calloc(p->cap, 1);
        p->offsets = krib_offsets_new();
        p->reorder = krib_reorder_new((size_t)conf->reorder_max_entities);
        if (!p->msgs || !p->stash || !p->events || !p->ev_state || !p->offsets || !p->reorder) {
                snprintf(errstr, errstr_size, "out of memory");
                goto fail;
        }
        for (size_t i = 0; i < p->cap; i++)
                krib_event_reset(&p->events[i]);
        if (!(p->decode =
                      krib_schemas_new((krib_wire_t)conf->decode_format, conf->decode_schema_file,
                                       conf->decode_schema_dir, errstr, errstr_size)))
                goto fail;
        if (!(p->writer = krib_writer_new(conf, errstr, errstr_size)))
                goto fail;
        krib_writer_set_stop(p->writer, stop, conf->pipeline_shutdown_timeout_ms);
        krib_writer_set_tick(p->writer, on_writer_tick, p);
        if (*conf->dlq_topic && !(p->dlq = krib_dlq_new(conf, errstr, errstr_size)))
                goto fail;
        if (krib_routes_need_registry(conf->routes)) {
                if (!*conf->registry_url) {
                        snprintf(errstr, errstr_size,
                                 "a route reads debezium-avro but registry.url is not set");
                        goto fail;
                }
                if (!(p->registry = krib_registry_new(conf->registry_url, conf->registry_timeout_ms,
                                                      errstr, errstr_size)))
                        goto fail;
                /* A registry outage is handled like a Redis one: paused, polled. */
                krib_registry_set_wait(p->registry, stop, on_writer_tick, p);
        }
        if (!(p->sweeps = krib_sweeps_new(p->writer, conf->redis_sweep_count))) {
                snprintf(errstr, errstr_size, "out of memory");
                goto fail;
        }
        char sub[256];
        if (krib_writer_refresh(p->writer, sub, sizeof(sub)))
                krib_log_warn("pipeline",
                              "msg=\"redis not reachable yet, will retry\" error=\"%s\"", sub);
        if (!(p->metrics = krib_metrics_new(conf->metrics_address, (int)conf->metrics_port, errstr,
                                            errstr_size)))
                goto fail;
        krib_consumer_hooks_t hooks = {.on_revoke = on_revoke, .on_assign = on_assign, .opaque = p};
        if (!(p->consumer = krib_consumer_new(conf, &hooks, errstr, errstr_size)))
                goto fail;
        p->stats_at_us = krib_clock_mono_us();
        return p;
fail:
        krib_pipeline_destroy(p);
        return NULL;
}

static int reserve_ops(krib_pipeline_t *p, size_t n) {
        if (n <= p->op_cap)
                return 0;
        size_t cap = n > p->op_cap * 2 ? n : p->op_cap * 2, c;
        c = p->op_cap;
        if (krib_util_grow(&p->ops, &c, cap, sizeof(*p->ops)))
                return -1;
        c = p->op_cap;
        if (krib_util_grow(&p->op_part, &c, cap, sizeof(*p->op_part)))
                return -1;
        c = p->op_cap;
        if (krib_util_grow(&p->op_links, &c, cap, sizeof(*p->op_links)))
                return -1;
        c = p->op_cap;
        if (krib_util_grow(&p->op_status, &c, cap, sizeof(*p->op_status)))
                return -1;
        p->op_cap = cap;
        return 0;
}

static uint64_t key_hash(int32_t part, const char *s, size_t len) {
        uint64_t h = 1469598103934665603ULL ^ (uint32_t)part;
        for (size_t i = 0; i < len; i++) {
                h ^= (uint8_t)s[i];
                h *= 1099511628211ULL;
        }
        return h;
}

/* Index of the op for (partition, key), or -1 - slot where it would go. */
static int64_t table_find(const krib_pipeline_t *p, int32_t part, const char *key, size_t len) {
        size_t mask = p->table_cap - 1;
        for (size_t i = key_hash(part, key, len) & mask;; i = (i + 1) & mask) {
                int32_t o = p->table[i];
                if (o < 0)
                        return -1 - (int64_t)i;
                if (p->op_part[o] == part && p->ops[o].len == len &&
                    !memcmp(p->ops[o].key, key, len))
                        return o;
        }
}

/* Keeps the table at most half full for nops ops; rehashes when it grows. */
static int reserve_table(krib_pipeline_t *p, size_t nops) {
        size_t want = 1024;
        while (want < 2 * nops)
                want *= 2;
        if (want <= p->table_cap)
                return 0;
        int32_t *t = realloc(p->table, want * sizeof(*t));
        if (!t)
                return -1;
        p->table = t;
        p->table_cap = want;
        memset(p->table, 0xff, want * sizeof(*t));
        return 1; /* the caller rehashes the ops it has */
}

static void finish(krib_pipeline_t *p, rd_kafka_message_t *m) {
        if (krib_offsets_finish(p->offsets, rd_kafka_topic_name(m->rkt), m->partition, m->offset))
                krib_log_debug("pipeline", "msg=\"offset was not tracked\" " MSG_FMT, MSG_ARGS(m));
}

static void store_offsets(krib_pipeline_t *p) {
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
        size_t cursor = 0;
        const char *topic;
        int32_t part;
        int64_t off;
        while (krib_offsets_take_dirty(p->offsets, &cursor, &topic, &part, &off))
                rd_kafka_topic_partition_list_add(list, topic, part)->offset = off;
        if (list->cnt)
                krib_consumer_store(p->consumer, list);
        rd_kafka_topic_partition_list_destroy(list);
}

static const krib_route_t *route_of(krib_pipeline_t *p, const rd_kafka_topic_t *rkt) {
        for (size_t i = 0; i < p->nroute_cache; i++)
                if (p->route_cache[i].rkt == rkt)
                        return p->route_cache[i].route;
        const krib_route_t *r = krib_routes_match(p->conf->routes, rd_kafka_topic_name(rkt));
        if (p->nroute_cache < sizeof(p->route_cache) / sizeof(*p->route_cache)) {
                p->route_cache[p->nroute_cache].rkt = rkt;
                p->route_cache[p->nroute_cache++].route = r;
        }
        return r;
}

/* An event krib cannot apply: copied to the dead-letter topic when one is
 * set (finished once the broker acknowledged the copy), else logged and
 * finished. Returns -1 when it cannot even be queued. */
static int reject(krib_pipeline_t *p, size_t i, const char *stage, const char *cls,
                  const char *why) {
        rd_kafka_message_t *m = p->msgs[i];
        krib_log_error("pipeline",
                       "msg=\"rejected event\" stage=%s class=%s " MSG_FMT " error=\"%s\"%s", stage,
                       cls, MSG_ARGS(m), krib_log_esc(why, strlen(why)),
                       p->dlq ? " dead_letter=yes" : "");
        if (p->dlq) {
                if (krib_dlq_add(p->dlq, m, stage, cls, why))
                        return -1;
                p->ev_state[i] = EV_DLQ;
                return 0;
        }
        p->stats.rejected++;
        finish(p, m);
        return 0;
}

/* The dead-letter tick: a short flush is routine; a long one means Kafka
 * is failing and gets the writer's treatment (paused, consumer served). */
static void on_dlq_tick(void *opaque) {
        krib_pipeline_t *p = opaque;
        if (krib_clock_mono_us() - p->dlq_wait_from_us > 1000000)
                on_writer_tick(p);
        else if (p->consumer)
                publish(p, 0);
}

/* A second event names a key that already has an op in this batch. Offsets
 * of a partition arrive in order, but two entities (or a route whose key is
 * not the entity's) may share a key, so "later" is not always "newer": the
 * op must end as the sequential application of both would. Newer (or
 * unversioned): the later op replaces it. Older or equal: a later UPSERT is
 * stale for this key and dropped, a later DELETE still unlinks, fenced at
 * the newer version. Concurrent: the key is unlinked and fenced at the
 * merged vector (a synthetic event in ev's arena). -1 on OOM. */
static int coalesce(krib_pipeline_t *p, krib_wop_t *op, uint8_t kind, krib_event_t *ev) {
        const krib_event_t *prev = op->ev;
        krib_vv_order_t ord = KRIB_VV_NEWER;
        if (prev && prev->version_count && ev->version_count)
                ord = krib_vv_compare(ev->version, ev->version_count, prev->version,
                                      prev->version_count);
        if (ord == KRIB_VV_NEWER) {
                op->kind = kind;
                op->ev = ev;
                return 0;
        }
        p->stats.coalesced_older++;
        if (ord == KRIB_VV_CONCURRENT) {
                krib_event_t *syn = krib_event_alloc(ev, sizeof(*syn));
                if (!syn)
                        return -1;
                memset(syn, 0, sizeof(*syn));
                syn->entity = ev->entity;
                syn->action = KRIB_ACTION_DELETE;
                syn->ttl_ms = -1;
                if (krib_vv_merge(ev, prev->version, prev->version_count, ev->version,
                                  ev->version_count, &syn->version, &syn->version_count))
                        return -1;
                op->kind = KRIB_WOP_DELETE;
                op->ev = syn;
                return 0;
        }
        if (kind != KRIB_WOP_UPSERT)
                op->kind = KRIB_WOP_DELETE; /* keeps prev, the newer version */
        return 0;
}

/* Decodes and orders event i; adds its key operations. Returns -1 on OOM. */
static int admit(krib_pipeline_t *p, size_t i, size_t *nops, size_t *nlinks) {
        char err[512];
        rd_kafka_message_t *m = p->msgs[i];
        krib_event_t *ev = &p->events[i];
        const char *topic = rd_kafka_topic_name(m->rkt);
        p->ev_state[i] = EV_DONE;
        if (krib_offsets_track(p->offsets, topic, m->partition, m->offset))
                krib_log_warn("pipeline", "msg=\"offset below one already tracked\" " MSG_FMT,
                              MSG_ARGS(m));
        const krib_route_t *route = route_of(p, m->rkt);
        if (route) {
                krib_route_info_t info;
                krib_route_result_t rr =
                        krib_route_decode(route, p->registry, topic, m->key, m->key_len, m->payload,
                                          m->len, ev, &info, err, sizeof(err));
                if (rr == KRIB_ROUTE_STOPPED)
                        return -2; /* shutdown while the registry was down: not finished */
                if (rr == KRIB_ROUTE_SKIP) {
                        if (info.op == 't')
                                krib_log_warn("pipeline",
                                              "msg=\"truncate: no keys can be derived, nothing "
                                              "applied\" route=%s " MSG_FMT,
                                              krib_route_name(route), MSG_ARGS(m));
                        p->stats.skipped++;
                        finish(p, m);
                        return 0;
                }
                if (rr == KRIB_ROUTE_ERROR)
                        return reject(p, i, "route", "krib.RouteError", err);
        } else if (krib_schemas_decode(p->decode, m->payload, m->len, ev, err, sizeof(err))) {
                return reject(p, i, "decode", "krib.DecodeError", err);
        }
        const krib_limits_t lim = {(size_t)p->conf->limits_max_key_bytes,
                                   (size_t)p->conf->limits_max_keys_per_event,
                                   (size_t)p->conf->limits_max_origins};
        if (krib_validate_limits(ev, &lim, err, sizeof(err)))
                return reject(p, i, route ? "route" : "decode", "krib.LimitExceeded", err);
        if (ev->action == KRIB_ACTION_TAG) {
                /* Finished when the sweep is (sweep_done), between batches. */
                if (!ev->tag_count)
                        return reject(p, i, "route", "krib.InvalidEvent", "TAG event without tags");
                if (krib_sweeps_add(p->sweeps, ev->tags, ev->tag_count, topic, m->partition,
                                    m->offset))
                        return -1;
                p->ev_state[i] = EV_SWEEP;
                return 0;
        }
        krib_reorder_verdict_t v = krib_reorder_decide(p->reorder, topic, m->partition, ev);
        if (v == KRIB_REORDER_STALE && ev->action != KRIB_ACTION_DELETE) {
                p->stats.stale++;
                finish(p, m);
                return 0;
        }
        /* A DELETE older than its entity's newest event still unlinks its
         * keys: that newer event may not have named them all, and an unlink
         * costs a miss at worst. The fence keeps its newer version. */
        uint8_t kind;
        if (ev->action == KRIB_ACTION_UPSERT && v == KRIB_REORDER_APPLY)
                kind = KRIB_WOP_UPSERT;
        else if (ev->version_count &&
                 (p->conf->redis_fence == KRIB_FENCE_ALL || v == KRIB_REORDER_INVALIDATE))
                kind = KRIB_WOP_DELETE; /* fenced at the (merged) vector */
        else
                kind = KRIB_WOP_UNLINK;
        p->stats.invalidated += v == KRIB_REORDER_INVALIDATE;

        if (reserve_ops(p, *nops + ev->key_count) ||
            krib_util_grow(&p->links, &p->link_cap, *nlinks + ev->key_count, sizeof(*p->links)))
                return -1;
        int rc = reserve_table(p, *nops + ev->key_count);
        if (rc < 0)
                return -1;
        if (rc > 0)
                for (size_t o = 0; o < *nops; o++)
                        p->table[-1 - table_find(p, p->op_part[o], p->ops[o].key, p->ops[o].len)] =
                                (int32_t)o;
        for (size_t k = 0; k < ev->key_count; k++) {
                int64_t at = table_find(p, m->partition, ev->keys[k].s, ev->keys[k].len);
                int32_t o;
                if (at < 0) {
                        o = (int32_t)(*nops)++;
                        p->table[-1 - at] = o;
                        p->op_part[o] = m->partition;
                        p->op_links[o] = -1;
                        p->ops[o].key = ev->keys[k].s;
                        p->ops[o].len = ev->keys[k].len;
                } else {
                        o = (int32_t)at;
                        p->stats.coalesced++;
                        if (coalesce(p, &p->ops[o], kind, ev))
                                return -1;
                        goto linked;
                }
                p->ops[o].kind = kind;
                p->ops[o].ev = ev;
        linked:
                p->links[*nlinks].event = (uint32_t)i;
                p->links[*nlinks].next = p->op_links[o];
                p->op_links[o] = (int32_t)(*nlinks)++;
        }
        p->ev_state[i] = EV_LIVE;
        return 0;
}

/* PUBLISH/XADD for applied events whose route asks for it, once their keys
 * are acknowledged; part of the event's work (its offset waits for them).
 * Reuses the op arrays. Returns -1 when shutdown cut it short. */
static int fan_out(krib_pipeline_t *p) {
        size_t nf = 0;
        for (size_t i = 0; i < p->n; i++)
                if (p->ev_state[i] == EV_LIVE)
                        nf += (p->events[i].channel.s != NULL) + (p->events[i].stream.s != NULL);
        if (!nf)
                return 0;
        if (reserve_ops(p, nf))
                return -1;
        size_t o = 0;
        for (size_t i = 0; i < p->n; i++) {
                const krib_event_t *ev = &p->events[i];
                if (p->ev_state[i] != EV_LIVE)
                        continue;
                const krib_str_t *target[] = {&ev->channel, &ev->stream};
                for (int t = 0; t < 2; t++)
                        if (target[t]->s) {
                                p->ops[o] = (krib_wop_t){target[t]->s, target[t]->len,
                                                         t ? KRIB_WOP_XADD : KRIB_WOP_PUBLISH, ev};
                                p->op_links[o++] = (int32_t)i;
                        }
        }
        int rc = krib_writer_apply(p->writer, p->ops, nf, p->op_status);
        for (o = 0; o < nf; o++) {
                uint8_t *es = &p->ev_state[p->op_links[o]];
                if (p->op_status[o] == KRIB_WOP_PENDING)
                        *es = EV_PENDING;
                else if (p->op_status[o] == KRIB_WOP_FAILED && *es != EV_PENDING)
                        *es = EV_FAILED;
                else if (p->op_status[o] == KRIB_WOP_OK)
                        p->stats.fanned_out++;
        }
        return rc;
}

/* Decodes, orders, writes and finishes p->msgs[0..n). Returns -1 when
 * shutdown cut the Redis work short (finished events were still stored). */
static int process_batch(krib_pipeline_t *p) {
        size_t nops = 0, nlinks = 0;
        if (p->table_cap)
                memset(p->table, 0xff, p->table_cap * sizeof(*p->table));
        /* Admission may wait for the schema registry: a revoke meanwhile
         * must abandon the batch, not process it from inside itself. */
        p->in_write = 1;
        int stopped = 0;
        for (size_t i = 0; i < p->n; i++) {
                int a = admit(p, i, &nops, &nlinks);
                if (a == -2) {
                        /* Shutdown while the schema registry was down: this
                         * event and the rest stay unfinished (re-read later). */
                        for (size_t k = i; k < p->n; k++)
                                p->ev_state[k] = EV_PENDING;
                        stopped = 1;
                        break;
                }
                if (a) {
                        p->in_write = 0;
                        krib_log_error("pipeline", "msg=\"out of memory\"");
                        return -1;
                }
        }

        int64_t t0 = krib_clock_mono_us();
        int rc = nops ? krib_writer_apply(p->writer, p->ops, nops, p->op_status) : 0;
        if (stopped)
                rc = -1;
        p->stats.write_us += (uint64_t)(krib_clock_mono_us() - t0);
        p->in_write = 0;

        for (size_t o = 0; o < nops; o++) {
                uint8_t st = p->op_status[o];
                p->stats.fence_stale += st == KRIB_WOP_STALE;
                p->stats.fence_invalidated += st == KRIB_WOP_INVALIDATED;
                p->stats.keys_done += st != KRIB_WOP_PENDING && st != KRIB_WOP_FAILED;
                for (int32_t l = p->op_links[o]; l >= 0; l = p->links[l].next) {
                        uint8_t *es = &p->ev_state[p->links[l].event];
                        if (st == KRIB_WOP_PENDING)
                                *es = EV_PENDING;
                        else if (st == KRIB_WOP_FAILED && *es != EV_PENDING)
                                *es = EV_FAILED;
                }
        }
        if (rc == 0 && fan_out(p))
                rc = -1;
        int64_t acked_ms = krib_clock_wall_ms();
        for (size_t i = 0; i < p->n; i++) {
                rd_kafka_message_t *m = p->msgs[i];
                if (p->ev_state[i] == EV_LIVE && p->events[i].defect.s) {
                        /* Its keys are invalidated; the rest of it could not
                         * be applied: dead-lettered with the reason. */
                        if (reject(p, i, "route", "krib.RouteError", p->events[i].defect.s))
                                krib_log_error("pipeline", "msg=\"out of memory\"");
                } else if (p->ev_state[i] == EV_LIVE) {
                        p->stats.applied++;
                        krib_hist_add_since(&p->latency, acked_ms, p->events[i].ts_ms);
                        finish(p, m);
                } else if (p->ev_state[i] == EV_FAILED && p->dlq) {
                        char why[300];
                        snprintf(why, sizeof(why),
                                 "redis refused a key of entity %s for good (see the writer's "
                                 "log line)",
                                 p->events[i].entity.s);
                        if (reject(p, i, "write", "krib.RedisError", why))
                                krib_log_error("pipeline", "msg=\"out of memory\"");
                } else if (p->ev_state[i] == EV_FAILED) {
                        krib_log_error(
                                "pipeline",
                                "msg=\"redis refused event\" stage=write " MSG_FMT " entity=\"%s\"",
                                MSG_ARGS(m),
                                krib_log_esc(p->events[i].entity.s, p->events[i].entity.len));
                        p->stats.failed++;
                        finish(p, m);
                }
                /* EV_DONE was finished on admission; EV_PENDING was cut short
                 * by shutdown and stays unfinished. Offsets of partitions
                 * revoked meanwhile are no longer tracked: finish() ignores
                 * them and nothing is stored for them. */
        }
        /* Dead letters count as finished only once the broker has them. */
        if (p->dlq) {
                p->dlq_wait_from_us = krib_clock_mono_us();
                p->in_write = 1;
                int ok = krib_dlq_flush(p->dlq, p->stop, on_dlq_tick, p) == 0;
                p->in_write = 0;
                for (size_t i = 0; i < p->n; i++)
                        if (p->ev_state[i] == EV_DLQ && ok) {
                                p->stats.dead_lettered++;
                                finish(p, p->msgs[i]);
                        }
                if (!ok)
                        rc = -1;
        }
        store_offsets(p);
        for (size_t i = 0; i < p->n; i++) {
                rd_kafka_message_destroy(p->msgs[i]);
                p->msgs[i] = NULL;
        }
        p->n = 0;
        p->bytes = 0;
        p->stats.batches++;
        if (p->paused && rc == 0) {
                p->paused = 0;
                set_paused(p, NULL, 0);
                krib_log_info("pipeline", "msg=\"redis recovered: partitions resumed\"");
        }
        return rc;
}

static void log_stats(krib_pipeline_t *p, int force) {
        int64_t now = krib_clock_mono_us();
        int64_t every = p->conf->log_stats_interval_ms * 1000;
        if (!force && (!every || now - p->stats_at_us < every))
                return;
        p->stats_at_us = now;
        const krib_writer_stats_t *w = krib_writer_stats(p->writer);
        const krib_reorder_stats_t *r = krib_reorder_stats(p->reorder);
        const krib_pipeline_stats_t *s = &p->stats;
        krib_log_info(
                "stats",
                "consumed=%" PRIu64 " applied=%" PRIu64 " stale=%" PRIu64 " rejected=%" PRIu64
                " skipped=%" PRIu64 " dead_lettered=%" PRIu64 " failed=%" PRIu64
                " abandoned=%" PRIu64 " in_flight=%zu keys_done=%" PRIu64 " coalesced=%" PRIu64
                " fence_stale=%" PRIu64 " invalidated=%" PRIu64 " fence_invalidated=%" PRIu64
                " entities=%zu evictions=%" PRIu64 " redis_round_trips=%" PRIu64
                " redis_commands=%" PRIu64 " keys_per_round_trip=%.1f moved=%" PRIu64
                " ask=%" PRIu64 " retries=%" PRIu64 " reconnects=%" PRIu64 " pauses=%" PRIu64
                " rebalances=%lu"
                " latency_p50_ms=%" PRId64 " latency_p99_ms=%" PRId64 " latency_max_ms=%" PRId64
                " poll_ms=%" PRIu64 " write_ms=%" PRIu64 " batches=%" PRIu64,
                s->consumed, s->applied, s->stale, s->rejected, s->skipped, s->dead_lettered,
                s->failed, s->abandoned, krib_offsets_in_flight(p->offsets), s->keys_done,
                s->coalesced, s->fence_stale, s->invalidated, s->fence_invalidated, r->entities,
                r->evictions, w->round_trips, w->commands,
                w->round_trips ? (double)w->keys / (double)w->round_trips : 0.0, w->moved, w->ask,
                w->retries, w->reconnects, s->pauses, krib_consumer_rebalances(p->consumer),
                krib_hist_quantile(&p->latency, 0.5), krib_hist_quantile(&p->latency, 0.99),
                p->latency.max, s->poll_us / 1000, s->write_us / 1000, s->batches);
}

static void take(krib_pipeline_t *p, rd_kafka_message_t *m) {
        p->msgs[p->n++] = m;
        p->bytes += m->len;
        p->stats.consumed++;
}

static void sweep_done(void *opaque, const char *topic, int32_t partition, int64_t offset) {
        krib_pipeline_t *p = opaque;
        p->stats.applied++;
        if (krib_offsets_finish(p->offsets, topic, partition, offset))
                krib_log_debug("pipeline", "msg=\"offset was not tracked\" topic=%s", topic);
        store_offsets(p);
}

/* Between batches: one bounded step of every tag sweep. */
static void step_sweeps(krib_pipeline_t *p) {
        if (!krib_sweeps_active(p->sweeps))
                return;
        p->in_write = 1;
        if (krib_sweeps_step(p->sweeps, sweep_done, p))
                p->interrupted = 1;
        p->in_write = 0;
        p->stats.sweep_keys = krib_sweeps_keys(p->sweeps);
        p->stats.sweep_keys_failed = krib_sweeps_keys_failed(p->sweeps);
        p->stats.sweeps_incomplete = krib_sweeps_incomplete(p->sweeps);
        p->stats.sweeps_active = krib_sweeps_active(p->sweeps);
}

int krib_pipeline_run(krib_pipeline_t *p) {
        const size_t max_bytes = (size_t)p->conf->pipeline_batch_max_bytes;
        while (!*p->stop && !p->interrupted) {
                /* Messages stashed during the last write come first. */
                size_t s = 0;
                for (; s < p->nstash && p->n < p->cap; s++)
                        take(p, p->stash[s]);
                memmove(p->stash, p->stash + s, (p->nstash - s) * sizeof(*p->stash));
                p->nstash -= s;

                int64_t deadline = krib_clock_mono_us() + p->conf->pipeline_linger_ms * 1000;
                /* Gather a batch. A rebalance inside poll may process and
                 * empty it (on_revoke), so p->n is re-read every time. */
                while (p->n < p->cap && p->bytes < max_bytes && !*p->stop) {
                        /* Idle with sweeps to do: poll briefly, then step them. */
                        int sweeping = krib_sweeps_active(p->sweeps) > 0;
                        int64_t left = p->n       ? (deadline - krib_clock_mono_us()) / 1000
                                       : sweeping ? 1
                                                  : 100;
                        if (left < 0)
                                break;
                        int64_t t0 = krib_clock_mono_us();
                        rd_kafka_message_t *m = krib_consumer_poll(p->consumer, (int)left);
                        p->stats.poll_us += (uint64_t)(krib_clock_mono_us() - t0);
                        if (!m) {
                                if (p->n || sweeping)
                                        break;
                                log_stats(p, 0);
                                publish(p, 0);
                                continue;
                        }
                        if (m->err) {
                                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                        krib_log_warn("consumer",
                                                      "msg=\"consume error\" error=\"%s\"",
                                                      rd_kafka_message_errstr(m));
                                rd_kafka_message_destroy(m);
                                continue;
                        }
                        if (!p->n)
                                deadline =
                                        krib_clock_mono_us() + p->conf->pipeline_linger_ms * 1000;
                        take(p, m);
                }
                if (p->n && process_batch(p))
                        p->interrupted = 1;
                if (!p->interrupted)
                        step_sweeps(p);
                log_stats(p, 0);
                publish(p, 0);
        }
        /* Events polled after the stop signal still get their drain window. */
        if (p->n && !p->interrupted && process_batch(p))
                p->interrupted = 1;
        log_stats(p, 1);
        if (p->interrupted)
                krib_log_warn("pipeline",
                              "msg=\"shutdown deadline passed with unacknowledged work; its "
                              "offsets were not stored\" in_flight=%zu",
                              krib_offsets_in_flight(p->offsets));
        return p->interrupted ? -1 : 0;
}

const krib_pipeline_stats_t *krib_pipeline_stats(const krib_pipeline_t *p) {
        return &p->stats;
}

void krib_pipeline_destroy(krib_pipeline_t *p) {
        if (!p)
                return;
        /* An unfinished remainder must not be stored, only released. */
        for (size_t i = 0; i < p->n; i++)
                rd_kafka_message_destroy(p->msgs[i]);
        p->n = 0;
        for (size_t i = 0; i < p->nstash; i++)
                rd_kafka_message_destroy(p->stash[i]);
        p->nstash = 0;
        krib_consumer_close(p->consumer);
        krib_metrics_destroy(p->metrics);
        krib_writer_destroy(p->writer);
        krib_dlq_destroy(p->dlq);
        krib_sweeps_destroy(p->sweeps);
        krib_registry_destroy(p->registry);
        krib_schemas_destroy(p->decode);
        krib_offsets_destroy(p->offsets);
        krib_reorder_destroy(p->reorder);
        if (p->events)
                for (size_t i = 0; i < p->cap; i++)
                        krib_event_destroy(&p->events[i]);
        free(p->events);
        free(p->msgs);
        free(p->stash);
        free(p->ev_state);
        free(p->ops);
        free(p->op_part);
        free(p->op_links);
        free(p->op_status);
        free(p->links);
        free(p->table);
        free(p);
}
