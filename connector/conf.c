#include "conf.h"

#include <librdkafka/rdkafka.h>

#include "route.h"
#include "topo.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libconfig.h>
#include <regex.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { T_STR, T_INT, T_BOOL, T_LIST, T_ENUM, T_REAL } row_type_t;

typedef struct {
        const char *name;
        row_type_t type;
        size_t offset;
        const char *def; /* default, in the form an environment variable takes */
        int64_t min, max;
        const char *const *enums; /* T_ENUM: symbol i maps to value i */
        const char *doc;
        int secret;
} row_t;

static const char *const redis_modes[] = {"cluster", "standalone", NULL};
static const char *const formats[] = {"auto", "avro-raw", "avro-single-object", NULL};
static const char *const fence_modes[] = {"all", "upserts", "versioned", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_formats[] = {"logfmt", "json", NULL};
static const char *const tolerances[] = {"none", "all", NULL};
static const char *const fill_kinds[] = {"unguarded", "guarded", NULL};

#define F(field) offsetof(krib_conf_t, field)

/* The one description of krib's configuration. */
static const row_t rows[] = {
        {"kafka.brokers", T_STR, F(kafka_brokers), "127.0.0.1:19092", 0, 0, NULL,
         "Bootstrap brokers (librdkafka bootstrap.servers).", 0},
        {"kafka.group_id", T_STR, F(kafka_group_id), "krib", 0, 0, NULL,
         "Consumer group; instances sharing it split the partitions.", 0},
        {"kafka.topics", T_LIST, F(kafka_topics), "", 0, 0, NULL,
         "Topics to consume; an entry starting with '^' is a regex.", 0},
        {"kafka.properties", T_LIST, F(kafka_properties), "", 0, 0, NULL,
         "Extra librdkafka consumer properties as \"name=value\" strings, checked by librdkafka "
         "at load time. They override krib's consumer defaults (client.id=krib, "
         "auto.offset.reset=earliest, auto.commit.interval.ms=1000, "
         "partition.assignment.strategy=cooperative-sticky, ...: --print-config lists them); "
         "bootstrap.servers, group.id, enable.auto.commit and enable.auto.offset.store are "
         "krib's.",
         0},
        {"kafka.sasl_password", T_STR, F(kafka_sasl_password), "", 0, 0, NULL,
         "librdkafka sasl.password (SASL PLAIN/SCRAM), kept out of kafka.properties so that it "
         "can come from the environment or a file.",
         1},
        {"kafka.sasl_password_file", T_STR, F(kafka_sasl_password_file), "", 0, 0, NULL,
         "File holding kafka.sasl_password (a mounted secret; one trailing newline is ignored).",
         0},
        {"redis.mode", T_ENUM, F(redis_mode), "cluster", 0, 0, redis_modes,
         "cluster: route by hash slot; standalone: one server owns every key.", 0},
        {"redis.nodes", T_LIST, F(redis_nodes), "127.0.0.1:19100", 0, 0, NULL,
         "Seed nodes host:port; the cluster topology is discovered from them.", 0},
        {"redis.username", T_STR, F(redis_username), "", 0, 0, NULL,
         "ACL user for AUTH (empty: default user).", 0},
        {"redis.password", T_STR, F(redis_password), "", 0, 0, NULL,
         "Password for AUTH (empty: no AUTH).", 1},
        {"redis.password_file", T_STR, F(redis_password_file), "", 0, 0, NULL,
         "File holding the password (a mounted secret; one trailing newline is ignored).", 0},
        {"redis.connect_timeout_ms", T_INT, F(redis_connect_timeout_ms), "1000", 1, 600000, NULL,
         "TCP connect timeout per node.", 0},
        {"redis.command_timeout_ms", T_INT, F(redis_command_timeout_ms), "5000", 1, 600000, NULL,
         "Longest wait for a reply (pipelined, or a synchronous command as a whole however the "
         "node trickles its bytes); a node that exceeds it is reconnected.",
         0},
        {"redis.max_keys_per_command", T_INT, F(redis_max_keys_per_command), "64", 1, 100000, NULL,
         "Keys of one slot per UNLINK command.", 0},
        {"redis.wait_replicas", T_INT, F(redis_wait_replicas), "0", 0, 64, NULL,
         "After each round of writes, WAIT for this many replicas of every master written to "
         "before the events count as acknowledged (offsets stored); a shortfall is retried like "
         "a transient error. 0: a master's OK suffices (a failover right after it can lose the "
         "write).",
         0},
        {"redis.wait_timeout_ms", T_INT, F(redis_wait_timeout_ms), "1000", 1, 600000, NULL,
         "Timeout of one WAIT; must be below redis.command_timeout_ms.", 0},
        {"redis.max_command_bytes", T_INT, F(redis_max_command_bytes), "1048576", 1024, 536870912,
         NULL,
         "About the most bytes of one command (keys, values, versions): a chunk of one slot is "
         "cut here as well as at redis.max_keys_per_command, so one command never holds a node "
         "for long. A single larger key operation is still sent, alone.",
         0},
        {"redis.fence", T_ENUM, F(redis_fence), "versioned", 0, 0, fence_modes,
         "How versions are kept in Redis (docs/ARCHITECTURE.md, \"Fence modes\"): all (every "
         "versioned DELETE leaves a fence for fence_ttl_ms, through the Lua script), upserts "
         "(DELETEs are plain UNLINKs; fences only from write-throughs), or versioned (DELETEs "
         "are plain UNLINKs of the key and its fence, a fence lives only beside a cached value, "
         "write-through updates only values whose older version is known, fills take a lease).",
         0},
        {"redis.fence_ttl_ms", T_INT, F(redis_fence_ttl_ms), "86400000", 0, INT64_MAX / 2, NULL,
         "Expiry of a version fence after its last update (0: never). A late event older than "
         "this can no longer be recognised as stale by Redis.",
         0},
        {"redis.address_map", T_LIST, F(redis_address_map), "", 0, 0, NULL,
         "Address translation \"announced_host:port=reachable_host:port\" for nodes that "
         "announce addresses krib cannot reach directly (NAT, port forwarding, proxies).",
         0},
        {"redis.sweep_count", T_INT, F(redis_sweep_count), "1000", 1, 1000000, NULL,
         "COUNT of one SCAN step of a tag sweep: the most keys a sweep examines (and unlinks) "
         "between two batches of normal traffic.",
         0},
        {"redis.retry_base_ms", T_INT, F(redis_retry_base_ms), "10", 0, 60000, NULL,
         "First retry delay after a connection error or a TRYAGAIN/CLUSTERDOWN/LOADING reply; "
         "doubles per attempt, with full jitter.",
         0},
        {"redis.retry_cap_ms", T_INT, F(redis_retry_cap_ms), "1000", 1, 600000, NULL,
         "Largest retry delay.", 0},
        {"redis.budget_conn", T_INT, F(redis_budget_conn), "3", 1, 1000000, NULL,
         "Consecutive connection failures of a node before its circuit breaker opens.", 0},
        {"redis.budget_busy", T_INT, F(redis_budget_busy), "20", 1, 1000000, NULL,
         "Consecutive TRYAGAIN/CLUSTERDOWN/LOADING/MASTERDOWN/BUSY/READONLY replies of a node "
         "before its circuit breaker opens.",
         0},
        {"redis.budget_redirect", T_INT, F(redis_budget_redirect), "64", 1, 1000000, NULL,
         "Consecutive MOVED/ASK rounds before the cluster breaker opens (a slot map that does "
         "not settle).",
         0},
        {"redis.breaker_open_ms", T_INT, F(redis_breaker_open_ms), "500", 1, 600000, NULL,
         "How long an open circuit breaker waits before its first probe (PING, CLUSTER INFO, "
         "INFO memory); doubles on every failed probe.",
         0},
        {"redis.breaker_open_max_ms", T_INT, F(redis_breaker_open_max_ms), "10000", 1, 3600000,
         NULL, "Longest wait between probes of an open breaker.", 0},
        {"redis.tls", T_BOOL, F(redis_tls), "false", 0, 0, NULL,
         "Connect to every node over TLS (Redis tls-port; with tls-cluster the cluster announces "
         "its TLS ports).",
         0},
        {"redis.tls_ca_file", T_STR, F(redis_tls_ca_file), "", 0, 0, NULL,
         "PEM file of the CAs that sign the nodes' certificates (empty: the system store).", 0},
        {"redis.tls_cert_file", T_STR, F(redis_tls_cert_file), "", 0, 0, NULL,
         "Client certificate (PEM chain) for servers with tls-auth-clients yes.", 0},
        {"redis.tls_key_file", T_STR, F(redis_tls_key_file), "", 0, 0, NULL,
         "Private key of the client certificate (PEM; empty: in tls_cert_file).", 0},
        {"redis.tls_server_name", T_STR, F(redis_tls_server_name), "", 0, 0, NULL,
         "Name (or IP) the certificates must carry, and the SNI sent (empty: each node's host).",
         0},
        {"redis.tls_verify", T_BOOL, F(redis_tls_verify), "true", 0, 0, NULL,
         "Verify the server's certificate chain and name. Turn off only to debug.", 0},
        {"redis.health_interval_ms", T_INT, F(redis_health_interval_ms), "5000", 0, 3600000, NULL,
         "Period of the INFO poll of every master, on connections of its own in a thread of its "
         "own (memory, evictions, ops, clients, keys; the skew gauges and the memory guard "
         "read it). 0: never.",
         0},
        {"redis.memory_guard_percent", T_INT, F(redis_memory_guard_percent), "0", 0, 100, NULL,
         "Pause consumption while a master's used_memory is above this share of its maxmemory "
         "and its maxmemory-policy can answer OOM (noeviction, volatile-*); with allkeys-* "
         "policies Redis evicts instead and nothing pauses. 0 (default): no guard. Set it (e.g. "
         "90) when krib writes values (write-through, fence = all, streams); an "
         "invalidation-only deployment is better off without: UNLINK is allowed even at OOM, "
         "and pausing would leave stale values cached.",
         0},
        {"registry.url", T_STR, F(registry_url), "", 0, 0, NULL,
         "Confluent Schema Registry base URL for routes with format debezium-avro (writer "
         "schemas by id, cached).",
         0},
        {"registry.timeout_ms", T_INT, F(registry_timeout_ms), "5000", 100, 600000, NULL,
         "Timeout of one registry request; an unavailable registry is retried, pausing "
         "consumption, never dead-lettering.",
         0},
        {"dlq.topic", T_STR, F(dlq_topic), "", 0, 0, NULL,
         "Dead-letter topic for records krib cannot apply (undecodable, template failures, keys "
         "Redis refuses for good), with Kafka Connect's __connect.errors.* headers; the offset "
         "moves only after the broker acknowledged the copy. Empty: log and skip them.",
         0},
        {"errors.tolerance", T_ENUM, F(errors_tolerance), "all", 0, 0, tolerances,
         "As in Kafka Connect. all: a record krib cannot apply is dead-lettered (dlq.topic) or "
         "logged, and consumption goes on. none: krib stops on it, finishes and commits what "
         "came before, leaves its offset uncommitted and exits with status 3.",
         0},
        {"decode.format", T_ENUM, F(decode_format), "auto", 0, 0, formats,
         "Wire format of event values: avro-raw (Avro binary in decode.schema_file), "
         "avro-single-object (0xC3 0x01 + schema fingerprint + Avro), or auto (either, by the "
         "magic bytes).",
         0},
        {"decode.schema_file", T_STR, F(decode_schema_file), "schemas/invalidation.avsc", 0, 0,
         NULL, "Schema of raw Avro values; relative paths start at the config file's directory.",
         0},
        {"decode.schema_dir", T_STR, F(decode_schema_dir), "", 0, 0, NULL,
         "Directory whose *.avsc files are the writer schemas accepted in single-object "
         "encoding (empty: only decode.schema_file).",
         0},
        {"pipeline.batch_max_events", T_INT, F(pipeline_batch_max_events), "1000", 1, 1000000, NULL,
         "Events gathered before they are written to Redis.", 0},
        {"pipeline.batch_max_bytes", T_INT, F(pipeline_batch_max_bytes), "16777216", 1024,
         1073741824, NULL, "Message bytes gathered before a batch is written.", 0},
        {"pipeline.linger_ms", T_INT, F(pipeline_linger_ms), "5", 0, 10000, NULL,
         "Longest wait for a batch to fill while earlier batches are in flight (with none in "
         "flight a batch is written at once).",
         0},
        {"pipeline.max_in_flight_events", T_INT, F(pipeline_max_in_flight_events), "10000", 1,
         100000000, NULL,
         "Events read and not yet finished, over all batches in flight, and offsets not yet "
         "committable (finished ones behind an unfinished one count too); at the bound the "
         "partitions are paused until Redis catches up.",
         0},
        {"pipeline.max_in_flight_bytes", T_INT, F(pipeline_max_in_flight_bytes), "16777216", 1024,
         68719476736, NULL, "Message bytes read and not yet finished, over all batches in flight.",
         0},
        {"pipeline.latency_trace_file", T_STR, F(pipeline_latency_trace_file), "", 0, 0, NULL,
         "Diagnostics: appends \"<acknowledged wall ms> <latency ms> <hash slot of its first "
         "key>\" per applied event to this file (empty: off). For latency over time in "
         "benchmarks (bench/run) and per master in fault tests; costs a buffered write per "
         "event.",
         0},
        {"pipeline.shutdown_timeout_ms", T_INT, F(pipeline_shutdown_timeout_ms), "10000", 0,
         3600000, NULL, "On SIGTERM, how long unacknowledged writes may still be retried.", 0},
        {"reorder.max_entities", T_INT, F(reorder_max_entities), "262144", 1, 1000000000, NULL,
         "Entities whose newest version is remembered in memory (all partitions); the least "
         "recently seen are forgotten first.",
         0},
        {"limits.max_key_bytes", T_INT, F(limits_max_key_bytes), "16384", 1, 65519, NULL,
         "Longest key (or tag pattern) an event may name; longer ones are rejected up front "
         "(dead-lettered), never sent to Redis.",
         0},
        {"limits.max_keys_per_event", T_INT, F(limits_max_keys_per_event), "1000", 1, 1000000, NULL,
         "Most keys (or tags) one event may name; an event with more is rejected: one record "
         "must not hold Redis and every other topic for seconds.",
         0},
        {"limits.max_origins", T_INT, F(limits_max_origins), "64", 1, 1024, NULL,
         "Most entries of one event's version vector (its fence lines in Redis); beyond it the "
         "event is rejected.",
         0},
        {"inspect.delays_ms", T_LIST, F(inspect_delays_ms), "1000,60000", 0, 0, NULL,
         "krib inspect: after each of these delays from an event's ts_ms its keys are checked in "
         "Redis (docs/CONSISTENCY.md). At most 8, each in 1..86400000.",
         0},
        {"inspect.sample_ratio", T_REAL, F(inspect_sample_ratio), "1", 0, 1, NULL,
         "krib inspect: share of events checked (chosen by a hash of topic, partition and "
         "offset, so reruns check the same ones); e.g. 0.01 in production.",
         0},
        {"inspect.budget_per_s", T_INT, F(inspect_budget_per_s), "2000", 1, 10000000, NULL,
         "krib inspect: Redis commands per second at most (two per key checked), so the "
         "inspector never competes with the writer; checks beyond it wait.",
         0},
        {"inspect.fills", T_ENUM, F(inspect_fills), "unguarded", 0, 0, fill_kinds,
         "krib inspect: how applications fill the cache. guarded (krib_fill / "
         "krib_fill_leased, redis/krib.lua): a value without a known version where the event "
         "says there should be none or a newer one is stale. unguarded (plain SET): it is "
         "unverifiable, counted apart, never as fresh.",
         0},
        {"inspect.window_s", T_INT, F(inspect_window_s), "600", 10, 86400, NULL,
         "krib inspect: sliding window of the consistency nines gauge.", 0},
        {"inspect.metrics_port", T_INT, F(inspect_metrics_port), "9465", 0, 65535, NULL,
         "krib inspect: port of its /metrics, /healthz and /readyz (on metrics.address; 0: "
         "none). Apart from krib's so both run side by side in one pod.",
         0},
        {"metrics.address", T_STR, F(metrics_address), "127.0.0.1", 0, 0, NULL,
         "IPv4 or IPv6 address of the /metrics, /healthz and /readyz endpoints (\"::\" or "
         "\"0.0.0.0\": all; \"::\" serves IPv4 too).",
         0},
        {"metrics.port", T_INT, F(metrics_port), "9464", 0, 65535, NULL,
         "Port of the HTTP endpoints (0: none).", 0},
        {"log.level", T_ENUM, F(log_level), "info", 0, 0, log_levels, "error|warn|info|debug.", 0},
        {"log.format", T_ENUM, F(log_format), "logfmt", 0, 0, log_formats,
         "logfmt, or json (one object per line).", 0},
        {"log.stats_interval_ms", T_INT, F(log_stats_interval_ms), "5000", 0, 3600000, NULL,
         "Period of the stats log line (0: never).", 0},
};

#define ROW_COUNT (sizeof(rows) / sizeof(rows[0]))

size_t krib_conf_row_count(void) {
        return ROW_COUNT;
}

const char *krib_conf_row_name(size_t i) {
        return i < ROW_COUNT ? rows[i].name : NULL;
}

static void list_clear(krib_strlist_t *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
        free(l->v);
        l->v = NULL;
        l->n = 0;
}

static int list_push(krib_strlist_t *l, const char *s, size_t len) {
        char **v = realloc(l->v, (l->n + 1) * sizeof(*v));
        if (!v)
                return -1;
        l->v = v;
        if (!(v[l->n] = strndup(s, len)))
                return -1;
        l->n++;
        return 0;
}

/* Appends the comma-separated entries of val ("\," a literal comma; empty
 * entries dropped). */
static int list_split(krib_strlist_t *l, const char *val) {
        size_t n = strlen(val), k = 0;
        char *buf = malloc(n + 1);
        if (!buf)
                return -1;
        for (const char *s = val;; s++) {
                if (*s == '\\' && s[1] == ',') {
                        buf[k++] = ',';
                        s++;
                        continue;
                }
                if (*s && *s != ',') {
                        buf[k++] = *s;
                        continue;
                }
                if (k && list_push(l, buf, k)) {
                        free(buf);
                        return -1;
                }
                k = 0;
                if (!*s)
                        break;
        }
        free(buf);
        return 0;
}

/* Sets a row from its textual form (defaults and the environment use it). */
static int set_text(krib_conf_t *conf, const row_t *r, const char *val, char *errstr, size_t size) {
        void *p = (char *)conf + r->offset;
        switch (r->type) {
        case T_STR: {
                char *s = strdup(val);
                if (!s)
                        goto oom;
                free(*(char **)p);
                *(char **)p = s;
                return 0;
        }
        case T_INT: {
                char *end;
                errno = 0;
                long long v = strtoll(val, &end, 10);
                if (errno == ERANGE) {
                        snprintf(errstr, size, "%s: %s does not fit in 64 bits", r->name, val);
                        return -1;
                }
                if (errno || end == val || *end) {
                        snprintf(errstr, size, "%s: '%s' is not an integer", r->name, val);
                        return -1;
                }
                if (v < r->min || v > r->max) {
                        snprintf(errstr, size, "%s: %lld is outside [%" PRId64 ", %" PRId64 "]",
                                 r->name, v, r->min, r->max);
                        return -1;
                }
                *(int64_t *)p = v;
                return 0;
        }
        case T_REAL: {
                char *end;
                errno = 0;
                double v = strtod(val, &end);
                if (errno || end == val || *end || !(v >= (double)r->min && v <= (double)r->max)) {
                        snprintf(errstr, size,
                                 "%s: '%s' is not a number in [%" PRId64 ", %" PRId64 "]", r->name,
                                 val, r->min, r->max);
                        return -1;
                }
                *(double *)p = v;
                return 0;
        }
        case T_BOOL:
                if (!strcmp(val, "true") || !strcmp(val, "1"))
                        *(int64_t *)p = 1;
                else if (!strcmp(val, "false") || !strcmp(val, "0"))
                        *(int64_t *)p = 0;
                else {
                        snprintf(errstr, size, "%s: '%s' is not true or false", r->name, val);
                        return -1;
                }
                return 0;
        case T_ENUM:
                for (int i = 0; r->enums[i]; i++)
                        if (!strcmp(r->enums[i], val)) {
                                *(int64_t *)p = i;
                                return 0;
                        }
                snprintf(errstr, size, "%s: '%s' is not one of", r->name, val);
                for (int i = 0; r->enums[i]; i++) {
                        size_t n = strlen(errstr);
                        snprintf(errstr + n, size - n, "%s %s", i ? "," : "", r->enums[i]);
                }
                return -1;
        case T_LIST: {
                krib_strlist_t *l = p;
                list_clear(l);
                if (list_split(l, val))
                        goto oom;
                return 0;
        }
        }
        return 0;
oom:
        snprintf(errstr, size, "%s: out of memory", r->name);
        return -1;
}

int krib_conf_init(krib_conf_t *conf) {
        char errstr[256];
        memset(conf, 0, sizeof(*conf));
        if (!(conf->routes = krib_routes_empty()) ||
            !(conf->origins = calloc(ROW_COUNT, sizeof(*conf->origins))))
                return -1;
        for (size_t i = 0; i < ROW_COUNT; i++)
                if (set_text(conf, &rows[i], rows[i].def, errstr, sizeof(errstr)))
                        return -1;
        return 0;
}

void krib_conf_destroy(krib_conf_t *conf) {
        if (!conf)
                return;
        for (size_t i = 0; i < ROW_COUNT; i++) {
                void *p = (char *)conf + rows[i].offset;
                if (rows[i].type == T_STR) {
                        free(*(char **)p);
                        *(char **)p = NULL;
                } else if (rows[i].type == T_LIST)
                        list_clear(p);
        }
        free(conf->source_dir);
        conf->source_dir = NULL;
        for (size_t i = 0; conf->origins && i < ROW_COUNT; i++)
                free(conf->origins[i]);
        free(conf->origins);
        conf->origins = NULL;
        list_clear(&conf->notes);
        list_clear(&conf->warnings);
        krib_routes_destroy(conf->routes);
        conf->routes = NULL;
}

static const row_t *row_find(const char *name) {
        for (size_t i = 0; i < ROW_COUNT; i++)
                if (!strcmp(rows[i].name, name))
                        return &rows[i];
        return NULL;
}

static void origin_set(krib_conf_t *conf, const row_t *r, const char *fmt, ...) {
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        size_t i = (size_t)(r - rows);
        char *copy = strdup(buf);
        if (!copy || !conf->origins)
                return free(copy); /* a message loses its source, nothing else */
        free(conf->origins[i]);
        conf->origins[i] = copy;
}

/* "key (file:line)" / "key (environment KRIB_X)" / "key": the prefix of an
 * error about one key, written into buf. */
static const char *where(const krib_conf_t *conf, const char *name, char *buf, size_t size) {
        const row_t *r = row_find(name);
        const char *o = r && conf->origins ? conf->origins[r - rows] : NULL;
        if (o)
                snprintf(buf, size, "%s (%s)", name, o);
        else
                snprintf(buf, size, "%s", name);
        return buf;
}

const char *krib_conf_where(const krib_conf_t *conf, const char *key, char *buf, size_t size) {
        const row_t *r = row_find(key);
        if (r && conf->origins && !conf->origins[r - rows]) {
                snprintf(buf, size, "%s (default)", key);
                return buf;
        }
        return where(conf, key, buf, size);
}

/* libconfig 1.5 reads an integer literal that does not fit in 32 bits (and
 * has no L suffix) wrapped, or as -1: 9999999999 becomes 1410065407. So an
 * integer is taken again from its source line, exactly. Writes the literal
 * (digits, sign, 0x, without the L suffix) into out; 0 when found. */
static int raw_integer(const char *file, int line, const char *name, char *out, size_t size) {
        FILE *fp = file ? fopen(file, "r") : NULL;
        if (!fp || line < 1) {
                if (fp)
                        fclose(fp);
                return -1;
        }
        char buf[4096];
        int n = 0, found = -1;
        while (fgets(buf, sizeof(buf), fp) && ++n < line)
                ;
        fclose(fp);
        if (n != line)
                return -1;
        size_t nl = strlen(name);
        for (const char *p = buf; (p = strstr(p, name)); p += nl) {
                int word_start = p == buf || !(isalnum((unsigned char)p[-1]) || p[-1] == '_');
                const char *q = p + nl;
                if (!word_start || isalnum((unsigned char)*q) || *q == '_')
                        continue;
                while (*q == ' ' || *q == '\t')
                        q++;
                if (*q != '=' && *q != ':')
                        continue;
                q++;
                while (*q == ' ' || *q == '\t')
                        q++;
                size_t k = 0;
                if (*q == '-' || *q == '+')
                        out[k++] = *q++;
                while ((isxdigit((unsigned char)*q) || *q == 'x' || *q == 'X') && k + 1 < size)
                        out[k++] = *q++;
                out[k] = '\0';
                found = k ? 0 : -1;
                break;
        }
        return found;
}

/* Sets a row from a libconfig setting, checking its type. */
static int set_setting(krib_conf_t *conf, const row_t *r, config_setting_t *s, const char *file,
                       char *errstr, size_t size) {
        int line = config_setting_source_line(s);
        int type = config_setting_type(s);
        char num[32], sub[256];
        const char *text = NULL;
        switch (r->type) {
        case T_STR:
        case T_ENUM:
                if (type != CONFIG_TYPE_STRING)
                        goto wrong_type;
                text = config_setting_get_string(s);
                break;
        case T_INT:
                if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
                        goto wrong_type;
                snprintf(num, sizeof(num), "%lld", config_setting_get_int64(s));
                text = num;
                char raw[64];
                const char *src = config_setting_source_file(s);
                if (!raw_integer(src ? src : file, line, config_setting_name(s), raw,
                                 sizeof(raw))) {
                        char *end;
                        errno = 0;
                        long long v = strtoll(raw, &end, strncasecmp(raw, "0x", 2) ? 10 : 16);
                        if (errno == ERANGE) {
                                snprintf(errstr, size, "%s:%d: %s: %s does not fit in 64 bits",
                                         file, line, r->name, raw);
                                return -1;
                        }
                        if (!*end && v != config_setting_get_int64(s))
                                snprintf(num, sizeof(num), "%lld", v);
                }
                break;
        case T_REAL:
                if (type == CONFIG_TYPE_FLOAT)
                        snprintf(num, sizeof(num), "%.17g", config_setting_get_float(s));
                else if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64)
                        snprintf(num, sizeof(num), "%lld", config_setting_get_int64(s));
                else
                        goto wrong_type;
                text = num;
                break;
        case T_BOOL:
                if (type != CONFIG_TYPE_BOOL)
                        goto wrong_type;
                text = config_setting_get_bool(s) ? "true" : "false";
                break;
        case T_LIST: {
                if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
                        goto wrong_type;
                krib_strlist_t *l = (krib_strlist_t *)((char *)conf + r->offset);
                list_clear(l);
                for (int i = 0; i < config_setting_length(s); i++) {
                        config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
                        if (config_setting_type(e) != CONFIG_TYPE_STRING) {
                                snprintf(errstr, size, "%s:%d: %s: element %d is not a string",
                                         file, line, r->name, i);
                                return -1;
                        }
                        const char *v = config_setting_get_string(e);
                        if (list_push(l, v, strlen(v))) {
                                snprintf(errstr, size, "%s:%d: out of memory", file, line);
                                return -1;
                        }
                }
                origin_set(conf, r, "%s:%d", file, line);
                return 0;
        }
        }
        if (set_text(conf, r, text, sub, sizeof(sub))) {
                snprintf(errstr, size, "%s:%d: %s", file, line, sub);
                return -1;
        }
        origin_set(conf, r, "%s:%d", file, line);
        return 0;
wrong_type : {
        static const char *tn[] = {"a string",          "an integer", "a boolean",
                                   "a list of strings", "a string",   "a number"};
        snprintf(errstr, size, "%s:%d: %s must be %s", file, line, r->name, tn[r->type]);
        return -1;
}
}

