/* Resilience (issue 4): krib against faults of the real Redis Cluster, the
 * real Kafka broker and the network (Toxiproxy), each while 100k events flow.
 *
 * Every scenario ends with the same audit: each DELETE entity's key is gone,
 * each write-through key holds the newest version written (no regression),
 * and committed offsets equal log-end offsets. Each prints one row of the
 * docs/RELIABILITY.md table (also appended to $KRIB_RELIABILITY_OUT). Run one
 * alone with CK_RUN_CASE=<name> (ctest: integration_resilience_<name>). An
 * unchecked teardown heals the cluster (restarts killed nodes, drops toxics,
 * lifts maxmemory) even when a scenario fails, so the next one starts clean.
 */
#include <check.h>
#include <math.h>
#include <hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "clock.h"
#include "itest.h"
#include "slot.h"

#define FAULTS KRIB_SOURCE_DIR "/tests/integration/faults.sh"
#define NPARTS 6

typedef struct run run_t;

typedef struct {
        const char *name;
        long count;      /* entities; events = count * passes */
        int passes;      /* versions per entity */
        int upsert_mod;  /* every upsert_mod-th entity is write-through */
        int tag_mod;     /* keys packed into this many slots (0: spread) */
        long rate;       /* producer events/s */
        int via_proxy;   /* krib reaches Redis (1) or Kafka (2) through Toxiproxy */
        double fault_at; /* fraction of events committed before the fault */
        const char *env[6];
        void (*fault)(run_t *r); /* injects the fault and heals it (sets heal_us) */
} scenario_t;

#ifndef KRIB_SANITIZE
/* Scenarios that disturb what Redis holds (a master replaced, slots moved,
 * a master frozen): the inspector's cross-check earns its minute there. */
static int inspected(const scenario_t *sc) {
        static const char *const disturbing[] = {
                "kill_master",           "manual_failover",           "reshard",
                "one_master_frozen_10s", "kill_krib_during_failover", NULL};
        const char *all = getenv("KRIB_INSPECT_ALL");
        if (all && strcmp(all, "1") == 0)
                return 1;
        for (int i = 0; disturbing[i]; i++)
                if (strcmp(sc->name, disturbing[i]) == 0)
                        return 1;
        return 0;
}
#endif

struct run {
        const scenario_t *sc;
        itest_names_t nm;
        pid_t krib, producer;
        pid_t krib2; /* a second member a scenario started, or 0 */
        char log2[320];
        const char *env[16];
        char env_nodes[600], env_map[600], env_metrics[64], env_brokers[96];
        long events;
        int64_t t0_us, heal_us;
        uint64_t consumed_before; /* by krib processes killed along the way */
        long peak_rss_kb;
        char metrics[300], note[400];
        /* Per-event latency (pipeline.latency_trace_file) and the window a
         * fault on one master lasted: the other masters' events then must
         * still be acknowledged fast. */
        char trace[320], env_trace[360];
        int64_t window_from_ms, window_to_ms;
        double long_turns; /* loop turns over 50 ms, krib's whole run */
        unsigned char victim[KRIB_SLOT_COUNT];
        int victims;
};

static int64_t wall_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The fault on master (its port) starts now: its slots' events are left
 * out of the others' p99. */
static void window_begin(run_t *r, const char *master) {
        r->victims = itest_master_slots(atoi(master), r->victim);
        ck_assert_int_gt(r->victims, 0);
        r->window_from_ms = wall_ms();
}

static void window_end(run_t *r) {
        r->window_to_ms = wall_ms();
}

static int port_base(void) {
        const char *b = getenv("KRIB_PORT_BASE");
        return b ? atoi(b) : 19000;
}

static void faults(const char *verb, const char *a1, const char *a2, const char *a3, char *out,
                   size_t size) {
        char *argv[] = {FAULTS, (char *)verb, (char *)a1, (char *)a2, (char *)a3, NULL};
        char buf[512];
        int rc = itest_run(argv, 120, out ? out : buf, out ? size : sizeof(buf));
        ck_assert_msg(rc == 0, "faults.sh %s failed (%d): %s", verb, rc, out ? out : buf);
        if (out) {
                size_t l = strlen(out);
                while (l && (out[l - 1] == '\n' || out[l - 1] == '\r'))
                        out[--l] = '\0';
        }
}

static void scrape(run_t *r) {
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/metrics", r->metrics), 200);
}

static uint64_t consumed_now(run_t *r) {
        scrape(r);
        return (uint64_t)itest_metric(r->metrics, "krib_events_total{outcome=\"consumed\"}", NULL);
}

/* CPU seconds (user + system) krib has used. */
static double cpu_s(pid_t pid) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        FILE *fp = fopen(path, "r");
        ck_assert_ptr_nonnull(fp);
        char buf[1024];
        size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')'); /* fields after the command name */
        unsigned long ut = 0, st = 0;
        ck_assert_int_eq(
                sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st), 2);
        return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void krib_start(run_t *r) {
        r->krib = itest_krib_start(r->env, r->nm.log);
}

static int64_t log_end_sum(const char *topic) {
        int64_t end[NPARTS], sum = 0;
        /* Right after a broker restart partition leaders may not be back yet. */
        int rc = -1;
        for (int i = 0; i < 60 && (rc = itest_log_end(topic, NPARTS, end)); i++)
                usleep(500000);
        ck_assert_int_eq(rc, 0);
        for (int p = 0; p < NPARTS; p++)
                sum += end[p];
        return sum;
}

/* Waits (bounded) until at least want events are committed. */
static void wait_committed(run_t *r, int64_t want, int timeout_s) {
        int64_t end = krib_clock_mono_us() + (int64_t)timeout_s * 1000000;
        while (itest_committed_sum(r->nm.group, r->nm.topic, NPARTS) < want) {
                ck_assert_msg(krib_clock_mono_us() < end, "%s: %lld events not committed in %ds",
                              r->sc->name, (long long)want, timeout_s);
                usleep(100000);
        }
}

