/* Helpers for integration tests against the real broker and Redis servers
 * that ci/services starts. Addresses come from the environment ci/lib.sh
 * exports (KRIB_KAFKA_BROKERS, KRIB_REDIS_NODES, REDIS_STANDALONE_PORT), with
 * the KRIB_PORT_BASE=19000 defaults. Every wait is bounded. */
#ifndef KRIB_ITEST_H
#define KRIB_ITEST_H

#include <hiredis.h>
#include <stdint.h>
#include <sys/types.h>

#include "event.h"

const char *itest_brokers(void);
/* Major version of the broker ci/services runs (3 or 4), 0 if unknown. */
int itest_kafka_major(void);
const char *itest_redis_seed(void);  /* first cluster node, host:port */
const char *itest_redis_nodes(void); /* all cluster seeds, comma-separated */
int itest_standalone_port(void);

/* "<prefix>-<pid>-<n>": names that do not collide between runs. */
void itest_unique(char *out, size_t size, const char *prefix);

/* Runs argv to completion (at most timeout_s); returns its exit status, or
 * -1 if it had to be killed. stdout is captured into out when out != NULL. */
int itest_run(char *const argv[], int timeout_s, char *out, size_t out_size);

/* Starts krib with extra "NAME=value" environment entries (NULL-terminated)
 * and stderr+stdout to log_path. */
pid_t itest_krib_start(const char *const *env, const char *log_path);
pid_t itest_krib_start_conf(const char *conf, const char *const *env, const char *log_path);

/* Sends sig and waits up to timeout_s; returns the exit status, 128+signal
 * when it died of a signal, -1 on timeout (then it is killed). */
int itest_krib_stop(pid_t pid, int sig, int timeout_s);

/* `krib inspect --report` beside a test (conf NULL: config/krib.conf; env
 * as for krib, KRIB_INSPECT_* too): its log to log_path, its report line to
 * out_path. */
pid_t itest_inspect_start(const char *conf, const char *const *env, const char *log_path,
                          const char *out_path);

/* One delay of an inspector's report. */
typedef struct {
        char delay[16];
        long checked, stale, unverifiable, late; /* -1: not in the report */
} itest_inspect_t;

/* SIGUSR1 (read to the end as of now, check it all, stop), waits up to
 * timeout_s, parses the report into d[0..nd). Returns the exit status
 * (0: nothing stale at the longest delay, 1: stale, -1: timed out). */
int itest_inspect_finish(pid_t pid, const char *out_path, int timeout_s, itest_inspect_t *d,
                         int nd);

struct itest_names;
/* The inspector the way the fault tests run it beside krib: straight to
 * Kafka and Redis (never through a fault), guarded fills, checks at 1 s
 * and 60 s. log/out get its file names. */
pid_t itest_inspect_beside(const struct itest_names *n, const char *sample_ratio, char *log,
                           size_t log_size, char *out, size_t out_size);

/* Finishes it (itest_inspect_finish) and fails the test unless something
 * was checked and nothing was stale at the longer delay. d[2] gets the
 * report. */
void itest_inspect_nothing_stale(pid_t pid, const char *log, const char *out, itest_inspect_t *d);

/* Per-partition committed offsets of group (-1 when none) and log-end
 * offsets of topic. Return 0 on success. */
int itest_committed(const char *group, const char *topic, int nparts, int64_t *out);
int itest_log_end(const char *topic, int nparts, int64_t *out);

/* Waits until committed == log end on every partition; 0 when reached. */
int itest_wait_caught_up(const char *group, const char *topic, int nparts, int timeout_s);

/* Runs krib-loadgen with args (NULL-terminated), asserting success; returns
 * what it printed. */
const char *itest_loadgen(const char *const *args);

/* Counts lines of path that contain every needle (NULL-terminated list). */
int itest_log_count(const char *path, const char *const *needles);

redisContext *itest_redis(int port);

/* Runs one command (ACL SETUSER/DELUSER) on all six nodes of the cluster:
 * ACLs are per node. */
void itest_acl_all_nodes(const char *const *argv, int argc);

/* FUNCTION LOAD REPLACE of redis/krib.lua (guarded fills) on every master. */
void itest_load_fill_library(void);

/* Moves the slots of hash tags "t0".."t<n-1>" (n <= 4) to other masters the
 * slow way (tests/integration/migrate_slots.sh: ASK while half moved, MOVED
 * after); fails the test if the script does. */
