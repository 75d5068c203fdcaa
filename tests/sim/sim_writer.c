/* krib-sim: deterministic simulation of the writer (connector/writer.c)
 * against a simulated Redis Cluster and network (tests/sim/README.md).
 *
 * A seeded scheduler submits jobs as the pipeline does (keys repeated
 * inside a job, as two partitions' events on one key give), cancels jobs as
 * a revoke does, and injects faults: error replies, frozen and refused
 * nodes, cut connections, slot migrations, slow and reordered replies.
 * Invariants, checked as it goes and at every quiescent point:
 *   order   per key, what Redis holds comes from the last op krib finished
 *           (or from a later op of a cancelled job), never an older one;
 *   cancel  no fenced op is sent after its job was cancelled (and the
 *           caller's memory of a cancelled job is freed at once, so a touch
 *           is a sanitizer report);
 *   final   an op no fault refused for good is not reported FAILED;
 *   bounded queued and in-flight ops never exceed the ops of live jobs;
 *   progress with faults off, every job finishes within 60 s of sim time.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "log.h"
#include "sim.h"
#include "writer.h"

/* ---- the model: every op ever submitted ---- */

#define NKEYS    24
#define MAX_LIVE 48

enum { K_UNLINK = 0, K_DELETE = 1, K_UPSERT = 2 };
static const char *const kind_name[] = {"UNLINK", "DELETE", "UPSERT"};

typedef struct {
        uint64_t seq; /* also the op's version counter and value "s<seq>" */
        int key, kind;
        uint32_t job; /* index into hjobs */
        uint8_t status;
        uint8_t cancelled; /* its job, or itself alone (a revoked partition's op) */
} mop_t;

typedef struct {
        int wid; /* the writer's job id; -1 once released */
        int cancelled;
        size_t n;
        uint32_t first; /* first mop */
        /* The caller's memory, freed at release or cancel. */
        krib_wop_t *ops;
        krib_event_t *evs;
        krib_vv_entry_t *vv;
        char *vals;
        uint8_t *status;
} hjob_t;

static mop_t *mops;
static size_t nmops, cap_mops;
static hjob_t *hjobs;
static size_t nhjobs, cap_hjobs;
static uint32_t live[MAX_LIVE]; /* hjob indexes with a writer job */
static size_t nlive;
static char keys[NKEYS][32];
static size_t key_len[NKEYS];
static uint64_t next_seq = 1;
static uint64_t newest_seq[NKEYS]; /* the newest op submitted per key */
static int bad_key = -1;           /* the key an invariant broke on */
static int fence_mode;
static int no_cancel, no_repeat;              /* isolate one kind of trouble */
static int force_acl = -1, force_script = -2; /* -1/-2: by the seed */
static const char *failure;
static char failure_buf[512];
static uint64_t stat_jobs, stat_ops, stat_cancels, stat_quiesce, stat_faults;

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

static void free_caller(hjob_t *h) {
        free(h->ops);
        free(h->evs);
        free(h->vv);
        free(h->vals);
        free(h->status);
        h->ops = NULL;
        h->evs = NULL;
        h->vv = NULL;
        h->vals = NULL;
        h->status = NULL;
}

