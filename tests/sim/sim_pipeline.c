/* krib-psim: deterministic simulation of the whole pipeline
 * (connector/pipeline.c with the real reorder, offsets, decode and writer
 * code) in two krib members of one consumer group, against a simulated
 * topic and group (group.c), dead-letter topic (dlq.c), network (net.c)
 * and Redis Cluster (cluster.c running the real fence.lua); see
 * tests/sim/README.md.
 *
 * A seeded scheduler produces Avro events (entities with versions, UPSERTs
 * and DELETEs naming some of the entity's keys; some held back and
 * produced late, so they arrive older than their entity's newest; some
 * produced twice; some undecodable), moves partitions between the members
 * (cooperative revokes, eager rebalances, lost assignments) and injects the
 * cluster faults the writer simulation does. Invariants:
 *   commit   per key, Redis never holds a value older than the newest
 *            committed event naming that key: an offset committed before
 *            its keys were acknowledged (or unlinked, for a dead letter)
 *            shows as an older value still cached. Every key starts
 *            cached at version 0, so an early commit is visible at once.
 *            (redis.fence=upserts with moves: its weaker rule, floor_of.)
 *   revoke   a member sends nothing for a partition it gave up;
 *   monotone a partition's committed offset never moves backwards;
 *   bounded  a member holds no more unfinished messages than its
 *            in-flight bound allows (plus the open batch and the stash);
 *   progress with faults and moves off, every partition is committed to
 *            the end of its log within 60 s of sim time.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "encode.h"
#include "group.h"
#include "log.h"
#include "pipeline.h"
#include "sim.h"
#include "sim_dlq.h"
#include "slot.h"
#include "writer.h"

#define NENT     16
#define KPE      3 /* keys per entity: two share a slot, one does not */
#define NKEYS    (NENT * KPE)
#define MAX_HELD 32

enum { R_DELETE = 0, R_UPSERT = 1, R_JUNK = 2 };
static const char *const action_name[] = {"DELETE", "UPSERT", "junk"};

typedef struct {
        int entity, action;
        int64_t version;
        uint8_t keys; /* bit j: key j of the entity */
        uint8_t dead; /* dead-lettered */
} rec_t;

static rec_t *recs;
static size_t nrecs, cap_recs;
static uint32_t held[MAX_HELD]; /* produced late */
static size_t nheld;
static int64_t ent_version[NENT];
/* The newest committed version naming the key: of any event, and of
 * UPSERTs only (what redis.fence=upserts keeps across owners, see
 * check_keys). */
static int64_t floor_v[NKEYS], floor_ups[NKEYS], del_produced[NKEYS];
static char keys[NKEYS][32];
static size_t key_len[NKEYS];
static int fence_mode, no_moves, no_lost, in_order, no_bound, failovers, wait_replicas;
static uint64_t trace_lines = 200;
static int trace_sends;
static krib_encode_t *enc;
static krib_pipeline_t *members[SIM_MEMBERS];
static krib_conf_t conf;
static const char *failure;
static char failure_buf[512];
static int bad_key = -1, stalled;
static int64_t bad_held = -1;
static uint64_t stat_recs, stat_moves, stat_commits, stat_quiesce, stat_faults, stat_dead;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
        if (failure)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(failure_buf, sizeof(failure_buf), fmt, ap);
        va_end(ap);
        failure = failure_buf;
}

/* ---- producing ---- */

static uint32_t new_rec(int entity, int action) {
        if (nrecs == cap_recs) {
                cap_recs = cap_recs ? 2 * cap_recs : 4096;
                recs = realloc(recs, cap_recs * sizeof(*recs));
                if (!recs)
                        abort();
        }
        rec_t *r = &recs[nrecs];
        memset(r, 0, sizeof(*r));
        r->entity = entity;
        r->action = action;
        if (action != R_JUNK) {
                r->version = ++ent_version[entity];
                while (!r->keys)
                        r->keys = (uint8_t)sim_below(1u << KPE);
        }
        return (uint32_t)nrecs++;
}