void itest_migrate_tag_slots(int n);

/* Starts argv in the background (stdout/stderr to /dev/null); wait with
 * itest_wait(). */
pid_t itest_spawn(char *const argv[]);
int itest_wait(pid_t pid, int timeout_s);

/* Produces one event synchronously to (topic, partition). vv is
 * "origin=counter,..." ("" for none); value NULL for DELETE. */
void itest_produce_event(const char *topic, int partition, const char *entity,
                         const char *const *keys, krib_action_t action, const char *vv,
                         const char *value);

/* Produces a prepared event (any field, hostile ones too) synchronously;
 * ts_ms 0 becomes now. Keyed by the entity. */
void itest_produce_ev(const char *topic, int partition, krib_event_t *ev);

/* A TAG event sweeping keys matching pattern, synchronously. */
void itest_produce_tag(const char *topic, int partition, const char *entity, const char *pattern);

/* One raw record (value NULL: a tombstone), synchronously. */
void itest_produce_raw(const char *topic, int partition, const void *key, size_t key_len,
                       const void *value, size_t value_len);

/* "CMD key [arg]" through the cluster (follows MOVED); out gets a string or
 * status reply. Returns 1 for a string/status reply or a positive integer. */
int itest_cluster_cmd(const char *cmd, const char *key, const char *arg, char *out, size_t size);

/* GET through the cluster (follows MOVED). Returns 1 and the value, or 0 for
 * a missing key. */
int itest_cluster_get(const char *key, char *out, size_t size);

/* Resident set size of pid in KiB: current, and peak (VmHWM). */
long itest_rss_kb(pid_t pid, int peak);

/* Sum of committed offsets (missing ones count 0). */
int64_t itest_committed_sum(const char *group, const char *topic, int nparts);

/* Port a test may give krib's HTTP endpoints (METRICS_TEST_PORT). */
int itest_metrics_port(void);

/* GET http://127.0.0.1:port/path with curl, body into out_path. Returns the
 * HTTP status, or -1 when nothing answered. */
int itest_http_get(int port, const char *path, const char *out_path);

/* Writes a krib config for tests at path: this broker and cluster seed,
 * group, krib's Avro decoder on `avro_topic` (NULL: none), then the caller's
 * extra settings (printf format: routes, dlq, registry ...). */
void itest_write_conf(const char *path, const char *group, const char *avro_topic,
                      const char *extra_fmt, ...);

/* Sum of the values of the /metrics lines (in the file at path) that
 * contain n1 and, when not NULL, n2; comment lines skipped. */
double itest_metric(const char *path, const char *n1, const char *n2);

/* Names unique to one test run and the environment that points krib at them. */
typedef struct itest_names {
        char topic[100], group[128], prefix[128], log[256];
        char env_topic[200], env_group[200], env_brokers[300], env_nodes[600];
} itest_names_t;

void itest_names(itest_names_t *n, const char *what);

/* Creates n->topic (nparts partitions) and its dead-letter topic
 * "<topic>-dlq" (1 partition), and names the test's config file
 * "/tmp/<topic>.conf"; both names are written to dlq and conf. */
void itest_topic_with_dlq(const itest_names_t *n, int nparts, char *dlq, size_t dlq_size,
                          char *conf, size_t conf_size);

/* How many of the keys "<prefix>:{i}:k<j>" (i < count, j < k) exist. */
long itest_count_keys(const itest_names_t *n, const char *redis, long count, long k);

/* Creates the topic, SETs the keys, checks they exist, produces count events
 * (+ malformed ones) naming them, via krib-loadgen. */
void itest_create_and_fill(const itest_names_t *n, const char *redis, int nparts, long count,
                           long k, long malformed);

/* Marks in owned[KRIB_SLOT_COUNT] the slots the master on port serves now
 * (CLUSTER SLOTS from the seed); returns how many. */
int itest_master_slots(int port, unsigned char *owned);

/* p99 of the latencies (ms) in a pipeline.latency_trace_file of events
 * that happened (ts_ms) in [from_ms, to_ms] (wall clock) whose first key's
 * slot is not marked in skip; *count how many there were (-1 returned when
 * none). */
int itest_trace_p99(const char *path, int64_t from_ms, int64_t to_ms, const unsigned char *skip,
                    long *count);

#endif