static void submit(krib_writer_t *w) {
        size_t n = 1 + sim_below(sim_chance(100000) ? 40 : 6);
        if (no_repeat && n > NKEYS)
                n = NKEYS;
        if (nhjobs == cap_hjobs) {
                cap_hjobs = cap_hjobs ? 2 * cap_hjobs : 1024;
                hjobs = realloc(hjobs, cap_hjobs * sizeof(*hjobs));
        }
        if (nmops + n > cap_mops) {
                cap_mops = (nmops + n) * 2;
                mops = realloc(mops, cap_mops * sizeof(*mops));
        }
        hjob_t *h = &hjobs[nhjobs];
        memset(h, 0, sizeof(*h));
        h->n = n;
        h->first = (uint32_t)nmops;
        h->ops = calloc(n, sizeof(*h->ops));
        h->evs = calloc(n, sizeof(*h->evs));
        h->vv = calloc(n, sizeof(*h->vv));
        h->vals = calloc(n, 24);
        h->status = calloc(n, 1);
        /* Keys from a few hot tags, so commands carry several keys of a slot
         * and a key repeats inside a job now and then. */
        int hot = (int)sim_below(NKEYS);
        for (size_t i = 0; i < n; i++) {
                int k = sim_chance(300000) ? hot : (int)sim_below(NKEYS);
                for (size_t x = 0; no_repeat && x < i; x++)
                        if (h->ops[x].key == keys[k]) {
                                k = (k + 1) % NKEYS;
                                x = (size_t)-1; /* again from the first */
                        }
                uint64_t roll = sim_below(10);
                int kind = roll < 4 ? K_UPSERT : roll < 7 ? K_DELETE : K_UNLINK;
                mop_t *m = &mops[nmops++];
                *m = (mop_t){next_seq++, k, kind, (uint32_t)nhjobs, KRIB_WOP_PENDING, 0};
                newest_seq[k] = m->seq;
                krib_event_t *ev = &h->evs[i];
                h->vv[i].origin = (krib_str_t){"o", 1};
                h->vv[i].counter = (int64_t)m->seq;
                ev->version = &h->vv[i];
                ev->version_count = 1;
                ev->ttl_ms = -1;
                ev->action = kind == K_UPSERT ? KRIB_ACTION_UPSERT : KRIB_ACTION_DELETE;
                char *v = h->vals + 24 * i;
                int vl = snprintf(v, 24, "s%" PRIu64, m->seq);
                ev->value = (krib_str_t){v, (size_t)vl};
                h->ops[i].key = keys[k];
                h->ops[i].len = key_len[k];
                h->ops[i].ev = ev;
                /* As the pipeline maps actions: a DELETE is fenced only in
                 * redis.fence=all. */
                h->ops[i].kind = kind == K_UPSERT ? KRIB_WOP_UPSERT
                                 : kind == K_DELETE && fence_mode == KRIB_FENCE_ALL
                                         ? KRIB_WOP_DELETE
                                         : KRIB_WOP_UNLINK;
        }
        h->wid = krib_writer_submit(w, h->ops, n, h->status);
        if (h->wid < 0) {
                nmops -= n;
                next_seq -= n;
                free_caller(h);
                return;
        }
        live[nlive++] = (uint32_t)nhjobs;
        sim_note("submit job=%zu wid=%d ops=%zu first_seq=%" PRIu64, nhjobs, h->wid, n,
                 mops[h->first].seq);
        nhjobs++;
        stat_jobs++;
        stat_ops += n;
}

/* What the cluster refuses for good: the ACL'd key, and fenced work on a
 * node that may not load the script. */
static int refused_for_good(const mop_t *m) {
        if (sim_faults.acl_refused_key && !strcmp(keys[m->key], sim_faults.acl_refused_key))
                return 1;
        int fenced = m->kind == K_UPSERT || (m->kind == K_DELETE && fence_mode == KRIB_FENCE_ALL);
        /* (Loosely: its slot may have moved since.) */
        return fenced && sim_faults.script_refused_node >= 0;
}

/* Copies finished statuses into the model and releases finished jobs. */
static void harvest(krib_writer_t *w) {
        size_t keep = 0;
        for (size_t i = 0; i < nlive; i++) {
                hjob_t *h = &hjobs[live[i]];
                if (h->cancelled) {
                        /* The writer frees its slot when the last reply came. */
                        continue;
                }
                for (size_t x = 0; x < h->n; x++) {
                        mop_t *m = &mops[h->first + x];
                        if (m->status == KRIB_WOP_PENDING && h->status[x] == KRIB_WOP_FAILED &&
                            m->seq == newest_seq[m->key] && !m->cancelled &&
                            !(sim_faults.acl_refused_key &&
                              !strcmp(keys[m->key], sim_faults.acl_refused_key))) {
                                /* Fail safe, checked the moment it ends: every
                                 * earlier op on the key is final (chain), no
                                 * later one exists, so the key must be gone. */
                                size_t vl;
                                const char *v = sim_cluster_get(keys[m->key], key_len[m->key], &vl);
                                if (v) {
                                        bad_key = m->key;
                                        fail("op seq=%" PRIu64 " on %s ended FAILED with the key "
                                             "still holding %s: a refused write must unlink "
                                             "its key",
                                             m->seq, keys[m->key], v);
                                }
                        }
                        m->status = h->status[x];
                }
                if (krib_writer_job_left(w, h->wid) == 0) {
                        for (size_t x = 0; x < h->n; x++) {
                                mop_t *m = &mops[h->first + x];
                                if (m->status == KRIB_WOP_PENDING && !m->cancelled)
                                        fail("job %u finished with op seq=%" PRIu64
                                             " still PENDING",
                                             live[i], m->seq);
                                if (m->status == KRIB_WOP_FAILED && !refused_for_good(m) &&
                                    !m->cancelled)
                                        fail("op seq=%" PRIu64 " key=%s reported FAILED, yet "
                                             "no fault refuses it for good",
                                             m->seq, keys[m->key]);
                        }
                        krib_writer_job_release(w, h->wid);
                        sim_note("finished job=%u wid=%d", live[i], h->wid);
                        h->wid = -1;
                        free_caller(h);
                        continue;
                }
                live[keep++] = live[i];
        }
        nlive = keep;
}