static void append(uint32_t id) {
        const rec_t *r = &recs[id];
        int part = r->entity % SIM_PARTS;
        char buf[1024];
        size_t len = 0;
        if (r->action == R_JUNK) {
                len = (size_t)snprintf(buf, sizeof(buf), "\x02not avro %u", id);
        } else {
                krib_event_t ev;
                memset(&ev, 0, sizeof(ev));
                char ent[16], val[32];
                krib_str_t ks[KPE];
                size_t nk = 0;
                for (int j = 0; j < KPE; j++)
                        if (r->keys & (1u << j)) {
                                int k = r->entity * KPE + j;
                                ks[nk++] = (krib_str_t){keys[k], key_len[k]};
                        }
                krib_vv_entry_t vv = {{"v", 1}, r->version};
                ev.entity = (krib_str_t){ent, (size_t)snprintf(ent, sizeof(ent), "e%d", r->entity)};
                ev.keys = ks;
                ev.key_count = nk;
                ev.version = &vv;
                ev.version_count = 1;
                ev.action = r->action == R_UPSERT ? KRIB_ACTION_UPSERT : KRIB_ACTION_DELETE;
                ev.ts_ms = 1;
                ev.ttl_ms = -1;
                if (r->action == R_UPSERT)
                        ev.value = (krib_str_t){
                                val, (size_t)snprintf(val, sizeof(val), "v%" PRId64, r->version)};
                if (krib_encode_event(enc, &ev, buf, sizeof(buf), &len))
                        abort();
        }
        sim_group_append(part, buf, len, id);
        for (int j = 0; j < KPE && r->action == R_DELETE; j++) {
                int k = r->entity * KPE + j;
                if ((r->keys & (1u << j)) && r->version > del_produced[k])
                        del_produced[k] = r->version;
        }
        sim_note("produce partition=%d offset=%zu rec=%u e%d %s v%" PRId64 " keys=%x", part,
                 sim_parts[part].n - 1, id, r->entity, action_name[r->action], r->version, r->keys);
        stat_recs++;
}

static void produce(void) {
        int e = (int)sim_below(NENT);
        uint64_t roll = sim_below(100);
        if (roll < 2) {
                append(new_rec(e, R_JUNK));
                return;
        }
        int part = e % SIM_PARTS;
        if (roll < 5 && sim_parts[part].n) { /* a producer's retry: the same record again */
                append(sim_parts[part].log[sim_parts[part].n - 1].rec);
                return;
        }
        uint32_t id = new_rec(e, roll < 60 ? R_UPSERT : R_DELETE);
        if (roll % 10 == 0 && nheld < MAX_HELD && !in_order) {
                held[nheld++] = id; /* produced later, after newer ones */
                return;
        }
        append(id);
        if (nheld && sim_chance(200000)) {
                size_t i = sim_below(nheld);
                append(held[i]);
                held[i] = held[--nheld];
        }
}

/* ---- what the group and the dead-letter topic report ---- */

static void on_commit(int part, int64_t from, int64_t to, int member) {
        stat_commits++;
        if (to < from) {
                fail("partition %d: member %d committed %" PRId64 " below the committed %" PRId64,
                     part, member, to, from);
                return;
        }
        if (to > (int64_t)sim_parts[part].n) {
                fail("partition %d: member %d committed %" PRId64 " past the log's end %zu", part,
                     member, to, sim_parts[part].n);
                return;
        }
        for (int64_t o = from; o < to; o++) {
                const rec_t *r = &recs[sim_parts[part].log[o].rec];
                if (r->action == R_JUNK)
                        continue;
                for (int j = 0; j < KPE; j++) {
                        int k = r->entity * KPE + j;
                        if (!(r->keys & (1u << j)))
                                continue;
                        if (r->version > floor_v[k])
                                floor_v[k] = r->version;
                        if (r->action == R_UPSERT && r->version > floor_ups[k])
                                floor_ups[k] = r->version;
                }
        }
}

static void on_dead_letter(int32_t part, int64_t offset, const char *stage, const char *cls,
                           const char *msg) {
        uint32_t id = sim_parts[part].log[offset].rec;
        recs[id].dead = 1;
        stat_dead++;
        sim_note("dead letter partition=%d offset=%" PRId64 " rec=%u %s %s: %.60s", part, offset,
                 id, stage, cls, msg);
        if (recs[id].action != R_JUNK)
                fail("record %u (partition %d offset %" PRId64 ", %s) was dead-lettered: %s %s", id,
                     part, offset, action_name[recs[id].action], cls, msg);
}

/* Every command a node runs, in the trace (-v): UNLINKs with their keys,
 * scripts with their first key. */