static int walk(krib_conf_t *conf, config_setting_t *group, const char *prefix, const char *file,
                char *errstr, size_t size) {
        int n = config_setting_length(group);
        for (int i = 0; i < n; i++) {
                config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
                char path[256];
                snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "",
                         config_setting_name(s));
                const row_t *r = row_find(path);
                if (!strcmp(path, "routes")) { /* a list of groups: route.c reads it */
                        krib_routes_t *rs = krib_routes_parse(s, file, errstr, size);
                        if (!rs)
                                return -1;
                        krib_routes_destroy(conf->routes);
                        conf->routes = rs;
                        continue;
                }
                if (r) {
                        if (set_setting(conf, r, s, file, errstr, size))
                                return -1;
                        continue;
                }
                if (config_setting_type(s) == CONFIG_TYPE_GROUP) {
                        size_t plen = strlen(path);
                        int known = 0;
                        for (size_t j = 0; j < ROW_COUNT && !known; j++)
                                known = !strncmp(rows[j].name, path, plen) &&
                                        rows[j].name[plen] == '.';
                        if (known) {
                                if (walk(conf, s, path, file, errstr, size))
                                        return -1;
                                continue;
                        }
                }
                snprintf(errstr, size, "%s:%d: unknown key '%s' (krib --help-config lists them)",
                         file, config_setting_source_line(s), path);
                return -1;
        }
        return 0;
}