static void cancel_one(krib_writer_t *w) {
        if (!nlive)
                return;
        size_t i = sim_below(nlive);
        hjob_t *h = &hjobs[live[i]];
        krib_writer_job_cancel(w, h->wid);
        h->cancelled = 1;
        for (size_t x = 0; x < h->n; x++)
                mops[h->first + x].cancelled = 1;
        sim_note("cancel job=%u wid=%d", live[i], h->wid);
        free_caller(h); /* the writer must not touch it again */
        live[i] = live[--nlive];
        stat_cancels++;
}

/* A revoke of some partitions: some ops of a live job are given up. */
static void cancel_some_ops(krib_writer_t *w) {
        if (!nlive)
                return;
        hjob_t *h = &hjobs[live[sim_below(nlive)]];
        size_t given_up = 0;
        for (size_t x = 0; x < h->n; x++) {
                mop_t *m = &mops[h->first + x];
                if (m->cancelled || !sim_chance(500000))
                        continue;
                krib_writer_op_cancel(w, h->wid, x);
                m->cancelled = 1;
                given_up++;
        }
        sim_note("cancel %zu ops of job=%u wid=%d", given_up, (unsigned)(h - hjobs), h->wid);
        stat_cancels++;
}

/* A fenced command carries each op's version: none may belong to a job
 * cancelled before now. */
static void on_send(int node, int argc, char **argv, size_t *lens) {
        (void)lens;
        char what[96] = "";
        if (!strcmp(argv[0], "UNLINK"))
                for (int i = 1, o = 0; i < argc && o < 80; i++)
                        o += snprintf(what + o, sizeof(what) - (size_t)o, " %s", argv[i]);
        else if (!strcmp(argv[0], "EVALSHA") && argc > 3)
                snprintf(what, sizeof(what), " %s ... (%d keys)", argv[3], atoi(argv[2]) / 2);
        sim_note("send node=%d %s%s", node, argv[0], what);
        if (strcmp(argv[0], "EVALSHA") || argc < 3)
                return;
        int nk = atoi(argv[2]);
        int a = 3 + nk + 2;
        for (int i = 0; i < nk / 2 && a + 3 < argc; i++) {
                int m = atoi(argv[a + 3]);
                a += 4;
                for (int v = 0; v < m && a + 1 < argc; v++, a += 2) {
                        uint64_t seq = strtoull(argv[a + 1], NULL, 10);
                        if (seq == 0 || seq >= next_seq)
                                continue;
                        /* mops are in seq order from 1 */
                        const mop_t *op = &mops[seq - 1];
                        if (op->cancelled)
                                fail("op seq=%" PRIu64 " key=%s sent to node %d after job %u "
                                     "was cancelled",
                                     seq, keys[op->key], node, op->job);
                }
        }
}

static void on_exec(int node, int argc, char **argv, size_t *lens) {
        (void)lens;
        if (!strcmp(argv[0], "UNLINK") || !strcmp(argv[0], "EVALSHA"))
                sim_note("exec node=%d %s %s%s", node, argv[0],
                         argc > 1 ? argv[!strcmp(argv[0], "EVALSHA") ? 3 : 1] : "",
                         argc > 4 ? " ..." : "");
}