static void on_exec(int node, int argc, char **argv, size_t *lens) {
        (void)lens;
        char what[120] = "";
        if (!strcmp(argv[0], "UNLINK") || !strcmp(argv[0], "SET"))
                for (int i = 1, o = 0; i < argc && o < 100; i++)
                        o += snprintf(what + o, sizeof(what) - (size_t)o, " %s", argv[i]);
        else if (!strcmp(argv[0], "EVALSHA") && argc > 3)
                for (int i = 3, o = 0; i < argc && o < 100; i++)
                        o += snprintf(what + o, sizeof(what) - (size_t)o, " %.20s", argv[i]);
        sim_note("exec node=%d %s%s", node, argv[0], what);
}

/* The member being stepped: what its writer sends is its own. */
static int actor = -1;

/* The partition of one of the simulation's keys ({eN}:kJ or eN:kJ), or -1
 * (a fence key, say). */
static int part_of_key(const char *k) {
        int e;
        if (sscanf(k, "{e%d}:k", &e) == 1 || sscanf(k, "e%d:k", &e) == 1)
                return e >= 0 && e < NENT ? e % SIM_PARTS : -1;
        return -1;
}

/* No command for a partition its member gave up: a revoked partition's
 * abandoned work is cancelled, not retried behind its next owner's back. */
static void check_send(int argc, char **argv) {
        if (actor < 0)
                return;
        int first = 1, end = argc;
        if (!strcmp(argv[0], "EVALSHA") && argc > 2) {
                first = 3;
                end = 3 + atoi(argv[2]);
        } else if (strcmp(argv[0], "UNLINK")) {
                return;
        }
        for (int i = first; i < end && i < argc; i++) {
                int p = part_of_key(argv[i]);
                if (p >= 0 && sim_group_released(actor, p))
                        fail("member %d sent %s for %s of partition %d after it gave the "
                             "partition up",
                             actor, argv[0], argv[i], p);
        }
}

static void on_send(int node, int argc, char **argv, size_t *lens) {
        (void)lens;
        check_send(argc, argv);
        if (!trace_sends)
                return;
        char what[120] = "";
        if (!strcmp(argv[0], "EVALSHA") || !strcmp(argv[0], "UNLINK"))
                for (int i = 1, o = 0; i < argc && o < 100; i++)
                        o += snprintf(what + o, sizeof(what) - (size_t)o, " %.20s", argv[i]);
        sim_note("send member=%d node=%d %s%s", actor, node, argv[0], what);
}

/* ---- invariants ---- */

/* With redis.fence=upserts a DELETE leaves no fence, so once a partition
 * changed owner (the new owner's reorder state starts afresh, the old
 * owner's last write may still be on the wire) an UPSERT older than an
 * applied DELETE can be written again: documented (docs/ARCHITECTURE.md,
 * fence modes: "between write-throughs only"). There, with moves, the floor
 * is the newest committed UPSERT, and none once a newer DELETE exists (it
 * may have been coalesced into that DELETE's unlink, which leaves no
 * fence). */
static int64_t floor_of(int k) {
        if (fence_mode != KRIB_FENCE_UPSERTS || no_moves)
                return floor_v[k];
        return floor_ups[k] > del_produced[k] ? floor_ups[k] : 0;
}

static void check_keys(void) {
        for (int k = 0; k < NKEYS && !failure; k++) {
                size_t vl;
                const char *v = sim_cluster_get(keys[k], key_len[k], &vl);
                if (!v)
                        continue;
                int64_t held_v = v[0] == 'v' ? strtoll(v + 1, NULL, 10) : -1;
                if (held_v < floor_of(k)) {
                        bad_key = k;
                        bad_held = held_v;
                        fail("key %s holds %s, older than committed version %" PRId64
                             " of entity e%d",
                             keys[k], v, floor_of(k), k / KPE);
                }
        }
}

/* The records of the key's entity from the value it holds to the newest
 * committed one naming it (and a few after), with where each stands. */