int krib_conf_load_file(krib_conf_t *conf, const char *path, char *errstr, size_t errstr_size) {
        config_t cfg;
        config_init(&cfg);
        int rc = -1;
        if (!config_read_file(&cfg, path)) {
                if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
                        snprintf(errstr, errstr_size, "%s: cannot read file: %s", path,
                                 strerror(errno));
                else
                        snprintf(errstr, errstr_size, "%s:%d: %s",
                                 config_error_file(&cfg) ? config_error_file(&cfg) : path,
                                 config_error_line(&cfg), config_error_text(&cfg));
                goto done;
        }
        if (walk(conf, config_root_setting(&cfg), "", path, errstr, errstr_size))
                goto done;
        free(conf->source_dir);
        const char *slash = strrchr(path, '/');
        conf->source_dir = slash ? strndup(path, (size_t)(slash - path + 1)) : strdup("");
        if (!conf->source_dir) {
                snprintf(errstr, errstr_size, "out of memory");
                goto done;
        }
        rc = 0;
done:
        config_destroy(&cfg);
        return rc;
}

static void env_name(const char *row, char *out, size_t size) {
        size_t n = (size_t)snprintf(out, size, "KRIB_");
        for (; *row && n + 1 < size; row++)
                out[n++] = *row == '.' ? '_' : (char)toupper((unsigned char)*row);
        out[n] = '\0';
}

