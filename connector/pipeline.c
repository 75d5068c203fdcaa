#include "pipeline.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "consumer.h"
#include "decode.h"
#include "dispatch.h"
#include "schemas.h"
#include "event.h"
#include "hist.h"
#include "log.h"
#include "metrics.h"
#include "offsets.h"
#include "dlq.h"
#include "health.h"
#include "registry.h"
#include "sweep.h"
#include "reorder.h"
#include "slot.h"
#include "route.h"
#include "util.h"
#include "validate.h"
#include "writer.h"

typedef struct {
        uint32_t event;
        int32_t next;
} link_t;

/* An event's state inside its batch. DONE: finished (or never to be);
 * LIVE: its Redis work is in flight; the others wait for a dead letter's
 * acknowledgement, a sweep, or were cut short. */
enum {
        EV_DONE = 0,
        EV_LIVE = 1,
        EV_FAILED = 2,
        EV_PENDING = 3,
        EV_DLQ = 4,
        EV_SWEEP = 5,
        EV_ABANDONED = 6
};

/* A batch's life: filling (OPEN), admission waiting for the schema registry
 * (ADMIT), its keys in flight (KEYS), then its notifications (FANOUT), then
 * its dead letters (DLQ); FREE again once its offsets are stored. */
enum { B_FREE = 0, B_OPEN, B_ADMIT, B_KEYS, B_FANOUT, B_DLQ };

/* Batch slots: their arrays grow with use (the in-flight bound, not the
 * slot count, limits memory). Many, so that batches stuck on one frozen
 * master (each batch has keys on every master) leave slots for seconds of
 * the healthy masters' work; below half free, batches linger longer
 * (dispatch.h) to stretch what is left. */
#define BATCHES_MAX 512

typedef struct {
        int state;
        uint64_t seq;
        size_t n, bytes, admitted;
        size_t acap; /* events allocated: grows with use, up to the batch size */
        int64_t opened_us;
        /* The latency breakdown: when each message was taken from the
         * consumer; when admission (decode, reorder, coalescing) began and
         * when the keys went to the writer. Monotonic µs. */
        int64_t *taken_us;
        int64_t admit_us, submit_us;
        rd_kafka_message_t **msgs;
        krib_event_t *events;
        uint8_t *ev_state;
        /* Per event: its keys' ops not answered yet. An event is finished as
         * soon as its own keys are (finish_answered), not when the batch's
         * last key is: one slow master delays only the events it owns. */
        uint32_t *ev_left;

        /* One op per (partition, key); every event that named the key hangs
         * off it, so the newest op's acknowledgement also finishes the
         * events it superseded. */
        krib_wop_t *ops;
        int32_t *op_part;
        int32_t *op_links;
        uint8_t *op_status;
        uint8_t *op_done; /* its answer was handed to its events */
        size_t op_cap, nops, nlinks;
        size_t last_left; /* the writer's unanswered ops at the last look */
        link_t *links;
        size_t link_cap;
        int32_t *table; /* open addressing over ops by (partition, key); -1 empty */
        size_t table_cap;
        int job;         /* writer job of the keys or the fan-out; -1 none */
        size_t dlq_left; /* dead letters not yet acknowledged */
} batch_t;

struct krib_pipeline {
        const krib_conf_t *conf;
        volatile sig_atomic_t *stop;
        krib_consumer_t *consumer;
        krib_schemas_t *decode;
        krib_dlq_t *dlq; /* NULL: rejected events are logged and skipped */
        krib_sweeps_t *sweeps;
        krib_registry_t *registry; /* debezium-avro routes */
        /* Route of each topic seen (rd_kafka_topic_t pointers are stable). */
        struct {
                const rd_kafka_topic_t *rkt;
                const krib_route_t *route;
        } route_cache[64];
        size_t nroute_cache;
        krib_writer_t *writer;
        krib_offsets_t *offsets;
        krib_reorder_t *reorder;

        batch_t batches[BATCHES_MAX];
        size_t nbatches, cap; /* batch slots in use; events per batch */
        batch_t *open;        /* the batch being filled, or NULL */
        uint64_t seq;
        size_t inflight_events, inflight_bytes; /* read, batch not yet FREE */
        int kafka_more; /* the consumer queue may hold more than was taken */

        /* Messages polled while at the in-flight bound (the consumer is
         * still served then, for rebalances); they open the next batch. */
        rd_kafka_message_t **stash;
        size_t nstash, stash_cap;

        /* A revoke being acted on: until this moment its partitions' work
         * in flight may still finish; then the rest is given up. */
        int64_t revoke_deadline_us;

        krib_hist_t latency; /* event ts_ms -> Redis acknowledgement, ms */
        /* Where that time goes, per applied event: Kafka (message timestamp
         * -> taken from the consumer: producer linger, broker, fetch wait),
         * queue (taken -> its batch's admission: linger, batch slots, the
         * in-flight bound), admit (the batch's decode/reorder/coalescing,
         * µs) and redis (keys submitted -> every reply in). */
        krib_hist_t lat_kafka, lat_queue, lat_admit_us, lat_redis;
        krib_metrics_hist_t admit_s;   /* admit again, for /metrics (past 60 ms too) */
        krib_metrics_hist_t loop_turn; /* a turn's time away from poll() */
        FILE *trace;                   /* pipeline.latency_trace_file, or NULL */
        int64_t late_logged_ms;        /* debug: a message taken >250 ms after its timestamp */
        krib_metrics_t *metrics;
        krib_writer_node_t *nodes; /* scratch for the snapshot */
        size_t nodes_cap;
        int64_t published_at_ms;
        int assigned, joined;

        int paused;
        /* Redis progress: keys acknowledged, and when that count last moved
         * (or the writer had nothing to do). */
        uint64_t keys_seen;
        int64_t progress_at_us;
        int stalled;            /* no answer for REDIS_STALL_US and no master usable */
        int64_t bound_since_us; /* at the in-flight bound since; 0 not */
        int interrupted;
        int halted;      /* errors.tolerance=none met a record it cannot apply */
        int no_store;    /* an offset could not be tracked: store nothing more */
        int revoke_seen; /* partitions of the revoke being handled, at its last look */
        /* Redis health (INFO poller) and the memory guard. */
        krib_health_t *health;
        krib_health_master_t *hm;
        size_t hm_cap;
        int nhm;
        char (*maddrs)[KRIB_ADDR_MAX];
        int *mslots;
        size_t maddrs_cap;
        int64_t masters_at_us, health_at_us;
        int guarded;                    /* a master is over redis.memory_guard_percent */
        krib_metrics_reject_t *rejects; /* by topic, route, class */
        size_t nrejects, rejects_cap;
        krib_pipeline_stats_t stats;
        int64_t stats_at_us;
        struct pollfd *pfds; /* the loop's poll set, grown to every socket */
        size_t pfds_cap;
};

#define MSG_FMT     "topic=%s partition=%" PRId32 " offset=%" PRId64
#define MSG_ARGS(m) rd_kafka_topic_name((m)->rkt), (m)->partition, (m)->offset

/* How long a revoke lets the revoked partitions' work in flight finish
 * (the rest of the group waits meanwhile); what is left is given up. */
#define REVOKE_GRACE_US 500000

/* A loop turn busy this long is logged with its stages. */
#define SLOW_TURN_US 200000

/* Redis without a single acknowledgement this long, with work waiting,
 * counts as failing: consumption pauses. */
#define REDIS_STALL_US 1000000

/* At the in-flight bound this long, partitions are paused (shorter waits
 * only stop reading: pausing drops librdkafka's prefetch). */
#define BOUND_PAUSE_US 1000000

static int in_parts(const rd_kafka_message_t *m, const rd_kafka_topic_partition_list_t *parts) {
        for (int i = 0; i < parts->cnt; i++)
                if (parts->elems[i].partition == m->partition &&
                    !strcmp(parts->elems[i].topic, rd_kafka_topic_name(m->rkt)))
                        return 1;
        return 0;
}

/* Hands the metrics thread a fresh snapshot, at most every 250 ms. */
/* Key counts as Redis answers them (a batch waiting for one failing master
 * still shows the others' progress). */
static void key_stats(krib_pipeline_t *p) {
        const krib_writer_stats_t *ws = krib_writer_stats(p->writer);
        uint64_t sweep = krib_sweeps_keys(p->sweeps) + krib_sweeps_keys_failed(p->sweeps);
        p->stats.keys_done = ws->keys > sweep ? ws->keys - sweep : 0;
        p->stats.fence_stale = ws->fence_stale;
        p->stats.fence_invalidated = ws->fence_concurrent;
}

/* Tells the poller which masters exist (every health interval), reads its
 * figures back and judges the memory guard (every publish). */
