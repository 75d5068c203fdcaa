/* conf: krib's configuration, described once in a table (conf.c) that drives
 * defaults, libconfig parsing, environment overrides, validation and
 * --help-config.
 *
 * Sources, later wins: table defaults < config file < environment
 * (KRIB_<NAME> with '.' -> '_' and upper case, e.g. KRIB_REDIS_NODES; list
 * values in the environment are comma-separated, "\," is a literal comma).
 * kafka.properties and redis.address_map from the environment merge with the
 * file's per name (the part before '='); KRIB_KAFKA_PROPERTIES_REPLACE=true
 * replaces the file's list instead. Every change is noted for the log.
 */
#ifndef KRIB_CONF_H
#define KRIB_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
        char **v;
        size_t n;
} krib_strlist_t;

typedef enum { KRIB_REDIS_CLUSTER = 0, KRIB_REDIS_STANDALONE = 1 } krib_redis_mode_t;
/* Which versioned events go through the fence script: all of them, or only
 * UPSERTs (DELETEs then become plain UNLINKs: faster, but a late older
 * UPSERT after a krib restart is caught only if a fence exists). */
typedef enum {
        KRIB_FENCE_ALL = 0,
        KRIB_FENCE_UPSERTS = 1,
        KRIB_FENCE_VERSIONED = 2
} krib_fence_mode_t;

/* errors.tolerance, named after Kafka Connect's: on a record krib cannot
 * apply, stop (none: exit non-zero, its offset not committed) or dead-letter
 * (or log) it and go on (all). */
typedef enum { KRIB_TOLERANCE_NONE = 0, KRIB_TOLERANCE_ALL = 1 } krib_tolerance_t;

typedef struct krib_conf {
        char *kafka_brokers;
        char *kafka_group_id;
        krib_strlist_t kafka_topics;
        krib_strlist_t kafka_properties; /* "name=value", passed to librdkafka */
        char *kafka_sasl_password;       /* -> sasl.password */
        char *kafka_sasl_password_file;

        int64_t redis_mode; /* krib_redis_mode_t */
        krib_strlist_t redis_nodes;
        char *redis_username;
        char *redis_password;
        char *redis_password_file;
        int64_t redis_connect_timeout_ms;
        int64_t redis_command_timeout_ms;
        int64_t redis_max_keys_per_command;
        int64_t redis_max_command_bytes;
        int64_t redis_wait_replicas, redis_wait_timeout_ms;
        int64_t redis_fence; /* krib_fence_mode_t */
        int64_t redis_fence_ttl_ms;
        krib_strlist_t redis_address_map; /* "host:port=host:port" */
        int64_t redis_sweep_count;
        int64_t redis_retry_base_ms, redis_retry_cap_ms;
        int64_t redis_budget_conn, redis_budget_busy, redis_budget_redirect;
        int64_t redis_breaker_open_ms, redis_breaker_open_max_ms;
        int64_t redis_tls, redis_tls_verify; /* bool */
        char *redis_tls_ca_file, *redis_tls_cert_file, *redis_tls_key_file;
        char *redis_tls_server_name;

        int64_t decode_format;    /* krib_wire_t (schemas.h) */
        char *decode_schema_file; /* resolved against the config file's directory */
        char *decode_schema_dir;  /* likewise */

        int64_t pipeline_batch_max_events;
        int64_t pipeline_linger_ms;
        char *pipeline_latency_trace_file; /* "": off */
        int64_t pipeline_max_in_flight_events, pipeline_max_in_flight_bytes;
        int64_t pipeline_batch_max_bytes;
        int64_t pipeline_shutdown_timeout_ms;
        int64_t reorder_max_entities;
        int64_t limits_max_key_bytes, limits_max_keys_per_event, limits_max_origins;

        char *dlq_topic; /* "" : no dead-letter topic */
        char *registry_url;
        int64_t registry_timeout_ms;

        /* krib inspect (inspect.h) */
        krib_strlist_t inspect_delays_ms; /* decimal ms, validated by finalize */
        double inspect_sample_ratio;
        int64_t inspect_budget_per_s;
        int64_t inspect_fills; /* 0 unguarded, 1 guarded */
        int64_t inspect_window_s;
        int64_t inspect_metrics_port;

        char *metrics_address;
        int64_t metrics_port; /* 0: no HTTP server */

        int64_t log_level;  /* krib_log_level_t */
        int64_t log_format; /* krib_log_format_t */
        int64_t log_stats_interval_ms;

        int64_t errors_tolerance;           /* krib_tolerance_t */
        int64_t redis_health_interval_ms;   /* INFO of every master (0: never) */
        int64_t redis_memory_guard_percent; /* 0: no guard */

        struct krib_routes *routes; /* the `routes` list (route.h); never NULL after init */

        /* Where each row's value came from ("file:line", "environment
         * KRIB_X"; NULL: the default), for messages that name the source. */
        char **origins;
        /* What the environment changed over the file, for the log once it
         * is set up ("KRIB_X: name: old -> new"). */
        krib_strlist_t notes;
        /* Settings krib leaves out, with why (logged as warnings, printed
         * by --check-config). */
        krib_strlist_t warnings;

        char *source_dir; /* directory of the config file, for relative paths */
} krib_conf_t;