static int secret_property(const char *entry);
static void row_print(const krib_conf_t *conf, const row_t *r, FILE *fp);

static void note(krib_conf_t *conf, const char *fmt, ...) {
        char buf[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        list_push(&conf->notes, buf, strlen(buf)); /* a lost note loses a log line only */
}

/* One row's value as --print-config shows it (secrets redacted). */
static void row_text(const krib_conf_t *conf, const row_t *r, char *out, size_t size) {
        out[0] = '\0';
        FILE *fp = fmemopen(out, size, "w");
        if (!fp)
                return;
        row_print(conf, r, fp);
        fclose(fp);
        out[size - 1] = '\0';
        size_t n = strlen(out);
        while (n && (out[n - 1] == '\n' || out[n - 1] == ';'))
                out[--n] = '\0';
}

static const char *redacted(const char *entry, char *buf, size_t size) {
        if (!secret_property(entry))
                return entry;
        snprintf(buf, size, "%.*s=<redacted>", (int)strcspn(entry, "="), entry);
        return buf;
}

/* Lists of name=value entries: the environment's entries replace the
 * file's of the same name and add the others, so that one variable set by a
 * deployment cannot silently drop what the config file says. */
static int keyed_list(const row_t *r) {
        return !strcmp(r->name, "kafka.properties") || !strcmp(r->name, "redis.address_map");
}

static int list_merge(krib_conf_t *conf, const row_t *r, const char *var, const char *val) {
        krib_strlist_t add = {0}, *l = (krib_strlist_t *)((char *)conf + r->offset);
        const char *from = conf->origins[r - rows] ? conf->origins[r - rows] : "default";
        if (list_split(&add, val))
                goto oom;
        for (size_t i = 0; i < add.n; i++) {
                char *a = add.v[i], b1[256], b2[256];
                size_t n = strcspn(a, "=");
                size_t j = 0;
                while (j < l->n && !(!strncmp(l->v[j], a, n) && l->v[j][n] == '='))
                        j++;
                if (j < l->n) {
                        if (strcmp(l->v[j], a))
                                note(conf, "%s: %s: %s (%s) replaced by %s", var, r->name,
                                     redacted(l->v[j], b1, sizeof(b1)), from,
                                     redacted(a, b2, sizeof(b2)));
                        free(l->v[j]);
                        l->v[j] = a;
                } else {
                        char **v = realloc(l->v, (l->n + 1) * sizeof(*v));
                        if (!v)
                                goto oom;
                        l->v = v;
                        v[l->n++] = a;
                        note(conf, "%s: %s: %s added", var, r->name, redacted(a, b1, sizeof(b1)));
                }
                add.v[i] = NULL;
        }
        list_clear(&add);
        return 0;
oom:
        add.n = add.v ? add.n : 0;
        for (size_t i = 0; i < add.n; i++)
                free(add.v[i]);
        free(add.v);
        return -1;
}

#define REPLACE_VAR "KRIB_KAFKA_PROPERTIES_REPLACE"

int krib_conf_load_env(krib_conf_t *conf, char *const *envp, char *warn, size_t warn_size,
                       char *errstr, size_t errstr_size) {
        if (warn && warn_size)
                warn[0] = '\0';
        int replace = 0;
        for (char *const *e = envp; e && *e; e++)
                if (!strncmp(*e, REPLACE_VAR "=", sizeof(REPLACE_VAR))) {
                        const char *v = *e + sizeof(REPLACE_VAR);
                        if (strcmp(v, "true") && strcmp(v, "false") && strcmp(v, "1") &&
                            strcmp(v, "0") && *v) {
                                snprintf(errstr, errstr_size,
                                         "environment %s: '%s' is not true or false", REPLACE_VAR,
                                         v);
                                return -1;
                        }
                        replace = !strcmp(v, "true") || !strcmp(v, "1");
                }
        for (; envp && *envp; envp++) {
                if (strncmp(*envp, "KRIB_", 5) ||
                    !strncmp(*envp, REPLACE_VAR "=", sizeof(REPLACE_VAR)))
                        continue;
                const char *eq = strchr(*envp, '=');
                if (!eq)
                        continue;
                size_t nlen = (size_t)(eq - *envp);
                const row_t *r = NULL;
                char name[128];
                for (size_t i = 0; i < ROW_COUNT && !r; i++) {
                        env_name(rows[i].name, name, sizeof(name));
                        if (strlen(name) == nlen && !strncmp(name, *envp, nlen))
                                r = &rows[i];
                }
                if (!r) {
                        /* Not an error: orchestrators inject KRIB_* variables
                         * of their own (Kubernetes: KRIB_PORT for a Service
                         * named krib). The caller shows them as a warning. */
                        if (warn && warn_size) {
                                size_t n = strlen(warn);
                                snprintf(warn + n, warn_size - n, "%s%.*s", n ? ", " : "",
                                         (int)nlen, *envp);
                        }
                        continue;
                }
                char var[128];
                snprintf(var, sizeof(var), "environment %.*s", (int)nlen, *envp);
                if (keyed_list(r) && !(replace && !strcmp(r->name, "kafka.properties"))) {
                        if (list_merge(conf, r, var, eq + 1)) {
                                snprintf(errstr, errstr_size, "%s: out of memory", var);
                                return -1;
                        }
                        char both[600];
                        snprintf(both, sizeof(both), "%s%s%s",
                                 conf->origins[r - rows] ? conf->origins[r - rows] : "",
                                 conf->origins[r - rows] ? " merged with " : "", var);
                        origin_set(conf, r, "%s", both);
                        continue;
                }
                char before[512], after[512], sub[256];
                row_text(conf, r, before, sizeof(before));
                const char *from = conf->origins[r - rows] ? conf->origins[r - rows] : "default";
                if (set_text(conf, r, eq + 1, sub, sizeof(sub))) {
                        snprintf(errstr, errstr_size, "%s: %s", var, sub);
                        return -1;
                }
                row_text(conf, r, after, sizeof(after));
                if (strcmp(before, after))
                        note(conf, "%s: %s = %s (%s was %s)", var, r->name, after, from, before);
                origin_set(conf, r, "%s", var);
        }
        return 0;
}

/* A password given as a file (a mounted secret): one trailing newline is
 * dropped. Setting both the value and the file is an error. */
static int read_secret(char **value, const char *file, const char *name, char *errstr,
                       size_t errstr_size) {
        if (!*file)
                return 0;
        if (**value) {
                snprintf(errstr, errstr_size, "%s and %s_file are both set", name, name);
                return -1;
        }
        FILE *fp = fopen(file, "r");
        char pw[1024];
        size_t n = fp ? fread(pw, 1, sizeof(pw) - 1, fp) : 0;
        if (fp)
                fclose(fp);
        if (!fp || !n) {
                snprintf(errstr, errstr_size, "%s_file: cannot read %s", name, file);
                return -1;
        }
        pw[n] = '\0';
        if (pw[n - 1] == '\n')
                pw[--n] = '\0';
        char *copy = strdup(pw);
        if (!copy) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        free(*value);
        *value = copy;
        return 0;
}

/* librdkafka properties that carry secrets: never printed. */
static int secret_property(const char *entry) {
        static const char *const words[] = {"password", "secret", "ssl.key.pem", "jaas", NULL};
        const char *eq = strchr(entry, '=');
        size_t n = eq ? (size_t)(eq - entry) : strlen(entry);
        for (int i = 0; words[i]; i++)
                if (memmem(entry, n, words[i], strlen(words[i])))
                        return 1;
        return 0;
}

const char *const krib_conf_kafka_owned[] = {"enable.auto.offset.store", "enable.auto.commit",
                                             "group.id", "bootstrap.servers", NULL};

const char *const krib_conf_kafka_defaults[][3] = {
        {"client.id", "krib", "names krib in broker logs and quotas"},
        {"partition.assignment.strategy", "cooperative-sticky",
         "a rebalance moves only the partitions that change owner"},
        {"auto.offset.reset", "earliest",
         "a new group starts at the oldest retained event: no invalidation skipped (KEDA's "
         "offsetResetPolicy must match)"},
        {"auto.commit.interval.ms", "1000",
         "how often stored offsets (acknowledged by Redis) are committed"},
        {"fetch.wait.max.ms", "100", "bounds the added latency of an idle partition"},
        {"statistics.interval.ms", "5000", "consumer lag and committed offsets for /metrics"},
        {"queued.min.messages", "200000",
         "prefetch: more than a second of work, or krib starves between batches (bench/)"},
        {"queued.max.messages.kbytes", "16384", "prefetch bound in bytes"},
        {"fetch.max.bytes", "8388608", "one fetch response"},
        {"fetch.queue.backoff.ms", "10",
         "librdkafka >= 2.1 stops fetching for this long once the prefetch passes its bounds "
         "(default 1000): after a burst or a backlog that is up to a second with nothing "
         "fetched while krib empties the queue; 10 ms re-checks cheaply (bench/README.md)"},
        {NULL, NULL, NULL},
};

/* librdkafka refuses these in rd_kafka_new() under group.protocol=consumer
 * (rdkafka_conf.c); the check says so before start-up does. */
static const char *const classic_only[] = {"partition.assignment.strategy", "session.timeout.ms",
                                           "heartbeat.interval.ms", "group.protocol.type", NULL};

int krib_conf_kafka_consumer_protocol(const krib_conf_t *conf) {
        const char *v = NULL;
        for (size_t i = 0; i < conf->kafka_properties.n; i++)
                if (!strncmp(conf->kafka_properties.v[i], "group.protocol=", 15))
                        v = conf->kafka_properties.v[i] + 15;
        return v && !strcasecmp(v, "consumer");
}

int krib_conf_kafka_property_applies(const krib_conf_t *conf, const char *name) {
        if (!krib_conf_kafka_consumer_protocol(conf))
                return 1;
        for (int i = 0; classic_only[i]; i++)
                if (!strcmp(name, classic_only[i]))
                        return 0;
        return 1;
}

/* Files librdkafka opens at start-up: unreadable ones fail the check, not
 * the first connection ("probe" asks librdkafka to look for a CA store). */
static int kafka_file_property(const char *name) {
        static const char *const files[] = {"ssl.ca.location",     "ssl.certificate.location",
                                            "ssl.key.location",    "ssl.keystore.location",
                                            "ssl.crl.location",    "sasl.kerberos.keytab",
                                            "ssl.engine.location", NULL};
        for (int i = 0; files[i]; i++)
                if (!strcmp(files[i], name))
                        return 1;
        return 0;
}

int krib_conf_finalize(krib_conf_t *conf, char *errstr, size_t errstr_size) {
        char w[600];
#define WHERE(key) where(conf, key, w, sizeof(w))
        if (!conf->kafka_topics.n && !krib_routes_count(conf->routes)) {
                snprintf(errstr, errstr_size, "%s: at least one topic (or a route) is required",
                         WHERE("kafka.topics"));
                return -1;
        }
        for (size_t i = 0; i < conf->kafka_topics.n; i++) {
                const char *t = conf->kafka_topics.v[i];
                regex_t re;
                if (t[0] != '^')
                        continue;
                if (regcomp(&re, t, REG_EXTENDED | REG_NOSUB)) {
                        snprintf(errstr, errstr_size, "%s: '%s' is not a valid regex",
                                 WHERE("kafka.topics"), t);
                        return -1;
                }
                regfree(&re);
        }
        if (!*conf->kafka_brokers) {
                snprintf(errstr, errstr_size, "%s: must not be empty", WHERE("kafka.brokers"));
                return -1;
        }
        if (!*conf->kafka_group_id) {
                snprintf(errstr, errstr_size, "%s: must not be empty", WHERE("kafka.group_id"));
                return -1;
        }
        if (!conf->redis_nodes.n) {
                snprintf(errstr, errstr_size, "%s: at least one node is required",
                         WHERE("redis.nodes"));
                return -1;
        }
        unsigned char ip[16];
        if (inet_pton(AF_INET, conf->metrics_address, ip) != 1 &&
            inet_pton(AF_INET6, conf->metrics_address, ip) != 1) {
                snprintf(errstr, errstr_size, "%s: '%s' is not an IPv4 or IPv6 address",
                         WHERE("metrics.address"), conf->metrics_address);
                return -1;
        }
        if (conf->redis_wait_replicas &&
            conf->redis_wait_timeout_ms >= conf->redis_command_timeout_ms) {
                snprintf(errstr, errstr_size,
                         "%s: %lld must be below redis.command_timeout_ms (%lld): a WAIT would "
                         "otherwise look like a dead connection",
                         WHERE("redis.wait_timeout_ms"), (long long)conf->redis_wait_timeout_ms,
                         (long long)conf->redis_command_timeout_ms);
                return -1;
        }
        for (size_t i = 0; i < conf->redis_nodes.n; i++) {
                const char *c = strrchr(conf->redis_nodes.v[i], ':');
                char *end;
                long port = c ? strtol(c + 1, &end, 10) : 0;
                if (!c || c == conf->redis_nodes.v[i] || *end || port < 1 || port > 65535) {
                        snprintf(errstr, errstr_size, "%s: '%s' is not host:port",
                                 WHERE("redis.nodes"), conf->redis_nodes.v[i]);
                        return -1;
                }
        }
        char sub[400];
        if (read_secret(&conf->redis_password, conf->redis_password_file, "redis.password", sub,
                        sizeof(sub))) {
                snprintf(errstr, errstr_size, "%s: %s", WHERE("redis.password_file"), sub);
                return -1;
        }
        if (read_secret(&conf->kafka_sasl_password, conf->kafka_sasl_password_file,
                        "kafka.sasl_password", sub, sizeof(sub))) {
                snprintf(errstr, errstr_size, "%s: %s", WHERE("kafka.sasl_password_file"), sub);
                return -1;
        }
        for (size_t i = 0; i < conf->redis_address_map.n; i++) {
                krib_addr_t from, to;
                if (krib_addr_map_parse(conf->redis_address_map.v[i], &from, &to)) {
                        snprintf(errstr, errstr_size, "%s: '%s' is not host:port=host:port",
                                 WHERE("redis.address_map"), conf->redis_address_map.v[i]);
                        return -1;
                }
        }
        if (conf->redis_retry_cap_ms < conf->redis_retry_base_ms) {
                snprintf(errstr, errstr_size, "%s: must not be below redis.retry_base_ms",
                         WHERE("redis.retry_cap_ms"));
                return -1;
        }
        if (conf->redis_breaker_open_max_ms < conf->redis_breaker_open_ms) {
                snprintf(errstr, errstr_size, "%s: must not be below redis.breaker_open_ms",
                         WHERE("redis.breaker_open_max_ms"));
                return -1;
        }
        if (conf->redis_mode == KRIB_REDIS_STANDALONE && conf->redis_nodes.n != 1) {
                snprintf(errstr, errstr_size, "%s: standalone mode takes exactly one node",
                         WHERE("redis.nodes"));
                return -1;
        }
        if (!conf->inspect_delays_ms.n || conf->inspect_delays_ms.n > 8) {
                snprintf(errstr, errstr_size, "%s: 1 to 8 delays", WHERE("inspect.delays_ms"));
                return -1;
        }
        for (size_t i = 0; i < conf->inspect_delays_ms.n; i++) {
                char *end;
                errno = 0;
                long long d = strtoll(conf->inspect_delays_ms.v[i], &end, 10);
                if (errno || *end || d < 1 || d > 86400000) {
                        snprintf(errstr, errstr_size, "%s: '%s' is not a delay in 1..86400000 ms",
                                 WHERE("inspect.delays_ms"), conf->inspect_delays_ms.v[i]);
                        return -1;
                }
        }
        if (krib_routes_need_registry(conf->routes) && !*conf->registry_url) {
                snprintf(errstr, errstr_size,
                         "%s: a route reads debezium-avro (route %s), so a schema registry is "
                         "needed",
                         WHERE("registry.url"), krib_routes_need_registry_name(conf->routes));
                return -1;
        }
        if (*conf->registry_url && strncmp(conf->registry_url, "http://", 7) &&
            strncmp(conf->registry_url, "https://", 8)) {
                snprintf(errstr, errstr_size, "%s: '%s' is not an http:// or https:// URL",
                         WHERE("registry.url"), conf->registry_url);
                return -1;
        }
        /* librdkafka judges the properties on a scratch configuration, as
         * start-up would: an unknown name or a bad value fails the check,
         * not the first connection. */
        rd_kafka_conf_t *scratch = rd_kafka_conf_new();
        list_clear(&conf->warnings);
        for (size_t i = 0; i < conf->kafka_properties.n; i++) {
                const char *p = conf->kafka_properties.v[i], *eq = strchr(p, '=');
                char name[256], why[512];
                snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - p) : 0, p);
                int bad = 0;
                if (!eq || *p == '=') {
                        snprintf(errstr, errstr_size, "%s: '%s' is not name=value",
                                 WHERE("kafka.properties"), p);
                        bad = 1;
                }
                for (int j = 0; !bad && krib_conf_kafka_owned[j]; j++)
                        if (!strcmp(name, krib_conf_kafka_owned[j])) {
                                snprintf(errstr, errstr_size,
                                         "%s: %s is set by krib and cannot be overridden",
                                         WHERE("kafka.properties"), name);
                                bad = 1;
                        }
                if (!bad && rd_kafka_conf_set(scratch, name, eq + 1, why, sizeof(why)) !=
                                    RD_KAFKA_CONF_OK) {
                        snprintf(errstr, errstr_size, "%s: %s: %s", WHERE("kafka.properties"), name,
                                 why);
                        bad = 1;
                }
                if (!bad && !krib_conf_kafka_property_applies(conf, name)) {
                        char wb[1024];
                        snprintf(wb, sizeof(wb),
                                 "%s: %s=%s is left out: it belongs to the classic group "
                                 "protocol, and with group.protocol=consumer the broker decides "
                                 "it (%s)",
                                 WHERE("kafka.properties"), name, eq + 1,
                                 strcmp(name, "partition.assignment.strategy")
                                         ? "group.consumer.* broker settings"
                                         : "group.remote.assignor names the assignor");
                        list_push(&conf->warnings, wb, strlen(wb));
                }
                if (!bad && kafka_file_property(name) && strcmp(eq + 1, "probe") &&
                    access(eq + 1, R_OK)) {
                        snprintf(errstr, errstr_size, "%s: %s: cannot read %s: %s",
                                 WHERE("kafka.properties"), name, eq + 1, strerror(errno));
                        bad = 1;
                }
                if (bad) {
                        rd_kafka_conf_destroy(scratch);
                        return -1;
                }
        }
        rd_kafka_conf_destroy(scratch);