static void health_step(krib_pipeline_t *p) {
        if (!p->health)
                return;
        int64_t now = krib_clock_mono_us();
        if (now - p->masters_at_us >= p->conf->redis_health_interval_ms * 1000) {
                p->masters_at_us = now;
                int n = krib_writer_master_slots(p->writer, NULL, NULL, 0);
                if (n > 0 && (size_t)n > p->maddrs_cap) {
                        size_t c1 = p->maddrs_cap, c2 = p->maddrs_cap;
                        if (krib_util_grow(&p->maddrs, &c1, (size_t)n, sizeof(*p->maddrs)) ||
                            krib_util_grow(&p->mslots, &c2, (size_t)n, sizeof(*p->mslots)))
                                n = -1;
                        else
                                p->maddrs_cap = c1 < c2 ? c1 : c2;
                }
                if (n > 0)
                        n = krib_writer_master_slots(p->writer, p->maddrs, p->mslots, n);
                if (n > 0)
                        krib_health_set_masters(p->health, (const char(*)[KRIB_ADDR_MAX])p->maddrs,
                                                p->mslots, (size_t)n);
        }
        int n = krib_health_snapshot(p->health, &p->hm, &p->hm_cap);
        p->nhm = n > 0 ? n : 0;
        int g = krib_health_guard(p->hm, (size_t)p->nhm, p->conf->redis_memory_guard_percent);
        if (g >= 0 && !p->guarded)
                krib_log_warn("pipeline",
                              "msg=\"memory guard: a master is above redis.memory_guard_percent "
                              "of maxmemory under a policy that answers OOM; consumption "
                              "pauses\" node=%s used_memory=%" PRIu64 " maxmemory=%" PRIu64
                              " policy=%s percent=%" PRId64,
                              p->hm[g].addr, p->hm[g].used_memory, p->hm[g].maxmemory,
                              p->hm[g].policy, p->conf->redis_memory_guard_percent);
        else if (g < 0 && p->guarded)
                krib_log_info("pipeline", "msg=\"memory guard released\"");
        if (g >= 0 && !p->guarded)
                p->stats.guard_pauses++;
        p->guarded = g >= 0;
}

static void publish(krib_pipeline_t *p, int force) {
        key_stats(p);
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
        s.in_flight = krib_offsets_in_flight(p->offsets) + (p->open ? p->open->n : 0) + p->nstash;
        s.assigned_partitions = p->assigned;
        s.paused = p->paused;
        s.joined = p->joined;
        s.redis_ok = s.writer.healthy;
        s.rebalances = p->consumer ? krib_consumer_rebalances(p->consumer) : 0;
        krib_metrics_latency(&s, &p->latency);
        krib_metrics_hist_fill(&s.stage[KRIB_STAGE_KAFKA], &p->lat_kafka, 1e-3);
        krib_metrics_hist_fill(&s.stage[KRIB_STAGE_QUEUE], &p->lat_queue, 1e-3);
        s.stage[KRIB_STAGE_ADMIT] = p->admit_s;
        krib_metrics_hist_fill(&s.stage[KRIB_STAGE_REDIS], &p->lat_redis, 1e-3);
        s.loop_turn = p->loop_turn;
        if (p->consumer)
                s.nlag = krib_consumer_lag(p->consumer, &s.lag);
        int nn = krib_writer_nodes(p->writer, &p->nodes, &p->nodes_cap);
        s.nodes = p->nodes;
        s.nnodes = nn > 0 ? nn : 0;
        s.masters = p->hm;
        s.nmasters = p->nhm;
        s.guarded = p->guarded;
        s.rejects = p->rejects;
        s.nrejects = (int)p->nrejects;
        s.dlq_failures = krib_dlq_failures(p->dlq);
        s.loop_at_ms = now;
        krib_metrics_publish(p->metrics, &s);
}

/* Inside the rebalance callback: only counted (and a paused consumer's
 * new partitions join paused). */
static void on_assign(void *opaque, const rd_kafka_topic_partition_list_t *parts) {
        krib_pipeline_t *p = opaque;
        p->assigned += parts->cnt;
        p->joined = 1;
        if (p->paused)
                krib_consumer_pause(p->consumer, parts, 1);
}

static void forget_partitions(krib_pipeline_t *p, const rd_kafka_topic_partition_list_t *parts) {
        for (int i = 0; i < parts->cnt; i++) {
                krib_offsets_forget(p->offsets, parts->elems[i].topic, parts->elems[i].partition);
                krib_reorder_forget(p->reorder, parts->elems[i].topic, parts->elems[i].partition);
                krib_sweeps_drop(p->sweeps, parts->elems[i].topic, parts->elems[i].partition);
        }
        p->assigned -= parts->cnt;
        if (p->assigned < 0)
                p->assigned = 0;
}

/* Only while closing (see consumer.h): everything was drained or given up
 * already; what remains of these partitions is forgotten. */
static void on_revoke_closing(void *opaque, const rd_kafka_topic_partition_list_t *parts,
                              int lost) {
        (void)lost;
        forget_partitions(opaque, parts);
}

/* The free slot with the most room: a few slots carry the steady state and
 * keep their decoded events' memory, the others stay small. */
static batch_t *batch_new(krib_pipeline_t *p) {
        batch_t *best = NULL;
        for (size_t i = 0; i < p->nbatches; i++) {
                batch_t *b = &p->batches[i];
                if (b->state == B_FREE && (!best || b->acap > best->acap))
                        best = b;
        }
        if (!best)
                return NULL;
        best->state = B_OPEN;
        best->seq = ++p->seq;
        best->n = best->bytes = best->admitted = best->nops = best->nlinks = best->dlq_left = 0;
        best->job = -1;
        return best;
}

/* Room for one more message. Only while the batch is open: nothing points
 * into its events yet. */
static int batch_grow(batch_t *b, size_t cap) {
        if (b->n < b->acap)
                return 0;
        size_t want = b->acap ? b->acap * 2 : 64;
        if (want > cap)
                want = cap;
        if (want <= b->acap)
                return -1;
        rd_kafka_message_t **m = realloc(b->msgs, want * sizeof(*m));
        if (m)
                b->msgs = m;
        krib_event_t *e = m ? realloc(b->events, want * sizeof(*e)) : NULL;
        if (e)
                b->events = e;
        uint8_t *st = e ? realloc(b->ev_state, want) : NULL;
        if (st)
                b->ev_state = st;
        int64_t *tk = st ? realloc(b->taken_us, want * sizeof(*tk)) : NULL;
        if (tk)
                b->taken_us = tk;
        uint32_t *el = tk ? realloc(b->ev_left, want * sizeof(*el)) : NULL;
        if (!el)
                return -1;
        b->ev_left = el;
        for (size_t i = b->acap; i < want; i++) {
                memset(&b->events[i], 0, sizeof(b->events[i]));
                krib_event_reset(&b->events[i]);
        }
        b->acap = want;
        return 0;
}

/* Gives back what a released batch holds beyond a small start. */
static void batch_shrink(batch_t *b) {
        const size_t keep = 64;
        if (b->acap <= keep)
                return;
        for (size_t i = keep; i < b->acap; i++)
                krib_event_destroy(&b->events[i]);
        b->acap = keep; /* the arrays stay allocated: reused when it grows again */
}

static void batch_free(batch_t *b) {
        for (size_t i = 0; i < b->n; i++)
                if (b->msgs[i])
                        rd_kafka_message_destroy(b->msgs[i]);
        if (b->events)
                for (size_t i = 0; i < b->acap; i++)
                        krib_event_destroy(&b->events[i]);
        free(b->events);
        free(b->msgs);
        free(b->ev_state);
        free(b->taken_us);
        free(b->ev_left);
        free(b->op_done);
        free(b->ops);
        free(b->op_part);
        free(b->op_links);
        free(b->op_status);
        free(b->links);
        free(b->table);
}

/* Called by the writer between blocking control exchanges (an outage can
 * hold one loop turn for many command timeouts): /metrics and /healthz
 * keep up meanwhile. */
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
        /* Batch slots grow their arrays with use: the in-flight bound, not
         * the slot count, limits memory. */
        p->nbatches = BATCHES_MAX;
        p->stash_cap = p->cap;
        p->stash = calloc(p->stash_cap, sizeof(*p->stash));
        p->offsets = krib_offsets_new();
        p->reorder = krib_reorder_new((size_t)conf->reorder_max_entities);
        if (!p->stash || !p->offsets || !p->reorder) {
                snprintf(errstr, errstr_size, "out of memory");
                goto fail;
        }
        for (size_t i = 0; i < p->nbatches; i++)
                p->batches[i].job = -1;
        if (*conf->pipeline_latency_trace_file &&
            !(p->trace = fopen(conf->pipeline_latency_trace_file, "a"))) {
                snprintf(errstr, errstr_size, "pipeline.latency_trace_file: %s: cannot open",
                         conf->pipeline_latency_trace_file);
                goto fail;
        }
        if (!(p->decode =
                      krib_schemas_new((krib_wire_t)conf->decode_format, conf->decode_schema_file,
                                       conf->decode_schema_dir, errstr, errstr_size)))
                goto fail;
        if (!(p->writer = krib_writer_new(conf, errstr, errstr_size)))
                goto fail;
        if (*conf->dlq_topic && !(p->dlq = krib_dlq_new(conf, errstr, errstr_size)))
                goto fail;
        if (krib_routes_need_registry(conf->routes)) { /* registry.url: checked by conf */
                if (!(p->registry = krib_registry_new(conf->registry_url, conf->registry_timeout_ms,
                                                      errstr, errstr_size)))
                        goto fail;
        }
        errstr[0] = '\0';
        if (!(p->health = krib_health_new(conf, errstr, errstr_size)) && errstr[0])
                goto fail;
        if (!(p->sweeps = krib_sweeps_new(p->writer, conf->redis_sweep_count,
                                          conf->redis_fence == KRIB_FENCE_VERSIONED))) {
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
        krib_consumer_hooks_t hooks = {
                .on_revoke = on_revoke_closing, .on_assign = on_assign, .opaque = p};
        if (!(p->consumer = krib_consumer_new(conf, &hooks, errstr, errstr_size)))
                goto fail;
        p->stats_at_us = p->progress_at_us = krib_clock_mono_us();
        return p;
fail:
        krib_pipeline_destroy(p);
        return NULL;
}