static void run_scenario(const scenario_t *sc) {
        run_t r;
        memset(&r, 0, sizeof(r));
        r.sc = sc;
        itest_names(&r.nm, sc->name);
        r.events = sc->count * sc->passes;
        snprintf(r.metrics, sizeof(r.metrics), "%s.metrics", r.nm.log);
        char ns[32], ps[16], us[16], tm[16], rs[32];
        snprintf(ns, sizeof(ns), "%ld", sc->count);
        snprintf(ps, sizeof(ps), "%d", sc->passes);
        snprintf(us, sizeof(us), "%d", sc->upsert_mod);
        snprintf(tm, sizeof(tm), "%d", sc->tag_mod);
        snprintf(rs, sizeof(rs), "%ld", sc->rate);
        const char *create[] = {"create", "--topic", r.nm.topic, "--partitions", "6", NULL};
        itest_loadgen(create);
        const char *populate[] = {
                "populate",  "--redis", itest_redis_seed(), "--prefix", r.nm.prefix, "--count", ns,
                "--tag-mod", tm,        "--upsert-mod",     us,         NULL};
        itest_loadgen(populate);

        int n = 0;
        r.env[n++] = r.nm.env_topic;
        r.env[n++] = r.nm.env_group;
        if (sc->via_proxy == 2) {
                snprintf(r.env_brokers, sizeof(r.env_brokers), "KRIB_KAFKA_BROKERS=127.0.0.1:%d",
                         port_base() + 94);
                r.env[n++] = r.env_brokers;
        } else
                r.env[n++] = r.nm.env_brokers;
        if (sc->via_proxy == 1) {
                int b = port_base(), w = 0, m = 0;
                w = snprintf(r.env_nodes, sizeof(r.env_nodes), "KRIB_REDIS_NODES=");
                m = snprintf(r.env_map, sizeof(r.env_map), "KRIB_REDIS_ADDRESS_MAP=");
                for (int i = 0; i < 6; i++) {
                        w += snprintf(r.env_nodes + w, sizeof(r.env_nodes) - (size_t)w,
                                      "%s127.0.0.1:%d", i ? "," : "", b + 200 + i);
                        m += snprintf(r.env_map + m, sizeof(r.env_map) - (size_t)m,
                                      "%s127.0.0.1:%d=127.0.0.1:%d", i ? "," : "", b + 100 + i,
                                      b + 200 + i);
                }
                r.env[n++] = r.env_nodes;
                r.env[n++] = r.env_map;
        } else {
                r.env[n++] = r.nm.env_nodes;
        }
        snprintf(r.env_metrics, sizeof(r.env_metrics), "KRIB_METRICS_PORT=%d",
                 itest_metrics_port());
        r.env[n++] = r.env_metrics;
        snprintf(r.trace, sizeof(r.trace), "%s.trace", r.nm.log);
        snprintf(r.env_trace, sizeof(r.env_trace), "KRIB_PIPELINE_LATENCY_TRACE_FILE=%s", r.trace);
        r.env[n++] = r.env_trace;
        for (int i = 0; sc->env[i]; i++)
                r.env[n++] = sc->env[i];
        r.env[n] = NULL;

        r.t0_us = krib_clock_mono_us();
        krib_start(&r);
        /* The inspector beside krib (docs/CONSISTENCY.md): a fifth of the
         * events; nothing may be stale at 60 s. It waits a minute after the
         * last event, so CI runs it where the cache itself is disturbed
         * (failovers, migrations, a frozen master); KRIB_INSPECT_ALL=1 runs
         * it in every scenario (docs/RELIABILITY.md's table). Not in the
         * sanitizer build: it hunts memory errors (the inspector runs under
         * the sanitizers in check_inspect and check_pipeline). */
        char ilog[300] = "", iout[300] = "";
        pid_t inspector = -1;
#ifndef KRIB_SANITIZE
        if (inspected(sc))
                inspector =
                        itest_inspect_beside(&r.nm, "0.2", ilog, sizeof(ilog), iout, sizeof(iout));
#endif
        char *producer_argv[] = {KRIB_LOADGEN_BIN,
                                 "produce",
                                 "--topic",
                                 r.nm.topic,
                                 "--prefix",
                                 r.nm.prefix,
                                 "--count",
                                 ns,
                                 "--passes",
                                 ps,
                                 "--upsert-mod",
                                 us,
                                 "--tag-mod",
                                 tm,
                                 "--rate",
                                 rs,
                                 "--schema",
                                 KRIB_SOURCE_DIR "/schemas/invalidation.avsc",
                                 NULL};
        r.producer = itest_spawn(producer_argv);

        wait_committed(&r, (int64_t)((double)r.events * sc->fault_at), 120);
        sc->fault(&r);
        ck_assert_msg(r.heal_us > 0, "%s: the fault did not report its end", sc->name);
        /* Recovery: from the fault's end until everything produced by then is committed. */
        int64_t due = log_end_sum(r.nm.topic);
        wait_committed(&r, due, 180);
        double recovery_s = (double)(krib_clock_mono_us() - r.heal_us) / 1e6;

        ck_assert_int_eq(itest_wait(r.producer, 180), 0);
        ck_assert_int_eq(log_end_sum(r.nm.topic), r.events);
        int caught_up = itest_wait_caught_up(r.nm.group, r.nm.topic, NPARTS, 180);
        uint64_t consumed = r.consumed_before + consumed_now(&r);
        r.long_turns = itest_metric(r.metrics, "krib_loop_turn_seconds_count", NULL) -
                       itest_metric(r.metrics, "krib_loop_turn_seconds_bucket{le=\"0.05\"}", NULL);
        r.peak_rss_kb = itest_rss_kb(r.krib, 1);
        double wall_s = (double)(krib_clock_mono_us() - r.t0_us) / 1e6;
        ck_assert_int_eq(itest_krib_stop(r.krib, SIGTERM, 30), 0);
        if (r.krib2)
                ck_assert_int_eq(itest_krib_stop(r.krib2, SIGTERM, 30), 0);
        ck_assert_msg(caught_up == 0, "%s: committed offsets never reached the log end (%s)",
                      sc->name, r.nm.log);
        if (r.victims) {
                /* The other masters' events while one master was out (the
                 * cluster-client issue): acknowledged within 100 ms at p99,
                 * and no loop turn over 50 ms in the whole run. Timing under
                 * the sanitizers says nothing: reported, not asserted. */
                long others = 0;
                int p99 = itest_trace_p99(r.trace, r.window_from_ms, r.window_to_ms, r.victim,
                                          &others);
                size_t l = strlen(r.note);
                snprintf(r.note + l, sizeof(r.note) - l,
                         "; other masters' events meanwhile: p99 %d ms of %ld; loop turns over "
                         "50 ms: %.0f",
                         p99, others, r.long_turns);
#ifndef KRIB_SANITIZE
                ck_assert_msg(others >= 100, "%s: only %ld other masters' events in the fault",
                              sc->name, others);
                ck_assert_msg(p99 >= 0 && p99 <= 100,
                              "%s: the other masters' events waited: p99 %d ms over %ld events",
                              sc->name, p99, others);
                ck_assert_msg(r.long_turns == 0, "%s: %.0f loop turns over 50 ms", sc->name,
                              r.long_turns);
#endif
        }

        const char *verify[] = {"verify",
                                "--redis",
                                itest_redis_seed(),
                                "--prefix",
                                r.nm.prefix,
                                "--count",
                                ns,
                                "--passes",
                                ps,
                                "--upsert-mod",
                                us,
                                "--tag-mod",
                                tm,
                                NULL};
        const char *out = itest_loadgen(verify);
        /* Everything produced is in: the inspector reads to the end as of
         * now and checks it all (the last events 60 s after they were
         * produced). */
        itest_inspect_t insp[2];
        memset(insp, 0, sizeof(insp));
        if (inspector > 0)
                itest_inspect_nothing_stale(inspector, ilog, iout, insp);
        char nines[96];
        long judged = insp[0].checked - insp[0].unverifiable;
        if (!ilog[0])
                snprintf(nines, sizeof(nines), "not run");
        else if (insp[0].stale > 0 && judged > 0)
                snprintf(nines, sizeof(nines), "%.2f (%ld of %ld stale, %ld late)",
                         -log10((double)insp[0].stale / (double)judged), insp[0].stale, judged,
                         insp[0].late);
        else
                snprintf(nines, sizeof(nines), "all %ld fresh, %ld late", judged, insp[0].late);
        long keys = -1, lost = -1, regressions = -1;
        ck_assert_int_eq(
                sscanf(out, "keys=%ld lost=%ld regressions=%ld", &keys, &lost, &regressions), 3);
        char row[1024];
        snprintf(row, sizeof(row),
                 "| %s | %ld | %ld | %ld | %lld | %.1f s | %.0f MB | %.0f s | %s | %ld | %s |\n",
                 sc->name, r.events, lost, regressions,
                 (long long)(consumed > (uint64_t)r.events ? consumed - (uint64_t)r.events : 0),
                 recovery_s, (double)r.peak_rss_kb / 1024.0, wall_s, nines, insp[1].stale, r.note);
        fprintf(stderr, "RELIABILITY %s", row);
        const char *outp = getenv("KRIB_RELIABILITY_OUT");
        FILE *fp = outp ? fopen(outp, "a") : NULL;
        if (fp) {
                fputs(row, fp);
                fclose(fp);
        }
        ck_assert_int_eq(keys, sc->count);
        ck_assert_msg(lost == 0, "%s: %ld keys lost (%s)", sc->name, lost, r.nm.log);
        ck_assert_msg(regressions == 0, "%s: %ld version regressions", sc->name, regressions);
        /* A stream of 100k events must stay far from unbounded growth. */
#ifdef KRIB_SANITIZE
        ck_assert_int_lt(r.peak_rss_kb, 1200 * 1024); /* ASan's shadow and quarantine */
#else
        ck_assert_int_lt(r.peak_rss_kb, 400 * 1024);
#endif
        if (!getenv("KRIB_KEEP_LOGS")) { /* kept for a look: KRIB_KEEP_LOGS=1 */
                unlink(r.metrics);
                unlink(r.trace);
                unlink(r.nm.log);
                if (r.log2[0])
                        unlink(r.log2);
                if (ilog[0]) {
                        unlink(ilog);
                        unlink(iout);
                }
        }
}