static void print_key_history(int k, int64_t held_v) {
        int e = k / KPE, j = k % KPE;
        const sim_part_t *sp = &sim_parts[e % SIM_PARTS];
        printf("  records of e%d (partition %d, committed %" PRId64 ") from v%" PRId64
               "; * names %s:\n",
               e, e % SIM_PARTS, sp->committed, held_v, keys[k]);
        for (size_t o = 0; o < sp->n; o++) {
                const rec_t *r = &recs[sp->log[o].rec];
                if (r->entity != e || r->action == R_JUNK || r->version < held_v ||
                    r->version > floor_of(k) + 3)
                        continue;
                printf("    offset=%-6zu rec=%-6u %-6s v%-6" PRId64 " keys=%x %s%s%s\n", o,
                       sp->log[o].rec, action_name[r->action], r->version, r->keys,
                       (r->keys & (1u << j)) ? "*" : " ",
                       (int64_t)o < sp->committed ? " committed" : "",
                       r->dead ? " dead-lettered" : "");
        }
}

/* ---- the scheduler ---- */

static int64_t commit_at_us;

static void advance(int64_t due, int64_t max_dt) {
        int64_t next = sim_net_next_us();
        if (due < next)
                next = due;
        if (commit_at_us < next)
                next = commit_at_us;
        int64_t to = krib_sim_now_us + (int64_t)sim_below((uint64_t)max_dt + 1);
        if (next > krib_sim_now_us && next < to)
                to = next;
        if (to > krib_sim_now_us)
                krib_sim_now_us = to;
        sim_net_run();
        if (krib_sim_now_us >= commit_at_us) {
                sim_group_autocommit();
                commit_at_us = krib_sim_now_us + 20000 + (int64_t)sim_below(100000);
        }
}

static int64_t step_members(void) {
        int64_t due = INT64_MAX;
        for (int m = 0; m < SIM_MEMBERS && !failure; m++) {
                if (sim_group_has_messages(m))
                        krib_pipeline_wake(members[m]);
                actor = m;
                int64_t d = krib_pipeline_step(members[m], 0);
                actor = -1;
                if (d < due)
                        due = d;
                char why[200];
                if (krib_writer_sim_check(krib_pipeline_sim_writer(members[m]), why, sizeof(why)))
                        fail("member %d's writer: %s", m, why);
                if (krib_pipeline_halted(members[m]))
                        fail("member %d halted", m);
                size_t out = sim_group_outstanding(m);
                size_t bound = (size_t)(conf.pipeline_max_in_flight_events +
                                        2 * conf.pipeline_batch_max_events);
                if (out > bound && !no_bound) {
                        fail("member %d holds %zu unfinished messages (bound %zu)", m, out, bound);
                        stalled = 1; /* show where the members stand */
                }
        }
        return due;
}

static void quiesce(void) {
        sim_faults_off();
        while (nheld)
                append(held[--nheld]);
        int64_t until = krib_sim_now_us + 60000000, migrate_at = krib_sim_now_us;
        sim_note("quiesce");
        for (int i = 0; i < 4000000 && !failure; i++) {
                if (sim_group_settled())
                        break;
                if (krib_sim_now_us > until) {
                        char what[256] = "";
                        size_t o = 0;
                        for (int p = 0; p < SIM_PARTS; p++)
                                o += (size_t)snprintf(
                                        what + o, sizeof(what) - o,
                                        " p%d: owner=%d next=%d committed=%" PRId64 "/%zu;", p,
                                        sim_parts[p].owner, sim_parts[p].next_owner,
                                        sim_parts[p].committed, sim_parts[p].n);
                        fail("no progress 60 s after faults and moves stopped:%s", what);
                        stalled = 1;
                        break;
                }
                if (sim_cluster_migrating() && krib_sim_now_us >= migrate_at) {
                        sim_cluster_migrate_step();
                        migrate_at = krib_sim_now_us + 10000;
                }
                advance(step_members(), 5000);
        }
        check_keys();
        stat_quiesce++;
}

static void move(void) {
        uint64_t roll = sim_below(10);
        int rc;
        if (roll < 7)
                rc = sim_group_move((int)sim_below(SIM_PARTS), (int)sim_below(SIM_MEMBERS));
        else if (roll < 9 || no_lost)
                rc = sim_group_eager();
        else
                rc = sim_group_lose((int)sim_below(SIM_MEMBERS));
        stat_moves += rc == 0;
}