/* Fills conf with the table defaults. Returns 0, or -1 on allocation failure. */
int krib_conf_init(krib_conf_t *conf);

/* Reads path over the current values. On error returns -1 and writes
 * "file:line: message" into errstr. Unknown keys, wrong types and values out
 * of bounds are errors. */
int krib_conf_load_file(krib_conf_t *conf, const char *path, char *errstr, size_t errstr_size);

/* Applies KRIB_* variables from envp (NULL-terminated, "NAME=value").
 * KRIB_* names that match no key are listed in warn (comma-separated; empty
 * when none) for the caller to report: a typo should be seen, but foreign
 * variables with the same prefix must not stop start-up. */
int krib_conf_load_env(krib_conf_t *conf, char *const *envp, char *warn, size_t warn_size,
                       char *errstr, size_t errstr_size);

/* "key (file:line)", "key (environment KRIB_X)" or "key (default)" into
 * buf: how an error about key names it and where its value came from. */
const char *krib_conf_where(const krib_conf_t *conf, const char *key, char *buf, size_t size);

/* Cross-key checks; run once after all sources. */
int krib_conf_finalize(krib_conf_t *conf, char *errstr, size_t errstr_size);

/* librdkafka properties krib's correctness rests on: kafka.properties may
 * not set them (NULL-terminated). */
extern const char *const krib_conf_kafka_owned[];

/* krib's consumer defaults, {name, value, why} rows ending in {NULL}:
 * kafka.properties overrides any of them. */
extern const char *const krib_conf_kafka_defaults[][3];

/* 1 when kafka.properties chooses the KIP-848 consumer group protocol
 * (group.protocol=consumer): the broker assigns partitions and owns the
 * session and heartbeat timing, so the classic protocol's properties
 * (krib's partition.assignment.strategy default, a session.timeout.ms from
 * the shipped file) are left out, with a warning for those that were set. */
int krib_conf_kafka_consumer_protocol(const krib_conf_t *conf);

/* Whether the librdkafka property `name` is passed on under conf (above). */
int krib_conf_kafka_property_applies(const krib_conf_t *conf, const char *name);

/* Frees what conf owns; conf itself is the caller's. Safe on a zeroed or
 * half-initialised conf. */
void krib_conf_destroy(krib_conf_t *conf);

/* Prints the table (name, type, default, bounds, env name, description). */
void krib_conf_print_help(FILE *fp);

/* Prints the effective configuration, secrets redacted, routes included. */
void krib_conf_print(const krib_conf_t *conf, FILE *fp);

/* Number of rows and the name of row i, for tests over every row. */
size_t krib_conf_row_count(void);
const char *krib_conf_row_name(size_t i);

#endif