static void healed(run_t *r) {
        r->heal_us = krib_clock_mono_us();
}

/* ---- faults ---------------------------------------------------------- */

static void fault_kill_master(run_t *r) {
        char master[32], replica[32], pid[32];
        faults("master-port", NULL, NULL, NULL, master, sizeof(master));
        faults("replica-of", master, NULL, NULL, replica, sizeof(replica));
        faults("kill", master, NULL, NULL, pid, sizeof(pid));
        int64_t t = krib_clock_mono_us();
        faults("wait-master", replica, NULL, NULL, NULL, 0);
        healed(r);
        snprintf(r->note, sizeof(r->note), "master %s killed, %s promoted after %.1f s", master,
                 replica, (double)(r->heal_us - t) / 1e6);
        faults("heal", NULL, NULL, NULL, NULL, 0); /* the killed node rejoins as a replica */
}

static void fault_manual_failover(run_t *r) {
        char master[32], replica[32];
        faults("master-port", NULL, NULL, NULL, master, sizeof(master));
        faults("replica-of", master, NULL, NULL, replica, sizeof(replica));
        faults("failover", replica, NULL, NULL, NULL, 0);
        healed(r);
        snprintf(r->note, sizeof(r->note), "CLUSTER FAILOVER on %s (replica of %s)", replica,
                 master);
}

static void fault_reshard(run_t *r) {
        itest_migrate_tag_slots(4);
        healed(r);
        /* MOVED comes from the first command krib sends a finished slot's
         * old owner, which may be after the last slot's SETSLOT NODE (a
         * refresh in between can also teach it the earlier slots): the
         * producer runs on for seconds, so wait for it, bounded. */
        double moved = 0, ask = 0;
        for (int i = 0; i < 100 && !(moved > 0 && ask > 0); i++) {
                if (i)
                        usleep(100000);
                scrape(r);
                moved = itest_metric(r->metrics, "krib_redis_redirects_total{kind=\"moved\"}",
                                     NULL);
                ask = itest_metric(r->metrics, "krib_redis_redirects_total{kind=\"ask\"}", NULL);
        }
        ck_assert_msg(moved > 0 && ask > 0, "reshard: MOVED %g, ASK %g: both must be met", moved,
                      ask);
        snprintf(r->note, sizeof(r->note), "4 slots migrated key by key: MOVED %.0f, ASK %.0f",
                 moved, ask);
}

static void fault_unreachable(run_t *r) {
        /* Every Redis link drops its data: commands time out, reconnects hang. */
        faults("toxic", "blackhole", "timeout", "{\"timeout\":0}", NULL, 0);
        int64_t start = krib_clock_mono_us();
        /* The batch in flight times out; offsets stored before reach the
         * broker with the next background commit (5 s). */
        usleep(7000000);
        int64_t held = itest_committed_sum(r->nm.group, r->nm.topic, NPARTS);
        double cpu0 = cpu_s(r->krib);
        long rss0 = itest_rss_kb(r->krib, 0);
        /* The loop keeps the consumer served and says so: a liveness probe
         * must not restart krib for an outage of Redis. */
        int live_bad = 0;
        while (krib_clock_mono_us() - start < 30000000) {
                char hz[300];
                snprintf(hz, sizeof(hz), "%s.healthz", r->nm.log);
                live_bad += itest_http_get(itest_metrics_port(), "/healthz", hz) != 200;
                unlink(hz);
                usleep(1000000);
        }
        double cpu = cpu_s(r->krib) - cpu0;
        int64_t after = itest_committed_sum(r->nm.group, r->nm.topic, NPARTS);
        long rss1 = itest_rss_kb(r->krib, 0);
        scrape(r);
        double opens =
                itest_metric(r->metrics, "krib_redis_breaker_transitions_total", "to=\"open\"");
        double paused = itest_metric(r->metrics, "krib_paused ", NULL);
        faults("untoxic", "blackhole", NULL, NULL, NULL, 0);
        healed(r);
        ck_assert_msg(after == held, "offsets moved while Redis was unreachable: %lld -> %lld",
                      (long long)held, (long long)after);
        ck_assert_msg(opens >= 1, "no circuit breaker opened");
        ck_assert_msg(live_bad == 0, "/healthz failed %d times during the outage", live_bad);
        ck_assert_msg(paused == 1, "consumption was not paused");
        ck_assert_msg(cpu < 5.0, "%.1f CPU-s in 25 s of outage: a busy loop", cpu);
        ck_assert_msg(rss1 - rss0 < 100 * 1024, "RSS grew %ld KiB during the outage", rss1 - rss0);
        snprintf(r->note, sizeof(r->note),
                 "30 s blackhole on all 6 links: offsets held, breaker opens %.0f, %.2f CPU-s, "
                 "RSS %+ld KiB",
                 opens, cpu, rss1 - rss0);
}