static int run(uint64_t seed, uint64_t steps, int mode, int verbose) {
        sim_seed(seed);
        fence_mode = mode;
        krib_sim_now_us = 1000000;
        commit_at_us = krib_sim_now_us;
        failure = NULL;
        bad_key = -1;
        stalled = 0;
        nrecs = nheld = 0;
        memset(ent_version, 0, sizeof(ent_version));
        memset(floor_v, 0, sizeof(floor_v));
        memset(floor_ups, 0, sizeof(floor_ups));
        memset(del_produced, 0, sizeof(del_produced));
        sim_trace_reset();
        sim_faults_reset();
        sim_failovers = failovers;
        sim_group_reset();
        sim_on_commit = on_commit;
        sim_on_dead_letter = on_dead_letter;
        sim_on_exec = verbose > 1 ? on_exec : NULL;
        sim_on_send = on_send;
        trace_sends = verbose > 2;
        sim_group_verbose = verbose > 1;
        if (sim_cluster_init(KRIB_SIM_FENCE_LUA)) {
                fprintf(stderr, "krib-psim: cannot read %s\n", KRIB_SIM_FENCE_LUA);
                return 2;
        }
        /* Every key cached at version 0: an event committed before its
         * keys were written shows as that old value. */
        for (int k = 0; k < NKEYS; k++) {
                int e = k / KPE, j = k % KPE;
                key_len[k] = (size_t)(j < 2 ? snprintf(keys[k], sizeof(keys[k]), "{e%d}:k%d", e, j)
                                            : snprintf(keys[k], sizeof(keys[k]), "e%d:k%d", e, j));
                char *argv[] = {"SET", keys[k], "v0"};
                size_t lens[] = {3, key_len[k], 2};
                sim_buf_t out = {0};
                sim_cluster_exec(sim_cluster_slot_owner(krib_slot_of(keys[k], key_len[k])), 0, 3,
                                 argv, lens, &out);
                free(out.p);
        }
        char err[256];
        if (krib_conf_init(&conf))
                return 2;
        for (size_t i = 0; i < conf.redis_nodes.n; i++)
                free(conf.redis_nodes.v[i]);
        free(conf.redis_nodes.v);
        conf.redis_nodes.v = calloc(2, sizeof(char *));
        conf.redis_nodes.v[0] = strdup("127.0.0.1:7001");
        conf.redis_nodes.n = 1;
        conf.redis_fence = mode;
        conf.redis_max_keys_per_command = 4;
        conf.redis_wait_replicas = wait_replicas;
        conf.redis_health_interval_ms = 0;
        conf.metrics_port = 0;
        conf.log_stats_interval_ms = 0;
        conf.pipeline_batch_max_events = 16;
        conf.pipeline_max_in_flight_events = 128;
        conf.pipeline_linger_ms = 5;
        free(conf.dlq_topic);
        conf.dlq_topic = strdup("sim.dlq");
        free(conf.decode_schema_file);
        conf.decode_schema_file = strdup(KRIB_SIM_SCHEMA);
        if (!(enc = krib_encode_new_file(KRIB_SIM_SCHEMA, err, sizeof(err)))) {
                fprintf(stderr, "krib-psim: %s\n", err);
                return 2;
        }
        static volatile sig_atomic_t stop;
        for (int m = 0; m < SIM_MEMBERS; m++)
                if (!(members[m] = krib_pipeline_new(&conf, &stop, err, sizeof(err)))) {
                        fprintf(stderr, "krib-psim: %s\n", err);
                        return 2;
                }
        for (sim_step_no = 0; sim_step_no < steps && !failure; sim_step_no++) {
                uint64_t roll = sim_below(1000);
                if (roll < 300)
                        produce();
                else if (roll < 306 && !no_moves)
                        move();
                else if (roll < 312) {
                        sim_fault();
                        stat_faults++;
                }
                advance(step_members(), 3000);
                check_keys();
                if (sim_step_no % 5000 == 4999)
                        quiesce();
        }
        if (!failure)
                quiesce();
        int rc = 0;
        const char *mname = mode == KRIB_FENCE_ALL       ? "all"
                            : mode == KRIB_FENCE_UPSERTS ? "upserts"
                                                         : "versioned";
        if (failure) {
                rc = 1;
                printf("FAIL seed=%" PRIu64 " step=%" PRIu64 " fence=%s%s%s: %s\n", seed,
                       sim_step_no, mname, failovers ? " failover" : "",
                       wait_replicas ? " wait" : "", failure);
                if (bad_key >= 0)
                        print_key_history(bad_key, bad_held);
                for (int m = 0; stalled && m < SIM_MEMBERS; m++) {
                        printf("  member %d:\n", m);
                        krib_pipeline_sim_describe(members[m], stdout);
                }
                sim_trace_print(trace_lines);
                printf("  replay: tests/sim/run --pipeline --seed %" PRIu64 " --steps %" PRIu64
                       " --fence %s%s%s%s%s\n",
                       seed, sim_step_no + 1, mname, failovers ? " --failover" : "",
                       wait_replicas ? " --wait" : "", no_moves ? " --no-moves" : "",
                       in_order ? " --in-order" : "");
        }
        for (int m = 0; m < SIM_MEMBERS; m++)
                krib_pipeline_destroy(members[m]);
        krib_encode_destroy(enc);
        sim_net_free();
        sim_cluster_free();
        sim_group_free();
        krib_conf_destroy(&conf);
        return rc;
}

