/* sim: the deterministic simulation's shared state (tests/sim/README.md).
 *
 * One thread, one seeded generator, one simulated clock: the writer under
 * test (connector/writer.c, built with -DKRIB_SIM so krib_clock_mono_us()
 * reads krib_sim_now_us), the simulated network (net.c, which implements
 * conn.h) and the simulated Redis Cluster (cluster.c, which runs the real
 * fence.lua in an embedded Lua 5.1) all draw from it, so a seed replays
 * exactly. */
#ifndef KRIB_SIM_H
#define KRIB_SIM_H

#include <stddef.h>
#include <stdint.h>

extern int64_t krib_sim_now_us;

/* The generator everything random draws from (xorshift64*). */
uint64_t sim_rand(void);
void sim_seed(uint64_t seed);
static inline uint64_t sim_below(uint64_t n) {
        return n ? sim_rand() % n : 0;
}
static inline int sim_chance(unsigned per_million) {
        return sim_below(1000000) < per_million;
}

/* The trace of recent actions (sim.c), stamped with the step and the
 * simulated time; printed when an invariant breaks. */
extern uint64_t sim_step_no;
void sim_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sim_trace_reset(void);
void sim_trace_print(uint64_t last);

/* A growable byte buffer. */
typedef struct {
        char *p;
        size_t n, cap;
} sim_buf_t;
void sim_buf_put(sim_buf_t *b, const void *p, size_t n);
void sim_buf_printf(sim_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the cluster (cluster.c) ---- */

#define SIM_NODES     3
#define SIM_BASE_PORT 7001

typedef struct {
        int64_t frozen_until_us; /* commands wait until then */
        int64_t down_until_us;   /* connects are refused until then */
} sim_node_state_t;

/* Faults the scheduler turns on and off (per million commands). */
typedef struct {
        unsigned err_ppm; /* TRYAGAIN, LOADING, BUSY, OOM, NOSCRIPT, MASTERDOWN */
        /* Refusals for good, as an ACL'd user gets them: every command
         * naming this key is NOPERM (NULL: none), and SCRIPT LOAD on this
         * node (-1: none). */
        const char *acl_refused_key;
        int script_refused_node;
} sim_faults_t;
extern sim_faults_t sim_faults;
extern sim_node_state_t sim_node[SIM_NODES];

/* Faults: all off and no refusal (reset), transient ones off (off), one
 * random transient fault (fault: error replies, a frozen node, refused
 * connects, a cut connection, a migration step, slower replies). */
extern int sim_failovers; /* sim_fault() may fail a master over too */
void sim_faults_reset(void);
void sim_faults_off(void);
void sim_fault(void);

int sim_cluster_init(const char *fence_lua_path);
void sim_cluster_free(void);

/* Runs one command on node n (asking: ASKING preceded it on that
 * connection) and appends its RESP reply to out. Returns 1 when the command
 * was ASKING (the connection's flag is set for the next one). */
int sim_cluster_exec(int n, int asking, int argc, char **argv, size_t *lens, sim_buf_t *out);

/* Replicas (cluster.c): each master's replica applies its writes up to
 * sim_repl_lag_max_us later. replicate: apply what is due (the scheduler
 * calls it as time passes); failover: the replica takes master n's place,
 * losing what it had not applied. A WAIT reply is due at
 * sim_cluster_reply_at_us (set by sim_cluster_exec, 0: at once). */
extern int64_t sim_repl_lag_max_us, sim_cluster_reply_at_us;
void sim_cluster_replicate(void);
void sim_cluster_failover(int n);

/* A key's value across the nodes (NULL: absent), for the invariants. */
const char *sim_cluster_get(const char *key, size_t len, size_t *vlen);
int sim_cluster_slot_owner(unsigned slot);
/* SCRIPT FLUSH on node n. */
void sim_cluster_script_flush(int n);

/* Slot migration, one key per call: starts when none is in progress. */
void sim_cluster_migrate_step(void);
int sim_cluster_migrating(void);

/* Observers the scheduler installs: every command a node executes. */
typedef void(sim_exec_hook_t)(int node, int argc, char **argv, size_t *lens);
extern sim_exec_hook_t *sim_on_exec;

/* ---- the network (net.c, implements conn.h) ---- */

/* Delivers every command whose time came, in arrival order across all
 * connections. */
void sim_net_run(void);
/* Earliest moment something arrives (a command at a node, a reply at
 * krib); INT64_MAX when nothing is on the wire. */
int64_t sim_net_next_us(void);
/* Cuts one live connection: what reached its node ran, the rest is lost. */
int sim_net_break_one(void);
/* Cuts every live connection to node n (a failover). */
void sim_net_break_node(int n);
size_t sim_net_on_wire(void);
void sim_net_free(void);
/* Called for each command krib sends (appended to a pipeline). */
typedef void(sim_send_hook_t)(int node, int argc, char **argv, size_t *lens);
extern sim_send_hook_t *sim_on_send;
/* Per-command latency bounds (µs) the scheduler varies. */
extern int64_t sim_net_delay_min_us, sim_net_delay_max_us;

#endif