static int reserve_ops(batch_t *b, size_t n) {
        if (n <= b->op_cap)
                return 0;
        size_t cap = n > b->op_cap * 2 ? n : b->op_cap * 2, c;
        c = b->op_cap;
        if (krib_util_grow(&b->ops, &c, cap, sizeof(*b->ops)))
                return -1;
        c = b->op_cap;
        if (krib_util_grow(&b->op_part, &c, cap, sizeof(*b->op_part)))
                return -1;
        c = b->op_cap;
        if (krib_util_grow(&b->op_links, &c, cap, sizeof(*b->op_links)))
                return -1;
        c = b->op_cap;
        if (krib_util_grow(&b->op_status, &c, cap, sizeof(*b->op_status)))
                return -1;
        c = b->op_cap;
        if (krib_util_grow(&b->op_done, &c, cap, sizeof(*b->op_done)))
                return -1;
        b->op_cap = cap;
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
static int64_t table_find(const batch_t *b, int32_t part, const char *key, size_t len) {
        size_t mask = b->table_cap - 1;
        for (size_t i = key_hash(part, key, len) & mask;; i = (i + 1) & mask) {
                int32_t o = b->table[i];
                if (o < 0)
                        return -1 - (int64_t)i;
                if (b->op_part[o] == part && b->ops[o].len == len &&
                    !memcmp(b->ops[o].key, key, len))
                        return o;
        }
}

/* Keeps the table at most half full for nops ops; rehashes when it grows. */
static int reserve_table(batch_t *b, size_t nops) {
        size_t want = 1024;
        while (want < 2 * nops)
                want *= 2;
        if (want <= b->table_cap)
                return 0;
        int32_t *t = realloc(b->table, want * sizeof(*t));
        if (!t)
                return -1;
        b->table = t;
        b->table_cap = want;
        memset(b->table, 0xff, want * sizeof(*t));
        return 1; /* the caller rehashes the ops it has */
}

static void finish(krib_pipeline_t *p, rd_kafka_message_t *m) {

        if (krib_offsets_finish(p->offsets, rd_kafka_topic_name(m->rkt), m->partition, m->offset))
                krib_log_debug("pipeline", "msg=\"offset was not tracked\" " MSG_FMT, MSG_ARGS(m));
}

static void store_offsets(krib_pipeline_t *p) {
        if (p->no_store)
                return;
        krib_consumer_store_finished(p->consumer, p->offsets);
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

/* Counts a rejected record for /metrics under its topic, route and class. */
static void count_reject(krib_pipeline_t *p, const rd_kafka_message_t *m, const char *cls) {
        const char *topic = rd_kafka_topic_name(m->rkt);
        const krib_route_t *r = route_of(p, m->rkt);
        const char *route = r ? krib_route_name(r) : "";
        int dlq = p->dlq != NULL;
        for (size_t k = 0; k < p->nrejects; k++) {
                krib_metrics_reject_t *x = &p->rejects[k];
                if (x->dlq == dlq && !strcmp(x->cls, cls) && !strcmp(x->route, route) &&
                    !strcmp(x->topic, topic)) {
                        x->n++;
                        return;
                }
        }
        if (krib_util_grow(&p->rejects, &p->rejects_cap, p->nrejects + 1, sizeof(*p->rejects)))
                return; /* the log line still says it */
        krib_metrics_reject_t *x = &p->rejects[p->nrejects++];
        memset(x, 0, sizeof(*x));
        snprintf(x->topic, sizeof(x->topic), "%s", topic);
        snprintf(x->route, sizeof(x->route), "%s", route);
        snprintf(x->cls, sizeof(x->cls), "%s", cls);
        x->dlq = dlq;
        x->n = 1;
}

/* An event krib cannot apply: copied to the dead-letter topic when one is
 * set (finished once the broker acknowledged the copy), else logged and
 * finished; under errors.tolerance=none it stops krib instead. Returns -1
 * when it cannot even be queued. */
static int reject(krib_pipeline_t *p, batch_t *b, size_t i, const char *stage, const char *cls,
                  const char *why) {
        rd_kafka_message_t *m = b->msgs[i];
        if (p->conf->errors_tolerance == KRIB_TOLERANCE_NONE) {
                /* Connect's errors.tolerance=none: the record stays
                 * unfinished, so its offset (and every later one of its
                 * partition) is never stored; the rest drains and krib
                 * exits non-zero for someone to look. */
                krib_log_error("pipeline",
                               "msg=\"stopping on a record krib cannot apply "
                               "(errors.tolerance=none); its offset is not committed\" stage=%s "
                               "class=%s " MSG_FMT " error=\"%s\"",
                               stage, cls, MSG_ARGS(m), krib_log_esc(why, strlen(why)));
                b->ev_state[i] = EV_ABANDONED;
                p->halted = 1;
                return 0;
        }
        krib_log_error("pipeline",
                       "msg=\"rejected event\" stage=%s class=%s " MSG_FMT " error=\"%s\"%s", stage,
                       cls, MSG_ARGS(m), krib_log_esc(why, strlen(why)),
                       p->dlq ? " dead_letter=yes" : "");
        count_reject(p, m, cls);
        if (p->dlq) {
                if (krib_dlq_add(p->dlq, m, stage, cls, why, b->seq << 24 | i))
                        return -1;
                b->ev_state[i] = EV_DLQ;
                b->dlq_left++;
                return 0;
        }
        p->stats.rejected++;
        finish(p, m);
        return 0;
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
        /* An unconditional unlink of the key is there already. (Not an
         * INVALIDATE: that one unlinks only below its own version, so the
         * newer of two must stay.) */
        if (kind == KRIB_WOP_INVALIDATE && op->kind != KRIB_WOP_UPSERT &&
            op->kind != KRIB_WOP_INVALIDATE)
                return 0;
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
        if (kind == KRIB_WOP_INVALIDATE && ord != KRIB_VV_CONCURRENT)
                return 0; /* the newer op on this key covers it */
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

/* Tracks m's offset before its work starts. 0: tracked. 1: an earlier
 * delivery of this offset was tracked (a redelivery): that one finishes
 * it, this one is skipped. -1: no memory to track it: untracked, later
 * offsets of its partition could be committed past it, so nothing is
 * stored from now on and krib stops (the next start reads it again). */
static int track(krib_pipeline_t *p, rd_kafka_message_t *m) {
        int rc = krib_offsets_track(p->offsets, rd_kafka_topic_name(m->rkt), m->partition,
                                    m->offset);
        if (rc == -2) {
                krib_log_warn("pipeline",
                              "msg=\"offset redelivered while an earlier delivery is tracked: "
                              "skipped\" " MSG_FMT,
                              MSG_ARGS(m));
                p->stats.skipped++;
                return 1;
        }
        if (rc) {
                krib_log_error("pipeline",
                               "msg=\"out of memory tracking an offset: nothing is committed "
                               "from now on, stopping\" " MSG_FMT,
                               MSG_ARGS(m));
                p->no_store = 1;
                p->halted = 1;
                return -1;
        }
        return 0;
}

typedef enum {
        ADMIT_DONE,          /* decoded and ordered, or rejected (logged) */
        ADMIT_OUT_OF_MEMORY, /* the event stays unfinished */
        ADMIT_REGISTRY_DOWN  /* not admitted: try again later, in order */
} admit_t;

/* Decodes and orders event i of b; adds its key operations. */
static admit_t admit(krib_pipeline_t *p, batch_t *b, size_t i) {
        char err[512];
        rd_kafka_message_t *m = b->msgs[i];
        krib_event_t *ev = &b->events[i];
        const char *topic = rd_kafka_topic_name(m->rkt);
        b->ev_state[i] = EV_DONE;
        const krib_route_t *route = route_of(p, m->rkt);
        if (route) {
                krib_route_info_t info;
                krib_route_result_t rr =
                        krib_route_decode(route, p->registry, topic, m->key, m->key_len, m->payload,
                                          m->len, ev, &info, err, sizeof(err));
                if (rr == KRIB_ROUTE_UNAVAILABLE)
                        return ADMIT_REGISTRY_DOWN;
                int t = track(p, m);
                if (t)
                        return t > 0 ? 0 : -1;
                if (rr == KRIB_ROUTE_SKIP) {
                        if (info.op == 't')
                                krib_log_warn("pipeline",
                                              "msg=\"truncate: no keys can be derived, nothing "
                                              "applied\" route=%s " MSG_FMT,
                                              krib_route_name(route), MSG_ARGS(m));
                        p->stats.skipped++;
                        finish(p, m);
                        return ADMIT_DONE;
                }
                if (rr == KRIB_ROUTE_ERROR)
                        return reject(p, b, i, "route", "krib.RouteError", err);
        } else {
                int t = track(p, m);
                if (t)
                        return t > 0 ? 0 : -1;
                if (krib_schemas_decode(p->decode, m->payload, m->len, ev, err, sizeof(err)))
                        return reject(p, b, i, "decode", "krib.DecodeError", err);
        }
        const krib_limits_t lim = {(size_t)p->conf->limits_max_key_bytes,
                                   (size_t)p->conf->limits_max_keys_per_event,
                                   (size_t)p->conf->limits_max_origins};
        if (krib_validate_limits(ev, &lim, err, sizeof(err))) {
                if (ev->action == KRIB_ACTION_TAG || !ev->key_count)
                        return reject(p, b, i, route ? "route" : "decode", "krib.LimitExceeded",
                                      err);
                /* Fail safe: its keys are named, so they are unlinked (plain,
                 * in chunks) before it is dead-lettered for the limit. */
                if (krib_event_degrade(ev, err, "krib.LimitExceeded"))
                        return ADMIT_OUT_OF_MEMORY;
        }
        if (ev->action == KRIB_ACTION_TAG) {
                /* Finished when the sweep is (sweep_done). */
                if (!ev->tag_count)
                        return reject(p, b, i, "route", "krib.InvalidEvent",
                                      "TAG event without tags");
                if (krib_sweeps_add(p->sweeps, ev->tags, ev->tag_count, topic, m->partition,
                                    m->offset))
                        return ADMIT_OUT_OF_MEMORY;
                b->ev_state[i] = EV_SWEEP;
                return ADMIT_DONE;
        }
        krib_reorder_verdict_t v = krib_reorder_decide(p->reorder, topic, m->partition, ev);
        /* An event older than its entity's newest still unlinks its keys,
         * a DELETE and an UPSERT alike (its value is dropped): that newer
         * event may not have named them all, and an unlink costs a miss at
         * worst. The fence keeps its newer version. */
        ev->older = v == KRIB_REORDER_STALE;
        uint8_t kind;
        if (ev->action == KRIB_ACTION_UPSERT && v == KRIB_REORDER_APPLY)
                kind = KRIB_WOP_UPSERT;
        else if (ev->action == KRIB_ACTION_UPSERT && v == KRIB_REORDER_STALE && ev->version_count)
                kind = KRIB_WOP_INVALIDATE; /* what the newer event covered stays */
        else if (ev->version_count && p->conf->redis_fence != KRIB_FENCE_VERSIONED &&
                 (p->conf->redis_fence == KRIB_FENCE_ALL || v == KRIB_REORDER_INVALIDATE))
                kind = KRIB_WOP_DELETE; /* fenced at the (merged) vector */
        else
                kind = KRIB_WOP_UNLINK; /* versioned: its fence goes with it */
        p->stats.invalidated += v == KRIB_REORDER_INVALIDATE;

        if (reserve_ops(b, b->nops + ev->key_count) ||
            krib_util_grow(&b->links, &b->link_cap, b->nlinks + ev->key_count, sizeof(*b->links)))
                return ADMIT_OUT_OF_MEMORY;
        int rc = reserve_table(b, b->nops + ev->key_count);
        if (rc < 0)
                return ADMIT_OUT_OF_MEMORY;
        if (rc > 0)
                for (size_t o = 0; o < b->nops; o++)
                        b->table[-1 - table_find(b, b->op_part[o], b->ops[o].key, b->ops[o].len)] =
                                (int32_t)o;
        for (size_t k = 0; k < ev->key_count; k++) {
                int64_t at = table_find(b, m->partition, ev->keys[k].s, ev->keys[k].len);
                int32_t o;
                if (at < 0) {
                        o = (int32_t)b->nops++;
                        b->table[-1 - at] = o;
                        b->op_part[o] = m->partition;
                        b->op_links[o] = -1;
                        b->ops[o].key = ev->keys[k].s;
                        b->ops[o].len = ev->keys[k].len;
                        b->ops[o].kind = kind;
                        b->ops[o].ev = ev;
                } else {
                        o = (int32_t)at;
                        p->stats.coalesced++;
                        if (coalesce(p, &b->ops[o], kind, ev))
                                return ADMIT_OUT_OF_MEMORY;
                }
                b->links[b->nlinks].event = (uint32_t)i;
                b->links[b->nlinks].next = b->op_links[o];
                b->op_links[o] = (int32_t)b->nlinks++;
        }
        b->ev_left[i] = (uint32_t)ev->key_count; /* one link per key */
        b->ev_state[i] = EV_LIVE;
        return ADMIT_DONE;
}

static void pause_all(krib_pipeline_t *p, const char *why) {
        if (p->paused)
                return;
        p->paused = 1;
        p->stats.pauses++;
        krib_consumer_pause(p->consumer, NULL, 1);
        krib_log_warn("pipeline", "msg=\"%s: partitions paused\" in_flight_events=%zu", why,
                      p->inflight_events);
}

static void resume_all(krib_pipeline_t *p) {
        if (!p->paused)
                return;
        p->paused = 0;
        krib_consumer_pause(p->consumer, NULL, 0);
        krib_log_info("pipeline", "msg=\"partitions resumed\" in_flight_events=%zu",
                      p->inflight_events);
}

/* Admits b's events from where it stopped; submits its keys when all are
 * in. A batch whose admission waits for the schema registry stays ADMIT. */
static void admit_batch(krib_pipeline_t *p, batch_t *b) {
        if (b->admitted == 0) {
                b->admit_us = krib_clock_mono_us();
                if (b->table_cap)
                        memset(b->table, 0xff, b->table_cap * sizeof(*b->table));
                b->nops = b->nlinks = 0;
        }
        for (; b->admitted < b->n; b->admitted++) {
                if (b->ev_state[b->admitted] == EV_ABANDONED)
                        continue; /* revoked while admission waited */
                admit_t a = admit(p, b, b->admitted);
                if (a == ADMIT_REGISTRY_DOWN) {
                        b->state = B_ADMIT;
                        /* A schema being fetched (a new id) ends within
                         * registry.timeout_ms; the in-flight bound holds the
                         * rest. Only an outage pauses. */
                        if (!krib_registry_fetching(p->registry))
                                pause_all(p, "schema registry unavailable");
                        return;
                }
                if (a == ADMIT_OUT_OF_MEMORY) {
                        /* Out of memory: the event stays unfinished; its
                         * offset (and every later one) is not stored. */
                        krib_log_error("pipeline", "msg=\"out of memory\" " MSG_FMT,
                                       MSG_ARGS(b->msgs[b->admitted]));
                        b->ev_state[b->admitted] = EV_PENDING;
                }
        }
        b->state = B_KEYS;
        b->submit_us = krib_clock_mono_us();
        uint64_t live = 0;
        for (size_t i = 0; i < b->n; i++)
                if (b->ev_state[i] == EV_LIVE) {
                        krib_hist_add(&p->lat_queue, (b->admit_us - b->taken_us[i]) / 1000);
                        krib_hist_add(&p->lat_admit_us, b->submit_us - b->admit_us);
                        live++;
                }
        krib_metrics_hist_observe(&p->admit_s, (double)(b->submit_us - b->admit_us) / 1e6, live);
        if (b->nops)
                memset(b->op_done, 0, b->nops);
        b->last_left = b->nops;
        if (b->nops &&
            (b->job = krib_writer_submit(p->writer, b->ops, b->nops, b->op_status)) < 0) {
                krib_log_error("pipeline", "msg=\"writer refused the batch (out of memory)\"");
                for (size_t i = 0; i < b->n; i++)
                        if (b->ev_state[i] == EV_LIVE)
                                b->ev_state[i] = EV_PENDING;
                b->nops = 0;
        }
}

/* PUBLISH/XADD for applied events whose route asks for it, once their keys
 * are acknowledged; part of the event's work (its offset waits for them).
 * Reuses the op arrays. Returns the number of fan-out ops submitted. */
static size_t fan_out(krib_pipeline_t *p, batch_t *b) {
        size_t nf = 0;
        for (size_t i = 0; i < b->n; i++)
                if (b->ev_state[i] == EV_LIVE)
                        nf += (b->events[i].channel.s != NULL) + (b->events[i].stream.s != NULL);
        if (!nf)
                return 0;
        if (reserve_ops(b, nf)) {
                krib_log_error("pipeline", "msg=\"out of memory\"");
                return 0;
        }
        size_t o = 0;
        for (size_t i = 0; i < b->n; i++) {
                const krib_event_t *ev = &b->events[i];
                if (b->ev_state[i] != EV_LIVE)
                        continue;
                const krib_str_t *target[] = {&ev->channel, &ev->stream};
                for (int t = 0; t < 2; t++)
                        if (target[t]->s) {
                                b->ops[o] = (krib_wop_t){target[t]->s, target[t]->len,
                                                         t ? KRIB_WOP_XADD : KRIB_WOP_PUBLISH, ev};
                                b->op_links[o++] = (int32_t)i;
                        }
        }
        b->nops = nf;
        if ((b->job = krib_writer_submit(p->writer, b->ops, nf, b->op_status)) < 0) {
                krib_log_error("pipeline", "msg=\"writer refused the notifications\"");
                for (o = 0; o < nf; o++)
                        b->ev_state[b->op_links[o]] = EV_PENDING;
                return 0;
        }
        return nf;
}

/* Counts an event Redis acknowledged (its offset is finished by the caller). */
static void applied(krib_pipeline_t *p, const krib_event_t *ev, int64_t acked_ms,
                    int64_t redis_ms) {
        if (ev->older)
                p->stats.stale++;
        else
                p->stats.applied++;
        krib_hist_add_since(&p->latency, acked_ms, ev->ts_ms);
        krib_hist_add(&p->lat_redis, redis_ms);
        if (p->trace) /* the first key's hash slot tells a fault's victims from the rest */
                fprintf(p->trace, "%" PRId64 " %" PRId64 " %d\n", acked_ms, acked_ms - ev->ts_ms,
                        ev->key_count ? (int)krib_slot_of(ev->keys[0].s, ev->keys[0].len) : -1);
}

/* Hands the ops answered since the last look to their events: an event
 * whose every key is acknowledged (any final outcome but FAILED) is finished
 * now, unless it still has work after its keys (a fan-out, a dead letter
 * for its defect): those wait for the batch as before. A FAILED key marks
 * its events failed (finalize dead-letters them). Per-key order is the
 * writer's (an op waits for an earlier job's op on its key); the commit
 * rule is the offsets tracker's (only a partition's finished prefix is
 * stored), so finishing early changes neither. */
static void finish_answered(krib_pipeline_t *p, batch_t *b) {
        int64_t acked_ms = 0, redis_ms = 0;
        size_t finished = 0;
        for (size_t o = 0; o < b->nops; o++) {
                uint8_t st = b->op_status[o];
                if (b->op_done[o] || st == KRIB_WOP_PENDING)
                        continue;
                b->op_done[o] = 1;
                for (int32_t l = b->op_links[o]; l >= 0; l = b->links[l].next) {
                        uint32_t i = b->links[l].event;
                        uint8_t *es = &b->ev_state[i];
                        if (*es != EV_LIVE)
                                continue;
                        if (st == KRIB_WOP_FAILED) {
                                *es = EV_FAILED;
                                continue;
                        }
                        const krib_event_t *ev = &b->events[i];
                        if (--b->ev_left[i] || ev->channel.s || ev->stream.s || ev->defect.s)
                                continue;
                        if (!finished++) {
                                acked_ms = krib_clock_wall_ms();
                                redis_ms = (krib_clock_mono_us() - b->submit_us) / 1000;
                        }
                        applied(p, ev, acked_ms, redis_ms);
                        finish(p, b->msgs[i]);
                        *es = EV_DONE;
                }
        }
        if (finished)
                store_offsets(p);
}

static void keys_answered(batch_t *b) {
        for (size_t o = 0; o < b->nops; o++) {
                uint8_t st = b->op_status[o];
                for (int32_t l = b->op_links[o]; l >= 0; l = b->links[l].next) {
                        uint8_t *es = &b->ev_state[b->links[l].event];
                        if (*es == EV_ABANDONED)
                                continue;
                        if (st == KRIB_WOP_PENDING)
                                *es = EV_PENDING;
                        else if (st == KRIB_WOP_FAILED && *es != EV_PENDING)
                                *es = EV_FAILED;
                }
        }
}

static void fanout_answered(krib_pipeline_t *p, batch_t *b) {
        for (size_t o = 0; o < b->nops; o++) {
                uint8_t *es = &b->ev_state[b->op_links[o]];
                if (*es == EV_ABANDONED)
                        continue;
                if (b->op_status[o] == KRIB_WOP_PENDING)
                        *es = EV_PENDING;
                else if (b->op_status[o] == KRIB_WOP_FAILED && *es != EV_PENDING)
                        *es = EV_FAILED;
                else if (b->op_status[o] == KRIB_WOP_OK)
                        p->stats.fanned_out++;
        }
}

/* Every Redis answer is in: events are finished, failed or dead-lettered. */
static void finalize(krib_pipeline_t *p, batch_t *b) {
        int64_t acked_ms = krib_clock_wall_ms();
        int64_t redis_ms = (krib_clock_mono_us() - b->submit_us) / 1000;
        for (size_t i = 0; i < b->n; i++) {
                rd_kafka_message_t *m = b->msgs[i];
                if (b->ev_state[i] == EV_LIVE && b->events[i].defect.s) {
                        /* Its keys are invalidated; the rest of it could not
                         * be applied: dead-lettered with the reason. */
                        const char *cls = b->events[i].defect_class ? b->events[i].defect_class
                                                                    : "krib.RouteError";
                        if (reject(p, b, i, strcmp(cls, "krib.RouteError") ? "decode" : "route",
                                   cls, b->events[i].defect.s))
                                krib_log_error("pipeline", "msg=\"out of memory\"");
                } else if (b->ev_state[i] == EV_LIVE) {
                        applied(p, &b->events[i], acked_ms, redis_ms);
                        finish(p, m);
                        b->ev_state[i] = EV_DONE;
                } else if (b->ev_state[i] == EV_FAILED && p->dlq) {
                        char why[300];
                        snprintf(why, sizeof(why),
                                 "redis refused a key of entity %s for good (see the writer's "
                                 "log line)",
                                 b->events[i].entity.s);
                        if (reject(p, b, i, "write", "krib.RedisError", why))
                                krib_log_error("pipeline", "msg=\"out of memory\"");
                } else if (b->ev_state[i] == EV_FAILED &&
                           p->conf->errors_tolerance == KRIB_TOLERANCE_NONE) {
                        if (reject(p, b, i, "write", "krib.RedisError",
                                   "redis refused a key for good (see the writer's log line)"))
                                krib_log_error("pipeline", "msg=\"out of memory\"");
                } else if (b->ev_state[i] == EV_FAILED) {
                        krib_log_error(
                                "pipeline",
                                "msg=\"redis refused event\" stage=write " MSG_FMT " entity=\"%s\"",
                                MSG_ARGS(m),
                                krib_log_esc(b->events[i].entity.s, b->events[i].entity.len));
                        p->stats.failed++;
                        count_reject(p, m, "krib.RedisError");
                        finish(p, m);
                        b->ev_state[i] = EV_DONE;
                }
                /* EV_DONE was finished on admission; EV_PENDING (cut short)
                 * and EV_ABANDONED stay unfinished; EV_SWEEP is finished by
                 * its sweep, EV_DLQ by the broker's acknowledgement. */
        }
        b->state = B_DLQ;
}

static void batch_release(krib_pipeline_t *p, batch_t *b) {
        if (b->job >= 0)
                krib_writer_job_release(p->writer, b->job);
        b->job = -1;
        for (size_t i = 0; i < b->n; i++) {
                rd_kafka_message_destroy(b->msgs[i]);
                b->msgs[i] = NULL;
        }
        p->inflight_events -= b->n;
        p->inflight_bytes -= b->bytes;
        b->n = b->bytes = 0;
        b->state = B_FREE;
        /* Decoded events kept for reuse stay within the in-flight bound
         * (plus one batch): idle slots do not each keep a full batch. */
        size_t retained = 0;
        for (size_t k = 0; k < p->nbatches; k++)
                retained += p->batches[k].acap;
        if (retained > (size_t)p->conf->pipeline_max_in_flight_events + p->cap)
                batch_shrink(b);
        p->stats.batches++;
}

/* Moves every batch in flight on as far as its answers allow. */
static void progress(krib_pipeline_t *p) {
        for (size_t k = 0; k < p->nbatches; k++) {
                batch_t *b = &p->batches[k];
                if (b->state == B_KEYS) {
                        size_t left = b->job >= 0 ? krib_writer_job_left(p->writer, b->job) : 0;
                        if (left != b->last_left) {
                                b->last_left = left;
                                finish_answered(p, b);
                        }
                        if (left)
                                continue;
                        keys_answered(b);
                        if (b->job >= 0)
                                krib_writer_job_release(p->writer, b->job);
                        b->job = -1;
                        b->state = B_FANOUT;
                        if (fan_out(p, b))
                                continue;
                }
                if (b->state == B_FANOUT) {
                        if (b->job >= 0) {
                                if (krib_writer_job_left(p->writer, b->job))
                                        continue;
                                fanout_answered(p, b);
                                krib_writer_job_release(p->writer, b->job);
                                b->job = -1;
                        }
                        finalize(p, b);
                }
                if (b->state == B_DLQ) {
                        if (b->dlq_left)
                                continue;
                        /* EV_SWEEP offsets are finished by their sweep. */
                        batch_release(p, b);
                        store_offsets(p);
                }
        }
}

static void on_dlq_acked(void *opaque, uint64_t tag) {
        krib_pipeline_t *p = opaque;
        uint64_t seq = tag >> 24;
        size_t i = (size_t)(tag & 0xffffff);
        for (size_t k = 0; k < p->nbatches; k++) {
                batch_t *b = &p->batches[k];
                if (b->state == B_FREE || b->seq != seq || i >= b->n)
                        continue;
                if (b->ev_state[i] == EV_DLQ) {
                        p->stats.dead_lettered++;
                        finish(p, b->msgs[i]);
                        b->ev_state[i] = EV_DONE;
                        b->dlq_left--;
                        /* Committable now perhaps, while its batch still
                         * waits for other events' keys (dead letters are
                         * rare: one store each). */
                        store_offsets(p);
                }
                return; /* abandoned meanwhile: not finished here */
        }
}

static void sweep_done(void *opaque, const char *topic, int32_t partition, int64_t offset) {
        krib_pipeline_t *p = opaque;
        p->stats.applied++;
        if (krib_offsets_finish(p->offsets, topic, partition, offset))
                krib_log_debug("pipeline", "msg=\"offset was not tracked\" topic=%s", topic);
        store_offsets(p);
}

static void log_stats(krib_pipeline_t *p, int force) {
        int64_t now = krib_clock_mono_us();
        int64_t every = p->conf->log_stats_interval_ms * 1000;
        if (!force && (!every || now - p->stats_at_us < every))
                return;
        key_stats(p);
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
                " poll_ms=%" PRIu64 " write_ms=%" PRIu64 " batches=%" PRIu64
                " kafka_p50_ms=%" PRId64 " kafka_p99_ms=%" PRId64 " queue_p50_ms=%" PRId64
                " queue_p99_ms=%" PRId64 " admit_p50_us=%" PRId64 " admit_p99_us=%" PRId64
                " redis_p50_ms=%" PRId64 " redis_p99_ms=%" PRId64,
                s->consumed, s->applied, s->stale, s->rejected, s->skipped, s->dead_lettered,
                s->failed, s->abandoned, krib_offsets_in_flight(p->offsets), s->keys_done,
                s->coalesced, s->fence_stale, s->invalidated, s->fence_invalidated, r->entities,
                r->evictions, w->round_trips, w->commands,
                w->round_trips ? (double)w->keys / (double)w->round_trips : 0.0, w->moved, w->ask,
                w->retries, w->reconnects, s->pauses, krib_consumer_rebalances(p->consumer),
                krib_hist_quantile(&p->latency, 0.5), krib_hist_quantile(&p->latency, 0.99),
                p->latency.max, s->poll_us / 1000, s->write_us / 1000, s->batches,
                krib_hist_quantile(&p->lat_kafka, 0.5), krib_hist_quantile(&p->lat_kafka, 0.99),
                krib_hist_quantile(&p->lat_queue, 0.5), krib_hist_quantile(&p->lat_queue, 0.99),
                krib_hist_quantile(&p->lat_admit_us, 0.5),
                krib_hist_quantile(&p->lat_admit_us, 0.99), krib_hist_quantile(&p->lat_redis, 0.5),
                krib_hist_quantile(&p->lat_redis, 0.99));
}

/* Events of the revoked partitions in flight (not finished); abandon: they
 * are given up instead (never finished here; the next owner re-reads them
 * from the committed offset). Returns how many. */
static size_t revoked_work(krib_pipeline_t *p, const rd_kafka_topic_partition_list_t *parts,
                           int abandon) {
        size_t n = 0;
        for (size_t k = 0; k < p->nbatches; k++) {
                batch_t *b = &p->batches[k];
                if (b->state == B_FREE || b->state == B_OPEN)
                        continue;
                for (size_t i = 0; i < b->n; i++) {
                        uint8_t *es = &b->ev_state[i];
                        if (*es == EV_DONE || *es == EV_ABANDONED || *es == EV_SWEEP ||
                            !in_parts(b->msgs[i], parts))
                                continue;
                        n++;
                        if (!abandon)
                                continue;
                        if (*es == EV_DLQ && b->dlq_left)
                                b->dlq_left--; /* its acknowledgement is ignored */
                        *es = EV_ABANDONED;
                        p->stats.abandoned++;
                }
        }
        return n;
}

/* The writer gives up the ops of abandoned events too: an old owner's
 * write still being retried must not land after the new owner's newer one
 * (a stale value back in upserts mode). An op serves one partition's
 * events (coalescing is per partition), so its first event tells. */
static void cancel_revoked_ops(krib_pipeline_t *p, const rd_kafka_topic_partition_list_t *parts) {
        for (size_t k = 0; k < p->nbatches; k++) {
                batch_t *b = &p->batches[k];
                if ((b->state != B_KEYS && b->state != B_FANOUT) || b->job < 0)
                        continue;
                for (size_t o = 0; o < b->nops; o++) {
                        int32_t l = b->op_links[o];
                        if (l < 0 || b->op_status[o] != KRIB_WOP_PENDING)
                                continue;
                        uint32_t ev = b->state == B_KEYS ? b->links[l].event : (uint32_t)l;
                        if (in_parts(b->msgs[ev], parts))
                                krib_writer_op_cancel(p->writer, b->job, o);
                }
        }
}

/* Drops unadmitted messages of parts from msgs[0..*n). */
static void drop_messages(rd_kafka_message_t **msgs, size_t *n, size_t *bytes,
                          const rd_kafka_topic_partition_list_t *parts, krib_pipeline_t *p) {
        size_t keep = 0;
        for (size_t i = 0; i < *n; i++) {
                if (in_parts(msgs[i], parts)) {
                        if (bytes) {
                                *bytes -= msgs[i]->len;
                                p->inflight_events--;
                                p->inflight_bytes -= msgs[i]->len;
                        }
                        rd_kafka_message_destroy(msgs[i]);
                } else
                        msgs[keep++] = msgs[i];
        }
        *n = keep;
}

/* The loop's part of a revoke (the callback only recorded it): messages not
 * yet admitted go back to the next owner at once; work in flight gets a
 * short grace to finish (so its offsets can be committed), then what is
 * left is abandoned unstored; offsets are committed and the partitions
 * released. Returns 1 while it still waits. */
static int act_on_revoke(krib_pipeline_t *p) {
        int lost = 0;
        const rd_kafka_topic_partition_list_t *parts = krib_consumer_revoking(p->consumer, &lost);
        if (!parts)
                return 0;
        int64_t now = krib_clock_mono_us();
        /* A second revoke merged into this one (its partitions added, or
         * the assignment lost meanwhile) drops what is stashed or not yet
         * admitted for the new partitions too: tracked again after the
         * partitions are forgotten, their offsets could later be
         * committed past work in flight. */
        if (!p->revoke_deadline_us || parts->cnt != p->revoke_seen) {
                if (!p->revoke_deadline_us || lost)
                        p->revoke_deadline_us = now + (lost ? 0 : REVOKE_GRACE_US);
                p->revoke_seen = parts->cnt;
                drop_messages(p->stash, &p->nstash, NULL, parts, p);
                if (p->open)
                        drop_messages(p->open->msgs, &p->open->n, &p->open->bytes, parts, p);
        }
        size_t left = revoked_work(p, parts, 0);
        if (left && now < p->revoke_deadline_us)
                return 1;
        revoked_work(p, parts, 1);
        cancel_revoked_ops(p, parts);
        store_offsets(p);
        forget_partitions(p, parts);
        krib_log_info("pipeline",
                      "msg=\"revoke handled\" lost=%d abandoned_events=%zu wait_ms=%" PRId64, lost,
                      left, (now - p->revoke_deadline_us + (lost ? 0 : REVOKE_GRACE_US)) / 1000);
        krib_consumer_revoke_done(p->consumer);
        p->revoke_deadline_us = 0;
        p->revoke_seen = 0;
        publish(p, 1);
        return 0;
}

/* now_us/now_ms: the intake's clock, read once per round of messages (a
 * clock read per message was a measurable share of the loop). */
static int take(krib_pipeline_t *p, rd_kafka_message_t *m, int64_t now, int64_t now_ms) {
        batch_t *b = p->open;
        if (!b || b->n == p->cap || batch_grow(b, p->cap))
                return -1;
        int64_t ts = rd_kafka_message_timestamp(m, NULL);
        if (!b->n)
                b->opened_us = now;
        if (ts > 0) {
                krib_hist_add_since(&p->lat_kafka, now_ms, ts);
                if (now_ms - ts > 250 && now_ms - p->late_logged_ms >= 1000) {
                        p->late_logged_ms = now_ms;
                        krib_log_debug("pipeline",
                                       "msg=\"message taken late\" late_ms=%" PRId64 " " MSG_FMT,
                                       now_ms - ts, MSG_ARGS(m));
                }
        }
        b->taken_us[b->n] = now;
        b->ev_state[b->n] = EV_PENDING; /* not admitted yet */
        b->msgs[b->n++] = m;
        b->bytes += m->len;
        p->inflight_events++;
        p->inflight_bytes += m->len;
        p->stats.consumed++;
        return 0;
}

/* Tag sweeps at once: each runs a SCAN per loop turn. */
#define SWEEPS_MAX 64

/* Batches release their slot when their keys are answered, but a TAG
 * event's offset stays unfinished until its sweep is done (and an event cut
 * short stays so), and the events after an unfinished one finish without
 * making anything committable: counting the offsets held (tracked, not yet
 * committable) bounds the offset tracker, the sweeps, and what a frozen
 * commit lets krib read past it. */
static int at_bound(const krib_pipeline_t *p) {
        return p->inflight_events >= (size_t)p->conf->pipeline_max_in_flight_events ||
               krib_offsets_held(p->offsets) >= (size_t)p->conf->pipeline_max_in_flight_events ||
               krib_sweeps_active(p->sweeps) >= SWEEPS_MAX ||
               p->inflight_bytes >= (size_t)p->conf->pipeline_max_in_flight_bytes;
}

/* Reads what the consumer has without waiting, into the open batch. A full
 * open batch stops it (dispatch comes first); at the in-flight bound, or
 * with every batch slot busy, partitions are paused and what still arrives
 * waits in the stash (the consumer is still served, for rebalances). */
static void read_messages(krib_pipeline_t *p, int64_t now);

static void intake(krib_pipeline_t *p) {
        int64_t start = krib_clock_mono_us();
        read_messages(p, start);
        p->stats.poll_us += (uint64_t)(krib_clock_mono_us() - start);
}

static void read_messages(krib_pipeline_t *p, int64_t now) {
        krib_consumer_wakeup_clear(p->consumer);
        p->kafka_more = 0;
        const size_t max_bytes = (size_t)p->conf->pipeline_batch_max_bytes;
        int64_t now_ms = krib_clock_wall_ms();
        for (int i = 0; i < 100000; i++) {
                if ((i & 255) == 255) {
                        now = krib_clock_mono_us();
                        now_ms = krib_clock_wall_ms();
                }
                if (!p->open)
                        p->open = batch_new(p);
                /* Stashed messages come first, in order. */
                size_t s = 0;
                int stuck = 0;
                while (s < p->nstash && p->open && p->open->n < p->cap &&
                       p->open->bytes < max_bytes && !at_bound(p) && !stuck)
                        if (!(stuck = take(p, p->stash[s], now, now_ms) != 0))
                                s++;
                if (s) {
                        memmove(p->stash, p->stash + s, (p->nstash - s) * sizeof(*p->stash));
                        p->nstash -= s;
                }
                if (stuck) {
                        /* No memory for the batch: the rest waits, in order. */
                        p->kafka_more = 1;
                        return;
                }
                int full = p->open && (p->open->n >= p->cap || p->open->bytes >= max_bytes);
                int room = p->open && !full && !at_bound(p);
                if (room)
                        p->bound_since_us = 0;
                if (!room) {
                        if (full && !at_bound(p)) {
                                p->kafka_more = 1; /* after the dispatch */
                                return;
                        }
                        /* At the bound: reading simply stops (librdkafka's
                         * prefetch stays, so a short wait costs nothing).
                         * Held longer, partitions pause so the consumer can
                         * still be served for rebalances. */
                        if (!p->bound_since_us)
                                p->bound_since_us = now;
                        if (!p->paused && now - p->bound_since_us < BOUND_PAUSE_US) {
                                p->kafka_more = 1;
                                return;
                        }
                        pause_all(p, "in-flight bound held");
                        if (p->nstash == p->stash_cap) {
                                p->kafka_more = 1; /* nowhere to put it: read it later */
                                return;
                        }
                }
                rd_kafka_message_t *m = krib_consumer_poll(p->consumer, 0);
                if (!m)
                        return;
                if (m->err) {
                        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                krib_log_warn("consumer", "msg=\"consume error\" error=\"%s\"",
                                              rd_kafka_message_errstr(m));
                        rd_kafka_message_destroy(m);
                        continue;
                }
                const rd_kafka_topic_partition_list_t *rv =
                        krib_consumer_revoking(p->consumer, NULL);
                if (rv && in_parts(m, rv)) {
                        rd_kafka_message_destroy(m); /* the next owner reads it */
                        continue;
                }
                if (room && take(p, m, now, now_ms) == 0)
                        continue;
                /* Kept, never dropped untracked: a later offset of its
                 * partition would be committed past it. A message that could
                 * not be taken stops the reading, so none overtakes it. */
                if (p->nstash == p->stash_cap) {
                        krib_log_error("pipeline",
                                       "msg=\"out of memory taking a message: nothing is committed "
                                       "from now on, stopping\" " MSG_FMT,
                                       MSG_ARGS(m));
                        rd_kafka_message_destroy(m);
                        p->no_store = 1;
                        p->halted = 1;
                        return;
                }
                p->stash[p->nstash++] = m;
                if (room)
                        return;
        }
        p->kafka_more = 1;
}

static size_t free_slots(const krib_pipeline_t *p) {
        size_t n = 0;
        for (size_t k = 0; k < p->nbatches; k++)
                n += p->batches[k].state == B_FREE;
        return n;
}

/* Whether any batch is between admission and its last answer. */
static int writing(const krib_pipeline_t *p) {
        for (size_t k = 0; k < p->nbatches; k++)
                if (p->batches[k].state >= B_ADMIT)
                        return 1;
        return 0;
}

static int admitting(const krib_pipeline_t *p) {
        for (size_t k = 0; k < p->nbatches; k++)
                if (p->batches[k].state == B_ADMIT)
                        return 1;
        return 0;
}

/* When the open batch b may go on lingering alone (dispatch.h). */
static int64_t linger_due_us(const krib_pipeline_t *p, const batch_t *b) {
        return krib_dispatch_linger_due_us(b->opened_us, p->conf->pipeline_linger_ms, free_slots(p),
                                           p->nbatches);
}

/* Sends the open batch when it is full, or lingered long enough, or
 * nothing else is being written (then waiting would only add latency). */
static void dispatch(krib_pipeline_t *p, int force) {
        batch_t *b = p->open;
        if (!b || !b->n || admitting(p))
                return;
        int64_t now = krib_clock_mono_us();
        /* With most slots taken (batches waiting for a failing master, say)
         * batches linger longer and grow (dispatch.h); with none free the
         * in-flight bound in events, not the slot count, stops intake. */
        int lingered = now >= linger_due_us(p, b);
        int ready = force || b->n == p->cap ||
                    b->bytes >= (size_t)p->conf->pipeline_batch_max_bytes || !writing(p) ||
                    lingered || at_bound(p) || !free_slots(p);
        if (!ready)
                return;
        p->open = NULL;
        admit_batch(p, b);
        p->open = batch_new(p); /* NULL when every slot is busy */
}

/* Retries admission of a batch that waited for the schema registry. */
static void readmit(krib_pipeline_t *p) {
        for (size_t k = 0; k < p->nbatches; k++) {
                batch_t *b = &p->batches[k];
                if (b->state != B_ADMIT)
                        continue;
                if (p->registry && krib_clock_mono_us() < krib_registry_due_us(p->registry))
                        return;
                admit_batch(p, b);
                return;
        }
}

static int everything_finished(const krib_pipeline_t *p) {
        for (size_t k = 0; k < p->nbatches; k++)
                if (p->batches[k].state != B_FREE &&
                    !(p->batches[k].state == B_OPEN && p->batches[k].n == 0))
                        return 0;
        return 1; /* sweeps in progress are re-read by whoever owns them next */
}

/* When the loop has something to do next, at the latest max_us from now:
 * a Redis deadline, a dead letter's retry, the open batch's linger, the
 * registry's retry, a sweep's next SCAN, or now when Kafka has more. */
static int64_t next_due(krib_pipeline_t *p, int64_t max_us) {
        int64_t now = krib_clock_mono_us();
        int64_t until = now + max_us;
        int64_t due = krib_writer_due_us(p->writer);
        if (due < until)
                until = due;
        if (p->dlq) {
                due = krib_dlq_due_us(p->dlq);
                if (due < until)
                        until = due;
        }
        /* The open batch's linger, only when dispatch would send on it:
         * a deadline dispatch refuses was a busy loop (poll(0) every turn
         * while a frozen master held the batch slots). */
        if (p->open && p->open->n && writing(p) && !admitting(p)) {
                due = linger_due_us(p, p->open);
                if (due < until)
                        until = due;
        }
        if (admitting(p) && p->registry) {
                due = krib_registry_due_us(p->registry);
                if (due < until)
                        until = due;
        }
        if (krib_sweeps_active(p->sweeps) && now + 1000 < until)
                until = now + 1000;
        if (p->kafka_more && p->open && p->open->n < p->cap && !at_bound(p))
                until = now;
        if (p->bound_since_us && !p->paused && p->bound_since_us + BOUND_PAUSE_US < until)
                until = p->bound_since_us + BOUND_PAUSE_US;
        return until;
}

/* The loop's only wait: for Kafka, a Redis reply or until (monotonic µs). */
static void wait_for_work(krib_pipeline_t *p, int64_t until) {
        struct pollfd one;
        size_t need = 2 + (size_t)krib_writer_pollfds(p->writer, NULL, 0);
        int64_t t0 = krib_clock_mono_us();
        int64_t wait = until - t0;
        int ms = wait <= 0 ? 0 : wait > 1000000 ? 1000 : (int)((wait + 999) / 1000);
        struct pollfd *fds = p->pfds;
        if (need > p->pfds_cap && krib_util_grow(&p->pfds, &p->pfds_cap, need, sizeof(*fds))) {
                /* Out of memory: Kafka only, and back soon for the replies. */
                fds = &one;
                need = 1;
                ms = ms < 10 ? ms : 10;
        } else {
                fds = p->pfds;
        }
        fds[0] = (struct pollfd){krib_consumer_wakeup_fd(p->consumer), POLLIN, 0};
        int n = 1;
        if (need > 1)
                n += krib_writer_pollfds(p->writer, fds + 1, (int)need - 1);
        if ((size_t)n > need)
                n = (int)need; /* sockets added since counting wait a turn */
        int reg = p->registry ? krib_registry_wake_fd(p->registry) : -1;
        if (reg >= 0 && (size_t)n < p->pfds_cap && fds == p->pfds)
                fds[n++] = (struct pollfd){reg, POLLIN, 0}; /* a schema fetched */
        poll(fds, (nfds_t)n, ms);
        p->stats.poll_us += (uint64_t)(krib_clock_mono_us() - t0);
        if (fds[0].revents)
                krib_pipeline_wake(p);
}

void krib_pipeline_wake(krib_pipeline_t *p) {
        p->kafka_more = 1;
}

/* One turn of the loop: every stage moves as far as it can without
 * waiting; returns when the next thing is due (the caller waits). */
int64_t krib_pipeline_step(krib_pipeline_t *p, int draining) {
        int64_t begin = krib_clock_mono_us();
        act_on_revoke(p);
        int64_t t0 = krib_clock_mono_us(), t_revoke = t0 - begin;
        if (krib_writer_step(p->writer))
                krib_log_error("pipeline", "msg=\"writer out of memory\"");
        p->stats.write_us += (uint64_t)(krib_clock_mono_us() - t0);
        if (p->dlq)
                krib_dlq_poll(p->dlq, on_dlq_acked, p);
        progress(p);
        if (krib_sweeps_active(p->sweeps)) {
                krib_sweeps_step(p->sweeps, sweep_done, p);
                p->stats.sweep_keys = krib_sweeps_keys(p->sweeps);
                p->stats.sweep_keys_failed = krib_sweeps_keys_failed(p->sweeps);
                p->stats.sweeps_incomplete = krib_sweeps_incomplete(p->sweeps);
                p->stats.sweeps_active = krib_sweeps_active(p->sweeps);
                progress(p);
        }
        readmit(p);
        int64_t t_intake = krib_clock_mono_us(), t_dispatch;
        if (!draining) {
                if (p->kafka_more || !p->open || !p->open->n)
                        intake(p);
                t_dispatch = krib_clock_mono_us();
                dispatch(p, 0);
        } else {
                t_dispatch = krib_clock_mono_us();
                dispatch(p, 1);
        }
        /* Submitted work goes out now, not after the wait. */
        t0 = krib_clock_mono_us();
        int64_t t_first = t_intake - begin - t_revoke;
        t_dispatch = t0 - t_dispatch;
        t_intake = t0 - t_intake - t_dispatch;
        krib_writer_step(p->writer);
        p->stats.write_us += (uint64_t)(krib_clock_mono_us() - t0);
        /* That step also read the replies that had arrived: their events
         * finish now, not after the wait (their sockets are drained, so
         * nothing would wake the loop for them before its timeout). */
        progress(p);
        /* Partitions pause at the in-flight bound (in intake), while the
         * registry is down, and when Redis answered nothing for a second
         * while no master could take work (one failing master alone does
         * not stop the others' work; the bound does). They resume below
         * half of the bound, and after a Redis stall only once Redis
         * answers again. */
        const krib_writer_stats_t *ws = krib_writer_stats(p->writer);
        int64_t now = krib_clock_mono_us();
        uint64_t answered = ws->keys + ws->fanouts;
        if (answered != p->keys_seen || (!ws->queued_ops && !ws->inflight_ops)) {
                p->keys_seen = answered;
                p->progress_at_us = now;
                p->stalled = 0;
        } else if (now - p->progress_at_us >= REDIS_STALL_US && krib_writer_failing(p->writer)) {
                p->stalled = 1;
        }
        if (now - p->health_at_us >= 250000) {
                p->health_at_us = now;
                health_step(p);
        }
        if (!p->paused && p->stalled)
                pause_all(p, "redis is failing");
        else if (!p->paused && p->guarded)
                pause_all(p, "redis memory guard");
        else if (p->paused && !p->stalled && !p->guarded && !admitting(p) &&
                 (p->open || free_slots(p)) &&
                 p->inflight_events < (size_t)p->conf->pipeline_max_in_flight_events / 2 + 1 &&
                 krib_offsets_held(p->offsets) <
                         (size_t)p->conf->pipeline_max_in_flight_events / 2 + 1 &&
                 krib_sweeps_active(p->sweeps) < SWEEPS_MAX / 2 &&
                 p->inflight_bytes < (size_t)p->conf->pipeline_max_in_flight_bytes / 2 + 1) {
                resume_all(p);
                p->kafka_more = 1;
        }
        log_stats(p, 0);
        publish(p, 0);
        /* A turn that long held every event behind it: say where it went
         * (the stages are meant to take microseconds to milliseconds). */
        int64_t busy = krib_clock_mono_us() - begin;
        krib_metrics_hist_observe(&p->loop_turn, (double)busy / 1e6, 1);
        if (busy >= SLOW_TURN_US)
                krib_log_warn("pipeline",
                              "msg=\"slow loop turn\" ms=%" PRId64 " revoke_ms=%" PRId64
                              " writer_dlq_sweeps_ms=%" PRId64 " intake_ms=%" PRId64
                              " dispatch_ms=%" PRId64 " rest_ms=%" PRId64,
                              busy / 1000, t_revoke / 1000, t_first / 1000, t_intake / 1000,
                              t_dispatch / 1000,
                              (busy - t_revoke - t_first - t_intake - t_dispatch) / 1000);
        return next_due(p, draining ? 50000 : 100000);
}

static void turn(krib_pipeline_t *p, int draining) {
        wait_for_work(p, krib_pipeline_step(p, draining));
}

krib_pipeline_end_t krib_pipeline_run(krib_pipeline_t *p) {
        while (!*p->stop && !p->halted)
                turn(p, 0);
        /* Drain: nothing new is read; what was read still gets its window. */
        int64_t deadline = krib_clock_mono_us() + p->conf->pipeline_shutdown_timeout_ms * 1000;
        while (!everything_finished(p) && krib_clock_mono_us() < deadline)
                turn(p, 1);
        if (!everything_finished(p))
                p->interrupted = 1;
        store_offsets(p);
        log_stats(p, 1);
        if (p->interrupted)
                krib_log_warn("pipeline",
                              "msg=\"shutdown deadline passed with unacknowledged work; its "
                              "offsets were not stored\" in_flight=%zu",
                              krib_offsets_in_flight(p->offsets));
        return p->halted        ? KRIB_PIPELINE_STOPPED_ON_RECORD
               : p->interrupted ? KRIB_PIPELINE_LEFT_WORK
                                : KRIB_PIPELINE_DRAINED;
}

const krib_pipeline_stats_t *krib_pipeline_stats(const krib_pipeline_t *p) {
        return &p->stats;
}

void krib_pipeline_destroy(krib_pipeline_t *p) {
        if (!p)
                return;
        /* An unfinished remainder must not be stored, only released. */
        for (size_t i = 0; i < p->nstash; i++)
                rd_kafka_message_destroy(p->stash[i]);
        p->nstash = 0;
        for (size_t k = 0; k < p->nbatches; k++) {
                batch_t *b = &p->batches[k];
                if (b->job >= 0 && p->writer)
                        krib_writer_job_cancel(p->writer, b->job);
                b->job = -1;
                /* Messages hold the consumer: released before it closes. */
                for (size_t i = 0; i < b->n; i++)
                        if (b->msgs[i])
                                rd_kafka_message_destroy(b->msgs[i]);
                b->n = 0;
        }
        krib_consumer_close(p->consumer);
        krib_metrics_destroy(p->metrics);
        krib_sweeps_destroy(p->sweeps);
        krib_writer_destroy(p->writer);
        krib_dlq_destroy(p->dlq);
        krib_health_destroy(p->health);
        free(p->hm);
        free(p->maddrs);
        free(p->mslots);
        free(p->rejects);
        krib_registry_destroy(p->registry);
        krib_schemas_destroy(p->decode);
        krib_offsets_destroy(p->offsets);
        krib_reorder_destroy(p->reorder);
        if (p->trace)
                fclose(p->trace);
        for (size_t k = 0; k < p->nbatches; k++)
                batch_free(&p->batches[k]);
        free(p->stash);
        free(p->pfds);
        free(p->nodes);
        free(p);
}

int krib_pipeline_halted(const krib_pipeline_t *p) {
        return p->halted;
}

#ifdef KRIB_SIM
/* For the simulation (tests/sim): where a stalled pipeline stands. */
void krib_pipeline_sim_describe(const krib_pipeline_t *p, FILE *out) {
        const krib_writer_stats_t *ws = krib_writer_stats(p->writer);
        fprintf(out,
                "    paused=%d stalled=%d in_flight_events=%zu offsets_held=%zu "
                "offsets_in_flight=%zu stash=%zu open=%zu revoking=%d writer: queued=%" PRIu64
                " in_flight=%" PRIu64 " jobs=%zu failing=%d\n",
                p->paused, p->stalled, p->inflight_events, krib_offsets_held(p->offsets),
                krib_offsets_in_flight(p->offsets), p->nstash, p->open ? p->open->n : 0,
                p->revoke_deadline_us != 0, ws->queued_ops, ws->inflight_ops,
                krib_writer_jobs_live(p->writer), krib_writer_failing(p->writer));
        for (size_t k = 0; k < p->nbatches; k++) {
                const batch_t *b = &p->batches[k];
                if (b->state == B_FREE || (b->state == B_OPEN && !b->n))
                        continue;
                fprintf(out, "    batch %zu: state=%d events=%zu job=%d dlq_left=%zu\n", k,
                        b->state, b->n, b->job, b->dlq_left);
        }
}

const krib_writer_t *krib_pipeline_sim_writer(const krib_pipeline_t *p) {
        return p->writer;
}
#endif