int main(int argc, char **argv) {
        uint64_t seed = 1, steps = 100000, seeds = 1;
        int verbose = 0, nmodes = 3;
        int modes[3] = {KRIB_FENCE_UPSERTS, KRIB_FENCE_ALL, KRIB_FENCE_VERSIONED};
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--seed") && i + 1 < argc)
                        seed = strtoull(argv[++i], NULL, 10);
                else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
                        steps = strtoull(argv[++i], NULL, 10);
                else if (!strcmp(argv[i], "--seeds") && i + 1 < argc)
                        seeds = strtoull(argv[++i], NULL, 10);
                else if (!strcmp(argv[i], "--fence") && i + 1 < argc) {
                        const char *f = argv[++i];
                        nmodes = 1;
                        modes[0] = !strcmp(f, "all")         ? KRIB_FENCE_ALL
                                   : !strcmp(f, "versioned") ? KRIB_FENCE_VERSIONED
                                                             : KRIB_FENCE_UPSERTS;
                } else if (!strcmp(argv[i], "--no-moves"))
                        no_moves = 1;
                else if (!strcmp(argv[i], "--trace") && i + 1 < argc)
                        trace_lines = strtoull(argv[++i], NULL, 10);
                else if (!strcmp(argv[i], "--no-lost"))
                        no_lost = 1;
                else if (!strcmp(argv[i], "--failover"))
                        failovers = 1;
                else if (!strcmp(argv[i], "--wait"))
                        wait_replicas = 1;
                else if (!strcmp(argv[i], "--no-bound"))
                        no_bound = 1;
                else if (!strcmp(argv[i], "--in-order"))
                        in_order = 1;
                else if (!strcmp(argv[i], "-v"))
                        verbose++;
                else {
                        fprintf(stderr,
                                "usage: krib-psim [--seed S] [--seeds K] [--steps N] "
                                "[--fence upserts|all|versioned] [--no-moves] "
                                "[--no-lost] [--in-order] [--no-bound]\n"
                                "                 [--failover] [--wait] [--trace N] [-v]\n");
                        return 2;
                }
        }
        if (verbose < 1 && !freopen("/dev/null", "w", stderr))
                return 2;
        krib_log_set_level(verbose ? KRIB_LOG_INFO : KRIB_LOG_ERROR);
        for (uint64_t s = seed; s < seed + seeds; s++)
                for (int m = 0; m < nmodes; m++) {
                        stat_recs = stat_moves = stat_commits = stat_quiesce = stat_faults =
                                stat_dead = 0;
                        int rc = run(s, steps, modes[m], verbose);
                        if (rc)
                                return rc;
                        printf("ok seed=%" PRIu64 " fence=%s steps=%" PRIu64 " records=%" PRIu64
                               " moves=%" PRIu64 " commits=%" PRIu64 " dead_letters=%" PRIu64
                               " faults=%" PRIu64 " quiescent_checks=%" PRIu64 " sim_time=%.1fs\n",
                               s,
                               modes[m] == KRIB_FENCE_ALL       ? "all"
                               : modes[m] == KRIB_FENCE_UPSERTS ? "upserts"
                                                                : "versioned",
                               steps, stat_recs, stat_moves, stat_commits, stat_dead, stat_faults,
                               stat_quiesce, (double)krib_sim_now_us / 1e6);
                        fflush(stdout);
                }
        return 0;
}