/* ---- the order invariant, at a quiescent point ---- */

static void print_key_history(int k) {
        size_t from = nmops, shown = 0;
        while (from > 0 && shown < 12)
                shown += mops[--from].key == k;
        fprintf(stdout, "  history of %s (submission order, its last %zu ops):\n", keys[k], shown);
        for (size_t i = from; i < nmops; i++) {
                const mop_t *m = &mops[i];
                if (m->key != k)
                        continue;
                fprintf(stdout, "    seq=%-6" PRIu64 " job=%-5u %-6s %s status=%u\n", m->seq,
                        m->job, kind_name[m->kind], m->cancelled ? "cancelled" : "", m->status);
        }
}

static void check_keys(void) {
        /* Last op per key from a job that was not cancelled. */
        for (int k = 0; k < NKEYS && !failure; k++) {
                const mop_t *last = NULL;
                for (size_t i = 0; i < nmops; i++)
                        if (mops[i].key == k && !mops[i].cancelled)
                                last = &mops[i];
                if (!last)
                        continue;
                size_t vl;
                const char *v = sim_cluster_get(keys[k], key_len[k], &vl);
                int later_unlink = 0, ok = 0;
                uint64_t held = v && v[0] == 's' ? strtoull(v + 1, NULL, 10) : 0;
                for (size_t i = last->seq; i < nmops; i++) /* ops after last: cancelled */
                        if (mops[i].key == k) {
                                later_unlink |= mops[i].kind != K_UPSERT;
                                ok |= v && mops[i].kind == K_UPSERT && mops[i].seq == held;
                        }
                if (sim_faults.acl_refused_key && !strcmp(keys[k], sim_faults.acl_refused_key))
                        continue; /* krib may not touch it */
                if (last->status == KRIB_WOP_FAILED) {
                        /* Fail safe: a refused fenced write unlinks its key. */
                        ok = !v || held > last->seq;
                        if (!ok) {
                                bad_key = k;
                                fail("key %s holds %s after op seq=%" PRIu64 " was refused for "
                                     "good: a refused write must unlink its key",
                                     keys[k], v, last->seq);
                        }
                        continue;
                }
                if (!v)
                        ok = last->kind != K_UPSERT || later_unlink;
                else
                        ok |= last->kind == K_UPSERT && held == last->seq;
                if (!ok) {
                        bad_key = k;
                        fail("key %s holds %s after its last finished op seq=%" PRIu64
                             " (%s): an older op overtook a newer one",
                             keys[k], v ? v : "nothing", last->seq, kind_name[last->kind]);
                }
        }
}

/* ---- the scheduler ---- */

static void advance(krib_writer_t *w, int64_t max_dt) {
        int64_t next = sim_net_next_us();
        int64_t due = krib_writer_due_us(w);
        if (due < next)
                next = due;
        int64_t to = krib_sim_now_us + (int64_t)sim_below((uint64_t)max_dt + 1);
        if (next > krib_sim_now_us && next < to)
                to = next;
        if (to > krib_sim_now_us)
                krib_sim_now_us = to;
        sim_net_run();
}

static void writer_step(krib_writer_t *w) {
        if (krib_writer_step(w))
                fail("krib_writer_step: out of memory");
        harvest(w);
        const krib_writer_stats_t *st = krib_writer_stats(w);
        size_t ops_live = 0;
        for (size_t i = 0; i < nlive; i++)
                ops_live += hjobs[live[i]].n;
        if (st->queued_ops + st->inflight_ops > ops_live + 2000)
                fail("writer holds %" PRIu64 " ops for %zu ops of live jobs",
                     st->queued_ops + st->inflight_ops, ops_live);
        char why[200];
        if (krib_writer_sim_check(w, why, sizeof(why)))
                fail("writer: %s", why);
        if (krib_writer_jobs_live(w) > KRIB_WRITER_JOBS)
                fail("writer has %zu jobs live", krib_writer_jobs_live(w));
}