#undef WHERE
        char **paths[] = {&conf->decode_schema_file, &conf->decode_schema_dir,
                          &conf->redis_tls_ca_file, &conf->redis_tls_cert_file,
                          &conf->redis_tls_key_file};
        const size_t npaths = sizeof(paths) / sizeof(*paths);
        for (size_t i = 0; conf->source_dir && *conf->source_dir && i < npaths; i++) {
                char *v = *paths[i];
                if (!*v || v[0] == '/')
                        continue;
                size_t n = strlen(conf->source_dir) + strlen(v) + 1;
                char *p = malloc(n);
                if (!p) {
                        snprintf(errstr, errstr_size, "out of memory");
                        return -1;
                }
                snprintf(p, n, "%s%s", conf->source_dir, v);
                free(v);
                *paths[i] = p;
        }
        free(conf->source_dir);
        conf->source_dir = NULL; /* resolve once */
        return 0;
}

static const char *type_name(const row_t *r) {
        static const char *tn[] = {"string", "integer", "boolean", "list", "enum", "number"};
        return tn[r->type];
}

void krib_conf_print_help(FILE *fp) {
        for (size_t i = 0; i < ROW_COUNT; i++) {
                const row_t *r = &rows[i];
                char env[128];
                env_name(r->name, env, sizeof(env));
                fprintf(fp, "%-30s %-8s default=\"%s\"", r->name, type_name(r), r->def);
                if (r->type == T_INT || r->type == T_REAL)
                        fprintf(fp, " range=[%" PRId64 ",%" PRId64 "]", r->min, r->max);
                if (r->type == T_ENUM) {
                        fprintf(fp, " values=");
                        for (int j = 0; r->enums[j]; j++)
                                fprintf(fp, "%s%s", j ? "|" : "", r->enums[j]);
                }
                fprintf(fp, " env=%s%s\n    %s\n", env, r->secret ? " (secret)" : "", r->doc);
        }
        krib_routes_print_help(fp);
}