/* One master's link drops everything for 20 s (issue 11): its keys wait,
 * with their partitions' offsets, while the other masters' keys keep being
 * invalidated up to the in-flight bound (pipeline.max_in_flight_events:
 * at 1000 events/s about ten seconds of them). */
static void fault_one_master_unreachable(run_t *r) {
        char master[32];
        faults("master-port", NULL, NULL, NULL, master, sizeof(master));
        scrape(r);
        double applied0 = itest_metric(r->metrics, "krib_events_total{outcome=\"applied\"}", NULL);
        double keys0 =
                itest_metric(r->metrics, "krib_key_operations_total{outcome=\"applied\"}", NULL);
        char *argv[] = {FAULTS,    "toxic-on",        master, "blackhole",
                        "timeout", "{\"timeout\":0}", NULL};
        char out[256];
        window_begin(r, master);
        ck_assert_int_eq(itest_run(argv, 30, out, sizeof(out)), 0);
        /* Work already on the dead link needs a command timeout to fail. */
        usleep(3000000);
        scrape(r);
        double keys1 =
                itest_metric(r->metrics, "krib_key_operations_total{outcome=\"applied\"}", NULL);
        usleep(17000000);
        scrape(r);
        double keys2 =
                itest_metric(r->metrics, "krib_key_operations_total{outcome=\"applied\"}", NULL);
        double applied2 = itest_metric(r->metrics, "krib_events_total{outcome=\"applied\"}", NULL);
        double open =
                itest_metric(r->metrics, "krib_redis_breaker_transitions_total", "to=\"open\"");
        window_end(r);
        faults("untoxic", "blackhole", NULL, NULL, NULL, 0);
        healed(r);
        /* Keys of the two healthy masters went on during the outage. */
        ck_assert_msg(keys2 - keys1 >= 2000,
                      "only %.0f keys applied in 17 s with one master of three down",
                      keys2 - keys1);
        ck_assert_msg(open >= 1, "the dead master's breaker never opened");
        snprintf(r->note, sizeof(r->note),
                 "master %s blackholed 20 s: %.0f keys applied meanwhile on the others "
                 "(%.0f events), breaker opens %.0f",
                 master, keys2 - keys0, applied2 - applied0, open);
}

/* One master frozen (SIGSTOP) for 10 s at 250 events/s (issue 22): its
 * socket accepts and never answers. The loop must neither spin (it once
 * polled with a zero timeout every turn, waiting on a batch linger that
 * dispatch refused) nor stall the other masters' keys (events are finished
 * per event, and free batch slots stretch by lingering longer). The
 * cluster may fail the master over meanwhile (cluster-node-timeout 2 s):
 * the assertions hold either way. */
static double applied_keys(run_t *r) {
        scrape(r);
        return itest_metric(r->metrics, "krib_key_operations_total{outcome=\"applied\"}", NULL);
}

static void fault_one_master_frozen(run_t *r) {
        char master[32], pid[32];
        faults("master-port", NULL, NULL, NULL, master, sizeof(master));
        double cpu0 = cpu_s(r->krib);
        usleep(5000000);
        double idle = cpu_s(r->krib) - cpu0; /* the same load, all masters healthy */
        faults("stop", master, NULL, NULL, pid, sizeof(pid));
        cpu0 = cpu_s(r->krib);
        /* Second by second: the healthy masters' share (two thirds of 250
         * keys/s) must keep coming. Redis itself refuses every write for a
         * moment (CLUSTERDOWN, cluster-require-full-coverage) between the
         * frozen master being marked failed (cluster-node-timeout 2 s) and
         * its replica taking over: one second, two at most. Before this
         * issue krib added five more: a slot-map refresh picked the frozen
         * node and CLUSTER SLOTS blocked the loop a command timeout. */
        double keys = applied_keys(r), total = 0;
        double long0 = itest_metric(r->metrics, "krib_loop_turn_seconds_count", NULL) -
                       itest_metric(r->metrics, "krib_loop_turn_seconds_bucket{le=\"1\"}", NULL);
        int stalled = 0, longest = 0;
        for (int sec = 1; sec <= 10; sec++) {
                usleep(1000000);
                double k = applied_keys(r);
                stalled = k - keys < 50 ? stalled + 1 : 0;
                if (stalled > longest)
                        longest = stalled;
                total += k - keys;
                keys = k;
        }
        double long_turns =
                itest_metric(r->metrics, "krib_loop_turn_seconds_count", NULL) -
                itest_metric(r->metrics, "krib_loop_turn_seconds_bucket{le=\"1\"}", NULL) - long0;
        double cpu = cpu_s(r->krib) - cpu0;
        /* The commit rule with events finished one by one, through a revoke
         * and a kill -9: events on the frozen master are unfinished behind
         * finished ones when a second member joins (the partitions it takes
         * are revoked from the first, which abandons their unfinished work)
         * and when the first dies; whoever reads next must re-read them
         * (verify finds no key lost, no version regressed). The second
         * member serves no /metrics (the port is the first's). */
        snprintf(r->log2, sizeof(r->log2), "%s.second", r->nm.log);
        const char *env2[20];
        int n2 = 0;
        for (int i = 0; r->env[i] && n2 < 18; i++)
                if (strncmp(r->env[i], "KRIB_METRICS_PORT=", 18))
                        env2[n2++] = r->env[i];
        env2[n2++] = "KRIB_METRICS_PORT=0";
        env2[n2] = NULL;
        r->krib2 = itest_krib_start(env2, r->log2);
        const char *revoked[] = {"revoke handled", NULL};
        for (int i = 0; i < 100 && itest_log_count(r->nm.log, revoked) == 0; i++)
                usleep(100000);
        ck_assert_msg(itest_log_count(r->nm.log, revoked) > 0,
                      "the second member's join revoked nothing from the first (%s)", r->nm.log);
        r->consumed_before = consumed_now(r);
        ck_assert_int_eq(itest_krib_stop(r->krib, SIGKILL, 10), 128 + SIGKILL);
        faults("cont", master, NULL, NULL, NULL, 0);
        krib_start(r);
        healed(r);
        faults("heal", NULL, NULL, NULL, NULL, 0);
        ck_assert_msg(longest <= 2,
                      "%d seconds in a row with under 50 keys applied while one master was "
                      "frozen (the other two own ~167 a second)",
                      longest);
        ck_assert_msg(long_turns == 0, "%.0f loop turns over 1 s while one master was frozen",
                      long_turns);
        ck_assert_msg(cpu < 2 * idle + 1.0,
                      "%.2f CPU-s in the 10 s freeze against %.2f in 5 s before: a busy loop", cpu,
                      idle);
        snprintf(r->note, sizeof(r->note),
                 "master %s frozen 10 s: %.0f keys applied meanwhile, %d s the longest below "
                 "50/s; %.2f CPU-s (%.2f in the 5 s before); a member joined, then krib kill -9, "
                 "before it thawed",
                 master, total, longest, cpu, idle);
}

