#include "metrics.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>
#include <hiredis.h>
#include <librdkafka/rdkafka.h>
#include <sys/resource.h>
#include <unistd.h>

#include "clock.h"
#include "retry.h"
#include "util.h"
#include "version.h"

const double krib_metrics_latency_bounds_s[KRIB_METRICS_LATENCY_BUCKETS] = {
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

const char *const krib_metrics_stage_names[KRIB_STAGES] = {"kafka", "queue", "admit", "redis"};

void krib_metrics_hist_fill(krib_metrics_hist_t *out, const krib_hist_t *h, double unit_s) {
        memset(out->le, 0, sizeof(out->le));
        out->count = h->count;
        out->sum_s = (double)h->sum * unit_s;
        /* Overflow samples (past the histogram's range) count only towards +Inf. */
        int b = 0;
        uint64_t below = 0;
        for (int64_t v = 0; v <= KRIB_HIST_MAX_MS && b < KRIB_METRICS_LATENCY_BUCKETS; v++) {
                while (b < KRIB_METRICS_LATENCY_BUCKETS &&
                       (double)v * unit_s > krib_metrics_latency_bounds_s[b] * (1 + 1e-9))
                        out->le[b++] = below;
                below += h->bucket[v];
        }
        for (; b < KRIB_METRICS_LATENCY_BUCKETS; b++)
                out->le[b] = below;
}

void krib_metrics_hist_observe(krib_metrics_hist_t *h, double seconds, uint64_t n) {
        for (int b = KRIB_METRICS_LATENCY_BUCKETS - 1;
             b >= 0 && seconds <= krib_metrics_latency_bounds_s[b]; b--)
                h->le[b] += n;
        h->count += n;
        h->sum_s += seconds * (double)n;
}

void krib_metrics_latency(krib_metrics_snapshot_t *s, const krib_hist_t *h) {
        krib_metrics_hist_t m;
        krib_metrics_hist_fill(&m, h, 1e-3);
        memcpy(s->latency_le, m.le, sizeof(s->latency_le));
        s->latency_count = m.count;
        s->latency_sum_s = m.sum_s;
}

/* The exposition grows as it is written: no node or partition is ever
 * left out for want of room. */
typedef struct {
        char *buf;
        size_t size, len;
        int failed; /* out of memory */
} out_t;

static void emit(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(out_t *o, const char *fmt, ...) {
        for (int attempt = 0; attempt < 2 && !o->failed; attempt++) {
                va_list ap;
                va_start(ap, fmt);
                int n = vsnprintf(o->buf + o->len, o->size - o->len, fmt, ap);
                va_end(ap);
                if (n < 0) {
                        o->failed = 1;
                        return;
                }
                if (o->len + (size_t)n < o->size) {
                        o->len += (size_t)n;
                        return;
                }
                if (krib_util_grow(&o->buf, &o->size, o->len + (size_t)n + 1, 1))
                        o->failed = 1;
        }
}

static void family(out_t *o, const char *name, const char *type, const char *help) {
        emit(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Start time, build and the standard process_* names (so stock dashboards
 * find them): on krib's page and the inspector's alike. role tells them
 * apart ("bridge" or "inspect"), so that a dashboard listing krib instances
 * by krib_build_info can leave the inspectors out. */
static void common(out_t *o, const krib_metrics_process_t *pr, int64_t started_ms,
                   const char *role) {
        family(o, "krib_start_time_seconds", "gauge", "Start of this process (Unix time).");
        emit(o, "krib_start_time_seconds %.3f\n", (double)started_ms / 1000.0);
        family(o, "krib_build_info", "gauge", "krib's version and the libraries it runs on.");
        emit(o,
             "krib_build_info{role=\"%s\",version=\"%s\",librdkafka=\"%s\",hiredis=\"%d.%d.%d\"} "
             "1\n",
             role, KRIB_VERSION, rd_kafka_version_str(), HIREDIS_MAJOR, HIREDIS_MINOR,
             HIREDIS_PATCH);
        family(o, "process_cpu_seconds_total", "counter", "User and system CPU time.");
        emit(o, "process_cpu_seconds_total %.2f\n", pr->cpu_s);
        family(o, "process_resident_memory_bytes", "gauge", "Resident memory.");
        emit(o, "process_resident_memory_bytes %" PRIu64 "\n", pr->rss_bytes);
        family(o, "process_virtual_memory_bytes", "gauge", "Virtual memory.");
        emit(o, "process_virtual_memory_bytes %" PRIu64 "\n", pr->virtual_bytes);
        if (pr->open_fds >= 0) {
                family(o, "process_open_fds", "gauge", "Open file descriptors.");
                emit(o, "process_open_fds %ld\n", pr->open_fds);
        }
        if (pr->max_fds >= 0) {
                family(o, "process_max_fds", "gauge", "Limit on open file descriptors.");
                emit(o, "process_max_fds %ld\n", pr->max_fds);
        }
        family(o, "process_start_time_seconds", "gauge", "Start of this process (Unix time).");
        emit(o, "process_start_time_seconds %.3f\n", (double)started_ms / 1000.0);
}

/* Redis as INFO reports it, per master, and the skew across masters. */
static void masters(out_t *o, const krib_metrics_snapshot_t *s) {
        static const struct {
                const char *name, *type, *help;
                size_t off;
        } g[] = {
                {"krib_redis_used_memory_bytes", "gauge", "INFO used_memory per master.",
                 offsetof(krib_health_master_t, used_memory)},
                {"krib_redis_maxmemory_bytes", "gauge", "INFO maxmemory per master (0: none).",
                 offsetof(krib_health_master_t, maxmemory)},
                {"krib_redis_evicted_keys_total", "counter", "INFO evicted_keys per master.",
                 offsetof(krib_health_master_t, evicted_keys)},
                {"krib_redis_expired_keys_total", "counter", "INFO expired_keys per master.",
                 offsetof(krib_health_master_t, expired_keys)},
                {"krib_redis_ops_per_second", "gauge", "INFO instantaneous_ops_per_sec per master.",
                 offsetof(krib_health_master_t, ops_per_sec)},
                {"krib_redis_rejected_connections_total", "counter",
                 "INFO rejected_connections per master (maxclients reached).",
                 offsetof(krib_health_master_t, rejected_connections)},
                {"krib_redis_connected_clients", "gauge", "INFO connected_clients per master.",
                 offsetof(krib_health_master_t, connected_clients)},
                {"krib_redis_blocked_clients", "gauge", "INFO blocked_clients per master.",
                 offsetof(krib_health_master_t, blocked_clients)},
                {"krib_redis_tracking_clients", "gauge",
                 "INFO tracking_clients per master (client-side caching).",
                 offsetof(krib_health_master_t, tracking_clients)},
                {"krib_redis_tracking_keys", "gauge",
                 "INFO tracking_total_keys per master: keys the server remembers for client-side "
                 "caching (its memory grows with them).",
                 offsetof(krib_health_master_t, tracking_total_keys)},
                {"krib_redis_pubsub_channels", "gauge", "INFO pubsub_channels per master.",
                 offsetof(krib_health_master_t, pubsub_channels)},
                {"krib_redis_keys", "gauge", "Keys per master (INFO keyspace, every db).",
                 offsetof(krib_health_master_t, keys)},
        };
        family(o, "krib_redis_master_up", "gauge",
               "Whether the master answered the last INFO poll (redis.health_interval_ms).");
        for (int i = 0; i < s->nmasters; i++)
                emit(o, "krib_redis_master_up{node=\"%s\"} %d\n", s->masters[i].addr,
                     s->masters[i].up ? 1 : 0);
        for (size_t k = 0; k < sizeof(g) / sizeof(*g); k++) {
                family(o, g[k].name, g[k].type, g[k].help);
                for (int i = 0; i < s->nmasters; i++)
                        if (s->masters[i].polled_ms)
                                emit(o, "%s{node=\"%s\"} %" PRIu64 "\n", g[k].name,
                                     s->masters[i].addr,
                                     *(const uint64_t *)((const char *)&s->masters[i] + g[k].off));
        }
        family(o, "krib_redis_slots", "gauge", "Hash slots owned per master (the slot map).");
        for (int i = 0; i < s->nmasters; i++)
                emit(o, "krib_redis_slots{node=\"%s\"} %d\n", s->masters[i].addr,
                     s->masters[i].slots);
        family(o, "krib_redis_maxmemory_policy", "gauge",
               "The master's maxmemory-policy, as a label (value 1).");
        for (int i = 0; i < s->nmasters; i++)
                if (s->masters[i].polled_ms)
                        emit(o, "krib_redis_maxmemory_policy{node=\"%s\",policy=\"%s\"} 1\n",
                             s->masters[i].addr, s->masters[i].policy);
        krib_health_skew_t sk;
        krib_health_skew(s->masters, s->nmasters > 0 ? (size_t)s->nmasters : 0, &sk);
        family(o, "krib_redis_skew_ratio", "gauge",
               "How far the busiest master is above the mean of the masters (max/mean - 1) for "
               "used memory, ops/s, keys and slots; the alert fires above 0.15.");
        emit(o, "krib_redis_skew_ratio{resource=\"memory\"} %.4f\n", sk.memory);
        emit(o, "krib_redis_skew_ratio{resource=\"ops\"} %.4f\n", sk.ops);
        emit(o, "krib_redis_skew_ratio{resource=\"keys\"} %.4f\n", sk.keys);
        emit(o, "krib_redis_skew_ratio{resource=\"slots\"} %.4f\n", sk.slots);
        family(o, "krib_redis_memory_guard_paused", "gauge",
               "1 while the memory guard (redis.memory_guard_percent) holds consumption.");
        emit(o, "krib_redis_memory_guard_paused %d\n", s->guarded ? 1 : 0);
        family(o, "krib_redis_memory_guard_pauses_total", "counter",
               "Times the memory guard paused consumption.");
        emit(o, "krib_redis_memory_guard_pauses_total %" PRIu64 "\n", s->pipeline.guard_pauses);
}

char *krib_metrics_render(const krib_metrics_snapshot_t *s, size_t *len) {
        out_t o = {malloc(16384), 16384, 0, 0};
        if (!o.buf)
                return NULL;
        const krib_pipeline_stats_t *p = &s->pipeline;
        const krib_writer_stats_t *w = &s->writer;

        family(&o, "krib_events_total", "counter",
               "Events by outcome: consumed from Kafka, then applied, stale (older than their "
               "entity's newest: keys unlinked, value dropped), rejected, failed, "
               "abandoned, skipped (tombstones and other records with nothing to apply) or "
               "dead_lettered (copied to the dead-letter topic).");
        const struct {
                const char *k;
                uint64_t v;
        } ev[] = {{"consumed", p->consumed}, {"applied", p->applied},
                  {"stale", p->stale},       {"rejected", p->rejected},
                  {"failed", p->failed},     {"abandoned", p->abandoned},
                  {"skipped", p->skipped},   {"dead_lettered", p->dead_lettered}};
        for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++)
                emit(&o, "krib_events_total{outcome=\"%s\"} %" PRIu64 "\n", ev[i].k, ev[i].v);

        family(&o, "krib_key_operations_total", "counter",
               "Key operations by outcome in Redis (applied, stale by fence, invalidated as "
               "concurrent) and superseded inside a batch (coalesced).");
        emit(&o, "krib_key_operations_total{outcome=\"applied\"} %" PRIu64 "\n",
             p->keys_done - p->fence_stale - p->fence_invalidated - s->writer.uncached);
        emit(&o, "krib_key_operations_total{outcome=\"fence_stale\"} %" PRIu64 "\n",
             p->fence_stale);
        emit(&o, "krib_key_operations_total{outcome=\"fence_invalidated\"} %" PRIu64 "\n",
             p->fence_invalidated);
        emit(&o, "krib_key_operations_total{outcome=\"not_cached\"} %" PRIu64 "\n",
             s->writer.uncached);
        emit(&o, "krib_key_operations_total{outcome=\"coalesced\"} %" PRIu64 "\n", p->coalesced);
        emit(&o, "krib_key_operations_total{outcome=\"coalesced_older\"} %" PRIu64 "\n",
             p->coalesced_older);

        family(&o, "krib_registry_requests_total", "counter",
               "Schema registry lookups by result: fetched (HTTP answered), cached, unavailable "
               "(retried while consumption waits), unknown (id not found: dead letter).");
        const struct {
                const char *k;
                uint64_t v;
        } rg[] = {{"fetched", p->registry_fetched},
                  {"cached", p->registry_cached},
                  {"unavailable", p->registry_unavailable},
                  {"unknown", p->registry_unknown}};
        for (size_t i = 0; i < sizeof(rg) / sizeof(rg[0]); i++)
                emit(&o, "krib_registry_requests_total{result=\"%s\"} %" PRIu64 "\n", rg[i].k,
                     rg[i].v);

        family(&o, "krib_sweep_keys_total", "counter", "Keys unlinked by tag sweeps (SCAN MATCH).");
        emit(&o, "krib_sweep_keys_total %" PRIu64 "\n", p->sweep_keys);
        family(&o, "krib_sweeps_active", "gauge", "Tag sweeps in progress.");
        emit(&o, "krib_sweeps_active %" PRIu64 "\n", p->sweeps_active);
        family(&o, "krib_sweep_keys_failed_total", "counter",
               "Keys a tag sweep found but Redis refused to unlink.");
        emit(&o, "krib_sweep_keys_failed_total %" PRIu64 "\n", p->sweep_keys_failed);
        family(&o, "krib_sweeps_incomplete_total", "counter",
               "Tag sweeps that ended with refused keys or nodes that refused SCAN for good "
               "(their offsets moved on; the log names them).");
        emit(&o, "krib_sweeps_incomplete_total %" PRIu64 "\n", p->sweeps_incomplete);

        family(&o, "krib_fanout_total", "counter",
               "Change notifications (PUBLISH to a channel, XADD to a stream) Redis acknowledged.");
        emit(&o, "krib_fanout_total %" PRIu64 "\n", p->fanned_out);

        family(&o, "krib_redis_round_trips_total", "counter",
               "Pipelined flushes to one Redis master, each answered in full.");
        emit(&o, "krib_redis_round_trips_total %" PRIu64 "\n", w->round_trips);
        family(&o, "krib_redis_commands_total", "counter", "Redis commands sent and answered.");
        emit(&o, "krib_redis_commands_total %" PRIu64 "\n", w->commands);
        family(&o, "krib_redis_keys_total", "counter", "Keys Redis acknowledged.");
        emit(&o, "krib_redis_keys_total %" PRIu64 "\n", w->keys);
        family(&o, "krib_redis_redirects_total", "counter", "Cluster redirections by kind.");
        emit(&o, "krib_redis_redirects_total{kind=\"moved\"} %" PRIu64 "\n", w->moved);
        emit(&o, "krib_redis_redirects_total{kind=\"ask\"} %" PRIu64 "\n", w->ask);
        family(&o, "krib_redis_retries_total", "counter",
               "Transient Redis errors retried (TRYAGAIN, CLUSTERDOWN, LOADING, ...).");
        emit(&o, "krib_redis_retries_total %" PRIu64 "\n", w->retries);
        family(&o, "krib_redis_errors_total", "counter", "Redis errors that were final for keys.");
        emit(&o, "krib_redis_errors_total %" PRIu64 "\n", w->errors);
        family(&o, "krib_redis_reconnects_total", "counter", "Redis connections re-established.");
        emit(&o, "krib_redis_reconnects_total %" PRIu64 "\n", w->reconnects);
        family(&o, "krib_redis_wait_short_total", "counter",
               "Rounds whose WAIT (redis.wait_replicas) saw too few replicas: their keys were "
               "resent and their offsets waited.");
        emit(&o, "krib_redis_wait_short_total %" PRIu64 "\n", w->wait_short);
        family(&o, "krib_redis_script_splits_total", "counter",
               "Fence script calls that failed as a whole and were resent key by key, so only "
               "the offending event failed.");
        emit(&o, "krib_redis_script_splits_total %" PRIu64 "\n", w->splits);
        family(&o, "krib_redis_topology_refreshes_total", "counter", "CLUSTER SLOTS refreshes.");
        emit(&o, "krib_redis_topology_refreshes_total %" PRIu64 "\n", w->refreshes);
        family(&o, "krib_redis_up", "gauge",
               "Whether the last Redis round went without connection or transient trouble.");
        emit(&o, "krib_redis_up %d\n", s->redis_ok ? 1 : 0);

        family(&o, "krib_redis_keys_per_round_trip", "histogram",
               "Keys sent to one master in one pipelined flush.");
        uint64_t cum = 0;
        for (int b = 0; b < 14; b++) {
                cum += w->keys_per_rt[b];
                emit(&o, "krib_redis_keys_per_round_trip_bucket{le=\"%u\"} %" PRIu64 "\n", 1u << b,
                     cum);
        }
        emit(&o, "krib_redis_keys_per_round_trip_bucket{le=\"+Inf\"} %" PRIu64 "\n",
             cum + w->keys_per_rt[14]);
        emit(&o, "krib_redis_keys_per_round_trip_sum %" PRIu64 "\n", w->rt_keys_sum);
        emit(&o, "krib_redis_keys_per_round_trip_count %" PRIu64 "\n", cum + w->keys_per_rt[14]);

        family(&o, "krib_redis_node_round_trips_total", "counter", "Round trips per Redis node.");
        for (int i = 0; i < s->nnodes; i++)
                emit(&o, "krib_redis_node_round_trips_total{node=\"%s\"} %" PRIu64 "\n",
                     s->nodes[i].addr, s->nodes[i].round_trips);
        family(&o, "krib_redis_node_errors_total", "counter",
               "Error replies (final or transient) per Redis node.");
        for (int i = 0; i < s->nnodes; i++)
                emit(&o, "krib_redis_node_errors_total{node=\"%s\"} %" PRIu64 "\n",
                     s->nodes[i].addr, s->nodes[i].errors);
        family(&o, "krib_redis_node_error_replies_total", "counter",
               "Error replies and connection failures per Redis node by class: conn, busy "
               "(TRYAGAIN, CLUSTERDOWN, LOADING, ...), redirect (MOVED/ASK), oom, auth, final "
               "(not retried).");
        for (int i = 0; i < s->nnodes; i++)
                for (int k = 0; k <= KRIB_ERR_CLASSES; k++)
                        emit(&o,
                             "krib_redis_node_error_replies_total{node=\"%s\",class=\"%s\"} "
                             "%" PRIu64 "\n",
                             s->nodes[i].addr,
                             krib_retry_class_name(k < KRIB_ERR_CLASSES ? (krib_err_class_t)k
                                                                        : KRIB_ERR_FINAL),
                             s->nodes[i].err_class[k]);
        family(&o, "krib_redis_node_connection_failures_total", "counter",
               "Failed connects and lost connections per Redis node.");
        for (int i = 0; i < s->nnodes; i++)
                emit(&o, "krib_redis_node_connection_failures_total{node=\"%s\"} %" PRIu64 "\n",
                     s->nodes[i].addr, s->nodes[i].conn_failures);
        family(&o, "krib_redis_node_round_trip_seconds", "histogram",
               "From the start of a pipelined flush to the node's last reply.");
        for (int i = 0; i < s->nnodes; i++) {
                const krib_writer_node_t *n = &s->nodes[i];
                for (int b = 0; b < KRIB_WRITER_RT_BUCKETS; b++)
                        emit(&o,
                             "krib_redis_node_round_trip_seconds_bucket{node=\"%s\",le=\"%g\"} "
                             "%" PRIu64 "\n",
                             n->addr, krib_writer_rt_bounds_s[b], n->rt_le[b]);
                emit(&o,
                     "krib_redis_node_round_trip_seconds_bucket{node=\"%s\",le=\"+Inf\"} %" PRIu64
                     "\n",
                     n->addr, n->round_trips);
                emit(&o, "krib_redis_node_round_trip_seconds_sum{node=\"%s\"} %.6f\n", n->addr,
                     n->rt_sum_s);
                emit(&o, "krib_redis_node_round_trip_seconds_count{node=\"%s\"} %" PRIu64 "\n",
                     n->addr, n->round_trips);
        }

        family(&o, "krib_redis_breaker_state", "gauge",
               "Circuit breaker per Redis node and for the cluster: 0 closed, 1 open, 2 "
               "half-open.");
        emit(&o, "krib_redis_breaker_state{node=\"cluster\"} %u\n", (unsigned)w->cluster_breaker);
        for (int i = 0; i < s->nnodes; i++)
                emit(&o, "krib_redis_breaker_state{node=\"%s\"} %u\n", s->nodes[i].addr,
                     (unsigned)s->nodes[i].breaker);
        family(&o, "krib_redis_breaker_transitions_total", "counter",
               "Circuit breaker transitions by node and the state entered.");
        static const char *const to[3] = {"closed", "open", "half_open"};
        for (int k = 0; k < 3; k++)
                emit(&o,
                     "krib_redis_breaker_transitions_total{node=\"cluster\",to=\"%s\"} %" PRIu64
                     "\n",
                     to[k], w->cluster_breaker_entered[k]);
        for (int i = 0; i < s->nnodes; i++)
                for (int k = 0; k < 3; k++)
                        emit(&o,
                             "krib_redis_breaker_transitions_total{node=\"%s\",to=\"%s\"} %" PRIu64
                             "\n",
                             s->nodes[i].addr, to[k], s->nodes[i].breaker_entered[k]);

        masters(&o, s);
        family(&o, "krib_dead_letters_total", "counter",
               "Records krib could not apply, by source topic, route (\"\" for krib's own "
               "events), error class, and where they went: dlq (the dead-letter topic) or log.");
        for (int i = 0; i < s->nrejects; i++) {
                const krib_metrics_reject_t *r = &s->rejects[i];
                emit(&o,
                     "krib_dead_letters_total{topic=\"%s\",route=\"%s\",class=\"%s\",to=\"%s\"} "
                     "%" PRIu64 "\n",
                     r->topic, r->route, r->cls, r->dlq ? "dlq" : "log", r->n);
        }
        family(&o, "krib_dead_letter_produce_failures_total", "counter",
               "Dead-letter copies the broker refused or that timed out (each is produced "
               "again; the source offset waits).");
        emit(&o, "krib_dead_letter_produce_failures_total %" PRIu64 "\n", s->dlq_failures);
        family(&o, "krib_in_flight_events", "gauge", "Events read and not yet finished.");
        emit(&o, "krib_in_flight_events %zu\n", s->in_flight);
        family(&o, "krib_assigned_partitions", "gauge", "Partitions assigned to this member.");
        emit(&o, "krib_assigned_partitions %d\n", s->assigned_partitions);
        family(&o, "krib_paused", "gauge", "Whether consumption is paused because Redis fails.");
        emit(&o, "krib_paused %d\n", s->paused ? 1 : 0);
        family(&o, "krib_pauses_total", "counter", "Times consumption was paused for Redis.");
        emit(&o, "krib_pauses_total %" PRIu64 "\n", p->pauses);
        family(&o, "krib_rebalances_total", "counter", "Rebalance callbacks served.");
        emit(&o, "krib_rebalances_total %" PRIu64 "\n", s->rebalances);
        family(&o, "krib_reorder_entities", "gauge", "Entities whose version is remembered.");
        emit(&o, "krib_reorder_entities %zu\n", s->reorder.entities);
        family(&o, "krib_reorder_evictions_total", "counter",
               "Entities forgotten to stay within reorder.max_entities.");
        emit(&o, "krib_reorder_evictions_total %" PRIu64 "\n", s->reorder.evictions);
        family(&o, "krib_batches_total", "counter", "Batches written.");
        emit(&o, "krib_batches_total %" PRIu64 "\n", p->batches);
        family(&o, "krib_poll_wait_seconds_total", "counter",
               "Time the loop spent waiting in poll() for Kafka or Redis, plus reading what the "
               "consumer had.");
        emit(&o, "krib_poll_wait_seconds_total %.3f\n", (double)p->poll_us / 1e6);
        family(&o, "krib_redis_write_seconds_total", "counter",
               "Time spent writing to Redis, retries included.");
        emit(&o, "krib_redis_write_seconds_total %.3f\n", (double)p->write_us / 1e6);

        family(&o, "krib_end_to_end_latency_seconds", "histogram",
               "From the event's ts_ms to Redis' acknowledgement.");
        for (int b = 0; b < KRIB_METRICS_LATENCY_BUCKETS; b++)
                emit(&o, "krib_end_to_end_latency_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                     krib_metrics_latency_bounds_s[b], s->latency_le[b]);
        emit(&o, "krib_end_to_end_latency_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n",
             s->latency_count);
        emit(&o, "krib_end_to_end_latency_seconds_sum %.3f\n", s->latency_sum_s);
        emit(&o, "krib_end_to_end_latency_seconds_count %" PRIu64 "\n", s->latency_count);

        family(&o, "krib_latency_stage_seconds", "histogram",
               "Where an applied event's time went: kafka (message timestamp to taken from the "
               "consumer), queue (taken to its batch's admission), admit (its batch's decode, "
               "reorder and coalescing), redis (submitted to its own keys acknowledged).");
        for (int st = 0; st < KRIB_STAGES; st++) {
                const krib_metrics_hist_t *h = &s->stage[st];
                const char *n = krib_metrics_stage_names[st];
                for (int b = 0; b < KRIB_METRICS_LATENCY_BUCKETS; b++)
                        emit(&o,
                             "krib_latency_stage_seconds_bucket{stage=\"%s\",le=\"%g\"} %" PRIu64
                             "\n",
                             n, krib_metrics_latency_bounds_s[b], h->le[b]);
                emit(&o,
                     "krib_latency_stage_seconds_bucket{stage=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", n,
                     h->count);
                emit(&o, "krib_latency_stage_seconds_sum{stage=\"%s\"} %.6f\n", n, h->sum_s);
                emit(&o, "krib_latency_stage_seconds_count{stage=\"%s\"} %" PRIu64 "\n", n,
                     h->count);
        }
        family(&o, "krib_loop_turn_seconds", "histogram",
               "Time a loop turn spent away from poll() (intake, admission, writing, "
               "bookkeeping): every partition waits that long.");
        for (int b = 0; b < KRIB_METRICS_LATENCY_BUCKETS; b++)
                emit(&o, "krib_loop_turn_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                     krib_metrics_latency_bounds_s[b], s->loop_turn.le[b]);
        emit(&o, "krib_loop_turn_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", s->loop_turn.count);
        emit(&o, "krib_loop_turn_seconds_sum %.6f\n", s->loop_turn.sum_s);
        emit(&o, "krib_loop_turn_seconds_count %" PRIu64 "\n", s->loop_turn.count);

        family(&o, "krib_consumer_lag", "gauge",
               "Messages behind the log end per assigned partition (librdkafka statistics).");
        for (int i = 0; i < s->nlag; i++)
                if (s->lag[i].lag >= 0)
                        emit(&o, "krib_consumer_lag{topic=\"%s\",partition=\"%d\"} %" PRId64 "\n",
                             s->lag[i].topic, (int)s->lag[i].partition, s->lag[i].lag);
        family(&o, "krib_committed_offset", "gauge",
               "Committed offset per assigned partition (librdkafka statistics).");
        for (int i = 0; i < s->nlag; i++)
                if (s->lag[i].committed >= 0)
                        emit(&o,
                             "krib_committed_offset{topic=\"%s\",partition=\"%d\"} %" PRId64 "\n",
                             s->lag[i].topic, (int)s->lag[i].partition, s->lag[i].committed);
        common(&o, &s->process, s->started_ms, "bridge");
        if (o.failed) {
                free(o.buf);
                return NULL;
        }
        *len = o.len;
        return o.buf;
}

void krib_metrics_process(krib_metrics_process_t *out) {
        memset(out, 0, sizeof(*out));
        out->open_fds = out->max_fds = -1;
        FILE *f = fopen("/proc/self/stat", "r");
        if (f) {
                /* Fields 14-15 (utime, stime, ticks), 23 (vsize, bytes), 24
                 * (rss, pages); the command name (2) may hold spaces, so
                 * parsing starts after its closing parenthesis. */
                char line[1024];
                if (fgets(line, sizeof(line), f)) {
                        char *p = strrchr(line, ')');
                        unsigned long ut = 0, st = 0, vsize = 0;
                        long rss = 0;
                        if (p && sscanf(p + 2,
                                        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d "
                                        "%*d %*d %*d %*d %*d %*u %lu %ld",
                                        &ut, &st, &vsize, &rss) == 4) {
                                long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
                                out->cpu_s = (double)(ut + st) / (double)(hz > 0 ? hz : 100);
                                out->virtual_bytes = vsize;
                                out->rss_bytes = (uint64_t)rss * (uint64_t)(page > 0 ? page : 4096);
                        }
                }
                fclose(f);
        }
        DIR *d = opendir("/proc/self/fd");
        if (d) {
                long n = 0;
                for (struct dirent *e; (e = readdir(d));)
                        n += e->d_name[0] != '.';
                closedir(d);
                out->open_fds = n - 1; /* the directory's own descriptor */
        }
        struct rlimit rl;
        if (!getrlimit(RLIMIT_NOFILE, &rl))
                out->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;
}

int krib_metrics_live(const krib_metrics_snapshot_t *s, int64_t now_ms, int64_t stall_ms) {
        return s->loop_at_ms && now_ms - s->loop_at_ms <= stall_ms;
}

int krib_metrics_ready(const krib_metrics_snapshot_t *s, int64_t now_ms, int64_t stall_ms) {
        return krib_metrics_live(s, now_ms, stall_ms) && s->joined && s->redis_ok;
}

struct krib_metrics {
        struct MHD_Daemon *daemon;
        pthread_mutex_t lock;
        krib_metrics_snapshot_t snap; /* its arrays point at the two below */
        krib_writer_node_t *nodes;
        size_t nodes_cap;
        krib_partition_lag_t *lag;
        size_t lag_cap;
        krib_health_master_t *masters;
        size_t masters_cap;
        krib_metrics_reject_t *rejects;
        size_t rejects_cap;
        /* Text mode (krib inspect): the page is the caller's text. */
        int text_mode, text_ready;
        char *text;
        size_t text_len;
};

static char *render_text(krib_metrics_t *m, const krib_metrics_process_t *proc, size_t *len) {
        out_t o = {malloc(m->text_len + 4096), m->text_len + 4096, 0, 0};
        if (!o.buf)
                return NULL;
        memcpy(o.buf, m->text ? m->text : "", m->text_len);
        o.len = m->text_len;
        o.buf[o.len] = '\0';
        common(&o, proc, m->snap.started_ms, "inspect");
        if (o.failed) {
                free(o.buf);
                return NULL;
        }
        *len = o.len;
        return o.buf;
}

#define STALL_MS 30000

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type,
                             const char *body, size_t len) {
        struct MHD_Response *r =
                MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
        if (!r)
                return MHD_NO;
        MHD_add_response_header(r, "Content-Type", type);
        enum MHD_Result ret = MHD_queue_response(c, code, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state) {
        (void)version;
        (void)upload;
        (void)upload_size;
        (void)state;
        krib_metrics_t *m = cls;
        if (strcmp(method, "GET") && strcmp(method, "HEAD"))
                return reply(c, 405, "text/plain", "method not allowed\n", 19);
        int64_t now = krib_clock_wall_ms();
        if (!strcmp(url, "/metrics")) {
                krib_metrics_process_t proc;
                krib_metrics_process(&proc);
                size_t len = 0;
                /* Rendered under the lock: the arrays belong to the snapshot
                 * the next publish overwrites. */
                pthread_mutex_lock(&m->lock);
                m->snap.process = proc;
                char *text = m->text_mode ? render_text(m, &proc, &len)
                                          : krib_metrics_render(&m->snap, &len);
                pthread_mutex_unlock(&m->lock);
                if (!text)
                        return reply(c, 500, "text/plain", "out of memory\n", 14);
                struct MHD_Response *r =
                        MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
                if (!r) {
                        free(text);
                        return MHD_NO;
                }
                MHD_add_response_header(r, "Content-Type",
                                        "text/plain; version=0.0.4; charset=utf-8");
                enum MHD_Result ret = MHD_queue_response(c, 200, r);
                MHD_destroy_response(r);
                return ret;
        }
        krib_metrics_snapshot_t s;
        pthread_mutex_lock(&m->lock);
        s = m->snap; /* only its scalars are read below */
        pthread_mutex_unlock(&m->lock);
        if (!strcmp(url, "/healthz")) {
                int ok = krib_metrics_live(&s, now, STALL_MS);
                return ok ? reply(c, 200, "text/plain", "ok\n", 3)
                          : reply(c, 503, "text/plain", "pipeline loop stalled\n", 22);
        }
        if (!strcmp(url, "/readyz")) {
                char why[128];
                if (m->text_mode)
                        return krib_metrics_live(&s, now, STALL_MS) && m->text_ready
                                       ? reply(c, 200, "text/plain", "ready\n", 6)
                                       : reply(c, 503, "text/plain", "not ready\n", 10);
                if (krib_metrics_ready(&s, now, STALL_MS))
                        return reply(c, 200, "text/plain", "ready\n", 6);
                int n = snprintf(why, sizeof(why), "not ready: live=%d joined=%d redis_up=%d\n",
                                 krib_metrics_live(&s, now, STALL_MS), s.joined, s.redis_ok);
                return reply(c, 503, "text/plain", why, (size_t)n);
        }
        return reply(c, 404, "text/plain", "not found: try /metrics /healthz /readyz\n", 42);
}

krib_metrics_t *krib_metrics_new(const char *address, int port, char *errstr, size_t errstr_size) {
        krib_metrics_t *m = calloc(1, sizeof(*m));
        if (!m) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        pthread_mutex_init(&m->lock, NULL);
        m->snap.started_ms = krib_clock_wall_ms();
        if (!port)
                return m;
        struct sockaddr_in sa;
        struct sockaddr_in6 sa6;
        memset(&sa, 0, sizeof(sa));
        memset(&sa6, 0, sizeof(sa6));
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)port);
        sa6.sin6_family = AF_INET6;
        sa6.sin6_port = htons((uint16_t)port);
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
        struct sockaddr *addr = (struct sockaddr *)&sa;
        if (inet_pton(AF_INET, address, &sa.sin_addr) != 1) {
                if (inet_pton(AF_INET6, address, &sa6.sin6_addr) != 1) {
                        snprintf(errstr, errstr_size,
                                 "metrics.address: '%s' is not an IPv4 or IPv6 address", address);
                        krib_metrics_destroy(m);
                        return NULL;
                }
                addr = (struct sockaddr *)&sa6;
                /* "::" serves IPv4 clients too, as operators expect of it. */
                flags |=
                        IN6_IS_ADDR_UNSPECIFIED(&sa6.sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
        }
        m->daemon = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handle, m,
                                     MHD_OPTION_SOCK_ADDR, addr, MHD_OPTION_CONNECTION_TIMEOUT,
                                     (unsigned int)10, MHD_OPTION_END);
        if (!m->daemon) {
                snprintf(errstr, errstr_size, "cannot listen on %s:%d for metrics", address, port);
                krib_metrics_destroy(m);
                return NULL;
        }
        return m;
}

krib_metrics_t *krib_metrics_new_text(const char *address, int port, char *errstr,
                                      size_t errstr_size) {
        krib_metrics_t *m = krib_metrics_new(address, port, errstr, errstr_size);
        if (m)
                m->text_mode = 1;
        return m;
}

void krib_metrics_publish_text(krib_metrics_t *m, const char *text, size_t len, int ready) {
        char *copy = malloc(len + 1);
        if (!copy)
                return; /* the last page stays; liveness shows the loop */
        memcpy(copy, text, len);
        copy[len] = '\0';
        pthread_mutex_lock(&m->lock);
        free(m->text);
        m->text = copy;
        m->text_len = len;
        m->text_ready = ready;
        m->snap.loop_at_ms = krib_clock_wall_ms();
        pthread_mutex_unlock(&m->lock);
}

void krib_metrics_publish(krib_metrics_t *m, const krib_metrics_snapshot_t *s) {
        pthread_mutex_lock(&m->lock);
        int64_t started = m->snap.started_ms;
        m->snap = *s;
        m->snap.started_ms = started;
        /* Deep copies, grown as the cluster or the assignment grows; out of
         * memory keeps what fits rather than nothing. */
        size_t nn = s->nnodes > 0 ? (size_t)s->nnodes : 0, nl = s->nlag > 0 ? (size_t)s->nlag : 0;
        if (krib_util_grow(&m->nodes, &m->nodes_cap, nn, sizeof(*m->nodes)))
                nn = m->nodes_cap;
        if (krib_util_grow(&m->lag, &m->lag_cap, nl, sizeof(*m->lag)))
                nl = m->lag_cap;
        if (nn)
                memcpy(m->nodes, s->nodes, nn * sizeof(*m->nodes));
        if (nl)
                memcpy(m->lag, s->lag, nl * sizeof(*m->lag));
        m->snap.nodes = m->nodes;
        m->snap.nnodes = (int)nn;
        m->snap.lag = m->lag;
        m->snap.nlag = (int)nl;
        size_t nm = s->nmasters > 0 ? (size_t)s->nmasters : 0;
        size_t nr = s->nrejects > 0 ? (size_t)s->nrejects : 0;
        if (krib_util_grow(&m->masters, &m->masters_cap, nm, sizeof(*m->masters)))
                nm = m->masters_cap;
        if (krib_util_grow(&m->rejects, &m->rejects_cap, nr, sizeof(*m->rejects)))
                nr = m->rejects_cap;
        if (nm)
                memcpy(m->masters, s->masters, nm * sizeof(*m->masters));
        if (nr)
                memcpy(m->rejects, s->rejects, nr * sizeof(*m->rejects));
        m->snap.masters = m->masters;
        m->snap.nmasters = (int)nm;
        m->snap.rejects = m->rejects;
        m->snap.nrejects = (int)nr;
        pthread_mutex_unlock(&m->lock);
}

void krib_metrics_destroy(krib_metrics_t *m) {
        if (!m)
                return;
        if (m->daemon)
                MHD_stop_daemon(m->daemon);
        pthread_mutex_destroy(&m->lock);
        free(m->nodes);
        free(m->lag);
        free(m->masters);
        free(m->rejects);
        free(m->text);
        free(m);
}