static void quiesce(krib_writer_t *w) {
        sim_faults_off();
        /* A migration always ends (multi-key commands get TRYAGAIN until
         * it does): one key moves every 10 ms of sim time from here on. */
        int64_t until = krib_sim_now_us + 60000000, migrate_at = krib_sim_now_us;
        sim_note("quiesce");
        for (int i = 0; i < 2000000 && !failure; i++) {
                if (nlive == 0 && krib_writer_jobs_live(w) == 0 && sim_net_on_wire() == 0)
                        break;
                if (krib_sim_now_us > until) {
                        const krib_writer_stats_t *st = krib_writer_stats(w);
                        fail("no progress: %zu jobs live 60 s after faults stopped (writer: "
                             "%" PRIu64 " ops queued, %" PRIu64 " in flight, %zu on the wire, "
                             "cluster breaker %u, next due in %" PRId64 " us)",
                             krib_writer_jobs_live(w), st->queued_ops, st->inflight_ops,
                             sim_net_on_wire(), st->cluster_breaker,
                             krib_writer_due_us(w) - krib_sim_now_us);
                        break;
                }
                if (sim_cluster_migrating() && krib_sim_now_us >= migrate_at) {
                        sim_cluster_migrate_step();
                        migrate_at = krib_sim_now_us + 10000;
                }
                advance(w, 5000);
                writer_step(w);
        }
        if (!failure && (nlive || krib_writer_jobs_live(w)))
                fail("no progress: %zu jobs never finished", krib_writer_jobs_live(w));
        check_keys();
        stat_quiesce++;
}

static int run(uint64_t seed, uint64_t steps, int mode, int verbose) {
        sim_seed(seed);
        fence_mode = mode;
        krib_sim_now_us = 1000000;
        failure = NULL;
        bad_key = -1;
        nmops = nhjobs = nlive = 0;
        next_seq = 1;
        memset(newest_seq, 0, sizeof(newest_seq));
        sim_trace_reset();
        sim_faults_reset();
        if (sim_cluster_init(KRIB_SIM_FENCE_LUA)) {
                fprintf(stderr, "krib-sim: cannot read %s\n", KRIB_SIM_FENCE_LUA);
                return 2;
        }
        for (int k = 0; k < NKEYS; k++)
                key_len[k] = (size_t)snprintf(keys[k], sizeof(keys[k]), "{t%d}:k%d", k % 7, k);
        /* Permanent refusals, in some seeds: one key outside the user's ACL
         * (its slot-mates are permitted), one node that may not run scripts. */
        if (sim_chance(500000))
                sim_faults.acl_refused_key = keys[NKEYS - 1];
        if (sim_chance(250000))
                sim_faults.script_refused_node = (int)sim_below(SIM_NODES);
        if (force_acl >= 0)
                sim_faults.acl_refused_key = force_acl ? keys[NKEYS - 1] : NULL;
        if (force_script >= -1)
                sim_faults.script_refused_node = force_script;
        /* The refusal starts a tenth into the run (an ACL change, the
         * script cache flushed), when the node's keys hold values. */
        int refuse_scripts = sim_faults.script_refused_node;
        sim_faults.script_refused_node = -1;
        krib_conf_t conf;
        char err[256];
        if (krib_conf_init(&conf))
                return 2;
        static char node0[] = "127.0.0.1:7001";
        static char *nodes[] = {node0};
        char **saved_nodes = conf.redis_nodes.v;
        size_t saved_n = conf.redis_nodes.n;
        conf.redis_nodes.v = nodes;
        conf.redis_nodes.n = 1;
        conf.redis_fence = mode;
        conf.redis_max_keys_per_command = 4;
        krib_writer_t *w = krib_writer_new(&conf, err, sizeof(err));
        if (!w) {
                fprintf(stderr, "krib-sim: %s\n", err);
                return 2;
        }
        sim_on_send = on_send;
        sim_on_exec = verbose > 1 ? on_exec : NULL;
        for (sim_step_no = 0; sim_step_no < steps && !failure; sim_step_no++) {
                if (sim_step_no == steps / 10 && refuse_scripts >= 0) {
                        sim_faults.script_refused_node = refuse_scripts;
                        sim_cluster_script_flush(refuse_scripts);
                        sim_note("fault node=%d refuses SCRIPT LOAD from now on", refuse_scripts);
                }
                uint64_t roll = sim_below(1000);
                if (roll < 300) {
                        if (nlive < MAX_LIVE)
                                submit(w);
                } else if (roll < 310) {
                        if (!no_cancel && sim_chance(500000))
                                cancel_one(w);
                        else if (!no_cancel)
                                cancel_some_ops(w);
                } else if (roll < 318) {
                        sim_fault();
                        stat_faults++;
                }
                advance(w, 3000);
                writer_step(w);
                if (sim_step_no % 5000 == 4999)
                        quiesce(w);
        }
        if (!failure)
                quiesce(w);
        int rc = 0;
        if (failure) {
                rc = 1;
                printf("FAIL seed=%" PRIu64 " step=%" PRIu64 " fence=%s acl_refused=%s "
                       "script_refused_node=%d: %s\n",
                       seed, sim_step_no,
                       mode == KRIB_FENCE_ALL       ? "all"
                       : mode == KRIB_FENCE_UPSERTS ? "upserts"
                                                    : "versioned",
                       sim_faults.acl_refused_key ? sim_faults.acl_refused_key : "-",
                       sim_faults.script_refused_node, failure);
                if (bad_key >= 0)
                        print_key_history(bad_key);
                sim_trace_print(200);
                printf("  replay: tests/sim/run --seed %" PRIu64 " --steps %" PRIu64
                       " --fence %s\n",
                       seed, sim_step_no + 1, mode == KRIB_FENCE_ALL ? "all" : "upserts");
        }
        krib_writer_destroy(w);
        for (size_t i = 0; i < nhjobs; i++)
                free_caller(&hjobs[i]);
        sim_net_free();
        sim_cluster_free();
        conf.redis_nodes.v = saved_nodes;
        conf.redis_nodes.n = saved_n;
        krib_conf_destroy(&conf);
        return rc;
}