/* One master answers 2 s late (Toxiproxy latency on its link) at 2,000
 * events/s (issue 22): an event is finished as soon as its own keys are
 * acknowledged, so the two thirds of events whose key lives on another
 * master still finish in milliseconds. Finished per batch (as before), a
 * batch of ~10 events nearly always holds a key of the slow master and
 * almost every event would wait the 2 s. */
static void fault_one_master_slow(run_t *r) {
        char master[32];
        faults("master-port", NULL, NULL, NULL, master, sizeof(master));
        char *argv[] = {FAULTS, "toxic-on", master, "slow", "latency", "{\"latency\":2000}", NULL};
        char out[256];
        ck_assert_int_eq(itest_run(argv, 30, out, sizeof(out)), 0);
        usleep(3000000); /* past the first replies that were already late */
        scrape(r);
        double fast0 = itest_metric(r->metrics,
                                    "krib_end_to_end_latency_seconds_bucket{le=\"0.5\"}", NULL);
        double all0 = itest_metric(r->metrics, "krib_end_to_end_latency_seconds_count", NULL);
        usleep(4000000);
        scrape(r);
        double fast = itest_metric(r->metrics, "krib_end_to_end_latency_seconds_bucket{le=\"0.5\"}",
                                   NULL) -
                      fast0;
        double all = itest_metric(r->metrics, "krib_end_to_end_latency_seconds_count", NULL) - all0;
        faults("untoxic", "slow", NULL, NULL, NULL, 0);
        healed(r);
        ck_assert_msg(all >= 2000, "only %.0f events applied in 4 s with one master slow", all);
        ck_assert_msg(fast >= 0.4 * all,
                      "%.0f of %.0f events finished within 0.5 s while one master of three "
                      "answered 2 s late: events wait for other events' keys",
                      fast, all);
        snprintf(r->note, sizeof(r->note),
                 "master %s answering 2 s late: %.0f of %.0f events applied in 4 s within 0.5 s",
                 master, fast, all);
}

/* One master SIGSTOPped for 10 s, long enough a cluster-node-timeout that
 * it is not failed over: its socket accepts and never answers, reconnects
 * hang in AUTH or SCRIPT LOAD, probes never come back. None of it may
 * reach the loop (the cluster-client issue). */
static void fault_one_master_stopped(run_t *r) {
        char master[32], pid[32];
        faults("master-port", NULL, NULL, NULL, master, sizeof(master));
        faults("node-timeout", "60000", NULL, NULL, NULL, 0);
        window_begin(r, master);
        faults("stop", master, NULL, NULL, pid, sizeof(pid));
        usleep(10000000);
        window_end(r);
        faults("cont", master, NULL, NULL, NULL, 0);
        healed(r);
        faults("heal", NULL, NULL, NULL, NULL, 0);
        snprintf(r->note, sizeof(r->note), "master %s SIGSTOPped 10 s (no failover)", master);
}

/* One master's replies trickle (Toxiproxy slicer: a byte every 20 ms), and
 * its link is cut after 4 kB and closed slowly (limit_data, slow_close), for
 * 10 s: a peer that keeps a read going without end must not hold the loop. */
static void fault_one_master_trickle(run_t *r) {
        char master[32];
        faults("master-port", NULL, NULL, NULL, master, sizeof(master));
        window_begin(r, master);
        char *slicer[] = {FAULTS,   "toxic-on",
                          master,   "trickle",
                          "slicer", "{\"average_size\":1,\"size_variation\":0,\"delay\":20000}",
                          NULL};
        char *limit[] = {FAULTS, "toxic-on", master, "cut", "limit_data", "{\"bytes\":4096}", NULL};
        char *slow[] = {FAULTS,       "toxic-on",         master, "slowclose",
                        "slow_close", "{\"delay\":3000}", NULL};
        char out[256];
        ck_assert_int_eq(itest_run(slicer, 30, out, sizeof(out)), 0);
        ck_assert_int_eq(itest_run(limit, 30, out, sizeof(out)), 0);
        ck_assert_int_eq(itest_run(slow, 30, out, sizeof(out)), 0);
        usleep(10000000);
        window_end(r);
        faults("untoxic", "trickle", NULL, NULL, NULL, 0);
        faults("untoxic", "cut", NULL, NULL, NULL, 0);
        faults("untoxic", "slowclose", NULL, NULL, NULL, 0);
        healed(r);
        snprintf(r->note, sizeof(r->note),
                 "master %s: replies a byte per 20 ms, link cut after 4 kB and closed 3 s late, "
                 "for 10 s",
                 master);
}

/* Breakers open now, per the node gauges (the cluster's left out). */
static int open_breakers(run_t *r) {
        scrape(r);
        int open = 0;
        for (int i = 0; i < 6; i++) {
                char node[64];
                snprintf(node, sizeof(node), "node=\"127.0.0.1:%d\"", port_base() + 100 + i);
                open += itest_metric(r->metrics, "krib_redis_breaker_state{", node) == 1;
        }
        return open;
}

static void fault_full(run_t *r) {
        faults("full", NULL, NULL, NULL, NULL, 0);
        int64_t start = krib_clock_mono_us();
        /* Redis is over its limit at once: every write-through gets OOM. */
        while (open_breakers(r) == 0) {
                ck_assert_msg(krib_clock_mono_us() - start < 60000000,
                              "no breaker opened on OOM within 60 s");
                usleep(200000);
        }
        double filled_s = (double)(krib_clock_mono_us() - start) / 1e6;
        /* Offsets stored before the OOM reach the broker with the next
         * background commit (auto.commit.interval.ms, 5 s): wait it out. */
        usleep(6000000);
        int64_t held = itest_committed_sum(r->nm.group, r->nm.topic, NPARTS);
        double cpu0 = cpu_s(r->krib);
        usleep(10000000);
        double cpu = cpu_s(r->krib) - cpu0;
        int64_t after = itest_committed_sum(r->nm.group, r->nm.topic, NPARTS);
        int open = open_breakers(r);
        double probes_full = 0; /* not exported; the log says "probe: redis is full" */
        const char *needle[] = {"probe: redis is full", NULL};
        probes_full = itest_log_count(r->nm.log, needle);
        faults("unfull", NULL, NULL, NULL, NULL, 0);
        healed(r);
        ck_assert_msg(open >= 1, "breakers closed again while Redis was still full");
        ck_assert_msg(after == held, "offsets moved while every write was refused: %lld -> %lld",
                      (long long)held, (long long)after);
        ck_assert_msg(cpu < 2.0, "%.1f CPU-s in 10 s of OOM: a busy loop", cpu);
        snprintf(r->note, sizeof(r->note),
                 "maxmemory hit after %.1f s; 16 s full: %d breakers open, offsets held, %.2f "
                 "CPU-s, %.0f probes",
                 filled_s, open, cpu, probes_full);
}

