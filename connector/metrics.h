/* metrics: what the pipeline reports to the outside — Prometheus text on
 * /metrics, liveness on /healthz, readiness on /readyz — served by
 * libmicrohttpd on its own thread.
 *
 * The pipeline thread publishes a snapshot (krib_metrics_publish, at most
 * every 250 ms, also while the writer retries); the HTTP thread only reads
 * the last snapshot under a mutex, so a scrape never touches live state.
 * Rendering and the health rules are pure functions, unit-tested without
 * a server.
 */
#ifndef KRIB_METRICS_H
#define KRIB_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "consumer.h"
#include "health.h"
#include "hist.h"
#include "pipeline.h"
#include "reorder.h"
#include "writer.h"

#define KRIB_METRICS_LATENCY_BUCKETS 15

/* The process as the kernel sees it (read by the HTTP thread per scrape). */
typedef struct {
        double cpu_s;
        uint64_t rss_bytes, virtual_bytes;
        long open_fds, max_fds; /* -1: unknown */
} krib_metrics_process_t;

/* Records krib could not apply, by source topic, route and error class;
 * dlq: copied to the dead-letter topic (else only logged). */
typedef struct {
        char topic[256];
        char route[64];
        char cls[32];
        int dlq;
        uint64_t n;
} krib_metrics_reject_t;

/* A histogram over krib_metrics_latency_bounds_s: cumulative counts per
 * upper bound (seconds), count and sum. */
typedef struct {
        uint64_t le[KRIB_METRICS_LATENCY_BUCKETS];
        uint64_t count;
        double sum_s;
} krib_metrics_hist_t;

/* Where an applied event's time went (krib_latency_stage_seconds). */
enum { KRIB_STAGE_KAFKA = 0, KRIB_STAGE_QUEUE, KRIB_STAGE_ADMIT, KRIB_STAGE_REDIS, KRIB_STAGES };
extern const char *const krib_metrics_stage_names[KRIB_STAGES];

typedef struct {
        krib_pipeline_stats_t pipeline;
        krib_writer_stats_t writer;
        krib_reorder_stats_t reorder;
        size_t in_flight;
        int assigned_partitions;
        int paused;
        int joined;   /* a rebalance assigned this member (maybe nothing) */
        int redis_ok; /* the last Redis round had no connection/transient trouble */
        uint64_t rebalances;
        /* End-to-end latency, cumulative per upper bound (seconds). */
        uint64_t latency_le[KRIB_METRICS_LATENCY_BUCKETS];
        uint64_t latency_count;
        double latency_sum_s;
        krib_metrics_hist_t stage[KRIB_STAGES];
        krib_metrics_hist_t loop_turn; /* a loop turn's time away from poll() */
        /* Every Redis node and every assigned partition: arrays owned by
         * whoever filled the snapshot (the server keeps its own copies). */
        const krib_writer_node_t *nodes;
        int nnodes;
        const krib_partition_lag_t *lag; /* from librdkafka stats */
        int nlag;
        const krib_health_master_t *masters; /* INFO figures (health.h) */
        int nmasters;
        int guarded; /* the memory guard holds consumption */
        const krib_metrics_reject_t *rejects;
        int nrejects;
        uint64_t dlq_failures; /* dead-letter produce attempts that failed */
        krib_metrics_process_t process;
        int64_t loop_at_ms; /* wall clock of the last publish */
        int64_t started_ms;
} krib_metrics_snapshot_t;

extern const double krib_metrics_latency_bounds_s[KRIB_METRICS_LATENCY_BUCKETS];

/* Fills the latency fields of s from h. */
void krib_metrics_latency(krib_metrics_snapshot_t *s, const krib_hist_t *h);

/* Fills out from h, whose values count unit_s seconds each (1e-3: ms). */
void krib_metrics_hist_fill(krib_metrics_hist_t *out, const krib_hist_t *h, double unit_s);

/* Counts n samples of the given seconds into h directly (for figures krib
 * keeps no 1 ms histogram of: sub-millisecond and minute-long alike). */
void krib_metrics_hist_observe(krib_metrics_hist_t *h, double seconds, uint64_t n);

/* Prometheus text exposition of s, however many nodes and partitions: a
 * malloc'd string (caller frees) of *len bytes, or NULL out of memory. */
char *krib_metrics_render(const krib_metrics_snapshot_t *s, size_t *len);

/* Reads this process's CPU time, memory and descriptors from /proc. */
void krib_metrics_process(krib_metrics_process_t *out);

/* Liveness: the loop published within stall_ms. Readiness: live, joined the
 * group, and Redis answering. */
int krib_metrics_live(const krib_metrics_snapshot_t *s, int64_t now_ms, int64_t stall_ms);
int krib_metrics_ready(const krib_metrics_snapshot_t *s, int64_t now_ms, int64_t stall_ms);

typedef struct krib_metrics krib_metrics_t;

/* Starts the HTTP server on address:port (port 0: no server, publishing
 * still works). NULL + errstr when the port cannot be bound. */
krib_metrics_t *krib_metrics_new(const char *address, int port, char *errstr, size_t errstr_size);

/* A server for another page (krib inspect): /metrics serves the text last
 * published (plus the process metrics), /healthz whether it was published
 * within the stall limit, /readyz that and the caller's ready flag. */
krib_metrics_t *krib_metrics_new_text(const char *address, int port, char *errstr,
                                      size_t errstr_size);
void krib_metrics_publish_text(krib_metrics_t *m, const char *text, size_t len, int ready);

/* Copies s as the snapshot served from now on (s borrowed until return). */
void krib_metrics_publish(krib_metrics_t *m, const krib_metrics_snapshot_t *s);

/* Stops the server and frees. Accepts NULL. */
void krib_metrics_destroy(krib_metrics_t *m);

#endif