int main(int argc, char **argv) {
        uint64_t seed = 1, steps = 200000, seeds = 1;
        int verbose = 0, modes[2] = {KRIB_FENCE_UPSERTS, KRIB_FENCE_ALL}, nmodes = 2;
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
                        modes[0] = !strcmp(f, "all") ? KRIB_FENCE_ALL : KRIB_FENCE_UPSERTS;
                } else if (!strcmp(argv[i], "--no-cancel"))
                        no_cancel = 1;
                else if (!strcmp(argv[i], "--no-repeat"))
                        no_repeat = 1;
                else if (!strcmp(argv[i], "--acl") && i + 1 < argc)
                        force_acl = atoi(argv[++i]) != 0;
                else if (!strcmp(argv[i], "--refuse-scripts") && i + 1 < argc)
                        force_script = atoi(argv[++i]);
                else if (!strcmp(argv[i], "-v"))
                        verbose++;
                else {
                        fprintf(stderr,
                                "usage: krib-sim [--seed S] [--seeds K] [--steps N] "
                                "[--fence all|upserts] [--no-cancel] [--no-repeat] [--acl 0|1]\n"
                                "       [--refuse-scripts NODE|-1] [-v]\n");
                        return 2;
                }
        }
        if (verbose < 1 && !freopen("/dev/null", "w", stderr))
                return 2;
        krib_log_set_level(verbose ? KRIB_LOG_INFO : KRIB_LOG_ERROR);
        for (uint64_t s = seed; s < seed + seeds; s++)
                for (int m = 0; m < nmodes; m++) {
                        stat_jobs = stat_ops = stat_cancels = stat_quiesce = stat_faults = 0;
                        int rc = run(s, steps, modes[m], verbose);
                        if (rc)
                                return rc;
                        printf("ok seed=%" PRIu64 " fence=%s steps=%" PRIu64 " jobs=%" PRIu64
                               " ops=%" PRIu64 " cancels=%" PRIu64 " faults=%" PRIu64
                               " quiescent_checks=%" PRIu64 " sim_time=%.1fs\n",
                               s, modes[m] == KRIB_FENCE_ALL ? "all" : "upserts", steps, stat_jobs,
                               stat_ops, stat_cancels, stat_faults, stat_quiesce,
                               (double)krib_sim_now_us / 1e6);
                        fflush(stdout);
                }
        return 0;
}