static void fault_latency(run_t *r) {
        /* Right after krib started (fault_at 0), for the rest of the run;
         * the teardown lifts it. */
        faults("toxic", "latency", "latency", "{\"latency\":200,\"jitter\":50}", NULL, 0);
        healed(r);
        wait_committed(r, r->events / 2, 120);
        scrape(r);
        double sum = itest_metric(r->metrics, "krib_redis_node_round_trip_seconds_sum", NULL);
        double n = itest_metric(r->metrics, "krib_redis_node_round_trip_seconds_count", NULL);
        ck_assert_msg(n > 0 && sum / n > 0.15, "mean round trip %.3f s: no latency applied",
                      n > 0 ? sum / n : 0.0);
        snprintf(r->note, sizeof(r->note),
                 "200 ms +/- 50 ms on every Redis reply, whole run: mean round trip %.0f ms over "
                 "%.0f",
                 1000 * sum / n, n);
}

static void fault_kafka_restart(run_t *r) {
        char *argv[] = {KRIB_SOURCE_DIR "/ci/services", "kafka-restart", NULL};
        char out[512];
        int64_t t = krib_clock_mono_us();
        ck_assert_msg(itest_run(argv, 120, out, sizeof(out)) == 0, "kafka restart failed");
        healed(r);
        snprintf(r->note, sizeof(r->note), "broker stopped and started (%.1f s)",
                 (double)(r->heal_us - t) / 1e6);
}

static void fault_kafka_link(run_t *r) {
        /* krib reaches the broker only through the proxy: cut it for 20 s,
         * longer than session.timeout.ms, so the group also drops krib. */
        faults("kafka-link", "down", NULL, NULL, NULL, 0);
        usleep(7000000); /* the last background commit before the cut lands */
        int64_t held = itest_committed_sum(r->nm.group, r->nm.topic, NPARTS);
        usleep(13000000);
        int64_t after = itest_committed_sum(r->nm.group, r->nm.topic, NPARTS);
        faults("kafka-link", "up", NULL, NULL, NULL, 0);
        healed(r);
        ck_assert_msg(after == held, "offsets moved while krib could not reach Kafka");
        ck_assert_int_eq(kill(r->krib, 0), 0); /* still running */
        snprintf(r->note, sizeof(r->note),
                 "krib's Kafka link (Toxiproxy) disabled for 20 s, longer than the session "
                 "timeout: no commits meanwhile, krib rejoined by itself");
}

static void fault_kill_krib_during_failover(run_t *r) {
        char master[32], replica[32], pid[32];
        faults("master-port", NULL, NULL, NULL, master, sizeof(master));
        faults("replica-of", master, NULL, NULL, replica, sizeof(replica));
        r->consumed_before = consumed_now(r);
        faults("kill", master, NULL, NULL, pid, sizeof(pid));
        usleep(500000); /* krib meets the dead master, then dies too */
        ck_assert_int_eq(itest_krib_stop(r->krib, SIGKILL, 10), 128 + SIGKILL);
        faults("wait-master", replica, NULL, NULL, NULL, 0);
        krib_start(r);
        healed(r);
        faults("heal", NULL, NULL, NULL, NULL, 0);
        snprintf(r->note, sizeof(r->note),
                 "master %s kill -9, krib kill -9 0.5 s later, restarted after %s took over",
                 master, replica);
}

/* ---- scenarios -------------------------------------------------------- */

static const scenario_t scenarios[] = {
        {"kill_master", 50000, 2, 5, 0, 10000, 0, 0.25, {NULL}, fault_kill_master},
        {"manual_failover", 50000, 2, 5, 0, 10000, 0, 0.25, {NULL}, fault_manual_failover},
        {"reshard", 45000, 3, 5, 20, 10000, 0, 0.1, {NULL}, fault_reshard},
        {"unreachable_30s",
         50000,
         2,
         5,
         0,
         20000,
         1,
         0.2,
         {"KRIB_REDIS_COMMAND_TIMEOUT_MS=2000", NULL},
         fault_unreachable},
        {"one_master_unreachable_20s",
         15000,
         2,
         5,
         0,
         1000,
         1,
         0.2,
         /* The bound sized for the outage (1,000 events/s for 20 s: the
          * blackholed master's unfinished events hold every offset after
          * them), so the other masters' events never wait for it. */
         {"KRIB_REDIS_COMMAND_TIMEOUT_MS=2000", "KRIB_PIPELINE_MAX_IN_FLIGHT_EVENTS=40000", NULL},
         fault_one_master_unreachable},
        {"one_master_slow_2s", 10000, 2, 5, 0, 2000, 1, 0.1, {NULL}, fault_one_master_slow},
        {"one_master_frozen_10s", 5000, 2, 5, 0, 250, 0, 0.1, {NULL}, fault_one_master_frozen},
        {"one_master_stopped_10s", 5000, 2, 5, 0, 500, 0, 0.2, {NULL}, fault_one_master_stopped},
        {"one_master_trickle_10s", 5000, 2, 5, 0, 500, 1, 0.2, {NULL}, fault_one_master_trickle},
        {"redis_full", 50000, 2, 1, 0, 20000, 0, 0.1, {NULL}, fault_full},
        {"latency_200ms", 50000, 2, 5, 0, 20000, 1, 0.0, {NULL}, fault_latency},
        {"kafka_restart", 50000, 2, 5, 0, 10000, 0, 0.3, {NULL}, fault_kafka_restart},
        {"kafka_link_down_20s", 50000, 2, 5, 0, 10000, 2, 0.2, {NULL}, fault_kafka_link},
        {"kill_krib_during_failover",
         50000,
         2,
         5,
         0,
         10000,
         0,
         0.3,
         {NULL},
         fault_kill_krib_during_failover},
};

/* ---- acknowledged means replicated (issue 10, item 16) ----------------- */

/* A master acknowledges an UNLINK that its (frozen) replica has not
 * received, then dies; the replica takes over. With redis.wait_replicas=1
 * krib never counts that UNLINK as done: it resends it to the new master
 * and stores the offset only once a replica has it. Without it, the key
 * comes back with the promoted replica: the loss WAIT prevents. Returns
 * whether the key survived the failover. */