static void row_print(const krib_conf_t *conf, const row_t *r, FILE *fp) {
        const void *p = (const char *)conf + r->offset;
        switch (r->type) {
        case T_STR:
                fprintf(fp, "\"%s\";\n",
                        r->secret && **(char *const *)p ? "<redacted>" : *(char *const *)p);
                break;
        case T_INT:
                fprintf(fp, "%" PRId64 ";\n", *(const int64_t *)p);
                break;
        case T_REAL:
                fprintf(fp, "%g;\n", *(const double *)p);
                break;
        case T_BOOL:
                fprintf(fp, "%s;\n", *(const int64_t *)p ? "true" : "false");
                break;
        case T_ENUM:
                fprintf(fp, "\"%s\";\n", r->enums[*(const int64_t *)p]);
                break;
        case T_LIST: {
                const krib_strlist_t *l = p;
                char b[512];
                fprintf(fp, "[");
                for (size_t j = 0; j < l->n; j++)
                        fprintf(fp, "%s\"%s\"", j ? ", " : "", redacted(l->v[j], b, sizeof(b)));
                fprintf(fp, "];\n");
                break;
        }
        }
}

void krib_conf_print(const krib_conf_t *conf, FILE *fp) {
        for (size_t i = 0; i < ROW_COUNT; i++) {
                fprintf(fp, "%s = ", rows[i].name);
                row_print(conf, &rows[i], fp);
        }
        fprintf(fp, "# librdkafka consumer defaults (kafka.properties overrides them):\n");
        for (int i = 0; krib_conf_kafka_defaults[i][0]; i++)
                if (krib_conf_kafka_property_applies(conf, krib_conf_kafka_defaults[i][0]))
                        fprintf(fp, "#   %s=%s  (%s)\n", krib_conf_kafka_defaults[i][0],
                                krib_conf_kafka_defaults[i][1], krib_conf_kafka_defaults[i][2]);
        krib_routes_print(conf->routes, fp);
}