static int wait_failover(int wait_on, char *note, size_t note_size) {
        itest_names_t nm;
        itest_names(&nm, wait_on ? "waiton" : "waitoff");
        const char *create[] = {"create", "--topic", nm.topic, "--partitions", "1", NULL};
        itest_loadgen(create);
        char master[32], replica[32], pid[32];
        faults("master-port", NULL, NULL, NULL, master, sizeof(master));
        faults("replica-of", master, NULL, NULL, replica, sizeof(replica));
        int mport = atoi(master);
        /* A hash tag whose slot the chosen master owns. */
        redisContext *m = itest_redis(mport);
        redisReply *r = redisCommand(m, "CLUSTER SLOTS");
        char tag[32] = "";
        for (int t = 0; t < 10000 && !tag[0]; t++) {
                char cand[32];
                int l = snprintf(cand, sizeof(cand), "w%d", t);
                unsigned slot = krib_slot_of(cand, (size_t)l);
                for (size_t i = 0; i < r->elements; i++) {
                        redisReply *e = r->element[i];
                        if ((long long)slot >= e->element[0]->integer &&
                            (long long)slot <= e->element[1]->integer &&
                            e->element[2]->element[1]->integer == mport)
                                snprintf(tag, sizeof(tag), "%s", cand);
                }
        }
        freeReplyObject(r);
        ck_assert_msg(tag[0], "no hash tag on master %d", mport);
        char key[200], warm[200];
        snprintf(key, sizeof(key), "%s:{%s}:k", nm.prefix, tag);
        snprintf(warm, sizeof(warm), "%s:{%s}:warm", nm.prefix, tag);
        freeReplyObject(redisCommand(m, "SET %s cached", key));
        r = redisCommand(m, "WAIT 1 5000");
        ck_assert_int_ge(r->integer, 1); /* the replica has the cached value */
        freeReplyObject(r);

        const char *env[] = {nm.env_topic,
                             nm.env_group,
                             nm.env_brokers,
                             nm.env_nodes,
                             wait_on ? "KRIB_REDIS_WAIT_REPLICAS=1" : "KRIB_REDIS_WAIT_REPLICAS=0",
                             "KRIB_REDIS_WAIT_TIMEOUT_MS=300",
                             "KRIB_REDIS_COMMAND_TIMEOUT_MS=2000",
                             NULL};
        pid_t krib = itest_krib_start(env, nm.log);
        const char *kw[] = {warm, NULL}, *kk[] = {key, NULL};
        itest_produce_event(nm.topic, 0, "warm", kw, KRIB_ACTION_DELETE, "", NULL);
        ck_assert_int_eq(itest_wait_caught_up(nm.group, nm.topic, 1, 60), 0);

        /* Freeze the replica and fill the link, so what follows stays in
         * the master's output buffer. */
        faults("stop", replica, NULL, NULL, pid, sizeof(pid));
        static char junk[1 << 20];
        memset(junk, 'j', sizeof(junk));
        for (int i = 0; i < 32; i++) {
                char jk[200];
                snprintf(jk, sizeof(jk), "%s:{%s}:junk%d", nm.prefix, tag, i);
                freeReplyObject(redisCommand(m, "SET %s %b", jk, junk, sizeof(junk)));
        }
        itest_produce_event(nm.topic, 0, "k", kk, KRIB_ACTION_DELETE, "", NULL);
        int64_t end = krib_clock_mono_us() + 20000000;
        for (;;) { /* the master applied it */
                r = redisCommand(m, "EXISTS %s", key);
                long long e = r->integer;
                freeReplyObject(r);
                if (!e)
                        break;
                ck_assert_msg(krib_clock_mono_us() < end, "krib never unlinked %s", key);
                usleep(50000);
        }
        redisFree(m);
        usleep(1000000);
        faults("kill", master, NULL, NULL, pid, sizeof(pid));
        faults("cont", replica, NULL, NULL, NULL, 0);
        int64_t t = krib_clock_mono_us();
        faults("wait-master", replica, NULL, NULL, NULL, 0);
        double failover_s = (double)(krib_clock_mono_us() - t) / 1e6;
        /* The old master rejoins as a replica: WAIT can be met again. */
        faults("heal", NULL, NULL, NULL, NULL, 0);
        ck_assert_msg(itest_wait_caught_up(nm.group, nm.topic, 1, 120) == 0,
                      "offsets never caught up (%s)", nm.log);
        char got[64];
        int present = itest_cluster_get(key, got, sizeof(got));
        ck_assert_int_eq(itest_krib_stop(krib, SIGTERM, 30), 0);
        const char *short_wait[] = {"WAIT: writes not yet on enough replicas", NULL};
        int shorts = itest_log_count(nm.log, short_wait);
        snprintf(note, note_size,
                 "wait_replicas=%d: master %s killed with the UNLINK unreplicated, %s promoted "
                 "after %.1f s: key %s, %d WAIT shortfall log lines",
                 wait_on, master, replica, failover_s, present ? "came back (lost)" : "gone",
                 shorts);
        fprintf(stderr, "RELIABILITY %s\n", note);
        for (int i = 0; i < 32; i++) {
                char jk[200];
                snprintf(jk, sizeof(jk), "%s:{%s}:junk%d", nm.prefix, tag, i);
                itest_cluster_cmd("DEL", jk, NULL, NULL, 0);
        }
        if (wait_on)
                ck_assert_int_ge(shorts, 1);
        unlink(nm.log);
        return present;
}

START_TEST(wait_replicas_failover) {
        char note[400];
        ck_assert_msg(!wait_failover(1, note, sizeof(note)), "%s", note);
        /* The same with WAIT off shows the loss it prevents (documentation:
         * docs/RELIABILITY.md). It is the control that the fault works, and
         * a slow krib (the sanitizer build) may time the UNLINK out and
         * resend it to the promoted replica, which hides the loss: up to
         * three tries, one must show it. */
        int lost = 0;
        for (int attempt = 0; attempt < 3 && !lost; attempt++)
                lost = wait_failover(0, note, sizeof(note));
        ck_assert_msg(lost,
                      "without WAIT the unreplicated UNLINK survived the failover three times: "
                      "the test did not freeze replication (%s)",
                      note);
}
END_TEST

/* ---- a master that restarts and loads its data (issue 10, item 1) ------ */

static int loading_port(void) {
        return port_base() + 106; /* bus port + 200: 306 */
}

static void loading_redis_start(const char *dir, int delay_us) {
        char port[16], bus[16], delay[16], pidf[300], logf[300];
        snprintf(port, sizeof(port), "%d", loading_port());
        snprintf(bus, sizeof(bus), "%d", loading_port() + 200);
        snprintf(delay, sizeof(delay), "%d", delay_us);
        snprintf(pidf, sizeof(pidf), "%s/redis.pid", dir);
        snprintf(logf, sizeof(logf), "%s/redis.log", dir);
        char *argv[] = {"/usr/bin/redis-server",
                        "--port",
                        port,
                        "--bind",
                        "127.0.0.1",
                        "--dir",
                        (char *)dir,
                        "--dbfilename",
                        "dump.rdb",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-port",
                        bus,
                        "--key-load-delay",
                        delay,
                        "--daemonize",
                        "yes",
                        "--pidfile",
                        pidf,
                        "--logfile",
                        logf,
                        NULL};
        char out[512];
        ck_assert_msg(itest_run(argv, 30, out, sizeof(out)) == 0, "redis-server: %s", out);
}

static redisReply *loading_cmd(const char *fmt, const char *arg) {
        redisContext *c = redisConnect("127.0.0.1", loading_port());
        if (!c || c->err) {
                if (c)
                        redisFree(c);
                return NULL;
        }
        redisReply *r = arg ? redisCommand(c, fmt, arg) : redisCommand(c, fmt);
        redisFree(c);
        return r;
}

/* Unchecked teardown: the node goes away even when the test failed. */
static void loading_cleanup(void) {
        redisReply *r = loading_cmd("SHUTDOWN NOSAVE", NULL);
        if (r)
                freeReplyObject(r);
}

START_TEST(master_restart_loading) {
        loading_cleanup(); /* a node left over by an interrupted run */
        itest_names_t nm;
        itest_names(&nm, "loading");
        char dir[256];
        snprintf(dir, sizeof(dir), "/tmp/%s-redis", nm.topic);
        mkdir(dir, 0700);
        loading_redis_start(dir, 0);
        redisReply *r = NULL;
        for (int i = 0; i < 100 && !(r = loading_cmd("PING", NULL)); i++)
                usleep(100000);
        ck_assert_ptr_nonnull(r);
        freeReplyObject(r);
        freeReplyObject(loading_cmd("CLUSTER ADDSLOTSRANGE 0 16383", NULL));
        for (int i = 0; i < 100; i++) {
                r = loading_cmd("CLUSTER INFO", NULL);
                int ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");
                freeReplyObject(r);
                if (ok)
                        break;
                usleep(100000);
        }
        /* 200k keys, 40 us each to load: LOADING lasts about 8 s. */
        redisContext *pc = redisConnect("127.0.0.1", loading_port());
        ck_assert_ptr_nonnull(pc);
        for (int i = 0; i < 200000; i++) {
                redisAppendCommand(pc, "SET pop:%d xxxxxxxxxx", i);
                if (i % 1000 == 999)
                        for (int k = 0; k < 1000; k++) {
                                ck_assert_int_eq(redisGetReply(pc, (void **)&r), REDIS_OK);
                                freeReplyObject(r);
                        }
        }
        redisFree(pc);
        char key[200], warm[200];
        snprintf(key, sizeof(key), "%s:{1}:k", nm.prefix);
        snprintf(warm, sizeof(warm), "%s:{2}:warm", nm.prefix);
        freeReplyObject(loading_cmd("SET %s cached", key));
        freeReplyObject(loading_cmd("SAVE", NULL));

        const char *create[] = {"create", "--topic", nm.topic, "--partitions", "1", NULL};
        itest_loadgen(create);
        char nodes[64];
        snprintf(nodes, sizeof(nodes), "KRIB_REDIS_NODES=127.0.0.1:%d", loading_port());
        char e_metrics[64];
        snprintf(e_metrics, sizeof(e_metrics), "KRIB_METRICS_PORT=%d", itest_metrics_port());
        const char *env[] = {nm.env_topic, nm.env_group, nm.env_brokers, nodes, e_metrics, NULL};
        pid_t krib = itest_krib_start(env, nm.log);
        const char *kw[] = {warm, NULL}, *kk[] = {key, NULL};
        itest_produce_event(nm.topic, 0, "warm", kw, KRIB_ACTION_DELETE, "v=1", NULL);
        ck_assert_int_eq(itest_wait_caught_up(nm.group, nm.topic, 1, 60), 0);

        /* kill -9, then start it again on its data, slowly. */
        char pidpath[300], pidtext[32] = "";
        snprintf(pidpath, sizeof(pidpath), "%s/redis.pid", dir);
        FILE *fp = fopen(pidpath, "r");
        ck_assert_ptr_nonnull(fp);
        ck_assert_ptr_nonnull(fgets(pidtext, sizeof(pidtext), fp));
        fclose(fp);
        kill(atoi(pidtext), SIGKILL);
        usleep(300000);
        loading_redis_start(dir, 40);
        int loading = 0;
        for (int i = 0; i < 100 && !loading; i++) {
                r = loading_cmd("PING", NULL);
                loading = r && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "LOADING", 7);
                if (r)
                        freeReplyObject(r);
                if (!loading)
                        usleep(50000);
        }
        ck_assert_msg(loading, "the restarted master never answered LOADING");
        itest_produce_event(nm.topic, 0, "k", kk, KRIB_ACTION_DELETE, "v=2", NULL);
        int caught = itest_wait_caught_up(nm.group, nm.topic, 1, 90);
        char body[300];
        snprintf(body, sizeof(body), "%s.metrics", nm.log);
        ck_assert_int_eq(itest_http_get(itest_metrics_port(), "/metrics", body), 200);
        ck_assert_int_eq(itest_krib_stop(krib, SIGTERM, 30), 0);
        r = loading_cmd("EXISTS %s", key);
        long long exists = r ? r->integer : -1;
        if (r)
                freeReplyObject(r);
        freeReplyObject(loading_cmd("SHUTDOWN NOSAVE", NULL));
        const char *retried[] = {"cannot load the fence script, retrying", NULL};
        int retries = itest_log_count(nm.log, retried);
        fprintf(stderr, "master restart with LOADING: %d script-load retries logged\n", retries);
        ck_assert_msg(caught == 0, "never caught up (%s)", nm.log);
        ck_assert_msg(exists == 0, "the DELETE was lost across LOADING: key exists=%lld (%s)",
                      exists, nm.log);
        ck_assert_int_eq(itest_metric(body, "krib_events_total{outcome=\"failed\"}", NULL), 0);
        const char *failed[] = {"fence script not loaded", NULL};
        ck_assert_int_eq(itest_log_count(nm.log, failed), 0);
        char *rm[] = {"/bin/rm", "-rf", dir, NULL};
        itest_run(rm, 30, NULL, 0);
        unlink(body);
        unlink(nm.log);
}
END_TEST

static void heal(void) {
        char *argv[] = {FAULTS, "heal", NULL};
        char out[512];
        if (itest_run(argv, 120, out, sizeof(out)) != 0)
                fprintf(stderr, "heal failed: %s\n", out);
}

/* One ctest entry per scenario (CK_RUN_CASE=<name>): the loop index picks it. */
START_TEST(scenario) {
        run_scenario(&scenarios[_i]);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("resilience");
        for (int i = 0; i < (int)(sizeof(scenarios) / sizeof(*scenarios)); i++) {
                TCase *tc = tcase_create(scenarios[i].name);
                tcase_add_unchecked_fixture(tc, NULL, heal);
                tcase_set_timeout(tc, 600);
                tcase_add_loop_test(tc, scenario, i, i + 1);
                suite_add_tcase(s, tc);
        }
        TCase *tc = tcase_create("master_restart_loading");
        tcase_add_unchecked_fixture(tc, NULL, loading_cleanup);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, master_restart_loading);
        suite_add_tcase(s, tc);
        tc = tcase_create("wait_replicas_failover");
        tcase_add_unchecked_fixture(tc, NULL, heal);
        tcase_set_timeout(tc, 600);
        tcase_add_test(tc, wait_replicas_failover);
        suite_add_tcase(s, tc);
        return s;
}
